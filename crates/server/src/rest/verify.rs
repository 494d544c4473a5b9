//! Verify as a background job: start a scan of every region against the
//! catalog and the policy (`verify`, `--quick`, `--deep`), then read its
//! state and, once done, its report. One scan runs at a time per server.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use domicile_engine::verify::{VerifyOptions, VerifyProgress, VerifyReport};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Shared;
use super::error::ApiError;
use super::handlers::ApiResult;
use super::openapi::ErrorBody;

/// How to verify.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRun {
    /// Skip re-reading blobs for their checksums.
    #[serde(default)]
    quick: bool,
    /// Also open every object's data key through its custodian and check
    /// that every copy decrypts and authenticates.
    #[serde(default)]
    deep: bool,
}

/// How far a verify job has come: counts that grow as it scans.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub(crate) struct Progress {
    /// Index rows met with the regions' listings.
    objects_indexed: u64,
    /// Copies checked against their index row.
    copies_checked: u64,
    /// With `deep`: objects opened through their custodian.
    objects_opened: u64,
}

/// A verify job: its state, and its report once done.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct VerifyJob {
    /// Numbered from 1 by this server.
    pub(crate) id: u64,
    /// `running`, `done` or `failed`.
    pub(crate) state: String,
    pub(crate) quick: bool,
    pub(crate) deep: bool,
    /// Milliseconds since the epoch.
    pub(crate) started_at: i64,
    pub(crate) finished_at: Option<i64>,
    /// Seconds it has run (or ran).
    pub(crate) elapsed_seconds: f64,
    /// How far it has come.
    pub(crate) progress: Progress,
    /// Whether the scan found no problem (once done).
    pub(crate) clean: Option<bool>,
    /// The report (once done), as `verify --format json`.
    pub(crate) report: Option<VerifyReport>,
    /// Why it failed (once failed).
    pub(crate) error: Option<String>,
    #[serde(skip)]
    pub(crate) counts: Arc<VerifyProgress>,
}

fn now_millis() -> i64 {
    domicile_engine::clock::now_millis()
}

impl VerifyJob {
    fn seen_now(mut self) -> Self {
        let end = self.finished_at.unwrap_or_else(now_millis);
        self.elapsed_seconds = (end - self.started_at).max(0) as f64 / 1000.0;
        let c = &self.counts;
        self.progress = Progress {
            objects_indexed: c.objects_indexed.load(Ordering::Relaxed),
            copies_checked: c.copies_checked.load(Ordering::Relaxed),
            objects_opened: c.objects_opened.load(Ordering::Relaxed),
        };
        self
    }
}

/// Starts a verify scan in the background. Refused with 409 while one runs.
#[utoipa::path(post, path = "/v1/verify", tag = "verify",
    request_body(content = Option<VerifyRun>, description = "How to verify (optional)."),
    responses((status = 202, description = "Started.", body = VerifyJob),
              (status = 400, description = "A bad body.", body = ErrorBody),
              (status = 409, description = "A scan is running.", body = ErrorBody)))]
pub(crate) async fn start(
    State(s): State<Shared>,
    body: Result<Option<Json<VerifyRun>>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<VerifyJob>)> {
    let run = body?.map(|Json(b)| b).unwrap_or_default();
    let job = {
        let mut slot = s
            .verify
            .lock()
            .map_err(|_| ApiError::from(domicile_engine::Error::Internal("verify slot".into())))?;
        if let Some(j) = slot.as_ref()
            && j.state == "running"
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "running",
                format!("verify job {} is running; see GET /v1/verify", j.id),
            ));
        }
        let job = VerifyJob {
            id: slot.as_ref().map_or(1, |j| j.id + 1),
            state: "running".into(),
            quick: run.quick,
            deep: run.deep,
            started_at: now_millis(),
            finished_at: None,
            elapsed_seconds: 0.0,
            progress: Progress::default(),
            clean: None,
            report: None,
            error: None,
            counts: Arc::new(VerifyProgress::default()),
        };
        *slot = Some(job.clone());
        job
    };
    let state = s.clone();
    let id = job.id;
    let options = VerifyOptions {
        checksums: !run.quick,
        progress: Some(job.counts.clone()),
        ..VerifyOptions::default()
    };
    tokio::spawn(domicile_engine::actor::inherit(async move {
        let result = if run.deep {
            state.engine.verify_deep_with(&options).await
        } else {
            state.engine.verify_with(&options).await
        };
        let Ok(mut slot) = state.verify.lock() else {
            return;
        };
        if let Some(j) = slot.as_mut().filter(|j| j.id == id) {
            j.finished_at = Some(now_millis());
            match result {
                Ok(r) => {
                    j.state = "done".into();
                    j.clean = Some(r.is_clean());
                    j.report = Some(r);
                }
                Err(e) => {
                    tracing::error!(error = %e, "verify failed");
                    j.state = "failed".into();
                    j.error = Some(e.to_string());
                }
            }
        }
    }));
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// The last verify job this server started: running (with its elapsed
/// time), or done with its report, or failed with why.
#[utoipa::path(get, path = "/v1/verify", tag = "verify",
    responses((status = 200, description = "The job.", body = VerifyJob),
              (status = 404, description = "No verify job yet.", body = ErrorBody)))]
pub(crate) async fn status(State(s): State<Shared>) -> ApiResult<Json<VerifyJob>> {
    let job = s
        .verify
        .lock()
        .map_err(|_| ApiError::from(domicile_engine::Error::Internal("verify slot".into())))?
        .clone();
    match job {
        Some(j) => Ok(Json(j.seen_now())),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no verify job yet: POST /v1/verify starts one",
        )),
    }
}
