//! Where subjects' bytes physically live, and how they are sealed there.
//!
//! This crate knows nothing of policy: the engine decides *which* regions and custodian a
//! subject's data uses; this crate stores, encrypts, reads, copies and checks blobs in the
//! regions it is handed. Region ids and subject tokens are plain strings here.
//!
//! Modules, from the bottom up:
//!
//! - [`error`]: the one [`Error`] type, with structured fields (region, path, reason).
//! - [`location`]: parses store and keyring URLs (`file://`, `s3://bucket?endpoint=…&region=…`,
//!   `memory://`) before anything is opened.
//! - [`layout`]: blob layout v1, `v1/{fan}/{token}/{category}/{blob_id}`, as the validated
//!   [`BlobPath`]; prefixes for purging a subject or a (subject, category).
//! - [`crypto`]: blob format v1 (header, chunked AES-256-GCM with a key per blob, final-chunk
//!   flag), the offset arithmetic for range reads, [`DataKey`], and small sealed values for
//!   names and metadata.
//! - [`keyring`]: custodians' keys (a local master key file, an AWS KMS key, a Vault or
//!   OpenBao Transit key), which generate and wrap data keys bound to the custodian, the
//!   subject token and the category.
//! - [`region`]: [`RegionStore`], an `object_store` backend (local folder, S3-compatible
//!   bucket, memory) named by its region id, with idempotent delete and listings that
//!   separate blobs from foreign objects.
//! - [`blob`]: the data path: [`BlobWriter`] to every region of a placement at once,
//!   [`read_blob`] for whole or ranged streaming reads, [`copy_blob`] for migrations
//!   (ciphertext only, checksum-verified), [`checksum_of`].
//! - `folder`: whole-file copies and prefix deletions on local-folder regions, one
//!   blocking call each instead of one per file operation.

pub mod blob;
pub mod crypto;
pub mod error;
mod folder;
pub mod keyring;
pub mod layout;
pub mod location;
pub mod region;

pub use blob::{BlobWriter, PlainStream, WrittenBlob, checksum_of, copy_blob, read_blob};
pub use crypto::{DataKey, Mode};
pub use error::{Error, Result};
pub use keyring::{KeyContext, Keyring, KeyringOptions};
pub use layout::BlobPath;
pub use region::{Leftover, ListEntry, Listing, RegionOptions, RegionStore, S3Credentials};
