//! Who is acting: every ledger entry records the actor that caused it,
//! never a secret.
//!
//! - The S3 API acts as `s3:NAME`, NAME being the request's credential;
//! - the REST API as `rest:NAME`, NAME being the request's token, and the
//!   web console as `console:NAME`, NAME being the token its session was
//!   opened with;
//! - a migration worker as `worker:ID`, ID being the name it holds leases
//!   under (process, time and worker number); a write's inline move acts
//!   as the writer, whose write caused it;
//! - anything else as `cli:USER`: the command line, and a server's own
//!   start-up (the operator who started it), USER being `DOMICILE_ACTOR`,
//!   else the system user.
//!
//! The actor of a request is scoped to the future that serves it
//! ([`acting_as`]), so no engine call needs one passed in. A future spawned
//! onto another task does not inherit it: wrap it in [`inherit`] first.

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static ACTOR: Arc<str>;
}

/// Runs `fut` with `actor` as the actor of every ledger entry it causes.
pub async fn acting_as<F: Future>(actor: impl Into<Arc<str>>, fut: F) -> F::Output {
    ACTOR.scope(actor.into(), fut).await
}

/// `fut` acting as the current actor, wherever it runs: for a future to be
/// spawned onto a task of its own, which would not inherit it.
pub fn inherit<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    acting_as(current(), fut)
}

/// The actor of the current future: the innermost [`acting_as`], else
/// [`command_line`].
pub fn current() -> String {
    ACTOR
        .try_with(|a| a.to_string())
        .unwrap_or_else(|_| command_line())
}

/// The actor of the command line: `cli:` and `DOMICILE_ACTOR`, else the
/// system user (`USER`, `LOGNAME`), else `operator`.
pub fn command_line() -> String {
    let user = ["DOMICILE_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| {
            std::env::var(v)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "operator".to_string());
    format!("cli:{user}")
}

/// The actor of a migration worker that holds leases as `owner`.
pub fn worker(owner: &str) -> String {
    format!("worker:{owner}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_innermost_scope_acts() {
        assert!(current().starts_with("cli:"));
        let seen = acting_as("s3:app", async {
            let outer = current();
            let inner = acting_as(worker("pid-1-w0"), async { current() }).await;
            (outer, inner, current())
        })
        .await;
        assert_eq!(
            seen,
            (
                "s3:app".to_string(),
                "worker:pid-1-w0".to_string(),
                "s3:app".to_string()
            )
        );
        assert!(current().starts_with("cli:"));
    }
}
