//! Bearer tokens and roles. Tokens come from the secrets; only their BLAKE3
//! hashes are kept, and comparing hashes is constant-time. A request with no
//! token, or one that matches neither role, gets 401; a valid token whose
//! role may not do what is asked gets 403.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use domicile_engine::ApiTokens;

use super::Shared;
use super::error::ApiError;

pub use domicile_engine::secrets::{ADMIN_TOKEN_VAR, AUDITOR_TOKEN_VAR};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Everything.
    Admin,
    /// Read reports and the ledger.
    Auditor,
}

/// The hashes of the configured tokens.
#[derive(Debug)]
pub(crate) struct Tokens {
    admin: Option<blake3::Hash>,
    auditor: Option<blake3::Hash>,
}

impl Tokens {
    pub(crate) fn of(t: ApiTokens<'_>) -> Self {
        let hash = |t: Option<&str>| t.map(|t| blake3::hash(t.as_bytes()));
        Tokens {
            admin: hash(t.admin),
            auditor: hash(t.auditor),
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.admin.is_some() || self.auditor.is_some()
    }

    /// The role of a request's bearer token.
    pub(crate) fn role(&self, parts: &Parts) -> Result<Role, ApiError> {
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| blake3::hash(t.trim().as_bytes()));
        let Some(h) = presented else {
            return Err(unauthorized(
                "this endpoint needs `Authorization: Bearer TOKEN`",
            ));
        };
        if self.admin == Some(h) {
            Ok(Role::Admin)
        } else if self.auditor == Some(h) {
            Ok(Role::Auditor)
        } else {
            Err(unauthorized("the bearer token is not valid"))
        }
    }
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
}

/// A request whose token has the `admin` role.
#[derive(Debug)]
pub(crate) struct Admin;

/// A request whose token may read reports and the ledger (`admin` or
/// `auditor`).
#[derive(Debug)]
pub(crate) struct Reader;

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        match state.tokens.role(parts)? {
            Role::Admin => Ok(Admin),
            Role::Auditor => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the auditor role may only read reports and the ledger",
            )),
        }
    }
}

impl FromRequestParts<Shared> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        state.tokens.role(parts).map(|_| Reader)
    }
}
