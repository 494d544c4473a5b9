//! Object operations: PutObject, GetObject (with ranges), HeadObject,
//! DeleteObject, DeleteObjects and CopyObject, with conditional requests.
//!
//! A key names the object stored in its bucket's namespace of the subject
//! (`{bucket}/{name}`, see `keys`); where that holds nothing, a read falls
//! back to the name the object had before buckets were namespaces, when
//! only this bucket can have written it, and a write or a delete of the
//! key retires that old name.
//!
//! The ETag of an object is the one the engine stored with it, sealed with
//! its other metadata: the MD5 of its bytes for a PutObject or a
//! CopyObject, as S3 has it ([`ObjectInfo::etag`]; objects written before
//! ETags were stored keep their blob's BLAKE3 checksum). Conditions compare
//! against that ETag; a conditional PUT or DELETE is decided in the
//! catalog's commit ([`domicile_engine::Precondition`]), so of racing
//! `If-None-Match: *` PUTs exactly one wins. 304 and 412 answers carry the
//! object's ETag and Last-Modified.
//!
//! System metadata (Cache-Control, Content-Disposition, Content-Encoding,
//! Content-Language, Expires) is stored and returned with the content type
//! and the user metadata; s3s decodes RFC 2047 encoded-words of user
//! metadata on the way in and encodes non-ASCII values on the way out, as
//! S3 does.
//!
//! Writes run in a task of their own, so a client that disconnects
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
use domicile_engine::{ObjectInfo, ObjectMeta, Precondition, PutReceipt};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use tokio::io::AsyncRead;

use super::S3Api;
use super::body::{self, Progress};
use super::checksum::{self, Checked, Claims, Verify, set_checksums};
use super::error::{from_engine, internal, s3};
use crate::metrics::Metrics;

/// S3's limit on user metadata (names and values), in bytes.
const MAX_USER_METADATA: usize = 2048;

pub(crate) fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_string())
}

/// The whole metadata an upload request gives its object (PutObject,
/// CopyObject with REPLACE, CreateMultipartUpload): content type, user
/// metadata and the HTTP system metadata. Each request has its own input
/// type with the same field names, hence a macro; it returns early with the
/// error of metadata too large.
macro_rules! request_meta {
    ($input:expr) => {
        $crate::s3::object::HttpMeta {
            cache_control: $input.cache_control,
            content_disposition: $input.content_disposition,
            content_encoding: $input.content_encoding,
            content_language: $input.content_language,
            expires: $input.expires,
        }
        .with($crate::s3::object::meta_of(
            $input.content_type,
            $input.metadata,
        )?)
    };
}
pub(crate) use request_meta;

/// The HTTP system metadata of a request, stored with the object.
#[derive(Debug, Default)]
pub(crate) struct HttpMeta {
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
}

impl HttpMeta {
    /// `meta` with these fields set: a request's whole metadata.
    pub(crate) fn with(self, mut meta: ObjectMeta) -> ObjectMeta {
        self.apply(&mut meta);
        meta
    }

    /// Sets these fields of `meta` (empty values are no value).
    pub(crate) fn apply(self, meta: &mut ObjectMeta) {
        let set = |v: Option<String>| v.filter(|v| !v.is_empty());
        meta.cache_control = set(self.cache_control);
        meta.content_disposition = set(self.content_disposition);
        meta.content_encoding = set(self.content_encoding);
        meta.content_language = set(self.content_language);
        meta.expires = self.expires.and_then(|t| {
            let mut out = Vec::new();
            t.format(TimestampFormat::HttpDate, &mut out).ok()?;
            String::from_utf8(out).ok()
        });
    }
}

/// A stored Expires date, back as a timestamp (none if it does not parse).
fn expires_of(meta: &ObjectMeta) -> Option<Timestamp> {
    meta.expires
        .as_deref()
        .and_then(|s| Timestamp::parse(TimestampFormat::HttpDate, s).ok())
}

/// S3's answer to a CopyObject of an object onto itself that changes nothing.
fn copy_onto_itself() -> S3Error {
    s3(
        S3ErrorCode::InvalidRequest,
        "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
    )
}

/// An object's ETag: the one its metadata holds (an object of parts has
/// S3's multipart ETag), else its stored checksum.
pub(crate) fn etag_of(info: &ObjectInfo) -> ETag {
    etag(info.etag())
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
        ..Default::default()
    })
}

/// A failed condition's answer (304 or 412), with the object's ETag and
/// Last-Modified as S3 sends them.
fn with_validators(mut e: S3Error, info: &ObjectInfo) -> S3Error {
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("\"{}\"", info.etag())) {
        headers.insert(axum::http::header::ETAG, v);
    }
    let mut date = Vec::new();
    if timestamp(info.modified_at)
        .format(TimestampFormat::HttpDate, &mut date)
        .is_ok()
        && let Ok(v) = axum::http::HeaderValue::from_bytes(&date)
    {
        headers.insert(axum::http::header::LAST_MODIFIED, v);
    }
    if e.code() != &S3ErrorCode::NotModified {
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/xml"),
        );
    }
    e.set_headers(headers);
    e
}

/// The precondition of a PutObject's If-Match / If-None-Match.
fn put_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::Any),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::Absent),
        (None, Some(ETagCondition::ETag(_))) => Err(s3(
            S3ErrorCode::NotImplemented,
            "If-None-Match on a PUT takes only *",
        )),
        (Some(ETagCondition::Any), None) => Ok(Precondition::Exists),
        (Some(ETagCondition::ETag(t)), None) => Ok(Precondition::ETag(t.value().to_string())),
        (Some(_), Some(_)) => Err(s3(
            S3ErrorCode::NotImplemented,
            "If-Match and If-None-Match cannot be combined on a PUT",
        )),
    }
}

/// Whether an object passes a write's precondition, checked here (for an
/// object under its name from before bucket namespaces).
fn holds(condition: &Precondition, info: Option<&ObjectInfo>) -> S3Result<()> {
    match (condition, info) {
        (Precondition::Any, _) | (Precondition::Absent, None) => Ok(()),
        (Precondition::Exists, Some(_)) => Ok(()),
        (Precondition::ETag(t), Some(i)) if i.etag() == t.as_str() => Ok(()),
        (Precondition::Exists | Precondition::ETag(_), None) => Err(no_such_key()),
        _ => Err(precondition_failed()),
    }
}

fn precondition_failed() -> S3Error {
    s3(
        S3ErrorCode::PreconditionFailed,
        "at least one of the preconditions you specified did not hold",
    )
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
            ETagCondition::ETag(t) => t.value() == info.etag(),
        };
        let modified = timestamp_secs(info.modified_at);
        if let Some(c) = &self.if_match {
            if !matches(c) {
                return Err(with_validators(precondition_failed(), info));
            }
        } else if let Some(t) = &self.if_unmodified_since
            && modified > *t
        {
            return Err(with_validators(precondition_failed(), info));
        }
        if let Some(c) = &self.if_none_match {
            if matches(c) {
                return Err(with_validators(S3Error::new(failed), info));
            }
        } else if let Some(t) = &self.if_modified_since
            && modified <= *t
        {
            return Err(with_validators(S3Error::new(failed), info));
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

/// The stored checksums a GET or HEAD returns, with
/// `x-amz-checksum-mode: ENABLED`: the whole object's (a range has none,
/// as in S3; part 1 of an object of one blob is the whole object), or for
/// `partNumber` of an object of parts, that part's.
fn checksums_asked(
    mode: Option<&ChecksumMode>,
    info: &ObjectInfo,
    range: Option<&Range<u64>>,
    part: Option<i32>,
) -> checksum::Fields {
    if !mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED)) {
        return checksum::Fields::default();
    }
    if let Some(n) = part
        && !info.parts.is_empty()
    {
        return part_checksum(info, n);
    }
    let whole = match range {
        None => true,
        Some(r) => info.parts.is_empty() && r.start == 0 && r.end == info.size,
    };
    if whole {
        checksum::Fields::of(&info.meta.checksums, info.meta.checksum_type.as_deref())
    } else {
        checksum::Fields::default()
    }
}

/// Part `n`'s checksum of an object of parts, if stored.
fn part_checksum(info: &ObjectInfo, n: i32) -> checksum::Fields {
    let value = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| info.meta.part_checksums.get(i));
    match (info.meta.checksums.keys().next(), value) {
        (Some(a), Some(v)) => checksum::Fields {
            kind: None,
            ..checksum::Fields::of(&[(a.clone(), v.clone())].into(), None)
        },
        _ => checksum::Fields::default(),
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
    /// the body was refused when it was. The checksums `checked` computed
    /// (when the body was read through [`checksum::Verify`]) are stored
    /// with the object.
    pub(crate) async fn store<R>(
        &self,
        op: &'static str,
        target: &MappedKey,
        meta: ObjectMeta,
        reader: R,
        progress: Option<Arc<Progress>>,
        checked: Option<Arc<Checked>>,
    ) -> S3Result<PutReceipt>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        self.store_if(
            op,
            target,
            meta,
            reader,
            progress,
            checked,
            Precondition::Any,
        )
        .await
    }

    /// [`S3Api::store`] under a precondition on the object replaced,
    /// decided in the engine's commit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store_if<R>(
        &self,
        op: &'static str,
        target: &MappedKey,
        meta: ObjectMeta,
        reader: R,
        progress: Option<Arc<Progress>>,
        checked: Option<Arc<Checked>>,
        condition: Precondition,
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
        let sums = checked.clone();
        let task = tokio::spawn(domicile_engine::actor::inherit(async move {
            engine
                .put_if_with(
                    &subject,
                    &category,
                    &name,
                    &meta,
                    reader,
                    &condition,
                    move |meta, _| {
                        if let Some(sums) = sums.and_then(|c| c.checksums()) {
                            meta.checksums = sums;
                            meta.checksum_type = Some(checksum::FULL_OBJECT.to_string());
                        }
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
                Ok(receipt)
            }
            Err(e) => {
                if let Some(r) = checked.and_then(|c| c.refusal()) {
                    return Err(r.to_s3());
                }
                match progress.and_then(|p| p.fault()) {
                    Some(fault) => Err(fault.to_s3()),
                    None => Err(from_engine(op, e)),
                }
            }
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
        let claims = Claims::of(&req.headers, req.trailing_headers.as_ref())?;
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let meta = request_meta!(input);
        let mut condition = put_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let (reader, progress) = body::reader(
            input.body,
            input.content_length,
            self.max_object_size,
            self.body_idle_timeout,
        )?;
        let (reader, checked) = Verify::new(reader, claims);
        if condition != Precondition::Any
            && self.info("PutObject", &target).await?.is_none()
            && let Some(legacy) = self.legacy_name(bucket, &target)
        {
            // The key's object may still be under its name from before
            // bucket namespaces: the condition is checked on it, and the
            // namespaced name must still be free at the commit.
            let old = MappedKey {
                name: legacy,
                ..target.clone()
            };
            let current = self
                .info("PutObject", &old)
                .await?
                .filter(|i| i.category == target.category.as_str());
            if current.is_some() {
                holds(&condition, current.as_ref())?;
                condition = Precondition::Absent;
            }
        }
        let receipt = self
            .store_if(
                "PutObject",
                &target,
                meta,
                reader,
                Some(progress),
                Some(checked.clone()),
                condition,
            )
            .await?;
        self.after_write("PutObject", bucket, &target).await;
        let mut out = PutObjectOutput {
            e_tag: Some(etag(&receipt.etag)),
            size: Some(receipt.size as i64),
            ..Default::default()
        };
        out.checksum_type = set_checksums!(
            out,
            checksum::Fields::of(&checked.checksums().unwrap_or_default(), None)
        );
        Ok(S3Response::new(out))
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
        let sums = checksums_asked(input.checksum_mode.as_ref(), &info, range.as_ref(), part);
        let meta = &info.meta;
        let mut out = GetObjectOutput {
            body: Some(outgoing(stream, self.metrics.clone(), "GetObject")),
            content_length: Some(length as i64),
            content_range: range.as_ref().map(|r| content_range(r, info.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(info.etag())),
            last_modified: Some(timestamp(info.modified_at)),
            content_type: input
                .response_content_type
                .or_else(|| meta.content_type.clone()),
            cache_control: input
                .response_cache_control
                .or_else(|| meta.cache_control.clone()),
            content_disposition: input
                .response_content_disposition
                .or_else(|| meta.content_disposition.clone()),
            content_encoding: input
                .response_content_encoding
                .or_else(|| meta.content_encoding.clone()),
            content_language: input
                .response_content_language
                .or_else(|| meta.content_language.clone()),
            expires: input.response_expires.or_else(|| expires_of(meta)),
            metadata: metadata_of(meta),
            parts_count: super::multipart::parts_count(&info),
            ..Default::default()
        };
        out.checksum_type = set_checksums!(out, sums);
        Ok(S3Response::new(out))
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
        let sums = checksums_asked(
            input.checksum_mode.as_ref(),
            &info,
            range.as_ref(),
            input.part_number,
        );
        let mut out = HeadObjectOutput {
            content_length: Some(
                range.as_ref().map(|r| r.end - r.start).unwrap_or(info.size) as i64
            ),
            content_range: range.as_ref().map(|r| content_range(r, info.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(info.etag())),
            last_modified: Some(timestamp(info.modified_at)),
            content_type: info.meta.content_type.clone(),
            cache_control: info.meta.cache_control.clone(),
            content_disposition: info.meta.content_disposition.clone(),
            content_encoding: info.meta.content_encoding.clone(),
            content_language: info.meta.content_language.clone(),
            expires: expires_of(&info.meta),
            metadata: metadata_of(&info.meta),
            parts_count: super::multipart::parts_count(&info),
            ..Default::default()
        };
        out.checksum_type = set_checksums!(out, sums);
        Ok(S3Response::new(out))
    }

    /// GetObjectAttributes: the attributes asked for, of the whole object
    /// (`ETag`, `Checksum`, `ObjectParts`, `StorageClass`, `ObjectSize`).
    /// `ObjectParts` (objects of parts only) pages the parts' numbers,
    /// sizes and checksums (those of the object's algorithm).
    pub(crate) async fn attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        const OP: &str = "GetObjectAttributes";
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let known = [
            ObjectAttributes::CHECKSUM,
            ObjectAttributes::ETAG,
            ObjectAttributes::OBJECT_PARTS,
            ObjectAttributes::OBJECT_SIZE,
            ObjectAttributes::STORAGE_CLASS,
        ];
        // One header, comma-separated (s3s may hand it over unsplit).
        let asked: Vec<&str> = input
            .object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .map(str::trim)
            .collect();
        if asked.is_empty() || asked.iter().any(|a| !known.contains(a)) {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                format!(
                    "Invalid attribute name specified: x-amz-object-attributes takes {}",
                    known.join(", ")
                ),
            ));
        }
        let want = |a: &str| asked.contains(&a);
        let (_, info) = self
            .lookup(OP, bucket, &target)
            .await?
            .ok_or_else(no_such_key)?;
        let mut out = GetObjectAttributesOutput {
            last_modified: Some(timestamp(info.modified_at)),
            ..Default::default()
        };
        if want(ObjectAttributes::ETAG) {
            out.e_tag = Some(etag(info.etag()));
        }
        if want(ObjectAttributes::OBJECT_SIZE) {
            out.object_size = Some(info.size as i64);
        }
        if want(ObjectAttributes::STORAGE_CLASS) {
            out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
        }
        if want(ObjectAttributes::CHECKSUM) && !info.meta.checksums.is_empty() {
            let mut c = Checksum::default();
            c.checksum_type = set_checksums!(
                c,
                checksum::Fields::of(&info.meta.checksums, info.meta.checksum_type.as_deref())
            );
            out.checksum = Some(c);
        }
        if want(ObjectAttributes::OBJECT_PARTS) && !info.parts.is_empty() {
            let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
            let after = input.part_number_marker.unwrap_or(0).max(0) as usize;
            let page: Vec<ObjectPart> = info
                .parts
                .iter()
                .enumerate()
                .skip(after)
                .take(max)
                .map(|(i, size)| {
                    let n = i as i32 + 1;
                    let mut p = ObjectPart {
                        part_number: Some(n),
                        size: Some(*size as i64),
                        ..Default::default()
                    };
                    let _ = set_checksums!(p, part_checksum(&info, n));
                    p
                })
                .collect();
            let truncated = after + page.len() < info.parts.len();
            out.object_parts = Some(GetObjectAttributesParts {
                is_truncated: Some(truncated),
                max_parts: Some(max as i32),
                next_part_number_marker: truncated
                    .then(|| page.last().and_then(|p| p.part_number))
                    .flatten(),
                part_number_marker: input.part_number_marker,
                total_parts_count: super::multipart::parts_count(&info),
                parts: Some(page),
            });
        }
        Ok(S3Response::new(out))
    }

    /// Deletes one key; a key with nothing stored (or a subject that is not
    /// registered) is already deleted, as S3 has it. Under a condition
    /// (If-Match), the key's object must be there and match, decided in
    /// the delete's commit.
    async fn delete_key(
        &self,
        op: &'static str,
        bucket: &str,
        key: &str,
        condition: &Precondition,
    ) -> S3Result<()> {
        let (bucket, target) = self.target(bucket, key)?;
        if *condition != Precondition::Any {
            let (name, _) = self
                .lookup(op, bucket, &target)
                .await?
                .ok_or_else(no_such_key)?;
            return match self
                .engine
                .delete_if(&target.subject, &name, condition)
                .await
            {
                Ok(_) => {
                    if name == target.name {
                        self.retire_legacy(op, bucket, &target).await?;
                    }
                    Ok(())
                }
                Err(e) => Err(from_engine(op, e)),
            };
        }
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
        if input.if_match_last_modified_time.is_some() || input.if_match_size.is_some() {
            return Err(s3(
                S3ErrorCode::NotImplemented,
                "x-amz-if-match-last-modified-time and x-amz-if-match-size are not supported; use If-Match",
            ));
        }
        let condition = match &input.if_match {
            None => Precondition::Any,
            Some(ETagCondition::Any) => Precondition::Exists,
            Some(ETagCondition::ETag(t)) => Precondition::ETag(t.value().to_string()),
        };
        self.delete_key("DeleteObject", &input.bucket, &input.key, &condition)
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
            let condition = match &o.e_tag {
                Some(t) => Precondition::ETag(t.value().to_string()),
                None => Precondition::Any,
            };
            match self
                .delete_key("DeleteObjects", &input.bucket, &o.key, &condition)
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
        let replace = match input.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some(MetadataDirective::COPY) => false,
            Some(MetadataDirective::REPLACE) => true,
            Some(other) => {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("unknown metadata directive {other:?}: use COPY or REPLACE"),
                ));
            }
        };
        if !replace
            && src.name == dest_bucket.name
            && source.subject == dest.subject
            && src_name == dest.name
        {
            return Err(copy_onto_itself());
        }
        let meta = if replace {
            request_meta!(input)
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
        // The copy's checksums are its own, computed as it is written: of
        // the algorithm asked for, else of the source's.
        let mut claims = Claims::default();
        let asked = input.checksum_algorithm.as_ref().map(|a| a.as_str());
        for name in asked
            .into_iter()
            .chain(info.meta.checksums.keys().map(String::as_str))
        {
            let a = checksum::Algorithm::parse(name).ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidRequest,
                    "Value for x-amz-checksum-algorithm header is invalid.",
                )
            })?;
            claims = claims.also(a);
            if asked.is_some() {
                break;
            }
        }
        let (reader, checked) = Verify::new(reader, claims);
        let meta = ObjectMeta {
            checksums: BTreeMap::new(),
            checksum_type: None,
            part_checksums: Vec::new(),
            ..meta
        };
        let receipt = self
            .store(
                "CopyObject",
                &dest,
                meta,
                reader,
                None,
                Some(checked.clone()),
            )
            .await?;
        self.after_write("CopyObject", dest_bucket, &dest).await;
        let mut result = CopyObjectResult {
            e_tag: Some(etag(&receipt.etag)),
            last_modified: Some(Timestamp::from(SystemTime::now())),
            ..Default::default()
        };
        result.checksum_type = set_checksums!(
            result,
            checksum::Fields::of(&checked.checksums().unwrap_or_default(), None)
        );
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(result),
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
    fn failed_conditions_carry_the_etag_and_last_modified() {
        let mut i = info("abc", 1_445_412_480_000);
        i.meta.etag = Some("0123".into());
        let c = Conditions {
            if_none_match: Some(ETagCondition::ETag(ETag::Strong("0123".into()))),
            ..Default::default()
        };
        let e = c
            .check(&i, S3ErrorCode::NotModified)
            .err()
            .unwrap_or_else(|| panic!("the stored ETag, not the checksum, is compared"));
        let headers = e.headers().cloned().unwrap_or_default();
        assert_eq!(
            headers.get("etag").and_then(|v| v.to_str().ok()),
            Some("\"0123\"")
        );
        assert_eq!(
            headers.get("last-modified").and_then(|v| v.to_str().ok()),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
    }

    #[test]
    fn put_conditions_map_as_s3_defines_them() {
        let tag = ETagCondition::ETag(ETag::Strong("abc".into()));
        let any = ETagCondition::Any;
        assert_eq!(put_condition(None, None).ok(), Some(Precondition::Any));
        assert_eq!(
            put_condition(None, Some(&any)).ok(),
            Some(Precondition::Absent)
        );
        assert_eq!(
            put_condition(Some(&any), None).ok(),
            Some(Precondition::Exists)
        );
        assert_eq!(
            put_condition(Some(&tag), None).ok(),
            Some(Precondition::ETag("abc".into()))
        );
        let code = |r: S3Result<Precondition>| r.err().map(|e| e.code().as_str().to_string());
        assert_eq!(
            code(put_condition(None, Some(&tag))).as_deref(),
            Some("NotImplemented")
        );
        assert_eq!(
            code(put_condition(Some(&tag), Some(&any))).as_deref(),
            Some("NotImplemented")
        );
        // The legacy-name check answers as the engine would.
        let i = info("c", 0);
        assert!(holds(&Precondition::Absent, None).is_ok());
        assert!(holds(&Precondition::Absent, Some(&i)).is_err());
        assert!(holds(&Precondition::ETag("c".into()), Some(&i)).is_ok());
        let e = holds(&Precondition::ETag("c".into()), None).err();
        assert_eq!(
            e.map(|e| e.code().as_str().to_string()).as_deref(),
            Some("NoSuchKey")
        );
    }

    #[test]
    fn system_metadata_is_stored_as_given_and_expires_as_an_http_date() {
        let mut meta = ObjectMeta::default();
        let expires = Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap_or_else(|e| panic!("{e}"));
        HttpMeta {
            cache_control: Some("no-cache".into()),
            content_disposition: Some(String::new()),
            content_encoding: Some("gzip".into()),
            content_language: Some("de".into()),
            expires: Some(expires.clone()),
        }
        .apply(&mut meta);
        assert_eq!(meta.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(meta.content_disposition, None, "empty is no value");
        assert_eq!(meta.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(meta.content_language.as_deref(), Some("de"));
        assert_eq!(
            meta.expires.as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(expires_of(&meta), Some(expires));
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
