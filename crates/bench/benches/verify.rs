//! `verify` at scale: the merge of the index with a region's listing, in
//! bounded memory.
//!
//! `cargo bench -p domicile-bench --bench verify -- build DIR BLOBS [ROWS]`
//! builds the demo deployment with ROWS index rows (default BLOBS) over
//! subjects of four objects each, all placed in `cn-north`; the first BLOBS
//! have their blob (64 bytes) in that region's folder, the others none
//! (each is one `missing` problem, counted, not kept);
//! `... -- grow DIR BLOBS ROWS` adds index rows without blobs to a built
//! deployment of BLOBS blobs. Then
//! `... --bench verify -- measure DIR` runs `verify --quick` (sizes) and
//! `verify` (BLAKE3 of every copy) in this process and prints their times,
//! what they found, and the process's peak RSS (`VmHWM`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result};
use domicile_bench::{loadavg, peak_rss, write_configs};
use domicile_core::Config;
use domicile_engine::Engine;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// Objects per subject.
const PER_SUBJECT: u64 = 4;
/// Every blob's bytes.
const BLOB: &[u8; 64] = b"domicile verify bench: sixty-four bytes of one stored blob copy.";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("build") => {
            let dir = PathBuf::from(args.get(1).context("build DIR BLOBS [ROWS]")?);
            let blobs: u64 = args.get(2).context("build DIR BLOBS [ROWS]")?.parse()?;
            let rows: u64 = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(blobs);
            anyhow::ensure!(rows >= blobs, "ROWS must be at least BLOBS");
            let t0 = Instant::now();
            rt.block_on(build(&dir, blobs, rows))?;
            eprintln!(
                "fixture of {rows} index rows, {blobs} blobs built in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some("grow") => {
            // More index rows without blobs, for the same blobs: each new
            // row is one `missing`, counted and not kept.
            let dir = PathBuf::from(args.get(1).context("grow DIR BLOBS ROWS")?);
            let blobs: u64 = args.get(2).context("grow DIR BLOBS ROWS")?.parse()?;
            let rows: u64 = args.get(3).context("grow DIR BLOBS ROWS")?.parse()?;
            let t0 = Instant::now();
            rt.block_on(index_rows(&dir, blobs.div_ceil(PER_SUBJECT), rows))?;
            eprintln!(
                "index grown to {rows} rows in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some("measure") => rt.block_on(measure(args.get(1).context("measure DIR")?)),
        _ => anyhow::bail!("usage: build DIR BLOBS [ROWS] | measure DIR"),
    }
}

fn token(x: u64) -> String {
    format!("{:016x}{:016x}", x, x.wrapping_mul(2654435761) % 4294967296)
}

async fn build(dir: &Path, blobs: u64, rows: u64) -> Result<()> {
    let (v1, _) = write_configs(dir)?;
    // Opening the engine creates the schema, the keys and the region folders.
    drop(Engine::open(Config::load(&v1)?).await?);
    index_rows(dir, 0, rows).await?;
    // The blobs, written straight into the region's folder (no fsync: the
    // fixture is not what is measured), on both cores.
    let region = dir.join("data/regions/cn-north");
    let threads: u64 = 2;
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let region = region.clone();
                s.spawn(move || -> Result<()> {
                    // Subjects t, t + threads, …: each folder has one writer.
                    let mut x = t + 1;
                    while (x - 1) * PER_SUBJECT < blobs {
                        let tok = token(x);
                        let folder = region.join("v1").join(&tok[..2]).join(&tok).join("profile");
                        std::fs::create_dir_all(&folder)?;
                        for y in 0..PER_SUBJECT.min(blobs - (x - 1) * PER_SUBJECT) {
                            let mut f =
                                std::fs::File::create(folder.join(format!("{x:016x}{y:016x}")))?;
                            f.write_all(BLOB)?;
                        }
                        x += threads;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
        }
        Ok(())
    })?;
    Ok(())
}

/// Index rows (with their subjects and placements) for the subjects after
/// the first `skip`, up to `rows` rows in all.
async fn index_rows(dir: &Path, skip: u64, rows: u64) -> Result<()> {
    let subjects = rows.div_ceil(PER_SUBJECT);
    let db = dir.join("data/catalog.db");
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .pragma("synchronous", "OFF")
        .pragma("journal_mode", "WAL");
    let mut conn = opts.connect().await?;
    let series = format!(
        "WITH RECURSIVE c(x) AS (SELECT {} UNION ALL SELECT x + 1 FROM c WHERE x < {subjects}), \
         j(y) AS (SELECT 0 UNION ALL SELECT y + 1 FROM j WHERE y < {} )",
        skip + 1,
        PER_SUBJECT - 1
    );
    let home = "CASE WHEN x % 10 < 5 THEN 'IN' WHEN x % 10 < 8 THEN 'CN' ELSE 'TW' END";
    let token_sql = "printf('%016x%016x', x, x * 2654435761 % 4294967296)";
    let sum = blake3::hash(BLOB).to_hex().to_string();
    let size = BLOB.len();
    for sql in [
        format!(
            "{series} INSERT INTO subjects (token, home, created_at) SELECT {token_sql}, {home}, 0 FROM c"
        ),
        format!(
            "{series} INSERT INTO placements (token, category, home, regions, epoch, state, custodian, wrapped_key, objects, bytes, since) \
             SELECT {token_sql}, 'profile', {home}, 'cn-north', 1, '{{\"state\":\"active\"}}', 'operator-kms', x'00', {PER_SUBJECT}, {}, 0 FROM c",
            PER_SUBJECT * size as u64
        ),
        format!(
            "{series} INSERT INTO placement_regions (token, category, ordinal, region) \
             SELECT {token_sql}, 'profile', 0, 'cn-north' FROM c"
        ),
        format!(
            "{series} INSERT INTO objects (token, lookup, category, name_enc, meta_enc, version, size, stored_size, checksum, blob_id, modified_at) \
             SELECT {token_sql}, printf('%064x', x * {PER_SUBJECT} + y), 'profile', x'00', x'00', 1, {size}, {size}, '{sum}', \
                    printf('%016x%016x', x, y), 0 \
             FROM c, j WHERE (x - 1) * {PER_SUBJECT} + y < {rows}"
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    Ok(())
}

async fn measure(dir: &str) -> Result<()> {
    let dir = Path::new(dir);
    let engine = Engine::open(Config::load(&dir.join("domicile.toml"))?).await?;
    println!(
        "| check | regions | blobs scanned | index rows | copies checked | checksums | problems found (kept) | time | peak RSS | load |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for (label, checksums) in [("sizes (--quick)", false), ("BLAKE3", true)] {
        let t = Instant::now();
        let r = engine.verify(checksums).await?;
        let secs = t.elapsed().as_secs_f64();
        let kinds: Vec<String> = r
            .problems_by_kind
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} ({}){} | {secs:.1} s | {} MiB | {} |",
            r.regions,
            r.blobs_scanned,
            r.objects_indexed,
            r.copies_checked,
            r.checksums_verified,
            r.problems_found,
            r.problems.len(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!(": {}", kinds.join(", "))
            },
            peak_rss().unwrap_or(0) >> 20,
            loadavg()
        );
    }
    Ok(())
}
