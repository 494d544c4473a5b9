//! The write path's inline move: a write that meets a region its policy
//! now forbids moves its own (subject, category) at once, as a worker of
//! one turn would, if the running job has that unit free.

use std::sync::Arc;
use std::time::Duration;

use domicile_catalog::JobState;

use super::MigrateOptions;
use super::pacer::Pacer;
use super::worker::MigrationWorker;
use crate::clock::now_millis;
use crate::engine::Acting;
use crate::engine::Engine;
use crate::error::Result;

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

impl Engine {
    /// Moves one (subject, category) now, for a write that met a region
    /// its policy forbids: if the open job is running this config and has
    /// that unit free (pending, unleased, at most
    /// `EngineOptions::inline_move_max` bytes), this caller claims it and
    /// moves it exactly as a worker would (same protocol, lease, receipt);
    /// its purge is left to the workers after the grace period. Returns
    /// what happened: moved; not moved but the running job will move it (a
    /// worker holds it, or it is too large to move inline); or no job will.
    pub(crate) async fn move_inline(
        &self,
        acting: &Arc<Acting>,
        token: &str,
        category: &str,
    ) -> Result<Inline> {
        let Some(job) = self.catalog.open_job().await? else {
            return Ok(Inline::NoJob);
        };
        if !acting.config.plans_job(&job.policy) {
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
        let worker = MigrationWorker::new(
            self,
            job.id,
            opts.owner.clone(),
            &opts,
            &pacer,
            acting.clone(),
        );
        let (_, placed) = worker.move_units(std::slice::from_ref(&unit)).await?;
        Ok(if placed.first().copied().unwrap_or(false) {
            Inline::Moved
        } else {
            Inline::JobWill
        })
    }
}
