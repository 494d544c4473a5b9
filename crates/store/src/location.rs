//! Where a region store or a keyring lives, parsed from its configured URL.
//!
//! Parsing is separate from opening so that configuration can be checked (and errors
//! reported with the offending URL) before anything is created on disk, and so that a new
//! backend (`s3://`, a KMS) is one variant and one match arm.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The schemes [`Location::parse`] accepts, named in the error for any other scheme.
pub const SUPPORTED_SCHEMES: &str = "file://, s3://, memory://";

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local folder. `file://relative/path` is resolved against the base folder (the
    /// folder of the configuration file), `file:///absolute/path` is taken as is.
    LocalDir(PathBuf),
    /// A process-local in-memory store, for tests: nothing survives the process.
    Memory,
    /// A bucket (and optional key prefix) of an S3-compatible service:
    /// `s3://bucket[/prefix]?endpoint=URL&region=NAME`.
    S3(S3Location),
}

/// Where an `s3://` region lives. Credentials are not part of the URL: they
/// come from the secrets (see `RegionOptions::credentials`) or the standard
/// `AWS_*` environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: Option<String>,
    /// The service's URL (`http://127.0.0.1:9000`); AWS's when absent.
    pub endpoint: Option<String>,
    /// The signing region; `us-east-1` when absent.
    pub region: Option<String>,
}

impl S3Location {
    fn parse(rest: &str) -> std::result::Result<Self, String> {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let (bucket, prefix) = match path.split_once('/') {
            Some((b, p)) => (b, Some(p.trim_matches('/')).filter(|p| !p.is_empty())),
            None => (path, None),
        };
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' or '.')"
            ));
        }
        if let Some(p) = prefix
            && (p.contains("//") || p.split('/').any(|s| s == "." || s == ".."))
        {
            return Err(format!("{p:?} is not a usable key prefix"));
        }
        let mut loc = S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.map(str::to_owned),
            endpoint: None,
            region: None,
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if v.is_empty() {
                return Err(format!("query parameter {k:?} needs a value"));
            }
            match k {
                "endpoint" => {
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        return Err(format!("endpoint {v:?} must be an http:// or https:// URL"));
                    }
                    loc.endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                "region" => loc.region = Some(v.to_owned()),
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}; s3:// URLs take endpoint= and region="
                    ));
                }
            }
        }
        Ok(loc)
    }
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
            "s3" => S3Location::parse(rest).map(Location::S3).map_err(bad),
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
        for url in [
            "s3://B",
            "s3://bucket/../x",
            "s3://bucket?endpoint=ftp://x",
            "s3://bucket?color=blue",
            "data/regions",
            "file://",
            "memory://a/b",
            "gs://bucket",
        ] {
            match Location::parse(url, base) {
                Err(Error::BadUrl { url: got, .. }) => assert_eq!(got, url),
                other => panic!("{url}: expected BadUrl, got {other:?}"),
            }
        }
        let Err(Error::BadUrl { reason, .. }) = Location::parse("gs://bucket", base) else {
            panic!("expected BadUrl");
        };
        assert!(
            reason.contains("file://") && reason.contains("s3://"),
            "{reason}"
        );
    }

    #[test]
    fn s3_urls_name_bucket_prefix_endpoint_and_region() {
        let base = Path::new("/");
        assert_eq!(
            Location::parse("s3://my-bucket", base).ok(),
            Some(Location::S3(S3Location {
                bucket: "my-bucket".into(),
                prefix: None,
                endpoint: None,
                region: None,
            }))
        );
        assert_eq!(
            Location::parse(
                "s3://my-bucket/regions/sg/?endpoint=http://127.0.0.1:9000/&region=ap-southeast-1",
                base
            )
            .ok(),
            Some(Location::S3(S3Location {
                bucket: "my-bucket".into(),
                prefix: Some("regions/sg".into()),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("ap-southeast-1".into()),
            }))
        );
    }
}
