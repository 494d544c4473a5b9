//! The domicile service in process: it joins the pure domain (core), the
//! region stores and custodians (store) and the catalog into operations.
//!
//! - [`engine`]: [`Engine`], opened once from a config and its secrets,
//!   which it keeps to itself: callers ask it for what they need (health,
//!   ledger pages, the APIs' credentials, the catalog's copy).
//! - [`actor`]: who caused what the ledger records (`s3:NAME`, `rest:NAME`,
//!   `worker:ID`, `cli:USER`), scoped to the future that serves a request.
//! - [`secrets`]: secrets from the environment or the secrets file; the
//!   subject-token key; the names of the APIs' credentials.
//! - [`tokens`]: keyed hashes for subject ids and object names.
//! - [`placement`]: placements for the write path (create, wait, refuse
//!   forbidden regions).
//! - [`policy`]: the policy version this process acts on; applying and
//!   following versions.
//! - [`data`]: put, get, head, list and delete, with epoch fencing; the
//!   MD5 ETag computed while a body streams; conditional puts and deletes
//!   ([`Precondition`]) decided in the catalog's commit.
//! - [`commits`]: group commit: concurrent writes' index rows committed
//!   as one batch by a writer task, each write answered once its batch is
//!   durable.
//! - [`multipart`]: objects composed of staged parts (multipart uploads),
//!   completed by a manifest in their sealed metadata, never copied again;
//!   the sweep of expired uploads and of released parts.
//! - [`gc`]: deletion of blobs no index row points at, in bounded
//!   background passes, after a grace period for reads in flight.
//! - [`migrate`]: online migration jobs: units under leases; copy, verify,
//!   re-wrap, commit epoch + 1, purge after a grace period. One module per
//!   part: the job, its planning, the worker and its status, a turn's
//!   moves, the copy, the purge, and the write path's inline move.
//! - [`subjects`]: add, import (and its CSV parser), the keyset-paged
//!   listing, show, rehome and erase.
//! - [`reports`]: residency, exposure, cost, violations and the plan.
//! - [`reach`]: the grounds of an authority's reach under a config.
//! - [`plan_scan`]: the plan's scan of every placement, split in token
//!   ranges over every core, the moves handed over in token order.
//! - [`demand`]: what an authority could compel; ledgered.
//! - [`rotate`]: a custodian's rotation: every data key it wraps, wrapped
//!   again under its key's newest version, online and resumably.
//! - [`verify`]: region scans against catalog and policy; `--deep` opens
//!   every object through its custodian; progress counts for a watcher;
//!   ledger chain check (against the signed checkpoints).
//!
//! With the `openapi` feature, the types the REST API returns derive
//! utoipa's `ToSchema`.
//! - [`checkpoint`]: signed checkpoints of the ledger's head (Ed25519),
//!   stored, published outside the catalog, checked by `ledger verify`.
//! - [`evidence`]: the signed evidence bundle: its export, and its offline
//!   verification with nothing but the bundle (docs/evidence.md).

pub mod actor;
pub mod checkpoint;
pub mod clock;
pub mod commits;
pub mod data;
pub mod demand;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod gc;
pub mod migrate;
pub mod multipart;
pub mod placement;
pub mod plan_scan;
pub mod policy;
pub mod reach;
pub mod reports;
pub mod rotate;
pub mod secrets;
pub mod subjects;
pub mod tokens;
pub mod verify;

pub use data::{ObjectInfo, ObjectMeta, Precondition, PutReceipt};
pub use engine::{Acting, Engine, EngineOptions, Health};
pub use error::{Error, Result};
pub use gc::{GcOptions, GcReport};
pub use migrate::{MigrateOptions, MigrationStatus, WorkerState, WorkerStatus};
pub use multipart::{Manifest, ManifestPart, UPLOAD_DIR};
pub use policy::PolicyVersion;
pub use rotate::{RotateOptions, RotationReport};
pub use secrets::{RestToken, S3Credential, Secrets};
