//! Integration tests of the pure domain: config diagnostics, the policy
//! semantics, and property tests of placement and exposure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::str::FromStr;

use domicile_core::config::Config;
use domicile_core::exposure::{self, AuthoritySel, Grounds, Level, Reach, ReachRule};
use domicile_core::ids::{CustodianId, RegionId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::placement;
use domicile_core::plan::{Current, Planner};
use domicile_core::policy::{Policy, Prefer, Rule, Target};
use domicile_core::topology::{Custodian, Operator, Region, Topology};
use proptest::prelude::*;

const V1: &str = include_str!("../../../examples/demo-v1.toml");
const V2: &str = include_str!("../../../examples/demo-v2.toml");
/// The demo's policy v2 as it was when the plan digest's encoding got its
/// version 2, reach written by hand: the digest of this text is pinned.
const PINNED: &str = include_str!("plan-digest-v2.toml");

fn j(s: &str) -> Jurisdiction {
    Jurisdiction::from_str(s).unwrap()
}

fn parse(text: &str) -> Result<Config, String> {
    Config::parse("test.toml", text, Path::new("/base")).map_err(|e| e.to_string())
}

#[test]
fn demo_configs_validate() {
    let v1 = parse(V1).unwrap();
    let v2 = parse(V2).unwrap();
    assert_eq!(v1.topology.regions.len(), 5);
    assert_eq!(v2.topology.custodians.len(), 2);
    assert_eq!(v1.catalog_url, "sqlite:///base/data/catalog.db");
    assert_eq!(
        v1.topology.regions[0].store,
        "file:///base/data/regions/cn-north"
    );
}

#[test]
fn policy_semantics_follow_the_spec() {
    let v2 = parse(V2).unwrap();
    let t = &v2.topology;
    let ids = |req: &domicile_core::policy::Requirement| -> Vec<String> {
        req.allowed
            .iter()
            .map(|&i| t.regions[i].id.to_string())
            .collect()
    };
    // IN payments: ∩ of allow(*) and allow(IN), minus deny(CN).
    let r = v2.policy.requirement(t, j("IN"), "payment");
    assert_eq!(ids(&r), ["in-mumbai"]);
    assert_eq!(r.custodian.unwrap().as_str(), "in-kms");
    assert_eq!(
        r.rules,
        ["default", "india-not-in-china", "india-payments-in-india"]
    );
    // IN profile: SG and US.
    let r = v2.policy.requirement(t, j("IN"), "profile");
    assert_eq!(ids(&r), ["aws-ap-southeast-1", "aws-us-east-1"]);
    // IN, a category no rule names: everything but CN.
    let r = v2.policy.requirement(t, j("IN"), "logs");
    assert_eq!(
        ids(&r),
        [
            "aws-ap-southeast-1",
            "aws-us-east-1",
            "in-mumbai",
            "tw-taipei"
        ]
    );
    // CN stays in CN with the operator's custodian.
    let r = v2.policy.requirement(t, j("CN"), "payment");
    assert_eq!(ids(&r), ["cn-north"]);
    assert_eq!(r.custodian.unwrap().as_str(), "operator-kms");
    // Germany: anywhere.
    assert_eq!(v2.policy.requirement(t, j("DE"), "media").allowed.len(), 5);
}

#[test]
fn deny_wins_over_an_explicit_allow() {
    let text = V1.replace(
        "[[reach]]",
        "[[rule]]\nname = \"no-cn-for-tw\"\nhomes = [\"TW\"]\nallow = [\"cn-north\", \"*\"]\ndeny = [\"CN\"]\n\n[[reach]]",
    );
    let e = parse(&text).unwrap_err();
    assert!(e.contains("homes [TW]"), "{e}");
    assert!(
        e.contains("rules involved: everything-in-china, no-cn-for-tw"),
        "{e}"
    );
    assert!(e.starts_with("test.toml:"), "{e}");
}

fn line_col(e: &str) -> (usize, usize) {
    let mut parts = e.splitn(4, ':');
    parts.next();
    let l = parts.next().unwrap().parse().unwrap();
    let c = parts.next().unwrap().parse().unwrap();
    (l, c)
}

#[test]
fn errors_point_at_line_and_column() {
    let text = V1.replace(
        "headquarters = \"CN\"\n\n[catalog]",
        "headquarters = \"XX\"\n\n[catalog]",
    );
    let e = parse(&text).unwrap_err();
    assert!(e.contains("unknown jurisdiction \"XX\""), "{e}");
    assert_eq!(line_col(&e), (6, 16), "{e}");

    let e = parse(&V1.replace("allow = [\"CN\"]", "allow = [\"cn-sout\"]")).unwrap_err();
    assert!(e.contains("unknown region \"cn-sout\""), "{e}");
    assert!(e.contains("cn-north"), "names the valid ones: {e}");

    let e =
        parse(&V1.replace("custodian = \"operator-kms\"", "custodian = \"nobody\"")).unwrap_err();
    assert!(e.contains("unknown custodian \"nobody\""), "{e}");
    assert!(e.contains("operator-kms, in-kms"), "{e}");

    let e = parse(&V1.replace("copies = 1", "copies = 1\ncolour = \"red\"")).unwrap_err();
    assert!(e.contains("colour"), "{e}");

    let e = parse("[operator\nname=1").unwrap_err();
    assert!(e.starts_with("test.toml:1:"), "{e}");

    let e = parse(&V1.replace("jurisdiction = \"SG\"", "jurisdiction = \"EU\"")).unwrap_err();
    assert!(
        e.contains("unknown jurisdiction \"EU\""),
        "a region sits in one country: {e}"
    );
}

#[test]
fn unsatisfiable_pairs_name_their_rules() {
    let text = V1.replace("copies = 1", "copies = 2");
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains("copies = 2 but only 1 region(s) are allowed"),
        "{e}"
    );
    assert!(e.contains("everything-in-china"), "{e}");
    // One grouped line, not one per home.
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn sticky_placement_keeps_valid_and_repairs_invalid() {
    let v1 = parse(V1).unwrap();
    let v2 = parse(V2).unwrap();
    let cn = vec![RegionId::from_str("cn-north").unwrap()];
    let mut planner = Planner::new(&v1, &v2);
    let mv = planner
        .observe(Current {
            token: "aa",
            home: j("IN"),
            category: "payment",
            regions: &cn,
            custodian: "operator-kms",
            objects: 3,
            bytes: 1 << 30,
        })
        .unwrap()
        .unwrap();
    assert_eq!(mv.to, vec![RegionId::from_str("in-mumbai").unwrap()]);
    assert_eq!(mv.custodian_to, "in-kms");
    assert!((mv.egress_cost - 0.08).abs() < 1e-9);
    let none = planner
        .observe(Current {
            token: "bb",
            home: j("TW"),
            category: "media",
            regions: &cn,
            custodian: "operator-kms",
            objects: 1,
            bytes: 10,
        })
        .unwrap();
    assert!(none.is_none());
    let s = planner.finish();
    assert_eq!(s.totals.units, 1);
    assert_eq!(s.totals.subjects, 1);
    assert_eq!(s.subjects_seen, 2);
    let cn_in_before = s
        .exposure_before
        .iter()
        .find(|r| r.authority == j("CN") && r.home == j("IN"))
        .unwrap();
    assert_eq!(cn_in_before.plaintext_subjects, 1);
    // In China, under a Chinese custodian: territory and headquarters.
    assert_eq!(
        cn_in_before.grounds,
        ["territory", "cn-national-intelligence"]
    );
    let cn_in_after = s
        .exposure_after
        .iter()
        .find(|r| r.authority == j("CN") && r.home == j("IN"))
        .unwrap();
    // Out of China, under an Indian custodian: the China-headquartered
    // operator's copies stay within reach, the key does not.
    assert_eq!(cn_in_after.plaintext_subjects, 0);
    assert_eq!(cn_in_after.ciphertext_subjects, 1);
    assert_eq!(cn_in_after.grounds, ["cn-national-intelligence"]);
    let in_in_after = s
        .exposure_after
        .iter()
        .find(|r| r.authority == j("IN") && r.home == j("IN"))
        .unwrap();
    assert_eq!(in_in_after.plaintext_subjects, 1);
    assert_eq!(in_in_after.grounds, ["territory", "in-dpdp"]);
    // TW reaches nothing, and cites nothing.
    let tw = s
        .exposure_after
        .iter()
        .find(|r| r.authority == j("TW") && r.home == j("TW"))
        .unwrap();
    assert_eq!(tw.plaintext_subjects + tw.ciphertext_subjects, 0);
    assert!(tw.grounds.is_empty(), "{tw:?}");
}

/// A preset is the ordinary rules it expands to: same exposure, same plan
/// digest, same legacy digest. Only the grounds reports cite differ.
#[test]
fn a_preset_plans_like_the_rules_it_expands_to() {
    let by_hand = parse(PINNED).unwrap();
    let preset = parse(&PINNED.replace(
        "authority = \"US\"\nover = \"headquarters\"",
        "preset = \"us-cloud-act\"",
    ))
    .unwrap();
    assert_ne!(preset.digest(), by_hand.digest(), "the text did change");
    assert_eq!(preset.plan_digest(), by_hand.plan_digest());
    assert_eq!(preset.legacy_plan_digest(), by_hand.legacy_plan_digest());
    assert!(preset.plans_job(&by_hand.plan_digest()));
    let labels: Vec<&str> = preset.reach.rules.iter().map(|r| r.label()).collect();
    assert_eq!(labels, ["territory", "us-cloud-act"]);

    // cn-national-intelligence is CN territory plus CN headquarters.
    let cn_by_hand = "[[reach]]\nauthority = \"CN\"\nover = \"territory\"\n\n[[reach]]\nauthority = \"CN\"\nover = \"headquarters\"\n";
    let cn_preset = "[[reach]]\npreset = \"cn-national-intelligence\"\n";
    let a = parse(&format!("{PINNED}\n{cn_by_hand}")).unwrap();
    let b = parse(&format!("{PINNED}\n{cn_preset}")).unwrap();
    assert_eq!(a.plan_digest(), b.plan_digest());
    assert_ne!(a.plan_digest(), by_hand.plan_digest(), "CN gained reach");
    let ru = parse(&format!("{PINNED}\n[[reach]]\npreset = \"ru-242-fz\"\n")).unwrap();
    assert_ne!(ru.plan_digest(), by_hand.plan_digest(), "RU gained reach");

    // A Member State narrows eu-gdpr-48 to itself.
    let de = parse(&format!(
        "{PINNED}\n[[reach]]\npreset = \"eu-gdpr-48\"\nauthority = \"DE\"\n"
    ))
    .unwrap();
    let de_by_hand = parse(&format!(
        "{PINNED}\n[[reach]]\nauthority = \"DE\"\nover = \"territory\"\n"
    ))
    .unwrap();
    assert_eq!(de.plan_digest(), de_by_hand.plan_digest());
    let last = de.reach.rules.last().unwrap();
    assert_eq!(last.authority, AuthoritySel::Some(vec![j("DE")]));
    assert_eq!(last.preset().map(|p| p.name), Some("eu-gdpr-48"));
    // The line of its `[[reach]]`, for `reach explain` to point at.
    let preset_line = line_of(de.source.text(), "preset = \"eu-gdpr-48\"");
    assert_eq!(last.line(), Some(preset_line - 1));
}

/// 1-based number of the last line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().rposition(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn reach_entries_are_validated_with_their_position() {
    let with = |entry: &str| format!("{PINNED}\n[[reach]]\n{entry}\n");
    // An unknown preset names the known ones, at the preset's value.
    let text = with("preset = \"cn-natsec\"");
    let e = parse(&text).unwrap_err();
    assert!(e.contains("unknown reach preset \"cn-natsec\""), "{e}");
    for name in [
        "us-cloud-act",
        "cn-national-intelligence",
        "ru-242-fz",
        "in-dpdp",
        "eu-gdpr-48",
    ] {
        assert!(e.contains(name), "{name} not listed: {e}");
    }
    assert_eq!(line_col(&e), (line_of(&text, "cn-natsec"), 10), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");

    // A preset gives its own grounds.
    let text = with("preset = \"us-cloud-act\"\nover = \"territory\"");
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains("over does not go with preset \"us-cloud-act\""),
        "{e}"
    );
    assert_eq!(
        line_col(&e),
        (line_of(&text, "over = \"territory\""), 8),
        "{e}"
    );

    // Its authority can only narrow it.
    let text = with("preset = \"us-cloud-act\"\nauthority = \"CN\"");
    let e = parse(&text).unwrap_err();
    assert!(
        e.contains("gives reach to US only: authority \"CN\""),
        "{e}"
    );
    let e = parse(&with("preset = \"eu-gdpr-48\"\nauthority = \"XX\"")).unwrap_err();
    assert!(e.contains("unknown jurisdiction \"XX\""), "{e}");

    // An entry needs one or the other.
    let e = parse(&with("authority = \"US\"")).unwrap_err();
    assert!(e.contains("needs authority and over, or a preset"), "{e}");
    assert!(e.contains("us-cloud-act"), "{e}");
    let e = parse(&with("preset = 7")).unwrap_err();
    assert!(e.starts_with("test.toml:"), "{e}");
}

// ---------- property tests ----------

const CODES: &[&str] = &["IN", "CN", "SG", "US", "TW", "DE"];

fn topology(regions: &[(usize, usize)]) -> Topology {
    Topology {
        operator: Operator {
            name: "op".into(),
            headquarters: j("CN"),
        },
        regions: regions
            .iter()
            .enumerate()
            .map(|(i, &(jur, hq))| Region {
                id: RegionId::from_str(&format!("r{i}")).unwrap(),
                jurisdiction: j(CODES[jur]),
                provider: "p".into(),
                provider_headquarters: j(CODES[hq]),
                store: "memory://".into(),
                storage_price_gb_month: 0.01 * (i + 1) as f64,
                egress_price_gb: 0.05,
            })
            .collect(),
        custodians: (0..2)
            .map(|i| Custodian {
                id: CustodianId::from_str(&format!("k{i}")).unwrap(),
                jurisdiction: j(CODES[i * 2]),
                headquarters: j(CODES[i * 3]),
                keyring: "memory://".into(),
            })
            .collect(),
    }
}

#[derive(Debug, Clone)]
struct RuleSpec {
    homes: Option<Vec<usize>>,
    allow: Option<Vec<Result<usize, usize>>>,
    deny: Vec<Result<usize, usize>>,
    copies: Option<u32>,
    distinct: bool,
    custodian: Option<usize>,
}

fn target(t: &Result<usize, usize>, n_regions: usize) -> Target {
    match t {
        Ok(jur) => Target::Jurisdictions {
            label: CODES[*jur].into(),
            members: vec![j(CODES[*jur])],
        },
        Err(r) => Target::Region(RegionId::from_str(&format!("r{}", r % n_regions)).unwrap()),
    }
}

fn policy(specs: &[RuleSpec], n_regions: usize) -> Policy {
    Policy {
        rules: specs
            .iter()
            .enumerate()
            .map(|(i, s)| Rule {
                name: format!("rule{i}"),
                homes: s
                    .homes
                    .as_ref()
                    .map(|h| h.iter().map(|&x| j(CODES[x])).collect()),
                categories: None,
                allow: s
                    .allow
                    .as_ref()
                    .map(|a| a.iter().map(|t| target(t, n_regions)).collect()),
                deny: s.deny.iter().map(|t| target(t, n_regions)).collect(),
                copies: s.copies,
                distinct_jurisdictions: Some(s.distinct),
                require_in: vec![],
                custodian: s
                    .custodian
                    .map(|k| CustodianId::from_str(&format!("k{k}")).unwrap()),
                prefer: Some(Prefer::Hash),
                span: 0..0,
            })
            .collect(),
    }
}

fn arb_target() -> impl Strategy<Value = Result<usize, usize>> {
    prop_oneof![(0..CODES.len()).prop_map(Ok), (0..8usize).prop_map(Err)]
}

fn arb_rule() -> impl Strategy<Value = RuleSpec> {
    (
        proptest::option::of(proptest::collection::vec(0..CODES.len(), 1..3)),
        proptest::option::of(proptest::collection::vec(arb_target(), 1..4)),
        proptest::collection::vec(arb_target(), 0..2),
        proptest::option::of(1u32..3),
        proptest::bool::weighted(0.2),
        proptest::option::of(0..2usize),
    )
        .prop_map(
            |(homes, allow, deny, copies, distinct, custodian)| RuleSpec {
                homes,
                allow,
                deny,
                copies,
                distinct,
                custodian,
            },
        )
}

fn arb_regions() -> impl Strategy<Value = Vec<(usize, usize)>> {
    proptest::collection::vec((0..CODES.len(), 0..CODES.len()), 2..7)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn deny_always_wins(regions in arb_regions(), rules in proptest::collection::vec(arb_rule(), 1..5), home in 0..CODES.len()) {
        let topo = topology(&regions);
        let pol = policy(&rules, regions.len());
        let req = pol.requirement(&topo, j(CODES[home]), "profile");
        for &i in &req.allowed {
            for rule in pol.matching(j(CODES[home]), "profile") {
                prop_assert!(!rule.deny.iter().any(|t| t.covers(&topo.regions[i])),
                    "region {} allowed although rule {} denies it", topo.regions[i].id, rule.name);
                if let Some(allow) = &rule.allow {
                    prop_assert!(allow.iter().any(|t| t.covers(&topo.regions[i])));
                }
            }
        }
        // And every region that no matching rule denies and every allow covers is allowed.
        for (i, r) in topo.regions.iter().enumerate() {
            let ok = pol.matching(j(CODES[home]), "profile").iter().all(|rule|
                !rule.deny.iter().any(|t| t.covers(r))
                && rule.allow.as_ref().is_none_or(|a| a.iter().any(|t| t.covers(r))));
            prop_assert_eq!(ok, req.allowed.contains(&i));
        }
    }

    #[test]
    fn placement_is_deterministic_and_valid(regions in arb_regions(), rules in proptest::collection::vec(arb_rule(), 1..4),
                                             token in "[0-9a-f]{16}", home in 0..CODES.len()) {
        let topo = topology(&regions);
        let pol = policy(&rules, regions.len());
        let req = pol.requirement(&topo, j(CODES[home]), "media");
        let a = placement::place(&token, "media", &req, &topo, None);
        let b = placement::place(&token, "media", &req, &topo, None);
        prop_assert_eq!(&a, &b);
        if let Ok(p) = a {
            prop_assert!(placement::is_valid(&p, &req, &topo));
        }
    }

    #[test]
    fn a_rule_change_moves_only_invalid_pairs(regions in arb_regions(),
                                              old in proptest::collection::vec(arb_rule(), 1..4),
                                              new in proptest::collection::vec(arb_rule(), 1..4),
                                              tokens in proptest::collection::vec("[0-9a-f]{16}", 1..20),
                                              home in 0..CODES.len()) {
        let topo = topology(&regions);
        let p_old = policy(&old, regions.len());
        let p_new = policy(&new, regions.len());
        let h = j(CODES[home]);
        let r_old = p_old.requirement(&topo, h, "profile");
        let r_new = p_new.requirement(&topo, h, "profile");
        for token in &tokens {
            let Ok(cur) = placement::place(token, "profile", &r_old, &topo, None) else { continue };
            let Ok(next) = placement::place(token, "profile", &r_new, &topo, Some(&cur)) else { continue };
            prop_assert!(placement::is_valid(&next, &r_new, &topo));
            if placement::is_valid(&cur, &r_new, &topo) {
                prop_assert_eq!(&next, &cur, "a still-valid placement moved");
            } else {
                // Every copy that is still allowed and fits is kept: no copy
                // moves that did not have to.
                let kept = cur.iter().filter(|r| next.contains(r)).count();
                let keepable = cur.iter().filter(|r| r_new.allowed.contains(&topo.region_index(r.as_str()).unwrap())).count();
                if !r_new.distinct_jurisdictions && r_new.require_in.is_empty() {
                    prop_assert_eq!(kept, keepable.min(r_new.copies as usize));
                }
            }
        }
    }

    #[test]
    fn exposure_matches_brute_force(regions in arb_regions(),
                                    reach in proptest::collection::vec((proptest::option::of(0..CODES.len()), any::<bool>()), 0..4),
                                    copies in proptest::collection::vec(0..7usize, 1..3),
                                    custodian in 0..2usize, authority in 0..CODES.len()) {
        let topo = topology(&regions);
        let reach = Reach { rules: reach.iter().map(|(a, terr)| ReachRule {
            authority: match a { None => AuthoritySel::Any, Some(x) => AuthoritySel::Some(vec![j(CODES[*x])]) },
            territory: *terr,
            headquarters: !*terr,
            origin: exposure::Origin::Assumed,
        }).collect() };
        let a = j(CODES[authority]);
        let copy_regions: Vec<&Region> = copies.iter().map(|&c| &topo.regions[c % topo.regions.len()]).collect();
        let k = &topo.custodians[custodian];
        let got = exposure::placement_level(reach.grounds(a), a, &copy_regions, Some(k), &topo.operator);

        // The specification's definition, evaluated rule by rule.
        let applies = |r: &ReachRule| match &r.authority { AuthoritySel::Any => true, AuthoritySel::Some(l) => l.contains(&a) };
        let reaches_copy = copy_regions.iter().any(|reg| reach.rules.iter().any(|r| applies(r) && (
            (r.territory && reg.jurisdiction == a) ||
            (r.headquarters && (reg.provider_headquarters == a || topo.operator.headquarters == a)))));
        let reaches_key = reach.rules.iter().any(|r| applies(r) && (
            (r.territory && k.jurisdiction == a) || (r.headquarters && k.headquarters == a)));
        let want = match (reaches_copy, reaches_key) {
            (true, true) => Level::Plaintext,
            (true, false) => Level::Ciphertext,
            _ => Level::None,
        };
        prop_assert_eq!(got, want);
        let _ = Grounds::default();
    }
}

/// A migration job carries out one plan: edits that cannot change where
/// data goes keep its digest, every other kind of edit changes it.
#[test]
fn the_plan_digest_follows_placements_not_text() {
    let base = parse(PINNED).unwrap();
    assert_eq!(base.plan_digest(), parse(PINNED).unwrap().plan_digest());
    let same_plan = [
        format!("# moved the stores; a comment\n\n{PINNED}"),
        PINNED.replace(
            "file://data/regions/cn-north",
            "file:///mnt/new-disk/cn-north",
        ),
        PINNED.replace("file://data/keys/in-kms", "file://elsewhere/in-kms"),
        // Names explain decisions; they make none.
        PINNED.replace("\"india-not-in-china\"", "\"in-outside-cn\""),
        PINNED.replace("\"Example Phones\"", "\"Example Phones Ltd\""),
        PINNED.replace("provider = \"in-cloud\"", "provider = \"in-cloud-2\""),
    ];
    for text in &same_plan {
        let c = parse(text).unwrap();
        assert_ne!(c.digest(), base.digest(), "the text did change");
        assert_eq!(c.plan_digest(), base.plan_digest(), "{text}");
        assert!(c.plans_job(&base.plan_digest()));
    }
    let other_plan = [
        PINNED.replace(r#"allow = ["SG", "US"]"#, r#"allow = ["SG"]"#),
        PINNED.replace(
            "storage_price_gb_month = 0.025",
            "storage_price_gb_month = 0.026",
        ),
        PINNED.replace("authority = \"US\"", "authority = \"SG\""),
        PINNED.replace(
            "jurisdiction = \"IN\"\nheadquarters = \"IN\"",
            "jurisdiction = \"IN\"\nheadquarters = \"US\"",
        ),
        PINNED.replace("egress_price_gb = 0.07", "egress_price_gb = 0.071"),
        // The last matching rule that names a custodian decides: with the
        // default rule last, Indian users' keys would go to operator-kms.
        swap_rules(PINNED, "default", "india-not-in-china"),
        V1.to_string(),
    ];
    for text in &other_plan {
        assert_ne!(text.as_str(), PINNED);
        let c = parse(text).unwrap();
        assert_ne!(c.plan_digest(), base.plan_digest(), "{text}");
        assert!(!c.plans_job(&base.plan_digest()));
    }
    // Jobs recorded with the text digest, or with the unversioned digest
    // of the `Debug` text, stay resumable by the same config.
    assert!(base.plans_job(&base.digest()));
    assert!(base.plans_job(&base.legacy_plan_digest()));
    let other = parse(&PINNED.replace("egress_price_gb = 0.07", "egress_price_gb = 0.5")).unwrap();
    assert!(!other.plans_job(&base.legacy_plan_digest()));
    // A versioned digest is only ever compared as one.
    assert!(!base.plans_job(&format!("plan2:{}", base.legacy_plan_digest())));
}

/// The plan digest is written field by field, never through a format
/// that a new field, a dependency or a compiler could change: an open job
/// recorded by one release must resume under the next. This value may
/// only change together with the encoding's version.
#[test]
fn the_plan_digest_is_pinned() {
    let digest = parse(PINNED).unwrap().plan_digest();
    assert_eq!(digest, "plan2:d27848387ce105cc");
}

/// `text` with the `[[rule]]` blocks named `a` and `b` swapped (neither
/// may be the last, which runs on into the reach entries).
fn swap_rules(text: &str, a: &str, b: &str) -> String {
    let mut blocks: Vec<&str> = text.split("[[rule]]").collect();
    let find = |name: &str| {
        blocks
            .iter()
            .position(|blk| blk.contains(&format!("name = \"{name}\"")))
            .unwrap()
    };
    let (i, j) = (find(a), find(b));
    assert!(i.max(j) < blocks.len() - 1, "not the last rule");
    blocks.swap(i, j);
    blocks.join("[[rule]]")
}

/// A process acts on an applied version through its own stores and
/// keyrings; a region it has beyond the version's is left out of every
/// decision, and one the version names that it lacks, or describes
/// otherwise, is refused by name.
#[test]
fn a_process_adopts_a_version_through_its_own_stores_and_refuses_what_it_lacks() {
    let extra = "\n[[region]]\nid = \"eu-paris\"\njurisdiction = \"FR\"\nprovider = \"acme\"\n\
                 provider_headquarters = \"FR\"\nstore = \"file://data/regions/eu-paris\"\n\
                 storage_price_gb_month = 0.02\negress_price_gb = 0.05\n";
    let version = Config::parse("v.toml", V2, Path::new("/elsewhere")).unwrap();

    // More regions here than in the version: adopted, deciding exactly as
    // the version does, through this process's stores.
    let mine = parse(&format!("{V2}{extra}")).unwrap();
    let adopted = mine.adopt(&version).unwrap();
    assert_eq!(adopted.plan_digest(), version.plan_digest());
    assert!(adopted.topology.region("eu-paris").is_none());
    assert_eq!(
        adopted.topology.regions[0].store,
        "file:///base/data/regions/cn-north"
    );
    assert!(
        adopted.topology.custodians[1]
            .keyring
            .starts_with("file:///base/")
    );

    // A region the version names that this process lacks: refused by name.
    let wider = Config::parse("v.toml", &format!("{V2}{extra}"), Path::new("/x")).unwrap();
    let err = parse(V2).unwrap().adopt(&wider).unwrap_err();
    assert!(err.contains("region eu-paris is missing"), "{err}");

    // A custodian described otherwise: refused by name.
    let moved = V2.replacen(
        "id = \"in-kms\"\njurisdiction = \"IN\"",
        "id = \"in-kms\"\njurisdiction = \"SG\"",
        1,
    );
    assert_ne!(moved, V2);
    let err = parse(&moved).unwrap().adopt(&version).unwrap_err();
    assert!(err.contains("custodian in-kms"), "{err}");
}

#[test]
fn keyring_urls_name_a_folder_or_a_key_manager() {
    let with = |url: &str| V1.replace("file://data/keys/in-kms", url);
    for good in [
        "aws-kms://alias/in-kms?region=ap-south-1",
        "aws-kms://arn:aws:kms:ap-south-1:1:key/k?region=ap-south-1&endpoint=http://127.0.0.1:5000",
        "vault://127.0.0.1:8200/transit/in-kms",
        "vaults://vault.example:8200/team/transit/in-kms",
    ] {
        let c = parse(&with(good)).unwrap_or_else(|e| panic!("{good}: {e}"));
        assert!(c.topology.custodians.iter().any(|k| k.keyring == good));
    }
    for (bad, says) in [
        ("aws-kms://?region=ap-south-1", "names no key"),
        ("aws-kms://alias/in-kms", "needs ?region="),
        (
            "aws-kms://alias/in-kms?region=x&colour=blue",
            "bad parameter",
        ),
        (
            "vault://127.0.0.1/transit/in-kms",
            "vault://HOST:PORT/MOUNT/KEY",
        ),
        (
            "vault://127.0.0.1:8200/in-kms",
            "vault://HOST:PORT/MOUNT/KEY",
        ),
        ("s3://keys", "unsupported scheme"),
        ("gcp-kms://k", "unsupported scheme"),
    ] {
        let e = parse(&with(bad)).expect_err(bad);
        assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
    }
}
