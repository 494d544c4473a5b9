//! `plan`: the moves a config (the current one, or another) would make.

use std::path::Path;

use anyhow::Result;
use domicile_core::plan::Move;
use domicile_engine::Engine;

use crate::config_file::load;
use crate::output::{Format, Table};
use crate::render::{join, move_json, plan_json, print_plan};

pub(super) async fn run(
    engine: &Engine,
    format: Format,
    policy: Option<&Path>,
    limit: usize,
) -> Result<u8> {
    let desired = match policy {
        Some(p) => load(p)?,
        None => engine.file_config().clone(),
    };
    let keep_all = format != Format::Table;
    let mut moves: Vec<Move> = Vec::new();
    let summary = engine
        .plan(&desired, |m| {
            if keep_all || moves.len() < limit {
                moves.push(m);
            }
        })
        .await?;
    // The caller holds the secrets (it opened the engine): name subjects.
    let tokens: Vec<String> = moves.iter().map(|m| m.token.clone()).collect();
    let names = engine.subject_names(&tokens).await?;
    for m in &mut moves {
        m.subject = names.get(&m.token).cloned();
    }
    match format {
        Format::Json => {
            let mv: Vec<_> = moves.iter().map(move_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&plan_json(&mv, &summary))?
            );
        }
        Format::Csv => {
            let mut t = Table::new(&[
                "subject",
                "category",
                "from",
                "to",
                "objects",
                "bytes",
                "custodian_from",
                "custodian_to",
                "egress_cost",
            ]);
            for m in &moves {
                t.row(vec![
                    m.subject.clone().unwrap_or_else(|| m.token.clone()),
                    m.category.clone(),
                    join(&m.from),
                    join(&m.to),
                    m.objects.to_string(),
                    m.bytes.to_string(),
                    m.custodian_from.clone(),
                    m.custodian_to.clone(),
                    format!("{:.6}", m.egress_cost),
                ]);
            }
            print!("{}", t.csv()?);
        }
        Format::Table => print_plan(&moves, &summary, limit),
    }
    Ok(0)
}
