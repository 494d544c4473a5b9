//! Secrets: never in the config file or the code. They come from the
//! environment, or from the file that `[secrets] file` names (`KEY=VALUE`
//! lines; the environment wins). The subject-token key of an embedded
//! deployment is created on first use beside the catalog, readable only by
//! its owner.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const TOKEN_KEY_VAR: &str = "DOMICILE_TOKEN_KEY";

/// The secrets that hold the S3 API's credential.
pub const S3_ACCESS_KEY_VAR: &str = "DOMICILE_S3_ACCESS_KEY_ID";
pub const S3_SECRET_KEY_VAR: &str = "DOMICILE_S3_SECRET_ACCESS_KEY";

/// The secrets that hold the REST API's bearer tokens, one per role.
pub const ADMIN_TOKEN_VAR: &str = "DOMICILE_ADMIN_TOKEN";
pub const AUDITOR_TOKEN_VAR: &str = "DOMICILE_AUDITOR_TOKEN";

/// The REST API's bearer tokens as the secrets hold them (an empty one is
/// none).
#[derive(Clone, Copy)]
pub struct ApiTokens<'a> {
    pub admin: Option<&'a str>,
    pub auditor: Option<&'a str>,
}

impl std::fmt::Debug for ApiTokens<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Which roles have one, never the tokens.
        f.debug_struct("ApiTokens")
            .field("admin", &self.admin.is_some())
            .field("auditor", &self.auditor.is_some())
            .finish()
    }
}

/// The secrets a deployment runs with.
#[derive(Clone)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values never reach a log.
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Reads the secrets file (if any), then lets `DOMICILE_*` environment
    /// variables override it.
    pub fn load(file: Option<&Path>) -> Result<Secrets> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Secrets(format!("cannot read secrets file {}: {e}", path.display()))
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((k, v)) = line.split_once('=') else {
                    return Err(Error::Secrets(format!(
                        "{}:{}: expected KEY=VALUE",
                        path.display(),
                        n + 1
                    )));
                };
                values.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
        for (k, v) in std::env::vars() {
            if k.starts_with("DOMICILE_") {
                values.insert(k, v);
            }
        }
        Ok(Secrets { values })
    }

    /// An empty set, for tests.
    pub fn empty() -> Secrets {
        Secrets {
            values: BTreeMap::new(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|s| s.as_str())
    }

    /// The S3 API's credential (access key id, secret), if both are set and
    /// not empty.
    pub fn s3_credential(&self) -> Option<(&str, &str)> {
        match (self.get(S3_ACCESS_KEY_VAR), self.get(S3_SECRET_KEY_VAR)) {
            (Some(access), Some(secret)) if !access.is_empty() && !secret.is_empty() => {
                Some((access, secret))
            }
            _ => None,
        }
    }

    /// The REST API's bearer tokens.
    pub fn api_tokens(&self) -> ApiTokens<'_> {
        let token = |name: &str| self.get(name).filter(|t| !t.is_empty());
        ApiTokens {
            admin: token(ADMIN_TOKEN_VAR),
            auditor: token(AUDITOR_TOKEN_VAR),
        }
    }

    /// The credential of the `s3://` region `id`:
    /// `DOMICILE_REGION_<ID>_ACCESS_KEY_ID` and `…_SECRET_ACCESS_KEY` (the id
    /// upper-cased, `-` as `_`), else the deployment-wide
    /// `DOMICILE_REGIONS_ACCESS_KEY_ID` and `DOMICILE_REGIONS_SECRET_ACCESS_KEY`.
    /// `None` leaves the region to the standard `AWS_*` environment.
    pub fn region_credentials(&self, id: &str) -> Option<domicile_store::S3Credentials> {
        let scoped = format!(
            "DOMICILE_REGION_{}",
            id.to_ascii_uppercase().replace('-', "_")
        );
        [scoped.as_str(), "DOMICILE_REGIONS"].iter().find_map(|p| {
            let key = self.get(&format!("{p}_ACCESS_KEY_ID"))?;
            let secret = self.get(&format!("{p}_SECRET_ACCESS_KEY"))?;
            Some(domicile_store::S3Credentials {
                access_key_id: key.to_owned(),
                secret_access_key: secret.to_owned(),
            })
        })
    }

    /// The secrets of custodian `id`'s key manager:
    /// `DOMICILE_CUSTODIAN_<ID>_ACCESS_KEY_ID` and `…_SECRET_ACCESS_KEY` for
    /// `aws-kms://`, `DOMICILE_CUSTODIAN_<ID>_TOKEN` for `vault://` (the id
    /// upper-cased, `-` as `_`). Absent ones leave the keyring to the
    /// standard `AWS_*` or `VAULT_TOKEN` environment.
    pub fn custodian_options(&self, id: &str) -> domicile_store::KeyringOptions {
        let prefix = format!(
            "DOMICILE_CUSTODIAN_{}",
            id.to_ascii_uppercase().replace('-', "_")
        );
        let get = |suffix: &str| {
            self.get(&format!("{prefix}_{suffix}"))
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let aws_credentials = match (get("ACCESS_KEY_ID"), get("SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(domicile_store::S3Credentials {
                access_key_id,
                secret_access_key,
            }),
            _ => None,
        };
        domicile_store::KeyringOptions {
            aws_credentials,
            vault_token: get("TOKEN"),
        }
    }

    /// The key that turns subject ids into tokens: from `DOMICILE_TOKEN_KEY`
    /// (64 hex digits), or from `key_file`, created on first use with mode
    /// 0600.
    pub fn token_key(&self, key_file: &Path) -> Result<[u8; 32]> {
        if let Some(hex_key) = self.get(TOKEN_KEY_VAR) {
            return parse_key(hex_key)
                .ok_or_else(|| Error::Secrets(format!("{TOKEN_KEY_VAR} must be 64 hex digits")));
        }
        load_or_create_key(key_file)
    }
}

impl Secrets {
    /// For catalog migration: makes the subject-token key of the catalog at
    /// `from_url` the key of the catalog at `to_url` too, since both
    /// catalogs' tokens must stay the same. Nothing to do when the key comes
    /// from the environment or both catalogs keep it in one file. Otherwise
    /// the key file of `to_url` is created (mode 0600) with the key of
    /// `from_url`; returns its path. Fails, writing nothing, if that file
    /// already holds another key.
    pub fn carry_token_key(
        &self,
        from_url: &str,
        to_url: &str,
        base_dir: &Path,
    ) -> Result<Option<PathBuf>> {
        if self.get(TOKEN_KEY_VAR).is_some() {
            return Ok(None);
        }
        let from = token_key_path(from_url, base_dir);
        let to = token_key_path(to_url, base_dir);
        if from == to {
            return Ok(None);
        }
        let key = load_or_create_key(&from)?;
        if to.exists() {
            return if load_or_create_key(&to)? == key {
                Ok(None)
            } else {
                Err(Error::Secrets(format!(
                    "{} already holds another subject-token key than {}: \
                     move it away, or set {TOKEN_KEY_VAR}",
                    to.display(),
                    from.display()
                )))
            };
        }
        let io = |e: std::io::Error| Error::Io {
            path: to.display().to_string(),
            source: e,
        };
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .map_err(io)?;
        f.write_all(hex::encode(key).as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(Some(to))
    }
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(s.trim()).ok()?;
    bytes.try_into().ok()
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32]> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::Secrets(format!(
                    "{} is readable by others (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                )));
            }
            parse_key(&text).ok_or_else(|| {
                Error::Secrets(format!(
                    "{} does not hold a 64-hex-digit key",
                    path.display()
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut key = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                .map_err(|_| Error::Internal("no system randomness".into()))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(hex::encode(key).as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Where an embedded deployment keeps its token key: beside the catalog.
pub fn token_key_path(catalog_url: &str, base_dir: &Path) -> PathBuf {
    match catalog_url.strip_prefix("sqlite://") {
        Some(p) => PathBuf::from(format!("{p}.token-key")),
        None => base_dir.join("data/token.key"),
    }
}
