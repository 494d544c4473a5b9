//! A worker's turn: unit releases riding in the change that ends it,
//! and batches of units in one call.

use domicile_catalog::ledger::ChainVerifier;
use domicile_catalog::{
    Catalog, CommitOutcome, Error, Fence, GarbageRow, JobState, MoveMark, RekeyedObject, UnitMove,
    UnitOutcome, UnitReceipt, UnitRelease, UnitRow, UnitState,
};

use crate::REPLACED_DUE;
use crate::{
    all_garbage, entry, fence, get_placement, job_row, object, placement, strings, subject, unit,
};

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
        policy: 0,
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
        rekeyed: Vec::new(),
        garbage: Vec::new(),
        fence: Fence {
            token: t.into(),
            category: "media".into(),
            epoch,
            policy: 0,
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
    // The committed moves' regions are what a search by region finds.
    let in_region = |r: &'static str| async move {
        let page = cat.subjects_page(None, 10, None, Some(r)).await.unwrap();
        page.into_iter().map(|s| s.token).collect::<Vec<_>>()
    };
    assert_eq!(
        in_region("r2").await,
        vec!["t1".to_string(), "t3".to_string()]
    );
    assert_eq!(in_region("r1").await, vec!["t2".to_string()]);

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

/// Subjects homed in IN, each with a `media` placement in r1 at epoch 1.
async fn subjects_with_media_in_r1(cat: &dyn Catalog, tokens: &[&str]) {
    for &t in tokens {
        cat.add_subject(&subject(t, "IN"), entry("subject", Some(t), 1))
            .await
            .unwrap();
        cat.ensure_placement(
            &placement(t, "media", &["r1"]),
            0,
            entry("placement", Some(t), 2),
        )
        .await
        .unwrap();
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

/// A re-keyed move: refused (writing nothing) unless it names every object
/// of its unit at the blob each replaces; committed, the index rows take
/// their new blobs, the new blobs' intents go, and the old blobs left in a
/// kept region are queued.
pub async fn rekeyed_moves(cat: &dyn Catalog) {
    subjects_with_media_in_r1(cat, &["t1"]).await;
    for (lookup, blob) in [("a", "old-a"), ("b", "old-b")] {
        let outcome = cat
            .commit_object(
                &fence("t1", "media", 1),
                &object("t1", "media", lookup, blob, 10),
                REPLACED_DUE,
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, CommitOutcome::Committed { .. }),
            "{outcome:?}"
        );
    }
    let mark = MoveMark {
        token: "t1".into(),
        category: "media".into(),
        epoch: 1,
        to: strings(&["r1", "r2"]),
    };
    assert_eq!(
        cat.begin_moves(&[mark], 10_000, 3).await.unwrap(),
        vec![true]
    );
    // The new blobs' write intents, as a mover records them first.
    let intents: Vec<GarbageRow> = ["new-a", "new-b"]
        .iter()
        .map(|blob| GarbageRow::new("t1", "media", blob, &strings(&["r1", "r2"]), 1_000_000))
        .collect();
    cat.queue_garbage_rows(&intents).await.unwrap();
    assert_eq!(all_garbage(cat).await.len(), 2);
    let id = running_job_claimed_by_w1(cat, &["t1"]).await;
    let rekeyed = |lookup: &str, replaces: &str, blob: &str| RekeyedObject {
        lookup: lookup.into(),
        replaces: replaces.into(),
        blob_id: blob.into(),
        checksum: format!("sum-{blob}"),
        stored_size: 11,
        name_enc: format!("new-enc({lookup})").into_bytes(),
        meta_enc: b"new-meta".to_vec(),
    };
    let commit = |objects: Vec<RekeyedObject>| UnitMove {
        fence: Fence {
            token: "t1".into(),
            category: "media".into(),
            epoch: 1,
            policy: 0,
        },
        regions: strings(&["r1", "r2"]),
        custodian: "kms-b".into(),
        wrapped_key: b"new-key".to_vec(),
        ledger: entry("move", Some("t1"), 6),
        release: UnitRelease {
            job: id,
            owner: "w1".into(),
            outcome: UnitOutcome::Committed {
                purge_after: 700,
                moved_bytes: 22,
            },
            now: 6,
        },
        rekeyed: objects,
        garbage: ["old-a", "old-b"]
            .iter()
            .map(|b| GarbageRow::new("t1", "media", b, &strings(&["r1"]), 700))
            .collect(),
    };
    let before = cat.ledger_page(0, 1_000).await.unwrap().len();
    // One object left out, or one at a blob it no longer has: refused, and
    // nothing of the move is written.
    for objects in [
        vec![rekeyed("a", "old-a", "new-a")],
        vec![
            rekeyed("a", "old-a", "new-a"),
            rekeyed("b", "other", "new-b"),
        ],
    ] {
        let results = cat.commit_unit_moves(&[commit(objects)]).await.unwrap();
        assert!(
            matches!(&results[0], Err(Error::Conflict { .. })),
            "{:?}",
            results[0]
        );
        let p = get_placement(cat, "t1", "media").await;
        assert_eq!((p.epoch, p.custodian.as_str()), (1, "kms-a"));
        assert!(!p.state.is_active());
        assert_eq!(
            cat.get_object("t1", "a").await.unwrap().unwrap().blob_id,
            "old-a"
        );
        assert_eq!(cat.ledger_page(0, 1_000).await.unwrap().len(), before);
        assert_eq!(all_garbage(cat).await.len(), 2, "only the two intents");
    }
    // Every object, each at its blob: committed.
    let results = cat
        .commit_unit_moves(&[commit(vec![
            rekeyed("a", "old-a", "new-a"),
            rekeyed("b", "old-b", "new-b"),
        ])])
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Ok((p, true)) if p.epoch == 2),
        "{:?}",
        results[0]
    );
    let p = get_placement(cat, "t1", "media").await;
    assert_eq!(
        (p.custodian.as_str(), p.wrapped_key.as_slice()),
        ("kms-b", b"new-key".as_slice())
    );
    for (lookup, blob) in [("a", "new-a"), ("b", "new-b")] {
        let o = cat.get_object("t1", lookup).await.unwrap().unwrap();
        assert_eq!(
            (o.blob_id.as_str(), o.checksum, o.stored_size, o.name_enc),
            (
                blob,
                format!("sum-{blob}"),
                11,
                format!("new-enc({lookup})").into_bytes()
            )
        );
        assert_eq!((o.size, o.version), (9, 1), "size and version stay");
    }
    let queued: Vec<(String, Vec<String>)> = all_garbage(cat)
        .await
        .into_iter()
        .map(|g| (g.blob_id, g.regions))
        .collect();
    assert_eq!(
        queued,
        vec![
            ("old-a".to_string(), strings(&["r1"])),
            ("old-b".to_string(), strings(&["r1"]))
        ],
        "the intents went, the old blobs were queued"
    );
    assert_eq!(cat.ledger_page(0, 1_000).await.unwrap().len(), before + 1);
}
