//! Catalog operations per second, the embedded SQLite catalog against the
//! shared PostgreSQL one, through the `Catalog` trait exactly as the engine
//! and the migration workers call it:
//!
//! - **put commit**: `commit_object` under a fence (one transaction: fence
//!   check, index upsert, the placement's counters);
//! - **placement lookup**: `get_placement`;
//! - **unit claim**: a worker's turn at the queue: `claim_units` of one
//!   unit under a lease, then `finish_unit` recording it committed (so the
//!   queue holds what a running job's does: claimed units leave it);
//! - **job counts**: `job_counts` of that job (a status report), and **job
//!   waiting**: `job_waiting` of it (what an idle worker asks), each called
//!   200 times: the first reads every unit of the job, the second does not.
//!
//! Each with 1 and with 8 calls in flight, on fresh catalogs every round,
//! the backends alternating round by round; medians of the rounds.
//!
//! ```sh
//! cargo bench -p domicile-bench --bench catalog -- [ROUNDS] [OPS]
//! ```
//!
//! PostgreSQL is `DOMICILE_BENCH_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`); each round gets its own database,
//! dropped at the end.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use domicile_bench::{PgDatabase, loadavg, median};
use domicile_catalog::{
    Catalog, Fence, JobRow, JobState, LedgerAppend, ObjectRow, PlacementRow, PlacementState,
    SubjectRow, UnitOutcome, UnitRow, UnitState,
};
use futures::StreamExt;

const SUBJECTS: usize = 256;
const CATEGORY: &str = "profile";

/// The operations measured, in table order.
const OPS: [&str; 5] = [
    "put commit",
    "placement lookup",
    "unit claim + finish",
    "job counts (status)",
    "job waiting (idle worker)",
];
/// Calls of each of the two job reads, on the job of the claim measure
/// (as many units as calls of the other measures).
const PROBES: usize = 200;
const IN_FLIGHT: [usize; 2] = [1, 8];

fn token(i: usize) -> String {
    format!("{:064x}", (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15)
}

async fn fixture(cat: &dyn Catalog) -> Result<()> {
    let subjects: Vec<SubjectRow> = (0..SUBJECTS)
        .map(|i| SubjectRow {
            token: token(i),
            home: "CN".into(),
            created_at: 1,
            id_enc: None,
        })
        .collect();
    cat.add_subjects(&subjects, 1, "cli:bench").await?;
    for i in 0..SUBJECTS {
        cat.ensure_placement(
            &PlacementRow {
                token: token(i),
                category: CATEGORY.into(),
                regions: vec!["cn-north".into()],
                epoch: 1,
                state: PlacementState::Active,
                custodian: "operator-kms".into(),
                wrapped_key: vec![7; 60],
                objects: 0,
                bytes: 0,
                since: 1,
            },
            0,
            LedgerAppend {
                kind: "placement".into(),
                subject: Some(token(i)),
                body: serde_json::json!({"category": CATEGORY, "regions": ["cn-north"]}),
                at: 1,
                actor: "cli:bench".into(),
            },
        )
        .await?;
    }
    Ok(())
}

/// Runs `n` calls of `op(i)` with `in_flight` at once; returns ops/s.
async fn rate<F, Fut>(n: usize, in_flight: usize, op: F) -> Result<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let t = Instant::now();
    let mut s = futures::stream::iter((0..n).map(&op)).buffer_unordered(in_flight);
    while let Some(r) = s.next().await {
        r?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// One round on one fresh catalog: ops/s of each operation at each
/// concurrency, in `OPS` × `IN_FLIGHT` order.
async fn round(cat: Arc<dyn Catalog>, n: usize, seq: &mut usize) -> Result<Vec<f64>> {
    fixture(cat.as_ref()).await?;
    let mut out = Vec::new();
    for in_flight in IN_FLIGHT {
        // put commit
        let base = *seq;
        *seq += n;
        let c = cat.clone();
        out.push(
            rate(n, in_flight, |i| {
                let c = c.clone();
                async move {
                    let k = base + i;
                    let t = token(k % SUBJECTS);
                    let fence = Fence {
                        token: t.clone(),
                        category: CATEGORY.into(),
                        epoch: 1,
                        policy: 0,
                    };
                    let row = ObjectRow {
                        token: t,
                        category: CATEGORY.into(),
                        lookup: format!("{k:064x}"),
                        name_enc: vec![1; 48],
                        meta_enc: vec![2; 40],
                        version: 0,
                        size: 4096,
                        stored_size: 4150,
                        checksum: format!("{:064x}", k * 31),
                        blob_id: format!("{k:032x}"),
                        modified_at: 2,
                    };
                    match c.commit_object(&fence, &row, 2).await? {
                        domicile_catalog::CommitOutcome::Committed { .. } => Ok(()),
                        other => anyhow::bail!("put commit fenced: {other:?}"),
                    }
                }
            })
            .await?,
        );
        // placement lookup
        let c = cat.clone();
        out.push(
            rate(n, in_flight, |i| {
                let c = c.clone();
                async move {
                    c.get_placement(&token(i % SUBJECTS), CATEGORY)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("placement missing"))?;
                    Ok(())
                }
            })
            .await?,
        );
        // unit claim: a running job with n units, claimed one at a time
        let job = cat
            .create_job(&JobRow {
                id: 0,
                state: JobState::Planning,
                created_at: 3,
                finished_at: None,
                policy: format!("bench-{in_flight}"),
                rate: 0,
                grace_ms: 0,
                units: 0,
                bytes: 0,
            })
            .await?;
        let units: Vec<UnitRow> = (0..n)
            .map(|i| UnitRow {
                job,
                token: token(i % SUBJECTS),
                category: format!("c{}", i / SUBJECTS),
                priority: (i % 2) as i64,
                from: vec!["cn-north".into()],
                to: vec!["aws-ap-southeast-1".into()],
                custodian_from: "operator-kms".into(),
                custodian_to: "operator-kms".into(),
                objects: 3,
                bytes: 12_000,
                state: UnitState::Pending,
                attempts: 0,
                lease_owner: None,
                lease_until: 0,
                purge_after: 0,
                moved_bytes: 0,
                error: None,
                updated_at: 3,
            })
            .collect();
        for chunk in units.chunks(1000) {
            cat.add_units(job, chunk).await?;
        }
        cat.set_job_state(job, JobState::Running, 4).await?;
        let c = cat.clone();
        out.push(
            rate(n, in_flight, |i| {
                let c = c.clone();
                async move {
                    let owner = format!("w{i}");
                    let got = c.claim_units(job, &owner, 1, 1_000_000, 5).await?;
                    anyhow::ensure!(got.len() == 1, "claimed {} units, not 1", got.len());
                    let u = &got[0];
                    let outcome = UnitOutcome::Committed {
                        purge_after: i64::MAX / 2,
                        moved_bytes: u.bytes,
                    };
                    anyhow::ensure!(
                        c.finish_unit(job, &u.token, &u.category, &owner, &outcome, 6)
                            .await?,
                        "lost the lease"
                    );
                    Ok(())
                }
            })
            .await?,
        );
        // A status read (one pass over the job's units) against an idle
        // worker's question (two index probes), on the job just claimed.
        let c = cat.clone();
        out.push(
            rate(PROBES, in_flight, |_| {
                let c = c.clone();
                async move {
                    let counts = c.job_counts(job, 7).await?;
                    anyhow::ensure!(counts.committed == n as i64, "{counts:?}");
                    Ok(())
                }
            })
            .await?,
        );
        let c = cat.clone();
        out.push(
            rate(PROBES, in_flight, |_| {
                let c = c.clone();
                async move {
                    let w = c.job_waiting(job).await?;
                    anyhow::ensure!(w.purges && !w.moves, "{w:?}");
                    Ok(())
                }
            })
            .await?,
        );
        cat.set_job_state(job, JobState::Done, 6).await?;
    }
    Ok(out)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // [sqlite, postgres] × rounds × (OPS × IN_FLIGHT)
    let mut results: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
    let mut seq = 0;
    for r in 0..rounds {
        // Alternate which backend goes first, round by round.
        for b in [r % 2, (r + 1) % 2] {
            let got = rt.block_on(async {
                if b == 0 {
                    let dir = tempfile::Builder::new()
                        .prefix("domicile-catalog-bench-")
                        .tempdir()?;
                    let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
                    let cat = domicile_catalog::open(&url).await?;
                    round(cat, n, &mut seq).await
                } else {
                    let db = PgDatabase::create("catalog").await?;
                    let cat = domicile_catalog::open(&db.url).await?;
                    let out = round(cat.clone(), n, &mut seq).await;
                    drop(cat);
                    out
                }
            })?;
            results[b].push(got);
        }
    }
    println!("| operation | in flight | SQLite ops/s | PostgreSQL ops/s | PostgreSQL ÷ SQLite |");
    println!("|---|---:|---:|---:|---:|");
    let mut col = 0;
    for in_flight in IN_FLIGHT {
        for op in OPS {
            let s = median(results[0].iter().map(|r| r[col]).collect());
            let p = median(results[1].iter().map(|r| r[col]).collect());
            println!("| {op} | {in_flight} | {s:.0} | {p:.0} | {:.2}× |", p / s);
            col += 1;
        }
    }
    println!(
        "\n{rounds} rounds of {n} calls each; medians. load {}",
        loadavg()
    );
    Ok(())
}
