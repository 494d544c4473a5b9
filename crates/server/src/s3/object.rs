//! Object operations: PutObject, GetObject (with ranges), HeadObject,
//! DeleteObject, DeleteObjects and CopyObject, with conditional requests.
//!
//! A key names the object stored in its bucket's namespace of the subject
//! (`{bucket}/{name}`, see `keys`); where that holds nothing, a read falls
//! back to the name the object had before buckets were namespaces, when
//! only this bucket can have written it, and a write or a delete of the
//! key retires that old name.
//!
//! The ETag of an object is its checksum (BLAKE3 of the stored bytes),
//! quoted. Writes run in a task of their own, so a client that disconnects
//! mid-body makes the engine abort the write cleanly instead of dropping it
//! half-way.

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use domicile_core::bucket::{Bucket, MappedKey};
use domicile_core::ids::ObjectKey;
use domicile_engine::{ObjectInfo, ObjectMeta, PutReceipt};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use tokio::io::AsyncRead;

use super::S3Api;
use super::body::{self, Progress};
use super::error::{from_engine, internal, s3};
use crate::metrics::Metrics;

/// S3's limit on user metadata (names and values), in bytes.
const MAX_USER_METADATA: usize = 2048;

pub(crate) fn etag(checksum: &str) -> ETag {
    ETag::Strong(checksum.to_string())
}

/// An object's ETag: the one its metadata holds (an object of parts has
/// S3's multipart ETag), else its stored checksum.
pub(crate) fn etag_of(info: &ObjectInfo) -> ETag {
    etag(info.meta.etag.as_deref().unwrap_or(&info.checksum))
}

pub(crate) fn timestamp(millis: i64) -> Timestamp {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    Timestamp::from(at)
}

/// Last-Modified has second precision: conditions compare at that precision.
fn timestamp_secs(millis: i64) -> Timestamp {
    timestamp(millis.max(0) / 1000 * 1000)
}

/// Content type and user metadata of a request, within S3's limits.
pub(crate) fn meta_of(
    content_type: Option<String>,
    metadata: Option<Metadata>,
) -> S3Result<ObjectMeta> {
    let user: BTreeMap<String, String> = metadata.unwrap_or_default().into_iter().collect();
    let size: usize = user.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(s3(
            S3ErrorCode::MetadataTooLarge,
            format!("user metadata is limited to {MAX_USER_METADATA} bytes"),
        ));
    }
    Ok(ObjectMeta {
        content_type: content_type.filter(|c| !c.is_empty()),
        user,
        ..ObjectMeta::default()
    })
}

fn metadata_of(meta: &ObjectMeta) -> Option<Metadata> {
    (!meta.user.is_empty()).then(|| {
        meta.user
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// The conditional headers of a GET or HEAD.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

impl Conditions {
    fn is_empty(&self) -> bool {
        self.if_match.is_none()
            && self.if_none_match.is_none()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// RFC 9110 §13.2.2 order, as S3 applies it: If-Match, then
    /// If-Unmodified-Since (only without If-Match), If-None-Match, then
    /// If-Modified-Since (only without If-None-Match).
    pub(crate) fn check(&self, info: &ObjectInfo, failed: S3ErrorCode) -> S3Result<()> {
        let matches = |c: &ETagCondition| match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(t) => t.value() == etag_of(info).value(),
        };
        let modified = timestamp_secs(info.modified_at);
        if let Some(c) = &self.if_match {
            if !matches(c) {
                return Err(s3(
                    S3ErrorCode::PreconditionFailed,
                    "at least one of the preconditions you specified did not hold",
                ));
            }
        } else if let Some(t) = &self.if_unmodified_since
            && modified > *t
        {
            return Err(s3(
                S3ErrorCode::PreconditionFailed,
                "at least one of the preconditions you specified did not hold",
            ));
        }
        if let Some(c) = &self.if_none_match {
            if matches(c) {
                return Err(S3Error::new(failed));
            }
        } else if let Some(t) = &self.if_modified_since
            && modified <= *t
        {
            return Err(S3Error::new(failed));
        }
        Ok(())
    }
}

/// A response body the engine streams: `s3s` wants it `Sync`, and counts
/// the bytes sent.
struct Outgoing {
    inner: Mutex<BoxStream<'static, std::io::Result<Bytes>>>,
}

impl Stream for Outgoing {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().inner.get_mut() {
            Ok(s) => s.as_mut().poll_next(cx),
            Err(poisoned) => poisoned.into_inner().as_mut().poll_next(cx),
        }
    }
}

/// The engine's object stream as an S3 body, counted in the metrics.
fn outgoing<E: std::fmt::Display + Send + 'static>(
    stream: BoxStream<'static, Result<Bytes, E>>,
    metrics: Arc<Metrics>,
    op: &'static str,
) -> StreamingBlob {
    let counted = stream
        .map(move |piece| match piece {
            Ok(b) => {
                metrics.bytes_out(op, b.len() as u64);
                Ok(b)
            }
            Err(e) => {
                // The status line is gone: all we can do is cut the body.
                tracing::warn!(op, error = %e, "object stream failed mid-body");
                Err(std::io::Error::other("object stream failed"))
            }
        })
        .boxed();
    StreamingBlob::wrap(Outgoing {
        inner: Mutex::new(counted),
    })
}

/// A `Range` header resolved against an object's size.
fn resolve_range(range: Option<&s3s::dto::Range>, size: u64) -> S3Result<Option<Range<u64>>> {
    match range {
        None => Ok(None),
        Some(r) => Ok(Some(r.check(size)?)),
    }
}

/// The bytes of part `n` (`partNumber`), which S3 serves without a Range.
fn one_part(info: &ObjectInfo, n: i32, range: Option<&s3s::dto::Range>) -> S3Result<Range<u64>> {
    if range.is_some() {
        return Err(s3(
            S3ErrorCode::InvalidRequest,
            "cannot specify both Range header and partNumber query parameter",
        ));
    }
    Ok(super::multipart::part_range(info, n)?.0)
}

fn content_range(r: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), size)
}

impl S3Api {
    /// Writes a body as one object, in a task of its own. Errors say why
    /// the body was refused when it was.
    pub(crate) async fn store<R>(
        &self,
        op: &'static str,
        target: &MappedKey,
        meta: ObjectMeta,
        reader: R,
        progress: Option<Arc<Progress>>,
    ) -> S3Result<PutReceipt>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let engine = self.engine.clone();
        let (subject, category, name) = (
            target.subject.clone(),
            target.category.clone(),
            target.name.clone(),
        );
        let task = tokio::spawn(domicile_engine::actor::inherit(async move {
            engine.put(&subject, &category, &name, &meta, reader).await
        }));
        let result = task
            .await
            .map_err(|e| internal(op, &format!("write task: {e}")))?;
        match result {
            Ok(receipt) => {
                for region in &receipt.regions {
                    self.metrics.bytes_in(op, region, receipt.size);
                }
                Ok(receipt)
            }
            Err(e) => match progress.and_then(|p| p.fault()) {
                Some(fault) => Err(fault.to_s3()),
                None => Err(from_engine(op, e)),
            },
        }
    }

    /// HEAD of a mapped key, or `None` if there is no such object.
    pub(crate) async fn info(
        &self,
        op: &'static str,
        target: &MappedKey,
    ) -> S3Result<Option<ObjectInfo>> {
        match self.engine.head(&target.subject, &target.name).await {
            Ok(info) => Ok(Some(info)),
            Err(domicile_engine::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(from_engine(op, e)),
        }
    }

    /// The object of a key, with the name it is stored under, or `None`:
    /// its namespaced name, else its name from before buckets were
    /// namespaces (if this bucket alone can have written it, and it holds
    /// an object of the key's category).
    pub(crate) async fn lookup(
        &self,
        op: &'static str,
        bucket: &Bucket,
        target: &MappedKey,
    ) -> S3Result<Option<(ObjectKey, ObjectInfo)>> {
        if let Some(info) = self.info(op, target).await? {
            return Ok(Some((target.name.clone(), info)));
        }
        let Some(legacy) = self.legacy_name(bucket, target) else {
            return Ok(None);
        };
        let old = MappedKey {
            name: legacy.clone(),
            ..target.clone()
        };
        Ok(self
            .info(op, &old)
            .await?
            .filter(|info| info.category == target.category.as_str())
            .map(|info| (legacy, info)))
    }

    /// Deletes the object a key had before buckets were namespaces, once
    /// the key's namespaced name is written or deleted.
    pub(crate) async fn retire_legacy(
        &self,
        op: &'static str,
        bucket: &Bucket,
        target: &MappedKey,
    ) -> S3Result<()> {
        let Some(legacy) = self.legacy_name(bucket, target) else {
            return Ok(());
        };
        let old = MappedKey {
            name: legacy.clone(),
            ..target.clone()
        };
        match self.info(op, &old).await? {
            Some(info) if info.category == target.category.as_str() => {
                match self.engine.delete(&target.subject, &legacy).await {
                    Ok(_) | Err(domicile_engine::Error::NotRegistered) => Ok(()),
                    Err(e) => Err(from_engine(op, e)),
                }
            }
            _ => Ok(()),
        }
    }

    /// After a write of a key: the object under its old name, now replaced,
    /// is deleted. A failure leaves it behind the new one, which reads
    /// prefer; the next delete of the key retires it.
    async fn after_write(&self, op: &'static str, bucket: &Bucket, target: &MappedKey) {
        if let Err(e) = self.retire_legacy(op, bucket, target).await {
            tracing::warn!(op, error = ?e, "the key's object from before bucket namespaces was not deleted");
        }
    }

    pub(crate) async fn put(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let meta = meta_of(input.content_type, input.metadata)?;
        let (reader, progress) = body::reader(
            input.body,
            input.content_length,
            self.max_object_size,
            self.body_idle_timeout,
        )?;
        if input.if_none_match.is_some() || input.if_match.is_some() {
            let current = self
                .lookup("PutObject", bucket, &target)
                .await?
                .map(|(_, info)| info);
            let refused = match (&input.if_none_match, &input.if_match, &current) {
                (Some(_), _, Some(_)) => true,
                (_, Some(_), None) => true,
                (_, Some(ETagCondition::ETag(t)), Some(info)) => t.value() != info.checksum,
                _ => false,
            };
            if refused {
                return Err(s3(
                    S3ErrorCode::PreconditionFailed,
                    "at least one of the preconditions you specified did not hold",
                ));
            }
        }
        let receipt = self
            .store("PutObject", &target, meta, reader, Some(progress))
            .await?;
        self.after_write("PutObject", bucket, &target).await;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&receipt.checksum)),
            size: Some(receipt.size as i64),
            ..Default::default()
        }))
    }

    pub(crate) async fn get(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let conditions = Conditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        };
        // A range or a condition needs the object's size and ETag first;
        // a plain GET goes straight to the engine (one lookup).
        let part = input.part_number;
        let (name, range) = if input.range.is_some() || !conditions.is_empty() || part.is_some() {
            let (name, info) = self
                .lookup("GetObject", bucket, &target)
                .await?
                .ok_or_else(no_such_key)?;
            conditions.check(&info, S3ErrorCode::NotModified)?;
            match part {
                Some(n) => (name, Some(one_part(&info, n, input.range.as_ref())?)),
                None => (name, resolve_range(input.range.as_ref(), info.size)?),
            }
        } else {
            (target.name.clone(), None)
        };
        let opened = match self.engine.get(&target.subject, &name, range.clone()).await {
            Err(domicile_engine::Error::NotFound(_)) if range.is_none() && name == target.name => {
                // Nothing under the namespaced name: the key's old name.
                match self.legacy_name(bucket, &target) {
                    Some(legacy) => self
                        .engine
                        .get(&target.subject, &legacy, None)
                        .await
                        .and_then(|(info, stream)| {
                            if info.category == target.category.as_str() {
                                Ok((info, stream))
                            } else {
                                Err(domicile_engine::Error::NotFound(legacy.to_string()))
                            }
                        }),
                    None => Err(domicile_engine::Error::NotFound(name.to_string())),
                }
            }
            other => other,
        };
        let (info, stream) = opened.map_err(|e| match e {
            // The object changed size between the two lookups.
            domicile_engine::Error::Invalid(_) if range.is_some() => s3(
                S3ErrorCode::InvalidRange,
                "the requested range is not satisfiable",
            ),
            e => from_engine("GetObject", e),
        })?;
        let length = range.as_ref().map(|r| r.end - r.start).unwrap_or(info.size);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(outgoing(stream, self.metrics.clone(), "GetObject")),
            content_length: Some(length as i64),
            content_range: range.as_ref().map(|r| content_range(r, info.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag_of(&info)),
            last_modified: Some(timestamp(info.modified_at)),
            content_type: info.meta.content_type.clone(),
            metadata: metadata_of(&info.meta),
            parts_count: super::multipart::parts_count(&info),
            ..Default::default()
        }))
    }

    pub(crate) async fn head(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let (_, info) = self
            .lookup("HeadObject", bucket, &target)
            .await?
            .ok_or_else(no_such_key)?;
        let conditions = Conditions {
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        };
        conditions.check(&info, S3ErrorCode::NotModified)?;
        let range = match input.part_number {
            Some(n) => Some(one_part(&info, n, input.range.as_ref())?),
            None => resolve_range(input.range.as_ref(), info.size)?,
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(
                range.as_ref().map(|r| r.end - r.start).unwrap_or(info.size) as i64
            ),
            content_range: range.as_ref().map(|r| content_range(r, info.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag_of(&info)),
            last_modified: Some(timestamp(info.modified_at)),
            content_type: info.meta.content_type.clone(),
            metadata: metadata_of(&info.meta),
            parts_count: super::multipart::parts_count(&info),
            ..Default::default()
        }))
    }

    /// Deletes one key; a key with nothing stored (or a subject that is not
    /// registered) is already deleted, as S3 has it.
    async fn delete_key(&self, op: &'static str, bucket: &str, key: &str) -> S3Result<()> {
        let (bucket, target) = self.target(bucket, key)?;
        match self.engine.delete(&target.subject, &target.name).await {
            Ok(_) | Err(domicile_engine::Error::NotRegistered) => {}
            Err(e) => return Err(from_engine(op, e)),
        }
        self.retire_legacy(op, bucket, &target).await
    }

    pub(crate) async fn delete(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = req.input;
        self.delete_key("DeleteObject", &input.bucket, &input.key)
            .await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    pub(crate) async fn delete_many(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket)?;
        if input.delete.objects.len() > 1000 {
            return Err(s3(
                S3ErrorCode::MalformedXML,
                "a DeleteObjects request names at most 1000 keys",
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for o in input.delete.objects {
            match self
                .delete_key("DeleteObjects", &input.bucket, &o.key)
                .await
            {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(o.key),
                            ..Default::default()
                        });
                    }
                }
                Err(e) => errors.push(s3s::dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    key: Some(o.key),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    /// CopyObject reads the source through the engine and writes a new
    /// blob for the destination: the destination's placement and data key
    /// apply, whichever subject the source belongs to.
    pub(crate) async fn copy(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key) = copy_source(&input.copy_source)?;
        let (src, source) = self.target(&src_bucket, &src_key)?;
        let (dest_bucket, dest) = self.target(&input.bucket, &input.key)?;
        let (src_name, info) = self
            .lookup("CopyObject", src, &source)
            .await?
            .ok_or_else(no_such_key)?;
        let conditions = Conditions {
            if_match: input.copy_source_if_match,
            if_none_match: input.copy_source_if_none_match,
            if_modified_since: input.copy_source_if_modified_since,
            if_unmodified_since: input.copy_source_if_unmodified_since,
        };
        conditions.check(&info, S3ErrorCode::PreconditionFailed)?;
        if info.size > self.max_object_size {
            return Err(body::Fault::TooLarge(self.max_object_size).to_s3());
        }
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let meta = if replace {
            meta_of(input.content_type, input.metadata)?
        } else {
            // The source's ETag is a digest of its bytes as stored (of its
            // parts, for an object of parts): the copy's is its own.
            ObjectMeta {
                etag: None,
                ..info.meta.clone()
            }
        };
        let (_, stream) = self
            .engine
            .get(&source.subject, &src_name, None)
            .await
            .map_err(|e| from_engine("CopyObject", e))?;
        let reader =
            tokio_util::io::StreamReader::new(stream.map(|r| r.map_err(std::io::Error::other)));
        let receipt = self.store("CopyObject", &dest, meta, reader, None).await?;
        self.after_write("CopyObject", dest_bucket, &dest).await;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&receipt.checksum)),
                last_modified: Some(Timestamp::from(SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// The bucket and key of a copy source.
pub(crate) fn copy_source(source: &CopySource) -> S3Result<(String, String)> {
    match source {
        CopySource::Bucket { bucket, key, .. } => Ok((bucket.to_string(), key.to_string())),
        _ => Err(s3(
            S3ErrorCode::InvalidArgument,
            "copy sources are bucket/key; access points are not supported",
        )),
    }
}

pub(crate) fn no_such_key() -> S3Error {
    s3(S3ErrorCode::NoSuchKey, "the specified key does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(checksum: &str, modified_at: i64) -> ObjectInfo {
        ObjectInfo {
            name: "a".into(),
            category: "profile".into(),
            size: 3,
            version: 1,
            modified_at,
            checksum: checksum.into(),
            meta: ObjectMeta::default(),
            parts: Vec::new(),
        }
    }

    fn code(r: S3Result<()>) -> Option<String> {
        r.err().map(|e| e.code().as_str().to_string())
    }

    #[test]
    fn conditions_follow_rfc_9110_order() {
        let i = info("abc", 10_500);
        let tag = |s: &str| ETagCondition::ETag(ETag::Strong(s.into()));
        let c = Conditions {
            if_match: Some(tag("abc")),
            ..Default::default()
        };
        assert_eq!(code(c.check(&i, S3ErrorCode::NotModified)), None);
        let c = Conditions {
            if_match: Some(tag("zzz")),
            ..Default::default()
        };
        assert_eq!(
            code(c.check(&i, S3ErrorCode::NotModified)).as_deref(),
            Some("PreconditionFailed")
        );
        let c = Conditions {
            if_none_match: Some(tag("abc")),
            ..Default::default()
        };
        assert_eq!(
            code(c.check(&i, S3ErrorCode::NotModified)).as_deref(),
            Some("NotModified")
        );
        // Modified at 10.5 s: not modified since 10 s (second precision).
        let c = Conditions {
            if_modified_since: Some(timestamp(10_000)),
            ..Default::default()
        };
        assert_eq!(
            code(c.check(&i, S3ErrorCode::NotModified)).as_deref(),
            Some("NotModified")
        );
        let c = Conditions {
            if_modified_since: Some(timestamp(9_000)),
            ..Default::default()
        };
        assert_eq!(code(c.check(&i, S3ErrorCode::NotModified)), None);
        // If-None-Match wins over If-Modified-Since.
        let c = Conditions {
            if_none_match: Some(tag("other")),
            if_modified_since: Some(timestamp(20_000)),
            ..Default::default()
        };
        assert_eq!(code(c.check(&i, S3ErrorCode::NotModified)), None);
    }

    #[test]
    fn user_metadata_is_bounded() {
        let mut m = Metadata::default();
        m.insert("k".into(), "v".repeat(3000));
        assert!(meta_of(None, Some(m)).is_err());
        let mut m = Metadata::default();
        m.insert("color".into(), "blue".into());
        let meta = meta_of(Some("text/plain".into()), Some(m));
        assert_eq!(
            meta.ok().and_then(|m| m.content_type),
            Some("text/plain".to_string())
        );
    }
}
