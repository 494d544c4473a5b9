//! The REST admin API, on axum: JSON in and out, with bearer tokens of four
//! roles (admin, operator, auditor, legal): the config's `[[token]]`s and
//! the deployment-wide `DOMICILE_ADMIN_TOKEN` and `DOMICILE_AUDITOR_TOKEN`.
//!
//! - `auth`: tokens, roles, [`PERMISSIONS`] (the one table of who may call
//!   each route) and the middleware that applies it before any handler.
//! - `error`: engine errors → HTTP status and a JSON body.
//! - `handlers`: the service, plans (and what-if plans), reports, the
//!   ledger, custodians and collection.
//! - `subjects`: the listing, add, import, show, rehome, erase, history.
//! - `demands`: filing a demand, and the demands filed.
//! - `migrations`: start, progress (also as server-sent events), pause,
//!   resume, cancel.
//! - `verify`: verify as a background job.
//! - `policy`: the policy versions (the active one, the history,
//!   applying), and check, explain and diff.
//! - `evidence`: the ledger's signed checkpoints, and the evidence bundle.
//! - `openapi`: the OpenAPI 3.1 document served at `/openapi.json`,
//!   generated from the handlers' `#[utoipa::path]`s and types.
//!
//! [`api`] is the one list of handlers: the router and the document both
//! come from it. docs/rest.md maps every CLI command to its route.
//!
//! `/healthz`, `/metrics` and `/openapi.json` need no token; they hold no
//! personal data. The web console (`crate::ui`) is served beside these
//! routes, at `/ui/`.

mod auth;
mod demands;
mod error;
mod evidence;
mod handlers;
mod migrations;
mod openapi;
mod policy;
mod subjects;
mod verify;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domicile_core::Config;
use domicile_engine::{Engine, RestToken, Secrets};

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ServerOptions;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub use auth::{ADMIN_TOKEN_VAR, AUDITOR_TOKEN_VAR, Allow, Caller, PERMISSIONS, Permission, Role};
pub(crate) use auth::{Tokens, role_may};
pub(crate) use error::ApiError;
pub(crate) use migrations::action as migration_action;

/// What every handler shares.
pub(crate) struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// The migration run this server started, if it is still going.
    pub migration: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The last verify job this server started.
    pub verify: Mutex<Option<verify::VerifyJob>>,
    /// The OpenAPI document served at `/openapi.json`.
    pub openapi: Arc<serde_json::Value>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

pub(crate) type Shared = Arc<AppState>;

/// The REST API's tokens: the config's `[[token]]`s with their secrets,
/// and the deployment-wide ones. Fails if a declared token has no secret or
/// two tokens share one.
pub fn tokens(config: &Config, secrets: &Secrets) -> Result<Vec<RestToken>> {
    secrets
        .rest_tokens(&config.tokens)
        .map_err(|e| Error::Secrets(e.to_string()))
}

/// The admin API's routes, limits and counters. `serve` checks
/// [`tokens`] before it starts; if they are wrong here all the same, no
/// token is accepted (fail closed).
pub fn router(engine: Arc<Engine>, metrics: Arc<Metrics>, options: &ServerOptions) -> Router {
    let tokens = auth::Tokens::of(engine.rest_tokens().unwrap_or_else(|e| {
        tracing::error!(error = %e, "the REST API's tokens are unusable: none is accepted");
        Vec::new()
    }));
    if !tokens.any() {
        tracing::warn!(
            "no [[token]], {ADMIN_TOKEN_VAR} or {AUDITOR_TOKEN_VAR}: every protected REST endpoint will answer 401"
        );
    }
    let tokens = Arc::new(tokens);
    let gate = auth::Gate {
        tokens: tokens.clone(),
        metrics: metrics.clone(),
    };
    let (routes, doc) = api();
    let state: Shared = Arc::new(AppState {
        engine,
        metrics: metrics.clone(),
        migration: Mutex::new(None),
        verify: Mutex::new(None),
        openapi: Arc::new(openapi::finish(doc)),
    });
    routes
        .route_layer(axum::middleware::from_fn_with_state(gate, auth::authorize))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            count_operations,
        ))
        // The web console: its own sessions, the same tokens and engine.
        .merge(crate::ui::router(state.clone(), tokens, options))
        .fallback(handlers::not_found)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(options.max_json_body))
        .layer(axum::middleware::from_fn_with_state(
            options.request_timeout,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (metrics, "rest"),
            count_responses,
        ))
}

/// Every route with its handler, and the OpenAPI document generated from
/// the same handlers. A route is added here and nowhere else (and given
/// its row in [`PERMISSIONS`]).
pub(crate) fn api() -> (Router<Shared>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::openapi))
        .routes(routes!(subjects::list, subjects::add))
        .merge(
            // A CSV of many subjects is larger than any JSON body.
            OpenApiRouter::new()
                .routes(routes!(subjects::import))
                .layer(axum::extract::DefaultBodyLimit::max(subjects::MAX_IMPORT)),
        )
        .routes(routes!(subjects::show, subjects::erase))
        .routes(routes!(subjects::rehome))
        .routes(routes!(subjects::ledger))
        .routes(routes!(handlers::plan, handlers::what_if))
        .routes(routes!(handlers::report))
        .routes(routes!(handlers::reach))
        .routes(routes!(demands::file, demands::list))
        .routes(routes!(demands::show))
        .routes(routes!(handlers::ledger))
        .routes(routes!(handlers::verify_ledger))
        .routes(routes!(evidence::list, evidence::create))
        .routes(routes!(evidence::export))
        .routes(routes!(policy::show, policy::apply))
        .routes(routes!(policy::history))
        .routes(routes!(policy::check))
        .routes(routes!(policy::explain))
        .routes(routes!(policy::diff_versions, policy::diff_text))
        .routes(routes!(migrations::start))
        .routes(routes!(migrations::status))
        .routes(routes!(migrations::events))
        .routes(routes!(migrations::action))
        .routes(routes!(verify::start, verify::status))
        .routes(routes!(handlers::rotate_custodian))
        .routes(routes!(handlers::gc))
        .split_for_parts()
}

/// The OpenAPI document of the admin API, as `/openapi.json` serves it.
pub fn openapi_document() -> serde_json::Value {
    openapi::finish(api().1)
}

/// Counts every response of an API by status (both APIs use it).
pub(crate) async fn count_responses(
    State((metrics, api)): State<(Arc<Metrics>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let res = next.run(req).await;
    metrics.response(api, res.status().as_u16());
    res
}

/// Counts requests per route template (never the raw path: it may hold a
/// subject id).
async fn count_operations(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let op = match req.extensions().get::<MatchedPath>() {
        Some(p) => format!("{} {}", req.method(), p.as_str()),
        None => req.method().to_string(),
    };
    let res = next.run(req).await;
    let status = res.status().as_u16();
    metrics.request("rest", &op, status);
    if status >= 400 {
        metrics.error("rest", &op, &status.to_string());
    }
    res
}

/// Bounds every request's time.
async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took longer than {} s; long work (migrations) runs in the background",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}
