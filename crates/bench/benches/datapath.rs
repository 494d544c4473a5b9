//! The engine's data path: put and get throughput of 4 KiB and 1 MiB objects
//! into one local region, with encryption on and off, side by side in one
//! run (alternating, on fresh folders).
//!
//! `cargo bench -p domicile-bench --bench datapath -- [ROUNDS]` (default 3).

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Result;
use domicile_bench::{loadavg, median, rounds_arg, write_configs};
use domicile_core::Config;
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::{Engine, EngineOptions, ObjectMeta, Secrets};
use futures::StreamExt;

const CONCURRENCY: usize = 8;
const SUBJECTS: usize = 64;

struct Run {
    put: Duration,
    get: Duration,
    ops: usize,
    bytes: u64,
}

async fn run(size: usize, ops: usize, encrypt: bool) -> Result<Run> {
    let dir = tempfile::Builder::new()
        .prefix("domicile-datapath-")
        .tempdir()?;
    let (v1, _) = write_configs(dir.path())?;
    let options = EngineOptions {
        encrypt,
        ..EngineOptions::default()
    };
    let engine = Engine::open_with(Config::load(&v1)?, Secrets::empty(), options).await?;
    let home = Jurisdiction::from_str("CN")?;
    let ids: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| SubjectId::from_str(&format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    let batch: Vec<_> = ids.iter().map(|i| (i.clone(), home)).collect();
    engine.add_subjects(&batch).await?;
    let cat = Category::from_str("media")?;
    let body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let keys: Vec<(SubjectId, ObjectKey)> = (0..ops)
        .map(|i| {
            Ok((
                ids[i % SUBJECTS].clone(),
                ObjectKey::from_str(&format!("obj-{i}"))?,
            ))
        })
        .collect::<Result<_>>()?;
    // Warm up: create every placement so the timed part is steady-state writes.
    for id in &ids {
        engine
            .put(
                id,
                &cat,
                &ObjectKey::from_str("warm")?,
                &ObjectMeta::default(),
                &b"x"[..],
            )
            .await?;
    }

    let t = Instant::now();
    let e = &engine;
    let mut puts = futures::stream::iter(keys.iter().map(|(id, k)| {
        let body = &body;
        let cat = &cat;
        async move {
            e.put(id, cat, k, &ObjectMeta::default(), body.as_slice())
                .await
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some(r) = puts.next().await {
        r?;
    }
    drop(puts);
    let put = t.elapsed();

    let t = Instant::now();
    let mut gets = futures::stream::iter(keys.iter().map(|(id, k)| async move {
        let (_, mut s) = e.get(id, k, None).await?;
        let mut n = 0usize;
        while let Some(c) = s.next().await {
            n += c?.len();
        }
        anyhow::ensure!(n == size, "short read");
        Ok::<_, anyhow::Error>(())
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some(r) = gets.next().await {
        r?;
    }
    drop(gets);
    let get = t.elapsed();
    Ok(Run {
        put,
        get,
        ops,
        bytes: (size * ops) as u64,
    })
}

fn main() -> Result<()> {
    let rounds = rounds_arg()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("| object | encryption | put ops/s | put MB/s | get ops/s | get MB/s | load |");
    println!("|---|---|---:|---:|---:|---:|---|");
    for (size, ops, label) in [(4 << 10, 4000, "4 KiB"), (1 << 20, 400, "1 MiB")] {
        let mut res: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, enc) in [true, false].into_iter().enumerate() {
                let r = rt.block_on(run(size, ops, enc))?;
                res[i].push((
                    r.ops as f64 / r.put.as_secs_f64(),
                    r.ops as f64 / r.get.as_secs_f64(),
                ));
                let _ = r.bytes;
            }
        }
        let mut medians = Vec::new();
        for (i, enc) in ["on", "off"].iter().enumerate() {
            let p = median(res[i].iter().map(|x| x.0).collect());
            let g = median(res[i].iter().map(|x| x.1).collect());
            medians.push((p, g));
            let mb = size as f64 / 1e6;
            println!(
                "| {label} | {enc} | {p:.0} | {:.1} | {g:.0} | {:.1} | {} |",
                p * mb,
                g * mb,
                loadavg()
            );
        }
        println!(
            "| {label} | on/off ratio | {:.2}× | | {:.2}× | | |",
            medians[0].0 / medians[1].0,
            medians[0].1 / medians[1].1
        );
    }
    Ok(())
}
