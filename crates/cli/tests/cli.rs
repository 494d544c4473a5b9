//! End-to-end tests of the `domicile` binary: every test runs the real
//! executable in a fresh temporary deployment and checks what it prints,
//! the exit code, and what it leaves on disk and in the catalog.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use domicile_test_support::rng::bytes_of;
use serde_json::Value;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

const BIN: &str = env!("CARGO_BIN_EXE_domicile");
const V1: &str = include_str!("../../../examples/demo-v1.toml");
const V2: &str = include_str!("../../../examples/demo-v2.toml");
const EXAMPLE: &str = include_str!("../../../examples/domicile.toml");

const REGIONS: [&str; 5] = [
    "cn-north",
    "aws-ap-southeast-1",
    "aws-us-east-1",
    "in-mumbai",
    "tw-taipei",
];

/// The catalog's own files: their sizes depend on when SQLite checkpoints
/// its WAL, so state snapshots compare the catalog's rows instead.
const CATALOG_FILES: [&str; 4] = [
    "catalog.db",
    "catalog.db-wal",
    "catalog.db-shm",
    "catalog.db-journal",
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A base command: no token key nor log filter inherited from the caller's
/// environment, and a working directory of our own.
fn command(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_LOG")
        .env_remove("DOMICILE_CONFIG");
    c
}

/// Checks what every run must satisfy, whatever its exit code.
fn checked(out: Output, what: &str) -> Output {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{what}: the process panicked:\n{stderr}"
    );
    assert!(
        out.status.code().is_some(),
        "{what}: killed by a signal: {:?}",
        out.status
    );
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every field of `keys` is present in the JSON object `v`.
fn assert_keys(v: &Value, keys: &[&str], what: &str) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    for k in keys {
        assert!(obj.contains_key(*k), "{what}: missing field {k:?} in {v}");
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// Recursively lists regular files under `root`, relative paths to sizes.
fn walk(root: &Path) -> BTreeMap<String, u64> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            let p = e.path();
            if ty.is_dir() {
                go(root, &p, out);
            } else if ty.is_file() {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(rel, e.metadata().unwrap().len());
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Everything that "nothing changed" compares.
#[derive(Debug, PartialEq, Eq)]
struct State {
    /// Files under data/ (but the catalog's own) with size and BLAKE3.
    files: BTreeMap<String, (u64, String)>,
    /// Every row of every catalog table.
    catalog: Vec<String>,
    ledger: String,
    residency: String,
}

/// One deployment in a fresh temporary folder.
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
        std::fs::create_dir_all(dir.join("inputs")).unwrap();
        Deployment {
            _tmp: tmp,
            dir,
            config,
        }
    }

    fn v1() -> Self {
        Self::new(V1)
    }

    fn v2() -> Self {
        Self::new(V2)
    }

    fn set_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn region_dir(&self, region: &str) -> PathBuf {
        self.data().join("regions").join(region)
    }

    /// A file beside the deployment (outside data/) holding `body`.
    fn input(&self, name: &str, body: &[u8]) -> PathBuf {
        let p = self.dir.join("inputs").join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    /// Writes another config file beside the deployment's (same relative
    /// data paths) and returns its path.
    fn other_config(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn command(&self) -> Command {
        let mut c = command(&self.dir);
        c.env("DOMICILE_CONFIG", &self.config);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().unwrap();
        checked(out, &format!("domicile {args:?}"))
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command();
        for (k, v) in env {
            c.env(k, v);
        }
        checked(
            c.args(args).output().unwrap(),
            &format!("domicile {args:?}"),
        )
    }

    /// Runs, expecting `want` as the exit code.
    fn expect(&self, want: i32, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            code(&out),
            want,
            "domicile {args:?}: exit code\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        stdout(&self.expect(0, args))
    }

    /// `args --format json`, expecting exit code `want`.
    fn json_code(&self, want: i32, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.expect(want, &a);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("domicile {a:?}: not JSON ({e}):\n{}", stdout(&out)))
    }

    fn json(&self, args: &[&str]) -> Value {
        self.json_code(0, args)
    }

    fn add(&self, id: &str, home: &str) {
        self.ok(&["subject", "add", id, "--home", home]);
    }

    fn put(&self, id: &str, key: &str, body: &[u8]) -> Value {
        let f = self.input(&format!("body-{}", blake3::hash(key.as_bytes())), body);
        self.json(&["put", id, key, s(&f)])
    }

    fn get(&self, id: &str, key: &str) -> Vec<u8> {
        let out = self.dir.join("inputs").join("got");
        let _ = std::fs::remove_file(&out);
        self.ok(&["get", id, key, "-o", s(&out)]);
        std::fs::read(&out).unwrap()
    }

    /// Every file under data/, relative path to size.
    fn files(&self) -> BTreeMap<String, u64> {
        walk(&self.data())
    }

    /// Files of one region folder.
    fn region_files(&self, region: &str) -> BTreeSet<String> {
        walk(&self.region_dir(region)).into_keys().collect()
    }

    fn region_counts(&self) -> BTreeMap<&'static str, usize> {
        REGIONS
            .iter()
            .map(|r| (*r, self.region_files(r).len()))
            .collect()
    }

    fn ledger_kinds(&self) -> Vec<String> {
        self.json(&["ledger", "show"])["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }

    async fn sql(&self) -> SqliteConnection {
        let opts = SqliteConnectOptions::new()
            .filename(self.data().join("catalog.db"))
            .create_if_missing(false);
        SqliteConnection::connect_with(&opts).await.unwrap()
    }

    /// Every row of every catalog table, as text.
    fn catalog_dump(&self) -> Vec<String> {
        rt().block_on(async {
            let mut conn = self.sql().await;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut out = Vec::new();
            for t in tables {
                let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
                )))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                let expr = cols
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT {expr} FROM \"{t}\" ORDER BY 1"
                )))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                out.push(format!("== {t} ({})", cols.join(",")));
                out.extend(rows);
            }
            conn.close().await.unwrap();
            out
        })
    }

    fn state(&self) -> State {
        let ledger = self.ok(&["ledger", "show", "--format", "json"]);
        let residency = self.ok(&["report", "residency", "--format", "json"]);
        let files = self
            .files()
            .into_iter()
            .filter(|(p, _)| !CATALOG_FILES.contains(&p.as_str()))
            .map(|(p, size)| {
                let bytes = std::fs::read(self.data().join(&p)).unwrap();
                (p, (size, blake3::hash(&bytes).to_hex().to_string()))
            })
            .collect();
        State {
            files,
            catalog: self.catalog_dump(),
            ledger,
            residency,
        }
    }

    /// Runs a bad input: exit 2, a message on stderr, and nothing changed.
    fn bad(&self, args: &[&str]) -> String {
        let before = self.state();
        let out = self.expect(2, args);
        let err = stderr(&out);
        assert!(
            !err.trim().is_empty(),
            "domicile {args:?}: exit 2 without a message"
        );
        let after = self.state();
        assert_unchanged(&before, &after, &format!("domicile {args:?}"));
        err
    }
}

/// Fails with a readable account of what differs between two snapshots.
fn assert_unchanged(before: &State, after: &State, what: &str) {
    if before == after {
        return;
    }
    let mut report = Vec::new();
    for (p, v) in &before.files {
        match after.files.get(p) {
            None => report.push(format!("file removed: data/{p}")),
            Some(w) if w != v => report.push(format!("file changed: data/{p}")),
            Some(_) => {}
        }
    }
    for p in after.files.keys() {
        if !before.files.contains_key(p) {
            report.push(format!("file added: data/{p}"));
        }
    }
    let b: BTreeSet<&String> = before.catalog.iter().collect();
    let a: BTreeSet<&String> = after.catalog.iter().collect();
    for row in b.difference(&a) {
        report.push(format!("catalog row gone: {row}"));
    }
    for row in a.difference(&b) {
        report.push(format!("catalog row new: {row}"));
    }
    if before.ledger != after.ledger {
        report.push("`ledger show` differs".into());
    }
    if before.residency != after.residency {
        report.push(format!(
            "`report residency` differs:\n{}\n---\n{}",
            before.residency, after.residency
        ));
    }
    panic!("{what} changed the deployment:\n{}", report.join("\n"));
}

/// Checks `PATH:LINE:COL: ` at the start of a config diagnostic and returns
/// (line, col).
fn diagnostic_position(err: &str, path: &Path) -> (usize, usize) {
    let first = err.lines().next().unwrap_or("");
    let prefix = format!("{}:", path.display());
    let rest = first
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("diagnostic does not start with {prefix}: {err}"));
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no line number in {first}"));
    let col: usize = parts
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no column number in {first}"));
    let msg = parts.next().unwrap_or("");
    assert!(
        msg.starts_with(' ') && msg.trim().len() > 3,
        "no message in {first}"
    );
    assert!(line >= 1 && col >= 1, "{first}");
    (line, col)
}

/// 1-based number of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + 1
}

/// Parses CSV output: a header, and every row as wide as the header.
fn parse_csv(text: &str, what: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert!(
        !header.is_empty() && header.iter().all(|h| !h.is_empty()),
        "{what}: no CSV header in {text:?}"
    );
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    for row in &rows {
        assert_eq!(
            row.len(),
            header.len(),
            "{what}: CSV row {row:?} is not as wide as the header {header:?}"
        );
    }
    (header, rows)
}

// ---------------------------------------------------------------------------
// 1. The demo
// ---------------------------------------------------------------------------

#[test]
fn demo_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("demo");
    let out = checked(
        command(tmp.path())
            .args(["demo", "--dir", s(&d), "--subjects", "60"])
            .output()
            .unwrap(),
        "demo",
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "demo failed:\n{text}\n{}", stderr(&out));
    let ledger_line = text
        .lines()
        .find(|l| l.starts_with("ledger verify"))
        .unwrap_or_else(|| panic!("no ledger verify line:\n{text}"));
    assert!(ledger_line.contains("intact"), "{ledger_line}");
    let verify_line = text
        .lines()
        .find(|l| l.starts_with("verify:"))
        .unwrap_or_else(|| panic!("no verify line:\n{text}"));
    assert!(verify_line.trim_end().ends_with("ok"), "{verify_line}");

    let config = d.join("domicile.toml");
    let v2 = d.join("policy-v2.toml");
    assert!(config.is_file() && v2.is_file());
    let run = |args: &[&str]| -> Value {
        let mut c = command(tmp.path());
        c.arg("--config").arg(&config).args(args);
        c.args(["--format", "json"]);
        let out = checked(c.output().unwrap(), "demo follow-up");
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    assert!(
        text.lines()
            .any(|l| l.starts_with("report violations: none")),
        "the migration left violations:\n{text}"
    );
    // Every unit that changed custodian was re-keyed, and there were some.
    let rekeyed = text
        .lines()
        .find(|l| l.contains("units that changed custodian were re-keyed"))
        .unwrap_or_else(|| panic!("no re-keying line:\n{text}"));
    let counts: Vec<u64> = rekeyed
        .split_whitespace()
        .take(3)
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        counts.len() == 2 && counts[0] == counts[1] && counts[0] > 0,
        "{rekeyed}"
    );
    assert!(
        text.contains("every one read back"),
        "no write check during the move:\n{text}"
    );

    // The demo carried policy v2 out: Indian data left China, payments went
    // to India, Chinese and Taiwanese data stayed.
    let residency = run(&["report", "residency"]);
    let rows = residency["rows"].as_array().unwrap();
    let homes: BTreeSet<&str> = rows.iter().map(|r| r["home"].as_str().unwrap()).collect();
    assert_eq!(homes, BTreeSet::from(["CN", "IN", "TW"]));
    for r in rows {
        match (r["home"].as_str().unwrap(), r["category"].as_str().unwrap()) {
            ("IN", "payment") => assert_eq!(r["region"], "in-mumbai", "{r}"),
            ("IN", _) => assert!(
                r["region"] == "aws-ap-southeast-1" || r["region"] == "aws-us-east-1",
                "{r}"
            ),
            _ => assert_eq!(r["region"], "cn-north", "{r}"),
        }
    }
    // Who could compel Indian users' data after the move: China through
    // its China-headquartered operator, the US through its providers and
    // Singapore through its territory, each ciphertext only, since the keys
    // are at an Indian custodian; India, which holds them, in plaintext.
    let exposure = run(&["report", "exposure"]);
    let row = |a: &str| {
        exposure["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["authority"] == a && r["home"] == "IN")
            .unwrap_or_else(|| panic!("no {a} row over IN: {exposure}"))
            .clone()
    };
    let cn = row("CN");
    assert_eq!(cn["subjects"], 30, "{cn}");
    assert_eq!(cn["plaintext_subjects"], 0, "{cn}");
    assert_eq!(cn["ciphertext_subjects"], 30, "CN reaches every copy: {cn}");
    assert_eq!(strs(&cn["grounds"]), ["cn-national-intelligence"], "{cn}");
    let us = row("US");
    assert_eq!(us["plaintext_subjects"], 0, "{us}");
    assert_eq!(
        us["ciphertext_subjects"], 30,
        "every profile is at AWS: {us}"
    );
    assert!(
        strs(&us["grounds"]).contains(&"us-cloud-act".to_string()),
        "{us}"
    );
    let sg = row("SG");
    assert_eq!(sg["plaintext_subjects"], 0, "{sg}");
    assert!(sg["ciphertext_subjects"].as_u64().unwrap() > 0, "{sg}");
    assert_eq!(strs(&sg["grounds"]), ["territory"], "{sg}");
    let india = row("IN");
    assert!(india["plaintext_subjects"].as_u64().unwrap() > 0, "{india}");
    assert!(
        strs(&india["grounds"]).contains(&"in-dpdp".to_string()),
        "{india}"
    );
    let cited: Vec<&str> = exposure["grounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["preset"].as_str().unwrap())
        .collect();
    assert!(cited.contains(&"cn-national-intelligence"), "{exposure}");
    assert!(
        exposure["legal_notice"]
            .as_str()
            .unwrap()
            .starts_with("Not legal advice"),
        "{exposure}"
    );
    // The demo's own last table says so, with the grounds cited.
    let last = text.rsplit("== Who could compel it now ==").next().unwrap();
    let cn_line = last
        .lines()
        .find(|l| l.starts_with("CN ") && l.split_whitespace().nth(1) == Some("IN"))
        .unwrap_or_else(|| panic!("no CN/IN line after the move:\n{last}"));
    let cells: Vec<&str> = cn_line.split_whitespace().collect();
    // authority, home, subjects, plaintext before/after, ciphertext before/after, grounds
    assert_eq!(cells[4], "0", "no plaintext after: {cn_line}");
    assert_eq!(cells[6], "30", "ciphertext after: {cn_line}");
    assert_eq!(cells[7], "cn-national-intelligence", "{cn_line}");
    assert!(last.contains("National Intelligence Law"), "{last}");
    assert!(last.contains("Not legal advice"), "{last}");

    let objects: i64 = rows.iter().map(|r| r["objects"].as_i64().unwrap()).sum();
    // 60 profiles, 45 media, 20 payments, plus notes written during the move.
    assert!(objects >= 60 + 45 + 20, "{objects}");
    // Nothing is left to move under the config now in force.
    let plan = run(&["plan"]);
    assert_eq!(plan["moves"].as_array().unwrap().len(), 0, "{plan}");
    let status = run(&["migrate", "status"]);
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["failed"], 0, "{status}");

    // What if policy v1 came back? Indian data would return to China.
    let v1 = d.join("policy-v1.toml");
    std::fs::write(&v1, include_str!("../../../examples/demo-v1.toml")).unwrap();
    let plan = run(&["plan", "--policy", s(&v1)]);
    let moves = plan["moves"].as_array().unwrap();
    assert!(!moves.is_empty(), "{plan}");
    let mut payment_moves = 0;
    for m in moves {
        assert_eq!(m["home"], "IN", "only Indian subjects move: {m}");
        assert_eq!(strs(&m["to"]), ["cn-north"], "{m}");
        let from = strs(&m["from"]);
        assert!(!from.contains(&"cn-north".to_string()), "{m}");
        if m["category"] == "payment" {
            payment_moves += 1;
            assert_eq!(from, ["in-mumbai"], "{m}");
        }
        // The caller holds the secrets: subjects are named by id.
        assert!(m["subject"].as_str().unwrap().starts_with("user-"), "{m}");
    }
    assert!(payment_moves > 0, "no payment move in {plan}");
    let totals = &plan["totals"];
    assert_eq!(totals["subjects"].as_u64().unwrap(), 30, "half are Indian");
    assert_eq!(
        totals["objects"].as_u64().unwrap(),
        moves
            .iter()
            .map(|m| m["objects"].as_u64().unwrap())
            .sum::<u64>()
    );
    for key in ["exposure_before", "exposure_after"] {
        let rows = plan[key].as_array().unwrap();
        assert!(!rows.is_empty(), "{key} empty");
        for r in rows {
            assert_keys(
                r,
                &[
                    "authority",
                    "home",
                    "subjects",
                    "plaintext_subjects",
                    "ciphertext_subjects",
                ],
                key,
            );
        }
    }
    // China would regain its plaintext reach over Indian subjects.
    let cn_in = |key: &str| {
        plan[key]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["authority"] == "CN" && r["home"] == "IN")
            .map(|r| r["plaintext_subjects"].as_u64().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(cn_in("exposure_before"), 0);
    assert_eq!(cn_in("exposure_after"), 30);

    // A second demo into the same, now non-empty, folder is refused.
    let again = checked(
        command(tmp.path())
            .args(["demo", "--dir", s(&d), "--subjects", "5"])
            .output()
            .unwrap(),
        "demo again",
    );
    assert_eq!(code(&again), 2, "{}", stderr(&again));
}

// ---------------------------------------------------------------------------
// 2. JSON and CSV shapes
// ---------------------------------------------------------------------------

#[test]
fn json_and_csv_shapes() {
    let d = Deployment::v1();
    let v2 = d.other_config("policy-v2.toml", V2);
    d.add("ravi", "IN");
    d.add("wang", "CN");
    d.put("ravi", "profile.json", b"{\"name\":\"r\"}");
    d.put("ravi", "payments/card.json", &bytes_of(1, 700));
    d.put("wang", "media/photo.jpg", &bytes_of(2, 5000));

    // policy explain, under the demo-v2 config.
    let e = d.json(&[
        "--config",
        s(&v2),
        "policy",
        "explain",
        "--home",
        "IN",
        "--category",
        "payment",
    ]);
    assert_keys(
        &e,
        &[
            "home",
            "category",
            "allowed",
            "copies",
            "custodian",
            "rules",
        ],
        "policy explain",
    );
    assert_eq!(e["home"], "IN");
    assert_eq!(e["category"], "payment");
    assert_eq!(strs(&e["allowed"]), ["in-mumbai"]);
    assert_eq!(e["copies"], 1);
    assert_eq!(e["custodian"], "in-kms");
    let rules = strs(&e["rules"]);
    assert!(
        rules.contains(&"india-payments-in-india".to_string()),
        "{e}"
    );
    assert!(rules.contains(&"india-not-in-china".to_string()), "{e}");
    // ... and under demo-v1, everything goes to China.
    let e1 = d.json(&["policy", "explain", "--home", "IN", "--category", "payment"]);
    assert_eq!(strs(&e1["allowed"]), ["cn-north"]);
    assert_eq!(e1["custodian"], "operator-kms");

    // subject show
    let show = d.json(&["subject", "show", "ravi"]);
    assert_keys(
        &show,
        &["subject", "home", "categories", "exposure"],
        "subject show",
    );
    assert_eq!(show["subject"], "ravi");
    assert_eq!(show["home"], "IN");
    let cats = show["categories"].as_array().unwrap();
    let names: BTreeSet<&str> = cats
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["payment", "profile"]));
    for c in cats {
        assert_keys(
            c,
            &["category", "regions", "epoch", "objects", "bytes"],
            "subject show category",
        );
        assert_eq!(strs(&c["regions"]), ["cn-north"]);
        assert_eq!(c["epoch"], 1);
        assert_eq!(c["objects"], 1);
        assert!(c["bytes"].as_i64().unwrap() > 0);
    }
    let exposure = show["exposure"].as_array().unwrap();
    assert!(!exposure.is_empty());
    for x in exposure {
        assert_keys(x, &["authority", "level"], "subject show exposure");
    }
    let level_of = |a: &str| {
        exposure
            .iter()
            .find(|x| x["authority"] == a)
            .map(|x| x["level"].as_str().unwrap().to_string())
    };
    assert_eq!(level_of("CN").as_deref(), Some("plaintext"));

    // report residency
    let res = d.json(&["report", "residency"]);
    let rows = res["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{res}");
    for r in rows {
        assert_keys(
            r,
            &[
                "home",
                "category",
                "region",
                "jurisdiction",
                "subjects",
                "objects",
                "bytes",
            ],
            "residency",
        );
        assert_eq!(r["region"], "cn-north");
        assert_eq!(r["subjects"], 1);
    }

    // report exposure
    let exp = d.json(&["report", "exposure"]);
    let rows = exp["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_keys(
            r,
            &[
                "authority",
                "home",
                "subjects",
                "plaintext_subjects",
                "ciphertext_subjects",
            ],
            "exposure",
        );
    }
    assert!(
        rows.iter()
            .any(|r| r["authority"] == "CN" && r["home"] == "IN" && r["plaintext_subjects"] == 1),
        "{exp}"
    );

    // report cost
    let cost = d.json(&["report", "cost"]);
    assert_keys(&cost, &["rows", "total_monthly_cost"], "cost");
    assert!(cost["total_monthly_cost"].is_number());
    let rows = cost["rows"].as_array().unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        assert_keys(
            r,
            &["region", "jurisdiction", "bytes", "monthly_cost"],
            "cost row",
        );
    }
    let cn = rows.iter().find(|r| r["region"] == "cn-north").unwrap();
    assert!(cn["bytes"].as_u64().unwrap() > 5000, "{cn}");

    // report violations: none under v1, ravi's two copies once v2 is the
    // active version (applied without a job), whichever file this process
    // has; then v1 again (a rollback) for what follows.
    let v1 = d.config.display().to_string();
    let apply = |file: &str| d.ok(&["policy", "apply", file, "--no-migrate"]);
    let v = d.json(&["report", "violations"]);
    assert_eq!(v["violations"].as_array().unwrap().len(), 0, "{v}");
    apply(s(&v2));
    let v = d.json_code(3, &["report", "violations"]);
    apply(&v1);
    let rows = v["violations"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert_keys(r, &["subject", "category", "region", "rule"], "violation");
        assert_eq!(r["region"], "cn-north");
        assert!(
            r["rule"].as_str().unwrap().contains("india-not-in-china"),
            "{r}"
        );
    }

    // demand
    let dm = d.json(&["demand", "--authority", "CN", "--subject", "ravi"]);
    assert_keys(&dm, &["authority", "subject", "level", "copies"], "demand");
    assert_eq!(dm["authority"], "CN");
    assert_eq!(dm["subject"], "ravi");
    assert_eq!(dm["level"], "plaintext");
    let copies = dm["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    for c in copies {
        assert_keys(
            c,
            &["category", "region", "objects", "bytes", "level"],
            "demand copy",
        );
        assert_eq!(c["region"], "cn-north");
        assert_eq!(c["level"], "plaintext");
    }
    let us = d.json(&["demand", "--authority", "US", "--subject", "ravi"]);
    assert_eq!(us["level"], "none", "{us}");
    assert_eq!(
        d.ledger_kinds().iter().filter(|k| *k == "demand").count(),
        2,
        "each demand is ledgered"
    );

    // plan
    let plan = d.json(&["plan", "--policy", s(&v2)]);
    assert_keys(
        &plan,
        &["moves", "totals", "exposure_before", "exposure_after"],
        "plan",
    );
    assert_keys(
        &plan["totals"],
        &[
            "subjects",
            "objects",
            "bytes",
            "egress_cost",
            "monthly_cost_before",
            "monthly_cost_after",
        ],
        "plan totals",
    );
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 2, "{plan}");
    for m in moves {
        assert_keys(
            m,
            &["subject", "category", "from", "to", "objects", "bytes"],
            "move",
        );
    }
    assert_eq!(plan["totals"]["subjects"], 1);
    let current = d.json(&["plan"]);
    assert_eq!(current["moves"].as_array().unwrap().len(), 0, "{current}");

    // CSV: a header, and rows as wide as it.
    let csv_of = |args: &[&str], want: i32| {
        let mut a = args.to_vec();
        a.extend(["--format", "csv"]);
        let text = stdout(&d.expect(want, &a));
        parse_csv(&text, &format!("{args:?}"))
    };
    let (h, rows) = csv_of(&["report", "residency"], 0);
    assert_eq!(
        h,
        [
            "home",
            "category",
            "region",
            "jurisdiction",
            "subjects",
            "objects",
            "bytes"
        ]
    );
    assert_eq!(rows.len(), 3);
    let (_, rows) = csv_of(&["report", "exposure"], 0);
    assert!(!rows.is_empty());
    let (h, _) = csv_of(&["report", "cost"], 0);
    assert_eq!(h, ["region", "jurisdiction", "bytes", "monthly_cost"]);
    let (_, rows) = csv_of(&["report", "violations"], 0);
    assert!(rows.is_empty());
    apply(s(&v2));
    let (_, rows) = csv_of(&["report", "violations"], 3);
    apply(&v1);
    assert_eq!(rows.len(), 2);
    let (h, rows) = csv_of(&["plan", "--policy", s(&v2)], 0);
    for f in ["subject", "category", "from", "to", "objects", "bytes"] {
        assert!(h.iter().any(|x| x == f), "plan CSV lacks {f}: {h:?}");
    }
    assert_eq!(rows.len(), 2);
    let (_, rows) = csv_of(&["subject", "show", "ravi"], 0);
    assert_eq!(rows.len(), 2);
    let (_, rows) = csv_of(&["demand", "--authority", "CN", "--subject", "wang"], 0);
    assert_eq!(rows.len(), 1);
    let (h, rows) = csv_of(&["ls", "ravi"], 0);
    assert_eq!(h[0], "key");
    assert_eq!(rows.len(), 2);
    let (_, rows) = csv_of(&["ledger", "show"], 0);
    assert!(rows.len() >= 5);
}

// ---------------------------------------------------------------------------
// 3. put / get / ls / rm
// ---------------------------------------------------------------------------

#[test]
fn put_get_ls_rm_round_trip() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    let objects: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        ("one.bin", vec![0x5a]),
        ("docs/hundred-kib.bin", bytes_of(100, 100 << 10)),
        ("media/three-mib.bin", bytes_of(3, 3 << 20)),
    ];
    for (key, body) in &objects {
        let r = d.put("ravi", key, body);
        assert_eq!(r["size"].as_u64().unwrap(), body.len() as u64, "{r}");
        assert_eq!(strs(&r["regions"]), ["cn-north"]);
    }
    // Default categories come from the bucket's key mapping.
    let show = d.json(&["subject", "show", "ravi"]);
    let cats: BTreeMap<String, i64> = show["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["category"].as_str().unwrap().to_string(),
                c["objects"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cats,
        BTreeMap::from([("media".to_string(), 1), ("profile".to_string(), 3)])
    );
    for (key, body) in &objects {
        assert!(d.get("ravi", key) == *body, "{key}: bytes differ");
    }
    // To stdout as well.
    let out = d.expect(0, &["get", "ravi", "docs/hundred-kib.bin"]);
    assert!(out.stdout == objects[2].1, "stdout bytes differ");
    // One blob per object, each larger than its plaintext (encryption
    // overhead), and none holding the plaintext.
    let stored: Vec<(String, u64)> = d
        .files()
        .into_iter()
        .filter(|(p, _)| p.starts_with("regions/cn-north/"))
        .collect();
    assert_eq!(stored.len(), objects.len());
    let mut stored_sizes: Vec<u64> = stored.iter().map(|(_, s)| *s).collect();
    let mut plain_sizes: Vec<u64> = objects.iter().map(|(_, b)| b.len() as u64).collect();
    stored_sizes.sort();
    plain_sizes.sort();
    for (st, pl) in stored_sizes.iter().zip(&plain_sizes) {
        assert!(st > pl, "stored {st} bytes for {pl} bytes of plaintext");
    }
    let probe = &objects[2].1[1000..1032];
    for (p, _) in &stored {
        let blob = std::fs::read(d.data().join(p)).unwrap();
        assert!(
            !blob.windows(probe.len()).any(|w| w == probe),
            "{p} holds plaintext"
        );
    }

    let ls = d.json(&["ls", "ravi"]);
    let listed: Vec<(String, u64)> = ls["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_string(),
                o["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, u64)> = objects
        .iter()
        .map(|(k, b)| (k.to_string(), b.len() as u64))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    let table = d.ok(&["ls", "ravi"]);
    for (k, _) in &objects {
        assert!(table.contains(k), "{k} not in\n{table}");
    }

    // Overwrite: new bytes; the old blob stays for its grace period,
    // queued for the collection that `serve` runs (no command collects).
    let before = d.region_files("cn-north").len();
    d.put("ravi", "one.bin", b"second version");
    assert_eq!(d.get("ravi", "one.bin"), b"second version");
    assert_eq!(d.region_files("cn-north").len(), before + 1);

    // rm: the object is gone; its blob waits in the queue too.
    d.ok(&["rm", "ravi", "docs/hundred-kib.bin"]);
    assert_eq!(d.region_files("cn-north").len(), before + 1);
    d.expect(2, &["get", "ravi", "docs/hundred-kib.bin"]);
    d.expect(2, &["rm", "ravi", "docs/hundred-kib.bin"]);
    let ls = d.json(&["ls", "ravi"]);
    let names: Vec<&str> = ls["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["empty.bin", "media/three-mib.bin", "one.bin"]);
    assert_eq!(d.get("ravi", "media/three-mib.bin"), objects[3].1);
    d.expect(0, &["verify"]);
}

// ---------------------------------------------------------------------------
// 4. Invariant 2: no write into a forbidden region
// ---------------------------------------------------------------------------

#[test]
fn no_write_into_a_forbidden_region() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.put("ravi", "profile.json", b"v1 profile");
    d.put("ravi", "payments/card.json", b"v1 card");
    // An IN subject whose cn-north placement is left empty.
    d.add("emptied", "IN");
    d.put("emptied", "profile.json", b"soon gone");
    d.ok(&["rm", "emptied", "profile.json"]);
    // (Its blob stays queued for its grace period.)
    assert_eq!(d.region_files("cn-north").len(), 3);

    // India's rules change: the edited file is applied as the next version,
    // with no job to move what it forbids (`--no-migrate`).
    d.set_config(V2);
    let config = d.config.display().to_string();
    d.ok(&["policy", "apply", &config, "--no-migrate"]);
    let cn_before = d.region_files("cn-north");
    let all_before = d.files();

    let f = d.input("new-profile", b"v2 profile");
    let out = d.run(&["put", "ravi", "profile.json", s(&f)]);
    assert_ne!(code(&out), 0, "a write into a forbidden region succeeded");
    let err = stderr(&out).to_lowercase();
    assert!(
        err.contains("forbid") && err.contains("polic") && err.contains("cn-north"),
        "{err}"
    );
    assert_eq!(d.region_files("cn-north"), cn_before);
    let mut after = d.files();
    for f in CATALOG_FILES {
        after.remove(f);
    }
    let mut before = all_before.clone();
    for f in CATALOG_FILES {
        before.remove(f);
    }
    assert_eq!(before, after, "a refused write left files behind");
    // The old copy is still readable.
    assert_eq!(d.get("ravi", "profile.json"), b"v1 profile");

    // A new IN subject: profile and media go to SG or the US, payments to India.
    d.add("priya", "IN");
    let before = d.files();
    d.put("priya", "profile.json", b"p");
    d.put("priya", "media/a.jpg", &bytes_of(9, 2000));
    let new: Vec<String> = d
        .files()
        .into_keys()
        .filter(|p| p.starts_with("regions/") && !before.contains_key(p))
        .collect();
    assert_eq!(new.len(), 2, "{new:?}");
    for p in &new {
        assert!(
            p.starts_with("regions/aws-ap-southeast-1/") || p.starts_with("regions/aws-us-east-1/"),
            "{p}"
        );
    }
    let before = d.files();
    d.put("priya", "payments/card.json", b"card");
    let new: Vec<String> = d
        .files()
        .into_keys()
        .filter(|p| p.starts_with("regions/") && !before.contains_key(p))
        .collect();
    assert_eq!(new.len(), 1);
    assert!(new[0].starts_with("regions/in-mumbai/"), "{new:?}");
    let show = d.json(&["subject", "show", "priya"]);
    for c in show["categories"].as_array().unwrap() {
        let regions = strs(&c["regions"]);
        assert_eq!(regions.len(), 1);
        if c["category"] == "payment" {
            assert_eq!(regions, ["in-mumbai"]);
        } else {
            assert!(
                regions[0] == "aws-ap-southeast-1" || regions[0] == "aws-us-east-1",
                "{c}"
            );
        }
        assert_eq!(c["custodian"], "in-kms", "{c}");
    }

    // The emptied placement is re-placed on write instead of written into cn-north.
    d.put("emptied", "profile.json", b"back");
    let show = d.json(&["subject", "show", "emptied"]);
    let regions = strs(&show["categories"][0]["regions"]);
    assert!(!regions.contains(&"cn-north".to_string()), "{show}");
    assert_eq!(d.get("emptied", "profile.json"), b"back");
    assert_eq!(
        d.region_files("cn-north"),
        cn_before,
        "cn-north gained a file"
    );

    // The old CN copies are violations now.
    let v = d.json_code(3, &["report", "violations"]);
    let rows = v["violations"].as_array().unwrap();
    let got: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["category"].as_str().unwrap(),
                r["region"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([("payment", "cn-north"), ("profile", "cn-north")]),
        "{v}"
    );
    assert_eq!(rows.len(), 2);
    // verify agrees: two forbidden copies.
    let r = d.json_code(3, &["verify"]);
    let kinds: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["forbidden", "forbidden"], "{r}");

    // Deleting a copy that sits in a now forbidden region writes nothing
    // there, so it is allowed: the copy is queued for deletion once its
    // grace period is over (a read in flight may still be streaming it),
    // and nothing else is written.
    d.add("leaver", "IN");
    let files_before = d.files();
    d.set_config(V1);
    d.ok(&["policy", "apply", &config, "--no-migrate"]);
    d.put("leaver", "profile.json", b"leaving");
    d.set_config(V2);
    d.ok(&["policy", "apply", &config, "--no-migrate"]);
    let added: Vec<String> = d
        .files()
        .into_keys()
        .filter(|p| !files_before.contains_key(p) && p.starts_with("regions/"))
        .collect();
    assert_eq!(added.len(), 1);
    assert!(added[0].starts_with("regions/cn-north/"), "{added:?}");
    let counts = d.region_counts();
    d.ok(&["rm", "leaver", "profile.json"]);
    assert_eq!(d.region_counts(), counts, "rm wrote or deleted a file");
    d.expect(2, &["get", "leaver", "profile.json"]);
    // The copy is pending collection, not a stray: verify finds the same
    // two forbidden copies as before, nothing of the leaver's.
    let r = d.json_code(3, &["verify"]);
    assert_eq!(r["problems"].as_array().unwrap().len(), 2, "{r}");
}

// ---------------------------------------------------------------------------
// 5. Invariant 4: no plaintext personal data at rest, in the ledger or logs
// ---------------------------------------------------------------------------

#[test]
fn no_plaintext_personal_data_at_rest() {
    let alice = "alice.sensitive-id-7f3a@example.org";
    let bob = "bob+other:id=9q2w@example.net";
    let carol = "carol_erased-5k8p@example.com";
    let names = [
        "medical/diagnosis-zz91.pdf",
        "legal/court-order-kk27.txt",
        "payments/iban-ww63.json",
    ];
    let marker = b"PLAINTEXT-CONTENT-MARKER-q8v1";
    let secrets: Vec<&[u8]> = vec![
        alice.as_bytes(),
        bob.as_bytes(),
        carol.as_bytes(),
        b"sensitive-id-7f3a",
        b"9q2w@example",
        b"erased-5k8p",
        names[0].as_bytes(),
        names[1].as_bytes(),
        names[2].as_bytes(),
        b"diagnosis-zz91",
        b"court-order-kk27",
        b"iban-ww63",
        marker,
    ];
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);

    let d = Deployment::v2();
    let mut body = marker.repeat(40);
    body.extend_from_slice(alice.as_bytes());
    d.add(alice, "IN");
    d.add(bob, "CN");
    d.put(alice, names[0], &body);
    d.put(alice, names[2], &body);
    d.put(bob, names[1], &body);
    d.ok(&["subject", "rehome", bob, "--home", "TW"]);
    d.ok(&["demand", "--authority", "CN", "--subject", bob]);
    d.ok(&["demand", "--authority", "US", "--subject", alice]);
    // carol: registered, stored, demanded, erased.
    d.ok(&[
        "subject",
        "import",
        s(&d.input(
            "subjects.csv",
            format!("subject,home\n{carol},SG\n").as_bytes(),
        )),
    ]);
    d.put(carol, names[0], &body);
    d.ok(&["demand", "--authority", "SG", "--subject", carol]);
    d.ok(&["subject", "erase", carol]);
    d.ok(&["rm", alice, names[2]]);
    d.put(alice, names[2], &body);
    assert_eq!(d.get(alice, names[0]), body);
    // Positive controls: the search finds what is there.
    assert!(contains(
        d.ok(&["ls", alice]).as_bytes(),
        names[0].as_bytes()
    ));
    assert!(contains(
        d.ok(&["subject", "show", alice, "--format", "json"])
            .as_bytes(),
        alice.as_bytes()
    ));
    assert!(contains(
        &std::fs::read(d.dir.join("inputs/got")).unwrap(),
        marker
    ));

    // Every byte under data/.
    let files = d.files();
    assert!(files.contains_key("catalog.db"), "{files:?}");
    assert!(files.keys().any(|p| p.starts_with("regions/")), "{files:?}");
    assert!(files.keys().any(|p| p.starts_with("keys/")), "{files:?}");
    for p in files.keys() {
        let bytes = std::fs::read(d.data().join(p)).unwrap();
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret),
                "data/{p} holds {:?} in clear",
                String::from_utf8_lossy(secret)
            );
        }
    }
    // Nor in the catalog's rows (in case the WAL was checkpointed away).
    for row in d.catalog_dump() {
        for secret in &secrets {
            assert!(
                !contains(row.as_bytes(), secret),
                "catalog row holds {:?}: {row}",
                String::from_utf8_lossy(secret)
            );
        }
    }
    // Nor in the ledger as shown.
    let ledger = d.ok(&["ledger", "show", "--format", "json"]);
    let kinds = d.ledger_kinds();
    for k in ["subject", "placement", "rehome", "demand", "erasure"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} entry in {kinds:?}");
    }
    // Each entry names who caused it: here the command line, as its user.
    for e in d.json(&["ledger", "show"])["entries"].as_array().unwrap() {
        let actor = e["actor"].as_str().unwrap();
        assert!(
            actor.strip_prefix("cli:").is_some_and(|u| !u.is_empty()),
            "entry {e} does not name the command line's user"
        );
    }
    let table = d.ok(&["ledger", "show"]);
    let per_subject = d.ok(&["ledger", "show", "--subject", alice, "--format", "json"]);
    for text in [&ledger, &table, &per_subject] {
        for secret in &secrets {
            assert!(
                !contains(text.as_bytes(), secret),
                "ledger output holds {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }
    // Nor in debug logs.
    let f = d.input("log-body", &body);
    let out_file = d.dir.join("inputs/out");
    let logged: Vec<Vec<&str>> = vec![
        vec!["put", alice, names[1], s(&f)],
        vec!["get", alice, names[1], "-o", s(&out_file)],
        vec!["ls", alice],
        vec!["subject", "show", alice],
        vec!["demand", "--authority", "IN", "--subject", alice],
        vec!["subject", "rehome", alice, "--home", "SG"],
        vec!["plan"],
        vec!["verify"],
        vec!["rm", alice, names[1]],
        vec!["subject", "erase", bob],
    ];
    for args in logged {
        let out = d.run_env(&args, &[("DOMICILE_LOG", "debug")]);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert!(
            contains(&out.stderr, b"DEBUG"),
            "{args:?}: no debug log at all"
        );
        for secret in &secrets {
            assert!(
                !contains(&out.stderr, secret),
                "{args:?}: debug log holds {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 6. Invariant 5: ledger tampering is detected
// ---------------------------------------------------------------------------

#[test]
fn ledger_tampering_is_detected() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.add("wang", "CN");
    d.put("ravi", "profile.json", b"x");
    d.put("wang", "payments/a.json", b"y");
    d.ok(&["demand", "--authority", "CN", "--subject", "ravi"]);
    d.ok(&["subject", "rehome", "wang", "--home", "TW"]);
    let ok = d.json(&["ledger", "verify"]);
    assert_eq!(ok["ok"], true, "{ok}");
    let entries = ok["entries"].as_u64().unwrap();
    assert!(entries >= 6, "{ok}");

    let rows: Vec<(i64, String)> = rt().block_on(async {
        let mut c = d.sql().await;
        let rows = sqlx::query_as("SELECT seq, body FROM ledger ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        rows
    });
    assert_eq!(rows.len() as u64, entries);
    let (seq, body) = rows
        .iter()
        .find(|(_, b)| b.bytes().any(|c| c.is_ascii_digit()))
        .cloned()
        .unwrap();
    let pos = body.bytes().position(|c| c.is_ascii_digit()).unwrap();
    let old = body.as_bytes()[pos];
    let new = if old == b'9' { b'8' } else { old + 1 };
    let mut tampered = body.clone().into_bytes();
    tampered[pos] = new;
    let tampered = String::from_utf8(tampered).unwrap();

    let set_body = |b: &str| {
        rt().block_on(async {
            let mut c = d.sql().await;
            let r = sqlx::query("UPDATE ledger SET body = ? WHERE seq = ?")
                .bind(b)
                .bind(seq)
                .execute(&mut c)
                .await
                .unwrap();
            assert_eq!(r.rows_affected(), 1);
            c.close().await.unwrap();
        })
    };
    set_body(&tampered);
    let broken = d.json_code(3, &["ledger", "verify"]);
    assert_eq!(broken["ok"], false);
    let error = broken["error"].as_str().unwrap();
    assert!(error.contains(&format!("seq {seq}")), "{error}");
    let table = stdout(&d.expect(3, &["ledger", "verify"]));
    assert!(table.contains(&format!("seq {seq}")), "{table}");

    set_body(&body);
    let again = d.json(&["ledger", "verify"]);
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["entries"].as_u64().unwrap(), entries);

    // Deleting the last-but-one entry breaks the chain at the last one.
    let last = rows.last().unwrap().0;
    rt().block_on(async {
        let mut c = d.sql().await;
        let r = sqlx::query("DELETE FROM ledger WHERE seq = ?")
            .bind(last - 1)
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(r.rows_affected(), 1);
        c.close().await.unwrap();
    });
    let broken = d.json_code(3, &["ledger", "verify"]);
    assert_eq!(broken["ok"], false);
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains(&format!("seq {last}")),
        "{broken}"
    );
}

// ---------------------------------------------------------------------------
// 7. Invariant 6: bad input gets exit 2, a clear message, and changes nothing
// ---------------------------------------------------------------------------

#[test]
fn bad_config_is_reported_with_its_position_and_changes_nothing() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.put("ravi", "profile.json", b"x");

    let first_cn = V1.replacen("jurisdiction = \"CN\"", "jurisdiction = \"XX\"", 1);
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "syntax",
            V1.replacen("name = \"Example Phones\"", "name = \"Example Phones", 1),
            Some("name = \"Example Phones"),
        ),
        ("jurisdiction", first_cn, Some("jurisdiction = \"XX\"")),
        (
            "region",
            V1.replace("allow = [\"CN\"]", "allow = [\"cn-nowhere\"]"),
            Some("cn-nowhere"),
        ),
        (
            "custodian",
            V1.replace(
                "custodian = \"operator-kms\"",
                "custodian = \"no-such-kms\"",
            ),
            Some("no-such-kms"),
        ),
        (
            "field",
            V1.replacen(
                "provider = \"self\"",
                "provider = \"self\"\nflavour = \"vanilla\"",
                1,
            ),
            Some("flavour"),
        ),
        (
            "copies",
            V1.replace("copies = 1", "copies = 9"),
            Some("[[rule]]"),
        ),
    ];
    for (name, text, at) in &cases {
        assert_ne!(text, V1, "{name}: the edit did not apply");
        let bad = d.other_config(&format!("bad-{name}.toml"), text);
        // A command that would write if the config were accepted.
        let err = d.bad(&[
            "--config",
            s(&bad),
            "subject",
            "add",
            "newcomer",
            "--home",
            "IN",
        ]);
        let (line, _) = diagnostic_position(&err, &bad);
        if let Some(needle) = at {
            assert_eq!(line, line_of(text, needle), "{name}: {err}");
        }
        let err2 = d.bad(&["--config", s(&bad), "policy", "check"]);
        assert_eq!(
            err2.lines().next(),
            err.lines().next(),
            "{name}: same diagnostic"
        );
        let err3 = d.bad(&[
            "--config",
            s(&bad),
            "put",
            "ravi",
            "other.json",
            s(&d.input("b", b"b")),
        ]);
        diagnostic_position(&err3, &bad);
        let err4 = d.bad(&["--config", s(&bad), "report", "residency"]);
        diagnostic_position(&err4, &bad);
    }
    // The messages say what is wrong.
    let msg = |name: &str| {
        d.bad(&[
            "--config",
            s(&d.dir.join(format!("bad-{name}.toml"))),
            "policy",
            "check",
        ])
    };
    assert!(msg("jurisdiction").contains("XX"));
    assert!(msg("region").contains("cn-nowhere"));
    assert!(msg("custodian").contains("no-such-kms"));
    assert!(msg("field").contains("flavour"));
    let copies = msg("copies");
    assert!(
        copies.contains("copies") && copies.contains("everything-in-china"),
        "{copies}"
    );

    // Through DOMICILE_CONFIG too, and a missing file is bad input as well.
    let bad = d.dir.join("bad-field.toml");
    let before = d.state();
    let out = checked(
        command(&d.dir)
            .env("DOMICILE_CONFIG", &bad)
            .args(["subject", "add", "newcomer", "--home", "IN"])
            .output()
            .unwrap(),
        "env config",
    );
    assert_eq!(code(&out), 2);
    diagnostic_position(&stderr(&out), &bad);
    assert_unchanged(&before, &d.state(), "DOMICILE_CONFIG=bad-field.toml");
    let missing = d.dir.join("missing.toml");
    let err = d.bad(&["--config", s(&missing), "policy", "check"]);
    diagnostic_position(&err, &missing);
    d.ok(&["policy", "check"]);
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.put("ravi", "profile.json", b"ravi's profile");
    d.ok(&["demand", "--authority", "CN", "--subject", "ravi"]);
    let f = d.input("body", b"some bytes");
    let f = s(&f);

    // Invalid subject ids and homes.
    let long = "x".repeat(200);
    for id in ["a/b", "a b", long.as_str(), "", "a\u{e9}b", "a,b"] {
        let err = d.bad(&["subject", "add", id, "--home", "IN"]);
        assert!(err.contains("subject id"), "{id:?}: {err}");
    }
    for home in ["XX", "in", "EU", "", "IND"] {
        let err = d.bad(&["subject", "add", "newcomer", "--home", home]);
        assert!(err.contains("jurisdiction"), "{home:?}: {err}");
    }
    let err = d.bad(&["subject", "add", "ravi", "--home", "IN"]);
    assert!(err.contains("already registered"), "{err}");
    let err = d.bad(&["subject", "add", "ravi", "--home", "CN"]);
    assert!(err.contains("already registered"), "{err}");

    // A server's knobs out of range: refused before anything is bound.
    for every in ["1e9", "NaN", "inf"] {
        let err = d.bad(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
            "--collect-every",
            every,
        ]);
        assert!(err.contains("--collect-every"), "{every}: {err}");
    }

    // Imports: one bad row anywhere and nothing of the file is added.
    let imports: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad id",
            b"subject,home\ngood-1,IN\ngood-2,CN\nbad/3,IN\ngood-4,TW\n".to_vec(),
        ),
        ("bad home", b"good-1,IN\ngood-2,XX\ngood-4,TW\n".to_vec()),
        ("nul", b"good-1,IN\ngood\x002,IN\ngood-4,TW\n".to_vec()),
        ("columns", b"good-1,IN\ngood-2,IN,extra\n".to_vec()),
        (
            "last row",
            b"good-1,IN\ngood-2,CN\ngood-4,TW\n,IN\n".to_vec(),
        ),
    ];
    for (name, body) in &imports {
        let csv = d.input(&format!("import-{}.csv", name.replace(' ', "-")), body);
        let err = d.bad(&["subject", "import", s(&csv)]);
        assert!(
            err.contains(s(&csv)),
            "{name}: the message names the file: {err}"
        );
        assert!(!err.contains('\0'), "{name}: NUL echoed");
        for id in ["good-1", "good-2", "good-4"] {
            d.expect(2, &["subject", "show", id]);
        }
    }
    // A good file afterwards imports every row (so the bad ones failed for their row).
    let good = d.input("good.csv", b"subject,home\ngood-1,IN\ngood-2,CN\n");
    let r = d.json(&["subject", "import", s(&good)]);
    assert_eq!(r["added"], 2, "{r}");
    d.ok(&["subject", "show", "good-2"]);

    // Object keys.
    let seg300 = format!("dir/{}", "s".repeat(300));
    let key2000 = "abcdefg/".repeat(250);
    let key2000 = &key2000[..2000];
    assert_eq!(key2000.len(), 2000);
    for key in [
        "..",
        "../etc/passwd",
        "a/../b",
        "./x",
        "a/./b",
        "a/..",
        seg300.as_str(),
        key2000,
        "tab\there",
    ] {
        let err = d.bad(&["put", "ravi", key, f]);
        assert!(err.contains("object key"), "{key:?}: {err}");
    }
    // Unregistered or invalid subjects.
    let err = d.bad(&["put", "nobody", "profile.json", f]);
    assert!(err.contains("not registered"), "{err}");
    d.bad(&["put", "a b", "profile.json", f]);
    d.bad(&[
        "put",
        "ravi",
        "profile.json",
        s(&d.dir.join("inputs/no-such-file")),
    ]);
    d.bad(&[
        "put",
        "ravi",
        "profile.json",
        f,
        "--category",
        "Not A Category",
    ]);
    // A folder is not a body: refused before a placement is created for
    // the new category.
    let err = d.bad(&[
        "put",
        "ravi",
        "notes/n.txt",
        s(&d.dir.join("inputs")),
        "--category",
        "notes",
    ]);
    assert!(err.contains("directory"), "{err}");
    let err = d.bad(&[
        "put",
        "ravi",
        "notes/n.txt",
        s(&d.dir.join("inputs/missing")),
        "--category",
        "notes",
    ]);
    assert!(err.contains("cannot open"), "{err}");

    // Unknown keys, subjects, codes.
    d.bad(&["get", "ravi", "no-such.json"]);
    d.bad(&["get", "ravi", "../profile.json"]);
    d.bad(&["get", "nobody", "profile.json"]);
    d.bad(&["rm", "ravi", "no-such.json"]);
    d.bad(&["rm", "nobody", "profile.json"]);
    d.bad(&["ls", "nobody"]);
    d.bad(&["subject", "show", "nobody"]);
    d.bad(&["subject", "rehome", "nobody", "--home", "IN"]);
    d.bad(&["subject", "rehome", "ravi", "--home", "XX"]);
    d.bad(&["subject", "erase", "nobody"]);
    d.bad(&["subject", "erase", "a/b"]);
    let err = d.bad(&["demand", "--authority", "ZZ", "--subject", "ravi"]);
    assert!(err.contains("ZZ"), "{err}");
    d.bad(&["demand", "--authority", "CN", "--subject", "nobody"]);
    let err = d.bad(&["policy", "explain", "--home", "XX", "--category", "profile"]);
    assert!(err.contains("XX"), "{err}");
    d.bad(&["policy", "explain", "--home", "IN", "--category", "No Such"]);
    d.bad(&["plan", "--policy", s(&d.dir.join("no-such-policy.toml"))]);
    d.bad(&["ledger", "show", "--subject", "a b"]);

    // clap: unknown command, unknown flag, missing argument, bad value.
    d.bad(&["frobnicate"]);
    d.bad(&["ls", "ravi", "--bogus"]);
    d.bad(&["subject", "add", "newcomer"]);
    d.bad(&["report", "nothing"]);
    d.bad(&["report", "residency", "--format", "yaml"]);
    d.bad(&["put", "ravi"]);

    // And the data is intact.
    assert_eq!(d.get("ravi", "profile.json"), b"ravi's profile");
    d.expect(0, &["verify"]);
    d.expect(0, &["ledger", "verify"]);
}

#[test]
fn state_snapshots_see_every_kind_of_change() {
    // The "nothing changed" checks above are only worth something if a
    // change shows up in the snapshot.
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.put("ravi", "profile.json", b"x");
    let a = d.state();
    assert!(a.catalog.len() > 10, "{:?}", a.catalog);
    assert!(a.files.keys().any(|p| p.starts_with("regions/cn-north/")));
    assert_eq!(a, d.state(), "a snapshot is stable");
    d.add("wang", "CN");
    let b = d.state();
    assert_ne!(a.catalog, b.catalog);
    assert_ne!(a.ledger, b.ledger);
    d.ok(&["demand", "--authority", "CN", "--subject", "ravi"]);
    let c = d.state();
    assert_ne!(b.catalog, c.catalog);
    assert_ne!(b.ledger, c.ledger);
    d.put("ravi", "profile.json", b"y");
    let e = d.state();
    assert_ne!(c.files, e.files);
    assert_ne!(c.catalog, e.catalog);
    assert_eq!(c.ledger, e.ledger, "an overwrite is not ledgered");
    d.put("wang", "profile.json", b"w");
    let f = d.state();
    assert_ne!(e.residency, f.residency);
    // A region file changed in place (same size) is seen as well.
    let p = d
        .files()
        .into_keys()
        .find(|p| p.starts_with("regions/"))
        .unwrap();
    let path = d.data().join(&p);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_ne!(f.files, d.state().files);
}

// ---------------------------------------------------------------------------
// 8. verify and its exit codes
// ---------------------------------------------------------------------------

#[test]
fn verify_finds_missing_foreign_and_corrupt_blobs() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.add("wang", "CN");
    d.put("ravi", "profile.json", &bytes_of(1, 3000));
    d.put("wang", "profile.json", &bytes_of(2, 3000));
    d.put("wang", "payments/card.json", &bytes_of(3, 500));

    let clean = d.json(&["verify"]);
    assert_eq!(clean["problems"].as_array().unwrap().len(), 0, "{clean}");
    assert_eq!(clean["blobs_scanned"], 3);
    assert_eq!(clean["checksums_verified"], 3);
    assert_eq!(clean["regions"], 5);
    let table = d.ok(&["verify"]);
    assert!(table.trim_end().ends_with(": ok"), "{table}");

    let cn = d.region_dir("cn-north");
    let blob = cn.join(d.region_files("cn-north").into_iter().next().unwrap());
    let saved = std::fs::read(&blob).unwrap();
    let kinds = |r: &Value| -> Vec<String> {
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_string())
            .collect()
    };

    // Missing.
    std::fs::remove_file(&blob).unwrap();
    let r = d.json_code(3, &["verify"]);
    assert_eq!(kinds(&r), ["missing"], "{r}");
    assert_eq!(r["problems"][0]["region"], "cn-north");
    assert_eq!(
        r["problems"][0]["blob"].as_str().unwrap(),
        blob.file_name().unwrap().to_str().unwrap()
    );
    d.json_code(3, &["verify", "--quick"]);
    let table = stdout(&d.expect(3, &["verify"]));
    assert!(
        table.contains("missing") && table.contains("1 problem"),
        "{table}"
    );
    std::fs::write(&blob, &saved).unwrap();
    d.expect(0, &["verify"]);

    // Foreign.
    let stray = cn.join("stray.txt");
    std::fs::write(&stray, b"who put this here?").unwrap();
    let r = d.json_code(3, &["verify"]);
    assert_eq!(kinds(&r), ["foreign"], "{r}");
    assert_eq!(r["problems"][0]["region"], "cn-north");
    std::fs::remove_file(&stray).unwrap();
    d.expect(0, &["verify"]);

    // Corrupt: same size, one byte flipped.
    let mut flipped = saved.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&blob, &flipped).unwrap();
    let r = d.json_code(3, &["verify"]);
    assert_eq!(kinds(&r), ["checksum"], "{r}");
    assert_eq!(r["problems"][0]["region"], "cn-north");
    // --quick does not re-read blobs, so it cannot see it.
    let q = d.json(&["verify", "--quick"]);
    assert_eq!(q["checksums_verified"], 0, "{q}");
    std::fs::write(&blob, &saved).unwrap();
    d.expect(0, &["verify"]);
}

// ---------------------------------------------------------------------------
// 9. Erasure
// ---------------------------------------------------------------------------

#[test]
fn subject_erase_purges_every_copy() {
    let d = Deployment::v1();
    d.add("keep", "CN");
    d.put("keep", "profile.json", b"kept");
    d.add("gone", "IN");
    let before = d.files();
    d.put("gone", "profile.json", b"one");
    d.put("gone", "media/a.jpg", &bytes_of(5, 4000));
    d.put("gone", "payments/c.json", b"three");
    let after = d.files();
    let gone_blobs: Vec<&String> = after
        .keys()
        .filter(|p| p.starts_with("regions/") && !before.contains_key(*p))
        .collect();
    assert_eq!(gone_blobs.len(), 3, "{gone_blobs:?}");
    let kept_blobs: Vec<&String> = before
        .keys()
        .filter(|p| p.starts_with("regions/"))
        .collect();
    assert_eq!(kept_blobs.len(), 1);

    let r = d.json(&["subject", "erase", "gone"]);
    assert_eq!(r["placements"], 3, "{r}");
    assert_eq!(r["objects"], 3, "{r}");
    assert_eq!(r["copies_deleted"], 3, "{r}");

    let now = d.files();
    for p in &gone_blobs {
        assert!(!now.contains_key(*p), "{p} survived the erasure");
    }
    for p in &kept_blobs {
        assert!(now.contains_key(*p), "{p} of another subject was deleted");
    }
    assert_eq!(now.keys().filter(|p| p.starts_with("regions/")).count(), 1);
    d.expect(2, &["get", "gone", "profile.json"]);
    d.expect(2, &["subject", "show", "gone"]);
    assert_eq!(d.get("keep", "profile.json"), b"kept");
    assert!(d.ledger_kinds().iter().any(|k| k == "erasure"));
    let erasure = d.json(&["ledger", "show"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "erasure")
        .cloned()
        .unwrap();
    assert_eq!(erasure["body"]["objects"], 3, "{erasure}");
    d.expect(0, &["ledger", "verify"]);
    d.expect(0, &["verify"]);
    d.expect(2, &["subject", "erase", "gone"]);
    // The id may be registered again, with nothing of the old data.
    d.add("gone", "IN");
    let ls = d.json(&["ls", "gone"]);
    assert_eq!(ls["objects"].as_array().unwrap().len(), 0, "{ls}");
}

// ---------------------------------------------------------------------------
// 10. Rehoming
// ---------------------------------------------------------------------------

#[test]
fn rehome_plans_a_move_into_the_new_home() {
    let d = Deployment::v2();
    d.add("ravi", "IN");
    d.put("ravi", "profile.json", b"p");
    d.put("ravi", "media/a.jpg", &bytes_of(7, 3000));
    d.put("ravi", "payments/c.json", b"c");
    d.add("wang", "CN");
    d.put("wang", "profile.json", b"w");
    let plan = d.json(&["plan"]);
    assert_eq!(plan["moves"].as_array().unwrap().len(), 0, "{plan}");
    d.json(&["report", "violations"]);

    let r = d.json(&["subject", "rehome", "ravi", "--home", "CN"]);
    assert_eq!(r["from"], "IN", "{r}");
    assert_eq!(r["to"], "CN", "{r}");
    let show = d.json(&["subject", "show", "ravi"]);
    assert_eq!(show["home"], "CN");
    // The data has not moved yet.
    for c in show["categories"].as_array().unwrap() {
        assert!(!strs(&c["regions"]).contains(&"cn-north".to_string()));
    }

    let plan = d.json(&["plan"]);
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 3, "{plan}");
    let cats: BTreeSet<&str> = moves
        .iter()
        .map(|m| m["category"].as_str().unwrap())
        .collect();
    assert_eq!(cats, BTreeSet::from(["media", "payment", "profile"]));
    for m in moves {
        assert_eq!(strs(&m["to"]), ["cn-north"], "{m}");
        assert!(!strs(&m["from"]).contains(&"cn-north".to_string()), "{m}");
        assert_eq!(m["custodian_to"], "operator-kms", "{m}");
    }
    assert_eq!(plan["totals"]["subjects"], 1);
    assert_eq!(plan["totals"]["objects"], 3);
    let v = d.json_code(3, &["report", "violations"]);
    assert_eq!(v["violations"].as_array().unwrap().len(), 3, "{v}");
    assert!(d.ledger_kinds().iter().any(|k| k == "rehome"));
    d.expect(0, &["ledger", "verify"]);

    // Its old regions are forbidden now: a write is refused, nothing is written.
    let counts = d.region_counts();
    let f = d.input("again", b"again");
    let out = d.run(&["put", "ravi", "profile.json", s(&f)]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("forbid"), "{}", stderr(&out));
    assert_eq!(d.region_counts(), counts);
    // A new category goes straight to the new home.
    let f = d.input("notes", b"n");
    d.ok(&["put", "ravi", "notes/n.txt", s(&f), "--category", "notes"]);
    let show = d.json(&["subject", "show", "ravi"]);
    let notes = show["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "notes")
        .cloned()
        .unwrap();
    assert_eq!(strs(&notes["regions"]), ["cn-north"], "{show}");
    assert_eq!(notes["custodian"], "operator-kms", "{show}");
}

// ---------------------------------------------------------------------------
// 11. init
// ---------------------------------------------------------------------------

#[test]
fn init_writes_an_example_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new-deployment");
    let run = |args: &[&str]| checked(command(tmp.path()).args(args).output().unwrap(), "init");

    let out = run(&["init", s(&dir)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let config = dir.join("domicile.toml");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), EXAMPLE);
    let out = run(&["--config", s(&config), "policy", "check"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("ok"));

    // It works as a deployment: Indian payments stay in India.
    let out = run(&[
        "--config",
        s(&config),
        "subject",
        "add",
        "alice",
        "--home",
        "IN",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let body = dir.join("card.json");
    std::fs::write(&body, b"{}").unwrap();
    let out = run(&[
        "--config",
        s(&config),
        "put",
        "alice",
        "payments/card.json",
        s(&body),
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["category"], "payment");
    assert_eq!(strs(&r["regions"]), ["in-mumbai"]);

    // A second init is refused and leaves the file alone.
    let mine = format!("# my edits\n{EXAMPLE}");
    std::fs::write(&config, &mine).unwrap();
    let out = run(&["init", s(&dir)]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), mine);

    // init with no folder writes into the current one.
    let here = tmp.path().join("here");
    std::fs::create_dir_all(&here).unwrap();
    let out = checked(command(&here).arg("init").output().unwrap(), "init .");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(here.join("domicile.toml")).unwrap(),
        EXAMPLE
    );
    let out = checked(
        command(&here).args(["policy", "check"]).output().unwrap(),
        "policy check in cwd",
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// `args --format json` with extra environment, expecting exit code 0.
fn json_env(d: &Deployment, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = d.run_env(&a, env);
    assert_eq!(
        code(&out),
        0,
        "domicile {a:?}: exit code\nstderr:\n{}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("domicile {a:?}: not JSON ({e}):\n{}", stdout(&out)))
}

/// Once applied, the policy is the catalog's, not the file's: every
/// process acts on the active version whatever its config file says;
/// applies are versioned, idempotent, ledgered with their actor, can be
/// rolled back by applying an older text, and are refused (changing
/// nothing) when this process lacks a region the policy names.
#[test]
fn an_applied_policy_rules_every_process_until_the_next_apply() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.put("ravi", "users/ravi/profile.json", b"{\"name\":\"Ravi\"}");
    // The first process on the empty catalog stored its file's policy as
    // version 1, ledgered like any apply.
    assert_eq!(d.json(&["policy", "show"])["version"], 1);
    let first = d.json(&["policy", "history"]);
    assert_eq!(first["versions"].as_array().unwrap().len(), 1, "{first}");

    let v2 = d.other_config("v2.toml", V2);
    let actor = [("DOMICILE_ACTOR", "ops-anna")];
    let applied = json_env(&d, &["policy", "apply", s(&v2)], &actor);
    assert_eq!(applied["version"], 2, "{applied}");
    assert_eq!(applied["created"], true, "{applied}");
    assert!(
        applied["job"].is_i64(),
        "a job carries the change out: {applied}"
    );
    let again = json_env(&d, &["policy", "apply", s(&v2)], &actor);
    assert_eq!(again["version"], 2, "{again}");
    assert_eq!(again["created"], false, "{again}");
    assert!(again["job"].is_null(), "{again}");

    let shown = d.json(&["policy", "show"]);
    assert_keys(
        &shown,
        &["version", "applied_at", "actor", "digest"],
        "policy show",
    );
    assert_eq!(
        (shown["version"].clone(), shown["actor"].clone()),
        (serde_json::json!(2), serde_json::json!("cli:ops-anna"))
    );
    assert_eq!(shown["digest"], applied["digest"]);
    let history = d.json(&["policy", "history"]);
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{history}");
    assert_keys(
        &versions[1],
        &["version", "applied_at", "actor", "digest"],
        "policy history",
    );
    let ledger = d.json(&["ledger", "show"]);
    let applies: Vec<&Value> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "policy")
        .collect();
    assert_eq!(
        applies.len(),
        2,
        "the first version and one apply, one ledger entry each: {ledger}"
    );
    assert_eq!(applies[1]["actor"], "cli:ops-anna");
    assert_eq!(versions[1]["actor"], "cli:ops-anna");

    // This process's file still says v1, yet it acts on version 2 (v2's
    // rules): Ravi's copy in China is a violation now.
    let v = d.json_code(3, &["report", "violations"]);
    assert!(!v["violations"].as_array().unwrap().is_empty(), "{v}");
    d.expect(0, &["migrate", "resume"]);
    assert!(
        d.json(&["report", "violations"])["violations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    d.expect(0, &["verify"]);
    assert_eq!(
        d.get("ravi", "users/ravi/profile.json"),
        b"{\"name\":\"Ravi\"}"
    );

    // A policy naming a region this process does not have: refused, and
    // nothing changes.
    let foreign = V2.replacen(
        "[[region]]",
        "[[region]]\nid = \"eu-west\"\njurisdiction = \"FR\"\nprovider = \"self\"\nprovider_headquarters = \"FR\"\nstore = \"file://data/regions/eu-west\"\nstorage_price_gb_month = 0.02\negress_price_gb = 0.05\n\n[[region]]",
        1,
    );
    let v3 = d.other_config("v3.toml", &foreign);
    let refused = d.expect(2, &["policy", "apply", s(&v3)]);
    assert!(stderr(&refused).contains("eu-west"), "{}", stderr(&refused));
    assert_eq!(d.json(&["policy", "show"])["version"], 2);

    // A rollback is the apply of the older text: a new version.
    let back = json_env(
        &d,
        &["policy", "apply", s(&d.config), "--no-migrate"],
        &actor,
    );
    assert_eq!(
        (back["version"].clone(), back["created"].clone()),
        (serde_json::json!(3), serde_json::json!(true))
    );
    assert!(back["job"].is_null(), "--no-migrate starts no job: {back}");
    let diff = d.json(&["policy", "diff", "2", "3"]);
    assert!(!diff["changes"].as_array().unwrap().is_empty(), "{diff}");
    assert_eq!(
        d.json(&["policy", "history"])["versions"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// Custody is a fact: the catalog records each custodian's key identity on
/// first use. With the key folder moved away, writes, reads and new
/// subjects under that custodian fail with a message naming it (a refused
/// subject is not registered), no new key is created, and
/// `verify` reports the custodian; another key in its place is refused
/// too; the right key back restores everything.
#[test]
fn a_custodian_whose_key_is_missing_or_another_is_refused_never_replaced() {
    let d = Deployment::v1();
    d.add("wei", "CN");
    d.put("wei", "users/wei/profile.json", b"{\"name\":\"Wei\"}");
    let keys = d.data().join("keys");
    let folder = keys.join("operator-kms");
    let away = keys.join("operator-kms.away");
    std::fs::rename(&folder, &away).unwrap();

    let put = d.run(&[
        "put",
        "wei",
        "users/wei/more.json",
        s(&d.input("more", b"more")),
    ]);
    assert_eq!(code(&put), 1, "{}", stderr(&put));
    assert!(
        stderr(&put).contains("custodian operator-kms"),
        "{}",
        stderr(&put)
    );
    let got = d.run(&["get", "wei", "users/wei/profile.json"]);
    assert_eq!(code(&got), 1, "{}", stderr(&got));
    assert!(
        stderr(&got).contains("custodian operator-kms"),
        "{}",
        stderr(&got)
    );
    let add = d.run(&["subject", "add", "li", "--home", "CN"]);
    assert_eq!(code(&add), 1, "{}", stderr(&add));
    assert!(
        stderr(&add).contains("custodian operator-kms"),
        "{}",
        stderr(&add)
    );
    d.expect(2, &["subject", "show", "li"]);
    assert!(
        !folder.exists(),
        "a new key was created for a custodian that wraps data"
    );
    let report = d.json_code(3, &["verify"]);
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "custodian" && p["region"] == "operator-kms"),
        "{report}"
    );

    // Another key in its place is no better.
    std::fs::create_dir_all(&folder).unwrap();
    let other = folder.join("master-v1.key");
    std::fs::write(&other, [7u8; 32]).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let got = d.run(&["get", "wei", "users/wei/profile.json"]);
    assert_eq!(code(&got), 1, "{}", stderr(&got));
    assert!(stderr(&got).contains("not the key"), "{}", stderr(&got));

    // The right key back: everything reads again.
    std::fs::remove_dir_all(&folder).unwrap();
    std::fs::rename(&away, &folder).unwrap();
    assert_eq!(
        d.get("wei", "users/wei/profile.json"),
        b"{\"name\":\"Wei\"}"
    );
    d.expect(0, &["verify"]);
}

// ---------------------------------------------------------------------------
// 12. Legal reach
// ---------------------------------------------------------------------------

#[test]
fn reach_explain_cites_the_grounds_of_an_authoritys_reach() {
    let d = Deployment::v2();
    let text = d.ok(&["reach", "explain", "--authority", "CN"]);
    for want in [
        "cn-national-intelligence",
        "National Intelligence Law of the People's Republic of China",
        "art. 7",
        "art. 35",
        "art. 36",
        "every copy of the operator, headquartered in CN",
        "copies in CN: cn-north",
        "keys at custodians headquartered in CN: operator-kms",
        "Not legal advice",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // Each ground points at its `[[reach]]` entry.
    let line = line_of(V2, "preset = \"cn-national-intelligence\"") - 1;
    let at = format!("{}:{line}", d.config.display());
    assert!(text.contains(&at), "{at} missing:\n{text}");

    let v = d.json(&["reach", "explain", "--authority", "CN"]);
    assert_keys(
        &v,
        &[
            "authority",
            "name",
            "config",
            "grounds",
            "reaches_anything",
            "assumption",
            "legal_notice",
        ],
        "reach explain",
    );
    assert_eq!(v["authority"], "CN");
    assert_eq!(v["reaches_anything"], true);
    assert!(
        v["legal_notice"]
            .as_str()
            .unwrap()
            .starts_with("Not legal advice")
    );
    let grounds = v["grounds"].as_array().unwrap();
    let labels: Vec<&str> = grounds
        .iter()
        .map(|g| g["ground"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["territory", "cn-national-intelligence"], "{v}");
    assert_eq!(grounds[0]["source"], "rule");
    assert!(grounds[0]["citations"].as_array().unwrap().is_empty());
    let cn = &grounds[1];
    assert_eq!(cn["source"], "preset");
    assert_eq!(cn["at"], at.as_str());
    assert_eq!(strs(&cn["over"]), ["territory", "headquarters"]);
    assert!(
        strs(&cn["citations"])
            .iter()
            .any(|c| c.contains("National Intelligence Law") && c.contains("art. 7")),
        "{cn}"
    );
    assert!(cn["summary"].as_str().unwrap().len() > 80);
    let reaches = &cn["reaches"];
    assert_eq!(strs(&reaches["territory"]["regions"]), ["cn-north"]);
    assert_eq!(strs(&reaches["territory"]["custodians"]), ["operator-kms"]);
    assert_eq!(strs(&reaches["operator_headquarters"]["regions"]), REGIONS);
    assert_eq!(
        strs(&reaches["provider_headquarters"]["regions"]),
        ["cn-north"]
    );
    assert_eq!(
        strs(&reaches["custodian_headquarters"]["custodians"]),
        ["operator-kms"]
    );

    // The US: through the CLOUD Act, the regions of its providers only.
    let us = d.json(&["reach", "explain", "--authority", "US"]);
    let g = &us["grounds"][1];
    assert_eq!(g["preset"], "us-cloud-act", "{us}");
    assert!(strs(&g["citations"])[0].contains("18 U.S.C. § 2713"), "{g}");
    assert_eq!(
        strs(&g["reaches"]["provider_headquarters"]["regions"]),
        ["aws-ap-southeast-1", "aws-us-east-1"]
    );
    assert!(g["reaches"]["operator_headquarters"]["operator"].is_null());
    assert!(
        strs(&g["reaches"]["operator_headquarters"]["regions"]).is_empty(),
        "{g}"
    );

    // Germany: only the territory rule, over nothing here.
    let de = d.json(&["reach", "explain", "--authority", "DE"]);
    assert_eq!(de["reaches_anything"], false, "{de}");
    let text = d.ok(&["reach", "explain", "--authority", "DE"]);
    assert!(text.contains("nothing in this deployment"), "{text}");
    let (h, rows) = {
        let out = d.expect(
            0,
            &["reach", "explain", "--authority", "CN", "--format", "csv"],
        );
        parse_csv(&stdout(&out), "reach explain csv")
    };
    assert_eq!(h, ["ground", "over", "reaches", "at"]);
    assert_eq!(rows.len(), 2);

    let bad = d.expect(2, &["reach", "explain", "--authority", "XX"]);
    assert!(
        stderr(&bad).contains("unknown jurisdiction"),
        "{}",
        stderr(&bad)
    );

    // An unknown preset is a config error at its position, naming the
    // known ones; nothing runs.
    d.set_config(&V2.replace("preset = \"in-dpdp\"", "preset = \"in-dpdpa\""));
    let out = d.expect(2, &["reach", "explain", "--authority", "CN"]);
    let err = stderr(&out);
    let (l, c) = diagnostic_position(&err, &d.config);
    assert_eq!((l, c), (line_of(V2, "preset = \"in-dpdp\""), 10), "{err}");
    assert!(err.contains("unknown reach preset \"in-dpdpa\""), "{err}");
    assert!(
        err.contains("us-cloud-act, cn-national-intelligence, ru-242-fz, in-dpdp, eu-gdpr-48"),
        "{err}"
    );
}

/// `gc` deletes what is due, as `serve` does in the background, for
/// deployments run from the command line alone: a deleted object's blob
/// stays for its grace period (`DOMICILE_GC_GRACE`, as `serve`'s), then goes.
#[test]
fn gc_collects_what_is_due_and_keeps_what_is_within_its_grace() {
    let d = Deployment::v1();
    d.add("ravi", "IN");
    d.put("ravi", "a.bin", &bytes_of(1, 1000));
    d.put("ravi", "b.bin", &bytes_of(2, 1000));
    let before = d.region_files("cn-north");
    assert_eq!(before.len(), 2, "{before:?}");
    // Deleted under the default grace (5 minutes): not due yet.
    d.ok(&["rm", "ravi", "a.bin"]);
    let r = d.json(&["gc"]);
    assert_eq!(
        (r["blobs"].as_u64(), r["failures"].as_u64()),
        (Some(0), Some(0)),
        "{r}"
    );
    assert_eq!(d.region_files("cn-north"), before);
    // Deleted with no grace: due at once, and `gc` takes it, and only it.
    let rm = d.run_env(&["rm", "ravi", "b.bin"], &[("DOMICILE_GC_GRACE", "0")]);
    assert_eq!(code(&rm), 0, "{}", stderr(&rm));
    let r = d.json(&["gc"]);
    assert_eq!(
        (r["blobs"].as_u64(), r["copies_deleted"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(d.region_files("cn-north").len(), 1);
    assert_eq!(d.json(&["gc"])["blobs"].as_u64(), Some(0));
    // A grace that is not a number of seconds is bad input.
    let bad = d.run_env(&["gc"], &[("DOMICILE_GC_GRACE", "soon")]);
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("DOMICILE_GC_GRACE"),
        "{}",
        stderr(&bad)
    );
}
