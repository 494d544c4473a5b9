//! Subjects: registering, re-homing, erasing; and the settings table.

use domicile_catalog::{Catalog, Error};

use crate::REPLACED_DUE;
use crate::{
    all_garbage, assert_chain, commit, entry, fence, fenced, get_placement, ledger_len, object,
    read_ledger, setup, strings, subject,
};

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
    assert_eq!(
        cat.add_subjects(&batch, 30, "cli:conformance")
            .await
            .unwrap(),
        2
    );
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

    assert_eq!(
        cat.add_subjects(&[], 40, "cli:conformance").await.unwrap(),
        0
    );
    assert_eq!(
        cat.add_subjects(&batch, 40, "cli:conformance")
            .await
            .unwrap(),
        0
    );
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
            REPLACED_DUE,
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

/// subjects_page: token order, keyset paging, filters by home and by a
/// region of a placement.
pub async fn subjects_page(cat: &dyn Catalog) {
    setup(cat, "tok-d", "IN", &[("profile", &["r1", "r2"])]).await;
    setup(cat, "tok-a", "CN", &[("profile", &["r2"])]).await;
    setup(cat, "tok-c", "IN", &[]).await;
    setup(
        cat,
        "tok-b",
        "IN",
        &[("profile", &["r3"]), ("pay", &["r1"])],
    )
    .await;
    let tokens = |rows: Vec<domicile_catalog::SubjectRow>| -> Vec<String> {
        rows.into_iter().map(|s| s.token).collect()
    };
    let page = |after, limit, home, region| cat.subjects_page(after, limit, home, region);
    assert_eq!(
        tokens(page(None, 10, None, None).await.unwrap()),
        strings(&["tok-a", "tok-b", "tok-c", "tok-d"])
    );
    let first = page(None, 1, None, None).await.unwrap();
    assert_eq!(first, vec![subject("tok-a", "CN")], "whole rows");
    // Pages of two follow each other with no gap and no repeat.
    assert_eq!(
        tokens(page(None, 2, None, None).await.unwrap()),
        strings(&["tok-a", "tok-b"])
    );
    assert_eq!(
        tokens(page(Some("tok-b"), 2, None, None).await.unwrap()),
        strings(&["tok-c", "tok-d"])
    );
    assert!(page(Some("tok-d"), 2, None, None).await.unwrap().is_empty());
    assert_eq!(
        tokens(page(None, 10, Some("IN"), None).await.unwrap()),
        strings(&["tok-b", "tok-c", "tok-d"])
    );
    assert_eq!(
        tokens(page(Some("tok-b"), 10, Some("IN"), None).await.unwrap()),
        strings(&["tok-c", "tok-d"])
    );
    // A subject with two placements in the region is listed once.
    assert_eq!(
        tokens(page(None, 10, None, Some("r1")).await.unwrap()),
        strings(&["tok-b", "tok-d"])
    );
    assert_eq!(
        tokens(page(None, 10, Some("IN"), Some("r2")).await.unwrap()),
        strings(&["tok-d"])
    );
    assert!(page(None, 10, Some("US"), None).await.unwrap().is_empty());
    assert!(page(None, 10, None, Some("r9")).await.unwrap().is_empty());
}
