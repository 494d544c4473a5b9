//! Reports over the whole catalog: residency, exposure, cost, violations,
//! and the plan. All but residency stream the placements page by page
//! through the core planner, so memory stays bounded however many subjects
//! there are.

use std::collections::{BTreeMap, HashMap};

use domicile_catalog::{PlacementRow, PlacementSummary};
use domicile_core::exposure::{self, Grounds, Level};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::plan::{Move, PlanSummary};
use domicile_core::{Config, duration};

pub use crate::plan_scan::MoveList;
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

/// The migration runs the duration estimate is measured on: the latest.
pub const RATE_RUNS: u32 = 20;

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
    /// sees every move, in token order.
    pub async fn plan(
        &self,
        desired: &Config,
        mut on_move: impl FnMut(Move),
    ) -> Result<PlanSummary> {
        self.plan_listing(desired, MoveList::All, |moves| {
            moves.into_iter().for_each(&mut on_move);
            std::future::ready(Ok(()))
        })
        .await
    }

    /// A plan of `desired` whose totals count every move but that builds
    /// and hands `on_move` only the first `n` (in token order): what a
    /// summary, a report or a listing of the first moves needs, without
    /// the cost of millions of moves nobody reads.
    pub async fn plan_first(
        &self,
        desired: &Config,
        n: usize,
        mut on_move: impl FnMut(Move),
    ) -> Result<PlanSummary> {
        self.plan_listing(desired, MoveList::First(n), |moves| {
            moves.into_iter().for_each(&mut on_move);
            std::future::ready(Ok(()))
        })
        .await
    }

    /// Streams a plan of `desired`, handing the moves to `on_batch` (which
    /// may write them somewhere) in token order, a page at a time: memory
    /// stays bounded by a few pages.
    pub async fn plan_in_batches<F, Fut>(
        &self,
        desired: &Config,
        on_batch: F,
    ) -> Result<PlanSummary>
    where
        F: FnMut(Vec<Move>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        self.plan_listing(desired, MoveList::All, on_batch).await
    }

    /// Plans `desired` over every placement, on every core (see
    /// [`plan_scan`](crate::plan_scan)), handing the moves `list` asks for
    /// to `on_batch` in token order.
    pub async fn plan_listing<F, Fut>(
        &self,
        desired: &Config,
        list: MoveList,
        on_batch: F,
    ) -> Result<PlanSummary>
    where
        F: FnMut(Vec<Move>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let present = self.follow_policy().await?.config.clone();
        let desired = std::sync::Arc::new(desired.clone());
        let mut summary =
            crate::plan_scan::plan(self.catalog.clone(), present, desired, list, on_batch).await?;
        summary.duration = Some(duration::estimate(
            &summary.totals,
            self.move_rates().await?,
        ));
        Ok(summary)
    }

    /// Copy rates measured on the last [`RATE_RUNS`] migration runs (see
    /// `domicile_core::duration`), or the stated assumption with none.
    pub async fn move_rates(&self) -> Result<duration::Rates> {
        let runs: Vec<duration::Run> = self
            .catalog
            .runs(RATE_RUNS)
            .await?
            .into_iter()
            .map(|r| duration::Run {
                units: r.units.max(0) as u64,
                bytes: r.bytes.max(0) as u64,
                millis: (r.finished_at - r.started_at).max(0) as u64,
            })
            .collect();
        Ok(duration::Rates::measured(&runs))
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
        self.plan_first(&config, 0, |_| {}).await
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
