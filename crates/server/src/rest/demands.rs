//! Demands: filing one (what an authority could compel for a subject,
//! recorded in the ledger, as `demand`), and the demands filed, read back
//! from the ledger.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use domicile_catalog::LedgerEntry;
use domicile_engine::demand::DemandReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::error::ApiError;
use super::handlers::{ApiResult, jurisdiction, subject};
use super::openapi::ErrorBody;

/// A demand to evaluate.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewDemand {
    /// The authority's jurisdiction (ISO 3166-1 alpha-2).
    authority: String,
    subject: String,
}

/// What an authority could compel for a subject; recorded in the ledger.
/// As `demand --authority A --subject ID --format json`.
#[utoipa::path(post, path = "/v1/demands", tag = "demands", request_body = NewDemand,
    responses((status = 200, description = "The demand, with its ledger seq.", body = DemandReport),
              (status = 400, description = "A bad authority or subject id.", body = ErrorBody),
              (status = 404, description = "Not registered.", body = ErrorBody)))]
pub(crate) async fn file(
    State(s): State<Shared>,
    body: Result<Json<NewDemand>, JsonRejection>,
) -> ApiResult<Json<DemandReport>> {
    let Json(body) = body?;
    let authority = jurisdiction(&body.authority)?;
    let id = subject(&body.subject)?;
    Ok(Json(s.engine.demand(authority, &id).await?))
}

/// A demand filed, as the ledger recorded it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FiledDemand {
    /// Its ledger seq: its id.
    seq: i64,
    /// Milliseconds since the epoch.
    at: i64,
    /// Who filed it.
    actor: String,
    /// The subject's id (its token if the id was not recorded).
    subject: Option<String>,
    /// The authority, the level and the copies within reach, as recorded.
    #[schema(value_type = Object)]
    record: Value,
}

/// A page of demands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DemandPage {
    demands: Vec<FiledDemand>,
    /// The cursor (`after`) of the next page, absent on the last one.
    next: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DemandQuery {
    /// The ledger seq after which the page starts (default 0).
    after: Option<i64>,
    /// Demands per page, 1 to 1000 (default 100).
    limit: Option<u32>,
}

async fn filed(s: &Shared, entries: Vec<LedgerEntry>) -> ApiResult<Vec<FiledDemand>> {
    let tokens: Vec<String> = entries.iter().filter_map(|e| e.subject.clone()).collect();
    let names = s.engine.subject_names(&tokens).await?;
    Ok(entries
        .into_iter()
        .map(|e| FiledDemand {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            subject: e.subject.map(|t| names.get(&t).cloned().unwrap_or(t)),
            record: serde_json::from_str(&e.body).unwrap_or(Value::String(e.body)),
        })
        .collect())
}

/// Ledger entries read per step of a demand listing.
const SCAN: u32 = 1000;

/// The demands filed, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/demands", tag = "demands", params(DemandQuery),
    responses((status = 200, description = "A page of demands.", body = DemandPage),
              (status = 400, description = "A bad cursor or limit.", body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<Shared>,
    Query(q): Query<DemandQuery>,
) -> ApiResult<Json<DemandPage>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let mut cursor = q.after.unwrap_or(0);
    if cursor < 0 {
        return Err(ApiError::bad_request(
            "after must be a ledger seq (0 or more)",
        ));
    }
    let mut found: Vec<LedgerEntry> = Vec::new();
    let mut more = false;
    'scan: loop {
        let page = s.engine.ledger_page(cursor, SCAN).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            cursor = e.seq;
            if e.kind == "demand" {
                if found.len() == limit as usize {
                    more = true;
                    break 'scan;
                }
                found.push(e);
            }
        }
    }
    let next = if more {
        found.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Json(DemandPage {
        demands: filed(&s, found).await?,
        next,
    }))
}

/// One demand filed, by its ledger seq.
#[utoipa::path(get, path = "/v1/demands/{seq}", tag = "demands",
    params(("seq" = i64, Path, description = "The demand's ledger seq.")),
    responses((status = 200, description = "The demand.", body = FiledDemand),
              (status = 404, description = "No demand at this seq.", body = ErrorBody)))]
pub(crate) async fn show(
    State(s): State<Shared>,
    Path(seq): Path<String>,
) -> ApiResult<Json<FiledDemand>> {
    let seq: i64 = seq
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError::bad_request("a demand is named by its ledger seq"))?;
    let entry = s
        .engine
        .ledger_page(seq - 1, 1)
        .await?
        .into_iter()
        .find(|e| e.seq == seq && e.kind == "demand")
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no demand at ledger seq {seq}"),
            )
        })?;
    let mut one = filed(&s, vec![entry]).await?;
    Ok(Json(one.remove(0)))
}
