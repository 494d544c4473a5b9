//! The one SQL implementation of the catalog, shared by SQLite and
//! PostgreSQL. Statements, row codecs and the transaction steps (a commit
//! under a fence, claims, moves, purges, ledger appends) are written once
//! here, generic over a [`Dialect`]: what really differs between the two
//! databases, and nothing else.
//!
//! - [`codec`]: column lists, and the text encodings of structured columns.
//! - [`steps`]: statements that run inside a caller's transaction; row decoding.
//! - [`writes`]: one write transaction per catalog call.
//! - [`jobs`]: migration jobs and units.
//! - [`reads`]: the catalog's reads and the [`Catalog`](crate::Catalog) implementation.
//! - [`schema`]: the schema's versions, one SQL file each per dialect.
//!
//! Every statement is written with numbered parameters (`$1`), which both
//! databases accept. A transaction that writes holds, before it decides
//! anything, the rows its decision depends on: PostgreSQL through the
//! dialect's row locks (`FOR UPDATE`), SQLite through the one write lock
//! that `BEGIN IMMEDIATE` takes (its row-lock clauses are empty).

pub(crate) mod codec;
pub(crate) mod jobs;
pub(crate) mod reads;
pub(crate) mod schema;
pub(crate) mod steps;
pub(crate) mod writes;

use std::future::Future;
use std::marker::PhantomData;
use std::ops::DerefMut;

use sqlx::database::HasStatementCache;
use sqlx::{Database, Pool};

use crate::error::Result;
use crate::model::{PlacementSummary, TokenRange};

/// Whether a write must be on disk before its call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk before the call returns.
    Durable,
    /// On disk with the next durable write or `Catalog::durable`; a power
    /// cut before that may undo it (see `Catalog::durable` for which
    /// changes may be committed so).
    Lazy,
}

/// Which failures of a transaction make it run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Serialization failures and deadlocks, where the database reports
    /// them.
    Conflicts,
    /// Those, and unique violations: an insert that lost a race to a
    /// concurrent insert of the same key sees that row when run again.
    ConflictsAndDuplicates,
}

/// What differs between the databases the catalog runs on. Implemented by
/// the sqlx database types themselves ([`sqlx::Sqlite`], [`sqlx::Postgres`]).
pub trait Dialect: Database<QueryResult: RowsAffected> + HasStatementCache + Sized {
    /// What one catalog keeps beside its pool (SQLite's writer turn and log
    /// sync; nothing on PostgreSQL).
    type State: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// An open write transaction.
    type WriteTx: DerefMut<Target = Self::Connection> + Send;

    /// Locks the rows a `SELECT` reads until the transaction ends.
    const FOR_UPDATE: &'static str;
    /// Locks the rows a `SELECT` reads against changes, not against readers.
    const FOR_SHARE: &'static str;
    /// Locks the rows a `SELECT` reads, skipping those another transaction
    /// holds.
    const SKIP_LOCKED: &'static str;
    /// Whether appends find the ledger's end in the one row of
    /// `ledger_head` (locked, so concurrent appenders queue), or in the
    /// last row of `ledger` (enough where writers are serialised).
    const LEDGER_HEAD: bool;
    /// Whether opening a job locks the one row of `migration_jobs_lock`.
    const JOBS_LOCK: bool;
    /// Whether statements built at run time (their text depends on a batch's
    /// size) are kept in the connection's statement cache.
    const CACHE_BUILT: bool;
    /// Counts the tables named `_sqlx_migrations` (0 on a fresh database).
    const MIGRATIONS_TABLE: &'static str;
    /// Bind parameters one statement may carry, with room to spare.
    const MAX_PARAMS: usize;

    /// Starts a write transaction.
    fn begin_write(
        pool: &Pool<Self>,
        state: &Self::State,
    ) -> impl Future<Output = Result<Self::WriteTx>> + Send;

    /// Holds the active policy version against every transaction that
    /// reads it, until the caller's transaction (an apply) ends; waits for
    /// those that read it already.
    fn lock_policy(
        state: &Self::State,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Commits a write transaction.
    fn commit(
        state: &Self::State,
        tx: Self::WriteTx,
        durability: Durability,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Returns once every commit so far is on disk.
    fn durable(state: &Self::State) -> impl Future<Output = Result<()>> + Send;

    /// Runs `f` (one whole transaction) again while it fails in a way that
    /// `retry` names, a bounded number of times.
    fn retry<T, F, Fut>(retry: Retry, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send;

    /// A page of `Catalog::placements_page`: the planner's hot loop, read
    /// the way each database serves fastest.
    /// The rows in `range`, after `after` (see
    /// `Catalog::placements_range_page`); [`range_filter`] writes the
    /// condition.
    fn placements_page(
        pool: &Pool<Self>,
        range: TokenRange<'_>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PlacementSummary>>> + Send;

    /// Ends a catalog migration's import (see `Catalog::raw_finish`).
    fn raw_finish(
        pool: &Pool<Self>,
        state: &Self::State,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// How many rows a statement changed: what every database's statement
/// result tells, under one name.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// The catalog in one SQL database.
pub struct SqlCatalog<D: Dialect> {
    pub(crate) pool: Pool<D>,
    pub(crate) state: D::State,
}

impl<D: Dialect> Clone for SqlCatalog<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            state: self.state.clone(),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlCatalog<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCatalog")
            .field("database", &D::NAME)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlCatalog<D> {
    /// The connection pool, for operators' tools and tests.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }
}

/// The statements that run inside a caller's transaction, and the row
/// decoders: associated functions, so that the bounds they need on the
/// database's types are written once, on their `impl` block.
///
/// Those bounds (that `i64`, `&str`, byte slices… encode and decode on
/// `D`, that `&mut D::Connection` executes statements) stand on every
/// generic `impl` block of this module (`steps`, `writes`, `reads` and the
/// two of `jobs`): Rust implies a trait's bounds on `Self` where the trait
/// is used, but not its bounds on other types, so they cannot live on
/// [`Dialect`] alone.
pub(crate) struct Sql<D>(PhantomData<D>);

/// The `WHERE` condition of a page of placements in `range` after
/// `after`, with `$1`… placeholders, and the values to bind to them in
/// order; the page's limit is the next placeholder.
pub(crate) fn range_filter<'a>(
    range: TokenRange<'a>,
    after: Option<(&'a str, &'a str)>,
) -> (String, Vec<&'a str>) {
    let mut terms = Vec::new();
    let mut binds = Vec::new();
    if let Some((token, category)) = after {
        binds.extend([token, category]);
        terms.push(format!(
            "(token, category) > (${}, ${})",
            binds.len() - 1,
            binds.len()
        ));
    }
    if let Some(from) = range.from {
        binds.push(from);
        terms.push(format!("token >= ${}", binds.len()));
    }
    if let Some(until) = range.until {
        binds.push(until);
        terms.push(format!("token < ${}", binds.len()));
    }
    if terms.is_empty() {
        terms.push("TRUE".into());
    }
    (terms.join(" AND "), binds)
}
