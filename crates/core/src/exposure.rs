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
//!
//! Each reach rule remembers where it came from ([`Origin`]): a `[[reach]]`
//! entry, a preset grounded in law (see [`crate::presets`]), or the
//! widest reach assumed when a config has none. Levels are computed with
//! the grounds that were actually used ([`placement_reach`]), so that a
//! report can cite the rules behind each authority's reach
//! ([`Reach::cite`]).

use std::collections::BTreeSet;

use crate::jurisdiction::Jurisdiction;
use crate::presets::Preset;
use crate::topology::{Custodian, Operator, Region, Topology};

/// Stated with every exposure report.
pub const ASSUMPTION: &str = "Assumes a custodian unwraps data keys only for the operator's own service: an authority that reaches a copy but not its key sees ciphertext only.";

/// How far an authority could compel a subject's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Where a reach rule came from. It explains reach; it never changes it
/// (the plan digest leaves it out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A `[[reach]]` entry with `authority` and `over`, at this line of
    /// the config.
    Rule { line: usize },
    /// A `[[reach]] preset = "…"` entry at this line.
    Preset {
        preset: &'static Preset,
        line: usize,
    },
    /// The config has no `[[reach]]`: every authority is assumed to reach
    /// its territory and its headquarters.
    Assumed,
}

/// One ground of reach for some authorities: a `[[reach]]` entry, or one
/// of the rules a preset expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachRule {
    pub authority: AuthoritySel,
    pub territory: bool,
    pub headquarters: bool,
    pub origin: Origin,
}

impl ReachRule {
    /// Whether the rule gives `a` any reach.
    pub fn applies_to(&self, a: Jurisdiction) -> bool {
        match &self.authority {
            AuthoritySel::Any => true,
            AuthoritySel::Some(list) => list.contains(&a),
        }
    }

    /// The grounds it gives.
    pub fn grounds(&self) -> Grounds {
        Grounds {
            territory: self.territory,
            headquarters: self.headquarters,
        }
    }

    /// How reports name the rule, compactly: the preset's name, or the
    /// ground a hand-written entry gives (`territory`, `headquarters`).
    pub fn label(&self) -> &'static str {
        match &self.origin {
            Origin::Preset { preset, .. } => preset.name,
            Origin::Assumed => "assumed",
            Origin::Rule { .. } => match (self.territory, self.headquarters) {
                (true, true) => "territory+headquarters",
                (true, false) => "territory",
                (false, true) => "headquarters",
                (false, false) => "none",
            },
        }
    }

    /// The preset it came from, if any.
    pub fn preset(&self) -> Option<&'static Preset> {
        match &self.origin {
            Origin::Preset { preset, .. } => Some(preset),
            _ => None,
        }
    }

    /// The config line it was written at, if any.
    pub fn line(&self) -> Option<usize> {
        match &self.origin {
            Origin::Rule { line } | Origin::Preset { line, .. } => Some(*line),
            Origin::Assumed => None,
        }
    }
}

/// The reach entries of a config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reach {
    pub rules: Vec<ReachRule>,
}

/// Which grounds one authority has, or which of them reached something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grounds {
    pub territory: bool,
    pub headquarters: bool,
}

impl Grounds {
    pub fn any(&self) -> bool {
        self.territory || self.headquarters
    }

    /// Both sets together.
    pub fn union(self, other: Grounds) -> Grounds {
        Grounds {
            territory: self.territory || other.territory,
            headquarters: self.headquarters || other.headquarters,
        }
    }

    fn overlaps(&self, other: Grounds) -> bool {
        (self.territory && other.territory) || (self.headquarters && other.headquarters)
    }
}

impl Reach {
    pub fn grounds(&self, a: Jurisdiction) -> Grounds {
        self.rules
            .iter()
            .filter(|r| r.applies_to(a))
            .fold(Grounds::default(), |g, r| g.union(r.grounds()))
    }

    /// The rules to cite for what `a` reached through the grounds in
    /// `used` (from [`placement_reach`]): those that give `a` one of them,
    /// in config order.
    pub fn cite(&self, a: Jurisdiction, used: Grounds) -> Vec<&ReachRule> {
        self.rules
            .iter()
            .filter(|r| r.applies_to(a) && r.grounds().overlaps(used))
            .collect()
    }

    /// [`Reach::cite`] as labels (preset names, or the ground of a
    /// hand-written rule), each once.
    pub fn cite_labels(&self, a: Jurisdiction, used: Grounds) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.cite(a, used) {
            if !out.iter().any(|l| l == r.label()) {
                out.push(r.label().to_string());
            }
        }
        out
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

/// The grounds (of `g`) through which `a` reaches a copy in `region`.
pub fn copy_grounds(g: Grounds, a: Jurisdiction, region: &Region, operator: &Operator) -> Grounds {
    Grounds {
        territory: g.territory && region.jurisdiction == a,
        headquarters: g.headquarters
            && (region.provider_headquarters == a || operator.headquarters == a),
    }
}

/// The grounds (of `g`) through which `a` reaches a key held by `custodian`.
pub fn key_grounds(g: Grounds, a: Jurisdiction, custodian: &Custodian) -> Grounds {
    Grounds {
        territory: g.territory && custodian.jurisdiction == a,
        headquarters: g.headquarters && custodian.headquarters == a,
    }
}

/// Whether `a` (with grounds `g`) reaches a copy in `region`.
pub fn reaches_copy(g: Grounds, a: Jurisdiction, region: &Region, operator: &Operator) -> bool {
    copy_grounds(g, a, region, operator).any()
}

/// Whether `a` (with grounds `g`) reaches a key held by `custodian`.
pub fn reaches_key(g: Grounds, a: Jurisdiction, custodian: &Custodian) -> bool {
    key_grounds(g, a, custodian).any()
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
    placement_reach(g, a, regions, custodian, operator).0
}

/// [`placement_level`], with the grounds that reached the copies (and the
/// key, when it is reached too): what a report cites for it. No grounds
/// when the level is [`Level::None`].
pub fn placement_reach(
    g: Grounds,
    a: Jurisdiction,
    regions: &[&Region],
    custodian: Option<&Custodian>,
    operator: &Operator,
) -> (Level, Grounds) {
    let copies = regions.iter().fold(Grounds::default(), |u, r| {
        u.union(copy_grounds(g, a, r, operator))
    });
    if !copies.any() {
        return (Level::None, Grounds::default());
    }
    match custodian {
        Some(k) => {
            let key = key_grounds(g, a, k);
            if key.any() {
                (Level::Plaintext, copies.union(key))
            } else {
                (Level::Ciphertext, copies)
            }
        }
        // A key with no known custodian is treated as reachable: never
        // understate exposure.
        None => (Level::Plaintext, copies),
    }
}

/// What one reach rule lets an authority reach under a topology: the
/// grounds of its reach, as `reach explain` prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleReach<'a> {
    pub rule: &'a ReachRule,
    /// Regions in the authority's territory (through `territory`).
    pub territory_regions: Vec<&'a Region>,
    /// Custodians in its territory (through `territory`).
    pub territory_custodians: Vec<&'a Custodian>,
    /// The operator is headquartered there: every region it uses is
    /// reached (through `headquarters`).
    pub operator_headquarters: bool,
    /// Regions whose provider is headquartered there (through
    /// `headquarters`).
    pub provider_regions: Vec<&'a Region>,
    /// Custodians headquartered there (through `headquarters`).
    pub headquarters_custodians: Vec<&'a Custodian>,
}

impl RuleReach<'_> {
    /// Whether the rule reaches anything in this topology.
    pub fn reaches_anything(&self) -> bool {
        !(self.territory_regions.is_empty()
            && self.territory_custodians.is_empty()
            && !self.operator_headquarters
            && self.provider_regions.is_empty()
            && self.headquarters_custodians.is_empty())
    }
}

impl Reach {
    /// Every rule that gives `a` reach, in config order, with what it
    /// reaches under `topo`.
    pub fn explain<'a>(&'a self, a: Jurisdiction, topo: &'a Topology) -> Vec<RuleReach<'a>> {
        self.rules
            .iter()
            .filter(|r| r.applies_to(a))
            .map(|rule| {
                let t = rule.territory;
                let h = rule.headquarters;
                RuleReach {
                    rule,
                    territory_regions: topo
                        .regions
                        .iter()
                        .filter(|r| t && r.jurisdiction == a)
                        .collect(),
                    territory_custodians: topo
                        .custodians
                        .iter()
                        .filter(|c| t && c.jurisdiction == a)
                        .collect(),
                    operator_headquarters: h && topo.operator.headquarters == a,
                    provider_regions: topo
                        .regions
                        .iter()
                        .filter(|r| h && r.provider_headquarters == a)
                        .collect(),
                    headquarters_custodians: topo
                        .custodians
                        .iter()
                        .filter(|c| h && c.headquarters == a)
                        .collect(),
                }
            })
            .collect()
    }
}
