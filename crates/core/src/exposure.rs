//! Legal reach: which authorities could compel a copy, and its key.
//!
//! For an authority A, a copy in region r whose key is held by custodian k:
//! - A reaches the copy through `territory` if r is in A;
//! - A reaches the copy through `headquarters` if r's provider or the
//!   operator is headquartered in A;
//! - A reaches the key the same way, through k's jurisdiction (territory) or
//!   k's headquarters (headquarters);
//! - plaintext exposure = A reaches a copy and its key; ciphertext exposure =
//!   A reaches only a copy.
//!
//! The model assumes that a custodian unwraps keys only for the operator's
//! own service; [`ASSUMPTION`] is printed with every exposure report.

use std::collections::BTreeSet;

use crate::jurisdiction::Jurisdiction;
use crate::topology::{Custodian, Operator, Region, Topology};

/// Stated with every exposure report.
pub const ASSUMPTION: &str = "Assumes a custodian unwraps data keys only for the operator's own service: an authority that reaches a copy but not its key sees ciphertext only.";

/// How far an authority could compel a subject's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    None,
    Ciphertext,
    Plaintext,
}

impl Level {
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Ciphertext => "ciphertext",
            Level::Plaintext => "plaintext",
        }
    }
}

/// Which authorities use which grounds of reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthoritySel {
    Any,
    Some(Vec<Jurisdiction>),
}

/// One `[[reach]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachRule {
    pub authority: AuthoritySel,
    pub territory: bool,
    pub headquarters: bool,
}

/// The reach entries of a config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reach {
    pub rules: Vec<ReachRule>,
}

/// Which grounds one authority has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grounds {
    pub territory: bool,
    pub headquarters: bool,
}

impl Reach {
    pub fn grounds(&self, a: Jurisdiction) -> Grounds {
        let mut g = Grounds::default();
        for r in &self.rules {
            let applies = match &r.authority {
                AuthoritySel::Any => true,
                AuthoritySel::Some(list) => list.contains(&a),
            };
            if applies {
                g.territory |= r.territory;
                g.headquarters |= r.headquarters;
            }
        }
        g
    }

    /// The authorities worth reporting: every jurisdiction that any region,
    /// custodian, provider or the operator sits in, plus those named in reach
    /// rules. Others reach nothing.
    pub fn authorities(&self, topo: &Topology) -> Vec<Jurisdiction> {
        let mut set = BTreeSet::new();
        set.insert(topo.operator.headquarters);
        for r in &topo.regions {
            set.insert(r.jurisdiction);
            set.insert(r.provider_headquarters);
        }
        for c in &topo.custodians {
            set.insert(c.jurisdiction);
            set.insert(c.headquarters);
        }
        for r in &self.rules {
            if let AuthoritySel::Some(list) = &r.authority {
                set.extend(list.iter().copied());
            }
        }
        set.retain(|a| {
            let g = self.grounds(*a);
            g.territory || g.headquarters
        });
        set.into_iter().collect()
    }
}

/// Whether `a` (with grounds `g`) reaches a copy in `region`.
pub fn reaches_copy(g: Grounds, a: Jurisdiction, region: &Region, operator: &Operator) -> bool {
    (g.territory && region.jurisdiction == a)
        || (g.headquarters && (region.provider_headquarters == a || operator.headquarters == a))
}

/// Whether `a` (with grounds `g`) reaches a key held by `custodian`.
pub fn reaches_key(g: Grounds, a: Jurisdiction, custodian: &Custodian) -> bool {
    (g.territory && custodian.jurisdiction == a) || (g.headquarters && custodian.headquarters == a)
}

/// The level of one (subject, category) placement: the regions holding its
/// copies and the custodian of its key.
pub fn placement_level(
    g: Grounds,
    a: Jurisdiction,
    regions: &[&Region],
    custodian: Option<&Custodian>,
    operator: &Operator,
) -> Level {
    if !regions.iter().any(|r| reaches_copy(g, a, r, operator)) {
        return Level::None;
    }
    match custodian {
        Some(k) if reaches_key(g, a, k) => Level::Plaintext,
        Some(_) => Level::Ciphertext,
        // A key with no known custodian is treated as reachable: never
        // understate exposure.
        None => Level::Plaintext,
    }
}
