//! After the grace period, a committed unit's old copies are deleted with
//! a ledger receipt; a unit that will not commit loses the copies its
//! attempts left in its new regions.

use domicile_catalog::{
    LedgerAppend, PlacementRow, UnitOutcome, UnitReceipt, UnitRelease, UnitRow,
};
use serde_json::json;

use super::Tick;
use super::worker::MigrationWorker;
use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::{Error, Result};

impl MigrationWorker<'_> {
    /// Purges a batch of committed units (one worker turn): every blob of
    /// each unit's (subject, category) left in regions outside its
    /// placement is deleted, and the receipts and the units' releases are
    /// written in one transaction. A unit whose purge fails is retried.
    pub(super) async fn purge_units(&self, units: &[UnitRow]) -> Result<Tick> {
        // The claim that handed these purges out returned only once the
        // moves they follow were durable (`JobStore::claim_units`).
        let Some(placements) = self.turn_placements(units).await? else {
            return Ok(Tick::default());
        };
        let purged: Vec<_> = units
            .iter()
            .zip(placements)
            .map(|(u, p)| self.engine.purge_blobs(u, p))
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
                        owner: self.owner.clone(),
                        outcome: UnitOutcome::Done,
                        now: receipt.at,
                    },
                    receipt,
                }),
                Ok(None) => {
                    self.finish(unit, UnitOutcome::Done).await?;
                    tick.units += 1;
                }
                Err(e) => self.give_back(unit, &e, None).await?,
            }
        }
        if !receipts.is_empty() {
            self.engine
                .catalog
                .finish_units_with_receipts(&receipts)
                .await?;
            tick.units += receipts.len() as u64;
        }
        Ok(tick)
    }
}

impl Engine {
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
            actor: crate::actor::current(),
        }))
    }

    /// Deletes a unit's blobs in the regions it was to move to that its
    /// placement (`regions`) does not include: copies of attempts that will
    /// not be committed, which nothing indexes.
    pub(super) async fn drop_strays(&self, unit: &UnitRow, regions: &[String]) -> Result<()> {
        for r in unit.to.iter().filter(|r| !regions.contains(r)) {
            if let Some(store) = self.regions.get(r) {
                purge_prefix(store, &unit.token, &unit.category).await?;
            }
        }
        Ok(())
    }

    /// A unit given up stays where it is: the copies its attempts left in
    /// its new regions go (unless its placement is moving again, which only
    /// its holder could have done).
    pub(super) async fn drop_strays_of_given_up(&self, unit: &UnitRow) -> Result<()> {
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
