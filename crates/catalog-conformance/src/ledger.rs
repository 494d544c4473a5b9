//! The ledger: one chain from genesis, under concurrent writers too; its
//! head, and the checkpoints stored of it.

use std::sync::Arc;

use domicile_catalog::ledger::{self, GENESIS};
use domicile_catalog::{Catalog, CheckpointRow, CommitOutcome, LedgerAppend, LedgerEntry};
use serde_json::json;

use crate::REPLACED_DUE;
use crate::{
    all_garbage, assert_chain, commit, entry, fence, get_placement, ledger_len, object, setup,
    strings, subject,
};

/// The ledger after many operations: paging, filtering, canonical bodies,
/// and one chain from genesis.
pub async fn ledger_chain(cat: &dyn Catalog) {
    let first = cat
        .append_ledger(LedgerAppend {
            kind: "demand".into(),
            subject: None,
            body: json!({ "z": 1, "a": { "y": 2, "b": [3, { "d": 4, "c": 5 }] } }),
            at: 42,
            actor: "token:dpo".into(),
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
    assert_eq!(e1.actor, "token:dpo");
    assert_eq!(e1.hash, ledger::entry_hash(GENESIS, e1.hashed()));
    // An entry must say who caused it: one without an actor is refused,
    // and appends nothing.
    for actor in ["", "  "] {
        let refused = cat
            .append_ledger(LedgerAppend {
                actor: actor.into(),
                ..entry("demand", None, 43)
            })
            .await;
        assert!(
            matches!(refused, Err(domicile_catalog::Error::Invalid { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(ledger_len(cat).await, 1);

    // A mix of everything that appends.
    for i in 0..6 {
        let token = format!("tok-{i}");
        setup(cat, &token, "IN", &[("profile", &["r1"])]).await;
    }
    cat.add_subjects(
        &[subject("tok-x", "CN"), subject("tok-y", "CN")],
        3_000,
        "cli:conformance",
    )
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
                    .commit_object(&fence(&token, "profile", 1), &row, REPLACED_DUE)
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

/// The ledger's head, and checkpoints of it: stored verbatim, listed by seq
/// then key, one per (seq, key) (a second of the same is not stored and
/// changes nothing).
pub async fn ledger_checkpoints(cat: &dyn Catalog) {
    assert_eq!(cat.ledger_head().await.unwrap(), (0, GENESIS.to_string()));
    assert!(cat.checkpoints().await.unwrap().is_empty());
    let checkpoint = |seq: i64, hash: &str, key: &str, at: i64| CheckpointRow {
        seq,
        hash: hash.into(),
        at,
        key_id: key.into(),
        public_key: format!("pk-{key}"),
        signature: format!("sig-{seq}-{key}-{at}"),
    };
    let genesis = checkpoint(0, GENESIS, "k1", 5);
    assert!(cat.add_checkpoint(&genesis).await.unwrap());
    for at in 1..=3 {
        cat.append_ledger(entry("demand", None, at)).await.unwrap();
    }
    let entries = assert_chain(cat).await;
    let last = entries.last().unwrap();
    assert_eq!(
        cat.ledger_head().await.unwrap(),
        (3, last.hash.clone()),
        "the head is the last entry's seq and hash"
    );
    let at3_k2 = checkpoint(3, &last.hash, "k2", 9);
    let at3_k1 = checkpoint(3, &last.hash, "k1", 8);
    let at1 = checkpoint(1, &entries[0].hash, "k1", 7);
    assert!(cat.add_checkpoint(&at3_k2).await.unwrap());
    assert!(cat.add_checkpoint(&at3_k1).await.unwrap());
    assert!(cat.add_checkpoint(&at1).await.unwrap());
    // The same head and key again: the first stays.
    let again = CheckpointRow {
        at: 99,
        signature: "other".into(),
        ..at3_k1.clone()
    };
    assert!(!cat.add_checkpoint(&again).await.unwrap());
    assert_eq!(
        cat.checkpoints().await.unwrap(),
        vec![genesis, at1, at3_k1, at3_k2],
        "by seq, then key; verbatim"
    );
    // Checkpoints are no ledger entries.
    assert_eq!(ledger_len(cat).await, 3);
    assert_chain(cat).await;
}
