//! Migration jobs: one open at a time, claims under leases, claim order.

use std::sync::Arc;

use domicile_catalog::{
    Catalog, Error, JobState, JobWaiting, RunRow, UnitOutcome, UnitRow, UnitState,
};

use crate::{job_row, strings, unit};

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

    // Measured runs: kept as recorded, the last finished first.
    assert!(cat.runs(10).await.unwrap().is_empty());
    let run = |job: i64, owner: &str, started_at: i64, finished_at: i64, units: i64| RunRow {
        job,
        owner: owner.into(),
        started_at,
        finished_at,
        units,
        bytes: units * 1000,
    };
    cat.record_run(&run(id, "p1", 100, 900, 5)).await.unwrap();
    cat.record_run(&run(next, "p1", 1000, 3000, 7))
        .await
        .unwrap();
    cat.record_run(&run(next, "p2", 1000, 2000, 2))
        .await
        .unwrap();
    // The same run again changes nothing.
    cat.record_run(&run(id, "p1", 100, 5000, 99)).await.unwrap();
    assert_eq!(
        cat.runs(10).await.unwrap(),
        vec![
            run(next, "p1", 1000, 3000, 7),
            run(next, "p2", 1000, 2000, 2),
            run(id, "p1", 100, 900, 5)
        ]
    );
    assert_eq!(
        cat.runs(1).await.unwrap(),
        vec![run(next, "p1", 1000, 3000, 7)]
    );
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
