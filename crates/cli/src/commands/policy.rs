//! `policy check`, `explain` and `diff`: the config alone, no engine.

use std::path::Path;
use std::str::FromStr;

use anyhow::Result;
use domicile_core::diff::policy_diff;
use domicile_core::ids::Category;
use serde_json::json;

use super::jurisdiction;
use crate::BadInput;
use crate::cli::PolicyCmd;
use crate::config_file::load;
use crate::output::{Format, Table, emit};

pub(super) fn run(config_path: &Path, format: Format, cmd: PolicyCmd) -> Result<u8> {
    match cmd {
        PolicyCmd::Check => {
            let c = load(config_path)?;
            let mut t = Table::new(&["config", "regions", "custodians", "rules", "result"]);
            t.row(vec![
                c.file.clone(),
                c.topology.regions.len().to_string(),
                c.topology.custodians.len().to_string(),
                c.policy.rules.len().to_string(),
                "ok".into(),
            ]);
            emit(format, &json!({"config": c.file, "ok": true}), &t)?;
            Ok(0)
        }
        PolicyCmd::Explain { home, category } => {
            let c = load(config_path)?;
            let home = jurisdiction(&home)?;
            let category = Category::from_str(&category)?;
            let req = c.policy.requirement(&c.topology, home, category.as_str());
            if let Some(problem) = domicile_core::config::requirement_problem(&req, &c) {
                return Err(
                    BadInput(format!("no placement for {home}/{category}: {problem}")).into(),
                );
            }
            let verdicts = c.policy.explain(&c.topology, home, category.as_str());
            let allowed: Vec<String> = req
                .allowed
                .iter()
                .map(|&i| c.topology.regions[i].id.to_string())
                .collect();
            let mut t = Table::new(&["region", "jurisdiction", "allowed", "why"]);
            for v in &verdicts {
                let j = c
                    .topology
                    .region(&v.region)
                    .map(|r| r.jurisdiction.to_string())
                    .unwrap_or_default();
                t.row(vec![
                    v.region.clone(),
                    j,
                    if v.allowed { "yes".into() } else { "no".into() },
                    v.why.clone(),
                ]);
            }
            let json = json!({"home": home, "category": category, "allowed": allowed, "copies": req.copies,
                              "custodian": req.custodian, "rules": req.rules,
                              "distinct_jurisdictions": req.distinct_jurisdictions, "require_in": req.require_in,
                              "regions": verdicts});
            emit(format, &json, &t)?;
            if format == Format::Table {
                println!(
                    "\ncopies: {}{}; custodian: {}; matching rules: {}",
                    req.copies,
                    if req.distinct_jurisdictions {
                        " (distinct jurisdictions)"
                    } else {
                        ""
                    },
                    req.custodian.map(|c| c.to_string()).unwrap_or_default(),
                    req.rules.join(", ")
                );
            }
            Ok(0)
        }
        PolicyCmd::Diff { old, new } => {
            let Some(new) = new else {
                return Err(BadInput(
                    "policy diff takes two config files, or one or two policy versions".into(),
                )
                .into());
            };
            let a = load(Path::new(&old))?;
            let b = load(Path::new(&new))?;
            let changes = policy_diff(&a, &b);
            emit(
                format,
                &json!({"changes": changes}),
                &changes_table(&changes),
            )?;
            Ok(0)
        }
        PolicyCmd::Apply { .. } | PolicyCmd::Show | PolicyCmd::History => Err(BadInput(
            "this policy command needs the catalog: it runs through the engine".into(),
        )
        .into()),
    }
}

/// The rows of a policy diff, for people.
pub(super) fn changes_table(changes: &[domicile_core::diff::Change]) -> Table {
    let mut t = Table::new(&[
        "category",
        "homes",
        "allowed before",
        "allowed after",
        "copies",
        "custodian",
    ]);
    for ch in changes {
        let homes: Vec<&str> = ch.homes.iter().map(|h| h.code()).collect();
        let homes = if homes.len() > 8 {
            format!("{} homes", homes.len())
        } else {
            homes.join(",")
        };
        let cat = if ch.category == domicile_core::config::OTHER_CATEGORY {
            "(other)".to_string()
        } else {
            ch.category.clone()
        };
        t.row(vec![
            cat,
            homes,
            ch.before.allowed.join(","),
            ch.after.allowed.join(","),
            format!("{}→{}", ch.before.copies, ch.after.copies),
            format!(
                "{}→{}",
                ch.before.custodian.clone().unwrap_or_default(),
                ch.after.custodian.clone().unwrap_or_default()
            ),
        ]);
    }
    t
}
