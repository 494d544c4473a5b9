//! `evidence export`: a signed bundle of what the deployment can prove;
//! `evidence verify`: its check, offline, with nothing but the file
//! (docs/evidence.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use domicile_core::exposure::ASSUMPTION;
use domicile_core::presets::NOT_LEGAL_ADVICE;
use domicile_engine::Engine;
use domicile_engine::evidence::{self, EXPOSURE, RESIDENCY};
use serde_json::json;

use super::subject;
use crate::cli::EvidenceCmd;
use crate::output::{self, Format, Table, emit};
use crate::render::{citations_json, cited_by_rows};
use crate::{BadInput, EXIT_VIOLATION};

pub(super) async fn run(engine: &Engine, format: Format, cmd: EvidenceCmd) -> Result<u8> {
    match cmd {
        EvidenceCmd::Export {
            subject: id,
            output: path,
        } => {
            let id = id.as_deref().map(subject).transpose()?;
            let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v);
            let mut documents = BTreeMap::new();
            // The reports as `report residency` and `report exposure` give them in JSON.
            let rows = engine.residency().await?;
            documents.insert(RESIDENCY.to_string(), pretty(&json!({"rows": rows}))?);
            let present = engine.present().await?;
            let cited = cited_by_rows(&present.exposure_before);
            documents.insert(
                EXPOSURE.to_string(),
                pretty(&json!({"rows": present.exposure_before, "assumption": ASSUMPTION,
                               "grounds": citations_json(&cited), "legal_notice": NOT_LEGAL_ADVICE}))?,
            );
            let bytes = engine.export_evidence(id.as_ref(), documents).await?;
            let checked = evidence::verify(&bytes, None).map_err(anyhow::Error::msg)?;
            std::fs::write(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            print(format, &checked, Some(&path))?;
            Ok(0)
        }
        EvidenceCmd::Verify { file, key } => verify(format, &file, key.as_deref()),
    }
}

/// `evidence verify`: needs no config, catalog or key, only the file.
pub(super) fn verify(format: Format, file: &Path, key: Option<&str>) -> Result<u8> {
    let bytes = std::fs::read(file)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", file.display())))?;
    match evidence::verify(&bytes, key) {
        Ok(checked) => {
            print(format, &checked, None)?;
            Ok(0)
        }
        Err(why) => {
            if format == Format::Json {
                println!("{}", json!({"ok": false, "error": why}));
            }
            eprintln!("evidence verify: {} does not verify: {why}", file.display());
            Ok(EXIT_VIOLATION)
        }
    }
}

fn print(format: Format, v: &evidence::Verified, written: Option<&Path>) -> Result<()> {
    let mut t = Table::new(&[
        "scope",
        "subject",
        "entries",
        "chain",
        "checkpoints",
        "key",
        "created",
        "result",
    ]);
    t.row(vec![
        v.scope.clone(),
        v.subject.clone().unwrap_or_default(),
        v.entries.to_string(),
        format!("{}..{}", v.chain_from, v.chain_to),
        v.checkpoints.to_string(),
        v.key_id.clone(),
        output::time(v.created_at),
        "ok".into(),
    ]);
    let mut j = serde_json::to_value(v)?;
    j["ok"] = json!(true);
    if let Some(p) = written {
        j["file"] = json!(p.display().to_string());
    }
    emit(format, &j, &t)?;
    if let (Some(p), Format::Table) = (written, format) {
        println!("written to {}", p.display());
    }
    Ok(())
}
