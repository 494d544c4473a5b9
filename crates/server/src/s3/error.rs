//! Engine errors in their S3 wire form: a code, a status and a message
//! written for the client. Failures that are not the client's (catalog,
//! store, keys, I/O) become `InternalError` with a fixed message; their
//! detail goes to the log (which never holds subject ids or names), never to
//! the client.

use domicile_engine::Error;
use s3s::{S3Error, S3ErrorCode};

pub(crate) fn s3(code: S3ErrorCode, msg: impl Into<String>) -> S3Error {
    S3Error::with_message(code, msg.into())
}

pub(crate) fn internal(op: &'static str, what: &dyn std::fmt::Display) -> S3Error {
    tracing::error!(op, error = %what, "request failed");
    s3(
        S3ErrorCode::InternalError,
        "we encountered an internal error; please try again",
    )
}

pub(crate) const NOT_REGISTERED: &str = "the subject this key belongs to is not registered: register it (REST POST /v1/subjects or `domicile subject add ID --home XX`) before storing data for it";

/// Maps an engine error for operation `op`.
pub(crate) fn from_engine(op: &'static str, e: Error) -> S3Error {
    match e {
        Error::InvalidId(e) => s3(S3ErrorCode::InvalidArgument, e.to_string()),
        Error::Invalid(msg) => s3(S3ErrorCode::InvalidArgument, msg),
        Error::NotRegistered => s3(S3ErrorCode::AccessDenied, NOT_REGISTERED),
        Error::AlreadyRegistered => s3(S3ErrorCode::InvalidRequest, "subject already registered"),
        Error::NotFound(_) => s3(S3ErrorCode::NoSuchKey, "the specified key does not exist"),
        Error::PreconditionFailed(_) => s3(
            S3ErrorCode::PreconditionFailed,
            "at least one of the preconditions you specified did not hold",
        ),
        Error::Busy { .. } => s3(
            S3ErrorCode::SlowDown,
            "this subject's data is being moved between regions; retry shortly",
        ),
        Error::CustodianUnavailable { custodian, reason } => {
            tracing::warn!(op, custodian, reason, "key manager unreachable");
            s3(
                S3ErrorCode::SlowDown,
                format!(
                    "the key manager of custodian {custodian} cannot be reached; retry shortly"
                ),
            )
        }
        Error::Forbidden(_) => s3(
            S3ErrorCode::AccessDenied,
            "writes for this subject's category are refused until its copies are moved out of a region the policy now forbids",
        ),
        e if e.is_conflict() => s3(
            S3ErrorCode::OperationAborted,
            "a conflicting operation on this key is in progress; retry",
        ),
        other => internal(op, &other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internals_never_reach_the_client() {
        let e = from_engine(
            "GetObject",
            Error::Internal("catalog at /secret/path is corrupt".into()),
        );
        assert_eq!(e.code(), &S3ErrorCode::InternalError);
        assert!(!e.message().unwrap_or_default().contains("/secret"));
        let e = from_engine(
            "PutObject",
            Error::Busy {
                category: "profile".into(),
            },
        );
        assert_eq!(e.code(), &S3ErrorCode::SlowDown);
        assert_eq!(
            e.status_code().map(|s| s.as_u16()),
            Some(503),
            "SlowDown is a 503"
        );
        let e = from_engine(
            "GetObject",
            Error::CustodianUnavailable {
                custodian: "in-kms".into(),
                reason: "KMS at http://10.0.0.9: cannot connect".into(),
            },
        );
        assert_eq!(e.code(), &S3ErrorCode::SlowDown);
        assert_eq!(e.status_code().map(|s| s.as_u16()), Some(503));
        let message = e.message().unwrap_or_default();
        assert!(
            message.contains("in-kms") && !message.contains("10.0.0.9"),
            "{message}"
        );
        let e = from_engine("PutObject", Error::PreconditionFailed("etag".into()));
        assert_eq!(e.code(), &S3ErrorCode::PreconditionFailed);
        assert_eq!(e.status_code().map(|s| s.as_u16()), Some(412));
        let e = from_engine("PutObject", Error::NotRegistered);
        assert_eq!(e.code(), &S3ErrorCode::AccessDenied);
        assert!(e.message().unwrap_or_default().contains("not registered"));
    }
}
