//! Bearer tokens, roles, and [`PERMISSIONS`]: the one table of who may call
//! each route. Tokens are the config's `[[token]]`s and the deployment-wide
//! `DOMICILE_ADMIN_TOKEN` (`admin`) and `DOMICILE_AUDITOR_TOKEN`
//! (`auditor`); only their BLAKE3 hashes are kept, and comparing hashes is
//! constant-time.
//!
//! [`authorize`] runs before any handler or extractor, so a refused request
//! changes nothing and its body is never read: no token, or one that
//! matches none, gets 401; a token whose role the table does not list for
//! the route gets 403. A route missing from the table is refused to every
//! token, admin included. An allowed request carries its [`Caller`].

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domicile_engine::RestToken;

use super::error::ApiError;
use crate::metrics::Metrics;

pub use domicile_core::config::Role;
pub use domicile_engine::secrets::{ADMIN_TOKEN_VAR, AUDITOR_TOKEN_VAR};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// No token needed: the route holds no personal data.
    Anyone,
    /// A token of one of these roles.
    Roles(&'static [Role]),
}

/// One row of [`PERMISSIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    pub method: &'static str,
    /// The route's template, as the router names it.
    pub path: &'static str,
    pub allow: Allow,
}

const ADMIN: Role = Role::Admin;
const OPERATOR: Role = Role::Operator;
const AUDITOR: Role = Role::Auditor;
const LEGAL: Role = Role::Legal;

const fn p(method: &'static str, path: &'static str, allow: Allow) -> Permission {
    Permission {
        method,
        path,
        allow,
    }
}

const ALL: &[Role] = &[ADMIN, OPERATOR, AUDITOR, LEGAL];
const MANAGE: &[Role] = &[ADMIN, OPERATOR];
const READ: &[Role] = &[ADMIN, OPERATOR, AUDITOR];

/// Who may call each route of the admin API. The operator manages
/// subjects, plans, migrations, verification and collection (and signs
/// checkpoints); the auditor reads what holds no subject id in clear: the
/// reports, the ledger (subjects by token), its verification and
/// checkpoints, the evidence bundle, the policy, migration and verify
/// progress; legal files and reads demands; all four read the reports;
/// admin does everything, and alone applies a policy and rotates a
/// custodian's key. `HEAD` is `GET`.
pub const PERMISSIONS: &[Permission] = &[
    p("GET", "/healthz", Allow::Anyone),
    p("GET", "/metrics", Allow::Anyone),
    p("GET", "/openapi.json", Allow::Anyone),
    p("GET", "/v1/subjects", Allow::Roles(MANAGE)),
    p("POST", "/v1/subjects", Allow::Roles(MANAGE)),
    p("POST", "/v1/subjects/import", Allow::Roles(MANAGE)),
    p("GET", "/v1/subjects/{id}", Allow::Roles(MANAGE)),
    p("DELETE", "/v1/subjects/{id}", Allow::Roles(MANAGE)),
    p("POST", "/v1/subjects/{id}/rehome", Allow::Roles(MANAGE)),
    p("GET", "/v1/subjects/{id}/ledger", Allow::Roles(MANAGE)),
    p("GET", "/v1/plan", Allow::Roles(MANAGE)),
    p("POST", "/v1/plan", Allow::Roles(MANAGE)),
    p("GET", "/v1/reports/{kind}", Allow::Roles(ALL)),
    p("GET", "/v1/reach/{authority}", Allow::Roles(ALL)),
    p("POST", "/v1/demands", Allow::Roles(&[ADMIN, LEGAL])),
    p("GET", "/v1/demands", Allow::Roles(&[ADMIN, LEGAL])),
    p("GET", "/v1/demands/{seq}", Allow::Roles(&[ADMIN, LEGAL])),
    p("GET", "/v1/ledger", Allow::Roles(READ)),
    p("GET", "/v1/ledger/verify", Allow::Roles(&[ADMIN, AUDITOR])),
    p(
        "GET",
        "/v1/ledger/checkpoints",
        Allow::Roles(&[ADMIN, AUDITOR]),
    ),
    p("POST", "/v1/ledger/checkpoints", Allow::Roles(MANAGE)),
    p("GET", "/v1/evidence", Allow::Roles(&[ADMIN, AUDITOR])),
    p("GET", "/v1/policy", Allow::Roles(&[ADMIN, AUDITOR])),
    p("POST", "/v1/policy", Allow::Roles(&[ADMIN])),
    p("GET", "/v1/policy/history", Allow::Roles(&[ADMIN, AUDITOR])),
    p("POST", "/v1/policy/check", Allow::Roles(READ)),
    p("GET", "/v1/policy/explain", Allow::Roles(READ)),
    p("GET", "/v1/policy/diff", Allow::Roles(READ)),
    p("POST", "/v1/policy/diff", Allow::Roles(READ)),
    p("POST", "/v1/migrations", Allow::Roles(MANAGE)),
    p("GET", "/v1/migrations/current", Allow::Roles(READ)),
    p("GET", "/v1/migrations/current/events", Allow::Roles(READ)),
    p(
        "POST",
        "/v1/migrations/current/{action}",
        Allow::Roles(MANAGE),
    ),
    p("POST", "/v1/verify", Allow::Roles(MANAGE)),
    p("GET", "/v1/verify", Allow::Roles(READ)),
    p(
        "POST",
        "/v1/custodians/{name}/rotate",
        Allow::Roles(&[ADMIN]),
    ),
    p("POST", "/v1/gc", Allow::Roles(MANAGE)),
];

/// Who made a request: its token's name (what the ledger records as the
/// actor) and role. In the request's extensions once [`authorize`] let it
/// through; a handler takes it as an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The hashes of the configured tokens, with their names and roles.
#[derive(Debug)]
pub(crate) struct Tokens {
    known: Vec<(blake3::Hash, String, Role)>,
}

impl Tokens {
    pub(crate) fn of(tokens: Vec<RestToken>) -> Self {
        Tokens {
            known: tokens
                .into_iter()
                .map(|t| (blake3::hash(t.secret.as_bytes()), t.name, t.role))
                .collect(),
        }
    }

    pub(crate) fn any(&self) -> bool {
        !self.known.is_empty()
    }

    /// The caller a request's bearer token names.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = presented else {
            return Err(unauthorized(
                "this endpoint needs `Authorization: Bearer TOKEN`",
            ));
        };
        self.holder(token)
            .ok_or_else(|| unauthorized("the bearer token is not valid"))
    }

    /// The caller a token's secret names, if any (the web console's login
    /// asks this too).
    pub(crate) fn holder(&self, secret: &str) -> Option<Caller> {
        let h = blake3::hash(secret.trim().as_bytes());
        // Every hash is compared, each in constant time.
        let mut found = None;
        for (known, name, role) in &self.known {
            if *known == h {
                found = Some(Caller {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }
}

/// Whether [`PERMISSIONS`] lets `role` call `method path` (the web console
/// shows a role what this table lets it read or do, and no more).
pub(crate) fn role_may(role: Role, method: &str, path: &str) -> bool {
    PERMISSIONS.iter().any(|r| {
        r.method == method
            && r.path == path
            && match r.allow {
                Allow::Anyone => true,
                Allow::Roles(roles) => roles.contains(&role),
            }
    })
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
}

/// The table's verdict on a route and method.
fn allowed(path: &str, method: &Method) -> Result<Allow, ApiError> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut rows = PERMISSIONS.iter().filter(|r| r.path == path).peekable();
    if rows.peek().is_none() {
        tracing::error!(path, "a REST route has no row in the permission table");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route has no permission entry",
        ));
    }
    rows.find(|r| r.method == method)
        .map(|r| r.allow)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not served at {path}"),
            )
        })
}

/// What [`authorize`] needs.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub tokens: Arc<Tokens>,
    pub metrics: Arc<Metrics>,
}

/// Applies [`PERMISSIONS`] to a routed request before its handler runs.
pub(crate) async fn authorize(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let roles = match allowed(&path, req.method()) {
        Ok(Allow::Anyone) => return next.run(req).await,
        Ok(Allow::Roles(roles)) => roles,
        Err(e) => return e.into_response(),
    };
    let caller = match gate.tokens.caller(req.headers()) {
        Ok(c) => c,
        Err(e) => {
            gate.metrics.access_denied("rest", "");
            return e.into_response();
        }
    };
    if !roles.contains(&caller.role) {
        gate.metrics.access_denied("rest", &caller.name);
        tracing::info!(token = %caller.name, role = %caller.role, path, "rest access denied");
        let may: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the {} role may not {} {path}; roles that may: {}",
                caller.role,
                req.method(),
                may.join(", ")
            ),
        )
        .into_response();
    }
    // What the request causes is ledgered as this token's.
    let actor = format!("rest:{}", caller.name);
    req.extensions_mut().insert(caller);
    domicile_engine::actor::acting_as(actor, next.run(req)).await
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        // Only a route the table opens to anyone has none; its handler
        // does not ask.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route takes no caller",
            )
            .into_response()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_route_appears_once_per_method() {
        for (i, a) in PERMISSIONS.iter().enumerate() {
            assert!(
                !PERMISSIONS[i + 1..]
                    .iter()
                    .any(|b| (b.method, b.path) == (a.method, a.path)),
                "{} {} twice",
                a.method,
                a.path
            );
            if let Allow::Roles(roles) = a.allow {
                assert!(roles.contains(&Role::Admin), "admin does everything: {a:?}");
            }
        }
    }

    #[test]
    fn the_table_decides() {
        assert_eq!(
            allowed("/v1/demands", &Method::POST).unwrap(),
            Allow::Roles(&[Role::Admin, Role::Legal])
        );
        assert_eq!(allowed("/healthz", &Method::HEAD).unwrap(), Allow::Anyone);
        let e = allowed("/v1/demands", &Method::DELETE).unwrap_err();
        assert_eq!(e.status(), StatusCode::METHOD_NOT_ALLOWED);
        let e = allowed("/v1/unlisted", &Method::GET).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_token_is_known_by_its_hash() {
        let tokens = Tokens::of(vec![
            RestToken {
                name: "dpo".into(),
                role: Role::Auditor,
                secret: "t1".into(),
            },
            RestToken {
                name: "ops".into(),
                role: Role::Operator,
                secret: "t2".into(),
            },
        ]);
        let headers = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(
            tokens.caller(&headers("Bearer t2")).unwrap(),
            Caller {
                name: "ops".into(),
                role: Role::Operator
            }
        );
        for bad in ["Bearer t3", "Bearer ", "Basic t1", "t1"] {
            let e = tokens.caller(&headers(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{bad}");
        }
        assert!(!format!("{tokens:?}").contains("t1"));
    }
}
