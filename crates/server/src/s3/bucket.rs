//! Bucket operations. Buckets are the config's `[[bucket]]`s: they exist
//! as long as the config names them, so CreateBucket only acknowledges a
//! configured bucket (tools such as rclone create the bucket before
//! copying) and refuses any other name. ListBuckets shows the caller's
//! buckets only.

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response, S3Result};

use super::S3Api;
use super::access::Caller;
use super::error::s3;

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
        // The access check put the caller there; without one, no bucket.
        let caller = req.extensions.get::<Caller>();
        let buckets = self
            .engine
            .file_config()
            .buckets
            .iter()
            .filter(|b| caller.is_some_and(|c| c.reaches(&b.name)))
            .map(|b| Bucket {
                name: Some(b.name.clone()),
                creation_date: Some(created.clone()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("domicile".into()),
                id: Some("domicile".into()),
            }),
            ..Default::default()
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
