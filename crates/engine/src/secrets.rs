//! Secrets: never in the config file or the code. They come from the
//! environment, or from the file that `[secrets] file` names (`KEY=VALUE`
//! lines; the environment wins). The subject-token key of an embedded
//! deployment is created on first use beside the catalog, readable only by
//! its owner. The network APIs' credentials and tokens are declared in the
//! config (`[[credential]]`, `[[token]]`) and their secrets read here by
//! name, beside the deployment-wide ones (`DOMICILE_S3_*`,
//! `DOMICILE_ADMIN_TOKEN`, `DOMICILE_AUDITOR_TOKEN`). The ledger's signing
//! key (`DOMICILE_LEDGER_SIGNING_KEY`) is, like the token key, created on
//! first use beside an embedded catalog.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use domicile_core::config::{
    ADMIN_TOKEN, AUDITOR_TOKEN, Access, BucketScope, CredentialConfig, DEFAULT_CREDENTIAL, Role,
    TokenConfig,
};

use crate::error::{Error, Result};

pub const TOKEN_KEY_VAR: &str = "DOMICILE_TOKEN_KEY";

/// The seed (64 hex digits) of the Ed25519 key that signs the ledger's
/// checkpoints and evidence bundles (docs/evidence.md).
pub const LEDGER_KEY_VAR: &str = "DOMICILE_LEDGER_SIGNING_KEY";

/// The secrets that hold the S3 API's credential.
pub const S3_ACCESS_KEY_VAR: &str = "DOMICILE_S3_ACCESS_KEY_ID";
pub const S3_SECRET_KEY_VAR: &str = "DOMICILE_S3_SECRET_ACCESS_KEY";

/// The secrets that hold the REST API's two tokens that need no
/// `[[token]]`: an admin's and an auditor's.
pub const ADMIN_TOKEN_VAR: &str = "DOMICILE_ADMIN_TOKEN";
pub const AUDITOR_TOKEN_VAR: &str = "DOMICILE_AUDITOR_TOKEN";

/// The secret of the `[[credential]]` named `name`:
/// `DOMICILE_CREDENTIAL_<NAME>_SECRET` (upper-cased, `-` as `_`).
pub fn credential_secret_var(name: &str) -> String {
    format!("DOMICILE_CREDENTIAL_{}_SECRET", env_name(name))
}

/// The secret of the `[[token]]` named `name`: `DOMICILE_REST_TOKEN_<NAME>`
/// (upper-cased, `-` as `_`).
pub fn token_secret_var(name: &str) -> String {
    format!("DOMICILE_REST_TOKEN_{}", env_name(name))
}

fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// An S3 API credential: its name (what metrics and the ledger see), its
/// access key id, its secret and its scope.
#[derive(Clone)]
pub struct S3Credential {
    pub name: String,
    pub access_key_id: String,
    pub secret: String,
    pub buckets: BucketScope,
    pub access: Access,
}

impl std::fmt::Debug for S3Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("S3Credential")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("buckets", &self.buckets)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// A REST API bearer token: its name, its role and its secret.
#[derive(Clone)]
pub struct RestToken {
    pub name: String,
    pub role: Role,
    pub secret: String,
}

impl std::fmt::Debug for RestToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestToken")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
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

    fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// The S3 API's credentials: the deployment-wide one
    /// (`DOMICILE_S3_ACCESS_KEY_ID` and `DOMICILE_S3_SECRET_ACCESS_KEY`,
    /// named [`DEFAULT_CREDENTIAL`], every bucket, read-write) if both are
    /// set, then each of `declared` with its secret. Fails, naming every
    /// missing secret at once, if a declared credential has none, or if a
    /// declared access key id is the deployment-wide one's.
    pub fn s3_credentials(&self, declared: &[CredentialConfig]) -> Result<Vec<S3Credential>> {
        let mut out = Vec::new();
        if let (Some(access), Some(secret)) = (
            self.non_empty(S3_ACCESS_KEY_VAR),
            self.non_empty(S3_SECRET_KEY_VAR),
        ) {
            out.push(S3Credential {
                name: DEFAULT_CREDENTIAL.to_string(),
                access_key_id: access.to_string(),
                secret: secret.to_string(),
                buckets: BucketScope::All,
                access: Access::ReadWrite,
            });
        }
        let mut problems = Vec::new();
        for c in declared {
            if out.iter().any(|o| o.access_key_id == c.access_key_id) {
                problems.push(format!(
                    "credential {}'s access_key_id is also {S3_ACCESS_KEY_VAR}: give one of them another",
                    c.name
                ));
                continue;
            }
            let var = credential_secret_var(&c.name);
            match self.non_empty(&var) {
                Some(secret) => out.push(S3Credential {
                    name: c.name.clone(),
                    access_key_id: c.access_key_id.clone(),
                    secret: secret.to_string(),
                    buckets: c.buckets.clone(),
                    access: c.access,
                }),
                None => problems.push(format!(
                    "credential {} has no secret: set {var} in the environment or the secrets file",
                    c.name
                )),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(Error::Secrets(problems.join("; ")))
        }
    }

    /// The REST API's bearer tokens: `DOMICILE_ADMIN_TOKEN` (named
    /// [`ADMIN_TOKEN`], role admin) and `DOMICILE_AUDITOR_TOKEN` (named
    /// [`AUDITOR_TOKEN`], role auditor) when set, then each of `declared`
    /// with its secret. Fails, naming every problem at once, if a declared
    /// token has no secret or two tokens share one (a request could not say
    /// which it is).
    pub fn rest_tokens(&self, declared: &[TokenConfig]) -> Result<Vec<RestToken>> {
        let mut out: Vec<RestToken> = [
            (ADMIN_TOKEN_VAR, ADMIN_TOKEN, Role::Admin),
            (AUDITOR_TOKEN_VAR, AUDITOR_TOKEN, Role::Auditor),
        ]
        .into_iter()
        .filter_map(|(var, name, role)| {
            self.non_empty(var).map(|secret| RestToken {
                name: name.to_string(),
                role,
                secret: secret.to_string(),
            })
        })
        .collect();
        let mut problems = Vec::new();
        for t in declared {
            let var = token_secret_var(&t.name);
            match self.non_empty(&var) {
                Some(secret) => out.push(RestToken {
                    name: t.name.clone(),
                    role: t.role,
                    secret: secret.to_string(),
                }),
                None => problems.push(format!(
                    "token {} has no secret: set {var} in the environment or the secrets file",
                    t.name
                )),
            }
        }
        for (i, a) in out.iter().enumerate() {
            if let Some(b) = out[i + 1..].iter().find(|b| b.secret == a.secret) {
                problems.push(format!(
                    "tokens {} and {} have the same secret: give each its own",
                    a.name, b.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(Error::Secrets(problems.join("; ")))
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
    /// The seed of the Ed25519 key that signs the ledger's checkpoints:
    /// from `DOMICILE_LEDGER_SIGNING_KEY` (64 hex digits), or from
    /// `key_file`, created on first use with mode 0600 when `create` is
    /// set (`None` when it is not and there is no such file).
    pub fn ledger_signing_key(&self, key_file: &Path, create: bool) -> Result<Option<[u8; 32]>> {
        if let Some(hex_key) = self.get(LEDGER_KEY_VAR) {
            return parse_key(hex_key)
                .map(Some)
                .ok_or_else(|| Error::Secrets(format!("{LEDGER_KEY_VAR} must be 64 hex digits")));
        }
        if !create && !key_file.exists() {
            return Ok(None);
        }
        load_or_create_key(key_file).map(Some)
    }

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
        carry_key_file(from, to, "subject-token key", TOKEN_KEY_VAR)
    }
}

impl Secrets {
    /// For catalog migration: makes the ledger signing key of the catalog
    /// at `from_url` the key of the catalog at `to_url` too, so that the
    /// copied checkpoints still verify there. Nothing to do when the key
    /// comes from the environment, both catalogs keep it in one file, or
    /// there is none yet. Otherwise the key file of `to_url` is created
    /// (mode 0600); returns its path. Fails, writing nothing, if that file
    /// already holds another key.
    pub fn carry_ledger_key(
        &self,
        from_url: &str,
        to_url: &str,
        base_dir: &Path,
    ) -> Result<Option<PathBuf>> {
        if self.get(LEDGER_KEY_VAR).is_some() {
            return Ok(None);
        }
        let from = ledger_key_path(from_url, base_dir);
        let to = ledger_key_path(to_url, base_dir);
        if from == to || !from.exists() {
            return Ok(None);
        }
        carry_key_file(from, to, "ledger signing key", LEDGER_KEY_VAR)
    }
}

/// Makes the key in the file `from` (created if missing) the key in the
/// file `to` too: `to` is created with mode 0600 and returned, or left as
/// it is when it already holds that key. Fails, writing nothing, if `to`
/// holds another key (`what` names the key, `var` the secret that would
/// override both files).
fn carry_key_file(from: PathBuf, to: PathBuf, what: &str, var: &str) -> Result<Option<PathBuf>> {
    let key = load_or_create_key(&from)?;
    if to.exists() {
        return if load_or_create_key(&to)? == key {
            Ok(None)
        } else {
            Err(Error::Secrets(format!(
                "{} already holds another {what} than {}: move it away, or set {var}",
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

/// Where an embedded deployment keeps its ledger signing key: beside the
/// catalog, like the token key.
pub fn ledger_key_path(catalog_url: &str, base_dir: &Path) -> PathBuf {
    match catalog_url.strip_prefix("sqlite://") {
        Some(p) => PathBuf::from(format!("{p}.ledger-key")),
        None => base_dir.join("data/ledger.key"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_carried_once_and_another_key_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a/key");
        let to = dir.path().join("b/key");
        // The source is created on first use, the target written 0600.
        let made = carry_key_file(from.clone(), to.clone(), "test key", "VAR").unwrap();
        assert_eq!(made.as_deref(), Some(to.as_path()));
        assert_eq!(
            load_or_create_key(&to).unwrap(),
            load_or_create_key(&from).unwrap()
        );
        let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The same key again: nothing to do.
        assert_eq!(
            carry_key_file(from.clone(), to.clone(), "test key", "VAR").unwrap(),
            None
        );
        // Another key in the target: refused, and the target is unchanged.
        let other = dir.path().join("c/key");
        let kept = std::fs::read(&to).unwrap();
        let err = carry_key_file(other, to.clone(), "test key", "VAR").unwrap_err();
        assert!(err.to_string().contains("another test key"), "{err}");
        assert_eq!(std::fs::read(&to).unwrap(), kept);
    }

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets {
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn credential(name: &str, key: &str) -> CredentialConfig {
        CredentialConfig {
            name: name.into(),
            access_key_id: key.into(),
            buckets: BucketScope::Only(vec!["user-data".into()]),
            access: Access::Read,
            span: 0..0,
        }
    }

    #[test]
    fn declared_credentials_take_their_secret_by_name() {
        let s = secrets(&[
            (S3_ACCESS_KEY_VAR, "AKDEFAULT"),
            (S3_SECRET_KEY_VAR, "s1"),
            ("DOMICILE_CREDENTIAL_APP_EU_SECRET", "s2"),
        ]);
        let all = s.s3_credentials(&[credential("app-eu", "AKEU")]).unwrap();
        let names: Vec<_> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["default", "app-eu"]);
        assert_eq!(all[0].buckets, BucketScope::All);
        assert_eq!(all[0].access, Access::ReadWrite);
        assert_eq!(
            (all[1].secret.as_str(), all[1].access),
            ("s2", Access::Read)
        );
        assert!(!format!("{all:?}").contains("s2"), "Debug shows no secret");
    }

    #[test]
    fn a_missing_secret_or_a_shared_key_is_refused_all_at_once() {
        let s = secrets(&[
            (S3_ACCESS_KEY_VAR, "AKDEFAULT"),
            (S3_SECRET_KEY_VAR, "s1"),
            ("DOMICILE_CREDENTIAL_B_SECRET", ""),
        ]);
        let e = s
            .s3_credentials(&[
                credential("a", "AKA"),
                credential("b", "AKB"),
                credential("c", "AKDEFAULT"),
            ])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("credential a has no secret: set DOMICILE_CREDENTIAL_A_SECRET"),
            "{e}"
        );
        assert!(e.contains("credential b has no secret"), "{e}");
        assert!(e.contains("credential c's access_key_id is also"), "{e}");
    }

    #[test]
    fn tokens_have_names_and_roles() {
        let s = secrets(&[
            (ADMIN_TOKEN_VAR, "t-admin"),
            ("DOMICILE_REST_TOKEN_DPO", "t-dpo"),
            ("DOMICILE_REST_TOKEN_OPS_1", "t-admin"),
        ]);
        let declared = |name: &str, role| TokenConfig {
            name: name.into(),
            role,
            span: 0..0,
        };
        let ok = s.rest_tokens(&[declared("dpo", Role::Legal)]).unwrap();
        let got: Vec<_> = ok.iter().map(|t| (t.name.as_str(), t.role)).collect();
        assert_eq!(got, [("admin", Role::Admin), ("dpo", Role::Legal)]);
        let e = s
            .rest_tokens(&[
                declared("ops-1", Role::Operator),
                declared("gone", Role::Auditor),
            ])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokens admin and ops-1 have the same secret"),
            "{e}"
        );
        assert!(
            e.contains("token gone has no secret: set DOMICILE_REST_TOKEN_GONE"),
            "{e}"
        );
        assert!(!e.contains("t-admin"), "no secret in the message: {e}");
    }
}
