//! Identifier newtypes. Each one holds its invariant, so code that has one
//! never re-checks it: parse, don't validate.

use std::fmt;
use std::str::FromStr;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub reason: String,
}

fn invalid(kind: &'static str, value: &str, reason: impl Into<String>) -> InvalidId {
    // Never echo an unbounded or binary value back.
    let mut shown: String = value.chars().take(80).collect();
    shown.retain(|c| !c.is_control());
    InvalidId {
        kind,
        value: shown,
        reason: reason.into(),
    }
}

fn lower_id(kind: &'static str, s: &str, max: usize) -> Result<(), InvalidId> {
    if s.is_empty() || s.len() > max {
        return Err(invalid(kind, s, format!("must be 1 to {max} characters")));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            kind,
            s,
            "use lowercase letters, digits, '-' and '_' only",
        ));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(invalid(kind, s, "must start with a letter or digit"));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                let check: fn(&str) -> Result<(), InvalidId> = $check;
                check(s)?;
                Ok($name(s.to_string()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", $kind, self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A region id: lowercase letters, digits and `-`.
    RegionId,
    "region",
    |s| {
        lower_id("region id", s, 63)?;
        if s.contains('_') {
            return Err(invalid("region id", s, "use lowercase letters, digits and '-' only"));
        }
        Ok(())
    }
);

string_id!(
    /// A custodian id: lowercase letters, digits, `-` and `_`.
    CustodianId,
    "custodian",
    |s| lower_id("custodian id", s, 63)
);

string_id!(
    /// A data category (`profile`, `media`, `payment`…).
    Category,
    "category",
    |s| lower_id("category", s, 64)
);

string_id!(
    /// An end user's opaque id. It never leaves the process in clear: the
    /// catalog, logs and ledger see only its token.
    SubjectId,
    "subject",
    |s| {
        if s.is_empty() || s.len() > 128 {
            return Err(invalid("subject id", s, "must be 1 to 128 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+:=-".contains(&b))
        {
            return Err(invalid(
                "subject id",
                s,
                "use letters, digits and . _ @ + : = - only",
            ));
        }
        Ok(())
    }
);

/// Longest object name, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest segment between two `/`, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

string_id!(
    /// An object's name within its subject: `/`-separated segments with no
    /// `.` or `..`, no NUL or control characters, and bounded lengths.
    /// Segments may be empty, as in S3 keys: a name may end with `/` (a
    /// "folder" object) or hold `//`.
    ObjectKey,
    "object key",
    |s| {
        if s.is_empty() || s.len() > MAX_KEY_LEN {
            return Err(invalid("object key", s, format!("must be 1 to {MAX_KEY_LEN} bytes")));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(invalid("object key", s, "must not contain NUL or control characters"));
        }
        for seg in s.split('/') {
            if seg == "." || seg == ".." {
                return Err(invalid("object key", s, "must not contain '.' or '..' segments"));
            }
            if seg.len() > MAX_SEGMENT_LEN {
                return Err(invalid("object key", s, format!("segments must be at most {MAX_SEGMENT_LEN} bytes")));
            }
        }
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_ids() {
        assert!("cn-north".parse::<RegionId>().is_ok());
        assert!("aws-ap-southeast-1".parse::<RegionId>().is_ok());
        assert!("CN".parse::<RegionId>().is_err());
        assert!("-x".parse::<RegionId>().is_err());
        assert!("a_b".parse::<RegionId>().is_err());
        assert!("".parse::<RegionId>().is_err());
    }

    #[test]
    fn subject_ids() {
        assert!("user-42".parse::<SubjectId>().is_ok());
        assert!("a@b.example".parse::<SubjectId>().is_ok());
        assert!("a/b".parse::<SubjectId>().is_err());
        assert!("a b".parse::<SubjectId>().is_err());
        assert!("a\0b".parse::<SubjectId>().is_err());
        assert!("x".repeat(129).parse::<SubjectId>().is_err());
    }

    #[test]
    fn object_keys() {
        assert!("photos/2024/a.jpg".parse::<ObjectKey>().is_ok());
        for bad in ["", "../etc", "a/../b", "a/./b", "a\0b", "a/..", "./a"] {
            assert!(bad.parse::<ObjectKey>().is_err(), "{bad:?}");
        }
        // Empty segments, as S3 keys have them: folders, doubled slashes.
        for good in ["/a", "a//b", "a/", "photos/", "/"] {
            assert!(good.parse::<ObjectKey>().is_ok(), "{good:?}");
        }
        assert!("a".repeat(256).parse::<ObjectKey>().is_err());
        assert!(["a"; 600].join("/").parse::<ObjectKey>().is_err());
    }

    #[test]
    fn errors_do_not_echo_control_bytes() {
        let e = "a\0b"
            .parse::<ObjectKey>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!e.contains('\0'));
    }
}
