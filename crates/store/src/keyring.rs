//! Key custodians: each wraps subjects' data keys under its own master key.
//!
//! Who holds the key that unwraps a subject's data key decides which governments can reach
//! the plaintext, so the custodian is part of every wrapped key: the custodian id is
//! authenticated with the ciphertext and a key wrapped by one custodian never unwraps under
//! another, even if both master keys were equal.
//!
//! The only backend today is a local folder holding `master-v1.key` (32 random bytes,
//! created on first use with mode 0600 in a 0700 folder). A key file that group or others
//! can read is refused rather than silently used or "fixed": the operator should learn that
//! the key may have leaked. [`Keyring::open_existing`] never creates a key, and each
//! keyring names its key by a [`Keyring::fingerprint`] that the engine checks against the
//! identity the catalog recorded, so a missing or replaced key is refused, not replaced.
//! A KMS backend would be another [`Location`] arm.
//!
//! Wrapped key format: version (1 byte) || nonce (12) || encrypted data key (32) || tag (16).

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};

use crate::crypto::{DataKey, KEY_LEN, TAG_LEN, derive_aes_key, fill_random};
use crate::error::{Error, Result};
use crate::location::Location;

/// Name of the master key file in a keyring folder; versioned so that a rotation can add
/// `master-v2.key` beside it.
pub const MASTER_KEY_FILE: &str = "master-v1.key";
/// Length of a wrapped data key.
pub const WRAPPED_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;

const WRAP_VERSION: u8 = 1;
const WRAP_KDF_SALT: &[u8] = b"domicile-wrap-v1";

/// One custodian's keyring: wraps and unwraps data keys.
pub struct Keyring {
    custodian: String,
    /// The AES key that wraps data keys, derived from the master key and the custodian id.
    wrap_key: LessSafeKey,
    /// Where the master key lives, for messages; `None` for in-memory keyrings.
    key_file: Option<PathBuf>,
    /// Names the master key without revealing it (see [`Keyring::fingerprint`]).
    fingerprint: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("custodian", &self.custodian)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Opens the keyring of `custodian` at `url` (`file://…`, relative paths against
    /// `base_dir`), creating the folder and master key on first use.
    pub fn open(custodian: &str, url: &str, base_dir: &Path) -> Result<Self> {
        match Location::parse(url, base_dir)? {
            Location::LocalDir(dir) => Self::open_dir(custodian, &dir),
            Location::Memory => Err(Error::BadUrl {
                url: url.to_owned(),
                reason: "a keyring must outlive the process; supported schemes are file://"
                    .to_owned(),
            }),
            _ => Err(Error::BadUrl {
                url: url.to_owned(),
                reason: "keyrings live in local folders; supported schemes are file://".to_owned(),
            }),
        }
    }

    /// Opens the keyring of `custodian` at `url` only if its master key
    /// exists: nothing is created. For a custodian that already wraps data,
    /// a missing key must be an error, never a new key.
    pub fn open_existing(custodian: &str, url: &str, base_dir: &Path) -> Result<Self> {
        match Location::parse(url, base_dir)? {
            Location::LocalDir(dir) => {
                let file = dir.join(MASTER_KEY_FILE);
                let mut master = read_key_file(&file)?;
                let keyring = Self::from_master(custodian, &master, Some(file));
                master.fill(0);
                keyring
            }
            _ => Self::open(custodian, url, base_dir),
        }
    }

    /// An in-memory keyring with a fresh random master key, for tests.
    pub fn memory(custodian: &str) -> Result<Self> {
        let mut master = [0u8; KEY_LEN];
        fill_random(&mut master)?;
        Self::from_master(custodian, &master, None)
    }

    /// An in-memory keyring with a given master key, for tests that need two keyrings with
    /// the same key.
    pub fn memory_with_key(custodian: &str, master: [u8; KEY_LEN]) -> Result<Self> {
        Self::from_master(custodian, &master, None)
    }

    /// The custodian this keyring belongs to.
    pub fn custodian(&self) -> &str {
        &self.custodian
    }

    /// A name of the master key that does not reveal it (a domain-separated
    /// BLAKE3 derivation, 16 bytes in hex): what the catalog records as the
    /// custodian's key identity, and compares on every start.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The master key file, if the keyring is on disk.
    pub fn key_file(&self) -> Option<&Path> {
        self.key_file.as_deref()
    }

    /// Wraps a data key for storage in the catalog. `context` binds the wrapped key to its
    /// use (e.g. the subject token), so that it cannot be swapped onto another subject.
    pub fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(dek.as_bytes());
        let tag = self
            .wrap_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(context)),
                &mut out[1 + NONCE_LEN..],
            )
            .map_err(|_| Error::crypto("key wrapping failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Unwraps a data key wrapped by this custodian with the same context. Any other
    /// custodian, context or a tampered value gives [`Error::Crypto`].
    pub fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey> {
        if wrapped.len() != WRAPPED_LEN {
            return Err(Error::crypto(format!(
                "a wrapped key is {WRAPPED_LEN} bytes, got {}",
                wrapped.len()
            )));
        }
        let (version, rest) = wrapped.split_at(1);
        if version != [WRAP_VERSION] {
            return Err(Error::crypto("wrapped key has an unknown version"));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::crypto("wrapped key has a bad nonce"))?;
        let mut buf = [0u8; KEY_LEN + TAG_LEN];
        buf.copy_from_slice(sealed);
        let opened = self
            .wrap_key
            .open_in_place(nonce, Aad::from(self.aad(context)), &mut buf);
        let result = match opened {
            Ok(plain) => DataKey::from_slice(plain),
            Err(_) => Err(Error::crypto(format!(
                "wrapped key does not open under custodian {:?} (other custodian, other context, or tampered)",
                self.custodian
            ))),
        };
        buf.fill(0);
        result
    }

    /// AAD: the custodian id, length-prefixed so that (id, context) pairs cannot run into
    /// each other, then the context.
    fn aad(&self, context: &[u8]) -> Vec<u8> {
        let id = self.custodian.as_bytes();
        let mut aad = Vec::with_capacity(4 + id.len() + context.len());
        aad.extend_from_slice(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(id);
        aad.extend_from_slice(context);
        aad
    }

    fn from_master(
        custodian: &str,
        master: &[u8; KEY_LEN],
        key_file: Option<PathBuf>,
    ) -> Result<Self> {
        if custodian.is_empty() {
            return Err(Error::invalid_use("a custodian id must not be empty"));
        }
        let id = blake3::derive_key("domicile keyring fingerprint v1", master);
        Ok(Self {
            custodian: custodian.to_owned(),
            wrap_key: derive_aes_key(master, WRAP_KDF_SALT, &[custodian.as_bytes()])?,
            key_file,
            fingerprint: hex::encode(&id[..16]),
        })
    }

    fn open_dir(custodian: &str, dir: &Path) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let file = dir.join(MASTER_KEY_FILE);
        let mut master = match read_key_file(&file) {
            Ok(master) => master,
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                create_key_file(dir, &file)?
            }
            Err(e) => return Err(e),
        };
        let keyring = Self::from_master(custodian, &master, Some(file));
        master.fill(0);
        keyring
    }
}

/// Reads a master key file, refusing one that group or others may access.
fn read_key_file(file: &Path) -> Result<[u8; KEY_LEN]> {
    let io = |source| Error::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut handle = fs::File::open(file).map_err(io)?;
    let meta = handle.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Error::KeyFile {
            path: file.to_path_buf(),
            reason: "not a regular file".to_owned(),
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyFile {
            path: file.to_path_buf(),
            reason: format!(
                "permissions {mode:04o} let group or others access the key; \
                 it may have leaked. Check who could read it, then `chmod 600` it"
            ),
        });
    }
    let mut master = [0u8; KEY_LEN];
    let mut extra = [0u8; 1];
    handle.read_exact(&mut master).map_err(|_| Error::KeyFile {
        path: file.to_path_buf(),
        reason: format!("a master key file holds exactly {KEY_LEN} bytes"),
    })?;
    if handle.read(&mut extra).map_err(io)? != 0 {
        master.fill(0);
        return Err(Error::KeyFile {
            path: file.to_path_buf(),
            reason: format!("a master key file holds exactly {KEY_LEN} bytes"),
        });
    }
    Ok(master)
}

/// Creates the master key file without ever exposing a partial or world-readable file:
/// the key is written and synced to a private temporary file, then hard-linked into place,
/// which fails if another process won the race; in that case its key is used.
fn create_key_file(dir: &Path, file: &Path) -> Result<[u8; KEY_LEN]> {
    let mut master = [0u8; KEY_LEN];
    fill_random(&mut master)?;
    let mut suffix = [0u8; 8];
    fill_random(&mut suffix)?;
    let tmp = dir.join(format!(".{MASTER_KEY_FILE}.{}.tmp", hex::encode(suffix)));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let written = (|| {
        let mut handle = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        handle.write_all(&master).map_err(io(&tmp))?;
        handle.sync_all().map_err(io(&tmp))?;
        match fs::hard_link(&tmp, file) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io(file)(e)),
        }
    })();
    // The temporary name is never used again; failing to remove it only leaves a private file.
    let _ = fs::remove_file(&tmp);
    if !written? {
        master.fill(0);
        return read_key_file(file);
    }
    // Make the new directory entry durable before any key is wrapped under it.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    tracing::info!(key_file = %file.display(), "created custodian master key");
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_is_bound_to_custodian_and_context() -> Result<()> {
        let master = [9u8; KEY_LEN];
        let a = Keyring::memory_with_key("operator-kms", master)?;
        let b = Keyring::memory_with_key("in-kms", master)?;
        let dek = DataKey::generate()?;
        let wrapped = a.wrap(&dek, b"subject-token")?;
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(a.unwrap(&wrapped, b"subject-token")?, dek);
        assert!(matches!(
            a.unwrap(&wrapped, b"other-token"),
            Err(Error::Crypto { .. })
        ));
        assert!(matches!(
            b.unwrap(&wrapped, b"subject-token"),
            Err(Error::Crypto { .. })
        ));
        let mut bad = wrapped.clone();
        bad[WRAPPED_LEN - 1] ^= 1;
        assert!(a.unwrap(&bad, b"subject-token").is_err());
        assert!(a.unwrap(&wrapped[1..], b"subject-token").is_err());
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
    }
}
