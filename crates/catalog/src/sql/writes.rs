//! One write transaction per catalog call. The [`Catalog`](crate::Catalog)
//! implementation runs each under the dialect's retry.

use std::collections::{BTreeMap, HashSet};

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};

use super::codec::{CHECKPOINT_COLS, OBJECT_COLS, POLICY_COLS, decode_state, encode_state};
use super::steps::{check_regions, not_found};
use super::{Dialect, Durability, RowsAffected, Sql, SqlCatalog};
use crate::catalog::moved_placement;
use crate::catalog::{CommitOutcome, MoveMark, ObjectCommit, RekeyedObject, Rewrap, UnitMove};
use crate::error::{Error, Result};
use crate::jobs::UnitRelease;
use crate::model::{
    CheckpointRow, Expect, Fence, GarbageRetry, GarbageRow, LedgerAppend, Millis, ObjectRow,
    PlacementRow, PlacementState, PolicyApplied, PolicyVersionRow, SubjectRow,
};
use crate::raw::{RawRow, RawTable, RawValue};

/// One move to commit: what `commit_move` takes, with the release of the
/// migration unit that made it, if any.
pub(crate) struct MoveCommit<'a> {
    pub(crate) fence: &'a Fence,
    pub(crate) regions: &'a [String],
    pub(crate) custodian: &'a str,
    pub(crate) wrapped_key: &'a [u8],
    pub(crate) ledger: &'a LedgerAppend,
    pub(crate) release: Option<&'a UnitRelease>,
    pub(crate) rekeyed: &'a [RekeyedObject],
    pub(crate) garbage: &'a [GarbageRow],
}

impl<'a> From<&'a UnitMove> for MoveCommit<'a> {
    fn from(m: &'a UnitMove) -> Self {
        MoveCommit {
            fence: &m.fence,
            regions: &m.regions,
            custodian: &m.custodian,
            wrapped_key: &m.wrapped_key,
            ledger: &m.ledger,
            release: Some(&m.release),
            rekeyed: &m.rekeyed,
            garbage: &m.garbage,
        }
    }
}

impl<D> SqlCatalog<D>
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
    pub(crate) async fn write_tx(&self) -> Result<D::WriteTx> {
        D::begin_write(&self.pool, &self.state).await
    }

    pub(crate) async fn commit(&self, tx: D::WriteTx, durability: Durability) -> Result<()> {
        D::commit(&self.state, tx, durability).await
    }

    pub(crate) async fn add_subjects_tx(
        &self,
        subjects: &[SubjectRow],
        entries: impl Fn(&SubjectRow) -> LedgerAppend,
    ) -> Result<u64> {
        // The first of several rows with one token wins, as in one INSERT
        // per row; later ones are dropped before the database sees them.
        let mut seen = HashSet::new();
        let batch: Vec<&SubjectRow> = subjects
            .iter()
            .filter(|s| seen.insert(s.token.as_str()))
            .collect();
        let mut tx = self.write_tx().await?;
        let mut added: HashSet<String> = HashSet::new();
        for chunk in batch.chunks(Sql::<D>::rows_per_statement(4)) {
            let mut q =
                QueryBuilder::<D>::new("INSERT INTO subjects (token, home, created_at, id_enc) ");
            q.push_values(chunk, |mut b, s| {
                b.push_bind(s.token.as_str())
                    .push_bind(s.home.as_str())
                    .push_bind(s.created_at)
                    .push_bind(s.id_enc.as_deref());
            });
            q.push(" ON CONFLICT (token) DO NOTHING RETURNING token");
            for r in q
                .build()
                .persistent(D::CACHE_BUILT)
                .fetch_all(&mut *tx)
                .await?
            {
                added.insert(r.try_get(0)?);
            }
        }
        let entries: Vec<LedgerAppend> = batch
            .iter()
            .filter(|s| added.contains(&s.token))
            .map(|s| entries(s))
            .collect();
        if !entries.is_empty() {
            Sql::<D>::ledger_append(&mut tx, &entries).await?;
        }
        self.commit(tx, Durability::Durable).await?;
        Ok(entries.len() as u64)
    }

    pub(crate) async fn set_home_tx(
        &self,
        token: &str,
        home: &str,
        ledger: &LedgerAppend,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query("UPDATE subjects SET home = $1 WHERE token = $2")
            .bind(home)
            .bind(token)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(not_found(format!("subject {token}")));
        }
        sqlx::query("UPDATE placements SET home = $1 WHERE token = $2")
            .bind(home)
            .bind(token)
            .execute(&mut *tx)
            .await?;
        Sql::<D>::ledger_append(&mut tx, std::slice::from_ref(ledger)).await?;
        self.commit(tx, Durability::Durable).await
    }

    pub(crate) async fn erase_subject_tx(
        &self,
        token: &str,
        ledger: &LedgerAppend,
    ) -> Result<Vec<GarbageRow>> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT token FROM subjects WHERE token = $1{}",
            D::FOR_UPDATE
        );
        let known = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(not_found(format!("subject {token}")));
        }
        // Holding every placement row: no commit can add an object now.
        let sql = format!(
            "SELECT category, state, regions FROM placements WHERE token = $1 \
             ORDER BY category{}",
            D::FOR_UPDATE
        );
        let placements = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token)
            .fetch_all(&mut *tx)
            .await?;
        let mut regions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &placements {
            let category: String = r.try_get(0)?;
            let state: String = r.try_get(1)?;
            let listed: String = r.try_get(2)?;
            let mut list = super::codec::split_list(&listed);
            // A move under way may already have copied blobs to its targets.
            if let PlacementState::Moving { to, .. } = decode_state(&state)? {
                for region in to {
                    if !list.contains(&region) {
                        list.push(region);
                    }
                }
            }
            regions.insert(category, list);
        }

        let blobs = sqlx::query(
            "SELECT category, blob_id FROM objects WHERE token = $1 ORDER BY category, lookup",
        )
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        let mut queued = Vec::with_capacity(blobs.len());
        for r in &blobs {
            let category: String = r.try_get(0)?;
            let blob_id: String = r.try_get(1)?;
            let held = regions.get(&category).map_or(&[][..], Vec::as_slice);
            queued.push(GarbageRow::new(token, &category, &blob_id, held, ledger.at));
        }
        Sql::<D>::insert_garbage(&mut tx, &mut queued).await?;
        for sql in [
            "DELETE FROM objects WHERE token = $1",
            "DELETE FROM placement_regions WHERE token = $1",
            "DELETE FROM placements WHERE token = $1",
            "DELETE FROM subjects WHERE token = $1",
        ] {
            sqlx::query(sql).bind(token).execute(&mut *tx).await?;
        }
        Sql::<D>::ledger_append(&mut tx, std::slice::from_ref(ledger)).await?;
        self.commit(tx, Durability::Durable).await?;
        tracing::debug!(objects = queued.len(), "erased subject");
        Ok(queued)
    }

    pub(crate) async fn ensure_placement_tx(
        &self,
        row: &PlacementRow,
        policy: i64,
        ledger: &LedgerAppend,
    ) -> Result<PlacementRow> {
        let mut tx = self.write_tx().await?;
        if let Some(existing) =
            Sql::<D>::read_placement(&mut tx, &row.token, &row.category, false).await?
        {
            self.commit(tx, Durability::Durable).await?;
            return Ok(existing);
        }
        // Shared lock: the subject cannot be erased or re-homed under us.
        // The policy version is read in the same statement (the fence of a
        // new placement, as `check_fence` is of a commit).
        let sql = format!(
            "SELECT home, (SELECT version FROM policy_head WHERE id = 1) \
             FROM subjects WHERE token = $1{}",
            D::FOR_SHARE
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(row.token.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(found) = found else {
            return Err(not_found(format!("subject {}", row.token)));
        };
        let home: String = found.try_get(0)?;
        let active: Option<i64> = found.try_get(1)?;
        let active = active.unwrap_or(0);
        if active != policy {
            return Err(Error::PolicyChanged { active });
        }
        check_regions(&row.regions)?;
        let created = PlacementRow {
            epoch: 1,
            state: PlacementState::Active,
            objects: 0,
            bytes: 0,
            ..row.clone()
        };
        let inserted = sqlx::query(
            "INSERT INTO placements (home, regions, token, category, epoch, state, custodian, \
                                     wrapped_key, objects, bytes, since) \
             VALUES ($1, '', $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (token, category) DO NOTHING",
        )
        .bind(home)
        .bind(created.token.as_str())
        .bind(created.category.as_str())
        .bind(created.epoch)
        .bind(encode_state(&created.state)?)
        .bind(created.custodian.as_str())
        .bind(created.wrapped_key.as_slice())
        .bind(created.objects)
        .bind(created.bytes)
        .bind(created.since)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Created by a concurrent call since our first read: return it.
            let existing =
                Sql::<D>::read_placement(&mut tx, &row.token, &row.category, false).await?;
            self.commit(tx, Durability::Durable).await?;
            return existing.ok_or_else(|| Error::Conflict {
                reason: format!(
                    "placement {}/{} was created and removed concurrently",
                    row.token, row.category
                ),
            });
        }
        Sql::<D>::write_regions(&mut tx, &created.token, &created.category, &created.regions)
            .await?;
        Sql::<D>::ledger_append(&mut tx, std::slice::from_ref(ledger)).await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(created)
    }

    /// Marks placements moving; commits only if one was marked. Every
    /// placement is read (and locked) in one statement; a placement named
    /// twice is judged the second time as the first mark left it.
    pub(crate) async fn begin_moves_tx(
        &self,
        marks: &[MoveMark],
        lease_until: Millis,
        now: Millis,
        durability: Durability,
    ) -> Result<Vec<bool>> {
        let mut tx = self.write_tx().await?;
        let keys: Vec<(&str, &str)> = marks
            .iter()
            .map(|m| (m.token.as_str(), m.category.as_str()))
            .collect();
        let mut current = Sql::<D>::read_placements_locked(&mut tx, &keys).await?;
        let mut out = Vec::with_capacity(marks.len());
        for m in marks {
            let Some(p) = current.get_mut(&(m.token.clone(), m.category.clone())) else {
                out.push(false);
                continue;
            };
            let free = match p.state {
                PlacementState::Active => true,
                PlacementState::Moving { lease_until, .. } => lease_until < now,
            };
            if p.epoch != m.epoch || !free {
                out.push(false);
                continue;
            }
            let moving = PlacementState::Moving {
                to: m.to.clone(),
                lease_until,
            };
            p.state = moving;
            out.push(true);
        }
        // The marked rows, written back whole: only their state changed.
        let marked: Vec<&PlacementRow> = marks
            .iter()
            .zip(&out)
            .filter(|(_, ok)| **ok)
            .filter_map(|(m, _)| current.get(&(m.token.clone(), m.category.clone())))
            .collect();
        Sql::<D>::write_placement_rows(&mut tx, &marked).await?;
        if out.contains(&true) {
            self.commit(tx, durability).await?;
        }
        Ok(out)
    }

    /// Commits moves, each with the release of its unit if it has one; a
    /// fenced move is that move's result and the others go on.
    pub(crate) async fn commit_moves_tx(
        &self,
        moves: &[MoveCommit<'_>],
        durability: Durability,
    ) -> Result<Vec<Result<(PlacementRow, bool)>>> {
        let mut tx = self.write_tx().await?;
        // Every placement read (and locked) at once, and the policy version
        // once: a batch of moves pays a few statements, not a few per move.
        let keys: Vec<(&str, &str)> = moves
            .iter()
            .map(|m| (m.fence.token.as_str(), m.fence.category.as_str()))
            .collect();
        let mut current = Sql::<D>::read_placements_locked(&mut tx, &keys).await?;
        let active = Sql::<D>::policy_head(&mut tx).await?;
        let mut out = Vec::with_capacity(moves.len());
        let mut accepted: Vec<(&MoveCommit<'_>, PlacementRow)> = Vec::with_capacity(moves.len());
        for m in moves {
            // A refused move is refused before it writes anything: the
            // transaction goes on with the others.
            if !m.rekeyed.is_empty()
                && let Err(e) = Sql::<D>::check_rekeyed(&mut tx, m.fence, m.rekeyed).await
            {
                if e.is_fenced() {
                    out.push(Err(e));
                    continue;
                }
                return Err(e);
            }
            let key = (m.fence.token.clone(), m.fence.category.clone());
            let moved = moved_placement(
                current.get(&key).cloned(),
                m.fence,
                m.regions,
                m.custodian,
                m.wrapped_key,
                m.ledger.at,
            )
            .and_then(|moved| {
                if active == m.fence.policy {
                    Ok(moved)
                } else {
                    Err(Error::PolicyChanged { active })
                }
            });
            let moved = match moved {
                Ok(moved) => moved,
                Err(e) if e.is_fenced() => {
                    out.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A later move of the same placement in this batch sees this one.
            current.insert(key, moved.clone());
            out.push(Ok((moved.clone(), false)));
            accepted.push((m, moved));
        }
        let rows: Vec<&PlacementRow> = accepted.iter().map(|(_, p)| p).collect();
        Sql::<D>::write_placement_rows(&mut tx, &rows).await?;
        for (m, _) in &accepted {
            Sql::<D>::write_rekeyed(&mut tx, m.fence, m.rekeyed).await?;
            if !m.garbage.is_empty() {
                let mut garbage = m.garbage.to_vec();
                Sql::<D>::insert_garbage(&mut tx, &mut garbage).await?;
            }
        }
        let regions: Vec<(&str, &str, &[String])> = accepted
            .iter()
            .map(|(_, p)| (p.token.as_str(), p.category.as_str(), p.regions.as_slice()))
            .collect();
        Sql::<D>::replace_regions(&mut tx, &regions).await?;
        // Each unit's release, then the receipts: the ledger's head is
        // locked last, so it is held only for the transaction's end.
        let releases: Vec<(&str, &str, &UnitRelease)> = accepted
            .iter()
            .filter_map(|(m, p)| {
                m.release
                    .map(|r| (p.token.as_str(), p.category.as_str(), r))
            })
            .collect();
        let mut released = Sql::<D>::finish_units_in(&mut tx, &releases)
            .await?
            .into_iter();
        let held: Vec<bool> = accepted
            .iter()
            .map(|(m, _)| m.release.is_some() && released.next().unwrap_or(false))
            .collect();
        let receipts: Vec<LedgerAppend> = accepted.iter().map(|(m, _)| m.ledger.clone()).collect();
        Sql::<D>::ledger_append(&mut tx, &receipts).await?;
        self.commit(tx, durability).await?;
        let mut held = held.into_iter();
        for (_, h) in out.iter_mut().flatten() {
            *h = held.next().unwrap_or(false);
        }
        Ok(out)
    }

    pub(crate) async fn rewrap_placements_tx(&self, rewraps: &[Rewrap]) -> Result<Vec<bool>> {
        let mut tx = self.write_tx().await?;
        let mut done = Vec::with_capacity(rewraps.len());
        for r in rewraps {
            // One statement is the compare-and-set: the row changes only if
            // it still holds what the rewrap was made from.
            let changed = sqlx::query(
                "UPDATE placements SET wrapped_key = $1 \
                 WHERE token = $2 AND category = $3 AND epoch = $4 \
                   AND custodian = $5 AND wrapped_key = $6",
            )
            .bind(r.new_key.as_slice())
            .bind(r.token.as_str())
            .bind(r.category.as_str())
            .bind(r.epoch)
            .bind(r.custodian.as_str())
            .bind(r.old_key.as_slice())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            done.push(changed == 1);
        }
        self.commit(tx, Durability::Durable).await?;
        Ok(done)
    }

    pub(crate) async fn abort_move_tx(
        &self,
        token: &str,
        category: &str,
        epoch: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let Some((current, state)) = Sql::<D>::lock_placement(&mut tx, token, category).await?
        else {
            return Ok(());
        };
        if current != epoch || state.is_active() {
            return Ok(());
        }
        Sql::<D>::set_state(&mut tx, token, category, &PlacementState::Active).await?;
        self.commit(tx, Durability::Durable).await
    }

    pub(crate) async fn commit_object_tx(
        &self,
        fence: &Fence,
        row: &ObjectRow,
        replaced_due: Millis,
        expect: &Expect,
    ) -> Result<CommitOutcome> {
        let mut tx = self.write_tx().await?;
        let outcome = Self::commit_object_in(&mut tx, fence, row, replaced_due, expect).await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(outcome)
    }

    /// Many object commits in one transaction, in order, one log sync for
    /// all (`Catalog::commit_objects`). An item refused for its own sake
    /// ([`item_refusal`]) is refused before it writes anything, so the
    /// others go on; any other failure fails the whole transaction.
    pub(crate) async fn commit_objects_tx(
        &self,
        items: &[ObjectCommit],
    ) -> Result<Vec<Result<CommitOutcome>>> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let done = match check_commit(&item.fence, &item.row) {
                Ok(()) => {
                    Self::commit_object_in(
                        &mut tx,
                        &item.fence,
                        &item.row,
                        item.replaced_due,
                        &item.expect,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match done {
                Err(e) if !item_refusal(&e) => return Err(e),
                done => out.push(done),
            }
        }
        self.commit(tx, Durability::Durable).await?;
        Ok(out)
    }

    /// The steps of an object commit, inside the caller's transaction.
    /// Every refusal comes before the first write.
    async fn commit_object_in(
        tx: &mut D::WriteTx,
        fence: &Fence,
        row: &ObjectRow,
        replaced_due: Millis,
        expect: &Expect,
    ) -> Result<CommitOutcome> {
        let tx = &mut **tx;
        if let Some(fenced) = Sql::<D>::check_fence(&mut *tx, fence).await? {
            return Ok(fenced);
        }
        let old = Sql::<D>::read_old_object(&mut *tx, &row.token, &row.lookup).await?;
        check_expected(expect, old.as_ref().map(|o| o.blob_id.as_str()))?;
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
            "SELECT COUNT(*) FROM objects WHERE token = $1 AND blob_id = $2 AND lookup <> $3",
        )
        .bind(row.token.as_str())
        .bind(row.blob_id.as_str())
        .bind(row.lookup.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if shared > 0 {
            return Err(Error::Conflict {
                reason: format!("blob {} already belongs to another object", row.blob_id),
            });
        }

        let version = old.as_ref().map_or(1, |o| o.version + 1);
        // A plain INSERT for a new name: if a commit in another category
        // inserted the same name (or blob) meanwhile, it fails with a unique
        // violation and the whole transaction runs again, then sees that row.
        let sql = if old.is_some() {
            "UPDATE objects SET category = $3, name_enc = $4, meta_enc = $5, version = $6, \
                                size = $7, stored_size = $8, checksum = $9, blob_id = $10, \
                                modified_at = $11 \
             WHERE token = $1 AND lookup = $2"
                .to_string()
        } else {
            format!(
                "INSERT INTO objects ({OBJECT_COLS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            )
        };
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(row.token.as_str())
            .bind(row.lookup.as_str())
            .bind(row.category.as_str())
            .bind(row.name_enc.as_slice())
            .bind(row.meta_enc.as_slice())
            .bind(version)
            .bind(row.size)
            .bind(row.stored_size)
            .bind(row.checksum.as_str())
            .bind(row.blob_id.as_str())
            .bind(row.modified_at)
            .execute(&mut *tx)
            .await?;

        let (objects, bytes) = match &old {
            Some(o) => (0, row.stored_size - o.stored_size),
            None => (1, row.stored_size),
        };
        Sql::<D>::add_counts(&mut *tx, &row.token, &row.category, objects, bytes).await?;

        // The write's intent: the index row keeps the blob from now on.
        sqlx::query("DELETE FROM garbage WHERE blob_id = $1")
            .bind(row.blob_id.as_str())
            .execute(&mut *tx)
            .await?;
        let replaced = old.filter(|o| o.blob_id != row.blob_id).map(|o| o.blob_id);
        if let Some(blob_id) = &replaced {
            let regions = Sql::<D>::read_regions(&mut *tx, &row.token, &row.category).await?;
            Sql::<D>::queue_blob(
                &mut *tx,
                &row.token,
                &row.category,
                blob_id,
                regions,
                replaced_due,
            )
            .await?;
        }
        Ok(CommitOutcome::Committed { version, replaced })
    }

    pub(crate) async fn delete_object_tx(
        &self,
        fence: &Fence,
        lookup: &str,
        due: Millis,
        expect: &Expect,
    ) -> Result<Option<CommitOutcome>> {
        let mut tx = self.write_tx().await?;
        if let Some(fenced) = Sql::<D>::check_fence(&mut tx, fence).await? {
            return Ok(Some(fenced));
        }
        let old = Sql::<D>::read_old_object(&mut tx, &fence.token, lookup).await?;
        let old = old.filter(|o| o.category == fence.category);
        check_expected(expect, old.as_ref().map(|o| o.blob_id.as_str()))?;
        let Some(old) = old else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM objects WHERE token = $1 AND lookup = $2")
            .bind(fence.token.as_str())
            .bind(lookup)
            .execute(&mut *tx)
            .await?;
        Sql::<D>::add_counts(&mut tx, &fence.token, &fence.category, -1, -old.stored_size).await?;
        let regions = Sql::<D>::read_regions(&mut tx, &fence.token, &fence.category).await?;
        Sql::<D>::queue_blob(
            &mut tx,
            &fence.token,
            &fence.category,
            &old.blob_id,
            regions,
            due,
        )
        .await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(Some(CommitOutcome::Committed {
            version: old.version,
            replaced: Some(old.blob_id),
        }))
    }

    pub(crate) async fn queue_garbage_tx(&self, row: &GarbageRow) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let queued = Sql::<D>::queue_blob(
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
        self.commit(tx, Durability::Lazy).await?;
        Ok(queued.id)
    }

    pub(crate) async fn queue_garbage_rows_tx(&self, rows: &[GarbageRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        let mut rows = rows.to_vec();
        Sql::<D>::insert_garbage(&mut tx, &mut rows).await?;
        // Lazy, as `queue_garbage_tx` explains.
        self.commit(tx, Durability::Lazy).await
    }

    pub(crate) async fn retry_garbage_tx(&self, retries: &[GarbageRetry]) -> Result<()> {
        if retries.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for r in retries {
            // A row gone meanwhile changes nothing here.
            sqlx::query(
                "UPDATE garbage SET regions = $1, next_try = $2, attempts = attempts + $3 \
                 WHERE id = $4",
            )
            .bind(super::codec::encode_regions(&r.regions)?)
            .bind(r.next_try)
            .bind(i64::from(r.failed))
            .bind(r.id)
            .execute(&mut *tx)
            .await?;
        }
        // Lazy, as `queue_garbage_tx` explains: a lost retry only means a
        // row is tried again sooner.
        self.commit(tx, Durability::Lazy).await
    }

    pub(crate) async fn finish_garbage_tx(
        &self,
        id: i64,
        ledger: Option<&LedgerAppend>,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM garbage WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found(format!("garbage row {id}")));
        }
        if let Some(entry) = ledger {
            Sql::<D>::ledger_append(&mut tx, std::slice::from_ref(entry)).await?;
        }
        self.commit(tx, Durability::Durable).await
    }

    pub(crate) async fn append_ledger_tx(&self, entries: &[LedgerAppend]) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let seq = Sql::<D>::ledger_append(&mut tx, entries).await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(seq)
    }

    pub(crate) async fn apply_policy_tx(
        &self,
        row: &PolicyVersionRow,
        ledger: &LedgerAppend,
    ) -> Result<PolicyApplied> {
        let mut tx = self.write_tx().await?;
        D::lock_policy(&self.state, &mut tx).await?;
        let active = Sql::<D>::policy_head(&mut tx).await?;
        if active > 0 && row.version == 1 {
            return Ok(PolicyApplied {
                version: active,
                created: false,
            });
        }
        if active > 0 {
            let digest: Option<String> =
                sqlx::query_scalar("SELECT digest FROM policy_versions WHERE version = $1")
                    .bind(active)
                    .fetch_optional(&mut *tx)
                    .await?;
            if digest.as_deref() == Some(row.digest.as_str()) {
                return Ok(PolicyApplied {
                    version: active,
                    created: false,
                });
            }
        }
        let version = active + 1;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO policy_versions ({POLICY_COLS}) VALUES ($1, $2, $3, $4, $5)"
        )))
        .bind(version)
        .bind(row.applied_at)
        .bind(row.actor.as_str())
        .bind(row.digest.as_str())
        .bind(row.text.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE policy_head SET version = $1 WHERE id = 1")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        Sql::<D>::ledger_append(&mut tx, std::slice::from_ref(ledger)).await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(PolicyApplied {
            version,
            created: true,
        })
    }

    pub(crate) async fn add_checkpoint_tx(&self, row: &CheckpointRow) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO ledger_checkpoints ({CHECKPOINT_COLS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (seq, key_id) DO NOTHING"
        )))
        .bind(row.seq)
        .bind(row.hash.as_str())
        .bind(row.at)
        .bind(row.key_id.as_str())
        .bind(row.public_key.as_str())
        .bind(row.signature.as_str())
        .execute(&mut *tx)
        .await?;
        let stored = done.rows_affected() > 0;
        self.commit(tx, Durability::Durable).await?;
        Ok(stored)
    }

    /// Writes a setting: replacing any value, or (`replace` false) only
    /// where there is none. Returns the value it holds afterwards.
    pub(crate) async fn write_setting_tx(
        &self,
        key: &str,
        value: &str,
        replace: bool,
    ) -> Result<String> {
        let mut tx = self.write_tx().await?;
        let sql = if replace {
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        } else {
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
        };
        sqlx::query(sql)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        // Once set, a setting is never changed by init: this read sees the winner.
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(stored)
    }

    pub(crate) async fn raw_insert_tx(&self, table: RawTable, rows: &[RawRow]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for chunk in rows.chunks(Sql::<D>::rows_per_statement(table.columns().len())) {
            let mut q = QueryBuilder::<D>::new(format!(
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
            q.build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx, Durability::Durable).await
    }
}

/// Refuses a conditional change whose name's current row (its blob id, or
/// none) is not the one expected.
/// Whether a commit's error refuses that commit alone (its fence, row or
/// condition), written before any of its writes: a batch goes on past it.
fn item_refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::Conflict { .. } | Error::PreconditionFailed { .. } | Error::Invalid { .. }
    )
}

/// A row must be for its fence's subject and category.
pub(crate) fn check_commit(fence: &Fence, row: &ObjectRow) -> Result<()> {
    if row.token != fence.token || row.category != fence.category {
        return Err(Error::Invalid {
            reason: format!(
                "object row is for {}/{}, the fence for {}/{}",
                row.token, row.category, fence.token, fence.category
            ),
        });
    }
    Ok(())
}

fn check_expected(expect: &Expect, current: Option<&str>) -> Result<()> {
    let held = match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) => true,
        (Expect::Blob(want), Some(have)) => want == have,
        (Expect::Absent, Some(_)) | (Expect::Blob(_), None) => false,
    };
    if held {
        return Ok(());
    }
    Err(Error::PreconditionFailed {
        reason: match current {
            Some(_) => "the name holds another object than expected".into(),
            None => "the name holds no object".into(),
        },
    })
}
