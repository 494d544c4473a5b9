//! A job's life: created from the plan of the current config, paused,
//! cancelled, resumed; `run_migration` runs this process's workers on it
//! and closes it when nothing is left.

use domicile_catalog::{
    JobCounts, JobRow, JobState, JobWaiting, LedgerAppend, PlacementState, RunRow, UnitState,
};
use serde_json::json;

use super::pacer::Pacer;
use super::worker::MigrationWorker;
use super::{MigrateOptions, MigrationStatus, Tick};
use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::{Error, Result};

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
        // Planned under the active policy, and recorded with its digest.
        let acting = self.follow_policy().await?;
        let now = now_millis();
        let job = JobRow {
            id: 0,
            state: JobState::Running,
            created_at: now,
            finished_at: None,
            policy: acting.config.plan_digest(),
            rate: opts.rate as i64,
            grace_ms: opts.grace.as_millis() as i64,
            units: 0,
            bytes: 0,
        };
        let id = self.catalog.create_job(&job).await?;
        let units = self.plan_units(id, now, acting.config.clone()).await?;
        self.catalog
            .append_ledger(LedgerAppend {
                kind: "migration".into(),
                subject: None,
                body: json!({"job": id, "event": "started", "policy": job.policy,
                             "units": units}),
                at: now,
                actor: crate::actor::current(),
            })
            .await?;
        self.migration_status(Some(id)).await
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
                actor: crate::actor::current(),
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
    pub(super) async fn release_abandoned_moves(&self, job: i64, now: i64) -> Result<()> {
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

    /// Records what this process's workers moved of `job` since
    /// `started_at` (the units committed meanwhile, and their bytes), the
    /// measure the plan's duration estimate is made from. A run that
    /// committed nothing measures nothing and is not recorded; a failure to
    /// record is logged and does not fail the migration.
    async fn record_run(&self, job: i64, owner: &str, started_at: i64, before: &JobCounts) {
        let finished_at = now_millis();
        let record = async {
            let after = self.catalog.job_counts(job, finished_at).await?;
            let units = (after.done + after.committed) - (before.done + before.committed);
            if units <= 0 {
                return Ok(());
            }
            self.catalog
                .record_run(&RunRow {
                    job,
                    owner: owner.to_string(),
                    started_at,
                    finished_at,
                    units,
                    bytes: (after.bytes_moved - before.bytes_moved).max(0),
                })
                .await
        };
        if let Err(e) = record.await {
            tracing::warn!(job, error = %e, "cannot record the migration run's rate");
        }
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
        let acting = self.follow_policy().await?;
        if !acting.config.plans_job(&job.policy) && job.state.is_open() {
            return Err(Error::Invalid(format!(
                "migration job {} was planned for another config (digest {}, this one is {}): its policy, regions, custodians or reach differ; cancel it and apply again",
                job.id,
                job.policy,
                acting.config.plan_digest()
            )));
        }
        if job.state == JobState::Planning {
            // Its creator died while adding its units: start the planning
            // over, or a part of the plan would pass for the whole.
            let discarded = self.catalog.discard_units(job.id).await?;
            let units = self
                .plan_units(job.id, now_millis(), acting.config.clone())
                .await?;
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
                        actor: crate::actor::current(),
                    })
                    .await?;
            }
        }
        if job.state == JobState::Paused {
            self.catalog
                .set_job_state(job.id, JobState::Running, now_millis())
                .await?;
        }
        let started_at = now_millis();
        let moved_before = self.catalog.job_counts(job.id, started_at).await?;
        let pacer = Pacer::new(opts.rate);
        let workers: Vec<_> = (0..opts.workers.max(1))
            .map(|w| {
                MigrationWorker::new(
                    self,
                    job.id,
                    format!("{}-w{w}", opts.owner),
                    opts,
                    &pacer,
                    acting.clone(),
                )
            })
            .collect();
        let results = futures::future::join_all(
            workers
                .iter()
                .map(|w| crate::actor::acting_as(crate::actor::worker(&w.owner), w.run(on_tick))),
        )
        .await;
        for r in results {
            let status = r?;
            tracing::debug!(job = job.id, ?status, "migration worker stopped");
        }
        self.record_run(job.id, &opts.owner, started_at, &moved_before)
            .await;
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
                    actor: crate::actor::current(),
                })
                .await?;
            return self.migration_status(Some(job.id)).await;
        }
        Ok(status)
    }
}
