//! The streaming data path: write a blob to every region of a placement, read it back (or a
//! range of it), copy it between regions, checksum it.
//!
//! Memory stays bounded whatever the object size: writers hold at most a few upload parts
//! per region (shared between regions, not copied), readers a few read batches.
//! Checksums are BLAKE3 over the *stored* bytes, so a copy can be verified without the
//! data key, and a migration never needs to decrypt.
//!
//! - `write`: [`BlobWriter`], to every region of a placement at once, committed in all of
//!   them or in none.
//! - `read`: [`read_blob`], whole or ranged, fetching and decrypting only the chunks a
//!   range covers.
//! - `copy`: [`copy_blob`] (ciphertext only, checksum-verified) and [`checksum_of`].
//! - `fetch`: a blob's stored bytes fetched from a region, by exact range or in batches;
//!   shared by `read` and `copy`.

mod copy;
mod fetch;
mod read;
#[cfg(test)]
mod tests;
mod write;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::Result;

pub use copy::{checksum_of, copy_blob};
pub use read::read_blob;
pub use write::BlobWriter;

/// Blobs whose stored size is at most this are written with one `put` per region at
/// [`BlobWriter::finish`]; larger ones go through multipart uploads. One request is the
/// fastest way to store a small object, and S3 multipart parts must be at least 5 MiB.
pub const SINGLE_PUT_MAX: u64 = 8 * 1024 * 1024;
/// The size of each multipart upload part.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per region before a writer waits: the writer's back-pressure, and with
/// [`PART_SIZE`] the bound on its memory.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;
/// Stored bytes fetched per request when reading, checksumming or copying.
pub const READ_BATCH: u64 = 8 * 1024 * 1024;
/// Read requests in flight at once: one being consumed, one arriving.
const READ_AHEAD: usize = 2;
/// A read whose range starts this close to the beginning fetches the header together with
/// the first chunks, so that small objects cost one request.
const SPECULATIVE_READ: u64 = 2 * 1024 * 1024;

/// A stream of plaintext pieces, in order.
pub type PlainStream = BoxStream<'static, Result<Bytes>>;

/// What [`BlobWriter::finish`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBlob {
    /// Bytes stored in each region (header, chunks and tags).
    pub stored_size: u64,
    /// Plaintext bytes written.
    pub plain_size: u64,
    /// BLAKE3 of the stored bytes, lowercase hex: what copies and `verify` check against.
    pub checksum_hex: String,
}
