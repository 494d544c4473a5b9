//! A job's units, planned from the current config.

use domicile_catalog::{JobState, UnitRow, UnitState};
use domicile_core::plan::MoveReason;

use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::Result;

impl Engine {
    /// Plans the job's units from the current config and adds them page by
    /// page (memory stays bounded however many units there are), then sets
    /// the job running. Until then the job is "planning": if its creator
    /// dies part-way, the next `run_migration` discards the partial units
    /// and plans it again, so a partial job never passes for the whole.
    /// Returns how many units were added.
    pub(super) async fn plan_units(
        &self,
        id: i64,
        now: i64,
        config: std::sync::Arc<domicile_core::Config>,
    ) -> Result<usize> {
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
}
