//! The garbage queue: write intents, queued blobs, their retries and
//! their removal.

use domicile_catalog::{Catalog, Error, GarbageRetry, GarbageRow};

use crate::{
    all_garbage, assert_chain, commit, entry, ledger_len, object, read_ledger, setup, strings,
};

/// A write's intent is a garbage row queued in the future: listed as
/// pending, not due before its time, and removed by the commit of its blob
/// (while other rows stay).
pub async fn write_intents(cat: &dyn Catalog) {
    setup(cat, "tok-w", "IN", &[("profile", &["r1"])]).await;
    let intent =
        |blob: &str, at: i64| GarbageRow::new("tok-w", "profile", blob, &strings(&["r1"]), at);
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
    assert_eq!(left, ["blob-old", "blob-b"], "by due time");
    // An intent dropped by its writer (nothing was stored).
    cat.finish_garbage(b, None).await.unwrap();
    assert_eq!(all_garbage(cat).await.len(), 1);
}

/// queue_garbage, garbage, finish_garbage.
pub async fn garbage(cat: &dyn Catalog) {
    assert!(cat.garbage(10).await.unwrap().is_empty());
    let mut queued = Vec::new();
    for i in 0..5 {
        let row = GarbageRow::new(
            &format!("tok-{i}"),
            "profile",
            &format!("blob-{i}"),
            &strings(&["r1", "r2"][..(i % 2 + 1)]),
            100 + i as i64,
        );
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
    let newest = cat.garbage(10).await.unwrap().iter().map(|g| g.id).max();
    assert!(newest.unwrap() > got[4].id, "garbage id reused");
    assert_chain(cat).await;
}

/// A row a collection pass could not finish is put off (`retry_garbage`):
/// it keeps only the regions its blob is still in, counts its failed
/// attempts, and is not due again before its next try, so the rows behind
/// it are taken first and a failing row never blocks a page; a row only
/// put off (its region backed off from) counts no attempt; a row finished
/// meanwhile is skipped; nothing is ledgered.
pub async fn garbage_retries(cat: &dyn Catalog) {
    let row = |blob: &str, regions: &[&str], due: i64| {
        GarbageRow::new("tok-r", "profile", blob, &strings(regions), due)
    };
    let a = cat
        .queue_garbage(&row("blob-a", &["r1", "r2"], 100))
        .await
        .unwrap();
    let b = cat
        .queue_garbage(&row("blob-b", &["r1"], 100))
        .await
        .unwrap();
    let c = cat
        .queue_garbage(&row("blob-c", &["r2"], 200))
        .await
        .unwrap();
    let n0 = ledger_len(cat).await;
    let due = |now: i64, limit: u32| async move {
        cat.due_garbage(limit, now)
            .await
            .unwrap()
            .into_iter()
            .map(|g| g.blob_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(due(1_000, 10).await, ["blob-a", "blob-b", "blob-c"]);
    let fresh = &cat.garbage(10).await.unwrap()[0];
    assert_eq!(
        (fresh.attempts, fresh.next_try),
        (0, 100),
        "a queued row starts untried"
    );

    // blob-a was deleted from r1, not from r2: it is put off with r2 alone.
    let failed = |id, regions: &[&str], next_try| GarbageRetry {
        id,
        regions: strings(regions),
        next_try,
        failed: true,
    };
    cat.retry_garbage(&[failed(a, &["r2"], 5_000)])
        .await
        .unwrap();
    assert_eq!(
        due(1_000, 10).await,
        ["blob-b", "blob-c"],
        "a failed row is not due again before its next try"
    );
    assert_eq!(
        due(1_000, 1).await,
        ["blob-b"],
        "a failed row does not stand at the head of the page"
    );
    let got = cat.garbage(10).await.unwrap();
    let got_a = got.iter().find(|g| g.id == a).unwrap();
    assert_eq!(
        (
            got_a.regions.clone(),
            got_a.attempts,
            got_a.next_try,
            got_a.queued_at
        ),
        (strings(&["r2"]), 1, 5_000, 100),
        "retried: its regions left, one attempt, its next try; still queued since 100"
    );

    // It fails again; blob-b is only put off (its region is backed off
    // from): no attempt counted.
    cat.retry_garbage(&[
        failed(a, &["r2"], 9_000),
        GarbageRetry {
            id: b,
            regions: strings(&["r1"]),
            next_try: 3_000,
            failed: false,
        },
    ])
    .await
    .unwrap();
    let got = cat.garbage(10).await.unwrap();
    let tries: Vec<(String, i64, i64)> = got
        .iter()
        .map(|g| (g.blob_id.clone(), g.attempts, g.next_try))
        .collect();
    assert_eq!(
        tries,
        [
            ("blob-c".to_string(), 0, 200),
            ("blob-b".to_string(), 0, 3_000),
            ("blob-a".to_string(), 2, 9_000),
        ],
        "rows by next try; attempts count failures only"
    );
    assert_eq!(due(2_999, 10).await, ["blob-c"]);
    assert_eq!(due(9_000, 10).await, ["blob-c", "blob-b", "blob-a"]);

    // A row finished meanwhile is skipped, and so is an empty retry.
    cat.finish_garbage(c, None).await.unwrap();
    cat.retry_garbage(&[failed(c, &["r2"], 1)]).await.unwrap();
    cat.retry_garbage(&[]).await.unwrap();
    assert_eq!(due(9_000, 10).await, ["blob-b", "blob-a"]);
    assert!(cat.garbage(10).await.unwrap().iter().all(|g| g.id != c));

    // Committing a blob still removes every row of it, retried or not.
    setup(cat, "tok-r", "IN", &[("profile", &["r1"])]).await;
    commit(cat, 1, &object("tok-r", "profile", "b", "blob-b", 10)).await;
    assert_eq!(due(9_000, 10).await, ["blob-a"]);
    assert_eq!(ledger_len(cat).await, n0 + 2, "only the setup's entries");
    assert_chain(cat).await;
}
