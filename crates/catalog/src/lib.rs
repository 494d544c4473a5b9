//! The domicile catalog: the current state of every subject, placement and
//! object, and the ledger that records every change to it.
//!
//! - [`catalog`]: the [`Catalog`] trait, the one contract every backend meets.
//! - [`jobs`]: migration jobs and units ([`JobStore`], part of every catalog).
//! - [`model`]: the rows it stores. Nothing in them is personal data in clear.
//! - [`ledger`]: the hash chain: how an entry is hashed, how a chain is verified.
//! - `sql`: the one implementation of both traits, [`SqlCatalog`]: every
//!   statement and transaction, written once, generic over a [`Dialect`].
//! - [`sqlite`]: the embedded backend's dialect (SQLite through sqlx, WAL):
//!   opening the file, its write lock and log syncing.
//! - [`postgres`]: the shared backend's dialect (PostgreSQL through sqlx;
//!   its SQL is kept portable to CockroachDB), for many servers and workers
//!   on many machines: connecting, schema locks, row locks and retries.
//! - [`raw`]: raw table rows and column lists, for catalog migration.
//! - [`copy`]: catalog migration: every row copied verbatim into another
//!   backend, then counted and the ledger chain verified.
//! - [`error`]: the error type.

pub mod catalog;
pub mod copy;
pub mod error;
pub mod jobs;
pub mod ledger;
pub mod model;
pub mod postgres;
pub mod raw;
mod sql;
pub mod sqlite;

pub use catalog::{
    Catalog, CommitOutcome, MoveMark, ObjectCommit, RekeyedObject, Rewrap, UnitMove,
};
pub use copy::{CopyReport, copy_catalog};
pub use error::{Error, Result};
pub use jobs::{
    JobCounts, JobRow, JobState, JobStore, JobWaiting, RunRow, UnitOutcome, UnitReceipt,
    UnitRelease, UnitRow, UnitState,
};
pub use model::*;
pub use sql::{Dialect, Durability, Retry, SqlCatalog};

use std::sync::Arc;

/// Opens the catalog a URL names: `sqlite://PATH` (created if missing), or
/// `postgres://…` / `postgresql://…` (the database must exist; its schema is
/// created or brought up to date).
pub async fn open(url: &str) -> Result<Arc<dyn Catalog>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(sqlite::SqliteCatalog::open(path).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PostgresCatalog::open(url).await?));
    }
    Err(Error::BadUrl {
        url: url.to_string(),
        reason: "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
    })
}
