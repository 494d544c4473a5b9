//! Engine errors. Each knows whether it is the caller's fault (bad input,
//! exit code 2), a refusal the caller can retry, or a failure.

use domicile_core::ids::InvalidId;

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error(
        "subject is not registered: add it with `domicile subject add ID --home XX` before storing data for it"
    )]
    NotRegistered,
    #[error("subject is already registered")]
    AlreadyRegistered,
    #[error("{0} not found")]
    NotFound(String),
    /// A conditional write or delete found the object other than required
    /// ([`crate::data::Precondition`]): nothing was changed.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("the placement of this subject's {category} data is being moved; retry shortly")]
    Busy { category: String },
    #[error(
        "the policy changed to version {active} (this process acts on version {acting_on}); retry once it follows"
    )]
    PolicyChanged { active: i64, acting_on: i64 },
    #[error("refused: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Config(String),
    #[error("secrets: {0}")]
    Secrets(String),
    #[error("custody: {0}")]
    Custody(String),
    /// A custodian's key manager cannot be reached: nothing was written
    /// under another key, and the same call may succeed later.
    #[error(
        "custody: custodian {custodian}: its key manager cannot be reached ({reason}); retry later"
    )]
    CustodianUnavailable { custodian: String, reason: String },
    #[error(transparent)]
    Catalog(#[from] domicile_catalog::Error),
    #[error(transparent)]
    Store(domicile_store::Error),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// True when the request itself was wrong and nothing was changed.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidId(_)
                | Error::Invalid(_)
                | Error::NotRegistered
                | Error::AlreadyRegistered
                | Error::NotFound(_)
                | Error::PreconditionFailed(_)
                | Error::Config(_)
        )
    }

    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Busy { .. } | Error::PolicyChanged { .. } | Error::CustodianUnavailable { .. }
        )
    }

    /// True when the call raced with another change of the same rows and
    /// changed nothing.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::Catalog(domicile_catalog::Error::Conflict { .. })
        )
    }
}

/// A key manager's failures become custody errors naming the custodian:
/// unreachable is [`Error::CustodianUnavailable`] (retryable), a refusal is
/// [`Error::Custody`].
impl From<domicile_store::Error> for Error {
    fn from(e: domicile_store::Error) -> Self {
        match e {
            domicile_store::Error::KeyManagerUnavailable { custodian, reason } => {
                Error::CustodianUnavailable { custodian, reason }
            }
            e @ domicile_store::Error::KeyManagerRefused { .. } => Error::Custody(e.to_string()),
            e => Error::Store(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
