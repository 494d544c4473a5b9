//! Reports over the whole catalog: residency, exposure, cost, violations,
//! and the plan. All but residency stream the placements page by page
//! through the core planner, so memory stays bounded however many subjects
//! there are.

use std::collections::{BTreeMap, HashMap};

use domicile_catalog::{PlacementRow, PlacementSummary};
use domicile_core::Config;
use domicile_core::exposure::{self, Grounds, Level};
use domicile_core::ids::RegionId;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::plan::{Current, Move, PlanSummary, Planner};
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// `report residency` row.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResidencyRow {
    pub home: String,
    pub category: String,
    pub region: String,
    pub jurisdiction: String,
    pub subjects: i64,
    pub objects: i64,
    pub bytes: i64,
}

/// `report violations` row.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Violation {
    /// The subject's token (ids are not kept by the catalog).
    pub subject: String,
    pub category: String,
    pub region: String,
    pub rule: String,
    /// When the placement took its current form.
    pub since: i64,
}

/// Placements per catalog page when streaming.
pub const PAGE: u32 = 10_000;

impl Engine {
    /// Calls `f` on every page of placements, in token order. The next page
    /// is fetched while `f` works on this one: the catalog and the caller
    /// each keep one core busy.
    pub async fn for_each_page<F, Fut>(&self, mut f: F) -> Result<()>
    where
        F: FnMut(Vec<PlacementSummary>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let fetch = |after: Option<(String, String)>| {
            let catalog = self.catalog.clone();
            tokio::spawn(async move {
                catalog
                    .placements_page(after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())), PAGE)
                    .await
            })
        };
        let mut next = Some(fetch(None));
        while let Some(pending) = next.take() {
            let page = pending
                .await
                .map_err(|e| Error::Internal(format!("catalog scan task: {e}")))??;
            if page.len() == PAGE as usize
                && let Some(last) = page.last()
            {
                next = Some(fetch(Some((last.token.clone(), last.category.clone()))));
            }
            f(page).await?;
        }
        Ok(())
    }

    /// Calls `f` on every placement, in token order, page by page.
    pub async fn for_each_placement(
        &self,
        mut f: impl FnMut(&PlacementSummary) -> Result<()>,
    ) -> Result<()> {
        self.for_each_page(|page| {
            let r = page.iter().try_for_each(&mut f);
            std::future::ready(r)
        })
        .await
    }

    /// Streams a plan of `desired` over the current placements; `on_move`
    /// sees every move as it is found.
    pub async fn plan(
        &self,
        desired: &Config,
        mut on_move: impl FnMut(Move),
    ) -> Result<PlanSummary> {
        self.plan_in_batches(desired, |moves| {
            moves.into_iter().for_each(&mut on_move);
            std::future::ready(Ok(()))
        })
        .await
    }

    /// Streams a plan of `desired`, handing the moves of each catalog page
    /// to `on_batch` (which may write them somewhere) before the next page
    /// is planned: memory stays bounded by one page.
    pub async fn plan_in_batches<F, Fut>(
        &self,
        desired: &Config,
        mut on_batch: F,
    ) -> Result<PlanSummary>
    where
        F: FnMut(Vec<Move>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let present = self.follow_policy().await?.config.clone();
        let mut planner = Planner::new(&present, desired);
        let mut regions: Vec<RegionId> = Vec::new();
        // The catalog's text of `regions`: neighbouring placements mostly
        // share it, so it is parsed again only when it changes.
        let mut parsed: Option<Vec<String>> = None;
        self.for_each_page(|page| {
            let mut moves = Vec::new();
            let planned: Result<()> = page.iter().try_for_each(|p| {
                let home: Jurisdiction = p
                    .home
                    .parse()
                    .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
                if parsed.as_ref() != Some(&p.regions) {
                    regions.clear();
                    regions.extend(p.regions.iter().filter_map(|r| r.parse().ok()));
                    parsed = Some(p.regions.clone());
                }
                let cur = Current {
                    token: &p.token,
                    home,
                    category: &p.category,
                    regions: &regions,
                    custodian: &p.custodian,
                    objects: p.objects.max(0) as u64,
                    bytes: p.bytes.max(0) as u64,
                };
                if let Some(m) = planner
                    .observe(cur)
                    .map_err(|e| Error::Config(e.to_string()))?
                {
                    moves.push(m);
                }
                Ok(())
            });
            let flush = planned.map(|()| on_batch(moves));
            async move {
                match flush {
                    Ok(fut) => fut.await,
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
        Ok(planner.finish())
    }

    /// The subject ids of tokens, opened with the deployment's secrets.
    /// Tokens whose id was not recorded are absent.
    pub async fn subject_names(&self, tokens: &[String]) -> Result<HashMap<String, String>> {
        let seals = self.catalog.subject_seals(tokens).await?;
        Ok(seals
            .into_iter()
            .filter_map(|(t, s)| self.tokens.open_id(&t, &s).map(|id| (t, id)))
            .collect())
    }

    /// Exposure and cost of the present: a plan of the current config over itself.
    pub async fn present(&self) -> Result<PlanSummary> {
        let config = self.follow_policy().await?.config.clone();
        self.plan(&config, |_| {}).await
    }

    /// Subjects, objects and bytes per (home, category, region).
    pub async fn residency(&self) -> Result<Vec<ResidencyRow>> {
        let rows = self.catalog.residency().await?;
        Ok(rows
            .into_iter()
            .map(|r| ResidencyRow {
                jurisdiction: self
                    .file
                    .topology
                    .region(&r.region)
                    .map(|x| x.jurisdiction.to_string())
                    .unwrap_or_else(|| "?".into()),
                home: r.home,
                category: r.category,
                region: r.region,
                subjects: r.subjects,
                objects: r.objects,
                bytes: r.bytes,
            })
            .collect())
    }

    /// Copies that break the current policy now: in a forbidden region, or
    /// too few of them.
    pub async fn violations(&self) -> Result<Vec<Violation>> {
        let config = self.follow_policy().await?.config.clone();
        let mut out = Vec::new();
        let mut reqs = BTreeMap::new();
        let mut since_of: Vec<(String, String)> = Vec::new();
        self.for_each_placement(|p| {
            // An empty placement holds no copy anywhere: nothing to violate.
            if p.objects == 0 {
                return Ok(());
            }
            let home: Jurisdiction = p
                .home
                .parse()
                .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
            let req = reqs.entry((home, p.category.clone())).or_insert_with(|| {
                config
                    .policy
                    .requirement(&config.topology, home, &p.category)
            });
            let subject = || p.token.clone();
            for r in &p.regions {
                if !req.allows(&config.topology, r) {
                    let rule = config
                        .policy
                        .explain(&config.topology, home, &p.category)
                        .into_iter()
                        .find(|v| &v.region == r)
                        .map(|v| v.why)
                        .unwrap_or_else(|| "region is no longer in the config".into());
                    out.push(Violation {
                        subject: subject(),
                        category: p.category.clone(),
                        region: r.clone(),
                        rule,
                        since: 0,
                    });
                    since_of.push((p.token.clone(), p.category.clone()));
                }
            }
            if (p.regions.len() as u32) < req.copies {
                out.push(Violation {
                    subject: subject(),
                    category: p.category.clone(),
                    region: "-".into(),
                    rule: format!(
                        "{} copies required, {} held ({})",
                        req.copies,
                        p.regions.len(),
                        req.rules.join(", ")
                    ),
                    since: 0,
                });
                since_of.push((p.token.clone(), p.category.clone()));
            }
            Ok(())
        })
        .await?;
        // Only violating placements are re-read for their timestamp, and
        // named when the secrets open their ids.
        let tokens: Vec<String> = out.iter().map(|v| v.subject.clone()).collect();
        let names = self.subject_names(&tokens).await?;
        for v in &mut out {
            if let Some(id) = names.get(&v.subject) {
                v.subject = id.clone();
            }
        }
        for (v, (token, category)) in out.iter_mut().zip(since_of) {
            if let Some(p) = self.catalog.get_placement(&token, &category).await? {
                v.since = p.since;
            }
        }
        Ok(out)
    }

    /// Every authority's level over one subject's placements, with the
    /// reach rules to cite for it (labels, see `Reach::cite_labels`).
    pub(crate) fn subject_exposure(
        &self,
        placements: &[PlacementRow],
    ) -> Vec<(Jurisdiction, Level, Vec<String>)> {
        let config = self.config();
        let topo = &config.topology;
        config
            .reach
            .authorities(topo)
            .into_iter()
            .map(|a| {
                let g = config.reach.grounds(a);
                let (level, used) = placements
                    .iter()
                    .map(|p| {
                        let regions: Vec<_> =
                            p.regions.iter().filter_map(|r| topo.region(r)).collect();
                        exposure::placement_reach(
                            g,
                            a,
                            &regions,
                            topo.custodian(&p.custodian),
                            &topo.operator,
                        )
                    })
                    .fold((Level::None, Grounds::default()), |(l, u), (pl, pu)| {
                        (l.max(pl), u.union(pu))
                    });
                (a, level, config.reach.cite_labels(a, used))
            })
            .collect()
    }
}
