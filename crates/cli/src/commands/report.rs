//! `report residency`, `exposure`, `cost` and `violations`; with
//! `--format html`, one document of the whole present led by the report
//! asked for.

use std::path::Path;

use anyhow::Result;
use domicile_core::exposure::ASSUMPTION;
use domicile_core::presets::NOT_LEGAL_ADVICE;
use domicile_engine::Engine;
use domicile_report_html::{Focus, Present};
use serde_json::json;

use crate::EXIT_VIOLATION;
use crate::cli::ReportKind;
use crate::output::{self, Format, Table, emit};
use crate::render::{
    citations_json, cited_by_rows, exposure_table, html_meta, output_needs_html, print_citations,
};

pub(super) async fn run(
    engine: &Engine,
    format: Format,
    kind: ReportKind,
    output: Option<&Path>,
) -> Result<u8> {
    output_needs_html(format, output)?;
    if format == Format::Html {
        return html(engine, kind, output).await;
    }
    match kind {
        ReportKind::Residency => {
            let rows = engine.residency().await?;
            let mut t = Table::new(&[
                "home",
                "category",
                "region",
                "jurisdiction",
                "subjects",
                "objects",
                "bytes",
            ]);
            for r in &rows {
                t.row(vec![
                    r.home.clone(),
                    r.category.clone(),
                    r.region.clone(),
                    r.jurisdiction.clone(),
                    r.subjects.to_string(),
                    r.objects.to_string(),
                    r.bytes.to_string(),
                ]);
            }
            emit(format, &json!({"rows": rows}), &t)?;
        }
        ReportKind::Exposure => {
            let s = engine.present().await?;
            let t = exposure_table(&s.exposure_before);
            let cited = cited_by_rows(&s.exposure_before);
            emit(
                format,
                &json!({"rows": s.exposure_before, "assumption": ASSUMPTION,
                        "grounds": citations_json(&cited), "legal_notice": NOT_LEGAL_ADVICE}),
                &t,
            )?;
            if format == Format::Table {
                println!("{ASSUMPTION}");
                print_citations(&cited);
            }
        }
        ReportKind::Cost => {
            let s = engine.present().await?;
            let mut t = Table::new(&["region", "jurisdiction", "bytes", "monthly_cost"]);
            for r in &s.cost_before {
                t.row(vec![
                    r.region.to_string(),
                    r.jurisdiction.to_string(),
                    r.bytes.to_string(),
                    format!("{:.4}", r.monthly_cost),
                ]);
            }
            if format == Format::Table {
                t.row(vec![
                    "total".into(),
                    String::new(),
                    String::new(),
                    format!("{:.4}", s.totals.monthly_cost_before),
                ]);
            }
            emit(
                format,
                &json!({"rows": s.cost_before, "total_monthly_cost": s.totals.monthly_cost_before}),
                &t,
            )?;
        }
        ReportKind::Violations => {
            let v = engine.violations().await?;
            let mut t = Table::new(&["subject", "category", "region", "rule", "since"]);
            for x in &v {
                t.row(vec![
                    x.subject.clone(),
                    x.category.clone(),
                    x.region.clone(),
                    x.rule.clone(),
                    output::time(x.since),
                ]);
            }
            emit(format, &json!({"violations": v}), &t)?;
            if !v.is_empty() {
                return Ok(EXIT_VIOLATION);
            }
        }
    }
    Ok(0)
}

/// The present as one HTML document: residency, exposure, cost and
/// violations, `kind` first. Exits 3 for `violations` when there are
/// some, as the other formats do.
async fn html(engine: &Engine, kind: ReportKind, output: Option<&Path>) -> Result<u8> {
    let residency = engine.residency().await?;
    let summary = engine.present().await?;
    let violations = engine.violations().await?;
    let (focus, title) = match kind {
        ReportKind::Residency => (Focus::Residency, "Residency report"),
        ReportKind::Exposure => (Focus::Exposure, "Exposure report"),
        ReportKind::Cost => (Focus::Cost, "Cost report"),
        ReportKind::Violations => (Focus::Violations, "Violations report"),
    };
    let meta = html_meta(engine, title, Vec::new()).await?;
    let doc = domicile_report_html::present(
        &meta,
        focus,
        &Present {
            residency: &residency,
            summary: &summary,
            violations: &violations,
        },
    );
    output::write_document(output, &doc)?;
    if matches!(kind, ReportKind::Violations) && !violations.is_empty() {
        return Ok(EXIT_VIOLATION);
    }
    Ok(0)
}
