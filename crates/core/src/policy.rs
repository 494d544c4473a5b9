//! The residency rules and what they require of each (home, category).
//!
//! Semantics, exactly as the specification states them:
//! - a rule matches a (home, category) when both of its lists contain it or
//!   are `*` (an omitted list is `*`);
//! - allowed regions = ∩ of the matching rules' `allow` sets − ∪ of their
//!   `deny` sets: deny always wins;
//! - `copies` is the maximum over the matching rules (1 if none says);
//! - `distinct_jurisdictions` holds if any matching rule asks for it;
//! - `require_in` is the union over the matching rules;
//! - the custodian and the tie-break preference come from the last matching
//!   rule that names one.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::ids::{Category, CustodianId, RegionId};
use crate::jurisdiction::Jurisdiction;
use crate::topology::{Region, Topology};

/// An entry of an `allow` or `deny` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `*`: every region.
    Any,
    /// A jurisdiction or a group: every region inside one of them.
    Jurisdictions {
        label: String,
        members: Vec<Jurisdiction>,
    },
    /// One region by id.
    Region(RegionId),
}

impl Target {
    pub fn covers(&self, region: &Region) -> bool {
        match self {
            Target::Any => true,
            Target::Jurisdictions { members, .. } => members.contains(&region.jurisdiction),
            Target::Region(id) => *id == region.id,
        }
    }

    pub fn label(&self) -> &str {
        match self {
            Target::Any => "*",
            Target::Jurisdictions { label, .. } => label,
            Target::Region(id) => id.as_str(),
        }
    }
}

/// How copies are chosen among equally allowed regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Prefer {
    /// Rendezvous hashing: spreads subjects evenly and moves as few as possible.
    #[default]
    Hash,
    /// Cheapest storage first, then rendezvous order.
    Price,
    /// The config's region order.
    Order,
}

/// One `[[rule]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// `None` means `*`.
    pub homes: Option<Vec<Jurisdiction>>,
    /// `None` means `*`.
    pub categories: Option<Vec<Category>>,
    /// `None` means `*`.
    pub allow: Option<Vec<Target>>,
    pub deny: Vec<Target>,
    pub copies: Option<u32>,
    pub distinct_jurisdictions: Option<bool>,
    pub require_in: Vec<Jurisdiction>,
    pub custodian: Option<CustodianId>,
    pub prefer: Option<Prefer>,
    /// Byte span of the rule in the config file.
    pub span: Range<usize>,
}

impl Rule {
    pub fn matches(&self, home: Jurisdiction, category: &str) -> bool {
        let home_ok = self.homes.as_ref().is_none_or(|h| h.contains(&home));
        let cat_ok = self
            .categories
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c.as_str() == category));
        home_ok && cat_ok
    }
}

/// What the rules require of one (home, category).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Requirement {
    /// Indexes into `Topology::regions` of the allowed regions, in config order.
    pub allowed: Vec<usize>,
    pub copies: u32,
    pub distinct_jurisdictions: bool,
    pub require_in: Vec<Jurisdiction>,
    pub custodian: Option<CustodianId>,
    pub prefer: Prefer,
    /// Names of the matching rules, in config order.
    pub rules: Vec<String>,
}

impl Requirement {
    /// Whether the region with this id is allowed (an id the topology does
    /// not know never is).
    pub fn allows(&self, topo: &Topology, region: &str) -> bool {
        topo.region_index(region)
            .is_some_and(|i| self.allowed.contains(&i))
    }
}

/// Why one region is or is not allowed for a (home, category).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegionVerdict {
    pub region: String,
    pub allowed: bool,
    /// The reason, naming the rule that decided it.
    pub why: String,
}

/// The ordered rules of a config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The matching rules of a (home, category), in config order.
    pub fn matching(&self, home: Jurisdiction, category: &str) -> Vec<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.matches(home, category))
            .collect()
    }

    /// What the rules require of a (home, category).
    pub fn requirement(&self, topo: &Topology, home: Jurisdiction, category: &str) -> Requirement {
        let rules = self.matching(home, category);
        let allowed = topo
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| region_verdict(&rules, r).is_none())
            .map(|(i, _)| i)
            .collect();
        let copies = rules.iter().filter_map(|r| r.copies).max().unwrap_or(1);
        let distinct = rules.iter().any(|r| r.distinct_jurisdictions == Some(true));
        let require_in: BTreeSet<Jurisdiction> = rules
            .iter()
            .flat_map(|r| r.require_in.iter().copied())
            .collect();
        let custodian = rules.iter().rev().find_map(|r| r.custodian.clone());
        let prefer = rules
            .iter()
            .rev()
            .find_map(|r| r.prefer)
            .unwrap_or_default();
        Requirement {
            allowed,
            copies,
            distinct_jurisdictions: distinct,
            require_in: require_in.into_iter().collect(),
            custodian,
            prefer,
            rules: rules.iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// Per region: allowed or not, and which rule decided.
    pub fn explain(
        &self,
        topo: &Topology,
        home: Jurisdiction,
        category: &str,
    ) -> Vec<RegionVerdict> {
        let rules = self.matching(home, category);
        topo.regions
            .iter()
            .map(|r| match region_verdict(&rules, r) {
                None => RegionVerdict {
                    region: r.id.to_string(),
                    allowed: true,
                    why: if rules.is_empty() {
                        "no rule matches; every region is allowed".into()
                    } else {
                        format!("allowed by every matching rule ({})", names(&rules))
                    },
                },
                Some(why) => RegionVerdict {
                    region: r.id.to_string(),
                    allowed: false,
                    why,
                },
            })
            .collect()
    }

    /// Every category that some rule names, sorted.
    pub fn named_categories(&self) -> BTreeSet<Category> {
        self.rules
            .iter()
            .flat_map(|r| r.categories.iter().flatten().cloned())
            .collect()
    }
}

fn names(rules: &[&Rule]) -> String {
    rules
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `None` if the region is allowed; otherwise why not. Deny is checked first
/// because deny always wins.
fn region_verdict(rules: &[&Rule], region: &Region) -> Option<String> {
    for rule in rules {
        if let Some(t) = rule.deny.iter().find(|t| t.covers(region)) {
            return Some(format!(
                "denied by rule {:?} (deny {})",
                rule.name,
                t.label()
            ));
        }
    }
    for rule in rules {
        if let Some(allow) = &rule.allow
            && !allow.iter().any(|t| t.covers(region))
        {
            return Some(format!("not in the allow list of rule {:?}", rule.name));
        }
    }
    None
}
