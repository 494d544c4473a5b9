//! What a policy change means: for every (home, category), how the allowed
//! regions, copies and custodian change, grouped by identical change.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::jurisdiction::Jurisdiction;
use crate::policy::Requirement;

/// One requirement, described by names rather than indexes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequirementView {
    pub allowed: Vec<String>,
    pub copies: u32,
    pub distinct_jurisdictions: bool,
    pub require_in: Vec<String>,
    pub custodian: Option<String>,
}

impl RequirementView {
    pub fn of(req: &Requirement, config: &Config) -> Self {
        RequirementView {
            allowed: req
                .allowed
                .iter()
                .map(|&i| config.topology.regions[i].id.to_string())
                .collect(),
            copies: req.copies,
            distinct_jurisdictions: req.distinct_jurisdictions,
            require_in: req.require_in.iter().map(|j| j.to_string()).collect(),
            custodian: req.custodian.as_ref().map(|c| c.to_string()),
        }
    }
}

/// The homes for which one category's requirement changes the same way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    pub category: String,
    pub homes: Vec<Jurisdiction>,
    pub before: RequirementView,
    pub after: RequirementView,
    /// Regions allowed before and not after: copies there must move.
    pub newly_forbidden: Vec<String>,
    pub newly_allowed: Vec<String>,
}

/// Every change between two configs, over all homes and every category
/// either one names.
pub fn policy_diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut categories: Vec<String> = old.categories().iter().map(|c| c.to_string()).collect();
    categories.extend(new.categories().iter().map(|c| c.to_string()));
    categories.sort();
    categories.dedup();
    categories.push(crate::config::validate_other_category().to_string());

    let mut groups: BTreeMap<(String, RequirementView, RequirementView), Vec<Jurisdiction>> =
        BTreeMap::new();
    for home in Jurisdiction::all() {
        for cat in &categories {
            let b = RequirementView::of(&old.policy.requirement(&old.topology, home, cat), old);
            let a = RequirementView::of(&new.policy.requirement(&new.topology, home, cat), new);
            if a != b {
                groups.entry((cat.clone(), b, a)).or_default().push(home);
            }
        }
    }
    groups
        .into_iter()
        .map(|((category, before, after), homes)| Change {
            newly_forbidden: before
                .allowed
                .iter()
                .filter(|r| !after.allowed.contains(r))
                .cloned()
                .collect(),
            newly_allowed: after
                .allowed
                .iter()
                .filter(|r| !before.allowed.contains(r))
                .cloned()
                .collect(),
            category,
            homes,
            before,
            after,
        })
        .collect()
}
