//! Migration jobs and their units, as the catalog stores them.
//!
//! A job carries out one plan; each unit moves one (subject, category).
//! Workers claim units under leases, so any number of workers in any number
//! of processes share a job, a unit is never worked on by two live workers
//! at once, and a crashed worker's units are taken over when its lease
//! expires. Every step a worker takes on a unit is idempotent, so a unit
//! redone after a crash ends where it would have.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{LedgerAppend, Millis};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Created; its units are being added. A job found in this state after
    /// its creator died is re-planned from scratch.
    Planning,
    Running,
    Paused,
    Cancelled,
    Done,
}

impl JobState {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Planning => "planning",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Cancelled => "cancelled",
            JobState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "planning" => JobState::Planning,
            "running" => JobState::Running,
            "paused" => JobState::Paused,
            "cancelled" => JobState::Cancelled,
            "done" => JobState::Done,
            _ => return None,
        })
    }

    /// Planning, running or paused: the job still owns its units.
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            JobState::Planning | JobState::Running | JobState::Paused
        )
    }
}

/// Where a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitState {
    /// Not moved yet (possibly half-done by a worker that died).
    Pending,
    /// The new placement is committed; old copies await purging.
    Committed,
    /// Moved and purged.
    Done,
    /// Gave up after repeated errors; the data stays where it was.
    Failed,
    /// The job was cancelled before the unit moved.
    Cancelled,
}

impl UnitState {
    pub fn as_str(&self) -> &'static str {
        match self {
            UnitState::Pending => "pending",
            UnitState::Committed => "committed",
            UnitState::Done => "done",
            UnitState::Failed => "failed",
            UnitState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<UnitState> {
        Some(match s {
            "pending" => UnitState::Pending,
            "committed" => UnitState::Committed,
            "done" => UnitState::Done,
            "failed" => UnitState::Failed,
            "cancelled" => UnitState::Cancelled,
            _ => return None,
        })
    }
}

/// A migration job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: i64,
    pub state: JobState,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    /// Digest of the config the job carries out.
    pub policy: String,
    /// Bytes per second across all workers; 0 = unlimited.
    pub rate: i64,
    /// Wait between a unit's commit and the purge of its old copies.
    pub grace_ms: i64,
    pub units: i64,
    pub bytes: i64,
}

/// One unit: the move of one (subject, category).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRow {
    pub job: i64,
    pub token: String,
    pub category: String,
    /// 0 for copies in forbidden regions (moved first), 1 otherwise.
    pub priority: i64,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub custodian_from: String,
    pub custodian_to: String,
    pub objects: i64,
    pub bytes: i64,
    pub state: UnitState,
    /// Attempts that failed with an error (`UnitOutcome::Retry`). Claims do
    /// not count: a worker killed mid-attempt (kill -9, a lost machine)
    /// never brings a unit closer to being given up.
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Millis,
    pub purge_after: Millis,
    pub moved_bytes: i64,
    pub error: Option<String>,
    pub updated_at: Millis,
}

/// Units and bytes of a job by state.
/// One measured run: what the workers of one process (`owner`) moved of a
/// job from `started_at` to `finished_at`: the units committed meanwhile
/// and their bytes. The plan's duration estimate reads these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub job: i64,
    pub owner: String,
    pub started_at: Millis,
    pub finished_at: Millis,
    pub units: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub pending: i64,
    /// Pending units under a live lease: being moved right now.
    pub in_flight: i64,
    pub committed: i64,
    pub done: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub bytes_total: i64,
    /// Bytes of units committed or done.
    pub bytes_moved: i64,
}

impl JobCounts {
    /// Adds one state's row of a count: `units` in that state, `live` of
    /// them under a live lease (in flight, if pending), and their bytes.
    pub(crate) fn add(&mut self, state: UnitState, units: i64, live: i64, bytes: i64) {
        self.bytes_total += bytes;
        match state {
            UnitState::Pending => {
                self.in_flight += live;
                self.pending += units - live;
            }
            UnitState::Committed => {
                self.committed += units;
                self.bytes_moved += bytes;
            }
            UnitState::Done => {
                self.done += units;
                self.bytes_moved += bytes;
            }
            UnitState::Failed => self.failed += units,
            UnitState::Cancelled => self.cancelled += units,
        }
    }
}

/// What a job's workers still have to wait for (see `JobStore::job_waiting`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobWaiting {
    /// Some unit is pending: to move, being moved, or waiting to retry.
    pub moves: bool,
    /// Some unit is committed: its old copies are still to be purged.
    pub purges: bool,
}

/// How a worker leaves a unit it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitOutcome {
    /// Committed to the new placement; purge old copies after `purge_after`.
    Committed {
        purge_after: Millis,
        moved_bytes: i64,
    },
    /// Old copies purged: the unit is finished.
    Done,
    /// This attempt failed; retry after `retry_at` (or give up when
    /// `give_up`).
    Retry {
        error: String,
        retry_at: Millis,
        give_up: bool,
    },
}

/// The columns a unit's row takes when a worker leaves it with an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutcomeColumns<'a> {
    pub state: UnitState,
    pub purge_after: Option<Millis>,
    pub moved_bytes: Option<i64>,
    pub error: Option<&'a str>,
    pub lease_until: Millis,
    /// 1 if this outcome is a failed attempt (it adds to `attempts`).
    pub failed: i64,
}

impl UnitOutcome {
    /// The unit row's new columns. A retried unit that was already
    /// committed keeps that state (only its purge failed): the backends'
    /// SQL applies that rule, as it depends on the row's current state.
    pub(crate) fn columns(&self) -> OutcomeColumns<'_> {
        match self {
            UnitOutcome::Committed {
                purge_after,
                moved_bytes,
            } => OutcomeColumns {
                state: UnitState::Committed,
                purge_after: Some(*purge_after),
                moved_bytes: Some(*moved_bytes),
                error: None,
                lease_until: 0,
                failed: 0,
            },
            UnitOutcome::Done => OutcomeColumns {
                state: UnitState::Done,
                purge_after: None,
                moved_bytes: None,
                error: None,
                lease_until: 0,
                failed: 0,
            },
            UnitOutcome::Retry {
                error,
                retry_at,
                give_up,
            } => OutcomeColumns {
                state: if *give_up {
                    UnitState::Failed
                } else {
                    UnitState::Pending
                },
                purge_after: None,
                moved_bytes: None,
                error: Some(error.as_str()),
                lease_until: *retry_at,
                failed: 1,
            },
        }
    }
}

/// How a worker leaves the unit it holds, recorded in the same transaction
/// as the change that ends its turn (a move's commit, a purge's receipt):
/// one write transaction per turn instead of two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRelease {
    pub job: i64,
    pub owner: String,
    pub outcome: UnitOutcome,
    pub now: Millis,
}

/// A unit's release with the ledger receipt of the work that ends its turn:
/// what `finish_unit_with_receipt` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitReceipt {
    pub token: String,
    pub category: String,
    pub release: UnitRelease,
    pub receipt: crate::model::LedgerAppend,
}

/// Storage of migration jobs; part of every catalog.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Creates a job in the planning state and returns its id; its creator
    /// adds the units in batches, then sets it running. Fails with
    /// `Error::Conflict` if another job is still open.
    async fn create_job(&self, job: &JobRow) -> Result<i64>;

    /// Adds units to a job (in batches), and their counts to the job.
    async fn add_units(&self, job: i64, units: &[UnitRow]) -> Result<()>;

    /// Removes every unit of a job still in the planning state (its creator
    /// died part-way), so it can be planned again. Returns how many.
    async fn discard_units(&self, job: i64) -> Result<u64>;

    async fn job(&self, id: i64) -> Result<Option<JobRow>>;

    /// The open (planning, running or paused) job, if any.
    async fn open_job(&self) -> Result<Option<JobRow>>;

    /// The newest jobs first, at most `limit`.
    async fn jobs(&self, limit: u32) -> Result<Vec<JobRow>>;

    /// Records a measured run of a job's workers (see [`RunRow`]); a run
    /// recorded already (same job, owner and start) is kept as it was.
    async fn record_run(&self, run: &RunRow) -> Result<()>;

    /// The measured runs that finished last first, at most `limit`.
    async fn runs(&self, limit: u32) -> Result<Vec<RunRow>>;

    /// Sets a job's state (and its finish time for cancelled and done).
    async fn set_job_state(&self, id: i64, state: JobState, now: Millis) -> Result<()>;

    /// Claims up to `limit` units for `owner` until `lease_until`, among
    /// those whose lease is free or expired: committed units whose purge is
    /// due first (oldest due first), then pending units by priority; ties
    /// by token and category. Claims are exclusive across processes, and cost the same
    /// however many units the job has (no sort over the job). A backend may
    /// return before the claim is durable (see `Catalog::durable`): a claim
    /// lost to a power cut is only a unit claimed again. A claim that hands
    /// out a committed unit (its purge) returns only once every commit
    /// before it is durable: the purge deletes the old copies, which a move
    /// undone by a power cut would still need.
    async fn claim_units(
        &self,
        job: i64,
        owner: &str,
        limit: u32,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<UnitRow>>;

    /// Claims one given unit, (token, category), for `owner` until
    /// `lease_until`, if it is pending, its lease is free or expired, and it
    /// holds at most `max_bytes`: a write that meets a region its policy now
    /// forbids moves that one (subject, category) at once. `None` otherwise.
    async fn claim_unit(
        &self,
        job: i64,
        (token, category): (&str, &str),
        owner: &str,
        max_bytes: i64,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Option<UnitRow>>;

    /// Extends the leases `owner` holds on these units. Returns how many it
    /// still held.
    async fn renew_leases(
        &self,
        job: i64,
        owner: &str,
        units: &[(String, String)],
        lease_until: Millis,
    ) -> Result<u64>;

    /// Records how a worker leaves a unit and releases its lease. Returns
    /// false (and changes nothing) if `owner` no longer holds the lease.
    async fn finish_unit(
        &self,
        job: i64,
        token: &str,
        category: &str,
        owner: &str,
        outcome: &UnitOutcome,
        now: Millis,
    ) -> Result<bool>;

    /// `finish_unit` for (`token`, `category`) with `release`, and
    /// `receipt` appended to the ledger in the same transaction. The receipt
    /// is appended even if the lease was lost: it records work that was
    /// done (a purge is idempotent; a second one records zero blobs).
    async fn finish_unit_with_receipt(
        &self,
        token: &str,
        category: &str,
        release: &UnitRelease,
        receipt: &LedgerAppend,
    ) -> Result<bool> {
        let one = UnitReceipt {
            token: token.to_string(),
            category: category.to_string(),
            release: release.clone(),
            receipt: receipt.clone(),
        };
        Ok(self
            .finish_units_with_receipts(std::slice::from_ref(&one))
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// `finish_unit_with_receipt` for several units in one transaction
    /// (a migration worker's batch of purges). Whether each lease was still
    /// held, in order.
    async fn finish_units_with_receipts(&self, done: &[UnitReceipt]) -> Result<Vec<bool>>;

    /// Cancels every pending unit that no live lease holds. Returns how many.
    async fn cancel_pending(&self, job: i64, now: Millis) -> Result<u64>;

    /// Units and bytes of a job by state: one pass over the job's units,
    /// for status reports.
    async fn job_counts(&self, job: i64, now: Millis) -> Result<JobCounts>;

    /// Whether any unit of a job is pending and whether any is committed:
    /// what an idle worker asks before it waits again. Two index probes,
    /// not a pass over the job as `job_counts` is, so its cost does not
    /// grow with the job.
    async fn job_waiting(&self, job: i64) -> Result<JobWaiting>;

    /// Units of a job in one state, for reports (at most `limit`).
    async fn units_in(&self, job: i64, state: UnitState, limit: u32) -> Result<Vec<UnitRow>>;
}
