//! The policy as catalog state: the active version and its history, and
//! applying a new one, which every server and worker then acts on (who may
//! do which: `auth::PERMISSIONS`).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use domicile_core::Config;
use domicile_engine::MigrateOptions;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::error::ApiError;
use super::handlers::{ApiResult, run_in_background, to_json};

/// `GET /v1/policy`: the active version.
pub(crate) async fn show(State(s): State<Shared>) -> ApiResult {
    match s.engine.active_policy().await? {
        Some(v) => to_json(&v),
        None => Ok(Json(
            json!({"version": 0, "applied_at": null, "actor": null, "digest": null}),
        )),
    }
}

/// `GET /v1/policy/history`: every applied version, oldest first.
pub(crate) async fn history(State(s): State<Shared>) -> ApiResult {
    let versions = s.engine.policy_history().await?;
    Ok(Json(json!({"versions": versions})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyQuery {
    /// Start the migration the new version needs (default true).
    migrate: Option<bool>,
}

/// `POST /v1/policy`: the body is a config file's text; its rules and reach
/// become the next version, unless they are the active one already.
pub(crate) async fn apply(
    State(s): State<Shared>,
    Query(q): Query<ApplyQuery>,
    body: String,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let base = s.engine.file_config().base_dir.clone();
    let policy = Config::parse("request body", &body, &base)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
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
        Json(
            json!({"version": applied.version, "digest": digest, "job": job,
                    "created": applied.created}),
        ),
    ))
}
