//! Buckets and keys: a request's bucket must be one of the config's
//! `[[bucket]]`s, and its key must map, through that bucket's patterns, to
//! a subject, a category and a valid object name. The name is stored in
//! the bucket's namespace, `{bucket}/{name}` ([`Bucket::map_key`]), so one
//! bucket's requests never reach another bucket's objects, even where both
//! buckets' patterns reach the same subject. Names under [`UPLOAD_PREFIX`]
//! (within the bucket) are reserved for multipart uploads in progress.

use domicile_core::bucket::{Bucket, BucketError, MappedKey};
use domicile_core::ids::MAX_KEY_LEN;
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::S3Api;
use super::error::s3;

/// Where parts of multipart uploads are staged, within the bucket's
/// namespace of the subject.
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
        BucketError::NameTooLong { .. } => s3(S3ErrorCode::KeyTooLongError, e.to_string()),
        BucketError::Invalid(e) => s3(S3ErrorCode::InvalidArgument, e.to_string()),
        other => s3(S3ErrorCode::InvalidArgument, other.to_string()),
    })?;
    if bucket
        .name_in_bucket(m.name.as_str())
        .is_none_or(|name| name.starts_with(UPLOAD_PREFIX))
    {
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
        // Within S3's 1024 bytes, but not with the bucket's name before it.
        let long = format!("users/u1/{}zzz", "abc/".repeat(253));
        assert_eq!(long.len(), MAX_KEY_LEN);
        assert_eq!(code(map_key(&b, &long)), "KeyTooLongError");
    }

    #[test]
    fn keys_are_stored_in_their_bucket_and_listed_back() {
        let cat = |s: &str| Category::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        let a = bucket();
        let b = Bucket::new("archive", "users/{subject}/", cat("archive"), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        let ma = map_key(&a, "users/u1/payments/x").unwrap_or_else(|e| panic!("{e:?}"));
        let mb = map_key(&b, "users/u1/payments/x").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ma.name.as_str(), "user-data/payments/x");
        assert_eq!(mb.name.as_str(), "archive/payments/x");
        assert_eq!(
            (ma.category.as_str(), mb.category.as_str()),
            ("payment", "archive")
        );
        assert_eq!(ma.subject, mb.subject);
        // Each stored name maps back to its key through its own bucket only.
        assert_eq!(
            a.key_of(&ma.subject, ma.name.as_str()).as_deref(),
            Some("users/u1/payments/x")
        );
        assert_eq!(a.key_of(&mb.subject, mb.name.as_str()), None);
        assert_eq!(b.key_of(&ma.subject, ma.name.as_str()), None);
        // A key that spells another bucket's name is still this bucket's.
        let spelled =
            map_key(&a, "users/u1/archive/payments/x").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(spelled.name.as_str(), "user-data/archive/payments/x");
    }
}
