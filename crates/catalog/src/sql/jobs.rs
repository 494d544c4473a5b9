//! [`JobStore`]: migration jobs and their units, for any number of workers
//! in any number of processes.
//!
//! - `claim_units` selects due units with the dialect's `SKIP LOCKED` row
//!   locks (PostgreSQL: claimers skip the rows another claimer is leasing
//!   instead of queueing behind it, and a row whose lease was committed
//!   since the statement began is re-checked and left out; SQLite: the
//!   write lock serialises claimers) and leases them in the same
//!   transaction. The lease keeps a unit out of later claims until it
//!   expires, so a unit is never handed to two live workers.
//! - `create_job` holds the one row of `migration_jobs_lock` where the
//!   dialect has it (the write lock does on SQLite), so two processes can
//!   never both find no open job and both open one.
//! - Lease renewals and `finish_unit` are conditioned on the lease owner: a
//!   worker whose lease was taken over changes nothing.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Row, Type};

use super::codec::{JOB_COLS, UNIT_COLS, unit_state};
use super::{Dialect, Durability, Retry, RowsAffected, Sql, SqlCatalog};
use crate::error::{Error, Result};
use crate::jobs::{
    JobCounts, JobRow, JobState, JobStore, JobWaiting, RunRow, UnitOutcome, UnitReceipt,
    UnitRelease, UnitRow, UnitState,
};
use crate::model::{LedgerAppend, Millis};

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
    async fn create_job_tx(&self, job: &JobRow) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        if D::JOBS_LOCK {
            let sql = format!(
                "SELECT id FROM migration_jobs_lock WHERE id = 1{}",
                D::FOR_UPDATE
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| Error::Corrupt {
                    reason: "the migration_jobs_lock row is missing".into(),
                })?;
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM migration_jobs WHERE state IN ('planning', 'running', 'paused')",
        )
        .fetch_one(&mut *tx)
        .await?;
        if open > 0 {
            return Err(Error::Conflict {
                reason: "another migration job is still open".into(),
            });
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO migration_jobs (state, created_at, finished_at, policy, rate, grace_ms, \
                                         units, bytes) \
             VALUES ('planning', $1, NULL, $2, $3, $4, 0, 0) RETURNING id",
        )
        .bind(job.created_at)
        .bind(job.policy.as_str())
        .bind(job.rate)
        .bind(job.grace_ms)
        .fetch_one(&mut *tx)
        .await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(id)
    }

    async fn add_units_tx(&self, job: i64, units: &[UnitRow]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let mut bytes = 0i64;
        for chunk in units.chunks(Sql::<D>::rows_per_statement(12)) {
            let mut q =
                QueryBuilder::<D>::new(format!("INSERT INTO migration_units ({UNIT_COLS}) "));
            q.push_values(chunk, |mut b, u| {
                b.push_bind(job)
                    .push_bind(u.token.as_str())
                    .push_bind(u.category.as_str())
                    .push_bind(u.priority)
                    .push_bind(u.from.join(","))
                    .push_bind(u.to.join(","))
                    .push_bind(u.custodian_from.as_str())
                    .push_bind(u.custodian_to.as_str())
                    .push_bind(u.objects)
                    .push_bind(u.bytes)
                    .push_bind(UnitState::Pending.as_str())
                    .push("0, NULL, 0, 0, 0, NULL")
                    .push_bind(u.updated_at);
            });
            q.build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *tx)
                .await?;
            bytes += chunk.iter().map(|u| u.bytes).sum::<i64>();
        }
        sqlx::query(
            "UPDATE migration_jobs SET units = units + $1, bytes = bytes + $2 WHERE id = $3",
        )
        .bind(units.len() as i64)
        .bind(bytes)
        .bind(job)
        .execute(&mut *tx)
        .await?;
        self.commit(tx, Durability::Durable).await
    }

    async fn discard_units_tx(&self, job: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT state FROM migration_jobs WHERE id = $1{}",
            D::FOR_UPDATE
        );
        let state: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(job)
            .fetch_optional(&mut *tx)
            .await?;
        if state.as_deref() != Some("planning") {
            return Err(Error::Conflict {
                reason: format!("migration job {job} is not being planned"),
            });
        }
        let n = sqlx::query("DELETE FROM migration_units WHERE job = $1")
            .bind(job)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE migration_jobs SET units = 0, bytes = 0 WHERE id = $1")
            .bind(job)
            .execute(&mut *tx)
            .await?;
        self.commit(tx, Durability::Durable).await?;
        Ok(n)
    }

    /// Runs one statement that changes rows, alone (one statement is its
    /// own transaction: one round trip, no `BEGIN`), and returns once it is
    /// durable. Returns how many rows it changed.
    async fn change(&self, q: sqlx::query::Query<'_, D, D::Arguments>) -> Result<u64> {
        let changed = q.execute(&self.pool).await?.rows_affected();
        D::durable(&self.state).await?;
        Ok(changed)
    }

    async fn claim_units_tx(
        &self,
        job: i64,
        owner: &str,
        limit: u32,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<UnitRow>> {
        // Due purges come first, oldest first: old copies (in regions the
        // policy may now forbid) last only the grace period, not until every
        // other unit of the job has been copied. Then pending units by
        // priority. Each is one ordered index scan (schema 0004): no sort,
        // however many units the job has.
        let mut tx = self.write_tx().await?;
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UNIT_COLS} FROM migration_units \
             WHERE job = $1 AND state = 'committed' AND purge_after <= $2 AND lease_until < $2 \
             ORDER BY purge_after, token, category \
             LIMIT $3{}",
            D::SKIP_LOCKED
        )))
        .bind(job)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let left = i64::from(limit) - rows.len() as i64;
        if left > 0 {
            rows.extend(
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {UNIT_COLS} FROM migration_units \
                     WHERE job = $1 AND state = 'pending' AND lease_until < $2 \
                     ORDER BY priority, token, category \
                     LIMIT $3{}",
                    D::SKIP_LOCKED
                )))
                .bind(job)
                .bind(now)
                .bind(left)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        let mut units = rows
            .iter()
            .map(Sql::<D>::unit_from)
            .collect::<Result<Vec<_>>>()?;
        if !units.is_empty() {
            let mut q = QueryBuilder::<D>::new("UPDATE migration_units SET lease_owner = ");
            q.push_bind(owner)
                .push(", lease_until = ")
                .push_bind(lease_until)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE job = ")
                .push_bind(job)
                .push(" AND (token, category) IN ");
            Sql::<D>::push_pairs(
                &mut q,
                units
                    .iter()
                    .map(|u| (u.token.as_str(), u.category.as_str())),
            );
            let leased = q
                .build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *tx)
                .await?;
            if leased.rows_affected() != units.len() as u64 {
                return Err(Error::Conflict {
                    reason: format!(
                        "leased {} of {} claimed units",
                        leased.rows_affected(),
                        units.len()
                    ),
                });
            }
        }
        // A claim lost to a power cut is only a unit claimed again. A purge
        // is not undone by one: it is handed out only once the move it
        // follows (perhaps committed lazily) is on disk.
        self.commit(tx, Durability::Lazy).await?;
        if units.iter().any(|u| u.state == UnitState::Committed) {
            D::durable(&self.state).await?;
        }
        for u in &mut units {
            u.lease_owner = Some(owner.to_string());
            u.lease_until = lease_until;
            u.updated_at = now;
        }
        Ok(units)
    }

    async fn claim_unit_tx(
        &self,
        job: i64,
        (token, category): (&str, &str),
        owner: &str,
        max_bytes: i64,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Option<UnitRow>> {
        // SKIP LOCKED: a claimer taking it right now wins; this one
        // returns None instead of waiting.
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UNIT_COLS} FROM migration_units \
             WHERE job = $1 AND token = $2 AND category = $3 AND state = 'pending' \
               AND lease_until < $4 AND bytes <= $5{}",
            D::SKIP_LOCKED
        )))
        .bind(job)
        .bind(token)
        .bind(category)
        .bind(now)
        .bind(max_bytes)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut unit = Sql::<D>::unit_from(&row)?;
        sqlx::query(
            "UPDATE migration_units SET lease_owner = $1, lease_until = $2, updated_at = $3 \
             WHERE job = $4 AND token = $5 AND category = $6",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(job)
        .bind(token)
        .bind(category)
        .execute(&mut *tx)
        .await?;
        self.commit(tx, Durability::Durable).await?;
        unit.lease_owner = Some(owner.to_string());
        unit.lease_until = lease_until;
        unit.updated_at = now;
        Ok(Some(unit))
    }

    async fn renew_leases_tx(
        &self,
        job: i64,
        owner: &str,
        units: &[(String, String)],
        lease_until: Millis,
    ) -> Result<u64> {
        let mut held = 0;
        let mut tx = self.write_tx().await?;
        for chunk in units.chunks(Sql::<D>::rows_per_statement(2)) {
            let mut q = QueryBuilder::<D>::new("UPDATE migration_units SET lease_until = ");
            q.push_bind(lease_until)
                .push(" WHERE job = ")
                .push_bind(job)
                .push(" AND lease_owner = ")
                .push_bind(owner)
                .push(" AND (token, category) IN ");
            Sql::<D>::push_pairs(&mut q, chunk.iter().map(|(t, c)| (t.as_str(), c.as_str())));
            held += q
                .build()
                .persistent(D::CACHE_BUILT)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        self.commit(tx, Durability::Durable).await?;
        Ok(held)
    }

    /// Releases units, and appends their ledger receipts, in one transaction.
    async fn finish_units_tx(
        &self,
        units: &[(&str, &str, &UnitRelease)],
        receipts: &[LedgerAppend],
    ) -> Result<Vec<bool>> {
        let mut tx = self.write_tx().await?;
        let held = Sql::<D>::finish_units_in(&mut tx, units).await?;
        if !receipts.is_empty() {
            Sql::<D>::ledger_append(&mut tx, receipts).await?;
        }
        self.commit(tx, Durability::Durable).await?;
        Ok(held)
    }
}

#[async_trait]
impl<D> JobStore for SqlCatalog<D>
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
    async fn create_job(&self, job: &JobRow) -> Result<i64> {
        D::retry(Retry::Conflicts, || self.create_job_tx(job)).await
    }

    async fn add_units(&self, job: i64, units: &[UnitRow]) -> Result<()> {
        D::retry(Retry::Conflicts, || self.add_units_tx(job, units)).await
    }

    async fn discard_units(&self, job: i64) -> Result<u64> {
        D::retry(Retry::Conflicts, || self.discard_units_tx(job)).await
    }

    async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Sql::<D>::job_from).transpose()
    }

    async fn open_job(&self) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs \
             WHERE state IN ('planning', 'running', 'paused') ORDER BY id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Sql::<D>::job_from).transpose()
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs ORDER BY id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::job_from).collect()
    }

    async fn record_run(&self, run: &RunRow) -> Result<()> {
        D::retry(Retry::Conflicts, || {
            self.change(
                sqlx::query(
                    "INSERT INTO migration_runs (job, owner, started_at, finished_at, units, bytes) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (job, owner, started_at) DO NOTHING",
                )
                .bind(run.job)
                .bind(run.owner.as_str())
                .bind(run.started_at)
                .bind(run.finished_at)
                .bind(run.units)
                .bind(run.bytes),
            )
        })
        .await?;
        Ok(())
    }

    async fn runs(&self, limit: u32) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT job, owner, started_at, finished_at, units, bytes FROM migration_runs \
             ORDER BY finished_at DESC, job DESC, owner LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    job: r.try_get(0)?,
                    owner: r.try_get(1)?,
                    started_at: r.try_get(2)?,
                    finished_at: r.try_get(3)?,
                    units: r.try_get(4)?,
                    bytes: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn set_job_state(&self, id: i64, state: JobState, now: Millis) -> Result<()> {
        let finished = matches!(state, JobState::Cancelled | JobState::Done).then_some(now);
        let changed = D::retry(Retry::Conflicts, || {
            self.change(
                sqlx::query("UPDATE migration_jobs SET state = $1, finished_at = $2 WHERE id = $3")
                    .bind(state.as_str())
                    .bind(finished)
                    .bind(id),
            )
        })
        .await?;
        if changed == 0 {
            return Err(Error::NotFound {
                what: format!("migration job {id}"),
            });
        }
        Ok(())
    }

    async fn claim_units(
        &self,
        job: i64,
        owner: &str,
        limit: u32,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<UnitRow>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        D::retry(Retry::Conflicts, || {
            self.claim_units_tx(job, owner, limit, lease_until, now)
        })
        .await
    }

    async fn claim_unit(
        &self,
        job: i64,
        unit: (&str, &str),
        owner: &str,
        max_bytes: i64,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Option<UnitRow>> {
        D::retry(Retry::Conflicts, || {
            self.claim_unit_tx(job, unit, owner, max_bytes, lease_until, now)
        })
        .await
    }

    async fn renew_leases(
        &self,
        job: i64,
        owner: &str,
        units: &[(String, String)],
        lease_until: Millis,
    ) -> Result<u64> {
        if units.is_empty() {
            return Ok(0);
        }
        D::retry(Retry::Conflicts, || {
            self.renew_leases_tx(job, owner, units, lease_until)
        })
        .await
    }

    async fn finish_unit(
        &self,
        job: i64,
        token: &str,
        category: &str,
        owner: &str,
        outcome: &UnitOutcome,
        now: Millis,
    ) -> Result<bool> {
        let release = UnitRelease {
            job,
            owner: owner.to_string(),
            outcome: outcome.clone(),
            now,
        };
        // One statement, alone, as `change` runs them.
        D::retry(Retry::Conflicts, || async {
            let mut conn = self.pool.acquire().await?;
            let held = Sql::<D>::finish_unit_in(&mut conn, token, category, &release).await?;
            drop(conn);
            D::durable(&self.state).await?;
            Ok(held)
        })
        .await
    }

    async fn finish_units_with_receipts(&self, done: &[UnitReceipt]) -> Result<Vec<bool>> {
        let units: Vec<(&str, &str, &UnitRelease)> = done
            .iter()
            .map(|d| (d.token.as_str(), d.category.as_str(), &d.release))
            .collect();
        let receipts: Vec<LedgerAppend> = done.iter().map(|d| d.receipt.clone()).collect();
        D::retry(Retry::Conflicts, || self.finish_units_tx(&units, &receipts)).await
    }

    async fn cancel_pending(&self, job: i64, now: Millis) -> Result<u64> {
        // Live as `job_counts` counts it: a unit waiting to retry after an
        // error (no owner, `lease_until` = its retry time) is held by nobody.
        D::retry(Retry::Conflicts, || {
            self.change(
                sqlx::query(
                    "UPDATE migration_units SET state = 'cancelled', updated_at = $1 \
                     WHERE job = $2 AND state = 'pending' \
                       AND (lease_owner IS NULL OR lease_until < $1)",
                )
                .bind(now)
                .bind(job),
            )
        })
        .await
    }

    async fn job_counts(&self, job: i64, now: Millis) -> Result<JobCounts> {
        // Grouped by state alone, the in-flight units counted within each
        // group: on SQLite the (job, state, …) indexes give the groups in
        // order, so the job's units are not sorted.
        let rows = sqlx::query(
            "SELECT state, COUNT(*), \
                    COUNT(*) FILTER (WHERE lease_owner IS NOT NULL AND lease_until >= $1), \
                    CAST(SUM(bytes) AS BIGINT) \
             FROM migration_units WHERE job = $2 GROUP BY state",
        )
        .bind(now)
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        let mut c = JobCounts::default();
        for r in &rows {
            let state: String = r.try_get(0)?;
            let bytes: Option<i64> = r.try_get(3)?;
            c.add(
                unit_state(&state)?,
                r.try_get(1)?,
                r.try_get(2)?,
                bytes.unwrap_or(0),
            );
        }
        Ok(c)
    }

    async fn job_waiting(&self, job: i64) -> Result<JobWaiting> {
        // Each EXISTS stops at the first entry of the (job, state, …)
        // indexes (schema 0004).
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM migration_units WHERE job = $1 AND state = 'pending'), \
                    EXISTS (SELECT 1 FROM migration_units WHERE job = $1 AND state = 'committed')",
        )
        .bind(job)
        .fetch_one(&self.pool)
        .await?;
        Ok(JobWaiting {
            moves: row.try_get(0)?,
            purges: row.try_get(1)?,
        })
    }

    async fn units_in(&self, job: i64, state: UnitState, limit: u32) -> Result<Vec<UnitRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UNIT_COLS} FROM migration_units WHERE job = $1 AND state = $2 \
             ORDER BY priority, token, category LIMIT $3"
        )))
        .bind(job)
        .bind(state.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Sql::<D>::unit_from).collect()
    }
}
