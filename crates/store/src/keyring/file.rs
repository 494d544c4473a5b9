//! The `file://` backend: a local folder holding `master-v1.key` (32 random bytes, created
//! on first use with mode 0600 in a 0700 folder). Data keys are wrapped locally with
//! AES-256-GCM under a key derived from the master key and the custodian id.
//!
//! A key file that group or others can read is refused rather than silently used or
//! "fixed": the operator should learn that the key may have leaked.
//!
//! Wrapped key format: version (1 byte, 1) || nonce (12) || encrypted data key (32) || tag (16).
//! The AAD is the custodian id (length-prefixed) then `token/category`.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};

use super::{KeyContext, MASTER_KEY_FILE, WRAPPED_LEN};
use crate::crypto::{DataKey, KEY_LEN, TAG_LEN, derive_aes_key, fill_random};
use crate::error::{Error, Result};

pub(super) const WRAP_VERSION: u8 = 1;
const WRAP_KDF_SALT: &[u8] = b"domicile-wrap-v1";

/// A master key in a local folder (or in memory, for tests).
pub(super) struct FileKeys {
    custodian: String,
    /// The AES key that wraps data keys, derived from the master key and the custodian id.
    wrap_key: LessSafeKey,
    /// Where the master key lives, for messages; `None` for in-memory keyrings.
    pub(super) key_file: Option<PathBuf>,
    /// Names the master key without revealing it.
    pub(super) fingerprint: String,
}

impl FileKeys {
    pub(super) fn from_master(
        custodian: &str,
        master: &[u8; KEY_LEN],
        key_file: Option<PathBuf>,
    ) -> Result<Self> {
        let id = blake3::derive_key("domicile keyring fingerprint v1", master);
        Ok(Self {
            custodian: custodian.to_owned(),
            wrap_key: derive_aes_key(master, WRAP_KDF_SALT, &[custodian.as_bytes()])?,
            key_file,
            fingerprint: hex::encode(&id[..16]),
        })
    }

    /// Opens the folder's master key, creating folder and key on first use.
    pub(super) fn open_dir(custodian: &str, dir: &Path) -> Result<Self> {
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
        let keys = Self::from_master(custodian, &master, Some(file));
        master.fill(0);
        keys
    }

    /// Opens the folder's master key only if it exists.
    pub(super) fn open_existing(custodian: &str, dir: &Path) -> Result<Self> {
        let file = dir.join(MASTER_KEY_FILE);
        let mut master = read_key_file(&file)?;
        let keys = Self::from_master(custodian, &master, Some(file));
        master.fill(0);
        keys
    }

    pub(super) fn wrap(&self, dek: &DataKey, context: &KeyContext<'_>) -> Result<Vec<u8>> {
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

    pub(super) fn unwrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey> {
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
    /// each other, then `token/category` (the format every wrapped key so far was made with).
    fn aad(&self, context: &KeyContext<'_>) -> Vec<u8> {
        let id = self.custodian.as_bytes();
        let tail = context.legacy_bytes();
        let mut aad = Vec::with_capacity(4 + id.len() + tail.len());
        aad.extend_from_slice(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(id);
        aad.extend_from_slice(&tail);
        aad
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
