//! The plan: current placements against the desired policy.
//!
//! [`Planner`] is fed the current placements one at a time, ordered by
//! subject token, and keeps only counters: memory does not grow with the
//! number of subjects. It returns each needed move as it finds it, so the
//! caller decides whether to print, store or count it, or, when the caller
//! only counts ([`Planner::observe_unlisted`]), builds no move at all.
//!
//! The counters are a [`Tally`]: planners fed disjoint sets of subjects
//! (ranges of tokens, on several cores) merge their tallies into the one a
//! single planner would have counted. Every total is a sum of integers
//! until the end, costs included (they are priced once, from the bytes per
//! region and per egress price), so the summary does not depend on how the
//! subjects were split nor on the order the tallies merge in.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::Config;
use crate::cost;
use crate::exposure::{self, Grounds, Level};
use crate::ids::RegionId;
use crate::jurisdiction::Jurisdiction;
use crate::placement::{self, Unsatisfiable};
use crate::policy::Requirement;
use crate::topology::Region;

/// One current placement, as the catalog reports it.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub token: &'a str,
    pub home: Jurisdiction,
    pub category: &'a str,
    pub regions: &'a [RegionId],
    pub custodian: &'a str,
    pub objects: u64,
    pub bytes: u64,
}

/// Why a (subject, category) must move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// A copy sits in a region the policy no longer allows.
    Forbidden,
    /// The number or spread of copies no longer meets the policy.
    Replication,
    /// Only the key custodian changes: the data key is re-wrapped.
    Custodian,
}

/// One unit of a migration.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Move {
    pub token: String,
    /// The subject's id, when the caller could recover it (it holds the
    /// deployment's secrets); the planner itself leaves it `None`.
    pub subject: Option<String>,
    pub home: Jurisdiction,
    pub category: String,
    pub from: Vec<RegionId>,
    pub to: Vec<RegionId>,
    pub custodian_from: String,
    pub custodian_to: String,
    pub objects: u64,
    pub bytes: u64,
    pub egress_cost: f64,
    pub reason: MoveReason,
}

/// Subjects exposed to one authority, per home.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExposureRow {
    pub authority: Jurisdiction,
    pub home: Jurisdiction,
    pub subjects: u64,
    pub plaintext_subjects: u64,
    pub ciphertext_subjects: u64,
    /// The reach rules that put these subjects within the authority's
    /// reach, by label (a preset's name, or the ground of a hand-written
    /// rule): what a report cites. Empty when nothing is reached.
    pub grounds: Vec<String>,
}

/// Stored bytes and monthly cost of one region.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegionCost {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub region: RegionId,
    pub jurisdiction: Jurisdiction,
    pub bytes: u64,
    pub monthly_cost: f64,
}

/// Plan totals.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    /// Subjects with at least one move.
    pub subjects: u64,
    /// Units ((subject, category) pairs) that move or get a new custodian.
    pub units: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Bytes copied across regions (a unit with two new regions counts twice).
    pub bytes_transferred: u64,
    pub egress_cost: f64,
    pub monthly_cost_before: f64,
    pub monthly_cost_after: f64,
    /// Units that keep their regions and only change custodian.
    pub rewraps: u64,
}

/// What the whole plan comes to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanSummary {
    pub totals: Totals,
    pub exposure_before: Vec<ExposureRow>,
    pub exposure_after: Vec<ExposureRow>,
    pub cost_before: Vec<RegionCost>,
    pub cost_after: Vec<RegionCost>,
    /// Subjects seen (those holding data).
    pub subjects_seen: u64,
    pub placements_seen: u64,
    /// How long the moves would take; set by the caller that knows the
    /// copy rates (the engine), `None` from the planner alone.
    pub duration: Option<crate::duration::Estimate>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    subjects: u64,
    plaintext: u64,
    ciphertext: u64,
    /// The grounds that reached any of them.
    used: Grounds,
}

struct SubjectState {
    token: String,
    home: Jurisdiction,
    before: Vec<Level>,
    after: Vec<Level>,
    /// Per authority, the grounds that reached the subject's placements.
    used_before: Vec<Grounds>,
    used_after: Vec<Grounds>,
    moved: bool,
}

/// Streams current placements against a desired config.
#[derive(Debug)]
pub struct Planner<'c> {
    current: &'c Config,
    desired: &'c Config,
    requirements: HashMap<String, HashMap<Jurisdiction, Arc<Requirement>>>,
    authorities: Vec<(Jurisdiction, Grounds, Grounds)>,
    subject: Option<SubjectStateBox>,
    tally: Tally,
    /// [`Planner::side`]'s answers, by custodian then regions.
    sides_before: SideCache<'c>,
    sides_after: SideCache<'c>,
}

/// What a planner has counted so far. Tallies of planners that saw
/// disjoint sets of subjects [`merge`](Tally::merge) into the tally of one
/// planner that saw them all; [`Tally::summary`] prices it.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    before: BTreeMap<(Jurisdiction, Jurisdiction), CountsBox>,
    after: BTreeMap<(Jurisdiction, Jurisdiction), CountsBox>,
    bytes_before: BTreeMap<RegionId, u64>,
    bytes_after: BTreeMap<RegionId, u64>,
    /// Bytes times new copies, by the egress price (its bits) they are
    /// sent at.
    egress: BTreeMap<u64, u128>,
    /// The integer totals; the costs are priced by [`Tally::summary`].
    totals: Totals,
    subjects_seen: u64,
    placements_seen: u64,
}

impl Tally {
    /// Adds `other`'s counts. The two must have seen different subjects: a
    /// subject split across tallies would be counted twice.
    pub fn merge(&mut self, other: Tally) {
        for (mine, theirs) in [
            (&mut self.before, other.before),
            (&mut self.after, other.after),
        ] {
            for (key, c) in theirs {
                let m = &mut mine.entry(key).or_default().0;
                m.subjects += c.0.subjects;
                m.plaintext += c.0.plaintext;
                m.ciphertext += c.0.ciphertext;
                m.used = m.used.union(c.0.used);
            }
        }
        for (mine, theirs) in [
            (&mut self.bytes_before, other.bytes_before),
            (&mut self.bytes_after, other.bytes_after),
        ] {
            for (region, bytes) in theirs {
                *mine.entry(region).or_default() += bytes;
            }
        }
        for (price, units) in other.egress {
            *self.egress.entry(price).or_default() += units;
        }
        let (t, o) = (&mut self.totals, other.totals);
        t.subjects += o.subjects;
        t.units += o.units;
        t.objects += o.objects;
        t.bytes += o.bytes;
        t.bytes_transferred += o.bytes_transferred;
        t.rewraps += o.rewraps;
        self.subjects_seen += other.subjects_seen;
        self.placements_seen += other.placements_seen;
    }

    /// Placements counted so far.
    pub fn placements_seen(&self) -> u64 {
        self.placements_seen
    }

    /// The summary of a plan of `desired` over placements made under
    /// `current` (the configs the planners were made with).
    pub fn summary(self, current: &Config, desired: &Config) -> PlanSummary {
        let rows = |m: &BTreeMap<(Jurisdiction, Jurisdiction), CountsBox>, cfg: &Config| {
            m.iter()
                .map(|((a, h), c)| ExposureRow {
                    authority: *a,
                    home: *h,
                    subjects: c.0.subjects,
                    plaintext_subjects: c.0.plaintext,
                    ciphertext_subjects: c.0.ciphertext,
                    grounds: cfg.reach.cite_labels(*a, c.0.used),
                })
                .collect()
        };
        let costs = |m: &BTreeMap<RegionId, u64>, cfg: &Config, other: &Config| {
            m.iter()
                .filter_map(|(id, bytes)| {
                    let r = cfg
                        .topology
                        .region(id.as_str())
                        .or_else(|| other.topology.region(id.as_str()))?;
                    Some(RegionCost {
                        region: id.clone(),
                        jurisdiction: r.jurisdiction,
                        bytes: *bytes,
                        monthly_cost: cost::monthly(*bytes, r),
                    })
                })
                .collect::<Vec<_>>()
        };
        let cost_before = costs(&self.bytes_before, current, desired);
        let cost_after = costs(&self.bytes_after, desired, current);
        let mut totals = self.totals;
        totals.monthly_cost_before = cost_before.iter().map(|c| c.monthly_cost).sum();
        totals.monthly_cost_after = cost_after.iter().map(|c| c.monthly_cost).sum();
        totals.egress_cost = self
            .egress
            .iter()
            .map(|(price, units)| *units as f64 / cost::GB * f64::from_bits(*price))
            .sum();
        PlanSummary {
            exposure_before: rows(&self.before, current),
            exposure_after: rows(&self.after, desired),
            cost_before,
            cost_after,
            totals,
            subjects_seen: self.subjects_seen,
            placements_seen: self.placements_seen,
            duration: None,
        }
    }
}

/// What copies in a set of regions under one custodian come to.
struct Side<'c> {
    regions: Vec<&'c Region>,
    /// Per authority (in `Planner::authorities` order): its level and the
    /// grounds that reach.
    reach: Vec<(Level, Grounds)>,
}

#[derive(Default)]
struct SideCache<'c>(HashMap<String, HashMap<Vec<RegionId>, Arc<Side<'c>>>>);

impl<'c> std::ops::Deref for SideCache<'c> {
    type Target = HashMap<String, HashMap<Vec<RegionId>, Arc<Side<'c>>>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for SideCache<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl std::fmt::Debug for SideCache<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} custodians", self.0.len())
    }
}

/// Adds `bytes` to `region`'s count, allocating its key only the first time.
fn add_bytes(map: &mut BTreeMap<RegionId, u64>, region: &RegionId, bytes: u64) {
    match map.get_mut(region) {
        Some(n) => *n += bytes,
        None => {
            map.insert(region.clone(), bytes);
        }
    }
}

// Wrappers so the Debug derive stays cheap and private fields stay private.
struct SubjectStateBox(SubjectState);
impl std::fmt::Debug for SubjectStateBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectState")
    }
}
#[derive(Default, Clone, Copy)]
struct CountsBox(Counts);
impl std::fmt::Debug for CountsBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.0.subjects, self.0.plaintext, self.0.ciphertext
        )
    }
}

impl<'c> Planner<'c> {
    /// A planner of `desired` over placements made under `current`. For
    /// reports on the present alone, pass the same config twice.
    pub fn new(current: &'c Config, desired: &'c Config) -> Self {
        let mut auths: Vec<Jurisdiction> = current.reach.authorities(&current.topology);
        auths.extend(desired.reach.authorities(&desired.topology));
        auths.sort();
        auths.dedup();
        let authorities = auths
            .into_iter()
            .map(|a| (a, current.reach.grounds(a), desired.reach.grounds(a)))
            .collect();
        Planner {
            current,
            desired,
            requirements: HashMap::new(),
            authorities,
            subject: None,
            tally: Tally::default(),
            sides_before: SideCache::default(),
            sides_after: SideCache::default(),
        }
    }

    /// The authorities the exposure tables cover.
    pub fn authorities(&self) -> Vec<Jurisdiction> {
        self.authorities.iter().map(|a| a.0).collect()
    }

    fn region_before(&self, id: &RegionId) -> Option<&'c Region> {
        self.current
            .topology
            .region(id.as_str())
            .or_else(|| self.desired.topology.region(id.as_str()))
    }

    /// The desired requirement of a (home, category), cached.
    pub fn requirement(&mut self, home: Jurisdiction, category: &str) -> Arc<Requirement> {
        // Looked up by borrowed category first: no allocation per row.
        if let Some(r) = self.requirements.get(category).and_then(|m| m.get(&home)) {
            return r.clone();
        }
        let desired = self.desired;
        let r = Arc::new(
            desired
                .policy
                .requirement(&desired.topology, home, category),
        );
        self.requirements
            .entry(category.to_string())
            .or_default()
            .insert(home, r.clone());
        r
    }

    /// Observes one current placement; returns its move, if it needs one.
    /// Placements must come grouped by subject token.
    ///
    /// What depends only on a set of regions and a custodian (the regions'
    /// entries in the topology, every authority's reach over them) is
    /// computed once per distinct (regions, custodian) and reused: millions
    /// of placements share a few of them.
    pub fn observe(&mut self, cur: Current<'_>) -> Result<Option<Move>, Unsatisfiable> {
        self.visit(cur, true)
    }

    /// Observes one current placement as [`observe`](Planner::observe)
    /// does, counting its move without building it; returns whether it
    /// moves.
    pub fn observe_unlisted(&mut self, cur: Current<'_>) -> Result<bool, Unsatisfiable> {
        let counted = self.tally.totals.units;
        self.visit(cur, false)?;
        Ok(self.tally.totals.units != counted)
    }

    fn visit(&mut self, cur: Current<'_>, list: bool) -> Result<Option<Move>, Unsatisfiable> {
        let desired = self.desired;
        let req = self.requirement(cur.home, cur.category);
        // A valid placement stays as it is (see `placement::place`).
        let to: Cow<'_, [RegionId]> = if placement::is_valid(cur.regions, &req, &desired.topology) {
            Cow::Borrowed(cur.regions)
        } else {
            Cow::Owned(placement::place(
                cur.token,
                cur.category,
                &req,
                &desired.topology,
                Some(cur.regions),
            )?)
        };
        let custodian_to = req.custodian.as_ref().map_or("", |c| c.as_str());

        if self.subject.as_ref().is_none_or(|s| s.0.token != cur.token) {
            self.flush_subject();
            self.subject = Some(SubjectStateBox(SubjectState {
                token: cur.token.to_string(),
                home: cur.home,
                before: vec![Level::None; self.authorities.len()],
                after: vec![Level::None; self.authorities.len()],
                used_before: vec![Grounds::default(); self.authorities.len()],
                used_after: vec![Grounds::default(); self.authorities.len()],
                moved: false,
            }));
            self.tally.subjects_seen += 1;
        }
        self.tally.placements_seen += 1;

        let before = self.side(false, cur.regions, cur.custodian);
        let after = self.side(true, &to, custodian_to);
        if let Some(s) = self.subject.as_mut() {
            for (i, ((lb, ub), (la, ua))) in before.reach.iter().zip(&after.reach).enumerate() {
                s.0.before[i] = s.0.before[i].max(*lb);
                s.0.after[i] = s.0.after[i].max(*la);
                s.0.used_before[i] = s.0.used_before[i].union(*ub);
                s.0.used_after[i] = s.0.used_after[i].union(*ua);
            }
        }
        for r in &before.regions {
            add_bytes(&mut self.tally.bytes_before, &r.id, cur.bytes);
        }
        for r in &after.regions {
            add_bytes(&mut self.tally.bytes_after, &r.id, cur.bytes);
        }

        let same_regions =
            to.len() == cur.regions.len() && to.iter().all(|r| cur.regions.contains(r));
        if same_regions && custodian_to == cur.custodian {
            return Ok(None);
        }
        let reason = if same_regions {
            MoveReason::Custodian
        } else if cur
            .regions
            .iter()
            .any(|r| !req.allows(&desired.topology, r.as_str()))
        {
            MoveReason::Forbidden
        } else {
            MoveReason::Replication
        };
        let egress = cost::move_egress_parts(&before.regions, &after.regions);
        if let Some((new_destinations, price)) = egress {
            *self.tally.egress.entry(price.to_bits()).or_default() +=
                u128::from(new_destinations) * u128::from(cur.bytes);
        }
        let new_copies = to.iter().filter(|r| !cur.regions.contains(r)).count() as u64;
        let totals = &mut self.tally.totals;
        totals.units += 1;
        totals.objects += cur.objects;
        totals.bytes += cur.bytes;
        totals.bytes_transferred += new_copies * cur.bytes;
        if same_regions {
            totals.rewraps += 1;
        }
        if let Some(s) = self.subject.as_mut() {
            s.0.moved = true;
        }
        if !list {
            return Ok(None);
        }
        let egress_cost = cost::move_egress(cur.bytes, &before.regions, &after.regions);
        Ok(Some(Move {
            token: cur.token.to_string(),
            subject: None,
            home: cur.home,
            category: cur.category.to_string(),
            from: cur.regions.to_vec(),
            to: to.into_owned(),
            custodian_from: cur.custodian.to_string(),
            custodian_to: custodian_to.to_string(),
            objects: cur.objects,
            bytes: cur.bytes,
            egress_cost,
            reason,
        }))
    }

    /// The regions (as the topology has them; unknown ids left out) and
    /// every authority's reach over copies in `regions` under `custodian`,
    /// before the change (`after` false: the current config's view) or
    /// after it, computed once per distinct (regions, custodian).
    fn side(&mut self, after: bool, regions: &[RegionId], custodian: &str) -> Arc<Side<'c>> {
        let cache = if after {
            &self.sides_after
        } else {
            &self.sides_before
        };
        if let Some(side) = cache.get(custodian).and_then(|m| m.get(regions)) {
            return side.clone();
        }
        let (current, desired) = (self.current, self.desired);
        let found: Vec<&'c Region> = if after {
            regions
                .iter()
                .filter_map(|r| desired.topology.region(r.as_str()))
                .collect()
        } else {
            regions
                .iter()
                .filter_map(|r| self.region_before(r))
                .collect()
        };
        let (cfg, key) = if after {
            (desired, desired.topology.custodian(custodian))
        } else {
            (
                current,
                current
                    .topology
                    .custodian(custodian)
                    .or_else(|| desired.topology.custodian(custodian)),
            )
        };
        let reach = self
            .authorities
            .iter()
            .map(|(a, g_before, g_after)| {
                let g = if after { *g_after } else { *g_before };
                exposure::placement_reach(g, *a, &found, key, &cfg.topology.operator)
            })
            .collect();
        let side = Arc::new(Side {
            regions: found,
            reach,
        });
        let cache = if after {
            &mut self.sides_after
        } else {
            &mut self.sides_before
        };
        cache
            .entry(custodian.to_string())
            .or_default()
            .insert(regions.to_vec(), side.clone());
        side
    }

    fn flush_subject(&mut self) {
        let Some(SubjectStateBox(s)) = self.subject.take() else {
            return;
        };
        let tally = &mut self.tally;
        if s.moved {
            tally.totals.subjects += 1;
        }
        for (i, (a, _, _)) in self.authorities.iter().enumerate() {
            for (map, level, used) in [
                (&mut tally.before, s.before[i], s.used_before[i]),
                (&mut tally.after, s.after[i], s.used_after[i]),
            ] {
                let c = &mut map.entry((*a, s.home)).or_default().0;
                c.subjects += 1;
                c.used = c.used.union(used);
                match level {
                    Level::Plaintext => c.plaintext += 1,
                    Level::Ciphertext => c.ciphertext += 1,
                    Level::None => {}
                }
            }
        }
    }

    /// Ends the stream and returns what was counted, to merge with other
    /// planners' tallies (see [`Tally`]).
    pub fn into_tally(mut self) -> Tally {
        self.flush_subject();
        self.tally
    }

    /// Ends the stream and returns the totals.
    pub fn finish(self) -> PlanSummary {
        let (current, desired) = (self.current, self.desired);
        self.into_tally().summary(current, desired)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The planner against the one it replaced (everything computed per
    //! placement), on random placements over the demo's policies.
    use proptest::prelude::*;

    use super::*;

    impl<'c> Planner<'c> {
        fn observe_former(&mut self, cur: Current<'_>) -> Result<Option<Move>, Unsatisfiable> {
            let desired = self.desired;
            let req = self.requirement(cur.home, cur.category);
            let to = placement::place(
                cur.token,
                cur.category,
                &req,
                &desired.topology,
                Some(cur.regions),
            )?;
            let custodian_to = req
                .custodian
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default();

            if self.subject.as_ref().is_none_or(|s| s.0.token != cur.token) {
                self.flush_subject();
                self.subject = Some(SubjectStateBox(SubjectState {
                    token: cur.token.to_string(),
                    home: cur.home,
                    before: vec![Level::None; self.authorities.len()],
                    after: vec![Level::None; self.authorities.len()],
                    used_before: vec![Grounds::default(); self.authorities.len()],
                    used_after: vec![Grounds::default(); self.authorities.len()],
                    moved: false,
                }));
                self.tally.subjects_seen += 1;
            }
            self.tally.placements_seen += 1;

            let from_regions: Vec<&Region> = cur
                .regions
                .iter()
                .filter_map(|r| self.region_before(r))
                .collect();
            let to_regions: Vec<&Region> = to
                .iter()
                .filter_map(|r| desired.topology.region(r.as_str()))
                .collect();
            let k_before = self
                .current
                .topology
                .custodian(cur.custodian)
                .or_else(|| desired.topology.custodian(cur.custodian));
            let k_after = desired.topology.custodian(&custodian_to);

            for (i, (a, g_before, g_after)) in self.authorities.iter().enumerate() {
                let (lb, ub) = exposure::placement_reach(
                    *g_before,
                    *a,
                    &from_regions,
                    k_before,
                    &self.current.topology.operator,
                );
                let (la, ua) = exposure::placement_reach(
                    *g_after,
                    *a,
                    &to_regions,
                    k_after,
                    &desired.topology.operator,
                );
                if let Some(s) = self.subject.as_mut() {
                    s.0.before[i] = s.0.before[i].max(lb);
                    s.0.after[i] = s.0.after[i].max(la);
                    s.0.used_before[i] = s.0.used_before[i].union(ub);
                    s.0.used_after[i] = s.0.used_after[i].union(ua);
                }
            }
            for r in &from_regions {
                *self.tally.bytes_before.entry(r.id.clone()).or_default() += cur.bytes;
                self.tally.totals.monthly_cost_before += cost::monthly(cur.bytes, r);
            }
            for r in &to_regions {
                *self.tally.bytes_after.entry(r.id.clone()).or_default() += cur.bytes;
                self.tally.totals.monthly_cost_after += cost::monthly(cur.bytes, r);
            }

            let same_regions =
                to.len() == cur.regions.len() && to.iter().all(|r| cur.regions.contains(r));
            if same_regions && custodian_to == cur.custodian {
                return Ok(None);
            }
            let reason = if same_regions {
                MoveReason::Custodian
            } else if cur
                .regions
                .iter()
                .any(|r| !req.allows(&desired.topology, r.as_str()))
            {
                MoveReason::Forbidden
            } else {
                MoveReason::Replication
            };
            let egress_cost = cost::move_egress(cur.bytes, &from_regions, &to_regions);
            let new_copies = to.iter().filter(|r| !cur.regions.contains(r)).count() as u64;
            // The former planner summed the costs row by row, in floats.
            let totals = &mut self.tally.totals;
            totals.units += 1;
            totals.objects += cur.objects;
            totals.bytes += cur.bytes;
            totals.bytes_transferred += new_copies * cur.bytes;
            totals.egress_cost += egress_cost;
            if same_regions {
                totals.rewraps += 1;
            }
            if let Some(s) = self.subject.as_mut() {
                s.0.moved = true;
            }
            Ok(Some(Move {
                token: cur.token.to_string(),
                subject: None,
                home: cur.home,
                category: cur.category.to_string(),
                from: cur.regions.to_vec(),
                to,
                custodian_from: cur.custodian.to_string(),
                custodian_to,
                objects: cur.objects,
                bytes: cur.bytes,
                egress_cost,
                reason,
            }))
        }
    }

    const V1: &str = include_str!("../../../examples/demo-v1.toml");
    const V2: &str = include_str!("../../../examples/demo-v2.toml");
    const HOMES: [&str; 5] = ["CN", "IN", "TW", "SG", "US"];
    const CATEGORIES: [&str; 3] = ["profile", "payment", "other"];
    const REGIONS: [&str; 6] = [
        "cn-north",
        "aws-ap-southeast-1",
        "aws-us-east-1",
        "in-mumbai",
        "tw-taipei",
        "gone",
    ];
    const CUSTODIANS: [&str; 3] = ["operator-kms", "in-kms", "nobody"];

    type Row = (u8, usize, usize, Vec<usize>, usize, u64, u64);

    fn row() -> impl Strategy<Value = Row> {
        (
            0u8..40,
            0..HOMES.len(),
            0..CATEGORIES.len(),
            proptest::collection::vec(0..REGIONS.len(), 0..4),
            0..CUSTODIANS.len(),
            0u64..5,
            0u64..1_000_000_000,
        )
    }

    type Planned = (Vec<Result<Option<Move>, Unsatisfiable>>, PlanSummary);

    /// A row as the planner sees it: token, home, category, regions,
    /// custodian, objects, bytes.
    type Placed = (
        String,
        Jurisdiction,
        &'static str,
        Vec<RegionId>,
        &'static str,
        u64,
        u64,
    );

    /// The rows as `Current`s, grouped by token as the catalog streams them.
    fn placements(rows: &[Row]) -> Vec<Placed> {
        let mut rows = rows.to_vec();
        rows.sort_by_key(|r| (r.0, r.2));
        rows.iter()
            .map(|(t, h, c, regions, k, objects, bytes)| {
                (
                    format!("{t:02x}{:014x}", u64::from(*t) * 7919),
                    HOMES[*h].parse().unwrap(),
                    CATEGORIES[*c],
                    regions
                        .iter()
                        .map(|&i| REGIONS[i].parse().unwrap())
                        .collect(),
                    CUSTODIANS[*k],
                    *objects,
                    *bytes,
                )
            })
            .collect()
    }

    fn run(current: &Config, desired: &Config, rows: &[Row], former: bool) -> Planned {
        let mut planner = Planner::new(current, desired);
        let mut out = Vec::new();
        for (token, home, category, regions, custodian, objects, bytes) in &placements(rows) {
            let cur = Current {
                token,
                home: *home,
                category,
                regions,
                custodian,
                objects: *objects,
                bytes: *bytes,
            };
            out.push(if former {
                planner.observe_former(cur)
            } else {
                planner.observe(cur)
            });
        }
        if !former {
            return (out, planner.finish());
        }
        let tally = planner.into_tally();
        let floats = tally.totals.clone();
        let mut summary = tally.summary(current, desired);
        summary.totals.monthly_cost_before = floats.monthly_cost_before;
        summary.totals.monthly_cost_after = floats.monthly_cost_after;
        summary.totals.egress_cost = floats.egress_cost;
        (out, summary)
    }

    /// The rows planned by one planner per part, the parts split between
    /// tokens at `cuts`, their tallies merged in reverse order.
    fn run_split(
        current: &Config,
        desired: &Config,
        rows: &[Row],
        cuts: &[u8],
        unlisted: bool,
    ) -> (u64, PlanSummary) {
        let placements = placements(rows);
        let mut tallies = Vec::new();
        let mut moved = 0;
        let mut bounds: Vec<u8> = cuts.to_vec();
        bounds.sort();
        bounds.push(u8::MAX);
        let mut lo = 0u8;
        for hi in bounds {
            let mut planner = Planner::new(current, desired);
            for (token, home, category, regions, custodian, objects, bytes) in &placements {
                let t = u8::from_str_radix(&token[..2], 16).unwrap();
                if t < lo || t >= hi {
                    continue;
                }
                let cur = Current {
                    token,
                    home: *home,
                    category,
                    regions,
                    custodian,
                    objects: *objects,
                    bytes: *bytes,
                };
                let moves = if unlisted {
                    planner.observe_unlisted(cur).unwrap_or(false)
                } else {
                    matches!(planner.observe(cur), Ok(Some(_)))
                };
                moved += u64::from(moves);
            }
            tallies.push(planner.into_tally());
            lo = hi;
        }
        let mut tally = Tally::default();
        for t in tallies.into_iter().rev() {
            tally.merge(t);
        }
        (moved, tally.summary(current, desired))
    }

    /// Equal but for the rounding of the costs, which the former planner
    /// summed row by row in floats.
    fn same_but_rounding(now: &PlanSummary, then: &PlanSummary) -> Result<(), TestCaseError> {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        let (a, b) = (&now.totals, &then.totals);
        for (x, y) in [
            (a.monthly_cost_before, b.monthly_cost_before),
            (a.monthly_cost_after, b.monthly_cost_after),
            (a.egress_cost, b.egress_cost),
        ] {
            prop_assert!(close(x, y), "{} against {}", x, y);
        }
        let mut now = now.clone();
        now.totals.monthly_cost_before = b.monthly_cost_before;
        now.totals.monthly_cost_after = b.monthly_cost_after;
        now.totals.egress_cost = b.egress_cost;
        prop_assert_eq!(&now, then);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn the_planner_plans_as_it_did(rows in proptest::collection::vec(row(), 0..60)) {
            let base = std::path::Path::new("/");
            let v1 = Config::parse("v1", V1, base).unwrap();
            let v2 = Config::parse("v2", V2, base).unwrap();
            for (current, desired) in [(&v1, &v2), (&v2, &v1), (&v1, &v1), (&v2, &v2)] {
                let now = run(current, desired, &rows, false);
                let then = run(current, desired, &rows, true);
                prop_assert_eq!(&now.0, &then.0);
                same_but_rounding(&now.1, &then.1)?;
            }
        }

        /// Planners over disjoint token ranges, merged, count exactly what
        /// one planner over every row counts, to the last bit of every
        /// cost; and a planner that builds no moves counts the same.
        #[test]
        fn split_planners_merge_into_one(
            rows in proptest::collection::vec(row(), 0..60),
            cuts in proptest::collection::vec(0u8..40, 0..4),
            unlisted: bool,
        ) {
            let base = std::path::Path::new("/");
            let v1 = Config::parse("v1", V1, base).unwrap();
            let v2 = Config::parse("v2", V2, base).unwrap();
            for (current, desired) in [(&v1, &v2), (&v2, &v1), (&v1, &v1)] {
                let whole = run(current, desired, &rows, false);
                let moves = whole.0.iter().filter(|m| matches!(m, Ok(Some(_)))).count() as u64;
                let (moved, split) = run_split(current, desired, &rows, &cuts, unlisted);
                prop_assert_eq!(moved, moves);
                prop_assert_eq!(&split, &whole.1);
                prop_assert_eq!(split.totals.monthly_cost_before.to_bits(), whole.1.totals.monthly_cost_before.to_bits());
                prop_assert_eq!(split.totals.egress_cost.to_bits(), whole.1.totals.egress_cost.to_bits());
            }
        }
    }
}
