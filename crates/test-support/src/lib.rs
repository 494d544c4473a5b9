//! What the test binaries of the workspace would otherwise each copy: one
//! helper, written once, for every test that builds the same rows, calls
//! the engine the same way, walks region folders, or starts the same
//! throwaway servers. A dev-dependency only: nothing here ships.
//!
//! - [`catalog`]: the catalog rows and the small filled catalog the
//!   SQLite and PostgreSQL backend tests build on, and a ledger check.
//! - [`engine`]: parsing ids and calling the engine as the engine's tests
//!   do (a put with default metadata, a subject's token).
//! - [`files`]: every file under a folder, relative to it.
//! - [`rng`]: a small deterministic generator and incompressible bytes, so
//!   a failing run replays from its seed.
//! - [`moto`]: a `moto_server` (S3 and KMS) on a free port, stopped on drop,
//!   and the KMS calls tests make on it (create, alias, disable, enable).
//! - [`vault`]: a faithful fake of the Vault/OpenBao Transit engine.
//! - [`pg`]: a fresh PostgreSQL database per test, dropped when it ends,
//!   and a throwaway PostgreSQL server of its own that speaks TLS only.
//! - [`tls`]: a certificate authority and the server certificates it
//!   signs, made on the spot.
#![allow(clippy::unwrap_used)]

pub mod catalog;
pub mod engine;
pub mod files;
pub mod moto;
pub mod pg;
pub mod rng;
pub mod tls;
pub mod vault;
