//! `domicile serve` end to end, garbage collection off the request path: a
//! large GET streamed by boto3 while the aws cli overwrites the same key
//! (and the server's background passes run) completes with exactly the old
//! bytes; once the grace period is over, a background pass deletes the old
//! blob without any request asking.
//!
//! The clients must be installed (`.ci/run` installs what is missing): a
//! missing one fails the test, it never skips it.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Where the example config's regions keep their files.
const REGIONS: &str = "data/regions";
const KEY: &str = "users/zq-subject-gc/big.bin";

/// How many background passes the server has logged.
fn passes(srv: &Server) -> usize {
    srv.log().matches("garbage collection pass").count()
}

/// Waits until the server has logged `n` more passes than `before`.
fn wait_for_passes(srv: &Server, before: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while passes(srv) < before + n {
        assert!(
            Instant::now() < deadline,
            "no background pass ran:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every file in the regions' folders (the test's one subject is all
/// they hold).
fn region_files(d: &Deployment) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| if p.is_dir() { count(&p) } else { 1 })
                .sum()
        })
    }
    count(&d.path().join(REGIONS))
}

fn put_with_aws(srv: &Server, home: &Path, file: &str, body: &[u8]) {
    std::fs::write(home.join(file), body).unwrap();
    aws_ok(
        srv,
        home,
        &[
            "s3",
            "cp",
            home.join(file).to_str().unwrap(),
            &format!("s3://{BUCKET}/{KEY}"),
        ],
    );
}

/// Reads the object with boto3: the first MiB, then (told to go on) the
/// rest, a MiB at a time; prints the length and SHA-256 of all it read.
const READER: &str = r#"
import hashlib, os, sys
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"])
body = s3.get_object(Bucket=os.environ["BUCKET"], Key=os.environ["KEY"])["Body"]
h = hashlib.sha256()
first = body.read(1 << 20)
h.update(first)
n = len(first)
print("started", n, flush=True)
sys.stdin.readline()
while True:
    chunk = body.read(1 << 20)
    if not chunk:
        break
    h.update(chunk)
    n += len(chunk)
print("read", n, h.hexdigest(), flush=True)
"#;

#[test]
fn a_get_streaming_while_the_key_is_overwritten_completes_with_the_old_bytes() {
    let d = Deployment::new(EXAMPLE);
    let home = d.path();
    // The default grace period; passes every 200 ms.
    let srv = Server::start_args(&d, None, &[], &["--collect-every", "0.2"]);
    add_subject(&srv, "zq-subject-gc", "IN");
    // Far more than the server reads ahead and the sockets buffer: most of
    // it is read from the region after the overwrite and the passes.
    let old = bytes(20, 64 << 20);
    put_with_aws(&srv, home, "old.bin", &old);
    let files = region_files(&d);

    let mut reader = python_spawn(
        &srv,
        home,
        "reader.py",
        READER,
        &[("BUCKET", BUCKET), ("KEY", KEY)],
    );
    let mut out = BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started 1048576", "the reader did not start");

    // The same key is overwritten while the GET is open, and background
    // passes run meanwhile.
    let started = Instant::now();
    put_with_aws(&srv, home, "new.bin", b"the new version");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the overwrite waited"
    );
    let before = passes(&srv);
    wait_for_passes(&srv, before, 3);
    assert_eq!(
        region_files(&d),
        files + 1,
        "the old blob is kept for its grace period beside the new one"
    );

    reader.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let status = reader.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut reader.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "the streaming GET failed: {err}");
    let want = format!("read {} {}", old.len(), sha256_hex(&home.join("old.bin")));
    assert_eq!(
        line.trim(),
        want,
        "the GET in flight did not complete with the old bytes"
    );

    // A new GET sees the new version.
    aws_ok(
        &srv,
        home,
        &[
            "s3",
            "cp",
            &format!("s3://{BUCKET}/{KEY}"),
            home.join("got.bin").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(home.join("got.bin")).unwrap(),
        b"the new version"
    );
    srv.stop();
}

/// With a short grace period, the old blob is deleted by a background pass
/// once the period is over, with no request to set it off; the overwrite
/// itself answered without collecting.
#[test]
fn after_the_grace_period_a_background_pass_deletes_the_old_blob() {
    let d = Deployment::new(EXAMPLE);
    let home = d.path();
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &["--collect-every", "0.2", "--gc-grace", "2"],
    );
    add_subject(&srv, "zq-subject-gc", "IN");
    put_with_aws(&srv, home, "v1.bin", &bytes(21, 300_000));
    let files = region_files(&d);
    // Taken before the overwrite starts, so that a slow client exit on a
    // loaded machine cannot make the grace look shorter than it was: the
    // old blob becomes garbage when the overwrite commits, after this.
    let overwriting = Instant::now();
    put_with_aws(&srv, home, "v2.bin", &bytes(22, 300_000));
    assert_eq!(region_files(&d), files + 1, "the overwrite collected");
    let deadline = Instant::now() + Duration::from_secs(30);
    while region_files(&d) != files {
        assert!(
            Instant::now() < deadline,
            "the old blob was never collected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        overwriting.elapsed() >= Duration::from_millis(1_900),
        "collected before its grace period was over"
    );
    let log = srv.stop();
    assert!(log.contains("garbage collection pass"), "{log}");
}

/// A bad `--gc-grace` is refused before anything starts.
#[test]
fn a_bad_grace_period_is_refused() {
    let d = Deployment::new(EXAMPLE);
    for bad in ["-1", "nan", "1e9"] {
        let out = std::process::Command::new(BIN)
            .current_dir(d.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
            ])
            .arg(format!("--gc-grace={bad}"))
            .env("DOMICILE_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("DOMICILE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--gc-grace"), "{bad}: {err}");
    }
}

/// The SHA-256 of a file, as the reader computes it.
fn sha256_hex(file: &Path) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
