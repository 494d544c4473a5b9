//! Catalog errors.

/// What can go wrong in a catalog call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row to create is already there (for example a known subject token).
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// The row the call names is not there.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The call raced with another change, or would break an invariant of
    /// the current state (for example a move commit against another epoch).
    #[error("conflict: {reason}")]
    Conflict { reason: String },
    /// A conditional commit or delete found the name's current row other
    /// than it expected ([`crate::Expect`]): nothing was changed.
    #[error("precondition failed: {reason}")]
    PreconditionFailed { reason: String },
    /// The active policy version is not the one the change was decided
    /// under: decide again under `active`.
    #[error("the active policy is version {active}, not the one this change was decided under")]
    PolicyChanged { active: i64 },
    /// The arguments contradict each other (for example a row whose token is
    /// not the fence's), whatever the state of the catalog.
    #[error("invalid catalog request: {reason}")]
    Invalid { reason: String },
    /// The target of a catalog migration already holds rows.
    #[error("the target catalog is not empty: table {table} has {rows} rows")]
    NotEmpty { table: &'static str, rows: i64 },
    /// The catalog URL names no supported backend.
    #[error("catalog url {url:?} is not supported: {reason}")]
    BadUrl { url: String, reason: String },
    /// The database was migrated by a newer build.
    #[error("catalog schema is at version {found}, newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    /// A stored value does not decode.
    #[error("catalog row is corrupt: {reason}")]
    Corrupt { reason: String },
    /// Preparing the catalog's files failed.
    #[error("catalog file {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The catalog's database server could not be reached, or refused the
    /// connection or its login, or its TLS certificate was not trusted (the
    /// URL is shown without its password).
    #[error("cannot connect to the catalog database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database driver failed.
    #[error("catalog database error: {source}")]
    Database {
        #[from]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("catalog migration failed: {source}")]
    Migrate {
        #[from]
        source: sqlx::migrate::MigrateError,
    },
}

/// Result with the catalog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the call was refused by the state of one row (fenced by
    /// another epoch, or the row is gone), not by the catalog itself: a
    /// batch reports such a refusal for its item and goes on with the rest.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. } | Error::NotFound { .. } | Error::PolicyChanged { .. }
        )
    }
}
