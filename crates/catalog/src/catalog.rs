//! The catalog contract every backend implements.
//!
//! The contract is minimal on purpose: each method is one transaction, and
//! every change that the ledger must record is appended in the same
//! transaction as the change itself, so the two can never disagree. Where a
//! step has a one-row and a batch form, the batch form is the one a backend
//! must implement; the one-row form is provided from it (a backend may
//! still answer it more cheaply).

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    CheckpointRow, Expect, Fence, GarbageRetry, GarbageRow, IndexEntry, LedgerAppend, LedgerEntry,
    Millis, ObjectRow, PlacementRow, PlacementState, PlacementSummary, PolicyApplied,
    PolicyVersionRow, ResidencyRow, SubjectRow, TokenRange,
};
use crate::raw::{RawRow, RawTable, RawValue};

/// Result of committing an object row against a fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed with this version; `replaced` is the blob that the row used
    /// to point at, now queued for garbage collection.
    Committed {
        version: i64,
        replaced: Option<String>,
    },
    /// The placement changed (other epoch) or is moving: nothing was written.
    Fenced {
        current_epoch: Option<i64>,
        moving: bool,
    },
    /// Another policy version is active than the fence's: nothing was
    /// written. The placement must be checked against `active` first.
    PolicyChanged { active: i64 },
}

/// One commit of a batch: what `commit_object_if` takes, for
/// `Catalog::commit_objects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCommit {
    pub fence: Fence,
    pub row: ObjectRow,
    /// When the blob the row replaces is due for deletion.
    pub replaced_due: Millis,
    pub expect: Expect,
}

/// A placement to mark moving: what `begin_move` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveMark {
    pub token: String,
    pub category: String,
    pub epoch: i64,
    pub to: Vec<String>,
}

/// A placement's wrapped key to replace by the same data key wrapped again
/// (a custodian's rotation): what `rewrap_placements` takes. It applies only
/// while the placement is still at `epoch`, under `custodian`, with
/// `old_key`: a move or an erasure in the meantime wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrap {
    pub token: String,
    pub category: String,
    pub epoch: i64,
    pub custodian: String,
    pub old_key: Vec<u8>,
    pub new_key: Vec<u8>,
}

/// A migration unit's move to commit: what `commit_unit_move` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitMove {
    pub fence: Fence,
    pub regions: Vec<String>,
    pub custodian: String,
    pub wrapped_key: Vec<u8>,
    pub ledger: LedgerAppend,
    pub release: crate::jobs::UnitRelease,
    /// A re-keyed move (its custodian changes): every object of the unit
    /// rewritten under the new data key, as new blobs. Empty for a move
    /// that keeps its data key.
    pub rekeyed: Vec<RekeyedObject>,
    /// Blobs the move leaves behind in regions it keeps (the old blobs of
    /// a re-keyed unit), queued for deletion with the commit.
    pub garbage: Vec<GarbageRow>,
}

/// One object of a re-keyed unit: its index row's new blob, checksum,
/// stored size and sealed name and metadata, replacing the blob
/// `replaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyedObject {
    pub lookup: String,
    pub replaces: String,
    pub blob_id: String,
    pub checksum: String,
    pub stored_size: i64,
    pub name_enc: Vec<u8>,
    pub meta_enc: Vec<u8>,
}

/// The catalog: subjects, placements, the object index, the garbage queue
/// and the ledger.
#[async_trait]
pub trait Catalog: crate::jobs::JobStore + Send + Sync + std::fmt::Debug {
    /// Schema version this backend is at after `open`.
    async fn schema_version(&self) -> Result<i64>;

    // ---- subjects ----

    /// Registers a subject and appends a `subject` ledger entry.
    /// Errors with `Error::AlreadyExists` if the token is known (and appends nothing).
    async fn add_subject(&self, subject: &SubjectRow, ledger: LedgerAppend) -> Result<()>;

    /// Registers many subjects in one transaction; existing tokens are
    /// skipped. Returns how many were added. One `subject` ledger entry per
    /// added subject, with body `{"home": HOME}` and the given `at` and
    /// `actor`.
    async fn add_subjects(&self, subjects: &[SubjectRow], at: Millis, actor: &str) -> Result<u64>;

    /// The subject with this token, if registered.
    async fn get_subject(&self, token: &str) -> Result<Option<SubjectRow>> {
        Ok(self
            .get_subjects(&[token.to_string()])
            .await?
            .pop()
            .flatten())
    }

    /// The subjects of several tokens, in the order asked, `None` where
    /// one is not registered.
    async fn get_subjects(&self, tokens: &[String]) -> Result<Vec<Option<SubjectRow>>>;

    /// Changes a subject's home and appends the given ledger entry.
    /// Errors with `Error::NotFound` if the token is unknown.
    async fn set_home(&self, token: &str, home: &str, ledger: LedgerAppend) -> Result<()>;

    /// Removes a subject with its placements and index rows, queues all its
    /// blobs for deletion, and appends the `erasure` ledger entry. Data keys
    /// are deleted with the placements (crypto-shredding).
    /// Returns the garbage rows queued: one per indexed object, for the
    /// regions of its placement (and the targets of a move under way), queued
    /// at `ledger.at`. Errors with `Error::NotFound` if the token is unknown.
    async fn erase_subject(&self, token: &str, ledger: LedgerAppend) -> Result<Vec<GarbageRow>>;

    /// How many subjects are registered.
    async fn count_subjects(&self) -> Result<i64>;

    /// Registered subjects in token order after the token `after` (keyset
    /// paging: a page ends where the next starts, whatever is added or
    /// removed meanwhile), at most `limit`; only those whose home is `home`,
    /// and only those with a placement in `region`, when given.
    async fn subjects_page(
        &self,
        after: Option<&str>,
        limit: u32,
        home: Option<&str>,
        region: Option<&str>,
    ) -> Result<Vec<SubjectRow>>;

    // ---- placements ----

    /// The placement of one (subject, category), if any.
    async fn get_placement(&self, token: &str, category: &str) -> Result<Option<PlacementRow>> {
        let key = (token.to_string(), category.to_string());
        Ok(self
            .get_placements(std::slice::from_ref(&key))
            .await?
            .pop()
            .flatten())
    }

    /// The placements of several (subject, category) pairs, in the order
    /// asked, `None` where there is none. Each placement is read whole
    /// (its row and its regions at once).
    async fn get_placements(&self, keys: &[(String, String)]) -> Result<Vec<Option<PlacementRow>>>;

    /// Every placement of one subject, ordered by category.
    async fn placements_of(&self, token: &str) -> Result<Vec<PlacementRow>>;

    /// Creates the placement if none exists (epoch 1, active) and appends the
    /// `placement` ledger entry. If one exists, returns it unchanged and
    /// appends nothing. Of `row`, only token, category, regions, custodian,
    /// wrapped key and `since` are used; the counters start at zero.
    /// Errors with `Error::NotFound` if the subject is unknown, and with
    /// `Error::Invalid` if a region is listed twice. A placement is created
    /// only while `policy`, the version its regions were decided under, is
    /// the active one: otherwise nothing is created (`Error::PolicyChanged`),
    /// so no process that has not yet followed a new version ever names a
    /// region that version forbids, not even in an empty placement.
    async fn ensure_placement(
        &self,
        row: &PlacementRow,
        policy: i64,
        ledger: LedgerAppend,
    ) -> Result<PlacementRow>;

    /// Commits a move: sets regions, custodian and wrapped key, bumps the
    /// epoch, sets the state active, and appends the `move` ledger entry.
    /// Fails with `Error::Conflict` if the placement is not at `epoch` or is
    /// not moving (a move aborted in the meantime may have let writes commit
    /// that the new regions lack), and with `Error::NotFound` if it is gone.
    /// The new `since` is `ledger.at`.
    async fn commit_move(
        &self,
        fence: &Fence,
        regions: &[String],
        custodian: &str,
        wrapped_key: &[u8],
        ledger: LedgerAppend,
    ) -> Result<PlacementRow>;

    /// Marks a placement as moving, if it is at `epoch` and active (or its
    /// moving lease has expired by `now`, that is `lease_until < now`).
    /// Returns false if fenced, or if there is no such placement. The epoch
    /// does not change: only `commit_move` bumps it. A mark is durable
    /// when this returns.
    async fn begin_move(
        &self,
        token: &str,
        category: &str,
        epoch: i64,
        to: &[String],
        lease_until: Millis,
        now: Millis,
    ) -> Result<bool> {
        let mark = MoveMark {
            token: token.to_owned(),
            category: category.to_owned(),
            epoch,
            to: to.to_vec(),
        };
        let marked = self
            .begin_moves(std::slice::from_ref(&mark), lease_until, now)
            .await?
            .first()
            .copied()
            .unwrap_or(false);
        if marked {
            self.durable().await?;
        }
        Ok(marked)
    }

    /// `begin_move` for several placements in one transaction (a migration
    /// worker's batch of units). One answer per mark, in order; a fenced or
    /// missing placement is `false` and does not stop the others. A backend
    /// may return before the marks are durable (see `durable`): a lost mark
    /// only means the move is done again.
    async fn begin_moves(
        &self,
        marks: &[MoveMark],
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<bool>>;

    /// `commit_unit_move` for several units in one transaction. A re-keyed
    /// move (`UnitMove::rekeyed` not empty) must name every object of its
    /// unit, each still at the blob it replaces; otherwise that move is
    /// refused (`Error::Conflict`) and writes nothing, since an object left
    /// out would be unreadable under the new key. Its objects' index rows
    /// take their new blobs, the new blobs' write intents are dropped, and
    /// `UnitMove::garbage` is queued. Each move commits or fails on its own: one fenced (`Error::Conflict`) or gone
    /// (`Error::NotFound`) placement is that move's result and does not stop
    /// the others. An error of the catalog itself fails the whole call, and
    /// then nothing of it is committed. One result per move, in order.
    ///
    /// A backend may return before the commits are durable: they become so
    /// with the next durable write or `durable`. Until then a power cut may
    /// undo them (the old copies still serve the data); the claim that hands
    /// out a unit's purge waits for them (see `JobStore::claim_units`).
    async fn commit_unit_moves(
        &self,
        moves: &[UnitMove],
    ) -> Result<Vec<Result<(PlacementRow, bool)>>>;

    /// `commit_move`, and in the same transaction the release of the
    /// migration unit of this (token, category) that made the move, as
    /// `finish_unit` records it. Returns the placement and whether the
    /// worker still held the unit's lease. The move commits either way: it
    /// is fenced by the placement's moving mark and epoch, not by the lease.
    /// Durable when it returns.
    async fn commit_unit_move(
        &self,
        fence: &Fence,
        regions: &[String],
        custodian: &str,
        wrapped_key: &[u8],
        ledger: LedgerAppend,
        release: &crate::jobs::UnitRelease,
    ) -> Result<(PlacementRow, bool)> {
        let one = UnitMove {
            fence: fence.clone(),
            regions: regions.to_vec(),
            custodian: custodian.to_string(),
            wrapped_key: wrapped_key.to_vec(),
            ledger,
            release: release.clone(),
            rekeyed: Vec::new(),
            garbage: Vec::new(),
        };
        let done = self
            .commit_unit_moves(std::slice::from_ref(&one))
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(crate::Error::Corrupt {
                    reason: "a batch of one move gave no result".into(),
                })
            })?;
        self.durable().await?;
        Ok(done)
    }

    /// Returns once every change committed so far through this catalog is
    /// durable, including those of calls that may return before (claims,
    /// moving marks and commits of migration batches). A no-op where every
    /// commit is durable by itself.
    async fn durable(&self) -> Result<()> {
        Ok(())
    }

    /// Clears a moving mark without changing the placement. Does nothing if
    /// the placement is not at `epoch` or not moving.
    async fn abort_move(&self, token: &str, category: &str, epoch: i64) -> Result<()>;

    /// Streams every placement with its subject's home, ordered by token then
    /// category, in pages of at most `limit` after the (token, category) key.
    /// An empty page means the end.
    async fn placements_page(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>>;

    /// [`placements_page`](Catalog::placements_page) within a range of
    /// tokens: the placements of the subjects whose token is in `range`,
    /// ordered by token then category, in pages of at most `limit` after
    /// the (token, category) key. An empty page means the end of the range.
    /// Scans of ranges that meet end to end see every placement once.
    async fn placements_range_page(
        &self,
        range: TokenRange<'_>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>>;

    /// The placements whose data key `custodian` wraps, ordered by token
    /// then category, in pages of at most `limit` after the (token,
    /// category) key. An empty page means the end.
    async fn custodian_placements_page(
        &self,
        custodian: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementRow>>;

    /// Replaces wrapped keys, each one only if its placement is still at the
    /// rewrap's epoch, under its custodian, with its old key (a
    /// compare-and-set: a placement moved, erased or rewrapped by another
    /// process in the meantime is left as it is, `false`). Nothing else of
    /// the placement changes, its epoch neither: writes fenced by it go on.
    /// One transaction; one answer per rewrap, in order. No ledger entry:
    /// the caller records the rotation the rewraps belong to.
    async fn rewrap_placements(&self, rewraps: &[Rewrap]) -> Result<Vec<bool>>;

    /// The sealed ids of the given subject tokens (those that have one), for
    /// callers that hold the secrets to name subjects in plans and reports.
    async fn subject_seals(&self, tokens: &[String]) -> Result<Vec<(String, Vec<u8>)>>;

    /// Aggregate: subjects, objects and bytes per (home, category, region),
    /// ordered by those three. Each region of a placement holds a copy, so a
    /// placement's objects and bytes count once in each of its regions.
    async fn residency(&self) -> Result<Vec<ResidencyRow>>;

    // ---- objects ----

    /// In one transaction: check that the placement is at `fence.epoch` and
    /// active; upsert the index row (version = old version + 1, or 1); keep
    /// the placement's object and byte counts in step; queue the replaced
    /// blob for garbage collection (with the placement's regions, due at
    /// `replaced_due`: the caller's grace period, so that reads of the old
    /// version in flight finish). If the row's blob is the one already
    /// indexed, nothing is queued and `replaced` is `None`.
    ///
    /// The write's intent (any garbage row for `row.blob_id`, queued before
    /// its blob was written) is removed in the same transaction: from then
    /// on the index row keeps the blob.
    ///
    /// Errors with `Error::Invalid` if `row` is not for the fence's
    /// (token, category), and with `Error::Conflict` if the name is indexed
    /// in another category or the blob id belongs to another name (a blob
    /// belongs to one row only, or collecting it would lose the other).
    ///
    /// Provided: `commit_object_if` with no condition.
    async fn commit_object(
        &self,
        fence: &Fence,
        row: &ObjectRow,
        replaced_due: Millis,
    ) -> Result<CommitOutcome> {
        self.commit_object_if(fence, row, replaced_due, &Expect::Any)
            .await
    }

    /// `commit_object`, refused with `Error::PreconditionFailed` (nothing
    /// written) unless the name's current row is what `expect` says, read
    /// in the commit's transaction with the row locked: of writers racing
    /// with `Expect::Absent` on one name, exactly one commits. The fence is
    /// checked first (a fenced commit is `Fenced`, whatever the row).
    async fn commit_object_if(
        &self,
        fence: &Fence,
        row: &ObjectRow,
        replaced_due: Millis,
        expect: &Expect,
    ) -> Result<CommitOutcome>;

    /// `commit_object_if` for many objects, one result per item, in order;
    /// each item is decided as if committed alone, after the items before
    /// it (a later item of the same name sees the earlier one's row). Every
    /// committed item is durable when this returns. A backend may write
    /// them in one transaction: the group commit of concurrent writes, one
    /// log sync for all. A refused item (fenced, a failed precondition, a
    /// conflict) changes nothing and does not stop the others.
    ///
    /// Provided: `commit_object_if` for each item in turn.
    async fn commit_objects(&self, items: &[ObjectCommit]) -> Vec<Result<CommitOutcome>> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(
                self.commit_object_if(&item.fence, &item.row, item.replaced_due, &item.expect)
                    .await,
            );
        }
        out
    }

    /// Removes an index row under a fence and queues its blob for deletion.
    /// Returns `Ok(None)` if the name was not there (in the fence's
    /// category); on success, `Committed` carries the deleted row's version
    /// and its blob, now queued (with the placement's regions, due at
    /// `due`: the caller's grace period, as for `commit_object`).
    ///
    /// Provided: `delete_object_if` with no condition.
    async fn delete_object(
        &self,
        fence: &Fence,
        lookup: &str,
        due: Millis,
    ) -> Result<Option<CommitOutcome>> {
        self.delete_object_if(fence, lookup, due, &Expect::Any)
            .await
    }

    /// `delete_object`, refused with `Error::PreconditionFailed` (nothing
    /// deleted) unless the name's current row (in the fence's category) is
    /// what `expect` says, checked in the delete's transaction.
    async fn delete_object_if(
        &self,
        fence: &Fence,
        lookup: &str,
        due: Millis,
        expect: &Expect,
    ) -> Result<Option<CommitOutcome>>;

    /// The index row of one name of a subject, if any.
    async fn get_object(&self, token: &str, lookup: &str) -> Result<Option<ObjectRow>>;

    /// Every index row of a subject, in one category or all, ordered by
    /// category then lookup.
    async fn objects_of(&self, token: &str, category: Option<&str>) -> Result<Vec<ObjectRow>>;

    /// The index rows of several (subject, category) pairs: one list per
    /// pair, in the order asked, each ordered by lookup. A backend may read
    /// them with a few statements (SQLite and PostgreSQL do); by default,
    /// one `objects_of` each.
    async fn objects_of_pairs(&self, keys: &[(String, String)]) -> Result<Vec<Vec<ObjectRow>>> {
        let mut out = Vec::with_capacity(keys.len());
        for (token, category) in keys {
            out.push(self.objects_of(token, Some(category)).await?);
        }
        Ok(out)
    }

    /// Pages through the whole index ordered by (token, blob_id), at most
    /// `limit` rows after the (token, blob_id) key.
    async fn objects_page(&self, after: Option<(&str, &str)>, limit: u32)
    -> Result<Vec<ObjectRow>>;

    /// Pages through the whole index as `verify` reads it: ordered by
    /// (token, blob_id) in byte order, at most `limit` rows after the
    /// (token, blob_id) key, each with its placement's home and regions.
    /// An empty page means the end. By default, an `objects_page` and the
    /// placements of its pairs; SQL backends read it with one statement.
    async fn index_page(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<IndexEntry>> {
        let page = self.objects_page(after, limit).await?;
        let mut keys: Vec<(String, String)> = page
            .iter()
            .map(|o| (o.token.clone(), o.category.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let mut tokens: Vec<String> = keys.iter().map(|(t, _)| t.clone()).collect();
        tokens.dedup();
        let homes: std::collections::HashMap<String, String> = self
            .get_subjects(&tokens)
            .await?
            .into_iter()
            .flatten()
            .map(|s| (s.token, s.home))
            .collect();
        let placements: std::collections::HashMap<(String, String), (String, Vec<String>)> = keys
            .iter()
            .cloned()
            .zip(self.get_placements(&keys).await?)
            .filter_map(|(k, p)| {
                let home = homes.get(&k.0)?.clone();
                p.map(|p| (k, (home, p.regions)))
            })
            .collect();
        Ok(page
            .into_iter()
            .map(|o| {
                let placement = placements
                    .get(&(o.token.clone(), o.category.clone()))
                    .cloned();
                IndexEntry {
                    token: o.token,
                    category: o.category,
                    blob_id: o.blob_id,
                    stored_size: o.stored_size,
                    checksum: o.checksum,
                    placement,
                }
            })
            .collect())
    }

    // ---- garbage ----

    /// Queued garbage rows, at most `limit`, due or not (in the order of
    /// `due_garbage`): every blob that no index row points at yet may
    /// legitimately exist.
    async fn garbage(&self, limit: u32) -> Result<Vec<GarbageRow>> {
        self.due_garbage(limit, Millis::MAX).await
    }

    /// Garbage rows to take now (`next_try <= now`), at most `limit`, by
    /// `next_try` then id. A write's intent is queued in the future: its
    /// blob is not collected while its writer may still commit it; a
    /// replaced blob waits for its grace period; a row whose deletion
    /// failed waits for its next try (`retry_garbage`), so the rows behind
    /// it come first.
    async fn due_garbage(&self, limit: u32, now: Millis) -> Result<Vec<GarbageRow>>;

    /// Queues a blob for deletion (for example, an upload whose commit was
    /// fenced). `row.id` is ignored: the catalog assigns one.
    async fn queue_garbage(&self, row: &GarbageRow) -> Result<i64>;

    /// `queue_garbage` for many blobs at once (a backend may write them in
    /// one transaction): the write intents of a re-keyed unit's new blobs.
    async fn queue_garbage_rows(&self, rows: &[GarbageRow]) -> Result<()> {
        for row in rows {
            self.queue_garbage(row).await?;
        }
        Ok(())
    }

    /// Puts off garbage rows a collection pass could not finish, in one
    /// transaction: each keeps only the regions its blob is still in, is
    /// taken next at its `next_try`, and counts one more attempt if its
    /// deletion `failed`. A row gone meanwhile (finished by another pass,
    /// or removed by the commit of its intent's write) is skipped.
    async fn retry_garbage(&self, retries: &[GarbageRetry]) -> Result<()>;

    /// Drops a garbage row once its blob is gone from every region, and
    /// appends the `purge` ledger entry if given. Errors with
    /// `Error::NotFound` (appending nothing) if there is no such row.
    async fn finish_garbage(&self, id: i64, ledger: Option<LedgerAppend>) -> Result<()>;

    // ---- ledger ----

    /// Appends a standalone entry (for example a demand). Returns its seq.
    async fn append_ledger(&self, entry: LedgerAppend) -> Result<i64>;

    /// Entries with seq > `after`, in order, at most `limit`.
    async fn ledger_page(&self, after: i64, limit: u32) -> Result<Vec<LedgerEntry>>;

    /// Every entry about one subject token, in order.
    async fn ledger_of(&self, token: &str) -> Result<Vec<LedgerEntry>>;

    /// The ledger's last entry's seq and hash: (0, [`crate::ledger::GENESIS`])
    /// for an empty ledger.
    async fn ledger_head(&self) -> Result<(i64, String)>;

    /// Stores a signed checkpoint of the ledger's head. A checkpoint of the
    /// same seq by the same key is kept as it was: returns whether `row` was
    /// stored.
    async fn add_checkpoint(&self, row: &CheckpointRow) -> Result<bool>;

    /// Every stored checkpoint, by seq then key.
    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>>;

    // ---- policy versions ----

    /// Makes `row` the active policy: the next version, with a `policy`
    /// ledger entry, in one transaction. If its digest is the active
    /// version's, nothing changes and nothing is appended (`created` false).
    /// `row.version` 1 asks for the first version only: if any version
    /// exists, nothing changes and the active one is returned (`created`
    /// false), so of processes first opening a fresh catalog with different
    /// files, the first one's policy is version 1 and no other is applied
    /// by accident. Any other `row.version` is ignored. An apply waits for commits fenced by the
    /// active version to end, and every commit after it is fenced by the new
    /// one.
    async fn apply_policy(
        &self,
        row: &PolicyVersionRow,
        ledger: LedgerAppend,
    ) -> Result<PolicyApplied>;

    /// The active policy version, 0 if none was ever applied: a cheap probe
    /// that every process runs to follow the policy.
    async fn policy_version(&self) -> Result<i64>;

    /// One policy version with its text (`None`: the active one).
    async fn policy(&self, version: Option<i64>) -> Result<Option<PolicyVersionRow>>;

    /// Every policy version, oldest first.
    async fn policy_history(&self) -> Result<Vec<PolicyVersionRow>>;

    // ---- settings ----

    /// Reads a small persistent setting.
    async fn setting(&self, key: &str) -> Result<Option<String>>;

    /// Writes a small persistent setting, replacing any previous value.
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;

    /// Sets a setting only if it has none, atomically, and returns the value
    /// it holds afterwards: the first caller's, whoever wins a race (two
    /// servers first opening a fresh catalog agree on one value).
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;

    // ---- raw rows, for catalog migration only (see `copy`) ----

    /// For catalog migration: how many rows `table` holds.
    async fn raw_count(&self, table: RawTable) -> Result<i64>;

    /// For catalog migration: at most `limit` rows of `table`, verbatim, in
    /// primary-key order, after the key `after` (the first
    /// [`RawTable::key_len`] values of the previous page's last row).
    async fn raw_page(
        &self,
        table: RawTable,
        after: Option<&[RawValue]>,
        limit: u32,
    ) -> Result<Vec<RawRow>>;

    /// For catalog migration: inserts rows of `table` verbatim in one
    /// transaction: no checks beyond the schema's, no ledger entry.
    async fn raw_insert(&self, table: RawTable, rows: &[RawRow]) -> Result<()>;

    /// For catalog migration: ends an import, so that the catalog carries on
    /// from the copied rows (the next ledger append follows the last copied
    /// entry; new ids follow the copied ones).
    async fn raw_finish(&self) -> Result<()>;
}

impl PlacementState {
    /// Whether writes may commit (no move is under way).
    pub fn is_active(&self) -> bool {
        matches!(self, PlacementState::Active)
    }
}

/// The placement a move's commit leaves, from the one it finds (`current`):
/// the rule both backends apply inside their transaction. Errors with
/// `Error::NotFound` if there is none, and with `Error::Conflict` if it is
/// not at the fence's epoch or not moving.
pub(crate) fn moved_placement(
    current: Option<PlacementRow>,
    fence: &Fence,
    regions: &[String],
    custodian: &str,
    wrapped_key: &[u8],
    at: Millis,
) -> Result<PlacementRow> {
    let Some(current) = current else {
        return Err(crate::Error::NotFound {
            what: format!("placement {}/{}", fence.token, fence.category),
        });
    };
    if current.epoch != fence.epoch {
        return Err(crate::Error::Conflict {
            reason: format!(
                "placement is at epoch {}, the move was planned at {}",
                current.epoch, fence.epoch
            ),
        });
    }
    if current.state.is_active() {
        return Err(crate::Error::Conflict {
            reason: "placement is not moving (the move was aborted or never begun)".into(),
        });
    }
    Ok(PlacementRow {
        regions: regions.to_vec(),
        epoch: current.epoch + 1,
        state: PlacementState::Active,
        custodian: custodian.to_string(),
        wrapped_key: wrapped_key.to_vec(),
        since: at,
        ..current
    })
}
