//! Stable placement: which regions hold the copies of a (subject, category).
//!
//! Copies are ranked by rendezvous (highest-random-weight) hashing of
//! (subject token, category, region id), so a subject's choice depends only
//! on the regions that are allowed for it, never on the other subjects.
//! On top of that, placement is *sticky*: a current placement that still
//! satisfies the requirement is kept as it is, and an invalid one keeps every
//! copy it can. A rule change therefore moves only the pairs that must move,
//! and only the copies that must move.

use crate::ids::RegionId;
use crate::jurisdiction::Jurisdiction;
use crate::policy::{Prefer, Requirement};
use crate::topology::Topology;

/// No choice of regions meets a requirement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Unsatisfiable {
    pub reason: String,
}

/// Rendezvous weight of a region for a (token, category).
pub fn weight(token: &str, category: &str, region: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"domicile-place-v1\0");
    h.update(token.as_bytes());
    h.update(b"\0");
    h.update(category.as_bytes());
    h.update(b"\0");
    h.update(region.as_bytes());
    let out = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_be_bytes(b)
}

/// Whether `current` (region ids) satisfies `req` exactly.
pub fn is_valid(current: &[RegionId], req: &Requirement, topo: &Topology) -> bool {
    if current.len() != req.copies as usize {
        return false;
    }
    let mut jurisdictions = Vec::with_capacity(current.len());
    for (i, id) in current.iter().enumerate() {
        if current[..i].contains(id) {
            return false;
        }
        let Some(idx) = topo.region_index(id.as_str()) else {
            return false;
        };
        if !req.allowed.contains(&idx) {
            return false;
        }
        jurisdictions.push(topo.regions[idx].jurisdiction);
    }
    if req.distinct_jurisdictions {
        let mut sorted = jurisdictions.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != jurisdictions.len() {
            return false;
        }
    }
    req.require_in.iter().all(|j| jurisdictions.contains(j))
}

/// Chooses the regions for a (token, category).
///
/// With a valid `current`, returns it unchanged. Otherwise keeps the allowed
/// regions of `current` first (in their order) and fills up from the ranking.
pub fn place(
    token: &str,
    category: &str,
    req: &Requirement,
    topo: &Topology,
    current: Option<&[RegionId]>,
) -> Result<Vec<RegionId>, Unsatisfiable> {
    if let Some(cur) = current
        && is_valid(cur, req, topo)
    {
        return Ok(cur.to_vec());
    }
    // Candidates in preference order: kept copies first, then the ranking.
    let mut candidates: Vec<usize> = Vec::with_capacity(req.allowed.len());
    if let Some(cur) = current {
        for id in cur {
            if let Some(idx) = topo.region_index(id.as_str())
                && req.allowed.contains(&idx)
                && !candidates.contains(&idx)
            {
                candidates.push(idx);
            }
        }
    }
    for idx in ranked(token, category, req, topo) {
        if !candidates.contains(&idx) {
            candidates.push(idx);
        }
    }

    let want = req.copies as usize;
    let jur = |i: usize| topo.regions[i].jurisdiction;
    let mut chosen: Vec<usize> = Vec::with_capacity(want);
    for j in &req.require_in {
        if chosen.iter().any(|&c| jur(c) == *j) {
            continue;
        }
        let pick = candidates.iter().copied().find(|&c| {
            jur(c) == *j && !(req.distinct_jurisdictions && chosen.iter().any(|&x| jur(x) == *j))
        });
        match pick {
            Some(c) => chosen.push(c),
            None => {
                return Err(Unsatisfiable {
                    reason: format!("no allowed region in {j}, which require_in demands"),
                });
            }
        }
    }
    for &c in &candidates {
        if chosen.len() >= want {
            break;
        }
        if chosen.contains(&c) {
            continue;
        }
        if req.distinct_jurisdictions && chosen.iter().any(|&x| jur(x) == jur(c)) {
            continue;
        }
        chosen.push(c);
    }
    if chosen.len() < want || chosen.len() > want {
        return Err(Unsatisfiable {
            reason: unsatisfiable_reason(req, topo, chosen.len()),
        });
    }
    // Keep the candidate order so a kept primary stays primary.
    chosen.sort_by_key(|c| candidates.iter().position(|x| x == c));
    Ok(chosen
        .into_iter()
        .map(|i| topo.regions[i].id.clone())
        .collect())
}

fn unsatisfiable_reason(req: &Requirement, topo: &Topology, got: usize) -> String {
    if req.allowed.is_empty() {
        return "no region is allowed".into();
    }
    let distinct: std::collections::BTreeSet<Jurisdiction> = req
        .allowed
        .iter()
        .map(|&i| topo.regions[i].jurisdiction)
        .collect();
    if req.distinct_jurisdictions {
        format!(
            "{} copies in distinct jurisdictions are required, but the allowed regions span {} jurisdiction(s)",
            req.copies,
            distinct.len()
        )
    } else if req.require_in.len() > req.copies as usize {
        format!(
            "require_in names {} jurisdictions but only {} copies are kept",
            req.require_in.len(),
            req.copies
        )
    } else {
        format!(
            "{} copies are required, but only {} allowed region(s) fit",
            req.copies, got
        )
    }
}

/// Allowed region indexes, best first, for this (token, category).
fn ranked(token: &str, category: &str, req: &Requirement, topo: &Topology) -> Vec<usize> {
    let mut v: Vec<(usize, u64)> = req
        .allowed
        .iter()
        .map(|&i| (i, weight(token, category, topo.regions[i].id.as_str())))
        .collect();
    match req.prefer {
        Prefer::Hash => v.sort_by_key(|a| std::cmp::Reverse(a.1)),
        Prefer::Order => v.sort_by_key(|a| a.0),
        Prefer::Price => v.sort_by(|a, b| {
            let pa = topo.regions[a.0].storage_price_gb_month;
            let pb = topo.regions[b.0].storage_price_gb_month;
            pa.total_cmp(&pb).then(b.1.cmp(&a.1))
        }),
    }
    v.into_iter().map(|(i, _)| i).collect()
}
