//! `reach explain`: the grounds of one authority's reach under a config
//! (the CLI prints it as a table, the REST API serves it as JSON).

use domicile_core::Config;
use domicile_core::exposure::{ASSUMPTION, Origin, RuleReach};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::presets::{NOT_LEGAL_ADVICE, Preset};
use serde::Serialize;
use serde_json::{Value, json};

/// The grounds of an authority's reach, as `reach explain --format json`
/// gives them. A simplified model of the laws it cites, not legal advice.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReachExplanation {
    pub authority: Jurisdiction,
    /// The authority's country, by name.
    pub name: String,
    /// The config the grounds come from.
    pub config: String,
    pub grounds: Vec<ReachGround>,
    /// Whether any ground reaches anything in this deployment.
    pub reaches_anything: bool,
    pub assumption: String,
    pub legal_notice: String,
}

/// One ground (a `[[reach]]` entry: a rule, or a preset's rules merged).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReachGround {
    pub ground: String,
    /// `rule`, `preset` or `assumed`.
    pub source: String,
    pub preset: Option<String>,
    pub title: Option<String>,
    pub citations: Vec<String>,
    pub summary: Option<String>,
    /// `territory`, `headquarters`.
    pub over: Vec<String>,
    /// Where it is written (`FILE:LINE`).
    pub at: String,
    /// What it reaches, by ground: ids of regions and custodians.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub reaches: Value,
    /// What it reaches, in words.
    #[serde(skip)]
    pub reaches_text: String,
    #[serde(skip)]
    pub preset_ref: Option<&'static Preset>,
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

    fn over(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.rules.iter().any(|r| r.rule.territory) {
            out.push("territory".to_string());
        }
        if self.rules.iter().any(|r| r.rule.headquarters) {
            out.push("headquarters".to_string());
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

/// The grounds of authority `a`'s reach under `config`.
pub fn explain(config: &Config, a: Jurisdiction) -> ReachExplanation {
    let mut entries: Vec<Entry> = Vec::new();
    for r in config.reach.explain(a, &config.topology) {
        match entries.last_mut() {
            Some(e) if e.origin() == &r.rule.origin => e.rules.push(r),
            _ => entries.push(Entry { rules: vec![r] }),
        }
    }
    let grounds = entries
        .iter()
        .map(|e| {
            let preset = e.rules[0].rule.preset();
            let reached = e.reached(config);
            ReachGround {
                ground: e.label().to_string(),
                source: match e.origin() {
                    Origin::Rule { .. } => "rule",
                    Origin::Preset { .. } => "preset",
                    Origin::Assumed => "assumed",
                }
                .to_string(),
                preset: preset.map(|p| p.name.to_string()),
                title: preset.map(|p| p.title.to_string()),
                citations: preset
                    .map(|p| p.citations.iter().map(|c| c.to_string()).collect())
                    .unwrap_or_default(),
                summary: preset.map(|p| p.summary.to_string()),
                over: e.over(),
                at: e.location(config),
                reaches: reached.json(config),
                reaches_text: reached.text(a),
                preset_ref: preset,
            }
        })
        .collect();
    let reaches_anything = config
        .reach
        .explain(a, &config.topology)
        .iter()
        .any(|r| r.reaches_anything());
    ReachExplanation {
        authority: a,
        name: a.name().to_string(),
        config: config.file.clone(),
        grounds,
        reaches_anything,
        assumption: ASSUMPTION.to_string(),
        legal_notice: NOT_LEGAL_ADVICE.to_string(),
    }
}
