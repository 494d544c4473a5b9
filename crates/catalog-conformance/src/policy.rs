//! Policy versions: applying, re-applying, reading back; and the fence that
//! refuses a change decided under a version that is no longer active.

use domicile_catalog::{
    Catalog, CommitOutcome, Error, Fence, LedgerAppend, MoveMark, PolicyApplied, PolicyVersionRow,
    UnitMove, UnitOutcome, UnitRelease,
};
use serde_json::json;

use crate::REPLACED_DUE;
use crate::{assert_chain, entry, fence, get_placement, object, placement, setup, strings};

fn version(digest: &str, actor: &str, at: i64) -> PolicyVersionRow {
    PolicyVersionRow {
        version: 0,
        applied_at: at,
        actor: actor.into(),
        digest: digest.into(),
        text: format!("# policy {digest}\n[[rule]]\nname = \"{digest}\"\n"),
    }
}

fn apply_entry(actor: &str, at: i64) -> LedgerAppend {
    LedgerAppend {
        kind: "policy".into(),
        subject: None,
        body: json!({ "actor": actor }),
        at,
        actor: "cli:conformance".into(),
    }
}

/// Versions count up from 1, the active one is the last applied, and
/// applying the active policy again changes nothing and appends nothing.
pub async fn policy_versions(cat: &dyn Catalog) {
    assert_eq!(cat.policy_version().await.unwrap(), 0);
    assert_eq!(cat.policy(None).await.unwrap(), None);
    assert!(cat.policy_history().await.unwrap().is_empty());

    // On an empty catalog, a first-version-only apply makes version 1.
    let first = cat
        .apply_policy(
            &PolicyVersionRow {
                version: 1,
                ..version("d1", "alice", 10)
            },
            apply_entry("alice", 10),
        )
        .await
        .unwrap();
    assert_eq!(
        first,
        PolicyApplied {
            version: 1,
            created: true
        }
    );
    let ledger_after_first = assert_chain(cat).await.len();
    assert_eq!(ledger_after_first, 1, "an apply appends one entry");

    let again = cat
        .apply_policy(&version("d1", "bob", 20), apply_entry("bob", 20))
        .await
        .unwrap();
    assert_eq!(
        again,
        PolicyApplied {
            version: 1,
            created: false
        },
        "the active policy applied again changes nothing"
    );
    assert_eq!(assert_chain(cat).await.len(), ledger_after_first);

    let second = cat
        .apply_policy(&version("d2", "bob", 30), apply_entry("bob", 30))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert!(second.created);
    // A rollback is the apply of an older policy: a new version.
    let third = cat
        .apply_policy(&version("d1", "carol", 40), apply_entry("carol", 40))
        .await
        .unwrap();
    assert_eq!(third.version, 3);

    // Asking for the first version only, once versions exist, changes
    // nothing and appends nothing, whatever the digest.
    let ledger_before_first_only = assert_chain(cat).await.len();
    let first_only = cat
        .apply_policy(
            &PolicyVersionRow {
                version: 1,
                ..version("d9", "dave", 50)
            },
            apply_entry("dave", 50),
        )
        .await
        .unwrap();
    assert_eq!(
        first_only,
        PolicyApplied {
            version: 3,
            created: false
        },
        "a first-version-only apply on a catalog with versions changes nothing"
    );
    assert_eq!(assert_chain(cat).await.len(), ledger_before_first_only);

    assert_eq!(cat.policy_version().await.unwrap(), 3);
    let active = cat.policy(None).await.unwrap().unwrap();
    assert_eq!((active.version, active.actor.as_str()), (3, "carol"));
    let v2 = cat.policy(Some(2)).await.unwrap().unwrap();
    assert_eq!(
        v2,
        PolicyVersionRow {
            version: 2,
            ..version("d2", "bob", 30)
        }
    );
    assert_eq!(cat.policy(Some(9)).await.unwrap(), None);
    let history: Vec<(i64, String, String)> = cat
        .policy_history()
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version, v.actor, v.digest))
        .collect();
    assert_eq!(
        history,
        vec![
            (1, "alice".into(), "d1".into()),
            (2, "bob".into(), "d2".into()),
            (3, "carol".into(), "d1".into()),
        ]
    );
    let kinds: Vec<String> = assert_chain(cat)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["policy", "policy", "policy"]);
}

/// Commits, deletes, move commits and new placements decided under a
/// version that is no longer active are refused and change nothing; under the active one they
/// go through.
pub async fn policy_fence(cat: &dyn Catalog) {
    setup(
        cat,
        "tok-p",
        "IN",
        &[("profile", &["r1"]), ("media", &["r1"])],
    )
    .await;
    let under = |policy: i64, category: &str, epoch: i64| Fence {
        policy,
        ..fence("tok-p", category, epoch)
    };
    // No version yet: version 0 is the active one.
    let row = object("tok-p", "profile", "a", "blob-a", 10);
    assert!(matches!(
        cat.commit_object(&under(0, "profile", 1), &row, REPLACED_DUE)
            .await
            .unwrap(),
        CommitOutcome::Committed { .. }
    ));
    cat.apply_policy(&version("d1", "alice", 10), apply_entry("alice", 10))
        .await
        .unwrap();

    // Decided under version 0, committed after version 1: refused.
    let stale = object("tok-p", "profile", "b", "blob-b", 20);
    assert_eq!(
        cat.commit_object(&under(0, "profile", 1), &stale, REPLACED_DUE)
            .await
            .unwrap(),
        CommitOutcome::PolicyChanged { active: 1 }
    );
    assert_eq!(cat.get_object("tok-p", "b").await.unwrap(), None);
    assert_eq!(get_placement(cat, "tok-p", "profile").await.objects, 1);
    assert_eq!(
        cat.delete_object(&under(0, "profile", 1), "a", REPLACED_DUE)
            .await
            .unwrap(),
        Some(CommitOutcome::PolicyChanged { active: 1 })
    );
    assert!(cat.get_object("tok-p", "a").await.unwrap().is_some());
    // The fence of the placement itself still comes first.
    assert!(matches!(
        cat.commit_object(&under(1, "profile", 7), &stale, REPLACED_DUE)
            .await
            .unwrap(),
        CommitOutcome::Fenced { .. }
    ));
    // Under the active version: committed.
    assert!(matches!(
        cat.commit_object(&under(1, "profile", 1), &stale, REPLACED_DUE)
            .await
            .unwrap(),
        CommitOutcome::Committed { .. }
    ));

    // A move decided under version 0 does not commit once 1 is active, on
    // its own or in a batch (where the others still commit).
    let mark = |category: &str| MoveMark {
        token: "tok-p".into(),
        category: category.into(),
        epoch: 1,
        to: strings(&["r2"]),
    };
    let marked = cat
        .begin_moves(&[mark("profile"), mark("media")], 1_000, 500)
        .await
        .unwrap();
    assert_eq!(marked, vec![true, true]);
    let err = cat
        .commit_move(
            &under(0, "profile", 1),
            &strings(&["r2"]),
            "kms-a",
            b"key",
            entry("move", Some("tok-p"), 600),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PolicyChanged { active: 1 }),
        "a stale move commit: {err:?}"
    );
    assert!(err.is_fenced());
    let release = UnitRelease {
        job: 1,
        owner: "w".into(),
        outcome: UnitOutcome::Done,
        now: 600,
    };
    let unit_move = |policy: i64, category: &str| UnitMove {
        rekeyed: Vec::new(),
        garbage: Vec::new(),
        fence: under(policy, category, 1),
        regions: strings(&["r2"]),
        custodian: "kms-a".into(),
        wrapped_key: b"key".to_vec(),
        ledger: entry("move", Some("tok-p"), 600),
        release: release.clone(),
    };
    let done = cat
        .commit_unit_moves(&[unit_move(0, "profile"), unit_move(1, "media")])
        .await
        .unwrap();
    assert!(matches!(done[0], Err(Error::PolicyChanged { active: 1 })));
    assert!(
        done[1].is_ok(),
        "the move under the active version: {:?}",
        done[1]
    );
    let profile = get_placement(cat, "tok-p", "profile").await;
    assert_eq!((profile.epoch, profile.regions), (1, strings(&["r1"])));
    assert_eq!(get_placement(cat, "tok-p", "media").await.epoch, 2);

    // A new placement decided under version 0 is not created once 1 is
    // active, and appends nothing; under the active version it is.
    let entries = assert_chain(cat).await.len();
    let err = cat
        .ensure_placement(
            &placement("tok-p", "payment", &["r3"]),
            0,
            entry("placement", Some("tok-p"), 700),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PolicyChanged { active: 1 }),
        "a stale placement: {err:?}"
    );
    assert_eq!(cat.get_placement("tok-p", "payment").await.unwrap(), None);
    assert_eq!(assert_chain(cat).await.len(), entries);
    let created = cat
        .ensure_placement(
            &placement("tok-p", "payment", &["r3"]),
            1,
            entry("placement", Some("tok-p"), 710),
        )
        .await
        .unwrap();
    assert_eq!(created.regions, strings(&["r3"]));
    assert_chain(cat).await;
}
