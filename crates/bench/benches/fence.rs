//! What the policy fence costs a PUT, measured apart from the PUT's noise.
//!
//! The fence adds one scalar read of `policy_head` to the statement that a
//! commit already runs to lock its placement row (`check_fence`). Timed
//! here, on the same catalog, alternating in blocks: that statement with the
//! read and without it, on the embedded SQLite catalog and on PostgreSQL.
//! Beside it, in the same run, the engine's own PUT of 4 KiB (encrypted, one
//! in flight, on SQLite) is timed. The fence's share of a PUT is the
//! statement's added time over the PUT's time; the printed ratio is
//! (PUT + added) / PUT, against the target of 1.05.
//!
//! ```sh
//! cargo bench -p domicile-bench --bench fence -- [ROUNDS] [STATEMENTS] [PUTS]
//! ```
//!
//! PostgreSQL is `DOMICILE_BENCH_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`).

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Result;
use domicile_bench::{PgDatabase, loadavg, median, write_configs};
use domicile_core::Config;
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::{Engine, EngineOptions, ObjectMeta, Secrets};

/// The commit's placement statement, as `check_fence` runs it, with the
/// fence's read of the policy version.
const FENCED: &str = "SELECT epoch, state, (SELECT version FROM policy_head WHERE id = 1) \
                      FROM placements WHERE token = $1 AND category = $2";
/// The same statement without the fence.
const UNFENCED: &str = "SELECT epoch, state FROM placements WHERE token = $1 AND category = $2";

/// Statements timed per block, before switching to the other form.
const BLOCK: usize = 500;

/// Mean time of one statement of each form, alternating in blocks.
async fn statements<DB>(pool: &sqlx::Pool<DB>, token: &str, n: usize) -> Result<(f64, f64)>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut conn = pool.acquire().await?;
    let mut spent = [Duration::ZERO, Duration::ZERO];
    let mut done = [0usize, 0usize];
    let mut which = 0;
    while done[0] < n || done[1] < n {
        let sql = if which == 0 { FENCED } else { UNFENCED };
        let started = Instant::now();
        for _ in 0..BLOCK {
            let row = sqlx::query(sql)
                .bind(token)
                .bind("media")
                .fetch_optional(&mut *conn)
                .await?;
            anyhow::ensure!(row.is_some(), "the benchmark's placement is missing");
        }
        spent[which] += started.elapsed();
        done[which] += BLOCK;
        which = 1 - which;
    }
    Ok((
        spent[0].as_secs_f64() * 1e6 / done[0] as f64,
        spent[1].as_secs_f64() * 1e6 / done[1] as f64,
    ))
}

/// A deployment with one subject and its `media` placement, on the
/// embedded catalog or on `catalog` (a PostgreSQL URL); returns the engine,
/// the subject and its token.
async fn deployment(
    dir: &std::path::Path,
    catalog: Option<&str>,
) -> Result<(Engine, SubjectId, String)> {
    let (v1, _) = write_configs(dir)?;
    if let Some(url) = catalog {
        let text = std::fs::read_to_string(&v1)?.replace("sqlite://data/catalog.db", url);
        std::fs::write(&v1, text)?;
    }
    let engine = Engine::open_with(
        Config::load(&v1)?,
        Secrets::empty(),
        EngineOptions::default(),
    )
    .await?;
    let id = SubjectId::from_str("bench-fence")?;
    engine
        .add_subjects(&[(id.clone(), Jurisdiction::from_str("CN")?)])
        .await?;
    put(&engine, &id, "warm", 4096).await?;
    let token = engine.tokens().subject(&id);
    Ok((engine, id, token))
}

async fn put(engine: &Engine, id: &SubjectId, name: &str, size: usize) -> Result<()> {
    let body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    engine
        .put(
            id,
            &Category::from_str("media")?,
            &ObjectKey::from_str(name)?,
            &ObjectMeta::default(),
            &mut body.as_slice(),
        )
        .await?;
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let puts: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut sqlite, mut pg, mut put_us) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for round in 0..rounds {
            // SQLite: the engine's own catalog file.
            let dir = tempfile::Builder::new()
                .prefix("domicile-fence-")
                .tempdir()?;
            let (engine, id, token) = deployment(dir.path(), None).await?;
            let file = dir.path().join("data/catalog.db");
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&format!("sqlite://{}?mode=ro", file.display()))
                .await?;
            sqlite.push(statements(&pool, &token, n).await?);
            pool.close().await;
            let started = Instant::now();
            for i in 0..puts {
                put(&engine, &id, &format!("obj-{round}-{i}"), 4096).await?;
            }
            put_us.push(started.elapsed().as_secs_f64() * 1e6 / puts as f64);
            drop(engine);

            // PostgreSQL: a catalog made by the engine on a fresh database.
            let db = PgDatabase::create("fence").await?;
            let pgdir = tempfile::Builder::new()
                .prefix("domicile-fence-pg-")
                .tempdir()?;
            let (engine, _, token) = deployment(pgdir.path(), Some(&db.url)).await?;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&db.url)
                .await?;
            pg.push(statements(&pool, &token, n).await?);
            pool.close().await;
            drop(engine);
            println!("round {round} done, load {}", loadavg());
        }
        Ok::<_, anyhow::Error>(())
    })?;

    let put = median(put_us);
    println!(
        "\n{rounds} rounds, {n} statements of each form per backend per round, {puts} puts per round; load {}",
        loadavg()
    );
    println!(
        "\n| catalog | statement with the fence, µs | without, µs | added, µs | PUT 4 KiB, µs | (PUT + added) / PUT |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, runs) in [("SQLite", &sqlite), ("PostgreSQL", &pg)] {
        let fenced = median(runs.iter().map(|r| r.0).collect());
        let unfenced = median(runs.iter().map(|r| r.1).collect());
        let added = fenced - unfenced;
        println!(
            "| {name} | {fenced:.1} | {unfenced:.1} | {added:.1} | {put:.0} | {:.3}× |",
            (put + added) / put
        );
    }
    println!("\ntarget: (PUT + added) / PUT ≤ 1.05");
    Ok(())
}
