//! Requests refused before s3s sees them, so before any byte of their body
//! is read, whoever sends them:
//!
//! - POST object (browser form) uploads, `POST` with `multipart/form-data`:
//!   s3s would read the whole form into memory before any access check.
//!   They are not supported (`MethodNotAllowed`); PutObject and presigned
//!   PUT URLs do the same job with a streamed body.
//! - SigV2, in the `Authorization: AWS KEY:SIG` header or a presigned URL's
//!   `Signature` and `AWSAccessKeyId` query: it has no time check (a signed
//!   request can be replayed) and s3s does not compare it in constant time.
//!   Refused as AWS refuses it in regions without SigV2 (`InvalidRequest`).
//! - Presigned SigV4 URLs valid for more than a week (`X-Amz-Expires` over
//!   604800 seconds), refused with AWS's own code and message; s3s 0.14
//!   takes any `u32`.
//!
//! - Requests that name no S3 operation, which s3s would answer with
//!   `501 NotImplemented`: a method S3 does not have, a `POST` with no
//!   operation's subresource (`uploads`, `uploadId`, `delete`, `restore`,
//!   `select`), anything but a `GET` of the service root
//!   (`MethodNotAllowed`, as AWS answers them); and a signature by any algorithm other than
//!   `AWS4-HMAC-SHA256` (`InvalidRequest`, or
//!   `AuthorizationQueryParametersError` in a presigned URL). Malformed
//!   input gets a 4xx, never a 5xx; `NotImplemented` is left for a real S3
//!   operation this server does not implement.
//!
//! The query is read with the parser s3s uses (`serde_urlencoded`), so an
//! escaped name (`Sig%6Eature`) is seen as s3s would see it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::Metrics;

/// AWS's limit on a presigned URL's life, in seconds.
pub const MAX_PRESIGNED_EXPIRES: u64 = 604_800;

/// Why a request is refused before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    PostObject,
    SignatureV2,
    PresignedTooLong,
    NoOperation,
    OtherAlgorithm,
    OtherQueryAlgorithm,
}

impl Refusal {
    /// What was refused, as the metrics' `op` label.
    fn op(self) -> &'static str {
        match self {
            Refusal::PostObject => "PostObject",
            Refusal::SignatureV2 => "SignatureV2",
            Refusal::PresignedTooLong => "PresignedUrl",
            Refusal::NoOperation => "NoOperation",
            Refusal::OtherAlgorithm | Refusal::OtherQueryAlgorithm => "SignatureAlgorithm",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Refusal::PostObject | Refusal::NoOperation => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::SignatureV2
            | Refusal::PresignedTooLong
            | Refusal::OtherAlgorithm
            | Refusal::OtherQueryAlgorithm => StatusCode::BAD_REQUEST,
        }
    }

    fn code(self) -> &'static str {
        match self {
            Refusal::PostObject | Refusal::NoOperation => "MethodNotAllowed",
            Refusal::SignatureV2 | Refusal::OtherAlgorithm => "InvalidRequest",
            Refusal::PresignedTooLong | Refusal::OtherQueryAlgorithm => {
                "AuthorizationQueryParametersError"
            }
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::PostObject => {
                "POST object (browser form) uploads are not supported: use PutObject or a presigned PUT URL"
            }
            Refusal::SignatureV2 => {
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256. (SigV2 is refused.)"
            }
            Refusal::PresignedTooLong => {
                "X-Amz-Expires must be less than a week (in seconds) that is 604800"
            }
            Refusal::NoOperation => "The specified method is not allowed against this resource.",
            Refusal::OtherAlgorithm => {
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
            }
            Refusal::OtherQueryAlgorithm => "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        }
    }

    /// The S3 error document (the messages hold nothing to escape).
    fn into_response(self) -> Response {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
            self.code(),
            self.message()
        );
        let mut res = (self.status(), Body::from(xml)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        res
    }
}

/// The subresources that make a `POST` an S3 operation.
const POST_OPERATIONS: [&str; 5] = ["uploads", "uploadId", "delete", "restore", "select"];

/// What, if anything, refuses a request, from its method, path, headers
/// and query alone.
pub(crate) fn refusal(
    method: &Method,
    path: &str,
    headers: &header::HeaderMap,
    query: Option<&str>,
) -> Option<Refusal> {
    if ![
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::POST,
        Method::DELETE,
    ]
    .contains(method)
        || (method != Method::GET && path == "/")
    {
        return Some(Refusal::NoOperation);
    }
    if method == Method::POST
        && headers.get_all(header::CONTENT_TYPE).iter().any(|v| {
            v.as_bytes()
                .get(..19)
                .is_some_and(|t| t.eq_ignore_ascii_case(b"multipart/form-data"))
        })
    {
        return Some(Refusal::PostObject);
    }
    let auth = headers.get_all(header::AUTHORIZATION);
    if auth.iter().any(|v| v.as_bytes().starts_with(b"AWS ")) {
        return Some(Refusal::SignatureV2);
    }
    if auth
        .iter()
        .any(|v| !v.as_bytes().starts_with(b"AWS4-HMAC-SHA256 "))
    {
        return Some(Refusal::OtherAlgorithm);
    }
    let pairs: Vec<(String, String)> = query
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    if pairs
        .iter()
        .any(|(k, _)| k == "Signature" || k == "AWSAccessKeyId")
    {
        return Some(Refusal::SignatureV2);
    }
    if pairs
        .iter()
        .any(|(k, v)| k == "X-Amz-Algorithm" && v != "AWS4-HMAC-SHA256")
    {
        return Some(Refusal::OtherQueryAlgorithm);
    }
    if pairs
        .iter()
        .any(|(k, v)| k == "X-Amz-Expires" && longer_than_a_week(v))
    {
        return Some(Refusal::PresignedTooLong);
    }
    if method == Method::POST
        && !pairs
            .iter()
            .any(|(k, _)| POST_OPERATIONS.contains(&k.as_str()))
    {
        return Some(Refusal::NoOperation);
    }
    None
}

/// A number of seconds beyond [`MAX_PRESIGNED_EXPIRES`], however many
/// digits it has; what is not a number is left to s3s to refuse.
fn longer_than_a_week(v: &str) -> bool {
    let digits = v.trim_start_matches('0');
    !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && (digits.len() > 6
            || digits
                .parse::<u64>()
                .is_ok_and(|n| n > MAX_PRESIGNED_EXPIRES))
}

/// The middleware in front of s3s: refuses what [`refusal`] names without
/// reading the body (the layer outside it closes the connection).
pub(crate) async fn refuse_hostile(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    match refusal(
        req.method(),
        req.uri().path(),
        req.headers(),
        req.uri().query(),
    ) {
        None => next.run(req).await,
        Some(r) => {
            metrics.request("s3", r.op(), r.status().as_u16());
            metrics.error("s3", r.op(), r.code());
            tracing::debug!(
                op = r.op(),
                code = r.code(),
                "s3 request refused before its body"
            );
            r.into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> header::HeaderMap {
        let mut h = header::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn form_uploads_are_refused_in_any_case_and_with_any_parameters() {
        for ct in [
            "multipart/form-data; boundary=x",
            "Multipart/Form-Data",
            "MULTIPART/FORM-DATA;boundary=----x",
        ] {
            let h = headers(&[("content-type", ct)]);
            assert_eq!(
                refusal(&Method::POST, "/b/k", &h, None),
                Some(Refusal::PostObject),
                "{ct}"
            );
        }
        let two = headers(&[
            ("content-type", "text/plain"),
            ("content-type", "multipart/form-data; boundary=x"),
        ]);
        assert_eq!(
            refusal(&Method::POST, "/b/k", &two, None),
            Some(Refusal::PostObject)
        );
        // A PUT of that type is an ordinary object's content type; a POST of
        // XML is multipart completion or DeleteObjects.
        let h = headers(&[("content-type", "multipart/form-data")]);
        assert_eq!(refusal(&Method::PUT, "/b/k", &h, None), None);
        let xml = headers(&[("content-type", "application/xml")]);
        assert_eq!(refusal(&Method::POST, "/b/k", &xml, Some("delete")), None);
    }

    #[test]
    fn sigv2_is_refused_in_the_header_and_the_query() {
        let h = headers(&[("authorization", "AWS AKID:c2lnbmF0dXJl")]);
        assert_eq!(
            refusal(&Method::GET, "/b/k", &h, None),
            Some(Refusal::SignatureV2)
        );
        let v4 = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
        )]);
        assert_eq!(refusal(&Method::GET, "/b/k", &v4, None), None);
        let none = header::HeaderMap::new();
        for q in [
            "AWSAccessKeyId=AK&Expires=1&Signature=x",
            "Sig%6Eature=x",
            "AWSAccessKeyId=AK",
        ] {
            assert_eq!(
                refusal(&Method::GET, "/b/k", &none, Some(q)),
                Some(Refusal::SignatureV2),
                "{q}"
            );
        }
        assert_eq!(
            refusal(
                &Method::GET,
                "/b/k",
                &none,
                Some("X-Amz-Signature=00&X-Amz-Expires=3600")
            ),
            None
        );
    }

    #[test]
    fn presigned_urls_live_a_week_at_most() {
        let none = header::HeaderMap::new();
        let q = |e: &str| {
            format!("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={e}&X-Amz-Signature=00")
        };
        for ok in ["1", "3600", "604800", "0000604800", "abc", ""] {
            assert_eq!(
                refusal(&Method::GET, "/b/k", &none, Some(&q(ok))),
                None,
                "{ok}"
            );
        }
        for long in ["604801", "691200", "4294967295", "99999999999999999999999"] {
            assert_eq!(
                refusal(&Method::GET, "/b/k", &none, Some(&q(long))),
                Some(Refusal::PresignedTooLong),
                "{long}"
            );
        }
        let escaped = "X-Amz-%45xpires=691200&X-Amz-Signature=00";
        assert_eq!(
            refusal(&Method::GET, "/b/k", &none, Some(escaped)),
            Some(Refusal::PresignedTooLong)
        );
    }

    #[test]
    fn the_answer_is_an_s3_error_document() {
        let r = Refusal::PresignedTooLong.into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/xml");
    }

    #[test]
    fn requests_that_name_no_operation_are_refused_with_a_4xx() {
        let none = headers(&[]);
        for m in ["PATCH", "OPTIONS", "TRACE", "FOO"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                refusal(&m, "/b/k", &none, None),
                Some(Refusal::NoOperation),
                "{m}"
            );
        }
        for m in [Method::HEAD, Method::PUT, Method::DELETE, Method::POST] {
            assert_eq!(
                refusal(&m, "/", &none, Some("uploads")),
                Some(Refusal::NoOperation),
                "{m} /"
            );
        }
        assert_eq!(refusal(&Method::GET, "/", &none, None), None);
        assert_eq!(refusal(&Method::HEAD, "/b/k", &none, None), None);
        assert_eq!(
            refusal(&Method::POST, "/b/k", &none, None),
            Some(Refusal::NoOperation)
        );
        assert_eq!(
            refusal(&Method::POST, "/b/k", &none, Some("acl")),
            Some(Refusal::NoOperation)
        );
        for op in [
            "uploads",
            "uploadId=x",
            "delete",
            "restore",
            "select&select-type=2",
        ] {
            assert_eq!(
                refusal(&Method::POST, "/b/k", &none, Some(op)),
                None,
                "{op}"
            );
        }
        let other = headers(&[("authorization", "AWS4-HMAC-SHA512 Credential=a/b")]);
        assert_eq!(
            refusal(&Method::GET, "/b/k", &other, None),
            Some(Refusal::OtherAlgorithm)
        );
        let bearer = headers(&[("authorization", "Bearer x")]);
        assert_eq!(
            refusal(&Method::GET, "/b/k", &bearer, None),
            Some(Refusal::OtherAlgorithm)
        );
        assert_eq!(
            refusal(
                &Method::GET,
                "/b/k",
                &none,
                Some("X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256")
            ),
            Some(Refusal::OtherQueryAlgorithm)
        );
        for r in [
            Refusal::NoOperation,
            Refusal::OtherAlgorithm,
            Refusal::OtherQueryAlgorithm,
        ] {
            assert!(r.status().is_client_error(), "{r:?}");
        }
    }
}
