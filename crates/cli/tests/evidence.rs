//! Evidence that stands on its own, end to end with the real binary on a
//! real SQLite catalog: signed checkpoints of the ledger's head find a
//! rewrite (even a consistent re-hash of the whole chain) or a cut of the
//! tail; an evidence bundle verifies offline, in a folder with no config,
//! catalog or key, and any flipped byte, a wrong key fingerprint, is
//! refused with exit 3; the signing key is created on first use, 0600,
//! and reused; `serve` publishes checkpoints to a file on a schedule.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, Deployment, EXAMPLE, Server, add_subject};
use domicile_catalog::LedgerEntry;
use domicile_catalog::ledger::{GENESIS, entry_hash};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

fn domicile(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_LEDGER_SIGNING_KEY")
        .env_remove("DOMICILE_LOG")
        .env_remove("DOMICILE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = domicile(cwd, args);
    assert_eq!(
        code(&out),
        0,
        "{args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(cwd: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(cwd, &all)).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A deployment with two subjects, an object and a demand in its ledger.
fn deployment() -> Deployment {
    let d = Deployment::new(EXAMPLE);
    let p = d.path();
    ok(p, &["subject", "add", "zq-alice", "--home", "IN"]);
    ok(p, &["subject", "add", "zq-bob", "--home", "IN"]);
    std::fs::write(p.join("note.txt"), b"hello").unwrap();
    ok(p, &["put", "zq-alice", "notes/a.txt", "note.txt"]);
    ok(p, &["demand", "--authority", "CN", "--subject", "zq-alice"]);
    d
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn sql(d: &Deployment) -> SqliteConnection {
    let opts = SqliteConnectOptions::new()
        .filename(d.path().join("data/catalog.db"))
        .create_if_missing(false);
    SqliteConnection::connect_with(&opts).await.unwrap()
}

/// Changes entry `seq`'s body, then re-hashes the whole chain so that it
/// links and verifies on its own, as someone with write access could.
fn rewrite_consistently(d: &Deployment, seq: i64) {
    rt().block_on(async {
        let mut conn = sql(d).await;
        let rows = sqlx::query(
            "SELECT seq, at, kind, subject, body, prev_hash, hash, actor FROM ledger ORDER BY seq",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut prev = GENESIS.to_string();
        for r in rows {
            let mut e = LedgerEntry {
                seq: r.get(0),
                at: r.get(1),
                kind: r.get(2),
                subject: r.get(3),
                body: r.get(4),
                prev_hash: r.get(5),
                hash: r.get(6),
                actor: r.get(7),
            };
            if e.seq == seq {
                e.body = r#"{"rewritten":true}"#.into();
            }
            e.prev_hash = prev.clone();
            e.hash = entry_hash(&prev, e.hashed());
            sqlx::query("UPDATE ledger SET body = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
                .bind(&e.body)
                .bind(&e.prev_hash)
                .bind(&e.hash)
                .bind(e.seq)
                .execute(&mut conn)
                .await
                .unwrap();
            prev = e.hash;
        }
    });
}

fn exec(d: &Deployment, statement: &str) {
    rt().block_on(async {
        let mut conn = sql(d).await;
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}

fn ledger_len(d: &Deployment) -> i64 {
    json(d.path(), &["ledger", "verify"])["entries"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_rewritten_ledger_after_a_checkpoint_is_found_even_with_its_stored_checkpoints_gone() {
    let d = deployment();
    let p = d.path();
    let published = p.join("published.jsonl");
    let c = json(
        p,
        &[
            "ledger",
            "checkpoint",
            "--publish",
            published.to_str().unwrap(),
        ],
    );
    let seq = c["seq"].as_i64().unwrap();
    assert!(seq >= 4, "{c}");
    assert_eq!(c["seq"].as_i64(), Some(ledger_len(&d)));
    ok(p, &["subject", "add", "zq-carol", "--home", "IN"]);
    let v = json(p, &["ledger", "verify"]);
    assert_eq!(
        (v["ok"].as_bool(), v["checkpoints"].as_u64()),
        (Some(true), Some(1))
    );

    // A consistent re-hash: the chain alone still verifies...
    rewrite_consistently(&d, 2);
    let out = domicile(p, &["ledger", "verify"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("rewritten"), "{}", stderr(&out));
    // The rewritten chain is not signed anew.
    let out = domicile(p, &["ledger", "checkpoint"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("does not follow"), "{}", stderr(&out));

    // ...and with the stored checkpoints deleted, only the published one
    // can tell.
    exec(&d, "DELETE FROM ledger_checkpoints");
    ok(p, &["ledger", "verify"]);
    let out = domicile(
        p,
        &[
            "ledger",
            "verify",
            "--checkpoints",
            published.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("rewritten"), "{}", stderr(&out));
}

#[test]
fn a_truncated_ledger_after_a_checkpoint_is_found() {
    let d = deployment();
    let p = d.path();
    let c = json(p, &["ledger", "checkpoint"]);
    let seq = c["seq"].as_i64().unwrap();
    // The chain cut below the checkpoint still links from genesis.
    exec(&d, &format!("DELETE FROM ledger WHERE seq >= {}", seq - 1));
    let out = domicile(p, &["ledger", "verify"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("cut"), "{}", stderr(&out));
    let v: Value =
        serde_json::from_slice(&domicile(p, &["--format", "json", "ledger", "verify"]).stdout)
            .unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["entries"].as_i64(), Some(seq - 2));
    // No new checkpoint of the cut ledger, and no bundle of it.
    let out = domicile(p, &["ledger", "checkpoint"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("cut"), "{}", stderr(&out));
    let out = domicile(p, &["evidence", "export", "-o", "b.json"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("cut"), "{}", stderr(&out));
    assert!(!p.join("b.json").exists());
}

#[test]
fn the_signing_key_is_created_on_first_use_private_and_reused() {
    let d = deployment();
    let p = d.path();
    let key = p.join("data/catalog.db.ledger-key");
    assert!(!key.exists(), "no key before a checkpoint is asked for");
    // Verifying an uncheckpointed ledger needs no key, and makes none.
    ok(p, &["ledger", "verify"]);
    assert!(!key.exists());
    let first = json(p, &["ledger", "checkpoint"]);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let bytes = std::fs::read(&key).unwrap();
    ok(p, &["subject", "add", "zq-dave", "--home", "IN"]);
    let second = json(p, &["ledger", "checkpoint"]);
    assert_eq!(std::fs::read(&key).unwrap(), bytes, "the key is reused");
    assert_eq!(first["key_id"], second["key_id"]);
    assert!(second["seq"].as_i64() > first["seq"].as_i64());
    let listed = json(p, &["ledger", "checkpoints"]);
    assert_eq!(listed["checkpoints"].as_array().unwrap().len(), 2);
    // The head unchanged: the same checkpoint, not a second one.
    let again = json(p, &["ledger", "checkpoint"]);
    assert_eq!(again, second);

    // Another key (the secret wins over the file) may not sign for this
    // catalog, and its signatures are not this deployment's.
    let other = Command::new(BIN)
        .current_dir(p)
        .args(["ledger", "checkpoint"])
        .env("DOMICILE_LEDGER_SIGNING_KEY", "11".repeat(32))
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_CONFIG")
        .output()
        .unwrap();
    assert_ne!(other.status.code(), Some(0));
    assert!(
        stderr(&other).contains("signed by key"),
        "{}",
        stderr(&other)
    );
    // A world-readable key file is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = domicile(p, &["ledger", "checkpoint"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn an_export_verifies_offline_and_any_flipped_byte_or_another_key_is_refused() {
    let d = deployment();
    let p = d.path();
    ok(p, &["ledger", "checkpoint"]);
    ok(p, &["subject", "add", "zq-erin", "--home", "IN"]);
    let out = json(p, &["evidence", "export", "-o", "all.json"]);
    assert_eq!(out["scope"], "ledger");
    let key_id = out["key_id"].as_str().unwrap().to_string();
    assert_eq!(out["entries"].as_i64(), Some(ledger_len(&d)), "every entry");
    let sub = json(
        p,
        &[
            "evidence",
            "export",
            "--subject",
            "zq-alice",
            "-o",
            "alice.json",
        ],
    );
    assert_eq!(sub["scope"], "subject");
    assert!(sub["entries"].as_u64().unwrap() >= 3, "{sub}");

    // Offline: a folder with nothing but the bundles.
    let away = tempfile::tempdir().unwrap();
    let a = away.path();
    for f in ["all.json", "alice.json"] {
        std::fs::copy(p.join(f), a.join(f)).unwrap();
        let v = json(a, &["evidence", "verify", f]);
        assert_eq!(v["ok"], true, "{v}");
        json(a, &["evidence", "verify", f, "--key", &key_id]);
        let out = domicile(a, &["evidence", "verify", f, "--key", &"ab".repeat(32)]);
        assert_eq!(code(&out), 3, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("not by the expected key"),
            "{}",
            stderr(&out)
        );
    }
    // The subject's bundle holds its entries and the chain from its first
    // one to a checkpoint, and other subjects' ids nowhere.
    let text = std::fs::read_to_string(a.join("alice.json")).unwrap();
    assert!(!text.contains("zq-alice") && !text.contains("zq-bob"));

    // Any flipped byte: spread over the whole file, bits low and high.
    let good = std::fs::read(a.join("all.json")).unwrap();
    let positions: Vec<usize> = (0..40)
        .map(|i| i * (good.len() - 1) / 39)
        .chain([1, good.len() / 2 + 1, good.len() - 2])
        .collect();
    for (n, &i) in positions.iter().enumerate() {
        let mut bad = good.clone();
        bad[i] ^= if n % 2 == 0 { 0x01 } else { 0x20 };
        std::fs::write(a.join("bad.json"), &bad).unwrap();
        let out = domicile(a, &["evidence", "verify", "bad.json"]);
        assert_eq!(
            code(&out),
            3,
            "byte {i} of {} flipped went unnoticed: {}",
            good.len(),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    }
    // A missing file is bad input, not a verdict.
    assert_eq!(
        code(&domicile(a, &["evidence", "verify", "nothing.json"])),
        2
    );
}

#[test]
fn serve_publishes_checkpoints_to_a_file_as_the_ledger_grows() {
    let d = Deployment::new(EXAMPLE);
    let p = d.path();
    let published = p.join("checkpoints.jsonl");
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &[
            "--checkpoint-every",
            "0.2",
            "--checkpoint-file",
            published.to_str().unwrap(),
        ],
    );
    add_subject(&srv, "zq-frank", "IN");
    let lines = || {
        std::fs::read_to_string(&published)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines().iter().any(|c| c["seq"].as_i64() >= Some(2)) {
        assert!(
            Instant::now() < deadline,
            "nothing published:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    add_subject(&srv, "zq-grace", "IN");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !lines().iter().any(|c| c["seq"].as_i64() >= Some(3)) {
        assert!(
            Instant::now() < deadline,
            "no second checkpoint:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.stop();
    // An unchanged head is not signed again.
    let seqs: Vec<i64> = lines().iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(seqs, unique, "{seqs:?}");
    let v = json(
        p,
        &[
            "ledger",
            "verify",
            "--checkpoints",
            published.to_str().unwrap(),
        ],
    );
    assert_eq!(v["ok"], true);
    assert!(
        v["checkpoints"].as_u64().unwrap() >= 2 * 2,
        "stored and published: {v}"
    );

    // A bad interval is bad input.
    let out = domicile(p, &["serve", "--checkpoint-every=-1"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = domicile(p, &["serve", "--checkpoint-file", "x.jsonl"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// What the receiver got: each request's line and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A tiny HTTP receiver: records each request's line and body, answers 200.
fn receiver() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/checkpoints", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut request = String::new();
                    if r.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    seen.lock()
                        .unwrap()
                        .push((request.trim().to_string(), String::from_utf8(body).unwrap()));
                    out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (url, got)
}

#[test]
fn serve_posts_checkpoints_to_a_url() {
    let d = Deployment::new(EXAMPLE);
    let (url, got) = receiver();
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &["--checkpoint-every", "0.2", "--checkpoint-url", &url],
    );
    add_subject(&srv, "zq-heidi", "IN");
    let deadline = Instant::now() + Duration::from_secs(30);
    let posted = loop {
        let found = got.lock().unwrap().iter().find_map(|(line, body)| {
            let c: Value = serde_json::from_str(body).unwrap();
            (c["seq"].as_i64() >= Some(2)).then(|| (line.clone(), c))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "nothing posted:\n{}", srv.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    srv.stop();
    assert!(posted.0.starts_with("POST /checkpoints "), "{}", posted.0);
    // What was posted is a checkpoint this deployment's ledger matches.
    let file = d.path().join("posted.jsonl");
    std::fs::write(&file, format!("{}\n", posted.1)).unwrap();
    let v = json(
        d.path(),
        &["ledger", "verify", "--checkpoints", file.to_str().unwrap()],
    );
    assert_eq!(v["ok"], true, "{v}");
    let out = domicile(
        d.path(),
        &[
            "serve",
            "--checkpoint-every",
            "1",
            "--checkpoint-url",
            "ftp://x",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

#[test]
fn the_rest_api_lists_signs_and_exports_by_role() {
    use common::{ADMIN, AUDITOR, http};
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start(&d, None);
    add_subject(&srv, "zq-ivan", "IN");
    let url = |path: &str| format!("{}{path}", srv.rest);
    // The auditor reads and exports; only admin and operator sign.
    assert_eq!(
        http("POST", &url("/v1/ledger/checkpoints"), Some(AUDITOR), None).status,
        403
    );
    let signed = http("POST", &url("/v1/ledger/checkpoints"), Some(ADMIN), None);
    assert_eq!(signed.status, 200, "{}", signed.body);
    let listed = http("GET", &url("/v1/ledger/checkpoints"), Some(AUDITOR), None);
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["checkpoints"][0], signed.json());
    assert_eq!(http("GET", &url("/v1/evidence"), None, None).status, 401);
    let verified = http("GET", &url("/v1/ledger/verify"), Some(AUDITOR), None).json();
    assert_eq!(
        (verified["ok"].as_bool(), verified["checkpoints"].as_u64()),
        (Some(true), Some(1))
    );
    for (query, scope) in [("", "ledger"), ("?subject=zq-ivan", "subject")] {
        let bundle = http(
            "GET",
            &url(&format!("/v1/evidence{query}")),
            Some(AUDITOR),
            None,
        );
        assert_eq!(bundle.status, 200, "{}", bundle.body);
        let file = d.path().join("rest-bundle.json");
        std::fs::write(&file, &bundle.body).unwrap();
        let v = json(d.path(), &["evidence", "verify", file.to_str().unwrap()]);
        assert_eq!(v["scope"], scope, "{v}");
        assert_eq!(v["key_id"], signed.json()["key_id"]);
    }
    let bad = http(
        "GET",
        &url("/v1/evidence?subject=zq-nobody"),
        Some(ADMIN),
        None,
    );
    assert_eq!(bad.status, 404, "{}", bad.body);
    srv.stop();
}
