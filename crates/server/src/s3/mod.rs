//! The S3-compatible API, on `s3s`: it parses requests, checks SigV4 and
//! serialises responses; [`S3Api`] answers each operation through the
//! engine. Buckets are path-style and are the config's `[[bucket]]`s.
//!
//! - `keys`: bucket and key → (subject, category, name), the name stored in
//!   the bucket's namespace (`{bucket}/{name}`), with S3 codes for keys that
//!   map to nothing or are invalid; folder keys (`…/`) and empty segments
//!   map where the subject can be read.
//! - `body`: request bodies as the engine reads them, with size, length
//!   and idle checks; an object upload streamed without `Content-Length`
//!   (chunked, `UNSIGNED-PAYLOAD`) is admitted past s3s's length check.
//! - `checksum`: Content-MD5 and the `x-amz-checksum-*` algorithms (header
//!   or aws-chunked trailer) verified while a body streams (`BadDigest`,
//!   nothing stored), the values stored with the object; COMPOSITE and
//!   FULL_OBJECT checksums of objects of parts.
//! - `object`: PutObject, GetObject (ranges), HeadObject,
//!   GetObjectAttributes, DeleteObject(s), CopyObject; MD5 ETags, system
//!   metadata, conditional requests (PUT and DELETE decided in the
//!   catalog's commit). docs/s3.md lists what is supported.
//! - `list`: ListObjects and ListObjectsV2 within one subject or across
//!   subjects.
//! - `multipart`: multipart uploads (parts uploaded or copied), staged as hidden encrypted objects of
//!   the same subject and category.
//! - `bucket`: HeadBucket, ListBuckets (paged), CreateBucket, DeleteBucket,
//!   GetBucketLocation.
//! - `error`: engine errors → S3 codes, internals never sent.
//! - `access`: the credentials (`[[credential]]`s and the deployment-wide
//!   one): SigV4 secrets for s3s, and each request's bucket scope and
//!   access level checked before its input is read; the [`Caller`].
//! - `refuse`: what is refused before s3s reads anything: POST object
//!   forms, SigV2, presigned URLs valid for more than a week.
//! - `fuzzing` (hidden): the key mapping and the continuation token's
//!   paging, for the fuzz targets in `fuzz/`.

mod access;
mod body;
mod bucket;
mod checksum;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod keys;
mod list;
mod multipart;
mod object;
mod refuse;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::error_handling::HandleError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use domicile_core::Config;
use domicile_engine::{Engine, S3Credential, Secrets};
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::{ServerOptions, rest};

pub use access::Caller;
/// The secrets that hold the S3 API's deployment-wide credential.
pub use domicile_engine::secrets::{
    S3_ACCESS_KEY_VAR as ACCESS_KEY_VAR, S3_SECRET_KEY_VAR as SECRET_KEY_VAR,
};
pub use refuse::MAX_PRESIGNED_EXPIRES;

/// Answers S3 operations through the engine.
pub struct S3Api {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    max_object_size: u64,
    body_idle_timeout: Duration,
    started: SystemTime,
}

impl std::fmt::Debug for S3Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Api")
            .field("max_object_size", &self.max_object_size)
            .finish()
    }
}

impl S3Api {
    /// Runs one operation as `actor` (its ledger entries name it) and
    /// counts its outcome.
    async fn observe<T>(
        &self,
        op: &'static str,
        actor: String,
        fut: impl Future<Output = S3Result<T>>,
    ) -> S3Result<T> {
        let r = domicile_engine::actor::acting_as(actor, fut).await;
        match &r {
            Ok(_) => self.metrics.request("s3", op, 200),
            Err(e) => {
                let status = e.status_code().map(|s| s.as_u16()).unwrap_or(500);
                self.metrics.request("s3", op, status);
                self.metrics.error("s3", op, e.code().as_str());
                tracing::debug!(op, code = e.code().as_str(), status, "s3 request refused");
            }
        }
        r
    }
}

/// The actor of a request, for the ledger: `s3:` and the name of the
/// credential that signed it (the access check put it in the extensions).
fn actor_of<T>(req: &S3Request<T>) -> String {
    match req.extensions.get::<Caller>() {
        Some(c) => format!("s3:{}", c.name),
        None => "s3:anonymous".to_string(),
    }
}

/// The S3 API's credentials: the config's `[[credential]]`s with their
/// secrets, and the deployment-wide one. Fails if a declared credential
/// has no secret, or if there is no credential at all: the S3 API never
/// runs unauthenticated.
pub fn credentials(config: &Config, secrets: &Secrets) -> Result<Vec<S3Credential>> {
    let all = secrets
        .s3_credentials(&config.credentials)
        .map_err(|e| Error::Secrets(e.to_string()))?;
    if all.is_empty() {
        return Err(Error::MissingS3Credentials);
    }
    Ok(all)
}

/// The S3 API as an axum router: SigV4 checked against the credentials,
/// each request held to its credential's buckets and access, hostile input
/// refused before it is read. Refuses to build without a credential.
pub fn router(
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    options: &ServerOptions,
) -> Result<Router> {
    let all = engine
        .s3_credentials()
        .map_err(|e| Error::Secrets(e.to_string()))?;
    if all.is_empty() {
        return Err(Error::MissingS3Credentials);
    }
    let credentials = access::Credentials::new(all, metrics.clone())
        .known_buckets(engine.file_config().buckets.iter().map(|b| b.name.clone()));
    let api = S3Api {
        engine: engine.clone(),
        metrics: metrics.clone(),
        max_object_size: options.max_object_size,
        body_idle_timeout: options.body_idle_timeout,
        started: SystemTime::now(),
    };
    let mut builder = S3ServiceBuilder::new(api);
    builder.set_auth(credentials.clone());
    builder.set_access(credentials);
    let mut config = s3s::config::S3Config::default();
    // The largest XML body is a CompleteMultipartUpload of 10,000 parts.
    config.xml_max_body_size = 2 << 20;
    builder.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(
        config,
    ))));
    let service = HandleError::new(builder.build(), http_error);
    Ok(Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn_with_state(
            options.max_object_size,
            admit_unsized,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            refuse::refuse_hostile,
        ))
        .layer(axum::middleware::from_fn(close_after_refusal))
        .layer(axum::middleware::from_fn_with_state(
            (metrics, "s3"),
            rest::count_responses,
        )))
}

/// A PUT whose body is streamed without a `Content-Length` (HTTP/1.1
/// chunked transfer encoding) and signed with `UNSIGNED-PAYLOAD` is let
/// through to s3s, which would refuse it with `MissingContentLength`: its
/// body is marked as at most `max_object_size` bytes long, and the handler
/// streams it, counting the bytes against that limit (`EntityTooLarge`
/// past it, nothing stored). Payloads signed in full still need the length
/// s3s checks the hash against.
async fn admit_unsized(State(max): State<u64>, req: Request, next: Next) -> Response {
    let streamed = req.method() == Method::PUT
        && !req.headers().contains_key(header::CONTENT_LENGTH)
        && http_body::Body::size_hint(req.body()).exact().is_none()
        && req
            .headers()
            .get("x-amz-content-sha256")
            .is_some_and(|v| v.as_bytes() == b"UNSIGNED-PAYLOAD");
    if !streamed {
        return next.run(req).await;
    }
    next.run(req.map(|b| axum::body::Body::new(body::Unsized::new(b, max))))
        .await
}

/// A request refused before its body was read leaves that body on the
/// connection: the connection is closed after the answer, so the unread
/// bytes can never be taken for the start of the next request.
async fn close_after_refusal(req: Request, next: Next) -> Response {
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut res = next.run(req).await;
    if has_body && (res.status().is_client_error() || res.status().is_server_error()) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

async fn http_error(_e: s3s::HttpError) -> (StatusCode, &'static str) {
    tracing::warn!("s3 request failed below the S3 layer");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

#[async_trait::async_trait]
impl S3 for S3Api {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.observe("PutObject", actor_of(&req), self.put(req))
            .await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.observe("GetObject", actor_of(&req), self.get(req))
            .await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.observe("HeadObject", actor_of(&req), self.head(req))
            .await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.observe("GetObjectAttributes", actor_of(&req), self.attributes(req))
            .await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.observe("DeleteObject", actor_of(&req), self.delete(req))
            .await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.observe("DeleteObjects", actor_of(&req), self.delete_many(req))
            .await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.observe("CopyObject", actor_of(&req), self.copy(req))
            .await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.observe("ListObjectsV2", actor_of(&req), self.list_v2(req))
            .await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.observe("ListObjects", actor_of(&req), self.list_v1(req))
            .await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.observe("HeadBucket", actor_of(&req), self.head_bucket_op(req))
            .await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.observe("ListBuckets", actor_of(&req), self.list_buckets_op(req))
            .await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.observe("CreateBucket", actor_of(&req), self.create_bucket_op(req))
            .await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.observe("DeleteBucket", actor_of(&req), self.delete_bucket_op(req))
            .await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.observe(
            "GetBucketLocation",
            actor_of(&req),
            self.bucket_location(req),
        )
        .await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.observe(
            "CreateMultipartUpload",
            actor_of(&req),
            self.create_upload(req),
        )
        .await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.observe("UploadPart", actor_of(&req), self.put_part(req))
            .await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.observe("UploadPartCopy", actor_of(&req), self.copy_part(req))
            .await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.observe(
            "CompleteMultipartUpload",
            actor_of(&req),
            self.complete_upload(req),
        )
        .await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.observe(
            "AbortMultipartUpload",
            actor_of(&req),
            self.abort_upload(req),
        )
        .await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.observe("ListParts", actor_of(&req), self.list_upload_parts(req))
            .await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.observe(
            "ListMultipartUploads",
            actor_of(&req),
            self.list_uploads(req),
        )
        .await
    }
}
