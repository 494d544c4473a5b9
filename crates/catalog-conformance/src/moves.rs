//! Moving a placement: marks under leases, commits and aborts.

use domicile_catalog::{Catalog, Error, PlacementRow, PlacementState};

use crate::REPLACED_DUE;
use crate::{
    assert_chain, commit, entry, fence, fenced, get_placement, ledger_len, object, read_ledger,
    setup, strings,
};

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
            REPLACED_DUE,
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
