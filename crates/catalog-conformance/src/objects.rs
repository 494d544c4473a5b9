//! The object index: commits, deletes and listings, under epoch fences.

use domicile_catalog::{Catalog, CommitOutcome, Error, IndexEntry, ObjectRow};

use crate::REPLACED_DUE;
use crate::{
    all_garbage, assert_chain, commit, entry, fence, fenced, get_placement, ledger_len, object,
    placement, setup, strings,
};

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
            g[0].queued_at,
            g[0].next_try,
            g[0].attempts,
        ),
        (
            "tok-o",
            "profile",
            "blob-1",
            strings(&["r1", "r2"]),
            REPLACED_DUE,
            REPLACED_DUE,
            0
        ),
        "the replaced blob is due when the committer says (its grace period)"
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
        .commit_object(&fence("tok-o", "profile", 2), &a4, REPLACED_DUE)
        .await
        .unwrap();
    assert_eq!(out, fenced(Some(1), false));
    let out = cat
        .commit_object(&fence("tok-o", "profile", 0), &a4, REPLACED_DUE)
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
        .commit_object(&fence("tok-o", "media", 1), &m, REPLACED_DUE)
        .await
        .unwrap();
    assert_eq!(out, fenced(None, false));
    assert_eq!(cat.get_object("tok-o", "m").await.unwrap(), None);

    // A row that is not the fence's.
    let err = cat
        .commit_object(&fence("tok-o", "profile", 1), &m, REPLACED_DUE)
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
            REPLACED_DUE,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "shared blob: {err}");
    assert_eq!(cat.get_object("tok-o", "c").await.unwrap(), None);

    // A name lives in one category.
    cat.ensure_placement(
        &placement("tok-o", "media", &["r3"]),
        0,
        entry("placement", Some("tok-o"), 2_500),
    )
    .await
    .unwrap();
    let err = cat
        .commit_object(
            &fence("tok-o", "media", 1),
            &object("tok-o", "media", "a", "blob-5", 5),
            REPLACED_DUE,
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
        .commit_object(&fence("tok-o", "profile", 1), &a4, REPLACED_DUE)
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
        .delete_object(&fence("tok-d", "profile", 2), "x", REPLACED_DUE)
        .await
        .unwrap();
    assert_eq!(out, Some(fenced(Some(1), false)));
    assert!(cat.get_object("tok-d", "x").await.unwrap().is_some());

    let out = cat
        .delete_object(&fence("tok-d", "profile", 1), "x", 77_000)
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
    let last = g.iter().find(|r| r.blob_id == "blob-x2").unwrap();
    assert_eq!(
        (
            last.blob_id.as_str(),
            last.regions.clone(),
            last.category.as_str(),
            last.queued_at,
            last.next_try,
        ),
        ("blob-x2", strings(&["r1"]), "profile", 77_000, 77_000),
        "the deleted blob is due when the deleter says (its grace period)"
    );

    let f = fence("tok-d", "profile", 1);
    assert_eq!(
        cat.delete_object(&f, "x", REPLACED_DUE).await.unwrap(),
        None
    );
    assert_eq!(
        cat.delete_object(&f, "never", REPLACED_DUE).await.unwrap(),
        None
    );
    // Under another category's fence the name is not there.
    let out = cat
        .delete_object(&fence("tok-d", "media", 1), "y", REPLACED_DUE)
        .await
        .unwrap();
    assert_eq!(out, None);
    assert!(cat.get_object("tok-d", "y").await.unwrap().is_some());
    let out = cat
        .delete_object(&fence("tok-d", "payment", 1), "y", REPLACED_DUE)
        .await
        .unwrap();
    assert_eq!(out, Some(fenced(None, false)));

    assert!(
        cat.begin_move("tok-d", "profile", 1, &strings(&["r3"]), 9_000, 100)
            .await
            .unwrap()
    );
    assert_eq!(
        cat.delete_object(&f, "y", REPLACED_DUE).await.unwrap(),
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

    // verify's stream: the same order, each row with its placement.
    let placed = |t: &str, c: &str| match (t, c) {
        ("tok-1", "media") => ("IN".to_string(), vec!["r2".to_string()]),
        ("tok-1", _) => ("IN".to_string(), vec!["r1".to_string()]),
        _ => ("CN".to_string(), vec!["r1".to_string()]),
    };
    let index: Vec<IndexEntry> = expected
        .iter()
        .map(|o| IndexEntry {
            token: o.token.clone(),
            category: o.category.clone(),
            blob_id: o.blob_id.clone(),
            stored_size: o.stored_size,
            checksum: o.checksum.clone(),
            placement: Some(placed(&o.token, &o.category)),
        })
        .collect();
    for limit in [1_u32, 2, 6, 50] {
        let mut got: Vec<IndexEntry> = Vec::new();
        loop {
            let after = got.last().map(|o| (o.token.clone(), o.blob_id.clone()));
            let page = cat
                .index_page(after.as_ref().map(|(t, b)| (t.as_str(), b.as_str())), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit as usize);
            if page.is_empty() {
                break;
            }
            assert!(got.len() <= rows.len(), "index_page does not advance");
            got.extend(page);
        }
        assert_eq!(got, index, "index_page with limit {limit}");
    }
    let page = cat.index_page(Some(("tok-1", "blob-6")), 10).await.unwrap();
    let blobs: Vec<&str> = page.iter().map(|o| o.blob_id.as_str()).collect();
    assert_eq!(blobs, vec!["blob-9", "blob-0", "blob-3"]);
    assert!(cat.index_page(None, 0).await.unwrap().is_empty());
    assert_chain(cat).await;
}
