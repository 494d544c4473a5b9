//! The plan digest: a hash of exactly what decides where data goes, in an
//! encoding written out field by field so that it never changes unless this
//! file does.
//!
//! Every struct is taken apart with an exhaustive pattern: a field added to
//! one of them fails to compile here until someone decides whether it
//! belongs in the digest (and, if the encoding changes, raises [`VERSION`]).
//! A test pins the digest of a fixed config, so a change to the encoding
//! cannot pass unnoticed either. Values are written length-prefixed (text,
//! lists) or as fixed-width bytes (numbers), so no two states share an
//! encoding.

use crate::exposure::{AuthoritySel, Reach, ReachRule};
use crate::jurisdiction::Jurisdiction;
use crate::policy::{Policy, Prefer, Rule, Target};
use crate::topology::{Custodian, Operator, Region, Topology};

/// The encoding's version, written into the digest itself (`plan2:…`).
/// Version 1 was a hash of the types' `Debug` text, which a new field or a
/// new compiler could change; see [`legacy`].
pub const VERSION: u32 = 2;

/// `plan<VERSION>:` followed by 16 hex digits of BLAKE3 over the encoding.
pub fn digest(topology: &Topology, policy: &Policy, reach: &Reach) -> String {
    let mut e = Encoder(blake3::Hasher::new());
    e.text(b"domicile plan");
    e.u64(u64::from(VERSION));
    e.topology(topology);
    e.policy(policy);
    e.reach(reach);
    format!("{}{}", prefix(), &e.0.finalize().to_hex()[..16])
}

/// What every digest of this version starts with.
pub fn prefix() -> String {
    format!("plan{VERSION}:")
}

/// The digest jobs recorded before [`VERSION`] 2: BLAKE3 of the `Debug`
/// text of the topology (stores and keyrings cleared), the policy (spans
/// cleared) and the reach rules. It is still accepted for jobs that carry
/// it, as long as the build that reads them prints these types the same
/// way (it does for every release that wrote such jobs).
pub fn legacy(topology: &Topology, policy: &Policy, reach: &Reach) -> String {
    let mut topology = topology.clone();
    for r in &mut topology.regions {
        r.store.clear();
    }
    for c in &mut topology.custodians {
        c.keyring.clear();
    }
    let mut policy = policy.clone();
    for rule in &mut policy.rules {
        rule.span = 0..0;
    }
    let state = format!("{topology:?}\n{policy:?}\n{}", legacy_reach(reach));
    blake3::hash(state.as_bytes()).to_hex()[..16].to_string()
}

/// The `Debug` text that [`Reach`] had when [`legacy`] digests were
/// recorded, before reach rules remembered their origin (which explains
/// reach but decides nothing): `Reach { rules: [ReachRule { authority:
/// Some([US]), territory: false, headquarters: true }] }`.
fn legacy_reach(reach: &Reach) -> String {
    let rules: Vec<String> = reach
        .rules
        .iter()
        .map(|r| {
            let ReachRule {
                authority,
                territory,
                headquarters,
                origin: _,
            } = r;
            format!(
                "ReachRule {{ authority: {authority:?}, territory: {territory:?}, headquarters: {headquarters:?} }}"
            )
        })
        .collect();
    format!("Reach {{ rules: [{}] }}", rules.join(", "))
}

struct Encoder(blake3::Hasher);

impl Encoder {
    fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }

    fn text(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.0.update(bytes);
    }

    fn flag(&mut self, b: bool) {
        self.0.update(&[u8::from(b)]);
    }

    fn price(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    fn jurisdiction(&mut self, j: &Jurisdiction) {
        self.text(j.code().as_bytes());
    }

    fn jurisdictions(&mut self, js: &[Jurisdiction]) {
        self.u64(js.len() as u64);
        for j in js {
            self.jurisdiction(j);
        }
    }

    /// `None` (meaning `*` in a rule) and `Some` of an empty list differ.
    fn optional<T>(&mut self, v: Option<&T>, mut write: impl FnMut(&mut Self, &T)) {
        match v {
            None => self.flag(false),
            Some(v) => {
                self.flag(true);
                write(self, v);
            }
        }
    }

    fn topology(&mut self, t: &Topology) {
        let Topology {
            operator,
            regions,
            custodians,
        } = t;
        // The operator's name decides nothing; its headquarters decides reach.
        let Operator {
            name: _,
            headquarters,
        } = operator;
        self.jurisdiction(headquarters);
        self.u64(regions.len() as u64);
        for r in regions {
            // The store URL and the provider's name can change (a region's
            // data moved to a new disk or bucket, a provider renamed)
            // without changing where data goes or who reaches it.
            let Region {
                id,
                jurisdiction,
                provider: _,
                provider_headquarters,
                store: _,
                storage_price_gb_month,
                egress_price_gb,
            } = r;
            self.text(id.as_str().as_bytes());
            self.jurisdiction(jurisdiction);
            self.jurisdiction(provider_headquarters);
            self.price(*storage_price_gb_month);
            self.price(*egress_price_gb);
        }
        self.u64(custodians.len() as u64);
        for c in custodians {
            let Custodian {
                id,
                jurisdiction,
                headquarters,
                keyring: _,
            } = c;
            self.text(id.as_str().as_bytes());
            self.jurisdiction(jurisdiction);
            self.jurisdiction(headquarters);
        }
    }

    fn policy(&mut self, p: &Policy) {
        let Policy { rules } = p;
        self.u64(rules.len() as u64);
        for rule in rules {
            self.rule(rule);
        }
    }

    fn rule(&mut self, rule: &Rule) {
        // A rule's name and its place in the file only explain decisions.
        let Rule {
            name: _,
            homes,
            categories,
            allow,
            deny,
            copies,
            distinct_jurisdictions,
            require_in,
            custodian,
            prefer,
            span: _,
        } = rule;
        self.optional(homes.as_ref(), |e, h| e.jurisdictions(h));
        self.optional(categories.as_ref(), |e, cs: &Vec<_>| {
            e.u64(cs.len() as u64);
            for c in cs {
                e.text(c.as_str().as_bytes());
            }
        });
        self.optional(allow.as_ref(), |e, ts| e.targets(ts));
        self.targets(deny);
        self.optional(copies.as_ref(), |e, n| e.u64(u64::from(*n)));
        self.optional(distinct_jurisdictions.as_ref(), |e, b| e.flag(*b));
        self.jurisdictions(require_in);
        self.optional(custodian.as_ref(), |e, c| e.text(c.as_str().as_bytes()));
        self.optional(prefer.as_ref(), |e, p| {
            e.u64(match p {
                Prefer::Hash => 0,
                Prefer::Price => 1,
                Prefer::Order => 2,
            })
        });
    }

    fn targets(&mut self, ts: &[Target]) {
        self.u64(ts.len() as u64);
        for t in ts {
            match t {
                Target::Any => self.u64(0),
                // A group's label (`EU`) only names its members.
                Target::Jurisdictions { label: _, members } => {
                    self.u64(1);
                    self.jurisdictions(members);
                }
                Target::Region(id) => {
                    self.u64(2);
                    self.text(id.as_str().as_bytes());
                }
            }
        }
    }

    fn reach(&mut self, r: &Reach) {
        let Reach { rules } = r;
        self.u64(rules.len() as u64);
        for rule in rules {
            // A rule's origin (a preset, a line) only explains reach: a
            // preset digests as the rules it expands to.
            let ReachRule {
                authority,
                territory,
                headquarters,
                origin: _,
            } = rule;
            match authority {
                AuthoritySel::Any => self.u64(0),
                AuthoritySel::Some(js) => {
                    self.u64(1);
                    self.jurisdictions(js);
                }
            }
            self.flag(*territory);
            self.flag(*headquarters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposure::Origin;
    use crate::presets;
    use std::str::FromStr;

    /// The types as they were when legacy digests were recorded; their
    /// fields are read by the derived `Debug` only.
    #[allow(dead_code)]
    mod old {
        use crate::exposure::AuthoritySel;

        #[derive(Debug)]
        pub struct Reach {
            pub rules: Vec<ReachRule>,
        }

        #[derive(Debug)]
        pub struct ReachRule {
            pub authority: AuthoritySel,
            pub territory: bool,
            pub headquarters: bool,
        }
    }

    #[test]
    fn the_legacy_reach_text_is_the_old_debug_text() {
        let us = Jurisdiction::from_str("US").unwrap_or_else(|e| panic!("{e}"));
        let cn = Jurisdiction::from_str("CN").unwrap_or_else(|e| panic!("{e}"));
        let shapes = [
            (AuthoritySel::Any, true, false),
            (AuthoritySel::Some(vec![us]), false, true),
            (AuthoritySel::Some(vec![us, cn]), true, true),
        ];
        let new = Reach {
            rules: shapes
                .iter()
                .map(|(authority, territory, headquarters)| ReachRule {
                    authority: authority.clone(),
                    territory: *territory,
                    headquarters: *headquarters,
                    origin: match presets::find("us-cloud-act") {
                        Some(preset) => Origin::Preset { preset, line: 3 },
                        None => Origin::Assumed,
                    },
                })
                .collect(),
        };
        let old = old::Reach {
            rules: shapes
                .iter()
                .map(|(authority, territory, headquarters)| old::ReachRule {
                    authority: authority.clone(),
                    territory: *territory,
                    headquarters: *headquarters,
                })
                .collect(),
        };
        assert_eq!(legacy_reach(&new), format!("{old:?}"));
        assert_eq!(
            legacy_reach(&Reach::default()),
            format!("{:?}", old::Reach { rules: vec![] })
        );
    }
}
