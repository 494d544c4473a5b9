//! Why the server could not start, or stopped. Request errors are not here:
//! each API maps engine errors to its own wire form (`s3::error`,
//! `rest::error`).

/// A start-up or serving failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the S3 API needs a credential: declare a [[credential]] in the config (its secret in DOMICILE_CREDENTIAL_<NAME>_SECRET), or set DOMICILE_S3_ACCESS_KEY_ID and DOMICILE_S3_SECRET_ACCESS_KEY, in the environment or the secrets file"
    )]
    MissingS3Credentials,
    /// A declared credential or token without its secret, or two that
    /// clash.
    #[error("{0}")]
    Secrets(String),
    #[error("the {api} API stopped: {source}")]
    Serve {
        api: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
