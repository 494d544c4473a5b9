//! Planning at scale: a policy change over N synthetic subjects, streamed
//! from the SQLite catalog through the planner.
//!
//! `cargo bench -p domicile-bench --bench plan -- [N ...]` (default 1000000).
//! Each N runs in a child process so its peak memory is its own:
//! the parent builds the catalog, the child opens the engine and plans.
//!
//! The two halves also run alone, so a large catalog can be built once and
//! measured later on a quiet machine:
//! `... --bench plan -- build DIR N`, then `... --bench plan -- measure DIR`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use domicile_bench::{loadavg, peak_rss, synthetic_catalog, write_configs};
use domicile_core::Config;
use domicile_engine::Engine;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("measure") {
        let dir = args.get(1).context("measure DIR")?;
        return rt.block_on(measure(dir));
    }
    if args.first().map(String::as_str) == Some("build") {
        let dir = std::path::PathBuf::from(args.get(1).context("build DIR N")?);
        let n: u64 = args.get(2).context("build DIR N")?.parse()?;
        let (v1, _) = write_configs(&dir)?;
        let t0 = Instant::now();
        rt.block_on(async {
            drop(Engine::open(Config::load(&v1)?).await?);
            synthetic_catalog(&dir.join("data/catalog.db"), n).await
        })?;
        eprintln!(
            "fixture of {n} subjects built in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let sizes: Vec<u64> = if args.is_empty() {
        vec![1_000_000]
    } else {
        args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?
    };
    println!(
        "| subjects | placements | catalog scan | plan time | plan, every move built | placements/s | moves | peak RSS | load |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for n in sizes {
        let dir = tempfile::Builder::new()
            .prefix("domicile-plan-bench-")
            .tempdir_in(std::env::temp_dir())?;
        let (v1, _) = write_configs(dir.path())?;
        let t0 = Instant::now();
        rt.block_on(async {
            // Opening the engine creates the schema and the token key.
            drop(Engine::open(Config::load(&v1)?).await?);
            synthetic_catalog(&dir.path().join("data/catalog.db"), n).await
        })?;
        eprintln!(
            "fixture of {n} subjects built in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let out = Command::new(std::env::current_exe()?)
            .args(["measure", &dir.path().display().to_string()])
            .output()?;
        if !out.status.success() {
            anyhow::bail!("measure failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let line = String::from_utf8_lossy(&out.stdout);
        println!("| {n} {}", line.trim());
    }
    Ok(())
}

async fn measure(dir: &str) -> Result<()> {
    let dir = std::path::Path::new(dir);
    let v1 = Config::load(&dir.join("domicile.toml"))?;
    let v2 = Config::load(&dir.join("policy-v2.toml"))?;
    let engine = Engine::open(v1).await?;
    // The catalog scan alone, one page after another on one connection, to
    // tell reading from planning.
    let t = Instant::now();
    let mut rows = 0u64;
    engine
        .for_each_placement(|_| {
            rows += 1;
            Ok(())
        })
        .await?;
    let scan = t.elapsed().as_secs_f64();
    // The plan as `plan` prints it: every total, the first 20 moves.
    let t = Instant::now();
    let mut listed = 0u64;
    let summary = engine.plan_first(&v2, 20, |_| listed += 1).await?;
    let secs = t.elapsed().as_secs_f64();
    // The plan with every move built and handed over (what a migration's
    // planning or `plan --format json` takes).
    let t = Instant::now();
    let mut moves = 0u64;
    let all = engine.plan(&v2, |_| moves += 1).await?;
    let every = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        all == summary && moves == summary.totals.units && listed == moves.min(20),
        "the two plans differ"
    );
    println!(
        "| {} | {:.2} s | {:.2} s | {:.2} s | {:.0} | {} | {} MiB | {} |",
        summary.placements_seen,
        scan,
        secs,
        every,
        summary.placements_seen as f64 / secs,
        moves,
        peak_rss().unwrap_or(0) >> 20,
        loadavg()
    );
    Ok(())
}
