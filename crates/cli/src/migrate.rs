//! `domicile migrate`: apply, status, resume, pause, cancel.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use domicile_engine::{Engine, MigrateOptions, MigrationStatus};

use crate::BadInput;
use crate::cli::{MigrateCmd, RunArgs};
use crate::output::{self, Format, Table, bytes, emit};
use crate::progress::Progress;

fn options(run: &RunArgs) -> Result<MigrateOptions> {
    let secs = |v: f64, what: &str| {
        if v.is_finite() && (0.0..=86_400.0).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(BadInput(format!(
                "--{what} must be between 0 and 86400 seconds"
            )))
        }
    };
    if run.workers == 0 || run.workers > 256 {
        return Err(BadInput("--workers must be between 1 and 256".into()).into());
    }
    if run.batch == 0 || run.batch > 1024 {
        return Err(BadInput("--batch must be between 1 and 1024".into()).into());
    }
    let lease = secs(run.lease, "lease")?;
    if lease < Duration::from_millis(500) {
        return Err(BadInput("--lease must be at least 0.5 seconds".into()).into());
    }
    Ok(MigrateOptions {
        workers: run.workers,
        batch: run.batch,
        rate: run.rate,
        grace: secs(run.grace, "grace")?,
        lease,
        ..MigrateOptions::default()
    })
}

pub fn status_table(s: &MigrationStatus) -> Table {
    let mut t = Table::new(&[
        "job",
        "state",
        "done",
        "committed",
        "in flight",
        "pending",
        "failed",
        "cancelled",
        "moved",
        "of",
        "rate",
        "eta",
    ]);
    t.row(vec![
        s.job.to_string(),
        s.state.clone(),
        s.done.to_string(),
        s.committed.to_string(),
        s.in_flight.to_string(),
        s.pending.to_string(),
        s.failed.to_string(),
        s.cancelled.to_string(),
        bytes(s.bytes_moved as u64),
        bytes(s.bytes_total as u64),
        format!("{}/s", bytes(s.rate as u64)),
        s.eta_seconds
            .map(|e| format!("{e:.0} s"))
            .unwrap_or_else(|| "-".into()),
    ]);
    t
}

/// Runs the open job with a progress display; returns its final status.
pub async fn run(engine: &Engine, opts: &MigrateOptions) -> Result<MigrationStatus> {
    let start = engine.migration_status(None).await?;
    let total = (start.bytes_total - start.bytes_moved).max(0) as u64;
    let progress = Mutex::new(Progress::new("migrate", total));
    let tick = |t: domicile_engine::migrate::Tick| {
        if let Ok(mut p) = progress.lock() {
            p.inc(t.bytes);
        }
    };
    let status = engine.run_migration(opts, &tick).await?;
    if let Ok(p) = progress.into_inner() {
        p.finish();
    }
    Ok(status)
}

pub async fn command(engine: &Engine, format: Format, cmd: MigrateCmd) -> Result<u8> {
    let status = match cmd {
        MigrateCmd::Apply { run: args, no_run } => {
            let opts = options(&args)?;
            let created = match engine.apply_file_policy().await? {
                Some(applied) => {
                    eprintln!(
                        "applied the config's policy as version {} first",
                        applied.version
                    );
                    let (cancelled, created) = engine.migrate_to_active(&opts).await?;
                    if let Some(old) = cancelled {
                        eprintln!(
                            "cancelled migration job {old}, planned under the previous version"
                        );
                    }
                    created
                }
                None => engine.start_migration(&opts).await?,
            };
            if no_run && created.units > 0 {
                created
            } else {
                run(engine, &opts).await?
            }
        }
        MigrateCmd::Status => engine.migration_status(None).await?,
        MigrateCmd::Resume { run: args } => {
            let opts = options(&args)?;
            run(engine, &opts).await?
        }
        MigrateCmd::Pause => engine.pause_migration().await?,
        MigrateCmd::Cancel => {
            let s = engine.cancel_migration().await?;
            // Committed units still get their old copies purged.
            if s.committed > 0 {
                run(engine, &MigrateOptions::default()).await?
            } else {
                s
            }
        }
    };
    emit(format, &status, &status_table(&status))?;
    if format == Format::Table && status.finished_at.is_some() {
        println!(
            "finished at {}",
            output::time(status.finished_at.unwrap_or(0))
        );
    }
    Ok(if status.failed > 0 { 1 } else { 0 })
}
