//! Blob format v1: streaming, chunked AES-256-GCM; and small sealed values.
//!
//! A stored blob is a fixed header followed by chunks:
//!
//! ```text
//! header (26 bytes):
//!   magic      b"DMCB"
//!   version    1u8
//!   mode       u8    1 = AES-256-GCM, 0 = plain (benchmarks only: measures encryption's cost)
//!   chunk size u32 LE, plaintext bytes per chunk (default 64 KiB)
//!   key salt   16 random bytes (zero in plain mode)
//! chunk i:     ciphertext || 16-byte GCM tag      (plain mode: the plaintext, no tag)
//! ```
//!
//! Why this shape:
//! - **Chunks** let a reader decrypt a byte range by fetching only the chunks it covers,
//!   and let writers and readers stream in bounded memory. Every chunk but the last is
//!   full, so chunk `i` sits at a computable offset.
//! - **A key per blob**: HKDF-SHA256(data key, salt = `b"domicile-blob-v1"`, info =
//!   blob id || key salt). The nonce of chunk `i` is `0u32 || i as u64` (big endian), so a
//!   nonce is never reused under one key. The random key salt keeps that true even if a
//!   caller ever reused a blob id.
//! - **AAD = header || is_last**: binding the header stops chunk-size or mode games, the
//!   index in the nonce stops reordering, and the last flag stops truncation at a chunk
//!   boundary (a reader that knows the plaintext length opens the final chunk as last, and
//!   a chunk sealed as "not last" cannot pass as it). An empty object is one empty final
//!   chunk.
//! - Ciphertext is never re-encrypted when copies move between regions, so the format is
//!   the same wherever a blob lives.
//!
//! Small values (object names, metadata) use [`seal_value`]: a version byte, a random
//! nonce, the ciphertext and the tag, under a key derived from the data key for values
//! only.

use std::fmt;
use std::ops::Range;

use bytes::BufMut;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// The first four bytes of every stored blob.
pub const MAGIC: [u8; 4] = *b"DMCB";
/// The blob format version written by this code.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the blob header.
pub const HEADER_LEN: usize = 26;
/// Length of the GCM tag that follows each encrypted chunk.
pub const TAG_LEN: usize = 16;
/// Length of a data key (AES-256).
pub const KEY_LEN: usize = 32;
/// The default plaintext bytes per chunk: large enough that tags cost 0.02 %, small
/// enough that a range read fetches little it does not need.
pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// The largest chunk size a header may declare. A reader buffers whole chunks, so this
/// bounds what a malicious header can make it allocate.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

const SALT_LEN: usize = 16;
const BLOB_KDF_SALT: &[u8] = b"domicile-blob-v1";
const VALUE_KDF_SALT: &[u8] = b"domicile-value-v1";
const VALUE_VERSION: u8 = 1;

/// How a blob's chunks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// No encryption, no tags. Exists only so benchmarks can measure what encryption costs;
    /// the engine never writes it for subject data.
    Plain,
    /// AES-256-GCM with a per-blob key.
    Aes256Gcm,
}

impl Mode {
    fn to_byte(self) -> u8 {
        match self {
            Mode::Plain => 0,
            Mode::Aes256Gcm => 1,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Mode::Plain),
            1 => Some(Mode::Aes256Gcm),
            _ => None,
        }
    }

    /// Bytes each chunk adds on top of its plaintext.
    pub fn overhead_per_chunk(self) -> u64 {
        match self {
            Mode::Plain => 0,
            Mode::Aes256Gcm => TAG_LEN as u64,
        }
    }
}

/// A subject's data key: 32 random bytes, stored only wrapped by a custodian.
///
/// `Debug` never prints the key, and the bytes are overwritten on drop (best effort: the
/// compiler may have made copies).
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    /// A fresh key from the system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; KEY_LEN];
        fill_random(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// A key from its bytes, e.g. just unwrapped by a keyring.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A key from a slice, which must be exactly [`KEY_LEN`] bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::crypto(format!("a data key is {KEY_LEN} bytes")))?;
        Ok(Self(bytes))
    }

    /// The key's bytes, for wrapping.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// An AES-256-GCM key derived from this one for one purpose (`salt`) and one object
    /// (`info`), so that no two purposes or blobs ever share an AES key.
    fn derive(&self, salt: &[u8], info: &[&[u8]]) -> Result<LessSafeKey> {
        derive_aes_key(&self.0, salt, info)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// The parsed header of a stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// How the chunks are stored.
    pub mode: Mode,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    salt: [u8; SALT_LEN],
}

impl BlobHeader {
    /// Parses and checks a header; anything unexpected is [`Error::Corrupt`], because a
    /// header is only ever written by [`BlobEncoder`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let bytes: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::corrupt("blob shorter than its header"))?;
        let [m0, m1, m2, m3, version, mode, c0, c1, c2, c3, salt @ ..] = *bytes;
        if [m0, m1, m2, m3] != MAGIC {
            return Err(Error::corrupt("not a domicile blob (bad magic)"));
        }
        if version != FORMAT_VERSION {
            return Err(Error::corrupt(format!(
                "unsupported blob format version {version}"
            )));
        }
        let mode = Mode::from_byte(mode)
            .ok_or_else(|| Error::corrupt(format!("unknown blob mode {mode}")))?;
        let chunk_size = u32::from_le_bytes([c0, c1, c2, c3]);
        check_chunk_size(chunk_size)
            .map_err(|_| Error::corrupt(format!("blob header declares chunk size {chunk_size}")))?;
        Ok(Self {
            mode,
            chunk_size,
            salt,
        })
    }

    fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = self.mode.to_byte();
        out[6..10].copy_from_slice(&self.chunk_size.to_le_bytes());
        out[10..].copy_from_slice(&self.salt);
        out
    }
}

/// How a blob of a given plaintext length is cut into chunks and laid out when stored.
///
/// Every offset a reader needs comes from here, so writers and readers cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    plain_len: u64,
    chunk_size: u64,
    mode: Mode,
}

/// The chunks a plaintext range needs, and where they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSpan {
    /// Index of the first chunk to fetch.
    pub first_chunk: u64,
    /// Index of the last chunk to fetch (inclusive).
    pub last_chunk: u64,
    /// The stored bytes holding exactly those chunks.
    pub stored: Range<u64>,
}

impl ChunkLayout {
    /// The layout of a blob of `plain_len` bytes in chunks of `chunk_size`.
    pub fn new(plain_len: u64, chunk_size: u32, mode: Mode) -> Result<Self> {
        check_chunk_size(chunk_size)?;
        Ok(Self {
            plain_len,
            chunk_size: u64::from(chunk_size),
            mode,
        })
    }

    /// The plaintext length.
    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    /// Number of chunks: at least one, since an empty object is one empty final chunk.
    pub fn chunk_count(&self) -> u64 {
        self.plain_len.div_ceil(self.chunk_size).max(1)
    }

    /// Total stored length: header plus every chunk with its tag.
    pub fn stored_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plain_len + self.chunk_count() * self.mode.overhead_per_chunk()
    }

    /// The plaintext bytes chunk `index` covers.
    pub fn plain_range(&self, index: u64) -> Range<u64> {
        let start = (index * self.chunk_size).min(self.plain_len);
        start..(start + self.chunk_size).min(self.plain_len)
    }

    /// Where chunk `index` (ciphertext and tag) is stored.
    pub fn stored_range(&self, index: u64) -> Range<u64> {
        let overhead = self.mode.overhead_per_chunk();
        let start = HEADER_LEN as u64 + index * (self.chunk_size + overhead);
        let plain = self.plain_range(index);
        start..start + (plain.end - plain.start) + overhead
    }

    /// Whether chunk `index` is the final one.
    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunk_count()
    }

    /// The chunks that cover `plain_range`. An empty range maps to the one chunk holding
    /// its start, so that reading an empty object still authenticates its one chunk.
    pub fn span(&self, plain_range: Range<u64>) -> Result<ChunkSpan> {
        if plain_range.start > plain_range.end || plain_range.end > self.plain_len {
            return Err(Error::InvalidRange {
                start: plain_range.start,
                end: plain_range.end,
                len: self.plain_len,
            });
        }
        let last_index = self.chunk_count() - 1;
        let first_chunk = (plain_range.start / self.chunk_size).min(last_index);
        let last_chunk = if plain_range.is_empty() {
            first_chunk
        } else {
            ((plain_range.end - 1) / self.chunk_size).min(last_index)
        };
        Ok(ChunkSpan {
            first_chunk,
            last_chunk,
            stored: self.stored_range(first_chunk).start..self.stored_range(last_chunk).end,
        })
    }
}

/// Stored length of a blob of `plain_len` bytes: what `head` must report for a good copy.
pub fn stored_len(plain_len: u64, chunk_size: u32, mode: Mode) -> Result<u64> {
    Ok(ChunkLayout::new(plain_len, chunk_size, mode)?.stored_len())
}

/// The chunks, and the stored bytes, that a read of `plain_range` needs, so that range
/// reads fetch and decrypt only those.
pub fn chunk_span(
    plain_range: Range<u64>,
    plain_len: u64,
    chunk_size: u32,
    mode: Mode,
) -> Result<ChunkSpan> {
    ChunkLayout::new(plain_len, chunk_size, mode)?.span(plain_range)
}

/// Seals a blob chunk by chunk. One encoder per blob; chunks must be sealed in order.
pub struct BlobEncoder {
    header: [u8; HEADER_LEN],
    chunk_size: u32,
    key: Option<LessSafeKey>,
    /// header || is_last, rebuilt in place per chunk.
    aad: [u8; HEADER_LEN + 1],
    next_index: u64,
    finished: bool,
}

impl fmt::Debug for BlobEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobEncoder")
            .field("mode", &self.mode())
            .field("chunk_size", &self.chunk_size)
            .field("next_index", &self.next_index)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl BlobEncoder {
    /// An encoder for the blob `blob_id`. With a key the blob is encrypted; without one it
    /// is stored in [`Mode::Plain`] (benchmarks only).
    pub fn new(key: Option<&DataKey>, blob_id: &str, chunk_size: u32) -> Result<Self> {
        check_chunk_size(chunk_size)?;
        let (mode, salt, key) = match key {
            Some(key) => {
                let mut salt = [0u8; SALT_LEN];
                fill_random(&mut salt)?;
                let blob_key = key.derive(BLOB_KDF_SALT, &[blob_id.as_bytes(), &salt])?;
                (Mode::Aes256Gcm, salt, Some(blob_key))
            }
            None => (Mode::Plain, [0u8; SALT_LEN], None),
        };
        let header = BlobHeader {
            mode,
            chunk_size,
            salt,
        }
        .to_bytes();
        Ok(Self {
            header,
            chunk_size,
            key,
            aad: chunk_aad(&header),
            next_index: 0,
            finished: false,
        })
    }

    /// The header to store before the first chunk.
    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    /// How chunks are stored.
    pub fn mode(&self) -> Mode {
        if self.key.is_some() {
            Mode::Aes256Gcm
        } else {
            Mode::Plain
        }
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Number of chunks sealed so far.
    pub fn chunks_sealed(&self) -> u64 {
        self.next_index
    }

    /// Appends the stored form of the next chunk (ciphertext || tag) to `out`.
    ///
    /// Every chunk but the last must be exactly `chunk_size` bytes, and only an empty
    /// object has an empty chunk, so that chunk offsets are computable from the plaintext
    /// length alone. The plaintext is copied once, into `out`, and encrypted there: no
    /// allocation happens when `out` has room.
    pub fn seal_chunk<B>(&mut self, plaintext: &[u8], last: bool, out: &mut B) -> Result<()>
    where
        B: BufMut + AsMut<[u8]>,
    {
        self.check_chunk(plaintext.len(), last)?;
        let start = out.as_mut().len();
        out.put_slice(plaintext);
        self.seal_in_place(out, start, last)
    }

    /// Seals the next chunk whose plaintext the caller already put at `out[start..]`:
    /// encrypts it in place and appends the tag. Writers that gather plaintext straight
    /// into their output buffer use this to avoid any copy.
    pub fn seal_in_place<B>(&mut self, out: &mut B, start: usize, last: bool) -> Result<()>
    where
        B: BufMut + AsMut<[u8]>,
    {
        let plain_len =
            out.as_mut().len().checked_sub(start).ok_or_else(|| {
                Error::invalid_use("chunk start lies beyond the end of the buffer")
            })?;
        self.check_chunk(plain_len, last)?;
        if let Some(key) = &self.key {
            self.aad[HEADER_LEN] = u8::from(last);
            let in_out = out.as_mut().get_mut(start..).unwrap_or_default();
            let tag = key
                .seal_in_place_separate_tag(
                    chunk_nonce(self.next_index),
                    Aad::from(&self.aad),
                    in_out,
                )
                .map_err(|_| Error::crypto("chunk encryption failed"))?;
            out.put_slice(tag.as_ref());
        }
        self.next_index += 1;
        self.finished = last;
        Ok(())
    }

    fn check_chunk(&self, plain_len: usize, last: bool) -> Result<()> {
        if self.finished {
            return Err(Error::invalid_use("chunk sealed after the final chunk"));
        }
        let full = usize::try_from(self.chunk_size).unwrap_or(usize::MAX);
        if plain_len > full || (!last && plain_len != full) {
            return Err(Error::invalid_use(format!(
                "chunk of {plain_len} bytes; chunks are {full} bytes except the last"
            )));
        }
        if last && plain_len == 0 && self.next_index > 0 {
            return Err(Error::invalid_use(
                "an empty final chunk is only allowed for an empty object",
            ));
        }
        Ok(())
    }
}

/// Opens the chunks of one stored blob, in any order (range reads start mid-blob).
pub struct BlobDecoder {
    header: BlobHeader,
    key: Option<LessSafeKey>,
    aad: [u8; HEADER_LEN + 1],
}

impl fmt::Debug for BlobDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobDecoder")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl BlobDecoder {
    /// A decoder for blob `blob_id` from its stored header.
    ///
    /// The key must match the header's mode: a key for a plain blob is refused as firmly
    /// as a missing key for an encrypted one, so a tampered mode byte cannot downgrade a
    /// read to plaintext.
    pub fn new(key: Option<&DataKey>, blob_id: &str, header: &[u8]) -> Result<Self> {
        let parsed = BlobHeader::parse(header)?;
        let key = match (parsed.mode, key) {
            (Mode::Aes256Gcm, Some(key)) => {
                Some(key.derive(BLOB_KDF_SALT, &[blob_id.as_bytes(), &parsed.salt])?)
            }
            (Mode::Plain, None) => None,
            (Mode::Aes256Gcm, None) => {
                return Err(Error::crypto("blob is encrypted but no data key was given"));
            }
            (Mode::Plain, Some(_)) => {
                return Err(Error::crypto(
                    "blob is stored in plain mode but a data key was given",
                ));
            }
        };
        Ok(Self {
            aad: chunk_aad(&parsed.to_bytes()),
            header: parsed,
            key,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// How chunks are stored.
    pub fn mode(&self) -> Mode {
        self.header.mode
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.header.chunk_size
    }

    /// The layout of this blob if its plaintext is `plain_len` bytes long.
    pub fn layout(&self, plain_len: u64) -> Result<ChunkLayout> {
        ChunkLayout::new(plain_len, self.header.chunk_size, self.header.mode)
    }

    /// Decrypts stored chunk `index` in place and returns its plaintext, a prefix of
    /// `stored_chunk`. `last` must say whether the reader expects this to be the final
    /// chunk; a mismatch fails authentication, which is how truncation is caught.
    pub fn open_chunk<'a>(
        &self,
        index: u64,
        stored_chunk: &'a mut [u8],
        last: bool,
    ) -> Result<&'a mut [u8]> {
        let overhead = if self.key.is_some() { TAG_LEN } else { 0 };
        let plain_len = stored_chunk
            .len()
            .checked_sub(overhead)
            .ok_or_else(|| Error::corrupt(format!("chunk {index} is shorter than its tag")))?;
        let full = usize::try_from(self.header.chunk_size).unwrap_or(usize::MAX);
        if plain_len > full || (!last && plain_len != full) {
            return Err(Error::corrupt(format!(
                "chunk {index} holds {plain_len} bytes; chunks hold {full} bytes except the last"
            )));
        }
        let Some(key) = &self.key else {
            return Ok(stored_chunk);
        };
        let mut aad = self.aad;
        aad[HEADER_LEN] = u8::from(last);
        key.open_in_place(chunk_nonce(index), Aad::from(&aad), stored_chunk)
            .map_err(|_| {
                Error::corrupt(format!(
                    "chunk {index} failed authentication (tampered, reordered, truncated, or wrong key)"
                ))
            })
            .map(|plain| &mut plain[..])
    }
}

/// Seals a small value (an object name, metadata) under the data key, bound to `context`
/// (e.g. the object's lookup hash) so that a sealed value cannot be moved to another row.
///
/// Format: version (1 byte) || random nonce (12) || ciphertext || tag (16). Random nonces
/// are safe here: values are few per key, far below GCM's 2^32 random-nonce bound.
pub fn seal_value(key: &DataKey, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let value_key = key.derive(VALUE_KDF_SALT, &[])?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.push(VALUE_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let body = 1 + NONCE_LEN;
    let tag = value_key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut out[body..],
        )
        .map_err(|_| Error::crypto("value encryption failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens a value sealed by [`seal_value`] with the same key and context.
pub fn open_value(key: &DataKey, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let Some((&VALUE_VERSION, rest)) = sealed.split_first() else {
        return Err(Error::crypto("sealed value has an unknown version"));
    };
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(Error::crypto("sealed value is too short"));
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| Error::crypto("sealed value has a bad nonce"))?;
    let value_key = key.derive(VALUE_KDF_SALT, &[])?;
    let mut buf = body.to_vec();
    let len = value_key
        .open_in_place(nonce, Aad::from(context), &mut buf)
        .map_err(|_| Error::crypto("sealed value failed authentication (wrong key or context)"))?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// HKDF-SHA256 from `secret` to an AES-256-GCM key for the purpose named by `salt` and
/// the object named by `info`.
pub(crate) fn derive_aes_key(secret: &[u8], salt: &[u8], info: &[&[u8]]) -> Result<LessSafeKey> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let okm = prk
        .expand(info, &AES_256_GCM)
        .map_err(|_| Error::crypto("key derivation failed"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

pub(crate) fn fill_random(out: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| Error::crypto("system randomness unavailable"))
}

fn check_chunk_size(chunk_size: u32) -> Result<()> {
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(Error::invalid_use(format!(
            "chunk size {chunk_size} is outside 1..={MAX_CHUNK_SIZE}"
        )));
    }
    Ok(())
}

fn chunk_nonce(index: u64) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

fn chunk_aad(header: &[u8; HEADER_LEN]) -> [u8; HEADER_LEN + 1] {
    let mut aad = [0u8; HEADER_LEN + 1];
    aad[..HEADER_LEN].copy_from_slice(header);
    aad
}

#[cfg(test)]
mod tests;
