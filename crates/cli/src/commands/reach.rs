//! `reach explain`: the grounds of one authority's reach under the active
//! config (the applied policy version, if any, as every report uses it).

use anyhow::Result;
use domicile_core::Config;
use domicile_core::exposure::{ASSUMPTION, Origin, RuleReach};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::presets::NOT_LEGAL_ADVICE;
use domicile_engine::Engine;
use serde_json::{Value, json};

use super::jurisdiction;
use crate::cli::ReachCmd;
use crate::output::{Format, Table, emit};

pub(super) fn run(engine: &Engine, format: Format, cmd: ReachCmd) -> Result<u8> {
    match cmd {
        ReachCmd::Explain { authority } => {
            let a = jurisdiction(&authority)?;
            explain(&engine.config(), a, format)
        }
    }
}

/// The rules of one `[[reach]]` entry (a preset gives one per ground),
/// merged into one ground to explain.
struct Entry<'a> {
    rules: Vec<RuleReach<'a>>,
}

impl Entry<'_> {
    fn origin(&self) -> &Origin {
        &self.rules[0].rule.origin
    }

    fn label(&self) -> &'static str {
        self.rules[0].rule.label()
    }

    fn over(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.rules.iter().any(|r| r.rule.territory) {
            out.push("territory");
        }
        if self.rules.iter().any(|r| r.rule.headquarters) {
            out.push("headquarters");
        }
        out
    }

    fn location(&self, config: &Config) -> String {
        match self.origin() {
            Origin::Rule { line } | Origin::Preset { line, .. } => {
                format!("{}:{line}", config.file)
            }
            Origin::Assumed => format!("{} has no [[reach]]: assumed", config.file),
        }
    }

    /// What the entry reaches, by kind: ids of regions and custodians.
    fn reaches(&self, a: Jurisdiction, config: &Config) -> Value {
        let mut territory_regions = Vec::new();
        let mut territory_custodians = Vec::new();
        let mut provider_regions = Vec::new();
        let mut headquarters_custodians = Vec::new();
        let mut operator = false;
        for r in &self.rules {
            territory_regions.extend(r.territory_regions.iter().map(|x| x.id.to_string()));
            territory_custodians.extend(r.territory_custodians.iter().map(|x| x.id.to_string()));
            provider_regions.extend(r.provider_regions.iter().map(|x| x.id.to_string()));
            headquarters_custodians
                .extend(r.headquarters_custodians.iter().map(|x| x.id.to_string()));
            operator |= r.operator_headquarters;
        }
        let operator_regions: Vec<String> = if operator {
            config
                .topology
                .regions
                .iter()
                .map(|r| r.id.to_string())
                .collect()
        } else {
            Vec::new()
        };
        json!({
            "territory": {"regions": territory_regions, "custodians": territory_custodians},
            "operator_headquarters": {"operator": operator.then(|| config.topology.operator.name.clone()),
                                      "headquarters": config.topology.operator.headquarters,
                                      "regions": operator_regions},
            "provider_headquarters": {"regions": provider_regions},
            "custodian_headquarters": {"custodians": headquarters_custodians},
            "authority": a,
        })
    }

    /// The same, in words, for the table.
    fn reaches_text(&self, a: Jurisdiction, config: &Config) -> String {
        let v = self.reaches(a, config);
        let list = |x: &Value| -> Vec<String> {
            x.as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut parts = Vec::new();
        let tr = list(&v["territory"]["regions"]);
        if !tr.is_empty() {
            parts.push(format!("copies in {a}: {}", tr.join(", ")));
        }
        let tc = list(&v["territory"]["custodians"]);
        if !tc.is_empty() {
            parts.push(format!("keys held in {a}: {}", tc.join(", ")));
        }
        if v["operator_headquarters"]["operator"].is_string() {
            parts.push(format!(
                "every copy of the operator, headquartered in {a}: {}",
                list(&v["operator_headquarters"]["regions"]).join(", ")
            ));
        }
        let pr = list(&v["provider_headquarters"]["regions"]);
        if !pr.is_empty() {
            parts.push(format!(
                "copies on providers headquartered in {a}: {}",
                pr.join(", ")
            ));
        }
        let hc = list(&v["custodian_headquarters"]["custodians"]);
        if !hc.is_empty() {
            parts.push(format!(
                "keys at custodians headquartered in {a}: {}",
                hc.join(", ")
            ));
        }
        if parts.is_empty() {
            "nothing in this deployment".into()
        } else {
            parts.join("; ")
        }
    }
}

fn explain(config: &Config, a: Jurisdiction, format: Format) -> Result<u8> {
    let mut entries: Vec<Entry> = Vec::new();
    for r in config.reach.explain(a, &config.topology) {
        match entries.last_mut() {
            Some(e) if e.origin() == &r.rule.origin => e.rules.push(r),
            _ => entries.push(Entry { rules: vec![r] }),
        }
    }
    let mut t = Table::new(&["ground", "over", "reaches", "at"]);
    let mut grounds = Vec::new();
    for e in &entries {
        let preset = e.rules[0].rule.preset();
        t.row(vec![
            e.label().to_string(),
            e.over().join(", "),
            e.reaches_text(a, config),
            e.location(config),
        ]);
        grounds.push(json!({
            "ground": e.label(),
            "source": match e.origin() { Origin::Rule { .. } => "rule", Origin::Preset { .. } => "preset", Origin::Assumed => "assumed" },
            "preset": preset.map(|p| p.name),
            "title": preset.map(|p| p.title),
            "citations": preset.map(|p| p.citations).unwrap_or_default(),
            "summary": preset.map(|p| p.summary),
            "over": e.over(),
            "at": e.location(config),
            "reaches": e.reaches(a, config),
        }));
    }
    let reaches_anything = config
        .reach
        .explain(a, &config.topology)
        .iter()
        .any(|r| r.reaches_anything());
    let json = json!({
        "authority": a,
        "name": a.name(),
        "config": config.file,
        "grounds": grounds,
        "reaches_anything": reaches_anything,
        "assumption": ASSUMPTION,
        "legal_notice": NOT_LEGAL_ADVICE,
    });
    if format == Format::Table {
        println!(
            "The grounds of {a}'s reach ({}) under {}:\n",
            a.name(),
            config.file
        );
        if entries.is_empty() {
            println!("No reach rule gives {a} any reach: it could compel nothing here.");
        } else {
            print!("{}", t.render());
        }
        for e in &entries {
            if let Some(p) = e.rules[0].rule.preset() {
                println!("\n{}: {}", p.name, p.title);
                for c in p.citations {
                    println!("  - {c}");
                }
                println!("  {}", p.summary);
            }
        }
        println!("\n{ASSUMPTION}");
        println!("{NOT_LEGAL_ADVICE}");
    } else {
        emit(format, &json, &t)?;
    }
    Ok(0)
}
