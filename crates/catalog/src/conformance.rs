//! The conformance suite every [`Catalog`] backend must pass.
//!
//! [`run_all`] runs every check, each on a fresh, empty catalog made by the
//! caller's factory, and each check panics with a message naming what broke.
//! The checks are public so a backend may also run them one by one. Nothing
//! here knows which backend it talks to: only the trait is used.
//!
//! Every check ends by verifying the whole ledger chain, so any method that
//! corrupts the chain fails the check that called it.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::sync::Arc;

use serde_json::json;

use crate::catalog::{Catalog, CommitOutcome, MoveMark, UnitMove};
use crate::error::Error;
use crate::jobs::{
    JobRow, JobState, JobWaiting, UnitOutcome, UnitReceipt, UnitRelease, UnitRow, UnitState,
};
use crate::ledger::{self, ChainVerifier, GENESIS};
use crate::model::{
    Fence, GarbageRow, LedgerAppend, LedgerEntry, ObjectRow, PlacementRow, PlacementState,
    PlacementSummary, ResidencyRow, SubjectRow,
};

/// How many checks `run_all` runs (each on its own fresh catalog).
pub const CHECKS: usize = 21;

/// Runs every check, each on a fresh, empty catalog from `fresh`.
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Catalog>>,
{
    empty_catalog(&*fresh().await).await;
    subjects(&*fresh().await).await;
    erase_subject(&*fresh().await).await;
    ensure_placement(&*fresh().await).await;
    commit_object(&*fresh().await).await;
    delete_object(&*fresh().await).await;
    moves(&*fresh().await).await;
    placements_page(&*fresh().await).await;
    residency(&*fresh().await).await;
    objects(&*fresh().await).await;
    garbage(&*fresh().await).await;
    write_intents(&*fresh().await).await;
    ledger_chain(&*fresh().await).await;
    settings(&*fresh().await).await;
    scan_follows_changes(&*fresh().await).await;
    jobs(&*fresh().await).await;
    claim_order(&*fresh().await).await;
    unit_release_with_the_change(&*fresh().await).await;
    batched_turns(&*fresh().await).await;
    concurrent_claims(fresh().await).await;
    concurrent_writers(fresh().await).await;
}

/// The planner's scan (`placements_page`) sees re-homing and moves at once,
/// and sealed ids come back for known tokens only.
pub async fn scan_follows_changes(cat: &dyn Catalog) {
    let a = subject("tok-a", "IN");
    cat.add_subject(&a, entry("subject", Some("tok-a"), 1))
        .await
        .unwrap();
    cat.ensure_placement(
        &placement("tok-a", "media", &["r1", "r2"]),
        entry("placement", Some("tok-a"), 2),
    )
    .await
    .unwrap();
    let page = cat.placements_page(None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(
        (page[0].home.as_str(), page[0].regions.clone()),
        ("IN", strings(&["r1", "r2"]))
    );

    cat.set_home("tok-a", "CN", entry("rehome", Some("tok-a"), 3))
        .await
        .unwrap();
    assert!(
        cat.begin_move("tok-a", "media", 1, &strings(&["r3"]), 100, 4)
            .await
            .unwrap()
    );
    let fence = Fence {
        token: "tok-a".into(),
        category: "media".into(),
        epoch: 1,
    };
    cat.commit_move(
        &fence,
        &strings(&["r3"]),
        "kms-b",
        b"k2",
        entry("move", Some("tok-a"), 5),
    )
    .await
    .unwrap();
    let page = cat.placements_page(None, 10).await.unwrap();
    assert_eq!(page[0].home, "CN", "the scan missed a re-homing");
    assert_eq!(page[0].regions, strings(&["r3"]), "the scan missed a move");
    assert_eq!(page[0].custodian, "kms-b");
    assert_eq!(page[0].epoch, 2);

    let seals = cat
        .subject_seals(&strings(&["tok-a", "tok-missing"]))
        .await
        .unwrap();
    assert_eq!(
        seals,
        vec![("tok-a".to_string(), a.id_enc.clone().unwrap())]
    );
    assert_chain(cat).await;
}

/// A running job's row, as `JobStore::create_job` takes it (the catalog
/// creates it in the planning state). For backend tests beside this suite.
pub fn job_row() -> JobRow {
    JobRow {
        id: 0,
        state: JobState::Running,
        created_at: 1,
        finished_at: None,
        policy: "digest".into(),
        rate: 0,
        grace_ms: 0,
        units: 0,
        bytes: 0,
    }
}

/// A pending unit of job 0 from r1 to r2 and r3, custodian kms-a to kms-b.
/// For backend tests beside this suite.
pub fn unit(token: &str, category: &str, priority: i64, bytes: i64) -> UnitRow {
    UnitRow {
        job: 0,
        token: token.into(),
        category: category.into(),
        priority,
        from: strings(&["r1"]),
        to: strings(&["r2", "r3"]),
        custodian_from: "kms-a".into(),
        custodian_to: "kms-b".into(),
        objects: 1,
        bytes,
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

/// Subjects homed in IN, each with a `media` placement in r1 at epoch 1.
async fn subjects_with_media_in_r1(cat: &dyn Catalog, tokens: &[&str]) {
    for &t in tokens {
        cat.add_subject(&subject(t, "IN"), entry("subject", Some(t), 1))
            .await
            .unwrap();
        cat.ensure_placement(
            &placement(t, "media", &["r1"]),
            entry("placement", Some(t), 2),
        )
        .await
        .unwrap();
    }
}

/// A unit's release rides in the transaction of the change that ends the
/// worker's turn: a move's commit (which still commits if the lease was
/// lost, and releases nothing if the move is fenced) and a purge's receipt
/// (appended whether or not the lease was still held).
pub async fn unit_release_with_the_change(cat: &dyn Catalog) {
    subjects_with_media_in_r1(cat, &["t1", "t2", "t3"]).await;
    for t in ["t1", "t2", "t3"] {
        assert!(
            cat.begin_move(t, "media", 1, &strings(&["r2"]), 10_000, 3)
                .await
                .unwrap()
        );
    }
    let id = running_job_claimed_by_w1(cat, &["t1", "t2", "t3"]).await;
    let fence = |t: &str, epoch| Fence {
        token: t.into(),
        category: "media".into(),
        epoch,
    };
    let release = |owner: &str, now| UnitRelease {
        job: id,
        owner: owner.into(),
        outcome: UnitOutcome::Committed {
            purge_after: 700,
            moved_bytes: 5,
        },
        now,
    };
    let seq = || async move { cat.ledger_page(0, 1_000).await.unwrap().len() };

    // Held: the move commits and the unit is committed, in one go.
    let before = seq().await;
    let (moved, held) = cat
        .commit_unit_move(
            &fence("t1", 1),
            &strings(&["r2"]),
            "kms-a",
            b"k",
            entry("move", Some("t1"), 6),
            &release("w1", 6),
        )
        .await
        .unwrap();
    assert!(held);
    assert_eq!((moved.epoch, moved.regions.clone()), (2, strings(&["r2"])));
    assert_eq!(seq().await, before + 1);
    let committed = cat.units_in(id, UnitState::Committed, 10).await.unwrap();
    assert_eq!(committed.len(), 1);
    assert_eq!(
        (
            committed[0].purge_after,
            committed[0].moved_bytes,
            committed[0].lease_owner.clone()
        ),
        (700, 5, None)
    );

    // Fenced (wrong epoch): nothing commits and the unit stays held.
    let err = cat
        .commit_unit_move(
            &fence("t2", 7),
            &strings(&["r2"]),
            "kms-a",
            b"k",
            entry("move", Some("t2"), 7),
            &release("w1", 7),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(seq().await, before + 1, "a fenced move left a receipt");
    let held_by = |t: &'static str| async move {
        cat.units_in(id, UnitState::Pending, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.token == t)
            .and_then(|u| u.lease_owner)
    };
    assert_eq!(held_by("t2").await.as_deref(), Some("w1"));

    // Lease lost (w2 took t3 over after expiry): the move still commits,
    // the unit is not released by the old holder.
    let took = cat.claim_units(id, "w2", 3, 9_000, 2_000).await.unwrap();
    assert!(took.iter().any(|u| u.token == "t3"), "{took:?}");
    let (moved, held) = cat
        .commit_unit_move(
            &fence("t3", 1),
            &strings(&["r2"]),
            "kms-a",
            b"k",
            entry("move", Some("t3"), 2_001),
            &release("w1", 2_001),
        )
        .await
        .unwrap();
    assert!(!held);
    assert_eq!(moved.epoch, 2);
    assert_eq!(held_by("t3").await.as_deref(), Some("w2"));

    // A purge's receipt and the unit's end: one transaction. (w2's claim
    // took t1's due purge too; its lease ends at 9_000.)
    let claimed = cat.claim_units(id, "w3", 5, 20_000, 9_100).await.unwrap();
    assert!(claimed.iter().any(|u| u.token == "t1"), "{claimed:?}");
    let done = UnitRelease {
        job: id,
        owner: "w3".into(),
        outcome: UnitOutcome::Done,
        now: 9_200,
    };
    let before = seq().await;
    assert!(
        cat.finish_unit_with_receipt("t1", "media", &done, &entry("purge", Some("t1"), 9_200))
            .await
            .unwrap()
    );
    assert_eq!(seq().await, before + 1);
    let finished = cat.units_in(id, UnitState::Done, 10).await.unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].token, "t1");
    // Not held any more: the receipt is still recorded, the unit untouched.
    assert!(
        !cat.finish_unit_with_receipt("t1", "media", &done, &entry("purge", Some("t1"), 9_300))
            .await
            .unwrap()
    );
    assert_eq!(seq().await, before + 2);
    assert_eq!(
        cat.units_in(id, UnitState::Done, 10).await.unwrap().len(),
        1
    );
    let mut v = ChainVerifier::new();
    for e in cat.ledger_page(0, 1_000).await.unwrap() {
        v.push(&e).unwrap();
    }
}

/// A worker's batch of units: marks, commits and purge receipts of several
/// units each in one call, where one fenced unit is refused on its own and
/// the others go through.
pub async fn batched_turns(cat: &dyn Catalog) {
    subjects_with_media_in_r1(cat, &["t1", "t2", "t3"]).await;
    let mark = |t: &str, epoch| MoveMark {
        token: t.into(),
        category: "media".into(),
        epoch,
        to: strings(&["r2"]),
    };
    // t2 is asked at a stale epoch, t4 has no placement: both refused, the
    // others marked.
    let marked = cat
        .begin_moves(
            &[mark("t1", 1), mark("t2", 9), mark("t3", 1), mark("t4", 1)],
            10_000,
            3,
        )
        .await
        .unwrap();
    assert_eq!(marked, vec![true, false, true, false]);
    for (t, moving) in [("t1", true), ("t2", false), ("t3", true)] {
        let p = get_placement(cat, t, "media").await;
        assert_eq!(!p.state.is_active(), moving, "{t}: {:?}", p.state);
    }
    // A mark held by a live lease is not taken again.
    assert_eq!(
        cat.begin_moves(&[mark("t1", 1)], 10_000, 4).await.unwrap(),
        vec![false]
    );

    let id = running_job_claimed_by_w1(cat, &["t1", "t2", "t3"]).await;
    let commit = |t: &str, epoch| UnitMove {
        fence: Fence {
            token: t.into(),
            category: "media".into(),
            epoch,
        },
        regions: strings(&["r2"]),
        custodian: "kms-a".into(),
        wrapped_key: b"k".to_vec(),
        ledger: entry("move", Some(t), 6),
        release: UnitRelease {
            job: id,
            owner: "w1".into(),
            outcome: UnitOutcome::Committed {
                purge_after: 700,
                moved_bytes: 5,
            },
            now: 6,
        },
    };
    let before = cat.ledger_page(0, 1_000).await.unwrap().len();
    // t2 was never marked: its commit is refused, t1 and t3 commit.
    let results = cat
        .commit_unit_moves(&[commit("t1", 1), commit("t2", 1), commit("t3", 1)])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert!(matches!(&results[0], Ok((p, true)) if p.epoch == 2));
    assert!(
        matches!(&results[1], Err(Error::Conflict { .. })),
        "{:?}",
        results[1]
    );
    assert!(matches!(&results[2], Ok((p, true)) if p.epoch == 2));
    assert_eq!(cat.ledger_page(0, 1_000).await.unwrap().len(), before + 2);
    let committed = tokens_of(&cat.units_in(id, UnitState::Committed, 10).await.unwrap());
    assert_eq!(committed, vec!["t1".to_string(), "t3".to_string()]);
    assert_eq!(get_placement(cat, "t2", "media").await.epoch, 1);

    // Both purges end in one transaction with their receipts.
    let claimed = cat.claim_units(id, "w2", 5, 20_000, 800).await.unwrap();
    assert_eq!(
        tokens_of(&claimed),
        vec!["t1".to_string(), "t3".to_string()]
    );
    let receipt = |t: &str| UnitReceipt {
        token: t.into(),
        category: "media".into(),
        release: UnitRelease {
            job: id,
            owner: "w2".into(),
            outcome: UnitOutcome::Done,
            now: 900,
        },
        receipt: entry("purge", Some(t), 900),
    };
    let held = cat
        .finish_units_with_receipts(&[receipt("t1"), receipt("t3")])
        .await
        .unwrap();
    assert_eq!(held, vec![true, true]);
    assert_eq!(
        tokens_of(&cat.units_in(id, UnitState::Done, 10).await.unwrap()),
        vec!["t1".to_string(), "t3".to_string()]
    );
    let entries = cat.ledger_page(0, 1_000).await.unwrap();
    assert_eq!(entries.len(), before + 4);
    let mut v = ChainVerifier::new();
    for e in &entries {
        v.push(e).unwrap();
    }
}

/// A running job of one unit per token (category "media"), every unit
/// claimed by "w1" until 1_000.
async fn running_job_claimed_by_w1(cat: &dyn Catalog, tokens: &[&str]) -> i64 {
    let id = cat.create_job(&job_row()).await.unwrap();
    let units: Vec<UnitRow> = tokens.iter().map(|t| unit(t, "media", 0, 1)).collect();
    cat.add_units(id, &units).await.unwrap();
    cat.set_job_state(id, JobState::Running, 4).await.unwrap();
    assert_eq!(
        cat.claim_units(id, "w1", 100, 1_000, 5)
            .await
            .unwrap()
            .len(),
        tokens.len()
    );
    id
}

fn tokens_of(units: &[UnitRow]) -> Vec<String> {
    let mut t: Vec<String> = units.iter().map(|u| u.token.clone()).collect();
    t.sort();
    t
}

/// Claims hand out due purges first (oldest due first), then pending units
/// by priority, then token and category; held, retrying and not-yet-due
/// units are skipped.
pub async fn claim_order(cat: &dyn Catalog) {
    let id = cat.create_job(&job_row()).await.unwrap();
    cat.add_units(
        id,
        &[
            unit("t5", "media", 1, 1),
            unit("t1", "media", 1, 1),
            unit("t4", "media", 0, 1),
            unit("t2", "payment", 0, 1),
            unit("t2", "media", 0, 1),
            unit("t3", "media", 1, 1),
        ],
    )
    .await
    .unwrap();
    cat.set_job_state(id, JobState::Running, 10).await.unwrap();
    let tokens = |units: &[UnitRow]| -> Vec<String> {
        units
            .iter()
            .map(|u| format!("{}/{}", u.token, u.category))
            .collect()
    };
    let first = cat.claim_units(id, "w1", 2, 1_000, 100).await.unwrap();
    assert_eq!(tokens(&first), ["t2/media", "t2/payment"]);
    // t2/media commits with a purge due at 500; t2/payment waits to retry
    // until 2_000.
    let committed = UnitOutcome::Committed {
        purge_after: 500,
        moved_bytes: 1,
    };
    assert!(
        cat.finish_unit(id, "t2", "media", "w1", &committed, 150)
            .await
            .unwrap()
    );
    let retry = UnitOutcome::Retry {
        error: "busy".into(),
        retry_at: 2_000,
        give_up: false,
    };
    assert!(
        cat.finish_unit(id, "t2", "payment", "w1", &retry, 150)
            .await
            .unwrap()
    );
    // Before the purge is due: the next pending unit by priority.
    let second = cat.claim_units(id, "w2", 1, 1_000, 200).await.unwrap();
    assert_eq!(tokens(&second), ["t4/media"]);
    // Once due, the purge comes before every pending unit, whatever its
    // priority; then priority 1 by token, skipping t4 (held by w2).
    let third = cat.claim_units(id, "w3", 3, 1_000, 600).await.unwrap();
    assert_eq!(tokens(&third), ["t2/media", "t1/media", "t3/media"]);
    assert_eq!(third[0].state, UnitState::Committed);
    let fourth = cat.claim_units(id, "w3", 5, 1_000, 700).await.unwrap();
    assert_eq!(tokens(&fourth), ["t5/media"]);
    // One given unit: only if pending, free and small enough.
    assert!(
        cat.claim_unit(id, ("t4", "media"), "w9", 10, 1_000, 700)
            .await
            .unwrap()
            .is_none(),
        "t4 is held by w2"
    );
    assert!(
        cat.claim_unit(id, ("t2", "media"), "w9", 10, 1_000, 700)
            .await
            .unwrap()
            .is_none(),
        "t2/media is committed, not pending"
    );
    assert!(
        cat.claim_unit(id, ("t5", "media"), "w9", 0, 1_600, 1_100)
            .await
            .unwrap()
            .is_none(),
        "t5 holds more than 0 bytes"
    );
    assert!(
        cat.claim_unit(id, ("t9", "media"), "w9", 10, 1_000, 700)
            .await
            .unwrap()
            .is_none(),
        "no such unit"
    );
    let one = cat
        .claim_unit(id, ("t5", "media"), "w9", 10, 1_600, 1_100)
        .await
        .unwrap()
        .expect("t5 is free after w3's lease");
    assert_eq!(
        (one.lease_owner.as_deref(), one.lease_until),
        (Some("w9"), 1_600)
    );
    assert!(
        cat.claim_units(id, "w8", 10, 1_600, 1_200)
            .await
            .unwrap()
            .iter()
            .all(|u| u.token != "t5"),
        "a unit claimed alone is held like any other"
    );
    // Every lease (1_000) has expired and t2/payment's retry is due: the
    // unpurged t2/media first, then priority 0, then priority 1.
    let fifth = cat.claim_units(id, "w4", 5, 9_000, 2_500).await.unwrap();
    assert_eq!(
        tokens(&fifth),
        ["t2/media", "t2/payment", "t4/media", "t1/media", "t3/media"]
    );
}

/// Jobs: one open job at a time; claims by priority under leases; lease
/// expiry hands a unit over; outcomes; counts; cancellation.
pub async fn jobs(cat: &dyn Catalog) {
    assert_eq!(cat.open_job().await.unwrap(), None);
    let id = cat.create_job(&job_row()).await.unwrap();
    let err = cat.create_job(&job_row()).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { .. }),
        "a second open job: {err}"
    );
    cat.add_units(
        id,
        &[
            unit("t1", "media", 1, 100),
            unit("t2", "media", 0, 10),
            unit("t3", "payment", 1, 1),
        ],
    )
    .await
    .unwrap();
    let job = cat.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.units, job.bytes, job.state),
        (3, 111, JobState::Planning)
    );
    // A creator that died part-way: its units can be discarded and re-added.
    assert_eq!(cat.discard_units(id).await.unwrap(), 3);
    assert_eq!(cat.job(id).await.unwrap().unwrap().units, 0);
    cat.add_units(
        id,
        &[
            unit("t1", "media", 1, 100),
            unit("t2", "media", 0, 10),
            unit("t3", "payment", 1, 1),
        ],
    )
    .await
    .unwrap();
    cat.set_job_state(id, JobState::Running, 50).await.unwrap();
    assert!(
        matches!(cat.discard_units(id).await, Err(Error::Conflict { .. })),
        "a running job's units are never discarded"
    );
    assert_eq!(cat.open_job().await.unwrap().map(|j| j.id), Some(id));

    // Priority 0 (forbidden copies) first.
    let a = cat.claim_units(id, "w1", 1, 1_000, 100).await.unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].token, "t2");
    // A claim is not an attempt that failed: `attempts` counts failures.
    assert_eq!(
        (a[0].lease_owner.as_deref(), a[0].attempts),
        (Some("w1"), 0)
    );
    assert_eq!(a[0].to, strings(&["r2", "r3"]));
    // A live lease is not handed out again.
    let b = cat.claim_units(id, "w2", 10, 1_000, 200).await.unwrap();
    let mut got: Vec<&str> = b.iter().map(|u| u.token.as_str()).collect();
    got.sort();
    assert_eq!(got, ["t1", "t3"]);
    let c = cat.job_counts(id, 300).await.unwrap();
    assert_eq!((c.pending, c.in_flight, c.bytes_total), (0, 3, 111));
    // Units in flight are pending units: moves to wait for, no purge yet.
    let waiting = |moves, purges| JobWaiting { moves, purges };
    assert_eq!(cat.job_waiting(id).await.unwrap(), waiting(true, false));
    assert!(
        cat.claim_units(id, "w3", 10, 2_000, 999)
            .await
            .unwrap()
            .is_empty()
    );
    // Renewal only by the holder.
    let key = vec![("t2".to_string(), "media".to_string())];
    assert_eq!(cat.renew_leases(id, "w2", &key, 5_000).await.unwrap(), 0);
    assert_eq!(cat.renew_leases(id, "w1", &key, 1_500).await.unwrap(), 1);
    // Expired lease: w1's t2 goes to w3 after 1_500.
    let d = cat.claim_units(id, "w3", 10, 3_000, 1_600).await.unwrap();
    let tokens: Vec<&str> = d.iter().map(|u| u.token.as_str()).collect();
    assert!(tokens.contains(&"t2"), "{tokens:?}");
    // Taken over after its holder vanished (a crash): still no failure.
    assert_eq!(d.iter().find(|u| u.token == "t2").unwrap().attempts, 0);
    // The old holder can no longer finish it.
    let done = UnitOutcome::Committed {
        purge_after: 2_000,
        moved_bytes: 10,
    };
    assert!(
        !cat.finish_unit(id, "t2", "media", "w1", &done, 1_700)
            .await
            .unwrap()
    );
    assert!(
        cat.finish_unit(id, "t2", "media", "w3", &done, 1_700)
            .await
            .unwrap()
    );
    assert_eq!(cat.job_waiting(id).await.unwrap(), waiting(true, true));
    // Committed units come back for purging once due, not before.
    let none: Vec<String> = cat
        .claim_units(id, "w4", 10, 9_000, 1_800)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.token)
        .filter(|t| t == "t2")
        .collect();
    assert!(none.is_empty());
    let purge = cat.claim_units(id, "w4", 10, 9_000, 3_100).await.unwrap();
    let p = purge
        .iter()
        .find(|u| u.token == "t2")
        .expect("due purge claimed");
    assert_eq!(p.state, UnitState::Committed);
    // A failed purge keeps the unit committed.
    let retry = UnitOutcome::Retry {
        error: "region down".into(),
        retry_at: 4_000,
        give_up: false,
    };
    assert!(
        cat.finish_unit(id, "t2", "media", "w4", &retry, 3_200)
            .await
            .unwrap()
    );
    let committed = cat.units_in(id, UnitState::Committed, 10).await.unwrap();
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].attempts, 1, "the failed purge counts");
    let again = cat.claim_units(id, "w4", 10, 9_000, 4_100).await.unwrap();
    assert!(again.iter().any(|u| u.token == "t2"));
    assert!(
        cat.finish_unit(id, "t2", "media", "w4", &UnitOutcome::Done, 4_200)
            .await
            .unwrap()
    );
    // Give up on t1.
    let fail = UnitOutcome::Retry {
        error: "boom".into(),
        retry_at: 0,
        give_up: true,
    };
    assert!(
        cat.finish_unit(id, "t1", "media", "w4", &fail, 4_300)
            .await
            .unwrap()
    );
    let failed = cat.units_in(id, UnitState::Failed, 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("boom"));
    // t3's lease (w4) expires at 9_000; cancel takes only unleased pending units.
    assert_eq!(cat.cancel_pending(id, 5_000).await.unwrap(), 0);
    assert_eq!(cat.cancel_pending(id, 9_001).await.unwrap(), 1);
    let c = cat.job_counts(id, 9_100).await.unwrap();
    assert_eq!(
        (c.done, c.failed, c.cancelled, c.pending, c.bytes_moved),
        (1, 1, 1, 0, 10)
    );
    // Done, failed and cancelled units wait for nothing.
    assert_eq!(cat.job_waiting(id).await.unwrap(), waiting(false, false));
    cat.set_job_state(id, JobState::Cancelled, 9_200)
        .await
        .unwrap();
    let job = cat.job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.finished_at),
        (JobState::Cancelled, Some(9_200))
    );
    assert_eq!(cat.open_job().await.unwrap(), None);
    assert_eq!(cat.jobs(10).await.unwrap().len(), 1);
    let next = cat
        .create_job(&job_row())
        .await
        .expect("a new job once none is open");
    cat.add_units(next, &[unit("t1", "media", 1, 100)])
        .await
        .unwrap();
    // Each job waits for its own units only.
    assert_eq!(cat.job_waiting(next).await.unwrap(), waiting(true, false));
    assert_eq!(cat.job_waiting(id).await.unwrap(), waiting(false, false));
}

/// Many claimers at once never get the same unit.
pub async fn concurrent_claims(cat: Arc<dyn Catalog>) {
    let id = cat.create_job(&job_row()).await.unwrap();
    let units: Vec<UnitRow> = (0..200)
        .map(|i| unit(&format!("t{i:03}"), "media", i % 2, 1))
        .collect();
    cat.add_units(id, &units).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..6 {
        let cat = cat.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = cat
                    .claim_units(id, &format!("w{w}"), 7, i64::MAX / 2, 10)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|u| u.token));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, 200, "every unit claimed exactly once");
    assert_eq!(all.len(), 200, "a unit was claimed twice");
}

// ---------------------------------------------------------------------------
// Fixtures

fn subject(token: &str, home: &str) -> SubjectRow {
    SubjectRow {
        token: token.into(),
        home: home.into(),
        created_at: 1_000,
        id_enc: Some(format!("sealed:{token}").into_bytes()),
    }
}

fn entry(kind: &str, subject: Option<&str>, at: i64) -> LedgerAppend {
    LedgerAppend {
        kind: kind.into(),
        subject: subject.map(str::to_string),
        body: json!({ "kind": kind, "at": at }),
        at,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn placement(token: &str, category: &str, regions: &[&str]) -> PlacementRow {
    PlacementRow {
        token: token.into(),
        category: category.into(),
        regions: strings(regions),
        epoch: 1,
        state: PlacementState::Active,
        custodian: "kms-a".into(),
        wrapped_key: format!("key-{token}-{category}").into_bytes(),
        objects: 0,
        bytes: 0,
        since: 2_000,
    }
}

fn object(token: &str, category: &str, lookup: &str, blob: &str, stored: i64) -> ObjectRow {
    ObjectRow {
        token: token.into(),
        category: category.into(),
        lookup: lookup.into(),
        name_enc: format!("enc({lookup})").into_bytes(),
        meta_enc: b"meta".to_vec(),
        version: 0,
        size: stored - 1,
        stored_size: stored,
        checksum: format!("sum-{blob}"),
        blob_id: blob.into(),
        modified_at: 5_000,
    }
}

fn fence(token: &str, category: &str, epoch: i64) -> Fence {
    Fence {
        token: token.into(),
        category: category.into(),
        epoch,
    }
}

/// Registers a subject with placements in the given categories.
async fn setup(cat: &dyn Catalog, token: &str, home: &str, placements: &[(&str, &[&str])]) {
    cat.add_subject(&subject(token, home), entry("subject", Some(token), 1_000))
        .await
        .unwrap();
    for (category, regions) in placements {
        cat.ensure_placement(
            &placement(token, category, regions),
            entry("placement", Some(token), 2_000),
        )
        .await
        .unwrap();
    }
}

/// Commits and expects success; returns (version, replaced).
async fn commit(cat: &dyn Catalog, epoch: i64, row: &ObjectRow) -> (i64, Option<String>) {
    let f = fence(&row.token, &row.category, epoch);
    match cat.commit_object(&f, row).await.unwrap() {
        CommitOutcome::Committed { version, replaced } => (version, replaced),
        other => panic!(
            "commit of {}/{} was fenced: {other:?}",
            row.token, row.lookup
        ),
    }
}

async fn get_placement(cat: &dyn Catalog, token: &str, category: &str) -> PlacementRow {
    cat.get_placement(token, category)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("placement {token}/{category} is missing"))
}

async fn all_garbage(cat: &dyn Catalog) -> Vec<GarbageRow> {
    cat.garbage(u32::MAX).await.unwrap()
}

/// The whole ledger, read in pages.
pub async fn read_ledger(cat: &dyn Catalog) -> Vec<LedgerEntry> {
    let mut out: Vec<LedgerEntry> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = cat.ledger_page(after, 7).await.unwrap();
        assert!(page.len() <= 7, "ledger_page returned more than its limit");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Reads the whole ledger and asserts that it is one unbroken chain.
pub async fn assert_chain(cat: &dyn Catalog) -> Vec<LedgerEntry> {
    let entries = read_ledger(cat).await;
    let mut v = ChainVerifier::new();
    for e in &entries {
        if let Err(b) = v.push(e) {
            panic!("ledger chain does not verify: {b}");
        }
    }
    assert_eq!(v.count(), entries.len() as u64);
    entries
}

async fn ledger_len(cat: &dyn Catalog) -> usize {
    read_ledger(cat).await.len()
}

fn fenced(current_epoch: Option<i64>, moving: bool) -> CommitOutcome {
    CommitOutcome::Fenced {
        current_epoch,
        moving,
    }
}

// ---------------------------------------------------------------------------
// Checks

/// A fresh catalog is at a schema version and holds nothing.
pub async fn empty_catalog(cat: &dyn Catalog) {
    assert!(
        cat.schema_version().await.unwrap() >= 1,
        "no schema version"
    );
    assert_eq!(cat.count_subjects().await.unwrap(), 0);
    assert!(cat.ledger_page(0, 10).await.unwrap().is_empty());
    assert!(cat.garbage(10).await.unwrap().is_empty());
    assert!(cat.residency().await.unwrap().is_empty());
    assert!(cat.placements_page(None, 10).await.unwrap().is_empty());
    assert!(cat.objects_page(None, 10).await.unwrap().is_empty());
    assert_eq!(cat.get_subject("nobody").await.unwrap(), None);
    assert_eq!(cat.get_placement("nobody", "profile").await.unwrap(), None);
    assert!(cat.placements_of("nobody").await.unwrap().is_empty());
    assert_eq!(cat.get_object("nobody", "x").await.unwrap(), None);
    assert!(cat.objects_of("nobody", None).await.unwrap().is_empty());
    assert!(cat.ledger_of("nobody").await.unwrap().is_empty());
}

/// add_subject, duplicates, get_subject, set_home, add_subjects, count_subjects.
pub async fn subjects(cat: &dyn Catalog) {
    let a = subject("tok-a", "IN");
    cat.add_subject(&a, entry("subject", Some("tok-a"), 10))
        .await
        .unwrap();
    assert_eq!(cat.get_subject("tok-a").await.unwrap(), Some(a.clone()));
    assert_eq!(cat.get_subject("tok-zz").await.unwrap(), None);
    assert_eq!(ledger_len(cat).await, 1);

    let err = cat
        .add_subject(&subject("tok-a", "CN"), entry("subject", Some("tok-a"), 11))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists { .. }),
        "duplicate add_subject: {err}"
    );
    assert_eq!(cat.get_subject("tok-a").await.unwrap(), Some(a.clone()));
    assert_eq!(
        ledger_len(cat).await,
        1,
        "a refused add_subject was recorded"
    );

    cat.set_home("tok-a", "SG", entry("rehome", Some("tok-a"), 20))
        .await
        .unwrap();
    assert_eq!(cat.get_subject("tok-a").await.unwrap().unwrap().home, "SG");
    let entries = read_ledger(cat).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].kind, "rehome");
    assert_eq!(entries[1].subject.as_deref(), Some("tok-a"));

    let err = cat
        .set_home("tok-zz", "SG", entry("rehome", Some("tok-zz"), 21))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { .. }),
        "set_home unknown: {err}"
    );
    assert_eq!(ledger_len(cat).await, 2, "a refused set_home was recorded");

    let batch = [
        subject("tok-b", "IN"),
        subject("tok-c", "CN"),
        subject("tok-a", "US"), // already known: skipped
        subject("tok-b", "TW"), // twice in the batch: the first wins
    ];
    assert_eq!(cat.add_subjects(&batch, 30).await.unwrap(), 2);
    assert_eq!(cat.get_subject("tok-a").await.unwrap().unwrap().home, "SG");
    assert_eq!(cat.get_subject("tok-b").await.unwrap().unwrap().home, "IN");
    assert_eq!(cat.get_subject("tok-c").await.unwrap().unwrap().home, "CN");
    assert_eq!(cat.count_subjects().await.unwrap(), 3);

    let entries = read_ledger(cat).await;
    assert_eq!(entries.len(), 4, "one ledger entry per added subject");
    for (e, (token, home)) in entries[2..].iter().zip([("tok-b", "IN"), ("tok-c", "CN")]) {
        assert_eq!(e.kind, "subject");
        assert_eq!(e.subject.as_deref(), Some(token));
        assert_eq!(e.at, 30);
        assert_eq!(e.body, format!(r#"{{"home":"{home}"}}"#));
    }

    assert_eq!(cat.add_subjects(&[], 40).await.unwrap(), 0);
    assert_eq!(cat.add_subjects(&batch, 40).await.unwrap(), 0);
    assert_eq!(ledger_len(cat).await, 4);
    assert_eq!(cat.count_subjects().await.unwrap(), 3);

    // Several at once: in the order asked, `None` where unknown, a token
    // asked twice answered twice.
    let asked: Vec<String> = ["tok-c", "tok-zz", "tok-a", "tok-c", "tok-b"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let mut one_by_one = Vec::new();
    for t in &asked {
        one_by_one.push(cat.get_subject(t).await.unwrap());
    }
    let many = cat.get_subjects(&asked).await.unwrap();
    assert_eq!(many, one_by_one);
    let homes: Vec<Option<&str>> = many
        .iter()
        .map(|s| s.as_ref().map(|s| s.home.as_str()))
        .collect();
    assert_eq!(
        homes,
        [Some("CN"), None, Some("SG"), Some("CN"), Some("IN")]
    );
    assert!(cat.get_subjects(&[]).await.unwrap().is_empty());
    // More tokens than one statement takes.
    let lots: Vec<String> = (0..2_000)
        .map(|i| match i % 3 {
            0 => "tok-a".to_string(),
            1 => format!("tok-none-{i}"),
            _ => "tok-b".to_string(),
        })
        .collect();
    let got = cat.get_subjects(&lots).await.unwrap();
    assert_eq!(got.len(), lots.len());
    for (t, s) in lots.iter().zip(&got) {
        match s {
            Some(s) => assert_eq!(&s.token, t),
            None => assert!(t.starts_with("tok-none-"), "{t} not found"),
        }
    }
    assert_chain(cat).await;
}

/// erase_subject removes the subject, its placements and index rows, queues
/// every blob with the right regions, and records the erasure.
pub async fn erase_subject(cat: &dyn Catalog) {
    setup(
        cat,
        "tok-e",
        "IN",
        &[("profile", &["r1", "r2"]), ("media", &["r3"])],
    )
    .await;
    setup(cat, "tok-keep", "IN", &[("profile", &["r1"])]).await;
    commit(cat, 1, &object("tok-e", "profile", "p-old", "blob-p0", 5)).await;
    commit(cat, 1, &object("tok-e", "profile", "p-old", "blob-p1", 10)).await; // queues p0
    commit(cat, 1, &object("tok-e", "profile", "p-two", "blob-p2", 20)).await;
    commit(cat, 1, &object("tok-e", "media", "m-one", "blob-m1", 30)).await;
    commit(cat, 1, &object("tok-keep", "profile", "k", "blob-k", 40)).await;
    // A move under way may already have copied to its target.
    assert!(
        cat.begin_move("tok-e", "media", 1, &strings(&["r4"]), 9_000, 100)
            .await
            .unwrap()
    );
    let before = all_garbage(cat).await;
    assert_eq!(before.len(), 1);
    let ledger_before = ledger_len(cat).await;

    let mut queued = cat
        .erase_subject("tok-e", entry("erasure", Some("tok-e"), 7_000))
        .await
        .unwrap();
    queued.sort_by(|a, b| a.blob_id.cmp(&b.blob_id));
    let got: Vec<(&str, &str, Vec<String>, i64)> = queued
        .iter()
        .map(|g| {
            (
                g.category.as_str(),
                g.blob_id.as_str(),
                g.regions.clone(),
                g.queued_at,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("media", "blob-m1", strings(&["r3", "r4"]), 7_000),
            ("profile", "blob-p1", strings(&["r1", "r2"]), 7_000),
            ("profile", "blob-p2", strings(&["r1", "r2"]), 7_000),
        ],
        "erase_subject queued the wrong garbage"
    );
    assert!(queued.iter().all(|g| g.token == "tok-e"));

    let mut after = all_garbage(cat).await;
    assert_eq!(after.len(), 4);
    after.retain(|g| g.id != before[0].id);
    after.sort_by(|a, b| a.blob_id.cmp(&b.blob_id));
    assert_eq!(
        after, queued,
        "garbage() disagrees with what erase returned"
    );

    assert_eq!(cat.get_subject("tok-e").await.unwrap(), None);
    assert!(cat.placements_of("tok-e").await.unwrap().is_empty());
    assert_eq!(cat.get_placement("tok-e", "profile").await.unwrap(), None);
    assert!(cat.objects_of("tok-e", None).await.unwrap().is_empty());
    assert_eq!(cat.get_object("tok-e", "p-two").await.unwrap(), None);
    assert_eq!(cat.count_subjects().await.unwrap(), 1);
    let page = cat.objects_page(None, 100).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].token, "tok-keep");
    let placements = cat.placements_page(None, 100).await.unwrap();
    assert_eq!(placements.len(), 1);
    assert_eq!(placements[0].token, "tok-keep");
    let residency = cat.residency().await.unwrap();
    assert_eq!(residency.len(), 1);
    assert_eq!(residency[0].subjects, 1);
    assert_eq!(residency[0].bytes, 40);

    let entries = assert_chain(cat).await;
    assert_eq!(entries.len(), ledger_before + 1);
    let last = entries.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.subject.as_deref(), last.at),
        ("erasure", Some("tok-e"), 7_000)
    );
    assert_eq!(cat.ledger_of("tok-e").await.unwrap().last().unwrap(), last);

    // The old fence no longer lets writes in.
    let out = cat
        .commit_object(
            &fence("tok-e", "profile", 1),
            &object("tok-e", "profile", "late", "blob-late", 1),
        )
        .await
        .unwrap();
    assert_eq!(out, fenced(None, false));

    for token in ["tok-e", "tok-never"] {
        let err = cat
            .erase_subject(token, entry("erasure", Some(token), 8_000))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotFound { .. }),
            "erase {token}: {err}"
        );
    }
    assert_eq!(ledger_len(cat).await, ledger_before + 1);
    assert_eq!(all_garbage(cat).await.len(), 4);

    // The other subject is untouched.
    let keep = get_placement(cat, "tok-keep", "profile").await;
    assert_eq!((keep.objects, keep.bytes), (1, 40));

    // Nothing is left behind: the token can be registered afresh.
    setup(cat, "tok-e", "CN", &[]).await;
    assert!(cat.placements_of("tok-e").await.unwrap().is_empty());
    assert!(cat.objects_of("tok-e", None).await.unwrap().is_empty());
    assert_chain(cat).await;
}

/// ensure_placement creates once (epoch 1, active, zero counts) and is idempotent.
pub async fn ensure_placement(cat: &dyn Catalog) {
    setup(cat, "tok-p", "IN", &[]).await;
    let n0 = ledger_len(cat).await;

    let mut asked = placement("tok-p", "profile", &["r2", "r1"]);
    asked.epoch = 7;
    asked.objects = 5;
    asked.bytes = 500;
    asked.state = PlacementState::Moving {
        to: strings(&["r9"]),
        lease_until: 1,
    };
    let created = cat
        .ensure_placement(&asked, entry("placement", Some("tok-p"), 3_000))
        .await
        .unwrap();
    let expected = PlacementRow {
        epoch: 1,
        state: PlacementState::Active,
        objects: 0,
        bytes: 0,
        ..placement("tok-p", "profile", &["r2", "r1"])
    };
    assert_eq!(
        created, expected,
        "regions keep their order; epoch 1, active, zero counts"
    );
    assert_eq!(get_placement(cat, "tok-p", "profile").await, expected);
    let entries = read_ledger(cat).await;
    assert_eq!(entries.len(), n0 + 1);
    assert_eq!(entries[n0].kind, "placement");
    assert_eq!(entries[n0].subject.as_deref(), Some("tok-p"));

    let mut other = placement("tok-p", "profile", &["r3"]);
    other.custodian = "kms-b".into();
    other.wrapped_key = b"other".to_vec();
    let again = cat
        .ensure_placement(&other, entry("placement", Some("tok-p"), 3_100))
        .await
        .unwrap();
    assert_eq!(
        again, expected,
        "an existing placement must come back unchanged"
    );
    assert_eq!(get_placement(cat, "tok-p", "profile").await, expected);
    assert_eq!(
        ledger_len(cat).await,
        n0 + 1,
        "an existing placement was recorded again"
    );

    cat.ensure_placement(
        &placement("tok-p", "media", &["r1"]),
        entry("placement", Some("tok-p"), 3_200),
    )
    .await
    .unwrap();
    let all = cat.placements_of("tok-p").await.unwrap();
    let keys: Vec<(&str, Vec<String>)> = all
        .iter()
        .map(|p| (p.category.as_str(), p.regions.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("media", strings(&["r1"])),
            ("profile", strings(&["r2", "r1"]))
        ]
    );

    let err = cat
        .ensure_placement(
            &placement("tok-unknown", "profile", &["r1"]),
            entry("placement", Some("tok-unknown"), 3_300),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { .. }),
        "unknown subject: {err}"
    );

    let err = cat
        .ensure_placement(
            &placement("tok-p", "payment", &["r1", "r1"]),
            entry("placement", Some("tok-p"), 3_400),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { .. }),
        "duplicate region: {err}"
    );
    assert_eq!(cat.get_placement("tok-p", "payment").await.unwrap(), None);
    assert_eq!(
        ledger_len(cat).await,
        n0 + 2,
        "a refused placement was recorded"
    );

    // Several at once: in the order asked, regions in their order, `None`
    // where there is none, a pair asked twice answered twice.
    let key = |t: &str, c: &str| (t.to_string(), c.to_string());
    let asked = [
        key("tok-p", "profile"),
        key("tok-p", "payment"),
        key("nobody", "profile"),
        key("tok-p", "media"),
        key("tok-p", "profile"),
    ];
    let mut one_by_one = Vec::new();
    for (t, c) in &asked {
        one_by_one.push(cat.get_placement(t, c).await.unwrap());
    }
    let many = cat.get_placements(&asked).await.unwrap();
    assert_eq!(many, one_by_one);
    assert_eq!(
        many[0].as_ref().map(|p| p.regions.clone()),
        Some(strings(&["r2", "r1"]))
    );
    assert!(many[1].is_none() && many[2].is_none());
    assert!(cat.get_placements(&[]).await.unwrap().is_empty());
    // More pairs than one statement takes (501 different ones).
    let lots: Vec<(String, String)> = (0..1_000)
        .map(|i| {
            if i % 2 == 0 {
                key("tok-p", "media")
            } else {
                key("tok-p", &format!("none-{i}"))
            }
        })
        .collect();
    let got = cat.get_placements(&lots).await.unwrap();
    assert_eq!(got.len(), 1_000);
    assert!(
        got.iter()
            .step_by(2)
            .all(|p| p.as_ref().map(|p| p.regions.clone()) == Some(strings(&["r1"])))
    );
    assert!(got.iter().skip(1).step_by(2).all(Option::is_none));
    assert_chain(cat).await;
}

/// commit_object: versions, counters, replaced blobs, fencing, refusals.
pub async fn commit_object(cat: &dyn Catalog) {
    setup(cat, "tok-o", "IN", &[("profile", &["r1", "r2"])]).await;
    let n0 = ledger_len(cat).await;

    let a1 = object("tok-o", "profile", "a", "blob-1", 100);
    assert_eq!(commit(cat, 1, &a1).await, (1, None));
    let stored = cat.get_object("tok-o", "a").await.unwrap().unwrap();
    assert_eq!(
        stored,
        ObjectRow {
            version: 1,
            ..a1.clone()
        }
    );
    let p = get_placement(cat, "tok-o", "profile").await;
    assert_eq!((p.objects, p.bytes), (1, 100));

    let mut a2 = object("tok-o", "profile", "a", "blob-2", 150);
    a2.modified_at = 6_000;
    assert_eq!(commit(cat, 1, &a2).await, (2, Some("blob-1".into())));
    assert_eq!(
        cat.get_object("tok-o", "a").await.unwrap().unwrap(),
        ObjectRow {
            version: 2,
            ..a2.clone()
        }
    );
    let p = get_placement(cat, "tok-o", "profile").await;
    assert_eq!(
        (p.objects, p.bytes),
        (1, 150),
        "an overwrite replaces the bytes"
    );
    let g = all_garbage(cat).await;
    assert_eq!(g.len(), 1);
    assert_eq!(
        (
            g[0].token.as_str(),
            g[0].category.as_str(),
            g[0].blob_id.as_str(),
            g[0].regions.clone(),
            g[0].queued_at
        ),
        ("tok-o", "profile", "blob-1", strings(&["r1", "r2"]), 6_000)
    );

    assert_eq!(
        commit(cat, 1, &object("tok-o", "profile", "b", "blob-3", 10)).await,
        (1, None)
    );
    let p = get_placement(cat, "tok-o", "profile").await;
    assert_eq!((p.objects, p.bytes), (2, 160));

    // Committing the blob already indexed bumps the version, queues nothing.
    assert_eq!(commit(cat, 1, &a2).await, (3, None));
    assert_eq!(all_garbage(cat).await.len(), 1);
    let p = get_placement(cat, "tok-o", "profile").await;
    assert_eq!((p.objects, p.bytes), (2, 160));

    // Wrong epoch: nothing written.
    let a4 = object("tok-o", "profile", "a", "blob-4", 999);
    let out = cat
        .commit_object(&fence("tok-o", "profile", 2), &a4)
        .await
        .unwrap();
    assert_eq!(out, fenced(Some(1), false));
    let out = cat
        .commit_object(&fence("tok-o", "profile", 0), &a4)
        .await
        .unwrap();
    assert_eq!(out, fenced(Some(1), false));
    assert_eq!(
        cat.get_object("tok-o", "a").await.unwrap().unwrap().blob_id,
        "blob-2"
    );
    assert_eq!(
        cat.get_object("tok-o", "a").await.unwrap().unwrap().version,
        3
    );
    let p = get_placement(cat, "tok-o", "profile").await;
    assert_eq!((p.objects, p.bytes), (2, 160));
    assert_eq!(all_garbage(cat).await.len(), 1);

    // No placement at all.
    let m = object("tok-o", "media", "m", "blob-m", 1);
    let out = cat
        .commit_object(&fence("tok-o", "media", 1), &m)
        .await
        .unwrap();
    assert_eq!(out, fenced(None, false));
    assert_eq!(cat.get_object("tok-o", "m").await.unwrap(), None);

    // A row that is not the fence's.
    let err = cat
        .commit_object(&fence("tok-o", "profile", 1), &m)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { .. }),
        "row/fence mismatch: {err}"
    );

    // A blob belongs to one name only.
    let err = cat
        .commit_object(
            &fence("tok-o", "profile", 1),
            &object("tok-o", "profile", "c", "blob-2", 5),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "shared blob: {err}");
    assert_eq!(cat.get_object("tok-o", "c").await.unwrap(), None);

    // A name lives in one category.
    cat.ensure_placement(
        &placement("tok-o", "media", &["r3"]),
        entry("placement", Some("tok-o"), 2_500),
    )
    .await
    .unwrap();
    let err = cat
        .commit_object(
            &fence("tok-o", "media", 1),
            &object("tok-o", "media", "a", "blob-5", 5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { .. }),
        "name in two categories: {err}"
    );
    assert_eq!(
        cat.get_object("tok-o", "a")
            .await
            .unwrap()
            .unwrap()
            .category,
        "profile"
    );
    let p = get_placement(cat, "tok-o", "media").await;
    assert_eq!((p.objects, p.bytes), (0, 0));

    // Moving: fenced even once the lease has expired; only begin_move takes over.
    assert!(
        cat.begin_move("tok-o", "profile", 1, &strings(&["r3"]), 1_000, 500)
            .await
            .unwrap()
    );
    let out = cat
        .commit_object(&fence("tok-o", "profile", 1), &a4)
        .await
        .unwrap();
    assert_eq!(out, fenced(Some(1), true));
    assert_eq!(
        cat.get_object("tok-o", "a").await.unwrap().unwrap().version,
        3
    );
    cat.abort_move("tok-o", "profile", 1).await.unwrap();
    assert_eq!(commit(cat, 1, &a4).await, (4, Some("blob-2".into())));
    let p = get_placement(cat, "tok-o", "profile").await;
    assert_eq!((p.objects, p.bytes), (2, 1_009));

    assert_eq!(
        ledger_len(cat).await,
        n0 + 1,
        "only the media placement may be recorded: commits append nothing"
    );
    assert_chain(cat).await;
}

/// delete_object: fencing, counters, garbage, absent names.
pub async fn delete_object(cat: &dyn Catalog) {
    setup(
        cat,
        "tok-d",
        "IN",
        &[("profile", &["r1"]), ("media", &["r2"])],
    )
    .await;
    commit(cat, 1, &object("tok-d", "profile", "x", "blob-x1", 40)).await;
    commit(cat, 1, &object("tok-d", "profile", "x", "blob-x2", 50)).await;
    commit(cat, 1, &object("tok-d", "profile", "y", "blob-y", 7)).await;
    let n0 = ledger_len(cat).await;
    let g0 = all_garbage(cat).await.len();

    let out = cat
        .delete_object(&fence("tok-d", "profile", 2), "x")
        .await
        .unwrap();
    assert_eq!(out, Some(fenced(Some(1), false)));
    assert!(cat.get_object("tok-d", "x").await.unwrap().is_some());

    let out = cat
        .delete_object(&fence("tok-d", "profile", 1), "x")
        .await
        .unwrap();
    assert_eq!(
        out,
        Some(CommitOutcome::Committed {
            version: 2,
            replaced: Some("blob-x2".into())
        })
    );
    assert_eq!(cat.get_object("tok-d", "x").await.unwrap(), None);
    let p = get_placement(cat, "tok-d", "profile").await;
    assert_eq!((p.objects, p.bytes), (1, 7));
    let g = all_garbage(cat).await;
    assert_eq!(g.len(), g0 + 1);
    let last = g.last().unwrap();
    assert_eq!(
        (
            last.blob_id.as_str(),
            last.regions.clone(),
            last.category.as_str()
        ),
        ("blob-x2", strings(&["r1"]), "profile")
    );

    let f = fence("tok-d", "profile", 1);
    assert_eq!(cat.delete_object(&f, "x").await.unwrap(), None);
    assert_eq!(cat.delete_object(&f, "never").await.unwrap(), None);
    // Under another category's fence the name is not there.
    let out = cat
        .delete_object(&fence("tok-d", "media", 1), "y")
        .await
        .unwrap();
    assert_eq!(out, None);
    assert!(cat.get_object("tok-d", "y").await.unwrap().is_some());
    let out = cat
        .delete_object(&fence("tok-d", "payment", 1), "y")
        .await
        .unwrap();
    assert_eq!(out, Some(fenced(None, false)));

    assert!(
        cat.begin_move("tok-d", "profile", 1, &strings(&["r3"]), 9_000, 100)
            .await
            .unwrap()
    );
    assert_eq!(
        cat.delete_object(&f, "y").await.unwrap(),
        Some(fenced(Some(1), true))
    );
    assert!(cat.get_object("tok-d", "y").await.unwrap().is_some());
    cat.abort_move("tok-d", "profile", 1).await.unwrap();

    // A deleted name starts again at version 1.
    assert_eq!(
        commit(cat, 1, &object("tok-d", "profile", "x", "blob-x3", 3)).await,
        (1, None)
    );
    let p = get_placement(cat, "tok-d", "profile").await;
    assert_eq!((p.objects, p.bytes), (2, 10));
    assert_eq!(all_garbage(cat).await.len(), g0 + 1);
    assert_eq!(ledger_len(cat).await, n0, "deletes append nothing");
    assert_chain(cat).await;
}

/// begin_move, lease takeover, commit_move, abort_move.
pub async fn moves(cat: &dyn Catalog) {
    setup(cat, "tok-m", "IN", &[("profile", &["r1"])]).await;
    commit(cat, 1, &object("tok-m", "profile", "a", "blob-a", 10)).await;
    commit(cat, 1, &object("tok-m", "profile", "b", "blob-b", 20)).await;
    let n0 = ledger_len(cat).await;
    let original = get_placement(cat, "tok-m", "profile").await;

    let to = strings(&["r2", "r3"]);
    assert!(
        !cat.begin_move("tok-m", "profile", 2, &to, 1_000, 100)
            .await
            .unwrap()
    );
    assert!(
        !cat.begin_move("tok-m", "media", 1, &to, 1_000, 100)
            .await
            .unwrap()
    );
    assert_eq!(get_placement(cat, "tok-m", "profile").await, original);

    assert!(
        cat.begin_move("tok-m", "profile", 1, &to, 1_000, 100)
            .await
            .unwrap()
    );
    let moving = PlacementState::Moving {
        to: to.clone(),
        lease_until: 1_000,
    };
    let p = get_placement(cat, "tok-m", "profile").await;
    assert_eq!(
        p,
        PlacementRow {
            state: moving.clone(),
            ..original.clone()
        }
    );

    // The lease holds until lease_until, inclusive.
    for now in [500, 1_000] {
        let taken = cat
            .begin_move("tok-m", "profile", 1, &strings(&["r9"]), 5_000, now)
            .await
            .unwrap();
        assert!(!taken, "a live lease was taken over at now = {now}");
    }
    assert_eq!(get_placement(cat, "tok-m", "profile").await.state, moving);

    // Expired: another worker takes over, with its own target and lease.
    let to2 = strings(&["r4"]);
    assert!(
        cat.begin_move("tok-m", "profile", 1, &to2, 2_000, 1_001)
            .await
            .unwrap()
    );
    assert_eq!(
        get_placement(cat, "tok-m", "profile").await.state,
        PlacementState::Moving {
            to: to2.clone(),
            lease_until: 2_000
        }
    );
    assert_eq!(get_placement(cat, "tok-m", "profile").await.epoch, 1);

    let err = cat
        .commit_move(
            &fence("tok-m", "profile", 2),
            &to2,
            "kms-b",
            b"k2",
            entry("move", Some("tok-m"), 3_000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { .. }),
        "commit_move wrong epoch: {err}"
    );
    let err = cat
        .commit_move(
            &fence("tok-m", "profile", 1),
            &strings(&["r4", "r4"]),
            "kms-b",
            b"k2",
            entry("move", Some("tok-m"), 3_000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { .. }),
        "duplicate region: {err}"
    );
    assert_eq!(
        get_placement(cat, "tok-m", "profile").await.regions,
        strings(&["r1"])
    );
    assert_eq!(
        ledger_len(cat).await,
        n0,
        "a refused commit_move was recorded"
    );

    let moved = cat
        .commit_move(
            &fence("tok-m", "profile", 1),
            &to2,
            "kms-b",
            b"k2",
            entry("move", Some("tok-m"), 3_000),
        )
        .await
        .unwrap();
    let expected = PlacementRow {
        regions: to2.clone(),
        epoch: 2,
        state: PlacementState::Active,
        custodian: "kms-b".into(),
        wrapped_key: b"k2".to_vec(),
        since: 3_000,
        ..original.clone()
    };
    assert_eq!(moved, expected);
    assert_eq!(get_placement(cat, "tok-m", "profile").await, expected);
    assert_eq!(
        (moved.objects, moved.bytes),
        (2, 30),
        "counters survive a move"
    );
    let entries = read_ledger(cat).await;
    assert_eq!(entries.len(), n0 + 1);
    let last = entries.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.subject.as_deref(), last.at),
        ("move", Some("tok-m"), 3_000)
    );
    let residency = cat.residency().await.unwrap();
    let regions: Vec<&str> = residency.iter().map(|r| r.region.as_str()).collect();
    assert_eq!(regions, vec!["r4"]);

    // The old epoch is dead for moves and writes alike.
    let err = cat
        .commit_move(
            &fence("tok-m", "profile", 1),
            &to,
            "kms-c",
            b"k3",
            entry("move", Some("tok-m"), 3_100),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { .. }),
        "second commit_move: {err}"
    );
    let out = cat
        .commit_object(
            &fence("tok-m", "profile", 1),
            &object("tok-m", "profile", "c", "blob-c", 5),
        )
        .await
        .unwrap();
    assert_eq!(out, fenced(Some(2), false));
    assert_eq!(
        commit(cat, 2, &object("tok-m", "profile", "c", "blob-c", 5)).await,
        (1, None)
    );

    // Abort: the mark goes, nothing else changes.
    let before = get_placement(cat, "tok-m", "profile").await;
    assert!(
        cat.begin_move("tok-m", "profile", 2, &to, 5_000, 4_000)
            .await
            .unwrap()
    );
    cat.abort_move("tok-m", "profile", 1).await.unwrap();
    assert!(
        !get_placement(cat, "tok-m", "profile")
            .await
            .state
            .is_active(),
        "abort_move at a stale epoch cleared the mark"
    );
    cat.abort_move("tok-m", "profile", 2).await.unwrap();
    assert_eq!(get_placement(cat, "tok-m", "profile").await, before);
    cat.abort_move("tok-m", "profile", 2).await.unwrap();
    cat.abort_move("tok-m", "nothing", 1).await.unwrap();
    assert_eq!(get_placement(cat, "tok-m", "profile").await, before);

    // An aborted move cannot be committed: writes may have landed since.
    let err = cat
        .commit_move(
            &fence("tok-m", "profile", 2),
            &to,
            "kms-c",
            b"k3",
            entry("move", Some("tok-m"), 6_000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { .. }),
        "commit after abort: {err}"
    );
    let err = cat
        .commit_move(
            &fence("tok-m", "nothing", 1),
            &to,
            "kms-c",
            b"k3",
            entry("move", Some("tok-m"), 6_000),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound { .. }),
        "commit of no placement: {err}"
    );
    assert_eq!(get_placement(cat, "tok-m", "profile").await, before);
    assert_eq!(
        ledger_len(cat).await,
        n0 + 1,
        "only the committed move is recorded"
    );
    assert_chain(cat).await;
}

/// placements_page streams every placement in (token, category) order,
/// across pages, with homes and regions.
pub async fn placements_page(cat: &dyn Catalog) {
    let categories = ["profile", "payment", "media"];
    let mut expected: Vec<PlacementSummary> = Vec::new();
    for i in [4, 0, 6, 2, 5, 1, 3] {
        let token = format!("tok-{i:02}");
        let home = if i % 2 == 0 { "IN" } else { "CN" };
        setup(cat, &token, home, &[]).await;
        for (j, category) in categories.iter().enumerate() {
            let r1 = format!("r{}", (i + j) % 3);
            let r2 = format!("r{}", (i + j + 1) % 3);
            let regions: Vec<&str> = if j == 1 { vec![&r1, &r2] } else { vec![&r1] };
            cat.ensure_placement(
                &placement(&token, category, &regions),
                entry("placement", Some(&token), 2_000),
            )
            .await
            .unwrap();
            let objects = (i + j) as i64 % 3;
            for k in 0..objects {
                let blob = format!("blob-{token}-{category}-{k}");
                commit(cat, 1, &object(&token, category, &blob, &blob, 10 + k)).await;
            }
            expected.push(PlacementSummary {
                token: token.clone(),
                home: home.into(),
                category: category.to_string(),
                regions: strings(&regions),
                custodian: "kms-a".into(),
                epoch: 1,
                objects,
                bytes: (0..objects).map(|k| 10 + k).sum(),
            });
        }
    }
    expected.sort_by(|a, b| (&a.token, &a.category).cmp(&(&b.token, &b.category)));
    assert_eq!(expected.len(), 21);

    for limit in [1_u32, 4, 21, 100] {
        let mut got: Vec<PlacementSummary> = Vec::new();
        let mut pages = 0;
        loop {
            let after = got.last().map(|p| (p.token.clone(), p.category.clone()));
            let page = cat
                .placements_page(after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit as usize, "page larger than its limit");
            if page.is_empty() {
                break;
            }
            pages += 1;
            assert!(pages <= 100, "placements_page does not advance");
            got.extend(page);
        }
        assert_eq!(got, expected, "placements_page with limit {limit}");
    }

    // A key between two rows starts at the next one.
    let page = cat.placements_page(Some(("tok-03", "n")), 2).await.unwrap();
    let keys: Vec<(&str, &str)> = page
        .iter()
        .map(|p| (p.token.as_str(), p.category.as_str()))
        .collect();
    assert_eq!(keys, vec![("tok-03", "payment"), ("tok-03", "profile")]);
    let page = cat
        .placements_page(Some(("tok-06", "profile")), 10)
        .await
        .unwrap();
    assert!(page.is_empty(), "rows after the last key");
    assert!(cat.placements_page(None, 0).await.unwrap().is_empty());
    assert_chain(cat).await;
}

/// residency aggregates subjects, objects and bytes per (home, category, region).
pub async fn residency(cat: &dyn Catalog) {
    setup(cat, "s1", "IN", &[("profile", &["r1", "r2"])]).await;
    setup(cat, "s2", "IN", &[("profile", &["r1"]), ("media", &["r3"])]).await;
    setup(cat, "s3", "CN", &[("profile", &["r2"])]).await;
    setup(cat, "s4", "CN", &[]).await;
    commit(cat, 1, &object("s1", "profile", "a", "b-s1a", 10)).await;
    commit(cat, 1, &object("s1", "profile", "b", "b-s1b", 20)).await;
    commit(cat, 1, &object("s2", "profile", "a", "b-s2a", 5)).await;
    commit(cat, 1, &object("s3", "profile", "a", "b-s3a", 7)).await;

    let row = |home: &str, category: &str, region: &str, s: i64, o: i64, b: i64| ResidencyRow {
        home: home.into(),
        category: category.into(),
        region: region.into(),
        subjects: s,
        objects: o,
        bytes: b,
    };
    assert_eq!(
        cat.residency().await.unwrap(),
        vec![
            row("CN", "profile", "r2", 1, 1, 7),
            row("IN", "media", "r3", 1, 0, 0),
            row("IN", "profile", "r1", 2, 3, 35),
            row("IN", "profile", "r2", 1, 2, 30),
        ]
    );

    cat.set_home("s3", "IN", entry("rehome", Some("s3"), 9_000))
        .await
        .unwrap();
    commit(cat, 1, &object("s1", "profile", "a", "b-s1a2", 12)).await;
    assert_eq!(
        cat.residency().await.unwrap(),
        vec![
            row("IN", "media", "r3", 1, 0, 0),
            row("IN", "profile", "r1", 2, 3, 37),
            row("IN", "profile", "r2", 2, 3, 39),
        ]
    );
    assert_chain(cat).await;
}

/// objects_of and objects_page.
pub async fn objects(cat: &dyn Catalog) {
    setup(
        cat,
        "tok-1",
        "IN",
        &[("profile", &["r1"]), ("media", &["r2"])],
    )
    .await;
    setup(cat, "tok-2", "CN", &[("profile", &["r1"])]).await;
    // Blob ids sort in another order than names.
    let rows = [
        object("tok-1", "profile", "n-a", "blob-5", 1),
        object("tok-1", "profile", "n-b", "blob-2", 2),
        object("tok-1", "media", "n-c", "blob-9", 3),
        object("tok-1", "media", "n-d", "blob-1", 4),
        object("tok-2", "profile", "n-a", "blob-3", 5),
        object("tok-2", "profile", "n-e", "blob-0", 6),
    ];
    for r in &rows {
        commit(cat, 1, r).await;
    }
    let stored = |r: &ObjectRow| ObjectRow {
        version: 1,
        ..r.clone()
    };

    let all = cat.objects_of("tok-1", None).await.unwrap();
    assert_eq!(
        all,
        vec![
            stored(&rows[2]),
            stored(&rows[3]),
            stored(&rows[0]),
            stored(&rows[1])
        ],
        "objects_of orders by category then lookup"
    );
    let media = cat.objects_of("tok-1", Some("media")).await.unwrap();
    assert_eq!(media, vec![stored(&rows[2]), stored(&rows[3])]);
    assert!(
        cat.objects_of("tok-1", Some("payment"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        cat.get_object("tok-2", "n-a").await.unwrap(),
        Some(stored(&rows[4]))
    );

    // Several (subject, category) pairs at once: one list per pair in the
    // order asked, each ordered by lookup; empty where there is nothing.
    let key = |t: &str, c: &str| (t.to_string(), c.to_string());
    let asked = [
        key("tok-2", "profile"),
        key("tok-1", "payment"),
        key("tok-1", "media"),
        key("nobody", "profile"),
        key("tok-2", "profile"),
        key("tok-1", "profile"),
    ];
    let mut one_by_one = Vec::new();
    for (t, c) in &asked {
        one_by_one.push(cat.objects_of(t, Some(c)).await.unwrap());
    }
    let many = cat.objects_of_pairs(&asked).await.unwrap();
    assert_eq!(many, one_by_one);
    assert_eq!(many[0], vec![stored(&rows[4]), stored(&rows[5])]);
    assert!(many[1].is_empty() && many[3].is_empty());
    assert_eq!(many[2], vec![stored(&rows[2]), stored(&rows[3])]);
    assert!(cat.objects_of_pairs(&[]).await.unwrap().is_empty());
    // More pairs than one statement takes (501 different ones).
    let lots: Vec<(String, String)> = (0..1_000)
        .map(|i| {
            if i % 2 == 0 {
                key("tok-1", "media")
            } else {
                key("tok-1", &format!("none-{i}"))
            }
        })
        .collect();
    let got = cat.objects_of_pairs(&lots).await.unwrap();
    assert_eq!(got.len(), 1_000);
    assert!(got.iter().step_by(2).all(|o| *o == many[2]));
    assert!(got.iter().skip(1).step_by(2).all(Vec::is_empty));

    let mut expected: Vec<ObjectRow> = rows.iter().map(stored).collect();
    expected.sort_by(|a, b| (&a.token, &a.blob_id).cmp(&(&b.token, &b.blob_id)));
    for limit in [1_u32, 2, 6, 50] {
        let mut got: Vec<ObjectRow> = Vec::new();
        loop {
            let after = got.last().map(|o| (o.token.clone(), o.blob_id.clone()));
            let page = cat
                .objects_page(after.as_ref().map(|(t, b)| (t.as_str(), b.as_str())), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit as usize);
            if page.is_empty() {
                break;
            }
            assert!(got.len() <= rows.len(), "objects_page does not advance");
            got.extend(page);
        }
        assert_eq!(got, expected, "objects_page with limit {limit}");
    }
    let page = cat
        .objects_page(Some(("tok-1", "blob-6")), 10)
        .await
        .unwrap();
    let blobs: Vec<&str> = page.iter().map(|o| o.blob_id.as_str()).collect();
    assert_eq!(blobs, vec!["blob-9", "blob-0", "blob-3"]);
    assert_chain(cat).await;
}

/// A write's intent is a garbage row queued in the future: listed as
/// pending, not due before its time, and removed by the commit of its blob
/// (while other rows stay).
pub async fn write_intents(cat: &dyn Catalog) {
    setup(cat, "tok-w", "IN", &[("profile", &["r1"])]).await;
    let intent = |blob: &str, at: i64| GarbageRow {
        id: 0,
        token: "tok-w".into(),
        category: "profile".into(),
        blob_id: blob.into(),
        regions: strings(&["r1"]),
        queued_at: at,
    };
    let a = cat.queue_garbage(&intent("blob-a", 5_000)).await.unwrap();
    let b = cat.queue_garbage(&intent("blob-b", 5_000)).await.unwrap();
    let old = cat.queue_garbage(&intent("blob-old", 100)).await.unwrap();
    assert!(a < b && b < old, "ids in queue order: {a} {b} {old}");
    assert_eq!(all_garbage(cat).await.len(), 3, "every row is pending");
    let due: Vec<String> = cat
        .due_garbage(10, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.blob_id)
        .collect();
    assert_eq!(due, ["blob-old"], "intents are not due before their time");
    assert_eq!(cat.due_garbage(10, 5_000).await.unwrap().len(), 3);
    assert_eq!(cat.due_garbage(1, 5_000).await.unwrap().len(), 1);

    // Committing blob-a removes its intent, and only that.
    commit(cat, 1, &object("tok-w", "profile", "a", "blob-a", 10)).await;
    let left: Vec<String> = all_garbage(cat)
        .await
        .into_iter()
        .map(|g| g.blob_id)
        .collect();
    assert_eq!(left, ["blob-b", "blob-old"]);
    // An intent dropped by its writer (nothing was stored).
    cat.finish_garbage(b, None).await.unwrap();
    assert_eq!(all_garbage(cat).await.len(), 1);
}

/// queue_garbage, garbage, finish_garbage.
pub async fn garbage(cat: &dyn Catalog) {
    assert!(cat.garbage(10).await.unwrap().is_empty());
    let mut queued = Vec::new();
    for i in 0..5 {
        let row = GarbageRow {
            id: 0,
            token: format!("tok-{i}"),
            category: "profile".into(),
            blob_id: format!("blob-{i}"),
            regions: strings(&["r1", "r2"][..(i % 2 + 1)]),
            queued_at: 100 + i as i64,
        };
        cat.queue_garbage(&row).await.unwrap();
        queued.push(row);
    }
    let got = cat.garbage(10).await.unwrap();
    assert_eq!(got.len(), 5);
    for pair in got.windows(2) {
        assert!(pair[0].id < pair[1].id, "garbage not in queue order");
    }
    for (g, q) in got.iter().zip(&queued) {
        assert_eq!(
            g,
            &GarbageRow {
                id: g.id,
                ..q.clone()
            }
        );
    }
    assert_eq!(cat.garbage(2).await.unwrap(), got[..2].to_vec());

    let n0 = ledger_len(cat).await;
    cat.finish_garbage(got[0].id, Some(entry("purge", Some("tok-0"), 500)))
        .await
        .unwrap();
    assert_eq!(cat.garbage(10).await.unwrap(), got[1..].to_vec());
    let entries = read_ledger(cat).await;
    assert_eq!(entries.len(), n0 + 1);
    assert_eq!(entries.last().unwrap().kind, "purge");

    cat.finish_garbage(got[1].id, None).await.unwrap();
    assert_eq!(cat.garbage(10).await.unwrap(), got[2..].to_vec());
    assert_eq!(ledger_len(cat).await, n0 + 1);

    let err = cat
        .finish_garbage(got[1].id, Some(entry("purge", Some("tok-1"), 600)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "finish twice: {err}");
    assert_eq!(
        ledger_len(cat).await,
        n0 + 1,
        "a refused purge was recorded"
    );

    // Ids are never reused, even after the newest row is finished.
    cat.finish_garbage(got[4].id, None).await.unwrap();
    cat.queue_garbage(&queued[0]).await.unwrap();
    let newest = cat.garbage(10).await.unwrap().last().unwrap().clone();
    assert!(newest.id > got[4].id, "garbage id reused");
    assert_chain(cat).await;
}

/// The ledger after many operations: paging, filtering, canonical bodies,
/// and one chain from genesis.
pub async fn ledger_chain(cat: &dyn Catalog) {
    let first = cat
        .append_ledger(LedgerAppend {
            kind: "demand".into(),
            subject: None,
            body: json!({ "z": 1, "a": { "y": 2, "b": [3, { "d": 4, "c": 5 }] } }),
            at: 42,
        })
        .await
        .unwrap();
    assert_eq!(first, 1);
    let e1 = cat.ledger_page(0, 1).await.unwrap().remove(0);
    assert_eq!(e1.seq, 1);
    assert_eq!(e1.prev_hash, GENESIS);
    assert_eq!(e1.body, r#"{"a":{"b":[3,{"c":5,"d":4}],"y":2},"z":1}"#);
    assert_eq!(
        (e1.kind.as_str(), e1.subject.as_deref(), e1.at),
        ("demand", None, 42)
    );
    assert_eq!(
        e1.hash,
        ledger::entry_hash(GENESIS, 1, 42, "demand", None, &e1.body)
    );

    // A mix of everything that appends.
    for i in 0..6 {
        let token = format!("tok-{i}");
        setup(cat, &token, "IN", &[("profile", &["r1"])]).await;
    }
    cat.add_subjects(&[subject("tok-x", "CN"), subject("tok-y", "CN")], 3_000)
        .await
        .unwrap();
    for i in 0..6 {
        let token = format!("tok-{i}");
        commit(
            cat,
            1,
            &object(&token, "profile", "a", &format!("blob-{i}"), 3),
        )
        .await;
        assert!(
            cat.begin_move(&token, "profile", 1, &strings(&["r2"]), 10_000, 1)
                .await
                .unwrap()
        );
        cat.commit_move(
            &fence(&token, "profile", 1),
            &strings(&["r2"]),
            "kms-b",
            b"k",
            entry("move", Some(&token), 4_000 + i),
        )
        .await
        .unwrap();
    }
    let mut seqs = Vec::new();
    for i in 0..20 {
        let subject = if i % 4 == 0 { Some("tok-0") } else { None };
        seqs.push(
            cat.append_ledger(entry("demand", subject, 5_000 + i))
                .await
                .unwrap(),
        );
    }
    let start = seqs[0];
    assert_eq!(
        seqs,
        (start..start + 20).collect::<Vec<i64>>(),
        "append_ledger seqs"
    );
    cat.set_home("tok-0", "SG", entry("rehome", Some("tok-0"), 6_000))
        .await
        .unwrap();
    cat.erase_subject("tok-5", entry("erasure", Some("tok-5"), 7_000))
        .await
        .unwrap();
    let g = all_garbage(cat).await;
    assert_eq!(g.len(), 1);
    cat.finish_garbage(g[0].id, Some(entry("purge", Some("tok-5"), 8_000)))
        .await
        .unwrap();

    let entries = assert_chain(cat).await;
    // 1 + 6 subjects × 2 + 2 bulk + 6 moves + 20 demands + rehome + erasure + purge
    assert_eq!(entries.len(), 1 + 12 + 2 + 6 + 20 + 3);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "seqs must be 1, 2, 3, …");
    }

    let page = cat.ledger_page(10, 5).await.unwrap();
    assert_eq!(page, entries[10..15].to_vec());
    let last = entries.last().unwrap().seq;
    assert!(cat.ledger_page(last, 10).await.unwrap().is_empty());

    let of_a = cat.ledger_of("tok-0").await.unwrap();
    // subject + placement + move + 5 demands + rehome
    assert_eq!(of_a.len(), 9);
    let filtered: Vec<LedgerEntry> = entries
        .iter()
        .filter(|e| e.subject.as_deref() == Some("tok-0"))
        .cloned()
        .collect();
    assert_eq!(
        of_a, filtered,
        "ledger_of must be the subject's entries, in order"
    );
    let kinds: Vec<String> = cat
        .ledger_of("tok-5")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        strings(&["subject", "placement", "move", "erasure", "purge"])
    );
    assert!(cat.ledger_of("tok-unknown").await.unwrap().is_empty());
}

/// setting and set_setting.
pub async fn settings(cat: &dyn Catalog) {
    assert_eq!(cat.setting("token-key-id").await.unwrap(), None);
    cat.set_setting("token-key-id", "v1").await.unwrap();
    assert_eq!(
        cat.setting("token-key-id").await.unwrap().as_deref(),
        Some("v1")
    );
    cat.set_setting("token-key-id", "v2").await.unwrap();
    assert_eq!(
        cat.setting("token-key-id").await.unwrap().as_deref(),
        Some("v2")
    );
    cat.set_setting("empty", "").await.unwrap();
    assert_eq!(cat.setting("empty").await.unwrap().as_deref(), Some(""));
    assert_eq!(cat.setting("other").await.unwrap(), None);
    // init_setting: the first value wins and is returned to every caller.
    assert_eq!(cat.init_setting("check", "first").await.unwrap(), "first");
    assert_eq!(cat.init_setting("check", "second").await.unwrap(), "first");
    assert_eq!(
        cat.setting("check").await.unwrap().as_deref(),
        Some("first")
    );
    assert_chain(cat).await;
}

/// Eight tasks appending to the ledger and committing objects at once leave
/// one unbroken chain, no lost entry and exact counters.
pub async fn concurrent_writers(cat: Arc<dyn Catalog>) {
    const TASKS: usize = 8;
    const ROUNDS: usize = 20;
    const NAMES: usize = 5;
    for t in 0..TASKS {
        setup(&*cat, &format!("tok-{t}"), "IN", &[("profile", &["r1"])]).await;
    }
    let n0 = ledger_len(&*cat).await;

    let mut handles = Vec::new();
    for t in 0..TASKS {
        let cat = cat.clone();
        handles.push(tokio::spawn(async move {
            let token = format!("tok-{t}");
            for i in 0..ROUNDS {
                let mut e = entry("demand", Some(&token), i as i64);
                e.body = json!({ "task": t, "round": i });
                cat.append_ledger(e).await.unwrap();
                let row = object(
                    &token,
                    "profile",
                    &format!("name-{}", i % NAMES),
                    &format!("blob-{t}-{i}"),
                    10,
                );
                let out = cat
                    .commit_object(&fence(&token, "profile", 1), &row)
                    .await
                    .unwrap();
                assert!(
                    matches!(out, CommitOutcome::Committed { version, .. } if version == (i / NAMES + 1) as i64),
                    "task {t} round {i}: {out:?}"
                );
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }

    let entries = assert_chain(&*cat).await;
    assert_eq!(
        entries.len(),
        n0 + TASKS * ROUNDS,
        "ledger entries were lost"
    );
    for t in 0..TASKS {
        let token = format!("tok-{t}");
        let rounds: Vec<serde_json::Value> = cat
            .ledger_of(&token)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "demand")
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["round"].clone())
            .collect();
        let expected: Vec<serde_json::Value> = (0..ROUNDS).map(|i| json!(i)).collect();
        assert_eq!(
            rounds, expected,
            "task {t}'s entries are missing or out of order"
        );
        let p = get_placement(&*cat, &token, "profile").await;
        assert_eq!((p.objects, p.bytes), (NAMES as i64, 10 * NAMES as i64));
        for o in cat.objects_of(&token, None).await.unwrap() {
            assert_eq!(o.version, (ROUNDS / NAMES) as i64);
        }
    }
    assert_eq!(all_garbage(&*cat).await.len(), TASKS * (ROUNDS - NAMES));
}
