//! Online migration: a plan carried out unit by unit, while the service keeps
//! running, without losing a write.
//!
//! A job is created from the plan of the current config over the catalog;
//! each unit moves one (subject, category). Workers (in this process or any
//! other sharing the catalog) claim units under leases. For one unit:
//!
//! 1. mark the placement moving to its new regions (one transaction): from
//!    here no write commits for it; writers wait, bounded, or get a
//!    retryable error; reads go on;
//! 2. copy every indexed blob, ciphertext only, from a region that holds it
//!    to each new region that does not, verifying BLAKE3 checksums;
//! 3. re-wrap the data key for the new custodian if it changes;
//! 4. commit the new placement with epoch + 1 and its ledger receipt (one
//!    transaction);
//! 5. after the grace period, purge every blob of the (subject, category)
//!    left in regions outside the placement, with a ledger entry.
//!
//! A worker takes a batch of units per turn (`MigrateOptions::batch` at
//! most; it grows while turns are quick and shrinks when they are slow): the
//! batch's marks are one transaction, its copies share one sync per region,
//! and its commits (each with its receipt and the unit's release) are one
//! transaction in which a fenced unit is refused on its own; the purges of
//! a batch end in one transaction with their receipts. A unit that fails
//! never holds the others back: its mark is cleared and it is retried.
//!
//! Every step is idempotent: a worker killed anywhere leaves a lease that
//! expires, and the next worker redoes what is missing. A move that cannot
//! verify its copies is never committed.
//!
//! - `job`: a job's life: start, status, pause, cancel, and
//!   `run_migration`, which runs this process's workers on it.
//! - `plan`: the job's units, planned from the current config page by page.
//! - `worker`: `MigrationWorker`, the loop that
//!   claims a batch of units per turn, and its [`WorkerStatus`].
//! - `moves`: a turn's moves: mark, copy, sync, re-wrap and commit.
//! - `copy`: a unit's blobs copied and verified, paced to the job's rate.
//! - `pacer`: the job's byte rate, shared by this process's workers.
//! - `purge`: old copies deleted after the grace period; strays of moves
//!   that will not commit.
//! - `inline`: the write path's move of one unit, as a worker of one turn.

mod copy;
mod inline;
mod job;
mod moves;
mod pacer;
mod plan;
mod purge;
mod rekey;
mod worker;

use std::time::Duration;

use domicile_catalog::{JobCounts, JobRow};
use serde::Serialize;

use crate::clock::now_millis;

pub(crate) use inline::Inline;
pub use worker::{WorkerState, WorkerStatus};

/// How a migration runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Concurrent worker turns in this process.
    pub workers: usize,
    /// Most units a worker takes per turn. Their catalog writes are batched
    /// (one claim, one moving mark, one commit with every receipt) and their
    /// copies share one sync per region, so a job of many small units is
    /// not bound by per-unit transactions. A worker starts at 8 units (or
    /// this, if fewer) and doubles its batch while its turns are quick,
    /// halving it when one is slow, so a turn's units stay marked moving
    /// for about a quarter of a second whatever their size (see
    /// `worker::TURN_TARGET`).
    pub batch: usize,
    /// Bytes per second copied by this process; 0 = unlimited.
    pub rate: u64,
    /// Wait between a unit's commit and the purge of its old copies, so
    /// reads that started before the commit can finish.
    pub grace: Duration,
    /// Lease on a claimed unit (and on its placement while moving).
    pub lease: Duration,
    /// Failed attempts (errors, not crashes) before a unit is given up.
    pub max_attempts: i64,
    /// A name for this process's workers in leases.
    pub owner: String,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            workers: 4,
            batch: 32,
            rate: 0,
            grace: Duration::from_secs(2),
            lease: Duration::from_secs(60),
            max_attempts: 10,
            owner: format!("pid-{}-{}", std::process::id(), now_millis()),
        }
    }
}

/// A job and where it stands.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationStatus {
    pub job: i64,
    pub state: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub units: i64,
    pub done: i64,
    pub committed: i64,
    pub in_flight: i64,
    pub pending: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub bytes_total: i64,
    pub bytes_moved: i64,
    /// Bytes per second since the job started.
    pub rate: f64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
}

impl MigrationStatus {
    fn of(job: &JobRow, c: &JobCounts, now: i64) -> Self {
        let elapsed = ((job.finished_at.unwrap_or(now) - job.created_at).max(1)) as f64 / 1000.0;
        let rate = c.bytes_moved as f64 / elapsed;
        let left = (c.bytes_total - c.bytes_moved).max(0) as f64;
        MigrationStatus {
            job: job.id,
            state: job.state.as_str().into(),
            created_at: job.created_at,
            finished_at: job.finished_at,
            units: job.units,
            done: c.done,
            committed: c.committed,
            in_flight: c.in_flight,
            pending: c.pending,
            failed: c.failed,
            cancelled: c.cancelled,
            bytes_total: c.bytes_total,
            bytes_moved: c.bytes_moved,
            rate,
            eta_seconds: (job.state.is_open() && rate > 0.0).then(|| left / rate),
        }
    }

    /// Units not yet finished one way or another.
    pub fn open_units(&self) -> i64 {
        self.pending + self.in_flight + self.committed
    }
}

/// What one worker pass over a unit achieved, for progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tick {
    pub bytes: u64,
    pub units: u64,
    /// The status of the worker that made this progress, after it.
    pub worker: WorkerStatus,
}
