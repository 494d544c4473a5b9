//! Placements as the write path needs them: created on a subject's first
//! write in a category, waited on while moving, and never used to write into
//! a region the current policy forbids.

use std::sync::Arc;
use std::time::Instant;

use domicile_catalog::{LedgerAppend, PlacementRow, PlacementState};

use domicile_core::ids::{Category, RegionId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::{Config, config, placement};
use serde_json::json;

use crate::clock::now_millis;
use crate::engine::Acting;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::migrate::Inline;

/// How many times a write follows a new policy version before it gives up
/// with a retryable refusal (versions do not change that often).
const POLICY_FOLLOWS: usize = 4;

impl Engine {
    /// The regions and custodian the policy of `config` gives a new
    /// placement.
    pub(crate) fn desired_placement(
        config: &Config,
        token: &str,
        home: Jurisdiction,
        category: &str,
        current: Option<&[RegionId]>,
    ) -> Result<(Vec<RegionId>, String)> {
        let topo = &config.topology;
        let req = config.policy.requirement(topo, home, category);
        if let Some(problem) = config::requirement_problem(&req, config) {
            return Err(Error::Config(format!(
                "no placement for home {home}, category {category}: {problem}"
            )));
        }
        let regions = placement::place(token, category, &req, topo, current)
            .map_err(|e| Error::Config(e.to_string()))?;
        let custodian = req.custodian.map(|c| c.to_string()).unwrap_or_default();
        Ok((regions, custodian))
    }

    /// The regions of a placement that the policy of `config` forbids for
    /// (home, category).
    pub(crate) fn forbidden_regions(
        config: &Config,
        home: Jurisdiction,
        p: &PlacementRow,
    ) -> Vec<String> {
        let topo = &config.topology;
        let req = config.policy.requirement(topo, home, &p.category);
        p.regions
            .iter()
            .filter(|r| !req.allows(topo, r))
            .cloned()
            .collect()
    }

    /// The placement a write to (token, category) must use under the
    /// active policy, and the version it was decided under: if a change it
    /// makes is refused because another version became active, this
    /// process follows that version and decides again.
    pub(crate) async fn placement_under_policy(
        &self,
        token: &str,
        home: Jurisdiction,
        category: &Category,
    ) -> Result<(Arc<Acting>, PlacementRow)> {
        let mut acting = self.acting();
        for _ in 0..POLICY_FOLLOWS {
            match self
                .placement_for_write(&acting, token, home, category)
                .await
            {
                Err(Error::PolicyChanged { .. }) => acting = self.follow_policy().await?,
                other => return other.map(|p| (acting.clone(), p)),
            }
        }
        Err(Error::Busy {
            category: category.to_string(),
        })
    }

    /// The placement a write to (token, category) must use under `acting`,
    /// creating it on first use. Waits (bounded) while the placement is
    /// moving.
    pub(crate) async fn placement_for_write(
        &self,
        acting: &Arc<Acting>,
        token: &str,
        home: Jurisdiction,
        category: &Category,
    ) -> Result<PlacementRow> {
        let deadline = Instant::now() + self.options.move_wait;
        let mut job_will = false;
        loop {
            let p = match self.catalog.get_placement(token, category.as_str()).await? {
                Some(p) => p,
                None => {
                    self.create_placement(acting, token, home, category.as_str())
                        .await?
                }
            };
            if !p.state.is_active() {
                // A move holds the placement: wait for it, within bounds.
                if Instant::now() >= deadline {
                    return Err(Error::Busy {
                        category: category.to_string(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                continue;
            }
            let forbidden = Engine::forbidden_regions(&acting.config, home, &p);
            if forbidden.is_empty() {
                return Ok(p);
            }
            if p.objects == 0 {
                // Nothing to carry: re-place at once instead of writing into
                // a forbidden region.
                self.replace_empty_placement(acting, home, &p).await?;
                continue;
            }
            // One inline attempt per write: once the job is known to move
            // the unit otherwise, re-reading the placement is all the wait
            // needs (claiming again would take the catalog's write lock).
            let mut planning = false;
            if !job_will {
                match self.move_inline(acting, token, category.as_str()).await? {
                    Inline::Moved => continue, // the write goes to the new placement
                    Inline::JobWill => job_will = true,
                    // Being applied: ask again once it runs.
                    Inline::Planning => planning = true,
                    Inline::NoJob => {}
                }
            }
            if job_will || planning {
                // The job moves it soon: wait like for a move, within
                // bounds, then a retryable refusal.
                if Instant::now() >= deadline {
                    return Err(Error::Busy {
                        category: category.to_string(),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            return Err(Error::Forbidden(format!(
                "the policy now forbids region(s) {} for this subject's {} data; its copies must move first (domicile plan, then migrate apply)",
                forbidden.join(", "),
                category
            )));
        }
    }

    /// Creates the placement `acting` gives (token, category), fenced by
    /// its version: if another version is active, nothing is created and
    /// the caller follows it and decides again.
    async fn create_placement(
        &self,
        acting: &Acting,
        token: &str,
        home: Jurisdiction,
        category: &str,
    ) -> Result<PlacementRow> {
        let (regions, custodian) =
            Engine::desired_placement(&acting.config, token, home, category, None)?;
        let (_, wrapped) = self
            .keyring(&custodian)
            .await?
            .generate(&Engine::key_context(token, category))
            .await?;
        let now = now_millis();
        let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
        let row = PlacementRow {
            token: token.to_string(),
            category: category.to_string(),
            regions: regions.clone(),
            epoch: 1,
            state: PlacementState::Active,
            custodian: custodian.clone(),
            wrapped_key: wrapped,
            objects: 0,
            bytes: 0,
            since: now,
        };
        let ledger = LedgerAppend {
            kind: "placement".into(),
            subject: Some(token.to_string()),
            body: json!({"category": category, "regions": regions, "custodian": custodian, "epoch": 1}),
            at: now,
            actor: crate::actor::current(),
        };
        tracing::debug!(category, decision = "placed", regions = ?row.regions, "new placement");
        match self
            .catalog
            .ensure_placement(&row, acting.version, ledger)
            .await
        {
            Ok(p) => Ok(p),
            Err(domicile_catalog::Error::PolicyChanged { active }) => Err(Error::PolicyChanged {
                active,
                acting_on: acting.version,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves an empty placement to where the policy wants it: no data to
    /// copy, so only the catalog changes (ledgered as a move).
    async fn replace_empty_placement(
        &self,
        acting: &Acting,
        home: Jurisdiction,
        p: &PlacementRow,
    ) -> Result<()> {
        let current: Vec<RegionId> = p.regions.iter().filter_map(|r| r.parse().ok()).collect();
        let (to, custodian) =
            Engine::desired_placement(&acting.config, &p.token, home, &p.category, Some(&current))?;
        let to: Vec<String> = to.iter().map(|r| r.to_string()).collect();
        let now = now_millis();
        if !self
            .catalog
            .begin_move(&p.token, &p.category, p.epoch, &to, now + 30_000, now)
            .await?
        {
            return Ok(()); // someone else changed it; the caller re-reads
        }
        // Marked, nothing can commit into it; but a write may have
        // committed between the read that found it empty and the mark.
        let marked = self.catalog.get_placement(&p.token, &p.category).await?;
        if marked.map(|m| m.objects) != Some(0) {
            self.catalog
                .abort_move(&p.token, &p.category, p.epoch)
                .await?;
            return Ok(()); // the caller re-reads, and moves it like any other
        }
        // Empty: a new custodian makes a fresh key, never the old one
        // re-wrapped (the old custodian held that one).
        let wrapped = if custodian == p.custodian {
            p.wrapped_key.clone()
        } else {
            let fresh = async {
                let keyring = self.keyring(&custodian).await?;
                let context = Engine::key_context(&p.token, &p.category);
                Ok::<_, Error>(keyring.generate(&context).await?.1)
            };
            match fresh.await {
                Ok(wrapped) => wrapped,
                Err(e) => {
                    self.catalog
                        .abort_move(&p.token, &p.category, p.epoch)
                        .await?;
                    return Err(e);
                }
            }
        };
        let fence = Engine::fence(&p.token, &p.category, p.epoch, acting.version);
        let ledger = LedgerAppend {
            kind: "move".into(),
            subject: Some(p.token.clone()),
            body: json!({"category": p.category, "from": p.regions, "to": to, "custodian": custodian,
                         "epoch": p.epoch + 1, "objects": 0, "bytes": 0, "reason": "empty placement re-placed on write"}),
            at: now,
            actor: crate::actor::current(),
        };
        match self
            .catalog
            .commit_move(&fence, &to, &custodian, &wrapped, ledger)
            .await
        {
            Ok(_) | Err(domicile_catalog::Error::Conflict { .. }) => Ok(()),
            Err(domicile_catalog::Error::PolicyChanged { active }) => Err(Error::PolicyChanged {
                active,
                acting_on: acting.version,
            }),
            Err(e) => Err(e.into()),
        }
    }
}
