//! `policy apply`, `show`, `history` and `diff` of applied versions: the
//! policy as catalog state, through the engine.

use std::path::Path;

use anyhow::Result;
use domicile_core::Config;
use domicile_core::diff::policy_diff;
use domicile_engine::{Engine, MigrateOptions, PolicyVersion};
use serde_json::json;

use super::policy::changes_table;
use crate::BadInput;
use crate::cli::PolicyCmd;
use crate::config_file::load;
use crate::output::{self, Format, Table, emit};

/// A policy command that needs the catalog.
#[derive(Debug)]
pub(super) enum VersionCmd {
    Apply {
        file: std::path::PathBuf,
        no_migrate: bool,
        wait: bool,
    },
    Show,
    History,
    Diff {
        old: i64,
        new: Option<i64>,
    },
}

/// Which policy commands run through the engine: apply, show, history, and
/// a diff whose arguments are version numbers (not files). The others come
/// back as they were.
pub(super) fn route(cmd: PolicyCmd) -> Result<VersionCmd, PolicyCmd> {
    let version = |s: &str| {
        if Path::new(s).exists() {
            None
        } else {
            s.parse::<i64>().ok()
        }
    };
    match cmd {
        PolicyCmd::Apply {
            file,
            no_migrate,
            wait,
        } => Ok(VersionCmd::Apply {
            file,
            no_migrate,
            wait,
        }),
        PolicyCmd::Show => Ok(VersionCmd::Show),
        PolicyCmd::History => Ok(VersionCmd::History),
        PolicyCmd::Diff { old, new } => {
            let versions = (version(&old), new.as_deref().map(version));
            match versions {
                (Some(old), None) => Ok(VersionCmd::Diff { old, new: None }),
                (Some(old), Some(Some(new))) => Ok(VersionCmd::Diff {
                    old,
                    new: Some(new),
                }),
                _ => Err(PolicyCmd::Diff { old, new }),
            }
        }
        other => Err(other),
    }
}

pub(super) async fn run(engine: &Engine, format: Format, cmd: VersionCmd) -> Result<u8> {
    match cmd {
        VersionCmd::Apply {
            file,
            no_migrate,
            wait,
        } => apply(engine, format, &file, no_migrate, wait).await,
        VersionCmd::Show => show(engine, format).await,
        VersionCmd::History => history(engine, format).await,
        VersionCmd::Diff { old, new } => diff(engine, format, old, new).await,
    }
}

/// `policy apply FILE`: the next version, and the job it needs.
async fn apply(
    engine: &Engine,
    format: Format,
    file: &Path,
    no_migrate: bool,
    wait: bool,
) -> Result<u8> {
    let policy = load(file)?;
    let applied = engine.apply_policy(&policy).await?;
    let mut job = None;
    if applied.created && !no_migrate {
        let opts = MigrateOptions::default();
        let (cancelled, started) = engine.migrate_to_active(&opts).await?;
        if let Some(old) = cancelled {
            eprintln!("cancelled migration job {old}, planned under the previous version");
        }
        job = Some(started.job);
        if wait {
            crate::migrate::run(engine, &opts).await?;
        }
    }
    let active = engine
        .active_policy()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no active policy after an apply"))?;
    let mut t = Table::new(&["version", "digest", "job", "result"]);
    t.row(vec![
        active.version.to_string(),
        active.digest.clone(),
        job.map(|j| j.to_string()).unwrap_or_else(|| "-".into()),
        if applied.created {
            "applied".into()
        } else {
            "already active: nothing changed".into()
        },
    ]);
    emit(
        format,
        &json!({"version": applied.version, "digest": active.digest, "job": job,
                "created": applied.created}),
        &t,
    )?;
    Ok(0)
}

fn versions_table(versions: &[PolicyVersion]) -> Table {
    let mut t = Table::new(&["version", "applied at", "actor", "digest"]);
    for v in versions {
        t.row(vec![
            v.version.to_string(),
            output::time(v.applied_at),
            v.actor.clone(),
            v.digest.clone(),
        ]);
    }
    t
}

/// `policy show`: the active version (0 before any apply: every process
/// then acts on its own config file).
async fn show(engine: &Engine, format: Format) -> Result<u8> {
    match engine.active_policy().await? {
        Some(v) => emit(format, &v, &versions_table(std::slice::from_ref(&v)))?,
        None => {
            let mut t = Table::new(&["version", "result"]);
            t.row(vec![
                "0".into(),
                "no policy applied yet: each process acts on its config file".into(),
            ]);
            emit(
                format,
                &json!({"version": 0, "applied_at": null, "actor": null, "digest": null}),
                &t,
            )?;
        }
    }
    Ok(0)
}

/// `policy history`: every applied version, oldest first.
async fn history(engine: &Engine, format: Format) -> Result<u8> {
    let versions = engine.policy_history().await?;
    emit(
        format,
        &json!({"versions": versions}),
        &versions_table(&versions),
    )?;
    Ok(0)
}

/// `policy diff OLD [NEW]` of applied versions (NEW: the active one).
async fn diff(engine: &Engine, format: Format, old: i64, new: Option<i64>) -> Result<u8> {
    let new = match new {
        Some(v) => v,
        None => engine.active_policy().await?.map_or(0, |v| v.version),
    };
    let a = version_config(engine, old).await?;
    let b = version_config(engine, new).await?;
    let changes = policy_diff(&a, &b);
    emit(
        format,
        &json!({"from": old, "to": new, "changes": changes}),
        &changes_table(&changes),
    )?;
    Ok(0)
}

/// The config an applied version was applied from.
async fn version_config(engine: &Engine, version: i64) -> Result<Config> {
    let v = engine
        .policy_at(version)
        .await?
        .ok_or_else(|| BadInput(format!("no policy version {version}")))?;
    let label = format!("policy version {version}");
    Ok(Config::parse(
        &label,
        &v.text,
        &engine.file_config().base_dir,
    )?)
}
