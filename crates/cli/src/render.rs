//! Rendering of plans and exposure for people and programs (with the reach
//! presets they cite and that this is not legal advice), shared by the
//! commands and the demo; the header of the HTML documents
//! (`domicile-report-html` draws them).

use domicile_core::exposure::ASSUMPTION;
use domicile_core::plan::{ExposureRow, Move, PlanSummary};
use domicile_core::presets::{self, NOT_LEGAL_ADVICE, Preset};
use serde_json::json;

use crate::output::{Table, bytes, money};

pub fn exposure_table(rows: &[ExposureRow]) -> Table {
    let mut t = Table::new(&[
        "authority",
        "home",
        "subjects",
        "plaintext",
        "ciphertext",
        "grounds",
    ]);
    for r in rows {
        t.row(vec![
            r.authority.to_string(),
            r.home.to_string(),
            r.subjects.to_string(),
            r.plaintext_subjects.to_string(),
            r.ciphertext_subjects.to_string(),
            r.grounds.join(", "),
        ]);
    }
    t
}

/// What a JSON report says about the presets it cites, beside its rows.
pub fn citations_json(cited: &[&Preset]) -> serde_json::Value {
    json!(cited.iter().map(|p| p.citation()).collect::<Vec<_>>())
}

/// Under a table: each cited preset with its citations, and that this is
/// not legal advice. Nothing when no preset is cited.
pub fn print_citations(cited: &[&Preset]) {
    if cited.is_empty() {
        return;
    }
    println!("Grounds cited:");
    for p in cited {
        println!("  {}: {}", p.name, p.citations.join("; "));
    }
    println!("{NOT_LEGAL_ADVICE}");
}

/// Every preset cited by the rows of an exposure report.
pub fn cited_by_rows<'a>(rows: impl IntoIterator<Item = &'a ExposureRow>) -> Vec<&'static Preset> {
    presets::cited(rows.into_iter().flat_map(|r| r.grounds.iter()))
}

pub fn move_json(m: &Move) -> serde_json::Value {
    json!({"subject": m.subject.clone().unwrap_or_else(|| m.token.clone()), "category": m.category, "from": m.from, "to": m.to, "objects": m.objects, "bytes": m.bytes,
           "home": m.home, "custodian_from": m.custodian_from, "custodian_to": m.custodian_to,
           "egress_cost": m.egress_cost, "reason": m.reason})
}

pub fn plan_json(moves: &[serde_json::Value], s: &PlanSummary) -> serde_json::Value {
    let t = &s.totals;
    json!({
        "moves": moves,
        "totals": {"subjects": t.subjects, "objects": t.objects, "bytes": t.bytes, "egress_cost": t.egress_cost,
                   "monthly_cost_before": t.monthly_cost_before, "monthly_cost_after": t.monthly_cost_after,
                   "units": t.units, "bytes_transferred": t.bytes_transferred, "rewraps": t.rewraps},
        "exposure_before": s.exposure_before,
        "exposure_after": s.exposure_after,
        "duration": s.duration,
        "assumption": ASSUMPTION,
        "grounds": citations_json(&cited_by_rows(s.exposure_before.iter().chain(&s.exposure_after))),
        "legal_notice": NOT_LEGAL_ADVICE,
    })
}

pub fn join(v: &[domicile_core::RegionId]) -> String {
    v.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

pub fn print_plan(moves: &[Move], s: &PlanSummary, limit: usize) {
    let t = &s.totals;
    if t.units == 0 {
        println!("Nothing to move: every placement satisfies the policy.");
    } else {
        let mut mt = Table::new(&[
            "subject",
            "category",
            "from",
            "to",
            "objects",
            "bytes",
            "custodian",
        ]);
        for m in moves.iter().take(limit) {
            let cust = if m.custodian_from == m.custodian_to {
                m.custodian_to.clone()
            } else {
                format!("{}→{}", m.custodian_from, m.custodian_to)
            };
            mt.row(vec![
                m.subject.clone().unwrap_or_else(|| short(&m.token)),
                m.category.clone(),
                join(&m.from),
                join(&m.to),
                m.objects.to_string(),
                bytes(m.bytes),
                cust,
            ]);
        }
        print!("{}", mt.render());
        if t.units as usize > moves.len().min(limit) {
            println!(
                "… and {} more moves (all of them with --format json or csv)",
                t.units as usize - moves.len().min(limit)
            );
        }
    }
    println!();
    let mut tt = Table::new(&[
        "subjects",
        "units",
        "objects",
        "bytes",
        "transferred",
        "egress",
        "monthly before",
        "monthly after",
    ]);
    tt.row(vec![
        t.subjects.to_string(),
        t.units.to_string(),
        t.objects.to_string(),
        bytes(t.bytes),
        bytes(t.bytes_transferred),
        money(t.egress_cost),
        money(t.monthly_cost_before),
        money(t.monthly_cost_after),
    ]);
    print!("{}", tt.render());
    println!();
    if let Some(d) = s.duration.as_ref().filter(|_| t.units > 0) {
        println!("Estimated duration: {}.", d.describe());
        println!();
    }
    print_exposure_change(&s.exposure_before, &s.exposure_after);
}

pub fn short(token: &str) -> String {
    token.chars().take(12).collect()
}

/// Exposure before and after, side by side, rows where something is
/// exposed, with the grounds of the reach after (or before, if nothing
/// is reached after).
pub fn print_exposure_change(before: &[ExposureRow], after: &[ExposureRow]) {
    let mut t = Table::new(&[
        "authority",
        "home",
        "subjects",
        "plaintext before",
        "plaintext after",
        "ciphertext before",
        "ciphertext after",
        "grounds",
    ]);
    let mut cited: Vec<&ExposureRow> = Vec::new();
    for b in before {
        let a = after
            .iter()
            .find(|a| a.authority == b.authority && a.home == b.home);
        let (pa, ca) = a
            .map(|a| (a.plaintext_subjects, a.ciphertext_subjects))
            .unwrap_or((0, 0));
        if b.plaintext_subjects + b.ciphertext_subjects + pa + ca == 0 {
            continue;
        }
        let grounds = match a {
            Some(a) if pa + ca > 0 => a,
            _ => b,
        };
        cited.push(grounds);
        t.row(vec![
            b.authority.to_string(),
            b.home.to_string(),
            b.subjects.to_string(),
            b.plaintext_subjects.to_string(),
            pa.to_string(),
            b.ciphertext_subjects.to_string(),
            ca.to_string(),
            grounds.grounds.join(", "),
        ]);
    }
    print!("{}", t.render());
    println!("{ASSUMPTION}");
    print_citations(&cited_by_rows(cited));
}

/// The header of an HTML report: the operator, the policy version this
/// process acts on and its digest, and the time now (UTC, RFC 3339).
pub async fn html_meta(
    engine: &domicile_engine::Engine,
    title: &str,
    extra: Vec<(String, String)>,
) -> anyhow::Result<domicile_report_html::Meta> {
    let acting = engine.follow_policy().await?;
    Ok(domicile_report_html::Meta {
        title: title.to_string(),
        operator: acting.config.topology.operator.name.clone(),
        policy_version: acting.version,
        policy_digest: acting.config.plan_digest(),
        generated_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        extra,
    })
}

/// `-o FILE` is for HTML documents: refused with any other format, rather
/// than ignored.
pub fn output_needs_html(
    format: crate::output::Format,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if output.is_some() && format != crate::output::Format::Html {
        return Err(crate::BadInput(
            "-o/--output is for --format html; other formats print to standard output".into(),
        )
        .into());
    }
    Ok(())
}
