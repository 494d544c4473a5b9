//! The documents: the present ([`present`]: residency, exposure, cost and
//! violations, led by the one asked for) and a plan ([`plan`]: before and
//! after side by side). Each chart is followed by a table of the same
//! numbers.

use std::collections::BTreeMap;

use domicile_core::exposure::ASSUMPTION;
use domicile_core::plan::{ExposureRow, Move, PlanSummary, RegionCost};
use domicile_core::presets::{self, NOT_LEGAL_ADVICE};
use domicile_engine::reports::{ResidencyRow, Violation};

use crate::flows::Flows;
use crate::page::{Meta, Page};
use crate::svg::bars::{Group, bars_svg};
use crate::svg::flow::flow_svg;
use crate::svg::heat::{Axes, Reach, heat_svg};
use crate::text::{Measure, bytes, money, rfc3339};

/// The section a report of the present leads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Residency,
    Exposure,
    Cost,
    Violations,
}

/// The present, as the reports see it.
#[derive(Debug, Clone, Copy)]
pub struct Present<'a> {
    /// `report residency`'s rows.
    pub residency: &'a [ResidencyRow],
    /// The plan of the current policy over itself: exposure and cost now.
    pub summary: &'a PlanSummary,
    /// `report violations`'s rows.
    pub violations: &'a [Violation],
}

/// A report of the present: every section, the one `focus` names first.
pub fn present(meta: &Meta, focus: Focus, p: &Present<'_>) -> String {
    let order = match focus {
        Focus::Residency => [
            Focus::Residency,
            Focus::Exposure,
            Focus::Cost,
            Focus::Violations,
        ],
        Focus::Exposure => [
            Focus::Exposure,
            Focus::Residency,
            Focus::Cost,
            Focus::Violations,
        ],
        Focus::Cost => [
            Focus::Cost,
            Focus::Residency,
            Focus::Exposure,
            Focus::Violations,
        ],
        Focus::Violations => [
            Focus::Violations,
            Focus::Residency,
            Focus::Exposure,
            Focus::Cost,
        ],
    };
    let mut page = Page::new(meta);
    present_sections(&mut page, &order, p);
    page.finish()
}

/// Sections of a report of the present, in the order given, as a
/// fragment to place in another page (the web console's).
pub fn present_fragment(sections: &[Focus], p: &Present<'_>) -> String {
    let mut page = Page::fragment();
    present_sections(&mut page, sections, p);
    page.into_fragment()
}

fn present_sections(page: &mut Page, sections: &[Focus], p: &Present<'_>) {
    for section in sections {
        match section {
            Focus::Residency => residency(page, p.residency),
            Focus::Exposure => exposure(page, &p.summary.exposure_before),
            Focus::Cost => cost(page, &p.summary.cost_before, None),
            Focus::Violations => violations(page, p.violations),
        }
    }
}

/// A plan of another policy (or of the current one) over the present.
#[derive(Debug, Clone, Copy)]
pub struct PlanView<'a> {
    pub summary: &'a PlanSummary,
    /// Where data is now.
    pub before: &'a Flows,
    /// Where it would be once every move is made.
    pub after: &'a Flows,
    /// The first moves, to list (all of them are in the totals).
    pub moves: &'a [Move],
}

/// The report of a plan: totals, flows, exposure and cost before and
/// after, and the first moves.
pub fn plan(meta: &Meta, p: &PlanView<'_>) -> String {
    let mut page = Page::new(meta);
    plan_sections(&mut page, p);
    page.finish()
}

/// The sections of a plan's report, as a fragment to place in another
/// page (the web console's).
pub fn plan_fragment(p: &PlanView<'_>) -> String {
    let mut page = Page::fragment();
    plan_sections(&mut page, p);
    page.into_fragment()
}

fn plan_sections(page: &mut Page, p: &PlanView<'_>) {
    let t = &p.summary.totals;
    page.section("summary", "Plan");
    if t.units == 0 {
        page.para(
            "count",
            "Nothing to move: every placement satisfies the policy.",
        );
    } else {
        page.para(
            "count",
            &format!(
                "{} units of {} subjects move: {} objects, {} transferred.",
                t.units,
                t.subjects,
                t.objects,
                bytes(t.bytes_transferred)
            ),
        );
        if let Some(d) = &p.summary.duration {
            page.para(
                "duration",
                &format!("Estimated duration: {}.", d.describe()),
            );
        }
    }
    page.table(
        "totals",
        "Totals",
        &[
            "subjects",
            "units",
            "objects",
            "bytes",
            "transferred",
            "egress",
            "monthly before",
            "monthly after",
            "rewraps",
        ],
        &[vec![
            t.subjects.to_string(),
            t.units.to_string(),
            t.objects.to_string(),
            bytes(t.bytes),
            bytes(t.bytes_transferred),
            money(t.egress_cost),
            money(t.monthly_cost_before),
            money(t.monthly_cost_after),
            t.rewraps.to_string(),
        ]],
    );

    page.section("flows", "Where data is stored: before and after");
    for measure in [Measure::Subjects, Measure::Bytes] {
        let caption = |when: &str| {
            format!(
                "{when}: home country → storage region, bands proportional to {}",
                measure_caption(measure)
            )
        };
        page.pair(&[
            (
                flow_svg(
                    &format!("Data flow before, by {}", measure.noun()),
                    "Home",
                    "Region",
                    measure,
                    &p.before.chart(measure),
                ),
                caption("Before"),
            ),
            (
                flow_svg(
                    &format!("Data flow after, by {}", measure.noun()),
                    "Home",
                    "Region",
                    measure,
                    &p.after.chart(measure),
                ),
                caption("After"),
            ),
        ]);
    }
    flow_change_table(page, p.before, p.after);

    let before = &p.summary.exposure_before;
    let after = &p.summary.exposure_after;
    page.section("exposure", "Exposure: before and after");
    let axes = Axes::of(before.iter().chain(after));
    for reach in [Reach::Plaintext, Reach::Ciphertext] {
        page.pair(&[
            (
                heat_svg(
                    &format!("Exposure before, {} reach: authority × home", reach.name()),
                    &axes,
                    before,
                    reach,
                ),
                format!(
                    "Before: subjects each authority could compel in {}",
                    reach.name()
                ),
            ),
            (
                heat_svg(
                    &format!("Exposure after, {} reach: authority × home", reach.name()),
                    &axes,
                    after,
                    reach,
                ),
                format!(
                    "After: subjects each authority could compel in {}",
                    reach.name()
                ),
            ),
        ]);
    }
    exposure_change_table(page, before, after);
    grounds(page, before.iter().chain(after));

    cost(page, &p.summary.cost_before, Some(&p.summary.cost_after));

    page.section("moves", "Moves");
    let rows: Vec<Vec<String>> = p
        .moves
        .iter()
        .map(|m| {
            vec![
                m.subject
                    .clone()
                    .unwrap_or_else(|| m.token.chars().take(12).collect()),
                m.home.to_string(),
                m.category.clone(),
                join(&m.from),
                join(&m.to),
                m.objects.to_string(),
                bytes(m.bytes),
                if m.custodian_from == m.custodian_to {
                    m.custodian_to.clone()
                } else {
                    format!("{} → {}", m.custodian_from, m.custodian_to)
                },
                money(m.egress_cost),
            ]
        })
        .collect();
    page.table(
        "moves",
        "Moves",
        &[
            "subject",
            "home",
            "category",
            "from",
            "to",
            "objects",
            "bytes",
            "custodian",
            "egress",
        ],
        &rows,
    );
    if t.units > p.moves.len() as u64 {
        page.para(
            "",
            &format!(
                "… and {} more moves (all of them with --format json or csv).",
                t.units - p.moves.len() as u64
            ),
        );
    }
}

fn measure_caption(m: Measure) -> &'static str {
    match m {
        Measure::Subjects => "subjects (counted once per category of data)",
        _ => "stored bytes (each copy counts)",
    }
}

fn join(v: &[domicile_core::RegionId]) -> String {
    v.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

fn residency(page: &mut Page, rows: &[ResidencyRow]) {
    page.section("residency", "Residency: where data is stored");
    let flows = Flows::from_residency(rows);
    for measure in [Measure::Subjects, Measure::Bytes] {
        page.figure(
            &flow_svg(
                &format!(
                    "Data flow by {}: home country → storage region",
                    measure.noun()
                ),
                "Home",
                "Region",
                measure,
                &flows.chart(measure),
            ),
            &format!(
                "Home country → storage region, bands proportional to {}",
                measure_caption(measure)
            ),
        );
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.home.clone(),
                r.category.clone(),
                r.region.clone(),
                r.jurisdiction.clone(),
                r.subjects.to_string(),
                r.objects.to_string(),
                r.bytes.to_string(),
            ]
        })
        .collect();
    page.table(
        "residency",
        "Subjects, objects and bytes per home, category and region",
        &[
            "home",
            "category",
            "region",
            "jurisdiction",
            "subjects",
            "objects",
            "bytes",
        ],
        &rows,
    );
}

fn flow_change_table(page: &mut Page, before: &Flows, after: &Flows) {
    let mut keys: Vec<(String, String)> = before
        .rows()
        .chain(after.rows())
        .map(|(h, r, _)| (h.to_string(), r.to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|(h, r)| {
            let b = before.get(h, r);
            let a = after.get(h, r);
            vec![
                h.clone(),
                r.clone(),
                after.jurisdiction(r).to_string(),
                b.subjects.to_string(),
                a.subjects.to_string(),
                b.bytes.to_string(),
                a.bytes.to_string(),
            ]
        })
        .collect();
    page.table(
        "flows",
        "Subjects (once per category) and bytes per home and region",
        &[
            "home",
            "region",
            "jurisdiction",
            "subjects before",
            "subjects after",
            "bytes before",
            "bytes after",
        ],
        &rows,
    );
}

fn exposure(page: &mut Page, rows: &[ExposureRow]) {
    page.section("exposure", "Exposure: who could compel what");
    let axes = Axes::of(rows);
    page.pair(&[
        (
            heat_svg(
                "Exposure, plaintext reach: authority × home",
                &axes,
                rows,
                Reach::Plaintext,
            ),
            "Plaintext: subjects whose copies and keys an authority could compel".into(),
        ),
        (
            heat_svg(
                "Exposure, ciphertext reach: authority × home",
                &axes,
                rows,
                Reach::Ciphertext,
            ),
            "Ciphertext: subjects whose copies, but not keys, an authority could compel".into(),
        ),
    ]);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.authority.to_string(),
                r.home.to_string(),
                r.subjects.to_string(),
                r.plaintext_subjects.to_string(),
                r.ciphertext_subjects.to_string(),
                r.grounds.join(", "),
            ]
        })
        .collect();
    page.table(
        "exposure",
        "Subjects each authority could compel, per home",
        &[
            "authority",
            "home",
            "subjects",
            "plaintext",
            "ciphertext",
            "grounds",
        ],
        &table,
    );
    grounds(page, rows);
}

fn exposure_change_table(page: &mut Page, before: &[ExposureRow], after: &[ExposureRow]) {
    let mut rows = Vec::new();
    let mut keys: Vec<(String, String)> = before
        .iter()
        .chain(after)
        .map(|r| (r.authority.to_string(), r.home.to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    let index = |rows: &[ExposureRow]| -> BTreeMap<(String, String), ExposureRow> {
        rows.iter()
            .map(|r| ((r.authority.to_string(), r.home.to_string()), r.clone()))
            .collect()
    };
    let (before, after) = (index(before), index(after));
    for key in keys {
        let (b, af) = (before.get(&key).cloned(), after.get(&key).cloned());
        let (a, h) = key;
        let n = |r: &Option<ExposureRow>, f: fn(&ExposureRow) -> u64| r.as_ref().map_or(0, f);
        let (pb, pa) = (
            n(&b, |r| r.plaintext_subjects),
            n(&af, |r| r.plaintext_subjects),
        );
        let (cb, ca) = (
            n(&b, |r| r.ciphertext_subjects),
            n(&af, |r| r.ciphertext_subjects),
        );
        if pb + pa + cb + ca == 0 {
            continue;
        }
        let cited = match (&af, &b) {
            (Some(x), _) if pa + ca > 0 => x.grounds.join(", "),
            (_, Some(x)) => x.grounds.join(", "),
            _ => String::new(),
        };
        rows.push(vec![
            a,
            h,
            n(&b, |r| r.subjects)
                .max(n(&af, |r| r.subjects))
                .to_string(),
            pb.to_string(),
            pa.to_string(),
            cb.to_string(),
            ca.to_string(),
            cited,
        ]);
    }
    page.table(
        "exposure",
        "Subjects each authority could compel, before and after",
        &[
            "authority",
            "home",
            "subjects",
            "plaintext before",
            "plaintext after",
            "ciphertext before",
            "ciphertext after",
            "grounds",
        ],
        &rows,
    );
}

/// The presets the rows cite with their citations, the model's
/// assumption, and that this is not legal advice.
fn grounds<'a>(page: &mut Page, rows: impl IntoIterator<Item = &'a ExposureRow>) {
    let cited = presets::cited(rows.into_iter().flat_map(|r| r.grounds.iter()));
    if !cited.is_empty() {
        page.heading("Grounds cited");
        let items: Vec<String> = cited
            .iter()
            .map(|p| format!("{} ({}): {}", p.name, p.title, p.citations.join("; ")))
            .collect();
        page.list("grounds", &items);
    }
    page.para("notice assumption", ASSUMPTION);
    page.para("notice legal", NOT_LEGAL_ADVICE);
}

fn cost(page: &mut Page, before: &[RegionCost], after: Option<&[RegionCost]>) {
    page.section("cost", "Storage cost per month");
    let mut regions: Vec<(String, String)> = before
        .iter()
        .chain(after.unwrap_or_default())
        .map(|r| (r.region.to_string(), r.jurisdiction.to_string()))
        .collect();
    regions.sort();
    regions.dedup();
    let find = |rows: &[RegionCost], region: &str| {
        rows.iter()
            .find(|r| r.region.as_str() == region)
            .map_or((0, 0.0), |r| (r.bytes, r.monthly_cost))
    };
    let series: &[&str] = if after.is_some() {
        &["before", "after"]
    } else {
        &["now"]
    };
    let groups: Vec<Group> = regions
        .iter()
        .map(|(r, j)| Group {
            label: format!("{r} ({j})"),
            values: std::iter::once(find(before, r).1)
                .chain(after.map(|a| find(a, r).1))
                .collect(),
        })
        .collect();
    let title = if after.is_some() {
        "Monthly storage cost per region, before and after"
    } else {
        "Monthly storage cost per region"
    };
    page.figure(
        &bars_svg(title, series, Measure::Money, &groups),
        "Storage cost per month, at the regions' price list",
    );
    let total = |rows: &[RegionCost]| rows.iter().map(|r| r.monthly_cost).sum::<f64>();
    let mut rows: Vec<Vec<String>> = regions
        .iter()
        .map(|(r, j)| {
            let (bb, cb) = find(before, r);
            let mut row = vec![r.clone(), j.clone(), bb.to_string(), money(cb)];
            if let Some(a) = after {
                let (ba, ca) = find(a, r);
                row.extend([ba.to_string(), money(ca)]);
            }
            row
        })
        .collect();
    let mut last = vec![
        "total".to_string(),
        String::new(),
        before.iter().map(|r| r.bytes).sum::<u64>().to_string(),
        money(total(before)),
    ];
    let headers: &[&str] = match after {
        Some(a) => {
            last.extend([
                a.iter().map(|r| r.bytes).sum::<u64>().to_string(),
                money(total(a)),
            ]);
            &[
                "region",
                "jurisdiction",
                "bytes before",
                "monthly before",
                "bytes after",
                "monthly after",
            ]
        }
        None => &["region", "jurisdiction", "bytes", "monthly cost"],
    };
    rows.push(last);
    page.table(
        "cost",
        "Stored bytes and monthly cost per region",
        headers,
        &rows,
    );
}

fn violations(page: &mut Page, v: &[Violation]) {
    page.section("violations", "Violations of the policy");
    page.para(
        "count violations-count",
        &match v.len() {
            0 => "No violations: every copy is where the policy allows.".to_string(),
            1 => "1 violation.".to_string(),
            n => format!("{n} violations."),
        },
    );
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|x| {
            vec![
                x.subject.clone(),
                x.category.clone(),
                x.region.clone(),
                x.rule.clone(),
                rfc3339(x.since),
            ]
        })
        .collect();
    page.table(
        "violations",
        "Copies that break the policy",
        &["subject", "category", "region", "rule", "since"],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use domicile_core::plan::Totals;

    use super::*;

    fn meta() -> Meta {
        Meta {
            title: "Residency report".into(),
            operator: r#"Ex<ample> "Phones" & Co's"#.into(),
            policy_version: 2,
            policy_digest: "abc123".into(),
            generated_at: "2026-12-04T21:23:05Z".into(),
            extra: vec![],
        }
    }

    fn j(s: &str) -> domicile_core::jurisdiction::Jurisdiction {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    fn summary() -> PlanSummary {
        PlanSummary {
            totals: Totals::default(),
            exposure_before: vec![ExposureRow {
                authority: j("CN"),
                home: j("IN"),
                subjects: 2,
                plaintext_subjects: 2,
                ciphertext_subjects: 0,
                grounds: vec!["cn-national-intelligence".into()],
            }],
            exposure_after: vec![],
            cost_before: vec![RegionCost {
                region: "cn-north".parse().unwrap_or_else(|_| unreachable!()),
                jurisdiction: j("CN"),
                bytes: 1 << 30,
                monthly_cost: 0.012,
            }],
            cost_after: vec![],
            subjects_seen: 2,
            placements_seen: 2,
            duration: None,
        }
    }

    fn residency_rows() -> Vec<ResidencyRow> {
        vec![ResidencyRow {
            home: "IN".into(),
            category: "<img src=x onerror=alert(1)>".into(),
            region: "cn-north".into(),
            jurisdiction: "CN".into(),
            subjects: 2,
            objects: 3,
            bytes: 1 << 30,
        }]
    }

    fn violation() -> Violation {
        Violation {
            subject: r#"<script>alert("x")</script>"#.into(),
            category: "payment".into(),
            region: "cn-north".into(),
            rule: "india-not-in-china & 'friends'".into(),
            since: 1_796_419_385_000,
        }
    }

    #[test]
    fn a_report_of_the_present_holds_every_section_led_by_its_focus() {
        let s = summary();
        let rows = residency_rows();
        let v = [violation()];
        let p = Present {
            residency: &rows,
            summary: &s,
            violations: &v,
        };
        let html = present(&meta(), Focus::Exposure, &p);
        let at = |needle: &str| {
            html.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing from\n{html}"))
        };
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(at(r#"<section id="exposure""#) < at(r#"<section id="residency""#));
        at(r#"<svg class="chart flow""#);
        at(r#"<svg class="chart heat plaintext""#);
        at(r#"<svg class="chart heat ciphertext""#);
        at(r#"<svg class="chart bars""#);
        at("1 violation.");
        at("@page { size: A4");
        at("break-inside: avoid");
        at(r#"<code class="policy-digest">abc123</code>"#);
        at(r#"<time class="generated" datetime="2026-12-04T21:23:05Z">"#);
        at("2026-12-04T21:23:05Z</td>");
        at(&crate::text::esc(ASSUMPTION));
        at(&crate::text::esc(NOT_LEGAL_ADVICE));
        at("cn-national-intelligence (");
        // Every string from the data is escaped.
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        at("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
        at("india-not-in-china &amp; &#39;friends&#39;");
        at("Ex&lt;ample&gt; &quot;Phones&quot; &amp; Co&#39;s");
        assert!(!html.contains("NaN") && !html.contains("inf<"), "{html}");
    }

    #[test]
    fn a_plan_shows_before_and_after_side_by_side() {
        let s = summary();
        let rows = residency_rows();
        let before = Flows::from_residency(&rows);
        let mut after = before.clone();
        after.name_region("in-mumbai", "IN");
        let m = Move {
            token: "0123456789abcdef".into(),
            subject: Some("ravi".into()),
            home: j("IN"),
            category: "<img src=x onerror=alert(1)>".into(),
            from: vec!["cn-north".parse().unwrap_or_else(|_| unreachable!())],
            to: vec!["in-mumbai".parse().unwrap_or_else(|_| unreachable!())],
            custodian_from: "operator-kms".into(),
            custodian_to: "in-kms".into(),
            objects: 3,
            bytes: 1 << 30,
            egress_cost: 0.08,
            reason: domicile_core::plan::MoveReason::Forbidden,
        };
        after.apply(&m);
        let mut s = s;
        s.totals.units = 3;
        let moves = [m];
        let html = plan(
            &meta(),
            &PlanView {
                summary: &s,
                before: &before,
                after: &after,
                moves: &moves,
            },
        );
        assert!(html.contains("Data flow before, by subjects"));
        assert!(html.contains("Data flow after, by bytes"));
        assert!(html.contains("in-mumbai (IN)"), "{html}");
        assert_eq!(html.matches(r#"<svg class="chart heat"#).count(), 4);
        assert_eq!(html.matches(r#"<svg class="chart flow"#).count(), 4);
        assert!(html.contains("before") && html.contains("after"));
        assert!(html.contains("operator-kms → in-kms"));
        assert!(html.contains("… and 2 more moves"));
        assert!(!html.contains("<img"), "{html}");
    }

    #[test]
    fn a_fragment_holds_the_sections_asked_for_and_no_page_around_them() {
        let s = summary();
        let rows = residency_rows();
        let v = [violation()];
        let p = Present {
            residency: &rows,
            summary: &s,
            violations: &v,
        };
        let html = present_fragment(&[Focus::Exposure], &p);
        assert!(html.starts_with(r#"<section id="exposure""#), "{html}");
        assert!(html.trim_end().ends_with("</section>"), "{html}");
        assert!(
            html.contains(r#"<svg class="chart heat plaintext""#),
            "{html}"
        );
        assert!(!html.contains("<section id=\"residency\""), "{html}");
        for page in ["<html", "<head", "<style", "<body", "</main>"] {
            assert!(!html.contains(page), "{page} in {html}");
        }
        let html = present_fragment(&[Focus::Residency, Focus::Violations], &p);
        assert!(html.find("id=\"residency\"") < html.find("id=\"violations\""));
        assert!(!html.contains("<script"), "{html}");
        let f = Flows::from_residency(&rows);
        let html = plan_fragment(&PlanView {
            summary: &s,
            before: &f,
            after: &f,
            moves: &[],
        });
        assert!(html.starts_with(r#"<section id="summary""#), "{html}");
        assert_eq!(html.matches(r#"<svg class="chart flow"#).count(), 4);
        assert!(!html.contains("<html"), "{html}");
    }

    #[test]
    fn an_empty_deployment_reports_without_a_panic() {
        let s = PlanSummary {
            totals: Totals::default(),
            exposure_before: vec![],
            exposure_after: vec![],
            cost_before: vec![],
            cost_after: vec![],
            subjects_seen: 0,
            placements_seen: 0,
            duration: None,
        };
        for focus in [
            Focus::Residency,
            Focus::Exposure,
            Focus::Cost,
            Focus::Violations,
        ] {
            let html = present(
                &meta(),
                focus,
                &Present {
                    residency: &[],
                    summary: &s,
                    violations: &[],
                },
            );
            assert!(html.contains("No data stored"), "{html}");
            assert!(html.contains("No exposure to show"), "{html}");
            assert!(html.contains("No violations"), "{html}");
            assert!(!html.contains("NaN") && !html.contains("inf\""), "{html}");
        }
        let f = Flows::default();
        let html = plan(
            &meta(),
            &PlanView {
                summary: &s,
                before: &f,
                after: &f,
                moves: &[],
            },
        );
        assert!(html.contains("Nothing to move"), "{html}");
    }
}
