//! Who may do what on the S3 API. [`Credentials`] is both the `S3Auth`
//! that gives s3s each access key's secret (SigV4 is checked by s3s) and
//! the `S3Access` that s3s asks, before it reads an operation's input, whether
//! the signed caller may do it: a credential reaches its buckets only, and
//! a read credential never writes. CopyObject and UploadPartCopy are asked
//! again once their input is parsed, for the source's bucket.
//!
//! A bucket the config does not name is `NoSuchBucket` for every
//! operation but CreateBucket, before any other check, so an operation
//! that is not implemented answers it too.
//!
//! Every other refusal is `AccessDenied`, counted by credential name
//! (`domicile_access_denied_total`); an allowed request carries its
//! [`Caller`] in its extensions.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use domicile_core::config::{Access, BucketScope};
use domicile_engine::S3Credential;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result};

use crate::metrics::Metrics;

/// The credential an S3 request was signed with, in the request's
/// extensions (`S3Request::extensions`) from the access check on: what the
/// ledger records as the request's actor.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The credential's name (`[[credential]] name`, or `default`).
    pub name: String,
    pub(crate) buckets: BucketScope,
    pub(crate) access: Access,
}

impl Caller {
    /// Whether this caller may see `bucket` at all.
    pub(crate) fn reaches(&self, bucket: &str) -> bool {
        self.buckets.contains(bucket)
    }
}

/// Operations that only read. Any other operation writes, so one this list
/// does not know (a new one s3s adds) is refused to read credentials.
const READ_OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "GetObjectAttributes",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "HeadBucket",
    "ListBuckets",
    "GetBucketLocation",
    "ListParts",
    "ListMultipartUploads",
];

pub(crate) fn is_read(op: &str) -> bool {
    READ_OPERATIONS.contains(&op)
}

/// The S3 API's credentials by access key id (one for s3s's auth, one for
/// its access checks: clones share everything).
#[derive(Clone)]
pub(crate) struct Credentials {
    by_key: Arc<HashMap<String, S3Credential>>,
    metrics: Arc<Metrics>,
    /// The configured buckets, when known: any other is `NoSuchBucket`.
    known: Option<Arc<HashSet<String>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.by_key.values().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("Credentials")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub(crate) fn new(all: Vec<S3Credential>, metrics: Arc<Metrics>) -> Self {
        Credentials {
            by_key: Arc::new(
                all.into_iter()
                    .map(|c| (c.access_key_id.clone(), c))
                    .collect(),
            ),
            metrics,
            known: None,
        }
    }

    /// Answers `NoSuchBucket` for any bucket but these.
    pub(crate) fn known_buckets(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.known = Some(Arc::new(names.into_iter().collect()));
        self
    }

    /// Refuses with `AccessDenied`, counted under the credential's name
    /// (empty for a request signed by none).
    fn deny(&self, name: &str, op: &str, why: String) -> S3Error {
        self.metrics.access_denied("s3", name);
        tracing::info!(credential = name, op, "s3 access denied");
        S3Error::with_message(S3ErrorCode::AccessDenied, why)
    }

    fn caller_of(&self, cx: &S3AccessContext<'_>) -> S3Result<Caller> {
        let op = cx.s3_op().name();
        let Some(signed) = cx.credentials() else {
            return Err(self.deny(
                "",
                op,
                "this request is not signed: sign it with SigV4".into(),
            ));
        };
        let Some(c) = self.by_key.get(&signed.access_key) else {
            // s3s has checked the signature with this key's secret, so the
            // key is known; refuse rather than trust that.
            return Err(self.deny("", op, "unknown access key".into()));
        };
        Ok(Caller {
            name: c.name.clone(),
            buckets: c.buckets.clone(),
            access: c.access,
        })
    }

    /// A copy's source must be in the caller's buckets (reading it is
    /// allowed to every access level).
    fn check_source(&self, caller: Option<&Caller>, op: &str, source: &CopySource) -> S3Result<()> {
        let Some(caller) = caller else {
            return Err(self.deny("", op, "this request is not signed".into()));
        };
        let bucket = match source {
            CopySource::Bucket { bucket, .. } => bucket.as_ref(),
            // Refused as invalid by the operation itself.
            _ => return Ok(()),
        };
        if caller.reaches(bucket) {
            Ok(())
        } else {
            Err(self.deny(
                &caller.name,
                op,
                format!(
                    "credential {} may not read bucket {bucket}, the copy's source",
                    caller.name
                ),
            ))
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for Credentials {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.by_key.get(access_key) {
            Some(c) => Ok(SecretKey::from(c.secret.as_str())),
            None => Err(S3Error::with_message(
                S3ErrorCode::InvalidAccessKeyId,
                "the access key id you provided does not exist in our records",
            )),
        }
    }
}

#[async_trait::async_trait]
impl S3Access for Credentials {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let caller = self.caller_of(cx)?;
        let op = cx.s3_op().name();
        let bucket = match cx.s3_path() {
            S3Path::Root => None,
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => Some(bucket.as_ref()),
        };
        if let (Some(bucket), Some(known)) = (bucket, &self.known)
            && op != "CreateBucket"
            && !known.contains(bucket)
        {
            return Err(super::keys::no_such_bucket());
        }
        if let Some(bucket) = bucket
            && !caller.reaches(bucket)
        {
            return Err(self.deny(
                &caller.name,
                op,
                format!("credential {} may not use bucket {bucket}", caller.name),
            ));
        }
        if caller.access == Access::Read && !is_read(op) {
            return Err(self.deny(
                &caller.name,
                op,
                format!("credential {} may only read", caller.name),
            ));
        }
        cx.extensions_mut().insert(caller);
        Ok(())
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.check_source(
            req.extensions.get::<Caller>(),
            "CopyObject",
            &req.input.copy_source,
        )
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.check_source(
            req.extensions.get::<Caller>(),
            "UploadPartCopy",
            &req.input.copy_source,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_known_reads_are_reads() {
        for op in ["GetObject", "HeadObject", "ListObjectsV2", "ListBuckets"] {
            assert!(is_read(op), "{op}");
        }
        for op in [
            "PutObject",
            "DeleteObject",
            "DeleteObjects",
            "CopyObject",
            "CreateMultipartUpload",
            "UploadPart",
            "UploadPartCopy",
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
            "CreateBucket",
            "DeleteBucket",
            "PutBucketPolicy",
            "SomethingNew",
        ] {
            assert!(!is_read(op), "{op}");
        }
    }

    #[tokio::test]
    async fn the_secret_is_found_by_access_key_only() {
        let creds = Credentials::new(
            vec![S3Credential {
                name: "app".into(),
                access_key_id: "AK1".into(),
                secret: "s1".into(),
                buckets: BucketScope::All,
                access: Access::Read,
            }],
            Arc::new(Metrics::new()),
        );
        assert_eq!(creds.get_secret_key("AK1").await.unwrap().expose(), "s1");
        let e = creds.get_secret_key("app").await.unwrap_err();
        assert_eq!(e.code(), &S3ErrorCode::InvalidAccessKeyId);
        assert!(!format!("{creds:?}").contains("s1"));
    }
}
