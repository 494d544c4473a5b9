//! `domicile migrate` with real processes: a migration killed with SIGKILL
//! at random moments, again and again, then resumed to completion, loses no
//! acknowledged write and leaves no copy outside the new placement
//! (invariants 1, 3 and 5 of SPEC.md). Also the CLI's job rules: one open
//! job, a job refuses another config, pause, cancel, resume.
//!
//! `DOMICILE_CRASH_ROUNDS` raises the number of kills (default 20);
//! `DOMICILE_CRASH_SEED` replays a run (the seed is printed).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domicile_core::Config;
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::{Engine, EngineOptions, ObjectMeta, Secrets};
use domicile_test_support::files::walk;
use domicile_test_support::rng::{Rng, bytes_of};
use futures::TryStreamExt;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_domicile");
const V1: &str = include_str!("../../../examples/demo-v1.toml");
const V2: &str = include_str!("../../../examples/demo-v2.toml");

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// One deployment in a fresh temporary folder, driven by the real binary.
struct Deployment {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
}

impl Deployment {
    fn new(config_text: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let config = dir.join("domicile.toml");
        std::fs::write(&config, config_text).unwrap();
        Deployment {
            _tmp: tmp,
            dir,
            config,
        }
    }

    fn set_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    /// A base command: nothing inherited that would change what it does.
    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(&self.dir)
            .env_remove("DOMICILE_TOKEN_KEY")
            .env_remove("DOMICILE_LOG")
            .env("DOMICILE_CONFIG", &self.config);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "domicile {args:?} panicked:\n{stderr}"
        );
        out
    }

    /// Runs, expecting `want` as the exit code.
    fn expect(&self, want: i32, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(want),
            "domicile {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn json(&self, want: i32, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.expect(want, &a);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "domicile {a:?}: not JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn stderr_of(&self, want: i32, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.expect(want, args).stderr).into_owned()
    }

    fn region_dir(&self, region: &str) -> PathBuf {
        self.dir.join("data/regions").join(region)
    }

    /// Every file of a region folder, relative to it.
    fn files(&self, region: &str) -> BTreeSet<String> {
        let root = self.region_dir(region);
        let mut out = BTreeSet::new();
        walk(&root, &root, &mut out);
        out.into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// An engine in this process on the config now in force (no child may
    /// be running a migration meanwhile, or it would race us; reads are
    /// fine either way).
    async fn engine(&self) -> Engine {
        let config = Config::load(&self.config).unwrap();
        Engine::open_with(config, Secrets::empty(), EngineOptions::default())
            .await
            .unwrap()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One object written before the migration.
#[derive(Debug, Clone)]
struct Object {
    subject: String,
    name: String,
    hash: blake3::Hash,
}

/// Reads an object through the engine; its BLAKE3.
async fn read_hash(engine: &Engine, subject: &str, name: &str) -> Result<blake3::Hash, String> {
    let id: SubjectId = subject.parse().unwrap();
    let key: ObjectKey = name.parse().unwrap();
    let (_, stream) = engine
        .get(&id, &key, None)
        .await
        .map_err(|e| e.to_string())?;
    let hasher = stream
        .try_fold(blake3::Hasher::new(), |mut h, piece| async move {
            h.update(&piece);
            Ok(h)
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(hasher.finalize())
}

async fn assert_reads_back(engine: &Engine, objects: &[Object], what: &str) {
    for o in objects {
        match read_hash(engine, &o.subject, &o.name).await {
            Ok(h) => assert_eq!(
                h, o.hash,
                "{what}: {}/{} reads other bytes",
                o.subject, o.name
            ),
            Err(e) => panic!("{what}: {}/{} does not read back: {e}", o.subject, o.name),
        }
    }
}

// ---------------------------------------------------------------------------
// A deployment with thousands of objects
// ---------------------------------------------------------------------------

const SUBJECTS: usize = 300;
const OBJECTS: usize = 2_000;

fn home_of(i: usize) -> &'static str {
    match i % 10 {
        0..=6 => "IN",
        7 | 8 => "CN",
        _ => "TW",
    }
}

/// Registers subjects with `subject import` and writes the objects through
/// the engine library, under v1. Returns the objects and the bytes of the
/// Indian subjects (what v2 moves).
fn populate(d: &Deployment, rng: &mut Rng) -> (Vec<Object>, u64) {
    let mut csv = String::from("subject,home\n");
    for i in 0..SUBJECTS {
        csv += &format!("user-{i:04},{}\n", home_of(i));
    }
    let file = d.dir.join("subjects.csv");
    std::fs::write(&file, csv).unwrap();
    let imported = d.json(0, &["subject", "import", file.to_str().unwrap()]);
    assert_eq!(imported["added"], SUBJECTS as u64, "{imported}");

    // Log-uniform sizes between 1 KiB and 200 KiB.
    let (lo, hi) = ((1u64 << 10) as f64, (200u64 << 10) as f64);
    let mut plan = Vec::new();
    let mut moved_bytes = 0;
    for j in 0..OBJECTS {
        let s = rng.below(SUBJECTS as u64) as usize;
        let category = match rng.below(20) {
            0..=9 => "profile",
            10..=16 => "media",
            _ => "payment",
        };
        let size = (lo * (hi / lo).powf(rng.unit())) as usize;
        if home_of(s) == "IN" {
            moved_bytes += size as u64;
        }
        plan.push((
            format!("user-{s:04}"),
            category,
            format!("{category}/obj-{j}"),
            size,
            rng.next(),
        ));
    }
    let objects = rt().block_on(async {
        let engine = Arc::new(d.engine().await);
        let plan = Arc::new(plan);
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let engine = engine.clone();
                let plan = plan.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for (subject, category, name, size, seed) in plan.iter().skip(t).step_by(4) {
                        let body = bytes_of(*seed, *size);
                        let id: SubjectId = subject.parse().unwrap();
                        let c: Category = category.parse().unwrap();
                        let key: ObjectKey = name.parse().unwrap();
                        let r = engine
                            .put(&id, &c, &key, &ObjectMeta::default(), &body[..])
                            .await
                            .unwrap();
                        assert_eq!(r.regions, vec!["cn-north".to_string()]);
                        out.push(Object {
                            subject: subject.clone(),
                            name: name.clone(),
                            hash: blake3::hash(&body),
                        });
                    }
                    out
                })
            })
            .collect();
        let mut objects = Vec::new();
        for t in tasks {
            objects.extend(t.await.unwrap());
        }
        objects
    });
    assert_eq!(objects.len(), OBJECTS);
    (objects, moved_bytes)
}

// ---------------------------------------------------------------------------
// Crash safety
// ---------------------------------------------------------------------------

/// How one round ended.
#[derive(Debug, Default)]
struct Tally {
    killed: u32,
    exited: u32,
    reapplied: u32,
}

#[test]
fn migrate_survives_sigkill_at_random_moments_and_resumes_to_completion() {
    let rounds = env_u64("DOMICILE_CRASH_ROUNDS", 20);
    let seed = env_u64("DOMICILE_CRASH_SEED", 0x00C0_FFEE);
    println!("crash test: {rounds} rounds, seed {seed} (DOMICILE_CRASH_SEED={seed} replays it)");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let d = Deployment::new(V1);
    let (objects, moved_bytes) = populate(&d, &mut rng);
    println!(
        "populated {} objects ({} MiB to move) in {:?}",
        objects.len(),
        moved_bytes >> 20,
        started.elapsed()
    );

    // The rule change (stored as the next version, no job yet), then
    // `migrate apply`, killed and resumed.
    d.set_config(V2);
    d.expect(
        0,
        &[
            "policy",
            "apply",
            d.config.to_str().unwrap(),
            "--no-migrate",
        ],
    );
    let violations_before = d.json(3, &["report", "violations"]);
    assert!(
        !violations_before["violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Paced so that the kills spread over the whole move (unpaced, it is
    // over in a few rounds): about 0.3 s of copying per round.
    let rate = (moved_bytes * 1000 / (rounds * 300).max(1)).max(200_000);
    let rate_arg = rate.to_string();
    let run_args = [
        "--lease",
        "1",
        "--grace",
        "0.2",
        "--workers",
        "4",
        "--rate",
        &rate_arg,
    ];
    let mut tally = Tally::default();
    let mut applied = false;
    let log = d.dir.join("migrate.log");
    for round in 0..rounds {
        let mut args = vec!["migrate", if applied { "resume" } else { "apply" }];
        args.extend(run_args);
        let mut child = d
            .command()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let delay = rng.range(50, 600);
        std::thread::sleep(Duration::from_millis(delay));
        let how = match child.try_wait().unwrap() {
            Some(status) => {
                // It finished (or failed) before the kill.
                tally.exited += 1;
                format!("exited by itself: {status}")
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                let status = child.wait().unwrap();
                assert!(status.code().is_none(), "{status}");
                tally.killed += 1;
                "killed".to_string()
            }
        };
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !text.contains("panicked"),
            "round {round}: panicked:\n{text}"
        );
        // The job exists once an apply got far enough to create it.
        let status = d.run(&["migrate", "status", "--format", "json"]);
        let state = if status.status.success() {
            let v: Value = serde_json::from_slice(&status.stdout).unwrap();
            if !applied {
                applied = true;
            }
            format!(
                "job {} {} done {} committed {} pending {} in flight {} failed {}",
                v["job"],
                v["state"],
                v["done"],
                v["committed"],
                v["pending"],
                v["in_flight"],
                v["failed"]
            )
        } else {
            tally.reapplied += 1;
            "no job yet".to_string()
        };
        println!(
            "round {round}: {} after {delay} ms, {how}; {state}",
            args[1]
        );
        // Every round: a sample of the objects still reads back.
        rt().block_on(async {
            let engine = d.engine().await;
            let sample: Vec<Object> = (0..25)
                .map(|_| objects[rng.below(objects.len() as u64) as usize].clone())
                .collect();
            assert_reads_back(&engine, &sample, &format!("round {round}")).await;
        });
    }
    println!("{tally:?}");
    assert!(
        tally.killed * 2 >= rounds as u32,
        "most rounds should have been killed mid-run: {tally:?}"
    );

    // Resume to completion.
    let mut args = vec!["migrate", if applied { "resume" } else { "apply" }];
    args.extend(run_args.iter().take(6).copied());
    let mut child = d
        .command()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the final resume did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "final {args:?}: {status}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let status = d.json(0, &["migrate", "status"]);
    println!("final status: {status}");
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["failed"], 0, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(status["committed"], 0, "{status}");
    assert_eq!(status["done"], status["units"], "{status}");
    assert!(status["units"].as_i64().unwrap() > 0, "{status}");

    d.expect(0, &["verify"]);
    d.expect(0, &["ledger", "verify"]);
    d.expect(0, &["report", "violations"]);
    let plan = d.json(0, &["plan"]);
    assert!(plan["moves"].as_array().unwrap().is_empty(), "{plan}");

    rt().block_on(async {
        let engine = d.engine().await;
        assert_reads_back(&engine, &objects, "after the migration").await;
        // Every placement is active, Indian ones moved exactly once.
        let mut moved = 0;
        for i in 0..SUBJECTS {
            let id: SubjectId = format!("user-{i:04}").parse().unwrap();
            let home: Jurisdiction = home_of(i).parse().unwrap();
            let token = engine.tokens().subject(&id);
            let placements = engine.test_catalog().placements_of(&token).await.unwrap();
            let moves = engine
                .test_catalog()
                .ledger_of(&token)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.kind == "move")
                .count();
            for p in &placements {
                assert!(
                    p.state.is_active(),
                    "user-{i:04}/{} is left moving",
                    p.category
                );
                if home.to_string() == "IN" {
                    assert!(!p.regions.iter().any(|r| r == "cn-north"), "{p:?}");
                    assert_eq!(
                        p.epoch, 2,
                        "user-{i:04}/{}: moved more than once",
                        p.category
                    );
                    assert_eq!(p.custodian, "in-kms");
                    moved += 1;
                } else {
                    assert_eq!(p.regions, ["cn-north"]);
                    assert_eq!(p.epoch, 1);
                }
            }
            if home.to_string() == "IN" {
                assert_eq!(moves, placements.len(), "user-{i:04}: ledger moves");
            }
        }
        assert_eq!(moved, status["units"].as_i64().unwrap());
    });
    // A few through the binary too.
    for o in objects.iter().step_by(199) {
        let out = d.dir.join("got");
        d.expect(
            0,
            &["get", &o.subject, &o.name, "-o", out.to_str().unwrap()],
        );
        assert_eq!(blake3::hash(&std::fs::read(&out).unwrap()), o.hash);
    }
    // Files killed half-written (`…#N` staging files) hide from listings:
    // a resumed unit deletes its earlier attempts' from its new regions and
    // a purge deletes the old regions' whole prefix, so none may be left
    // (`verify` reports one once it is old). Each is listed, with whether
    // it lies inside the final placement of its (subject, category).
    let mut staging = Vec::new();
    for region in [
        "cn-north",
        "aws-ap-southeast-1",
        "aws-us-east-1",
        "in-mumbai",
        "tw-taipei",
    ] {
        for f in d.files(region) {
            if f.contains('#') {
                println!("staging file left in {region}: {f}");
                // v1/{token[0..2]}/{token}/{category}/{blob}#{n}
                let parts: Vec<&str> = f.split('/').collect();
                assert_eq!(parts.len(), 5, "{f}");
                staging.push((region, parts[2].to_string(), parts[3].to_string()));
            }
        }
    }
    rt().block_on(async {
        let engine = d.engine().await;
        for (region, token, category) in &staging {
            let p = engine
                .test_catalog()
                .get_placement(token, category)
                .await
                .unwrap()
                .unwrap();
            assert!(
                p.regions.iter().any(|r| r == region),
                "a half-written copy in {region}, outside {token}/{category}'s placement {:?}",
                p.regions
            );
        }
    });
    assert!(staging.is_empty(), "staging files left: {staging:?}");
    let cn: usize = d.files("cn-north").len();
    println!(
        "{cn} blobs left in cn-north (CN and TW subjects); took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// The CLI's job rules
// ---------------------------------------------------------------------------

#[test]
fn migrate_keeps_one_job_per_config_and_pauses_cancels_and_resumes() {
    let d = Deployment::new(V1);
    let file = d.dir.join("subjects.csv");
    let mut csv = String::new();
    for i in 0..12 {
        csv += &format!("in-{i},IN\n");
    }
    csv += "cn-0,CN\n";
    std::fs::write(&file, csv).unwrap();
    d.expect(0, &["subject", "import", file.to_str().unwrap()]);
    let body = d.dir.join("body");
    let mut objects = Vec::new();
    for i in 0..12 {
        let bytes = bytes_of(i, 3_000 + i as usize);
        std::fs::write(&body, &bytes).unwrap();
        let subject = format!("in-{i}");
        d.expect(0, &["put", &subject, "notes", body.to_str().unwrap()]);
        objects.push(Object {
            subject,
            name: "notes".into(),
            hash: blake3::hash(&bytes),
        });
    }
    d.set_config(V2);

    // Bad flags: exit 2, and no job.
    for bad in [
        &["--workers", "0"][..],
        &["--lease", "0.1"],
        &["--grace", "-1"],
        &["--grace", "nan"],
    ] {
        let mut args = vec!["migrate", "apply"];
        args.extend(bad);
        d.expect(2, &args);
    }
    d.expect(2, &["migrate", "status"]);
    d.expect(2, &["migrate", "resume"]);

    // A job created, not run.
    let created = d.json(0, &["migrate", "apply", "--no-run"]);
    assert_eq!(created["state"], "running", "{created}");
    assert_eq!(created["units"], 12, "{created}");
    assert_eq!(created["pending"], 12, "{created}");
    // One open job at a time.
    let err = d.stderr_of(2, &["migrate", "apply"]);
    assert!(err.contains("still running"), "{err}");
    // Once other rules are the active version (applied without a job),
    // no process carries the job out: it was planned under other rules.
    let other = d.dir.join("other.toml");
    let other_text = V2.replace(r#"allow = ["SG", "US"]"#, r#"allow = ["SG"]"#);
    assert_ne!(other_text, V2);
    std::fs::write(&other, other_text).unwrap();
    let config = d.config.to_str().unwrap();
    d.expect(
        0,
        &["policy", "apply", other.to_str().unwrap(), "--no-migrate"],
    );
    let err = d.stderr_of(2, &["migrate", "resume"]);
    assert!(err.contains("another config"), "{err}");
    let status = d.json(0, &["migrate", "status"]);
    assert_eq!(status["pending"], 12, "nothing moved: {status}");
    // v2 applied again (a rollback to the job's rules): the job may run.
    d.expect(0, &["policy", "apply", config, "--no-migrate"]);

    // Pause, then resume, which runs it to the end.
    let paused = d.json(0, &["migrate", "pause"]);
    assert_eq!(paused["state"], "paused", "{paused}");
    let err = d.stderr_of(2, &["migrate", "apply"]);
    assert!(err.contains("still paused"), "{err}");
    // A config that differs only where placements do not (a comment, the
    // layout) carries the job out.
    let cosmetic = d.dir.join("cosmetic.toml");
    std::fs::write(&cosmetic, format!("# edited during the move\n\n{V2}")).unwrap();
    let done = d.json(
        0,
        &[
            "--config",
            cosmetic.to_str().unwrap(),
            "migrate",
            "resume",
            "--grace",
            "0",
        ],
    );
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        (done["done"].as_i64(), done["failed"].as_i64()),
        (Some(12), Some(0))
    );
    d.expect(0, &["verify"]);
    d.expect(0, &["report", "violations"]);
    // Nothing open: nothing to pause or cancel.
    d.expect(2, &["migrate", "pause"]);
    d.expect(2, &["migrate", "cancel"]);

    // Back to v1, cancelled before it ran: nothing moves, the data stays
    // where v2 put it, and a new apply carries the plan out.
    d.set_config(V1);
    d.json(0, &["migrate", "apply", "--no-run"]);
    let cancelled = d.json(0, &["migrate", "cancel"]);
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["cancelled"], 12, "{cancelled}");
    assert!(d.files("cn-north").is_empty(), "{:?}", d.files("cn-north"));
    let v = d.json(3, &["report", "violations"]);
    assert_eq!(v["violations"].as_array().unwrap().len(), 12, "{v}");
    let done = d.json(0, &["migrate", "apply", "--grace", "0"]);
    assert_eq!(
        (done["done"].as_i64(), done["failed"].as_i64()),
        (Some(12), Some(0)),
        "{done}"
    );
    assert_eq!(d.files("cn-north").len(), 12);
    d.expect(0, &["verify"]);
    d.expect(0, &["ledger", "verify"]);
    d.expect(0, &["report", "violations"]);
    rt().block_on(async {
        let engine = d.engine().await;
        assert_reads_back(&engine, &objects, "after two migrations").await;
    });
}

/// `migrate cancel` after the migrating process was killed mid-move: the
/// dead workers' moving marks are released, so that reverting the policy
/// does not leave those subjects unable to write.
#[test]
fn cancel_after_a_crash_releases_the_dead_workers_placements() {
    let d = Deployment::new(V1);
    let file = d.dir.join("subjects.csv");
    let csv: String = (0..8).map(|i| format!("in-{i},IN\n")).collect();
    std::fs::write(&file, csv).unwrap();
    d.expect(0, &["subject", "import", file.to_str().unwrap()]);
    let body = d.dir.join("body");
    for i in 0..8 {
        std::fs::write(&body, bytes_of(i, 150_000)).unwrap();
        d.expect(
            0,
            &["put", &format!("in-{i}"), "photo", body.to_str().unwrap()],
        );
    }
    d.set_config(V2);
    // Slow enough that every worker is mid-copy when it dies.
    let mut child = d
        .command()
        .args([
            "migrate",
            "apply",
            "--lease",
            "1",
            "--workers",
            "4",
            "--rate",
            "50000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let moving = |d: &Deployment| {
        rt().block_on(async {
            let engine = d.engine().await;
            let mut n = 0;
            for i in 0..8 {
                let id: SubjectId = format!("in-{i}").parse().unwrap();
                let token = engine.tokens().subject(&id);
                for p in engine.test_catalog().placements_of(&token).await.unwrap() {
                    if !p.state.is_active() {
                        n += 1;
                    }
                }
            }
            n
        })
    };
    assert!(moving(&d) > 0, "the kill left no move in flight");
    std::thread::sleep(Duration::from_millis(1_200));
    let cancelled = d.json(0, &["migrate", "cancel"]);
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(
        cancelled["done"].as_i64().unwrap() + cancelled["cancelled"].as_i64().unwrap(),
        8,
        "{cancelled}"
    );
    assert!(cancelled["cancelled"].as_i64().unwrap() >= 4, "{cancelled}");
    assert_eq!(moving(&d), 0, "placements left moving after the cancel");

    // The policy is reverted (applied as the next version, no job yet):
    // every subject the job did not move writes at once (the moved ones
    // must first move back: `migrate apply`).
    d.set_config(V1);
    d.expect(
        0,
        &[
            "policy",
            "apply",
            d.config.to_str().unwrap(),
            "--no-migrate",
        ],
    );
    let mut unmoved = 0;
    for i in 0..8 {
        let id = format!("in-{i}");
        let shown = d.json(0, &["subject", "show", &id]);
        if shown["categories"][0]["regions"][0] == "cn-north" {
            d.expect(0, &["put", &id, "after", body.to_str().unwrap()]);
            unmoved += 1;
        }
    }
    assert_eq!(unmoved, cancelled["cancelled"].as_i64().unwrap());
    let back = d.json(0, &["migrate", "apply", "--grace", "0"]);
    assert_eq!(
        (back["state"].as_str(), back["failed"].as_i64()),
        (Some("done"), Some(0)),
        "{back}"
    );
    d.expect(0, &["verify"]);
    d.expect(0, &["ledger", "verify"]);
    d.expect(0, &["report", "violations"]);
}
