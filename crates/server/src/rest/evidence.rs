//! The ledger's signed checkpoints (list, sign) and the evidence bundle's
//! export (docs/evidence.md), as `ledger checkpoints`, `ledger checkpoint`
//! and `evidence export` give them (who may: `auth::PERMISSIONS`).

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domicile_catalog::CheckpointRow;
use domicile_core::exposure::ASSUMPTION;
use domicile_core::ids::SubjectId;
use domicile_core::presets::{self, NOT_LEGAL_ADVICE};
use domicile_engine::evidence::{EXPOSURE, RESIDENCY};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::error::ApiError;
use super::handlers::ApiResult;
use super::openapi::ErrorBody;

/// A signed checkpoint of the ledger's head (docs/evidence.md).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The signing key's fingerprint: hex SHA-256 of its public key.
    pub key_id: String,
    /// The signing key's public key, hex (32 bytes).
    pub public_key: String,
    /// The signature over the checkpoint statement, hex (64 bytes).
    pub signature: String,
}

impl From<CheckpointRow> for Checkpoint {
    fn from(c: CheckpointRow) -> Self {
        Checkpoint {
            seq: c.seq,
            hash: c.hash,
            at: c.at,
            key_id: c.key_id,
            public_key: c.public_key,
            signature: c.signature,
        }
    }
}

/// Every checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Checkpoints {
    checkpoints: Vec<Checkpoint>,
}

/// Every signed checkpoint of the ledger's head, by seq; as `ledger
/// checkpoints`.
#[utoipa::path(get, path = "/v1/ledger/checkpoints", tag = "ledger",
    responses((status = 200, description = "The checkpoints.", body = Checkpoints)))]
pub(crate) async fn list(State(s): State<Shared>) -> ApiResult<Json<Checkpoints>> {
    let all = s.engine.ledger_checkpoints().await?;
    Ok(Json(Checkpoints {
        checkpoints: all.into_iter().map(Checkpoint::from).collect(),
    }))
}

/// Signs the ledger's head with the ledger signing key and stores the
/// checkpoint; a head already signed keeps its checkpoint. Refused if the
/// ledger does not follow from the newest checkpoint. As `ledger
/// checkpoint`.
#[utoipa::path(post, path = "/v1/ledger/checkpoints", tag = "ledger",
    responses((status = 200, description = "The checkpoint.", body = Checkpoint)))]
pub(crate) async fn create(State(s): State<Shared>) -> ApiResult<Json<Checkpoint>> {
    Ok(Json(s.engine.checkpoint_ledger().await?.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// Only this subject's entries.
    subject: Option<String>,
}

/// The signed evidence bundle (docs/evidence.md): policy, verify result,
/// residency and exposure, the ledger's entries (all, or one subject's)
/// with the checkpoints that cover them, and the public key; byte for byte
/// as `evidence export` writes it.
#[utoipa::path(get, path = "/v1/evidence", tag = "ledger", params(ExportQuery),
    responses((status = 200, description = "The bundle.", body = Object),
              (status = 400, description = "A bad subject id, or a ledger that does not verify.", body = ErrorBody),
              (status = 404, description = "No ledger entry of the subject.", body = ErrorBody)))]
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
