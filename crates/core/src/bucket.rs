//! How S3 object keys map to subjects and categories.
//!
//! A bucket's `subject` pattern, such as `users/{subject}/`, says where the
//! subject id sits in a key; the rest of the key is the object's name within
//! that subject. `categories` maps longer patterns, such as
//! `users/{subject}/payments/`, to their category; the longest match wins,
//! and keys that match none get the bucket's default category.
//!
//! Each bucket is a namespace of its own: an object written through bucket
//! `b` is stored under the name `b/{name}` (bucket names hold no `/`), so
//! two buckets whose patterns reach the same subject never see each
//! other's objects. [`Bucket::map_key`] gives that stored name, and
//! [`Bucket::key_of`] maps a stored name back to a key of the bucket, or to
//! nothing when the name belongs to another bucket (or to none: names the
//! command line wrote without a bucket, or that the S3 API stored before
//! buckets were namespaces).
//!
//! Keys ending in `/` ("folder" objects) and keys with empty segments map
//! like any other, as long as the subject can be read from them: the
//! subject's own folder (`users/alice/`, an empty name) is the stored name
//! `{bucket}/`, and `users/alice//x` is `{bucket}//x`. What cannot map is
//! what names no subject: folders above the subject level (`users/`), an
//! empty subject (`users//x`), and keys outside the pattern; names with a
//! `.` or `..` segment or a control character are refused whatever the
//! bucket.

use std::str::FromStr;

use crate::ids::{Category, InvalidId, MAX_KEY_LEN, ObjectKey, SubjectId};

const PLACEHOLDER: &str = "{subject}";

/// Why a bucket definition or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    #[error("bucket name {0:?} is invalid: use 3 to 63 lowercase letters, digits, '-' or '.'")]
    BadName(String),
    #[error(
        "pattern {0:?} must contain {{subject}} exactly once, as a whole segment followed by '/'"
    )]
    BadPattern(String),
    #[error("category pattern {pattern:?} must start with the subject pattern {subject:?}")]
    PatternOutsideSubject { pattern: String, subject: String },
    #[error("key does not match the bucket's subject pattern {0:?}")]
    NoSubject(String),
    #[error(
        "the object's name within bucket {bucket} is too long: with the bucket's name it must be at most {MAX_KEY_LEN} bytes"
    )]
    NameTooLong { bucket: String },
    #[error(transparent)]
    Invalid(#[from] InvalidId),
}

/// One `[[bucket]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    /// `name` and '/': the start of every name stored through this bucket.
    namespace: String,
    /// Text before `{subject}`.
    prefix: String,
    /// Text after `{subject}` (starts with '/').
    suffix: String,
    pub subject_pattern: String,
    pub category: Category,
    /// (pattern, category); the pattern's part after the subject suffix is
    /// stored in `tails` for matching.
    pub categories: Vec<(String, Category)>,
    tails: Vec<(String, Category)>,
}

/// A key resolved through a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedKey {
    pub subject: SubjectId,
    pub category: Category,
    /// The object's stored name within the subject: the bucket's name, '/'
    /// and the key after the subject pattern, so objects of different
    /// buckets never share a name and the key can be rebuilt for listing
    /// ([`Bucket::key_of`]).
    pub name: ObjectKey,
}

fn split_pattern(p: &str) -> Result<(String, String), BucketError> {
    let bad = || BucketError::BadPattern(p.to_string());
    let at = p.find(PLACEHOLDER).ok_or_else(bad)?;
    if p[at + PLACEHOLDER.len()..].contains(PLACEHOLDER) {
        return Err(bad());
    }
    let (prefix, rest) = (&p[..at], &p[at + PLACEHOLDER.len()..]);
    if !(prefix.is_empty() || prefix.ends_with('/')) || !rest.starts_with('/') {
        return Err(bad());
    }
    Ok((prefix.to_string(), rest.to_string()))
}

impl Bucket {
    pub fn new(
        name: &str,
        subject: &str,
        category: Category,
        categories: Vec<(String, Category)>,
    ) -> Result<Bucket, BucketError> {
        let name_ok = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if !name_ok {
            return Err(BucketError::BadName(name.to_string()));
        }
        let (prefix, suffix) = split_pattern(subject)?;
        let mut tails = Vec::new();
        for (pattern, cat) in &categories {
            let (p, s) = split_pattern(pattern)?;
            if p != prefix || !s.starts_with(&suffix) {
                return Err(BucketError::PatternOutsideSubject {
                    pattern: pattern.clone(),
                    subject: subject.to_string(),
                });
            }
            tails.push((s[suffix.len()..].to_string(), cat.clone()));
        }
        // Longest tail first, so the most specific pattern wins.
        tails.sort_by_key(|t| std::cmp::Reverse(t.0.len()));
        Ok(Bucket {
            name: name.to_string(),
            namespace: format!("{name}/"),
            prefix,
            suffix,
            subject_pattern: subject.to_string(),
            category,
            categories,
            tails,
        })
    }

    /// Resolves a full S3 key to (subject, category, stored name).
    pub fn map_key(&self, key: &str) -> Result<MappedKey, BucketError> {
        let no = || BucketError::NoSubject(self.subject_pattern.clone());
        let rest = key.strip_prefix(&self.prefix).ok_or_else(no)?;
        let slash = rest.find('/').ok_or_else(no)?;
        let subject = SubjectId::from_str(&rest[..slash])?;
        let after = rest[slash..].strip_prefix(&self.suffix).ok_or_else(no)?;
        // Checked on its own first, so a bad name is refused for what it is
        // (the subject's folder itself, an empty name, is the stored name
        // `{bucket}/`).
        if !after.is_empty() {
            ObjectKey::from_str(after)?;
        }
        Ok(MappedKey {
            subject,
            category: self.category_of(after),
            name: self.stored_name(after)?,
        })
    }

    /// The category of a name within this bucket (the key after the
    /// subject pattern): the longest category pattern that matches, or the
    /// bucket's default.
    pub fn category_of(&self, name: &str) -> Category {
        self.tails
            .iter()
            .find(|(tail, _)| name.starts_with(tail.as_str()))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| self.category.clone())
    }

    /// The stored name of a name within this bucket: `{bucket}/{name}`.
    pub fn stored_name(&self, name: &str) -> Result<ObjectKey, BucketError> {
        if self.namespace.len() + name.len() > MAX_KEY_LEN {
            return Err(BucketError::NameTooLong {
                bucket: self.name.clone(),
            });
        }
        Ok(ObjectKey::from_str(&format!("{}{name}", self.namespace))?)
    }

    /// The name within this bucket of a stored name, or `None` when the
    /// stored name is not this bucket's.
    pub fn name_in_bucket<'a>(&self, stored: &'a str) -> Option<&'a str> {
        stored.strip_prefix(&self.namespace)
    }

    /// `{bucket}/`: every name stored through this bucket starts with it.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The full key of a subject's object, from its stored name; `None`
    /// when the object is not this bucket's.
    pub fn key_of(&self, subject: &SubjectId, stored: &str) -> Option<String> {
        let name = self.name_in_bucket(stored)?;
        Some(format!("{}{}{}{}", self.prefix, subject, self.suffix, name))
    }

    /// The key prefix under which all of one subject's objects sit.
    pub fn subject_prefix(&self, subject: &SubjectId) -> String {
        format!("{}{}{}", self.prefix, subject, self.suffix)
    }

    /// The fixed part before the subject id.
    pub fn fixed_prefix(&self) -> &str {
        &self.prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(s: &str) -> Category {
        Category::from_str(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn maps_keys_to_subjects_and_categories() {
        let b = Bucket::new(
            "user-data",
            "users/{subject}/",
            cat("profile"),
            vec![("users/{subject}/payments/".into(), cat("payment"))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let m = b
            .map_key("users/u1/payments/card.json")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.subject.as_str(), "u1");
        assert_eq!(m.category.as_str(), "payment");
        assert_eq!(m.name.as_str(), "user-data/payments/card.json");
        assert_eq!(
            b.key_of(&m.subject, m.name.as_str()).as_deref(),
            Some("users/u1/payments/card.json")
        );
        let m = b
            .map_key("users/u1/avatar.png")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.category.as_str(), "profile");
        assert!(b.map_key("other/u1/x").is_err());
        assert!(b.map_key("users/u1").is_err());
        assert!(b.map_key("users/").is_err());
        assert!(b.map_key("users/u1/../x").is_err());
        assert!(b.map_key("users/bad id/x").is_err());
    }

    #[test]
    fn folder_keys_map_where_the_subject_can_be_read() {
        let b = Bucket::new(
            "user-data",
            "users/{subject}/",
            cat("profile"),
            vec![("users/{subject}/payments/".into(), cat("payment"))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for (key, name, category) in [
            ("users/u1/", "user-data/", "profile"),
            ("users/u1/photos/", "user-data/photos/", "profile"),
            ("users/u1/payments/", "user-data/payments/", "payment"),
            ("users/u1//x", "user-data//x", "profile"),
            ("users/u1/a//b/", "user-data/a//b/", "profile"),
        ] {
            let m = b.map_key(key).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(
                (m.subject.as_str(), m.name.as_str(), m.category.as_str()),
                ("u1", name, category),
                "{key}"
            );
            assert_eq!(
                b.key_of(&m.subject, m.name.as_str()).as_deref(),
                Some(key),
                "{key} maps back"
            );
        }
        // No subject to read: above the subject level, or an empty id.
        for key in ["users/", "users//x", "users"] {
            assert!(
                matches!(
                    b.map_key(key),
                    Err(BucketError::NoSubject(_)) | Err(BucketError::Invalid(_))
                ),
                "{key}"
            );
        }
        assert!(b.map_key("users/u1/a/../b/").is_err());
        assert!(b.map_key("users/u1/./").is_err());
    }

    #[test]
    fn buckets_are_namespaces() {
        let a = Bucket::new("user-data", "users/{subject}/", cat("profile"), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        let b = Bucket::new("archive", "users/{subject}/", cat("archive"), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        let (ma, mb) = match (a.map_key("users/u1/x"), b.map_key("users/u1/x")) {
            (Ok(ma), Ok(mb)) => (ma, mb),
            other => panic!("{other:?}"),
        };
        // The same key through two buckets: the same subject, two objects.
        assert_eq!(ma.subject, mb.subject);
        assert_ne!(ma.name, mb.name);
        assert_eq!(b.key_of(&mb.subject, ma.name.as_str()), None);
        assert_eq!(a.key_of(&ma.subject, "x"), None);
        // A bucket whose name starts like another's is still another.
        let c = Bucket::new("user-data2", "users/{subject}/", cat("p"), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.name_in_bucket("user-data/x"), None);
        assert_eq!(a.name_in_bucket("user-data2/x"), None);
        // The stored name, bucket included, is bounded like any name.
        let long = format!("users/u1/{}zzz", "abc/".repeat(253));
        assert_eq!(long.len(), MAX_KEY_LEN);
        assert_eq!(
            a.map_key(&long).err(),
            Some(BucketError::NameTooLong {
                bucket: "user-data".into()
            })
        );
    }

    #[test]
    fn refuses_bad_patterns() {
        assert!(Bucket::new("b1x", "users/", cat("p"), vec![]).is_err());
        assert!(Bucket::new("b1x", "u{subject}/", cat("p"), vec![]).is_err());
        assert!(Bucket::new("B", "{subject}/", cat("p"), vec![]).is_err());
        assert!(
            Bucket::new(
                "ok-bucket",
                "{subject}/",
                cat("p"),
                vec![("x/{subject}/y/".into(), cat("q"))]
            )
            .is_err()
        );
    }
}
