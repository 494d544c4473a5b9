//! Objects composed of parts (`Engine::complete_upload`), against real
//! folders and an SQLite catalog in a temporary directory:
//!
//! - completion writes no part again: the parts' blobs stay as they are,
//!   and the object adds one empty blob;
//! - reads and range reads across part boundaries give the parts' bytes;
//! - an overwrite or a delete releases every part blob to the collector;
//! - an upload left incomplete expires in the collection passes, and a
//!   completed one does not;
//! - a migration moves every part blob (copied as it is, or written again
//!   under a new custodian's key), and erasure leaves none;
//! - `verify` (with checksums) and `verify --deep` stay clean throughout.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use domicile_core::Config;
use domicile_engine::{
    Engine, EngineOptions, GcOptions, Manifest, ManifestPart, MigrateOptions, ObjectMeta, Secrets,
};
use domicile_test_support::engine::{cat, jur, key, put, sid, token};
use domicile_test_support::files::walk;
use domicile_test_support::rng::bytes_of;
use futures::TryStreamExt;

const SUBJECT: &str = "zq-mp";
const CATEGORY: &str = "media";
const NAME: &str = "b/video.bin";
const UPLOAD: &str = "0123456789abcdef0123456789abcdef";

fn config_text(rules: &str) -> String {
    let mut text = String::from(
        r#"
[operator]
name = "Test"
headquarters = "CN"

[catalog]
url = "sqlite://data/catalog.db"
"#,
    );
    for (id, j) in [("cn", "CN"), ("sg", "SG")] {
        text += &format!(
            r#"
[[region]]
id = "{id}"
jurisdiction = "{j}"
provider = "p-{id}"
provider_headquarters = "{j}"
store = "file://data/regions/{id}"
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
"#;
    text + rules
}

/// Everything in China.
const V1: &str = "\n[[rule]]\nname = \"cn\"\nallow = [\"cn\"]\ncustodian = \"op-kms\"\n";

/// India's data leaves China; with `custodian`, its keys move too.
fn v2(custodian: &str) -> String {
    format!(
        "\n[[rule]]\nname = \"default\"\ncustodian = \"op-kms\"\n\n[[rule]]\nname = \"in\"\nhomes = [\"IN\"]\ndeny = [\"CN\"]\ncustodian = \"{custodian}\"\n"
    )
}

struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        Deployment {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn open(&self, rules: &str, gc: GcOptions) -> Engine {
        let text = config_text(rules);
        let config = Config::parse("test.toml", &text, self.dir.path()).unwrap();
        let engine = Engine::open_with(
            config.clone(),
            Secrets::empty(),
            EngineOptions {
                gc,
                ..EngineOptions::default()
            },
        )
        .await
        .unwrap();
        engine.apply_policy(&config).await.unwrap();
        engine
    }

    /// The blob files of the test subject in a region.
    fn files(&self, region: &str, token: &str) -> BTreeSet<PathBuf> {
        let root = self.dir.path().join("data/regions").join(region);
        let mut out = BTreeSet::new();
        walk(&root, &root, &mut out);
        out.into_iter()
            .filter(|p| p.components().any(|c| c.as_os_str() == token))
            .collect()
    }
}

fn no_grace() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

fn dir() -> String {
    format!("b/.domicile-mpu/{UPLOAD}/")
}

/// Stages `parts` as an upload's parts and begins it. Returns the
/// manifest that completes it with all of them.
async fn stage(engine: &Engine, parts: &[Vec<u8>]) -> Manifest {
    let mut listed = Vec::new();
    for (i, body) in parts.iter().enumerate() {
        let n = i as u32 + 1;
        let name = domicile_engine::multipart::part_name(&dir(), n);
        put(engine, SUBJECT, CATEGORY, &name, body).await.unwrap();
        let info = engine.head(&sid(SUBJECT), &key(&name)).await.unwrap();
        listed.push(ManifestPart {
            n,
            size: body.len() as u64,
            version: info.version,
        });
    }
    engine
        .begin_upload(&sid(SUBJECT), &cat(CATEGORY), UPLOAD)
        .await
        .unwrap();
    Manifest {
        upload: UPLOAD.into(),
        dir: dir(),
        parts: listed,
    }
}

async fn complete(engine: &Engine, manifest: Manifest) {
    let meta = ObjectMeta {
        etag: Some("abc-3".into()),
        ..ObjectMeta::default()
    };
    let r = engine
        .complete_upload(&sid(SUBJECT), &cat(CATEGORY), &key(NAME), &meta, manifest)
        .await
        .unwrap();
    assert!(r.size > 0);
}

async fn read(engine: &Engine, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let (_, stream) = engine.get(&sid(SUBJECT), &key(NAME), range).await.unwrap();
    let pieces: Vec<Bytes> = stream.try_collect().await.unwrap();
    pieces.concat()
}

async fn assert_clean(engine: &Engine) {
    let report = engine.verify_deep(true).await.unwrap();
    assert!(
        report.problems.is_empty(),
        "verify found problems: {:#?}",
        report.problems
    );
    let violations = engine.violations().await.unwrap();
    assert!(violations.is_empty(), "violations: {violations:#?}");
}

fn parts() -> Vec<Vec<u8>> {
    vec![bytes_of(1, 200_000), bytes_of(2, 131_073), bytes_of(3, 17)]
}

async fn registered(d: &Deployment, rules: &str, gc: GcOptions) -> Engine {
    let engine = d.open(rules, gc).await;
    engine
        .add_subjects(&[(sid(SUBJECT), jur("IN"))])
        .await
        .unwrap();
    engine
}

/// Runs collection passes until nothing is due (twice: a sweep queues the
/// blobs of the objects it deletes).
async fn collect(engine: &Engine) {
    for _ in 0..2 {
        engine.collect_all_due().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_writes_no_part_again_and_reads_span_the_parts() {
    let d = Deployment::new();
    let engine = registered(&d, V1, no_grace()).await;
    let parts = parts();
    let whole = parts.concat();
    let manifest = stage(&engine, &parts).await;
    let tok = token(&engine, SUBJECT);
    let staged = d.files("cn", &tok);
    assert_eq!(staged.len(), 3);
    complete(&engine, manifest).await;
    let after = d.files("cn", &tok);
    assert!(
        staged.is_subset(&after),
        "a part was written again: {staged:?} / {after:?}"
    );
    assert_eq!(after.len(), 4, "one empty blob for the object itself");

    let info = engine.head(&sid(SUBJECT), &key(NAME)).await.unwrap();
    assert_eq!(info.size, whole.len() as u64);
    assert_eq!(info.parts, vec![200_000, 131_073, 17]);
    assert_eq!(info.meta.etag.as_deref(), Some("abc-3"));
    assert_eq!(read(&engine, None).await, whole);
    for r in [
        199_990..200_010,
        0..200_000,
        200_000..331_073,
        150_000..331_090,
        331_080..331_090,
        5..6,
    ] {
        assert_eq!(
            read(&engine, Some(r.clone())).await,
            whole[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }
    let listed = engine.list(&sid(SUBJECT)).await.unwrap();
    let object = listed.iter().find(|o| o.name == NAME).unwrap();
    assert_eq!(object.size, whole.len() as u64);
    assert_clean(&engine).await;

    // A completed upload's sweep keeps the parts while the object lives.
    collect(&engine).await;
    assert_eq!(read(&engine, None).await, whole);

    // An overwrite releases every part.
    put(&engine, SUBJECT, CATEGORY, NAME, b"plain")
        .await
        .unwrap();
    collect(&engine).await;
    assert_eq!(d.files("cn", &tok).len(), 1, "{:?}", d.files("cn", &tok));
    assert_eq!(
        engine
            .list(&sid(SUBJECT))
            .await
            .unwrap()
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>(),
        [NAME]
    );
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_releases_every_part_and_a_replaced_part_fails_the_read() {
    let d = Deployment::new();
    let engine = registered(&d, V1, no_grace()).await;
    let manifest = stage(&engine, &parts()).await;
    complete(&engine, manifest).await;
    // A part written again no longer belongs to the object: the read
    // fails rather than give other bytes.
    let p2 = domicile_engine::multipart::part_name(&dir(), 2);
    put(&engine, SUBJECT, CATEGORY, &p2, &bytes_of(9, 131_073))
        .await
        .unwrap();
    assert!(
        engine
            .get(&sid(SUBJECT), &key(NAME), Some(200_000..200_010))
            .await
            .is_err()
    );
    let report = engine.verify_deep(false).await.unwrap();
    let kinds: Vec<&str> = report.problems.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["manifest"], "{:#?}", report.problems);
    assert!(engine.delete(&sid(SUBJECT), &key(NAME)).await.unwrap());
    collect(&engine).await;
    let tok = token(&engine, SUBJECT);
    assert!(d.files("cn", &tok).is_empty(), "{:?}", d.files("cn", &tok));
    assert!(engine.list(&sid(SUBJECT)).await.unwrap().is_empty());
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_upload_expires_and_a_completed_one_does_not() {
    let d = Deployment::new();
    let gc = GcOptions {
        upload_expiry: Duration::from_millis(300),
        ..no_grace()
    };
    let engine = registered(&d, V1, gc).await;
    let tok = token(&engine, SUBJECT);
    let _ = stage(&engine, &parts()[..2]).await;
    collect(&engine).await;
    assert_eq!(d.files("cn", &tok).len(), 2, "collected before it expired");
    tokio::time::sleep(Duration::from_millis(400)).await;
    collect(&engine).await;
    assert!(d.files("cn", &tok).is_empty(), "{:?}", d.files("cn", &tok));
    assert!(engine.list(&sid(SUBJECT)).await.unwrap().is_empty());

    // Completed: the upload's sweep comes due, and keeps what the object
    // is made of.
    let parts = parts();
    let manifest = stage(&engine, &parts).await;
    complete(&engine, manifest).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    collect(&engine).await;
    assert_eq!(read(&engine, None).await, parts.concat());
    assert_eq!(d.files("cn", &tok).len(), 4);
    assert_clean(&engine).await;
}

async fn migrate_then_erase(custodian: &str) {
    let d = Deployment::new();
    let parts = parts();
    let whole = parts.concat();
    {
        let engine = registered(&d, V1, no_grace()).await;
        let manifest = stage(&engine, &parts).await;
        complete(&engine, manifest).await;
    }
    let engine = d.open(&v2(custodian), no_grace()).await;
    let tok = token(&engine, SUBJECT);
    let opts = MigrateOptions {
        workers: 1,
        grace: Duration::from_millis(50),
        ..MigrateOptions::default()
    };
    engine.start_migration(&opts).await.unwrap();
    let status = engine.run_migration(&opts, &|_| {}).await.unwrap();
    assert_eq!(status.state, "done", "{status:?}");
    assert!(d.files("cn", &tok).is_empty(), "{:?}", d.files("cn", &tok));
    assert_eq!(d.files("sg", &tok).len(), 4, "{:?}", d.files("sg", &tok));
    assert_eq!(read(&engine, None).await, whole);
    assert_eq!(
        read(&engine, Some(199_000..201_000)).await,
        whole[199_000..201_000]
    );
    collect(&engine).await;
    assert_eq!(read(&engine, None).await, whole);
    assert_clean(&engine).await;

    engine.erase_subject(&sid(SUBJECT)).await.unwrap();
    collect(&engine).await;
    for region in ["cn", "sg"] {
        assert!(d.files(region, &tok).is_empty(), "{region}");
    }
    assert_clean(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_copies_every_part_and_erasure_leaves_none() {
    migrate_then_erase("op-kms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rekeying_migration_writes_every_part_again_under_the_new_key() {
    migrate_then_erase("in-kms").await;
}
