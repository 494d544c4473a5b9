//! `domicile catalog migrate-to URL`: moves a deployment's catalog (for
//! example the embedded SQLite one) into another backend (PostgreSQL), row
//! for row, then verifies the copy. The config is not rewritten: the
//! operator changes its `[catalog] url` line once the copy is verified.

use std::path::Path;

use anyhow::{Context, Result};
use domicile_catalog::copy::CopyReport;
use domicile_catalog::raw::RawTable;
use domicile_engine::Engine;
use serde_json::json;

use crate::BadInput;
use crate::cli::CatalogCmd;
use crate::config_file::load;
use crate::output::{Format, Table, emit};

pub async fn run(config: &Path, format: Format, cmd: CatalogCmd) -> Result<u8> {
    match cmd {
        CatalogCmd::MigrateTo { url } => migrate_to(config, format, &url).await,
    }
}

async fn migrate_to(config_path: &Path, format: Format, url: &str) -> Result<u8> {
    let config = load(config_path)?;
    let from_url = config.catalog_url.clone();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(BadInput(format!(
            "catalog migrate-to: {url:?} is not a postgres:// or postgresql:// URL"
        ))
        .into());
    }
    if from_url == url {
        return Err(BadInput("the target is the catalog this config already uses".into()).into());
    }
    let shown = domicile_catalog::postgres::redact(url);
    let engine = Engine::open(config).await?;
    let target = domicile_catalog::open(url)
        .await
        .with_context(|| format!("opening the target catalog {shown}"))?;
    // Refused before anything is written, the token key included.
    for table in RawTable::ALL {
        let rows = target.raw_count(table).await?;
        if rows != 0 {
            return Err(BadInput(format!(
                "the target catalog {shown} is not empty (table {} has {rows} rows); \
                 migrate-to only fills a fresh database",
                table.name()
            ))
            .into());
        }
    }
    let key_file = engine.carry_token_key_to(url)?;
    if let Some(p) = engine.carry_ledger_key_to(url)? {
        eprintln!(
            "the ledger signing key is copied to {} for the new catalog",
            p.display()
        );
    }
    let report = match engine
        .copy_catalog_to(target.as_ref(), |table, n| {
            tracing::info!(table = table.name(), rows = n, "copied");
        })
        .await
    {
        Ok(r) => r,
        Err(domicile_engine::Error::Catalog(domicile_catalog::Error::NotEmpty { table, rows })) => {
            return Err(BadInput(format!(
                "the target catalog {shown} is not empty (table {table} has {rows} rows)"
            ))
            .into());
        }
        Err(e) => return Err(e).context("copying the catalog"),
    };
    print_report(format, &report, &shown, key_file.as_deref(), config_path)?;
    Ok(0)
}

fn print_report(
    format: Format,
    r: &CopyReport,
    shown: &str,
    key_file: Option<&Path>,
    config_path: &Path,
) -> Result<()> {
    let mut t = Table::new(&["table", "source", "target"]);
    for c in &r.tables {
        t.row(vec![
            c.table.to_string(),
            c.source.to_string(),
            c.target.to_string(),
        ]);
    }
    let line = format!("url = \"{shown}\"");
    emit(
        format,
        &json!({
            "target": shown,
            "tables": r.tables.iter().map(|c| json!({"table": c.table, "source": c.source, "target": c.target})).collect::<Vec<_>>(),
            "ledger": {"entries": r.ledger_entries, "head": r.ledger_head.0, "hash": r.ledger_head.1, "verified": true},
            "token_key_file": key_file.map(|p| p.display().to_string()),
            "config_line": line,
        }),
        &t,
    )?;
    if matches!(format, Format::Table) {
        println!(
            "ledger: {} entries verified in the target, head {} {}",
            r.ledger_entries, r.ledger_head.0, r.ledger_head.1
        );
        if let Some(p) = key_file {
            println!("subject-token key copied to {}", p.display());
        }
        println!(
            "the catalog is copied; to use it, change the [catalog] section of {} to:\n  {line}",
            config_path.display()
        );
    }
    Ok(())
}
