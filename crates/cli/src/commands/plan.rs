//! `plan`: the moves a config (the current one, or another) would make;
//! with `--format html`, a document of the plan, before and after.

use std::path::Path;

use anyhow::Result;
use domicile_core::Config;
use domicile_core::plan::Move;
use domicile_engine::Engine;
use domicile_report_html::{Flows, PlanView};

use crate::config_file::load;
use crate::output;
use crate::output::{Format, Table};
use crate::render::{html_meta, join, move_json, output_needs_html, plan_json, print_plan};

pub(super) async fn run(
    engine: &Engine,
    format: Format,
    policy: Option<&Path>,
    limit: usize,
    output: Option<&Path>,
) -> Result<u8> {
    output_needs_html(format, output)?;
    let desired = match policy {
        Some(p) => load(p)?,
        None => engine.file_config().clone(),
    };
    if format == Format::Html {
        return html(engine, &desired, policy, limit, output).await;
    }
    let mut moves: Vec<Move> = Vec::new();
    let summary = if format == Format::Table {
        // The table lists the first `limit` moves: the others are counted,
        // not built.
        engine
            .plan_first(&desired, limit, |m| moves.push(m))
            .await?
    } else {
        engine.plan(&desired, |m| moves.push(m)).await?
    };
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
        Format::Html => anyhow::bail!("an html plan is written by plan::html"),
    }
    Ok(0)
}

/// The plan as one HTML document: where data is stored before and after
/// (the residency report, with every move applied to it), exposure and
/// cost before and after, and the first `limit` moves. Moves are folded
/// into the picture as the plan streams them: memory does not grow with
/// their number.
async fn html(
    engine: &Engine,
    desired: &Config,
    policy: Option<&Path>,
    limit: usize,
    output: Option<&Path>,
) -> Result<u8> {
    let residency = engine.residency().await?;
    let before = Flows::from_residency(&residency);
    let mut after = before.clone();
    let present = engine.config();
    for r in present
        .topology
        .regions
        .iter()
        .chain(&desired.topology.regions)
    {
        after.name_region(r.id.as_str(), &r.jurisdiction.to_string());
    }
    let mut moves: Vec<Move> = Vec::new();
    let summary = engine
        .plan(desired, |m| {
            after.apply(&m);
            if moves.len() < limit {
                moves.push(m);
            }
        })
        .await?;
    let tokens: Vec<String> = moves.iter().map(|m| m.token.clone()).collect();
    let names = engine.subject_names(&tokens).await?;
    for m in &mut moves {
        m.subject = names.get(&m.token).cloned();
    }
    let planned = match policy {
        Some(p) => p.display().to_string(),
        None => "the config file".to_string(),
    };
    let meta = html_meta(
        engine,
        "Plan",
        vec![
            ("Planned policy".into(), planned),
            ("Planned policy digest".into(), desired.plan_digest()),
        ],
    )
    .await?;
    let doc = domicile_report_html::plan(
        &meta,
        &PlanView {
            summary: &summary,
            before: &before,
            after: &after,
            moves: &moves,
        },
    );
    output::write_document(output, &doc)?;
    Ok(0)
}
