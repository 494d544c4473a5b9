//! The [`Catalog`] implementation: reads run here, on the pool; each write
//! is one transaction of [`writes`](super::writes), run under the dialect's
//! retry.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};

use super::codec::{
    CHECKPOINT_COLS, GARBAGE_COLS, LEDGER_COLS, OBJECT_COLS, PLACEMENT_COLS, POLICY_COLS,
    SUBJECT_COLS,
};
use super::writes::MoveCommit;
use super::{Dialect, Durability, Retry, Sql, SqlCatalog};
use crate::catalog::{Catalog, CommitOutcome, MoveMark, ObjectCommit, Rewrap, UnitMove};
use crate::error::{Error, Result};
use crate::model::{
    CheckpointRow, Expect, Fence, GarbageRetry, GarbageRow, IndexEntry, LedgerAppend, LedgerEntry,
    Millis, ObjectRow, PlacementRow, PlacementSummary, PolicyApplied, PolicyVersionRow,
    ResidencyRow, SubjectRow, TokenRange, objects_by_pair,
};
use crate::raw::{RawRow, RawTable, RawType, RawValue};

#[async_trait]
impl<D> Catalog for SqlCatalog<D>
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
    async fn schema_version(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        Sql::<D>::applied_version(&mut conn).await
    }

    // ---- subjects ----

    async fn add_subject(&self, subject: &SubjectRow, ledger: LedgerAppend) -> Result<()> {
        let added = D::retry(Retry::Conflicts, || {
            self.add_subjects_tx(std::slice::from_ref(subject), |_| ledger.clone())
        })
        .await?;
        if added == 0 {
            return Err(Error::AlreadyExists {
                what: format!("subject {}", subject.token),
            });
        }
        Ok(())
    }

    async fn add_subjects(&self, subjects: &[SubjectRow], at: Millis, actor: &str) -> Result<u64> {
        let entry = |s: &SubjectRow| LedgerAppend {
            kind: "subject".into(),
            subject: Some(s.token.clone()),
            body: serde_json::json!({ "home": s.home }),
            at,
            actor: actor.to_string(),
        };
        D::retry(Retry::Conflicts, || self.add_subjects_tx(subjects, entry)).await
    }

    async fn get_subjects(&self, tokens: &[String]) -> Result<Vec<Option<SubjectRow>>> {
        let push = |q: &mut QueryBuilder<D>, chunk: &[&String]| {
            q.push("(");
            let mut sep = q.separated(", ");
            for t in chunk {
                sep.push_bind(t.as_str());
            }
            q.push(")");
        };
        let head = format!("SELECT {SUBJECT_COLS} FROM subjects WHERE token IN ");
        let rows = Sql::<D>::fetch_in(&self.pool, &head, tokens, 1, push, "").await?;
        let mut found: HashMap<String, SubjectRow> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let s = Sql::<D>::subject_from(row)?;
            found.insert(s.token.clone(), s);
        }
        Ok(tokens.iter().map(|t| found.get(t).cloned()).collect())
    }

    async fn set_home(&self, token: &str, home: &str, ledger: LedgerAppend) -> Result<()> {
        D::retry(Retry::Conflicts, || self.set_home_tx(token, home, &ledger)).await
    }

    async fn erase_subject(&self, token: &str, ledger: LedgerAppend) -> Result<Vec<GarbageRow>> {
        D::retry(Retry::Conflicts, || self.erase_subject_tx(token, &ledger)).await
    }

    async fn count_subjects(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM subjects")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn subjects_page(
        &self,
        after: Option<&str>,
        limit: u32,
        home: Option<&str>,
        region: Option<&str>,
    ) -> Result<Vec<SubjectRow>> {
        let mut q = QueryBuilder::<D>::new(format!(
            "SELECT {SUBJECT_COLS} FROM subjects s WHERE token > "
        ));
        q.push_bind(after.unwrap_or(""));
        if let Some(home) = home {
            q.push(" AND home = ").push_bind(home);
        }
        if let Some(region) = region {
            q.push(
                " AND EXISTS (SELECT 1 FROM placement_regions r WHERE r.token = s.token AND r.region = ",
            )
            .push_bind(region)
            .push(")");
        }
        q.push(" ORDER BY token LIMIT ").push_bind(i64::from(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(Sql::<D>::subject_from).collect()
    }

    // ---- placements ----

    async fn get_placement(&self, token: &str, category: &str) -> Result<Option<PlacementRow>> {
        // One row holds the whole placement, its regions included.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PLACEMENT_COLS} FROM placements WHERE token = $1 AND category = $2"
        )))
        .bind(token)
        .bind(category)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Sql::<D>::placement_from).transpose()
    }

    async fn get_placements(&self, keys: &[(String, String)]) -> Result<Vec<Option<PlacementRow>>> {
        // One statement per chunk of pairs, each row whole.
        let head = format!("SELECT {PLACEMENT_COLS} FROM placements WHERE (token, category) IN ");
        let rows = Sql::<D>::fetch_pairs(&self.pool, &head, keys, "").await?;
        let mut found: HashMap<(String, String), PlacementRow> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let p = Sql::<D>::placement_from(row)?;
            found.insert((p.token.clone(), p.category.clone()), p);
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn placements_of(&self, token: &str) -> Result<Vec<PlacementRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PLACEMENT_COLS} FROM placements WHERE token = $1 ORDER BY category"
        )))
        .bind(token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::placement_from).collect()
    }

    async fn ensure_placement(
        &self,
        row: &PlacementRow,
        policy: i64,
        ledger: LedgerAppend,
    ) -> Result<PlacementRow> {
        D::retry(Retry::Conflicts, || {
            self.ensure_placement_tx(row, policy, &ledger)
        })
        .await
    }

    async fn begin_moves(
        &self,
        marks: &[MoveMark],
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<bool>> {
        D::retry(Retry::Conflicts, || {
            self.begin_moves_tx(marks, lease_until, now, Durability::Lazy)
        })
        .await
    }

    async fn commit_move(
        &self,
        fence: &Fence,
        regions: &[String],
        custodian: &str,
        wrapped_key: &[u8],
        ledger: LedgerAppend,
    ) -> Result<PlacementRow> {
        let one = MoveCommit {
            fence,
            regions,
            custodian,
            wrapped_key,
            ledger: &ledger,
            release: None,
            rekeyed: &[],
            garbage: &[],
        };
        let done = D::retry(Retry::Conflicts, || {
            self.commit_moves_tx(std::slice::from_ref(&one), Durability::Durable)
        })
        .await?;
        Ok(only(done)?.0)
    }

    async fn commit_unit_moves(
        &self,
        moves: &[UnitMove],
    ) -> Result<Vec<Result<(PlacementRow, bool)>>> {
        let moves: Vec<MoveCommit<'_>> = moves.iter().map(MoveCommit::from).collect();
        D::retry(Retry::Conflicts, || {
            self.commit_moves_tx(&moves, Durability::Lazy)
        })
        .await
    }

    async fn durable(&self) -> Result<()> {
        D::durable(&self.state).await
    }

    async fn abort_move(&self, token: &str, category: &str, epoch: i64) -> Result<()> {
        D::retry(Retry::Conflicts, || {
            self.abort_move_tx(token, category, epoch)
        })
        .await
    }

    async fn placements_page(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        D::placements_page(&self.pool, TokenRange::default(), after, limit).await
    }

    async fn placements_range_page(
        &self,
        range: TokenRange<'_>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        D::placements_page(&self.pool, range, after, limit).await
    }

    async fn custodian_placements_page(
        &self,
        custodian: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementRow>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // An absent key sorts before every token: tokens are never empty.
        let (token, category) = after.unwrap_or(("", ""));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PLACEMENT_COLS} FROM placements \
             WHERE custodian = $1 AND (token > $2 OR (token = $2 AND category > $3)) \
             ORDER BY token, category LIMIT $4"
        )))
        .bind(custodian)
        .bind(token)
        .bind(category)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::placement_from).collect()
    }

    async fn rewrap_placements(&self, rewraps: &[Rewrap]) -> Result<Vec<bool>> {
        if rewraps.is_empty() {
            return Ok(Vec::new());
        }
        D::retry(Retry::Conflicts, || self.rewrap_placements_tx(rewraps)).await
    }

    async fn subject_seals(&self, tokens: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        // The subjects' rows, in the order asked, each token once.
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .get_subjects(tokens)
            .await?
            .into_iter()
            .flatten()
            .filter(|s| seen.insert(s.token.clone()))
            .filter_map(|s| Some((s.token, s.id_enc?)))
            .collect())
    }

    async fn residency(&self) -> Result<Vec<ResidencyRow>> {
        // `placements.home` is kept in step with the subject's home.
        let rows = sqlx::query(
            "SELECT p.home, p.category, r.region, COUNT(DISTINCT p.token), \
                    CAST(SUM(p.objects) AS BIGINT), CAST(SUM(p.bytes) AS BIGINT) \
             FROM placement_regions r \
             JOIN placements p ON p.token = r.token AND p.category = r.category \
             GROUP BY p.home, p.category, r.region \
             ORDER BY p.home, p.category, r.region",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ResidencyRow {
                    home: r.try_get(0)?,
                    category: r.try_get(1)?,
                    region: r.try_get(2)?,
                    subjects: r.try_get(3)?,
                    objects: r.try_get(4)?,
                    bytes: r.try_get(5)?,
                })
            })
            .collect()
    }

    // ---- objects ----

    async fn commit_object_if(
        &self,
        fence: &Fence,
        row: &ObjectRow,
        replaced_due: Millis,
        expect: &Expect,
    ) -> Result<CommitOutcome> {
        super::writes::check_commit(fence, row)?;
        D::retry(Retry::ConflictsAndDuplicates, || {
            self.commit_object_tx(fence, row, replaced_due, expect)
        })
        .await
    }

    /// One transaction for the whole batch; if it fails (a database error,
    /// after the dialect's retries), each item is committed alone, so one
    /// item's failure is its own.
    async fn commit_objects(&self, items: &[ObjectCommit]) -> Vec<Result<CommitOutcome>> {
        if items.len() > 1 {
            match D::retry(Retry::ConflictsAndDuplicates, || {
                self.commit_objects_tx(items)
            })
            .await
            {
                Ok(done) => return done,
                Err(e) => {
                    tracing::debug!(error = %e, items = items.len(), "a batch of commits failed; committing each alone")
                }
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(
                self.commit_object_if(&item.fence, &item.row, item.replaced_due, &item.expect)
                    .await,
            );
        }
        out
    }

    async fn delete_object_if(
        &self,
        fence: &Fence,
        lookup: &str,
        due: Millis,
        expect: &Expect,
    ) -> Result<Option<CommitOutcome>> {
        D::retry(Retry::Conflicts, || {
            self.delete_object_tx(fence, lookup, due, expect)
        })
        .await
    }

    async fn get_object(&self, token: &str, lookup: &str) -> Result<Option<ObjectRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE token = $1 AND lookup = $2"
        )))
        .bind(token)
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Sql::<D>::object_from).transpose()
    }

    async fn objects_of(&self, token: &str, category: Option<&str>) -> Result<Vec<ObjectRow>> {
        let filter = if category.is_some() {
            " AND category = $2"
        } else {
            ""
        };
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE token = $1{filter} ORDER BY category, lookup"
        )))
        .bind(token);
        if let Some(category) = category {
            q = q.bind(category);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(Sql::<D>::object_from).collect()
    }

    async fn objects_of_pairs(&self, keys: &[(String, String)]) -> Result<Vec<Vec<ObjectRow>>> {
        let head = format!("SELECT {OBJECT_COLS} FROM objects WHERE (token, category) IN ");
        let tail = " ORDER BY token, category, lookup";
        let rows = Sql::<D>::fetch_pairs(&self.pool, &head, keys, tail).await?;
        let rows = rows
            .iter()
            .map(Sql::<D>::object_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(objects_by_pair(rows, keys))
    }

    async fn objects_page(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<ObjectRow>> {
        let (after_token, after_blob) = after.unwrap_or(("", ""));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OBJECT_COLS} FROM objects WHERE (token, blob_id) > ($1, $2) \
             ORDER BY token, blob_id LIMIT $3"
        )))
        .bind(after_token)
        .bind(after_blob)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::object_from).collect()
    }

    async fn index_page(&self, after: Option<(&str, &str)>, limit: u32) -> Result<Vec<IndexEntry>> {
        let (after_token, after_blob) = after.unwrap_or(("", ""));
        // Along the (token, blob_id) index, each row with its placement's
        // home and regions in the same statement (NULL without one).
        let rows = sqlx::query(
            "SELECT o.token, o.category, o.blob_id, o.stored_size, o.checksum, p.home, p.regions \
             FROM objects o LEFT JOIN placements p \
               ON p.token = o.token AND p.category = o.category \
             WHERE (o.token, o.blob_id) > ($1, $2) \
             ORDER BY o.token, o.blob_id LIMIT $3",
        )
        .bind(after_token)
        .bind(after_blob)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::index_entry_from).collect()
    }

    // ---- garbage ----

    async fn due_garbage(&self, limit: u32, now: Millis) -> Result<Vec<GarbageRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GARBAGE_COLS} FROM garbage WHERE next_try <= $1 \
             ORDER BY next_try, id LIMIT $2"
        )))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::garbage_from).collect()
    }

    async fn queue_garbage(&self, row: &GarbageRow) -> Result<i64> {
        D::retry(Retry::Conflicts, || self.queue_garbage_tx(row)).await
    }

    async fn queue_garbage_rows(&self, rows: &[GarbageRow]) -> Result<()> {
        D::retry(Retry::Conflicts, || self.queue_garbage_rows_tx(rows)).await
    }

    async fn retry_garbage(&self, retries: &[GarbageRetry]) -> Result<()> {
        D::retry(Retry::Conflicts, || self.retry_garbage_tx(retries)).await
    }

    async fn finish_garbage(&self, id: i64, ledger: Option<LedgerAppend>) -> Result<()> {
        D::retry(Retry::Conflicts, || {
            self.finish_garbage_tx(id, ledger.as_ref())
        })
        .await
    }

    // ---- ledger ----

    async fn append_ledger(&self, entry: LedgerAppend) -> Result<i64> {
        D::retry(Retry::Conflicts, || {
            self.append_ledger_tx(std::slice::from_ref(&entry))
        })
        .await
    }

    async fn ledger_page(&self, after: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LEDGER_COLS} FROM ledger WHERE seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::entry_from).collect()
    }

    async fn ledger_of(&self, token: &str) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LEDGER_COLS} FROM ledger WHERE subject = $1 ORDER BY seq"
        )))
        .bind(token)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::entry_from).collect()
    }

    async fn ledger_head(&self) -> Result<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => (r.try_get(0)?, r.try_get(1)?),
            None => (0, crate::ledger::GENESIS.to_string()),
        })
    }

    async fn add_checkpoint(&self, row: &CheckpointRow) -> Result<bool> {
        D::retry(Retry::Conflicts, || self.add_checkpoint_tx(row)).await
    }

    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHECKPOINT_COLS} FROM ledger_checkpoints ORDER BY seq, key_id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::checkpoint_from).collect()
    }

    // ---- policy versions ----

    async fn apply_policy(
        &self,
        row: &PolicyVersionRow,
        ledger: LedgerAppend,
    ) -> Result<PolicyApplied> {
        D::retry(Retry::Conflicts, || self.apply_policy_tx(row, &ledger)).await
    }

    async fn policy_version(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM policy_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    async fn policy(&self, version: Option<i64>) -> Result<Option<PolicyVersionRow>> {
        let version = match version {
            Some(v) => v,
            None => self.policy_version().await?,
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM policy_versions WHERE version = $1"
        )))
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Sql::<D>::policy_from).transpose()
    }

    async fn policy_history(&self) -> Result<Vec<PolicyVersionRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM policy_versions ORDER BY version"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::policy_from).collect()
    }

    // ---- settings ----

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        D::retry(Retry::Conflicts, || self.write_setting_tx(key, value, true)).await?;
        Ok(())
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        D::retry(Retry::Conflicts, || {
            self.write_setting_tx(key, value, false)
        })
        .await
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
        let mut q = QueryBuilder::<D>::new(format!(
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
        let rows = q
            .build()
            .persistent(D::CACHE_BUILT)
            .fetch_all(&self.pool)
            .await?;
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
        D::retry(Retry::Conflicts, || self.raw_insert_tx(table, rows)).await
    }

    /// Also moves `policy_head` to the last copied version.
    async fn raw_finish(&self) -> Result<()> {
        D::raw_finish(&self.pool, &self.state).await?;
        D::retry(Retry::Conflicts, || async {
            let mut tx = self.write_tx().await?;
            sqlx::query(
                "UPDATE policy_head SET version = \
                 (SELECT COALESCE(MAX(version), 0) FROM policy_versions) WHERE id = 1",
            )
            .execute(&mut *tx)
            .await?;
            self.commit(tx, Durability::Durable).await
        })
        .await
    }
}

/// The one result of a batch of one.
fn only<T>(results: Vec<Result<T>>) -> Result<T> {
    results.into_iter().next().unwrap_or_else(|| {
        Err(Error::Corrupt {
            reason: "a batch of one move gave no result".into(),
        })
    })
}
