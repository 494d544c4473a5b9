//! The embedded backend: SQLite through sqlx, in WAL mode. What SQLite does
//! differently from the shared SQL ([`crate::sql`]) lives here: opening and
//! migrating the file, the write transaction, durability, and the planner's
//! page read.
//!
//! A write is on disk when it returns (what was acknowledged survives a
//! power loss, not only a killed process): SQLite runs with `synchronous =
//! NORMAL` and each write then syncs the log, concurrent writes sharing one
//! sync (`WalSync`). Queued garbage rows are one exception: losing one
//! leaves at most an unindexed blob. A migration batch's claims, moving
//! marks and commits are the other: they are durable with the next sync
//! (`Catalog::durable`, or the claim that hands out a purge, which waits for
//! it before any old copy is deleted); a power cut before it undoes them,
//! and the old copies still hold the data.
//!
//! Every transaction that writes starts with `BEGIN IMMEDIATE`, so it holds
//! the write lock from its first read: a read-then-write transaction can
//! never fail to upgrade its lock (`SQLITE_BUSY`), and the row-lock clauses
//! of the shared SQL are empty here. One process's writers first take turns
//! on an async mutex (`WriteTx`), so they queue in order instead of polling
//! the lock with SQLite's busy sleeps; writers of other processes meet at
//! the lock, behind the busy timeout.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Sqlite;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::error::{Error, Result};
use crate::model::{PlacementSummary, TokenRange};
use crate::sql::{Dialect, Durability, Retry, Sql, SqlCatalog, range_filter, schema};

pub use crate::sql::schema::SCHEMA_VERSION;

/// Connections in a file-backed pool: WAL lets readers run beside the writer.
const MAX_CONNECTIONS: u32 = 4;

/// How long a writer waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema migrations, oldest first (see [`crate::sql::schema`]).
fn migrator() -> Migrator {
    schema::migrator([
        include_str!("schema/sqlite/0001_init.sql"),
        include_str!("schema/sqlite/0002_subject_id_enc.sql"),
        include_str!("schema/sqlite/0003_migration_jobs.sql"),
        include_str!("schema/sqlite/0004_unit_claim_order.sql"),
        include_str!("schema/sqlite/0005_garbage_by_blob.sql"),
        include_str!("schema/sqlite/0006_policy_versions.sql"),
        include_str!("schema/sqlite/0007_ledger_actor.sql"),
        include_str!("schema/sqlite/0008_garbage_retries.sql"),
        include_str!("schema/sqlite/0009_ledger_checkpoints.sql"),
        include_str!("schema/sqlite/0010_migration_runs.sql"),
    ])
}

/// A write transaction that holds this process's writer turn: writers of
/// one process queue for SQLite's write lock in order on an async mutex,
/// instead of each polling the lock with SQLite's busy handler (whose sleeps
/// grow to 100 ms, so a busy catalog made short writes wait tens of
/// milliseconds). Other processes still meet at the lock itself. Derefs to
/// the transaction's connection.
pub struct WriteTx {
    // Dropped first: an uncommitted transaction rolls back, then the turn
    // passes on.
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    turn: tokio::sync::OwnedMutexGuard<()>,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx").finish_non_exhaustive()
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

impl WriteTx {
    /// Commits, and passes the writer turn on.
    async fn commit(self) -> Result<()> {
        let WriteTx { tx, turn } = self;
        tx.commit().await?;
        drop(turn);
        Ok(())
    }
}

/// The catalog in one SQLite database.
pub type SqliteCatalog = SqlCatalog<Sqlite>;

/// What a SQLite catalog keeps beside its pool; shared by clones.
#[derive(Debug, Clone)]
pub struct SqliteState {
    /// This process's writer turn (see [`WriteTx`]).
    writer: Arc<tokio::sync::Mutex<()>>,
    wal: Arc<WalSync>,
}

/// Makes commits durable before they return, sharing one fsync of the
/// write-ahead log among the commits that finished before it started (group
/// commit). SQLite itself runs with `synchronous = NORMAL`, which in WAL mode
/// syncs only at checkpoints; syncing the WAL after each commit gives what
/// `FULL` gives (the commit's frames are on disk), but concurrent writers no
/// longer take turns at an fsync while holding the write lock.
#[derive(Debug)]
struct WalSync {
    /// The `-wal` file; `None` for an in-memory catalog.
    path: Option<PathBuf>,
    requested: AtomicU64,
    done: tokio::sync::Mutex<u64>,
    syncs: AtomicU64,
}

impl WalSync {
    fn new(db: Option<&Path>) -> Self {
        WalSync {
            path: db.map(|p| {
                let mut name = p.as_os_str().to_owned();
                name.push("-wal");
                PathBuf::from(name)
            }),
            requested: AtomicU64::new(0),
            done: tokio::sync::Mutex::new(0),
            syncs: AtomicU64::new(0),
        }
    }

    /// Everything committed before this call is on disk when it returns.
    async fn sync(&self) -> Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.lock().await;
        if *done >= ticket {
            return Ok(()); // a sync that started after our commit covered it
        }
        let covers = self.requested.load(Ordering::SeqCst);
        let synced = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(f) => f.sync_data(),
            // No log: everything is in the database file, which SQLite
            // synced when it checkpointed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| Error::Io {
            path: "(catalog write-ahead log)".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        synced.map_err(|source| Error::Io {
            path: "(catalog write-ahead log)".into(),
            source,
        })?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        *done = covers;
        Ok(())
    }
}

impl SqlCatalog<Sqlite> {
    /// Opens (creating it and its parent folders if missing) the catalog at
    /// `path`, and brings its schema up to date.
    ///
    /// Errors with [`Error::SchemaTooNew`] if a newer build migrated it.
    pub async fn open(path: &str) -> Result<Self> {
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| Error::Io {
                    path: parent.display().to_string(),
                    source,
                })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every commit is on disk before it returns (an acknowledged
            // put, a move's commit or an erasure survives a power loss or an
            // OS crash, not only a killed process): NORMAL here, and each
            // write syncs the log itself after committing, in groups
            // (`WalSync`).
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // Deleted content (the wrapped keys of erased or moved-out
            // subjects, sealed names) is zeroed in the file, not left on a
            // free page: crypto-shredding must not leave the key behind.
            .pragma("secure_delete", "ON")
            .busy_timeout(BUSY_TIMEOUT);
        let pool = connect_file(options).await?;
        tracing::debug!(path, "opened sqlite catalog");
        Self::migrated(pool, WalSync::new(Some(Path::new(path)))).await
    }

    /// Opens a fresh catalog that lives in memory only, for tests.
    ///
    /// It has a single connection, kept open for the pool's lifetime (the
    /// database disappears with its last connection), so calls are serialised.
    pub async fn open_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool, WalSync::new(None)).await
    }

    /// Refuses a database migrated by a newer build, then applies the
    /// migrations this build knows and the database lacks.
    ///
    /// Both happen under one write lock, so processes opening the same
    /// fresh file at once apply each migration exactly once (sqlx's own
    /// per-migration transactions nest as savepoints).
    async fn migrated(pool: SqlitePool, wal: WalSync) -> Result<Self> {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        Sql::<Sqlite>::refuse_newer(&mut tx).await?;
        run_migrations(&mut tx).await?;
        tx.commit().await?;
        let cat = Self {
            pool,
            state: SqliteState {
                writer: Arc::default(),
                wal: Arc::new(wal),
            },
        };
        cat.state.wal.sync().await?;
        Ok(cat)
    }

    /// How many times the write-ahead log was synced: commits share syncs,
    /// so under concurrent writers this grows slower than the commits.
    pub fn wal_syncs(&self) -> u64 {
        self.state.wal.syncs.load(Ordering::Relaxed)
    }
}

impl Dialect for Sqlite {
    type State = SqliteState;
    type WriteTx = WriteTx;

    // `BEGIN IMMEDIATE` holds the one write lock from the start.
    const FOR_UPDATE: &'static str = "";
    const FOR_SHARE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const LEDGER_HEAD: bool = false;
    const JOBS_LOCK: bool = false;
    const CACHE_BUILT: bool = true;
    const MIGRATIONS_TABLE: &'static str =
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
    // SQLite's limit is 32,766.
    const MAX_PARAMS: usize = 12_000;

    /// Starts a write transaction holding the write lock from the start,
    /// once this process's earlier writers are done (see [`WriteTx`]).
    async fn begin_write(pool: &SqlitePool, state: &SqliteState) -> Result<WriteTx> {
        // Bounded as SQLite's own wait for the lock is: a writer stuck
        // behind a stuck one fails instead of waiting for ever.
        let turn = tokio::time::timeout(BUSY_TIMEOUT, state.writer.clone().lock_owned())
            .await
            .map_err(|_| Error::Database {
                source: sqlx::Error::PoolTimedOut,
            })?;
        let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, turn })
    }

    /// Nothing to take: the transaction holds the one write lock, and every
    /// transaction that reads the version to fence a commit writes.
    async fn lock_policy(_: &SqliteState, _: &mut SqliteConnection) -> Result<()> {
        Ok(())
    }

    /// Commits; a durable commit returns once it is on disk, a lazy one is
    /// on disk with the next sync.
    async fn commit(state: &SqliteState, tx: WriteTx, durability: Durability) -> Result<()> {
        tx.commit().await?;
        match durability {
            Durability::Durable => state.wal.sync().await,
            Durability::Lazy => Ok(()),
        }
    }

    async fn durable(state: &SqliteState) -> Result<()> {
        state.wal.sync().await
    }

    /// Runs `f` once: writers are serialised by the write lock, so a
    /// transaction never fails for another's sake.
    async fn retry<T, F, Fut>(_: Retry, mut f: F) -> Result<T>
    where
        T: Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        f().await
    }

    async fn placements_page(
        pool: &SqlitePool,
        range: TokenRange<'_>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>> {
        // The planner's hot loop at millions of rows: one table, and the
        // whole page packed into one text value, so the per-row cost of
        // moving rows out of SQLite is paid once per page. No packed field
        // can hold '|' or a newline: tokens are hex, homes are ISO codes,
        // categories, custodians and region ids are [a-z0-9_-] (and ',').
        // One printf per row rather than a chain of `||`, each of which
        // builds an intermediate string.
        let (filter, binds) = range_filter(range, after);
        let sql = format!(
            "SELECT group_concat(printf('%s|%s|%s|%s|%d|%d|%d|%s', token, home, category, custodian, \
                    epoch, objects, bytes, regions), char(10)) \
             FROM (SELECT token, home, category, custodian, epoch, objects, bytes, regions \
                   FROM placements WHERE {filter} \
                   ORDER BY token, category LIMIT ${})",
            binds.len() + 1
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let packed: Option<String> = query.bind(i64::from(limit)).fetch_one(pool).await?;
        let Some(packed) = packed else {
            return Ok(Vec::new());
        };
        packed.split('\n').map(unpack_placement).collect()
    }

    /// Nothing to do: the ledger's tail is its last row, and AUTOINCREMENT
    /// ids continue after the largest id inserted.
    async fn raw_finish(_: &SqlitePool, _: &SqliteState) -> Result<()> {
        Ok(())
    }
}

/// One row of a packed `placements_page`.
fn unpack_placement(line: &str) -> Result<PlacementSummary> {
    let corrupt = || Error::Corrupt {
        reason: "a placement row does not unpack into its 8 fields".into(),
    };
    let mut f = line.splitn(8, '|');
    let mut next = || f.next().ok_or_else(corrupt);
    let token = next()?.to_string();
    let home = next()?.to_string();
    let category = next()?.to_string();
    let custodian = next()?.to_string();
    let epoch = next()?.parse().map_err(|_| corrupt())?;
    let objects = next()?.parse().map_err(|_| corrupt())?;
    let bytes = next()?.parse().map_err(|_| corrupt())?;
    Ok(PlacementSummary {
        token,
        home,
        category,
        regions: crate::sql::codec::split_list(next()?),
        custodian,
        epoch,
        objects,
        bytes,
    })
}

/// Opens the pool of a file-backed catalog.
///
/// Turning a fresh file to WAL needs an exclusive lock that SQLite will not
/// wait for (the busy timeout does not apply), so when several processes open
/// a new file at once, all but one may get `SQLITE_BUSY` here. That happens
/// once in the file's life; retrying within the busy timeout covers it.
async fn connect_file(options: SqliteConnectOptions) -> Result<SqlitePool> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        let attempt = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options.clone())
            .await;
        match attempt {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Whether an error is `SQLITE_BUSY` or one of its extended codes.
fn is_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i64 = 5;
    let Some(db) = e.as_database_error() else {
        return false;
    };
    db.code()
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| c & 0xff == SQLITE_BUSY)
}

/// Applies the migrations on one connection (inside the caller's transaction).
///
/// `Migrator::run` takes an `Acquire`, which on a borrowed connection inside a
/// `Send` future trips "implementation of `Acquire` is not general enough";
/// `run_direct` (what `run` calls once it has a connection) avoids that. It is
/// public but semver-exempt in sqlx: recheck it when upgrading sqlx.
async fn run_migrations(conn: &mut SqliteConnection) -> Result<(), MigrateError> {
    migrator().run_direct(None, conn, false).await
}
