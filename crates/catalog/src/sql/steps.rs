//! Statements that run inside a caller's transaction, shared by every
//! catalog call that needs them, and the decoding of each table's rows.

use std::collections::BTreeSet;

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};

use super::codec::{
    LEDGER_COLS, PLACEMENT_COLS, corrupt, decode_regions, decode_state, encode_regions,
    encode_state, split_list, unit_state,
};
use super::schema::SCHEMA_VERSION;
use super::{Dialect, RowsAffected, Sql};
use crate::catalog::{CommitOutcome, RekeyedObject};
use crate::error::{Error, Result};
use crate::jobs::{JobRow, JobState, UnitRelease, UnitRow};
use crate::ledger::{self, GENESIS};
use crate::model::{
    CheckpointRow, Fence, GarbageRow, IndexEntry, LedgerAppend, LedgerEntry, Millis, ObjectRow,
    PlacementRow, PlacementState, PlacementSummary, PolicyVersionRow, SubjectRow,
};

/// What an object row held before a write replaced or removed it.
pub(crate) struct OldObject {
    pub(crate) category: String,
    pub(crate) version: i64,
    pub(crate) stored_size: i64,
    pub(crate) blob_id: String,
}

/// The distinct values of a batched read's keys, sorted: each is bound
/// once, however often it is asked.
fn distinct<T: Ord>(keys: &[T]) -> Vec<&T> {
    keys.iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Refuses a region listed twice in one placement.
pub(crate) fn check_regions(regions: &[String]) -> Result<()> {
    for (i, r) in regions.iter().enumerate() {
        if regions[..i].contains(r) {
            return Err(Error::Invalid {
                reason: format!("region {r:?} is listed twice in one placement"),
            });
        }
    }
    Ok(())
}

pub(crate) fn not_found(what: impl Into<String>) -> Error {
    Error::NotFound { what: what.into() }
}

impl<D> Sql<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    for<'a> i64: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> Option<i64>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> bool: Decode<'a, D> + Type<D>,
    for<'a> &'a str: Encode<'a, D> + Type<D> + ColumnIndex<D::Row>,
    for<'a> Option<&'a str>: Encode<'a, D> + Type<D>,
    for<'a> String: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> Option<String>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> &'a [u8]: Encode<'a, D> + Type<D>,
    for<'a> Option<&'a [u8]>: Encode<'a, D> + Type<D>,
    for<'a> Vec<u8>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    for<'a> Option<Vec<u8>>: Encode<'a, D> + Decode<'a, D> + Type<D>,
    usize: ColumnIndex<D::Row>,
{
    pub(crate) fn subject_from(r: &D::Row) -> Result<SubjectRow> {
        Ok(SubjectRow {
            token: r.try_get(0)?,
            home: r.try_get(1)?,
            created_at: r.try_get(2)?,
            id_enc: r.try_get(3)?,
        })
    }

    pub(crate) fn placement_from(r: &D::Row) -> Result<PlacementRow> {
        let regions: String = r.try_get(2)?;
        let state: String = r.try_get(4)?;
        Ok(PlacementRow {
            token: r.try_get(0)?,
            category: r.try_get(1)?,
            regions: split_list(&regions),
            epoch: r.try_get(3)?,
            state: decode_state(&state)?,
            custodian: r.try_get(5)?,
            wrapped_key: r.try_get(6)?,
            objects: r.try_get(7)?,
            bytes: r.try_get(8)?,
            since: r.try_get(9)?,
        })
    }

    pub(crate) fn summary_from(r: &D::Row) -> Result<PlacementSummary> {
        let regions: String = r.try_get(7)?;
        Ok(PlacementSummary {
            token: r.try_get(0)?,
            home: r.try_get(1)?,
            category: r.try_get(2)?,
            custodian: r.try_get(3)?,
            epoch: r.try_get(4)?,
            objects: r.try_get(5)?,
            bytes: r.try_get(6)?,
            regions: split_list(&regions),
        })
    }

    pub(crate) fn object_from(r: &D::Row) -> Result<ObjectRow> {
        Ok(ObjectRow {
            token: r.try_get(0)?,
            lookup: r.try_get(1)?,
            category: r.try_get(2)?,
            name_enc: r.try_get(3)?,
            meta_enc: r.try_get(4)?,
            version: r.try_get(5)?,
            size: r.try_get(6)?,
            stored_size: r.try_get(7)?,
            checksum: r.try_get(8)?,
            blob_id: r.try_get(9)?,
            modified_at: r.try_get(10)?,
        })
    }

    pub(crate) fn index_entry_from(r: &D::Row) -> Result<IndexEntry> {
        let home: Option<String> = r.try_get(5)?;
        let regions: Option<String> = r.try_get(6)?;
        Ok(IndexEntry {
            token: r.try_get(0)?,
            category: r.try_get(1)?,
            blob_id: r.try_get(2)?,
            stored_size: r.try_get(3)?,
            checksum: r.try_get(4)?,
            placement: home.zip(regions).map(|(h, r)| (h, split_list(&r))),
        })
    }

    pub(crate) fn garbage_from(r: &D::Row) -> Result<GarbageRow> {
        let regions: String = r.try_get(4)?;
        Ok(GarbageRow {
            id: r.try_get(0)?,
            token: r.try_get(1)?,
            category: r.try_get(2)?,
            blob_id: r.try_get(3)?,
            regions: decode_regions(&regions)?,
            queued_at: r.try_get(5)?,
            attempts: r.try_get(6)?,
            next_try: r.try_get(7)?,
        })
    }

    pub(crate) fn entry_from(r: &D::Row) -> Result<LedgerEntry> {
        Ok(LedgerEntry {
            seq: r.try_get(0)?,
            at: r.try_get(1)?,
            kind: r.try_get(2)?,
            subject: r.try_get(3)?,
            body: r.try_get(4)?,
            prev_hash: r.try_get(5)?,
            hash: r.try_get(6)?,
            actor: r.try_get(7)?,
        })
    }

    pub(crate) fn checkpoint_from(r: &D::Row) -> Result<CheckpointRow> {
        Ok(CheckpointRow {
            seq: r.try_get(0)?,
            hash: r.try_get(1)?,
            at: r.try_get(2)?,
            key_id: r.try_get(3)?,
            public_key: r.try_get(4)?,
            signature: r.try_get(5)?,
        })
    }

    pub(crate) fn policy_from(r: &D::Row) -> Result<PolicyVersionRow> {
        Ok(PolicyVersionRow {
            version: r.try_get(0)?,
            applied_at: r.try_get(1)?,
            actor: r.try_get(2)?,
            digest: r.try_get(3)?,
            text: r.try_get(4)?,
        })
    }

    /// The active policy version. Read inside a transaction, it stays the
    /// active one until that transaction ends: an apply first takes the
    /// dialect's policy lock ([`Dialect::lock_policy`]), which waits for
    /// every transaction that read the version.
    pub(crate) async fn policy_head(conn: &mut D::Connection) -> Result<i64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM policy_head WHERE id = 1")
                .fetch_optional(&mut *conn)
                .await?;
        version.ok_or_else(|| Error::Corrupt {
            reason: "the policy_head row is missing".into(),
        })
    }

    pub(crate) fn job_from(r: &D::Row) -> Result<JobRow> {
        let state: String = r.try_get(1)?;
        Ok(JobRow {
            id: r.try_get(0)?,
            state: JobState::parse(&state).ok_or_else(|| corrupt("job state"))?,
            created_at: r.try_get(2)?,
            finished_at: r.try_get(3)?,
            policy: r.try_get(4)?,
            rate: r.try_get(5)?,
            grace_ms: r.try_get(6)?,
            units: r.try_get(7)?,
            bytes: r.try_get(8)?,
        })
    }

    pub(crate) fn unit_from(r: &D::Row) -> Result<UnitRow> {
        let from: String = r.try_get(4)?;
        let to: String = r.try_get(5)?;
        let state: String = r.try_get(10)?;
        Ok(UnitRow {
            job: r.try_get(0)?,
            token: r.try_get(1)?,
            category: r.try_get(2)?,
            priority: r.try_get(3)?,
            from: split_list(&from),
            to: split_list(&to),
            custodian_from: r.try_get(6)?,
            custodian_to: r.try_get(7)?,
            objects: r.try_get(8)?,
            bytes: r.try_get(9)?,
            state: unit_state(&state)?,
            attempts: r.try_get(11)?,
            lease_owner: r.try_get(12)?,
            lease_until: r.try_get(13)?,
            purge_after: r.try_get(14)?,
            moved_bytes: r.try_get(15)?,
            error: r.try_get(16)?,
            updated_at: r.try_get(17)?,
        })
    }

    /// The highest applied schema version, 0 on a fresh database.
    pub(crate) async fn applied_version(conn: &mut D::Connection) -> Result<i64> {
        let exists: i64 = sqlx::query_scalar(D::MIGRATIONS_TABLE)
            .fetch_one(&mut *conn)
            .await?;
        if exists == 0 {
            return Ok(0);
        }
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&mut *conn)
        .await?)
    }

    /// Errors with [`Error::SchemaTooNew`] if a newer build migrated the
    /// database.
    pub(crate) async fn refuse_newer(conn: &mut D::Connection) -> Result<()> {
        let found = Self::applied_version(conn).await?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// Rows of `width` bound parameters that fit in one statement.
    pub(crate) fn rows_per_statement(width: usize) -> usize {
        (D::MAX_PARAMS / width.max(1)).max(1)
    }

    /// Appends `(VALUES ($1, $2), …)` with the (token, category) pairs bound.
    pub(crate) fn push_pairs<'a>(
        q: &mut QueryBuilder<D>,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        q.push("(VALUES ");
        let mut sep = q.separated(", ");
        for (t, c) in pairs {
            sep.push("(")
                .push_bind_unseparated(t)
                .push_unseparated(", ")
                .push_bind_unseparated(c)
                .push_unseparated(")");
        }
        q.push(")");
    }

    /// The rows of a batched read: `head` (a `SELECT` ending in `IN `), then
    /// the distinct keys' list (`push` binds one chunk of them), then
    /// `tail`, in as many statements as the bind limit asks, `width`
    /// parameters per key.
    pub(crate) async fn fetch_in<K: Ord + Sync>(
        pool: &sqlx::Pool<D>,
        head: &str,
        keys: &[K],
        width: usize,
        push: impl Fn(&mut QueryBuilder<D>, &[&K]) + Send + Sync,
        tail: &str,
    ) -> Result<Vec<D::Row>> {
        let mut rows = Vec::new();
        for chunk in distinct(keys).chunks(Self::rows_per_statement(width)) {
            let mut q = QueryBuilder::<D>::new(head);
            push(&mut q, chunk);
            q.push(tail);
            rows.extend(q.build().persistent(D::CACHE_BUILT).fetch_all(pool).await?);
        }
        Ok(rows)
    }

    /// [`Sql::fetch_in`] of (token, category) pairs, as `(VALUES …)`.
    pub(crate) async fn fetch_pairs(
        pool: &sqlx::Pool<D>,
        head: &str,
        keys: &[(String, String)],
        tail: &str,
    ) -> Result<Vec<D::Row>> {
        let push = |q: &mut QueryBuilder<D>, chunk: &[&(String, String)]| {
            Self::push_pairs(q, chunk.iter().map(|(t, c)| (t.as_str(), c.as_str())));
        };
        Self::fetch_in(pool, head, keys, 2, push, tail).await
    }

    /// Appends entries at the end of the ledger, in order. Returns the last
    /// seq (or the current end's, if `entries` is empty).
    ///
    /// Where the dialect keeps a `ledger_head`, its row is locked until the
    /// caller's transaction ends, so appends of concurrent transactions
    /// form one chain in commit order; the lock is taken last in each
    /// transaction, so it is held only for its end.
    pub(crate) async fn ledger_append(
        conn: &mut D::Connection,
        entries: &[LedgerAppend],
    ) -> Result<i64> {
        let head = if D::LEDGER_HEAD {
            let sql = format!(
                "SELECT seq, hash FROM ledger_head WHERE id = 1{}",
                D::FOR_UPDATE
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_optional(&mut *conn)
                .await?;
            Some(row.ok_or_else(|| Error::Corrupt {
                reason: "the ledger_head row is missing".into(),
            })?)
        } else {
            sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
        };
        let (mut seq, mut hash): (i64, String) = match head {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, GENESIS.to_string()),
        };
        if entries.is_empty() {
            return Ok(seq);
        }
        if let Some(e) = entries.iter().find(|e| e.actor.trim().is_empty()) {
            return Err(Error::Invalid {
                reason: format!("a `{}` ledger entry without an actor", e.kind),
            });
        }
        for chunk in entries.chunks(Self::rows_per_statement(8)) {
            let mut rows = Vec::with_capacity(chunk.len());
            for e in chunk {
                seq += 1;
                let body = ledger::canonical_body(&e.body);
                let fields = ledger::HashedFields {
                    seq,
                    at: e.at,
                    kind: &e.kind,
                    subject: e.subject.as_deref(),
                    body: &body,
                    actor: &e.actor,
                };
                let next = ledger::entry_hash(&hash, fields);
                rows.push((
                    seq,
                    e,
                    body,
                    std::mem::replace(&mut hash, next.clone()),
                    next,
                ));
            }
            let mut q = QueryBuilder::<D>::new(format!("INSERT INTO ledger ({LEDGER_COLS}) "));
            q.push_values(&rows, |mut b, (seq, e, body, prev, this)| {
                b.push_bind(*seq)
                    .push_bind(e.at)
                    .push_bind(e.kind.as_str())
                    .push_bind(e.subject.as_deref())
                    .push_bind(body.as_str())
                    .push_bind(prev.as_str())
                    .push_bind(this.as_str())
                    .push_bind(e.actor.as_str());
            });
            q.build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *conn)
                .await?;
        }
        if D::LEDGER_HEAD {
            sqlx::query("UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(seq)
                .bind(hash.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Ok(seq)
    }

    /// The ordered regions of a placement.
    pub(crate) async fn read_regions(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT region FROM placement_regions WHERE token = $1 AND category = $2 \
             ORDER BY ordinal",
        )
        .bind(token)
        .bind(category)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Replaces the ordered regions of a placement (whose row the caller
    /// holds): the `placement_regions` rows and the row's `regions` list.
    pub(crate) async fn write_regions(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
        regions: &[String],
    ) -> Result<()> {
        check_regions(regions)?;
        sqlx::query("DELETE FROM placement_regions WHERE token = $1 AND category = $2")
            .bind(token)
            .bind(category)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE placements SET regions = $1 WHERE token = $2 AND category = $3")
            .bind(regions.join(","))
            .bind(token)
            .bind(category)
            .execute(&mut *conn)
            .await?;
        if regions.is_empty() {
            return Ok(());
        }
        let mut q = QueryBuilder::<D>::new(
            "INSERT INTO placement_regions (token, category, ordinal, region) ",
        );
        q.push_values((0_i64..).zip(regions), |mut b, (ordinal, region)| {
            b.push_bind(token)
                .push_bind(category)
                .push_bind(ordinal)
                .push_bind(region.as_str());
        });
        q.build()
            .persistent(D::CACHE_BUILT)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Writes the ordered regions of several placements whose rows the
    /// caller has already written (their `regions` column included): one
    /// deletion and one insertion for all of them, in as many statements as
    /// the bind limit asks. A placement named twice keeps its last regions.
    pub(crate) async fn replace_regions(
        conn: &mut D::Connection,
        placements: &[(&str, &str, &[String])],
    ) -> Result<()> {
        let mut last: std::collections::BTreeMap<(&str, &str), &[String]> =
            std::collections::BTreeMap::new();
        for &(token, category, regions) in placements {
            check_regions(regions)?;
            last.insert((token, category), regions);
        }
        let keys: Vec<(&str, &str)> = last.keys().copied().collect();
        for chunk in keys.chunks(Self::rows_per_statement(2)) {
            let mut q =
                QueryBuilder::<D>::new("DELETE FROM placement_regions WHERE (token, category) IN ");
            Self::push_pairs(&mut q, chunk.iter().copied());
            q.build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *conn)
                .await?;
        }
        let rows: Vec<(&str, &str, i64, &str)> = last
            .iter()
            .flat_map(|(&(token, category), regions)| {
                (0_i64..)
                    .zip(regions.iter())
                    .map(move |(ordinal, region)| (token, category, ordinal, region.as_str()))
            })
            .collect();
        for chunk in rows.chunks(Self::rows_per_statement(4)) {
            let mut q = QueryBuilder::<D>::new(
                "INSERT INTO placement_regions (token, category, ordinal, region) ",
            );
            q.push_values(chunk, |mut b, &(token, category, ordinal, region)| {
                b.push_bind(token)
                    .push_bind(category)
                    .push_bind(ordinal)
                    .push_bind(region);
            });
            q.build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Reads several placements at once, each row locked until the caller's
    /// transaction ends, by (token, category); absent ones are missing.
    pub(crate) async fn read_placements_locked(
        conn: &mut D::Connection,
        keys: &[(&str, &str)],
    ) -> Result<std::collections::HashMap<(String, String), PlacementRow>> {
        let keys = distinct(keys);
        let mut found = std::collections::HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(Self::rows_per_statement(2)) {
            let mut q = QueryBuilder::<D>::new(format!(
                "SELECT {PLACEMENT_COLS} FROM placements WHERE (token, category) IN "
            ));
            Self::push_pairs(&mut q, chunk.iter().map(|&&(t, c)| (t, c)));
            q.push(D::FOR_UPDATE);
            let rows = q
                .build()
                .persistent(D::CACHE_BUILT)
                .fetch_all(&mut *conn)
                .await?;
            for row in &rows {
                let p = Self::placement_from(row)?;
                found.insert((p.token.clone(), p.category.clone()), p);
            }
        }
        Ok(found)
    }

    /// Writes placements' rows as commits leave them, their `regions`
    /// columns included (their ordered regions go through
    /// [`Sql::replace_regions`]), in one statement per chunk. A placement
    /// named twice is left as its last row says.
    pub(crate) async fn write_placement_rows(
        conn: &mut D::Connection,
        placements: &[&PlacementRow],
    ) -> Result<()> {
        let mut last: std::collections::BTreeMap<(&str, &str), &PlacementRow> =
            std::collections::BTreeMap::new();
        for p in placements {
            last.insert((p.token.as_str(), p.category.as_str()), p);
        }
        let rows = last
            .into_values()
            .map(|p| Ok((p, encode_state(&p.state)?, p.regions.join(","))))
            .collect::<Result<Vec<_>>>()?;
        for chunk in rows.chunks(Self::rows_per_statement(8)) {
            let mut q = QueryBuilder::<D>::new(
                "UPDATE placements SET epoch = v.column1, state = v.column2, custodian = v.column3, \
                    wrapped_key = v.column4, since = v.column5, regions = v.column6 FROM (",
            );
            q.push_values(chunk, |mut b, (p, state, regions)| {
                b.push_bind(p.epoch)
                    .push_bind(state.as_str())
                    .push_bind(p.custodian.as_str())
                    .push_bind(p.wrapped_key.as_slice())
                    .push_bind(p.since)
                    .push_bind(regions.as_str())
                    .push_bind(p.token.as_str())
                    .push_bind(p.category.as_str());
            });
            q.push(") AS v WHERE placements.token = v.column7 AND placements.category = v.column8");
            q.build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Reads a placement, locking its row until the caller's transaction
    /// ends when `lock` is set.
    pub(crate) async fn read_placement(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
        lock: bool,
    ) -> Result<Option<PlacementRow>> {
        let sql = format!(
            "SELECT {PLACEMENT_COLS} FROM placements WHERE token = $1 AND category = $2{}",
            if lock { D::FOR_UPDATE } else { "" }
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token)
            .bind(category)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(Self::placement_from).transpose()
    }

    /// Locks a placement row and returns its epoch and state, if it exists.
    pub(crate) async fn lock_placement(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
    ) -> Result<Option<(i64, PlacementState)>> {
        let sql = format!(
            "SELECT epoch, state FROM placements WHERE token = $1 AND category = $2{}",
            D::FOR_UPDATE
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token)
            .bind(category)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get(1)?;
        Ok(Some((row.try_get(0)?, decode_state(&state)?)))
    }

    /// Sets a placement's state.
    pub(crate) async fn set_state(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
        state: &PlacementState,
    ) -> Result<()> {
        sqlx::query("UPDATE placements SET state = $1 WHERE token = $2 AND category = $3")
            .bind(encode_state(state)?)
            .bind(token)
            .bind(category)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Refuses a re-keyed move (`Error::Conflict`) unless `rekeyed` names
    /// every object of its unit, each at the blob it replaces: an object
    /// left out would stay under a data key the commit drops.
    pub(crate) async fn check_rekeyed(
        conn: &mut D::Connection,
        fence: &Fence,
        rekeyed: &[RekeyedObject],
    ) -> Result<()> {
        let rows =
            sqlx::query("SELECT lookup, blob_id FROM objects WHERE token = $1 AND category = $2")
                .bind(fence.token.as_str())
                .bind(fence.category.as_str())
                .fetch_all(&mut *conn)
                .await?;
        let mut indexed = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let lookup: String = r.try_get(0)?;
            let blob: String = r.try_get(1)?;
            indexed.insert(lookup, blob);
        }
        let matches = indexed.len() == rekeyed.len()
            && rekeyed
                .iter()
                .all(|o| indexed.get(&o.lookup) == Some(&o.replaces));
        if !matches {
            return Err(Error::Conflict {
                reason: format!(
                    "the re-keyed objects of {}/{} are not its objects now ({} indexed, {} re-keyed)",
                    fence.token,
                    fence.category,
                    indexed.len(),
                    rekeyed.len()
                ),
            });
        }
        Ok(())
    }

    /// Points the index rows of a re-keyed unit at their new blobs, and
    /// drops those blobs' write intents.
    pub(crate) async fn write_rekeyed(
        conn: &mut D::Connection,
        fence: &Fence,
        rekeyed: &[RekeyedObject],
    ) -> Result<()> {
        for o in rekeyed {
            sqlx::query(
                "UPDATE objects SET blob_id = $1, checksum = $2, stored_size = $3, \
                                    name_enc = $4, meta_enc = $5 \
                 WHERE token = $6 AND lookup = $7 AND blob_id = $8",
            )
            .bind(o.blob_id.as_str())
            .bind(o.checksum.as_str())
            .bind(o.stored_size)
            .bind(o.name_enc.as_slice())
            .bind(o.meta_enc.as_slice())
            .bind(fence.token.as_str())
            .bind(o.lookup.as_str())
            .bind(o.replaces.as_str())
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM garbage WHERE blob_id = $1")
                .bind(o.blob_id.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Checks a write's fence, holding the placement row until the caller's
    /// transaction ends: `None` if the placement is at the fence's epoch and
    /// active, else the outcome to return without writing.
    pub(crate) async fn check_fence(
        conn: &mut D::Connection,
        fence: &Fence,
    ) -> Result<Option<CommitOutcome>> {
        // The placement row and the policy version in one statement: the
        // write path's commit pays one round trip for both fences.
        let sql = format!(
            "SELECT epoch, state, (SELECT version FROM policy_head WHERE id = 1) \
             FROM placements WHERE token = $1 AND category = $2{}",
            D::FOR_UPDATE
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(fence.token.as_str())
            .bind(fence.category.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(Some(CommitOutcome::Fenced {
                current_epoch: None,
                moving: false,
            }));
        };
        let epoch: i64 = row.try_get(0)?;
        let state: String = row.try_get(1)?;
        let active: Option<i64> = row.try_get(2)?;
        let moving = !decode_state(&state)?.is_active();
        if epoch != fence.epoch || moving {
            return Ok(Some(CommitOutcome::Fenced {
                current_epoch: Some(epoch),
                moving,
            }));
        }
        let active = active.ok_or_else(|| Error::Corrupt {
            reason: "the policy_head row is missing".into(),
        })?;
        if active != fence.policy {
            return Ok(Some(CommitOutcome::PolicyChanged { active }));
        }
        Ok(None)
    }

    /// Queues blobs for deletion, each first taken at its `queued_at` with
    /// no attempt yet; fills in each row's id.
    pub(crate) async fn insert_garbage(
        conn: &mut D::Connection,
        rows: &mut [GarbageRow],
    ) -> Result<()> {
        for chunk in rows.chunks_mut(Self::rows_per_statement(6)) {
            let encoded = chunk
                .iter()
                .map(|g| encode_regions(&g.regions))
                .collect::<Result<Vec<String>>>()?;
            let mut q = QueryBuilder::<D>::new(
                "INSERT INTO garbage (token, category, blob_id, regions, queued_at, next_try) ",
            );
            q.push_values(chunk.iter().zip(&encoded), |mut b, (g, regions)| {
                b.push_bind(g.token.as_str())
                    .push_bind(g.category.as_str())
                    .push_bind(g.blob_id.as_str())
                    .push_bind(regions.as_str())
                    .push_bind(g.queued_at)
                    .push_bind(g.queued_at);
            });
            q.push(" RETURNING id, blob_id");
            // One row per blob in a chunk: a blob belongs to one index row
            // of its token, and a write queues one blob.
            let mut ids = std::collections::HashMap::new();
            for r in q
                .build()
                .persistent(D::CACHE_BUILT)
                .fetch_all(&mut *conn)
                .await?
            {
                let blob: String = r.try_get(1)?;
                let id: i64 = r.try_get(0)?;
                ids.insert(blob, id);
            }
            for g in chunk.iter_mut() {
                g.id = ids.get(&g.blob_id).copied().ok_or_else(|| Error::Corrupt {
                    reason: format!("no garbage id came back for blob {}", g.blob_id),
                })?;
            }
        }
        Ok(())
    }

    /// Queues one blob for deletion from `regions`. Returns the queued row.
    pub(crate) async fn queue_blob(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
        blob_id: &str,
        regions: Vec<String>,
        queued_at: Millis,
    ) -> Result<GarbageRow> {
        let mut rows = [GarbageRow::new(
            token, category, blob_id, &regions, queued_at,
        )];
        Self::insert_garbage(conn, &mut rows).await?;
        let [row] = rows;
        Ok(row)
    }

    /// Adds to a placement's object and byte counters.
    pub(crate) async fn add_counts(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
        objects: i64,
        bytes: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE placements SET objects = objects + $1, bytes = bytes + $2 \
             WHERE token = $3 AND category = $4",
        )
        .bind(objects)
        .bind(bytes)
        .bind(token)
        .bind(category)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Reads an object row, locking it until the caller's transaction ends.
    pub(crate) async fn read_old_object(
        conn: &mut D::Connection,
        token: &str,
        lookup: &str,
    ) -> Result<Option<OldObject>> {
        let sql = format!(
            "SELECT category, version, stored_size, blob_id FROM objects \
             WHERE token = $1 AND lookup = $2{}",
            D::FOR_UPDATE
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token)
            .bind(lookup)
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|r| {
            Ok(OldObject {
                category: r.try_get(0)?,
                version: r.try_get(1)?,
                stored_size: r.try_get(2)?,
                blob_id: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Releases several units at once, as [`Sql::finish_unit_in`] releases
    /// each, in one statement per chunk: whether each was still held by the
    /// release's owner. A unit named twice is released by its first
    /// release; the later one finds it no longer held.
    pub(crate) async fn finish_units_in(
        conn: &mut D::Connection,
        units: &[(&str, &str, &UnitRelease)],
    ) -> Result<Vec<bool>> {
        let mut first = std::collections::HashSet::with_capacity(units.len());
        let mut rows = Vec::with_capacity(units.len());
        for (i, &(token, category, release)) in units.iter().enumerate() {
            if first.insert((release.job, token, category)) {
                rows.push((i, token, category, release, release.outcome.columns()));
            }
        }
        let mut held = vec![false; units.len()];
        for chunk in rows.chunks(Self::rows_per_statement(11)) {
            let mut q = QueryBuilder::<D>::new(
                "UPDATE migration_units SET \
                    state = CASE WHEN v.column1 = 'pending' AND migration_units.state = 'committed' \
                                 THEN 'committed' ELSE v.column1 END, \
                    purge_after = COALESCE(v.column2, migration_units.purge_after), \
                    moved_bytes = COALESCE(v.column3, migration_units.moved_bytes), \
                    error = v.column4, lease_owner = NULL, lease_until = v.column5, \
                    updated_at = v.column6, attempts = migration_units.attempts + v.column11 \
                 FROM (",
            );
            q.push_values(chunk, |mut b, (_, token, category, release, c)| {
                b.push_bind(c.state.as_str())
                    .push_bind(c.purge_after)
                    .push_bind(c.moved_bytes)
                    .push_bind(c.error)
                    .push_bind(c.lease_until)
                    .push_bind(release.now)
                    .push_bind(release.job)
                    .push_bind(*token)
                    .push_bind(*category)
                    .push_bind(release.owner.as_str())
                    .push_bind(c.failed);
            });
            q.push(
                ") AS v WHERE migration_units.job = v.column7 AND migration_units.token = v.column8 \
                   AND migration_units.category = v.column9 \
                   AND migration_units.lease_owner = v.column10 \
                 RETURNING migration_units.token, migration_units.category",
            );
            let released = q
                .build()
                .persistent(D::CACHE_BUILT)
                .fetch_all(&mut *conn)
                .await?;
            let mut done = std::collections::HashSet::with_capacity(released.len());
            for r in &released {
                let token: String = r.try_get(0)?;
                let category: String = r.try_get(1)?;
                done.insert((token, category));
            }
            for (i, token, category, _, _) in chunk {
                held[*i] = done.contains(&(token.to_string(), category.to_string()));
            }
        }
        Ok(held)
    }

    /// Records how a worker leaves a unit and releases its lease, on the
    /// caller's connection (alone, or inside its transaction). False (and
    /// nothing changed) if the worker no longer holds the lease.
    pub(crate) async fn finish_unit_in(
        conn: &mut D::Connection,
        token: &str,
        category: &str,
        release: &UnitRelease,
    ) -> Result<bool> {
        let c = release.outcome.columns();
        // A retried unit keeps its state when it was already committed: only
        // its purge failed.
        let changed = sqlx::query(
            "UPDATE migration_units SET \
                state = CASE WHEN $1 = 'pending' AND state = 'committed' \
                             THEN 'committed' ELSE $1 END, \
                purge_after = COALESCE($2, purge_after), \
                moved_bytes = COALESCE($3, moved_bytes), \
                error = $4, lease_owner = NULL, lease_until = $5, updated_at = $6, \
                attempts = attempts + $11 \
             WHERE job = $7 AND token = $8 AND category = $9 AND lease_owner = $10",
        )
        .bind(c.state.as_str())
        .bind(c.purge_after)
        .bind(c.moved_bytes)
        .bind(c.error)
        .bind(c.lease_until)
        .bind(release.now)
        .bind(release.job)
        .bind(token)
        .bind(category)
        .bind(release.owner.as_str())
        .bind(c.failed)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }
}
