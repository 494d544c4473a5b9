//! Reading a blob's plaintext, whole or a range of it: [`read_blob`], which fetches and
//! decrypts only the chunks the range covers.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::fetch::fetch_exact;
use super::{PlainStream, READ_AHEAD, READ_BATCH, SPECULATIVE_READ};
use crate::crypto::{BlobDecoder, ChunkLayout, DataKey, HEADER_LEN, Mode};
use crate::error::{Error, Result};
use crate::layout::BlobPath;
use crate::region::RegionStore;

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

pub(super) fn to_usize(n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| Error::invalid_use("offset does not fit in memory"))
}
