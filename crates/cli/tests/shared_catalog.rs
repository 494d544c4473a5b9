//! Issue 5's coordination claims with real processes on one PostgreSQL
//! catalog: two `domicile migrate resume` processes (separate processes,
//! same config, same catalog, same regions) work one job at once while a
//! third process keeps writing. At the end the job is done with nothing
//! failed, every moved (subject, category) has exactly one `move` ledger
//! entry for the job (no unit moved twice), `verify`, `ledger verify` and
//! `report violations` pass, and every acknowledged put reads back with its
//! bytes. A variant kills one worker with SIGKILL mid-run: the survivor (plus
//! at most one more `migrate resume`) finishes the job, with the same checks.
//!
//! The third test is the whole of a shared deployment: two `domicile serve`
//! processes and two migration workers on one catalog and the same regions,
//! while boto3 clients write and read through both servers (the checker in
//! `s3_checker.py`: an acknowledged write is never lost, never read back
//! older). Mid-job one server and one worker are killed with SIGKILL; the
//! clients fail over to the surviving server and the surviving worker
//! finishes the job. A put the killed server had in flight leaves at most a
//! blob its intent keeps pending (collected once due), never an orphan:
//! `verify` passes as in the other tests.
//!
//! The rollout tests change the rules the fleet acts on while it serves:
//! the servers act on policy version 1, a `policy apply` from another
//! process makes version 2, both servers follow it without a restart, and
//! kills of a worker (and, on PostgreSQL, of a server) lose no acknowledged
//! write; the same runs on the embedded SQLite catalog with one server.
//!
//! The deployment is the demo's (120 subjects, left under policy v2), its
//! catalog moved into a fresh PostgreSQL database, then switched back to
//! policy v1 so that the Indian subjects' data goes back to China.
//!
//! The server is `DOMICILE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`), a role that may create databases.
//! Each test's database is dropped when it ends, even by a panic. Without a
//! reachable server these tests FAIL, never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use domicile_test_support::pg::Database;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_domicile");
const V1: &str = include_str!("../../../examples/demo-v1.toml");
const SQLITE_URL: &str = "url = \"sqlite://data/catalog.db\"";

/// Per process: paces the copy so that the two workers (and the writer)
/// overlap for a few seconds instead of finishing the ~7 MiB in under one.
const RATE: &str = "1500000";
const KILL_RATE: &str = "1000000";

const CHECKER: &str = include_str!("s3_checker.py");
const ACCESS_KEY: &str = "AKDOMICILESHARED";
const SECRET_KEY: &str = "shared-catalog-test-secret";
const BUCKET: &str = "user-data";

// ---------------------------------------------------------------------------
// The deployment, driven by the real binary
// ---------------------------------------------------------------------------

struct Deployment {
    dir: PathBuf,
}

impl Deployment {
    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(&self.dir)
            .env_remove("DOMICILE_TOKEN_KEY")
            .env_remove("DOMICILE_CONFIG")
            .env_remove("DOMICILE_LOG")
            .args(["--config", "domicile.toml"]);
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

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "domicile {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{a:?}: {e}: {text}"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// A `migrate resume` worker process, its output in `{name}.out/.err`.
    fn spawn_worker(&self, name: &str, rate: &str) -> Worker {
        let child = self
            .command()
            .args([
                "migrate",
                "resume",
                "--workers",
                "3",
                "--lease",
                "2",
                "--grace",
                "0.2",
                "--rate",
                rate,
            ])
            .stdout(std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.err"))).unwrap())
            .spawn()
            .unwrap();
        Worker {
            name: name.to_string(),
            child: Some(child),
        }
    }

    /// A `serve` process on free ports, its log in `{name}.err`; returns it
    /// with its S3 endpoint once it listens.
    fn spawn_server(&self, name: &str) -> (Worker, String) {
        let (w, s3, _) = self.spawn_server_rest(name);
        (w, s3)
    }

    /// `spawn_server`, with the REST endpoint too.
    fn spawn_server_rest(&self, name: &str) -> (Worker, String, String) {
        let err = self.dir.join(format!("{name}.err"));
        let mut child = self
            .command()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
            ])
            .env("DOMICILE_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("DOMICILE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("DOMICILE_ADMIN_TOKEN", "shared-admin-token")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut s3, mut rest) = (None, None);
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if let Some(a) = line.trim().strip_prefix("s3 listening on ") {
                s3 = Some(a.to_string());
            }
            if let Some(a) = line.trim().strip_prefix("rest listening on ") {
                rest = Some(a.to_string());
            }
        }
        let s3 = s3.unwrap_or_else(|| {
            panic!(
                "{name} did not say where S3 listens:\n{}",
                self.log(&format!("{name}.err"))
            )
        });
        // Keep the pipe drained so the server never blocks on stdout.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let w = Worker {
            name: name.to_string(),
            child: Some(child),
        };
        (w, s3, rest.unwrap_or_default())
    }

    fn worker_output(&self, name: &str) -> String {
        format!(
            "--- {name} stdout:\n{}\n--- {name} stderr:\n{}",
            self.log(&format!("{name}.out")),
            self.log(&format!("{name}.err"))
        )
    }
}

/// A child process killed (SIGKILL) on drop unless it was waited for, so a
/// failing test leaves no worker running against a dropped database.
struct Worker {
    name: String,
    child: Option<Child>,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap()
    }

    fn wait(&mut self, deadline: Instant) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            if Instant::now() > deadline {
                panic!("worker {} did not finish in time", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The demo (120 subjects, ends under v2), its catalog moved into `db`,
/// the config switched to it, then policy v1 desired and its job created.
/// Returns the job's id and its number of units.
/// The demo's deployment (120 subjects, ending under policy v2) in `tmp`.
fn demo(tmp: &Path) -> Deployment {
    let dir = tmp.join("demo");
    let demo = Command::new(BIN)
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_CONFIG")
        .args(["demo", "--dir"])
        .arg(&dir)
        .args(["--subjects", "120"])
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "demo failed:\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    Deployment { dir }
}

/// Moves the deployment's catalog into `db` and switches its config to it,
/// as an operator would. Returns the config's new catalog line.
fn move_to_postgres(d: &Deployment, db: &Database) -> String {
    let out = d.ok(&["catalog", "migrate-to", &db.url]);
    assert!(out.contains(&format!("url = \"{}\"", db.url)), "{out}");
    let config = d.dir.join("domicile.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(SQLITE_URL), "{text}");
    let pg_line = format!("url = \"{}\"", db.url);
    std::fs::write(&config, text.replace(SQLITE_URL, &pg_line)).unwrap();
    d.ok(&["ledger", "verify"]);
    d.ok(&["verify"]);
    pg_line
}

fn prepare(tmp: &Path, db: &Database) -> (Deployment, i64, i64) {
    let d = demo(tmp);
    // The operator switches the config to the new catalog...
    let pg_line = move_to_postgres(&d, db);
    let config = d.dir.join("domicile.toml");

    // ...then wants policy v1 again: the Indian data goes back to China.
    assert!(V1.contains(SQLITE_URL));
    std::fs::write(&config, V1.replace(SQLITE_URL, &pg_line)).unwrap();
    d.ok(&["migrate", "apply", "--no-run"]);
    let status = d.json(&["migrate", "status"]);
    assert_eq!(status["state"], "running", "{status}");
    let job = status["job"].as_i64().unwrap();
    let units = status["units"].as_i64().unwrap();
    assert!(units > 20, "too little to move: {status}");
    assert_eq!(status["pending"], units, "{status}");
    (d, job, units)
}

// ---------------------------------------------------------------------------
// The writer: a third process keeps putting while the workers run
// ---------------------------------------------------------------------------

/// One `domicile put`, and how it ended.
#[derive(Debug, Clone)]
struct Put {
    subject: String,
    key: String,
    body: Vec<u8>,
    moving: bool,
    code: Option<i32>,
    stderr: String,
}

/// A few subjects that stay in China (CN, TW homes) and a few Indian ones
/// (moving back to China), found with `subject show`.
fn pick_subjects(d: &Deployment) -> (Vec<String>, Vec<String>) {
    let (mut staying, mut moving) = (Vec::new(), Vec::new());
    for i in 1..=60 {
        if staying.len() >= 3 && moving.len() >= 3 {
            break;
        }
        let s = format!("user-{i:06}");
        let show = d.json(&["subject", "show", &s]);
        let has_profile = show["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["category"] == "profile");
        match show["home"].as_str().unwrap() {
            "CN" | "TW" if staying.len() < 3 => staying.push(s),
            "IN" if moving.len() < 3 && has_profile => moving.push(s),
            _ => {}
        }
    }
    assert_eq!(staying.len(), 3, "no CN/TW subjects found");
    assert_eq!(moving.len(), 3, "no IN subjects found");
    (staying, moving)
}

/// Puts small files, one process each, round-robin over the subjects,
/// until `stop`; every put's outcome.
fn spawn_writer(
    dir: PathBuf,
    staying: Vec<String>,
    moving: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Put>> {
    std::thread::spawn(move || {
        let d = Deployment { dir };
        let subjects: Vec<(String, bool)> = staying
            .into_iter()
            .map(|s| (s, false))
            .chain(moving.into_iter().map(|s| (s, true)))
            .collect();
        let file = d.dir.join("put.bin");
        let mut puts = Vec::new();
        let mut n = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let (subject, moving) = subjects[n % subjects.len()].clone();
            let key = format!("notes/w-{n}.txt");
            let body: Vec<u8> = format!("put {n} for {subject}\n")
                .into_bytes()
                .into_iter()
                .cycle()
                .take(100 + (n * 37) % 1500)
                .collect();
            std::fs::write(&file, &body).unwrap();
            let out = d.run(&[
                "put",
                &subject,
                &key,
                file.to_str().unwrap(),
                "--category",
                "profile",
            ]);
            puts.push(Put {
                subject,
                key,
                body,
                moving,
                code: out.status.code(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
            n += 1;
        }
        puts
    })
}

// ---------------------------------------------------------------------------
// The checks at the end
// ---------------------------------------------------------------------------

fn check_done(d: &Deployment, job: i64, units: i64, puts: &[Put]) {
    let status = d.json(&["migrate", "status"]);
    println!("final status: {status}");
    assert_eq!(status["job"], job, "{status}");
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["failed"], 0, "{status}");
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["in_flight"], 0, "{status}");
    assert_eq!(status["committed"], 0, "{status}");
    assert_eq!(status["done"], units, "{status}");

    // No unit moved twice: one `move` entry per (subject, category) of the job.
    let ledger = d.json(&["ledger", "show"]);
    let mut moves: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for e in ledger["entries"].as_array().unwrap() {
        if e["kind"] == "move" && e["body"]["job"] == job {
            let key = (
                e["subject"].as_str().unwrap().to_string(),
                e["body"]["category"].as_str().unwrap().to_string(),
            );
            moves.entry(key).or_default().push(e.clone());
        }
    }
    for ((subject, category), entries) in &moves {
        assert_eq!(
            entries.len(),
            1,
            "{subject}/{category} was moved {} times by job {job}: {entries:#?}",
            entries.len()
        );
        let to = entries[0]["body"]["to"].as_array().unwrap();
        assert_eq!(to, &[Value::from("cn-north")], "{:#}", entries[0]);
    }
    assert_eq!(
        moves.len() as i64,
        units,
        "every unit of the job has its one move entry"
    );

    d.ok(&["verify"]);
    let lv = d.json(&["ledger", "verify"]);
    assert_eq!(lv["ok"], Value::Bool(true), "{lv}");
    d.ok(&["report", "violations"]);

    // No acknowledged write is lost.
    let got = d.dir.join("got.bin");
    let mut acked = 0;
    for p in puts {
        if p.code != Some(0) {
            continue;
        }
        acked += 1;
        d.ok(&["get", &p.subject, &p.key, "-o", got.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&got).unwrap(),
            p.body,
            "{}/{} reads back other bytes",
            p.subject,
            p.key
        );
    }
    println!("{acked} acknowledged puts read back");
}

/// Puts to subjects that do not move must all be acknowledged; puts to
/// moving ones may be refused, but never by a crash.
fn check_puts(puts: &[Put]) {
    let (mut staying_ok, mut moving_ok, mut refused) = (0, 0, 0);
    for p in puts {
        assert!(p.code.is_some(), "put killed by a signal: {p:?}");
        assert!(!p.stderr.contains("panicked"), "{p:?}");
        match (p.moving, p.code == Some(0)) {
            (false, true) => staying_ok += 1,
            (false, false) => panic!("a put to a subject that does not move failed: {p:?}"),
            (true, true) => moving_ok += 1,
            (true, false) => {
                // The engine's refusals (exit 1), nothing else: the policy
                // forbids the old region and no job moves it, or the job
                // moves it and the put's wait ran out (retry shortly).
                assert!(
                    p.code == Some(1)
                        && (p.stderr.contains("error: refused: ")
                            || p.stderr.contains("is being moved; retry shortly")),
                    "a put to a moving subject failed otherwise than by a refusal: {p:?}"
                );
                refused += 1;
                println!(
                    "refused put {}/{} (exit {:?}): {}",
                    p.subject,
                    p.key,
                    p.code,
                    p.stderr.trim()
                );
            }
        }
    }
    println!(
        "{} puts during the run: {staying_ok} staying acknowledged, \
         {moving_ok} moving acknowledged, {refused} moving refused",
        puts.len()
    );
    assert!(
        staying_ok >= 3,
        "the writer barely overlapped the workers: {} puts",
        puts.len()
    );
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn two_workers_share_one_postgres_job_while_a_third_process_writes() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create("shared");
    let (d, job, units) = prepare(tmp.path(), &db);
    let (staying, moving) = pick_subjects(&d);
    println!(
        "job {job}: {units} units; writing to {staying:?} (staying) and {moving:?} (moving); \
         prepared in {:?}",
        started.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(d.dir.clone(), staying, moving, stop.clone());
    let mut a = d.spawn_worker("worker-a", RATE);
    let mut b = d.spawn_worker("worker-b", RATE);
    // Both processes work the job at once: each holds at most 3 units
    // (`--workers 3`), so more than 3 in flight means both hold claims.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut most_in_flight = 0;
    while a.running() && b.running() {
        assert!(
            Instant::now() < deadline,
            "the workers did not finish in time\n{}\n{}",
            d.worker_output("worker-a"),
            d.worker_output("worker-b")
        );
        let out = d.run(&["migrate", "status", "--format", "json"]);
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            most_in_flight = most_in_flight.max(v["in_flight"].as_i64().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("at most {most_in_flight} units in flight at once");
    assert!(
        most_in_flight > 3,
        "never more units in flight than one process holds: {most_in_flight}"
    );
    let sa = a.wait(deadline);
    let sb = b.wait(deadline);
    stop.store(true, Ordering::SeqCst);
    let puts = writer.join().unwrap();
    println!("workers done after {:?}", started.elapsed());
    for (s, name) in [(sa, "worker-a"), (sb, "worker-b")] {
        assert!(s.success(), "{name}: {s}\n{}", d.worker_output(name));
        let err = d.worker_output(name);
        assert!(!err.contains("panicked"), "{err}");
    }

    check_puts(&puts);
    check_done(&d, job, units, &puts);
    println!("took {:?}", started.elapsed());
}

#[test]
fn a_worker_killed_mid_run_leaves_the_job_to_the_survivor() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create("shared_kill");
    let (d, job, units) = prepare(tmp.path(), &db);
    let (staying, moving) = pick_subjects(&d);
    println!(
        "job {job}: {units} units; prepared in {:?}",
        started.elapsed()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(d.dir.clone(), staying, moving, stop.clone());
    let mut a = d.spawn_worker("worker-a", KILL_RATE);
    let mut b = d.spawn_worker("worker-b", KILL_RATE);

    // Kill -9 worker A once the job is well under way, but not over.
    let deadline = Instant::now() + Duration::from_secs(90);
    let done_at_kill = loop {
        assert!(Instant::now() < deadline, "the job never got going");
        assert!(
            a.running() && b.running(),
            "a worker ended before the kill:\n{}\n{}",
            d.worker_output("worker-a"),
            d.worker_output("worker-b")
        );
        let status = d.json(&["migrate", "status"]);
        let done = status["done"].as_i64().unwrap();
        if done >= units / 4 && status["in_flight"].as_i64().unwrap() > 0 {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let pid = a.pid();
    let killed = a.kill9();
    assert!(killed.code().is_none(), "not killed by a signal: {killed}");
    let status = d.json(&["migrate", "status"]);
    println!(
        "killed worker A (pid {pid}) at {done_at_kill}/{units} done; \
         right after: {} done, {} in flight, {} pending",
        status["done"], status["in_flight"], status["pending"]
    );
    assert_ne!(status["state"], "done", "killed too late: {status}");

    // The survivor finishes the job, taking over A's units once their
    // leases expire.
    let sb = b.wait(Instant::now() + Duration::from_secs(40));
    assert!(
        sb.success(),
        "survivor: {sb}\n{}",
        d.worker_output("worker-b")
    );
    let status = d.json(&["migrate", "status"]);
    if status["state"] != "done" {
        println!("the survivor left the job at {status}; one more resume");
        let mut c = d.spawn_worker("worker-c", "0");
        let sc = c.wait(Instant::now() + Duration::from_secs(30));
        assert!(
            sc.success(),
            "worker-c: {sc}\n{}",
            d.worker_output("worker-c")
        );
    } else {
        println!("the survivor finished the job alone");
    }
    stop.store(true, Ordering::SeqCst);
    let puts = writer.join().unwrap();
    println!("workers done after {:?}", started.elapsed());

    check_puts(&puts);
    check_done(&d, job, units, &puts);
    println!("took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// Two servers, two workers, boto3 clients through both; one of each killed
// ---------------------------------------------------------------------------

/// The boto3 checker (`s3_checker.py`) against `endpoints`, running until
/// `stop_file` exists; its summary is written to `out_file`.
/// Waits until the clients have put at least 10 objects through every
/// endpoint.
fn wait_for_clients(d: &Deployment, checker: &mut Worker, endpoints: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(checker.running(), "{}", d.worker_output("checker"));
        let progress: Value =
            serde_json::from_str(&d.log("checker.progress")).unwrap_or(Value::Null);
        if endpoints
            .iter()
            .all(|e| progress[e.as_str()].as_i64().unwrap_or(0) >= 10)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the clients did not get going: {progress}\n{}",
            d.worker_output("checker")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops the clients and returns their summary, checked: no lost or stale
/// write, every acknowledged key read back at the end, and refusals only
/// of the engine's kinds (a moving subject), never internal errors.
fn stop_checker(d: &Deployment, checker: &mut Worker) -> Value {
    std::fs::write(d.dir.join("checker.stop"), b"").unwrap();
    let sc = checker.wait(Instant::now() + Duration::from_secs(120));
    assert!(
        sc.success(),
        "checker: {sc}\n{}",
        d.worker_output("checker")
    );
    let summary: Value = serde_json::from_str(&d.log("checker.json"))
        .unwrap_or_else(|e| panic!("no checker summary ({e}):\n{}", d.worker_output("checker")));
    println!("checker: {summary:#}");
    let violations = summary["violations"].as_array().unwrap();
    assert!(
        violations.is_empty(),
        "lost or stale writes: {violations:#?}"
    );
    assert_eq!(
        summary["final_checked"], summary["keys"],
        "every acknowledged key was read back at the end: {summary}"
    );
    for (code, _) in summary["refusals"].as_object().unwrap() {
        assert!(
            ["SlowDown", "AccessDenied", "OperationAborted"].contains(&code.as_str()),
            "a write failed with {code}: {summary}"
        );
    }
    summary
}

fn spawn_checker(d: &Deployment, endpoints: &[String], subjects: &[String]) -> Worker {
    let script = d.dir.join("s3_checker.py");
    std::fs::write(&script, CHECKER).unwrap();
    let child = Command::new("python3")
        .arg(&script)
        .current_dir(&d.dir)
        .env("ENDPOINTS", endpoints.join(","))
        .env("BUCKET", BUCKET)
        .env("SUBJECTS", serde_json::to_string(subjects).unwrap())
        .env("STOP_FILE", d.dir.join("checker.stop"))
        .env("OUT_FILE", d.dir.join("checker.json"))
        .env("PROGRESS_FILE", d.dir.join("checker.progress"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", d.dir.join("aws-config-none"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            d.dir.join("aws-credentials-none"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(d.dir.join("checker.out")).unwrap())
        .stderr(std::fs::File::create(d.dir.join("checker.err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 (boto3 must be installed): {e}"));
    Worker {
        name: "checker".into(),
        child: Some(child),
    }
}

#[test]
fn two_servers_and_two_workers_survive_a_kill_of_one_of_each() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create("servers");
    let (d, job, units) = prepare(tmp.path(), &db);
    let (staying, moving) = pick_subjects(&d);
    let subjects: Vec<String> = staying.iter().chain(&moving).cloned().collect();

    let (mut server_a, s3_a) = d.spawn_server("server-a");
    let (mut server_b, s3_b) = d.spawn_server("server-b");
    let endpoints = [s3_a.clone(), s3_b.clone()];
    let mut checker = spawn_checker(&d, &endpoints, &subjects);
    // The clients write through both servers before the move starts.
    wait_for_clients(&d, &mut checker, &endpoints);
    let mut a = d.spawn_worker("worker-a", KILL_RATE);
    let mut b = d.spawn_worker("worker-b", KILL_RATE);

    // Kill -9 server A and worker A once the job is well under way.
    let deadline = Instant::now() + Duration::from_secs(90);
    let done_at_kill = loop {
        assert!(Instant::now() < deadline, "the job never got going");
        for w in [&mut a, &mut b, &mut server_a, &mut server_b, &mut checker] {
            assert!(
                w.running(),
                "{} ended before the kill:\n{}",
                w.name,
                d.worker_output(&w.name)
            );
        }
        let status = d.json(&["migrate", "status"]);
        let done = status["done"].as_i64().unwrap();
        if done >= units / 4 && status["in_flight"].as_i64().unwrap() > 0 {
            break done;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let killed_server = server_a.kill9();
    let killed_worker = a.kill9();
    assert!(killed_server.code().is_none() && killed_worker.code().is_none());
    let status = d.json(&["migrate", "status"]);
    println!("killed server A and worker A at {done_at_kill}/{units} done; right after: {status}");
    assert_ne!(status["state"], "done", "killed too late: {status}");

    // The survivors finish: worker B takes over A's units after their
    // leases; the clients keep going through server B alone.
    let sb = b.wait(Instant::now() + Duration::from_secs(60));
    assert!(
        sb.success(),
        "survivor: {sb}\n{}",
        d.worker_output("worker-b")
    );
    if d.json(&["migrate", "status"])["state"] != "done" {
        let mut c = d.spawn_worker("worker-c", "0");
        let sc = c.wait(Instant::now() + Duration::from_secs(30));
        assert!(
            sc.success(),
            "worker-c: {sc}\n{}",
            d.worker_output("worker-c")
        );
    }
    // A little more traffic after the move, all through server B.
    std::thread::sleep(Duration::from_millis(1000));
    let summary = stop_checker(&d, &mut checker);
    let by_endpoint = &summary["acked_by_endpoint"];
    for e in [&s3_a, &s3_b] {
        assert!(
            by_endpoint[e].as_i64().unwrap() >= 10,
            "too few acknowledged writes through {e}: {summary}"
        );
    }
    assert!(
        summary["reads_checked"].as_i64().unwrap() >= 20,
        "{summary}"
    );

    // Server B stops cleanly; its log has no panic.
    let pid = server_b.pid().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let s = server_b.wait(Instant::now() + Duration::from_secs(20));
    assert!(
        s.success(),
        "server B: {s}\n{}",
        d.worker_output("server-b")
    );
    for name in ["server-a", "server-b", "worker-a", "worker-b"] {
        assert!(
            !d.worker_output(name).contains("panicked"),
            "{name} panicked"
        );
    }

    check_done(&d, job, units, &[]);
    println!("took {:?}", started.elapsed());
}

/// The policy version a server acts on, from its `/healthz`.
fn policy_version_of(rest: &str) -> i64 {
    use std::io::{Read, Write};
    let host = rest.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
    v["policy_version"]
        .as_i64()
        .unwrap_or_else(|| panic!("{v}"))
}

/// Issue 15's rollout, with real processes on one catalog: servers act on
/// policy version 2 (the demo stored v1's rules as version 1 when it first
/// opened the catalog, and applied v2's as version 2) while clients write
/// through them; a `policy apply` from another process makes v1's rules
/// (the Indian data back to China) version 3, which the servers follow
/// without a restart (their own config files still say v2's rules); two
/// workers carry the job out; one worker (and, on PostgreSQL, one of the
/// two servers) is killed with SIGKILL mid-job. Then no acknowledged write
/// is lost, `verify` and `report violations` pass by the active version,
/// the job is done with one move per unit, a server never restarted reports
/// version 3, and so does a killed one started again.
fn rollout(pg: Option<&Database>) {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let catalog_line = match pg {
        Some(db) => move_to_postgres(&d, db),
        None => SQLITE_URL.to_string(),
    };
    // The demo's end state (v2's rules) is version 2 already: applying it
    // again changes nothing.
    let first = d.json(&["policy", "apply", "domicile.toml", "--no-migrate"]);
    assert_eq!(
        (first["version"].as_i64(), first["created"].as_bool()),
        (Some(2), Some(false)),
        "{first}"
    );

    let (staying, moving) = pick_subjects(&d);
    let subjects: Vec<String> = staying.iter().chain(&moving).cloned().collect();
    let names: &[&str] = if pg.is_some() {
        &["server-a", "server-b"]
    } else {
        &["server-a"]
    };
    let mut servers: Vec<(Worker, String, String)> =
        names.iter().map(|n| d.spawn_server_rest(n)).collect();
    for (_, _, rest) in &servers {
        assert_eq!(policy_version_of(rest), 2);
    }
    let endpoints: Vec<String> = servers.iter().map(|(_, s3, _)| s3.clone()).collect();
    let mut checker = spawn_checker(&d, &endpoints, &subjects);
    wait_for_clients(&d, &mut checker, &endpoints);

    // The rules change while the clients write: v1's rules, applied from
    // another process (its own config file), become version 3.
    std::fs::write(d.dir.join("v1.toml"), V1.replace(SQLITE_URL, &catalog_line)).unwrap();
    let applied = d.json(&["policy", "apply", "v1.toml"]);
    assert_eq!(applied["version"], 3, "{applied}");
    let job = applied["job"]
        .as_i64()
        .unwrap_or_else(|| panic!("no job: {applied}"));
    let units = d.json(&["migrate", "status"])["units"].as_i64().unwrap();
    assert!(units > 20, "too little to move: {units}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while servers.iter().any(|(_, _, r)| policy_version_of(r) != 3) {
        assert!(
            Instant::now() < deadline,
            "a server did not follow version 3"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut a = d.spawn_worker("worker-a", KILL_RATE);
    let mut b = d.spawn_worker("worker-b", KILL_RATE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the job never got going");
        for w in [&mut a, &mut b, &mut checker]
            .into_iter()
            .chain(servers.iter_mut().map(|(w, _, _)| w))
        {
            assert!(
                w.running(),
                "{} ended early:\n{}",
                w.name,
                d.worker_output(&w.name)
            );
        }
        let status = d.json(&["migrate", "status"]);
        if status["done"].as_i64().unwrap() >= units / 4
            && status["in_flight"].as_i64().unwrap() > 0
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.kill9().code().is_none());
    if pg.is_some() {
        // One of the two servers dies too; the clients fail over.
        assert!(servers[0].0.kill9().code().is_none());
    }
    let sb = b.wait(Instant::now() + Duration::from_secs(60));
    assert!(
        sb.success(),
        "survivor: {sb}\n{}",
        d.worker_output("worker-b")
    );
    if d.json(&["migrate", "status"])["state"] != "done" {
        let mut c = d.spawn_worker("worker-c", "0");
        let sc = c.wait(Instant::now() + Duration::from_secs(30));
        assert!(
            sc.success(),
            "worker-c: {sc}\n{}",
            d.worker_output("worker-c")
        );
    }
    if pg.is_some() {
        // The killed server, started again, acts on version 2 from the start.
        let restarted = d.spawn_server_rest("server-a2");
        assert_eq!(policy_version_of(&restarted.2), 3);
        servers[0] = restarted;
    }
    let never_restarted = &servers[servers.len() - 1].2;
    assert_eq!(policy_version_of(never_restarted), 3);

    std::thread::sleep(Duration::from_millis(1000));
    let summary = stop_checker(&d, &mut checker);
    assert!(summary["puts_acked"].as_i64().unwrap() >= 20, "{summary}");
    for (w, _, _) in &mut servers {
        let pid = w.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let s = w.wait(Instant::now() + Duration::from_secs(20));
        assert!(s.success(), "{}: {s}\n{}", w.name, d.worker_output(&w.name));
    }
    for name in ["server-a", "server-b", "server-a2", "worker-a", "worker-b"] {
        assert!(
            !d.worker_output(name).contains("panicked"),
            "{name} panicked"
        );
    }
    check_done(&d, job, units, &[]);
    let history = d.json(&["policy", "history"]);
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        3,
        "{history}"
    );
    println!("took {:?}", started.elapsed());
}

#[test]
fn a_policy_applied_while_two_servers_serve_is_followed_by_both_through_kills() {
    let db = Database::create("rollout");
    rollout(Some(&db));
}

/// The same rollout on the embedded SQLite catalog: one server, CLI
/// workers, one of them killed.
#[test]
fn a_policy_applied_on_the_embedded_catalog_is_followed_through_a_worker_kill() {
    rollout(None);
}
