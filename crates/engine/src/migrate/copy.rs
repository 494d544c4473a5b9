//! A unit's blobs copied, ciphertext only, into its new regions and
//! verified against the catalog's checksums, paced to the job's rate.

use std::time::Duration;

use domicile_catalog::{ObjectRow, PlacementRow, UnitRow};
use domicile_store::BlobPath;
use futures::StreamExt;

use super::worker::MigrationWorker;
use crate::error::{Error, Result};

/// Blobs of one unit copied at once: a unit of many small objects is bound
/// by per-file latency (open, create, rename), not by bytes.
const COPIES_IN_FLIGHT: usize = 4;

/// Blobs copied at once by one worker turn, over all its units: enough to
/// hide per-file latency. (Between local folders the copies run on a pool
/// of their own threads, below the service's priority: `store::folder`.)
pub(super) const COPIES_PER_TURN: usize = 8;

/// What a unit's copies came to.
#[derive(Debug, Clone)]
pub(super) struct Copied {
    pub(super) objects: usize,
    /// Stored bytes of the unit's objects.
    pub(super) bytes: i64,
    /// Bytes copied now (not already in place).
    pub(super) moved: u64,
    /// Copies checked against the catalog's checksums.
    pub(super) verified: u64,
    /// The blobs the unit's objects had before the move: what its purge
    /// deletes from the regions it leaves.
    pub(super) blobs: Vec<String>,
}

impl MigrationWorker<'_> {
    /// Copies every indexed blob of a marked unit (`objects`, listed after
    /// its mark) into the regions of `to` that lack it, verifying checksums,
    /// each copy in one of the turn's `slots`.
    pub(super) async fn copy_unit(
        &self,
        p: &PlacementRow,
        objects: Vec<ObjectRow>,
        to: &[String],
        unit: &UnitRow,
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
                self.engine
                    .region(r)?
                    .remove_leftovers(Some(&prefix), Duration::ZERO)
                    .await?;
            }
        }
        let mut done = Copied {
            objects: objects.len(),
            bytes: objects.iter().map(|o| o.stored_size).sum(),
            moved: 0,
            verified: 0,
            blobs: objects.iter().map(|o| o.blob_id.clone()).collect(),
        };
        let copies: Vec<_> = objects
            .iter()
            .map(|o| async {
                let _slot = slots
                    .acquire()
                    .await
                    .map_err(|_| Error::Internal("copy slots closed".into()))?;
                self.copy_object(o, &p.regions, &new_regions, resumed).await
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
        resumed: bool,
    ) -> Result<(u64, u64)> {
        let path = BlobPath::new(&o.token, &o.category, &o.blob_id)?;
        let mut moved = 0u64;
        let mut verified = 0u64;
        for r in new_regions {
            let dest = self.engine.region(r)?;
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
            self.pacer.take(o.stored_size as u64).await;
            let mut last_err = None;
            let mut copied = false;
            for src in sources {
                let from = self.engine.region(src)?;
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
}
