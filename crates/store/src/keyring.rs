//! Key custodians: each wraps subjects' data keys under a key it alone holds.
//!
//! Who holds the key that unwraps a subject's data key decides which governments can reach
//! the plaintext, so the custodian is part of every wrapped key: the custodian id is
//! authenticated with the wrapped key, with the subject token and the category, and a key
//! wrapped by one custodian never unwraps under another, even if both held the same key.
//!
//! A [`Keyring`] is one custodian's key, reached through one of three backends, chosen by
//! the scheme of the configured keyring URL:
//!
//! - `file://FOLDER` ([`file`]): master key files in a local folder, the first created on
//!   first use, later versions added by rotations.
//! - `aws-kms://KEY_ID_OR_ALIAS?region=R[&endpoint=URL]` ([`kms`]): a key in AWS KMS (or a
//!   service speaking its JSON API), called with SigV4-signed requests.
//! - `vault://HOST:PORT/MOUNT/KEY`, `vaults://…` for TLS ([`vault`]): a derived key of the
//!   Transit engine of HashiCorp Vault or OpenBao.
//!
//! Every keyring has an [`identity`](Keyring::identity): the fingerprint of a file master
//! key, the ARN of a KMS key, or a Transit key's address, name and creation time. The engine
//! records it in the catalog on first use and refuses a custodian whose identity changed,
//! so a missing folder, another master key, a KMS alias pointing elsewhere or a Transit key
//! created again are refused, never used in place of the key that wraps the data.
//! [`Keyring::open_existing`] never creates a key.
//!
//! The network backends are `async`, and so is the whole API. A key manager that cannot be
//! reached gives [`Error::KeyManagerUnavailable`] (retryable); one that refuses (a disabled
//! key, a denied token, a context that does not match) gives [`Error::KeyManagerRefused`].
//! Both name the custodian. Credentials are never part of the URL: they come with
//! [`KeyringOptions`].

use std::fmt;
use std::path::Path;

use crate::crypto::{DataKey, KEY_LEN, TAG_LEN, fill_random};
use crate::error::{Error, Result};
use crate::location::Location;
use crate::region::S3Credentials;

pub mod file;
mod http;
pub mod kms;
pub mod vault;

use file::FileKeys;
use kms::{Kms, KmsLocation};
use vault::{Vault, VaultLocation};

/// Name of the first master key file in a keyring folder; a rotation adds `master-v2.key`
/// beside it, and so on (see [`file`]).
pub const MASTER_KEY_FILE: &str = "master-v1.key";
/// Length of a key wrapped by a `file://` keyring under its first master key (a later
/// master key adds its version, 4 bytes).
pub const WRAPPED_LEN: usize = 1 + ring::aead::NONCE_LEN + KEY_LEN + TAG_LEN;

/// The schemes a keyring URL may have, named in the error for any other.
pub const KEYRING_SCHEMES: &str = "file://, aws-kms://, vault://, vaults://";

/// What a wrapped data key is bound to, besides its custodian: the subject token and the
/// category whose data it encrypts. A wrapped key never unwraps with another context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyContext<'a> {
    pub token: &'a str,
    pub category: &'a str,
}

impl<'a> KeyContext<'a> {
    pub fn new(token: &'a str, category: &'a str) -> Self {
        KeyContext { token, category }
    }

    /// `token/category`: the context of `file://` keyrings, as every key they wrapped so far
    /// was bound to it.
    fn legacy_bytes(&self) -> Vec<u8> {
        format!("{}/{}", self.token, self.category).into_bytes()
    }
}

/// The secrets a network keyring needs; none of them is part of its URL.
#[derive(Clone, Default)]
pub struct KeyringOptions {
    /// An AWS access key for `aws-kms://`; the `AWS_*` environment when `None`.
    pub aws_credentials: Option<S3Credentials>,
    /// The Vault token for `vault://`; `VAULT_TOKEN` when `None`.
    pub vault_token: Option<String>,
}

impl fmt::Debug for KeyringOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringOptions")
            .field("aws_credentials", &self.aws_credentials)
            .field("vault_token", &self.vault_token.is_some())
            .finish()
    }
}

/// One custodian's keyring: generates, wraps and unwraps data keys.
pub struct Keyring {
    custodian: String,
    backend: Backend,
}

enum Backend {
    /// Boxed: its expanded AES key makes it several times larger than the others.
    File(Box<FileKeys>),
    Kms(Kms),
    Vault(Vault),
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Keyring");
        d.field("custodian", &self.custodian);
        match &self.backend {
            Backend::File(k) => d.field("dir", &k.dir()),
            Backend::Kms(_) => d.field("backend", &"aws-kms"),
            Backend::Vault(_) => d.field("backend", &"vault"),
        };
        d.finish_non_exhaustive()
    }
}

/// A keyring URL, parsed.
enum KeyringUrl {
    Dir(std::path::PathBuf),
    Kms(KmsLocation),
    Vault(VaultLocation),
}

impl KeyringUrl {
    fn parse(url: &str, base_dir: &Path) -> Result<Self> {
        let bad = |reason: String| Error::BadUrl {
            url: url.to_owned(),
            reason,
        };
        if let Some(rest) = url.strip_prefix("aws-kms://") {
            return KmsLocation::parse(rest).map(KeyringUrl::Kms).map_err(bad);
        }
        if let Some(rest) = url.strip_prefix("vault://") {
            return VaultLocation::parse(rest, false)
                .map(KeyringUrl::Vault)
                .map_err(bad);
        }
        if let Some(rest) = url.strip_prefix("vaults://") {
            return VaultLocation::parse(rest, true)
                .map(KeyringUrl::Vault)
                .map_err(bad);
        }
        match Location::parse(url, base_dir) {
            Ok(Location::LocalDir(dir)) => Ok(KeyringUrl::Dir(dir)),
            Ok(Location::Memory) => Err(bad(format!(
                "a keyring must outlive the process; supported schemes are {KEYRING_SCHEMES}"
            ))),
            Ok(_) => Err(bad(format!(
                "not a keyring; supported schemes are {KEYRING_SCHEMES}"
            ))),
            Err(Error::BadUrl { reason, .. }) if reason.contains("unsupported scheme") => Err(bad(
                format!("unsupported scheme; supported schemes are {KEYRING_SCHEMES}"),
            )),
            Err(e) => Err(e),
        }
    }
}

impl Keyring {
    /// Checks a keyring URL's syntax without opening anything.
    pub fn check_url(url: &str, base_dir: &Path) -> Result<()> {
        KeyringUrl::parse(url, base_dir).map(|_| ())
    }

    /// Opens the keyring of `custodian` at `url` (relative `file://` paths against
    /// `base_dir`), creating a `file://` folder and master key on first use. Network
    /// keyrings are not contacted here: the first call does.
    pub fn open(custodian: &str, url: &str, base_dir: &Path) -> Result<Self> {
        Self::open_with(custodian, url, base_dir, &KeyringOptions::default())
    }

    /// [`Keyring::open`] with the secrets of a network keyring.
    pub fn open_with(
        custodian: &str,
        url: &str,
        base_dir: &Path,
        options: &KeyringOptions,
    ) -> Result<Self> {
        Self::open_url(custodian, url, base_dir, options, true)
    }

    /// Opens the keyring of `custodian` at `url` only if its key exists: nothing is
    /// created. For a custodian that already wraps data, a missing key must be an error,
    /// never a new key. (Network keyrings never create keys.)
    pub fn open_existing(custodian: &str, url: &str, base_dir: &Path) -> Result<Self> {
        Self::open_existing_with(custodian, url, base_dir, &KeyringOptions::default())
    }

    /// [`Keyring::open_existing`] with the secrets of a network keyring.
    pub fn open_existing_with(
        custodian: &str,
        url: &str,
        base_dir: &Path,
        options: &KeyringOptions,
    ) -> Result<Self> {
        Self::open_url(custodian, url, base_dir, options, false)
    }

    fn open_url(
        custodian: &str,
        url: &str,
        base_dir: &Path,
        options: &KeyringOptions,
        create: bool,
    ) -> Result<Self> {
        check_id(custodian)?;
        let backend = match KeyringUrl::parse(url, base_dir)? {
            KeyringUrl::Dir(dir) if create => {
                Backend::File(Box::new(FileKeys::open_dir(custodian, &dir)?))
            }
            KeyringUrl::Dir(dir) => {
                Backend::File(Box::new(FileKeys::open_existing(custodian, &dir)?))
            }
            KeyringUrl::Kms(l) => {
                Backend::Kms(Kms::open(custodian, l, options.aws_credentials.as_ref())?)
            }
            KeyringUrl::Vault(l) => {
                Backend::Vault(Vault::open(custodian, l, options.vault_token.as_deref())?)
            }
        };
        Ok(Keyring {
            custodian: custodian.to_owned(),
            backend,
        })
    }

    /// An in-memory keyring with a fresh random master key, for tests.
    pub fn memory(custodian: &str) -> Result<Self> {
        let mut master = [0u8; KEY_LEN];
        fill_random(&mut master)?;
        Self::memory_with_key(custodian, master)
    }

    /// An in-memory keyring with a given master key, for tests that need two keyrings with
    /// the same key.
    pub fn memory_with_key(custodian: &str, master: [u8; KEY_LEN]) -> Result<Self> {
        check_id(custodian)?;
        Ok(Keyring {
            custodian: custodian.to_owned(),
            backend: Backend::File(Box::new(FileKeys::from_master(custodian, &master)?)),
        })
    }

    /// The custodian this keyring belongs to.
    pub fn custodian(&self) -> &str {
        &self.custodian
    }

    /// What the catalog records as the custodian's key, and compares on every start: a
    /// file master key's fingerprint (a domain-separated BLAKE3 derivation, 16 bytes in hex,
    /// which does not reveal the key), a KMS key's ARN, or a Transit key's address, name
    /// and version-1 creation time. Asks a network key manager, so it can fail like any
    /// call; a disabled KMS key is refused here.
    pub async fn identity(&self) -> Result<String> {
        match &self.backend {
            Backend::File(k) => k.fingerprint(),
            Backend::Kms(k) => k.identity().await,
            Backend::Vault(k) => k.identity().await,
        }
    }

    /// The identities of earlier keys this keyring still holds and unwraps with, oldest
    /// first: the fingerprints of a `file://` folder's older master keys. A catalog that
    /// recorded one of them was recording this custodian before a rotation, not another
    /// key. Network keyrings keep one identity across their key versions: none.
    pub fn earlier_identities(&self) -> Vec<String> {
        match &self.backend {
            Backend::File(k) => k.earlier_fingerprints(),
            _ => Vec::new(),
        }
    }

    /// The newest master key file, if the keyring is a `file://` one in a folder.
    pub fn key_file(&self) -> Option<std::path::PathBuf> {
        match &self.backend {
            Backend::File(k) => k.key_file(),
            _ => None,
        }
    }

    /// Begins a rotation where the keyring holds its keys itself: a `file://` folder gets
    /// the next master key version (`master-vN.key`), which wraps from then on, and its
    /// version is returned. A key manager's key gets its new version in the key manager
    /// (KMS automatic or on-demand rotation, Transit `keys/KEY/rotate`): `None`, nothing
    /// is done here.
    pub fn add_master_key(&self) -> Result<Option<u32>> {
        match &self.backend {
            Backend::File(k) => k.add_version().map(|(version, _)| Some(version)),
            _ => Ok(None),
        }
    }

    /// Whether `wrapped` is known to be under the key's newest version: `Some` for a
    /// `file://` keyring (its wrapped keys name their master key version), `None` where
    /// the key manager does not say (a rotation then rewraps every key).
    pub fn is_current(&self, wrapped: &[u8]) -> Result<Option<bool>> {
        match &self.backend {
            Backend::File(k) => k.is_current(wrapped).map(Some),
            _ => Ok(None),
        }
    }

    /// A fresh data key and its wrapped form, bound to `context`. A network keyring lets
    /// its key manager generate the key (`GenerateDataKey`, `datakey/plaintext`).
    pub async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>)> {
        match &self.backend {
            Backend::File(k) => {
                let dek = DataKey::generate()?;
                let wrapped = k.wrap(&dek, context)?;
                Ok((dek, wrapped))
            }
            Backend::Kms(k) => k.generate(context).await,
            Backend::Vault(k) => k.generate(context).await,
        }
    }

    /// Wraps a data key for storage in the catalog, bound to `context` so that it cannot
    /// be swapped onto another subject or category.
    pub async fn wrap(&self, dek: &DataKey, context: &KeyContext<'_>) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::File(k) => k.wrap(dek, context),
            Backend::Kms(k) => k.wrap(dek, context).await,
            Backend::Vault(k) => k.wrap(dek, context).await,
        }
    }

    /// Unwraps a data key wrapped by this custodian with the same context. Any other
    /// custodian, context or a tampered value gives [`Error::Crypto`] (`file://`) or
    /// [`Error::KeyManagerRefused`] (a key manager's refusal).
    pub async fn unwrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey> {
        match &self.backend {
            Backend::File(k) => k.unwrap(wrapped, context),
            Backend::Kms(k) => k.unwrap(wrapped, context).await,
            Backend::Vault(k) => k.unwrap(wrapped, context).await,
        }
    }

    /// Wraps again, under the key's current version, a key this custodian wrapped: KMS
    /// `ReEncrypt` and Transit `rewrap` do it without the data key leaving the key manager.
    pub async fn rewrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::File(k) => k.wrap(&k.unwrap(wrapped, context)?, context),
            Backend::Kms(k) => k.rewrap(wrapped, context).await,
            Backend::Vault(k) => k.rewrap(wrapped, context).await,
        }
    }
}

fn check_id(custodian: &str) -> Result<()> {
    if custodian.is_empty() {
        return Err(Error::invalid_use("a custodian id must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: KeyContext<'static> = KeyContext {
        token: "subject-token",
        category: "profile",
    };

    #[tokio::test]
    async fn wrap_unwrap_is_bound_to_custodian_and_context() -> Result<()> {
        let master = [9u8; KEY_LEN];
        let a = Keyring::memory_with_key("operator-kms", master)?;
        let b = Keyring::memory_with_key("in-kms", master)?;
        let dek = DataKey::generate()?;
        let wrapped = a.wrap(&dek, &CTX).await?;
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(a.unwrap(&wrapped, &CTX).await?, dek);
        for other in [
            KeyContext::new("other-token", "profile"),
            KeyContext::new("subject-token", "orders"),
        ] {
            assert!(matches!(
                a.unwrap(&wrapped, &other).await,
                Err(Error::Crypto { .. })
            ));
        }
        assert!(matches!(
            b.unwrap(&wrapped, &CTX).await,
            Err(Error::Crypto { .. })
        ));
        let mut bad = wrapped.clone();
        bad[WRAPPED_LEN - 1] ^= 1;
        assert!(a.unwrap(&bad, &CTX).await.is_err());
        assert!(a.unwrap(&wrapped[1..], &CTX).await.is_err());
        let rewrapped = a.rewrap(&wrapped, &CTX).await?;
        assert_ne!(rewrapped, wrapped);
        assert_eq!(a.unwrap(&rewrapped, &CTX).await?, dek);
        let (fresh, fresh_wrapped) = a.generate(&CTX).await?;
        assert_eq!(a.unwrap(&fresh_wrapped, &CTX).await?, fresh);
        assert!(format!("{a:?}").contains("operator-kms"));
        Ok(())
    }

    #[test]
    fn keyrings_refuse_memory_urls_and_empty_ids() {
        assert!(matches!(
            Keyring::open("k", "memory://", Path::new("/")),
            Err(Error::BadUrl { .. })
        ));
        assert!(Keyring::memory("").is_err());
        for url in [
            "s3://bucket",
            "gs://bucket",
            "aws-kms://alias/k",
            "vault://host/transit/k",
            "vaults://host:8200/k",
        ] {
            assert!(
                matches!(
                    Keyring::check_url(url, Path::new("/")),
                    Err(Error::BadUrl { .. })
                ),
                "{url}"
            );
        }
        for url in [
            "file://keys/k",
            "aws-kms://alias/k?region=ap-south-1",
            "vault://127.0.0.1:8200/transit/k",
            "vaults://vault.example:8200/transit/k",
        ] {
            assert!(Keyring::check_url(url, Path::new("/")).is_ok(), "{url}");
        }
    }

    /// Keys wrapped before keyrings had several backends still open: the format and its
    /// binding did not change.
    #[tokio::test]
    async fn file_wrapped_keys_keep_their_format() -> Result<()> {
        let ring = Keyring::memory_with_key("in-kms", [3u8; KEY_LEN])?;
        let wrapped = ring.wrap(&DataKey::generate()?, &CTX).await?;
        assert_eq!(wrapped[0], file::WRAP_VERSION);
        assert_eq!(ring.identity().await?, "d89b55bfe8ba001e955ab743950bdad2");
        Ok(())
    }
}
