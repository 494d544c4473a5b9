//! How `domicile serve` meets the network, end to end: TLS on both
//! listeners with real clients (curl, the aws cli, boto3) and certificates
//! made by the test; a certificate replaced on disk and picked up without a
//! restart; plain text refused off loopback; slow clients and floods of
//! requests bounded; and the catalog reached over TLS on a PostgreSQL
//! server of the test's own that speaks nothing else.
//!
//! The clients, curl and PostgreSQL's server programs must be installed: a
//! missing one fails the test, it never skips it.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use domicile_test_support::pg::TlsServer;
use domicile_test_support::tls::{Ca, Pem};
use serde_json::{Value, json};

/// Writes a certificate pair under the deployment; returns (cert, key).
fn write_pair(d: &Deployment, pem: &Pem) -> (PathBuf, PathBuf) {
    let dir = d.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Key first: the pair is complete once the certificate lands.
    std::fs::write(&key, &pem.key).unwrap();
    std::fs::write(&cert, &pem.cert).unwrap();
    (cert, key)
}

fn write_ca(d: &Deployment, name: &str, ca: &Ca) -> PathBuf {
    let p = d.path().join(name);
    std::fs::write(&p, ca.cert_pem()).unwrap();
    p
}

fn healthz(srv: &Server, ca: &Path) -> Result<Reply, String> {
    curl("GET", &format!("{}/healthz", srv.rest), ca, None, None)
}

/// Polls `f` until it holds or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn host_port(url: &str) -> String {
    url.split("://").nth(1).unwrap().to_string()
}

// ---------------------------------------------------------------------------
// TLS on both listeners
// ---------------------------------------------------------------------------

const BOTO3_TLS: &str = r#"
import os
import boto3
from botocore.config import Config

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], verify=os.environ["CA"],
                  config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
K = "users/zq-subject-tls/boto.bin"
body = os.urandom(300_000)
s3.put_object(Bucket="user-data", Key=K, Body=body)
assert s3.get_object(Bucket="user-data", Key=K)["Body"].read() == body
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="user-data", Prefix="users/zq-subject-tls/")["Contents"]]
print("BOTO3 TLS OK", sorted(keys))
"#;

#[test]
fn https_on_both_listeners_with_real_clients_from_the_config_section() {
    let ca = Ca::new("domicile test CA");
    let d = Deployment::new(&format!(
        "{EXAMPLE}\n[server]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n"
    ));
    write_pair(&d, &ca.server(&["localhost", "127.0.0.1"]));
    let ca_file = write_ca(&d, "ca.pem", &ca);
    let srv = Server::start(&d, None);
    assert!(srv.rest.starts_with("https://127.0.0.1:"), "{}", srv.rest);
    assert!(srv.s3.starts_with("https://127.0.0.1:"), "{}", srv.s3);

    // The REST API, with a token, over TLS.
    assert_eq!(healthz(&srv, &ca_file).unwrap().status, 200);
    let r = curl(
        "POST",
        &format!("{}/v1/subjects", srv.rest),
        &ca_file,
        Some(ADMIN),
        Some(&json!({"subject": "zq-subject-tls", "home": "IN"})),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);

    // The S3 API with the aws cli, trusting only the test's authority.
    let file = d.path().join("upload.bin");
    let data = bytes(7, 2_500_000);
    std::fs::write(&file, &data).unwrap();
    let ca_arg = ca_file.to_str().unwrap();
    let target = format!("s3://{BUCKET}/users/zq-subject-tls/cli.bin");
    aws_ok(
        &srv,
        d.path(),
        &[
            "--ca-bundle",
            ca_arg,
            "s3",
            "cp",
            file.to_str().unwrap(),
            &target,
        ],
    );
    let back = d.path().join("back.bin");
    aws_ok(
        &srv,
        d.path(),
        &[
            "--ca-bundle",
            ca_arg,
            "s3",
            "cp",
            &target,
            back.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(&back).unwrap() == data,
        "the aws cli read other bytes back"
    );

    // boto3 with verify=CA.
    let out = python(&srv, d.path(), BOTO3_TLS, &[("CA", ca_arg)]);
    assert!(out.contains("BOTO3 TLS OK"), "{out}");
    assert!(out.contains("cli.bin") && out.contains("boto.bin"), "{out}");

    // A client that trusts another authority is refused, and so is plain
    // HTTP on a TLS listener.
    let other = write_ca(&d, "other-ca.pem", &Ca::new("another CA"));
    let refused = healthz(&srv, &other).unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    let s3_refused = aws(
        &srv,
        d.path(),
        &["--ca-bundle", other.to_str().unwrap(), "s3", "ls"],
    );
    assert!(!s3_refused.status.success());
    assert!(
        String::from_utf8_lossy(&s3_refused.stderr).contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        String::from_utf8_lossy(&s3_refused.stderr)
    );
    let plain = srv.rest.replace("https://", "http://");
    assert!(curl("GET", &format!("{plain}/healthz"), &ca_file, None, None).is_err());
    srv.stop();
}

#[test]
fn a_bad_certificate_or_key_is_refused_at_start_with_exit_2() {
    let ca = Ca::new("domicile test CA");
    let d = Deployment::new(EXAMPLE);
    let (cert, key) = write_pair(&d, &ca.server(&["localhost"]));
    let other = ca.server(&["localhost"]);
    let other_key = d.path().join("other-key.pem");
    std::fs::write(&other_key, &other.key).unwrap();
    let missing = d.path().join("missing.pem");
    let cases: [(&Path, &Path, &str); 3] = [
        (&cert, &other_key, "does not belong to the certificate"),
        (&missing, &key, "cannot read certificate"),
        (&key, &key, "holds no PEM certificate"),
    ];
    for (c, k, why) in cases {
        let out = Command::new(BIN)
            .current_dir(d.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(c)
            .arg("--tls-key")
            .arg(k)
            .env("DOMICILE_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("DOMICILE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{why}: {err}");
        assert!(err.contains(why), "expected {why:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "it listened: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

// ---------------------------------------------------------------------------
// Reloading the certificate
// ---------------------------------------------------------------------------

#[test]
fn a_certificate_replaced_on_disk_is_served_after_sighup_and_a_broken_one_never() {
    let (ca1, ca2) = (Ca::new("first CA"), Ca::new("second CA"));
    let d = Deployment::new(EXAMPLE);
    let (cert, key) = write_pair(&d, &ca1.server(&["localhost", "127.0.0.1"]));
    let (ca1_file, ca2_file) = (write_ca(&d, "ca1.pem", &ca1), write_ca(&d, "ca2.pem", &ca2));
    // No polling: only the signal may reload.
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-check-every",
            "0",
        ],
    );
    assert_eq!(healthz(&srv, &ca1_file).unwrap().status, 200);
    assert!(healthz(&srv, &ca2_file).is_err());

    write_pair(&d, &ca2.server(&["localhost", "127.0.0.1"]));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        healthz(&srv, &ca1_file).is_ok(),
        "the new certificate was served before any SIGHUP"
    );
    let hup = || {
        let pid = srv.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    hup();
    assert!(
        eventually(Duration::from_secs(10), || healthz(&srv, &ca2_file).is_ok()),
        "after SIGHUP a new connection does not see the new certificate:\n{}",
        srv.log()
    );
    let old = healthz(&srv, &ca1_file).unwrap_err();
    assert!(old.contains("certificate"), "{old}");
    // The S3 listener serves the new one too.
    let s3 = aws(
        &srv,
        d.path(),
        &["--ca-bundle", ca2_file.to_str().unwrap(), "s3", "ls"],
    );
    assert!(
        s3.status.success(),
        "{}",
        String::from_utf8_lossy(&s3.stderr)
    );

    // A broken certificate is refused, logged, and the served one stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    hup();
    assert!(
        eventually(Duration::from_secs(10), || srv
            .log()
            .contains("the previous one stays")),
        "a failed reload was not logged:\n{}",
        srv.log()
    );
    assert_eq!(healthz(&srv, &ca2_file).unwrap().status, 200);
    let log = srv.stop();
    assert!(log.contains("is not a PEM certificate chain"), "{log}");
}

#[test]
fn a_certificate_changed_on_disk_is_picked_up_without_a_signal() {
    let (ca1, ca2) = (Ca::new("first CA"), Ca::new("second CA"));
    let d = Deployment::new(EXAMPLE);
    let (cert, key) = write_pair(&d, &ca1.server(&["localhost", "127.0.0.1"]));
    let ca2_file = write_ca(&d, "ca2.pem", &ca2);
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-check-every",
            "0.2",
        ],
    );
    assert!(healthz(&srv, &ca2_file).is_err());
    write_pair(&d, &ca2.server(&["localhost", "127.0.0.1"]));
    assert!(
        eventually(Duration::from_secs(10), || healthz(&srv, &ca2_file).is_ok()),
        "the changed files were not picked up:\n{}",
        srv.log()
    );
    srv.stop();
}

// ---------------------------------------------------------------------------
// Plain text only on loopback
// ---------------------------------------------------------------------------

/// Runs `serve` expecting it to refuse to start; one that serves instead is
/// stopped after a while, so that the test fails rather than hangs.
fn serve_once(d: &Deployment, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .current_dir(d.path())
        .arg("serve")
        .args(args)
        .env_remove("DOMICILE_CONFIG")
        .env_remove("DOMICILE_LOG")
        .env("DOMICILE_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("DOMICILE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn plain_text_off_loopback_exits_2_with_the_reason_unless_insecure_plaintext() {
    let d = Deployment::new(EXAMPLE);
    for (rest, s3, api) in [
        ("0.0.0.0:0", "127.0.0.1:0", "REST"),
        ("127.0.0.1:0", "0.0.0.0:0", "S3"),
    ] {
        let out = serve_once(&d, &["--listen", rest, "--s3-listen", s3]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("refusing to serve the {api} API in plain text")),
            "{err}"
        );
        assert!(err.contains("unencrypted"), "{err}");
        assert!(
            err.contains("--tls-cert") && err.contains("--insecure-plaintext"),
            "{err}"
        );
        assert!(
            out.stdout.is_empty(),
            "it listened: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Nothing was opened or written: no catalog was created.
    assert!(
        !d.path().join("data").exists(),
        "a refused start changed the deployment"
    );

    let srv = Server::start_on(
        &d,
        ("0.0.0.0:0", "0.0.0.0:0"),
        None,
        &[],
        &["--insecure-plaintext"],
    );
    assert!(srv.rest.starts_with("http://0.0.0.0:"), "{}", srv.rest);
    let port = srv.rest.rsplit(':').next().unwrap();
    let r = http(
        "GET",
        &format!("http://127.0.0.1:{port}/healthz"),
        None,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    srv.stop();

    // With TLS, any address may be bound.
    let ca = Ca::new("domicile test CA");
    let (cert, key) = write_pair(&d, &ca.server(&["localhost", "127.0.0.1"]));
    let ca_file = write_ca(&d, "ca.pem", &ca);
    let srv = Server::start_on(
        &d,
        ("0.0.0.0:0", "0.0.0.0:0"),
        None,
        &[],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = srv.rest.rsplit(':').next().unwrap();
    let r = curl(
        "GET",
        &format!("https://127.0.0.1:{port}/healthz"),
        &ca_file,
        None,
        None,
    );
    assert_eq!(r.unwrap().status, 200);
    srv.stop();
}

// ---------------------------------------------------------------------------
// Slow clients and floods
// ---------------------------------------------------------------------------

/// Whether the server closed `s`, waiting up to `wait` for it.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .unwrap();
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn slow_headers_do_not_stop_a_normal_request_and_are_closed_after_the_timeout() {
    let d = Deployment::new(EXAMPLE);
    // Long enough that the aws cli's own start-up on a loaded machine
    // (seconds) fits well within it: the check is that the normal requests
    // are not queued behind the slow ones until the timeout frees them.
    let timeout = Duration::from_secs(6);
    let srv = Server::start_args(&d, None, &[], &["--header-read-timeout", "6"]);
    let rest = host_port(&srv.rest);
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut s = TcpStream::connect(&rest).unwrap();
            let partial = format!("GET /healthz HTTP/1.1\r\nHost: {rest}\r\nX-Slow-{i}: ");
            s.write_all(partial.as_bytes()).unwrap();
            s
        })
        .collect();

    // A normal request on each API is served at once.
    let t = Instant::now();
    let r = http("GET", &format!("{}/healthz", srv.rest), None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let ls = aws(&srv, d.path(), &["s3", "ls"]);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(
        t.elapsed() < timeout,
        "normal requests waited {:?} behind the slow ones",
        t.elapsed()
    );

    // The slow ones are still open before the timeout...
    let early = timeout.saturating_sub(opened.elapsed() + Duration::from_millis(1500));
    if !early.is_zero() {
        for s in slow.iter_mut().take(5) {
            assert!(
                !closed_within(s, Duration::from_millis(50)),
                "closed before the timeout"
            );
        }
    }
    // ...and all closed after it.
    let deadline = opened + timeout + Duration::from_secs(6);
    let mut open = 0;
    for s in slow.iter_mut() {
        if !closed_within(s, deadline.saturating_duration_since(Instant::now())) {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "{open} of 200 slow connections still open after the header timeout"
    );
    srv.stop();
}

#[test]
fn connections_beyond_the_cap_wait_to_be_accepted_until_a_slot_frees() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &["--max-connections", "5", "--header-read-timeout", "2"],
    );
    let rest = host_port(&srv.rest);
    // Served at once while there is room.
    let t = Instant::now();
    assert_eq!(
        http("GET", &format!("{}/healthz", srv.rest), None, None).status,
        200
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let opened = Instant::now();
    let slow: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(&rest).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The sixth waits for a slot: served once the header timeout closed
    // the slow ones, not before.
    let r = http("GET", &format!("{}/healthz", srv.rest), None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "the request beyond the cap was served after {waited:?}"
    );
    drop(slow);
    srv.stop();
}

const BOTO3_IN_FLIGHT: &str = r#"
import json, os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"},
                                retries={"total_max_attempts": 1, "mode": "standard"}))
B, K = "user-data", "users/zq-subject-busy/big.bin"
s3.put_object(Bucket=B, Key=K, Body=b"x" * (48 << 20))

def outcome(f):
    try:
        f()
        return ["ok", 200, None]
    except ClientError as e:
        r = e.response
        return [r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"],
                r["ResponseMetadata"]["HTTPHeaders"].get("retry-after")]

# Two GETs whose bodies are not read hold both slots while they stream.
held = [s3.get_object(Bucket=B, Key=K) for _ in range(2)]
# A HEAD's answer has no body to name its code: ask with a listing.
busy = outcome(lambda: s3.list_objects_v2(Bucket=B, Prefix="users/zq-subject-busy/"))
for h in held:
    h["Body"].close()
free = None
for _ in range(50):
    free = outcome(lambda: s3.head_object(Bucket=B, Key=K))
    if free[0] == "ok":
        break
    import time; time.sleep(0.2)
print(json.dumps({"busy": busy, "free": free}))
"#;

#[test]
fn the_in_flight_cap_answers_503_and_slowdown_instead_of_queueing() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start_args(&d, None, &[], &["--max-in-flight", "2"]);
    add_subject(&srv, "zq-subject-busy", "IN");

    // REST: two requests whose bodies never come hold both slots.
    let rest = host_port(&srv.rest);
    let holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(&rest).unwrap();
            let head = format!(
                "POST /v1/subjects HTTP/1.1\r\nHost: {rest}\r\nAuthorization: Bearer {ADMIN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
            );
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let mut s = TcpStream::connect(&rest).unwrap();
    s.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: {rest}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "the refusal waited {:?}",
        t.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("\"busy\""), "{answer}");
    drop(holders);
    assert!(
        eventually(Duration::from_secs(10), || {
            http("GET", &format!("{}/healthz", srv.rest), None, None).status == 200
        }),
        "the slots did not come back when the slow requests' connections closed"
    );

    // S3: boto3 sees SlowDown while two GETs stream, then is served again.
    let out = python(&srv, d.path(), BOTO3_IN_FLIGHT, &[]);
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["busy"], json!(["SlowDown", 503, "1"]), "{out}");
    assert_eq!(r["free"][0], "ok", "{out}");
    let metrics = http("GET", &format!("{}/metrics", srv.rest), None, None).body;
    assert!(
        metrics.contains("in_flight"),
        "refusals are not counted:\n{metrics}"
    );
    srv.stop();
}

const BOTO3_DRAIN: &str = r#"
import hashlib, os, signal, time
import boto3
from botocore.config import Config

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
B, K = "user-data", "users/zq-subject-drain/big.bin"
body = os.urandom(40 << 20)
s3.put_object(Bucket=B, Key=K, Body=body)
g = s3.get_object(Bucket=B, Key=K)["Body"]
first = g.read(1 << 20)
os.kill(int(os.environ["SERVER_PID"]), signal.SIGTERM)
time.sleep(1.0)
rest = g.read()
assert hashlib.sha256(first + rest).digest() == hashlib.sha256(body).digest(), len(first + rest)
try:
    s3.list_objects_v2(Bucket=B)
    print("NEW REQUEST SERVED")
except Exception as e:
    print("NEW REQUEST REFUSED", type(e).__name__)
print("DRAINED", len(first) + len(rest))
"#;

#[test]
fn sigterm_lets_a_streaming_get_finish_and_takes_no_new_request() {
    let d = Deployment::new(EXAMPLE);
    let mut srv = Server::start(&d, None);
    add_subject(&srv, "zq-subject-drain", "IN");
    let pid = srv.child.id().to_string();
    let out = python(&srv, d.path(), BOTO3_DRAIN, &[("SERVER_PID", &pid)]);
    assert!(out.contains(&format!("DRAINED {}", 40 << 20)), "{out}");
    assert!(out.contains("NEW REQUEST REFUSED"), "{out}");
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = srv.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "serve did not stop after draining");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", srv.log());
    assert!(srv.log().contains("finishing requests in flight"));
}

// ---------------------------------------------------------------------------
// PostgreSQL over TLS
// ---------------------------------------------------------------------------

fn on_postgres(url: &str) -> String {
    let config = EXAMPLE.replace("sqlite://data/catalog.db", url);
    assert_ne!(config, EXAMPLE, "the example's catalog line changed");
    config
}

#[test]
fn the_catalog_on_postgres_over_tls_require_and_verify_full_and_a_wrong_ca_is_refused() {
    let ca = Ca::new("catalog CA");
    let pem = ca.server(&["127.0.0.1", "localhost"]);
    let pg = TlsServer::start(&pem.cert, &pem.key);
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("catalog-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let wrong_ca = tmp.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, Ca::new("wrong CA").cert_pem()).unwrap();
    let ca_param = |p: &Path| format!("sslmode=verify-full&sslrootcert={}", p.display());

    // The server takes TLS only: without it the login is refused.
    let d = Deployment::new(&on_postgres(&pg.url("sslmode=disable")));
    let out = serve_once(
        &d,
        &["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no encryption"),
        "{err}"
    );

    for (n, params) in [
        ("require", "sslmode=require".to_string()),
        ("verify-full", ca_param(&ca_file)),
    ] {
        d.write_config(&on_postgres(&pg.url(&params)));
        let srv = Server::start(&d, None);
        let subject = format!("zq-subject-pg-{n}");
        add_subject(&srv, &subject, "IN");
        let file = d.path().join("o.bin");
        std::fs::write(&file, bytes(3, 70_000)).unwrap();
        let key = format!("s3://{BUCKET}/users/{subject}/o.bin");
        aws_ok(&srv, d.path(), &["s3", "cp", file.to_str().unwrap(), &key]);
        let back = d.path().join("back.bin");
        aws_ok(&srv, d.path(), &["s3", "cp", &key, back.to_str().unwrap()]);
        assert_eq!(std::fs::read(&back).unwrap(), bytes(3, 70_000), "{n}");
        srv.stop();
    }

    d.write_config(&on_postgres(&pg.url(&ca_param(&wrong_ca))));
    let t = Instant::now();
    let out = serve_once(
        &d,
        &["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the refusal took {:?}",
        t.elapsed()
    );
    assert!(out.stdout.is_empty());
    assert!(
        pg.log().contains("ready to accept connections"),
        "{}",
        pg.log()
    );
}
