//! The blob layout inside a region: version 1.
//!
//! ```text
//! v1/{token[0..2]}/{token}/{category}/{blob_id}
//! ```
//!
//! - The version segment lets a future layout live beside this one while a migration runs.
//! - `token` is a keyed hash of the subject id (never the id itself), so a region reveals
//!   nothing about who a subject is. Its first two characters fan the subjects out over 256
//!   folders, which keeps directory sizes sane on local file systems.
//! - Grouping by subject, then by category, makes "every blob of this subject" and "every
//!   blob of (subject, category)" one prefix each, which is what purges and erasure list.
//! - `blob_id` is random and never reused: blobs are immutable, a rewrite is a new blob.
//!
//! Every part is validated against a small character set, so a blob path can never escape
//! its folder, collide with a multipart staging file (`#`), or hold personal data by
//! accident.

use std::fmt;

use object_store::path::Path;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// The first path segment of every object of this layout.
pub const LAYOUT_VERSION: &str = "v1";

/// Bounds on a subject token's length, in hex characters (64 to 256 bits).
const TOKEN_LEN: std::ops::RangeInclusive<usize> = 16..=64;
/// Maximum length of a category name.
const CATEGORY_MAX_LEN: usize = 64;
/// Length of a blob id, in hex characters (128 random bits).
const BLOB_ID_LEN: usize = 32;

/// Where one blob lives in a region: the parsed form of
/// `v1/{token[0..2]}/{token}/{category}/{blob_id}`.
///
/// The fields are private so that every `BlobPath` in existence has been validated: the
/// object path derived from it is always well formed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobPath {
    token: String,
    category: String,
    blob_id: String,
}

impl BlobPath {
    /// Builds a blob path from its parts, validating each.
    pub fn new(token: &str, category: &str, blob_id: &str) -> Result<Self> {
        check_token(token)?;
        check_category(category)?;
        check_blob_id(blob_id)?;
        Ok(Self {
            token: token.to_owned(),
            category: category.to_owned(),
            blob_id: blob_id.to_owned(),
        })
    }

    /// Builds a blob path with a fresh random blob id, for a new write.
    pub fn new_random(token: &str, category: &str) -> Result<Self> {
        Self::new(token, category, &new_blob_id()?)
    }

    /// Parses an object path of this layout. Anything else (another layout version, a
    /// stray file, a wrong fan-out folder) is an error, which `verify` reports as a
    /// foreign object.
    pub fn parse(location: &Path) -> Result<Self> {
        let invalid = |reason| Error::InvalidBlobPath {
            path: location.to_string(),
            reason,
        };
        let mut parts = location.parts();
        let mut next = || parts.next();
        let (Some(version), Some(fan), Some(token), Some(category), Some(blob_id), None) =
            (next(), next(), next(), next(), next(), next())
        else {
            return Err(invalid("expected v1/{fan}/{token}/{category}/{blob_id}"));
        };
        if version.as_ref() != LAYOUT_VERSION {
            return Err(invalid("unknown layout version"));
        }
        let path = Self::new(token.as_ref(), category.as_ref(), blob_id.as_ref())
            .map_err(|_| invalid("a part breaks the layout's character rules"))?;
        if fan.as_ref() != fan_out(&path.token) {
            return Err(invalid("fan-out folder does not match the token"));
        }
        Ok(path)
    }

    /// The object path in the region.
    pub fn location(&self) -> Path {
        Path::from_iter([
            LAYOUT_VERSION,
            fan_out(&self.token),
            &self.token,
            &self.category,
            &self.blob_id,
        ])
    }

    /// The subject token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The data category.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The blob id; also the HKDF info that makes each blob's encryption key unique.
    pub fn blob_id(&self) -> &str {
        &self.blob_id
    }
}

impl fmt::Display for BlobPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{LAYOUT_VERSION}/{}/{}/{}/{}",
            fan_out(&self.token),
            self.token,
            self.category,
            self.blob_id
        )
    }
}

/// A fresh blob id: 16 bytes from the system's CSPRNG, as 32 lowercase hex characters.
/// Random rather than sequential so that ids need no coordination between servers.
pub fn new_blob_id() -> Result<String> {
    let mut bytes = [0u8; BLOB_ID_LEN / 2];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::crypto("system randomness unavailable"))?;
    Ok(hex::encode(bytes))
}

/// The prefix under which every object of this layout lives: list it to scan a region.
pub fn layout_root() -> Path {
    Path::from(LAYOUT_VERSION)
}

/// The prefix holding every blob of one subject, for erasure and purges.
pub fn prefix_for(token: &str) -> Result<Path> {
    check_token(token)?;
    Ok(Path::from_iter([LAYOUT_VERSION, fan_out(token), token]))
}

/// The prefix holding every blob of one (subject, category), for moving or purging one
/// placement unit.
pub fn prefix_for_category(token: &str, category: &str) -> Result<Path> {
    check_token(token)?;
    check_category(category)?;
    Ok(Path::from_iter([
        LAYOUT_VERSION,
        fan_out(token),
        token,
        category,
    ]))
}

/// The fan-out folder: the token's first two characters. Tokens are validated to be at
/// least 16 ASCII characters long before this is called; the fallback only keeps this
/// function total.
fn fan_out(token: &str) -> &str {
    token.get(..2).unwrap_or(token)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check_token(token: &str) -> Result<()> {
    if !TOKEN_LEN.contains(&token.len()) {
        return Err(Error::InvalidBlobPath {
            path: token.to_owned(),
            reason: "a token has 16 to 64 hex characters",
        });
    }
    if !is_lower_hex(token) {
        return Err(Error::InvalidBlobPath {
            path: token.to_owned(),
            reason: "a token is lowercase hex",
        });
    }
    Ok(())
}

fn check_category(category: &str) -> Result<()> {
    let ok = !category.is_empty()
        && category.len() <= CATEGORY_MAX_LEN
        && category
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidBlobPath {
            path: category.to_owned(),
            reason: "a category is 1 to 64 of [a-z0-9_-]",
        })
    }
}

fn check_blob_id(blob_id: &str) -> Result<()> {
    if blob_id.len() == BLOB_ID_LEN && is_lower_hex(blob_id) {
        Ok(())
    } else {
        Err(Error::InvalidBlobPath {
            path: blob_id.to_owned(),
            reason: "a blob id is 32 lowercase hex characters",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_blob_path_round_trips_through_its_object_path() -> Result<()> {
        let path = BlobPath::new_random(TOKEN, "health_records-2")?;
        let location = path.location();
        assert_eq!(
            location.as_ref(),
            format!("v1/01/{TOKEN}/health_records-2/{}", path.blob_id())
        );
        assert_eq!(location.as_ref(), path.to_string());
        assert_eq!(BlobPath::parse(&location)?, path);
        assert!(location.prefix_matches(&prefix_for(TOKEN)?));
        assert!(location.prefix_matches(&prefix_for_category(TOKEN, "health_records-2")?));
        assert!(!location.prefix_matches(&prefix_for_category(TOKEN, "health")?));
        assert!(location.prefix_matches(&layout_root()));
        Ok(())
    }

    #[test]
    fn blob_ids_are_fresh() -> Result<()> {
        let a = new_blob_id()?;
        let b = new_blob_id()?;
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        check_blob_id(&a)
    }

    #[test]
    fn invalid_parts_are_refused() {
        let id = "00112233445566778899aabbccddeeff";
        assert!(BlobPath::new(TOKEN, "c", id).is_ok());
        assert!(BlobPath::new("0123", "c", id).is_err(), "short token");
        assert!(
            BlobPath::new(&"a".repeat(65), "c", id).is_err(),
            "long token"
        );
        assert!(BlobPath::new(&TOKEN.to_uppercase(), "c", id).is_err());
        assert!(BlobPath::new("../../../../etc/passwd", "c", id).is_err());
        assert!(BlobPath::new(TOKEN, "", id).is_err());
        assert!(BlobPath::new(TOKEN, "Health", id).is_err());
        assert!(BlobPath::new(TOKEN, "a/b", id).is_err());
        assert!(BlobPath::new(TOKEN, &"c".repeat(65), id).is_err());
        assert!(BlobPath::new(TOKEN, "c", &id[1..]).is_err());
        assert!(BlobPath::new(TOKEN, "c", &format!("{}#1", &id[2..])).is_err());
        assert!(prefix_for("xyz").is_err());
    }

    #[test]
    fn foreign_object_paths_do_not_parse() {
        let id = "00112233445566778899aabbccddeeff";
        for foreign in [
            format!("v2/01/{TOKEN}/c/{id}"),
            format!("v1/02/{TOKEN}/c/{id}"),
            format!("v1/01/{TOKEN}/c/{id}/extra"),
            format!("v1/01/{TOKEN}/c"),
            "notes.txt".to_owned(),
            format!("v1/01/{TOKEN}/C/{id}"),
        ] {
            assert!(
                BlobPath::parse(&Path::from(foreign.as_str())).is_err(),
                "{foreign}"
            );
        }
    }
}
