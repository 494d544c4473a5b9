//! The policy: the active version and its history, applying a new one
//! (which every server and worker then acts on), and, without changing
//! anything, checking a config, explaining a placement and diffing two
//! policies (who may do which: `auth::PERMISSIONS`).

use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::rejection::StringRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use domicile_core::Config;
use domicile_core::diff::{Change, policy_diff};
use domicile_core::ids::Category;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::policy::RegionVerdict;
use domicile_engine::{MigrateOptions, PolicyVersion};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::error::ApiError;
use super::handlers::{ApiResult, jurisdiction, posted_config};
use super::migrations::run_in_background;
use super::openapi::ErrorBody;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// The active policy version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Active {
    /// 0 before any version is applied.
    version: i64,
    /// Milliseconds since the epoch.
    applied_at: Option<i64>,
    actor: Option<String>,
    digest: Option<String>,
}

/// The active policy version: every server and worker acts on it (version
/// 1 is the policy of the config file the catalog was first opened with);
/// as `policy show`.
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses((status = 200, description = "The active version.", body = Active)))]
pub(crate) async fn show(State(s): State<Shared>) -> ApiResult<Json<Active>> {
    Ok(Json(match s.engine.active_policy().await? {
        Some(v) => Active {
            version: v.version,
            applied_at: Some(v.applied_at),
            actor: Some(v.actor),
            digest: Some(v.digest),
        },
        None => Active {
            version: 0,
            applied_at: None,
            actor: None,
            digest: None,
        },
    }))
}

/// Every applied version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct History {
    versions: Vec<PolicyVersion>,
}

/// Every applied policy version, oldest first; as `policy history`.
#[utoipa::path(get, path = "/v1/policy/history", tag = "policy",
    responses((status = 200, description = "The versions.", body = History)))]
pub(crate) async fn history(State(s): State<Shared>) -> ApiResult<Json<History>> {
    Ok(Json(History {
        versions: s.engine.policy_history().await?,
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyQuery {
    /// Start the migration the new version needs (default true).
    migrate: Option<bool>,
}

/// A policy applied.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Applied {
    version: i64,
    digest: String,
    /// The migration job started, if one was.
    job: Option<i64>,
    /// False when the posted policy was the active one already.
    created: bool,
}

/// Applies a config file's rules and reach as the next policy version and
/// starts the migration it needs; as `policy apply FILE`.
#[utoipa::path(post, path = "/v1/policy", tag = "policy", params(ApplyQuery),
    request_body(content = String, content_type = "text/plain", description = "A config file's text (TOML)."),
    responses((status = 201, description = "Applied as a new version.", body = Applied),
              (status = 200, description = "Already the active version: nothing changed.", body = Applied),
              (status = 400, description = "The config does not parse or validate.", body = ErrorBody)))]
pub(crate) async fn apply(
    State(s): State<Shared>,
    q: Result<Query<ApplyQuery>, QueryRejection>,
    body: Result<String, StringRejection>,
) -> ApiResult<(StatusCode, Json<Applied>)> {
    let q = query(q)?;
    let policy = posted_config(&s, &body?)?;
    let applied = s.engine.apply_policy(&policy).await?;
    let mut job = None;
    if applied.created && q.migrate.unwrap_or(true) {
        let opts = MigrateOptions::default();
        let (_, started) = s.engine.migrate_to_active(&opts).await?;
        job = Some(started.job);
        run_in_background(&s, opts);
    }
    let digest = s
        .engine
        .active_policy()
        .await?
        .map(|v| v.digest)
        .unwrap_or_default();
    let status = if applied.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Applied {
            version: applied.version,
            digest,
            job,
            created: applied.created,
        }),
    ))
}

/// A config that checks.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Checked {
    regions: usize,
    custodians: usize,
    rules: usize,
    ok: bool,
}

/// Validates a config file's text without applying it; as `policy check`.
#[utoipa::path(post, path = "/v1/policy/check", tag = "policy",
    request_body(content = String, content_type = "text/plain", description = "A config file's text (TOML)."),
    responses((status = 200, description = "It is valid.", body = Checked),
              (status = 400, description = "It is not: why, with its line.", body = ErrorBody)))]
pub(crate) async fn check(
    State(s): State<Shared>,
    body: Result<String, StringRejection>,
) -> ApiResult<Json<Checked>> {
    let c = posted_config(&s, &body?)?;
    Ok(Json(Checked {
        regions: c.topology.regions.len(),
        custodians: c.topology.custodians.len(),
        rules: c.policy.rules.len(),
        ok: true,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainQuery {
    /// The home (ISO 3166-1 alpha-2).
    home: String,
    /// The data category.
    category: String,
}

/// Why a (home, category) is placed where it is.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Explained {
    home: Jurisdiction,
    category: String,
    /// The regions allowed, in config order.
    allowed: Vec<String>,
    copies: u32,
    custodian: Option<String>,
    /// The rules that matched, in config order.
    rules: Vec<String>,
    distinct_jurisdictions: bool,
    require_in: Vec<Jurisdiction>,
    /// Every region, allowed or not, with why.
    regions: Vec<RegionVerdict>,
}

/// Why a (home, category) is placed where it is under the active policy;
/// as `policy explain --home H --category C`.
#[utoipa::path(get, path = "/v1/policy/explain", tag = "policy", params(ExplainQuery),
    responses((status = 200, description = "The verdicts.", body = Explained),
              (status = 400, description = "A bad home or category, or no placement satisfies the policy.", body = ErrorBody)))]
pub(crate) async fn explain(
    State(s): State<Shared>,
    q: Result<Query<ExplainQuery>, QueryRejection>,
) -> ApiResult<Json<Explained>> {
    let q = query(q)?;
    let home = jurisdiction(&q.home)?;
    let category =
        Category::from_str(&q.category).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let acting = s.engine.follow_policy().await?;
    let c: &Config = &acting.config;
    let req = c.policy.requirement(&c.topology, home, category.as_str());
    if let Some(problem) = domicile_core::config::requirement_problem(&req, c) {
        return Err(ApiError::bad_request(format!(
            "no placement for {home}/{category}: {problem}"
        )));
    }
    Ok(Json(Explained {
        home,
        category: category.to_string(),
        allowed: req
            .allowed
            .iter()
            .map(|&i| c.topology.regions[i].id.to_string())
            .collect(),
        copies: req.copies,
        custodian: req.custodian.map(|c| c.to_string()),
        rules: req.rules.clone(),
        distinct_jurisdictions: req.distinct_jurisdictions,
        require_in: req.require_in.clone(),
        regions: c.policy.explain(&c.topology, home, category.as_str()),
    }))
}

/// What changes between two policies, per category and homes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Diff {
    /// The version compared from (absent for a posted text).
    from: Option<i64>,
    /// The version compared to (absent for a posted text).
    to: Option<i64>,
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionsQuery {
    /// The older version.
    old: i64,
    /// The newer version (default: the active one).
    new: Option<i64>,
}

/// The config an applied version was applied from.
async fn version_config(s: &Shared, version: i64) -> Result<Config, ApiError> {
    let v = s.engine.policy_at(version).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no policy version {version}"),
        )
    })?;
    Config::parse(
        &format!("policy version {version}"),
        &v.text,
        &s.engine.file_config().base_dir,
    )
    .map_err(|e| ApiError::from(domicile_engine::Error::Internal(e.to_string())))
}

/// What changes between two applied policy versions; as `policy diff OLD
/// [NEW]`.
#[utoipa::path(get, path = "/v1/policy/diff", tag = "policy", params(VersionsQuery),
    responses((status = 200, description = "The changes.", body = Diff),
              (status = 400, description = "Bad versions.", body = ErrorBody),
              (status = 404, description = "No such version.", body = ErrorBody)))]
pub(crate) async fn diff_versions(
    State(s): State<Shared>,
    q: Result<Query<VersionsQuery>, QueryRejection>,
) -> ApiResult<Json<Diff>> {
    let q = query(q)?;
    let new = match q.new {
        Some(v) => v,
        None => s.engine.active_policy().await?.map_or(0, |v| v.version),
    };
    let a = version_config(&s, q.old).await?;
    let b = version_config(&s, new).await?;
    Ok(Json(Diff {
        from: Some(q.old),
        to: Some(new),
        changes: policy_diff(&a, &b),
    }))
}

/// What would change from the active policy to a posted config's; as
/// `policy diff ACTIVE FILE`. Nothing is applied.
#[utoipa::path(post, path = "/v1/policy/diff", tag = "policy",
    request_body(content = String, content_type = "text/plain", description = "A config file's text (TOML)."),
    responses((status = 200, description = "The changes.", body = Diff),
              (status = 400, description = "The config does not parse or validate.", body = ErrorBody)))]
pub(crate) async fn diff_text(
    State(s): State<Shared>,
    body: Result<String, StringRejection>,
) -> ApiResult<Json<Diff>> {
    let new = posted_config(&s, &body?)?;
    let active = s.engine.follow_policy().await?.config.clone();
    Ok(Json(Diff {
        from: None,
        to: None,
        changes: policy_diff(&active, &new),
    }))
}
