//! Buckets and keys: a request's bucket must be one of the config's
//! `[[bucket]]`s, and its key must map, through that bucket's patterns, to
//! a subject, a category and a valid object name. Names under
//! [`UPLOAD_PREFIX`] are reserved for multipart uploads in progress.

use domicile_core::bucket::{Bucket, BucketError, MappedKey};
use domicile_core::ids::MAX_KEY_LEN;
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::S3Api;
use super::error::s3;

/// Where parts of multipart uploads are staged, within the subject.
pub(crate) const UPLOAD_PREFIX: &str = ".domicile-mpu/";

pub(crate) fn no_such_bucket() -> S3Error {
    s3(
        S3ErrorCode::NoSuchBucket,
        "the specified bucket does not exist: buckets are the config's [[bucket]] entries",
    )
}

/// Maps a key through a bucket, with the S3 error a client should see.
pub(crate) fn map_key(bucket: &Bucket, key: &str) -> S3Result<MappedKey> {
    if key.len() > MAX_KEY_LEN {
        return Err(s3(
            S3ErrorCode::KeyTooLongError,
            format!("keys are at most {MAX_KEY_LEN} bytes"),
        ));
    }
    let m = bucket.map_key(key).map_err(|e| match e {
        BucketError::NoSubject(pattern) => s3(
            S3ErrorCode::AccessDenied,
            format!(
                "this key belongs to no subject: keys of bucket {} must match {pattern}",
                bucket.name
            ),
        ),
        BucketError::Invalid(e) => s3(S3ErrorCode::InvalidArgument, e.to_string()),
        other => s3(S3ErrorCode::InvalidArgument, other.to_string()),
    })?;
    if m.name.as_str().starts_with(UPLOAD_PREFIX) {
        return Err(s3(
            S3ErrorCode::InvalidArgument,
            format!("names under {UPLOAD_PREFIX} are reserved for multipart uploads"),
        ));
    }
    Ok(m)
}

impl S3Api {
    /// The configured bucket of this name.
    pub(crate) fn bucket(&self, name: &str) -> S3Result<&Bucket> {
        self.engine
            .file_config()
            .buckets
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(no_such_bucket)
    }

    /// The bucket and the mapped key of a request.
    pub(crate) fn target(&self, bucket: &str, key: &str) -> S3Result<(&Bucket, MappedKey)> {
        let b = self.bucket(bucket)?;
        Ok((b, map_key(b, key)?))
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use domicile_core::ids::Category;

    use super::*;

    fn bucket() -> Bucket {
        let cat = |s: &str| Category::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        Bucket::new(
            "user-data",
            "users/{subject}/",
            cat("profile"),
            vec![("users/{subject}/payments/".into(), cat("payment"))],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn code(r: S3Result<MappedKey>) -> String {
        r.err()
            .map(|e| e.code().as_str().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn refuses_bad_keys_with_s3_codes() {
        let b = bucket();
        assert!(map_key(&b, "users/u1/a.txt").is_ok());
        assert_eq!(code(map_key(&b, "users/u1/../x")), "InvalidArgument");
        assert_eq!(code(map_key(&b, "users/u1/a\0b")), "InvalidArgument");
        assert_eq!(code(map_key(&b, "elsewhere/x")), "AccessDenied");
        assert_eq!(
            code(map_key(&b, "users/u1/.domicile-mpu/x/1")),
            "InvalidArgument"
        );
        let long = format!("users/u1/{}", "a/".repeat(600));
        assert_eq!(code(map_key(&b, &long)), "KeyTooLongError");
    }
}
