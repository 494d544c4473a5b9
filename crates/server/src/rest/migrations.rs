//! Migrations: starting one (it runs in the background), its progress
//! (once, or as server-sent events until it ends), and pause, resume and
//! cancel; as `migrate …` does.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use domicile_engine::migrate::Tick;
use domicile_engine::{MigrateOptions, MigrationStatus};
use futures::Stream;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::error::ApiError;
use super::handlers::ApiResult;
use super::openapi::ErrorBody;

/// How a migration runs.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct MigrationRun {
    /// Bytes per second; 0 = unlimited.
    #[serde(default)]
    rate: u64,
    /// Worker turns run at once, 1 to 256 (default 4).
    #[serde(default)]
    workers: Option<usize>,
    /// Units per worker turn, 1 to 1024.
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

/// Starts a migration of the current plan; it runs in the background. As
/// `migrate apply`.
#[utoipa::path(post, path = "/v1/migrations", tag = "migrations",
    request_body(content = Option<MigrationRun>, description = "How it runs (optional)."),
    responses((status = 202, description = "Started.", body = MigrationStatus),
              (status = 400, description = "Bad knobs.", body = ErrorBody),
              (status = 409, description = "A job is open already.", body = ErrorBody)))]
pub(crate) async fn start(
    State(s): State<Shared>,
    body: Result<Option<Json<MigrationRun>>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<MigrationStatus>)> {
    let run = body?.map(|Json(b)| b).unwrap_or_default();
    let opts = run.options()?;
    let status = s.engine.start_migration(&opts).await?;
    // Even a job with no unit is run: the run closes it as done.
    run_in_background(&s, opts);
    Ok((StatusCode::ACCEPTED, Json(status)))
}

/// The open (or last) migration job's progress: units, bytes, rate and
/// ETA. As `migrate status`.
#[utoipa::path(get, path = "/v1/migrations/current", tag = "migrations",
    responses((status = 200, description = "Progress.", body = MigrationStatus),
              (status = 404, description = "No job yet.", body = ErrorBody)))]
pub(crate) async fn status(State(s): State<Shared>) -> ApiResult<Json<MigrationStatus>> {
    Ok(Json(s.engine.migration_status(None).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Milliseconds between events, 100 to 60000 (default 1000).
    every_ms: Option<u64>,
    /// Seconds after which the stream closes even if the job goes on, 1 to
    /// 3600 (default 600): reconnect to follow it further.
    max_seconds: Option<u64>,
}

/// Whether a job has nothing left to do.
fn ended(m: &MigrationStatus) -> bool {
    m.finished_at.is_some() && m.open_units() == 0
}

/// The current job's progress as server-sent events: a `status` event (a
/// MigrationStatus) at once and then every `every_ms` while it changes,
/// and an `end` event (the last status) once the job is done or cancelled
/// with nothing left, after which the stream closes; it also closes after
/// `max_seconds`.
#[utoipa::path(get, path = "/v1/migrations/current/events", tag = "migrations", params(EventsQuery),
    responses((status = 200, description = "`status` events, then one `end` event; each's data is a MigrationStatus.",
               body = MigrationStatus, content_type = "text/event-stream"),
              (status = 404, description = "No job yet.", body = ErrorBody)))]
pub(crate) async fn events(
    State(s): State<Shared>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let every = Duration::from_millis(q.every_ms.unwrap_or(1000).clamp(100, 60_000));
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(q.max_seconds.unwrap_or(600).clamp(1, 3600));
    let first = s.engine.migration_status(None).await?;
    // (shared, status to send, last sent, finished)
    let stream = futures::stream::unfold(
        (s, Some(first), None::<String>, false),
        move |(s, next, last, closed)| async move {
            if closed {
                return None;
            }
            let mut status = next;
            loop {
                let m = match status.take() {
                    Some(m) => m,
                    None => {
                        if tokio::time::Instant::now() + every > deadline {
                            return None;
                        }
                        tokio::time::sleep(every).await;
                        match s.engine.migration_status(None).await {
                            Ok(m) => m,
                            Err(e) => {
                                let ev = Event::default().event("error").data(e.to_string());
                                return Some((Ok(ev), (s, None, last, true)));
                            }
                        }
                    }
                };
                let data = serde_json::to_string(&m).unwrap_or_default();
                if ended(&m) {
                    let ev = Event::default().event("end").data(data);
                    return Some((Ok(ev), (s, None, None, true)));
                }
                if last.as_deref() != Some(data.as_str()) {
                    let ev = Event::default().event("status").data(data.clone());
                    return Some((Ok(ev), (s, None, Some(data), false)));
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Pauses, resumes or cancels the open migration job; as `migrate pause`,
/// `resume` and `cancel`.
#[utoipa::path(post, path = "/v1/migrations/current/{action}", tag = "migrations",
    params(("action" = String, Path, description = "pause, resume or cancel")),
    responses((status = 200, description = "The job after the action.", body = MigrationStatus),
              (status = 404, description = "No open job, or no such action.", body = ErrorBody),
              (status = 409, description = "Nothing to resume.", body = ErrorBody)))]
pub(crate) async fn action(
    State(s): State<Shared>,
    Path(action): Path<String>,
) -> ApiResult<Json<MigrationStatus>> {
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
    Ok(Json(status))
}
