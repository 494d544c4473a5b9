//! The garbage queue: write intents, queued blobs and their removal.

use domicile_catalog::{Catalog, Error, GarbageRow};

use crate::{
    all_garbage, assert_chain, commit, entry, ledger_len, object, read_ledger, setup, strings,
};

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
