//! Satisfiability: every (home, category) the config can meet must have a
//! placement that satisfies its rules. Checked over all jurisdictions and
//! every category the config names, plus "any other category".

use std::collections::{BTreeMap, BTreeSet};

use super::{Config, Diagnostic};
use crate::jurisdiction::Jurisdiction;
use crate::policy::Requirement;

/// Stand-in for a category that no rule or bucket names: only rules whose
/// categories are `*` match it. It cannot collide with a real category,
/// which must start with a letter or digit.
pub const OTHER_CATEGORY: &str = "-other-";

/// A group of (home, category) pairs that no placement can satisfy, for the
/// same reason under the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsatisfied {
    pub homes: Vec<Jurisdiction>,
    /// Categories, with [`OTHER_CATEGORY`] for those no rule names.
    pub categories: Vec<String>,
    pub rules: Vec<String>,
    pub reason: String,
}

impl Unsatisfied {
    /// Located at the last matching rule, or the file's start if none.
    pub fn diagnostic(&self, config: &Config) -> Diagnostic {
        let span = self
            .rules
            .last()
            .and_then(|name| config.policy.rules.iter().find(|r| &r.name == name))
            .map(|r| r.span.clone())
            .unwrap_or(0..0);
        let homes = if self.homes.len() == Jurisdiction::all().len() {
            "every home".to_string()
        } else if self.homes.len() > 12 {
            format!("{} homes ({}, …)", self.homes.len(), join(&self.homes[..6]))
        } else {
            format!("homes [{}]", join(&self.homes))
        };
        let names: Vec<&str> = self
            .categories
            .iter()
            .map(|c| {
                if c == OTHER_CATEGORY {
                    "any other"
                } else {
                    c.as_str()
                }
            })
            .collect();
        let category = format!("categories [{}]", names.join(", "));
        let rules = if self.rules.is_empty() {
            "no rule matches".to_string()
        } else {
            format!("rules involved: {}", self.rules.join(", "))
        };
        config.locate(
            &span,
            format!(
                "no placement satisfies {homes}, {category}: {}; {rules}",
                self.reason
            ),
        )
    }
}

fn join(js: &[Jurisdiction]) -> String {
    js.iter().map(|j| j.code()).collect::<Vec<_>>().join(", ")
}

/// Why a requirement cannot be met, if it cannot. Independent of the subject.
pub fn requirement_problem(req: &Requirement, config: &Config) -> Option<String> {
    let topo = &config.topology;
    if req.allowed.is_empty() {
        return Some("the allow and deny lists leave no region".into());
    }
    if req.custodian.is_none() {
        return Some("no matching rule names a custodian".into());
    }
    let allowed_j: BTreeSet<Jurisdiction> = req
        .allowed
        .iter()
        .map(|&i| topo.regions[i].jurisdiction)
        .collect();
    for j in &req.require_in {
        if !allowed_j.contains(j) {
            return Some(format!("require_in {j} but no allowed region is in {j}"));
        }
    }
    if req.require_in.len() > req.copies as usize {
        return Some(format!(
            "require_in names {} jurisdictions but copies = {}",
            req.require_in.len(),
            req.copies
        ));
    }
    let capacity = if req.distinct_jurisdictions {
        allowed_j.len()
    } else {
        req.allowed.len()
    };
    if capacity < req.copies as usize {
        return Some(if req.distinct_jurisdictions {
            format!(
                "copies = {} in distinct jurisdictions, but the allowed regions span only {}",
                req.copies, capacity
            )
        } else {
            format!(
                "copies = {} but only {} region(s) are allowed",
                req.copies, capacity
            )
        });
    }
    None
}

/// Every unsatisfiable (home, category), grouped.
pub fn check_satisfiable(config: &Config) -> Vec<Unsatisfied> {
    let mut categories: Vec<String> = config.categories().iter().map(|c| c.to_string()).collect();
    categories.push(OTHER_CATEGORY.to_string());
    let mut groups: BTreeMap<(String, Vec<String>, String), Vec<Jurisdiction>> = BTreeMap::new();
    for home in Jurisdiction::all() {
        for category in &categories {
            let req = config.policy.requirement(&config.topology, home, category);
            if let Some(reason) = requirement_problem(&req, config) {
                groups
                    .entry((category.clone(), req.rules.clone(), reason))
                    .or_default()
                    .push(home);
            }
        }
    }
    // Regroup so that categories failing the same way for the same homes
    // make one diagnostic.
    let mut merged: BTreeMap<(Vec<Jurisdiction>, Vec<String>, String), Vec<String>> =
        BTreeMap::new();
    for ((category, rules, reason), homes) in groups {
        merged
            .entry((homes, rules, reason))
            .or_default()
            .push(category);
    }
    merged
        .into_iter()
        .map(|((homes, rules, reason), categories)| Unsatisfied {
            homes,
            categories,
            rules,
            reason,
        })
        .collect()
}
