//! Copying a blob's stored bytes between regions ([`copy_blob`]) and checksumming them
//! ([`checksum_of`]), neither of which needs the data key.

use bytes::Bytes;
use futures::stream::TryStreamExt;

use super::fetch::stored_batches;
use super::{MAX_PARTS_IN_FLIGHT, PART_SIZE, SINGLE_PUT_MAX};
use crate::error::{Error, Result};
use crate::folder::{self, Copied, Folder};
use crate::layout::BlobPath;
use crate::region::RegionStore;

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
    let copied = folder::bulk("(copy)", move || {
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
