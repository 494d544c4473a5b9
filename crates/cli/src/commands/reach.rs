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

    /// What the entry reaches in this deployment.
    fn reached(&self, config: &Config) -> Reached {
        let mut r = Reached::default();
        for x in &self.rules {
            r.territory_regions
                .extend(x.territory_regions.iter().map(|x| x.id.to_string()));
            r.territory_custodians
                .extend(x.territory_custodians.iter().map(|x| x.id.to_string()));
            r.provider_regions
                .extend(x.provider_regions.iter().map(|x| x.id.to_string()));
            r.headquarters_custodians
                .extend(x.headquarters_custodians.iter().map(|x| x.id.to_string()));
            r.operator |= x.operator_headquarters;
        }
        if r.operator {
            r.operator_regions = config
                .topology
                .regions
                .iter()
                .map(|x| x.id.to_string())
                .collect();
        }
        r
    }
}

/// What one entry reaches, by ground: ids of regions and custodians.
#[derive(Default)]
struct Reached {
    territory_regions: Vec<String>,
    territory_custodians: Vec<String>,
    /// The operator is headquartered in the authority's country.
    operator: bool,
    /// Then: every region it uses.
    operator_regions: Vec<String>,
    provider_regions: Vec<String>,
    headquarters_custodians: Vec<String>,
}

impl Reached {
    fn json(&self, config: &Config) -> Value {
        let op = &config.topology.operator;
        json!({
            "territory": {"regions": self.territory_regions, "custodians": self.territory_custodians},
            "operator_headquarters": {"operator": self.operator.then(|| op.name.clone()),
                                      "headquarters": op.headquarters,
                                      "regions": self.operator_regions},
            "provider_headquarters": {"regions": self.provider_regions},
            "custodian_headquarters": {"custodians": self.headquarters_custodians},
        })
    }

    /// The same, in words, for the table.
    fn text(&self, a: Jurisdiction) -> String {
        let mut parts = Vec::new();
        let mut say = |what: String, ids: &[String]| {
            if !ids.is_empty() {
                parts.push(format!("{what}: {}", ids.join(", ")));
            }
        };
        say(format!("copies in {a}"), &self.territory_regions);
        say(format!("keys held in {a}"), &self.territory_custodians);
        say(
            format!("every copy of the operator, headquartered in {a}"),
            &self.operator_regions,
        );
        say(
            format!("copies on providers headquartered in {a}"),
            &self.provider_regions,
        );
        say(
            format!("keys at custodians headquartered in {a}"),
            &self.headquarters_custodians,
        );
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
            e.reached(config).text(a),
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
            "reaches": e.reached(config).json(config),
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
