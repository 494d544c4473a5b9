//! Fetching a blob's stored bytes from a region, for readers and copies alike: an exact
//! range, or the whole blob in batches.

use std::ops::Range;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::{READ_AHEAD, READ_BATCH};
use crate::error::{Error, Result};
use crate::layout::BlobPath;
use crate::region::RegionStore;

/// The stored size of a blob and a stream of its stored bytes in [`READ_BATCH`] pieces,
/// one piece read ahead.
pub(super) async fn stored_batches(
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
pub(super) async fn fetch_exact(
    region: &RegionStore,
    path: &BlobPath,
    range: Range<u64>,
) -> Result<Bytes> {
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
