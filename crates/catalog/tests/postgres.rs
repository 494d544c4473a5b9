//! The PostgreSQL backend: the conformance suite (a fresh database per
//! check), plus what only a shared server shows: reopening, schema versions,
//! concurrent first opens, tampering behind the catalog's back, and several
//! pools (as several processes would have) appending to one ledger, claiming
//! from one job and racing a move.
//!
//! The server is `DOMICILE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`), a role that may create databases.
//! Each test creates its own `domicile_test_<pid>_<n>` databases through the
//! `postgres` database and drops them when it ends, even by a panic;
//! databases left by a killed test run (whose pid is gone) are dropped by
//! the next run. Without a reachable server these tests FAIL, never skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use domicile_catalog::jobs::{JobState, UnitRow, UnitState};
use domicile_catalog::postgres::{PostgresCatalog, SCHEMA_VERSION};
use domicile_catalog::{Catalog, CommitOutcome, Error, SubjectRow};
use domicile_catalog_conformance::{self as conformance, job_row};
use domicile_test_support::catalog::{entry, fence, object, placement, populate, subject, verify};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Databases created by this process, for unique names.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// The test server, and the databases one test created on it. Dropping it
/// drops them (from a thread of its own, so it works inside a runtime and
/// while a failed test unwinds).
struct Server {
    base: String,
    query: String,
    /// CockroachDB creates and drops databases with other options.
    cockroach: bool,
    created: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Connects to the server's `postgres` database, or fails the test
    /// with what to do.
    async fn connect() -> Server {
        let raw = std::env::var("DOMICILE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.into());
        let (base, query) = match raw.split_once('?') {
            Some((b, q)) => (b.trim_end_matches('/').to_string(), format!("?{q}")),
            None => (raw.trim_end_matches('/').to_string(), String::new()),
        };
        let mut server = Server {
            base,
            query,
            cockroach: false,
            created: Arc::new(Mutex::new(Vec::new())),
        };
        let mut admin = server.admin().await;
        let version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        server.cockroach = version.contains("CockroachDB");
        sweep_stale(&mut admin, server.cockroach).await;
        admin.close().await.ok();
        server
    }

    fn url(&self, db: &str) -> String {
        format!("{}/{db}{}", self.base, self.query)
    }

    async fn admin(&self) -> PgConnection {
        let url = self.url("postgres");
        PgConnection::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {url}: {e}\n\
                 These tests need a server: set DOMICILE_TEST_POSTGRES to \
                 postgres://USER[:PASSWORD]@HOST:PORT (a role that may create databases), \
                 or start the local one with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
            )
        })
    }

    /// Creates an empty database and returns its URL.
    async fn fresh(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "domicile_test_{}_{}_{nanos:x}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = self.admin().await;
        // Byte-order collation, as docs/deploy.md recommends (CockroachDB
        // always compares text byte by byte).
        let sql = if self.cockroach {
            format!("CREATE DATABASE \"{name}\"")
        } else {
            format!("CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'")
        };
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        admin.close().await.ok();
        self.created.lock().unwrap().push(name.clone());
        self.url(&name)
    }

    /// A fresh database with the catalog opened on it.
    async fn catalog(&self) -> (String, PostgresCatalog) {
        let url = self.fresh().await;
        let cat = PostgresCatalog::open(&url).await.unwrap();
        (url, cat)
    }

    fn created(&self) -> usize {
        self.created.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let names: Vec<String> = std::mem::take(&mut *self.created.lock().unwrap());
        if names.is_empty() {
            return;
        }
        let admin_url = self.url("postgres");
        let cockroach = self.cockroach;
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut admin = match PgConnection::connect(&admin_url).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("cannot drop test databases {names:?}: {e}");
                        return;
                    }
                };
                for name in names {
                    drop_database(&mut admin, &name, cockroach).await;
                }
                admin.close().await.ok();
            });
        });
        if dropper.join().is_err() {
            eprintln!("dropping the test databases panicked");
        }
    }
}

/// Drops a database, first closing any connection still open on it (pools
/// of catalogs not yet dropped).
async fn drop_database(admin: &mut PgConnection, name: &str, cockroach: bool) {
    let sql = if cockroach {
        format!("DROP DATABASE IF EXISTS \"{name}\" CASCADE")
    } else {
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")
    };
    if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *admin)
        .await
    {
        eprintln!("cannot drop test database {name}: {e}");
    }
}

/// Drops test databases whose creating process is gone (a run killed before
/// its cleanup), leaving those of live processes alone.
async fn sweep_stale(admin: &mut PgConnection, cockroach: bool) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'domicile\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for name in names {
        let pid = name
            .strip_prefix("domicile_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            drop_database(admin, &name, cockroach).await;
        }
    }
}

/// A raw connection to a catalog's database, going around the catalog.
async fn raw(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap()
}

fn unit(token: &str) -> UnitRow {
    UnitRow {
        job: 0,
        token: token.into(),
        category: "media".into(),
        priority: 1,
        from: vec!["r1".into()],
        to: vec!["r2".into()],
        custodian_from: "kms-a".into(),
        custodian_to: "kms-b".into(),
        objects: 1,
        bytes: 1,
        state: UnitState::Pending,
        attempts: 0,
        lease_owner: None,
        lease_until: 0,
        purge_after: 0,
        moved_bytes: 0,
        error: None,
        updated_at: 1,
    }
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_fresh_database_per_check() {
    let server = Server::connect().await;
    let s = &server;
    conformance::run_all(move || async move {
        let url = s.fresh().await;
        Arc::new(PostgresCatalog::open(&url).await.unwrap()) as Arc<dyn Catalog>
    })
    .await;
    assert_eq!(
        server.created(),
        conformance::CHECKS,
        "every check ran on its own database"
    );
}

#[tokio::test]
async fn reopened_database_keeps_everything() {
    let server = Server::connect().await;
    let url = server.fresh().await;
    {
        let cat = PostgresCatalog::open(&url).await.unwrap();
        populate(&cat).await;
        cat.pool().close().await;
    }
    // Through the URL dispatch, with the other scheme spelling.
    let alt = url.replacen("postgres://", "postgresql://", 1);
    let cat = domicile_catalog::open(&alt).await.unwrap();
    assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(cat.get_subject("tok-1").await.unwrap().unwrap().home, "IN");
    let p = cat
        .get_placement("tok-1", "profile")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.regions, vec!["sg-1".to_string(), "us-1".to_string()]);
    assert_eq!((p.epoch, p.objects, p.bytes), (1, 1, 42));
    assert_eq!(p.wrapped_key, vec![1, 2, 3]);
    let o = cat.get_object("tok-1", "lk").await.unwrap().unwrap();
    assert_eq!((o.version, o.blob_id.as_str()), (1, "blob-1"));
    assert_eq!(cat.setting("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(verify(&*cat).await.unwrap(), 7);

    // Appending after a reopen continues the same chain.
    assert_eq!(
        cat.append_ledger(entry("demand", None, 99)).await.unwrap(),
        8
    );
    assert_eq!(verify(&*cat).await.unwrap(), 8);
}

#[tokio::test]
async fn schema_version_is_current() {
    let server = Server::connect().await;
    let (url, cat) = server.catalog().await;
    assert_eq!(SCHEMA_VERSION, 10);
    assert_eq!(
        SCHEMA_VERSION,
        domicile_catalog::sqlite::SCHEMA_VERSION,
        "both backends know the same schema versions"
    );
    assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(cat);
    // Reopening applies nothing twice.
    let cat = PostgresCatalog::open(&url).await.unwrap();
    assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
    let mut conn = raw(&url).await;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied, (1..=SCHEMA_VERSION).collect::<Vec<i64>>());
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let server = Server::connect().await;
    let (url, cat) = server.catalog().await;
    cat.pool().close().await;
    let mut conn = raw(&url).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, '\\x00'::bytea, 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = PostgresCatalog::open(&url).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 99,
                known: SCHEMA_VERSION
            }
        ),
        "{err}"
    );
    let err = domicile_catalog::open(&url).await.unwrap_err();
    assert!(matches!(err, Error::SchemaTooNew { .. }), "{err}");
}

/// Several processes opening one fresh database at once migrate it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_migrate_once() {
    let server = Server::connect().await;
    let url = server.fresh().await;
    let mut handles = Vec::new();
    for _ in 0..6 {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            PostgresCatalog::open(&url).await.unwrap()
        }));
    }
    let mut cats = Vec::new();
    for h in handles {
        let cat = h.await.unwrap();
        assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
        cats.push(cat);
    }
    let mut conn = raw(&url).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied, SCHEMA_VERSION);
    let heads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_head")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(heads, 1);
    // Every handle appends to the one chain.
    for (i, cat) in cats.iter().enumerate() {
        cat.append_ledger(entry("demand", None, i as i64))
            .await
            .unwrap();
    }
    assert_eq!(verify(&cats[0]).await.unwrap(), 6);
}

/// The path CockroachDB takes (no advisory lock: one transaction per
/// migration, colliding openers retry), run on PostgreSQL: concurrent
/// first opens still end with each migration applied exactly once, and
/// with the advisory-locked path agreeing on the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_without_advisory_lock_migrate_once() {
    let server = Server::connect().await;
    for _round in 0..3 {
        let url = server.fresh().await;
        let mut handles = Vec::new();
        for i in 0..6 {
            let url = url.clone();
            handles.push(tokio::spawn(async move {
                if i == 5 {
                    PostgresCatalog::open(&url).await.unwrap()
                } else {
                    PostgresCatalog::open_without_advisory_lock(&url)
                        .await
                        .unwrap()
                }
            }));
        }
        let mut cats = Vec::new();
        for h in handles {
            let cat = h.await.unwrap();
            assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
            cats.push(cat);
        }
        let mut conn = raw(&url).await;
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(applied, (1..=SCHEMA_VERSION).collect::<Vec<i64>>());
        let heads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_head")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(heads, 1);
        for (i, cat) in cats.iter().enumerate() {
            cat.append_ledger(entry("demand", None, i as i64))
                .await
                .unwrap();
        }
        assert_eq!(verify(&cats[0]).await.unwrap(), 6);
    }
}

#[tokio::test]
async fn unreachable_server_is_an_error() {
    // Port 1 on loopback: nothing listens there.
    let err = PostgresCatalog::open("postgres://nobody@127.0.0.1:1/none")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn bad_url_is_refused_without_its_password() {
    let err = PostgresCatalog::open("postgres://user:hunter2@127.0.0.1:notaport/db")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::BadUrl { .. }), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
    let err = domicile_catalog::open("mysql://x").await.unwrap_err();
    assert!(matches!(err, Error::BadUrl { .. }), "{err}");
}

#[tokio::test]
async fn tampered_ledger_row_fails_verification() {
    let server = Server::connect().await;
    let (url, cat) = server.catalog().await;
    populate(&cat).await;
    assert_eq!(verify(&cat).await.unwrap(), 7);

    let mut conn = raw(&url).await;
    // The actor is covered: another name on entry 3 breaks the chain there.
    let actor: String = sqlx::query_scalar("SELECT actor FROM ledger WHERE seq = 3")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!actor.is_empty());
    sqlx::query("UPDATE ledger SET actor = 'someone-else' WHERE seq = 3")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(verify(&cat).await.unwrap_err().seq, 3);
    sqlx::query("UPDATE ledger SET actor = $1 WHERE seq = 3")
        .bind(&actor)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(verify(&cat).await.unwrap(), 7);

    let body: String = sqlx::query_scalar("SELECT body FROM ledger WHERE seq = 4")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    // Change one byte of the body: "demand" becomes "demanE".
    let tampered = body.replacen("demand", "demanE", 1);
    assert_ne!(tampered, body);
    assert_eq!(tampered.len(), body.len());
    sqlx::query("UPDATE ledger SET body = $1 WHERE seq = 4")
        .bind(&tampered)
        .execute(&mut conn)
        .await
        .unwrap();
    let broken = verify(&cat).await.unwrap_err();
    assert_eq!(broken.seq, 4, "{broken}");

    // Re-hashing the tampered row moves the break to the next link.
    let (prev, at, kind, subject, actor): (String, i64, String, Option<String>, String) =
        sqlx::query_as("SELECT prev_hash, at, kind, subject, actor FROM ledger WHERE seq = 4")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let fields = domicile_catalog::ledger::HashedFields {
        seq: 4,
        at,
        kind: &kind,
        subject: subject.as_deref(),
        body: &tampered,
        actor: &actor,
    };
    let hash = domicile_catalog::ledger::entry_hash(&prev, fields);
    sqlx::query("UPDATE ledger SET hash = $1 WHERE seq = 4")
        .bind(&hash)
        .execute(&mut conn)
        .await
        .unwrap();
    let broken = verify(&cat).await.unwrap_err();
    assert_eq!(broken.seq, 5, "{broken}");

    // Deleting a row is seen too.
    sqlx::query("DELETE FROM ledger WHERE seq = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(verify(&cat).await.unwrap_err().seq, 3);
}

/// Four pools on one database, as four processes would have, appending at
/// once (standalone entries and entries recorded with changes): one
/// unbroken chain, nothing lost, each writer's entries in its own order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_several_pools_form_one_chain() {
    const POOLS: usize = 4;
    const TASKS: usize = 12;
    const ROUNDS: usize = 25;
    let server = Server::connect().await;
    let url = server.fresh().await;
    let mut cats: Vec<Arc<dyn Catalog>> = Vec::new();
    for _ in 0..POOLS {
        cats.push(Arc::new(PostgresCatalog::open(&url).await.unwrap()));
    }
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let cat = cats[t % POOLS].clone();
        handles.push(tokio::spawn(async move {
            let token = format!("tok-{t}");
            cat.add_subject(&subject(&token), entry("subject", Some(&token), 0))
                .await
                .unwrap();
            for i in 0..ROUNDS {
                let mut e = entry("demand", Some(&token), i as i64);
                e.body = json!({ "task": t, "round": i });
                cat.append_ledger(e).await.unwrap();
            }
            cat.set_home(&token, "SG", entry("rehome", Some(&token), 99))
                .await
                .unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let expected = TASKS * (ROUNDS + 2);
    for cat in &cats {
        assert_eq!(verify(&**cat).await.unwrap(), expected as u64);
    }
    let entries = cats[1].ledger_page(0, u32::MAX).await.unwrap();
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=expected as i64).collect::<Vec<_>>());
    for t in 0..TASKS {
        let token = format!("tok-{t}");
        let rounds: Vec<serde_json::Value> = cats[2]
            .ledger_of(&token)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "demand")
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["round"].clone())
            .collect();
        let want: Vec<serde_json::Value> = (0..ROUNDS).map(|i| json!(i)).collect();
        assert_eq!(
            rounds, want,
            "task {t}'s entries are missing or out of order"
        );
    }
    // The head row agrees with the chain.
    let mut conn = raw(&url).await;
    let (seq, hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM ledger_head WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(seq, expected as i64);
    assert_eq!(hash, entries.last().unwrap().hash);
}

/// Claimers in four pools (as four worker processes) share one job: no unit
/// is handed out twice, none is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_from_several_pools_never_hand_out_a_unit_twice() {
    const POOLS: usize = 4;
    const WORKERS: usize = 8;
    const UNITS: usize = 400;
    let server = Server::connect().await;
    let url = server.fresh().await;
    let mut cats: Vec<Arc<dyn Catalog>> = Vec::new();
    for _ in 0..POOLS {
        cats.push(Arc::new(PostgresCatalog::open(&url).await.unwrap()));
    }
    let id = cats[0].create_job(&job_row()).await.unwrap();
    // A second process cannot open another job meanwhile.
    assert!(matches!(
        cats[1].create_job(&job_row()).await,
        Err(Error::Conflict { .. })
    ));
    let units: Vec<UnitRow> = (0..UNITS).map(|i| unit(&format!("t{i:04}"))).collect();
    cats[0].add_units(id, &units).await.unwrap();
    cats[0]
        .set_job_state(id, JobState::Running, 2)
        .await
        .unwrap();

    let mut handles = Vec::new();
    for w in 0..WORKERS {
        let cat = cats[w % POOLS].clone();
        handles.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut mine = Vec::new();
            loop {
                let got = cat
                    .claim_units(id, &owner, 5, i64::MAX / 2, 10)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                for u in got {
                    assert_eq!(u.lease_owner.as_deref(), Some(owner.as_str()));
                    mine.push(u.token);
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut per_worker = Vec::new();
    for h in handles {
        let mine = h.await.unwrap();
        per_worker.push(mine.len());
        all.extend(mine);
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a unit was claimed twice");
    assert_eq!(all.len(), UNITS, "every unit claimed once");
    let c = cats[3].job_counts(id, 20).await.unwrap();
    assert_eq!((c.in_flight, c.pending), (UNITS as i64, 0));
    eprintln!("units per worker: {per_worker:?}");
}

/// Writers in one pool commit against epoch 1 while another pool moves the
/// placement: no write commits at epoch 1 once the move has begun, once a
/// writer is fenced it stays fenced, every acknowledged write is in the
/// index, and the counters match the index exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_a_move_from_another_pool_are_fenced() {
    let server = Server::connect().await;
    let url = server.fresh().await;
    let writers_cat: Arc<dyn Catalog> = Arc::new(PostgresCatalog::open(&url).await.unwrap());
    let mover: Arc<dyn Catalog> = Arc::new(PostgresCatalog::open(&url).await.unwrap());
    // Three rounds, one placement each: a race is a matter of timing.
    for round in 0..3 {
        race_a_move(&writers_cat, &mover, &format!("tok-m{round}")).await;
    }
    assert_eq!(verify(&*mover).await.unwrap(), 9);
}

async fn race_a_move(writers_cat: &Arc<dyn Catalog>, mover: &Arc<dyn Catalog>, token: &str) {
    writers_cat
        .add_subject(&subject(token), entry("subject", Some(token), 1))
        .await
        .unwrap();
    writers_cat
        .ensure_placement(
            &placement(token, "profile"),
            0,
            entry("placement", Some(token), 2),
        )
        .await
        .unwrap();

    let mut handles = Vec::new();
    for w in 0..4 {
        let cat = writers_cat.clone();
        let token = token.to_string();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut fenced_at = None;
            for i in 0..200 {
                let name = format!("w{w}-{i}");
                let out = cat
                    .commit_object(
                        &fence(&token, "profile", 1),
                        &object(&token, "profile", &name, &format!("blob-{name}")),
                        0,
                    )
                    .await
                    .unwrap();
                match out {
                    CommitOutcome::Committed { .. } => {
                        assert!(
                            fenced_at.is_none(),
                            "writer {w} committed at epoch 1 after being fenced at {fenced_at:?}"
                        );
                        acked.push(name);
                    }
                    CommitOutcome::Fenced { .. } => {
                        fenced_at.get_or_insert(i);
                    }
                    CommitOutcome::PolicyChanged { active } => {
                        panic!("writer {w} fenced by policy version {active}: none was applied")
                    }
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert!(
        mover
            .begin_move(token, "profile", 1, &["eu-1".to_string()], i64::MAX / 2, 5)
            .await
            .unwrap()
    );
    // Every write that commits at epoch 1 commits before the move began:
    // the index as of now must already hold every write acknowledged at
    // epoch 1, even those acknowledged later.
    let at_move: HashSet<String> = mover
        .objects_of(token, None)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.lookup)
        .collect();
    mover
        .commit_move(
            &fence(token, "profile", 1),
            &["eu-1".to_string()],
            "eu-kms",
            b"k2",
            entry("move", Some(token), 6),
        )
        .await
        .unwrap();
    let mut acked = Vec::new();
    for h in handles {
        acked.extend(h.await.unwrap());
    }
    let indexed = mover.objects_of(token, None).await.unwrap();
    let names: HashSet<String> = indexed.iter().map(|o| o.lookup.clone()).collect();
    for name in &acked {
        assert!(names.contains(name), "acknowledged write {name} was lost");
        assert!(
            at_move.contains(name),
            "write {name} committed at epoch 1 after the move began"
        );
    }
    assert_eq!(
        names.len(),
        acked.len(),
        "an unacknowledged write is indexed"
    );
    let p = mover
        .get_placement(token, "profile")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.epoch, 2);
    assert_eq!(p.objects, indexed.len() as i64);
    assert_eq!(p.bytes, 42 * indexed.len() as i64);
    // Writes at epoch 1 are refused for good; epoch 2 writes go in.
    let out = writers_cat
        .commit_object(
            &fence(token, "profile", 1),
            &object(token, "profile", "late", "blob-late"),
            0,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome::Fenced {
            current_epoch: Some(2),
            moving: false
        }
    );
    assert!(matches!(
        writers_cat
            .commit_object(
                &fence(token, "profile", 2),
                &object(token, "profile", "late", "blob-late"),
                0,
            )
            .await
            .unwrap(),
        CommitOutcome::Committed { version: 1, .. }
    ));
    eprintln!(
        "{token}: {} writes acknowledged before the move",
        acked.len()
    );
}

/// Two pools registering overlapping batches of subjects at once: each
/// subject is added once and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_bulk_registrations_record_each_subject_once() {
    let server = Server::connect().await;
    let url = server.fresh().await;
    let a: Arc<dyn Catalog> = Arc::new(PostgresCatalog::open(&url).await.unwrap());
    let b: Arc<dyn Catalog> = Arc::new(PostgresCatalog::open(&url).await.unwrap());
    let batch: Vec<SubjectRow> = (0..300).map(|i| subject(&format!("s{i:04}"))).collect();
    let (x, y) = tokio::join!(
        {
            let a = a.clone();
            let batch = batch[..200].to_vec();
            async move { a.add_subjects(&batch, 5, "cli:test").await.unwrap() }
        },
        {
            let b = b.clone();
            let batch = batch[100..].to_vec();
            async move { b.add_subjects(&batch, 6, "cli:test").await.unwrap() }
        }
    );
    assert_eq!(x + y, 300);
    assert_eq!(a.count_subjects().await.unwrap(), 300);
    assert_eq!(verify(&*b).await.unwrap(), 300);
}

/// Every raw row of every table, for comparing two catalogs.
async fn dump(cat: &dyn Catalog) -> Vec<Vec<domicile_catalog::raw::RawRow>> {
    use domicile_catalog::raw::RawTable;
    let mut out = Vec::new();
    for t in RawTable::ALL {
        out.push(cat.raw_page(t, None, u32::MAX).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_migration_copies_sqlite_verbatim_and_continues_the_chain() {
    use domicile_catalog::JobStore;
    use domicile_catalog::copy::copy_catalog;
    use domicile_catalog::raw::RawTable;
    use domicile_catalog::sqlite::SqliteCatalog;

    let server = Server::connect().await;
    let src = SqliteCatalog::open_memory().await.unwrap();
    populate(&src).await;
    // A second subject without a sealed id, a replaced blob (garbage), a
    // moving placement and a job with a leased unit: every table non-empty.
    let mut s2 = subject("tok-2");
    s2.id_enc = None;
    src.add_subject(&s2, entry("subject", Some("tok-2"), 20))
        .await
        .unwrap();
    src.ensure_placement(
        &placement("tok-2", "media"),
        0,
        entry("placement", Some("tok-2"), 21),
    )
    .await
    .unwrap();
    src.commit_object(
        &fence("tok-1", "profile", 1),
        &object("tok-1", "profile", "lk", "blob-2"),
        0,
    )
    .await
    .unwrap();
    assert!(
        src.begin_move("tok-2", "media", 1, &["us-1".into()], 99, 0)
            .await
            .unwrap()
    );
    let job = src.create_job(&job_row()).await.unwrap();
    src.add_units(job, &[unit("tok-1"), unit("tok-2")])
        .await
        .unwrap();
    src.set_job_state(job, JobState::Running, 0).await.unwrap();
    assert_eq!(
        src.claim_units(job, "w1", 1, 1_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let applied = src
        .apply_policy(
            &domicile_catalog::PolicyVersionRow {
                version: 0,
                applied_at: 30,
                actor: "operator".into(),
                digest: "d1".into(),
                text: "[[rule]]\nname = \"default\"\n".into(),
            },
            entry("policy", None, 30),
        )
        .await
        .unwrap();

    // A signed checkpoint of the head (the catalog keeps it verbatim).
    let (head, hash) = src.ledger_head().await.unwrap();
    assert!(
        src.add_checkpoint(&domicile_catalog::CheckpointRow {
            seq: head,
            hash,
            at: 31,
            key_id: "k".into(),
            public_key: "pk".into(),
            signature: "sig".into(),
        })
        .await
        .unwrap()
    );

    // A measured migration run.
    src.record_run(&domicile_catalog::RunRow {
        job: 1,
        owner: "p1".into(),
        started_at: 32,
        finished_at: 40,
        units: 2,
        bytes: 2048,
    })
    .await
    .unwrap();

    let (_url, dst) = server.catalog().await;
    let mut pages = 0;
    let report = copy_catalog(&src, &dst, |_, _| pages += 1).await.unwrap();
    assert!(pages >= RawTable::ALL.len());
    assert!(
        report
            .tables
            .iter()
            .all(|t| t.source == t.target && t.source > 0)
    );
    assert_eq!(dump(&src).await, dump(&dst).await);
    assert_eq!(verify(&dst).await.unwrap(), report.ledger_entries);
    // The copied policy is the active one there too.
    assert_eq!(dst.policy_version().await.unwrap(), applied.version);
    assert_eq!(
        dst.policy(None).await.unwrap(),
        src.policy(None).await.unwrap()
    );
    assert_eq!(
        dst.checkpoints().await.unwrap(),
        src.checkpoints().await.unwrap()
    );

    // A second copy is refused and changes nothing.
    let err = copy_catalog(&src, &dst, |_, _| {}).await.unwrap_err();
    assert!(matches!(err, Error::NotEmpty { .. }), "{err}");
    assert_eq!(dump(&src).await, dump(&dst).await);

    // The target carries on: appends continue the copied chain, new ids
    // follow the copied ones.
    let seq = dst.append_ledger(entry("demand", None, 50)).await.unwrap();
    assert_eq!(seq, report.ledger_head.0 + 1);
    assert_eq!(verify(&dst).await.unwrap(), report.ledger_entries + 1);
    let old_max = src
        .garbage(100)
        .await
        .unwrap()
        .iter()
        .map(|g| g.id)
        .max()
        .unwrap();
    let mut g = src.garbage(1).await.unwrap().remove(0);
    g.blob_id = "blob-new".into();
    dst.queue_garbage(&g).await.unwrap();
    let ids: Vec<i64> = dst
        .garbage(100)
        .await
        .unwrap()
        .iter()
        .map(|g| g.id)
        .collect();
    assert!(ids.iter().any(|&id| id > old_max), "{ids:?}");
    dst.set_job_state(job, JobState::Done, 5).await.unwrap();
    assert!(dst.create_job(&job_row()).await.unwrap() > job);
}
