//! Bucket operations. Buckets are the config's `[[bucket]]`s: they exist
//! as long as the config names them, so CreateBucket only acknowledges a
//! configured bucket (tools such as rclone create the bucket before
//! copying) and refuses any other name, and DeleteBucket never deletes
//! one. ListBuckets shows the caller's buckets only, in name order, paged
//! by `max-buckets` and `continuation-token` (the last name given, hex
//! encoded) and filtered by `prefix`. A bucket the config does not name is
//! `NoSuchBucket` for every operation (`access` answers it before s3s
//! runs the operation, so unimplemented ones too), except CreateBucket.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::S3Api;
use super::access::Caller;
use super::error::s3;
use super::list::owner;

/// The most buckets one ListBuckets page gives, as in S3.
const MAX_BUCKETS: i32 = 10_000;

impl S3Api {
    pub(crate) async fn head_bucket_op(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    pub(crate) async fn list_buckets_op(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let created = Timestamp::from(self.started);
        let input = req.input;
        let max = match input.max_buckets {
            None => MAX_BUCKETS,
            Some(n) if (1..=MAX_BUCKETS).contains(&n) => n,
            Some(_) => {
                return Err(s3(
                    S3ErrorCode::InvalidArgument,
                    format!("max-buckets must be 1 to {MAX_BUCKETS}"),
                ));
            }
        } as usize;
        let after = match input.continuation_token.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                hex::decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        s3(
                            S3ErrorCode::InvalidArgument,
                            "the continuation token provided is incorrect",
                        )
                    })?,
            ),
        };
        let prefix = input.prefix.unwrap_or_default();
        // The access check put the caller there; without one, no bucket.
        let caller = req.extensions.get::<Caller>();
        let mut names: Vec<&str> = self
            .engine
            .file_config()
            .buckets
            .iter()
            .map(|b| b.name.as_str())
            .filter(|n| caller.is_some_and(|c| c.reaches(n)))
            .filter(|n| n.starts_with(prefix.as_str()))
            .filter(|n| after.as_deref().is_none_or(|a| *n > a))
            .collect();
        names.sort_unstable();
        let more = names.len() > max;
        names.truncate(max);
        let next = more
            .then(|| names.last().map(|n| hex::encode(n.as_bytes())))
            .flatten();
        let buckets = names
            .into_iter()
            .map(|name| Bucket {
                name: Some(name.to_string()),
                creation_date: Some(created.clone()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            continuation_token: next,
            prefix: (!prefix.is_empty()).then_some(prefix),
        }))
    }

    pub(crate) async fn create_bucket_op(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        if self.bucket(&req.input.bucket).is_err() {
            return Err(s3(
                S3ErrorCode::AccessDenied,
                "buckets are declared in the config ([[bucket]]); this one is not",
            ));
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    /// Buckets live as long as the config names them: a configured one is
    /// never deleted.
    pub(crate) async fn delete_bucket_op(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.bucket(&req.input.bucket)?;
        Err(s3(
            S3ErrorCode::AccessDenied,
            "buckets are declared in the config ([[bucket]]); remove it there to delete it",
        ))
    }

    pub(crate) async fn bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket(&req.input.bucket)?;
        // Where the data of a bucket lives is decided per subject, not per
        // bucket: report the default location, as S3 does for us-east-1.
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }
}
