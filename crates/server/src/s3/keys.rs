//! Buckets and keys: a request's bucket must be one of the config's
//! `[[bucket]]`s, and its key must map, through that bucket's patterns, to
//! a subject, a category and a valid object name. The name is stored in
//! the bucket's namespace, `{bucket}/{name}` ([`Bucket::map_key`]), so one
//! bucket's requests never reach another bucket's objects, even where both
//! buckets' patterns reach the same subject. Names under [`UPLOAD_PREFIX`]
//! (within the bucket) are reserved for multipart uploads in progress.
//!
//! Objects the S3 API stored before buckets were namespaces have names
//! without a bucket. Such a name stays reachable through the one bucket
//! that can have written it ([`legacy_owner`]): the bucket whose mapping
//! gives the object's name the category it is stored in, when no other
//! bucket's does, and when the name's first segment is no bucket's name
//! (which would make it a namespaced name). Reads fall back to it when the
//! namespaced name holds nothing, listings show it, and a write or a delete
//! of its key retires it.

use domicile_core::bucket::{Bucket, BucketError, MappedKey};
use std::str::FromStr;

use domicile_core::ids::{MAX_KEY_LEN, ObjectKey};
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

/// The bucket an object stored without a bucket in its name (before
/// buckets were namespaces) belongs to, if exactly one can have written
/// it: the one whose mapping gives `name` the object's `category`. None
/// for names whose first segment is a bucket's name (those are namespaced
/// names) and for multipart staging.
pub(crate) fn legacy_owner<'b>(
    buckets: &'b [Bucket],
    name: &str,
    category: &str,
) -> Option<&'b Bucket> {
    if name.starts_with(UPLOAD_PREFIX) {
        return None;
    }
    let first = name.split('/').next().unwrap_or_default();
    if buckets.iter().any(|b| b.name == first) {
        return None;
    }
    let mut owners = buckets
        .iter()
        .filter(|b| b.category_of(name).as_str() == category);
    match (owners.next(), owners.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

impl S3Api {
    /// The name a key's object had before buckets were namespaces, when
    /// only this bucket can have written it.
    pub(crate) fn legacy_name(&self, bucket: &Bucket, target: &MappedKey) -> Option<ObjectKey> {
        let name = bucket.name_in_bucket(target.name.as_str())?;
        let owner = legacy_owner(
            &self.engine.file_config().buckets,
            name,
            target.category.as_str(),
        )?;
        if owner.name != bucket.name {
            return None;
        }
        ObjectKey::from_str(name).ok()
    }

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
        // Folder keys and empty segments map while the subject is readable.
        for key in [
            "users/u1/",
            "users/u1/photos/",
            "users/u1//x",
            "users/u1/a//b/",
        ] {
            assert!(map_key(&b, key).is_ok(), "{key}");
        }
        assert_eq!(code(map_key(&b, "users/")), "AccessDenied");
        assert_eq!(code(map_key(&b, "users//x")), "InvalidArgument");
        assert_eq!(code(map_key(&b, "users/u1/a/./")), "InvalidArgument");
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
    fn names_from_before_namespaces_belong_to_the_one_bucket_that_could_write_them() {
        let cat = |s: &str| Category::from_str(s).unwrap_or_else(|e| panic!("{e}"));
        let archive = Bucket::new("archive", "archive/{subject}/", cat("archive"), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        let buckets = [bucket(), archive];
        let owner = |name: &str, category: &str| {
            legacy_owner(&buckets, name, category).map(|b| b.name.as_str())
        };
        assert_eq!(owner("old.txt", "archive"), Some("archive"));
        assert_eq!(owner("old.txt", "profile"), Some("user-data"));
        assert_eq!(owner("payments/card", "payment"), Some("user-data"));
        // A category no bucket gives that name: written by the command line.
        assert_eq!(owner("payments/card", "profile"), None);
        assert_eq!(owner("old.txt", "payment"), None);
        // A bucket's name first: a namespaced name, not a legacy one.
        assert_eq!(owner("archive/old.txt", "archive"), None);
        assert_eq!(owner("user-data/x", "profile"), None);
        assert_eq!(owner(".domicile-mpu/0a/upload", "profile"), None);
        // Two buckets that give the same category: no single owner.
        let twin = Bucket::new("twin", "twin/{subject}/", cat("archive"), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        let buckets = [buckets[0].clone(), buckets[1].clone(), twin];
        assert!(legacy_owner(&buckets, "old.txt", "archive").is_none());
        assert!(legacy_owner(&buckets, "old.txt", "profile").is_some());
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
