//! Shared pieces of the benchmarks: fresh deployments from the demo configs,
//! synthetic catalogs at scale, fresh PostgreSQL databases, `domicile serve`
//! as a child process ([`serve`]), and measurement helpers.
//!
//! The benchmarks themselves are in `benches/` (`cargo bench -p domicile-bench`);
//! results and the commands that produced them are in `docs/benchmarks.md`.

pub mod serve;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

pub const V1: &str = include_str!("../../../examples/demo-v1.toml");
pub const V2: &str = include_str!("../../../examples/demo-v2.toml");

/// Writes the demo's two configs into `dir`; returns their paths.
pub fn write_configs(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let v1 = dir.join("domicile.toml");
    let v2 = dir.join("policy-v2.toml");
    std::fs::write(&v1, V1)?;
    std::fs::write(&v2, V2)?;
    Ok((v1, v2))
}

/// Fills an existing (schema-initialised) SQLite catalog with `n` synthetic
/// subjects, each with a `profile` placement in cn-north (and every third a
/// `payment` one), in bulk SQL: the fixture is not what is measured.
pub async fn synthetic_catalog(db: &Path, n: u64) -> Result<()> {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))?
        .pragma("synchronous", "OFF")
        .pragma("journal_mode", "WAL");
    let mut conn = opts.connect().await?;
    let series =
        format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})");
    let home = "CASE WHEN x % 10 < 5 THEN 'IN' WHEN x % 10 < 8 THEN 'CN' ELSE 'TW' END";
    // Tokens as a deployment has them: keyed hashes, so their leading hex
    // digits spread evenly (a multiplicative hash of x), unique by x.
    let token = "printf('%08x%024x', x * 2654435761 % 4294967296, x)";
    for sql in [
        format!(
            "{series} INSERT INTO subjects (token, home, created_at) SELECT {token}, {home}, 0 FROM c"
        ),
        format!(
            "{series} INSERT INTO placements (token, category, home, regions, epoch, state, custodian, wrapped_key, objects, bytes, since) \
             SELECT {token}, 'profile', {home}, 'cn-north', 1, '{{\"state\":\"active\"}}', 'operator-kms', x'00', 2, 40000, 0 FROM c"
        ),
        format!(
            "{series} INSERT INTO placement_regions (token, category, ordinal, region) \
             SELECT {token}, 'profile', 0, 'cn-north' FROM c"
        ),
        format!(
            "{series} INSERT INTO placements (token, category, home, regions, epoch, state, custodian, wrapped_key, objects, bytes, since) \
             SELECT {token}, 'payment', {home}, 'cn-north', 1, '{{\"state\":\"active\"}}', 'operator-kms', x'00', 1, 2000, 0 FROM c WHERE x % 3 = 0"
        ),
        format!(
            "{series} INSERT INTO placement_regions (token, category, ordinal, region) \
             SELECT {token}, 'payment', 0, 'cn-north' FROM c WHERE x % 3 = 0"
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

/// Peak resident memory of this process, in bytes (Linux `VmHWM`).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Load average over the last minute, to record with each run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The PostgreSQL server the benchmarks use: `DOMICILE_BENCH_POSTGRES`
/// (default `postgres://postgres@127.0.0.1:5432`), a role that may create
/// databases.
pub fn postgres_server() -> String {
    std::env::var("DOMICILE_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_string()
}

/// A fresh PostgreSQL database for one benchmark run, dropped on drop.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(tag: &str) -> Result<PgDatabase> {
        use sqlx::Connection;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let name = format!("domicile_bench_{}_{tag}_{nanos:x}", std::process::id());
        let admin = format!("{}/postgres", postgres_server());
        let mut conn = sqlx::postgres::PgConnection::connect(&admin)
            .await
            .map_err(|e| anyhow::anyhow!("PostgreSQL is unreachable at {admin}: {e}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        let url = format!("{}/{name}", postgres_server());
        Ok(PgDatabase { name, url })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its own thread and runtime: works inside or outside a runtime.
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let admin = format!("{}/postgres", postgres_server());
                let mut conn = sqlx::postgres::PgConnection::connect(&admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop benchmark database {}", self.name);
        }
    }
}

/// How many rounds to run: the first argument that is not a flag (`cargo
/// bench` passes `--bench`), 3 by default.
pub fn rounds_arg() -> Result<usize> {
    Ok(std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3))
}

/// The `p` percentile (0–1) of a non-empty list of durations, in ms.
pub fn percentile_ms(v: &[std::time::Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Median of a non-empty list.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
