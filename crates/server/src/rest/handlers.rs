//! The service endpoints, plans, reports, the ledger, custodians and
//! collection: one handler each, each with its `#[utoipa::path]`, from
//! which the OpenAPI document is generated. JSON bodies are the CLI's
//! `--format json` shapes (SPEC, "CLI contract"), so a script can switch
//! between the two.

use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::StringRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use domicile_catalog::LedgerEntry;
use domicile_core::Config;
use domicile_core::exposure::ASSUMPTION;
use domicile_core::ids::SubjectId;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::plan::{ExposureRow, Move, RegionCost};
use domicile_core::presets::{self, Citation, NOT_LEGAL_ADVICE};
use domicile_engine::reach::ReachExplanation;
use domicile_engine::reports::{ResidencyRow, Violation};
use domicile_engine::{GcReport, RotateOptions, RotationReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::error::ApiError;
use super::openapi::ErrorBody;
use crate::metrics::gauge;

pub(crate) type ApiResult<T = Json<Value>> = Result<T, ApiError>;

pub(crate) fn subject(id: &str) -> Result<SubjectId, ApiError> {
    SubjectId::from_str(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(crate) fn jurisdiction(code: &str) -> Result<Jurisdiction, ApiError> {
    Jurisdiction::from_str(code).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> ApiResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::from(domicile_engine::Error::Internal(e.to_string())))
}

/// A config file's text posted as a request body, parsed as `serve`'s own
/// config is (paths relative to its folder).
pub(crate) fn posted_config(s: &Shared, body: &str) -> Result<Config, ApiError> {
    let base = s.engine.file_config().base_dir.clone();
    Config::parse("request body", body, &base).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `GET /healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `unavailable` (with 503).
    status: String,
    /// The active policy version (absent when unavailable).
    policy_version: Option<i64>,
}

/// Liveness: the catalog answers.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, description = "Healthy.", body = Health),
              (status = 503, description = "The catalog does not answer.", body = Health)))]
pub(crate) async fn healthz(State(s): State<Shared>) -> Response {
    match s.engine.health().await {
        Ok(h) => Json(Health {
            status: "ok".into(),
            policy_version: Some(h.policy_version),
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable".into(),
                    policy_version: None,
                }),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics: requests, bytes and errors per operation and
/// region; refusals; migration progress.
#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4.", body = String, content_type = "text/plain")))]
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

/// This document: OpenAPI 3.1, generated from the handlers and their types.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
pub(crate) async fn openapi(State(s): State<Shared>) -> Json<Value> {
    Json((*s.openapi).clone())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /openapi.json",
    )
}

// ---------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PlanQuery {
    /// Moves to list (default 1000, at most 100000); the totals always
    /// cover every move.
    limit: Option<usize>,
}

/// One move of a plan, as `plan --format json` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanMove {
    /// The subject's id (its token if the id was not recorded).
    subject: String,
    category: String,
    from: Vec<String>,
    to: Vec<String>,
    objects: u64,
    bytes: u64,
    home: Jurisdiction,
    custodian_from: String,
    custodian_to: String,
    egress_cost: f64,
    /// Why it moves.
    #[schema(value_type = Object)]
    reason: Value,
}

/// A plan: the moves listed, and everything the engine's plan summary
/// holds (totals, exposure and cost before and after, and whatever else
/// it comes to carry), with the citations of the exposure rows.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanBody {
    moves: Vec<PlanMove>,
    /// Whether moves were left out of `moves` (see `limit`).
    moves_truncated: bool,
    /// The plan's totals, as the engine sums them.
    #[schema(value_type = Object)]
    totals: Value,
    exposure_before: Vec<ExposureRow>,
    exposure_after: Vec<ExposureRow>,
    cost_before: Vec<RegionCost>,
    cost_after: Vec<RegionCost>,
    assumption: String,
    grounds: Vec<Citation>,
    legal_notice: String,
    /// The rest of the engine's plan summary, field by field.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    rest: serde_json::Map<String, Value>,
}

/// The presets that exposure rows cite, for the report beside them.
pub(crate) fn citations<'a>(rows: impl IntoIterator<Item = &'a ExposureRow>) -> Vec<Citation> {
    presets::cited(rows.into_iter().flat_map(|r| r.grounds.iter()))
        .iter()
        .map(|p| p.citation())
        .collect()
}

/// Plans `config` over the catalog; nothing is applied.
async fn plan_of(s: &Shared, config: &Config, limit: Option<usize>) -> ApiResult<Json<PlanBody>> {
    let limit = limit.unwrap_or(1000).min(100_000);
    let mut moves: Vec<Move> = Vec::new();
    // The moves past `limit` are counted in the totals, not built.
    let summary = s
        .engine
        .plan_first(config, limit, |m| moves.push(m))
        .await?;
    let truncated = summary.totals.units > moves.len() as u64;
    let tokens: Vec<String> = moves.iter().map(|m| m.token.clone()).collect();
    let names = s.engine.subject_names(&tokens).await?;
    let moves = moves
        .into_iter()
        .map(|m| PlanMove {
            subject: names.get(&m.token).cloned().unwrap_or(m.token),
            category: m.category,
            from: m.from.iter().map(|r| r.to_string()).collect(),
            to: m.to.iter().map(|r| r.to_string()).collect(),
            objects: m.objects,
            bytes: m.bytes,
            home: m.home,
            custodian_from: m.custodian_from,
            custodian_to: m.custodian_to,
            egress_cost: m.egress_cost,
            reason: serde_json::to_value(m.reason).unwrap_or(Value::Null),
        })
        .collect();
    let grounds = citations(
        summary
            .exposure_before
            .iter()
            .chain(&summary.exposure_after),
    );
    // The summary as a whole, so that what the engine adds to it is served:
    // the fields typed below are taken out, the rest go as they are.
    let Value::Object(mut rest) = to_json(&summary)?.0 else {
        return Err(
            domicile_engine::Error::Internal("a plan summary is not an object".into()).into(),
        );
    };
    let totals = rest.remove("totals").unwrap_or(Value::Null);
    for typed in [
        "exposure_before",
        "exposure_after",
        "cost_before",
        "cost_after",
    ] {
        rest.remove(typed);
    }
    Ok(Json(PlanBody {
        moves,
        moves_truncated: truncated,
        totals,
        exposure_before: summary.exposure_before,
        exposure_after: summary.exposure_after,
        cost_before: summary.cost_before,
        cost_after: summary.cost_after,
        assumption: ASSUMPTION.into(),
        grounds,
        legal_notice: NOT_LEGAL_ADVICE.into(),
        rest,
    }))
}

/// The plan of the current config over the catalog: what moves, what it
/// costs, who could reach what; as `plan --format json`.
#[utoipa::path(get, path = "/v1/plan", tag = "plans", params(PlanQuery),
    responses((status = 200, description = "The plan.", body = PlanBody)))]
pub(crate) async fn plan(
    State(s): State<Shared>,
    Query(q): Query<PlanQuery>,
) -> ApiResult<Json<PlanBody>> {
    let config = s.engine.file_config().clone();
    plan_of(&s, &config, q.limit).await
}

/// What if: the plan of a posted config (its rules, reach and topology)
/// over the catalog, as `plan --policy FILE --format json`. Nothing is
/// applied or recorded.
#[utoipa::path(post, path = "/v1/plan", tag = "plans", params(PlanQuery),
    request_body(content = String, content_type = "text/plain", description = "A config file's text (TOML)."),
    responses((status = 200, description = "The plan.", body = PlanBody),
              (status = 400, description = "The config does not parse or validate.", body = ErrorBody)))]
pub(crate) async fn what_if(
    State(s): State<Shared>,
    Query(q): Query<PlanQuery>,
    body: Result<String, StringRejection>,
) -> ApiResult<Json<PlanBody>> {
    let config = posted_config(&s, &body?)?;
    plan_of(&s, &config, q.limit).await
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

/// `report residency`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Residency {
    rows: Vec<ResidencyRow>,
}

/// `report exposure`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Exposure {
    rows: Vec<ExposureRow>,
    assumption: String,
    grounds: Vec<Citation>,
    legal_notice: String,
}

/// `report cost`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Cost {
    rows: Vec<RegionCost>,
    total_monthly_cost: f64,
}

/// `report violations`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Violations {
    violations: Vec<Violation>,
}

/// One of the reports.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Report {
    Residency(Residency),
    Exposure(Exposure),
    Cost(Cost),
    Violations(Violations),
}

/// A report on the present; as `report KIND --format json`.
#[utoipa::path(get, path = "/v1/reports/{kind}", tag = "reports",
    params(("kind" = String, Path, description = "residency, exposure, cost or violations")),
    responses((status = 200, description = "The report.", body = Report),
              (status = 404, description = "No such report.", body = ErrorBody)))]
pub(crate) async fn report(
    State(s): State<Shared>,
    Path(kind): Path<String>,
) -> ApiResult<Json<Report>> {
    let e = &s.engine;
    Ok(Json(match kind.as_str() {
        "residency" => Report::Residency(Residency {
            rows: e.residency().await?,
        }),
        "exposure" => {
            let p = e.present().await?;
            Report::Exposure(Exposure {
                grounds: citations(&p.exposure_before),
                rows: p.exposure_before,
                assumption: ASSUMPTION.into(),
                legal_notice: NOT_LEGAL_ADVICE.into(),
            })
        }
        "cost" => {
            let p = e.present().await?;
            Report::Cost(Cost {
                rows: p.cost_before,
                total_monthly_cost: p.totals.monthly_cost_before,
            })
        }
        "violations" => Report::Violations(Violations {
            violations: e.violations().await?,
        }),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "reports are residency, exposure, cost and violations",
            ));
        }
    }))
}

// ---------------------------------------------------------------------------
// The ledger
// ---------------------------------------------------------------------------

/// One ledger entry, as `ledger show --format json` gives it. Subjects
/// are named by token only.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LedgerEntryView {
    pub(crate) seq: i64,
    /// Milliseconds since the epoch.
    pub(crate) at: i64,
    pub(crate) kind: String,
    pub(crate) actor: String,
    /// The token of the subject concerned.
    pub(crate) subject: Option<String>,
    #[schema(value_type = Object)]
    pub(crate) body: Value,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

impl From<LedgerEntry> for LedgerEntryView {
    fn from(e: LedgerEntry) -> Self {
        LedgerEntryView {
            body: serde_json::from_str(&e.body).unwrap_or(Value::String(e.body)),
            seq: e.seq,
            at: e.at,
            kind: e.kind,
            actor: e.actor,
            subject: e.subject,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// A page of the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LedgerPage {
    entries: Vec<LedgerEntryView>,
    /// The cursor (`after`) of the next page, absent on the last one.
    next: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LedgerQuery {
    /// The seq after which the page starts (0, the default, from the first).
    after: Option<i64>,
    /// Entries per page, 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// The ledger, oldest first, a page at a time; as `ledger show`.
#[utoipa::path(get, path = "/v1/ledger", tag = "ledger", params(LedgerQuery),
    responses((status = 200, description = "A page of entries.", body = LedgerPage),
              (status = 400, description = "A bad cursor or limit.", body = ErrorBody)))]
pub(crate) async fn ledger(
    State(s): State<Shared>,
    Query(q): Query<LedgerQuery>,
) -> ApiResult<Json<LedgerPage>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "after must be a ledger seq (0 or more)",
        ));
    }
    let page = s.engine.ledger_page(after, limit).await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last().map(|e| e.seq))
        .flatten();
    Ok(Json(LedgerPage {
        entries: page.into_iter().map(LedgerEntryView::from).collect(),
        next,
    }))
}

/// Re-computes the ledger's hash chain and checks it against every signed
/// checkpoint; as `ledger verify --format json`.
#[utoipa::path(get, path = "/v1/ledger/verify", tag = "ledger",
    responses((status = 200, description = "The chain check.", body = domicile_engine::verify::LedgerReport)))]
pub(crate) async fn verify_ledger(State(s): State<Shared>) -> ApiResult {
    to_json(&s.engine.verify_ledger().await?)
}

// ---------------------------------------------------------------------------
// Custodians and collection
// ---------------------------------------------------------------------------

/// Wraps every data key of a custodian again under its key's newest
/// version, as `custodian rotate NAME`: a `file://` keyring gets its next
/// master key; for `aws-kms://` and `vault://` rotate the key in the key
/// manager first. Runs to its end before answering; run it again to finish
/// one that was interrupted.
#[utoipa::path(post, path = "/v1/custodians/{name}/rotate", tag = "custodians",
    params(("name" = String, Path, description = "The custodian's id.")),
    responses((status = 200, description = "What the rotation did.", body = RotationReport),
              (status = 404, description = "No such custodian.", body = ErrorBody)))]
pub(crate) async fn rotate_custodian(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Json<RotationReport>> {
    if !s
        .engine
        .config()
        .topology
        .custodians
        .iter()
        .any(|c| c.id.as_str() == name)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no custodian {name:?} in the topology"),
        ));
    }
    Ok(Json(
        s.engine
            .rotate_custodian(&name, &RotateOptions::default())
            .await?,
    ))
}

/// Deletes the blobs that are due for collection, as `gc` (and as `serve`
/// does in the background).
#[utoipa::path(post, path = "/v1/gc", tag = "custodians",
    responses((status = 200, description = "What the passes did; `failures` and `put_off` are retried later.", body = GcReport)))]
pub(crate) async fn gc(State(s): State<Shared>) -> ApiResult<Json<GcReport>> {
    Ok(Json(s.engine.collect_all_due().await?))
}

/// The grounds of an authority's reach under the active policy: each rule
/// or preset, its citations and summary, and what it reaches here; as
/// `reach explain --authority A --format json`. A simplified model of the
/// laws it cites, not legal advice.
#[utoipa::path(get, path = "/v1/reach/{authority}", tag = "reports",
    params(("authority" = String, Path, description = "A jurisdiction (ISO 3166-1 alpha-2), such as CN.")),
    responses((status = 200, description = "The grounds.", body = ReachExplanation),
              (status = 400, description = "Not a jurisdiction.", body = ErrorBody)))]
pub(crate) async fn reach(
    State(s): State<Shared>,
    Path(authority): Path<String>,
) -> ApiResult<Json<ReachExplanation>> {
    let a = jurisdiction(&authority)?;
    let acting = s.engine.follow_policy().await?;
    Ok(Json(domicile_engine::reach::explain(&acting.config, a)))
}
