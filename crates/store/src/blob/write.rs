//! Writing a blob to every region of a placement at once: [`BlobWriter`], which commits
//! in all regions or in none.

use std::fmt;

use bytes::BytesMut;
use futures::future::join_all;
use object_store::WriteMultipart;

use super::{MAX_PARTS_IN_FLIGHT, PART_SIZE, SINGLE_PUT_MAX, WrittenBlob};
use crate::crypto::{BlobEncoder, ChunkLayout, DataKey, HEADER_LEN};
use crate::error::{Error, Result};
use crate::layout::BlobPath;
use crate::region::RegionStore;

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
