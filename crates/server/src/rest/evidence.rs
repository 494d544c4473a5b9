//! The ledger's signed checkpoints (list, sign) and the evidence bundle's
//! export (docs/evidence.md), as `ledger checkpoints`, `ledger checkpoint`
//! and `evidence export` give them (who may: `auth::PERMISSIONS`).

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domicile_core::exposure::ASSUMPTION;
use domicile_core::ids::SubjectId;
use domicile_core::presets::{self, NOT_LEGAL_ADVICE};
use domicile_engine::evidence::{EXPOSURE, RESIDENCY};
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::error::ApiError;
use super::handlers::{ApiResult, to_json};

/// `GET /v1/ledger/checkpoints`: every stored checkpoint, by seq.
pub(crate) async fn list(State(s): State<Shared>) -> ApiResult {
    let all = s.engine.ledger_checkpoints().await?;
    Ok(Json(json!({"checkpoints": all})))
}

/// `POST /v1/ledger/checkpoints`: signs the ledger's head and stores it.
pub(crate) async fn create(State(s): State<Shared>) -> ApiResult {
    to_json(&s.engine.checkpoint_ledger().await?)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExportQuery {
    /// Only this subject's entries.
    subject: Option<String>,
}

/// `GET /v1/evidence[?subject=ID]`: the signed bundle, byte for byte as
/// `evidence export` writes it.
pub(crate) async fn export(
    State(s): State<Shared>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let id = q
        .subject
        .as_deref()
        .map(SubjectId::from_str)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let e = &s.engine;
    let pretty = |v: &serde_json::Value| {
        serde_json::to_string_pretty(v)
            .map_err(|e| ApiError::from(domicile_engine::Error::Internal(e.to_string())))
    };
    let mut documents = BTreeMap::new();
    documents.insert(
        RESIDENCY.to_string(),
        pretty(&json!({"rows": e.residency().await?}))?,
    );
    let p = e.present().await?;
    let grounds: Vec<_> = presets::cited(p.exposure_before.iter().flat_map(|r| r.grounds.iter()))
        .iter()
        .map(|p| p.citation())
        .collect();
    documents.insert(
        EXPOSURE.to_string(),
        pretty(&json!({"rows": p.exposure_before, "assumption": ASSUMPTION,
                       "grounds": grounds, "legal_notice": NOT_LEGAL_ADVICE}))?,
    );
    let bytes = e.export_evidence(id.as_ref(), documents).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
