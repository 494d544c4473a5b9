//! Subjects: the listing (keyset paging, filters by home and region),
//! registering one or a CSV of many, a subject's copies and exposure, its
//! ledger history, re-homing and erasure; as `subject …` does.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::rejection::StringRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::subjects::{
    ErasureReport, ImportReport, SubjectPage, SubjectView, parse_subject_csv,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::error::ApiError;
use super::handlers::{ApiResult, LedgerEntryView, jurisdiction, subject};
use super::openapi::ErrorBody;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// The cursor: the `next` of the page before (absent for the first).
    after: Option<String>,
    /// Subjects per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// Only subjects of this home (ISO 3166-1 alpha-2).
    home: Option<String>,
    /// Only subjects with a placement in this region.
    region: Option<String>,
}

/// Registered subjects in a stable order, a page at a time: follow `next`
/// until it is absent, and each subject comes exactly once.
#[utoipa::path(get, path = "/v1/subjects", tag = "subjects", params(ListQuery),
    responses((status = 200, description = "A page of subjects.", body = SubjectPage),
              (status = 400, description = "A bad cursor, limit, home or region.", body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<Shared>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<SubjectPage>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let home = q.home.as_deref().map(jurisdiction).transpose()?;
    Ok(Json(
        s.engine
            .list_subjects(
                q.after.as_deref(),
                q.limit.unwrap_or(100),
                home,
                q.region.as_deref(),
            )
            .await?,
    ))
}

/// A subject to register.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub(crate) struct NewSubject {
    subject: String,
    /// ISO 3166-1 alpha-2 code.
    home: String,
}

/// A registered subject.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Registered {
    subject: String,
    home: Jurisdiction,
}

/// Registers a subject; as `subject add ID --home H`.
#[utoipa::path(post, path = "/v1/subjects", tag = "subjects", request_body = NewSubject,
    responses((status = 201, description = "Registered.", body = Registered),
              (status = 400, description = "A bad id or home.", body = ErrorBody),
              (status = 409, description = "Already registered.", body = ErrorBody)))]
pub(crate) async fn add(
    State(s): State<Shared>,
    body: Result<Json<NewSubject>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    let Json(body) = body?;
    let id = subject(&body.subject)?;
    let home = jurisdiction(&body.home)?;
    s.engine.add_subject(&id, home).await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            subject: id.to_string(),
            home,
        }),
    ))
}

/// The largest CSV body an import takes (about a million subjects).
pub(crate) const MAX_IMPORT: usize = 32 << 20;

/// Registers the subjects of a CSV body, `subject,home` per line (a header
/// line `subject,home` may come first); as `subject import FILE`. Every row
/// is checked first: a bad one gets 400 naming its line, and nothing is
/// registered. Subjects registered already are skipped. The body may be up
/// to 32 MiB (other bodies: the JSON limit).
#[utoipa::path(post, path = "/v1/subjects/import", tag = "subjects",
    request_body(content = String, content_type = "text/csv", description = "subject,home lines."),
    responses((status = 200, description = "Rows read and subjects added.", body = ImportReport),
              (status = 400, description = "A bad row: nothing was registered.", body = ErrorBody)))]
pub(crate) async fn import(
    State(s): State<Shared>,
    body: Result<String, StringRejection>,
) -> ApiResult<Json<ImportReport>> {
    let rows = parse_subject_csv(body?.as_bytes(), "request body")?;
    Ok(Json(s.engine.import_subjects(&rows, |_| {}).await?))
}

/// Where a subject's data is (its copies per category, custodians, epochs)
/// and who could compel it; as `subject show ID --format json`.
#[utoipa::path(get, path = "/v1/subjects/{id}", tag = "subjects",
    params(("id" = String, Path, description = "The subject's id.")),
    responses((status = 200, description = "The subject.", body = SubjectView),
              (status = 404, description = "Not registered.", body = ErrorBody)))]
pub(crate) async fn show(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<SubjectView>> {
    Ok(Json(s.engine.show_subject(&subject(&id)?).await?))
}

/// Erases a subject: purges every copy and shreds its keys; as `subject
/// erase ID`.
#[utoipa::path(delete, path = "/v1/subjects/{id}", tag = "subjects",
    params(("id" = String, Path, description = "The subject's id.")),
    responses((status = 200, description = "Erased.", body = ErasureReport),
              (status = 404, description = "Not registered.", body = ErrorBody)))]
pub(crate) async fn erase(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<ErasureReport>> {
    Ok(Json(s.engine.erase_subject(&subject(&id)?).await?))
}

/// A subject's new home.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewHome {
    /// ISO 3166-1 alpha-2 code.
    home: String,
}

/// A re-homing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Rehomed {
    subject: String,
    from: Jurisdiction,
    to: Jurisdiction,
}

/// Changes a subject's home; its data follows at the next migration. As
/// `subject rehome ID --home H`.
#[utoipa::path(post, path = "/v1/subjects/{id}/rehome", tag = "subjects",
    params(("id" = String, Path, description = "The subject's id.")),
    request_body = NewHome,
    responses((status = 200, description = "Re-homed.", body = Rehomed),
              (status = 400, description = "A bad id or home.", body = ErrorBody),
              (status = 404, description = "Not registered.", body = ErrorBody)))]
pub(crate) async fn rehome(
    State(s): State<Shared>,
    Path(id): Path<String>,
    body: Result<Json<NewHome>, JsonRejection>,
) -> ApiResult<Json<Rehomed>> {
    let Json(body) = body?;
    let id = subject(&id)?;
    let home = jurisdiction(&body.home)?;
    let from = s.engine.rehome(&id, home).await?;
    Ok(Json(Rehomed {
        subject: id.to_string(),
        from,
        to: home,
    }))
}

/// A subject's ledger history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubjectLedger {
    subject: String,
    entries: Vec<LedgerEntryView>,
}

/// Every ledger entry of a subject, oldest first; as `ledger show
/// --subject ID`. A subject erased has its history still.
#[utoipa::path(get, path = "/v1/subjects/{id}/ledger", tag = "subjects",
    params(("id" = String, Path, description = "The subject's id.")),
    responses((status = 200, description = "The history.", body = SubjectLedger),
              (status = 404, description = "No entry of this subject.", body = ErrorBody)))]
pub(crate) async fn ledger(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> ApiResult<Json<SubjectLedger>> {
    let id = subject(&id)?;
    let entries = s.engine.subject_ledger(&id).await?;
    if entries.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_registered",
            "the ledger has no entry of this subject",
        ));
    }
    Ok(Json(SubjectLedger {
        subject: id.to_string(),
        entries: entries.into_iter().map(LedgerEntryView::from).collect(),
    }))
}
