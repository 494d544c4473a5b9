//! Multipart uploads, staged as hidden objects of the upload's own subject
//! and category, in its bucket's namespace: `{bucket}/.domicile-mpu/{upload}/upload`
//! is the upload's marker (the final object's stored name and metadata,
//! sealed in the marker's own metadata), `{bucket}/.domicile-mpu/{upload}/{part:05}`
//! each part. Another bucket's requests therefore never see or touch an
//! upload or its parts. Every staged byte is encrypted under the subject's
//! data key and sits only in regions the policy allows for it, like any
//! other object of that subject and category.
//!
//! A part sent again replaces the earlier one (its blob becomes garbage).
//! Each part's ETag is the MD5 of its bytes, computed while it streams and
//! sealed with its metadata; the object's is S3's: the MD5 of the parts'
//! binary MD5s, in hex, with `-N` for N parts.
//!
//! Completion copies nothing: the engine commits the final name as a
//! manifest of the parts, which stay where they are
//! ([`domicile_engine::multipart`]); the marker and the parts not named
//! are deleted. Abandoned uploads expire in the engine's collection passes.
//! GET and HEAD with `partNumber` serve one part's bytes, and both give
//! `x-amz-mp-parts-count` for an object of parts.
//!
//! The state is in the engine, not in this process: an upload survives a
//! restart, and any server sharing the catalog can take its next part.

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use domicile_core::bucket::{Bucket, MappedKey};
use domicile_core::ids::{ObjectKey, SubjectId};
use domicile_engine::{Manifest, ManifestPart, ObjectInfo, ObjectMeta, PutReceipt};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, ReadBuf};

use super::S3Api;
use super::body::{self, Progress};
use super::error::{from_engine, internal, s3};
use super::keys::UPLOAD_PREFIX;
use super::object::{Conditions, copy_source, no_such_key, request_meta, timestamp};

/// S3's bounds on parts.
const MAX_PARTS: i32 = 10_000;
const MIN_PART_SIZE: u64 = 5 << 20;
/// Where a marker keeps what it holds, in its own sealed metadata.
const MARKER_FIELD: &str = "domicile-upload";

/// What the upload's marker object holds.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// The final object's stored name within the subject (bucket included).
    name: String,
    meta: ObjectMeta,
}

fn no_such_upload() -> S3Error {
    s3(
        S3ErrorCode::NoSuchUpload,
        "the specified multipart upload does not exist; it may have been aborted or completed",
    )
}

/// Upload ids are 32 hex digits; anything else names no upload.
fn check_upload_id(id: &str) -> S3Result<()> {
    domicile_engine::multipart::check_upload_id(id).map_err(|_| no_such_upload())
}

/// Where an upload stages `what`, in its bucket's namespace.
fn staged(bucket: &Bucket, id: &str, what: &str) -> S3Result<ObjectKey> {
    bucket
        .stored_name(&format!("{UPLOAD_PREFIX}{id}/{what}"))
        .map_err(|e| internal("multipart", &e))
}

/// The stored-name prefix of an upload's staged objects.
fn staging_dir(bucket: &Bucket, id: &str) -> String {
    format!("{}{UPLOAD_PREFIX}{id}/", bucket.namespace())
}

fn marker_name(bucket: &Bucket, id: &str) -> S3Result<ObjectKey> {
    staged(bucket, id, "upload")
}

fn part_name(bucket: &Bucket, id: &str, n: i32) -> S3Result<ObjectKey> {
    staged(bucket, id, &format!("{n:05}"))
}

fn new_upload_id() -> S3Result<String> {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| internal("CreateMultipartUpload", &"no system randomness"))?;
    Ok(hex::encode(id))
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PARTS).contains(&n) {
        Ok(())
    } else {
        Err(s3(
            S3ErrorCode::InvalidArgument,
            format!("part numbers are 1 to {MAX_PARTS}"),
        ))
    }
}

/// A staged part's ETag: the MD5 of its bytes (the BLAKE3 of its stored
/// bytes for a part staged before MD5s were kept).
fn part_etag(info: &ObjectInfo) -> String {
    info.meta
        .etag
        .clone()
        .unwrap_or_else(|| info.checksum.clone())
}

/// S3's ETag of an object of parts: the MD5 of the parts' binary MD5s,
/// hex, `-` and the number of parts. None if a part has no MD5.
pub(crate) fn multipart_etag<'a>(part_md5s: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut outer = Md5::new();
    let mut n = 0;
    for t in part_md5s {
        let bin = hex::decode(t).ok().filter(|b| b.len() == 16)?;
        outer.update(&bin);
        n += 1;
    }
    Some(format!("{}-{n}", hex::encode(outer.finalize())))
}

/// The byte range of part `n` of an object, and the number of its parts
/// (none for an object of one blob, which is its own part 1, as in S3).
pub(crate) fn part_range(info: &ObjectInfo, n: i32) -> S3Result<(Range<u64>, Option<i32>)> {
    let invalid = || {
        let mut e = s3(
            S3ErrorCode::Custom("InvalidPartNumber".into()),
            "the requested partnumber is not satisfiable",
        );
        e.set_status_code(hyper::StatusCode::RANGE_NOT_SATISFIABLE);
        e
    };
    if info.parts.is_empty() {
        return if n == 1 {
            Ok((0..info.size, None))
        } else {
            Err(invalid())
        };
    }
    let index = usize::try_from(n)
        .ok()
        .filter(|&i| (1..=info.parts.len()).contains(&i))
        .ok_or_else(invalid)?;
    let start: u64 = info.parts[..index - 1].iter().sum();
    Ok((start..start + info.parts[index - 1], parts_count(info)))
}

/// `x-amz-mp-parts-count` of an object: its number of parts, if it has
/// them.
pub(crate) fn parts_count(info: &ObjectInfo) -> Option<i32> {
    (!info.parts.is_empty()).then(|| i32::try_from(info.parts.len()).unwrap_or(i32::MAX))
}

/// A reader that hashes what passes through it (MD5), for a part's ETag.
struct Hashing<R> {
    inner: R,
    md5: Arc<Mutex<Md5>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled
            && let Ok(mut md5) = self.md5.lock()
        {
            md5.update(&buf.filled()[before..]);
        }
        polled
    }
}

impl S3Api {
    /// The marker of an upload, checked against the request's key.
    async fn marker(
        &self,
        op: &'static str,
        bucket: &Bucket,
        target: &MappedKey,
        id: &str,
    ) -> S3Result<Marker> {
        check_upload_id(id)?;
        let name = marker_name(bucket, id)?;
        let info = match self.engine.head(&target.subject, &name).await {
            Ok(info) => info,
            Err(domicile_engine::Error::NotFound(_) | domicile_engine::Error::NotRegistered) => {
                return Err(no_such_upload());
            }
            Err(e) => return Err(from_engine(op, e)),
        };
        let marker = match info.meta.user.get(MARKER_FIELD) {
            Some(json) => serde_json::from_str(json).map_err(|e| internal(op, &e))?,
            // A marker from before: what it holds is its body.
            None => {
                let (_, stream) = self
                    .engine
                    .get(&target.subject, &name, None)
                    .await
                    .map_err(|e| from_engine(op, e))?;
                let bytes: Vec<Bytes> = stream.try_collect().await.map_err(|e| internal(op, &e))?;
                serde_json::from_slice::<Marker>(&bytes.concat()).map_err(|e| internal(op, &e))?
            }
        };
        if marker.name != target.name.as_str() || info.category != target.category.as_str() {
            return Err(no_such_upload());
        }
        Ok(marker)
    }

    /// The staged parts of an upload, by part number.
    async fn parts(
        &self,
        op: &'static str,
        bucket: &Bucket,
        target: &MappedKey,
        id: &str,
    ) -> S3Result<BTreeMap<i32, ObjectInfo>> {
        let dir = staging_dir(bucket, id);
        let objects = self
            .engine
            .list(&target.subject)
            .await
            .map_err(|e| from_engine(op, e))?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let n = o.name.strip_prefix(&dir)?.parse::<i32>().ok()?;
                Some((n, o))
            })
            .collect())
    }

    /// Deletes whatever is staged for an upload but `keep`'s parts.
    async fn discard(
        &self,
        op: &'static str,
        bucket: &Bucket,
        target: &MappedKey,
        id: &str,
        keep: &[i32],
    ) -> S3Result<()> {
        for n in self.parts(op, bucket, target, id).await?.into_keys() {
            if keep.contains(&n) {
                continue;
            }
            self.engine
                .delete(&target.subject, &part_name(bucket, id, n)?)
                .await
                .map_err(|e| from_engine(op, e))?;
        }
        self.engine
            .delete(&target.subject, &marker_name(bucket, id)?)
            .await
            .map_err(|e| from_engine(op, e))?;
        Ok(())
    }

    pub(crate) async fn create_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        const OP: &str = "CreateMultipartUpload";
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let meta = request_meta!(input);
        let id = new_upload_id()?;
        let marker = serde_json::to_string(&Marker {
            name: target.name.to_string(),
            meta,
        })
        .map_err(|e| internal(OP, &e))?;
        let staged_marker = MappedKey {
            name: marker_name(bucket, &id)?,
            ..target.clone()
        };
        let marker_meta = ObjectMeta {
            user: [(MARKER_FIELD.to_string(), marker)].into(),
            ..ObjectMeta::default()
        };
        self.store(OP, &staged_marker, marker_meta, tokio::io::empty(), None)
            .await?;
        self.engine
            .begin_upload(&target.subject, &target.category, &id)
            .await
            .map_err(|e| from_engine(OP, e))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    /// Stores a part, its ETag (the MD5 of its bytes) computed on the way.
    async fn store_part<R>(
        &self,
        op: &'static str,
        part: MappedKey,
        reader: R,
        progress: Option<Arc<Progress>>,
    ) -> S3Result<(PutReceipt, String)>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let md5 = Arc::new(Mutex::new(Md5::new()));
        let reader = Hashing {
            inner: reader,
            md5: md5.clone(),
        };
        let tag = Arc::new(Mutex::new(None::<String>));
        let sealed = tag.clone();
        let engine = self.engine.clone();
        let task = tokio::spawn(domicile_engine::actor::inherit(async move {
            engine
                .put_with(
                    &part.subject,
                    &part.category,
                    &part.name,
                    &ObjectMeta::default(),
                    reader,
                    move |meta, _| {
                        let digest = md5.lock().map(|m| hex::encode(m.clone().finalize())).ok();
                        if let Ok(mut t) = sealed.lock() {
                            t.clone_from(&digest);
                        }
                        meta.etag = digest;
                    },
                )
                .await
        }));
        let result = task
            .await
            .map_err(|e| internal(op, &format!("write task: {e}")))?;
        match result {
            Ok(receipt) => {
                for region in &receipt.regions {
                    self.metrics.bytes_in(op, region, receipt.size);
                }
                let tag = tag
                    .lock()
                    .ok()
                    .and_then(|t| t.clone())
                    .ok_or_else(|| internal(op, &"a part's MD5 was not computed"))?;
                Ok((receipt, tag))
            }
            Err(e) => match progress.and_then(|p| p.fault()) {
                Some(fault) => Err(fault.to_s3()),
                None => Err(from_engine(op, e)),
            },
        }
    }

    /// UploadPart: a part sent again replaces the earlier one.
    pub(crate) async fn put_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        check_part_number(input.part_number)?;
        let (reader, progress) = body::reader(
            input.body,
            input.content_length,
            self.max_object_size,
            self.body_idle_timeout,
        )?;
        self.marker("UploadPart", bucket, &target, &input.upload_id)
            .await?;
        let part = MappedKey {
            name: part_name(bucket, &input.upload_id, input.part_number)?,
            ..target
        };
        let (_, tag) = self
            .store_part("UploadPart", part, reader, Some(progress))
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(tag)),
            ..Default::default()
        }))
    }

    /// UploadPartCopy: a part read from another object (or a byte range of
    /// it) through the engine, staged like an uploaded part.
    pub(crate) async fn copy_part(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        const OP: &str = "UploadPartCopy";
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        check_part_number(input.part_number)?;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let (src, source) = self.target(&src_bucket, &src_key)?;
        self.marker(OP, bucket, &target, &input.upload_id).await?;
        let (src_name, info) = self
            .lookup(OP, src, &source)
            .await?
            .ok_or_else(no_such_key)?;
        let conditions = Conditions {
            if_match: input.copy_source_if_match,
            if_none_match: input.copy_source_if_none_match,
            if_modified_since: input.copy_source_if_modified_since,
            if_unmodified_since: input.copy_source_if_unmodified_since,
        };
        conditions.check(&info, S3ErrorCode::PreconditionFailed)?;
        let range = match &input.copy_source_range {
            Some(r) => Some(
                s3s::dto::Range::parse(r)
                    .map_err(|_| {
                        s3(
                            S3ErrorCode::InvalidArgument,
                            "x-amz-copy-source-range must be bytes=first-last",
                        )
                    })?
                    .check(info.size)?,
            ),
            None => None,
        };
        let len = range.as_ref().map(|r| r.end - r.start).unwrap_or(info.size);
        if len > self.max_object_size {
            return Err(body::Fault::TooLarge(self.max_object_size).to_s3());
        }
        let (_, stream) = self
            .engine
            .get(&source.subject, &src_name, range)
            .await
            .map_err(|e| from_engine(OP, e))?;
        let reader =
            tokio_util::io::StreamReader::new(stream.map(|r| r.map_err(std::io::Error::other)));
        let part = MappedKey {
            name: part_name(bucket, &input.upload_id, input.part_number)?,
            ..target
        };
        let (_, tag) = self.store_part(OP, part, reader, None).await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(tag)),
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_upload_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        self.marker("ListParts", bucket, &target, &input.upload_id)
            .await?;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let after = input.part_number_marker.unwrap_or(0).max(0);
        let all = self
            .parts("ListParts", bucket, &target, &input.upload_id)
            .await?;
        let mut rest = all.range(after.saturating_add(1)..).peekable();
        let mut parts = Vec::new();
        while parts.len() < max {
            let Some((n, info)) = rest.next() else { break };
            parts.push(Part {
                part_number: Some(*n),
                size: Some(info.size as i64),
                e_tag: Some(ETag::Strong(part_etag(info))),
                last_modified: Some(timestamp(info.modified_at)),
                ..Default::default()
            });
        }
        let truncated = rest.peek().is_some();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated {
                parts.last().and_then(|p| p.part_number)
            } else {
                None
            },
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    /// ListMultipartUploads: the uploads in progress of a bucket, in key
    /// order then upload id order, grouped by delimiter, a page at a time.
    pub(crate) async fn list_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        const OP: &str = "ListMultipartUploads";
        let input = req.input;
        let bucket = self.bucket(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let mut found: Vec<(String, String, i64)> = Vec::new();
        for id in self.listed_subjects(OP, bucket, &prefix).await? {
            let objects = match self.engine.list(&id).await {
                Ok(o) => o,
                Err(domicile_engine::Error::NotRegistered) => continue,
                Err(e) => return Err(from_engine(OP, e)),
            };
            for o in objects {
                if let Some((key, upload)) = upload_of(bucket, &id, &o) {
                    found.push((key, upload, o.modified_at));
                }
            }
        }
        let page = UploadPage::collect(
            found,
            &prefix,
            delimiter.as_deref(),
            input.key_marker.as_deref(),
            input.upload_id_marker.as_deref(),
            max,
        );
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            delimiter,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_key_marker: page.next.as_ref().map(|(k, _)| k.clone()),
            next_upload_id_marker: page.next.and_then(|(_, u)| u),
            uploads: Some(
                page.uploads
                    .into_iter()
                    .map(|(key, upload, at)| MultipartUpload {
                        key: Some(key),
                        upload_id: Some(upload),
                        initiated: Some(timestamp(at)),
                        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(crate) async fn abort_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        self.marker("AbortMultipartUpload", bucket, &target, &input.upload_id)
            .await?;
        self.discard(
            "AbortMultipartUpload",
            bucket,
            &target,
            &input.upload_id,
            &[],
        )
        .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    /// Checks the request's part list against the staged parts, then
    /// commits the object as the sequence of its parts: no byte is read or
    /// written again. The staged objects not named are deleted after.
    pub(crate) async fn complete_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        const OP: &str = "CompleteMultipartUpload";
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let marker = self.marker(OP, bucket, &target, &input.upload_id).await?;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3(
                S3ErrorCode::MalformedXML,
                "the request must name at least one part",
            ));
        }
        // S3's order of checks: the list's order, then each part, then sizes.
        let mut order: Vec<i32> = Vec::with_capacity(requested.len());
        for p in &requested {
            let n = p
                .part_number
                .ok_or_else(|| s3(S3ErrorCode::MalformedXML, "every part needs a PartNumber"))?;
            if order.last().is_some_and(|&prev| n <= prev) {
                return Err(s3(
                    S3ErrorCode::InvalidPartOrder,
                    "the list of parts was not in ascending order",
                ));
            }
            order.push(n);
        }
        let staged = self.parts(OP, bucket, &target, &input.upload_id).await?;
        let mut chosen: Vec<&ObjectInfo> = Vec::with_capacity(order.len());
        for (p, n) in requested.iter().zip(&order) {
            let info = staged.get(n).ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidPart,
                    format!("part {n} was not uploaded"),
                )
            })?;
            if let Some(t) = &p.e_tag
                && t.value() != part_etag(info)
            {
                return Err(s3(
                    S3ErrorCode::InvalidPart,
                    format!("part {n}'s ETag does not match the uploaded part"),
                ));
            }
            chosen.push(info);
        }
        if chosen[..chosen.len() - 1]
            .iter()
            .any(|i| i.size < MIN_PART_SIZE)
        {
            return Err(s3(
                S3ErrorCode::EntityTooSmall,
                format!("every part but the last must be at least {MIN_PART_SIZE} bytes"),
            ));
        }
        let total: u64 = chosen.iter().map(|i| i.size).sum();
        if total > self.max_object_size {
            return Err(body::Fault::TooLarge(self.max_object_size).to_s3());
        }
        let manifest = Manifest {
            upload: input.upload_id.clone(),
            dir: staging_dir(bucket, &input.upload_id),
            parts: order
                .iter()
                .zip(&chosen)
                .map(|(&n, info)| ManifestPart {
                    n: n as u32,
                    size: info.size,
                    version: info.version,
                })
                .collect(),
        };
        let mut meta = marker.meta;
        meta.etag = multipart_etag(chosen.iter().filter_map(|i| i.meta.etag.as_deref()))
            .filter(|_| chosen.iter().all(|i| i.meta.etag.is_some()));
        let tag = meta.etag.clone();
        let final_name = ObjectKey::from_str(&marker.name).map_err(|e| internal(OP, &e))?;
        let receipt = self
            .engine
            .complete_upload(
                &target.subject,
                &target.category,
                &final_name,
                &meta,
                manifest,
            )
            .await
            .map_err(|e| from_engine(OP, e))?;
        // The key's object from before bucket namespaces, if any, is
        // replaced (as PutObject does it).
        if let Err(e) = self.retire_legacy(OP, bucket, &target).await {
            tracing::warn!(op = OP, error = ?e, "the key's object from before bucket namespaces was not deleted");
        }
        // The object is committed: the marker and the parts it does not
        // name are garbage now (the upload's sweep deletes what is left).
        if let Err(e) = self
            .discard(OP, bucket, &target, &input.upload_id, &order)
            .await
        {
            tracing::warn!(op = OP, error = ?e, "an upload's leftovers wait for its sweep");
        }
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(tag.unwrap_or(receipt.checksum))),
            ..Default::default()
        }))
    }
}

/// The key and upload id of an upload's marker in a listing of `bucket`.
fn upload_of(bucket: &Bucket, subject: &SubjectId, o: &ObjectInfo) -> Option<(String, String)> {
    let rest = bucket
        .name_in_bucket(&o.name)?
        .strip_prefix(UPLOAD_PREFIX)?;
    let upload = rest.strip_suffix("/upload")?;
    check_upload_id(upload).ok()?;
    let marker: Marker = serde_json::from_str(o.meta.user.get(MARKER_FIELD)?).ok()?;
    Some((bucket.key_of(subject, &marker.name)?, upload.to_string()))
}

/// One page of ListMultipartUploads.
#[derive(Debug, Default, PartialEq, Eq)]
struct UploadPage {
    uploads: Vec<(String, String, i64)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The next key marker and upload id marker, when truncated.
    next: Option<(String, Option<String>)>,
}

impl UploadPage {
    /// S3's rules: uploads sorted by key, then by upload id (S3 orders one
    /// key's uploads by time; the id is as stable); with a key marker
    /// alone, the uploads of keys after it; with an upload id marker too,
    /// those of the marker's key after that id as well.
    fn collect(
        mut all: Vec<(String, String, i64)>,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        upload_marker: Option<&str>,
        max: usize,
    ) -> UploadPage {
        all.sort();
        let mut page = UploadPage::default();
        let mut last_prefix: Option<String> = None;
        for (key, upload, at) in all {
            if !key.starts_with(prefix) {
                continue;
            }
            match (key_marker, upload_marker) {
                (Some(k), Some(u)) if key.as_str() == k && upload.as_str() <= u => continue,
                (Some(k), Some(_)) if key.as_str() < k => continue,
                (Some(k), None) if key.as_str() <= k => continue,
                _ => {}
            }
            let group = delimiter.and_then(|d| {
                key[prefix.len()..]
                    .find(d)
                    .map(|at| key[..prefix.len() + at + d.len()].to_string())
            });
            if let Some(g) = &group {
                if last_prefix.as_ref() == Some(g) {
                    continue;
                }
                if key_marker.is_some_and(|k| g.as_str() <= k) {
                    continue;
                }
            }
            if page.uploads.len() + page.prefixes.len() >= max {
                page.truncated = true;
                break;
            }
            match group {
                Some(g) => {
                    page.next = Some((g.clone(), None));
                    last_prefix = Some(g.clone());
                    page.prefixes.push(g);
                }
                None => {
                    page.next = Some((key.clone(), Some(upload.clone())));
                    page.uploads.push((key, upload, at));
                }
            }
        }
        if !page.truncated {
            page.next = None;
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(key: &str, id: &str) -> (String, String, i64) {
        (key.to_string(), id.to_string(), 0)
    }

    fn keys(p: &UploadPage) -> Vec<String> {
        p.uploads
            .iter()
            .map(|(k, u, _)| format!("{k}#{u}"))
            .collect()
    }

    #[test]
    fn uploads_page_by_key_then_upload_id() {
        let all = vec![up("a/2", "b"), up("a/1", "z"), up("a/1", "a"), up("b", "c")];
        let p = UploadPage::collect(all.clone(), "", None, None, None, 2);
        assert_eq!(keys(&p), ["a/1#a", "a/1#z"]);
        assert!(p.truncated);
        assert_eq!(p.next, Some(("a/1".into(), Some("z".into()))));
        let p = UploadPage::collect(all.clone(), "", None, Some("a/1"), Some("a"), 2);
        assert_eq!(keys(&p), ["a/1#z", "a/2#b"]);
        let p = UploadPage::collect(all.clone(), "", None, Some("a/1"), None, 10);
        assert_eq!(keys(&p), ["a/2#b", "b#c"]);
        assert!(!p.truncated && p.next.is_none());
    }

    #[test]
    fn uploads_group_by_delimiter_within_the_prefix() {
        let all = vec![
            up("a/x/1", "u"),
            up("a/x/2", "v"),
            up("a/y", "w"),
            up("b/z", "q"),
        ];
        let p = UploadPage::collect(all.clone(), "a/", Some("/"), None, None, 10);
        assert_eq!(p.prefixes, ["a/x/"]);
        assert_eq!(keys(&p), ["a/y#w"]);
        let p = UploadPage::collect(all, "a/", Some("/"), Some("a/x/"), None, 10);
        assert!(p.prefixes.is_empty());
        assert_eq!(keys(&p), ["a/y#w"]);
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_parts_md5s() {
        let a = hex::encode(Md5::digest(b"hello "));
        let b = hex::encode(Md5::digest(b"world"));
        let mut both = Md5::digest(b"hello ").to_vec();
        both.extend(Md5::digest(b"world"));
        assert_eq!(
            multipart_etag([a.as_str(), b.as_str()]),
            Some(format!("{}-2", hex::encode(Md5::digest(&both))))
        );
        assert_eq!(multipart_etag(["not-md5"]), None);
    }

    #[test]
    fn part_ranges_follow_the_part_sizes() {
        let info = ObjectInfo {
            name: "n".into(),
            category: "c".into(),
            size: 12,
            version: 1,
            modified_at: 0,
            checksum: String::new(),
            meta: ObjectMeta::default(),
            parts: vec![5, 5, 2],
        };
        assert_eq!(part_range(&info, 2).ok(), Some((5..10, Some(3))));
        assert_eq!(part_range(&info, 3).ok(), Some((10..12, Some(3))));
        assert!(part_range(&info, 4).is_err());
        assert!(part_range(&info, 0).is_err());
        let plain = ObjectInfo {
            parts: Vec::new(),
            ..info
        };
        assert_eq!(part_range(&plain, 1).ok(), Some((0..12, None)));
        assert!(part_range(&plain, 2).is_err());
    }
}
