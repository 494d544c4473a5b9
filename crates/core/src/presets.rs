//! Reach presets: built-in `[[reach]]` rule sets, each grounded in a law
//! and cited, that a config names with `preset = "…"` instead of writing
//! `authority` and `over` by hand.
//!
//! A preset expands into the same [`ReachRule`]s that its hand-written
//! equivalent would give (one per ground), so the exposure model, the plan
//! digest and every report treat the two alike. The rules remember the
//! preset they came from ([`Origin::Preset`]), so that reports can cite
//! the law behind each authority's reach.
//!
//! A preset is a deliberately coarse reading of its law: it says which of
//! the model's two grounds (territory, headquarters) the law gives an
//! authority, never how a court would apply it to a given demand. Every
//! output that cites one carries [`NOT_LEGAL_ADVICE`].

use crate::exposure::{AuthoritySel, Origin, ReachRule};
use crate::jurisdiction::{self, Jurisdiction};

/// Printed, and returned in JSON, wherever presets are cited.
pub const NOT_LEGAL_ADVICE: &str = "Not legal advice: reach presets are a simplified reading of the laws they cite, made to compare placements. Whether a given demand is lawful or enforceable is a question for a lawyer.";

/// One of the model's grounds of reach, as `[[reach]] over = "…"` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Over {
    /// Copies stored, and keys held, in the authority's own territory.
    Territory,
    /// Every copy of an operator, every copy on a cloud provider, and every
    /// key at a custodian, headquartered in the authority's country,
    /// wherever it is stored.
    Headquarters,
}

impl Over {
    pub fn as_str(&self) -> &'static str {
        match self {
            Over::Territory => "territory",
            Over::Headquarters => "headquarters",
        }
    }
}

/// A built-in, cited rule set.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    /// What `preset = "…"` says.
    pub name: &'static str,
    /// A short title.
    pub title: &'static str,
    /// The provisions it rests on, each cited in full.
    pub citations: &'static [&'static str],
    /// What the law says, and how the preset models it, in plain language.
    pub summary: &'static str,
    /// The authorities it gives reach to: a jurisdiction or a group. A
    /// config may narrow it with `authority` (a Member State for the EU).
    pub authorities: &'static str,
    /// The grounds it gives them: one reach rule each.
    pub over: &'static [Over],
}

/// Every preset, in the order error messages and docs list them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "us-cloud-act",
        title: "US CLOUD Act",
        citations: &[
            "18 U.S.C. § 2713, added by the Clarifying Lawful Overseas Use of Data (CLOUD) Act, Pub. L. 115-141, div. V (2018)",
        ],
        summary: "A provider of electronic communication or remote computing service must preserve, back up or disclose the contents and records of communications in its possession, custody or control, whether they are located within or outside the United States. Modelled as US reach over every copy of an operator headquartered in the US, every copy on a cloud provider headquartered in the US and every key at a custodian headquartered in the US, wherever it is stored. Reach over US territory is not part of this preset: a territory rule gives it.",
        authorities: "US",
        over: &[Over::Headquarters],
    },
    Preset {
        name: "cn-national-intelligence",
        title: "China: National Intelligence Law and Data Security Law",
        citations: &[
            "National Intelligence Law of the People's Republic of China (2017, amended 2018), art. 7",
            "Data Security Law of the People's Republic of China (2021), art. 35",
            "Data Security Law of the People's Republic of China (2021), art. 36",
        ],
        summary: "Art. 7 of the National Intelligence Law obliges every organisation and citizen to support, assist and cooperate with national intelligence work. Art. 35 of the Data Security Law obliges organisations and individuals to cooperate when public security or national security organs retrieve data. Art. 36 forbids organisations in China to provide data stored in China to foreign judicial or law-enforcement bodies without the approval of the competent Chinese authorities. Modelled as CN reach over every copy and key in Chinese territory, and over every copy of an operator, every copy on a cloud provider and every key at a custodian headquartered in China, wherever it is stored. Art. 36 restrains foreign authorities; the model takes no reach away from them.",
        authorities: "CN",
        over: &[Over::Territory, Over::Headquarters],
    },
    Preset {
        name: "ru-242-fz",
        title: "Russia: personal-data localisation (242-FZ)",
        citations: &[
            "Federal Law No. 242-FZ of 21 July 2014, adding art. 18 part 5 to Federal Law No. 152-FZ of 27 July 2006 \"On Personal Data\" (in force 1 September 2015)",
        ],
        summary: "An operator that collects personal data of Russian citizens must record, systematise, accumulate, store, update and retrieve it using databases located in Russia. Data so localised sits in Russian territory, within the reach of Russian authorities. Modelled as RU reach over every copy and key in Russian territory.",
        authorities: "RU",
        over: &[Over::Territory],
    },
    Preset {
        name: "in-dpdp",
        title: "India: DPDP Act 2023 and RBI payment-data storage",
        citations: &[
            "Digital Personal Data Protection Act, 2023 (No. 22 of 2023), s. 16",
            "Reserve Bank of India, Storage of Payment System Data, RBI/2017-18/153, DPSS.CO.OD No. 2785/06.08.005/2017-2018 (6 April 2018)",
        ],
        summary: "Section 16 lets the Central Government restrict, by notification, the transfer of personal data to countries outside India, and keeps in force any other Indian law that restricts such transfers further. The RBI directive requires payment system operators to store the entire data relating to payment systems only in India. Data kept in India is within the reach of Indian authorities. Modelled as IN reach over every copy and key in Indian territory.",
        authorities: "IN",
        over: &[Over::Territory],
    },
    Preset {
        name: "eu-gdpr-48",
        title: "EU: GDPR art. 48",
        citations: &["Regulation (EU) 2016/679 (General Data Protection Regulation), art. 48"],
        summary: "A judgment of a court or tribunal, or a decision of an administrative authority, of a third country requiring a controller or processor to transfer or disclose personal data is recognised or enforceable only if based on an international agreement, such as a mutual legal assistance treaty, in force between that country and the Union or a Member State. Modelled as each Member State's reach over the copies and keys in its own territory. Art. 48 does not stop a foreign authority from compelling a company under its own jurisdiction: it leaves that company between conflicting laws. So the preset takes no reach away from foreign authorities, whose headquarters grounds (us-cloud-act, for one) still count.",
        authorities: "EU",
        over: &[Over::Territory],
    },
];

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The names of every preset, for messages: `a, b, c`.
pub fn names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The presets that `labels` (the grounds exposure rows carry) name, each
/// once, in the order met. Labels of hand-written rules cite nothing.
pub fn cited<'a>(labels: impl IntoIterator<Item = &'a String>) -> Vec<&'static Preset> {
    let mut out: Vec<&'static Preset> = Vec::new();
    for label in labels {
        if let Some(p) = find(label)
            && !out.iter().any(|o| o.name == p.name)
        {
            out.push(p);
        }
    }
    out
}

/// How a report cites a preset beside its rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Citation {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub preset: &'static str,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub title: &'static str,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub citations: &'static [&'static str],
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub summary: &'static str,
}

/// Why a preset's `authority` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    Unknown(#[from] jurisdiction::UnknownJurisdiction),
    #[error(
        "preset {preset:?} gives reach to {covers} only: authority {authority:?} is outside it"
    )]
    Outside {
        preset: &'static str,
        covers: &'static str,
        authority: String,
    },
}

impl Preset {
    /// What a report says about it.
    pub fn citation(&self) -> Citation {
        Citation {
            preset: self.name,
            title: self.title,
            citations: self.citations,
            summary: self.summary,
        }
    }

    /// The jurisdictions the preset gives reach to.
    pub fn members(&self) -> Vec<Jurisdiction> {
        // The table above names only valid codes and groups; a test holds
        // every preset to it.
        jurisdiction::expand(self.authorities).unwrap_or_default()
    }

    /// The authorities a config's `authority = "…"` narrows the preset
    /// to: a jurisdiction or group inside the preset's own. `None` keeps
    /// them all.
    pub fn authorities_for(
        &'static self,
        authority: Option<&str>,
    ) -> Result<Vec<Jurisdiction>, AuthorityError> {
        let all = self.members();
        let Some(code) = authority else {
            return Ok(all);
        };
        let chosen = jurisdiction::expand(code)?;
        if chosen.iter().any(|j| !all.contains(j)) {
            return Err(AuthorityError::Outside {
                preset: self.name,
                covers: self.authorities,
                authority: code.to_string(),
            });
        }
        Ok(chosen)
    }

    /// The ordinary reach rules the preset stands for, one per ground, for
    /// `authorities` (see [`Preset::authorities_for`]), remembering that
    /// they came from this preset at `line` of the config.
    pub fn expand(&'static self, authorities: &[Jurisdiction], line: usize) -> Vec<ReachRule> {
        self.over
            .iter()
            .map(|over| ReachRule {
                authority: AuthoritySel::Some(authorities.to_vec()),
                territory: *over == Over::Territory,
                headquarters: *over == Over::Headquarters,
                origin: Origin::Preset { preset: self, line },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn j(s: &str) -> Jurisdiction {
        Jurisdiction::from_str(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn preset(name: &str) -> &'static Preset {
        find(name).unwrap_or_else(|| panic!("no preset {name}"))
    }

    /// (authorities, territory, headquarters) of each expanded rule.
    fn shape(name: &str) -> Vec<(Vec<Jurisdiction>, bool, bool)> {
        let p = preset(name);
        p.expand(&p.members(), 7)
            .into_iter()
            .map(|r| {
                assert_eq!(
                    r.origin,
                    Origin::Preset { preset: p, line: 7 },
                    "{name}: a rule must remember its preset"
                );
                // Each rule is one a config could write by hand: one ground.
                assert!(r.territory != r.headquarters, "{name}: {r:?}");
                let AuthoritySel::Some(list) = r.authority else {
                    panic!("{name}: a preset names its authorities");
                };
                (list, r.territory, r.headquarters)
            })
            .collect()
    }

    #[test]
    fn us_cloud_act_reaches_us_headquarters_wherever_data_is() {
        assert_eq!(shape("us-cloud-act"), [(vec![j("US")], false, true)]);
        assert!(preset("us-cloud-act").citations[0].contains("18 U.S.C. § 2713"));
    }

    #[test]
    fn cn_national_intelligence_reaches_territory_and_headquarters() {
        assert_eq!(
            shape("cn-national-intelligence"),
            [(vec![j("CN")], true, false), (vec![j("CN")], false, true)]
        );
        let c = preset("cn-national-intelligence").citations.join("; ");
        for cite in ["National Intelligence Law", "art. 7", "art. 35", "art. 36"] {
            assert!(c.contains(cite), "{cite} not cited in {c}");
        }
    }

    #[test]
    fn ru_242_fz_reaches_russian_territory() {
        assert_eq!(shape("ru-242-fz"), [(vec![j("RU")], true, false)]);
        assert!(preset("ru-242-fz").citations[0].contains("242-FZ"));
    }

    #[test]
    fn in_dpdp_reaches_indian_territory() {
        assert_eq!(shape("in-dpdp"), [(vec![j("IN")], true, false)]);
        let c = preset("in-dpdp").citations.join("; ");
        assert!(c.contains("s. 16") && c.contains("RBI"), "{c}");
    }

    #[test]
    fn eu_gdpr_48_reaches_each_member_states_territory() {
        let rules = shape("eu-gdpr-48");
        assert_eq!(rules.len(), 1);
        let (members, territory, headquarters) = &rules[0];
        assert_eq!(members.len(), 27);
        assert!(members.contains(&j("DE")) && !members.contains(&j("US")));
        assert!(*territory && !*headquarters);
        // Narrowed to one Member State.
        let p = preset("eu-gdpr-48");
        assert_eq!(p.authorities_for(Some("DE")), Ok(vec![j("DE")]));
        assert!(matches!(
            p.authorities_for(Some("US")),
            Err(AuthorityError::Outside { .. })
        ));
        assert!(matches!(
            p.authorities_for(Some("XX")),
            Err(AuthorityError::Unknown(_))
        ));
    }

    #[test]
    fn every_preset_is_cited_summarised_and_valid() {
        assert!(PRESETS.len() >= 5);
        for p in PRESETS {
            assert!(!p.citations.is_empty(), "{}", p.name);
            assert!(p.summary.len() > 80, "{}", p.name);
            assert!(!p.members().is_empty(), "{}: {}", p.name, p.authorities);
            assert!(!p.over.is_empty(), "{}", p.name);
            assert_eq!(find(p.name), Some(p));
        }
        assert!(find("us-cloud").is_none());
        assert!(names().starts_with("us-cloud-act, cn-national-intelligence"));
    }
}
