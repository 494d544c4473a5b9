//! Objects composed of parts: multipart uploads completed without a second
//! pass over their bytes.
//!
//! A part is staged as an ordinary object of the upload's subject and
//! category, named `{dir}{n:05}` under an upload's staging folder
//! (`…/.domicile-mpu/{upload}/`), so it is encrypted, placed, moved,
//! re-keyed, verified and erased like any other object: every blob of a
//! composed object is an indexed blob of its unit, and the catalog, the
//! residency ledger and `verify` count every copy.
//!
//! Completion ([`Engine::complete_upload`]) writes only metadata: the
//! object's own blob is empty, and its sealed metadata holds a
//! [`Manifest`], the sequence of its parts (number, size and the version of
//! the part's index row). The parts stay where they are, encrypted as they
//! were written. A read ([`Engine::get`]) resolves the parts a range covers
//! and streams their blobs in order; a part that was replaced or is missing
//! makes the read fail rather than return other bytes.
//!
//! Parts are released through the garbage queue ([`crate::gc`]), which holds
//! one *sweep row* per upload (blob id `upload-{id}`, never a blob id of the
//! store's, which are 32 hex digits):
//!
//! - [`Engine::begin_upload`] queues it, due when the upload expires
//!   ([`crate::gc::GcOptions::upload_expiry`], 7 days by default);
//! - an overwrite or delete of a composed object queues another, due after
//!   the grace period (reads in flight finish);
//! - when a sweep row is due, the pass reads the subject's objects of that
//!   category: if an object's manifest names the upload, the staged objects
//!   it does not reference (the upload's marker, parts not completed) are
//!   deleted and the row is put off by another expiry period (so a
//!   composed object replaced by a writer that could not see it is still
//!   released); otherwise every staged object of the upload is deleted
//!   (an abandoned upload, or the parts of a replaced object) and the row
//!   is done. Deleting a staged object queues its blob as usual.

use std::collections::HashSet;
use std::ops::Range;

use bytes::Bytes;
use domicile_catalog::{Expect, GarbageRow, ObjectRow, PlacementRow};
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_store::{BlobPath, DataKey};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::clock::now_millis;
use crate::data::{
    ObjectMeta, Precondition, PutReceipt, garbage_row, meta_context, name_context, open_first_copy,
};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The folder, within a namespace, where uploads stage their objects.
pub const UPLOAD_DIR: &str = ".domicile-mpu/";
/// The blob id prefix of an upload's sweep rows in the garbage queue.
const SWEEP_PREFIX: &str = "upload-";

/// The parts a composed object is made of, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The upload that staged the parts (32 hex digits).
    pub upload: String,
    /// The stored-name prefix of the parts: part `n` is `{dir}{n:05}`.
    pub dir: String,
    pub parts: Vec<ManifestPart>,
}

/// One part of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    /// The part's number in its upload.
    pub n: u32,
    /// Its plaintext size.
    pub size: u64,
    /// The version of its index row when the upload completed: a part
    /// written again since no longer belongs to the object.
    pub version: i64,
}

impl Manifest {
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// The stored name of part `n`.
    pub fn part_name(&self, n: u32) -> String {
        part_name(&self.dir, n)
    }
}

/// The stored name of part `n` of an upload staged under `dir`.
pub fn part_name(dir: &str, n: u32) -> String {
    format!("{dir}{n:05}")
}

/// Whether `name` lies in the staging folder of `upload`.
fn staged_by(name: &str, upload: &str) -> bool {
    let needle = format!("{UPLOAD_DIR}{upload}/");
    name.match_indices(&needle)
        .any(|(at, _)| at == 0 || name.as_bytes()[at - 1] == b'/')
}

/// Whether a stored name is staged by an upload (a part or a marker, in a
/// `.domicile-mpu/` folder): hidden where objects are listed for people.
pub fn is_staged(name: &str) -> bool {
    name.starts_with(UPLOAD_DIR) || name.contains(&format!("/{UPLOAD_DIR}"))
}

/// Upload ids are 32 lowercase or uppercase hex digits.
pub fn check_upload_id(id: &str) -> Result<()> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Error::Invalid("an upload id is 32 hex digits".into()))
    }
}

/// The upload a garbage row sweeps, if it is a sweep row.
pub(crate) fn swept_upload(blob_id: &str) -> Option<&str> {
    blob_id.strip_prefix(SWEEP_PREFIX)
}

/// What an object's sealed metadata holds: what callers see, and for a
/// composed object its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMeta {
    #[serde(flatten)]
    pub meta: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

impl StoredMeta {
    pub fn plain(meta: ObjectMeta) -> Self {
        StoredMeta {
            meta,
            manifest: None,
        }
    }
}

impl Engine {
    /// Records that an upload began, staging into `subject`'s `category`
    /// (whose placement its first staged object created): its sweep row,
    /// due when the upload expires.
    pub async fn begin_upload(
        &self,
        subject: &SubjectId,
        category: &Category,
        upload: &str,
    ) -> Result<()> {
        check_upload_id(upload)?;
        let (token, _) = self.registered(subject).await?;
        let placement = self
            .catalog
            .get_placement(&token, category.as_str())
            .await?
            .ok_or_else(|| Error::Invalid("the upload has staged nothing yet".into()))?;
        let due = now_millis().saturating_add(millis(self.options.gc.upload_expiry));
        self.queue_sweep(&token, category.as_str(), upload, &placement.regions, due)
            .await
    }

    async fn queue_sweep(
        &self,
        token: &str,
        category: &str,
        upload: &str,
        regions: &[String],
        due: i64,
    ) -> Result<()> {
        let row = garbage_row(
            token,
            category,
            &format!("{SWEEP_PREFIX}{upload}"),
            regions,
            due,
        );
        self.catalog.queue_garbage(&row).await?;
        Ok(())
    }

    /// Completes an upload: commits `name` as the sequence of the parts
    /// `manifest` lists (staged in the same subject and category), writing
    /// no byte of them again. The object's own blob is empty.
    pub async fn complete_upload(
        &self,
        subject: &SubjectId,
        category: &Category,
        name: &ObjectKey,
        meta: &ObjectMeta,
        manifest: Manifest,
    ) -> Result<PutReceipt> {
        check_upload_id(&manifest.upload)?;
        if manifest.parts.is_empty() {
            return Err(Error::Invalid("an upload completes with parts".into()));
        }
        if !staged_by(&manifest.dir, &manifest.upload) || !manifest.dir.ends_with('/') {
            return Err(Error::Invalid(
                "the parts must lie in the upload's staging folder".into(),
            ));
        }
        if manifest.size() > self.options.max_object_size {
            return Err(Error::Invalid(format!(
                "object is larger than the limit of {} bytes",
                self.options.max_object_size
            )));
        }
        let size = manifest.size();
        let stored = StoredMeta {
            meta: meta.clone(),
            manifest: Some(manifest),
        };
        let mut receipt = self
            .put_stored(
                subject,
                category,
                name,
                tokio::io::empty(),
                &Precondition::Any,
                move |_, _| Ok(stored),
            )
            .await?;
        receipt.size = size;
        Ok(receipt)
    }

    /// The manifest of an index row, if it is a composed object's. Only
    /// rows of empty blobs can be: others are not opened.
    pub(crate) fn manifest_of(&self, row: &ObjectRow, dek: &DataKey) -> Result<Option<Manifest>> {
        if row.size != 0 {
            return Ok(None);
        }
        Ok(self.stored_meta(row, dek)?.manifest)
    }

    pub(crate) fn stored_meta(&self, row: &ObjectRow, dek: &DataKey) -> Result<StoredMeta> {
        let meta =
            domicile_store::crypto::open_value(dek, &meta_context(&row.lookup), &row.meta_enc)?;
        Ok(serde_json::from_slice(&meta).unwrap_or_default())
    }

    /// Before a composed object is replaced or deleted: its upload's sweep,
    /// due after the grace period, releases its parts once no manifest
    /// names them (a write that then fails to commit releases nothing).
    pub(crate) async fn release_parts_of(
        &self,
        row: &ObjectRow,
        placement: &PlacementRow,
        dek: &DataKey,
    ) -> Result<()> {
        if let Some(m) = self.manifest_of(row, dek)? {
            self.queue_sweep(
                &row.token,
                &row.category,
                &m.upload,
                &placement.regions,
                self.replaced_due(),
            )
            .await?;
        }
        Ok(())
    }

    /// The bytes `range` of a composed object (all of it without one):
    /// the parts it covers are resolved at once, their blobs opened in
    /// turn. The first part's first piece is read here, so a copy that does
    /// not open fails the call (and the read is made once more).
    pub(crate) async fn read_manifest(
        &self,
        placement: &PlacementRow,
        dek: &DataKey,
        manifest: &Manifest,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, domicile_store::Error>>> {
        let total = manifest.size();
        let range = range.unwrap_or(0..total);
        let mut pieces = Vec::new();
        let mut at = 0u64;
        for p in &manifest.parts {
            let (start, end) = (at, at + p.size);
            at = end;
            if end <= range.start || start >= range.end || p.size == 0 {
                continue;
            }
            let name: ObjectKey = manifest
                .part_name(p.n)
                .parse()
                .map_err(|_| Error::Internal("a manifest names an invalid part".into()))?;
            let lookup = self.tokens.lookup(&placement.token, &name);
            let row = self
                .catalog
                .get_object(&placement.token, &lookup)
                .await?
                .filter(|r| r.version == p.version && r.size as u64 == p.size)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "part {} of a multipart object is missing or was written again",
                        p.n
                    ))
                })?;
            let within = range.start.max(start) - start..range.end.min(end) - start;
            pieces.push((
                BlobPath::new(&row.token, &row.category, &row.blob_id)?,
                p.size,
                within,
            ));
        }
        let stores: Vec<(String, domicile_store::RegionStore)> = placement
            .regions
            .iter()
            .map(|r| Ok((r.clone(), self.region(r)?.clone())))
            .collect::<Result<_>>()?;
        let key = self.options.encrypt.then(|| dek.clone());
        let mut stream =
            futures::stream::iter(pieces)
                .then(move |(path, size, within)| {
                    let (stores, key) = (stores.clone(), key.clone());
                    async move {
                        open_first_copy(&stores, &path, key.as_ref(), size, Some(within)).await
                    }
                })
                .try_flatten()
                .boxed();
        match stream.next().await {
            None => Ok(futures::stream::empty().boxed()),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(first)) => Ok(futures::stream::iter([Ok(first)]).chain(stream).boxed()),
        }
    }

    /// With `verify --deep`: the parts an object's manifest names, each
    /// indexed at the version and size it records (a part missing or
    /// written again makes the object unreadable).
    pub(crate) async fn check_manifest(
        &self,
        placement: &PlacementRow,
        row: &ObjectRow,
        dek: &DataKey,
    ) -> Result<Vec<crate::verify::Problem>> {
        let Ok(Some(manifest)) = self.manifest_of(row, dek) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for p in &manifest.parts {
            let Ok(name) = manifest.part_name(p.n).parse::<ObjectKey>() else {
                continue;
            };
            let lookup = self.tokens.lookup(&row.token, &name);
            let part = self.catalog.get_object(&row.token, &lookup).await?;
            if part.is_some_and(|r| r.version == p.version && r.size as u64 == p.size) {
                continue;
            }
            found.push(crate::verify::Problem {
                kind: "manifest".into(),
                region: placement.regions.first().cloned().unwrap_or_default(),
                subject: row.token.clone(),
                category: row.category.clone(),
                blob: row.blob_id.clone(),
                detail: format!("part {} is missing or was written again", p.n),
            });
        }
        Ok(found)
    }

    /// Sweeps an upload's staged objects (see the module's documentation).
    /// Returns when to look again, if a manifest still names the upload.
    pub(crate) async fn sweep_upload(&self, row: &GarbageRow, upload: &str) -> Result<Option<i64>> {
        let Some(placement) = self
            .catalog
            .get_placement(&row.token, &row.category)
            .await?
        else {
            // Erased, or nothing was ever staged: nothing is left.
            return Ok(None);
        };
        let dek = self.data_key(&placement).await?;
        let mut staged: Vec<(String, ObjectRow)> = Vec::new();
        let mut live: Option<Manifest> = None;
        for o in self
            .catalog
            .objects_of(&row.token, Some(&row.category))
            .await?
        {
            let name =
                domicile_store::crypto::open_value(&dek, &name_context(&o.lookup), &o.name_enc)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            if staged_by(&name, upload) {
                staged.push((name, o));
            } else if let Some(m) = self.manifest_of(&o, &dek)?
                && m.upload == upload
            {
                live = Some(m);
            }
        }
        let keep: HashSet<String> = live
            .iter()
            .flat_map(|m| m.parts.iter().map(|p| m.part_name(p.n)))
            .collect();
        let category: Category = row.category.parse()?;
        for (name, o) in staged {
            if !keep.contains(&name) {
                self.delete_lookup(
                    &row.token,
                    &category,
                    &o.lookup,
                    &Precondition::Any,
                    Expect::Any,
                )
                .await?;
            }
        }
        Ok(live.map(|_| now_millis().saturating_add(millis(self.options.gc.upload_expiry))))
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn staged_names_are_matched_at_a_folder_boundary() {
        let id = "0123456789abcdef0123456789abcdef";
        assert!(staged_by(&format!("b/.domicile-mpu/{id}/00001"), id));
        assert!(staged_by(&format!(".domicile-mpu/{id}/upload"), id));
        assert!(!staged_by(&format!("b/x.domicile-mpu/{id}/00001"), id));
        assert!(!staged_by("b/.domicile-mpu/other/00001", id));
    }

    #[test]
    fn staged_objects_are_told_from_others() {
        assert!(is_staged("user-data/.domicile-mpu/abc/00001"));
        assert!(is_staged(".domicile-mpu/abc/upload"));
        assert!(!is_staged("user-data/x.domicile-mpu/abc"));
        assert!(!is_staged("user-data/photo.jpg"));
    }

    #[test]
    fn sweep_rows_are_never_blob_ids() {
        assert_eq!(swept_upload("upload-abc"), Some("abc"));
        assert_eq!(swept_upload("0123456789abcdef0123456789abcdef"), None);
        assert!(
            BlobPath::new(
                "0123456789abcdef0123456789abcdef",
                "c",
                "upload-0123456789abcdef0123456789abcdef"
            )
            .is_err()
        );
    }

    #[test]
    fn stored_meta_without_a_manifest_is_plain_meta() {
        let meta = ObjectMeta {
            content_type: Some("text/plain".into()),
            ..ObjectMeta::default()
        };
        let json = serde_json::to_vec(&StoredMeta::plain(meta.clone())).unwrap();
        assert_eq!(json, serde_json::to_vec(&meta).unwrap());
        let back: ObjectMeta = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, meta);
    }
}
