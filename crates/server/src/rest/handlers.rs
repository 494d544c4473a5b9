//! One handler per endpoint. JSON bodies are the CLI's `--format json`
//! shapes (SPEC, "CLI contract"), so a script can switch between the two.

use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use domicile_core::exposure::ASSUMPTION;
use domicile_core::ids::SubjectId;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::plan::ExposureRow;
use domicile_core::plan::{Move, PlanSummary};
use domicile_core::presets::{self, Citation, NOT_LEGAL_ADVICE};
use domicile_engine::MigrateOptions;
use domicile_engine::migrate::Tick;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::error::ApiError;
use crate::metrics::gauge;

pub(crate) type ApiResult<T = Json<Value>> = Result<T, ApiError>;

fn subject(id: &str) -> Result<SubjectId, ApiError> {
    SubjectId::from_str(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn jurisdiction(code: &str) -> Result<Jurisdiction, ApiError> {
    Jurisdiction::from_str(code).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> ApiResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::from(domicile_engine::Error::Internal(e.to_string())))
}

pub(crate) async fn healthz(State(s): State<Shared>) -> Response {
    match s.engine.health().await {
        Ok(h) => Json(json!({"status": "ok", "policy_version": h.policy_version})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

pub(crate) async fn metrics(State(s): State<Shared>) -> Response {
    let mut text = s.metrics.render();
    if let Ok(m) = s.engine.migration_status(None).await {
        let running = if m.state == "running" { 1.0 } else { 0.0 };
        gauge(
            &mut text,
            "domicile_migration_running",
            "1 while the current migration job is running.",
            &[(&[], running)],
        );
        gauge(
            &mut text,
            "domicile_migration_units",
            "Units of the current (or last) migration job, by state.",
            &[
                (&[("state", "done")], m.done as f64),
                (&[("state", "committed")], m.committed as f64),
                (&[("state", "in_flight")], m.in_flight as f64),
                (&[("state", "pending")], m.pending as f64),
                (&[("state", "failed")], m.failed as f64),
                (&[("state", "cancelled")], m.cancelled as f64),
            ],
        );
        gauge(
            &mut text,
            "domicile_migration_bytes",
            "Bytes of the current (or last) migration job: total and moved.",
            &[
                (&[("kind", "total")], m.bytes_total as f64),
                (&[("kind", "moved")], m.bytes_moved as f64),
            ],
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub(crate) async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /openapi.json",
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewSubject {
    subject: String,
    home: String,
}

pub(crate) async fn add_subject(
    State(s): State<Shared>,
    body: Result<Json<NewSubject>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(body) = body?;
    let id = subject(&body.subject)?;
    let home = jurisdiction(&body.home)?;
    s.engine.add_subject(&id, home).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"subject": id, "home": home})),
    ))
}

pub(crate) async fn show_subject(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    to_json(&s.engine.show_subject(&subject(&id)?).await?)
}

pub(crate) async fn erase_subject(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    to_json(&s.engine.erase_subject(&subject(&id)?).await?)
}

#[derive(Debug, Deserialize)]
pub(crate) struct PlanQuery {
    /// Moves to list; the totals always cover every move.
    limit: Option<usize>,
}

/// The same shape as `domicile plan --format json` (the CLI's
/// `render::plan_json`).
fn plan_json(moves: &[Move], s: &PlanSummary, truncated: bool) -> Value {
    let t = &s.totals;
    let moves: Vec<Value> = moves
        .iter()
        .map(|m| {
            json!({"subject": m.subject.clone().unwrap_or_else(|| m.token.clone()), "category": m.category,
                   "from": m.from, "to": m.to, "objects": m.objects, "bytes": m.bytes, "home": m.home,
                   "custodian_from": m.custodian_from, "custodian_to": m.custodian_to,
                   "egress_cost": m.egress_cost, "reason": m.reason})
        })
        .collect();
    json!({
        "moves": moves,
        "moves_truncated": truncated,
        "totals": {"subjects": t.subjects, "objects": t.objects, "bytes": t.bytes, "egress_cost": t.egress_cost,
                   "monthly_cost_before": t.monthly_cost_before, "monthly_cost_after": t.monthly_cost_after,
                   "units": t.units, "bytes_transferred": t.bytes_transferred, "rewraps": t.rewraps},
        "exposure_before": s.exposure_before,
        "exposure_after": s.exposure_after,
        "duration": s.duration,
        "assumption": ASSUMPTION,
        "grounds": citations(s.exposure_before.iter().chain(&s.exposure_after)),
        "legal_notice": NOT_LEGAL_ADVICE,
    })
}

/// The presets that exposure rows cite, for the report beside them.
fn citations<'a>(rows: impl IntoIterator<Item = &'a ExposureRow>) -> Vec<Citation> {
    presets::cited(rows.into_iter().flat_map(|r| r.grounds.iter()))
        .iter()
        .map(|p| p.citation())
        .collect()
}

pub(crate) async fn plan(State(s): State<Shared>, Query(q): Query<PlanQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(1000).min(100_000);
    let config = s.engine.file_config().clone();
    let mut moves: Vec<Move> = Vec::new();
    // The moves past `limit` are counted in the totals, not built.
    let summary = s
        .engine
        .plan_first(&config, limit, |m| moves.push(m))
        .await?;
    let truncated = summary.totals.units > moves.len() as u64;
    let tokens: Vec<String> = moves.iter().map(|m| m.token.clone()).collect();
    let names = s.engine.subject_names(&tokens).await?;
    for m in &mut moves {
        m.subject = names.get(&m.token).cloned();
    }
    Ok(Json(plan_json(&moves, &summary, truncated)))
}

pub(crate) async fn report(State(s): State<Shared>, Path(kind): Path<String>) -> ApiResult {
    let e = &s.engine;
    Ok(Json(match kind.as_str() {
        "residency" => json!({"rows": e.residency().await?}),
        "exposure" => {
            let p = e.present().await?;
            json!({"rows": p.exposure_before, "assumption": ASSUMPTION,
                   "grounds": citations(&p.exposure_before), "legal_notice": NOT_LEGAL_ADVICE})
        }
        "cost" => {
            let p = e.present().await?;
            json!({"rows": p.cost_before, "total_monthly_cost": p.totals.monthly_cost_before})
        }
        "violations" => json!({"violations": e.violations().await?}),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "reports are residency, exposure, cost and violations",
            ));
        }
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewDemand {
    authority: String,
    subject: String,
}

pub(crate) async fn demand(
    State(s): State<Shared>,
    body: Result<Json<NewDemand>, JsonRejection>,
) -> ApiResult {
    let Json(body) = body?;
    let authority = jurisdiction(&body.authority)?;
    let id = subject(&body.subject)?;
    to_json(&s.engine.demand(authority, &id).await?)
}

pub(crate) async fn verify_ledger(State(s): State<Shared>) -> ApiResult {
    to_json(&s.engine.verify_ledger().await?)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct MigrationRun {
    /// Bytes per second; 0 = unlimited.
    #[serde(default)]
    rate: u64,
    #[serde(default)]
    workers: Option<usize>,
    /// Units per worker turn.
    #[serde(default)]
    batch: Option<usize>,
}

impl MigrationRun {
    fn options(&self) -> Result<MigrateOptions, ApiError> {
        let workers = self.workers.unwrap_or(4);
        if !(1..=256).contains(&workers) {
            return Err(ApiError::bad_request("workers must be between 1 and 256"));
        }
        let batch = self.batch.unwrap_or(MigrateOptions::default().batch);
        if !(1..=1024).contains(&batch) {
            return Err(ApiError::bad_request("batch must be between 1 and 1024"));
        }
        Ok(MigrateOptions {
            workers,
            batch,
            rate: self.rate,
            ..MigrateOptions::default()
        })
    }
}

/// Runs the open job in the background unless this server already does.
pub(crate) fn run_in_background(s: &Shared, opts: MigrateOptions) {
    let Ok(mut slot) = s.migration.lock() else {
        return;
    };
    if slot.as_ref().is_some_and(|h| !h.is_finished()) {
        return;
    }
    let state = s.clone();
    *slot = Some(tokio::spawn(domicile_engine::actor::inherit(async move {
        let metrics = state.metrics.clone();
        let tick = move |t: Tick| metrics.migration_tick(t.bytes, t.units);
        match state.engine.run_migration(&opts, &tick).await {
            Ok(st) => {
                tracing::info!(job = st.job, state = %st.state, done = st.done, failed = st.failed, "migration run ended")
            }
            Err(e) => tracing::error!(error = %e, "migration run failed"),
        }
    })));
}

pub(crate) async fn start_migration(
    State(s): State<Shared>,
    body: Result<Option<Json<MigrationRun>>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let run = body?.map(|Json(b)| b).unwrap_or_default();
    let opts = run.options()?;
    let status = s.engine.start_migration(&opts).await?;
    // Even a job with no unit is run: the run closes it as done.
    run_in_background(&s, opts);
    Ok((StatusCode::ACCEPTED, to_json(&status)?))
}

pub(crate) async fn migration_status(State(s): State<Shared>) -> ApiResult {
    to_json(&s.engine.migration_status(None).await?)
}

pub(crate) async fn migration_action(
    State(s): State<Shared>,
    Path(action): Path<String>,
) -> ApiResult {
    let status = match action.as_str() {
        "pause" => s.engine.pause_migration().await?,
        "resume" => {
            let current = s.engine.migration_status(None).await?;
            if current.finished_at.is_some() && current.open_units() == 0 {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "finished",
                    format!(
                        "migration job {} is {}: nothing to resume",
                        current.job, current.state
                    ),
                ));
            }
            run_in_background(&s, MigrateOptions::default());
            current
        }
        "cancel" => {
            let st = s.engine.cancel_migration().await?;
            // Committed units still get their old copies purged.
            if st.committed > 0 {
                run_in_background(&s, MigrateOptions::default());
            }
            st
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "actions are pause, resume and cancel",
            ));
        }
    };
    to_json(&status)
}
