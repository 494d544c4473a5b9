//! The policy this process acts on.
//!
//! The policy is catalog state, versioned. The first process to open a
//! catalog that has no version stores its own config file's policy as
//! version 1; later versions come from `domicile policy apply`, or `migrate
//! apply` of a config whose policy differs. Every process acts on the
//! active version, whatever its own config file says: the version's rules
//! and reach, joined with this process's own regions, custodians, buckets
//! and stores ([`Config::adopt`]).
//!
//! Every change a process commits is fenced by the version it was decided
//! under, so a process that has not yet followed a new version never
//! commits under the old one: its commit is refused, it follows
//! ([`Engine::follow_policy`]), and decides again.

use std::sync::Arc;

use domicile_catalog::{LedgerAppend, PolicyApplied, PolicyVersionRow};
use domicile_core::Config;
use serde_json::json;

use crate::clock::now_millis;
use crate::engine::{Acting, Engine};
use crate::error::{Error, Result};

/// One applied policy version, as `policy show` and `policy history` list
/// it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyVersion {
    pub version: i64,
    pub applied_at: i64,
    pub actor: String,
    pub digest: String,
    #[serde(skip)]
    pub text: String,
}

impl From<PolicyVersionRow> for PolicyVersion {
    fn from(r: PolicyVersionRow) -> Self {
        PolicyVersion {
            version: r.version,
            applied_at: r.applied_at,
            actor: r.actor,
            digest: r.digest,
            text: r.text,
        }
    }
}

impl Engine {
    /// The policy this process acts on now.
    pub fn acting(&self) -> Arc<Acting> {
        match self.acting.read() {
            Ok(a) => a.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The config this process decides under now: its own, with the rules
    /// and reach of the active policy version.
    pub fn config(&self) -> Arc<Config> {
        self.acting().config.clone()
    }

    /// The config file this process was opened with.
    pub fn file_config(&self) -> &Config {
        &self.file
    }

    /// Follows the catalog's active policy version if it is not the one
    /// this process acts on. Returns what it acts on afterwards. A version
    /// this process cannot act on (it lacks a region, custodian or bucket
    /// the version names) is refused with an error that names them, and the
    /// process goes on refusing: it never falls back to older rules.
    pub async fn follow_policy(&self) -> Result<Arc<Acting>> {
        let active = self.catalog.policy_version().await?;
        let acting = self.acting();
        if active == acting.version {
            return Ok(acting);
        }
        let row = self.catalog.policy(Some(active)).await?.ok_or_else(|| {
            Error::Internal(format!("policy version {active} is active but missing"))
        })?;
        let next = Arc::new(self.adopt(&row)?);
        tracing::info!(
            from = acting.version,
            to = next.version,
            "following the active policy version"
        );
        if let Ok(mut a) = self.acting.write()
            && a.version < next.version
        {
            *a = next.clone();
        }
        Ok(self.acting())
    }

    /// Follows the active policy version now and then every `every` until
    /// `stop` resolves, so a process that neither writes nor moves still
    /// acts on a new version within that delay. A failed probe (the catalog
    /// is unreachable, or the version names what this process lacks) is
    /// logged and tried again at the next.
    pub async fn follow_policy_every(
        &self,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let probes = async {
            loop {
                if let Err(e) = self.follow_policy().await {
                    tracing::warn!(error = %e, "cannot follow the active policy version");
                }
                tokio::time::sleep(every).await;
            }
        };
        tokio::select! {
            _ = probes => {}
            _ = stop => {}
        }
    }

    /// The version `row` as this process would act on it.
    pub(crate) fn adopt(&self, row: &PolicyVersionRow) -> Result<Acting> {
        let label = format!("policy version {}", row.version);
        let theirs = Config::parse(&label, &row.text, &self.file.base_dir)
            .map_err(|e| Error::Config(format!("{label} does not parse here: {e}")))?;
        let config = self.file.adopt(&theirs).map_err(|why| {
            Error::Config(format!(
                "this process cannot act on {label} (applied by {}): {why}; add what is missing to its config",
                row.actor
            ))
        })?;
        Ok(Acting {
            version: row.version,
            config: Arc::new(config),
        })
    }

    /// Makes the policy of `policy` (a config file's rules and reach) the
    /// active version, recorded with the current actor ([`crate::actor`]),
    /// unless it is the active one already. Refused if this process could
    /// not act on it (see [`Config::adopt`]). This process follows it at
    /// once.
    pub async fn apply_policy(&self, policy: &Config) -> Result<PolicyApplied> {
        self.apply(policy, false).await
    }

    /// On a catalog that has no policy version yet, stores this process's
    /// own config file as version 1, so that every decision from the first
    /// on is made under a known version. Of processes first opening a fresh
    /// catalog with different files, the first one's is version 1, and the
    /// others act on it (with a warning, as for any file that differs).
    pub(crate) async fn store_first_version(&self) -> Result<Arc<Acting>> {
        let file = self.file.clone();
        // The apply follows the active version (this file's, or the first
        // opener's) before it returns.
        self.apply(&file, true).await?;
        Ok(self.acting())
    }

    async fn apply(&self, policy: &Config, first_only: bool) -> Result<PolicyApplied> {
        let actor = crate::actor::current();
        let row = PolicyVersionRow {
            version: if first_only { 1 } else { 0 },
            applied_at: now_millis(),
            actor: actor.clone(),
            digest: policy.plan_digest(),
            text: policy.source.text().to_string(),
        };
        // Checked before it is stored: a version this process could not
        // act on is no version for it to apply.
        self.adopt(&row)?;
        let ledger = LedgerAppend {
            kind: "policy".into(),
            subject: None,
            body: json!({ "digest": row.digest, "file": policy.file, "first": first_only }),
            at: row.applied_at,
            actor,
        };
        let applied = self.catalog.apply_policy(&row, ledger).await?;
        self.follow_policy().await?;
        Ok(applied)
    }

    /// Applies this process's own config file if its policy is not the
    /// active one, as `policy apply` would, so that editing the file and
    /// running `migrate apply` keeps working. Returns what was applied, if
    /// anything.
    pub async fn apply_file_policy(&self) -> Result<Option<PolicyApplied>> {
        let acting = self.follow_policy().await?;
        if acting.version == 0 || acting.config.plan_digest() == self.file.plan_digest() {
            return Ok(None);
        }
        let file = self.file.clone();
        Ok(Some(self.apply_policy(&file).await?))
    }

    /// Starts the migration the active policy needs. A job still open from
    /// an earlier version is cancelled first: what it moved stays moved
    /// (its purges still run), and the new job plans what is left from
    /// where the data is now. Returns the cancelled job, if any, and the
    /// new one.
    pub async fn migrate_to_active(
        &self,
        opts: &crate::MigrateOptions,
    ) -> Result<(Option<i64>, crate::MigrationStatus)> {
        let acting = self.follow_policy().await?;
        let mut cancelled = None;
        if let Some(open) = self.catalog.open_job().await?
            && !acting.config.plans_job(&open.policy)
        {
            self.cancel_migration().await?;
            cancelled = Some(open.id);
        }
        Ok((cancelled, self.start_migration(opts).await?))
    }

    /// The active policy version, if one was ever applied.
    pub async fn active_policy(&self) -> Result<Option<PolicyVersion>> {
        Ok(self.catalog.policy(None).await?.map(PolicyVersion::from))
    }

    /// One applied policy version.
    pub async fn policy_at(&self, version: i64) -> Result<Option<PolicyVersion>> {
        Ok(self
            .catalog
            .policy(Some(version))
            .await?
            .map(PolicyVersion::from))
    }

    /// Every applied policy version, oldest first.
    pub async fn policy_history(&self) -> Result<Vec<PolicyVersion>> {
        Ok(self
            .catalog
            .policy_history()
            .await?
            .into_iter()
            .map(PolicyVersion::from)
            .collect())
    }
}
