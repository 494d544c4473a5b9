//! The data path: put, get, list and delete of a subject's objects.
//!
//! A write encrypts the stream under the placement's data key, writes an
//! immutable blob under a fresh id to every region of the placement, then
//! commits the index row against the placement's epoch. If the placement
//! changed meanwhile (a move committed), the blob is carried to the new
//! placement's regions and committed again: the body is never re-read, and
//! nothing is acknowledged before its copies are where the catalog says.
//!
//! No call here waits on garbage collection: the blob an overwrite or a
//! delete replaces is queued in its commit, due after the grace period
//! (reads of it in flight finish), and a blob nobody can read (a write that
//! never committed) is queued due at once; the background pass
//! ([`crate::gc`]) deletes both.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use domicile_catalog::{CommitOutcome, Expect, GarbageRow, ObjectCommit, ObjectRow, PlacementRow};
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_store::{BlobPath, BlobWriter, DataKey};
use futures::StreamExt;
use futures::stream::BoxStream;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::clock::now_millis;
use crate::engine::Acting;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::multipart::StoredMeta;

/// An object's metadata: its ETag, its HTTP system metadata and its user
/// metadata. Stored encrypted (sealed under the data key with the name):
/// a digest of the plaintext is personal data too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    /// The ETag clients see, without quotes. [`Engine::put`] sets it to
    /// the hex MD5 of the plaintext it wrote, computed while the body
    /// streams (what S3 gives a single-part upload); other writers may
    /// store another (a multipart upload's `{md5-of-md5s}-{parts}`).
    /// `None` for objects written before ETags were stored: their ETag is
    /// the blob's checksum ([`ObjectInfo::etag`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// HTTP `Cache-Control`, returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// HTTP `Content-Disposition`, returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// HTTP `Content-Encoding`, returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// HTTP `Content-Language`, returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// HTTP `Expires`, as an HTTP date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// S3 checksums of the plaintext, by algorithm (`CRC32`, `CRC32C`,
    /// `CRC64NVME`, `SHA1`, `SHA256`), each base64 as S3 writes it (an
    /// object of parts may have a checksum of its parts' checksums, with
    /// `-N`). A digest of the plaintext: sealed like the ETag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// What `checksums` are: `FULL_OBJECT` (of the bytes) or `COMPOSITE`
    /// (of the parts' checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// For an object of parts: each part's checksum of the algorithm of
    /// `checksums`, in part order (S3 returns a part's with `partNumber`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_checksums: Vec<String>,
}

/// What a write or a delete requires of the object it replaces, decided
/// atomically with its commit: the catalog refuses the commit if the
/// object changed after the check (S3's conditional PUT and DELETE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Precondition {
    /// No condition.
    #[default]
    Any,
    /// The name holds no object (`If-None-Match: *`).
    Absent,
    /// The name holds an object (`If-Match: *`).
    Exists,
    /// The name holds an object of this ETag (`If-Match`; unquoted).
    ETag(String),
}

/// What a caller learns about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectInfo {
    pub name: String,
    pub category: String,
    pub size: u64,
    pub version: i64,
    pub modified_at: i64,
    /// BLAKE3 of the stored (encrypted) bytes.
    pub checksum: String,
    pub meta: ObjectMeta,
    /// A composed object's part sizes, in order (see [`crate::multipart`]);
    /// empty for an object of one blob.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
}

impl ObjectInfo {
    /// The ETag clients see, unquoted: the stored one, or for objects
    /// written before ETags were stored, the blob's checksum.
    pub fn etag(&self) -> &str {
        self.meta.etag.as_deref().unwrap_or(&self.checksum)
    }
}

/// An acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutReceipt {
    pub version: i64,
    pub size: u64,
    /// BLAKE3 of the stored (encrypted) bytes.
    pub checksum: String,
    /// The ETag stored with the object (unquoted): the hex MD5 of the
    /// plaintext written.
    pub etag: String,
    pub regions: Vec<String>,
}

/// How many times a fenced write is carried to a newer placement.
const MAX_RECOMMITS: usize = 8;
/// Read buffer of the write path.
const READ_BUF: usize = 256 * 1024;

pub(crate) fn name_context(lookup: &str) -> Vec<u8> {
    format!("name:{lookup}").into_bytes()
}

pub(crate) fn meta_context(lookup: &str) -> Vec<u8> {
    format!("meta:{lookup}").into_bytes()
}

impl Engine {
    /// The subject's token and home; errors if it is not registered.
    pub(crate) async fn registered(&self, subject: &SubjectId) -> Result<(String, Jurisdiction)> {
        let token = self.tokens.subject(subject);
        let row = self
            .catalog
            .get_subject(&token)
            .await?
            .ok_or(Error::NotRegistered)?;
        let home = row
            .home
            .parse()
            .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
        Ok((token, home))
    }

    /// Stores an object, streaming its body. Returns once every copy is
    /// written and the index row is committed. The stored ETag is the MD5
    /// of the body (whatever `meta.etag` says).
    pub async fn put<R: AsyncRead + Unpin + Send>(
        &self,
        subject: &SubjectId,
        category: &Category,
        name: &ObjectKey,
        meta: &ObjectMeta,
        body: R,
    ) -> Result<PutReceipt> {
        self.put_if(subject, category, name, meta, body, &Precondition::Any)
            .await
    }

    /// [`Engine::put`] under a precondition on the object it replaces:
    /// checked before the body is read (a refusal writes nothing), and
    /// again in the commit, atomically: of writers racing with
    /// `Precondition::Absent` on one name, exactly one commits. Refused
    /// with [`Error::PreconditionFailed`], or [`Error::NotFound`] when an
    /// ETag is required of a name that holds nothing.
    pub async fn put_if<R: AsyncRead + Unpin + Send>(
        &self,
        subject: &SubjectId,
        category: &Category,
        name: &ObjectKey,
        meta: &ObjectMeta,
        body: R,
        condition: &Precondition,
    ) -> Result<PutReceipt> {
        let meta = meta.clone();
        self.put_stored(subject, category, name, body, condition, move |_, md5| {
            Ok(StoredMeta::plain(ObjectMeta {
                etag: Some(md5),
                ..meta
            }))
        })
        .await
    }

    /// [`Engine::put`], with the metadata completed once the whole body is
    /// read (`finish` gets the metadata, its ETag already the body's MD5,
    /// and the body's size): for what else is computed while streaming.
    pub async fn put_with<R, F>(
        &self,
        subject: &SubjectId,
        category: &Category,
        name: &ObjectKey,
        meta: &ObjectMeta,
        body: R,
        finish: F,
    ) -> Result<PutReceipt>
    where
        R: AsyncRead + Unpin + Send,
        F: FnOnce(&mut ObjectMeta, u64) + Send,
    {
        self.put_if_with(
            subject,
            category,
            name,
            meta,
            body,
            &Precondition::Any,
            finish,
        )
        .await
    }

    /// [`Engine::put_with`] under a precondition, as [`Engine::put_if`].
    #[allow(clippy::too_many_arguments)]
    pub async fn put_if_with<R, F>(
        &self,
        subject: &SubjectId,
        category: &Category,
        name: &ObjectKey,
        meta: &ObjectMeta,
        body: R,
        condition: &Precondition,
        finish: F,
    ) -> Result<PutReceipt>
    where
        R: AsyncRead + Unpin + Send,
        F: FnOnce(&mut ObjectMeta, u64) + Send,
    {
        let mut meta = meta.clone();
        self.put_stored(
            subject,
            category,
            name,
            body,
            condition,
            move |size, md5| {
                meta.etag = Some(md5);
                finish(&mut meta, size);
                Ok(StoredMeta::plain(meta))
            },
        )
        .await
    }

    /// Stores an object whose sealed metadata `stored` gives once the body
    /// is written (from the body's size and the hex MD5 of its plaintext),
    /// under `condition` as for [`Engine::put_if`]. An object it replaces that was composed of parts has
    /// them released (see [`crate::multipart`]).
    pub(crate) async fn put_stored<R, F>(
        &self,
        subject: &SubjectId,
        category: &Category,
        name: &ObjectKey,
        mut body: R,
        condition: &Precondition,
        stored: F,
    ) -> Result<PutReceipt>
    where
        R: AsyncRead + Unpin + Send,
        F: FnOnce(u64, String) -> Result<StoredMeta> + Send,
    {
        let (token, home) = self.registered(subject).await?;
        let lookup = self.tokens.lookup(&token, name);
        // A name lives in one category; refuse a clash before anything is
        // created, so bad input changes nothing.
        let existing = self.catalog.get_object(&token, &lookup).await?;
        if let Some(existing) = &existing
            && existing.category != category.as_str()
        {
            return Err(Error::Invalid(format!(
                "an object of this name exists in category {}; delete it first",
                existing.category
            )));
        }
        let expect = self
            .expectation(&token, existing.as_ref(), condition)
            .await?;
        let (acting, placement) = self.placement_under_policy(&token, home, category).await?;
        let dek = self.data_key(&placement).await?;
        if let Some(existing) = &existing {
            self.release_parts_of(existing, &placement, &dek).await?;
        }
        let path = BlobPath::new_random(&token, category.as_str())?;
        let regions = self.region_stores(&placement.regions)?;
        // The intent first: if this process dies between writing the blob
        // and committing it, the blob is known (pending, not an orphan) and
        // collected once the intent is due.
        let intent = self
            .record_intent(
                &token,
                category.as_str(),
                path.blob_id(),
                &placement.regions,
            )
            .await?;
        let (written, md5) = match self.write_blob(regions, &path, &dek, &mut body).await {
            Ok(w) => w,
            Err(e) => {
                // Nothing was stored (the writer cleaned up): bad input
                // leaves no trace, not even the intent.
                self.forget_intent(intent).await;
                return Err(e);
            }
        };
        let meta = match stored(written.plain_size, md5) {
            Ok(m) => m,
            Err(e) => {
                self.queue_blob(
                    &token,
                    category.as_str(),
                    path.blob_id(),
                    &placement.regions,
                )
                .await;
                return Err(e);
            }
        };
        let target = Target {
            token: &token,
            home,
            category,
            name,
            meta: &meta,
            condition,
        };
        self.commit_written(target, expect, &dek, &path, acting, placement, written)
            .await
    }

    /// What the catalog must find at commit for `condition` to hold, from
    /// the name's current row (`existing`), checked now: `Expect::Blob` of
    /// the row whose ETag matched, so a change in between refuses the
    /// commit.
    async fn expectation(
        &self,
        token: &str,
        existing: Option<&ObjectRow>,
        condition: &Precondition,
    ) -> Result<Expect> {
        let refused = || Error::PreconditionFailed("the object's ETag does not match".into());
        match (condition, existing) {
            (Precondition::Any, _) => Ok(Expect::Any),
            (Precondition::Absent, None) => Ok(Expect::Absent),
            (Precondition::Absent, Some(_)) => Err(Error::PreconditionFailed(
                "an object of this name exists".into(),
            )),
            (Precondition::Exists | Precondition::ETag(_), None) => {
                Err(Error::NotFound("object".into()))
            }
            (Precondition::Exists, Some(row)) => Ok(Expect::Blob(row.blob_id.clone())),
            (Precondition::ETag(want), Some(row)) => {
                let placement = self
                    .catalog
                    .get_placement(token, &row.category)
                    .await?
                    .ok_or_else(|| Error::Internal("an indexed object has no placement".into()))?;
                let info = self.info(row, &self.data_key(&placement).await?)?;
                if info.etag() == want.as_str() {
                    Ok(Expect::Blob(row.blob_id.clone()))
                } else {
                    Err(refused())
                }
            }
        }
    }

    /// Streams `body` into a new blob at `path` in every region; returns it
    /// with the hex MD5 of the plaintext, computed on the way.
    async fn write_blob<R: AsyncRead + Unpin + Send>(
        &self,
        regions: Vec<domicile_store::RegionStore>,
        path: &BlobPath,
        dek: &DataKey,
        body: &mut R,
    ) -> Result<(domicile_store::WrittenBlob, String)> {
        let key = self.options.encrypt.then_some(dek);
        let mut writer = BlobWriter::new(regions, path.clone(), key, self.options.chunk_size)?;
        let mut buf = vec![0u8; READ_BUF];
        let mut total: u64 = 0;
        let mut md5 = Md5::new();
        loop {
            let n = match body.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::Invalid(format!(
                        "reading the object body failed: {e}"
                    )));
                }
            };
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > self.options.max_object_size {
                let _ = writer.abort().await;
                return Err(Error::Invalid(format!(
                    "object is larger than the limit of {} bytes",
                    self.options.max_object_size
                )));
            }
            md5.update(&buf[..n]);
            if let Err(e) = writer.write(&buf[..n]).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
        }
        let written = writer.finish().await?;
        Ok((written, hex::encode(md5.finalize())))
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_written(
        &self,
        target: Target<'_>,
        mut expect: Expect,
        dek: &DataKey,
        path: &BlobPath,
        mut acting: Arc<Acting>,
        mut placement: PlacementRow,
        written: domicile_store::WrittenBlob,
    ) -> Result<PutReceipt> {
        let Target {
            token,
            home,
            category,
            name,
            meta,
            condition,
        } = target;
        let etag = meta.meta.etag.clone().unwrap_or_default();
        let lookup = self.tokens.lookup(token, name);
        let meta_json = serde_json::to_vec(meta).map_err(|e| Error::Internal(e.to_string()))?;
        // A placement re-keyed while this write was in flight makes it
        // write its blob again under the new key: these follow.
        let (mut dek, mut path, mut written) = (dek.clone(), path.clone(), written);
        let mut holding: Vec<String> = placement.regions.clone();
        for _ in 0..MAX_RECOMMITS {
            let name_enc = domicile_store::crypto::seal_value(
                &dek,
                &name_context(&lookup),
                name.as_str().as_bytes(),
            )?;
            let meta_enc =
                domicile_store::crypto::seal_value(&dek, &meta_context(&lookup), &meta_json)?;
            let row = ObjectRow {
                token: token.to_string(),
                category: category.to_string(),
                lookup: lookup.clone(),
                name_enc: name_enc.clone(),
                meta_enc: meta_enc.clone(),
                version: 0,
                size: written.plain_size as i64,
                stored_size: written.stored_size as i64,
                checksum: written.checksum_hex.clone(),
                blob_id: path.blob_id().to_string(),
                modified_at: now_millis(),
            };
            let fence = Engine::fence(token, category.as_str(), placement.epoch, acting.version);
            // Committed in a batch with the concurrent writes' rows (see
            // `crate::commits`), answered once durable.
            let commit = ObjectCommit {
                fence,
                row,
                replaced_due: self.replaced_due(),
                expect: expect.clone(),
            };
            let outcome = match self.commits.commit(&self.catalog, commit).await {
                Ok(outcome) => outcome,
                Err(domicile_catalog::Error::PreconditionFailed { reason }) => {
                    // The object the condition was checked on changed. A
                    // re-keying move gives an object a new blob, not a new
                    // ETag: check the condition again on the current row.
                    let current = self.catalog.get_object(token, &lookup).await?;
                    match self.expectation(token, current.as_ref(), condition).await {
                        Ok(next) if next != expect && !matches!(next, Expect::Absent) => {
                            expect = next;
                            continue;
                        }
                        Ok(_) => {
                            self.queue_blob(token, category.as_str(), path.blob_id(), &holding)
                                .await;
                            return Err(Error::PreconditionFailed(reason));
                        }
                        Err(e) => {
                            self.queue_blob(token, category.as_str(), path.blob_id(), &holding)
                                .await;
                            return Err(e);
                        }
                    }
                }
                Err(
                    e @ (domicile_catalog::Error::Conflict { .. }
                    | domicile_catalog::Error::Invalid { .. }),
                ) => {
                    // Refused, so nothing was committed: the blob is nobody's.
                    self.queue_blob(token, category.as_str(), path.blob_id(), &holding)
                        .await;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            match outcome {
                CommitOutcome::Committed { version, .. } => {
                    // The catalog queued the replaced blob in the commit,
                    // due after the grace period; the background pass
                    // deletes it (and any strays).
                    self.discard_blob_copies(
                        token,
                        category.as_str(),
                        path.blob_id(),
                        &holding,
                        &placement.regions,
                    )
                    .await;
                    return Ok(PutReceipt {
                        version,
                        size: written.plain_size,
                        checksum: written.checksum_hex,
                        etag,
                        regions: placement.regions,
                    });
                }
                CommitOutcome::PolicyChanged { .. } | CommitOutcome::Fenced { .. } => {
                    // Decided under a policy that is no longer active, or
                    // the placement moved under us: follow the active
                    // policy, and carry the blob to the placement it gives
                    // (perhaps the same). If that fails, the blob is
                    // nobody's: queue it, never leak it.
                    if matches!(outcome, CommitOutcome::PolicyChanged { .. }) {
                        match self.follow_policy().await {
                            Ok(next) => acting = next,
                            Err(e) => {
                                self.queue_blob(token, category.as_str(), path.blob_id(), &holding)
                                    .await;
                                return Err(e);
                            }
                        }
                    }
                    match self
                        .carry_blob(
                            &acting,
                            token,
                            home,
                            category,
                            &dek,
                            &path,
                            &written,
                            &mut holding,
                        )
                        .await
                    {
                        Ok(Carried::Copied(next)) => placement = next,
                        Ok(Carried::Rewritten(next, key, new_path, new_written)) => {
                            // The old blob is nobody's now.
                            self.queue_blob(token, category.as_str(), path.blob_id(), &holding)
                                .await;
                            holding = next.regions.clone();
                            (dek, path, written) = (key, new_path, new_written);
                            placement = next;
                        }
                        Err(e) => {
                            self.queue_blob(token, category.as_str(), path.blob_id(), &holding)
                                .await;
                            return Err(e);
                        }
                    }
                }
            }
        }
        self.queue_blob(token, category.as_str(), path.blob_id(), &holding)
            .await;
        Err(Error::Busy {
            category: category.to_string(),
        })
    }

    /// Copies an uncommitted blob to the regions of the placement that fenced
    /// its commit. `holding` grows with every region a copy is attempted in.
    /// If that placement was re-keyed meanwhile, the blob is written again
    /// under the new key instead, as a new blob in its regions.
    #[allow(clippy::too_many_arguments)]
    async fn carry_blob(
        &self,
        acting: &Arc<Acting>,
        token: &str,
        home: Jurisdiction,
        category: &Category,
        dek: &DataKey,
        path: &BlobPath,
        written: &domicile_store::WrittenBlob,
        holding: &mut Vec<String>,
    ) -> Result<Carried> {
        let next = self
            .placement_for_write(acting, token, home, category)
            .await?;
        let key = self.data_key(&next).await?;
        if key.as_bytes() != dek.as_bytes() {
            let new_path = BlobPath::new_random(token, category.as_str())?;
            self.record_intent(token, category.as_str(), new_path.blob_id(), &next.regions)
                .await?;
            let dests = self.region_stores(&next.regions)?;
            let rewritten = self
                .rewrite_blob(
                    holding,
                    path,
                    dek,
                    written.plain_size,
                    &new_path,
                    &key,
                    dests,
                )
                .await?;
            return Ok(Carried::Rewritten(next, key, new_path, rewritten));
        }
        for r in &next.regions {
            if holding.contains(r) {
                continue;
            }
            let from = self.region(&holding[0])?;
            let to = self.region(r)?;
            self.record_intent(
                token,
                category.as_str(),
                path.blob_id(),
                std::slice::from_ref(r),
            )
            .await?;
            holding.push(r.clone());
            domicile_store::copy_blob(from, to, path, &written.checksum_hex).await?;
        }
        Ok(Carried::Copied(next))
    }

    /// Writes the blob at `path` (held in `sources`, under `old`, of
    /// `plain_len` bytes) again, under `key`, as the blob `new_path` in
    /// `dests`: read from the first source that opens, decrypted and
    /// authenticated chunk by chunk, and encrypted anew.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn rewrite_blob(
        &self,
        sources: &[String],
        path: &BlobPath,
        old: &DataKey,
        plain_len: u64,
        new_path: &BlobPath,
        key: &DataKey,
        dests: Vec<domicile_store::RegionStore>,
    ) -> Result<domicile_store::WrittenBlob> {
        let mut last_err = None;
        let mut stream = None;
        for src in sources {
            let old = self.options.encrypt.then_some(old);
            match domicile_store::read_blob(self.region(src)?, path, old, plain_len, None).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some(mut stream) = stream else {
            return Err(last_err
                .map(Error::from)
                .unwrap_or_else(|| Error::Internal("a blob held in no region".into())));
        };
        let key = self.options.encrypt.then_some(key);
        let mut writer = BlobWriter::new(dests, new_path.clone(), key, self.options.chunk_size)?;
        while let Some(piece) = stream.next().await {
            let wrote = match piece {
                Ok(piece) => writer.write(&piece).await,
                Err(e) => Err(e),
            };
            if let Err(e) = wrote {
                let _ = writer.abort().await;
                return Err(e.into());
            }
        }
        let written = writer.finish().await?;
        if written.plain_size != plain_len {
            return Err(Error::Internal(format!(
                "rewriting a blob read {} bytes of {plain_len}",
                written.plain_size
            )));
        }
        Ok(written)
    }

    /// Copies of a committed blob outside its placement are strays: queued
    /// for deletion (the catalog does not know these copies, so a
    /// collection pass alone would never delete them). No read goes there:
    /// reads follow the placement.
    async fn discard_blob_copies(
        &self,
        token: &str,
        category: &str,
        blob_id: &str,
        holding: &[String],
        keep: &[String],
    ) {
        let strays: Vec<String> = holding
            .iter()
            .filter(|r| !keep.contains(r))
            .cloned()
            .collect();
        if !strays.is_empty() {
            self.queue_blob(token, category, blob_id, &strays).await;
        }
    }

    /// Records that a blob is about to be written to `regions`: a garbage
    /// row due only after `intent_ttl`, which the commit removes. Returns
    /// its id.
    async fn record_intent(
        &self,
        token: &str,
        category: &str,
        blob_id: &str,
        regions: &[String],
    ) -> Result<i64> {
        let row = self.intent_row(token, category, blob_id, regions);
        Ok(self.catalog.queue_garbage(&row).await?)
    }

    /// The write intent of a blob about to be written to `regions`: a
    /// garbage row due only after `intent_ttl`.
    pub(crate) fn intent_row(
        &self,
        token: &str,
        category: &str,
        blob_id: &str,
        regions: &[String],
    ) -> GarbageRow {
        let due = now_millis() + self.options.intent_ttl.as_millis() as i64;
        garbage_row(token, category, blob_id, regions, due)
    }

    /// Drops an intent whose blob was never stored.
    async fn forget_intent(&self, id: i64) {
        match self.catalog.finish_garbage(id, None).await {
            Ok(()) | Err(domicile_catalog::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not drop a write intent; it expires by itself")
            }
        }
    }

    /// Queues a blob that no reader can have opened (a write that never
    /// committed, or copies outside the placement) for deletion from
    /// `regions`, due at once: the background pass deletes it.
    async fn queue_blob(&self, token: &str, category: &str, blob_id: &str, regions: &[String]) {
        let row = garbage_row(token, category, blob_id, regions, now_millis());
        if let Err(e) = self.catalog.queue_garbage(&row).await {
            tracing::warn!(error = %e, "could not queue an unused blob for deletion");
        }
    }

    /// When a blob replaced or deleted now is due for deletion: after the
    /// grace period, so that reads of it in flight finish.
    pub(crate) fn replaced_due(&self) -> i64 {
        now_millis()
            .saturating_add(i64::try_from(self.options.gc.grace.as_millis()).unwrap_or(i64::MAX))
    }

    /// The index row and placement of a subject's object.
    async fn locate(
        &self,
        subject: &SubjectId,
        name: &ObjectKey,
    ) -> Result<(String, ObjectRow, PlacementRow)> {
        let (token, _) = self.registered(subject).await?;
        let lookup = self.tokens.lookup(&token, name);
        let row = self
            .catalog
            .get_object(&token, &lookup)
            .await?
            .ok_or_else(|| Error::NotFound(format!("object {name}")))?;
        let placement = self
            .catalog
            .get_placement(&token, &row.category)
            .await?
            .ok_or_else(|| Error::Internal("an indexed object has no placement".into()))?;
        Ok((token, row, placement))
    }

    pub(crate) fn info(&self, row: &ObjectRow, dek: &DataKey) -> Result<ObjectInfo> {
        let name =
            domicile_store::crypto::open_value(dek, &name_context(&row.lookup), &row.name_enc)?;
        let stored = self.stored_meta(row, dek)?;
        let (size, parts) = match &stored.manifest {
            Some(m) if row.size == 0 => (m.size(), m.parts.iter().map(|p| p.size).collect()),
            _ => (row.size as u64, Vec::new()),
        };
        Ok(ObjectInfo {
            name: String::from_utf8(name)
                .map_err(|_| Error::Internal("stored name is not UTF-8".into()))?,
            category: row.category.clone(),
            size,
            version: row.version,
            modified_at: row.modified_at,
            checksum: row.checksum.clone(),
            meta: stored.meta,
            parts,
        })
    }

    /// Metadata of one object.
    pub async fn head(&self, subject: &SubjectId, name: &ObjectKey) -> Result<ObjectInfo> {
        once_more(|| async {
            let (_, row, placement) = self.locate(subject, name).await?;
            self.info(&row, &self.data_key(&placement).await?)
        })
        .await
    }

    /// Reads an object, or a byte range of it, as a stream of decrypted bytes.
    /// Copies are tried in placement order until one answers.
    ///
    /// The object's row and its placement are two reads: a move that
    /// re-keys the unit (new blobs, a new data key) may commit between
    /// them, and then the row names blobs the placement's regions or key do
    /// not hold. Such a read fails in the store, and is made once more,
    /// after the commit, from a consistent pair.
    pub async fn get(
        &self,
        subject: &SubjectId,
        name: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<(
        ObjectInfo,
        BoxStream<'static, Result<Bytes, domicile_store::Error>>,
    )> {
        once_more(|| self.get_once(subject, name, range.clone())).await
    }

    async fn get_once(
        &self,
        subject: &SubjectId,
        name: &ObjectKey,
        range: Option<Range<u64>>,
    ) -> Result<(
        ObjectInfo,
        BoxStream<'static, Result<Bytes, domicile_store::Error>>,
    )> {
        let (token, row, placement) = self.locate(subject, name).await?;
        let dek = self.data_key(&placement).await?;
        let info = self.info(&row, &dek)?;
        if let Some(r) = &range
            && (r.start > r.end || r.end > info.size)
        {
            {
                return Err(Error::Invalid(format!(
                    "range {}..{} is outside the object's {} bytes",
                    r.start, r.end, info.size
                )));
            }
        }
        if let Some(manifest) = self.manifest_of(&row, &dek)? {
            let stream = self
                .read_manifest(&placement, &dek, &manifest, range)
                .await?;
            return Ok((info, stream));
        }
        let path = BlobPath::new(&token, &row.category, &row.blob_id)?;
        let stream = self
            .open_copy(&placement.regions, &path, &dek, info.size, range)
            .await?;
        Ok((info, stream))
    }

    /// Opens a blob of `plain_len` bytes (or a range of it) from the first
    /// of `regions` whose copy answers.
    pub(crate) async fn open_copy(
        &self,
        regions: &[String],
        path: &BlobPath,
        dek: &DataKey,
        plain_len: u64,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, domicile_store::Error>>, domicile_store::Error>
    {
        let stores: Vec<(String, domicile_store::RegionStore)> = regions
            .iter()
            .filter_map(|r| Some((r.clone(), self.regions.get(r)?.clone())))
            .collect();
        let key = self.options.encrypt.then_some(dek);
        open_first_copy(&stores, path, key, plain_len, range).await
    }

    /// Every object of a subject, sorted by name.
    pub async fn list(&self, subject: &SubjectId) -> Result<Vec<ObjectInfo>> {
        once_more(|| self.list_once(subject)).await
    }

    async fn list_once(&self, subject: &SubjectId) -> Result<Vec<ObjectInfo>> {
        let (token, _) = self.registered(subject).await?;
        let placements = self.catalog.placements_of(&token).await?;
        let mut out = Vec::new();
        for p in &placements {
            let dek = self.data_key(p).await?;
            for row in self.catalog.objects_of(&token, Some(&p.category)).await? {
                out.push(self.info(&row, &dek)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The placement a delete commits against. Like a write, it waits
    /// (bounded) while the placement is moving; unlike a write, it is not
    /// refused when the policy now forbids a region of the placement: a
    /// delete puts no byte there, and must stay possible.
    async fn placement_for_delete(
        &self,
        token: &str,
        category: &Category,
    ) -> Result<Option<PlacementRow>> {
        let deadline = std::time::Instant::now() + self.options.move_wait;
        loop {
            let Some(p) = self.catalog.get_placement(token, category.as_str()).await? else {
                return Ok(None);
            };
            if p.state.is_active() {
                return Ok(Some(p));
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Busy {
                    category: category.to_string(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Deletes an object. Returns false if there was none.
    pub async fn delete(&self, subject: &SubjectId, name: &ObjectKey) -> Result<bool> {
        self.delete_if(subject, name, &Precondition::Any).await
    }

    /// [`Engine::delete`] under a precondition on the object (S3's
    /// `If-Match`), decided atomically with the delete as for
    /// [`Engine::put_if`].
    pub async fn delete_if(
        &self,
        subject: &SubjectId,
        name: &ObjectKey,
        condition: &Precondition,
    ) -> Result<bool> {
        let (token, _) = self.registered(subject).await?;
        let lookup = self.tokens.lookup(&token, name);
        let row = self.catalog.get_object(&token, &lookup).await?;
        let expect = self.expectation(&token, row.as_ref(), condition).await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let category: Category = row.category.parse()?;
        self.delete_lookup(&token, &category, &lookup, condition, expect)
            .await
    }

    /// Deletes the object of `lookup` in a subject's `category`. An object
    /// composed of parts has them released (see [`crate::multipart`]).
    pub(crate) async fn delete_lookup(
        &self,
        token: &str,
        category: &Category,
        lookup: &str,
        condition: &Precondition,
        mut expect: Expect,
    ) -> Result<bool> {
        let mut acting = self.acting();
        let mut released = false;
        for _ in 0..MAX_RECOMMITS {
            let Some(p) = self.placement_for_delete(token, category).await? else {
                return Ok(false);
            };
            if !released {
                if let Some(row) = self.catalog.get_object(token, lookup).await? {
                    self.release_parts_of(&row, &p, &self.data_key(&p).await?)
                        .await?;
                }
                released = true;
            }
            let fence = Engine::fence(token, category.as_str(), p.epoch, acting.version);
            let deleted = match self
                .catalog
                .delete_object_if(&fence, lookup, self.replaced_due(), &expect)
                .await
            {
                Err(domicile_catalog::Error::PreconditionFailed { reason }) => {
                    // As for a write: a re-keying move is no change.
                    let current = self.catalog.get_object(token, lookup).await?;
                    let next = self.expectation(token, current.as_ref(), condition).await?;
                    if next == expect || matches!(next, Expect::Absent) {
                        return Err(Error::PreconditionFailed(reason));
                    }
                    expect = next;
                    continue;
                }
                other => other?,
            };
            match deleted {
                None => return Ok(false),
                // Its blob is queued, due after the grace period.
                Some(CommitOutcome::Committed { .. }) => return Ok(true),
                Some(CommitOutcome::Fenced { .. }) => continue,
                // A delete puts no byte anywhere: under the new version
                // it is the same delete.
                Some(CommitOutcome::PolicyChanged { .. }) => acting = self.follow_policy().await?,
            }
        }
        Err(Error::Busy {
            category: category.to_string(),
        })
    }
}

/// Opens a blob from the first of `stores` whose copy answers. The first
/// piece proves the copy opens (a corrupt or truncated first batch fails
/// here, while another copy can still serve).
pub(crate) async fn open_first_copy(
    stores: &[(String, domicile_store::RegionStore)],
    path: &BlobPath,
    key: Option<&DataKey>,
    plain_len: u64,
    range: Option<Range<u64>>,
) -> Result<BoxStream<'static, Result<Bytes, domicile_store::Error>>, domicile_store::Error> {
    let mut last_err = None;
    for (region, store) in stores {
        match domicile_store::read_blob(store, path, key, plain_len, range.clone()).await {
            Ok(mut stream) => match stream.next().await {
                Some(Err(e)) => {
                    tracing::warn!(region = %region, error = %e, "copy unreadable; trying the next");
                    last_err = Some(e);
                }
                Some(Ok(piece)) => {
                    return Ok(futures::stream::iter([Ok(piece)]).chain(stream).boxed());
                }
                None => return Ok(futures::stream::empty().boxed()),
            },
            Err(e) => {
                tracing::warn!(region = %region, error = %e, "copy unreadable; trying the next");
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| domicile_store::Error::NotFound {
        region: String::new(),
        path: path.to_string(),
    }))
}

/// A garbage row for a blob in `regions`, due for collection at `due`.
pub(crate) fn garbage_row(
    token: &str,
    category: &str,
    blob_id: &str,
    regions: &[String],
    due: i64,
) -> GarbageRow {
    GarbageRow::new(token, category, blob_id, regions, due)
}

/// The object a write commits, and the condition it commits under.
struct Target<'a> {
    token: &'a str,
    home: Jurisdiction,
    category: &'a Category,
    name: &'a ObjectKey,
    meta: &'a StoredMeta,
    condition: &'a Precondition,
}

/// Where a fenced write's blob went: copied to the regions of the placement
/// that fenced it, or written again under that placement's new data key.
enum Carried {
    Copied(PlacementRow),
    Rewritten(PlacementRow, DataKey, BlobPath, domicile_store::WrittenBlob),
}

/// Runs a read, and once more if it failed in the store: the object's row
/// and its placement are two catalog reads, and a move that re-keys the unit
/// (new blobs, a new data key) may commit between them (see `Engine::get`).
async fn once_more<T, F, Fut>(read: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match read().await {
        Err(Error::Store(_)) => read().await,
        other => other,
    }
}
