//! The embedded backend: SQLite through sqlx, in WAL mode. A write is on
//! disk when it returns (what was acknowledged survives a power loss, not
//! only a killed process): SQLite runs with `synchronous = NORMAL` and each
//! write then syncs the log, concurrent writes sharing one sync (`WalSync`).
//! Queued garbage rows are one exception: losing one leaves at most an
//! unindexed blob. A migration batch's claims, moving marks and commits are
//! the other: they are durable with the next sync (`Catalog::durable`, or
//! the claim that hands out a purge, which waits for it before any old copy
//! is deleted); a power cut before it undoes them, and the old copies still
//! hold the data.
//!
//! Every method is one transaction. Every transaction that writes starts with
//! `BEGIN IMMEDIATE`, so it holds the write lock from its first read: a
//! read-then-write transaction can never fail to upgrade its lock
//! (`SQLITE_BUSY`). One process's writers first take turns on an async mutex
//! (`WriteTx`), so they queue in order instead of polling the lock with
//! SQLite's busy sleeps; writers of other processes meet at the lock, behind
//! the busy timeout. Ledger
//! entries are appended in the same transaction as the change they record.
//!
//! The SQL stays close to what PostgreSQL and CockroachDB accept too (`ON
//! CONFLICT`, `RETURNING`, row-value comparisons for keyset pagination), so
//! the PostgreSQL backend can follow it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::catalog::{Catalog, CommitOutcome, MoveMark, UnitMove, moved_placement};
use crate::error::{Error, Result};
use crate::jobs::UnitRelease;
use crate::ledger::{self, GENESIS};
use crate::model::{
    Fence, GarbageRow, LedgerAppend, LedgerEntry, Millis, ObjectRow, PlacementRow, PlacementState,
    PlacementSummary, ResidencyRow, SubjectRow, objects_by_pair,
};
use crate::raw::{RawRow, RawTable, RawType, RawValue};
use crate::sqlite_jobs::finish_unit_in;

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 5;

/// Connections in a file-backed pool: WAL lets readers run beside the writer.
const MAX_CONNECTIONS: u32 = 4;

/// How long a writer waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema migrations, oldest first. Applied migrations are never edited:
/// a change is a new file and a new entry here.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("schema/sqlite/0001_init.sql")),
            false,
        ),
        Migration::new(
            2,
            "subject id sealed".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("schema/sqlite/0002_subject_id_enc.sql")),
            false,
        ),
        Migration::new(
            3,
            "migration jobs".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("schema/sqlite/0003_migration_jobs.sql")),
            false,
        ),
        Migration::new(
            4,
            "unit claim order".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("schema/sqlite/0004_unit_claim_order.sql")),
            false,
        ),
        Migration::new(
            5,
            "garbage by blob".into(),
            MigrationType::Simple,
            sqlx::SqlSafeStr::into_sql_str(include_str!("schema/sqlite/0005_garbage_by_blob.sql")),
            false,
        ),
    ])
}

/// A write transaction that holds this process's writer turn: writers of
/// one process queue for SQLite's write lock in order on an async mutex,
/// instead of each polling the lock with SQLite's busy handler (whose sleeps
/// grow to 100 ms, so a busy catalog made short writes wait tens of
/// milliseconds). Other processes still meet at the lock itself. Derefs to
/// the transaction's connection.
pub(crate) struct WriteTx {
    // Dropped first: an uncommitted transaction rolls back, then the turn
    // passes on.
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    turn: tokio::sync::OwnedMutexGuard<()>,
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
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pub(crate) pool: SqlitePool,
    /// This process's writer turn (see [`WriteTx`]); shared by clones.
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

impl SqliteCatalog {
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
        let found = applied_version(&mut tx).await?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        run_migrations(&mut tx).await?;
        tx.commit().await?;
        let cat = Self {
            pool,
            writer: Arc::default(),
            wal: Arc::new(wal),
        };
        cat.wal.sync().await?;
        Ok(cat)
    }

    /// Commits a write transaction and returns once it is on disk.
    pub(crate) async fn commit(&self, tx: WriteTx) -> Result<()> {
        tx.commit().await?;
        self.wal.sync().await
    }

    /// Returns once every write committed so far is on disk.
    pub(crate) async fn durable(&self) -> Result<()> {
        self.wal.sync().await
    }

    /// Commits without waiting for the log to reach the disk: the commit is
    /// durable with the next sync (any later durable write, or `durable`).
    /// Only for changes a power cut may undo (see `Catalog::durable`).
    pub(crate) async fn commit_lazily(&self, tx: WriteTx) -> Result<()> {
        tx.commit().await
    }

    /// How many times the write-ahead log was synced: commits share syncs,
    /// so under concurrent writers this grows slower than the commits.
    pub fn wal_syncs(&self) -> u64 {
        self.wal.syncs.load(Ordering::Relaxed)
    }

    /// The connection pool, for operators' tools and tests.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction holding the write lock from the start,
    /// once this process's earlier writers are done (see [`WriteTx`]).
    pub(crate) async fn write_tx(&self) -> Result<WriteTx> {
        // Bounded as SQLite's own wait for the lock is: a writer stuck
        // behind a stuck one fails instead of waiting for ever.
        let turn = tokio::time::timeout(BUSY_TIMEOUT, self.writer.clone().lock_owned())
            .await
            .map_err(|_| Error::Database {
                source: sqlx::Error::PoolTimedOut,
            })?;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, turn })
    }
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

/// The highest applied migration, 0 on a fresh database.
async fn applied_version(conn: &mut SqliteConnection) -> Result<i64> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if exists == 0 {
        return Ok(0);
    }
    let version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await?;
    Ok(version)
}

// ---------------------------------------------------------------------------
// Row encoding

/// The object columns, in the order [`object_from`] reads them.
macro_rules! object_cols {
    () => {
        "token, lookup, category, name_enc, meta_enc, version, size, stored_size, checksum, \
         blob_id, modified_at"
    };
}

/// The placement columns (without regions), in the order [`placement_from`] reads them.
macro_rules! placement_cols {
    () => {
        "token, category, epoch, state, custodian, wrapped_key, objects, bytes, since"
    };
}

/// The ledger columns, in the order [`entry_from`] reads them.
macro_rules! ledger_cols {
    () => {
        "seq, at, kind, subject, body, prev_hash, hash"
    };
}

fn subject_from(r: &SqliteRow) -> Result<SubjectRow> {
    Ok(SubjectRow {
        token: r.try_get("token")?,
        home: r.try_get("home")?,
        created_at: r.try_get("created_at")?,
        id_enc: r.try_get("id_enc")?,
    })
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
    let regions = next()?;
    Ok(PlacementSummary {
        token,
        home,
        category,
        regions: if regions.is_empty() {
            Vec::new()
        } else {
            regions.split(',').map(str::to_string).collect()
        },
        custodian,
        epoch,
        objects,
        bytes,
    })
}

/// A placement row with empty regions; the caller fills them in.
fn placement_from(r: &SqliteRow) -> Result<PlacementRow> {
    let state: String = r.try_get("state")?;
    Ok(PlacementRow {
        token: r.try_get("token")?,
        category: r.try_get("category")?,
        regions: Vec::new(),
        epoch: r.try_get("epoch")?,
        state: decode_state(&state)?,
        custodian: r.try_get("custodian")?,
        wrapped_key: r.try_get("wrapped_key")?,
        objects: r.try_get("objects")?,
        bytes: r.try_get("bytes")?,
        since: r.try_get("since")?,
    })
}

fn object_from(r: &SqliteRow) -> Result<ObjectRow> {
    Ok(ObjectRow {
        token: r.try_get("token")?,
        category: r.try_get("category")?,
        lookup: r.try_get("lookup")?,
        name_enc: r.try_get("name_enc")?,
        meta_enc: r.try_get("meta_enc")?,
        version: r.try_get("version")?,
        size: r.try_get("size")?,
        stored_size: r.try_get("stored_size")?,
        checksum: r.try_get("checksum")?,
        blob_id: r.try_get("blob_id")?,
        modified_at: r.try_get("modified_at")?,
    })
}

fn garbage_from(r: &SqliteRow) -> Result<GarbageRow> {
    let regions: String = r.try_get("regions")?;
    Ok(GarbageRow {
        id: r.try_get("id")?,
        token: r.try_get("token")?,
        category: r.try_get("category")?,
        blob_id: r.try_get("blob_id")?,
        regions: serde_json::from_str(&regions).map_err(|e| Error::Corrupt {
            reason: format!("garbage regions {regions:?}: {e}"),
        })?,
        queued_at: r.try_get("queued_at")?,
    })
}

fn entry_from(r: &SqliteRow) -> Result<LedgerEntry> {
    Ok(LedgerEntry {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        kind: r.try_get("kind")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

fn encode_state(state: &PlacementState) -> Result<String> {
    serde_json::to_string(state).map_err(|e| Error::Corrupt {
        reason: format!("placement state does not encode: {e}"),
    })
}

fn decode_state(text: &str) -> Result<PlacementState> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        reason: format!("placement state {text:?}: {e}"),
    })
}

fn encode_regions(regions: &[String]) -> Result<String> {
    serde_json::to_string(regions).map_err(|e| Error::Corrupt {
        reason: format!("regions do not encode: {e}"),
    })
}

fn not_found(what: impl Into<String>) -> Error {
    Error::NotFound { what: what.into() }
}

fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Statements shared by several methods; each runs inside the caller's transaction.

/// The last entry of the ledger, advanced in memory as a transaction appends.
struct LedgerTail {
    seq: i64,
    hash: String,
}

async fn ledger_tail(conn: &mut SqliteConnection) -> Result<LedgerTail> {
    let row = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => LedgerTail {
            seq: r.try_get("seq")?,
            hash: r.try_get("hash")?,
        },
        None => LedgerTail {
            seq: 0,
            hash: GENESIS.to_string(),
        },
    })
}

/// Appends one entry after `tail` and advances it. Returns the entry's seq.
async fn ledger_push(
    conn: &mut SqliteConnection,
    tail: &mut LedgerTail,
    e: &LedgerAppend,
) -> Result<i64> {
    let seq = tail.seq + 1;
    let body = ledger::canonical_body(&e.body);
    let hash = ledger::entry_hash(&tail.hash, seq, e.at, &e.kind, e.subject.as_deref(), &body);
    sqlx::query(
        "INSERT INTO ledger (seq, at, kind, subject, body, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(e.at)
    .bind(&e.kind)
    .bind(e.subject.as_deref())
    .bind(&body)
    .bind(&tail.hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    tail.seq = seq;
    tail.hash = hash;
    Ok(seq)
}

/// A move's commit inside the caller's write transaction.
async fn commit_move_in(
    conn: &mut SqliteConnection,
    fence: &Fence,
    regions: &[String],
    custodian: &str,
    wrapped_key: &[u8],
    ledger: &LedgerAppend,
) -> Result<PlacementRow> {
    let current = read_placement(conn, &fence.token, &fence.category).await?;
    let moved = moved_placement(current, fence, regions, custodian, wrapped_key, ledger.at)?;
    sqlx::query(
        "UPDATE placements SET epoch = ?, state = ?, custodian = ?, wrapped_key = ?, since = ? \
             WHERE token = ? AND category = ?",
    )
    .bind(moved.epoch)
    .bind(encode_state(&moved.state)?)
    .bind(&moved.custodian)
    .bind(&moved.wrapped_key)
    .bind(moved.since)
    .bind(&moved.token)
    .bind(&moved.category)
    .execute(&mut *conn)
    .await?;
    write_regions(conn, &moved.token, &moved.category, &moved.regions).await?;
    ledger_append(conn, ledger).await?;
    Ok(moved)
}

/// Marks a placement moving if it is at `epoch` and free (see
/// `Catalog::begin_move`); false, and nothing written, otherwise.
async fn begin_move_in(
    conn: &mut SqliteConnection,
    token: &str,
    category: &str,
    epoch: i64,
    to: &[String],
    lease_until: Millis,
    now: Millis,
) -> Result<bool> {
    let row = sqlx::query("SELECT epoch, state FROM placements WHERE token = ? AND category = ?")
        .bind(token)
        .bind(category)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(false) };
    let current: i64 = row.try_get("epoch")?;
    let state: String = row.try_get("state")?;
    let free = match decode_state(&state)? {
        PlacementState::Active => true,
        PlacementState::Moving { lease_until, .. } => lease_until < now,
    };
    if current != epoch || !free {
        return Ok(false);
    }
    let moving = PlacementState::Moving {
        to: to.to_vec(),
        lease_until,
    };
    sqlx::query("UPDATE placements SET state = ? WHERE token = ? AND category = ?")
        .bind(encode_state(&moving)?)
        .bind(token)
        .bind(category)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// Appends one entry at the end of the ledger. Returns its seq.
pub(crate) async fn ledger_append(conn: &mut SqliteConnection, e: &LedgerAppend) -> Result<i64> {
    let mut tail = ledger_tail(conn).await?;
    ledger_push(conn, &mut tail, e).await
}

async fn read_regions(
    conn: &mut SqliteConnection,
    token: &str,
    category: &str,
) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "SELECT region FROM placement_regions WHERE token = ? AND category = ? ORDER BY ordinal",
    )
    .bind(token)
    .bind(category)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get("region")?))
        .collect::<Result<Vec<String>>>()
}

/// Replaces the ordered regions of a placement.
async fn write_regions(
    conn: &mut SqliteConnection,
    token: &str,
    category: &str,
    regions: &[String],
) -> Result<()> {
    for (i, r) in regions.iter().enumerate() {
        if regions[..i].contains(r) {
            return Err(Error::Invalid {
                reason: format!("region {r:?} is listed twice in one placement"),
            });
        }
    }
    sqlx::query("DELETE FROM placement_regions WHERE token = ? AND category = ?")
        .bind(token)
        .bind(category)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE placements SET regions = ? WHERE token = ? AND category = ?")
        .bind(regions.join(","))
        .bind(token)
        .bind(category)
        .execute(&mut *conn)
        .await?;
    for (ordinal, region) in (0_i64..).zip(regions) {
        sqlx::query(
            "INSERT INTO placement_regions (token, category, ordinal, region) VALUES (?, ?, ?, ?)",
        )
        .bind(token)
        .bind(category)
        .bind(ordinal)
        .bind(region)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn read_placement(
    conn: &mut SqliteConnection,
    token: &str,
    category: &str,
) -> Result<Option<PlacementRow>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        placement_cols!(),
        " FROM placements WHERE token = ? AND category = ?"
    ))
    .bind(token)
    .bind(category)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut p = placement_from(&row)?;
    p.regions = read_regions(conn, token, category).await?;
    Ok(Some(p))
}

/// (token, category) pairs bound per statement by the batched reads: two
/// parameters each, well under SQLite's limit of 32,766.
const PAIRS_PER_STATEMENT: usize = 400;

/// The distinct values of a batched read's keys, sorted: each is bound
/// once, however often it is asked.
fn distinct<T: Ord>(keys: &[T]) -> Vec<&T> {
    keys.iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Appends `(VALUES (?, ?), …)` with the (token, category) pairs bound.
fn push_pairs(q: &mut QueryBuilder<Sqlite>, pairs: &[&(String, String)]) {
    q.push("(VALUES ");
    let mut sep = q.separated(", ");
    for (t, c) in pairs {
        sep.push("(")
            .push_bind_unseparated(t.as_str())
            .push_unseparated(", ")
            .push_bind_unseparated(c.as_str())
            .push_unseparated(")");
    }
    q.push(")");
}

/// Checks a write's fence: `None` if the placement is at the fence's epoch
/// and active, else the outcome to return without writing.
async fn check_fence(conn: &mut SqliteConnection, fence: &Fence) -> Result<Option<CommitOutcome>> {
    let row = sqlx::query("SELECT epoch, state FROM placements WHERE token = ? AND category = ?")
        .bind(&fence.token)
        .bind(&fence.category)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(Some(CommitOutcome::Fenced {
            current_epoch: None,
            moving: false,
        }));
    };
    let epoch: i64 = row.try_get("epoch")?;
    let state: String = row.try_get("state")?;
    let moving = !decode_state(&state)?.is_active();
    if epoch != fence.epoch || moving {
        return Ok(Some(CommitOutcome::Fenced {
            current_epoch: Some(epoch),
            moving,
        }));
    }
    Ok(None)
}

/// Queues a blob for deletion from `regions`. Returns the queued row.
async fn insert_garbage(
    conn: &mut SqliteConnection,
    token: &str,
    category: &str,
    blob_id: &str,
    regions: Vec<String>,
    queued_at: Millis,
) -> Result<GarbageRow> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO garbage (token, category, blob_id, regions, queued_at) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(token)
    .bind(category)
    .bind(blob_id)
    .bind(encode_regions(&regions)?)
    .bind(queued_at)
    .fetch_one(&mut *conn)
    .await?;
    Ok(GarbageRow {
        id,
        token: token.to_string(),
        category: category.to_string(),
        blob_id: blob_id.to_string(),
        regions,
        queued_at,
    })
}

/// Adds to a placement's object and byte counters.
async fn add_counts(
    conn: &mut SqliteConnection,
    token: &str,
    category: &str,
    objects: i64,
    bytes: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE placements SET objects = objects + ?, bytes = bytes + ? \
         WHERE token = ? AND category = ?",
    )
    .bind(objects)
    .bind(bytes)
    .bind(token)
    .bind(category)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What an object row held before a write replaced or removed it.
struct OldObject {
    category: String,
    version: i64,
    stored_size: i64,
    blob_id: String,
}

async fn read_old_object(
    conn: &mut SqliteConnection,
    token: &str,
    lookup: &str,
) -> Result<Option<OldObject>> {
    let row = sqlx::query(
        "SELECT category, version, stored_size, blob_id FROM objects \
         WHERE token = ? AND lookup = ?",
    )
    .bind(token)
    .bind(lookup)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(OldObject {
            category: r.try_get("category")?,
            version: r.try_get("version")?,
            stored_size: r.try_get("stored_size")?,
            blob_id: r.try_get("blob_id")?,
        })
    })
    .transpose()
}

// ---------------------------------------------------------------------------

#[async_trait]
impl Catalog for SqliteCatalog {
    async fn schema_version(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        applied_version(&mut conn).await
    }

    // ---- subjects ----

    async fn add_subject(&self, subject: &SubjectRow, ledger: LedgerAppend) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO subjects (token, home, created_at, id_enc) VALUES (?, ?, ?, ?) \
             ON CONFLICT (token) DO NOTHING",
        )
        .bind(&subject.token)
        .bind(&subject.home)
        .bind(subject.created_at)
        .bind(&subject.id_enc)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::AlreadyExists {
                what: format!("subject {}", subject.token),
            });
        }
        ledger_append(&mut tx, &ledger).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn add_subjects(&self, subjects: &[SubjectRow], at: Millis) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let mut tail = ledger_tail(&mut tx).await?;
        let mut added = 0;
        for s in subjects {
            let inserted = sqlx::query(
                "INSERT INTO subjects (token, home, created_at, id_enc) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (token) DO NOTHING",
            )
            .bind(&s.token)
            .bind(&s.home)
            .bind(s.created_at)
            .bind(&s.id_enc)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                continue;
            }
            added += 1;
            let entry = LedgerAppend {
                kind: "subject".into(),
                subject: Some(s.token.clone()),
                body: serde_json::json!({ "home": s.home }),
                at,
            };
            ledger_push(&mut tx, &mut tail, &entry).await?;
        }
        self.commit(tx).await?;
        Ok(added)
    }

    async fn get_subject(&self, token: &str) -> Result<Option<SubjectRow>> {
        let row =
            sqlx::query("SELECT token, home, created_at, id_enc FROM subjects WHERE token = ?")
                .bind(token)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(subject_from).transpose()
    }

    async fn get_subjects(&self, tokens: &[String]) -> Result<Vec<Option<SubjectRow>>> {
        let unique = distinct(tokens);
        let mut found: HashMap<String, SubjectRow> = HashMap::new();
        for chunk in unique.chunks(PAIRS_PER_STATEMENT * 2) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT token, home, created_at, id_enc FROM subjects WHERE token IN (",
            );
            let mut sep = q.separated(", ");
            for t in chunk {
                sep.push_bind(t.as_str());
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                let s = subject_from(&row)?;
                found.insert(s.token.clone(), s);
            }
        }
        Ok(tokens.iter().map(|t| found.get(t).cloned()).collect())
    }

    async fn set_home(&self, token: &str, home: &str, ledger: LedgerAppend) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query("UPDATE subjects SET home = ? WHERE token = ?")
            .bind(home)
            .bind(token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(not_found(format!("subject {token}")));
        }
        sqlx::query("UPDATE placements SET home = ? WHERE token = ?")
            .bind(home)
            .bind(token)
            .execute(&mut *tx)
            .await?;
        ledger_append(&mut tx, &ledger).await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn erase_subject(&self, token: &str, ledger: LedgerAppend) -> Result<Vec<GarbageRow>> {
        let mut tx = self.write_tx().await?;
        let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subjects WHERE token = ?")
            .bind(token)
            .fetch_one(&mut *tx)
            .await?;
        if known == 0 {
            return Err(not_found(format!("subject {token}")));
        }

        let mut regions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT category, region FROM placement_regions WHERE token = ? \
             ORDER BY category, ordinal",
        )
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        for r in &rows {
            let category: String = r.try_get("category")?;
            regions
                .entry(category)
                .or_default()
                .push(r.try_get("region")?);
        }
        // A move under way may already have copied blobs to its targets.
        let states = sqlx::query("SELECT category, state FROM placements WHERE token = ?")
            .bind(token)
            .fetch_all(&mut *tx)
            .await?;
        for r in &states {
            let state: String = r.try_get("state")?;
            if let PlacementState::Moving { to, .. } = decode_state(&state)? {
                let list = regions.entry(r.try_get("category")?).or_default();
                for region in to {
                    if !list.contains(&region) {
                        list.push(region);
                    }
                }
            }
        }

        let blobs = sqlx::query(
            "SELECT category, blob_id FROM objects WHERE token = ? ORDER BY category, lookup",
        )
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = Vec::with_capacity(blobs.len());
        for r in &blobs {
            let category: String = r.try_get("category")?;
            let blob_id: String = r.try_get("blob_id")?;
            let where_ = regions.get(&category).cloned().unwrap_or_default();
            queued.push(
                insert_garbage(&mut tx, token, &category, &blob_id, where_, ledger.at).await?,
            );
        }

        for sql in [
            "DELETE FROM objects WHERE token = ?",
            "DELETE FROM placement_regions WHERE token = ?",
            "DELETE FROM placements WHERE token = ?",
            "DELETE FROM subjects WHERE token = ?",
        ] {
            sqlx::query(sql).bind(token).execute(&mut *tx).await?;
        }
        ledger_append(&mut tx, &ledger).await?;
        self.commit(tx).await?;
        tracing::debug!(objects = queued.len(), "erased subject");
        Ok(queued)
    }

    async fn count_subjects(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM subjects")
            .fetch_one(&self.pool)
            .await?)
    }

    // ---- placements ----

    async fn get_placement(&self, token: &str, category: &str) -> Result<Option<PlacementRow>> {
        // A read transaction (one snapshot for the row and its regions):
        // nothing to sync.
        let mut tx = self.pool.begin().await?;
        let p = read_placement(&mut tx, token, category).await?;
        tx.commit().await?;
        Ok(p)
    }

    async fn get_placements(&self, keys: &[(String, String)]) -> Result<Vec<Option<PlacementRow>>> {
        // One read transaction (one snapshot) and two statements per
        // chunk, instead of four round trips to the connection's thread
        // per placement.
        let unique = distinct(keys);
        let mut found: HashMap<(String, String), PlacementRow> = HashMap::new();
        let mut tx = self.pool.begin().await?;
        for chunk in unique.chunks(PAIRS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(concat!(
                "SELECT ",
                placement_cols!(),
                " FROM placements WHERE (token, category) IN "
            ));
            push_pairs(&mut q, chunk);
            for row in q.build().fetch_all(&mut *tx).await? {
                let p = placement_from(&row)?;
                found.insert((p.token.clone(), p.category.clone()), p);
            }
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT token, category, region FROM placement_regions \
                 WHERE (token, category) IN ",
            );
            push_pairs(&mut q, chunk);
            q.push(" ORDER BY token, category, ordinal");
            for row in q.build().fetch_all(&mut *tx).await? {
                let key: (String, String) = (row.try_get("token")?, row.try_get("category")?);
                if let Some(p) = found.get_mut(&key) {
                    p.regions.push(row.try_get("region")?);
                }
            }
        }
        tx.commit().await?; // a read transaction: nothing to sync
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn placements_of(&self, token: &str) -> Result<Vec<PlacementRow>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            placement_cols!(),
            " FROM placements WHERE token = ? ORDER BY category"
        ))
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = rows
            .iter()
            .map(placement_from)
            .collect::<Result<Vec<_>>>()?;
        let regions = sqlx::query(
            "SELECT category, region FROM placement_regions WHERE token = ? \
             ORDER BY category, ordinal",
        )
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?; // a read transaction: nothing to sync
        let mut by_category: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &regions {
            let category: String = r.try_get("category")?;
            by_category
                .entry(category)
                .or_default()
                .push(r.try_get("region")?);
        }
        for p in &mut out {
            p.regions = by_category.remove(&p.category).unwrap_or_default();
        }
        Ok(out)
    }

    async fn ensure_placement(
        &self,
        row: &PlacementRow,
        ledger: LedgerAppend,
    ) -> Result<PlacementRow> {
        let mut tx = self.write_tx().await?;
        if let Some(existing) = read_placement(&mut tx, &row.token, &row.category).await? {
            self.commit(tx).await?;
            return Ok(existing);
        }
        let home: Option<String> = sqlx::query_scalar("SELECT home FROM subjects WHERE token = ?")
            .bind(&row.token)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(home) = home else {
            return Err(not_found(format!("subject {}", row.token)));
        };
        let created = PlacementRow {
            epoch: 1,
            state: PlacementState::Active,
            objects: 0,
            bytes: 0,
            ..row.clone()
        };
        sqlx::query(concat!(
            "INSERT INTO placements (home, regions, ",
            placement_cols!(),
            ") VALUES (?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&home)
        .bind(&created.token)
        .bind(&created.category)
        .bind(created.epoch)
        .bind(encode_state(&created.state)?)
        .bind(&created.custodian)
        .bind(&created.wrapped_key)
        .bind(created.objects)
        .bind(created.bytes)
        .bind(created.since)
        .execute(&mut *tx)
        .await?;
        write_regions(&mut tx, &created.token, &created.category, &created.regions).await?;
        ledger_append(&mut tx, &ledger).await?;
        self.commit(tx).await?;
        Ok(created)
    }

    async fn begin_move(
        &self,
        token: &str,
        category: &str,
        epoch: i64,
        to: &[String],
        lease_until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let marked = begin_move_in(&mut tx, token, category, epoch, to, lease_until, now).await?;
        if marked {
            self.commit(tx).await?;
        }
        Ok(marked)
    }

    async fn begin_moves(
        &self,
        marks: &[MoveMark],
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<bool>> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(marks.len());
        for m in marks {
            out.push(
                begin_move_in(
                    &mut tx,
                    &m.token,
                    &m.category,
                    m.epoch,
                    &m.to,
                    lease_until,
                    now,
                )
                .await?,
            );
        }
        if out.contains(&true) {
            self.commit_lazily(tx).await?;
        }
        Ok(out)
    }

    async fn commit_move(
        &self,
        fence: &Fence,
        regions: &[String],
        custodian: &str,
        wrapped_key: &[u8],
        ledger: LedgerAppend,
    ) -> Result<PlacementRow> {
        let mut tx = self.write_tx().await?;
        let moved =
            commit_move_in(&mut tx, fence, regions, custodian, wrapped_key, &ledger).await?;
        self.commit(tx).await?;
        Ok(moved)
    }

    async fn commit_unit_move(
        &self,
        fence: &Fence,
        regions: &[String],
        custodian: &str,
        wrapped_key: &[u8],
        ledger: LedgerAppend,
        release: &UnitRelease,
    ) -> Result<(PlacementRow, bool)> {
        let mut tx = self.write_tx().await?;
        let moved =
            commit_move_in(&mut tx, fence, regions, custodian, wrapped_key, &ledger).await?;
        let held = finish_unit_in(&mut tx, &fence.token, &fence.category, release).await?;
        self.commit(tx).await?;
        Ok((moved, held))
    }

    async fn commit_unit_moves(
        &self,
        moves: &[UnitMove],
    ) -> Result<Vec<Result<(PlacementRow, bool)>>> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(moves.len());
        for m in moves {
            // A refused move is refused before it writes anything: the
            // transaction goes on with the others.
            let moved = match commit_move_in(
                &mut tx,
                &m.fence,
                &m.regions,
                &m.custodian,
                &m.wrapped_key,
                &m.ledger,
            )
            .await
            {
                Ok(moved) => moved,
                Err(e) if e.is_fenced() => {
                    out.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let held =
                finish_unit_in(&mut tx, &m.fence.token, &m.fence.category, &m.release).await?;
            out.push(Ok((moved, held)));
        }
        self.commit_lazily(tx).await?;
        Ok(out)
    }

    async fn durable(&self) -> Result<()> {
        self.wal.sync().await
    }

    async fn abort_move(&self, token: &str, category: &str, epoch: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let row =
            sqlx::query("SELECT epoch, state FROM placements WHERE token = ? AND category = ?")
                .bind(token)
                .bind(category)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(row) = row else { return Ok(()) };
        let current: i64 = row.try_get("epoch")?;
        let state: String = row.try_get("state")?;
        if current != epoch || decode_state(&state)?.is_active() {
            return Ok(());
        }
        sqlx::query("UPDATE placements SET state = ? WHERE token = ? AND category = ?")
            .bind(encode_state(&PlacementState::Active)?)
            .bind(token)
            .bind(category)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn placements_page(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // An absent key sorts before every token: tokens are never empty.
        let (after_token, after_category) = after.unwrap_or(("", ""));
        // The planner's hot loop at millions of rows: one table, and the
        // whole page packed into one text value, so the per-row cost of
        // moving rows out of SQLite is paid once per page. No packed field
        // can hold '|' or a newline: tokens are hex, homes are ISO codes,
        // categories, custodians and region ids are [a-z0-9_-] (and ',').
        let packed: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(token || '|' || home || '|' || category || '|' || custodian || '|' || \
                    epoch || '|' || objects || '|' || bytes || '|' || regions, char(10)) \
             FROM (SELECT token, home, category, custodian, epoch, objects, bytes, regions \
                   FROM placements WHERE (token, category) > (?, ?) \
                   ORDER BY token, category LIMIT ?)",
        )
        .bind(after_token)
        .bind(after_category)
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await?;
        let Some(packed) = packed else {
            return Ok(Vec::new());
        };
        packed.split('\n').map(unpack_placement).collect()
    }

    async fn subject_seals(&self, tokens: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(tokens.len());
        for batch in tokens.chunks(500) {
            let marks = vec!["?"; batch.len()].join(", ");
            let sql = format!(
                "SELECT token, id_enc FROM subjects WHERE id_enc IS NOT NULL AND token IN ({marks})"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in batch {
                q = q.bind(t);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        let order: std::collections::HashMap<&str, usize> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        out.sort_by_key(|(t, _)| order.get(t.as_str()).copied().unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn residency(&self) -> Result<Vec<ResidencyRow>> {
        let rows = sqlx::query(
            "SELECT s.home AS home, p.category AS category, r.region AS region, \
                    COUNT(DISTINCT p.token) AS subjects, \
                    CAST(SUM(p.objects) AS BIGINT) AS objects, \
                    CAST(SUM(p.bytes) AS BIGINT) AS bytes \
             FROM placement_regions r \
             JOIN placements p ON p.token = r.token AND p.category = r.category \
             JOIN subjects s ON s.token = p.token \
             GROUP BY s.home, p.category, r.region \
             ORDER BY s.home, p.category, r.region",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ResidencyRow {
                    home: r.try_get("home")?,
                    category: r.try_get("category")?,
                    region: r.try_get("region")?,
                    subjects: r.try_get("subjects")?,
                    objects: r.try_get("objects")?,
                    bytes: r.try_get("bytes")?,
                })
            })
            .collect()
    }

    // ---- objects ----

    async fn commit_object(&self, fence: &Fence, row: &ObjectRow) -> Result<CommitOutcome> {
        if row.token != fence.token || row.category != fence.category {
            return Err(Error::Invalid {
                reason: format!(
                    "object row is for {}/{}, the fence for {}/{}",
                    row.token, row.category, fence.token, fence.category
                ),
            });
        }
        let mut tx = self.write_tx().await?;
        if let Some(fenced) = check_fence(&mut tx, fence).await? {
            return Ok(fenced);
        }
        let old = read_old_object(&mut tx, &row.token, &row.lookup).await?;
        if let Some(old) = &old
            && old.category != row.category
        {
            return Err(Error::Conflict {
                reason: format!(
                    "the name is indexed in category {}, not {}; delete it there first",
                    old.category, row.category
                ),
            });
        }
        let shared: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM objects WHERE token = ? AND blob_id = ? AND lookup <> ?",
        )
        .bind(&row.token)
        .bind(&row.blob_id)
        .bind(&row.lookup)
        .fetch_one(&mut *tx)
        .await?;
        if shared > 0 {
            return Err(Error::Conflict {
                reason: format!("blob {} already belongs to another object", row.blob_id),
            });
        }

        let version = old.as_ref().map_or(1, |o| o.version + 1);
        sqlx::query(concat!(
            "INSERT INTO objects (",
            object_cols!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (token, lookup) DO UPDATE SET \
               category = excluded.category, name_enc = excluded.name_enc, \
               meta_enc = excluded.meta_enc, version = excluded.version, \
               size = excluded.size, stored_size = excluded.stored_size, \
               checksum = excluded.checksum, blob_id = excluded.blob_id, \
               modified_at = excluded.modified_at"
        ))
        .bind(&row.token)
        .bind(&row.lookup)
        .bind(&row.category)
        .bind(&row.name_enc)
        .bind(&row.meta_enc)
        .bind(version)
        .bind(row.size)
        .bind(row.stored_size)
        .bind(&row.checksum)
        .bind(&row.blob_id)
        .bind(row.modified_at)
        .execute(&mut *tx)
        .await?;

        let (objects, bytes) = match &old {
            Some(o) => (0, row.stored_size - o.stored_size),
            None => (1, row.stored_size),
        };
        add_counts(&mut tx, &row.token, &row.category, objects, bytes).await?;

        // The write's intent: the index row keeps the blob from now on.
        sqlx::query("DELETE FROM garbage WHERE blob_id = ?")
            .bind(&row.blob_id)
            .execute(&mut *tx)
            .await?;
        let replaced = old.filter(|o| o.blob_id != row.blob_id).map(|o| o.blob_id);
        if let Some(blob_id) = &replaced {
            let regions = read_regions(&mut tx, &row.token, &row.category).await?;
            insert_garbage(
                &mut tx,
                &row.token,
                &row.category,
                blob_id,
                regions,
                row.modified_at,
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(CommitOutcome::Committed { version, replaced })
    }

    async fn delete_object(&self, fence: &Fence, lookup: &str) -> Result<Option<CommitOutcome>> {
        let mut tx = self.write_tx().await?;
        if let Some(fenced) = check_fence(&mut tx, fence).await? {
            return Ok(Some(fenced));
        }
        let old = read_old_object(&mut tx, &fence.token, lookup).await?;
        let Some(old) = old.filter(|o| o.category == fence.category) else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM objects WHERE token = ? AND lookup = ?")
            .bind(&fence.token)
            .bind(lookup)
            .execute(&mut *tx)
            .await?;
        add_counts(&mut tx, &fence.token, &fence.category, -1, -old.stored_size).await?;
        let regions = read_regions(&mut tx, &fence.token, &fence.category).await?;
        insert_garbage(
            &mut tx,
            &fence.token,
            &fence.category,
            &old.blob_id,
            regions,
            now_millis(),
        )
        .await?;
        self.commit(tx).await?;
        Ok(Some(CommitOutcome::Committed {
            version: old.version,
            replaced: Some(old.blob_id),
        }))
    }

    async fn get_object(&self, token: &str, lookup: &str) -> Result<Option<ObjectRow>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            object_cols!(),
            " FROM objects WHERE token = ? AND lookup = ?"
        ))
        .bind(token)
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_from).transpose()
    }

    async fn objects_of(&self, token: &str, category: Option<&str>) -> Result<Vec<ObjectRow>> {
        let rows = match category {
            Some(category) => {
                sqlx::query(concat!(
                    "SELECT ",
                    object_cols!(),
                    " FROM objects WHERE token = ? AND category = ? ORDER BY category, lookup"
                ))
                .bind(token)
                .bind(category)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    object_cols!(),
                    " FROM objects WHERE token = ? ORDER BY category, lookup"
                ))
                .bind(token)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(object_from).collect()
    }

    async fn objects_of_pairs(&self, keys: &[(String, String)]) -> Result<Vec<Vec<ObjectRow>>> {
        let unique = distinct(keys);
        let mut rows = Vec::new();
        for chunk in unique.chunks(PAIRS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(concat!(
                "SELECT ",
                object_cols!(),
                " FROM objects WHERE (token, category) IN "
            ));
            push_pairs(&mut q, chunk);
            q.push(" ORDER BY token, category, lookup");
            for row in q.build().fetch_all(&self.pool).await? {
                rows.push(object_from(&row)?);
            }
        }
        Ok(objects_by_pair(rows, keys))
    }

    async fn objects_page(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<ObjectRow>> {
        let (after_token, after_blob) = after.unwrap_or(("", ""));
        let rows = sqlx::query(concat!(
            "SELECT ",
            object_cols!(),
            " FROM objects WHERE (token, blob_id) > (?, ?) \
              ORDER BY token, blob_id LIMIT ?"
        ))
        .bind(after_token)
        .bind(after_blob)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(object_from).collect()
    }

    // ---- garbage ----

    async fn garbage(&self, limit: u32) -> Result<Vec<GarbageRow>> {
        let rows = sqlx::query(
            "SELECT id, token, category, blob_id, regions, queued_at FROM garbage \
             ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(garbage_from).collect()
    }

    async fn due_garbage(&self, limit: u32, now: Millis) -> Result<Vec<GarbageRow>> {
        let rows = sqlx::query(
            "SELECT id, token, category, blob_id, regions, queued_at FROM garbage \
             WHERE queued_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(garbage_from).collect()
    }

    async fn queue_garbage(&self, row: &GarbageRow) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let queued = insert_garbage(
            &mut tx,
            &row.token,
            &row.category,
            &row.blob_id,
            row.regions.clone(),
            row.queued_at,
        )
        .await?;
        // Not waited onto disk: a queued row only ever lets a blob be
        // deleted, and losing one to a power loss leaves at worst an
        // unindexed blob that `verify` reports, never a lost write. Every
        // put records one (its intent), so this keeps an fsync off its path.
        tx.commit().await?;
        Ok(queued.id)
    }

    async fn finish_garbage(&self, id: i64, ledger: Option<LedgerAppend>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM garbage WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found(format!("garbage row {id}")));
        }
        if let Some(entry) = &ledger {
            ledger_append(&mut tx, entry).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    // ---- ledger ----

    async fn append_ledger(&self, entry: LedgerAppend) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let seq = ledger_append(&mut tx, &entry).await?;
        self.commit(tx).await?;
        Ok(seq)
    }

    async fn ledger_page(&self, after: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from).collect()
    }

    async fn ledger_of(&self, token: &str) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM ledger WHERE subject = ? ORDER BY seq"
        ))
        .bind(token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from).collect()
    }

    // ---- settings ----

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.durable().await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(stored)
    }

    // ---- raw rows, for catalog migration ----

    async fn raw_count(&self, table: RawTable) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {}", table.name());
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?)
    }

    async fn raw_page(
        &self,
        table: RawTable,
        after: Option<&[RawValue]>,
        limit: u32,
    ) -> Result<Vec<RawRow>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM {}",
            table.column_list(),
            table.name()
        ));
        if let Some(key) = after {
            q.push(format!(" WHERE ({}) > (", table.key_list()));
            let mut sep = q.separated(", ");
            for v in key {
                match v {
                    RawValue::Int(x) => sep.push_bind(*x),
                    RawValue::Text(x) => sep.push_bind(x.clone()),
                    RawValue::Bytes(x) => sep.push_bind(x.clone()),
                };
            }
            q.push(")");
        }
        q.push(format!(" ORDER BY {} LIMIT ", table.key_list()));
        q.push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let mut out = Vec::with_capacity(table.columns().len());
                for (i, (_, ty)) in table.columns().iter().enumerate() {
                    out.push(match ty {
                        RawType::Int => RawValue::Int(r.try_get(i)?),
                        RawType::Text => RawValue::Text(r.try_get(i)?),
                        RawType::Bytes => RawValue::Bytes(r.try_get(i)?),
                    });
                }
                Ok(out)
            })
            .collect()
    }

    async fn raw_insert(&self, table: RawTable, rows: &[RawRow]) -> Result<()> {
        let width = table.columns().len();
        if let Some(bad) = rows.iter().find(|r| r.len() != width) {
            return Err(Error::Invalid {
                reason: format!(
                    "a {} row has {} values, not {width}",
                    table.name(),
                    bad.len()
                ),
            });
        }
        let mut tx = self.write_tx().await?;
        // Well under SQLite's 32766 bind parameters.
        for chunk in rows.chunks(1_000) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO {} ({}) ",
                table.name(),
                table.column_list()
            ));
            q.push_values(chunk, |mut b, row| {
                for v in row {
                    match v {
                        RawValue::Int(x) => b.push_bind(*x),
                        RawValue::Text(x) => b.push_bind(x.clone()),
                        RawValue::Bytes(x) => b.push_bind(x.clone()),
                    };
                }
            });
            q.build().execute(&mut *tx).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Nothing to do: the ledger's tail is its last row, and AUTOINCREMENT
    /// ids continue after the largest id inserted.
    async fn raw_finish(&self) -> Result<()> {
        Ok(())
    }
}
