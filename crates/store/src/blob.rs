//! The streaming data path: write a blob to every region of a placement, read it back (or a
//! range of it), copy it between regions, checksum it.
//!
//! Memory stays bounded whatever the object size: writers hold at most a few upload parts
//! per region (shared between regions, not copied), readers a few read batches.
//! Checksums are BLAKE3 over the *stored* bytes, so a copy can be verified without the
//! data key, and a migration never needs to decrypt.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::join_all;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::WriteMultipart;

use crate::crypto::{BlobDecoder, BlobEncoder, ChunkLayout, DataKey, HEADER_LEN, Mode};
use crate::error::{Error, Result};
use crate::folder::{self, Copied, Folder};
use crate::layout::BlobPath;
use crate::region::RegionStore;

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

/// Writes one blob to every region of a placement at once.
///
/// Plaintext is cut into chunks and sealed as it arrives; the stored bytes go to all
/// regions concurrently, sharing one buffer. Nothing is visible at the blob's path until
/// [`BlobWriter::finish`] succeeds in every region; if it fails in any, the copies that did
/// commit are deleted again, so a failed write leaves no blob behind (best effort: the
/// delete itself can fail, and `verify` reports blobs the catalog does not know).
///
/// Dropping a writer without `finish` aborts its multipart uploads.
pub struct BlobWriter {
    regions: Vec<RegionStore>,
    path: BlobPath,
    encoder: BlobEncoder,
    chunk_size: usize,
    /// Stored bytes not yet handed to the regions: sealed chunks, then, from
    /// `open_chunk`, the plaintext of the chunk being filled. Plaintext is gathered here
    /// and sealed in place, so the caller's bytes are copied exactly once. Sealed bytes are
    /// split off (not copied) when sent, and the allocation is reused once the regions are
    /// done with it.
    staged: BytesMut,
    /// Where the open chunk's plaintext starts in `staged`. A full chunk stays open until
    /// more data arrives, because only then is it known not to be the last.
    open_chunk: usize,
    hasher: blake3::Hasher,
    plain_size: u64,
    stored_size: u64,
    /// One multipart upload per region, index-aligned with `regions`; empty while the blob
    /// still fits a single put.
    uploads: Vec<WriteMultipart>,
    done: bool,
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("path", &self.path)
            .field(
                "regions",
                &self.regions.iter().map(RegionStore::id).collect::<Vec<_>>(),
            )
            .field("encoder", &self.encoder)
            .field("plain_size", &self.plain_size)
            .field("stored_size", &self.stored_size)
            .field("multipart", &!self.uploads.is_empty())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// A writer of the blob at `path` to every region in `regions`, encrypted under `key`
    /// (plain if `None`: benchmarks only) in chunks of `chunk_size` plaintext bytes.
    pub fn new(
        regions: Vec<RegionStore>,
        path: BlobPath,
        key: Option<&DataKey>,
        chunk_size: u32,
    ) -> Result<Self> {
        if regions.is_empty() {
            return Err(Error::invalid_use("a blob needs at least one region"));
        }
        let encoder = BlobEncoder::new(key, path.blob_id(), chunk_size)?;
        let chunk_size = usize::try_from(chunk_size)
            .map_err(|_| Error::invalid_use("chunk size does not fit in memory"))?;
        let header = encoder.header();
        let mut hasher = blake3::Hasher::new();
        hasher.update(header);
        let mut staged = BytesMut::with_capacity(HEADER_LEN + chunk_size + 16);
        staged.extend_from_slice(header);
        Ok(Self {
            regions,
            path,
            encoder,
            chunk_size,
            open_chunk: staged.len(),
            staged,
            hasher,
            plain_size: 0,
            stored_size: HEADER_LEN as u64,
            uploads: Vec::new(),
            done: false,
        })
    }

    /// Tells the writer how many plaintext bytes to expect (e.g. an S3 `Content-Length`),
    /// so it can size its buffers once instead of growing them. Only a hint.
    pub fn size_hint(&mut self, plain_len: u64) {
        let Ok(layout) = ChunkLayout::new(
            plain_len,
            u32::try_from(self.chunk_size).unwrap_or(u32::MAX),
            self.encoder.mode(),
        ) else {
            return;
        };
        let want = layout
            .stored_len()
            .min(SINGLE_PUT_MAX + self.stored_chunk_len());
        let want = usize::try_from(want).unwrap_or(PART_SIZE);
        self.staged.reserve(want.saturating_sub(self.staged.len()));
    }

    /// The blob's path.
    pub fn path(&self) -> &BlobPath {
        &self.path
    }

    /// Plaintext bytes accepted so far.
    pub fn plain_size(&self) -> u64 {
        self.plain_size
    }

    /// Accepts the next plaintext bytes. Full chunks are sealed now; once the blob outgrows
    /// a single put, stored bytes are streamed to the regions as parts fill, and this
    /// waits while too many parts are in flight.
    ///
    /// After an error the writer is unusable and its uploads are aborted.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.check_open()?;
        self.plain_size += data.len() as u64;
        let cs = self.chunk_size;
        while !data.is_empty() {
            let filled = self.staged.len() - self.open_chunk;
            if filled == cs {
                // More data follows, so the full open chunk is not the last one.
                if let Err(e) = self.seal_open_chunk(false) {
                    self.fail().await;
                    return Err(e);
                }
                continue;
            }
            let (head, rest) = data.split_at((cs - filled).min(data.len()));
            self.staged.extend_from_slice(head);
            data = rest;
            if self.needs_flush()
                && let Err(e) = self.flush().await
            {
                self.fail().await;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Seals the final chunk and commits the blob in every region.
    pub async fn finish(mut self) -> Result<WrittenBlob> {
        self.check_open()?;
        if let Err(e) = self.seal_open_chunk(true) {
            self.fail().await;
            return Err(e);
        }
        self.done = true;
        let written = WrittenBlob {
            stored_size: self.stored_size,
            plain_size: self.plain_size,
            checksum_hex: self.hasher.finalize().to_hex().to_string(),
        };
        let bytes = self.staged.split().freeze();
        let results: Vec<Result<()>> = if self.uploads.is_empty() {
            let path = &self.path;
            join_all(self.regions.iter().map(|r| r.put(path, bytes.clone()))).await
        } else {
            let location = self.path.location();
            let uploads = std::mem::take(&mut self.uploads);
            join_all(
                uploads
                    .into_iter()
                    .zip(&self.regions)
                    .map(|(mut upload, region)| {
                        if !bytes.is_empty() {
                            upload.put(bytes.clone());
                        }
                        let location = &location;
                        async move {
                            upload
                                .finish()
                                .await
                                .map(drop)
                                .map_err(|e| Error::from_store(region.id(), location, e))
                        }
                    }),
            )
            .await
        };
        drop(bytes);
        commit_or_undo(&self.regions, &self.path, results).await?;
        tracing::debug!(
            blob_id = self.path.blob_id(),
            regions = self.regions.len(),
            stored_size = written.stored_size,
            "blob written"
        );
        Ok(written)
    }

    /// Gives up on the blob: aborts the multipart uploads, so nothing is committed.
    pub async fn abort(mut self) -> Result<()> {
        self.done = true;
        let location = self.path.location();
        let uploads = std::mem::take(&mut self.uploads);
        let results = join_all(
            uploads
                .into_iter()
                .zip(&self.regions)
                .map(|(upload, region)| {
                    let location = &location;
                    async move {
                        upload
                            .abort()
                            .await
                            .map_err(|e| Error::from_store(region.id(), location, e))
                    }
                }),
        )
        .await;
        results.into_iter().collect()
    }

    fn check_open(&self) -> Result<()> {
        if self.done {
            Err(Error::invalid_use(
                "blob writer already finished, aborted or failed",
            ))
        } else {
            Ok(())
        }
    }

    fn stored_chunk_len(&self) -> u64 {
        self.chunk_size as u64 + self.encoder.mode().overhead_per_chunk()
    }

    /// Seals the open chunk in place, hashes its stored form and opens the next one.
    fn seal_open_chunk(&mut self, last: bool) -> Result<()> {
        let start = self.open_chunk;
        self.encoder.seal_in_place(&mut self.staged, start, last)?;
        let sealed = self.staged.get(start..).unwrap_or_default();
        self.hasher.update(sealed);
        self.stored_size += sealed.len() as u64;
        self.open_chunk = self.staged.len();
        Ok(())
    }

    /// Whether enough is sealed to send: more than fits a single put (which starts the
    /// multipart uploads), or a part's worth once they run.
    fn needs_flush(&self) -> bool {
        if self.uploads.is_empty() {
            self.open_chunk as u64 > SINGLE_PUT_MAX
        } else {
            self.open_chunk >= PART_SIZE
        }
    }

    /// Sends the staged bytes to every region's upload, starting the uploads on first use,
    /// then waits until each region has room for more.
    async fn flush(&mut self) -> Result<()> {
        if self.uploads.is_empty() {
            self.start_uploads().await?;
        }
        let bytes = self.staged.split_to(self.open_chunk).freeze();
        self.open_chunk = 0;
        // Room for the next part, so sealing does not grow the buffer chunk by chunk; the
        // old allocation is reclaimed here once the regions have uploaded from it.
        let next = PART_SIZE + usize::try_from(self.stored_chunk_len()).unwrap_or(0);
        self.staged.reserve(next);
        let location = self.path.location();
        let waits = self
            .uploads
            .iter_mut()
            .zip(&self.regions)
            .map(|(upload, region)| {
                upload.put(bytes.clone());
                let location = &location;
                async move {
                    upload
                        .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                        .await
                        .map_err(|e| Error::from_store(region.id(), location, e))
                }
            });
        join_all(waits).await.into_iter().collect()
    }

    /// Starts one multipart upload per region; all or none: if any region refuses, the
    /// uploads that did start are aborted.
    async fn start_uploads(&mut self) -> Result<()> {
        let path = &self.path;
        let started = join_all(
            self.regions
                .iter()
                .map(|r| r.put_multipart(path, PART_SIZE)),
        )
        .await;
        if started.iter().all(Result::is_ok) {
            self.uploads = started.into_iter().filter_map(Result::ok).collect();
            return Ok(());
        }
        let mut first_error = None;
        for (result, region) in started.into_iter().zip(&self.regions) {
            match result {
                Ok(upload) => {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(region = region.id(), error = %e, "could not abort blob upload");
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| Error::invalid_use("upload start failed")))
    }

    /// Marks the writer failed and aborts its uploads, logging what cannot be aborted.
    async fn fail(&mut self) {
        self.done = true;
        let uploads = std::mem::take(&mut self.uploads);
        for (upload, region) in uploads.into_iter().zip(&self.regions) {
            if let Err(e) = upload.abort().await {
                tracing::warn!(region = region.id(), error = %e, "could not abort blob upload");
            }
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        let uploads = std::mem::take(&mut self.uploads);
        if uploads.is_empty() {
            return;
        }
        // Abandoned mid-write: abort in the background if a runtime is there to run it.
        // Without one, the uploads' own destructors remove local staging files, and S3
        // lifecycle rules expire incomplete uploads.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for upload in uploads {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(error = %e, "could not abort abandoned blob upload");
                    }
                }
            });
        }
    }
}

/// If every region committed, succeeds; otherwise deletes the copies that did commit (a
/// blob must be in all regions of its placement or in none) and returns the first error.
async fn commit_or_undo(
    regions: &[RegionStore],
    path: &BlobPath,
    results: Vec<Result<()>>,
) -> Result<()> {
    if results.iter().all(Result::is_ok) {
        return Ok(());
    }
    let mut first_error = None;
    let mut committed = Vec::new();
    for (region, result) in regions.iter().zip(results) {
        match result {
            Ok(()) => committed.push(region),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    for region in committed {
        if let Err(e) = region.delete(path).await {
            tracing::warn!(
                region = region.id(),
                blob_id = path.blob_id(),
                error = %e,
                "could not remove the copy of a failed blob write"
            );
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reads a blob's plaintext, or the `range` of it, from one region.
///
/// Only the chunks the range covers are fetched, in batches of about [`READ_BATCH`]
/// stored bytes with one batch read ahead, so memory stays bounded for any object size.
/// Each batch is decrypted in place; the pieces yielded are slices of it, trimmed to the
/// range. `plain_len` comes from the catalog: the chunk holding the object's end is
/// opened as the final one, so a truncated blob fails authentication.
///
/// The header is fetched first (with the first chunks, when the range starts near the
/// beginning, so a small object costs one request). Errors surface in the stream as
/// [`Error::Corrupt`] for bad data and [`Error::ObjectStore`] for I/O.
pub async fn read_blob(
    region: &RegionStore,
    path: &BlobPath,
    key: Option<&DataKey>,
    plain_len: u64,
    range: Option<Range<u64>>,
) -> Result<PlainStream> {
    let range = range.unwrap_or(0..plain_len);
    if range.start > range.end || range.end > plain_len {
        return Err(Error::InvalidRange {
            start: range.start,
            end: range.end,
            len: plain_len,
        });
    }
    if range.is_empty() && plain_len > 0 {
        return Ok(stream::empty().boxed());
    }

    // Guess the layout of a default blob to fetch header and first chunks together; if
    // the blob was written with another chunk size, the rest is simply fetched below.
    let first_end = if range.start <= SPECULATIVE_READ {
        ChunkLayout::new(
            plain_len,
            crate::crypto::DEFAULT_CHUNK_SIZE,
            Mode::Aes256Gcm,
        )?
        .span(range.clone())?
        .stored
        .end
        .min(READ_BATCH)
        .max(HEADER_LEN as u64)
    } else {
        HEADER_LEN as u64
    };
    let mut first = region.get_range(path, 0..first_end).await?;
    let decoder =
        BlobDecoder::new(key, path.blob_id(), &first).map_err(|e| in_region(e, region, path))?;
    let layout = decoder.layout(plain_len)?;
    let span = layout.span(range.clone())?;

    // Chunks the first response already holds whole.
    let got = first.len() as u64;
    let mut ready_end = span.first_chunk;
    while ready_end <= span.last_chunk && layout.stored_range(ready_end).end <= got {
        ready_end += 1;
    }
    let ready = if ready_end > span.first_chunk {
        // Trim the response itself rather than slicing it, so that it stays the only
        // handle on its buffer and can be decrypted in place without a copy.
        first.truncate(to_usize(layout.stored_range(ready_end - 1).end)?);
        first.advance(to_usize(layout.stored_range(span.first_chunk).start)?);
        Some(Batch {
            chunks: span.first_chunk..ready_end,
            ready: Some(into_mut(first)),
        })
    } else {
        None
    };

    let per_batch = (READ_BATCH
        / (u64::from(decoder.chunk_size()) + decoder.mode().overhead_per_chunk()))
    .max(1);
    let last = span.last_chunk;
    let fetched = (ready_end..=last)
        .step_by(usize::try_from(per_batch).unwrap_or(usize::MAX))
        .map(move |start| Batch {
            chunks: start..(start + per_batch).min(last + 1),
            ready: None,
        });

    let ctx = Arc::new(ReadContext {
        region: region.clone(),
        path: path.clone(),
        decoder,
        layout,
        range,
    });
    Ok(stream::iter(ready.into_iter().chain(fetched))
        .map(move |batch| {
            let ctx = Arc::clone(&ctx);
            async move { ctx.load_and_open(batch).await }
        })
        .buffered(READ_AHEAD)
        .map_ok(|pieces| stream::iter(pieces.into_iter().map(Ok)))
        .try_flatten()
        .boxed())
}

/// Consecutive chunks read together.
struct Batch {
    chunks: Range<u64>,
    /// Their stored bytes, if already fetched.
    ready: Option<BytesMut>,
}

struct ReadContext {
    region: RegionStore,
    path: BlobPath,
    decoder: BlobDecoder,
    layout: ChunkLayout,
    range: Range<u64>,
}

impl ReadContext {
    async fn load_and_open(&self, batch: Batch) -> Result<Vec<Bytes>> {
        let Range { start, end } = batch.chunks;
        let mut buf = match batch.ready {
            Some(buf) => buf,
            None => {
                let stored =
                    self.layout.stored_range(start).start..self.layout.stored_range(end - 1).end;
                into_mut(fetch_exact(&self.region, &self.path, stored).await?)
            }
        };
        let mut pieces = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        for index in start..end {
            let stored = self.layout.stored_range(index);
            let mut chunk = buf.split_to(to_usize(stored.end - stored.start)?.min(buf.len()));
            let plain_len = self
                .decoder
                .open_chunk(index, &mut chunk, self.layout.is_last(index))
                .map_err(|e| in_region(e, &self.region, &self.path))?
                .len();
            chunk.truncate(plain_len);
            let plain = self.layout.plain_range(index);
            let lo = self.range.start.max(plain.start) - plain.start;
            let hi = (self.range.end.min(plain.end) - plain.start).max(lo);
            if hi > lo {
                pieces.push(chunk.freeze().slice(to_usize(lo)?..to_usize(hi)?));
            }
        }
        Ok(pieces)
    }
}

/// Copies a blob's stored bytes from one region to another, without decrypting.
///
/// What is read must hash to `expected_checksum` (the catalog's) or nothing is left in
/// `to`: a corrupt source must not spread. After writing, the destination's size is
/// checked, and for blobs up to [`SINGLE_PUT_MAX`] its bytes are read back and hashed too;
/// on a mismatch the bad copy is deleted and [`Error::Corrupt`] returned. Large blobs
/// stream through a multipart upload that is only completed once the source hash matched.
/// Between two local folders (the destination unsynced, see [`RegionStore::deferred`])
/// the copy is staged under a name listings hide and checked, whatever its size, before
/// it takes the blob's name: written with direct I/O from the very buffer that was hashed
/// where the file system allows it, else copied in the kernel and read back and hashed.
/// Returns the stored size.
pub async fn copy_blob(
    from: &RegionStore,
    to: &RegionStore,
    path: &BlobPath,
    expected_checksum: &str,
) -> Result<u64> {
    if from.id() == to.id() {
        // Nothing to copy; still prove the copy is good, as the caller expects.
        let (size, checksum) = checksum_of(from, path).await?;
        check_sum(&checksum, expected_checksum, from, path, "holds")?;
        return Ok(size);
    }
    if let (Some(src), Some(dst)) = (from.folder(), to.unsynced_folder()) {
        return copy_between_folders(from, to, (src, dst), path, expected_checksum).await;
    }
    let (size, mut batches) = stored_batches(from, path).await?;
    let mut hasher = blake3::Hasher::new();

    if size <= SINGLE_PUT_MAX {
        let mut parts = Vec::new();
        while let Some(part) = batches.try_next().await? {
            hasher.update(&part);
            parts.push(part);
        }
        check_sum(
            &hasher.finalize().to_hex(),
            expected_checksum,
            from,
            path,
            "holds",
        )?;
        let bytes = match <[Bytes; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => Bytes::from(parts.concat()),
        };
        to.put(path, bytes.clone()).await?;
        // Reading back the bytes that hashed to the expected checksum
        // proves the copy as well as hashing it again would.
        let verified = match to.get(path).await {
            Ok(back) if back == bytes => Ok(()),
            Ok(back) if back.len() as u64 == size => Err(sum_mismatch(
                &blake3::hash(&back).to_hex(),
                expected_checksum,
                to,
                path,
                "received",
            )),
            Ok(back) => Err(size_mismatch(to, path, back.len() as u64, size)),
            Err(e) => Err(e),
        };
        return undo_on_error(to, path, verified.map(|()| size)).await;
    }

    let location = path.location();
    let store_err = |e| Error::from_store(to.id(), &location, e);
    let mut upload = to.put_multipart(path, PART_SIZE).await?;
    let streamed: Result<()> = async {
        while let Some(part) = batches.try_next().await? {
            hasher.update(&part);
            upload.put(part);
            upload
                .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                .await
                .map_err(store_err)?;
        }
        check_sum(
            &hasher.finalize().to_hex(),
            expected_checksum,
            from,
            path,
            "holds",
        )
    }
    .await;
    if let Err(e) = streamed {
        if let Err(abort) = upload.abort().await {
            tracing::warn!(region = to.id(), error = %abort, "could not abort blob copy upload");
        }
        return Err(e);
    }
    upload.finish().await.map_err(store_err)?;
    let verified = match to.head(path).await? {
        Some(got) if got == size => Ok(size),
        Some(got) => Err(size_mismatch(to, path, got, size)),
        None => Err(Error::corrupt(format!(
            "copy of {path} vanished from region {} after writing",
            to.id()
        ))),
    };
    undo_on_error(to, path, verified).await
}

/// [`copy_blob`] from a local folder into an unsynced local folder, in one
/// blocking call (see `folder`): the same checks, the same files, any size.
async fn copy_between_folders(
    from: &RegionStore,
    to: &RegionStore,
    (src, dst): (&Folder, &Folder),
    path: &BlobPath,
    expected_checksum: &str,
) -> Result<u64> {
    let location = path.location();
    let src = src
        .file(&location)
        .map_err(|e| Error::from_store(from.id(), &location, e))?;
    let dst = dst
        .file(&location)
        .map_err(|e| Error::from_store(to.id(), &location, e))?;
    let expected = expected_checksum.to_owned();
    let copied = folder::blocking("(copy)", move || {
        folder::copy_file(&src, &dst, &expected)
            .map_err(|(path, source)| Error::Io { path, source })
    })
    .await?;
    match copied {
        Copied::Done(size) => Ok(size),
        Copied::Missing => Err(Error::NotFound {
            region: from.id().to_owned(),
            path: path.to_string(),
        }),
        Copied::SourceSum(actual) => Err(sum_mismatch(
            &actual,
            expected_checksum,
            from,
            path,
            "holds",
        )),
        Copied::ReceivedSum(actual) => Err(sum_mismatch(
            &actual,
            expected_checksum,
            to,
            path,
            "received",
        )),
    }
}

/// The stored size and BLAKE3 (lowercase hex) of a blob, read in bounded memory.
pub async fn checksum_of(region: &RegionStore, path: &BlobPath) -> Result<(u64, String)> {
    let (size, mut batches) = stored_batches(region, path).await?;
    let mut hasher = blake3::Hasher::new();
    while let Some(part) = batches.try_next().await? {
        hasher.update(&part);
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}

/// The stored size of a blob and a stream of its stored bytes in [`READ_BATCH`] pieces,
/// one piece read ahead.
async fn stored_batches(
    region: &RegionStore,
    path: &BlobPath,
) -> Result<(u64, BoxStream<'static, Result<Bytes>>)> {
    let size = region.head(path).await?.ok_or_else(|| Error::NotFound {
        region: region.id().to_owned(),
        path: path.to_string(),
    })?;
    let (region, path) = (region.clone(), path.clone());
    let batches =
        stream::iter((0..size).step_by(usize::try_from(READ_BATCH).unwrap_or(usize::MAX)))
            .map(move |start| {
                let (region, path) = (region.clone(), path.clone());
                async move {
                    let end = (start + READ_BATCH).min(size);
                    fetch_exact(&region, &path, start..end).await
                }
            })
            .buffered(READ_AHEAD)
            .boxed();
    Ok((size, batches))
}

/// Fetches exactly the stored bytes `range` of a blob. When the blob is too short for that
/// (a short response, or a store error that a `head` explains), the error is
/// [`Error::Corrupt`]: a truncated blob is a bad copy, not an outage to retry.
async fn fetch_exact(region: &RegionStore, path: &BlobPath, range: Range<u64>) -> Result<Bytes> {
    let end = range.end;
    let want = range.end - range.start;
    let short = |size: u64| {
        Error::corrupt(format!(
            "blob {path} in region {} ends at byte {size}, before byte {end} that its layout needs",
            region.id()
        ))
    };
    match region.get_range(path, range.clone()).await {
        Ok(bytes) if bytes.len() as u64 == want => Ok(bytes),
        Ok(bytes) => Err(short(range.start + bytes.len() as u64)),
        Err(error @ Error::ObjectStore { .. }) => match region.head(path).await {
            Ok(Some(size)) if size < end => Err(short(size)),
            _ => Err(error),
        },
        Err(error) => Err(error),
    }
}

fn check_sum(
    actual: &str,
    expected: &str,
    region: &RegionStore,
    path: &BlobPath,
    verb: &str,
) -> Result<()> {
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(sum_mismatch(actual, expected, region, path, verb))
    }
}

fn sum_mismatch(
    actual: &str,
    expected: &str,
    region: &RegionStore,
    path: &BlobPath,
    verb: &str,
) -> Error {
    Error::corrupt(format!(
        "region {} {verb} blob {path} with checksum {actual}, expected {expected}",
        region.id()
    ))
}

fn size_mismatch(region: &RegionStore, path: &BlobPath, got: u64, want: u64) -> Error {
    Error::corrupt(format!(
        "region {} holds {got} bytes of blob {path}, expected {want}",
        region.id()
    ))
}

/// Deletes the destination copy if `result` is an error, so a bad copy never stays.
async fn undo_on_error<T>(to: &RegionStore, path: &BlobPath, result: Result<T>) -> Result<T> {
    if result.is_err()
        && let Err(e) = to.delete(path).await
    {
        tracing::warn!(
            region = to.id(),
            blob_id = path.blob_id(),
            error = %e,
            "could not delete a bad copy"
        );
    }
    result
}

/// Names the region and blob in a decoding error, which only knew about bytes.
fn in_region(error: Error, region: &RegionStore, path: &BlobPath) -> Error {
    match error {
        Error::Corrupt { reason } => {
            Error::corrupt(format!("blob {path} in region {}: {reason}", region.id()))
        }
        other => other,
    }
}

/// Takes ownership of fetched bytes for in-place decryption; copies only when the store
/// kept a reference (the in-memory store does, file and HTTP reads do not).
fn into_mut(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

fn to_usize(n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::invalid_use("offset does not fit in memory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path as FsPath;

    const TOKEN: &str = "0123456789abcdef";

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        }
    }

    async fn collect(stream: PlainStream) -> Result<Vec<u8>> {
        let pieces: Vec<Bytes> = stream.try_collect().await?;
        Ok(pieces.concat())
    }

    async fn write(
        regions: &[RegionStore],
        key: Option<&DataKey>,
        plain: &[u8],
        chunk_size: u32,
        write_size: usize,
    ) -> Result<(BlobPath, WrittenBlob)> {
        let path = BlobPath::new_random(TOKEN, "docs")?;
        let mut writer = BlobWriter::new(regions.to_vec(), path.clone(), key, chunk_size)?;
        for piece in plain.chunks(write_size.max(1)) {
            writer.write(piece).await?;
        }
        Ok((path, writer.finish().await?))
    }

    #[tokio::test]
    async fn small_blobs_round_trip_through_memory_regions() -> Result<()> {
        let regions = vec![
            RegionStore::open("a", "memory://", FsPath::new("/"))?,
            RegionStore::open("b", "memory://", FsPath::new("/"))?,
        ];
        let key = DataKey::generate()?;
        for len in [0usize, 1, 100, 4096, 65536, 65537, 200_000] {
            let plain = data(len);
            for key in [Some(&key), None] {
                let (path, written) = write(&regions, key, &plain, 65536, 3000).await?;
                let mode = if key.is_some() {
                    Mode::Aes256Gcm
                } else {
                    Mode::Plain
                };
                assert_eq!(
                    written.stored_size,
                    crate::crypto::stored_len(len as u64, 65536, mode)?
                );
                assert_eq!(written.plain_size, len as u64);
                for region in &regions {
                    assert_eq!(
                        checksum_of(region, &path).await?,
                        (written.stored_size, written.checksum_hex.clone())
                    );
                    let back =
                        collect(read_blob(region, &path, key, len as u64, None).await?).await?;
                    assert_eq!(back, plain);
                }
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_region_leaves_no_copy_anywhere() -> Result<()> {
        let ok = RegionStore::open("ok", "memory://", FsPath::new("/"))?;
        let dir = std::env::temp_dir().join(format!(
            "domicile-store-ro-{}",
            crate::layout::new_blob_id()?
        ));
        let bad = RegionStore::open_with(
            "bad",
            &format!("file://{}", dir.display()),
            FsPath::new("/"),
            &crate::region::RegionOptions {
                fsync: false,
                ..Default::default()
            },
        )?;
        // A file where the fan-out folder should be makes every write to `bad` fail.
        std::fs::create_dir_all(dir.join("v1")).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        std::fs::write(dir.join("v1").join(&TOKEN[..2]), b"not a folder").map_err(|source| {
            Error::Io {
                path: dir.clone(),
                source,
            }
        })?;
        let key = DataKey::generate()?;
        let result = write(&[ok.clone(), bad], Some(&key), &data(1000), 256, 100).await;
        assert!(result.is_err());
        assert!(ok.list(None).await?.blobs.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[tokio::test]
    async fn misuse_is_an_error_not_a_panic() -> Result<()> {
        let region = RegionStore::open("a", "memory://", FsPath::new("/"))?;
        let path = BlobPath::new_random(TOKEN, "docs")?;
        assert!(BlobWriter::new(vec![], path.clone(), None, 64).is_err());
        assert!(BlobWriter::new(vec![region.clone()], path.clone(), None, 0).is_err());
        let (path, _) = write(std::slice::from_ref(&region), None, b"abc", 64, 1).await?;
        assert!(matches!(
            read_blob(&region, &path, None, 3, Some(2..4)).await,
            Err(Error::InvalidRange { .. })
        ));
        assert_eq!(
            collect(read_blob(&region, &path, None, 3, Some(1..1)).await?).await?,
            b""
        );
        let key = DataKey::generate()?;
        assert!(matches!(
            read_blob(&region, &path, Some(&key), 3, None).await,
            Err(Error::Crypto { .. })
        ));
        // A wrong plaintext length is caught by the final-chunk flag or a short read.
        assert!(
            collect(read_blob(&region, &path, None, 2, None).await?)
                .await
                .is_ok_and(|b| b == b"ab")
        );
        let (enc, _) = write(std::slice::from_ref(&region), Some(&key), b"abcdef", 4, 1).await?;
        assert!(
            collect(read_blob(&region, &enc, Some(&key), 4, None).await?)
                .await
                .is_err()
        );
        assert!(
            collect(read_blob(&region, &enc, Some(&key), 7, None).await?)
                .await
                .is_err()
        );
        Ok(())
    }

    /// The engine runs these on spawned tasks and inside HTTP handlers.
    #[test]
    fn data_path_futures_are_send() -> Result<()> {
        fn is_send<T: Send>(_: &T) {}
        let region = RegionStore::open("a", "memory://", FsPath::new("/"))?;
        let path = BlobPath::new_random(TOKEN, "docs")?;
        let mut writer = BlobWriter::new(vec![region.clone()], path.clone(), None, 64)?;
        is_send(&writer.write(b"x"));
        is_send(&writer.finish());
        is_send(&read_blob(&region, &path, None, 0, None));
        is_send(&copy_blob(&region, &region, &path, ""));
        is_send(&checksum_of(&region, &path));
        Ok(())
    }

    #[tokio::test]
    async fn a_truncated_blob_is_corrupt_not_an_outage() -> Result<()> {
        let region = RegionStore::open("a", "memory://", FsPath::new("/"))?;
        let key = DataKey::generate()?;
        let (path, written) = write(
            std::slice::from_ref(&region),
            Some(&key),
            b"abcdefghij",
            4,
            3,
        )
        .await?;
        let stored = region.get(&path).await?;
        assert_eq!(stored.len() as u64, written.stored_size);
        let layout = ChunkLayout::new(10, 4, Mode::Aes256Gcm)?;
        for cut in [layout.stored_range(2).start, written.stored_size - 1] {
            region.put(&path, stored.slice(..to_usize(cut)?)).await?;
            let whole = collect(read_blob(&region, &path, Some(&key), 10, None).await?).await;
            assert!(matches!(whole, Err(Error::Corrupt { .. })), "{whole:?}");
            let head = read_blob(&region, &path, Some(&key), 10, Some(0..8)).await?;
            assert_eq!(collect(head).await?, b"abcdefgh");
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn range_reads_through_a_region_equal_the_slice(
            len in 0usize..3000,
            chunk_size in 1u32..300,
            cuts in proptest::collection::vec((0usize..=3000, 0usize..=3000), 1..8),
            write_size in 1usize..700,
        ) {
            let rt = runtime();
            rt.block_on(async {
                let region = RegionStore::open("a", "memory://", FsPath::new("/"))?;
                let key = DataKey::generate()?;
                let plain = data(len);
                let (path, _) = write(std::slice::from_ref(&region), Some(&key), &plain, chunk_size, write_size).await?;
                for (a, b) in cuts {
                    let (a, b) = (a.min(len), b.min(len));
                    let (start, end) = (a.min(b), a.max(b));
                    let got = collect(
                        read_blob(&region, &path, Some(&key), len as u64, Some(start as u64..end as u64)).await?,
                    )
                    .await?;
                    prop_assert_eq!(got, plain[start..end].to_vec());
                }
                Ok(())
            })?;
        }
    }
}
