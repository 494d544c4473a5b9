//! The one error type of this crate.
//!
//! Variants carry structured fields (region id, path, reason) so that the engine can decide
//! what to do (try another region, flag a copy as corrupt, report a bad config URL) without
//! parsing messages. No variant ever carries key material or plaintext.

use std::path::PathBuf;

/// Everything that can go wrong in a region store, the blob layout, the blob format or a
/// keyring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backing object store failed (I/O, network, permissions). Usually retryable.
    #[error("region {region}: object store error: {source}")]
    ObjectStore {
        /// Id of the region whose store failed.
        region: String,
        /// The object store's own error.
        #[source]
        source: object_store::Error,
    },

    /// The object does not exist in the region. Kept apart from [`Error::ObjectStore`]
    /// because a missing copy is a finding (for `verify`), not an outage.
    #[error("region {region}: no object at {path}")]
    NotFound {
        /// Id of the region that was asked.
        region: String,
        /// The object path that was asked for.
        path: String,
    },

    /// A cryptographic operation failed: a wrapped key or sealed value did not
    /// authenticate (wrong custodian, wrong context, tampering), the key does not match the
    /// blob's mode, or the system could not provide randomness.
    #[error("crypto error: {reason}")]
    Crypto {
        /// What failed, without any secret.
        reason: String,
    },

    /// Stored bytes are not what they should be: a chunk failed authentication, the blob is
    /// truncated, the header is malformed, or a checksum did not match.
    #[error("corrupt data: {reason}")]
    Corrupt {
        /// What was found, including the region and path where known.
        reason: String,
    },

    /// A custodian's key manager could not be reached, or answered with a failure that
    /// passes (a timeout, a 5xx, throttling, a sealed Vault). Retryable: nothing was wrapped
    /// or unwrapped, and nothing may be written under another key meanwhile.
    #[error("custodian {custodian}: its key manager is unavailable: {reason}")]
    KeyManagerUnavailable {
        /// Id of the custodian whose key manager failed.
        custodian: String,
        /// What failed (the key manager's URL, never a credential).
        reason: String,
    },

    /// A custodian's key manager answered but refused: the key is disabled, deleted or
    /// not allowed to this caller, or a wrapped key does not open under it with its
    /// context. Not retryable until an operator acts.
    #[error("custodian {custodian}: its key manager refused: {reason}")]
    KeyManagerRefused {
        /// Id of the custodian whose key manager refused.
        custodian: String,
        /// The key manager's own reason.
        reason: String,
    },

    /// A store or keyring URL cannot be used.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// Why it was refused (for schemes: the supported ones).
        reason: String,
    },

    /// A local file operation failed (creating a region folder, reading a key file).
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A custodian's key file exists but must not be used as is.
    #[error("key file {}: {reason}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// Why it was refused, and what to do about it.
        reason: String,
    },

    /// A string is not a valid part of the blob layout, or an object path is not a blob
    /// path of this layout.
    #[error("invalid blob path {path:?}: {reason}")]
    InvalidBlobPath {
        /// The offending path or path part.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A requested byte range does not lie within the object.
    #[error("range {start}..{end} is outside an object of {len} bytes")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// Plaintext length of the object.
        len: u64,
    },

    /// The caller used an API in a way it does not support (a chunk size out of bounds,
    /// a chunk after the final one, a writer without regions). A bug in the caller.
    #[error("invalid use: {reason}")]
    InvalidUse {
        /// What was wrong.
        reason: String,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Maps an object store error for `region`, turning "not found" into
    /// [`Error::NotFound`] so that callers can match on it.
    /// The path reported is the object path asked for (not the backend's file path, which
    /// would leak the store's local layout into logs).
    pub(crate) fn from_store(
        region: &str,
        location: &object_store::path::Path,
        source: object_store::Error,
    ) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                region: region.to_owned(),
                path: location.to_string(),
            },
            source => Error::ObjectStore {
                region: region.to_owned(),
                source,
            },
        }
    }

    pub(crate) fn crypto(reason: impl Into<String>) -> Self {
        Error::Crypto {
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        Error::Corrupt {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_use(reason: impl Into<String>) -> Self {
        Error::InvalidUse {
            reason: reason.into(),
        }
    }

    /// True when the same call may succeed later without anyone acting: a key manager that
    /// could not be reached.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::KeyManagerUnavailable { .. })
    }

    /// True when the error means "this object is not there", as opposed to a failure to
    /// find out.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}
