//! Integration tests: real local-folder regions in a temporary folder, blobs large enough
//! to take the multipart path, and key files on disk; and `s3://` regions against a real
//! S3-compatible server (`moto_server`, which the test starts: it fails, never skips,
//! when moto is not installed). Network keyrings: `aws-kms://` against moto's KMS,
//! `vault://` against the in-repo Transit fake, and against a real Vault or OpenBao only
//! when `DOMICILE_TEST_VAULT_ADDR` is set (the one test that skips, saying so).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use domicile_store::crypto::{DEFAULT_CHUNK_SIZE, HEADER_LEN};
use domicile_store::keyring::{MASTER_KEY_FILE, WRAPPED_LEN};
use domicile_store::layout::prefix_for;
use domicile_store::{
    BlobPath, BlobWriter, DataKey, Error, KeyContext, Keyring, KeyringOptions, RegionOptions,
    RegionStore, Result, WrittenBlob, checksum_of, copy_blob, read_blob,
};
use domicile_test_support::moto::Moto;
use domicile_test_support::vault::FakeVault;

const MIB: usize = 1024 * 1024;
const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const CTX: KeyContext<'static> = KeyContext {
    token: TOKEN,
    category: "profile",
};

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    let mut state = u64::from(seed) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        match tempfile::tempdir() {
            Ok(dir) => Self { dir },
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    fn base(&self) -> &FsPath {
        self.dir.path()
    }

    /// A local region at `file://regions/{id}`, relative to the fixture's folder. No fsync:
    /// the tests do not pull the plug, and fsync under load only makes them slow.
    fn region(&self, id: &str) -> Result<RegionStore> {
        RegionStore::open_with(
            id,
            &format!("file://regions/{id}"),
            self.base(),
            &RegionOptions {
                fsync: false,
                ..RegionOptions::default()
            },
        )
    }

    fn file_of(&self, region: &str, path: &BlobPath) -> PathBuf {
        self.base()
            .join("regions")
            .join(region)
            .join(path.to_string())
    }
}

async fn write_blob(
    regions: &[RegionStore],
    key: &DataKey,
    plain: &[u8],
    piece: usize,
) -> Result<(BlobPath, WrittenBlob)> {
    let path = BlobPath::new_random(TOKEN, "media")?;
    let mut writer = BlobWriter::new(
        regions.to_vec(),
        path.clone(),
        Some(key),
        DEFAULT_CHUNK_SIZE,
    )?;
    for part in plain.chunks(piece) {
        writer.write(part).await?;
    }
    Ok((path, writer.finish().await?))
}

async fn read_all(
    region: &RegionStore,
    path: &BlobPath,
    key: &DataKey,
    len: usize,
    range: Option<std::ops::Range<u64>>,
) -> Result<Vec<u8>> {
    let pieces: Vec<Bytes> = read_blob(region, path, Some(key), len as u64, range)
        .await?
        .try_collect()
        .await?;
    Ok(pieces.concat())
}

fn flip_byte(file: &FsPath, at: usize) {
    let mut bytes = std::fs::read(file).unwrap_or_else(|e| panic!("read {file:?}: {e}"));
    bytes[at] ^= 0x01;
    std::fs::write(file, bytes).unwrap_or_else(|e| panic!("write {file:?}: {e}"));
}

/// Files (including multipart staging files) anywhere under `dir`.
fn files_under(dir: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            // The entry's own type: a folder removed meanwhile is never
            // taken for a file.
            let Ok(ty) = entry.file_type() else { continue };
            let p = entry.path();
            if ty.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_written_to_two_regions_read_back_whole_and_by_range() -> Result<()> {
    let fx = Fixture::new();
    let regions = vec![fx.region("in-west")?, fx.region("sg-1")?];
    let key = DataKey::generate()?;

    // 5 MiB takes the single-put path, 20 MiB the multipart path; odd write sizes make
    // writes straddle chunk boundaries.
    let small = plaintext(5 * MIB, 1);
    let large = plaintext(20 * MIB, 2);
    let (small_path, small_written) = write_blob(&regions, &key, &small, 100_003).await?;
    let (large_path, large_written) = write_blob(&regions, &key, &large, MIB + 7).await?;
    assert_eq!(small_written.plain_size, small.len() as u64);
    assert_eq!(large_written.plain_size, large.len() as u64);

    for region in &regions {
        for (path, written, plain) in [
            (&small_path, &small_written, &small),
            (&large_path, &large_written, &large),
        ] {
            let file = fx.file_of(region.id(), path);
            let on_disk = std::fs::read(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
            assert_eq!(on_disk.len() as u64, written.stored_size);
            assert_eq!(&on_disk[..4], b"DMCB");
            assert_ne!(
                &on_disk[HEADER_LEN..HEADER_LEN + 64],
                &plain[..64],
                "stored in clear"
            );
            assert_eq!(
                blake3::hash(&on_disk).to_hex().as_str(),
                written.checksum_hex
            );
            assert_eq!(
                checksum_of(region, path).await?,
                (written.stored_size, written.checksum_hex.clone())
            );
            assert!(read_all(region, path, &key, plain.len(), None).await? == **plain);

            let len = plain.len() as u64;
            let batch = 8 * MIB as u64;
            let ranges = [
                0..1,
                0..65536,
                65535..65537,
                123_456..2_345_678,
                len - 1..len,
                len - 100_000..len,
                (batch - 5).min(len - 5)..(batch + 5).min(len),
                len / 2..len / 2,
                0..len,
            ];
            for range in ranges {
                let got = read_all(region, path, &key, plain.len(), Some(range.clone())).await?;
                assert!(
                    got == plain[range.start as usize..range.end as usize],
                    "range {range:?} of {len}"
                );
            }
        }
    }

    // No staging files are left behind by the multipart uploads.
    for region in &regions {
        let files = files_under(&fx.base().join("regions").join(region.id()));
        assert_eq!(files.len(), 2, "{files:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_checksum_verified_and_corruption_is_caught() -> Result<()> {
    let fx = Fixture::new();
    let source = fx.region("cn-north")?;
    let key = DataKey::generate()?;
    let small = plaintext(5 * MIB, 3);
    let large = plaintext(20 * MIB, 4);
    let (small_path, small_written) =
        write_blob(std::slice::from_ref(&source), &key, &small, MIB).await?;
    let (large_path, large_written) =
        write_blob(std::slice::from_ref(&source), &key, &large, MIB).await?;

    // Good copies, then reads from the destination.
    let dest = fx.region("in-south")?;
    for (path, written, plain) in [
        (&small_path, &small_written, &small),
        (&large_path, &large_written, &large),
    ] {
        let size = copy_blob(&source, &dest, path, &written.checksum_hex).await?;
        assert_eq!(size, written.stored_size);
        assert_eq!(
            checksum_of(&dest, path).await?,
            (written.stored_size, written.checksum_hex.clone())
        );
        assert!(read_all(&dest, path, &key, plain.len(), None).await? == **plain);
        // Copying again is harmless, and so is copying a region onto itself.
        copy_blob(&source, &dest, path, &written.checksum_hex).await?;
        copy_blob(&dest, &dest, path, &written.checksum_hex).await?;
    }

    // The wrong expected checksum: nothing is written.
    let fresh = fx.region("eu-1")?;
    let err = copy_blob(&source, &fresh, &small_path, &"0".repeat(64)).await;
    assert!(matches!(err, Err(Error::Corrupt { .. })), "{err:?}");
    assert_eq!(fresh.head(&small_path).await?, None);

    // A corrupted source (one flipped bit on disk) is refused for both sizes, and the
    // destination keeps no copy and no staging file.
    flip_byte(&fx.file_of("cn-north", &small_path), 1000);
    flip_byte(&fx.file_of("cn-north", &large_path), 15 * MIB);
    for (path, written) in [(&small_path, &small_written), (&large_path, &large_written)] {
        let err = copy_blob(&source, &fresh, path, &written.checksum_hex).await;
        assert!(matches!(err, Err(Error::Corrupt { .. })), "{err:?}");
        assert_eq!(fresh.head(path).await?, None);
    }
    assert!(files_under(&fx.base().join("regions/eu-1")).is_empty());

    // Reading the corrupted blobs fails too, in the chunk that was hit.
    let err = read_all(&source, &small_path, &key, small.len(), None).await;
    assert!(matches!(err, Err(Error::Corrupt { .. })), "{err:?}");
    let untouched = read_all(&source, &large_path, &key, large.len(), Some(0..MIB as u64)).await?;
    assert!(untouched == large[..MIB]);
    let err = read_all(&source, &large_path, &key, large.len(), None).await;
    assert!(matches!(err, Err(Error::Corrupt { .. })), "{err:?}");

    // A destination that corrupts what it stores: the copy is caught and deleted.
    let good = fx.region("sg-1")?;
    let (path, written) = write_blob(
        std::slice::from_ref(&good),
        &key,
        &plaintext(300_000, 5),
        65536,
    )
    .await?;
    let inner = fx.region("us-east")?;
    let flipping = RegionStore::from_object_store(
        "us-east",
        "file://regions/us-east",
        Arc::new(FlipOnPut(Arc::clone(inner.object_store()))),
    );
    let err = copy_blob(&good, &flipping, &path, &written.checksum_hex).await;
    assert!(matches!(err, Err(Error::Corrupt { .. })), "{err:?}");
    assert_eq!(
        inner.head(&path).await?,
        None,
        "the bad copy must be deleted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_and_idempotent_delete() -> Result<()> {
    let fx = Fixture::new();
    let region = fx.region("in-west")?;
    let key = DataKey::generate()?;
    let (a, wa) = write_blob(std::slice::from_ref(&region), &key, b"first", 5).await?;
    let (b, wb) = write_blob(
        std::slice::from_ref(&region),
        &key,
        &plaintext(70_000, 6),
        1000,
    )
    .await?;
    let other = BlobPath::new_random("ffffffffffffffff", "media")?;
    region
        .put(&other, Bytes::from_static(b"someone else"))
        .await?;
    std::fs::write(fx.base().join("regions/in-west/notes.txt"), b"stray")
        .unwrap_or_else(|e| panic!("{e}"));

    let mut listing = region.list(None).await?;
    listing.blobs.sort();
    let mut expected = vec![
        (a.clone(), wa.stored_size),
        (b.clone(), wb.stored_size),
        (other.clone(), 12),
    ];
    expected.sort();
    assert_eq!(listing.blobs, expected);
    assert_eq!(listing.foreign, vec![(Path::from("notes.txt"), 5)]);

    let mine = region.list(Some(&prefix_for(TOKEN)?)).await?;
    assert_eq!(mine.blobs.len(), 2);
    assert!(mine.foreign.is_empty());

    for path in [&a, &b] {
        region.delete(path).await?;
        region.delete(path).await?;
        assert_eq!(region.head(path).await?, None);
    }
    assert!(
        region
            .list(Some(&prefix_for(TOKEN)?))
            .await?
            .blobs
            .is_empty()
    );
    // Purged subjects leave no empty folders behind.
    assert!(
        !fx.base()
            .join("regions/in-west/v1")
            .join(&TOKEN[..2])
            .exists()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_writer_commits_nothing() -> Result<()> {
    let fx = Fixture::new();
    let regions = vec![fx.region("a")?, fx.region("b")?];
    let key = DataKey::generate()?;
    let path = BlobPath::new_random(TOKEN, "media")?;

    let mut writer = BlobWriter::new(
        regions.clone(),
        path.clone(),
        Some(&key),
        DEFAULT_CHUNK_SIZE,
    )?;
    writer.write(&plaintext(12 * MIB, 7)).await?;
    drop(writer);
    let mut aborted = BlobWriter::new(
        regions.clone(),
        BlobPath::new_random(TOKEN, "media")?,
        Some(&key),
        DEFAULT_CHUNK_SIZE,
    )?;
    aborted.write(&plaintext(12 * MIB, 8)).await?;
    aborted.abort().await?;

    // The drop's abort runs in the background.
    for _ in 0..100 {
        if files_under(&fx.base().join("regions")).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(files_under(&fx.base().join("regions")).is_empty());
    for region in &regions {
        assert_eq!(region.head(&path).await?, None);
    }
    Ok(())
}

#[tokio::test]
async fn keyring_files_are_private_and_loose_ones_are_refused() -> Result<()> {
    let fx = Fixture::new();
    let ring = Keyring::open("in-kms", "file://keys/in-kms", fx.base())?;
    let dir = fx.base().join("keys/in-kms");
    let file = dir.join(MASTER_KEY_FILE);
    let mode = |p: &FsPath| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{p:?}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(std::fs::read(&file).map(|k| k.len()).ok(), Some(32));
    assert_eq!(ring.key_file().as_deref(), Some(file.as_path()));

    let dek = DataKey::generate()?;
    let wrapped = ring.wrap(&dek, &CTX).await?;
    assert_eq!(ring.unwrap(&wrapped, &CTX).await?, dek);

    // Reopening uses the same master key; another custodian or context does not unwrap.
    let reopened = Keyring::open("in-kms", "file://keys/in-kms", fx.base())?;
    assert_eq!(reopened.unwrap(&wrapped, &CTX).await?, dek);
    let absolute = format!("file://{}", dir.display());
    let impostor = Keyring::open("operator-kms", &absolute, FsPath::new("/elsewhere"))?;
    assert!(matches!(
        impostor.unwrap(&wrapped, &CTX).await,
        Err(Error::Crypto { .. })
    ));
    assert!(matches!(
        ring.unwrap(&wrapped, &KeyContext::new("another-subject", "profile"))
            .await,
        Err(Error::Crypto { .. })
    ));

    // A key file others can read is refused, with a message that says what to do.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    match Keyring::open("in-kms", "file://keys/in-kms", fx.base()) {
        Err(Error::KeyFile { path, reason }) => {
            assert_eq!(path, file);
            assert!(
                reason.contains("0644") && reason.contains("chmod 600"),
                "{reason}"
            );
        }
        other => panic!("expected KeyFile error, got {other:?}"),
    }
    // A key file of the wrong length is refused too.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&file, b"short").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        Keyring::open("in-kms", "file://keys/in-kms", fx.base()),
        Err(Error::KeyFile { .. })
    ));
    Ok(())
}

/// An object store that flips one bit of every object it stores with a single put.
#[derive(Debug)]
struct FlipOnPut(Arc<dyn ObjectStore>);

impl fmt::Display for FlipOnPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlipOnPut({})", self.0)
    }
}

#[async_trait]
impl ObjectStore for FlipOnPut {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let mut bytes = Bytes::from(payload).to_vec();
        if let Some(b) = bytes.get_mut(HEADER_LEN + 10) {
            *b ^= 0x80;
        }
        self.0.put_opts(location, bytes.into(), opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

// ---------------------------------------------------------------------------
// s3:// regions, against moto_server
// ---------------------------------------------------------------------------

/// An s3:// region in moto, under `bucket_and_prefix`.
fn moto_region(moto: &Moto, id: &str, bucket_and_prefix: &str) -> Result<RegionStore> {
    RegionStore::open_with(
        id,
        &format!(
            "s3://{bucket_and_prefix}?endpoint={}&region=us-east-1",
            moto.endpoint
        ),
        FsPath::new("/"),
        &RegionOptions {
            credentials: Some(domicile_store::S3Credentials {
                access_key_id: "moto".into(),
                secret_access_key: "moto".into(),
            }),
            ..RegionOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_regions_work_beside_local_ones() -> Result<()> {
    let moto = Moto::start();
    moto.bucket("domicile-test");
    let fx = Fixture::new();
    let local = fx.region("in-west")?;
    let s3 = moto_region(&moto, "sg-s3", "domicile-test/regions/sg")?;
    let other = moto_region(&moto, "us-s3", "domicile-test/regions/us")?;
    let key = DataKey::generate()?;
    let regions = vec![local.clone(), s3.clone()];

    // One blob on the single-put path, one on the multipart path, written to a local
    // folder and an S3 bucket at once.
    let small = plaintext(300_000, 3);
    let large = plaintext(20 * MIB, 4);
    let (small_path, small_written) = write_blob(&regions, &key, &small, 65_537).await?;
    let (large_path, large_written) = write_blob(&regions, &key, &large, MIB + 3).await?;
    for (path, written, plain) in [
        (&small_path, &small_written, &small),
        (&large_path, &large_written, &large),
    ] {
        assert_eq!(
            checksum_of(&s3, path).await?,
            (written.stored_size, written.checksum_hex.clone())
        );
        assert!(read_all(&s3, path, &key, plain.len(), None).await? == **plain);
        let len = plain.len() as u64;
        for range in [0..1, 65_535..65_537, len / 3..len / 2, len - 7..len] {
            let got = read_all(&s3, path, &key, plain.len(), Some(range.clone())).await?;
            assert!(
                got == plain[range.start as usize..range.end as usize],
                "{range:?}"
            );
        }
    }

    // Copies between backends are checksum-verified, both ways.
    copy_blob(&local, &other, &large_path, &large_written.checksum_hex).await?;
    assert!(read_all(&other, &large_path, &key, large.len(), None).await? == large);
    let back = fx.region("tw-1")?;
    copy_blob(&other, &back, &large_path, &large_written.checksum_hex).await?;
    assert!(read_all(&back, &large_path, &key, large.len(), None).await? == large);

    // Listings stay within the region's prefix of the shared bucket.
    let mut listing = s3.list(None).await?;
    listing.blobs.sort();
    let mut expected = vec![
        (small_path.clone(), small_written.stored_size),
        (large_path.clone(), large_written.stored_size),
    ];
    expected.sort();
    assert_eq!(listing.blobs, expected);
    assert!(listing.foreign.is_empty());
    assert_eq!(other.list(None).await?.blobs.len(), 1);

    // Delete is idempotent; a missing copy is a value, not an error.
    s3.delete(&small_path).await?;
    s3.delete(&small_path).await?;
    assert_eq!(s3.head(&small_path).await?, None);
    assert_eq!(s3.head(&large_path).await?, Some(large_written.stored_size));

    // An aborted multipart write leaves nothing visible.
    let path = BlobPath::new_random(TOKEN, "media")?;
    let mut aborted = BlobWriter::new(
        vec![s3.clone()],
        path.clone(),
        Some(&key),
        DEFAULT_CHUNK_SIZE,
    )?;
    aborted.write(&plaintext(12 * MIB, 9)).await?;
    aborted.abort().await?;
    assert_eq!(s3.head(&path).await?, None);
    assert_eq!(s3.list(None).await?.blobs.len(), 1);

    // A purge by prefix deletes in bulk, within this region's part of the
    // shared bucket only.
    let media = domicile_store::layout::prefix_for_category(TOKEN, "media")?;
    assert_eq!(s3.delete_prefix(&media).await?, 1);
    assert!(s3.list(None).await?.blobs.is_empty());
    assert_eq!(
        other.list(None).await?.blobs.len(),
        1,
        "another region's copy stays"
    );
    assert_eq!(s3.delete_prefix(&media).await?, 0);
    Ok(())
}

/// A writer killed between writing its staging file and renaming it leaves
/// ciphertext no listing shows; `leftovers` finds it and `remove_leftovers`
/// deletes it, sparing young ones that may be writes in progress.
#[tokio::test]
async fn staging_leftovers_are_found_and_removed() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| domicile_store::Error::Io {
        path: PathBuf::from("tempdir"),
        source: e,
    })?;
    let region = RegionStore::open("r", "file://r", dir.path())?;
    let token = "00aa11bb22cc33dd00aa11bb22cc33dd";
    let kept = BlobPath::new_random(token, "media")?;
    region.put(&kept, Bytes::from_static(b"committed")).await?;
    let staging = dir.path().join("r").join(format!(
        "{}#7",
        BlobPath::new_random(token, "media")?.location()
    ));
    std::fs::create_dir_all(staging.parent().unwrap_or(dir.path())).map_err(|e| {
        domicile_store::Error::Io {
            path: staging.clone(),
            source: e,
        }
    })?;
    std::fs::write(&staging, b"half a blob").map_err(|e| domicile_store::Error::Io {
        path: staging.clone(),
        source: e,
    })?;

    let listed = region.list(None).await?;
    assert_eq!(
        listed.blobs.len(),
        1,
        "the listing shows only the committed blob"
    );
    assert!(listed.foreign.is_empty());
    let found = region.leftovers(Some(&prefix_for(token)?)).await?;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].path.ends_with("#7"), "{found:?}");
    assert_eq!(found[0].size, 11);

    // Too young to be abandoned for sure: kept.
    let removed = region
        .remove_leftovers(None, std::time::Duration::from_secs(3600))
        .await?;
    assert_eq!(removed, 0);
    assert!(staging.exists());
    assert_eq!(
        region
            .remove_leftovers(None, std::time::Duration::ZERO)
            .await?,
        1
    );
    assert!(!staging.exists());
    assert!(region.leftovers(None).await?.is_empty());
    assert_eq!(region.get(&kept).await?, Bytes::from_static(b"committed"));
    Ok(())
}

/// A deletion by prefix takes everything under it (blobs, foreign objects,
/// staging leftovers) and nothing beside it, in a local folder (opened
/// through a path that is not canonical) and in another store alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_is_deleted_with_everything_under_it() -> Result<()> {
    let io = |path: &FsPath| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.base().join("sub")).map_err(io(fx.base()))?;
    let base = fx.base().join("sub/..");
    let local = RegionStore::open("r", "file://./r", &base)?;
    let memory = RegionStore::open("m", "memory://", &base)?;
    let token = "00aa11bb22cc33dd00aa11bb22cc33dd";
    let media = domicile_store::layout::prefix_for_category(token, "media")?;
    for region in [&local, &memory] {
        for body in [&b"one"[..], b"two"] {
            let path = BlobPath::new_random(token, "media")?;
            region.put(&path, Bytes::copy_from_slice(body)).await?;
        }
        let notes = BlobPath::new_random(token, "notes")?;
        region.put(&notes, Bytes::from_static(b"kept")).await?;
        let foreign = Path::from(format!("{media}/not-a-blob"));
        region
            .object_store()
            .put_opts(
                &foreign,
                PutPayload::from_static(b"x"),
                PutOptions::default(),
            )
            .await
            .map_err(|source| Error::ObjectStore {
                region: region.id().to_owned(),
                source,
            })?;
        let mut expected = 3;
        if region.id() == "r" {
            let staging = fx.base().join("r").join(format!("{media}/half#3"));
            std::fs::write(&staging, b"half a blob").map_err(io(&staging))?;
            expected += 1;
        }
        assert_eq!(
            region.delete_prefix(&media).await?,
            expected,
            "{}",
            region.id()
        );
        assert!(region.list(Some(&media)).await?.blobs.is_empty());
        assert_eq!(region.get(&notes).await?, Bytes::from_static(b"kept"));
        assert_eq!(
            region.delete_prefix(&media).await?,
            0,
            "a second time: nothing"
        );
        let root = region.delete_prefix(&Path::default()).await;
        assert!(
            matches!(root, Err(Error::InvalidBlobPath { .. })),
            "{root:?}"
        );
    }
    assert!(!fx.base().join("r").join(media.to_string()).exists());
    assert!(local.leftovers(None).await?.is_empty());
    Ok(())
}

/// Bulk writes through `deferred()` land in the same region and become
/// durable with `sync()`, which many callers may call at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_writes_are_made_durable_by_shared_syncs() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| domicile_store::Error::Io {
        path: PathBuf::from("tempdir"),
        source: e,
    })?;
    let region = RegionStore::open("r", "file://r", dir.path())?;
    let bulk = region.deferred();
    let mut paths = Vec::new();
    for i in 0..16u8 {
        let p = BlobPath::new_random(TOKEN, "media")?;
        bulk.put(&p, Bytes::from(vec![i; 1000])).await?;
        paths.push(p);
    }
    let syncs: Vec<_> = (0..16)
        .map(|_| {
            let r = region.clone();
            tokio::spawn(async move { r.sync().await })
        })
        .collect();
    for s in syncs {
        s.await.map_err(|e| domicile_store::Error::Io {
            path: PathBuf::from("join"),
            source: std::io::Error::other(e.to_string()),
        })??;
    }
    for (i, p) in paths.iter().enumerate() {
        assert_eq!(region.get(p).await?, Bytes::from(vec![i as u8; 1000]));
    }
    // A memory region has nothing to sync.
    RegionStore::open("m", "memory://", dir.path())?
        .sync()
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Network keyrings
// ---------------------------------------------------------------------------

fn aws_options() -> KeyringOptions {
    KeyringOptions {
        aws_credentials: Some(domicile_store::S3Credentials {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        }),
        vault_token: None,
    }
}

fn vault_options(token: &str) -> KeyringOptions {
    KeyringOptions {
        aws_credentials: None,
        vault_token: Some(token.into()),
    }
}

/// What every keyring must do, whatever holds its key: generate, wrap, unwrap and rewrap,
/// each wrapped key bound to its custodian, subject token and category.
async fn keyring_contract(ring: &Keyring) -> Result<()> {
    let (dek, wrapped) = ring.generate(&CTX).await?;
    assert_eq!(ring.unwrap(&wrapped, &CTX).await?, dek);
    let other = DataKey::generate()?;
    let wrapped_other = ring.wrap(&other, &CTX).await?;
    assert_eq!(ring.unwrap(&wrapped_other, &CTX).await?, other);
    for ctx in [
        KeyContext::new("another-subject", "profile"),
        KeyContext::new(TOKEN, "orders"),
    ] {
        let refused = ring.unwrap(&wrapped, &ctx).await;
        assert!(
            matches!(refused, Err(Error::KeyManagerRefused { ref custodian, .. }) if custodian == ring.custodian()),
            "{ctx:?}: {refused:?}"
        );
    }
    let rewrapped = ring.rewrap(&wrapped, &CTX).await?;
    assert_ne!(rewrapped, wrapped);
    assert_eq!(ring.unwrap(&rewrapped, &CTX).await?, dek);
    // A key of another kind of keyring is refused without asking.
    let file_ring = Keyring::memory(ring.custodian())?;
    let foreign = file_ring.wrap(&dek, &CTX).await?;
    assert!(matches!(
        ring.unwrap(&foreign, &CTX).await,
        Err(Error::Crypto { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn kms_keyrings_wrap_through_kms_bound_to_custodian_and_context() -> Result<()> {
    let moto = Moto::start();
    let arn = moto.kms_create_key();
    moto.kms_alias("alias/in-kms", &arn);
    let url = format!(
        "aws-kms://alias/in-kms?region=us-east-1&endpoint={}",
        moto.endpoint
    );
    let ring = Keyring::open_with("in-kms", &url, FsPath::new("/"), &aws_options())?;
    assert_eq!(ring.identity().await?, arn, "the identity is the key ARN");
    keyring_contract(&ring).await?;

    // The same KMS key under another custodian id does not open this custodian's keys.
    let (_, wrapped) = ring.generate(&CTX).await?;
    let impostor = Keyring::open_with("sg-kms", &url, FsPath::new("/"), &aws_options())?;
    assert!(matches!(
        impostor.unwrap(&wrapped, &CTX).await,
        Err(Error::KeyManagerRefused { .. })
    ));

    // The alias pointed at another key: a fresh keyring sees another identity, and the
    // one that resolved the alias first refuses it rather than follow.
    let other = moto.kms_create_key();
    moto.kms_alias("alias/in-kms", &other);
    let fresh = Keyring::open_with("in-kms", &url, FsPath::new("/"), &aws_options())?;
    assert_eq!(fresh.identity().await?, other);
    match ring.identity().await {
        Err(Error::KeyManagerRefused { custodian, reason }) => {
            assert_eq!(custodian, "in-kms");
            assert!(reason.contains(&other) && reason.contains(&arn), "{reason}");
        }
        got => panic!("expected a refusal, got {got:?}"),
    }
    moto.kms_alias("alias/in-kms", &arn);

    // A disabled key is refused, naming the custodian; enabled again, it serves.
    moto.kms_disable(&arn);
    match ring.identity().await {
        Err(e @ Error::KeyManagerRefused { .. }) => {
            assert!(e.to_string().contains("custodian in-kms"), "{e}");
            assert!(e.to_string().contains("Disabled"), "{e}");
            assert!(!e.is_retryable());
        }
        got => panic!("expected a refusal, got {got:?}"),
    }
    moto.kms_enable(&arn);
    assert_eq!(ring.identity().await?, arn);
    ring.unwrap(&wrapped, &CTX).await?;

    // No credential at all: refused at open, saying which secrets to set.
    let bare = Keyring::open("in-kms", &url, FsPath::new("/"));
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        match bare {
            Err(Error::KeyManagerRefused { reason, .. }) => {
                assert!(
                    reason.contains("DOMICILE_CUSTODIAN_IN_KMS_ACCESS_KEY_ID"),
                    "{reason}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    drop(moto);

    // The KMS gone: every call fails quickly as retryable, naming the custodian.
    let down = ring.unwrap(&wrapped, &CTX).await;
    match down {
        Err(e @ Error::KeyManagerUnavailable { .. }) => {
            assert!(e.is_retryable());
            assert!(e.to_string().contains("custodian in-kms"), "{e}");
        }
        other => panic!("expected KeyManagerUnavailable, got {other:?}"),
    }
    assert!(ring.generate(&CTX).await.is_err_and(|e| e.is_retryable()));
    Ok(())
}

#[tokio::test]
async fn vault_keyrings_wrap_through_transit_with_derived_contexts() -> Result<()> {
    let vault = FakeVault::start();
    vault.create_key("in-kms", true);
    let url = vault.url("in-kms");
    let ring = Keyring::open_with(
        "in-kms",
        &url,
        FsPath::new("/"),
        &vault_options(&vault.token),
    )?;
    let identity = ring.identity().await?;
    assert!(
        identity.starts_with(&format!(
            "vault:http://{}/transit/in-kms@v1:",
            vault.address
        )),
        "{identity}"
    );
    keyring_contract(&ring).await?;
    let (dek, wrapped) = ring.generate(&CTX).await?;

    // Rotation: new wraps use version 2, old ones still open; rewrap moves them to v2.
    vault.rotate("in-kms");
    let rewrapped = ring.rewrap(&wrapped, &CTX).await?;
    assert!(
        rewrapped.starts_with(b"Vvault:v2:"),
        "{:?}",
        String::from_utf8_lossy(&rewrapped)
    );
    assert_eq!(ring.unwrap(&rewrapped, &CTX).await?, dek);

    // Version 1 no longer allowed to decrypt: refused with Vault's reason, naming the
    // custodian; and the key no longer shows its version 1, so its identity is refused.
    vault.set_min_decryption_version("in-kms", 2);
    match ring.unwrap(&wrapped, &CTX).await {
        Err(e @ Error::KeyManagerRefused { .. }) => {
            assert!(
                e.to_string().contains("custodian in-kms") && e.to_string().contains("too old"),
                "{e}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        ring.identity().await,
        Err(Error::KeyManagerRefused { .. })
    ));
    vault.set_min_decryption_version("in-kms", 1);
    assert_eq!(ring.unwrap(&wrapped, &CTX).await?, dek);
    assert_eq!(ring.identity().await?, identity);

    // A policy that denies decrypt: refused, not retryable; allowed again, it serves.
    vault.deny("decrypt");
    assert!(matches!(
        ring.unwrap(&wrapped, &CTX).await,
        Err(Error::KeyManagerRefused { ref reason, .. }) if reason.contains("permission denied")
    ));
    vault.allow("decrypt");

    // A wrong token is refused.
    let stranger =
        Keyring::open_with("in-kms", &url, FsPath::new("/"), &vault_options("hvs.nope"))?;
    assert!(matches!(
        stranger.unwrap(&wrapped, &CTX).await,
        Err(Error::KeyManagerRefused { .. })
    ));

    // The key deleted and created again under its name: another identity, refused by the
    // keyring that knew the first; and a key without derivation is refused.
    vault.delete_key("in-kms");
    vault.create_key("in-kms", true);
    assert!(matches!(
        ring.identity().await,
        Err(Error::KeyManagerRefused { .. })
    ));
    let fresh = Keyring::open_with(
        "in-kms",
        &url,
        FsPath::new("/"),
        &vault_options(&vault.token),
    )?;
    assert_ne!(fresh.identity().await?, identity);
    assert!(fresh.unwrap(&wrapped, &CTX).await.is_err());
    vault.create_key("plain", false);
    let plain = Keyring::open_with(
        "in-kms",
        &vault.url("plain"),
        FsPath::new("/"),
        &vault_options(&vault.token),
    )?;
    assert!(matches!(
        plain.identity().await,
        Err(Error::KeyManagerRefused { ref reason, .. }) if reason.contains("derived")
    ));

    // encrypt would create a missing key: the keyring notices and refuses the wrap.
    vault.delete_key("in-kms");
    assert!(matches!(
        fresh.wrap(&dek, &CTX).await,
        Err(Error::KeyManagerRefused { .. })
    ));

    drop(vault);
    match ring.unwrap(&wrapped, &CTX).await {
        Err(e @ Error::KeyManagerUnavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected KeyManagerUnavailable, got {other:?}"),
    }
    Ok(())
}

/// The same contract against a real Vault or OpenBao: `DOMICILE_TEST_VAULT_ADDR`
/// (`http://HOST:PORT`), `DOMICILE_TEST_VAULT_TOKEN`, and a Transit engine mounted at
/// `transit` (or `DOMICILE_TEST_VAULT_MOUNT`). The key `domicile-test` is created derived.
#[tokio::test]
async fn vault_keyrings_work_against_a_real_vault_when_one_is_given() -> Result<()> {
    let Ok(addr) = std::env::var("DOMICILE_TEST_VAULT_ADDR") else {
        println!("skipped: DOMICILE_TEST_VAULT_ADDR is not set (no real Vault to test against)");
        return Ok(());
    };
    let token = std::env::var("DOMICILE_TEST_VAULT_TOKEN").unwrap_or_default();
    let mount = std::env::var("DOMICILE_TEST_VAULT_MOUNT").unwrap_or_else(|_| "transit".into());
    let (scheme, host) = addr
        .split_once("://")
        .unwrap_or_else(|| panic!("DOMICILE_TEST_VAULT_ADDR {addr:?} is not http(s)://HOST:PORT"));
    let created = create_derived_key(&addr, &token, &format!("/v1/{mount}/keys/domicile-test"));
    assert!(
        created,
        "cannot create the Transit key domicile-test at {addr}"
    );
    let url = format!(
        "{}://{}/{mount}/domicile-test",
        if scheme == "https" { "vaults" } else { "vault" },
        host.trim_end_matches('/')
    );
    let ring = Keyring::open_with("in-kms", &url, FsPath::new("/"), &vault_options(&token))?;
    ring.identity().await?;
    keyring_contract(&ring).await
}

/// `POST {"derived": true}` with curl (a plain HTTP client is not a dependency here);
/// true when the key exists afterwards.
fn create_derived_key(addr: &str, token: &str, path: &str) -> bool {
    std::process::Command::new("curl")
        .args(["-sf", "-X", "POST", "-H"])
        .arg(format!("X-Vault-Token: {token}"))
        .args(["-d", r#"{"derived": true}"#])
        .arg(format!("{}{path}", addr.trim_end_matches('/')))
        .status()
        .is_ok_and(|s| s.success())
}

/// A rotation adds `master-v2.key`: it wraps from then on (in a keyring opened before it
/// too), keys wrapped under v1 still unwrap while the file is there, a rewrap moves them
/// under v2, and once the old file is moved away everything rewrapped still opens.
#[tokio::test]
async fn file_keyrings_rotate_to_a_new_master_key_version() -> Result<()> {
    let fx = Fixture::new();
    let url = "file://keys/in-kms";
    let ring = Keyring::open("in-kms", url, fx.base())?;
    let other_process = Keyring::open_existing("in-kms", url, fx.base())?;
    let dir = fx.base().join("keys/in-kms");
    let first = ring.identity().await?;
    let dek = DataKey::generate()?;
    let old = ring.wrap(&dek, &CTX).await?;
    assert_eq!(ring.is_current(&old)?, Some(true));
    assert!(ring.earlier_identities().is_empty());

    assert_eq!(ring.add_master_key()?, Some(2));
    let v2 = dir.join("master-v2.key");
    assert_eq!(ring.key_file().as_deref(), Some(v2.as_path()));
    let mode = std::fs::metadata(&v2)
        .expect("master-v2.key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let second = ring.identity().await?;
    assert_ne!(second, first);
    assert_eq!(ring.earlier_identities(), vec![first.clone()]);
    assert_eq!(ring.is_current(&old)?, Some(false));
    assert_eq!(ring.unwrap(&old, &CTX).await?, dek);

    // The keyring opened before the rotation wraps under the new key too.
    let fresh = other_process.wrap(&dek, &CTX).await?;
    assert_eq!(ring.is_current(&fresh)?, Some(true));
    assert_eq!(fresh.len(), WRAPPED_LEN + 4);
    let rewrapped = ring.rewrap(&old, &CTX).await?;
    assert_eq!(ring.is_current(&rewrapped)?, Some(true));
    assert_eq!(other_process.unwrap(&rewrapped, &CTX).await?, dek);
    // The version a key names is bound: another version does not open it.
    let mut relabelled = rewrapped.clone();
    relabelled[4] = 1;
    assert!(ring.unwrap(&relabelled, &CTX).await.is_err());

    std::fs::rename(dir.join(MASTER_KEY_FILE), fx.base().join("old-master.key"))
        .expect("move the old key away");
    let after = Keyring::open_existing("in-kms", url, fx.base())?;
    assert_eq!(after.identity().await?, second);
    assert!(after.earlier_identities().is_empty());
    assert_eq!(after.unwrap(&rewrapped, &CTX).await?, dek);
    assert_eq!(after.unwrap(&fresh, &CTX).await?, dek);
    let missing = after
        .unwrap(&old, &CTX)
        .await
        .expect_err("v1 is gone")
        .to_string();
    assert!(missing.contains("master-v1.key"), "{missing}");
    // A keyring without any master key is not created again in place of the rotated one.
    assert_eq!(
        Keyring::open("in-kms", url, fx.base())?.identity().await?,
        second
    );
    Ok(())
}
