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
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use domicile_core::bucket::{Bucket, MappedKey};
use domicile_core::ids::{ObjectKey, SubjectId};
use domicile_engine::{Manifest, ManifestPart, ObjectInfo, ObjectMeta, PutReceipt};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use super::S3Api;
use super::body::{self, Progress};
use super::checksum::{self, Algorithm, Checked, Claims, Verify, given_checksum, set_checksums};
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
    /// The upload's checksum algorithm (`x-amz-checksum-algorithm`), if
    /// it was given one, and its type (`COMPOSITE` or `FULL_OBJECT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum_type: Option<String>,
    /// The name of the credential that started the upload (S3's
    /// Initiator), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initiator: Option<String>,
}

impl Marker {
    /// The upload's checksum algorithm and type, if it has one.
    fn checksum(&self) -> Option<(Algorithm, &'static str)> {
        let a = Algorithm::parse(self.checksum_algorithm.as_deref()?)?;
        let t = a
            .types()
            .iter()
            .copied()
            .find(|t| self.checksum_type.as_deref() == Some(*t))
            .unwrap_or(a.types()[0]);
        Some((a, t))
    }
}

/// CreateMultipartUpload's checksum algorithm and type, as S3 allows
/// them: a type needs an algorithm, CRC64NVME is FULL_OBJECT only, the
/// SHAs COMPOSITE only; the type defaults to the algorithm's first.
fn upload_checksum(
    algorithm: Option<&ChecksumAlgorithm>,
    kind: Option<&ChecksumType>,
) -> S3Result<Option<(Algorithm, &'static str)>> {
    let Some(algorithm) = algorithm else {
        return match kind {
            None => Ok(None),
            Some(_) => Err(s3(
                S3ErrorCode::InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            )),
        };
    };
    let a = Algorithm::parse(algorithm.as_str()).ok_or_else(|| {
        s3(
            S3ErrorCode::InvalidRequest,
            "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]",
        )
    })?;
    let t = match kind {
        None => a.types()[0],
        Some(k) => a
            .types()
            .iter()
            .copied()
            .find(|t| t.eq_ignore_ascii_case(k.as_str()))
            .ok_or_else(|| {
                s3(
                    S3ErrorCode::InvalidRequest,
                    format!(
                        "The {} checksum type cannot be used with the {} checksum algorithm.",
                        k.as_str().to_ascii_uppercase(),
                        a.name().to_ascii_lowercase()
                    ),
                )
            })?,
    };
    Ok(Some((a, t)))
}

/// What a part's body is checked for and stored with: its claims, and
/// the upload's algorithm (CRC64NVME for an upload without one, so the
/// object gets S3's default full-object checksum). A part claiming another
/// algorithm than its upload's is refused as S3 refuses it.
fn part_claims(marker: &Marker, claims: Claims) -> S3Result<Claims> {
    match marker.checksum() {
        Some((a, _)) => match claims.claimed() {
            Some(c) if c != a => Err(s3(
                S3ErrorCode::InvalidRequest,
                format!(
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                    a.name().to_ascii_lowercase(),
                    c.name().to_ascii_lowercase()
                ),
            )),
            _ => Ok(claims.also(a)),
        },
        None => Ok(claims.also(Algorithm::Crc64Nvme)),
    }
}

/// The checksum a part's answers show: the upload's algorithm's, else
/// the one the part claimed.
fn part_fields(
    marker: &Marker,
    claimed: Option<Algorithm>,
    info_sums: &BTreeMap<String, String>,
) -> checksum::Fields {
    match marker.checksum().map(|(a, _)| a).or(claimed) {
        Some(a) => checksum::Fields::only(info_sums, a),
        None => checksum::Fields::default(),
    }
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
        let initiator = req
            .extensions
            .get::<super::Caller>()
            .map(|c| c.name.to_string());
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let sums = upload_checksum(
            input.checksum_algorithm.as_ref(),
            input.checksum_type.as_ref(),
        )?;
        let meta = request_meta!(input);
        let id = new_upload_id()?;
        let marker = serde_json::to_string(&Marker {
            name: target.name.to_string(),
            meta,
            checksum_algorithm: sums.map(|(a, _)| a.name().to_string()),
            checksum_type: sums.map(|(_, t)| t.to_string()),
            initiator,
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
        self.store(
            OP,
            &staged_marker,
            marker_meta,
            tokio::io::empty(),
            None,
            None,
        )
        .await?;
        self.engine
            .begin_upload(&target.subject, &target.category, &id)
            .await
            .map_err(|e| from_engine(OP, e))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            checksum_algorithm: sums.map(|(a, _)| ChecksumAlgorithm::from(a.name().to_string())),
            checksum_type: sums.map(|(_, t)| ChecksumType::from(t.to_string())),
            ..Default::default()
        }))
    }

    /// Stores a part, with its ETag (the MD5 of its bytes, computed by the
    /// engine as the part streams) and the checksums `checked` computed.
    async fn store_part<R>(
        &self,
        op: &'static str,
        part: MappedKey,
        reader: R,
        progress: Option<Arc<Progress>>,
        checked: Arc<Checked>,
    ) -> S3Result<(PutReceipt, String)>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let tag = Arc::new(Mutex::new(None::<String>));
        let sealed = tag.clone();
        let sums = checked.clone();
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
                        // The engine has set the ETag: the MD5 of the bytes.
                        if let Ok(mut t) = sealed.lock() {
                            t.clone_from(&meta.etag);
                        }
                        if let Some(sums) = sums.checksums() {
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
                let tag = tag
                    .lock()
                    .ok()
                    .and_then(|t| t.clone())
                    .ok_or_else(|| internal(op, &"a part's MD5 was not computed"))?;
                Ok((receipt, tag))
            }
            Err(e) => {
                if let Some(r) = checked.refusal() {
                    return Err(r.to_s3());
                }
                match progress.and_then(|p| p.fault()) {
                    Some(fault) => Err(fault.to_s3()),
                    None => Err(from_engine(op, e)),
                }
            }
        }
    }

    /// UploadPart: a part sent again replaces the earlier one.
    pub(crate) async fn put_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let claims = Claims::of(&req.headers, req.trailing_headers.as_ref())?;
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        check_part_number(input.part_number)?;
        let (reader, progress) = body::reader(
            input.body,
            input.content_length,
            self.max_object_size,
            self.body_idle_timeout,
        )?;
        let marker = self
            .marker("UploadPart", bucket, &target, &input.upload_id)
            .await?;
        let claimed = claims.claimed();
        let (reader, checked) = Verify::new(reader, part_claims(&marker, claims)?);
        let part = MappedKey {
            name: part_name(bucket, &input.upload_id, input.part_number)?,
            ..target
        };
        let (_, tag) = self
            .store_part("UploadPart", part, reader, Some(progress), checked.clone())
            .await?;
        let mut out = UploadPartOutput {
            e_tag: Some(ETag::Strong(tag)),
            ..Default::default()
        };
        let sums = checked.checksums().unwrap_or_default();
        let _ = set_checksums!(out, part_fields(&marker, claimed, &sums));
        Ok(S3Response::new(out))
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
        let marker = self.marker(OP, bucket, &target, &input.upload_id).await?;
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
        let (reader, checked) = Verify::new(reader, part_claims(&marker, Claims::default())?);
        let (_, tag) = self
            .store_part(OP, part, reader, None, checked.clone())
            .await?;
        let mut result = CopyPartResult {
            e_tag: Some(ETag::Strong(tag)),
            last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
            ..Default::default()
        };
        let sums = checked.checksums().unwrap_or_default();
        let _ = set_checksums!(result, part_fields(&marker, None, &sums));
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(result),
            ..Default::default()
        }))
    }

    pub(crate) async fn list_upload_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let (bucket, target) = self.target(&input.bucket, &input.key)?;
        let marker = self
            .marker("ListParts", bucket, &target, &input.upload_id)
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
            let mut part = Part {
                part_number: Some(*n),
                size: Some(info.size as i64),
                e_tag: Some(ETag::Strong(part_etag(info))),
                last_modified: Some(timestamp(info.modified_at)),
                ..Default::default()
            };
            let _ = set_checksums!(part, part_fields(&marker, None, &info.meta.checksums));
            parts.push(part);
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
            checksum_algorithm: marker
                .checksum()
                .map(|(a, _)| ChecksumAlgorithm::from(a.name().to_string())),
            checksum_type: marker
                .checksum()
                .map(|(_, t)| ChecksumType::from(t.to_string())),
            initiator: Some(initiator_of(marker.initiator.clone())),
            owner: Some(super::list::owner()),
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
        let mut initiators: BTreeMap<String, Option<String>> = BTreeMap::new();
        for id in self.listed_subjects(OP, bucket, &prefix).await? {
            let objects = match self.engine.list(&id).await {
                Ok(o) => o,
                Err(domicile_engine::Error::NotRegistered) => continue,
                Err(e) => return Err(from_engine(OP, e)),
            };
            for o in objects {
                if let Some((key, upload, marker)) = upload_of(bucket, &id, &o) {
                    initiators.insert(upload.clone(), marker.initiator);
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
                        initiator: Some(initiator_of(initiators.get(&upload).cloned().flatten())),
                        owner: Some(super::list::owner()),
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
        if input.mpu_object_size.is_some_and(|n| n != total as i64) {
            return Err(s3(
                S3ErrorCode::InvalidRequest,
                "The provided 'x-amz-mp-object-size' header value does not match what was computed.",
            ));
        }
        for (p, info) in requested.iter().zip(&chosen) {
            for a in Algorithm::ALL {
                if let Some(given) = given_checksum!(p, a)
                    && info.meta.checksums.get(a.name()) != Some(&given)
                {
                    return Err(s3(
                        S3ErrorCode::InvalidPart,
                        format!(
                            "part {}'s {} does not match the uploaded part",
                            p.part_number.unwrap_or_default(),
                            a.name()
                        ),
                    ));
                }
            }
        }
        let whole = object_checksum(&marker, &chosen, input.checksum_type.as_ref())?;
        for a in Algorithm::ALL {
            let Some(given) = given_checksum!(input, a) else {
                continue;
            };
            let computed = match &whole {
                Some((b, _, v)) if *b == a => Some(v.clone()),
                _ => checksum::full_object(a, sums_of(&chosen, a)),
            };
            let Some(computed) = computed else {
                return Err(s3(
                    S3ErrorCode::InvalidRequest,
                    format!(
                        "the parts of this upload have no {} checksum to check the object's against",
                        a.name()
                    ),
                ));
            };
            if given != computed && Some(given.as_str()) != computed.split('-').next() {
                return Err(checksum::Refusal::Mismatch(a).to_s3());
            }
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
        meta.checksums = BTreeMap::new();
        meta.checksum_type = None;
        meta.part_checksums = Vec::new();
        if let Some((a, t, v)) = &whole {
            meta.checksums.insert(a.name().to_string(), v.clone());
            meta.checksum_type = Some(t.to_string());
            meta.part_checksums = sums_of(&chosen, *a)
                .into_iter()
                .map(|(v, _)| v.to_string())
                .collect();
        }
        let tag = meta.etag.clone();
        let (meta_sums, meta_type) = (meta.checksums.clone(), meta.checksum_type.clone());
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
        let mut out = CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(tag.unwrap_or(receipt.checksum))),
            ..Default::default()
        };
        out.checksum_type =
            set_checksums!(out, checksum::Fields::of(&meta_sums, meta_type.as_deref()));
        Ok(S3Response::new(out))
    }
}

/// The parts' values of checksum `a`, with their sizes, if every part has
/// one (parts staged before checksums were kept have none).
fn sums_of<'a>(chosen: &[&'a ObjectInfo], a: Algorithm) -> Vec<(&'a str, u64)> {
    chosen
        .iter()
        .map(|i| i.meta.checksums.get(a.name()).map(|v| (v.as_str(), i.size)))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

/// The checksum of a completed object of parts, from its parts' (S3's
/// rules): of the upload's algorithm and type, COMPOSITE (`-N`) or
/// FULL_OBJECT; without one, the full-object CRC64NVME S3 gives by
/// default. None if a part has none (staged before checksums were kept).
/// A completion asking for another type than the upload's is refused.
fn object_checksum(
    marker: &Marker,
    chosen: &[&ObjectInfo],
    asked: Option<&ChecksumType>,
) -> S3Result<Option<(Algorithm, &'static str, String)>> {
    let (a, t) = marker
        .checksum()
        .unwrap_or((Algorithm::Crc64Nvme, checksum::FULL_OBJECT));
    if let Some(k) = asked
        && !k.as_str().eq_ignore_ascii_case(t)
    {
        return Err(s3(
            S3ErrorCode::InvalidRequest,
            format!(
                "The upload was created using the {t} checksum mode. The complete request specified the {} mode.",
                k.as_str()
            ),
        ));
    }
    let parts = sums_of(chosen, a);
    if parts.len() != chosen.len() {
        return Ok(None);
    }
    let value = if t == checksum::COMPOSITE {
        checksum::composite(a, parts.iter().map(|(v, _)| *v))
    } else {
        checksum::full_object(a, parts)
    };
    Ok(value.map(|v| (a, t, v)))
}

/// The key, upload id and marker of an upload's marker object in a
/// listing of `bucket`.
fn upload_of(
    bucket: &Bucket,
    subject: &SubjectId,
    o: &ObjectInfo,
) -> Option<(String, String, Marker)> {
    let rest = bucket
        .name_in_bucket(&o.name)?
        .strip_prefix(UPLOAD_PREFIX)?;
    let upload = rest.strip_suffix("/upload")?;
    check_upload_id(upload).ok()?;
    let marker: Marker = serde_json::from_str(o.meta.user.get(MARKER_FIELD)?).ok()?;
    Some((
        bucket.key_of(subject, &marker.name)?,
        upload.to_string(),
        marker,
    ))
}

/// S3's Initiator of an upload: the credential that started it (the
/// deployment, for an upload from before this was kept).
fn initiator_of(name: Option<String>) -> Initiator {
    let owner = super::list::owner();
    match name {
        Some(n) => Initiator {
            display_name: Some(n.clone()),
            id: Some(n),
        },
        None => Initiator {
            display_name: owner.display_name,
            id: owner.id,
        },
    }
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
    /// S3's rules: uploads sorted by key, then by the time they were
    /// started (then by upload id); with a key marker alone, the uploads
    /// of keys after it; with an upload id marker too, those of the
    /// marker's key started after that upload as well (after that id, if
    /// that upload is gone).
    fn collect(
        mut all: Vec<(String, String, i64)>,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        upload_marker: Option<&str>,
        max: usize,
    ) -> UploadPage {
        all.sort_by(|a, b| (&a.0, a.2, &a.1).cmp(&(&b.0, b.2, &b.1)));
        let after: Option<(i64, String)> = match (key_marker, upload_marker) {
            (Some(k), Some(u)) => all
                .iter()
                .find(|(key, upload, _)| key == k && upload == u)
                .map(|(_, upload, at)| (*at, upload.clone())),
            _ => None,
        };
        let mut page = UploadPage::default();
        let mut last_prefix: Option<String> = None;
        for (key, upload, at) in all {
            if !key.starts_with(prefix) {
                continue;
            }
            match (key_marker, upload_marker) {
                (Some(k), Some(u))
                    if key.as_str() == k
                        && match &after {
                            Some(m) => (at, &upload) <= (m.0, &m.1),
                            None => upload.as_str() <= u,
                        } =>
                {
                    continue;
                }
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
    fn one_keys_uploads_list_by_start_time_and_page_after_the_marker_upload() {
        let at = |key: &str, id: &str, t: i64| (key.to_string(), id.to_string(), t);
        let all = vec![
            at("k", "z", 1),
            at("k", "a", 3),
            at("k", "m", 2),
            at("j", "q", 9),
        ];
        let p = UploadPage::collect(all.clone(), "", None, None, None, 10);
        assert_eq!(keys(&p), ["j#q", "k#z", "k#m", "k#a"]);
        let p = UploadPage::collect(all.clone(), "", None, Some("k"), Some("z"), 10);
        assert_eq!(keys(&p), ["k#m", "k#a"]);
        let p = UploadPage::collect(all.clone(), "", None, Some("k"), Some("m"), 1);
        assert_eq!(keys(&p), ["k#a"]);
        assert!(!p.truncated);
        let p = UploadPage::collect(all, "", None, Some("j"), Some("q"), 2);
        assert_eq!(keys(&p), ["k#z", "k#m"]);
        assert_eq!(p.next, Some(("k".into(), Some("m".into()))));
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
