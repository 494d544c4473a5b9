//! End-to-end S3 PUT throughput with one `domicile serve` against two on
//! one shared PostgreSQL catalog (the same deployment folder, so the same
//! regions and keyrings), and the embedded SQLite catalog with one server
//! for reference. The client (`object_store`'s S3 client) keeps 16 PUTs in
//! flight, spread round-robin over the servers; fresh folders and databases
//! every round, the set-ups alternating.
//!
//! ```sh
//! cargo build --release -p domicile-cli
//! cargo bench -p domicile-bench --bench s3_servers -- [ROUNDS]
//! ```
//!
//! PostgreSQL is `DOMICILE_BENCH_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use domicile_bench::serve::{SUBJECTS, deployment, s3_client, serve};
use domicile_bench::{PgDatabase, loadavg, median, percentile_ms, rounds_arg};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const IN_FLIGHT: usize = 16;
const SETUPS: [&str; 3] = [
    "1 server, SQLite catalog",
    "1 server, PostgreSQL catalog",
    "2 servers, one PostgreSQL catalog",
];

struct Measured {
    ops: f64,
    lat: Vec<Duration>,
}

async fn puts(stores: &[Arc<dyn ObjectStore>], size: usize, ops: usize) -> Result<Measured> {
    let body = bytes::Bytes::from((0..size).map(|i| (i * 131 % 251) as u8).collect::<Vec<_>>());
    let t = Instant::now();
    let lat: Vec<Duration> = futures::stream::iter((0..ops).map(|i| {
        let store = stores[i % stores.len()].clone();
        let body = body.clone();
        async move {
            let key = ObjPath::from(format!("users/s{}/obj-{i}", i % SUBJECTS));
            let t = Instant::now();
            store.put(&key, PutPayload::from(body)).await?;
            Ok::<_, anyhow::Error>(t.elapsed())
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let ops = ops as f64 / t.elapsed().as_secs_f64();
    Ok(Measured { ops, lat })
}

/// One set-up on fresh folders (and a fresh database): PUT rate.
fn run(rt: &tokio::runtime::Runtime, setup: usize, size: usize, ops: usize) -> Result<Measured> {
    let dir = tempfile::Builder::new()
        .prefix("domicile-s3-servers-")
        .tempdir()?;
    let db = if setup == 0 {
        None
    } else {
        Some(rt.block_on(PgDatabase::create("s3"))?)
    };
    let config = deployment(dir.path(), db.as_ref().map(|d| d.url.as_str()))?;
    let servers = (0..if setup == 2 { 2 } else { 1 })
        .map(|_| serve(&config))
        .collect::<Result<Vec<_>>>()?;
    let stores = servers
        .iter()
        .map(|s| s3_client(&s.endpoint))
        .collect::<Result<Vec<_>>>()?;
    // Warm up: every subject's placement exists before the timed part.
    rt.block_on(puts(&stores, 16, SUBJECTS * 2))?;
    let m = rt.block_on(puts(&stores, size, ops))?;
    drop(servers);
    drop(db);
    Ok(m)
}

fn main() -> Result<()> {
    let rounds = rounds_arg()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("| object | set-up | PUT ops/s | PUT MB/s | PUT p50 ms | PUT p99 ms |");
    println!("|---|---|---:|---:|---:|---:|");
    for (size, ops, label) in [(4usize << 10, 3000usize, "4 KiB"), (1 << 20, 300, "1 MiB")] {
        let mut runs: [Vec<Measured>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for r in 0..rounds {
            for k in 0..SETUPS.len() {
                let setup = (k + r) % SETUPS.len();
                runs[setup].push(run(&rt, setup, size, ops)?);
            }
        }
        let mut rate = Vec::new();
        for (i, name) in SETUPS.iter().enumerate() {
            let ops = median(runs[i].iter().map(|m| m.ops).collect());
            let lat: Vec<Duration> = runs[i].iter().flat_map(|m| m.lat.clone()).collect();
            println!(
                "| {label} | {name} | {ops:.0} | {:.1} | {:.2} | {:.2} |",
                ops * size as f64 / 1e6,
                percentile_ms(&lat, 0.5),
                percentile_ms(&lat, 0.99)
            );
            rate.push(ops);
        }
        println!(
            "| {label} | 2 servers ÷ 1 server (PostgreSQL) | {:.2}× | | | |",
            rate[2] / rate[1]
        );
    }
    println!(
        "\n{rounds} rounds, {IN_FLIGHT} PUTs in flight; medians. load {}",
        loadavg()
    );
    Ok(())
}
