//! Garbage collection off the request path, against real folders (and an
//! `s3://` region at a closed port) and an SQLite catalog in a temporary
//! directory: a read in flight finishes with the old bytes across an
//! overwrite or a delete and a collection pass; the old blob goes from every
//! region once its grace period is over; a region that is down is backed
//! off from while the other regions' rows are collected, and its rows go
//! when it returns; a row that keeps failing does not stop the rows behind
//! it; a pass stops at its time bound; an erasure deletes its own blobs at
//! once and nobody else's.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domicile_core::Config;
use domicile_engine::{Engine, EngineOptions, GcOptions, Secrets};
use domicile_test_support::engine::{jur, key, now_millis, put, sid, token};
use domicile_test_support::files::walk;
use domicile_test_support::rng::bytes_of;
use futures::StreamExt;

/// A deployment in a temporary directory: folder regions `cn`, `cn-b`
/// (China) and `sg` (Singapore), and whatever extra `[[region]]` text a
/// test adds.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        Deployment {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, rules: &str, extra_regions: &str) -> Config {
        let mut text = String::from(
            r#"
[operator]
name = "Test Phones"
headquarters = "CN"

[catalog]
url = "sqlite://data/catalog.db"

[[custodian]]
id = "op-kms"
jurisdiction = "CN"
headquarters = "CN"
keyring = "file://data/keys/op-kms"
"#,
        );
        for (id, j) in [("cn", "CN"), ("cn-b", "CN"), ("sg", "SG")] {
            text += &format!(
                r#"
[[region]]
id = "{id}"
jurisdiction = "{j}"
provider = "p-{id}"
provider_headquarters = "{j}"
store = "file://data/regions/{id}"
storage_price_gb_month = 0.02
egress_price_gb = 0.05
"#
            );
        }
        text += extra_regions;
        text += rules;
        Config::parse("test.toml", &text, self.dir.path())
            .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{text}"))
    }

    /// Opens an engine and makes its rules the active policy.
    async fn open(&self, rules: &str, extra_regions: &str, gc: GcOptions) -> Engine {
        let config = self.config(rules, extra_regions);
        let secrets = self.dir.path().join("secrets.env");
        std::fs::write(
            &secrets,
            "DOMICILE_REGIONS_ACCESS_KEY_ID=test\nDOMICILE_REGIONS_SECRET_ACCESS_KEY=test\n",
        )
        .unwrap();
        let options = EngineOptions {
            gc,
            ..EngineOptions::default()
        };
        let engine = Engine::open_with(
            config.clone(),
            Secrets::load(Some(&secrets)).unwrap(),
            options,
        )
        .await
        .unwrap();
        engine.apply_policy(&config).await.unwrap();
        engine
    }

    fn region_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join("data/regions").join(id)
    }

    /// The files of one subject token in a region, relative to its folder.
    fn files_of(&self, region: &str, token: &str) -> BTreeSet<PathBuf> {
        let root = self.region_dir(region);
        let mut out = BTreeSet::new();
        walk(&root, &root, &mut out);
        out.into_iter()
            .filter(|p| p.components().any(|c| c.as_os_str() == token))
            .collect()
    }

    /// Takes a folder region down: its folder is moved away and a plain
    /// file stands in its place, so every deletion there fails (as root
    /// too, which permissions would not stop). Returns where it went.
    fn take_down(&self, region: &str) -> PathBuf {
        let dir = self.region_dir(region);
        let away = dir.with_extension("away");
        std::fs::rename(&dir, &away).unwrap();
        std::fs::write(&dir, b"not a folder").unwrap();
        away
    }

    fn bring_back(&self, region: &str, away: &Path) {
        let dir = self.region_dir(region);
        std::fs::remove_file(&dir).unwrap();
        std::fs::rename(away, &dir).unwrap();
    }
}

fn rule(name: &str, body: &str) -> String {
    format!("\n[[rule]]\nname = \"{name}\"\n{body}\ncustodian = \"op-kms\"\n")
}

/// Two copies, in `cn` and `cn-b`.
fn two_copies_in_china() -> String {
    rule("two-in-china", "allow = [\"cn\", \"cn-b\"]\ncopies = 2")
}

/// China's subjects in `cn`, Singapore's in `sg`.
fn by_home() -> String {
    rule("default", "allow = [\"cn\", \"sg\"]")
        + &rule("china", "homes = [\"CN\"]\nallow = [\"cn\"]")
        + &rule("singapore", "homes = [\"SG\"]\nallow = [\"sg\"]")
}

fn with_grace(grace: Duration) -> GcOptions {
    GcOptions {
        grace,
        ..GcOptions::default()
    }
}

/// Waits until `until` (milliseconds since the epoch) has passed.
async fn sleep_until(until: i64) {
    while now_millis() <= until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a read in flight sees its object changed under it.
#[derive(Debug, Clone, Copy)]
enum Change {
    Overwrite,
    Delete,
}

/// A GET stream is opened and read a little; the object is overwritten (or
/// deleted); a collection pass runs; the rest of the stream is exactly the
/// old bytes. Once the grace period is over, a pass deletes the old blob
/// from both regions.
async fn read_in_flight_survives(change: Change) {
    const GRACE: Duration = Duration::from_secs(4);
    let d = Deployment::new();
    let engine = d.open(&two_copies_in_china(), "", with_grace(GRACE)).await;
    engine.add_subject(&sid("ana"), jur("CN")).await.unwrap();
    // Larger than what the stream fetches ahead: its later chunks are read
    // from the store after the change and the pass.
    let old = bytes_of(7, 40 << 20);
    put(&engine, "ana", "profile", "big.bin", &old)
        .await
        .unwrap();
    let t = token(&engine, "ana");
    let old_files = (d.files_of("cn", &t), d.files_of("cn-b", &t));
    assert_eq!((old_files.0.len(), old_files.1.len()), (1, 1));

    let (info, mut stream) = engine
        .get(&sid("ana"), &key("big.bin"), None)
        .await
        .unwrap();
    assert_eq!(info.size, old.len() as u64);
    let first: Bytes = stream.next().await.unwrap().unwrap();
    assert!(
        first.len() < old.len(),
        "the first piece is not the whole object"
    );

    let changed_at = now_millis();
    match change {
        Change::Overwrite => {
            let new = put(&engine, "ana", "profile", "big.bin", b"the new version")
                .await
                .unwrap();
            assert_eq!(new.version, 2);
        }
        Change::Delete => {
            assert!(engine.delete(&sid("ana"), &key("big.bin")).await.unwrap());
        }
    }
    let pass = engine.collect_garbage().await.unwrap();
    // (Checked only while the grace period surely runs: a loaded machine
    // may have slept past it.)
    let in_grace = now_millis() < changed_at + GRACE.as_millis() as i64;
    if in_grace {
        assert_eq!(pass.blobs, 0, "collected within the grace period: {pass:?}");
        assert!(
            d.files_of("cn", &t).is_superset(&old_files.0)
                && d.files_of("cn-b", &t).is_superset(&old_files.1),
            "the old blob went within its grace period"
        );
    }

    let mut got = first.to_vec();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.unwrap_or_else(|e| {
            panic!(
                "the read in flight broke after {} bytes ({change:?}): {e}",
                got.len()
            )
        }));
    }
    assert!(
        got == old,
        "the read in flight did not yield exactly the old bytes"
    );

    // New readers see the change.
    match change {
        Change::Overwrite => {
            let (_, s) = engine
                .get(&sid("ana"), &key("big.bin"), None)
                .await
                .unwrap();
            let pieces: Vec<Bytes> = s.map(|p| p.unwrap()).collect().await;
            assert_eq!(pieces.concat(), b"the new version");
        }
        Change::Delete => {
            assert!(
                engine
                    .get(&sid("ana"), &key("big.bin"), None)
                    .await
                    .is_err()
            );
        }
    }

    // The old blob is due a grace period after the change.
    let rows = engine.test_catalog().garbage(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let due = rows[0].queued_at;
    assert!(due >= changed_at + GRACE.as_millis() as i64, "{rows:?}");
    assert!(due <= now_millis() + GRACE.as_millis() as i64, "{rows:?}");
    // After the grace period, a pass deletes the old blob from every region.
    sleep_until(due).await;
    let pass = engine.collect_garbage().await.unwrap();
    assert_eq!(
        (pass.blobs, pass.copies_deleted, pass.failures),
        (1, 2, 0),
        "{pass:?}"
    );
    for (region, old) in [("cn", &old_files.0), ("cn-b", &old_files.1)] {
        let now = d.files_of(region, &t);
        assert!(now.is_disjoint(old), "{region} still holds the old blob");
    }
    assert!(engine.test_catalog().garbage(10).await.unwrap().is_empty());
    let report = engine.verify(true).await.unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_finishes_with_the_old_bytes_across_an_overwrite_and_a_pass() {
    read_in_flight_survives(Change::Overwrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_finishes_with_the_old_bytes_across_a_delete_and_a_pass() {
    read_in_flight_survives(Change::Delete).await;
}

/// With folder `cn` down: deletes of its subject's objects and overwrites
/// of another region's objects answer at once; a pass collects `sg`'s rows,
/// backs off from `cn` after a few failures instead of trying each of its
/// rows, and the next pass does not try it again; once `cn` is back and
/// its rows are due again, they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_that_is_down_is_backed_off_from_and_its_rows_go_when_it_returns() {
    const ROWS: usize = 30;
    let d = Deployment::new();
    let gc = GcOptions {
        grace: Duration::ZERO,
        region_failures: 3,
        region_backoff: Duration::from_secs(3),
        retry_base: Duration::from_secs(3),
        ..GcOptions::default()
    };
    let engine = d.open(&by_home(), "", gc).await;
    engine.add_subject(&sid("ana"), jur("CN")).await.unwrap();
    engine.add_subject(&sid("bo"), jur("SG")).await.unwrap();
    for i in 0..ROWS {
        put(&engine, "ana", "profile", &format!("a{i}"), b"in cn")
            .await
            .unwrap();
    }
    for i in 0..5 {
        put(&engine, "bo", "profile", &format!("b{i}"), b"in sg, v1")
            .await
            .unwrap();
    }
    let (ta, tb) = (token(&engine, "ana"), token(&engine, "bo"));
    let ana_files = d.files_of("cn", &ta);
    assert_eq!(ana_files.len(), ROWS);

    let away = d.take_down("cn");
    let started = Instant::now();
    for i in 0..ROWS {
        assert!(
            engine
                .delete(&sid("ana"), &key(&format!("a{i}")))
                .await
                .unwrap()
        );
    }
    for i in 0..5 {
        let r = put(&engine, "bo", "profile", &format!("b{i}"), b"in sg, v2")
            .await
            .unwrap();
        assert_eq!(r.version, 2);
    }
    // Each answered without touching cn: no deletion was tried there.
    let answered = started.elapsed();
    assert!(
        answered < Duration::from_secs(10),
        "requests waited: {answered:?}"
    );
    assert_eq!(
        engine.test_catalog().garbage(100).await.unwrap().len(),
        ROWS + 5
    );

    let pass = engine.collect_garbage().await.unwrap();
    assert_eq!(pass.blobs, 5, "sg's rows are collected: {pass:?}");
    assert_eq!(
        d.files_of("sg", &tb).len(),
        5,
        "only the new versions remain in sg"
    );
    assert!(pass.failures >= 3, "{pass:?}");
    // At most the rows in flight when the backoff began were tried.
    assert!(pass.failures <= 3 + 8, "cn was tried row by row: {pass:?}");
    assert_eq!(pass.failures + pass.put_off, ROWS as u64, "{pass:?}");
    assert_eq!(pass.regions_backed_off, ["cn"]);
    let rows = engine.test_catalog().garbage(100).await.unwrap();
    assert_eq!(rows.len(), ROWS, "cn's rows stay queued");
    let now = now_millis();
    assert!(rows.iter().all(|r| r.regions == ["cn"] && r.next_try > now));
    assert!(
        rows.iter().all(|r| r.next_try <= now + 3_000),
        "deletions in flight lengthened the backoff: {rows:?}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.attempts == 1).count() as u64,
        pass.failures,
        "a row put off for the backoff counts no attempt"
    );

    // The next pass does not try cn again while it is backed off.
    let pass = engine.collect_garbage().await.unwrap();
    assert_eq!((pass.blobs, pass.failures), (0, 0), "{pass:?}");

    // cn comes back; once its rows are due again, they go.
    d.bring_back("cn", &away);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pass = engine.collect_garbage().await.unwrap();
        let rows = engine.test_catalog().garbage(100).await.unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cn's rows never went: {pass:?} {:?}",
            rows.first()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        d.files_of("cn", &ta).is_empty(),
        "ana's blobs are still in cn"
    );
    let report = engine.verify(true).await.unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
}

/// An `s3://` region whose endpoint is a closed port (its store would
/// retry each request for minutes): each deletion there is cut at the
/// timeout, the pass backs off from the region after the first few, and
/// the pass ends in about one timeout, not one per row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_s3_region_costs_a_pass_one_timeout_not_one_per_row() {
    const ROWS: usize = 40;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let extra = format!(
        r#"
[[region]]
id = "gone"
jurisdiction = "CN"
provider = "p-gone"
provider_headquarters = "CN"
store = "s3://bucket?endpoint=http://127.0.0.1:{closed}&region=us-east-1"
storage_price_gb_month = 0.02
egress_price_gb = 0.05
"#
    );
    let d = Deployment::new();
    let gc = GcOptions {
        delete_timeout: Duration::from_millis(400),
        region_failures: 2,
        ..GcOptions::default()
    };
    let engine = d.open(&by_home(), &extra, gc).await;
    engine.add_subject(&sid("ana"), jur("CN")).await.unwrap();
    let t = token(&engine, "ana");
    // Queued blobs of that region, as a replaced blob's rows would name it.
    let rows: Vec<_> = (0..ROWS)
        .map(|i| {
            domicile_catalog::GarbageRow::new(
                &t,
                "profile",
                &format!("{i:032x}"),
                &["gone".to_string()],
                now_millis(),
            )
        })
        .collect();
    engine
        .test_catalog()
        .queue_garbage_rows(&rows)
        .await
        .unwrap();

    let started = Instant::now();
    let pass = engine.collect_garbage().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the pass waited per row: {took:?} {pass:?}"
    );
    assert_eq!(pass.blobs, 0);
    assert!(pass.failures >= 2 && pass.failures <= 2 + 8, "{pass:?}");
    assert_eq!(pass.failures + pass.put_off, ROWS as u64, "{pass:?}");
    assert_eq!(pass.regions_backed_off, ["gone"]);
    assert_eq!(
        engine.test_catalog().garbage(100).await.unwrap().len(),
        ROWS
    );
}

/// A row whose deletion keeps failing (its blob's path is a folder that
/// cannot be unlinked) is put off with a growing wait, and passes of two
/// rows each take the rows behind it; the region is not backed off from
/// for one bad row; once the cause is gone, the row goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_keeps_failing_does_not_stop_the_rows_behind_it() {
    let d = Deployment::new();
    let gc = GcOptions {
        grace: Duration::ZERO,
        pass_rows: 2,
        retry_base: Duration::from_millis(800),
        ..GcOptions::default()
    };
    let engine = d.open(&by_home(), "", gc).await;
    engine.add_subject(&sid("ana"), jur("CN")).await.unwrap();
    let t = token(&engine, "ana");
    for i in 0..5 {
        put(&engine, "ana", "profile", &format!("n{i}"), b"v1")
            .await
            .unwrap();
    }
    let first = d.files_of("cn", &t);
    // The first replaced blob becomes undeletable: a folder holding a file.
    put(&engine, "ana", "profile", "n0", b"v2").await.unwrap();
    assert!(
        d.files_of("cn", &t).is_superset(&first),
        "a request collected"
    );
    let rows = engine.test_catalog().garbage(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let bad_id = rows[0].id;
    let bad_path = first
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy() == rows[0].blob_id)
        .unwrap()
        .clone();
    let bad_file = d.region_dir("cn").join(&bad_path);
    std::fs::remove_file(&bad_file).unwrap();
    std::fs::create_dir(&bad_file).unwrap();
    std::fs::write(bad_file.join("keep"), b"x").unwrap();
    for i in 1..5 {
        put(&engine, "ana", "profile", &format!("n{i}"), b"v2")
            .await
            .unwrap();
    }
    assert_eq!(engine.test_catalog().garbage(10).await.unwrap().len(), 5);

    // Pass 1 takes the failing row and the next; passes 2 and 3 the rest.
    let p1 = engine.collect_garbage().await.unwrap();
    assert_eq!((p1.blobs, p1.failures, p1.more), (1, 1, true), "{p1:?}");
    let p2 = engine.collect_garbage().await.unwrap();
    assert_eq!((p2.blobs, p2.failures, p2.more), (2, 0, true), "{p2:?}");
    let p3 = engine.collect_garbage().await.unwrap();
    assert_eq!((p3.blobs, p3.failures, p3.more), (1, 0, false), "{p3:?}");
    assert!(
        p3.regions_backed_off.is_empty(),
        "one bad row backed cn off"
    );
    let rows = engine.test_catalog().garbage(10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id, rows[0].attempts), (bad_id, 1));
    let first_wait = rows[0].next_try;

    // It fails again when due, and waits longer.
    sleep_until(first_wait).await;
    let p = engine.collect_garbage().await.unwrap();
    assert_eq!((p.blobs, p.failures), (0, 1), "{p:?}");
    let row = engine.test_catalog().garbage(10).await.unwrap().remove(0);
    assert_eq!(row.attempts, 2);
    assert!(
        row.next_try - now_millis() > 1_000,
        "the second wait is not longer: {row:?}"
    );

    // The cause is removed: at its next try, it goes.
    std::fs::remove_dir_all(&bad_file).unwrap();
    sleep_until(row.next_try).await;
    let p = engine.collect_garbage().await.unwrap();
    assert_eq!((p.blobs, p.failures), (1, 0), "{p:?}");
    assert!(engine.test_catalog().garbage(10).await.unwrap().is_empty());
    assert_eq!(d.files_of("cn", &t).len(), 5);
}

/// An erasure deletes the erased subject's blobs at once (no grace period),
/// and collects nobody else's garbage: another subject's replaced blob,
/// already due, stays queued for the background pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_deletes_its_own_blobs_at_once_and_no_one_elses() {
    let d = Deployment::new();
    let engine = d.open(&by_home(), "", with_grace(Duration::ZERO)).await;
    for s in ["ana", "bo"] {
        engine.add_subject(&sid(s), jur("CN")).await.unwrap();
        put(&engine, s, "profile", "doc", b"v1").await.unwrap();
    }
    put(&engine, "bo", "profile", "doc", b"v2").await.unwrap();
    let (ta, tb) = (token(&engine, "ana"), token(&engine, "bo"));
    assert_eq!(d.files_of("cn", &tb).len(), 2);

    let report = engine.erase_subject(&sid("ana")).await.unwrap();
    assert_eq!((report.objects, report.copies_deleted), (1, 1));
    assert!(
        d.files_of("cn", &ta).is_empty(),
        "the erased blobs are still there"
    );
    let left = engine.test_catalog().garbage(10).await.unwrap();
    assert_eq!(
        left.len(),
        1,
        "the erasure's rows are finished, bo's is not"
    );
    assert_eq!(left[0].token, tb);
    assert_eq!(
        d.files_of("cn", &tb).len(),
        2,
        "the erasure collected bo's garbage"
    );
    assert_eq!(engine.collect_garbage().await.unwrap().blobs, 1);
    assert_eq!(d.files_of("cn", &tb).len(), 1);
}

/// A pass stops at its time bound: what it did not reach stays due, and
/// says so (`more`), for the next pass to take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_stops_at_its_time_bound_and_leaves_the_rest_due() {
    let d = Deployment::new();
    let bounded = GcOptions {
        grace: Duration::ZERO,
        pass_time: Duration::ZERO,
        ..GcOptions::default()
    };
    let engine = d.open(&by_home(), "", bounded).await;
    engine.add_subject(&sid("ana"), jur("CN")).await.unwrap();
    for v in [&b"v1"[..], b"v2", b"v3"] {
        put(&engine, "ana", "profile", "doc", v).await.unwrap();
    }
    let t = token(&engine, "ana");
    let pass = engine.collect_garbage().await.unwrap();
    assert_eq!((pass.blobs, pass.more), (0, true), "{pass:?}");
    let rows = engine.test_catalog().garbage(10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.attempts == 0 && r.next_try <= now_millis())
    );
    assert_eq!(d.files_of("cn", &t).len(), 3);
    drop(engine);

    // Unbounded, the next pass takes both.
    let engine = d.open(&by_home(), "", with_grace(Duration::ZERO)).await;
    let pass = engine.collect_garbage().await.unwrap();
    assert_eq!((pass.blobs, pass.more), (2, false), "{pass:?}");
    assert_eq!(d.files_of("cn", &t).len(), 1);
}
