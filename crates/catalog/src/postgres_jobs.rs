//! [`JobStore`] for the PostgreSQL backend, for any number of workers in any
//! number of processes.
//!
//! - `claim_units` selects due units `FOR UPDATE SKIP LOCKED` and leases
//!   them in the same transaction. Claimers skip the rows another claimer is
//!   leasing instead of queueing behind it, and PostgreSQL re-checks a row
//!   whose lease was committed since the statement began, so a unit is never
//!   handed to two live workers. The lease then keeps it out of later claims
//!   until it expires.
//! - `create_job` locks the one row of `migration_jobs_lock`, so two
//!   processes cannot both find no open job and both open one.
//! - Lease renewals and `finish_unit` are single statements conditioned on
//!   the lease owner: a worker whose lease was taken over changes nothing.
//!
//! Like every write of this backend, each call is one transaction, run again
//! on a serialization failure or deadlock.

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use crate::error::{Error, Result};
use crate::jobs::{
    JobCounts, JobRow, JobState, JobStore, JobWaiting, UnitOutcome, UnitReceipt, UnitRelease,
    UnitRow, UnitState,
};
use crate::model::{LedgerAppend, Millis};
use crate::postgres::{PostgresCatalog, ledger_append};

const JOB_COLS: &str = "id, state, created_at, finished_at, policy, rate, grace_ms, units, bytes";
const UNIT_COLS: &str = "job, token, category, priority, from_regions, to_regions, custodian_from, \
    custodian_to, objects, bytes, state, attempts, lease_owner, lease_until, purge_after, moved_bytes, \
    error, updated_at";

/// Units per multi-row INSERT (12 parameters each, under PostgreSQL's 65535).
const UNITS_PER_INSERT: usize = 1_000;

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        reason: format!("unknown {what} in the migration tables"),
    }
}

fn job_from(r: &PgRow) -> Result<JobRow> {
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

fn split(s: String) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').map(str::to_string).collect()
    }
}

/// Records how a worker leaves a unit and releases its lease, on the
/// caller's connection (alone, or inside its transaction). False (and
/// nothing changed) if the worker no longer holds the lease.
pub(crate) async fn finish_unit_in(
    conn: &mut PgConnection,
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
    .bind(&release.owner)
    .bind(c.failed)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

fn unit_from(r: &PgRow) -> Result<UnitRow> {
    let state: String = r.try_get(10)?;
    Ok(UnitRow {
        job: r.try_get(0)?,
        token: r.try_get(1)?,
        category: r.try_get(2)?,
        priority: r.try_get(3)?,
        from: split(r.try_get(4)?),
        to: split(r.try_get(5)?),
        custodian_from: r.try_get(6)?,
        custodian_to: r.try_get(7)?,
        objects: r.try_get(8)?,
        bytes: r.try_get(9)?,
        state: UnitState::parse(&state).ok_or_else(|| corrupt("unit state"))?,
        attempts: r.try_get(11)?,
        lease_owner: r.try_get(12)?,
        lease_until: r.try_get(13)?,
        purge_after: r.try_get(14)?,
        moved_bytes: r.try_get(15)?,
        error: r.try_get(16)?,
        updated_at: r.try_get(17)?,
    })
}

impl PostgresCatalog {
    async fn create_job_tx(&self, job: &JobRow) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT id FROM migration_jobs_lock WHERE id = 1 FOR UPDATE")
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::Corrupt {
                reason: "the migration_jobs_lock row is missing".into(),
            })?;
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
        .bind(&job.policy)
        .bind(job.rate)
        .bind(job.grace_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn add_units_tx(&self, job: i64, units: &[UnitRow]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut bytes = 0i64;
        for chunk in units.chunks(UNITS_PER_INSERT) {
            let mut q = QueryBuilder::<Postgres>::new(format!(
                "INSERT INTO migration_units ({UNIT_COLS}) "
            ));
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
            q.build().persistent(false).execute(&mut *tx).await?;
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
        tx.commit().await?;
        Ok(())
    }

    async fn discard_units_tx(&self, job: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM migration_jobs WHERE id = $1 FOR UPDATE")
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
        tx.commit().await?;
        Ok(n)
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
        let mut tx = self.pool.begin().await?;
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UNIT_COLS} FROM migration_units \
             WHERE job = $1 AND state = 'committed' AND purge_after <= $2 AND lease_until < $2 \
             ORDER BY purge_after, token, category \
             LIMIT $3 \
             FOR UPDATE SKIP LOCKED"
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
                     LIMIT $3 \
                     FOR UPDATE SKIP LOCKED"
                )))
                .bind(job)
                .bind(now)
                .bind(left)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        let mut units = rows.iter().map(unit_from).collect::<Result<Vec<_>>>()?;
        if units.is_empty() {
            tx.commit().await?;
            return Ok(units);
        }
        let mut q = QueryBuilder::<Postgres>::new("UPDATE migration_units SET lease_owner = ");
        q.push_bind(owner)
            .push(", lease_until = ")
            .push_bind(lease_until)
            .push(", updated_at = ")
            .push_bind(now)
            .push(" WHERE job = ")
            .push_bind(job)
            .push(" AND (token, category) IN ");
        q.push_tuples(&units, |mut b, u| {
            b.push_bind(u.token.as_str()).push_bind(u.category.as_str());
        });
        let leased = q.build().persistent(false).execute(&mut *tx).await?;
        if leased.rows_affected() != units.len() as u64 {
            return Err(Error::Conflict {
                reason: format!(
                    "leased {} of {} claimed units",
                    leased.rows_affected(),
                    units.len()
                ),
            });
        }
        tx.commit().await?;
        for u in &mut units {
            u.lease_owner = Some(owner.to_string());
            u.lease_until = lease_until;
            u.updated_at = now;
        }
        Ok(units)
    }

    async fn renew_leases_tx(
        &self,
        job: i64,
        owner: &str,
        units: &[(String, String)],
        lease_until: Millis,
    ) -> Result<u64> {
        let mut held = 0;
        let mut tx = self.pool.begin().await?;
        for chunk in units.chunks(UNITS_PER_INSERT) {
            let mut q = QueryBuilder::<Postgres>::new("UPDATE migration_units SET lease_until = ");
            q.push_bind(lease_until)
                .push(" WHERE job = ")
                .push_bind(job)
                .push(" AND lease_owner = ")
                .push_bind(owner)
                .push(" AND (token, category) IN ");
            q.push_tuples(chunk, |mut b, (token, category)| {
                b.push_bind(token.as_str()).push_bind(category.as_str());
            });
            held += q
                .build()
                .persistent(false)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(held)
    }
}

#[async_trait]
impl JobStore for PostgresCatalog {
    async fn create_job(&self, job: &JobRow) -> Result<i64> {
        self.retry(|| self.create_job_tx(job)).await
    }

    async fn add_units(&self, job: i64, units: &[UnitRow]) -> Result<()> {
        self.retry(|| self.add_units_tx(job, units)).await
    }

    async fn discard_units(&self, job: i64) -> Result<u64> {
        self.retry(|| self.discard_units_tx(job)).await
    }

    async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn open_job(&self) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs \
             WHERE state IN ('planning', 'running', 'paused') ORDER BY id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs ORDER BY id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    async fn set_job_state(&self, id: i64, state: JobState, now: Millis) -> Result<()> {
        let finished = matches!(state, JobState::Cancelled | JobState::Done).then_some(now);
        let run = || async {
            Ok::<u64, Error>(
                sqlx::query("UPDATE migration_jobs SET state = $1, finished_at = $2 WHERE id = $3")
                    .bind(state.as_str())
                    .bind(finished)
                    .bind(id)
                    .execute(&self.pool)
                    .await?
                    .rows_affected(),
            )
        };
        if self.retry(run).await? == 0 {
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
        self.retry(|| self.claim_units_tx(job, owner, limit, lease_until, now))
            .await
    }

    async fn claim_unit(
        &self,
        job: i64,
        (token, category): (&str, &str),
        owner: &str,
        max_bytes: i64,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Option<UnitRow>> {
        let run = || async {
            // SKIP LOCKED: a claimer taking it right now wins; this one
            // returns None instead of waiting.
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {UNIT_COLS} FROM migration_units \
                 WHERE job = $1 AND token = $2 AND category = $3 AND state = 'pending' \
                   AND lease_until < $4 AND bytes <= $5 \
                 FOR UPDATE SKIP LOCKED"
            )))
            .bind(job)
            .bind(token)
            .bind(category)
            .bind(now)
            .bind(max_bytes)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.commit().await?;
                return Ok::<_, Error>(None);
            };
            let mut unit = unit_from(&row)?;
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
            tx.commit().await?;
            unit.lease_owner = Some(owner.to_string());
            unit.lease_until = lease_until;
            unit.updated_at = now;
            Ok(Some(unit))
        };
        self.retry(run).await
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
        self.retry(|| self.renew_leases_tx(job, owner, units, lease_until))
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
        let run = || async {
            let mut conn = self.pool.acquire().await?;
            finish_unit_in(&mut conn, token, category, &release).await
        };
        self.retry(run).await
    }

    async fn finish_unit_with_receipt(
        &self,
        token: &str,
        category: &str,
        release: &UnitRelease,
        receipt: &LedgerAppend,
    ) -> Result<bool> {
        let run = || async {
            let mut tx = self.pool.begin().await?;
            let held = finish_unit_in(&mut tx, token, category, release).await?;
            ledger_append(&mut tx, std::slice::from_ref(receipt)).await?;
            tx.commit().await?;
            Ok::<bool, Error>(held)
        };
        self.retry(run).await
    }

    async fn finish_units_with_receipts(&self, done: &[UnitReceipt]) -> Result<Vec<bool>> {
        let run = || async {
            let mut tx = self.pool.begin().await?;
            let mut held = Vec::with_capacity(done.len());
            for d in done {
                held.push(finish_unit_in(&mut tx, &d.token, &d.category, &d.release).await?);
            }
            let receipts: Vec<LedgerAppend> = done.iter().map(|d| d.receipt.clone()).collect();
            ledger_append(&mut tx, &receipts).await?;
            tx.commit().await?;
            Ok::<Vec<bool>, Error>(held)
        };
        self.retry(run).await
    }

    async fn cancel_pending(&self, job: i64, now: Millis) -> Result<u64> {
        // Live as `job_counts` counts it: a unit waiting to retry after an
        // error (no owner, `lease_until` = its retry time) is held by nobody.
        let run = || async {
            Ok::<u64, Error>(
                sqlx::query(
                    "UPDATE migration_units SET state = 'cancelled', updated_at = $1 \
                     WHERE job = $2 AND state = 'pending' \
                       AND (lease_owner IS NULL OR lease_until < $1)",
                )
                .bind(now)
                .bind(job)
                .execute(&self.pool)
                .await?
                .rows_affected(),
            )
        };
        self.retry(run).await
    }

    async fn job_counts(&self, job: i64, now: Millis) -> Result<JobCounts> {
        // One group per state, the in-flight units counted within the
        // pending one (as SQLite's count, which that keeps free of a sort).
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
            let state = UnitState::parse(&state).ok_or_else(|| corrupt("unit state"))?;
            let bytes: Option<i64> = r.try_get(3)?;
            c.add(state, r.try_get(1)?, r.try_get(2)?, bytes.unwrap_or(0));
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
        rows.iter().map(unit_from).collect()
    }
}
