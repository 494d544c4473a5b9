//! The `file://` backend: a local folder holding the custodian's master keys,
//! `master-v1.key` first (32 random bytes, created on first use with mode 0600 in a 0700
//! folder) and `master-v2.key`, `master-v3.key`… beside it as rotations add them. Data keys
//! are wrapped locally with AES-256-GCM under a key derived from a master key and the
//! custodian id.
//!
//! The newest master key wraps; a wrapped key names the version that wrapped it, so every
//! version the folder still holds unwraps. A rotation adds a version, rewraps every data key
//! under it, and then the older files may be moved away. The folder is looked at again
//! before each wrap (and when a key names a version not loaded yet), so a process that
//! opened the folder before a rotation wraps under the new key as soon as it exists.
//!
//! A key file that group or others can read is refused rather than silently used or
//! "fixed": the operator should learn that the key may have leaked.
//!
//! Wrapped key formats (the AAD is the custodian id, length-prefixed, then `token/category`):
//! - under `master-v1.key`: version byte 1 || nonce (12) || encrypted data key (32) ||
//!   tag (16), as every key was wrapped before rotations existed;
//! - under a later master key: version byte 2 || master key version (u32, big-endian) ||
//!   nonce || encrypted data key || tag.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};

use super::{KeyContext, MASTER_KEY_FILE, WRAPPED_LEN};
use crate::crypto::{DataKey, KEY_LEN, TAG_LEN, derive_aes_key, fill_random};
use crate::error::{Error, Result};

/// Format of a key wrapped under master key version 1.
pub(super) const WRAP_VERSION: u8 = 1;
/// Format of a key wrapped under a later master key, which it names.
pub(super) const WRAP_VERSION_NAMED: u8 = 2;
/// Length of a key in the named format.
const WRAPPED_LEN_NAMED: usize = WRAPPED_LEN + 4;
const WRAP_KDF_SALT: &[u8] = b"domicile-wrap-v1";

/// The file name of master key `version`.
pub fn master_key_file(version: u32) -> String {
    format!("master-v{version}.key")
}

/// The version a master key file name stands for, if it is one.
fn master_key_version(name: &str) -> Option<u32> {
    let n = name.strip_prefix("master-v")?.strip_suffix(".key")?;
    if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|v| *v >= 1)
}

/// One version of the master key, ready to wrap.
struct MasterKey {
    version: u32,
    /// The AES key that wraps data keys, derived from the master key and the custodian id.
    wrap_key: LessSafeKey,
    /// Names the master key without revealing it.
    fingerprint: String,
}

/// A custodian's master keys in a local folder (or one in memory, for tests).
pub(super) struct FileKeys {
    custodian: String,
    /// Where the master keys live; `None` for in-memory keyrings.
    dir: Option<PathBuf>,
    /// Oldest first, never empty: the last one wraps.
    versions: RwLock<Vec<Arc<MasterKey>>>,
}

impl FileKeys {
    fn master(custodian: &str, version: u32, master: &[u8; KEY_LEN]) -> Result<MasterKey> {
        let id = blake3::derive_key("domicile keyring fingerprint v1", master);
        Ok(MasterKey {
            version,
            wrap_key: derive_aes_key(master, WRAP_KDF_SALT, &[custodian.as_bytes()])?,
            fingerprint: hex::encode(&id[..16]),
        })
    }

    /// A keyring of one master key (version 1) kept in memory.
    pub(super) fn from_master(custodian: &str, master: &[u8; KEY_LEN]) -> Result<Self> {
        Ok(Self {
            custodian: custodian.to_owned(),
            dir: None,
            versions: RwLock::new(vec![Arc::new(Self::master(custodian, 1, master)?)]),
        })
    }

    /// Opens the folder's master keys, creating folder and first key on first use.
    pub(super) fn open_dir(custodian: &str, dir: &Path) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
        if versions_in(dir)?.is_empty() {
            let file = dir.join(MASTER_KEY_FILE);
            let mut master = create_key_file(dir, &file)?;
            master.fill(0);
        }
        Self::open_existing(custodian, dir)
    }

    /// Opens the folder's master keys only if there is one.
    pub(super) fn open_existing(custodian: &str, dir: &Path) -> Result<Self> {
        let keys = Self {
            custodian: custodian.to_owned(),
            dir: Some(dir.to_path_buf()),
            versions: RwLock::new(Vec::new()),
        };
        keys.refresh()?;
        if keys.loaded().is_empty() {
            // The error of the first key's absence: the folder is missing or empty.
            read_key_file(&dir.join(MASTER_KEY_FILE))?;
        }
        Ok(keys)
    }

    /// The master keys loaded so far, oldest first.
    fn loaded(&self) -> Vec<Arc<MasterKey>> {
        match self.versions.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The master key that wraps: the newest loaded.
    fn newest(&self) -> Result<Arc<MasterKey>> {
        self.loaded()
            .last()
            .cloned()
            .ok_or_else(|| Error::crypto("keyring holds no master key"))
    }

    /// Loads the folder's master keys newer than the newest loaded.
    fn refresh(&self) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let newest = self.loaded().last().map_or(0, |k| k.version);
        let mut found = Vec::new();
        for version in versions_in(dir)? {
            if version > newest {
                let mut master = read_key_file(&dir.join(master_key_file(version)))?;
                let key = Self::master(&self.custodian, version, &master);
                master.fill(0);
                found.push(Arc::new(key?));
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        let mut versions = match self.versions.write() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        for key in found {
            if versions.last().is_none_or(|k| k.version < key.version) {
                versions.push(key);
            }
        }
        Ok(())
    }

    /// The newest master key's file, if the keyring is in a folder.
    pub(super) fn key_file(&self) -> Option<PathBuf> {
        let version = self.loaded().last()?.version;
        Some(self.dir.as_ref()?.join(master_key_file(version)))
    }

    /// The folder, for messages.
    pub(super) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The newest master key's fingerprint.
    pub(super) fn fingerprint(&self) -> Result<String> {
        Ok(self.newest()?.fingerprint.clone())
    }

    /// The fingerprints of the older master keys still loaded, oldest first.
    pub(super) fn earlier_fingerprints(&self) -> Vec<String> {
        let loaded = self.loaded();
        let n = loaded.len().saturating_sub(1);
        loaded[..n].iter().map(|k| k.fingerprint.clone()).collect()
    }

    /// Adds the next master key version to the folder and wraps under it from now on.
    /// Returns its version and fingerprint. Of two processes adding the same version at
    /// once, both end up with the one that was linked first.
    pub(super) fn add_version(&self) -> Result<(u32, String)> {
        let Some(dir) = &self.dir else {
            return Err(Error::invalid_use(
                "an in-memory keyring has no folder to add a master key to",
            ));
        };
        self.refresh()?;
        let next = self.newest()?.version + 1;
        let mut master = create_key_file(dir, &dir.join(master_key_file(next)))?;
        master.fill(0);
        self.refresh()?;
        let newest = self.newest()?;
        Ok((newest.version, newest.fingerprint.clone()))
    }

    /// Whether `wrapped` is under the newest master key in the folder.
    pub(super) fn is_current(&self, wrapped: &[u8]) -> Result<bool> {
        self.refresh()?;
        Ok(wrapped_version(wrapped) == Some(self.newest()?.version))
    }

    pub(super) fn wrap(&self, dek: &DataKey, context: &KeyContext<'_>) -> Result<Vec<u8>> {
        // A rotation in another process may have added a version since the last look.
        self.refresh()?;
        let key = self.newest()?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut out = Vec::with_capacity(WRAPPED_LEN_NAMED);
        if key.version == 1 {
            out.push(WRAP_VERSION);
        } else {
            out.push(WRAP_VERSION_NAMED);
            out.extend_from_slice(&key.version.to_be_bytes());
        }
        let head = out.len() + NONCE_LEN;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(dek.as_bytes());
        let tag = key
            .wrap_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(context)),
                &mut out[head..],
            )
            .map_err(|_| Error::crypto("key wrapping failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    pub(super) fn unwrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey> {
        let (version, rest) = match wrapped.first() {
            Some(&WRAP_VERSION) if wrapped.len() == WRAPPED_LEN => (1, &wrapped[1..]),
            Some(&WRAP_VERSION_NAMED) if wrapped.len() == WRAPPED_LEN_NAMED => {
                let mut v = [0u8; 4];
                v.copy_from_slice(&wrapped[1..5]);
                (u32::from_be_bytes(v), &wrapped[5..])
            }
            Some(&WRAP_VERSION | &WRAP_VERSION_NAMED) => {
                return Err(Error::crypto(format!(
                    "a wrapped key is {WRAPPED_LEN} or {WRAPPED_LEN_NAMED} bytes, got {}",
                    wrapped.len()
                )));
            }
            _ => return Err(Error::crypto("wrapped key has an unknown version")),
        };
        let find = || self.loaded().into_iter().find(|k| k.version == version);
        let key = match find() {
            Some(k) => k,
            None => {
                self.refresh()?;
                find().ok_or_else(|| {
                    Error::crypto(format!(
                        "wrapped key is under master key version {version} of custodian {:?}, which its keyring does not hold ({} is missing)",
                        self.custodian,
                        master_key_file(version)
                    ))
                })?
            }
        };
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| Error::crypto("wrapped key has a bad nonce"))?;
        let mut buf = [0u8; KEY_LEN + TAG_LEN];
        buf.copy_from_slice(sealed);
        let opened = key
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

/// The master key version a `file://` wrapped key names, if it is one.
fn wrapped_version(wrapped: &[u8]) -> Option<u32> {
    match wrapped.first() {
        Some(&WRAP_VERSION) if wrapped.len() == WRAPPED_LEN => Some(1),
        Some(&WRAP_VERSION_NAMED) if wrapped.len() == WRAPPED_LEN_NAMED => {
            let mut v = [0u8; 4];
            v.copy_from_slice(&wrapped[1..5]);
            Some(u32::from_be_bytes(v))
        }
        _ => None,
    }
}

/// The master key versions a folder holds, in order.
fn versions_in(dir: &Path) -> Result<Vec<u32>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut versions = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        if let Some(v) = entry.file_name().to_str().and_then(master_key_version) {
            versions.push(v);
        }
    }
    versions.sort_unstable();
    Ok(versions)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
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
    let name = file
        .file_name()
        .map_or_else(|| MASTER_KEY_FILE.into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
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
