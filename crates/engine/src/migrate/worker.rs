//! The migration worker: a loop that claims a batch of units per turn and
//! moves or purges them, with a status it can report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domicile_catalog::{JobState, PlacementRow, UnitOutcome, UnitRelease, UnitRow, UnitState};
use serde::Serialize;

use super::pacer::Pacer;
use super::{MigrateOptions, Tick};
use crate::clock::now_millis;
use crate::engine::Acting;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// How often a worker re-reads its job's state (pause, cancel).
const JOB_POLL: Duration = Duration::from_millis(250);

/// How long a worker's turn should take. A turn's units are marked moving
/// from its marks to its commit (a write to one of them waits that long),
/// and each turn pays a few catalog transactions and one sync per region
/// whatever its size: so a worker doubles its batch while its turns take
/// under half of this (small units), and halves it when one takes over
/// twice this (large ones), never above `MigrateOptions::batch`.
pub(super) const TURN_TARGET: Duration = Duration::from_millis(250);

/// Units in a worker's first turn (fewer if `MigrateOptions::batch` is).
pub(super) const FIRST_BATCH: usize = 8;

/// The batch of a worker's next turn, after one of `batch` units took
/// `took` (see [`TURN_TARGET`]): between 1 and `most`.
pub(super) fn next_batch(batch: usize, most: usize, took: Duration) -> usize {
    let most = most.max(1);
    let next = if took < TURN_TARGET / 2 {
        batch.saturating_mul(2)
    } else if took > TURN_TARGET * 2 {
        batch / 2
    } else {
        batch
    };
    next.clamp(1, most)
}

/// Where a worker stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// No unit free for it: others hold leases, or purges are not due yet.
    #[default]
    Idle,
    /// A turn's units in hand.
    Working,
    /// Its loop has ended: the job is done, paused or cancelled.
    Done,
}

/// What a worker has done so far, and where it stands.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WorkerStatus {
    pub state: WorkerState,
    /// Units it left where the policy wants them (moved, or found there).
    pub units_moved: u64,
    /// Units whose old copies it purged.
    pub units_purged: u64,
    /// Attempts that failed and gave their unit back (to be retried, or
    /// given up).
    pub units_failed: u64,
    /// Bytes it copied.
    pub bytes_moved: u64,
}

/// A migration worker: what its loop needs (the engine, the job, the name
/// it holds leases under, the job's options and this process's pacer) and
/// its status. A write's inline move is a worker of one turn.
#[derive(Debug)]
pub(crate) struct MigrationWorker<'a> {
    pub(super) engine: &'a Engine,
    pub(super) job: i64,
    pub(super) owner: String,
    pub(super) opts: &'a MigrateOptions,
    pub(super) pacer: &'a Pacer,
    /// The policy version the worker's turns act on: followed between
    /// turns, and the version every move it commits is fenced by.
    acting: Mutex<Arc<Acting>>,
    status: Mutex<WorkerStatus>,
}

/// How a unit is left after an attempt that failed with `e`: retried after
/// a backoff that grows with its failures, or given up after
/// `max_attempts` of them. `attempts` counts earlier failures only (not
/// claims), so crashes never bring a unit closer to being given up.
pub(super) fn failed(unit: &UnitRow, opts: &MigrateOptions, e: &Error) -> UnitOutcome {
    let failures = unit.attempts + 1;
    UnitOutcome::Retry {
        error: e.to_string(),
        retry_at: now_millis() + (200i64 << failures.clamp(1, 8)).min(30_000),
        give_up: failures >= opts.max_attempts,
    }
}

/// The release of a unit whose move commits (or is found done) now: its
/// purge is due after the grace period.
pub(super) fn committed(
    unit: &UnitRow,
    owner: &str,
    opts: &MigrateOptions,
    moved: u64,
) -> UnitRelease {
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

impl<'a> MigrationWorker<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        job: i64,
        owner: String,
        opts: &'a MigrateOptions,
        pacer: &'a Pacer,
        acting: Arc<Acting>,
    ) -> Self {
        MigrationWorker {
            engine,
            job,
            owner,
            opts,
            pacer,
            acting: Mutex::new(acting),
            status: Mutex::new(WorkerStatus::default()),
        }
    }

    /// The policy version this turn acts on.
    pub(super) fn acting(&self) -> Arc<Acting> {
        match self.acting.lock() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// What the worker has done so far, and where it stands.
    pub(crate) fn status(&self) -> WorkerStatus {
        self.status.lock().map(|s| *s).unwrap_or_default()
    }

    fn note(&self, f: impl FnOnce(&mut WorkerStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Runs turns until the job is done, paused or cancelled (then with no
    /// purge left). Returns the worker's status at the end.
    pub(super) async fn run(&self, on_tick: &(dyn Fn(Tick) + Sync)) -> Result<WorkerStatus> {
        let ended = self.turns(on_tick).await;
        self.note(|s| s.state = WorkerState::Done);
        ended.map(|()| self.status())
    }

    async fn turns(&self, on_tick: &(dyn Fn(Tick) + Sync)) -> Result<()> {
        let mut idle_backoff = Duration::from_millis(50);
        // The job's state, re-read at most every JOB_POLL: a pause or a
        // cancel is seen within that, without a read per unit.
        let mut state: Option<(JobState, Instant)> = None;
        let mut batch = FIRST_BATCH.min(self.opts.batch.max(1));
        loop {
            let j = match state {
                Some((s, at)) if at.elapsed() < JOB_POLL => s,
                _ => {
                    let Some(j) = self.engine.catalog.job(self.job).await? else {
                        return Ok(());
                    };
                    // The policy, with the job's state: a job planned
                    // under other rules than the active ones moves nothing
                    // more (its commits would be refused anyway).
                    let acting = self.engine.follow_policy().await?;
                    if j.state.is_open() && !acting.config.plans_job(&j.policy) {
                        return Err(Error::Invalid(format!(
                            "migration job {} was planned under another policy than the active version {}: cancel it and apply again",
                            self.job, acting.version
                        )));
                    }
                    if let Ok(mut a) = self.acting.lock() {
                        *a = acting;
                    }
                    state = Some((j.state, Instant::now()));
                    j.state
                }
            };
            let now = now_millis();
            let lease_until = now + self.opts.lease.as_millis() as i64;
            let turn = Instant::now();
            let claim = u32::try_from(batch).unwrap_or(u32::MAX);
            let units = match j {
                JobState::Running => {
                    self.engine
                        .catalog
                        .claim_units(self.job, &self.owner, claim, lease_until, now)
                        .await?
                }
                // A cancelled job only purges what it already committed:
                // its unclaimed pending units are cancelled first.
                JobState::Cancelled => {
                    self.engine.release_abandoned_moves(self.job, now).await?;
                    self.engine.catalog.cancel_pending(self.job, now).await?;
                    self.engine
                        .catalog
                        .claim_units(self.job, &self.owner, claim, lease_until, now)
                        .await?
                }
                JobState::Planning | JobState::Paused | JobState::Done => return Ok(()),
            };
            if units.is_empty() {
                // Done when no purge is left, and no move either (a
                // cancelled job moves nothing more). Two index probes, not
                // a count over the job: idle workers ask every few hundred
                // milliseconds, however large the job.
                let w = self.engine.catalog.job_waiting(self.job).await?;
                if !w.purges && (!w.moves || j == JobState::Cancelled) {
                    return Ok(());
                }
                // Others hold leases, or purges are not due yet.
                self.note(|s| s.state = WorkerState::Idle);
                tokio::time::sleep(idle_backoff).await;
                idle_backoff = (idle_backoff * 2).min(Duration::from_millis(500));
                state = None;
                continue;
            }
            idle_backoff = Duration::from_millis(50);
            self.note(|s| s.state = WorkerState::Working);
            let (purges, moves): (Vec<UnitRow>, Vec<UnitRow>) = units
                .into_iter()
                .partition(|u| u.state == UnitState::Committed);
            // The turn's purges and moves run side by side: a purge mostly
            // waits on the old region (a file system that discards freed
            // blocks on each deletion waits for the disk), and the copies
            // need not wait for it.
            let purged = async {
                if !purges.is_empty() {
                    let tick = self.purge_units(&purges).await?;
                    self.note(|s| s.units_purged += tick.units);
                    on_tick(Tick {
                        worker: self.status(),
                        ..tick
                    });
                }
                Ok::<_, Error>(())
            };
            let moved = async {
                if !moves.is_empty() {
                    let (moved, placed) = self.move_units(&moves).await?;
                    let placed = placed.iter().filter(|p| **p).count() as u64;
                    self.note(|s| {
                        s.units_moved += placed;
                        s.bytes_moved += moved;
                    });
                    on_tick(Tick {
                        bytes: moved,
                        units: 0,
                        worker: self.status(),
                    });
                }
                Ok::<_, Error>(())
            };
            let (purged, moved) = futures::future::join(purged, moved).await;
            purged?;
            moved?;
            batch = next_batch(batch, self.opts.batch, turn.elapsed());
        }
    }

    /// Leaves a unit whose attempt failed with `e`: its moving mark (if it
    /// set one on `p`) is cleared so writers go on against the old
    /// placement, and the unit is released to be retried or given up (then
    /// without the partial copies its attempts left in its new regions).
    pub(super) async fn give_back(
        &self,
        unit: &UnitRow,
        e: &Error,
        p: Option<&PlacementRow>,
    ) -> Result<()> {
        self.note(|s| s.units_failed += 1);
        tracing::warn!(category = %unit.category, failures = unit.attempts + 1, error = %e, "migration unit failed");
        if let Some(p) = p
            && let Err(abort) = self
                .engine
                .catalog
                .abort_move(&unit.token, &unit.category, p.epoch)
                .await
        {
            tracing::warn!(error = %abort, "could not clear a moving mark; its lease will expire");
        }
        let outcome = failed(unit, self.opts, e);
        if let UnitOutcome::Retry { give_up: true, .. } = &outcome
            && let Err(e) = self.engine.drop_strays_of_given_up(unit).await
        {
            tracing::warn!(error = %e, "could not delete a given-up unit's partial copies; verify reports them");
        }
        self.finish(unit, outcome).await
    }

    /// [`MigrationWorker::give_back`] for several units, each with the placement
    /// whose moving mark it set, if any.
    /// (A slice, not an iterator: an adapter's closure held across the
    /// awaits would make callers' futures lose `Send`.)
    pub(super) async fn give_back_all(
        &self,
        units: &[(&UnitRow, Option<&PlacementRow>)],
        e: &Error,
    ) -> Result<()> {
        for &(unit, p) in units {
            self.give_back(unit, e, p).await?;
        }
        Ok(())
    }

    /// The placements of a turn's units, read at once; `None` if the read
    /// failed, every unit then given back to be retried (as a failed read
    /// of one unit's placement gives that unit back).
    pub(super) async fn turn_placements(
        &self,
        units: &[UnitRow],
    ) -> Result<Option<Vec<Option<PlacementRow>>>> {
        let keys: Vec<(String, String)> = units
            .iter()
            .map(|u| (u.token.clone(), u.category.clone()))
            .collect();
        let unmarked: Vec<_> = units.iter().map(|u| (u, None)).collect();
        let placements = self.engine.catalog.get_placements(&keys);
        self.read_or_give_back(&unmarked, placements).await
    }

    /// The result of a read for a turn's `units` (each with the placement
    /// whose moving mark it set, if any), or `None` if it failed: every one
    /// of them is then given back to be retried.
    pub(super) async fn read_or_give_back<T>(
        &self,
        units: &[(&UnitRow, Option<&PlacementRow>)],
        read: impl std::future::Future<Output = domicile_catalog::Result<T>>,
    ) -> Result<Option<T>> {
        match read.await {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                self.give_back_all(units, &Error::from(e)).await?;
                Ok(None)
            }
        }
    }

    /// Records how the worker leaves a unit (its lease is released).
    pub(super) async fn finish(&self, unit: &UnitRow, outcome: UnitOutcome) -> Result<()> {
        self.engine
            .catalog
            .finish_unit(
                unit.job,
                &unit.token,
                &unit.category,
                &self.owner,
                &outcome,
                now_millis(),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_doubles_on_quick_turns_and_halves_on_slow_ones_within_its_bounds() {
        let quick = TURN_TARGET / 4;
        let slow = TURN_TARGET * 3;
        assert_eq!(next_batch(8, 32, quick), 16);
        assert_eq!(next_batch(16, 32, quick), 32);
        assert_eq!(next_batch(32, 32, quick), 32);
        assert_eq!(next_batch(32, 32, TURN_TARGET), 32);
        assert_eq!(next_batch(32, 32, slow), 16);
        assert_eq!(next_batch(1, 32, slow), 1);
        // A smaller most (a user's --batch) bounds it, even below the
        // batch a worker has.
        assert_eq!(next_batch(8, 4, TURN_TARGET), 4);
        assert_eq!(next_batch(8, 0, quick), 1);
    }
}
