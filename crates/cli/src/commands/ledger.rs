//! `ledger verify`, `show`, `checkpoint` and `checkpoints`.

use std::path::PathBuf;

use anyhow::Result;
use domicile_engine::Engine;
use domicile_engine::checkpoint::{Publish, read_checkpoints};
use serde_json::json;

use super::subject;
use crate::EXIT_VIOLATION;
use crate::cli::LedgerCmd;
use crate::output::{self, Format, Table, emit};

pub(super) async fn run(engine: &Engine, format: Format, cmd: LedgerCmd) -> Result<u8> {
    match cmd {
        LedgerCmd::Verify { checkpoints } => {
            let extra = match &checkpoints {
                Some(path) => read_checkpoints(path)?,
                None => Vec::new(),
            };
            let r = engine.verify_ledger_with(&extra).await?;
            let mut t = Table::new(&["entries", "head", "hash", "checkpoints", "result"]);
            t.row(vec![
                r.entries.to_string(),
                r.head_seq.to_string(),
                r.head_hash.clone(),
                r.checkpoints.to_string(),
                r.error.clone().unwrap_or_else(|| "ok".into()),
            ]);
            emit(format, &r, &t)?;
            if let Some(why) = &r.error {
                eprintln!("ledger verify: {why}");
            }
            Ok(if r.ok { 0 } else { EXIT_VIOLATION })
        }
        LedgerCmd::Checkpoint { publish } => checkpoint(engine, format, publish).await,
        LedgerCmd::Checkpoints => {
            let all = engine.ledger_checkpoints().await?;
            let mut t = Table::new(&["seq", "hash", "at", "key"]);
            for c in &all {
                t.row(vec![
                    c.seq.to_string(),
                    c.hash.clone(),
                    output::time(c.at),
                    c.key_id.clone(),
                ]);
            }
            emit(format, &json!({"checkpoints": all}), &t)?;
            Ok(0)
        }
        LedgerCmd::Show { subject: id, limit } => {
            let entries = match id {
                Some(id) => {
                    let id = subject(&id)?;
                    engine.subject_ledger(&id).await?
                }
                None => {
                    let mut all = Vec::new();
                    let mut after = 0;
                    loop {
                        let page = engine.ledger_page(after, 1000).await?;
                        let Some(last) = page.last() else { break };
                        after = last.seq;
                        all.extend(page);
                        if let Some(l) = limit
                            && all.len() > l * 4
                        {
                            all.drain(..all.len() - l);
                        }
                    }
                    all
                }
            };
            let skip = limit.map(|l| entries.len().saturating_sub(l)).unwrap_or(0);
            let entries = &entries[skip..];
            let mut t = Table::new(&["seq", "at", "kind", "actor", "subject", "body"]);
            for e in entries {
                t.row(vec![
                    e.seq.to_string(),
                    output::time(e.at),
                    e.kind.clone(),
                    e.actor.clone(),
                    e.subject.clone().unwrap_or_default(),
                    e.body.clone(),
                ]);
            }
            let json: Vec<_> = entries
                .iter()
                .map(|e| json!({"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "subject": e.subject,
                                "body": serde_json::from_str::<serde_json::Value>(&e.body).unwrap_or(json!(e.body)),
                                "prev_hash": e.prev_hash, "hash": e.hash}))
                .collect();
            emit(format, &json!({"entries": json}), &t)?;
            Ok(0)
        }
    }
}

/// `ledger checkpoint`: signs the head, stores it, publishes it if asked.
async fn checkpoint(engine: &Engine, format: Format, publish: Option<PathBuf>) -> Result<u8> {
    let c = engine.checkpoint_ledger().await?;
    Publish {
        file: publish,
        url: None,
    }
    .publish(&c)
    .await?;
    let mut t = Table::new(&["seq", "hash", "at", "key"]);
    t.row(vec![
        c.seq.to_string(),
        c.hash.clone(),
        output::time(c.at),
        c.key_id.clone(),
    ]);
    emit(format, &c, &t)?;
    Ok(0)
}
