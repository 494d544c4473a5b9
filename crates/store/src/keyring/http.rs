//! What the network backends share: one HTTP client per keyring (ring-only rustls, short
//! timeouts) and the rule that a key manager which cannot be reached, or answers with a
//! failure that passes, gives [`Error::KeyManagerUnavailable`], which is retryable.

use std::time::Duration;

use crate::error::{Error, Result};

/// How long connecting to a key manager may take: an unreachable one must fail a request
/// quickly rather than hold it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call to a key manager may take in all.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn client(custodian: &str) -> Result<reqwest::Client> {
    // reqwest's rustls has no provider of its own here (ring-only tree): install ring's
    // once per process; a second install is refused, harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .build()
        .map_err(|e| Error::KeyManagerUnavailable {
            custodian: custodian.to_owned(),
            reason: format!("cannot build an HTTP client: {e}"),
        })
}

/// A key manager's answer: its HTTP status and body.
pub(super) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// A failure that may pass by itself: the server's fault or throttling.
    pub fn is_transient(&self) -> bool {
        self.status >= 500 || self.status == 429
    }
}

/// Sends a request; a transport failure (refused, reset, timed out) is
/// [`Error::KeyManagerUnavailable`] naming `what` (the key manager's address).
pub(super) async fn send(
    custodian: &str,
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<Reply> {
    let unavailable = |e: reqwest::Error| Error::KeyManagerUnavailable {
        custodian: custodian.to_owned(),
        reason: format!("{what}: {}", transport_reason(&e)),
    };
    let response = request.send().await.map_err(unavailable)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(unavailable)?.to_vec();
    Ok(Reply { status, body })
}

/// The transport error with its causes (reqwest's own message is only "error sending
/// request").
fn transport_reason(e: &reqwest::Error) -> String {
    let mut reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}
