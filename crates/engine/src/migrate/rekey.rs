//! A unit whose custodian changes is re-keyed as it moves, never only
//! re-wrapped: the new custodian makes a fresh data key, and every object
//! of the unit is read once from a copy, decrypted under the old key, and
//! written as a new blob under the new key into every region of the new
//! placement (kept regions too), with its name and metadata sealed again.
//! The old custodian never held the new key, so once the old blobs are
//! purged it can open nothing of the unit.
//!
//! Each new blob is recorded as a write intent before it is written, so a
//! move killed midway leaves nothing that is not collected. The commit
//! (`Catalog::commit_unit_moves`) swaps the index rows to the new blobs in
//! the transaction that moves the placement, and refuses the move unless
//! it names every object of the unit.

use domicile_catalog::{ObjectRow, PlacementRow, RekeyedObject, UnitRow};
use domicile_store::{BlobPath, DataKey, RegionStore};
use futures::StreamExt;

use super::copy::Copied;
use super::worker::MigrationWorker;
use crate::data::{meta_context, name_context};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Objects of one unit re-keyed at once.
const REKEYS_IN_FLIGHT: usize = 4;

/// The fresh data key of a re-keyed unit, and its wrapped form from the
/// new custodian.
pub(super) struct NewKey {
    pub(super) dek: DataKey,
    pub(super) wrapped: Vec<u8>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").finish_non_exhaustive()
    }
}

impl MigrationWorker<'_> {
    /// A fresh data key for `p`'s (subject, category), made by the
    /// custodian it moves to.
    pub(super) async fn new_key(&self, p: &PlacementRow, custodian: &str) -> Result<NewKey> {
        let (dek, wrapped) = self
            .engine
            .keyring(custodian)
            .await?
            .generate(&Engine::key_context(&p.token, &p.category))
            .await?;
        Ok(NewKey { dek, wrapped })
    }

    /// Rewrites every object of a marked unit under `key` into every region
    /// of `to`. Returns what was written and the objects' new index fields.
    pub(super) async fn rekey_unit(
        &self,
        p: &PlacementRow,
        objects: Vec<ObjectRow>,
        to: &[String],
        unit: &UnitRow,
        key: &NewKey,
        slots: &tokio::sync::Semaphore,
    ) -> Result<(Copied, Vec<RekeyedObject>)> {
        let old = self.engine.data_key(p).await?;
        // An earlier attempt killed mid-write may have left staged, half
        // written files in the new regions: those go. Its complete blobs
        // stay: another attempt of this unit may still be running (its
        // lease lapsed), and whichever commits first uses its own blobs;
        // the loser's blobs are covered by their write intents.
        // Copies of the objects' current blobs there (an attempt that
        // copied rather than re-keyed) are never committed by a re-keyed
        // move: they go too.
        if !p.state.is_active() || unit.attempts > 0 {
            let prefix = domicile_store::layout::prefix_for_category(&p.token, &p.category)?;
            for r in to.iter().filter(|r| !p.regions.contains(r)) {
                let store = self.engine.region(r)?;
                store
                    .remove_leftovers(Some(&prefix), std::time::Duration::ZERO)
                    .await?;
                for o in &objects {
                    store
                        .delete(&BlobPath::new(&o.token, &o.category, &o.blob_id)?)
                        .await?;
                }
            }
        }
        let dests = to
            .iter()
            .map(|r| Ok(self.engine.region(r)?.deferred()))
            .collect::<Result<Vec<RegionStore>>>()?;
        let mut done = Copied {
            objects: objects.len(),
            bytes: 0,
            moved: 0,
            verified: 0,
            blobs: objects.iter().map(|o| o.blob_id.clone()).collect(),
        };
        // Every new blob's write intent first, in one transaction.
        let paths = objects
            .iter()
            .map(|o| BlobPath::new_random(&o.token, &o.category))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let intents: Vec<_> = paths
            .iter()
            .map(|path| {
                self.engine
                    .intent_row(&p.token, &p.category, path.blob_id(), to)
            })
            .collect();
        self.engine.catalog.queue_garbage_rows(&intents).await?;
        let rekeys: Vec<_> = objects
            .iter()
            .zip(paths)
            .map(|(o, path)| {
                let (old, dests) = (&old, &dests);
                async move {
                    let _slot = slots
                        .acquire()
                        .await
                        .map_err(|_| Error::Internal("copy slots closed".into()))?;
                    self.rekey_object(o, old, &p.regions, path, dests, key)
                        .await
                }
            })
            .collect();
        // Every object is seen through, so that on a failure this attempt
        // knows every blob it wrote, and takes them back.
        let results: Vec<Result<RekeyedObject>> = futures::stream::iter(rekeys)
            .buffer_unordered(REKEYS_IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::with_capacity(objects.len());
        let mut failed = None;
        for r in results {
            match r {
                Ok(r) => {
                    done.bytes += r.stored_size;
                    done.moved += r.stored_size as u64 * dests.len() as u64;
                    done.verified += dests.len() as u64;
                    out.push(r);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            self.discard_rekeyed(p, to, &out).await;
            return Err(e);
        }
        Ok((done, out))
    }

    /// Deletes the new blobs of an attempt that will not commit: only this
    /// attempt wrote them (their ids are its own), and nothing indexes
    /// them. A failure is logged: their write intents collect them later.
    pub(super) async fn discard_rekeyed(
        &self,
        p: &PlacementRow,
        to: &[String],
        rekeyed: &[RekeyedObject],
    ) {
        for o in rekeyed {
            let Ok(path) = BlobPath::new(&p.token, &p.category, &o.blob_id) else {
                continue;
            };
            for r in to {
                let deleted = match self.engine.region(r) {
                    Ok(store) => store.delete(&path).await.map_err(Error::from),
                    Err(e) => Err(e),
                };
                if let Err(e) = deleted {
                    tracing::warn!(error = %e, region = %r, "could not delete a re-keyed blob of a move that failed");
                }
            }
        }
    }

    /// One object: read from the first of `sources` that opens, written
    /// under the new key as the new blob `path` (its intent recorded) into
    /// `dests`.
    async fn rekey_object(
        &self,
        o: &ObjectRow,
        old: &DataKey,
        sources: &[String],
        path: BlobPath,
        dests: &[RegionStore],
        key: &NewKey,
    ) -> Result<RekeyedObject> {
        let from = BlobPath::new(&o.token, &o.category, &o.blob_id)?;
        self.pacer
            .take(o.stored_size as u64 * dests.len() as u64)
            .await;
        let written = self
            .engine
            .rewrite_blob(
                sources,
                &from,
                old,
                o.size as u64,
                &path,
                &key.dek,
                dests.to_vec(),
            )
            .await?;
        let reseal = |context: Vec<u8>, sealed: &[u8]| -> Result<Vec<u8>> {
            let plain = domicile_store::crypto::open_value(old, &context, sealed)?;
            Ok(domicile_store::crypto::seal_value(
                &key.dek, &context, &plain,
            )?)
        };
        Ok(RekeyedObject {
            lookup: o.lookup.clone(),
            replaces: o.blob_id.clone(),
            blob_id: path.blob_id().to_string(),
            checksum: written.checksum_hex,
            stored_size: written.stored_size as i64,
            name_enc: reseal(name_context(&o.lookup), &o.name_enc)?,
            meta_enc: reseal(meta_context(&o.lookup), &o.meta_enc)?,
        })
    }
}
