//! Demands: what an authority could compel for one subject, and at what
//! level. Every demand is recorded in the ledger.

use domicile_catalog::LedgerAppend;
use domicile_core::exposure::{self, Level};
use domicile_core::ids::SubjectId;
use domicile_core::jurisdiction::Jurisdiction;
use serde::Serialize;
use serde_json::json;

use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::Result;

/// One copy within reach.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DemandCopy {
    pub category: String,
    pub region: String,
    pub objects: i64,
    pub bytes: i64,
    pub level: Level,
    /// The reach rules that reach this copy (and its key): preset names,
    /// or the ground of a hand-written rule.
    pub grounds: Vec<String>,
}

/// `demand --authority A --subject ID`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DemandReport {
    pub authority: Jurisdiction,
    pub subject: String,
    pub level: Level,
    pub copies: Vec<DemandCopy>,
    pub ledger_seq: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub assumption: &'static str,
}

impl Engine {
    /// Evaluates a demand and records it in the ledger.
    pub async fn demand(
        &self,
        authority: Jurisdiction,
        subject: &SubjectId,
    ) -> Result<DemandReport> {
        let (token, _) = self.registered(subject).await?;
        let config = self.follow_policy().await?.config.clone();
        let topo = &config.topology;
        let g = config.reach.grounds(authority);
        let mut copies = Vec::new();
        for p in self.catalog.placements_of(&token).await? {
            let k = topo.custodian(&p.custodian);
            for r in &p.regions {
                let Some(region) = topo.region(r) else {
                    continue;
                };
                let (level, used) =
                    exposure::placement_reach(g, authority, &[region], k, &topo.operator);
                copies.push(DemandCopy {
                    grounds: config.reach.cite_labels(authority, used),
                    category: p.category.clone(),
                    region: r.clone(),
                    objects: p.objects,
                    bytes: p.bytes,
                    level,
                });
            }
        }
        let level = copies.iter().map(|c| c.level).max().unwrap_or(Level::None);
        let reachable = copies.iter().filter(|c| c.level != Level::None).count();
        let seq = self
            .catalog
            .append_ledger(LedgerAppend {
                kind: "demand".into(),
                subject: Some(token),
                body: json!({"authority": authority.code(), "level": level.as_str(), "copies_reachable": reachable}),
                at: now_millis(),
                actor: crate::actor::current(),
            })
            .await?;
        Ok(DemandReport {
            authority,
            subject: subject.to_string(),
            level,
            copies,
            ledger_seq: seq,
            assumption: exposure::ASSUMPTION,
        })
    }
}
