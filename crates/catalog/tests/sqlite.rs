//! The SQLite backend: the conformance suite, plus what only a file shows
//! (reopening, schema versions, tampering behind the catalog's back).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use domicile_catalog::sqlite::{SCHEMA_VERSION, SqliteCatalog};
use domicile_catalog::{
    Catalog, Error, Fence, JobState, JobStore, MoveMark, PlacementRow, PlacementState, SubjectRow,
    UnitMove, UnitOutcome, UnitRelease, UnitRow, UnitState,
};
use domicile_catalog_conformance as conformance;
use domicile_test_support::catalog::{entry, populate, verify};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

async fn open(path: &Path) -> SqliteCatalog {
    SqliteCatalog::open(path.to_str().unwrap()).await.unwrap()
}

/// A raw connection to the file, going around the catalog.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_file_backed() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path: PathBuf = dir
            .path()
            .join(format!("catalog-{}.db", n.fetch_add(1, Ordering::SeqCst)));
        async move { Arc::new(open(&path).await) as Arc<dyn Catalog> }
    })
    .await;
    assert_eq!(
        n.load(Ordering::SeqCst),
        conformance::CHECKS,
        "every check ran on its own catalog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_memory() {
    conformance::run_all(|| async {
        Arc::new(SqliteCatalog::open_memory().await.unwrap()) as Arc<dyn Catalog>
    })
    .await;
}

#[tokio::test]
async fn in_memory_catalogs_are_separate() {
    let a = SqliteCatalog::open_memory().await.unwrap();
    let b = SqliteCatalog::open_memory().await.unwrap();
    a.set_setting("k", "a").await.unwrap();
    assert_eq!(b.setting("k").await.unwrap(), None);
}

#[tokio::test]
async fn reopened_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    // Parent folders are created.
    let path = dir.path().join("nested/deeper/catalog.db");
    {
        let cat = open(&path).await;
        populate(&cat).await;
    }
    let url = format!("sqlite://{}", path.display());
    let cat = domicile_catalog::open(&url).await.unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let cat = open(&dir.path().join("c.db")).await;
    assert_eq!(SCHEMA_VERSION, 10);
    assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
    drop(cat);
    // Reopening applies nothing twice.
    let cat = open(&dir.path().join("c.db")).await;
    assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
}

/// Commits are on disk when they return, and concurrent writers share the
/// syncs (group commit): SQLite runs with `synchronous = NORMAL` in WAL mode
/// on every connection, and each write syncs the log after committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_are_synced_in_groups() {
    let dir = tempfile::tempdir().unwrap();
    let cat = Arc::new(open(&dir.path().join("c.db")).await);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = cat.pool().acquire().await.unwrap();
        let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(level, 1, "NORMAL: the catalog syncs the log itself");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        held.push(conn);
    }
    drop(held);

    // One write alone: one sync.
    let before = cat.wal_syncs();
    cat.append_ledger(entry("demand", None, 1)).await.unwrap();
    assert_eq!(cat.wal_syncs(), before + 1, "a commit returned unsynced");

    // 64 concurrent writes: every one synced, never more syncs than writes
    // (how many they share depends on timing; the count is printed).
    let before = cat.wal_syncs();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let cat = cat.clone();
        tasks.push(tokio::spawn(async move {
            cat.append_ledger(entry("demand", None, 10 + i))
                .await
                .unwrap();
            cat.wal_syncs()
        }));
    }
    for t in tasks {
        assert!(
            t.await.unwrap() > before,
            "a write returned before any sync"
        );
    }
    let syncs = cat.wal_syncs() - before;
    println!("64 concurrent commits, {syncs} syncs");
    assert!((1..=64).contains(&syncs), "{syncs} syncs for 64 commits");
    assert_eq!(verify(&*cat).await.unwrap(), 65);
}

/// A batch of object commits is one transaction and one log sync; an
/// item refused for its own sake (a failed condition, a fence of another
/// epoch, a row for another fence) changes nothing and does not stop the
/// others, and each item gets its own result, in order.
#[tokio::test]
async fn a_batch_of_commits_is_one_sync_and_refuses_items_alone() {
    use domicile_catalog::{CommitOutcome, Expect, ObjectCommit};
    use domicile_test_support::catalog::{fence, object, populate};
    let dir = tempfile::tempdir().unwrap();
    let cat = open(&dir.path().join("c.db")).await;
    populate(&cat).await;
    let item = |lookup: &str, blob: &str, epoch: i64, expect: Expect| ObjectCommit {
        fence: fence("tok-1", "profile", epoch),
        row: object("tok-1", "profile", lookup, blob),
        replaced_due: 0,
        expect,
    };
    let mut wrong_fence = item("c", "blob-c", 1, Expect::Any);
    wrong_fence.fence.category = "payment".into();
    let items = [
        item("a", "blob-a", 1, Expect::Any),
        // `lk` holds blob-1: refused.
        item("lk", "blob-x", 1, Expect::Absent),
        item("b", "blob-b", 2, Expect::Any),
        wrong_fence,
        // Sees the first item's row.
        item("a", "blob-a2", 1, Expect::Blob("blob-a".into())),
    ];
    let before = cat.wal_syncs();
    let out = cat.commit_objects(&items).await;
    assert_eq!(cat.wal_syncs(), before + 1, "one sync for the batch");
    assert_eq!(out.len(), items.len());
    assert!(matches!(
        out[0],
        Ok(CommitOutcome::Committed { version: 1, .. })
    ));
    assert!(
        matches!(out[1], Err(Error::PreconditionFailed { .. })),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(out[2], Ok(CommitOutcome::Fenced { .. })),
        "{:?}",
        out[2]
    );
    assert!(matches!(out[3], Err(Error::Invalid { .. })), "{:?}", out[3]);
    assert!(matches!(
        out[4],
        Ok(CommitOutcome::Committed { version: 2, .. })
    ));
    let a = cat.get_object("tok-1", "a").await.unwrap().unwrap();
    assert_eq!((a.blob_id.as_str(), a.version), ("blob-a2", 2));
    let lk = cat.get_object("tok-1", "lk").await.unwrap().unwrap();
    assert_eq!(lk.blob_id, "blob-1", "a refused item changed its row");
    assert!(cat.get_object("tok-1", "b").await.unwrap().is_none());
    assert!(cat.get_object("tok-1", "c").await.unwrap().is_none());
}

/// One worker turn's catalog side for `populate`'s tok-1: marked moving to
/// us-1 (lease until `lease_until`), then committed there as a unit of
/// `job` whose purge is due at `purge_after`.
async fn move_tok1_to_us(
    cat: &SqliteCatalog,
    job: i64,
    lease_until: i64,
    purge_after: i64,
) -> Vec<domicile_catalog::Result<(PlacementRow, bool)>> {
    let mark = MoveMark {
        token: "tok-1".into(),
        category: "profile".into(),
        epoch: 1,
        to: vec!["us-1".into()],
    };
    assert_eq!(
        cat.begin_moves(&[mark], lease_until, 3).await.unwrap(),
        vec![true]
    );
    cat.commit_unit_moves(&[UnitMove {
        rekeyed: Vec::new(),
        garbage: Vec::new(),
        fence: Fence {
            token: "tok-1".into(),
            category: "profile".into(),
            epoch: 1,
            policy: 0,
        },
        regions: vec!["us-1".into()],
        custodian: "in-kms".into(),
        wrapped_key: vec![1, 2, 3],
        ledger: entry("move", Some("tok-1"), 4),
        release: UnitRelease {
            job,
            owner: "w".into(),
            outcome: UnitOutcome::Committed {
                purge_after,
                moved_bytes: 42,
            },
            now: 4,
        },
    }])
    .await
    .unwrap()
}

/// A migration batch's marks and commits do not wait for the log to reach
/// the disk; `durable` (which the claim of every purge calls) does.
#[tokio::test]
async fn migration_batches_are_durable_at_the_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let cat = open(&dir.path().join("c.db")).await;
    populate(&cat).await;
    let before = cat.wal_syncs();
    let moved = move_tok1_to_us(&cat, 1, 10_000, 5).await;
    assert!(
        matches!(&moved[0], Ok((p, false)) if p.epoch == 2),
        "{moved:?}"
    );
    assert_eq!(cat.wal_syncs(), before, "a lazy commit waited for a sync");
    cat.durable().await.unwrap();
    assert_eq!(cat.wal_syncs(), before + 1);
    // What was committed lazily is there, and the chain holds.
    drop(cat);
    let cat = open(&dir.path().join("c.db")).await;
    let p = cat
        .get_placement("tok-1", "profile")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.epoch, p.regions), (2, vec!["us-1".to_string()]));
    assert!(verify(&cat).await.is_ok());
}

/// The claim that hands out a purge waits for the moves committed lazily
/// before it: the purge deletes old copies that a move undone by a power
/// cut would still need. Claims of moves alone do not sync.
#[tokio::test]
async fn a_purge_is_claimed_only_once_the_moves_before_it_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let cat = open(&dir.path().join("c.db")).await;
    populate(&cat).await;
    let job = cat.create_job(&conformance::job_row()).await.unwrap();
    let unit = UnitRow {
        job,
        from: vec!["sg-1".into(), "us-1".into()],
        to: vec!["us-1".into()],
        custodian_from: "in-kms".into(),
        custodian_to: "in-kms".into(),
        ..conformance::unit("tok-1", "profile", 0, 42)
    };
    cat.add_units(job, &[unit]).await.unwrap();
    cat.set_job_state(job, JobState::Running, 2).await.unwrap();

    let before = cat.wal_syncs();
    assert_eq!(
        cat.claim_units(job, "w", 8, 1_000, 3).await.unwrap().len(),
        1
    );
    let moved = move_tok1_to_us(&cat, job, 1_000, 10).await;
    assert!(matches!(&moved[0], Ok((_, true))), "{moved:?}");
    // Nothing due yet: an empty claim, still no sync.
    assert!(
        cat.claim_units(job, "w", 8, 1_000, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        cat.wal_syncs(),
        before,
        "a claim of no purge waited for a sync"
    );
    // The purge is due: it is handed out after one sync.
    let purge = cat.claim_units(job, "w", 8, 2_000, 11).await.unwrap();
    assert_eq!(purge.len(), 1);
    assert_eq!(purge[0].state, UnitState::Committed);
    assert_eq!(
        cat.wal_syncs(),
        before + 1,
        "a purge was handed out unsynced"
    );
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(open(&path).await);
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = SqliteCatalog::open(path.to_str().unwrap())
        .await
        .unwrap_err();
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
}

#[tokio::test]
async fn unsupported_url_is_refused() {
    let err = domicile_catalog::open("mysql://x").await.unwrap_err();
    assert!(matches!(err, Error::BadUrl { .. }), "{err}");
}

/// A ledger written before actors were recorded (schema 6) keeps verifying
/// after the upgrade that adds them: its entries have no actor and keep
/// their v1 hash, and the entries appended after them name their actor.
#[tokio::test]
async fn a_ledger_from_before_actors_verifies_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let cat = open(&path).await;
    cat.pool().close().await;
    drop(cat);
    // Back to schema 6: no actor column, and three entries hashed as a
    // build of that schema hashed them (v1, no actor).
    let mut conn = raw(&path).await;
    for sql in [
        "ALTER TABLE ledger DROP COLUMN actor",
        "DELETE FROM _sqlx_migrations WHERE version = 7",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    let mut prev = domicile_catalog::ledger::GENESIS.to_string();
    for seq in 1..=3_i64 {
        let body = format!("{{\"n\":{seq}}}");
        let fields = domicile_catalog::ledger::HashedFields {
            seq,
            at: seq * 10,
            kind: "demand",
            subject: None,
            body: &body,
            actor: "",
        };
        let hash = domicile_catalog::ledger::entry_hash(&prev, fields);
        sqlx::query(
            "INSERT INTO ledger (seq, at, kind, subject, body, prev_hash, hash) \
             VALUES (?, ?, 'demand', NULL, ?, ?, ?)",
        )
        .bind(seq)
        .bind(seq * 10)
        .bind(&body)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut conn)
        .await
        .unwrap();
        prev = hash;
    }
    conn.close().await.unwrap();

    let cat = open(&path).await;
    assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
    cat.append_ledger(entry("demand", None, 40)).await.unwrap();
    let entries = cat.ledger_page(0, 100).await.unwrap();
    let actors: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors, ["", "", "", "cli:test"]);
    assert_eq!(verify(&cat).await.unwrap(), 4);
}

/// Garbage queued before retries were recorded (schema 7) is taken as
/// before after the upgrade that adds them: each row is first tried when
/// it was due, with no attempt yet.
#[tokio::test]
async fn garbage_from_before_retries_is_due_as_before_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let cat = open(&path).await;
    cat.pool().close().await;
    drop(cat);
    // Back to schema 7, with two rows queued as a build of it queued them.
    let mut conn = raw(&path).await;
    for sql in [
        "DROP INDEX garbage_by_next_try",
        "ALTER TABLE garbage DROP COLUMN attempts",
        "ALTER TABLE garbage DROP COLUMN next_try",
        "DELETE FROM _sqlx_migrations WHERE version = 8",
        "INSERT INTO garbage (token, category, blob_id, regions, queued_at) \
         VALUES ('t', 'profile', 'due-early', '[\"r1\"]', 100), \
                ('t', 'profile', 'due-late', '[\"r1\"]', 5000)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let cat = open(&path).await;
    assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
    let rows = cat.garbage(10).await.unwrap();
    let got: Vec<(&str, i64, i64, i64)> = rows
        .iter()
        .map(|g| (g.blob_id.as_str(), g.queued_at, g.next_try, g.attempts))
        .collect();
    assert_eq!(
        got,
        [("due-early", 100, 100, 0), ("due-late", 5000, 5000, 0)]
    );
    let due: Vec<String> = cat
        .due_garbage(10, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.blob_id)
        .collect();
    assert_eq!(due, ["due-early"]);
}

#[tokio::test]
async fn tampered_ledger_row_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let cat = open(&path).await;
    populate(&cat).await;
    assert_eq!(verify(&cat).await.unwrap(), 7);

    let mut conn = raw(&path).await;
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
    sqlx::query("UPDATE ledger SET actor = ? WHERE seq = 3")
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
    sqlx::query("UPDATE ledger SET body = ? WHERE seq = 4")
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
    sqlx::query("UPDATE ledger SET hash = ? WHERE seq = 4")
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

/// Two catalogs on one file, as two processes would have: writers queue on
/// the lock (BEGIN IMMEDIATE + busy timeout) and the chain stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_on_one_file_share_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let a: Arc<dyn Catalog> = Arc::new(open(&path).await);
    let b: Arc<dyn Catalog> = Arc::new(open(&path).await);
    let mut handles = Vec::new();
    for t in 0..8 {
        let cat = if t % 2 == 0 { a.clone() } else { b.clone() };
        handles.push(tokio::spawn(async move {
            for i in 0..25 {
                cat.append_ledger(entry("demand", None, t * 100 + i))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(verify(&*a).await.unwrap(), 200);
    assert_eq!(verify(&*b).await.unwrap(), 200);
}

/// Several handles opening one fresh file at once migrate it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let mut handles = Vec::new();
    for _ in 0..4 {
        let path = path.clone();
        handles.push(tokio::spawn(async move { open(&path).await }));
    }
    for h in handles {
        let cat = h.await.unwrap();
        assert_eq!(cat.schema_version().await.unwrap(), SCHEMA_VERSION);
    }
    let mut conn = raw(&path).await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(applied, SCHEMA_VERSION);
}

/// Crypto-shredding: once a subject is erased and the log checkpointed, its
/// wrapped data key is nowhere in the database file.
#[tokio::test]
async fn erased_keys_are_zeroed_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let cat = open(&path).await;
    let key = b"WRAPPED-KEY-4f1d9a7c-shred-me".to_vec();
    let subject = SubjectRow {
        token: "tok-shred".into(),
        home: "IN".into(),
        created_at: 1,
        id_enc: Some(b"SEALED-ID-77aa".to_vec()),
    };
    cat.add_subject(&subject, entry("subject", Some("tok-shred"), 1))
        .await
        .unwrap();
    let placement = PlacementRow {
        token: "tok-shred".into(),
        category: "profile".into(),
        regions: vec!["r1".into()],
        epoch: 1,
        state: PlacementState::Active,
        custodian: "kms".into(),
        wrapped_key: key.clone(),
        objects: 0,
        bytes: 0,
        since: 1,
    };
    cat.ensure_placement(&placement, 0, entry("placement", Some("tok-shred"), 2))
        .await
        .unwrap();
    let contains = |needle: &[u8]| {
        let mut hay = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("c.db-wal")) {
            hay.extend(wal);
        }
        hay.windows(needle.len()).any(|w| w == needle)
    };
    let mut conn = raw(&path).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        contains(&key),
        "the test must first see the key it looks for"
    );

    cat.erase_subject("tok-shred", entry("erasure", Some("tok-shred"), 3))
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        !contains(&key),
        "the erased wrapped key is still in the file"
    );
    assert!(
        !contains(b"SEALED-ID-77aa"),
        "the erased sealed id is still in the file"
    );
}
