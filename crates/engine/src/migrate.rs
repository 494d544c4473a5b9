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
//! A worker takes a batch of units per turn (`MigrateOptions::batch`): the
//! batch's marks are one transaction, its copies share one sync per region,
//! and its commits (each with its receipt and the unit's release) are one
//! transaction in which a fenced unit is refused on its own; the purges of
//! a batch end in one transaction with their receipts. A unit that fails
//! never holds the others back: its mark is cleared and it is retried.
//!
//! Every step is idempotent: a worker killed anywhere leaves a lease that
//! expires, and the next worker redoes what is missing. A move that cannot
//! verify its copies is never committed.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domicile_catalog::{
    Fence, JobCounts, JobRow, JobState, JobWaiting, LedgerAppend, MoveMark, ObjectRow,
    PlacementRow, PlacementState, SubjectRow, UnitMove, UnitOutcome, UnitReceipt, UnitRelease,
    UnitRow, UnitState,
};
use domicile_core::ids::RegionId;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::plan::MoveReason;
use domicile_store::BlobPath;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// How a migration runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Concurrent worker turns in this process.
    pub workers: usize,
    /// Units a worker takes per turn. Their catalog writes are batched (one
    /// claim, one moving mark, one commit with every receipt) and their
    /// copies share one sync per region, so a job of many small units is
    /// not bound by per-unit transactions.
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
            batch: 8,
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

/// Paces copies to a byte rate shared by this process's workers.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Pacer {
            rate,
            next: Mutex::new(Instant::now()),
        }
    }

    async fn take(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// What a unit's copies came to.
#[derive(Debug, Clone, Copy)]
struct Copied {
    objects: usize,
    /// Stored bytes of the unit's objects.
    bytes: i64,
    /// Bytes copied now (not already in place).
    moved: u64,
    /// Copies checked against the catalog's checksums.
    verified: u64,
}

/// What one worker pass over a unit achieved, for progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tick {
    pub bytes: u64,
    pub units: u64,
}

/// What a unit's move needs, read before its moving mark is set.
#[derive(Debug)]
enum Prepared {
    /// Already where the policy wants it (or erased): nothing to copy.
    Nothing,
    /// It moves.
    Move(Box<Route>),
}

/// A unit's move in a batch: the unit's place in the batch, its placement
/// now, and the regions and custodian it goes to.
#[derive(Debug)]
struct Route {
    unit: usize,
    p: PlacementRow,
    to: Vec<String>,
    custodian_to: String,
}

/// What a write's inline move of its (subject, category) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inline {
    /// Moved: the write goes to the new placement.
    Moved,
    /// Not now, but the running job (planned under this config) will move
    /// it: a worker holds it, it is too large to move inline, or the move
    /// failed and waits to be retried. The write may wait, then retry.
    JobWill,
    /// The job of this config is still being planned (its units are being
    /// added): it runs in a moment. The write may wait, then ask again.
    Planning,
    /// No running job of this config: only an operator's `migrate apply`
    /// will move it.
    NoJob,
}

/// How often a worker re-reads its job's state (pause, cancel).
const JOB_POLL: Duration = Duration::from_millis(250);

/// Blobs of one unit copied at once: a unit of many small objects is bound
/// by per-file latency (open, create, rename), not by bytes.
const COPIES_IN_FLIGHT: usize = 4;

/// Blobs copied at once by one worker turn, over all its units: enough to
/// hide per-file latency, few enough that the service's own writes (which
/// share the runtime's blocking threads) do not queue behind the copies.
const COPIES_PER_TURN: usize = 8;

/// How a unit is left after an attempt that failed with `e`: retried after
/// a backoff that grows with its failures, or given up after
/// `max_attempts` of them. `attempts` counts earlier failures only (not
/// claims), so crashes never bring a unit closer to being given up.
fn failed(unit: &UnitRow, opts: &MigrateOptions, e: &Error) -> UnitOutcome {
    let failures = unit.attempts + 1;
    UnitOutcome::Retry {
        error: e.to_string(),
        retry_at: now_millis() + (200i64 << failures.clamp(1, 8)).min(30_000),
        give_up: failures >= opts.max_attempts,
    }
}

/// The release of a unit whose move commits (or is found done) now: its
/// purge is due after the grace period.
fn committed(unit: &UnitRow, owner: &str, opts: &MigrateOptions, moved: u64) -> UnitRelease {
    let now = now_millis();
    UnitRelease {
        job: unit.job,
        owner: owner.to_string(),
        outcome: UnitOutcome::Committed {
            purge_after: now + opts.grace.as_millis() as i64,
            moved_bytes: moved as i64,
        },
        now,
    }
}

impl Engine {
    /// Creates a job for the plan of the current config. Errors if another
    /// job is open. Returns the job, with no unit moved yet.
    pub async fn start_migration(&self, opts: &MigrateOptions) -> Result<MigrationStatus> {
        if let Some(open) = self.catalog.open_job().await? {
            return Err(Error::Invalid(format!(
                "migration job {} is still {}: resume, pause or cancel it first",
                open.id,
                open.state.as_str()
            )));
        }
        let now = now_millis();
        let job = JobRow {
            id: 0,
            state: JobState::Running,
            created_at: now,
            finished_at: None,
            policy: self.config.plan_digest(),
            rate: opts.rate as i64,
            grace_ms: opts.grace.as_millis() as i64,
            units: 0,
            bytes: 0,
        };
        let id = self.catalog.create_job(&job).await?;
        let units = self.plan_units(id, now).await?;
        self.catalog
            .append_ledger(LedgerAppend {
                kind: "migration".into(),
                subject: None,
                body: json!({"job": id, "event": "started", "policy": job.policy,
                             "units": units}),
                at: now,
            })
            .await?;
        self.migration_status(Some(id)).await
    }

    /// Plans the job's units from the current config and adds them page by
    /// page (memory stays bounded however many units there are), then sets
    /// the job running. Until then the job is "planning": if its creator
    /// dies part-way, the next `run_migration` discards the partial units
    /// and plans it again, so a partial job never passes for the whole.
    /// Returns how many units were added.
    async fn plan_units(&self, id: i64, now: i64) -> Result<usize> {
        let config = self.config.clone();
        let mut added = 0usize;
        self.plan_in_batches(&config, |moves| {
            added += moves.len();
            let units: Vec<UnitRow> = moves
                .into_iter()
                .map(|m| UnitRow {
                    job: id,
                    priority: if m.reason == MoveReason::Forbidden {
                        0
                    } else {
                        1
                    },
                    from: m.from.iter().map(|r| r.to_string()).collect(),
                    to: m.to.iter().map(|r| r.to_string()).collect(),
                    token: m.token,
                    category: m.category,
                    custodian_from: m.custodian_from,
                    custodian_to: m.custodian_to,
                    objects: m.objects as i64,
                    bytes: m.bytes as i64,
                    state: UnitState::Pending,
                    attempts: 0,
                    lease_owner: None,
                    lease_until: 0,
                    purge_after: 0,
                    moved_bytes: 0,
                    error: None,
                    updated_at: now,
                })
                .collect();
            let catalog = self.catalog.clone();
            async move {
                if !units.is_empty() {
                    catalog.add_units(id, &units).await?;
                }
                Ok(())
            }
        })
        .await?;
        self.catalog
            .set_job_state(id, JobState::Running, now_millis())
            .await?;
        Ok(added)
    }

    /// Status of a job (the open one, or the newest, by default).
    pub async fn migration_status(&self, job: Option<i64>) -> Result<MigrationStatus> {
        let job = match job {
            Some(id) => self.catalog.job(id).await?,
            None => match self.catalog.open_job().await? {
                Some(j) => Some(j),
                None => self.catalog.jobs(1).await?.into_iter().next(),
            },
        }
        .ok_or_else(|| Error::NotFound("migration job".into()))?;
        let now = now_millis();
        let counts = self.catalog.job_counts(job.id, now).await?;
        Ok(MigrationStatus::of(&job, &counts, now))
    }

    /// What the job's idle workers still wait for: two index probes, not
    /// a count over its units as [`Engine::migration_status`] makes.
    pub async fn migration_waiting(&self, job: i64) -> Result<JobWaiting> {
        Ok(self.catalog.job_waiting(job).await?)
    }

    /// Pauses the open job: workers stop after the batch of units in hand.
    pub async fn pause_migration(&self) -> Result<MigrationStatus> {
        let job = self.open_job().await?;
        self.catalog
            .set_job_state(job.id, JobState::Paused, now_millis())
            .await?;
        self.migration_status(Some(job.id)).await
    }

    /// Cancels the open job: units not yet moved stay where they are, moved
    /// ones stay moved (their old copies are still purged).
    pub async fn cancel_migration(&self) -> Result<MigrationStatus> {
        let job = self.open_job().await?;
        let now = now_millis();
        self.catalog
            .set_job_state(job.id, JobState::Cancelled, now)
            .await?;
        self.release_abandoned_moves(job.id, now).await?;
        let cancelled = self.catalog.cancel_pending(job.id, now).await?;
        self.catalog
            .append_ledger(LedgerAppend {
                kind: "migration".into(),
                subject: None,
                body: json!({"job": job.id, "event": "cancelled", "units_cancelled": cancelled}),
                at: now,
            })
            .await?;
        self.migration_status(Some(job.id)).await
    }

    /// Clears the moving marks that dead workers left on pending units of a
    /// cancelled job (unit and placement leases both expired): nobody will
    /// finish those moves, and writers would wait on the marks for ever. A
    /// worker still alive past its leases then fails its commit, which
    /// needs the mark: the placement stays as it was. The copies such a
    /// worker (or a failed attempt) made in the unit's new regions are
    /// deleted: the unit stays where it was, and nothing indexes them.
    async fn release_abandoned_moves(&self, job: i64, now: i64) -> Result<()> {
        for unit in self
            .catalog
            .units_in(job, UnitState::Pending, u32::MAX)
            .await?
        {
            // Never claimed (no lease was ever set), or held by a live worker.
            if unit.lease_until == 0 || (unit.lease_owner.is_some() && unit.lease_until >= now) {
                continue;
            }
            let Some(p) = self
                .catalog
                .get_placement(&unit.token, &unit.category)
                .await?
            else {
                continue;
            };
            let epoch = p.epoch;
            let regions = match p.state {
                PlacementState::Moving { lease_until, .. } if lease_until < now => {
                    self.catalog
                        .abort_move(&unit.token, &unit.category, epoch)
                        .await?;
                    p.regions
                }
                PlacementState::Moving { .. } => continue, // a live move
                PlacementState::Active => p.regions,
            };
            // The dead worker's copies in regions the unit was to move to
            // are indexed nowhere: the unit stays where it was, so they go.
            self.drop_strays(&unit, &regions).await?;
        }
        Ok(())
    }

    /// Deletes a unit's blobs in the regions it was to move to that its
    /// placement (`regions`) does not include: copies of attempts that will
    /// not be committed, which nothing indexes.
    async fn drop_strays(&self, unit: &UnitRow, regions: &[String]) -> Result<()> {
        for r in unit.to.iter().filter(|r| !regions.contains(r)) {
            if let Some(store) = self.regions.get(r) {
                purge_prefix(store, &unit.token, &unit.category).await?;
            }
        }
        Ok(())
    }

    async fn open_job(&self) -> Result<JobRow> {
        self.catalog
            .open_job()
            .await?
            .ok_or_else(|| Error::NotFound("open migration job".into()))
    }

    /// Runs workers on the open job (resuming a paused one) until it is
    /// done, paused or cancelled. `on_tick` sees progress as units finish.
    /// A cancelled job's committed units are still purged.
    pub async fn run_migration(
        &self,
        opts: &MigrateOptions,
        on_tick: &(dyn Fn(Tick) + Sync),
    ) -> Result<MigrationStatus> {
        let job = match self.catalog.open_job().await? {
            Some(j) => j,
            None => {
                // Nothing open: only leftover purges of a cancelled job.
                self.catalog
                    .jobs(1)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::NotFound("migration job".into()))?
            }
        };
        if !self.config.plans_job(&job.policy) && job.state.is_open() {
            return Err(Error::Invalid(format!(
                "migration job {} was planned for another config (digest {}, this one is {}): its policy, regions, custodians or reach differ; cancel it and apply again",
                job.id,
                job.policy,
                self.config.plan_digest()
            )));
        }
        if job.state == JobState::Planning {
            // Its creator died while adding its units: start the planning
            // over, or a part of the plan would pass for the whole.
            let discarded = self.catalog.discard_units(job.id).await?;
            let units = self.plan_units(job.id, now_millis()).await?;
            tracing::info!(
                job = job.id,
                discarded,
                units,
                "re-planned an interrupted job"
            );
            {
                self.catalog
                    .append_ledger(LedgerAppend {
                        kind: "migration".into(),
                        subject: None,
                        body: json!({"job": job.id, "event": "planned on resume", "units": units}),
                        at: now_millis(),
                    })
                    .await?;
            }
        }
        if job.state == JobState::Paused {
            self.catalog
                .set_job_state(job.id, JobState::Running, now_millis())
                .await?;
        }
        let pacer = Pacer::new(opts.rate);
        let workers =
            (0..opts.workers.max(1)).map(|w| self.worker(job.id, w, opts, &pacer, on_tick));
        let results = futures::future::join_all(workers).await;
        for r in results {
            r?;
        }
        let status = self.migration_status(Some(job.id)).await?;
        if status.state == "running" && status.open_units() == 0 {
            let now = now_millis();
            self.catalog
                .set_job_state(job.id, JobState::Done, now)
                .await?;
            self.catalog
                .append_ledger(LedgerAppend {
                    kind: "migration".into(),
                    subject: None,
                    body: json!({"job": job.id, "event": "done", "units_done": status.done,
                                 "units_failed": status.failed, "bytes": status.bytes_moved}),
                    at: now,
                })
                .await?;
            return self.migration_status(Some(job.id)).await;
        }
        Ok(status)
    }

    async fn worker(
        &self,
        job: i64,
        n: usize,
        opts: &MigrateOptions,
        pacer: &Pacer,
        on_tick: &(dyn Fn(Tick) + Sync),
    ) -> Result<()> {
        let owner = format!("{}-w{n}", opts.owner);
        let mut idle_backoff = Duration::from_millis(50);
        // The job's state, re-read at most every JOB_POLL: a pause or a
        // cancel is seen within that, without a read per unit.
        let mut state: Option<(JobState, Instant)> = None;
        loop {
            let j = match state {
                Some((s, at)) if at.elapsed() < JOB_POLL => s,
                _ => {
                    let Some(j) = self.catalog.job(job).await? else {
                        return Ok(());
                    };
                    state = Some((j.state, Instant::now()));
                    j.state
                }
            };
            let now = now_millis();
            let lease_until = now + opts.lease.as_millis() as i64;
            let batch = u32::try_from(opts.batch.max(1)).unwrap_or(u32::MAX);
            let units = match j {
                JobState::Running => {
                    self.catalog
                        .claim_units(job, &owner, batch, lease_until, now)
                        .await?
                }
                // A cancelled job only purges what it already committed:
                // its unclaimed pending units are cancelled first.
                JobState::Cancelled => {
                    self.release_abandoned_moves(job, now).await?;
                    self.catalog.cancel_pending(job, now).await?;
                    self.catalog
                        .claim_units(job, &owner, batch, lease_until, now)
                        .await?
                }
                JobState::Planning | JobState::Paused | JobState::Done => return Ok(()),
            };
            if units.is_empty() {
                // Done when no purge is left, and no move either (a
                // cancelled job moves nothing more). Two index probes, not
                // a count over the job: idle workers ask every few hundred
                // milliseconds, however large the job.
                let w = self.catalog.job_waiting(job).await?;
                if !w.purges && (!w.moves || j == JobState::Cancelled) {
                    return Ok(());
                }
                // Others hold leases, or purges are not due yet.
                tokio::time::sleep(idle_backoff).await;
                idle_backoff = (idle_backoff * 2).min(Duration::from_millis(500));
                state = None;
                continue;
            }
            idle_backoff = Duration::from_millis(50);
            let (purges, moves): (Vec<UnitRow>, Vec<UnitRow>) = units
                .into_iter()
                .partition(|u| u.state == UnitState::Committed);
            // The turn's purges and moves run side by side: a purge mostly
            // waits on the old region (a file system that discards freed
            // blocks on each deletion waits for the disk), and the copies
            // need not wait for it.
            let purged = async {
                if !purges.is_empty() {
                    on_tick(self.purge_units(&purges, &owner, opts).await?);
                }
                Ok::<_, Error>(())
            };
            let moved = async {
                if !moves.is_empty() {
                    let (moved, _) = self.move_units(&moves, opts, pacer, &owner).await?;
                    on_tick(Tick {
                        bytes: moved,
                        units: 0,
                    });
                }
                Ok::<_, Error>(())
            };
            let (purged, moved) = futures::future::join(purged, moved).await;
            purged?;
            moved?;
        }
    }

    /// Moves one (subject, category) now, for a write that met a region
    /// its policy forbids: if the open job is running this config and has
    /// that unit free (pending, unleased, at most
    /// `EngineOptions::inline_move_max` bytes), this caller claims it and
    /// moves it exactly as a worker would (same protocol, lease, receipt);
    /// its purge is left to the workers after the grace period. Returns
    /// what happened: moved; not moved but the running job will move it (a
    /// worker holds it, or it is too large to move inline); or no job will.
    pub(crate) async fn move_inline(&self, token: &str, category: &str) -> Result<Inline> {
        let Some(job) = self.catalog.open_job().await? else {
            return Ok(Inline::NoJob);
        };
        if !self.config.plans_job(&job.policy) {
            return Ok(Inline::NoJob);
        }
        match job.state {
            JobState::Running => {}
            JobState::Planning => return Ok(Inline::Planning),
            _ => return Ok(Inline::NoJob),
        }
        let max = self.options.inline_move_max;
        if max == 0 {
            return Ok(Inline::JobWill);
        }
        let now = now_millis();
        let opts = MigrateOptions {
            workers: 1,
            rate: 0,
            grace: Duration::from_millis(job.grace_ms.max(0) as u64),
            owner: format!("inline-{}-{now}", std::process::id()),
            ..MigrateOptions::default()
        };
        let lease_until = now + opts.lease.as_millis() as i64;
        let Some(unit) = self
            .catalog
            .claim_unit(
                job.id,
                (token, category),
                &opts.owner,
                i64::try_from(max).unwrap_or(i64::MAX),
                lease_until,
                now,
            )
            .await?
        else {
            return Ok(Inline::JobWill);
        };
        let pacer = Pacer::new(0);
        let (_, placed) = self
            .move_units(std::slice::from_ref(&unit), &opts, &pacer, &opts.owner)
            .await?;
        Ok(if placed.first().copied().unwrap_or(false) {
            Inline::Moved
        } else {
            Inline::JobWill
        })
    }

    /// Records how the worker leaves a unit (its lease is released).
    async fn finish(&self, unit: &UnitRow, owner: &str, outcome: UnitOutcome) -> Result<()> {
        self.catalog
            .finish_unit(
                unit.job,
                &unit.token,
                &unit.category,
                owner,
                &outcome,
                now_millis(),
            )
            .await?;
        Ok(())
    }

    /// Moves a batch of units (one worker turn). Idempotent. Each unit
    /// ends committed (its commit releases it, with its receipt, in one
    /// transaction for the whole batch), with nothing to move, or failed
    /// (its mark cleared, retried later): one unit's failure never stops
    /// the others. Returns the bytes copied and, per unit, whether it is
    /// now where the policy wants it.
    async fn move_units(
        &self,
        units: &[UnitRow],
        opts: &MigrateOptions,
        pacer: &Pacer,
        owner: &str,
    ) -> Result<(u64, Vec<bool>)> {
        let mut placed = vec![false; units.len()];
        let Some(placements) = self.turn_placements(units, owner, opts).await? else {
            return Ok((0, placed));
        };
        // The homes of the units' subjects, read at once.
        let tokens: Vec<String> = units.iter().map(|u| u.token.clone()).collect();
        let unmarked: Vec<_> = units.iter().map(|u| (u, None)).collect();
        let subjects = self.catalog.get_subjects(&tokens);
        let Some(subjects) = self
            .read_or_give_back(&unmarked, owner, opts, subjects)
            .await?
        else {
            return Ok((0, placed));
        };
        // (Futures are collected before they are awaited: an iterator
        // adapter's closure held across an await makes the future lose
        // `Send` for callers that spawn it.)
        let prepared: Vec<_> = units
            .iter()
            .zip(placements)
            .zip(subjects)
            .enumerate()
            .map(|(i, ((u, p), s))| self.prepare_move(i, u, p, s))
            .collect();
        let prepared = futures::future::join_all(prepared).await;
        // The units to mark, with what their moves need.
        let mut marked = Vec::new();
        for (i, (unit, prep)) in units.iter().zip(prepared).enumerate() {
            match prep {
                Ok(Prepared::Nothing) => {
                    self.finish(unit, owner, committed(unit, owner, opts, 0).outcome)
                        .await?;
                    placed[i] = true;
                }
                Ok(Prepared::Move(route)) => marked.push(*route),
                Err(e) => self.give_back(unit, owner, opts, &e, None).await?,
            }
        }
        if marked.is_empty() {
            return Ok((0, placed));
        }
        let now = now_millis();
        let marks: Vec<MoveMark> = marked
            .iter()
            .map(|m| MoveMark {
                token: m.p.token.clone(),
                category: m.p.category.clone(),
                epoch: m.p.epoch,
                to: m.to.clone(),
            })
            .collect();
        let granted = self
            .catalog
            .begin_moves(&marks, now + opts.lease.as_millis() as i64, now)
            .await?;
        let mut moving = Vec::new();
        for (m, ok) in marked.into_iter().zip(granted) {
            if ok {
                moving.push(m);
            } else {
                let unit = &units[m.unit];
                let busy = Error::Busy {
                    category: unit.category.clone(),
                };
                self.give_back(unit, owner, opts, &busy, None).await?;
            }
        }
        // The batch's leases are renewed while its copies and its sync run:
        // a turn may outlast a lease, and a unit waiting for the others of
        // its batch must not be taken over meanwhile.
        let held: Vec<(String, String)> = moving
            .iter()
            .map(|m| (units[m.unit].token.clone(), units[m.unit].category.clone()))
            .collect();
        let job = units[0].job;
        // The marked units' objects, read at once. Their placements are
        // moving: no write can commit, so these are every acknowledged
        // object.
        let keys: Vec<(String, String)> = moving
            .iter()
            .map(|m| (m.p.token.clone(), m.p.category.clone()))
            .collect();
        let with_marks: Vec<_> = moving
            .iter()
            .map(|m| (&units[m.unit], Some(&m.p)))
            .collect();
        let objects = self.catalog.objects_of_pairs(&keys);
        let Some(objects) = self
            .read_or_give_back(&with_marks, owner, opts, objects)
            .await?
        else {
            return Ok((0, placed));
        };
        // Every unit's copies at once; each unit's own objects a few at a time.
        let slots = tokio::sync::Semaphore::new(COPIES_PER_TURN);
        let copied: Vec<_> = moving
            .iter()
            .zip(objects)
            .map(|(m, o)| self.copy_unit(&m.p, o, &m.to, &units[m.unit], pacer, &slots))
            .collect();
        let copied = self
            .renewing(
                job,
                owner,
                &held,
                opts.lease,
                futures::future::join_all(copied),
            )
            .await;
        let mut ready = Vec::new();
        for (m, c) in moving.into_iter().zip(copied) {
            match c {
                Ok(c) => ready.push((m, c)),
                Err(e) => {
                    self.give_back(&units[m.unit], owner, opts, &e, Some(&m.p))
                        .await?
                }
            }
        }
        // Nothing is committed before every new copy is durable: one sync
        // per region for the whole batch.
        let mut regions = BTreeSet::new();
        for (m, _) in &ready {
            regions.extend(m.to.iter().filter(|r| !m.p.regions.contains(r)).cloned());
        }
        let synced: Result<()> = self
            .renewing(job, owner, &held, opts.lease, async {
                for r in &regions {
                    self.region(r)?.sync().await?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = synced {
            let marked: Vec<_> = ready
                .iter()
                .map(|(m, _)| (&units[m.unit], Some(&m.p)))
                .collect();
            self.give_back_all(&marked, owner, opts, &e).await?;
            return Ok((0, placed));
        }
        let mut commits = Vec::new();
        let mut committing = Vec::new();
        for (m, c) in ready {
            match self.unit_move(&m, &units[m.unit], opts, owner, &c) {
                Ok(commit) => {
                    commits.push(commit);
                    committing.push((m, c.moved));
                }
                Err(e) => {
                    self.give_back(&units[m.unit], owner, opts, &e, Some(&m.p))
                        .await?
                }
            }
        }
        if commits.is_empty() {
            return Ok((0, placed));
        }
        let results = match self.catalog.commit_unit_moves(&commits).await {
            Ok(r) => r,
            Err(e) => {
                let marked: Vec<_> = committing
                    .iter()
                    .map(|(m, _)| (&units[m.unit], Some(&m.p)))
                    .collect();
                self.give_back_all(&marked, owner, opts, &Error::from(e))
                    .await?;
                return Ok((0, placed));
            }
        };
        let mut bytes = 0;
        for ((m, moved), r) in committing.into_iter().zip(results) {
            match r {
                Ok(_) => {
                    self.forget_keys(&units[m.unit].token);
                    placed[m.unit] = true;
                    bytes += moved;
                }
                Err(e) => {
                    let e = Error::from(e);
                    self.give_back(&units[m.unit], owner, opts, &e, Some(&m.p))
                        .await?;
                }
            }
        }
        Ok((bytes, placed))
    }

    /// Runs `work`, renewing `owner`'s leases on the `held` units every third
    /// of a lease until it ends. A renewal that fails is only logged: the
    /// commit that follows is fenced by the placements' moving marks, not by
    /// the leases.
    async fn renewing<T>(
        &self,
        job: i64,
        owner: &str,
        held: &[(String, String)],
        lease: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            match tokio::time::timeout(lease / 3, &mut work).await {
                Ok(out) => return out,
                Err(_) => {
                    let until = now_millis() + lease.as_millis() as i64;
                    if let Err(e) = self.catalog.renew_leases(job, owner, held, until).await {
                        tracing::warn!(error = %e, "could not renew a migration batch's leases");
                    }
                }
            }
        }
    }

    /// Works out what a unit's move needs from its placement now (read for
    /// the whole batch at once) and where the policy wants it (the
    /// placement may have changed since planning: re-homing, an earlier
    /// attempt that committed). `index` is the unit's place in its batch.
    async fn prepare_move(
        &self,
        index: usize,
        unit: &UnitRow,
        placement: Option<PlacementRow>,
        subject: Option<SubjectRow>,
    ) -> Result<Prepared> {
        let Some(p) = placement else {
            return Ok(Prepared::Nothing); // erased meanwhile: nothing left to move
        };
        let subject =
            subject.ok_or_else(|| Error::NotFound("subject of a migration unit".into()))?;
        let home: Jurisdiction = subject
            .home
            .parse()
            .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
        let current: Vec<RegionId> = p.regions.iter().filter_map(|r| r.parse().ok()).collect();
        let (to, custodian_to) =
            self.desired_placement(&unit.token, home, &unit.category, Some(&current))?;
        let to: Vec<String> = to.iter().map(|r| r.to_string()).collect();
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
        if set(&to) == set(&p.regions) && custodian_to == p.custodian && p.state.is_active() {
            return Ok(Prepared::Nothing); // already where it belongs
        }
        Ok(Prepared::Move(Box::new(Route {
            unit: index,
            p,
            to,
            custodian_to,
        })))
    }

    /// Leaves a unit whose attempt failed with `e`: its moving mark (if it
    /// set one on `p`) is cleared so writers go on against the old
    /// placement, and the unit is released to be retried or given up (then
    /// without the partial copies its attempts left in its new regions).
    async fn give_back(
        &self,
        unit: &UnitRow,
        owner: &str,
        opts: &MigrateOptions,
        e: &Error,
        p: Option<&PlacementRow>,
    ) -> Result<()> {
        tracing::warn!(category = %unit.category, failures = unit.attempts + 1, error = %e, "migration unit failed");
        if let Some(p) = p
            && let Err(abort) = self
                .catalog
                .abort_move(&unit.token, &unit.category, p.epoch)
                .await
        {
            tracing::warn!(error = %abort, "could not clear a moving mark; its lease will expire");
        }
        let outcome = failed(unit, opts, e);
        if let UnitOutcome::Retry { give_up: true, .. } = &outcome
            && let Err(e) = self.drop_strays_of_given_up(unit).await
        {
            tracing::warn!(error = %e, "could not delete a given-up unit's partial copies; verify reports them");
        }
        self.finish(unit, owner, outcome).await
    }

    /// [`Engine::give_back`] for several units, each with the placement
    /// whose moving mark it set, if any.
    /// (A slice, not an iterator: an adapter's closure held across the
    /// awaits would make callers' futures lose `Send`.)
    async fn give_back_all(
        &self,
        units: &[(&UnitRow, Option<&PlacementRow>)],
        owner: &str,
        opts: &MigrateOptions,
        e: &Error,
    ) -> Result<()> {
        for &(unit, p) in units {
            self.give_back(unit, owner, opts, e, p).await?;
        }
        Ok(())
    }

    /// The placements of a turn's units, read at once; `None` if the read
    /// failed, every unit then given back to be retried (as a failed read
    /// of one unit's placement gives that unit back).
    async fn turn_placements(
        &self,
        units: &[UnitRow],
        owner: &str,
        opts: &MigrateOptions,
    ) -> Result<Option<Vec<Option<PlacementRow>>>> {
        let keys: Vec<(String, String)> = units
            .iter()
            .map(|u| (u.token.clone(), u.category.clone()))
            .collect();
        let unmarked: Vec<_> = units.iter().map(|u| (u, None)).collect();
        let placements = self.catalog.get_placements(&keys);
        self.read_or_give_back(&unmarked, owner, opts, placements)
            .await
    }

    /// The result of a read for a turn's `units` (each with the placement
    /// whose moving mark it set, if any), or `None` if it failed: every one
    /// of them is then given back to be retried.
    async fn read_or_give_back<T>(
        &self,
        units: &[(&UnitRow, Option<&PlacementRow>)],
        owner: &str,
        opts: &MigrateOptions,
        read: impl std::future::Future<Output = domicile_catalog::Result<T>>,
    ) -> Result<Option<T>> {
        match read.await {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                self.give_back_all(units, owner, opts, &Error::from(e))
                    .await?;
                Ok(None)
            }
        }
    }

    /// A unit given up stays where it is: the copies its attempts left in
    /// its new regions go (unless its placement is moving again, which only
    /// its holder could have done).
    async fn drop_strays_of_given_up(&self, unit: &UnitRow) -> Result<()> {
        if let Some(p) = self
            .catalog
            .get_placement(&unit.token, &unit.category)
            .await?
            && p.state.is_active()
        {
            self.drop_strays(unit, &p.regions).await?;
        }
        Ok(())
    }

    /// Copies every indexed blob of a marked unit (`objects`, listed after
    /// its mark) into the regions of `to` that lack it, verifying checksums,
    /// each copy in one of the turn's `slots`.
    async fn copy_unit(
        &self,
        p: &PlacementRow,
        objects: Vec<ObjectRow>,
        to: &[String],
        unit: &UnitRow,
        pacer: &Pacer,
        slots: &tokio::sync::Semaphore,
    ) -> Result<Copied> {
        let new_regions: Vec<&String> = to.iter().filter(|r| !p.regions.contains(r)).collect();
        // A mark left by a crashed worker, or an earlier failed attempt, may
        // have left complete copies behind: only then are they looked for.
        let resumed = !p.state.is_active() || unit.attempts > 0;
        if resumed {
            // And half-written ones, staged under names no listing shows: in
            // a region outside the placement only a mover of this unit
            // writes, so any there is an earlier attempt's, killed mid-copy
            // (left alone, `verify` would report it once old).
            let prefix = domicile_store::layout::prefix_for_category(&p.token, &p.category)?;
            for r in &new_regions {
                self.region(r)?
                    .remove_leftovers(Some(&prefix), Duration::ZERO)
                    .await?;
            }
        }
        let mut done = Copied {
            objects: objects.len(),
            bytes: objects.iter().map(|o| o.stored_size).sum(),
            moved: 0,
            verified: 0,
        };
        let copies: Vec<_> = objects
            .iter()
            .map(|o| async {
                let _slot = slots
                    .acquire()
                    .await
                    .map_err(|_| Error::Internal("copy slots closed".into()))?;
                self.copy_object(o, &p.regions, &new_regions, pacer, resumed)
                    .await
            })
            .collect();
        let mut copies = futures::stream::iter(copies).buffer_unordered(COPIES_IN_FLIGHT);
        while let Some(copied) = copies.next().await {
            let (bytes, copies) = copied?;
            done.moved += bytes;
            done.verified += copies;
        }
        Ok(done)
    }

    /// The commit of a unit whose copies are durable: the new placement
    /// (with the data key re-wrapped if the custodian changes), its ledger
    /// receipt and the unit's release.
    fn unit_move(
        &self,
        route: &Route,
        unit: &UnitRow,
        opts: &MigrateOptions,
        owner: &str,
        c: &Copied,
    ) -> Result<UnitMove> {
        let Route {
            p,
            to,
            custodian_to,
            ..
        } = route;
        let wrapped = if *custodian_to == p.custodian {
            p.wrapped_key.clone()
        } else {
            let dek = self.data_key(p)?;
            self.keyring(custodian_to)?
                .wrap(&dek, &Engine::key_context(&p.token, &p.category))?
        };
        let ledger = LedgerAppend {
            kind: "move".into(),
            subject: Some(p.token.clone()),
            body: json!({
                "job": unit.job,
                "category": p.category,
                "from": p.regions,
                "to": to,
                "custodian_from": p.custodian,
                "custodian_to": custodian_to,
                "key_rewrapped": *custodian_to != p.custodian,
                "epoch": p.epoch + 1,
                "objects": c.objects,
                "bytes": c.bytes,
                "copies_verified": c.verified,
            }),
            at: now_millis(),
        };
        Ok(UnitMove {
            fence: Fence {
                token: p.token.clone(),
                category: p.category.clone(),
                epoch: p.epoch,
            },
            regions: to.to_vec(),
            custodian: custodian_to.to_owned(),
            wrapped_key: wrapped,
            ledger,
            release: committed(unit, owner, opts, c.moved),
        })
    }

    /// Copies one object's blob into each of `new_regions` that lacks it,
    /// from the first of `sources` that serves a good copy. Returns the
    /// bytes copied and the copies verified. With `resumed`, a complete
    /// copy already in place (checked against the catalog's checksum) is
    /// kept instead of copied again.
    async fn copy_object(
        &self,
        o: &ObjectRow,
        sources: &[String],
        new_regions: &[&String],
        pacer: &Pacer,
        resumed: bool,
    ) -> Result<(u64, u64)> {
        let path = BlobPath::new(&o.token, &o.category, &o.blob_id)?;
        let mut moved = 0u64;
        let mut verified = 0u64;
        for r in new_regions {
            let dest = self.region(r)?;
            if resumed
                && let Ok(Some(size)) = dest.head(&path).await
                && size == o.stored_size as u64
                && let Ok((_, sum)) = domicile_store::checksum_of(dest, &path).await
                && sum == o.checksum
            {
                verified += 1;
                continue;
            }
            // Copies are written without a per-file fsync and made durable
            // together (one `sync` per region) before the commit.
            let bulk = dest.deferred();
            pacer.take(o.stored_size as u64).await;
            let mut last_err = None;
            let mut copied = false;
            for src in sources {
                let from = self.region(src)?;
                match domicile_store::copy_blob(from, &bulk, &path, &o.checksum).await {
                    Ok(n) => {
                        moved += n;
                        verified += 1;
                        copied = true;
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            if !copied {
                return Err(last_err
                    .map(Error::from)
                    .unwrap_or_else(|| Error::Internal("a placement without regions".into())));
            }
        }
        Ok((moved, verified))
    }

    /// Purges a batch of committed units (one worker turn): every blob of
    /// each unit's (subject, category) left in regions outside its
    /// placement is deleted, and the receipts and the units' releases are
    /// written in one transaction. A unit whose purge fails is retried.
    async fn purge_units(
        &self,
        units: &[UnitRow],
        owner: &str,
        opts: &MigrateOptions,
    ) -> Result<Tick> {
        // The claim that handed these purges out returned only once the
        // moves they follow were durable (`JobStore::claim_units`).
        let Some(placements) = self.turn_placements(units, owner, opts).await? else {
            return Ok(Tick::default());
        };
        let purged: Vec<_> = units
            .iter()
            .zip(placements)
            .map(|(u, p)| self.purge_blobs(u, p))
            .collect();
        let purged = futures::future::join_all(purged).await;
        let mut receipts = Vec::new();
        let mut tick = Tick::default();
        for (unit, p) in units.iter().zip(purged) {
            match p {
                Ok(Some(receipt)) => receipts.push(UnitReceipt {
                    token: unit.token.clone(),
                    category: unit.category.clone(),
                    release: UnitRelease {
                        job: unit.job,
                        owner: owner.to_string(),
                        outcome: UnitOutcome::Done,
                        now: receipt.at,
                    },
                    receipt,
                }),
                Ok(None) => {
                    self.finish(unit, owner, UnitOutcome::Done).await?;
                    tick.units += 1;
                }
                Err(e) => self.give_back(unit, owner, opts, &e, None).await?,
            }
        }
        if !receipts.is_empty() {
            self.catalog.finish_units_with_receipts(&receipts).await?;
            tick.units += receipts.len() as u64;
        }
        Ok(tick)
    }

    /// Deletes every blob of the unit's (subject, category) from regions
    /// outside its placement (`placement`, read for the whole batch).
    /// Returns the purge's ledger receipt, or `None` if there was nothing
    /// to purge (erased meanwhile, or no old region).
    async fn purge_blobs(
        &self,
        unit: &UnitRow,
        placement: Option<PlacementRow>,
    ) -> Result<Option<LedgerAppend>> {
        let Some(p) = placement else {
            // Erased: erasure purged everything.
            return Ok(None);
        };
        if !p.state.is_active() {
            return Err(Error::Busy {
                category: unit.category.clone(),
            });
        }
        let mut purged = Vec::new();
        let mut blobs = 0u64;
        for r in unit.from.iter().filter(|r| !p.regions.contains(r)) {
            let Some(store) = self.regions.get(r) else {
                continue;
            };
            blobs += purge_prefix(store, &unit.token, &unit.category).await?;
            purged.push(r.clone());
        }
        if purged.is_empty() {
            return Ok(None);
        }
        Ok(Some(LedgerAppend {
            kind: "purge".into(),
            subject: Some(unit.token.clone()),
            body: json!({"job": unit.job, "category": unit.category, "regions": purged, "blobs": blobs}),
            at: now_millis(),
        }))
    }
}

/// Deletes every blob of a (subject, category) in `store`, with any
/// foreign object under its prefix and any staging leftover of a write
/// killed mid-way (which holds ciphertext too). Returns how many objects
/// were deleted.
async fn purge_prefix(
    store: &domicile_store::RegionStore,
    token: &str,
    category: &str,
) -> Result<u64> {
    let prefix = domicile_store::layout::prefix_for_category(token, category)?;
    Ok(store.delete_prefix(&prefix).await?)
}
