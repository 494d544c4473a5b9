//! What bounds requests, whichever API they are for: a cap on requests in
//! flight and, on the S3 API, a total time for requests without a body.
//!
//! - **In flight.** Each API serves at most `max_in_flight` requests at
//!   once. A request counts from its head until its response body has been
//!   sent (a streamed GET holds its slot to the end). One beyond the cap is
//!   answered at once, without reading its body: 503 with `Retry-After` on
//!   the REST API, S3 `SlowDown` (503, `Retry-After`) on the S3 API. Nothing
//!   queues, so a flood costs a refusal each and the requests already
//!   admitted keep their pace.
//! - **Total time.** An S3 request that sends no body (GET, HEAD, DELETE,
//!   a listing) must produce its response head within `request_timeout`,
//!   or it is answered 503 `ServiceUnavailable`. The response body is not
//!   bounded: a GET may stream a large object for as long as the client
//!   reads it. Requests with a body are bounded by the body idle timeout
//!   instead, and copies (which send no body but move a whole object) by
//!   the stores. The REST API bounds every request with its own timeout
//!   (`rest`), its bodies being small JSON.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Seconds a refused client is asked to wait.
const RETRY_AFTER: &str = "1";

/// The limits one API's requests pass through.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    api: &'static str,
    slots: Arc<Semaphore>,
    /// The total time of a bodiless S3 request; `None` on the REST API.
    request_timeout: Option<Duration>,
    metrics: Arc<Metrics>,
}

impl Gate {
    pub(crate) fn new(
        api: &'static str,
        max_in_flight: usize,
        request_timeout: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> Gate {
        Gate {
            api,
            slots: Arc::new(Semaphore::new(
                max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            )),
            request_timeout,
            metrics,
        }
    }

    /// `app` behind this gate (the outermost layer: a refusal costs
    /// nothing below it).
    pub(crate) fn guard(self, app: Router) -> Router {
        app.layer(axum::middleware::from_fn_with_state(self, admit))
    }
}

fn has_body(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING)
}

async fn admit(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let body = has_body(&req);
    let Ok(permit) = gate.slots.clone().try_acquire_owned() else {
        gate.metrics.response(gate.api, 503);
        gate.metrics.error(gate.api, "in_flight", "busy");
        tracing::debug!(api = gate.api, "request refused: too many in flight");
        let mut res = busy(gate.api);
        if body {
            // Its body is unread: the connection cannot carry another
            // request after it.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return res;
    };
    let bounded = match gate.request_timeout {
        Some(limit) if !body && !req.headers().contains_key("x-amz-copy-source") => Some(limit),
        _ => None,
    };
    let res = match bounded {
        None => next.run(req).await,
        Some(limit) => match tokio::time::timeout(limit, next.run(req)).await {
            Ok(res) => res,
            Err(_) => {
                gate.metrics.response(gate.api, 503);
                gate.metrics
                    .error(gate.api, "timeout", "ServiceUnavailable");
                s3_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    &format!("the request took longer than {} s", limit.as_secs_f64()),
                )
            }
        },
    };
    res.map(|body| {
        Body::new(Held {
            body,
            _permit: permit,
        })
    })
}

/// The refusal of a request beyond the cap, in the API's own form.
fn busy(api: &'static str) -> Response {
    let mut res = if api == "s3" {
        s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {
                "code": "busy",
                "message": "too many requests in flight; retry after the delay in Retry-After",
            }})),
        )
            .into_response()
    };
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    res
}

/// An S3 error document (no request id: none was assigned yet).
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    res
}

/// A response body that holds its request's slot until it is sent or
/// dropped.
struct Held {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::routing::get;

    fn app(gate: Gate) -> Router {
        gate.guard(Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        ))
    }

    async fn call(app: &Router, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::builder().uri("/slow");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut app = app.clone();
        tower_service::Service::call(&mut app, req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn beyond_the_cap_is_refused_not_queued() {
        let metrics = Arc::new(Metrics::new());
        let app = app(Gate::new("s3", 2, None, metrics.clone()));
        let started = std::time::Instant::now();
        let all = futures::future::join_all((0..5).map(|_| call(&app, &[]))).await;
        let statuses: Vec<u16> = all.iter().map(|r| r.status().as_u16()).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            2,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 503).count(),
            3,
            "{statuses:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "refusals waited"
        );
        let refused = all.into_iter().find(|r| r.status() == 503).unwrap();
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("<Code>SlowDown</Code>"));
        // The slots came back with the bodies.
        assert_eq!(call(&app, &[]).await.status(), 200);
    }

    #[tokio::test]
    async fn a_bodiless_s3_request_is_bounded_a_copy_is_not() {
        let metrics = Arc::new(Metrics::new());
        let app = app(Gate::new(
            "s3",
            8,
            Some(Duration::from_millis(100)),
            metrics,
        ));
        assert_eq!(call(&app, &[]).await.status(), 503);
        assert_eq!(
            call(&app, &[("x-amz-copy-source", "b/k")]).await.status(),
            200
        );
        assert_eq!(call(&app, &[("content-length", "5")]).await.status(), 200);
    }

    #[tokio::test]
    async fn the_rest_refusal_is_json_with_retry_after() {
        let metrics = Arc::new(Metrics::new());
        let gate = Gate::new("rest", 1, None, metrics);
        let slot = gate.slots.clone().try_acquire_owned().unwrap();
        let res = call(&app(gate), &[]).await;
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "busy");
        drop(slot);
    }
}
