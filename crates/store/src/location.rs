//! Where a region store or a keyring lives, parsed from its configured URL.
//!
//! Parsing is separate from opening so that configuration can be checked (and errors
//! reported with the offending URL) before anything is created on disk, and so that a new
//! backend (`s3://`, a KMS) is one variant and one match arm.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The schemes [`Location::parse`] accepts, named in the error for any other scheme.
pub const SUPPORTED_SCHEMES: &str = "file://, memory://";

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local folder. `file://relative/path` is resolved against the base folder (the
    /// folder of the configuration file), `file:///absolute/path` is taken as is.
    LocalDir(PathBuf),
    /// A process-local in-memory store, for tests: nothing survives the process.
    Memory,
}

impl Location {
    /// Parses `url`, resolving relative `file://` paths against `base_dir`.
    ///
    /// Only the syntax is checked here; nothing is touched on disk.
    pub fn parse(url: &str, base_dir: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(format!(
                "expected a URL with a scheme, one of {SUPPORTED_SCHEMES}"
            )));
        };
        match scheme {
            "file" => {
                if rest.is_empty() || rest == "/" {
                    return Err(bad("a file:// URL needs a folder path".to_owned()));
                }
                if rest.contains('\0') {
                    return Err(bad("the path contains a NUL byte".to_owned()));
                }
                let path = Path::new(rest);
                if path.is_absolute() {
                    Ok(Location::LocalDir(path.to_path_buf()))
                } else {
                    Ok(Location::LocalDir(base_dir.join(path)))
                }
            }
            "memory" => {
                if rest.is_empty() || !rest.contains('/') {
                    Ok(Location::Memory)
                } else {
                    Err(bad("a memory:// URL takes no path".to_owned()))
                }
            }
            other => Err(bad(format!(
                "unsupported scheme {other:?}; supported schemes are {SUPPORTED_SCHEMES}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_urls_resolve_against_the_base_folder() {
        let base = Path::new("/etc/domicile");
        assert_eq!(
            Location::parse("file://data/regions/in", base).ok(),
            Some(Location::LocalDir(PathBuf::from(
                "/etc/domicile/data/regions/in"
            )))
        );
        assert_eq!(
            Location::parse("file:///srv/regions/in", base).ok(),
            Some(Location::LocalDir(PathBuf::from("/srv/regions/in")))
        );
        assert_eq!(
            Location::parse("memory://", base).ok(),
            Some(Location::Memory)
        );
    }

    #[test]
    fn unsupported_or_malformed_urls_are_refused() {
        let base = Path::new("/");
        for url in ["s3://bucket/x", "data/regions", "file://", "memory://a/b"] {
            match Location::parse(url, base) {
                Err(Error::BadUrl { url: got, .. }) => assert_eq!(got, url),
                other => panic!("{url}: expected BadUrl, got {other:?}"),
            }
        }
        let Err(Error::BadUrl { reason, .. }) = Location::parse("s3://bucket", base) else {
            panic!("expected BadUrl");
        };
        assert!(reason.contains("file://"), "{reason}");
    }
}
