//! The web console at `/ui/`, on the REST listener: server-rendered pages
//! over the same engine calls the REST handlers make, with the charts of
//! the HTML reports (`domicile-report-html`) placed in them. Its style
//! sheet and its one small script are embedded in the binary; nothing is
//! fetched from elsewhere (docs/console.md).
//!
//! - `session`: sessions opened by logging in with a REST token; the
//!   cookie, the CSRF token of every form.
//! - `html`: the page around each view, tables, escaping (one `esc`, the
//!   reports').
//! - `pages`: one handler per page: login, overview, exposure, plan,
//!   migration, subject, ledger.
//!
//! What a role sees follows the REST API's permission table
//! (`rest::PERMISSIONS`): a page or button whose REST route the role may
//! not call is not shown, and its request is refused. Pages that hold no
//! subject id in clear (the overview, exposure, a what-if plan, a
//! migration's progress) are open to every role; a plan names subjects
//! only for roles that may look subjects up.
//!
//! Every response carries a strict Content-Security-Policy (no inline
//! script or style, nothing from another origin), `X-Frame-Options: DENY`
//! and `Cache-Control: no-store`; every POST must come from the console's
//! own origin and carry the session's CSRF token.

mod html;
mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::ServerOptions;
use crate::rest::{Role, Shared, Tokens, role_may};
use session::{Session, Sessions};

/// The console's Content-Security-Policy: its own scripts, styles and
/// images only, forms posted to itself, never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// Largest form the console accepts (a pasted policy), in bytes.
const MAX_FORM: usize = 1 << 20;

/// What the console's handlers share.
#[derive(Debug, Clone)]
pub(crate) struct Ui(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    app: Shared,
    tokens: Arc<Tokens>,
    sessions: Sessions,
    /// The listener speaks TLS: the cookie is Secure.
    secure: bool,
}

impl std::ops::Deref for Ui {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The console's routes, to merge into the REST API's router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(
    app: Shared,
    tokens: Arc<Tokens>,
    options: &ServerOptions,
) -> Router<S> {
    let ui = Ui(Arc::new(Inner {
        app,
        tokens,
        sessions: Sessions::new(session::IDLE, session::LIFETIME),
        secure: options.tls.is_some(),
    }));
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::home))
        .route("/ui/app.js", get(pages::script))
        .route("/ui/console.css", get(pages::style))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/overview", get(pages::overview))
        .route("/ui/exposure", get(pages::exposure))
        .route("/ui/plan", get(pages::plan_form).post(pages::plan))
        .route("/ui/migration", get(pages::migration))
        .route("/ui/migration.json", get(pages::migration_json))
        .route("/ui/migration/{action}", post(pages::migration_action))
        .route("/ui/subject", get(pages::subject_form).post(pages::subject))
        .route("/ui/ledger", get(pages::ledger))
        .route("/ui/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(axum::middleware::from_fn(same_origin_posts))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
        .with_state(ui)
}

/// The console's pages, each shown to the roles that may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Overview,
    Exposure,
    Plan,
    Migration,
    Subject,
    Ledger,
}

impl View {
    pub(crate) const ALL: [View; 6] = [
        View::Overview,
        View::Exposure,
        View::Plan,
        View::Migration,
        View::Subject,
        View::Ledger,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            View::Overview => "/ui/overview",
            View::Exposure => "/ui/exposure",
            View::Plan => "/ui/plan",
            View::Migration => "/ui/migration",
            View::Subject => "/ui/subject",
            View::Ledger => "/ui/ledger",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Exposure => "Exposure",
            View::Plan => "Plan",
            View::Migration => "Migration",
            View::Subject => "Subject",
            View::Ledger => "Ledger",
        }
    }

    /// Whether `role` may see this page: as the REST route that gives the
    /// same data allows.
    pub(crate) fn open_to(self, role: Role) -> bool {
        match self {
            View::Overview | View::Exposure => role_may(role, "GET", "/v1/reports/{kind}"),
            // A what-if plan and a migration's progress name no subject
            // to a role that may not look subjects up.
            View::Plan | View::Migration => true,
            View::Subject => role_may(role, "GET", "/v1/subjects/{id}"),
            View::Ledger => role_may(role, "GET", "/v1/ledger/verify"),
        }
    }
}

/// Whether `role` may see subject ids in clear (in a plan's moves).
pub(crate) fn sees_subject_ids(role: Role) -> bool {
    role_may(role, "GET", "/v1/subjects/{id}")
}

/// Whether `role` may pause, resume and cancel a migration.
pub(crate) fn controls_migrations(role: Role) -> bool {
    role_may(role, "POST", "/v1/migrations/current/{action}")
}

/// The logged-in browser behind a request.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub session: Session,
}

impl FromRequestParts<Ui> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Response> {
        let found = session::cookie_id(&parts.headers).and_then(|id| ui.sessions.get(&id));
        match found {
            Some(session) => Ok(Viewer { session }),
            None if parts.uri.path().ends_with(".json") => Err((
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"not logged in"}"#,
            )
                .into_response()),
            None => Err(Redirect::to("/ui/login").into_response()),
        }
    }
}

/// The security headers of every console response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Refuses a POST sent from another site: by the browser's
/// `Sec-Fetch-Site`, or an `Origin` whose host is not this one. (The
/// SameSite=Strict cookie and the forms' CSRF token stop it too; this also
/// covers the login form, which has no session yet.)
async fn same_origin_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "cross-site request refused\n",
        )
            .into_response();
    }
    next.run(req).await
}

fn same_origin(h: &HeaderMap) -> bool {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_role_sees_what_the_permission_table_lets_it_read() {
        let seen = |role| {
            View::ALL
                .iter()
                .filter(|v| v.open_to(role))
                .map(|v| v.name())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            seen(Role::Auditor),
            ["Overview", "Exposure", "Plan", "Migration", "Ledger"]
        );
        assert_eq!(
            seen(Role::Operator),
            ["Overview", "Exposure", "Plan", "Migration", "Subject"]
        );
        assert_eq!(seen(Role::Admin).len(), 6);
        assert!(!controls_migrations(Role::Auditor));
        assert!(!controls_migrations(Role::Legal));
        assert!(controls_migrations(Role::Operator));
        assert!(!sees_subject_ids(Role::Auditor));
        assert!(sees_subject_ids(Role::Admin));
    }

    #[test]
    fn a_post_from_another_origin_is_refused() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
        ])));
    }
}
