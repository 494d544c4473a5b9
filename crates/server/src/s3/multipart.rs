//! Multipart uploads, staged as hidden objects of the upload's own subject
//! and category, in its bucket's namespace: `{bucket}/.domicile-mpu/{upload}/upload`
//! holds the final object's stored name and metadata,
//! `{bucket}/.domicile-mpu/{upload}/{part:05}` each part. Another bucket's
//! requests therefore never see or touch an upload or its parts. Every staged
//! byte is therefore encrypted under the subject's data key and sits only
//! in regions the policy allows for it, like any other object of that
//! subject and category. Completion streams the parts in order through one
//! engine write of the final name (a new blob), then deletes them.
//!
//! The state is in the engine, not in this process: an upload survives a
//! restart, and any server sharing the catalog can take its next part.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use domicile_core::bucket::{Bucket, MappedKey};
use domicile_core::ids::{ObjectKey, SubjectId};
use domicile_engine::{Engine, ObjectInfo, ObjectMeta};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};

use super::S3Api;
use super::body;
use super::error::{from_engine, internal, s3};
use super::keys::UPLOAD_PREFIX;
use super::object::{Conditions, copy_source, etag, meta_of, no_such_key, timestamp};

/// S3's bounds on parts.
const MAX_PARTS: i32 = 10_000;
const MIN_PART_SIZE: u64 = 5 << 20;

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
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(no_such_upload())
    }
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

/// A staged part's plaintext, as one piece of the assembled object.
fn open_part(
    engine: Arc<Engine>,
    subject: SubjectId,
    name: ObjectKey,
) -> BoxFuture<'static, std::io::Result<BoxStream<'static, std::io::Result<Bytes>>>> {
    Box::pin(async move {
        let (_, stream) = engine
            .get(&subject, &name, None)
            .await
            .map_err(std::io::Error::other)?;
        Ok(stream.map(|r| r.map_err(std::io::Error::other)).boxed())
    })
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
        let (_, stream) = match self
            .engine
            .get(&target.subject, &marker_name(bucket, id)?, None)
            .await
        {
            Ok(found) => found,
            Err(domicile_engine::Error::NotFound(_)) => return Err(no_such_upload()),
            Err(e) => return Err(from_engine(op, e)),
        };
        let bytes: Vec<Bytes> = stream.try_collect().await.map_err(|e| internal(op, &e))?;
        let marker: Marker =
            serde_json::from_slice(&bytes.concat()).map_err(|e| internal(op, &e))?;
        if marker.name != target.name.as_str() {
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

    /// Deletes whatever is staged for an upload.
    async fn discard(
        &self,
        op: &'static str,
        bucket: &Bucket,
        target: &MappedKey,
        id: &str,
    ) -> S3Result<()> {
        for n in self.parts(op, bucket, target, id).await?.into_keys() {
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
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let meta = meta_of(input.content_type, input.metadata)?;
        let id = new_upload_id()?;
        let marker = serde_json::to_vec(&Marker {
            name: target.name.to_string(),
            meta,
        })
        .map_err(|e| internal("CreateMultipartUpload", &e))?;
        let staged_marker = MappedKey {
            name: marker_name(bucket, &id)?,
            ..target.clone()
        };
        self.store(
            "CreateMultipartUpload",
            &staged_marker,
            ObjectMeta::default(),
            std::io::Cursor::new(marker),
            None,
        )
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

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
        let receipt = self
            .store(
                "UploadPart",
                &part,
                ObjectMeta::default(),
                reader,
                Some(progress),
            )
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&receipt.etag)),
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
        let receipt = self
            .store(OP, &part, ObjectMeta::default(), reader, None)
            .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&receipt.etag)),
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
        let after = input.part_number_marker.unwrap_or(0);
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
                e_tag: Some(etag(info.etag())),
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
            next_part_number_marker: parts.last().and_then(|p| p.part_number),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
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
        self.discard("AbortMultipartUpload", bucket, &target, &input.upload_id)
            .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    /// Checks the request's part list against the staged parts, then
    /// assembles the object while `s3s` keeps the connection alive with
    /// whitespace (as S3 does): a large object takes a while to re-read.
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
        let mut sizes = Vec::with_capacity(order.len());
        for (p, n) in requested.iter().zip(&order) {
            let info = staged.get(n).ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidPart,
                    format!("part {n} was not uploaded"),
                )
            })?;
            if let Some(t) = &p.e_tag
                && t.value() != info.etag()
            {
                return Err(s3(
                    S3ErrorCode::InvalidPart,
                    format!("part {n}'s ETag does not match the uploaded part"),
                ));
            }
            sizes.push(info.size);
        }
        if sizes[..sizes.len() - 1].iter().any(|&s| s < MIN_PART_SIZE) {
            return Err(s3(
                S3ErrorCode::EntityTooSmall,
                format!("every part but the last must be at least {MIN_PART_SIZE} bytes"),
            ));
        }
        let total: u64 = sizes.iter().sum();
        if total > self.max_object_size {
            return Err(body::Fault::TooLarge(self.max_object_size).to_s3());
        }
        let final_name = ObjectKey::from_str(&marker.name).map_err(|e| internal(OP, &e))?;
        let engine = self.engine.clone();
        let metrics = self.metrics.clone();
        let id = input.upload_id.clone();
        let (bucket_name, key) = (input.bucket.clone(), input.key.clone());
        let legacy = self.legacy_name(bucket, &target);
        let bucket = bucket.clone();
        // The assembly runs in a task of its own: a client that goes away
        // does not leave it half done.
        let task = tokio::spawn(domicile_engine::actor::inherit(async move {
            let reader = {
                let engine = engine.clone();
                let subject = target.subject.clone();
                let names: Vec<ObjectKey> = order
                    .iter()
                    .map(|&n| part_name(&bucket, &id, n))
                    .collect::<S3Result<_>>()?;
                let parts: BoxStream<'static, std::io::Result<Bytes>> =
                    futures::stream::iter(names)
                        .then(move |name| open_part(engine.clone(), subject.clone(), name))
                        .try_flatten()
                        .boxed();
                tokio_util::io::StreamReader::new(parts)
            };
            let receipt = engine
                .put(
                    &target.subject,
                    &target.category,
                    &final_name,
                    &marker.meta,
                    reader,
                )
                .await
                .map_err(|e| from_engine(OP, e))?;
            for region in &receipt.regions {
                metrics.bytes_in(OP, region, receipt.size);
            }
            // The key's object from before bucket namespaces, if any, is
            // replaced (as PutObject does it).
            if let Some(old) = legacy
                && let Ok(info) = engine.head(&target.subject, &old).await
                && info.category == target.category.as_str()
                && let Err(e) = engine.delete(&target.subject, &old).await
            {
                tracing::warn!(op = OP, error = %e, "the key's object from before bucket namespaces was not deleted");
            }
            // The object is committed: the staged copies are garbage now.
            for &n in &order {
                let _ = engine
                    .delete(&target.subject, &part_name(&bucket, &id, n)?)
                    .await;
            }
            let leftovers: Vec<i32> = {
                let dir = staging_dir(&bucket, &id);
                engine
                    .list(&target.subject)
                    .await
                    .map(|all| {
                        all.into_iter()
                            .filter_map(|o| o.name.strip_prefix(&dir)?.parse::<i32>().ok())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for n in leftovers {
                let _ = engine
                    .delete(&target.subject, &part_name(&bucket, &id, n)?)
                    .await;
            }
            let _ = engine
                .delete(&target.subject, &marker_name(&bucket, &id)?)
                .await;
            Ok::<_, S3Error>(CompleteMultipartUploadOutput {
                bucket: Some(bucket_name),
                key: Some(key),
                e_tag: Some(etag(&receipt.etag)),
                ..Default::default()
            })
        }));
        let fut = async move {
            task.await
                .map_err(|e| internal(OP, &format!("assembly task: {e}")))?
        };
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            future: Some(Box::pin(fut)),
            ..Default::default()
        }))
    }
}
