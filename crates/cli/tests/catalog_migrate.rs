//! `domicile catalog migrate-to postgres://…` with the real binary: the
//! demo's embedded catalog moves into a fresh PostgreSQL database, the
//! config is switched to it, and the deployment carries on exactly where it
//! was: the same ledger (entries and head), the same residency, `verify`
//! clean, subjects found, writes and reads working, and new ledger entries
//! continuing the copied chain. A second migration into the now non-empty
//! database is refused (exit 2) and changes nothing.
//!
//! The server is `DOMICILE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`), a role that may create databases.
//! The test's database is dropped when it ends, even by a panic. Without a
//! reachable server this test FAILS, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use domicile_test_support::pg::Database;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_domicile");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_LEDGER_SIGNING_KEY")
        .env_remove("DOMICILE_CONFIG")
        .args(["--config", "domicile.toml"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "domicile {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let text = ok(dir, &a);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

#[test]
fn embedded_catalog_moves_to_postgres_and_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("demo");
    let demo = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&dir)
        .args(["--subjects", "40"])
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    // A signed checkpoint, whose key file lies beside the embedded catalog:
    // it moves with the catalog, and the copy still verifies against it.
    ok(&dir, &["ledger", "checkpoint"]);
    let ledger_before = json(&dir, &["ledger", "verify"]);
    assert_eq!(ledger_before["ok"], Value::Bool(true), "{ledger_before}");
    assert_eq!(ledger_before["checkpoints"], 1, "{ledger_before}");
    let residency_before = json(&dir, &["report", "residency"]);
    let show_before = json(&dir, &["subject", "show", "user-000001"]);

    let db = Database::create("cli");
    let out = ok(&dir, &["catalog", "migrate-to", &db.url]);
    assert!(out.contains(&format!("url = \"{}\"", db.url)), "{out}");
    let head = ledger_before["head_hash"].as_str().unwrap();
    assert!(out.contains(head), "the copy reports the same head:\n{out}");
    for table in ["subjects", "placements", "objects", "ledger"] {
        assert!(out.contains(table), "{out}");
    }

    // Into the now non-empty database: refused, nothing changed.
    let again = run(&dir, &["catalog", "migrate-to", &db.url]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The operator switches the config to the new catalog.
    let config = dir.join("domicile.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let old = "url = \"sqlite://data/catalog.db\"";
    assert!(text.contains(old), "{text}");
    std::fs::write(&config, text.replace(old, &format!("url = \"{}\"", db.url))).unwrap();

    assert_eq!(json(&dir, &["ledger", "verify"]), ledger_before);
    ok(&dir, &["verify"]);
    assert_eq!(json(&dir, &["report", "residency"]), residency_before);
    assert_eq!(json(&dir, &["subject", "show", "user-000001"]), show_before);

    // Writes and reads work, and new entries continue the copied chain.
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, b"hello from postgres").unwrap();
    ok(
        &dir,
        &[
            "put",
            "user-000001",
            "notes/after-move.txt",
            file.to_str().unwrap(),
        ],
    );
    let got = ok(&dir, &["get", "user-000001", "notes/after-move.txt"]);
    assert_eq!(got, "hello from postgres");
    ok(
        &dir,
        &["demand", "--authority", "IN", "--subject", "user-000001"],
    );
    let after = json(&dir, &["ledger", "verify"]);
    assert_eq!(after["ok"], Value::Bool(true), "{after}");
    let before_n = ledger_before["entries"].as_u64().unwrap();
    assert!(after["entries"].as_u64().unwrap() > before_n, "{after}");
    ok(&dir, &["verify"]);
}
