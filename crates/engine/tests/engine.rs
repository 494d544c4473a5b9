//! Integration tests of the engine: the data path, placement and policy
//! enforcement (invariant 2), fencing against moves, erasure, concurrency,
//! verify, plans and demands, against real folders and an SQLite catalog in
//! a temporary directory.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_core::Config;
use domicile_core::exposure::Level;
use domicile_engine::{Engine, EngineOptions, Error, GcOptions, ObjectMeta, PutReceipt, Secrets};
use domicile_store::RegionStore;
use domicile_test_support::engine::{cat, jur, key, now_millis, put, sid, token};
use domicile_test_support::files::walk;
use futures::TryStreamExt;

// ---------------------------------------------------------------------------
// Config template
// ---------------------------------------------------------------------------

/// One `[[region]]`: id, jurisdiction, provider headquarters.
type RegionDef = (&'static str, &'static str, &'static str);

/// Builds a config text from the fixed header (operator, catalog,
/// custodians, reach) and the given regions and rules.
fn config_text(regions: &[RegionDef], rules: &str) -> String {
    let mut text = String::from(
        r#"
[operator]
name = "Test Phones"
headquarters = "CN"

[catalog]
url = "sqlite://data/catalog.db"
"#,
    );
    for (id, jurisdiction, provider_hq) in regions {
        text += &format!(
            r#"
[[region]]
id = "{id}"
jurisdiction = "{jurisdiction}"
provider = "p-{id}"
provider_headquarters = "{provider_hq}"
store = "file://data/regions/{id}"
storage_price_gb_month = 0.02
egress_price_gb = 0.05
"#
        );
    }
    text += r#"
[[custodian]]
id = "op-kms"
jurisdiction = "CN"
headquarters = "CN"
keyring = "file://data/keys/op-kms"

[[custodian]]
id = "in-kms"
jurisdiction = "IN"
headquarters = "IN"
keyring = "file://data/keys/in-kms"

[[custodian]]
id = "sg-kms"
jurisdiction = "SG"
headquarters = "SG"
keyring = "file://data/keys/sg-kms"
"#;
    text += rules;
    text += r#"
[[reach]]
authority = "*"
over = "territory"

[[reach]]
authority = "US"
over = "headquarters"
"#;
    text
}

/// A rule section.
fn rule(name: &str, body: &str) -> String {
    format!("\n[[rule]]\nname = \"{name}\"\n{body}\ncustodian = \"op-kms\"\n")
}

/// A rule section naming its own custodian (`body` must include it).
fn rule_with_custodian(name: &str, body: &str) -> String {
    format!("\n[[rule]]\nname = \"{name}\"\n{body}\n")
}

const CN: RegionDef = ("cn", "CN", "CN");
const CN_B: RegionDef = ("cn-b", "CN", "CN");
const SG: RegionDef = ("sg", "SG", "US");
const US: RegionDef = ("us", "US", "US");

/// Everything in China, one copy.
fn all_in_cn() -> String {
    rule("everything-in-cn", r#"allow = ["cn"]"#)
}

// ---------------------------------------------------------------------------
// A deployment in a temporary directory
// ---------------------------------------------------------------------------

struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        Deployment {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn base(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self, regions: &[RegionDef], rules: &str) -> Config {
        let text = config_text(regions, rules);
        Config::parse("test.toml", &text, self.base())
            .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{text}"))
    }

    async fn open(&self, regions: &[RegionDef], rules: &str) -> Engine {
        self.open_with(regions, rules, EngineOptions::default())
            .await
    }

    /// Opens an engine with these regions and rules on the deployment's
    /// catalog, and makes its rules the active policy version, as `policy
    /// apply` would: every engine already open follows them.
    async fn open_with(
        &self,
        regions: &[RegionDef],
        rules: &str,
        options: EngineOptions,
    ) -> Engine {
        let config = self.config(regions, rules);
        let engine = Engine::open_with(config.clone(), Secrets::empty(), options)
            .await
            .unwrap();
        engine.apply_policy(&config).await.unwrap();
        engine
    }

    fn region_url(id: &str) -> String {
        format!("file://data/regions/{id}")
    }

    fn region_dir(&self, id: &str) -> PathBuf {
        self.base().join("data/regions").join(id)
    }

    /// Every file in a region's folder (staging files included), relative to
    /// the folder.
    fn files(&self, region: &str) -> BTreeSet<PathBuf> {
        let root = self.region_dir(region);
        let mut out = BTreeSet::new();
        walk(&root, &root, &mut out);
        out
    }

    /// Every file of every region folder, by region.
    fn all_files(&self) -> BTreeMap<String, BTreeSet<PathBuf>> {
        let mut out = BTreeMap::new();
        let regions = self.base().join("data/regions");
        if let Ok(entries) = std::fs::read_dir(&regions) {
            for e in entries {
                let name = e.unwrap().file_name().to_string_lossy().to_string();
                let files = self.files(&name);
                out.insert(name, files);
            }
        }
        out
    }

    /// The files of one subject token in a region.
    fn files_of(&self, region: &str, token: &str) -> BTreeSet<PathBuf> {
        self.files(region)
            .into_iter()
            .filter(|p| p.components().any(|c| c.as_os_str() == token))
            .collect()
    }

    /// Total size of the given files of a region.
    fn size_of(&self, region: &str, files: &BTreeSet<PathBuf>) -> u64 {
        files
            .iter()
            .map(|f| {
                std::fs::metadata(self.region_dir(region).join(f))
                    .unwrap()
                    .len()
            })
            .sum()
    }
}

/// The single file in `after` but not in `before`.
fn added(before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    after.difference(before).cloned().collect()
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

async fn read(
    engine: &Engine,
    subject: &str,
    name: &str,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, Error> {
    let (_, stream) = engine.get(&sid(subject), &key(name), range).await?;
    let pieces: Vec<bytes::Bytes> = stream.try_collect().await?;
    Ok(pieces.concat())
}

async fn ledger_count(engine: &Engine) -> u64 {
    let report = engine.verify_ledger().await.unwrap();
    assert!(report.ok, "ledger chain broken: {:?}", report.error);
    report.entries
}

/// Kinds of every ledger entry, in order.
async fn ledger_kinds(engine: &Engine) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut after = 0;
    loop {
        let page = engine.ledger_page(after, 500).await.unwrap();
        let Some(last) = page.last() else {
            return kinds;
        };
        after = last.seq;
        kinds.extend(page.into_iter().map(|e| e.kind));
    }
}

async fn subject_ledger_kinds(engine: &Engine, subject: &str) -> Vec<String> {
    engine
        .subject_ledger(&sid(subject))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn problem_kinds(engine: &Engine) -> BTreeSet<String> {
    engine
        .verify(true)
        .await
        .unwrap()
        .problems
        .into_iter()
        .map(|p| p.kind)
        .collect()
}

/// Options under which a replaced or deleted blob is due at once: for the
/// tests that check collection itself (a pass still has to run).
fn collect_at_once() -> EngineOptions {
    EngineOptions {
        gc: GcOptions {
            grace: Duration::ZERO,
            ..GcOptions::default()
        },
        ..EngineOptions::default()
    }
}

async fn assert_clean(engine: &Engine) {
    let report = engine.verify(true).await.unwrap();
    assert!(
        report.problems.is_empty(),
        "verify found problems: {:#?}",
        report.problems
    );
    let ledger = engine.verify_ledger().await.unwrap();
    assert!(ledger.ok, "ledger: {:?}", ledger.error);
}

// ---------------------------------------------------------------------------
// A region store that refuses every write (an outage of the write path)
// ---------------------------------------------------------------------------

mod outage {
    use std::ops::Range;
    use std::sync::Arc;

    use bytes::Bytes;
    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    };

    /// Delegates reads, listings and deletes; fails every write.
    #[derive(Debug)]
    pub struct WritesFail {
        pub inner: Arc<dyn ObjectStore>,
    }

    impl std::fmt::Display for WritesFail {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "WritesFail({})", self.inner)
        }
    }

    fn down(location: &Path) -> object_store::Error {
        object_store::Error::Generic {
            store: "outage",
            source: format!("region is down: cannot write {location}").into(),
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for WritesFail {
        async fn put_opts(
            &self,
            location: &Path,
            _payload: PutPayload,
            _opts: PutOptions,
        ) -> Result<PutResult> {
            Err(down(location))
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            _opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            Err(down(location))
        }

        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
            self.inner.get_ranges(location, ranges).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        fn list_with_offset(
            &self,
            prefix: Option<&Path>,
            offset: &Path,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list_with_offset(prefix, offset)
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(&self, _from: &Path, to: &Path, _options: CopyOptions) -> Result<()> {
            Err(down(to))
        }

        async fn rename_opts(
            &self,
            _from: &Path,
            to: &Path,
            _options: RenameOptions,
        ) -> Result<()> {
            Err(down(to))
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Round trips
// ---------------------------------------------------------------------------

const SIZES: [usize; 6] = [0, 1, 65_535, 65_536, 65_537, 5 << 20];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_of_every_size_with_ranges_metadata_overwrite_and_delete() {
    let d = Deployment::new();
    let engine = d.open_with(&[CN], &all_in_cn(), collect_at_once()).await;
    engine.add_subject(&sid("alice"), jur("CN")).await.unwrap();

    let mut file_of: BTreeMap<usize, PathBuf> = BTreeMap::new();
    for (i, &size) in SIZES.iter().enumerate() {
        let body = pattern(size, i as u64 + 1);
        let name = format!("docs/obj-{size}");
        let meta = ObjectMeta {
            content_type: Some(format!("application/x-test-{size}")),
            user: BTreeMap::from([
                ("size".to_string(), size.to_string()),
                ("note".to_string(), "ünïcode ✓".to_string()),
            ]),
            cache_control: Some("max-age=60".into()),
            content_disposition: Some("attachment; filename=\"a.bin\"".into()),
            content_encoding: Some("identity".into()),
            content_language: Some("fr".into()),
            expires: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            // Whatever the caller says, the engine stores the body's MD5.
            etag: Some("not-the-md5".into()),
            checksums: BTreeMap::from([("SHA256".to_string(), format!("sum-{size}"))]),
            checksum_type: Some("FULL_OBJECT".into()),
            part_checksums: vec![format!("part-{size}")],
        };
        let before = d.files("cn");
        let receipt = engine
            .put(
                &sid("alice"),
                &cat("profile"),
                &key(&name),
                &meta,
                body.as_slice(),
            )
            .await
            .unwrap();
        assert_eq!(receipt.version, 1);
        assert_eq!(receipt.size, size as u64);
        assert_eq!(receipt.regions, vec!["cn".to_string()]);
        let new = added(&before, &d.files("cn"));
        assert_eq!(new.len(), 1, "one blob file per put: {new:?}");
        file_of.insert(size, new[0].clone());

        let info = engine.head(&sid("alice"), &key(&name)).await.unwrap();
        assert_eq!(info.name, name);
        assert_eq!(info.category, "profile");
        assert_eq!(info.size, size as u64);
        assert_eq!(info.version, 1);
        let md5 = {
            use md5::Digest;
            hex::encode(md5::Md5::digest(&body))
        };
        assert_eq!(receipt.etag, md5, "the ETag is the MD5 of the body");
        assert_eq!(
            info.meta,
            ObjectMeta {
                etag: Some(md5.clone()),
                ..meta.clone()
            }
        );
        assert_eq!(info.etag(), md5);
        assert_eq!(info.checksum, receipt.checksum);

        let (got_info, stream) = engine.get(&sid("alice"), &key(&name), None).await.unwrap();
        assert_eq!(got_info, info);
        let got: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), body, "size {size}");

        let s = size as u64;
        let mut ranges: Vec<Range<u64>> = vec![0..0, 0..s, s..s];
        if s > 0 {
            ranges.extend([0..1, s - 1..s, s / 3..(2 * s / 3).max(s / 3), s / 2..s]);
        }
        if s >= 65_538 {
            ranges.extend([65_535..65_538, 65_536..65_537, 1..s - 1]);
        }
        for r in ranges {
            let got = read(&engine, "alice", &name, Some(r.clone()))
                .await
                .unwrap();
            assert_eq!(
                got,
                &body[r.start as usize..r.end as usize],
                "size {size}, range {r:?}"
            );
        }
        // Ranges outside the object are refused.
        let past = read(&engine, "alice", &name, Some(0..s + 1)).await;
        assert!(
            matches!(past, Err(Error::Invalid(_))),
            "size {size}: {past:?}"
        );
        let (start, end) = (s + 2, s + 1);
        let reversed = read(&engine, "alice", &name, Some(start..end)).await;
        assert!(
            matches!(reversed, Err(Error::Invalid(_))),
            "size {size}: {reversed:?}"
        );
    }
    assert_eq!(d.files("cn").len(), SIZES.len());

    // Stored files are ciphertext: never the plaintext.
    let one = std::fs::read(d.region_dir("cn").join(&file_of[&65_537])).unwrap();
    let plain = pattern(65_537, 5);
    assert_ne!(one.get(..plain.len()), Some(plain.as_slice()));
    assert!(!one.windows(64).any(|w| w == &plain[1000..1064]));

    // list: every object, sorted by name, with metadata.
    let listed = engine.list(&sid("alice")).await.unwrap();
    let mut names: Vec<String> = SIZES.iter().map(|s| format!("docs/obj-{s}")).collect();
    names.sort();
    assert_eq!(
        listed.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        names
    );
    for info in &listed {
        assert_eq!(
            info.meta.user.get("size").map(String::as_str),
            info.name.strip_prefix("docs/obj-")
        );
    }

    // Overwrite: version 2, the new content; the old blob file is left to
    // the collector (no request collects), and its pass deletes it.
    let before = d.files("cn");
    let receipt = put(&engine, "alice", "profile", "docs/obj-1", b"second")
        .await
        .unwrap();
    assert_eq!(receipt.version, 2);
    let after = d.files("cn");
    assert!(after.contains(&file_of[&1]), "the overwrite collected");
    assert_eq!(added(&before, &after).len(), 1);
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    let after = d.files("cn");
    assert_eq!(after.len(), before.len(), "overwrite leaks no blob");
    assert!(!after.contains(&file_of[&1]), "old blob collected");
    assert_eq!(
        read(&engine, "alice", "docs/obj-1", None).await.unwrap(),
        b"second"
    );
    let info = engine
        .head(&sid("alice"), &key("docs/obj-1"))
        .await
        .unwrap();
    assert_eq!(info.version, 2);
    assert_eq!(
        info.meta,
        ObjectMeta {
            etag: Some("a9f0e61a137d86aa9db53465e0801612".into()),
            ..ObjectMeta::default()
        },
        "metadata replaced too; the ETag is the MD5 of b\"second\""
    );
    let receipt = put(&engine, "alice", "profile", "docs/obj-1", b"third")
        .await
        .unwrap();
    assert_eq!(receipt.version, 3);
    engine.collect_garbage().await.unwrap();
    assert_eq!(d.files("cn").len(), SIZES.len());

    // Delete: the file goes with the next pass; a second delete says
    // there was nothing.
    assert!(
        engine
            .delete(&sid("alice"), &key("docs/obj-65536"))
            .await
            .unwrap()
    );
    assert!(
        d.files("cn").contains(&file_of[&65_536]),
        "the delete collected"
    );
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    let files = d.files("cn");
    assert_eq!(files.len(), SIZES.len() - 1);
    assert!(!files.contains(&file_of[&65_536]));
    assert!(
        !engine
            .delete(&sid("alice"), &key("docs/obj-65536"))
            .await
            .unwrap()
    );
    let gone = engine.head(&sid("alice"), &key("docs/obj-65536")).await;
    assert!(
        matches!(&gone, Err(e @ Error::NotFound(_)) if e.is_bad_input()),
        "{gone:?}"
    );
    assert!(matches!(
        read(&engine, "alice", "docs/obj-65536", None).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        engine.list(&sid("alice")).await.unwrap().len(),
        SIZES.len() - 1
    );
    // A name never written.
    assert!(!engine.delete(&sid("alice"), &key("never")).await.unwrap());

    assert_clean(&engine).await;
}

/// A name lives in one category: writing it in another is refused, and the
/// refused write leaves no blob behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_another_category_is_refused_without_leaving_a_blob() {
    let d = Deployment::new();
    let engine = d.open(&[CN], &all_in_cn()).await;
    engine.add_subject(&sid("alice"), jur("CN")).await.unwrap();
    put(&engine, "alice", "profile", "x", b"profile data")
        .await
        .unwrap();
    let before = d.all_files();
    let err = put(&engine, "alice", "media", "x", b"media data")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("profile"), "{err}");
    assert_eq!(d.all_files(), before, "the refused write left a file");
    assert!(engine.test_catalog().garbage(10).await.unwrap().is_empty());
    assert_eq!(
        read(&engine, "alice", "x", None).await.unwrap(),
        b"profile data"
    );
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_and_deletes_refuse_without_leaving_a_blob() {
    use domicile_engine::Precondition;
    let d = Deployment::new();
    let engine = d.open(&[CN], &all_in_cn()).await;
    engine.add_subject(&sid("alice"), jur("CN")).await.unwrap();
    let put_if = |name: &'static str, body: &'static [u8], c: Precondition| {
        let engine = &engine;
        async move {
            engine
                .put_if(
                    &sid("alice"),
                    &cat("profile"),
                    &key(name),
                    &ObjectMeta::default(),
                    body,
                    &c,
                )
                .await
        }
    };
    let first = put_if("x", b"one", Precondition::Absent).await.unwrap();
    let before = d.all_files();
    for (c, what) in [
        (Precondition::Absent, "absent"),
        (Precondition::ETag("0000".into()), "another etag"),
    ] {
        let err = put_if("x", b"two", c).await.unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed(_)), "{what}: {err}");
    }
    let err = put_if("y", b"two", Precondition::Exists).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_eq!(d.all_files(), before, "a refused write left a file");
    assert_eq!(read(&engine, "alice", "x", None).await.unwrap(), b"one");
    let second = put_if("x", b"two", Precondition::ETag(first.etag.clone()))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    let err = engine
        .delete_if(&sid("alice"), &key("x"), &Precondition::ETag(first.etag))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed(_)), "{err}");
    assert_eq!(read(&engine, "alice", "x", None).await.unwrap(), b"two");
    assert!(
        engine
            .delete_if(&sid("alice"), &key("x"), &Precondition::ETag(second.etag))
            .await
            .unwrap()
    );
    assert!(read(&engine, "alice", "x", None).await.is_err());
}

// ---------------------------------------------------------------------------
// 2. Two copies in two countries
// ---------------------------------------------------------------------------

fn two_copies_rules() -> String {
    rule(
        "two-countries",
        "allow = [\"*\"]\ncopies = 2\ndistinct_jurisdictions = true",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_in_distinct_countries_and_reads_fall_back() {
    let d = Deployment::new();
    let regions = [CN, CN_B, SG];
    let engine = d.open(&regions, &two_copies_rules()).await;
    let mut written = Vec::new();
    for i in 0..6 {
        let subject = format!("user-{i}");
        engine.add_subject(&sid(&subject), jur("CN")).await.unwrap();
        let before = d.all_files();
        let body = pattern(70_000 + i, i as u64);
        let receipt = put(&engine, &subject, "profile", "doc", &body)
            .await
            .unwrap();
        assert_eq!(receipt.regions.len(), 2, "{receipt:?}");
        assert!(receipt.regions.contains(&"sg".to_string()), "{receipt:?}");
        assert_ne!(receipt.regions[0], receipt.regions[1]);
        let after = d.all_files();
        for r in ["cn", "cn-b", "sg"] {
            let new = added(&before[r], &after[r]);
            let expected = usize::from(receipt.regions.iter().any(|x| x == r));
            assert_eq!(new.len(), expected, "region {r}: {new:?} for {receipt:?}");
        }
        written.push((subject, body, receipt));
    }

    // The first copy disappears: reads fall back to the second.
    let (subject, body, receipt) = &written[0];
    let t = token(&engine, subject);
    let first = &receipt.regions[0];
    let files = d.files_of(first, &t);
    assert_eq!(files.len(), 1);
    std::fs::remove_file(d.region_dir(first).join(files.first().unwrap())).unwrap();
    assert_eq!(&read(&engine, subject, "doc", None).await.unwrap(), body);
    assert_eq!(
        read(&engine, subject, "doc", Some(100..69_999))
            .await
            .unwrap(),
        &body[100..69_999]
    );
    let report = engine.verify(true).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(report.problems[0].kind, "missing");
    assert_eq!(&report.problems[0].region, first);

    // The first copy is corrupt instead: still read from the second.
    let (subject, body, receipt) = &written[1];
    let t = token(&engine, subject);
    let first = &receipt.regions[0];
    let file = d
        .region_dir(first)
        .join(d.files_of(first, &t).first().unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(10);
    std::fs::write(&file, bytes).unwrap();
    assert_eq!(&read(&engine, subject, "doc", None).await.unwrap(), body);

    // The first copy has a flipped bit: the read detects it and is served
    // by the second copy.
    let (subject, body, receipt) = &written[2];
    let t = token(&engine, subject);
    let first = &receipt.regions[0];
    let file = d
        .region_dir(first)
        .join(d.files_of(first, &t).first().unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    assert_eq!(&read(&engine, subject, "doc", None).await.unwrap(), body);

    // With no copy left, the read fails cleanly.
    let (subject, _, receipt) = &written[0];
    let t = token(&engine, subject);
    let second = &receipt.regions[1];
    for f in d.files_of(second, &t) {
        std::fs::remove_file(d.region_dir(second).join(f)).unwrap();
    }
    assert!(read(&engine, subject, "doc", None).await.is_err());
}

// ---------------------------------------------------------------------------
// 3. Invariant 2: no byte in a forbidden region
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_of_a_subject_reaches_a_region_its_policy_forbids() {
    let d = Deployment::new();
    let regions = [CN, SG, US];
    let v1 = rule("default", r#"allow = ["*"]"#)
        + &rule(
            "india-only-sg",
            "homes = [\"IN\"]\nallow = [\"sg\"]\ndeny = [\"CN\"]",
        );
    let engine = d.open_with(&regions, &v1, collect_at_once()).await;
    let india: Vec<String> = (0..12).map(|i| format!("in-{i}")).collect();
    for s in &india {
        engine.add_subject(&sid(s), jur("IN")).await.unwrap();
    }
    for i in 0..6 {
        engine
            .add_subject(&sid(&format!("cn-{i}")), jur("CN"))
            .await
            .unwrap();
    }
    let india_tokens: BTreeSet<String> = india.iter().map(|s| token(&engine, s)).collect();
    for round in 0..3 {
        for s in &india {
            let r = put(
                &engine,
                s,
                "profile",
                &format!("doc-{round}"),
                &pattern(500 + round, 7),
            )
            .await
            .unwrap();
            assert_eq!(r.regions, vec!["sg".to_string()]);
            // Scan the forbidden folder after every write.
            for f in d.files("cn") {
                assert!(
                    !india_tokens.iter().any(|t| f.to_string_lossy().contains(t)),
                    "an IN subject's blob is in cn: {f:?}"
                );
            }
        }
        for i in 0..6 {
            put(
                &engine,
                &format!("cn-{i}"),
                "profile",
                &format!("doc-{round}"),
                b"cn data",
            )
            .await
            .unwrap();
        }
    }
    for s in &india {
        assert!(d.files_of("cn", &token(&engine, s)).is_empty());
        assert!(d.files_of("us", &token(&engine, s)).is_empty());
        assert_eq!(d.files_of("sg", &token(&engine, s)).len(), 3);
    }
    // A subject whose placement exists but holds nothing.
    engine
        .add_subject(&sid("in-empty"), jur("IN"))
        .await
        .unwrap();
    put(&engine, "in-empty", "profile", "tmp", b"x")
        .await
        .unwrap();
    assert!(engine.delete(&sid("in-empty"), &key("tmp")).await.unwrap());
    // Its blob is collected (due at once here): the placement holds nothing.
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    drop(engine);

    // The policy changes: IN data may no longer be in sg (only in us).
    let v2 = rule("default", r#"allow = ["*"]"#)
        + &rule(
            "india-only-us",
            "homes = [\"IN\"]\nallow = [\"us\"]\ndeny = [\"CN\"]",
        );
    let engine = d.open_with(&regions, &v2, collect_at_once()).await;
    let before = d.all_files();
    let entries = ledger_count(&engine).await;
    let refused = put(&engine, "in-0", "profile", "doc-new", b"must not land").await;
    assert!(
        matches!(&refused, Err(e @ Error::Forbidden(_)) if !e.is_retryable()),
        "{refused:?}"
    );
    let overwrite = put(&engine, "in-0", "profile", "doc-0", b"must not land").await;
    assert!(
        matches!(overwrite, Err(Error::Forbidden(_))),
        "{overwrite:?}"
    );
    assert_eq!(d.all_files(), before, "a refused write left a file");
    assert_eq!(ledger_count(&engine).await, entries);
    // The old data still reads.
    assert_eq!(
        read(&engine, "in-0", "doc-0", None).await.unwrap(),
        pattern(500, 7)
    );

    // A new category for the same subject is placed where the policy allows.
    let r = put(&engine, "in-0", "media", "photo", b"new category")
        .await
        .unwrap();
    assert_eq!(r.regions, vec!["us".to_string()]);
    assert_eq!(d.files_of("us", &token(&engine, "in-0")).len(), 1);
    assert_eq!(
        read(&engine, "in-0", "photo", None).await.unwrap(),
        b"new category"
    );

    // An empty placement in a now-forbidden region is re-placed on write.
    let before = d.all_files();
    let r = put(&engine, "in-empty", "profile", "fresh", b"re-placed")
        .await
        .unwrap();
    assert_eq!(r.regions, vec!["us".to_string()]);
    let t = token(&engine, "in-empty");
    assert!(d.files_of("sg", &t).is_empty());
    assert!(d.files_of("cn", &t).is_empty());
    assert_eq!(d.files_of("us", &t).len(), 1);
    assert_eq!(before["sg"], d.files("sg"));
    assert_eq!(before["cn"], d.files("cn"));
    let kinds = subject_ledger_kinds(&engine, "in-empty").await;
    assert!(kinds.contains(&"move".to_string()), "{kinds:?}");
    let p = engine
        .test_catalog()
        .get_placement(&t, "profile")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.regions, vec!["us".to_string()]);
    assert_eq!(p.epoch, 2);
    assert_eq!(
        read(&engine, "in-empty", "fresh", None).await.unwrap(),
        b"re-placed"
    );

    // Deleting from a forbidden placement writes nothing there: allowed;
    // its blob goes with the next pass (due at once here).
    assert!(engine.delete(&sid("in-1"), &key("doc-0")).await.unwrap());
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    assert_eq!(d.files_of("sg", &token(&engine, "in-1")).len(), 2);

    // CN subjects were never concerned.
    assert_eq!(
        read(&engine, "cn-0", "doc-2", None).await.unwrap(),
        b"cn data"
    );
    let kinds = problem_kinds(&engine).await;
    assert_eq!(
        kinds,
        BTreeSet::from(["forbidden".to_string()]),
        "only the known, old copies break the new policy"
    );
}

// ---------------------------------------------------------------------------
// 4. Unregistered subject
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_subject_is_refused_and_nothing_changes() {
    let d = Deployment::new();
    let engine = d.open(&[CN, SG], &rule("default", "")).await;
    engine.add_subject(&sid("known"), jur("CN")).await.unwrap();
    put(&engine, "known", "profile", "a", b"a").await.unwrap();
    let files = d.all_files();
    let entries = ledger_count(&engine).await;
    let head = engine.verify_ledger().await.unwrap().head_hash;

    let err = put(&engine, "ghost", "profile", "a", &pattern(100_000, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotRegistered), "{err:?}");
    assert!(err.is_bad_input());
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("subject add"), "{err}");
    assert!(matches!(
        read(&engine, "ghost", "a", None).await,
        Err(Error::NotRegistered)
    ));
    assert!(matches!(
        engine.head(&sid("ghost"), &key("a")).await,
        Err(Error::NotRegistered)
    ));
    assert!(matches!(
        engine.list(&sid("ghost")).await,
        Err(Error::NotRegistered)
    ));
    assert!(matches!(
        engine.delete(&sid("ghost"), &key("a")).await,
        Err(Error::NotRegistered)
    ));
    assert!(matches!(
        engine.erase_subject(&sid("ghost")).await,
        Err(Error::NotRegistered)
    ));

    assert_eq!(d.all_files(), files);
    let after = engine.verify_ledger().await.unwrap();
    assert_eq!(after.entries, entries);
    assert_eq!(after.head_hash, head);
    let t = token(&engine, "ghost");
    assert!(
        engine
            .test_catalog()
            .get_subject(&t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        engine
            .test_catalog()
            .placements_of(&t)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(engine.test_catalog().count_subjects().await.unwrap(), 1);
}

// ---------------------------------------------------------------------------
// 5. Oversized bodies
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_and_leaves_nothing() {
    let d = Deployment::new();
    let options = EngineOptions {
        max_object_size: 1000,
        ..EngineOptions::default()
    };
    let engine = d.open_with(&[CN, SG], &rule("default", ""), options).await;
    engine.add_subject(&sid("bob"), jur("CN")).await.unwrap();
    let kinds_before = ledger_kinds(&engine).await;

    let err = put(&engine, "bob", "profile", "big", &pattern(5000, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("1000"), "{err}");
    for (region, files) in d.all_files() {
        assert!(files.is_empty(), "{region}: {files:?}");
    }
    assert!(engine.list(&sid("bob")).await.unwrap().is_empty());
    assert!(matches!(
        engine.head(&sid("bob"), &key("big")).await,
        Err(Error::NotFound(_))
    ));
    // The placement is created before the body is read: its creation is the
    // one ledger entry the refused write leaves. It holds nothing.
    let kinds_after = ledger_kinds(&engine).await;
    assert_eq!(kinds_after.len(), kinds_before.len() + 1);
    assert_eq!(kinds_after[..kinds_before.len()], kinds_before[..]);
    assert_eq!(kinds_after.last().map(String::as_str), Some("placement"));
    let placements = engine
        .test_catalog()
        .placements_of(&token(&engine, "bob"))
        .await
        .unwrap();
    assert_eq!(placements.len(), 1);
    assert_eq!((placements[0].objects, placements[0].bytes), (0, 0));

    // Exactly the limit is accepted.
    let r = put(&engine, "bob", "profile", "fits", &pattern(1000, 4))
        .await
        .unwrap();
    assert_eq!(r.size, 1000);
    assert_eq!(ledger_kinds(&engine).await.len(), kinds_after.len());
    assert_clean(&engine).await;
    drop(engine);

    // Past the single-put size, the refused body has started multipart
    // uploads: their staging files must go too.
    let options = EngineOptions {
        max_object_size: 9 << 20,
        ..EngineOptions::default()
    };
    let engine = d.open_with(&[CN, SG], &rule("default", ""), options).await;
    let before = d.all_files();
    let err = put(&engine, "bob", "profile", "huge", &pattern(12 << 20, 5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    // Aborting an upload may finish in the background: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.all_files() != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.all_files(), before, "staging files left behind");
    assert_eq!(engine.list(&sid("bob")).await.unwrap().len(), 1);
    assert_clean(&engine).await;
}

// ---------------------------------------------------------------------------
// 6. Region outage during a write
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_outage_fails_the_write_and_leaves_no_partial_copy() {
    let d = Deployment::new();
    let regions = [CN, SG];
    let mut engine = d
        .open_with(&regions, &two_copies_rules(), collect_at_once())
        .await;
    engine.add_subject(&sid("carol"), jur("CN")).await.unwrap();
    let r = put(&engine, "carol", "profile", "kept", b"v1")
        .await
        .unwrap();
    assert_eq!(r.regions.len(), 2);
    let listed_before = engine.list(&sid("carol")).await.unwrap();
    let before = d.all_files();
    let entries = ledger_count(&engine).await;

    // sg goes down for writes.
    let healthy = RegionStore::open("sg", &Deployment::region_url("sg"), d.base()).unwrap();
    let failing = outage::WritesFail {
        inner: healthy.object_store().clone(),
    };
    engine.replace_region(RegionStore::from_object_store(
        "sg",
        &Deployment::region_url("sg"),
        Arc::new(failing),
    ));

    let small = put(&engine, "carol", "profile", "new", &pattern(70_000, 1)).await;
    assert!(small.is_err(), "{small:?}");
    let over = put(&engine, "carol", "profile", "kept", b"v2").await;
    assert!(over.is_err(), "{over:?}");
    let large = put(&engine, "carol", "profile", "large", &pattern(9 << 20, 2)).await;
    assert!(large.is_err(), "{large:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.all_files() != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        d.all_files(),
        before,
        "the healthy region kept a copy of a failed write"
    );
    assert_eq!(engine.list(&sid("carol")).await.unwrap(), listed_before);
    assert_eq!(read(&engine, "carol", "kept", None).await.unwrap(), b"v1");
    assert_eq!(ledger_count(&engine).await, entries);
    // Reads still work during a write outage.
    assert_clean(&engine).await;

    // The outage ends.
    engine.replace_region(healthy);
    let r = put(&engine, "carol", "profile", "new", b"after")
        .await
        .unwrap();
    assert_eq!(r.version, 1);
    let r = put(&engine, "carol", "profile", "kept", b"v2")
        .await
        .unwrap();
    assert_eq!(r.version, 2);
    assert_eq!(read(&engine, "carol", "new", None).await.unwrap(), b"after");
    assert_eq!(read(&engine, "carol", "kept", None).await.unwrap(), b"v2");
    // v1's blob goes with the next pass (due at once here).
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    for files in d.all_files().values() {
        assert_eq!(files.len(), 2);
    }
    assert_clean(&engine).await;
}

// ---------------------------------------------------------------------------
// 7. Fencing against moves
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_a_move_and_give_up_with_busy() {
    let d = Deployment::new();
    let options = EngineOptions {
        move_wait: Duration::from_secs(2),
        ..EngineOptions::default()
    };
    let engine = Arc::new(d.open_with(&[CN, SG], &rule("default", ""), options).await);
    engine.add_subject(&sid("dave"), jur("CN")).await.unwrap();
    put(&engine, "dave", "profile", "x", b"one").await.unwrap();
    let t = token(&engine, "dave");
    let p = engine
        .test_catalog()
        .get_placement(&t, "profile")
        .await
        .unwrap()
        .unwrap();
    let now = now_millis();
    assert!(
        engine
            .test_catalog()
            .begin_move(&t, "profile", p.epoch, &p.regions, now + 60_000, now)
            .await
            .unwrap()
    );

    let writer = {
        let engine = Arc::clone(&engine);
        tokio::spawn(async move { put(&engine, "dave", "profile", "x", b"two").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "a write committed during a move");
    assert_eq!(read(&engine, "dave", "x", None).await.unwrap(), b"one");
    engine
        .test_catalog()
        .abort_move(&t, "profile", p.epoch)
        .await
        .unwrap();
    let receipt = tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(receipt.version, 2);
    assert_eq!(read(&engine, "dave", "x", None).await.unwrap(), b"two");
    drop(Arc::try_unwrap(engine).unwrap());

    // A move that never ends: the write gives up, retryably, and writes nothing.
    let options = EngineOptions {
        move_wait: Duration::from_millis(200),
        ..EngineOptions::default()
    };
    let engine = d.open_with(&[CN, SG], &rule("default", ""), options).await;
    let now = now_millis();
    assert!(
        engine
            .test_catalog()
            .begin_move(&t, "profile", p.epoch, &p.regions, now + 60_000, now)
            .await
            .unwrap()
    );
    let files = d.all_files();
    let start = Instant::now();
    let err = put(&engine, "dave", "profile", "x", b"three")
        .await
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(
        matches!(&err, Error::Busy { category } if category == "profile"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(!err.is_bad_input());
    assert_eq!(d.all_files(), files);
    let err = engine.delete(&sid("dave"), &key("x")).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(read(&engine, "dave", "x", None).await.unwrap(), b"two");
    // Other categories are not held by the move.
    put(&engine, "dave", "media", "y", b"free").await.unwrap();
    engine
        .test_catalog()
        .abort_move(&t, "profile", p.epoch)
        .await
        .unwrap();
    assert_eq!(
        put(&engine, "dave", "profile", "x", b"three")
            .await
            .unwrap()
            .version,
        3
    );
    assert_clean(&engine).await;
}

/// A body that yields its first bytes, then waits for a gate before the
/// rest: the test acts while the write is in flight, between the placement
/// read and the commit.
struct GatedBody {
    first: Option<Vec<u8>>,
    started: Option<tokio::sync::oneshot::Sender<()>>,
    gate: tokio::sync::oneshot::Receiver<()>,
    open: bool,
    rest: std::io::Cursor<Vec<u8>>,
}

impl GatedBody {
    /// The body, a receiver told once its first bytes are read, and the
    /// sender that opens the gate.
    fn new(
        first: Vec<u8>,
        rest: Vec<u8>,
    ) -> (
        Self,
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel();
        let body = GatedBody {
            first: Some(first),
            started: Some(started_tx),
            gate: gate_rx,
            open: false,
            rest: std::io::Cursor::new(rest),
        };
        (body, started_rx, gate_tx)
    }
}

impl tokio::io::AsyncRead for GatedBody {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            buf.put_slice(&first);
            if let Some(started) = this.started.take() {
                let _ = started.send(());
            }
            return std::task::Poll::Ready(Ok(()));
        }
        if !this.open {
            match std::pin::Pin::new(&mut this.gate).poll(cx) {
                std::task::Poll::Pending => return std::task::Poll::Pending,
                std::task::Poll::Ready(_) => this.open = true,
            }
        }
        std::pin::Pin::new(&mut this.rest).poll_read(cx, buf)
    }
}

/// Starts a put of `first ++ rest` for (subject, profile, name) and returns
/// once its first bytes are read (its placement is fixed by then).
async fn start_gated_put(
    engine: &Arc<Engine>,
    subject: &str,
    name: &str,
    first: Vec<u8>,
    rest: Vec<u8>,
) -> (
    tokio::task::JoinHandle<Result<PutReceipt, Error>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (body, started, gate) = GatedBody::new(first, rest);
    let engine = Arc::clone(engine);
    let (subject, name) = (sid(subject), key(name));
    let handle = tokio::spawn(async move {
        engine
            .put(
                &subject,
                &cat("profile"),
                &name,
                &ObjectMeta::default(),
                body,
            )
            .await
    });
    started.await.unwrap();
    (handle, gate)
}

/// Moves a placement to `to` in the catalog only (keeping its data key), as
/// a migration worker would once its copies are made.
async fn move_placement(engine: &Engine, token: &str, category: &str, to: &[String]) -> i64 {
    let p = engine
        .test_catalog()
        .get_placement(token, category)
        .await
        .unwrap()
        .unwrap();
    let now = now_millis();
    assert!(
        engine
            .test_catalog()
            .begin_move(token, category, p.epoch, to, now + 60_000, now)
            .await
            .unwrap()
    );
    let fence = domicile_catalog::Fence {
        token: token.to_string(),
        category: category.to_string(),
        epoch: p.epoch,
        policy: engine.acting().version,
    };
    let ledger = domicile_catalog::LedgerAppend {
        kind: "move".into(),
        subject: Some(token.to_string()),
        body: serde_json::json!({"category": category, "from": p.regions, "to": to}),
        at: now,
        actor: "cli:test".into(),
    };
    engine
        .test_catalog()
        .commit_move(&fence, to, &p.custodian, &p.wrapped_key, ledger)
        .await
        .unwrap()
        .epoch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_fenced_by_a_committed_move_follows_the_new_placement() {
    let d = Deployment::new();
    let engine = Arc::new(d.open(&[CN, SG], &rule("default", "")).await);
    engine.add_subject(&sid("mia"), jur("CN")).await.unwrap();
    let t = token(&engine, "mia");
    let body = pattern(200_000, 9);
    let (handle, gate) = start_gated_put(
        &engine,
        "mia",
        "doc",
        body[..1000].to_vec(),
        body[1000..].to_vec(),
    )
    .await;
    // The write holds the placement it read; the placement moves meanwhile.
    let p = engine
        .test_catalog()
        .get_placement(&t, "profile")
        .await
        .unwrap()
        .unwrap();
    let from = p.regions[0].clone();
    let to = if from == "cn" { "sg" } else { "cn" }.to_string();
    assert_eq!(
        move_placement(&engine, &t, "profile", std::slice::from_ref(&to)).await,
        2
    );
    gate.send(()).unwrap();
    let receipt = handle.await.unwrap().unwrap();
    assert_eq!(receipt.regions, vec![to.clone()]);
    assert_eq!(receipt.version, 1);
    assert_eq!(read(&engine, "mia", "doc", None).await.unwrap(), body);
    assert_eq!(d.files_of(&to, &t).len(), 1);
    // The copy left in the old placement was never committed there, so no
    // read can have it open: it is due at once, whatever the grace period.
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    assert!(
        d.files_of(&from, &t).is_empty(),
        "the copy written to the old placement stayed behind"
    );
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_fenced_by_a_move_that_outlasts_the_wait_leaves_no_blob() {
    let d = Deployment::new();
    let options = EngineOptions {
        move_wait: Duration::from_millis(200),
        ..EngineOptions::default()
    };
    let engine = Arc::new(d.open_with(&[CN, SG], &rule("default", ""), options).await);
    engine.add_subject(&sid("noah"), jur("CN")).await.unwrap();
    put(&engine, "noah", "profile", "doc", b"v1").await.unwrap();
    let t = token(&engine, "noah");
    let files = d.all_files();
    let (handle, gate) =
        start_gated_put(&engine, "noah", "doc", vec![7; 1000], vec![8; 5000]).await;
    let p = engine
        .test_catalog()
        .get_placement(&t, "profile")
        .await
        .unwrap()
        .unwrap();
    let now = now_millis();
    assert!(
        engine
            .test_catalog()
            .begin_move(&t, "profile", p.epoch, &p.regions, now + 60_000, now)
            .await
            .unwrap()
    );
    gate.send(()).unwrap();
    let err = handle.await.unwrap().unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    // A blob never committed is due at once, whatever the grace period.
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    assert_eq!(
        d.all_files(),
        files,
        "the fenced write left its blob behind"
    );
    engine
        .test_catalog()
        .abort_move(&t, "profile", p.epoch)
        .await
        .unwrap();
    assert_eq!(read(&engine, "noah", "doc", None).await.unwrap(), b"v1");
    assert_clean(&engine).await;
}

// ---------------------------------------------------------------------------
// 8. Erasure
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_every_copy_and_shreds_the_keys() {
    let d = Deployment::new();
    let regions = [CN, SG];
    let engine = d.open(&regions, &two_copies_rules()).await;
    for s in ["erin", "frank"] {
        engine.add_subject(&sid(s), jur("CN")).await.unwrap();
        for c in ["profile", "media"] {
            for i in 0..3 {
                put(
                    &engine,
                    s,
                    c,
                    &format!("{c}/{i}"),
                    &pattern(1000 * i, i as u64),
                )
                .await
                .unwrap();
            }
        }
    }
    // An overwritten version too, still within its grace period.
    put(&engine, "erin", "profile", "profile/0", b"newer")
        .await
        .unwrap();
    let t = token(&engine, "erin");
    for r in ["cn", "sg"] {
        assert_eq!(d.files_of(r, &t).len(), 7);
    }
    let frank_files = (
        d.files_of("cn", &token(&engine, "frank")),
        d.files_of("sg", &token(&engine, "frank")),
    );

    let report = engine.erase_subject(&sid("erin")).await.unwrap();
    assert_eq!(report.placements, 2);
    assert_eq!(report.objects, 6);
    // Every file of the subject in both regions, the replaced version's too:
    // an erasure does not wait for a grace period.
    assert_eq!(report.copies_deleted, 14);
    for (region, files) in d.all_files() {
        assert!(
            !files.iter().any(|f| f.to_string_lossy().contains(&t)),
            "{region} still holds erin's blobs"
        );
    }
    assert!(matches!(
        read(&engine, "erin", "profile/1", None).await,
        Err(Error::NotRegistered)
    ));
    assert!(matches!(
        engine.list(&sid("erin")).await,
        Err(Error::NotRegistered)
    ));
    let kinds = subject_ledger_kinds(&engine, "erin").await;
    assert_eq!(kinds.first().map(String::as_str), Some("subject"));
    assert_eq!(kinds.last().map(String::as_str), Some("erasure"));
    assert!(
        engine
            .test_catalog()
            .placements_of(&t)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        engine
            .test_catalog()
            .objects_of(&t, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        engine
            .test_catalog()
            .get_subject(&t)
            .await
            .unwrap()
            .is_none()
    );

    // The other subject is untouched.
    let frank = token(&engine, "frank");
    assert_eq!(
        (d.files_of("cn", &frank), d.files_of("sg", &frank)),
        frank_files
    );
    assert_eq!(
        read(&engine, "frank", "media/2", None).await.unwrap(),
        pattern(2000, 2)
    );
    assert_clean(&engine).await;

    // Erased means gone: a second erasure is refused, and re-registering
    // starts from nothing.
    assert!(matches!(
        engine.erase_subject(&sid("erin")).await,
        Err(Error::NotRegistered)
    ));
    engine.add_subject(&sid("erin"), jur("CN")).await.unwrap();
    assert!(engine.list(&sid("erin")).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// 9. Concurrent writers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_the_last_acknowledged_version_and_leak_nothing() {
    const TASKS: usize = 8;
    const PUTS: usize = 30;
    const SUBJECTS: usize = 4;
    const NAMES: usize = 3;
    let d = Deployment::new();
    let engine = Arc::new(d.open_with(&[CN], &all_in_cn(), collect_at_once()).await);
    for s in 0..SUBJECTS {
        engine
            .add_subject(&sid(&format!("s{s}")), jur("CN"))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let engine = Arc::clone(&engine);
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..PUTS {
                let subject = format!("s{}", (t + i) % SUBJECTS);
                let name = format!("n{}", (t * 7 + i) % NAMES);
                let body = format!("task {t} seq {i} ").repeat(1 + (t * PUTS + i) % 50);
                let r = put(&engine, &subject, "profile", &name, body.as_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("task {t} put {i}: {e}"));
                acks.push((subject, name, r.version, body));
            }
            acks
        }));
    }
    let mut by_name: BTreeMap<(String, String), Vec<(i64, String)>> = BTreeMap::new();
    for task in tasks {
        for (subject, name, version, body) in task.await.unwrap() {
            by_name
                .entry((subject, name))
                .or_default()
                .push((version, body));
        }
    }
    assert_eq!(by_name.len(), SUBJECTS * NAMES);
    let mut writes = 0;
    for ((subject, name), acks) in &mut by_name {
        acks.sort();
        writes += acks.len();
        let versions: Vec<i64> = acks.iter().map(|(v, _)| *v).collect();
        let expected: Vec<i64> = (1..=acks.len() as i64).collect();
        assert_eq!(
            versions, expected,
            "{subject}/{name}: each acknowledged write has its own version"
        );
        let (last_version, last_body) = acks.last().unwrap();
        let info = engine.head(&sid(subject), &key(name)).await.unwrap();
        assert_eq!(info.version, *last_version);
        assert_eq!(
            read(&engine, subject, name, None).await.unwrap(),
            last_body.as_bytes(),
            "{subject}/{name}"
        );
    }
    assert_eq!(writes, TASKS * PUTS);

    // Every replaced blob was queued (no writer collected one), and one
    // pass collects them all.
    let mut live = 0;
    for s in 0..SUBJECTS {
        live += engine.list(&sid(&format!("s{s}"))).await.unwrap().len();
    }
    assert_eq!(live, SUBJECTS * NAMES);
    let replaced = writes - live;
    assert_eq!(
        engine.test_catalog().garbage(1_000).await.unwrap().len(),
        replaced
    );
    assert_eq!(d.files("cn").len(), writes, "a writer collected");
    let gc = engine.collect_garbage().await.unwrap();
    assert_eq!((gc.blobs, gc.failures), (replaced as u64, 0));
    assert!(engine.test_catalog().garbage(100).await.unwrap().is_empty());
    assert_eq!(d.files("cn").len(), live, "blob files leaked");
    let gc = engine.collect_garbage().await.unwrap();
    assert_eq!((gc.blobs, gc.failures), (0, 0));
    assert_clean(&engine).await;
}

/// Group commit: many writes in flight at once are committed in batches
/// (fewer batches than writes), and each write is answered with its own
/// item's result: its own version, its own refusal. Of the writers racing
/// with `If-None-Match: *` on one name exactly one commits, the others are
/// refused and leave no blob; a name written by several writers at once
/// has one version per acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_committed_in_batches_each_answered_with_its_own_result() {
    use domicile_engine::Precondition;
    const DISTINCT: usize = 48;
    const RACERS: usize = 16;
    const SAME: usize = 16;
    let d = Deployment::new();
    let engine = Arc::new(d.open_with(&[CN], &all_in_cn(), collect_at_once()).await);
    engine.add_subject(&sid("s0"), jur("CN")).await.unwrap();
    let (batches_before, items_before) = engine.test_commit_batches();
    let barrier = Arc::new(tokio::sync::Barrier::new(DISTINCT + RACERS + SAME));
    let mut tasks = Vec::new();
    for i in 0..DISTINCT + RACERS + SAME {
        let engine = Arc::clone(&engine);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let (name, condition) = if i < DISTINCT {
                (format!("own-{i}"), Precondition::Any)
            } else if i < DISTINCT + RACERS {
                ("raced".to_string(), Precondition::Absent)
            } else {
                ("shared".to_string(), Precondition::Any)
            };
            let body = format!("writer {i}").into_bytes();
            barrier.wait().await;
            let r = engine
                .put_if(
                    &sid("s0"),
                    &cat("profile"),
                    &key(&name),
                    &ObjectMeta::default(),
                    body.as_slice(),
                    &condition,
                )
                .await;
            (i, name, body, r)
        }));
    }
    let mut raced_winners = Vec::new();
    let mut shared_versions = Vec::new();
    for task in tasks {
        let (i, name, body, r) = task.await.unwrap();
        match (i, r) {
            (i, Ok(receipt)) if i < DISTINCT => {
                assert_eq!(receipt.version, 1, "{name}");
                assert_eq!(receipt.size, body.len() as u64, "{name}: its own size");
                assert_eq!(read(&engine, "s0", &name, None).await.unwrap(), body);
            }
            (i, Ok(receipt)) if i < DISTINCT + RACERS => raced_winners.push((receipt, body)),
            (i, Err(Error::PreconditionFailed(_)))
                if (DISTINCT..DISTINCT + RACERS).contains(&i) => {}
            (_, Ok(receipt)) => shared_versions.push(receipt.version),
            (i, Err(e)) => panic!("writer {i} ({name}): {e}"),
        }
    }
    assert_eq!(
        raced_winners.len(),
        1,
        "exactly one conditional writer wins"
    );
    let (winner, body) = raced_winners.pop().unwrap();
    assert_eq!(winner.version, 1);
    assert_eq!(read(&engine, "s0", "raced", None).await.unwrap(), body);
    shared_versions.sort();
    assert_eq!(
        shared_versions,
        (1..=SAME as i64).collect::<Vec<_>>(),
        "each write of one name has its own version"
    );
    let (batches, items) = engine.test_commit_batches();
    let (batches, items) = (batches - batches_before, items - items_before);
    // Racers refused before writing (the winner already committed) never
    // reach the queue.
    assert!(
        (DISTINCT + 1 + SAME..=DISTINCT + RACERS + SAME).contains(&(items as usize)),
        "{items} commits went through the queue"
    );
    assert!(
        batches < items,
        "{items} concurrent commits took {batches} batches: none were grouped"
    );
    // The refused racers' blobs were queued, due at once: a pass leaves
    // exactly the committed objects' blobs.
    engine.collect_garbage().await.unwrap();
    assert_eq!(
        d.files("cn").len(),
        DISTINCT + 2,
        "a refused writer left a blob"
    );
    assert_clean(&engine).await;
}

// ---------------------------------------------------------------------------
// 10. verify
// ---------------------------------------------------------------------------

/// A clean deployment with two subjects' objects in cn.
async fn verify_setup(d: &Deployment, regions: &[RegionDef], rules: &str) -> Engine {
    let engine = d.open(regions, rules).await;
    for s in ["gina", "hank"] {
        engine.add_subject(&sid(s), jur("CN")).await.unwrap();
        for i in 0..3 {
            put(
                &engine,
                s,
                "profile",
                &format!("f{i}"),
                &pattern(3000 + i, i as u64),
            )
            .await
            .unwrap();
        }
    }
    let report = engine.verify(true).await.unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.objects_indexed, 6);
    assert_eq!(report.blobs_scanned, 6);
    assert_eq!(report.copies_checked, 6);
    assert_eq!(report.checksums_verified, 6);
    engine
}

/// One blob file of gina's, with its absolute path.
fn a_blob_of(d: &Deployment, engine: &Engine, region: &str) -> (PathBuf, PathBuf) {
    let rel = d
        .files_of(region, &token(engine, "gina"))
        .into_iter()
        .next()
        .unwrap();
    (d.region_dir(region).join(&rel), rel)
}

fn blob_id(rel: &Path) -> String {
    rel.file_name().unwrap().to_string_lossy().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_missing_copy() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    let (abs, rel) = a_blob_of(&d, &engine, "cn");
    std::fs::remove_file(abs).unwrap();
    let problems = engine.verify(true).await.unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].kind, "missing");
    assert_eq!(problems[0].region, "cn");
    assert_eq!(problems[0].blob, blob_id(&rel));
    assert_eq!(problems[0].subject, token(&engine, "gina"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_flipped_bit() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    let (abs, rel) = a_blob_of(&d, &engine, "cn");
    let mut bytes = std::fs::read(&abs).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&abs, bytes).unwrap();
    // Sizes alone do not see it.
    assert!(engine.verify(false).await.unwrap().problems.is_empty());
    let problems = engine.verify(true).await.unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].kind, "checksum");
    assert_eq!(problems[0].blob, blob_id(&rel));
    // And the engine refuses to serve the tampered bytes.
    let mut failed = 0;
    for i in 0..3 {
        if read(&engine, "gina", &format!("f{i}"), None).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_an_orphan_blob() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    let (abs, rel) = a_blob_of(&d, &engine, "cn");
    let orphan_id = domicile_store::layout::new_blob_id().unwrap();
    std::fs::copy(&abs, abs.with_file_name(&orphan_id)).unwrap();
    let problems = engine.verify(true).await.unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].kind, "orphan");
    assert_eq!(problems[0].blob, orphan_id);
    assert_ne!(problems[0].blob, blob_id(&rel));
    assert_eq!(problems[0].subject, token(&engine, "gina"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_a_foreign_file() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    std::fs::write(d.region_dir("cn").join("notes.txt"), b"not ours").unwrap();
    let problems = engine.verify(true).await.unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].kind, "foreign");
    assert!(problems[0].detail.contains("notes.txt"), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_copies_in_a_region_the_policy_now_forbids() {
    let d = Deployment::new();
    let regions = [CN, SG];
    let engine = verify_setup(&d, &regions, &all_in_cn()).await;
    drop(engine);
    let engine = d.open(&regions, &rule("no-china", "deny = [\"CN\"]")).await;
    let problems = engine.verify(true).await.unwrap().problems;
    assert_eq!(problems.len(), 6, "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.kind == "forbidden" && p.region == "cn"),
        "{problems:#?}"
    );
    // The same deployment under a policy that allows it again is clean.
    drop(engine);
    let engine = d.open(&regions, &all_in_cn()).await;
    assert_clean(&engine).await;
}

// ---------------------------------------------------------------------------
// 11. Plan
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_moves_exactly_the_subjects_the_new_policy_forbids() {
    let d = Deployment::new();
    let regions = [CN, SG, US];
    let engine = d.open(&regions, &all_in_cn()).await;
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    let mut objects = 0u64;
    let homes = [
        ("in-a", "IN", 2),
        ("in-b", "IN", 2),
        ("in-c", "IN", 1),
        ("cn-a", "CN", 2),
        ("cn-b", "CN", 1),
        ("us-a", "US", 2),
    ];
    for (i, (s, home, categories)) in homes.iter().enumerate() {
        engine.add_subject(&sid(s), jur(home)).await.unwrap();
        for c in ["profile", "media"].iter().take(*categories) {
            for k in 0..2 {
                put(
                    &engine,
                    s,
                    c,
                    &format!("{c}-{k}"),
                    &pattern(10_000 * (i + 1) + k, k as u64),
                )
                .await
                .unwrap();
            }
            if *home == "IN" {
                pairs.insert((token(&engine, s), c.to_string()));
                objects += 2;
            }
        }
    }
    // Registered, but without data: nothing to move.
    engine
        .add_subject(&sid("in-idle"), jur("IN"))
        .await
        .unwrap();
    assert_eq!(d.files("sg").len() + d.files("us").len(), 0);

    let in_tokens: Vec<String> = ["in-a", "in-b", "in-c"]
        .iter()
        .map(|s| token(&engine, s))
        .collect();
    let stored: u64 = in_tokens
        .iter()
        .map(|t| d.size_of("cn", &d.files_of("cn", t)))
        .sum();

    let desired = d.config(
        &regions,
        &(rule("default", r#"allow = ["*"]"#)
            + &rule("india-out-of-china", "homes = [\"IN\"]\ndeny = [\"CN\"]")),
    );
    let mut moves = Vec::new();
    let summary = engine.plan(&desired, |m| moves.push(m)).await.unwrap();

    assert_eq!(moves.len(), pairs.len(), "{moves:#?}");
    let moved: BTreeSet<(String, String)> = moves
        .iter()
        .map(|m| (m.token.clone(), m.category.clone()))
        .collect();
    assert_eq!(moved, pairs);
    for m in &moves {
        assert_eq!(m.home, jur("IN"));
        assert_eq!(
            m.from.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            vec!["cn".to_string()]
        );
        assert!(!m.to.iter().any(|r| r.as_str() == "cn"), "{m:?}");
        let files: BTreeSet<PathBuf> = d
            .files_of("cn", &m.token)
            .into_iter()
            .filter(|f| f.components().any(|c| c.as_os_str() == m.category.as_str()))
            .collect();
        assert_eq!(m.objects, files.len() as u64);
        assert_eq!(m.bytes, d.size_of("cn", &files));
    }
    assert_eq!(moves.iter().map(|m| m.bytes).sum::<u64>(), stored);
    assert_eq!(summary.totals.units, pairs.len() as u64);
    assert_eq!(summary.totals.bytes, stored);
    assert_eq!(summary.totals.objects, objects);
    assert_eq!(summary.totals.subjects, 3);
    assert_eq!(summary.subjects_seen, 6);

    // A plan against the current policy moves nothing.
    let same = d.config(&regions, &all_in_cn());
    let mut none = 0;
    let summary = engine.plan(&same, |_| none += 1).await.unwrap();
    assert_eq!(none, 0);
    assert_eq!(summary.totals.units, 0);
    // Planning changes nothing.
    assert_eq!(d.files("sg").len() + d.files("us").len(), 0);
    assert_clean(&engine).await;
}

// ---------------------------------------------------------------------------
// 12. Demands
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_report_the_level_of_reach_and_are_ledgered() {
    let d = Deployment::new();
    let regions = [CN, SG];
    let rules = rule("default", "")
        + &rule_with_custodian(
            "singapore",
            "homes = [\"SG\"]\nallow = [\"sg\"]\ncustodian = \"sg-kms\"",
        )
        + &rule_with_custodian(
            "india",
            "homes = [\"IN\"]\nallow = [\"sg\"]\ncustodian = \"in-kms\"",
        );
    let engine = d.open(&regions, &rules).await;
    engine.add_subject(&sid("sara"), jur("SG")).await.unwrap();
    engine.add_subject(&sid("ishan"), jur("IN")).await.unwrap();
    for s in ["sara", "ishan"] {
        let r = put(&engine, s, "profile", "p", b"data").await.unwrap();
        assert_eq!(r.regions, vec!["sg".to_string()]);
    }

    let cases = [
        // Copy in SG, key held in SG: both in reach.
        ("SG", "sara", Level::Plaintext),
        // Copy in SG, key held in IN: the copy only.
        ("SG", "ishan", Level::Ciphertext),
        // The sg provider is headquartered in the US; the key is not.
        ("US", "ishan", Level::Ciphertext),
        // The key is in IN, but no copy is.
        ("IN", "ishan", Level::None),
        // Nothing in reach.
        ("FR", "sara", Level::None),
        ("CN", "sara", Level::None),
    ];
    for (authority, subject, level) in cases {
        let entries = ledger_count(&engine).await;
        let report = engine.demand(jur(authority), &sid(subject)).await.unwrap();
        assert_eq!(
            report.level, level,
            "{authority} over {subject}: {report:#?}"
        );
        assert_eq!(report.copies.len(), 1);
        assert_eq!(report.copies[0].region, "sg");
        assert_eq!(report.copies[0].level, level);
        assert_eq!(report.copies[0].objects, 1);
        assert!(!report.assumption.is_empty());
        assert_eq!(ledger_count(&engine).await, entries + 1);
        let all = engine
            .test_catalog()
            .ledger_page(report.ledger_seq - 1, 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 1, "the demand is the newest entry");
        let entry = &all[0];
        assert_eq!(entry.seq, report.ledger_seq);
        assert_eq!(entry.kind, "demand");
        assert_eq!(
            entry.subject.as_deref(),
            Some(token(&engine, subject).as_str())
        );
        assert!(entry.body.contains(level.as_str()), "{}", entry.body);
        assert!(!entry.body.contains(subject), "subject id in the ledger");
    }
    let kinds = ledger_kinds(&engine).await;
    assert_eq!(kinds.iter().filter(|k| *k == "demand").count(), cases.len());
    assert!(matches!(
        engine.demand(jur("SG"), &sid("nobody")).await,
        Err(Error::NotRegistered)
    ));
    assert_eq!(
        ledger_kinds(&engine).await.len(),
        kinds.len(),
        "a refused demand is not ledgered"
    );
    assert_clean(&engine).await;
}

/// A staging file a killed writer left (`name#N`, hidden from listings)
/// holds ciphertext: `verify` reports an old one as "staging", a young one
/// may be a write in progress and is left alone, and erasing its subject
/// removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_old_staging_files_and_erasure_removes_them_and_anything_foreign() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    let t = token(&engine, "gina");
    let staging =
        d.region_dir("cn")
            .join(format!("v1/{}/{t}/profile/{}#3", &t[..2], "ab".repeat(16)));
    std::fs::write(&staging, b"half a blob").unwrap();
    assert!(
        engine.verify(true).await.unwrap().problems.is_empty(),
        "a young staging file may be a write in progress"
    );
    let aged = std::process::Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&staging)
        .status()
        .unwrap();
    assert!(aged.success());
    let problems = engine.verify(true).await.unwrap().problems;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].kind, "staging");
    assert!(problems[0].detail.contains("#3"), "{problems:#?}");

    // Something foreign under the subject's prefix goes with it too.
    let foreign = d
        .region_dir("cn")
        .join(format!("v1/{}/{t}/notes/not-a-blob", &t[..2]));
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::write(&foreign, b"x").unwrap();

    engine.erase_subject(&sid("gina")).await.unwrap();
    assert!(!staging.exists(), "erasure left the subject's staging file");
    assert!(
        !foreign.exists(),
        "erasure left a foreign object of the subject"
    );
    assert!(
        !d.region_dir("cn")
            .join(format!("v1/{}/{t}", &t[..2]))
            .exists(),
        "erasure left the subject's folder"
    );
    assert!(engine.verify(true).await.unwrap().problems.is_empty());
}

/// A writer that dies between storing its blob and committing it (a killed
/// server) leaves a complete blob no index row points at. Its write intent,
/// recorded before the blob, makes it pending rather than an orphan; the
/// collector leaves it alone until the intent is due, then deletes it. So
/// too for a writer killed before renaming its staged copy into place. A
/// put that commits, or that fails on bad input, leaves no intent behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_writer_died_before_its_commit_is_pending_then_collected() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    let catalog = engine.test_catalog().clone();
    assert!(
        catalog.garbage(10).await.unwrap().is_empty(),
        "committed puts leave no intent"
    );
    // A client that drops the connection half-way through its body.
    let err = engine
        .put(
            &sid("gina"),
            &cat("profile"),
            &key("cut"),
            &ObjectMeta::default(),
            CutBody(3),
        )
        .await
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(
        catalog.garbage(10).await.unwrap().is_empty(),
        "a refused put leaves no intent"
    );

    // What the dead writer left: a complete blob (a copy of one of gina's,
    // under a fresh id) that nothing indexes.
    let t = token(&engine, "gina");
    let existing = d.files_of("cn", &t).into_iter().next().unwrap();
    let dead_id = "cd".repeat(16);
    let dead = existing.with_file_name(&dead_id);
    std::fs::copy(
        d.region_dir("cn").join(&existing),
        d.region_dir("cn").join(&dead),
    )
    .unwrap();
    // And another writer, killed before renaming its staged copy into
    // place, an hour ago: ciphertext that no listing shows.
    let staged_id = "ce".repeat(16);
    let staged = existing.with_file_name(format!("{staged_id}#1"));
    std::fs::copy(
        d.region_dir("cn").join(&existing),
        d.region_dir("cn").join(&staged),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(d.region_dir("cn").join(&staged))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let problems = engine.verify(true).await.unwrap().problems;
    let mut kinds: Vec<&str> = problems.iter().map(|p| p.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["orphan", "staging"],
        "without intents: {problems:#?}"
    );

    // With the intents their writers recorded first: pending until due.
    let due = now_millis() + 1500;
    for blob_id in [&dead_id, &staged_id] {
        catalog
            .queue_garbage(&domicile_catalog::GarbageRow::new(
                &t,
                "profile",
                blob_id,
                &["cn".into()],
                due,
            ))
            .await
            .unwrap();
    }
    // (Checked only while the intents are surely not due: a loaded machine
    // may have slept past them.)
    let problems = engine.verify(true).await.unwrap().problems;
    let before = now_millis();
    engine.collect_garbage().await.unwrap();
    if before < due {
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(
            d.region_dir("cn").join(&dead).exists() && d.region_dir("cn").join(&staged).exists(),
            "collected before its writer's time was up"
        );
    }
    while now_millis() <= due {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gc = engine.collect_garbage().await.unwrap();
    if before < due {
        assert_eq!(gc.blobs, 2, "{gc:?}");
    }
    assert!(!d.region_dir("cn").join(&dead).exists());
    assert!(
        !d.region_dir("cn").join(&staged).exists(),
        "the staged copy goes with its blob"
    );
    assert!(catalog.garbage(10).await.unwrap().is_empty());
    assert_clean(&engine).await;
}

/// A server collects now and then by itself: a dead writer's blob and its
/// staged copy go once their intent is due, with no overwrite or deletion
/// to set a pass off; the passes end when the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_collector_takes_what_dead_writers_left_once_due() {
    let d = Deployment::new();
    let engine = Arc::new(verify_setup(&d, &[CN], &all_in_cn()).await);
    let t = token(&engine, "gina");
    let existing = d.files_of("cn", &t).into_iter().next().unwrap();
    let dead_id = "cf".repeat(16);
    let left = [
        existing.with_file_name(&dead_id),
        existing.with_file_name(format!("{dead_id}#1")),
    ];
    for f in &left {
        std::fs::copy(
            d.region_dir("cn").join(&existing),
            d.region_dir("cn").join(f),
        )
        .unwrap();
    }
    let due = now_millis() + 600;
    engine
        .test_catalog()
        .queue_garbage(&domicile_catalog::GarbageRow::new(
            &t,
            "profile",
            &dead_id,
            &["cn".into()],
            due,
        ))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let e = engine.clone();
    let passes = tokio::spawn(async move {
        e.collect_garbage_every(Duration::from_millis(50), async {
            let _ = stopped.await;
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // (Checked only while the intent is surely not due: a slow machine may
    // have slept past it.)
    let present = left.iter().all(|f| d.region_dir("cn").join(f).exists());
    assert!(
        present || now_millis() >= due,
        "collected before its writer's time was up"
    );
    // A pass deletes the files first and finishes the queued row after, so
    // both are awaited: the row may outlive the files for a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while left.iter().any(|f| d.region_dir("cn").join(f).exists())
        || !engine.test_catalog().garbage(10).await.unwrap().is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the periodic passes never collected it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), passes)
        .await
        .expect("the passes end when told to stop")
        .unwrap();
    assert_clean(&engine).await;
}

/// A body that yields a few chunks, then fails like a dropped connection.
struct CutBody(usize);

impl tokio::io::AsyncRead for CutBody {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("connection reset")));
        }
        self.0 -= 1;
        buf.put_slice(&[9u8; 1000]);
        std::task::Poll::Ready(Ok(()))
    }
}

/// Two processes on one catalog: one erases a subject and adds it again
/// (a fresh data key at the same epoch); the other, whose cache still held
/// the erased key, then writes. Its write is encrypted under the new key,
/// so the first process reads it back. Keys are cached by their wrapped
/// form, never by (token, category, epoch).
#[tokio::test]
async fn a_subject_erased_and_added_again_elsewhere_is_never_written_under_its_erased_key() {
    let d = Deployment::new();
    let first = d.open(&[CN, SG], &all_in_cn()).await;
    let second = d.open(&[CN, SG], &all_in_cn()).await;
    first.add_subject(&sid("bob"), jur("CN")).await.unwrap();
    put(&second, "bob", "profile", "profile/a", b"before")
        .await
        .unwrap();

    first.erase_subject(&sid("bob")).await.unwrap();
    first.add_subject(&sid("bob"), jur("CN")).await.unwrap();
    put(&first, "bob", "profile", "profile/b", b"again")
        .await
        .unwrap();
    // `second` still caches the erased key; its write must not use it.
    put(&second, "bob", "profile", "profile/c", b"after")
        .await
        .unwrap();

    assert_eq!(
        read(&first, "bob", "profile/c", None).await.unwrap(),
        b"after"
    );
    assert_eq!(
        read(&second, "bob", "profile/b", None).await.unwrap(),
        b"again"
    );
    assert!(
        read(&first, "bob", "profile/a", None).await.is_err(),
        "erased with bob"
    );
}

// ---------------------------------------------------------------------------
// verify --deep and custodian rotation
// ---------------------------------------------------------------------------

/// Gives an object's index row the checksum of the bytes now stored, as if
/// the catalog had been written with them: only decryption can tell.
async fn index_checksum_as_stored(engine: &Engine, subject: &str, blob: &str, stored: &[u8]) {
    let catalog = engine.test_catalog();
    let token = token(engine, subject);
    let row = catalog
        .objects_of(&token, Some("profile"))
        .await
        .unwrap()
        .into_iter()
        .find(|o| o.blob_id == blob)
        .unwrap();
    let placement = catalog
        .get_placement(&token, "profile")
        .await
        .unwrap()
        .unwrap();
    let fence = domicile_catalog::Fence {
        token: token.clone(),
        category: "profile".into(),
        epoch: placement.epoch,
        policy: catalog.policy_version().await.unwrap(),
    };
    let row = domicile_catalog::ObjectRow {
        checksum: blake3::hash(stored).to_hex().to_string(),
        ..row
    };
    let outcome = catalog.commit_object(&fence, &row, 0).await.unwrap();
    assert!(
        matches!(outcome, domicile_catalog::CommitOutcome::Committed { .. }),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_deep_reports_a_blob_that_matches_its_checksum_but_does_not_decrypt() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    let deep = engine.verify_deep(true).await.unwrap();
    assert!(deep.problems.is_empty(), "{:#?}", deep.problems);
    assert_eq!(deep.objects_decrypted, 6);

    let (abs, rel) = a_blob_of(&d, &engine, "cn");
    let mut bytes = std::fs::read(&abs).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&abs, &bytes).unwrap();
    index_checksum_as_stored(&engine, "gina", &blob_id(&rel), &bytes).await;

    let plain = engine.verify(true).await.unwrap();
    assert!(plain.problems.is_empty(), "{:#?}", plain.problems);
    let deep = engine.verify_deep(true).await.unwrap();
    assert_eq!(deep.problems.len(), 1, "{:#?}", deep.problems);
    let p = &deep.problems[0];
    assert_eq!(p.kind, "undecryptable");
    assert_eq!(p.blob, blob_id(&rel));
    assert_eq!(p.subject, token(&engine, "gina"));
    assert_eq!(p.category, "profile");
    assert_eq!(p.region, "cn");
    assert_eq!(deep.objects_decrypted, 5);
    assert_eq!(deep.objects_unchecked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_deep_reports_a_wrapped_key_that_does_not_open() {
    let d = Deployment::new();
    let engine = verify_setup(&d, &[CN], &all_in_cn()).await;
    let catalog = engine.test_catalog();
    let gina = token(&engine, "gina");
    let p = catalog
        .get_placement(&gina, "profile")
        .await
        .unwrap()
        .unwrap();
    let mut tampered = p.wrapped_key.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let rewrap = domicile_catalog::Rewrap {
        token: gina.clone(),
        category: "profile".into(),
        epoch: p.epoch,
        custodian: p.custodian.clone(),
        old_key: p.wrapped_key.clone(),
        new_key: tampered,
    };
    assert_eq!(
        catalog.rewrap_placements(&[rewrap]).await.unwrap(),
        vec![true]
    );
    let deep = engine.verify_deep(false).await.unwrap();
    assert_eq!(deep.problems.len(), 3, "{:#?}", deep.problems);
    assert!(
        deep.problems
            .iter()
            .all(|p| p.kind == "undecryptable" && p.subject == gina && p.detail.contains("op-kms")),
        "{:#?}",
        deep.problems
    );
}

/// Every placement of `custodian`, read in pages.
async fn placements_of_custodian(
    engine: &Engine,
    custodian: &str,
) -> Vec<domicile_catalog::PlacementRow> {
    let mut out: Vec<domicile_catalog::PlacementRow> = Vec::new();
    loop {
        let after = out.last().map(|p| (p.token.clone(), p.category.clone()));
        let page = engine
            .test_catalog()
            .custodian_placements_page(
                custodian,
                after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
                50,
            )
            .await
            .unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Whether a `file://` wrapped key is under master key `version`.
fn under_master_key(wrapped: &[u8], version: u32) -> bool {
    if version == 1 {
        return wrapped.first() == Some(&1);
    }
    wrapped.first() == Some(&2) && wrapped.get(1..5) == Some(&version.to_be_bytes()[..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_under_concurrent_writes_moves_every_key_and_loses_no_write() {
    let d = Deployment::new();
    let engine = Arc::new(d.open(&[CN], &all_in_cn()).await);
    let mut expected: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for i in 0..40 {
        let s = format!("early{i}");
        engine.add_subject(&sid(&s), jur("CN")).await.unwrap();
        let body = pattern(500 + i, i as u64);
        put(&engine, &s, "profile", "f", &body).await.unwrap();
        expected.insert((s, "f".into()), body);
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let engine = engine.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || i < 5 {
                // New subjects (new placements, new keys) and new objects
                // under placements the rotation is walking.
                let s = format!("w{w}s{i}");
                engine.add_subject(&sid(&s), jur("CN")).await.unwrap();
                let body = pattern(300 + i, 1_000 * w + i as u64);
                put(&engine, &s, "profile", "g", &body).await.unwrap();
                acked.push((s, "g".to_string(), body.clone()));
                let early = format!("early{}", i % 40);
                let name = format!("w{w}-{i}");
                put(&engine, &early, "profile", &name, &body).await.unwrap();
                acked.push((early, name, body));
                i += 1;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let options = domicile_engine::RotateOptions {
        page: 7,
        stop_after: None,
    };
    let report = engine.rotate_custodian("op-kms", &options).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        for (s, name, body) in w.await.unwrap() {
            expected.insert((s, name), body);
        }
    }
    assert!(
        report.complete && report.new_key && !report.resumed,
        "{report:?}"
    );
    assert_eq!(report.key_version, Some(2));
    assert!(report.rewrapped >= 40, "{report:?}");

    let placements = placements_of_custodian(&engine, "op-kms").await;
    assert!(placements.len() > 40);
    for p in &placements {
        assert!(
            under_master_key(&p.wrapped_key, 2),
            "{}/{} is not under master key 2",
            p.token,
            p.category
        );
    }
    let kinds = ledger_kinds(&engine).await;
    assert_eq!(kinds.iter().filter(|k| *k == "rotation").count(), 2);
    let last = engine.ledger_page(0, u32::MAX).await.unwrap();
    let rotation: Vec<_> = last.iter().filter(|e| e.kind == "rotation").collect();
    assert!(
        rotation[0].body.contains("\"start\""),
        "{}",
        rotation[0].body
    );
    assert!(rotation[1].body.contains("\"end\""), "{}", rotation[1].body);
    assert!(rotation[1].body.contains(&report.identity));
    drop(engine);

    // The old master key moved away: everything opens under the new one,
    // and the custodian is the one the catalog recorded.
    let keys = d.base().join("data/keys/op-kms");
    std::fs::rename(
        keys.join("master-v1.key"),
        d.base().join("master-v1.key.old"),
    )
    .unwrap();
    let engine = d.open(&[CN], &all_in_cn()).await;
    for ((s, name), body) in &expected {
        assert_eq!(
            &read(&engine, s, name, None).await.unwrap(),
            body,
            "{s}/{name}"
        );
    }
    let deep = engine.verify_deep(true).await.unwrap();
    assert!(deep.problems.is_empty(), "{:#?}", deep.problems);
    assert_eq!(deep.objects_decrypted, expected.len() as u64);
    put(&engine, "early0", "profile", "after", b"after")
        .await
        .unwrap();
    assert_eq!(
        read(&engine, "early0", "after", None).await.unwrap(),
        b"after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rotation_finishes_when_run_again() {
    let d = Deployment::new();
    let engine = d.open(&[CN], &all_in_cn()).await;
    for i in 0..12 {
        let s = format!("s{i}");
        engine.add_subject(&sid(&s), jur("CN")).await.unwrap();
        put(&engine, &s, "profile", "f", &pattern(100, i))
            .await
            .unwrap();
    }
    let stopped = engine
        .rotate_custodian(
            "op-kms",
            &domicile_engine::RotateOptions {
                page: 4,
                stop_after: Some(5),
            },
        )
        .await
        .unwrap();
    assert!(!stopped.complete);
    assert_eq!(stopped.rewrapped, 5);
    let placements = placements_of_custodian(&engine, "op-kms").await;
    assert_eq!(
        placements
            .iter()
            .filter(|p| under_master_key(&p.wrapped_key, 2))
            .count(),
        5
    );
    drop(engine);

    // Another process finishes it: the same version, not a third one.
    let engine = d.open(&[CN], &all_in_cn()).await;
    let finished = engine
        .rotate_custodian("op-kms", &domicile_engine::RotateOptions::default())
        .await
        .unwrap();
    assert!(
        finished.complete && finished.resumed && !finished.new_key,
        "{finished:?}"
    );
    assert_eq!(finished.key_version, Some(2));
    assert_eq!(finished.rewrapped, 7);
    assert_eq!(finished.current, 5);
    assert!(!d.base().join("data/keys/op-kms/master-v3.key").exists());
    for p in placements_of_custodian(&engine, "op-kms").await {
        assert!(under_master_key(&p.wrapped_key, 2));
    }
    let kinds = ledger_kinds(&engine).await;
    assert_eq!(kinds.iter().filter(|k| *k == "rotation").count(), 3);
    drop(engine);
    let keys = d.base().join("data/keys/op-kms");
    std::fs::rename(keys.join("master-v1.key"), d.base().join("v1.old")).unwrap();
    let engine = d.open(&[CN], &all_in_cn()).await;
    for i in 0..12 {
        assert_eq!(
            read(&engine, &format!("s{i}"), "f", None).await.unwrap(),
            pattern(100, i)
        );
    }
}
