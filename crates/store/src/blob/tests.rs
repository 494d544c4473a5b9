use std::path::Path as FsPath;

use bytes::Bytes;
use futures::stream::TryStreamExt;
use proptest::prelude::*;

use super::read::to_usize;
use super::*;
use crate::crypto::{ChunkLayout, DataKey, Mode};
use crate::error::{Error, Result};
use crate::layout::BlobPath;
use crate::region::RegionStore;

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
                let back = collect(read_blob(region, &path, key, len as u64, None).await?).await?;
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
