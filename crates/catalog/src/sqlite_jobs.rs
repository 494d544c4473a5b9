//! [`JobStore`] for the SQLite backend. Claims run in `BEGIN IMMEDIATE`
//! transactions, which SQLite serialises across processes; the PostgreSQL
//! backend uses `FOR UPDATE SKIP LOCKED` for the same contract.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::error::{Error, Result};
use crate::jobs::{
    JobCounts, JobRow, JobState, JobStore, JobWaiting, UnitOutcome, UnitReceipt, UnitRelease,
    UnitRow, UnitState,
};
use crate::model::{LedgerAppend, Millis};
use crate::sqlite::{SqliteCatalog, ledger_append};

const JOB_COLS: &str = "id, state, created_at, finished_at, policy, rate, grace_ms, units, bytes";
const UNIT_COLS: &str = "job, token, category, priority, from_regions, to_regions, custodian_from, \
    custodian_to, objects, bytes, state, attempts, lease_owner, lease_until, purge_after, moved_bytes, \
    error, updated_at";

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        reason: format!("unknown {what} in the migration tables"),
    }
}

fn job_from(r: &SqliteRow) -> Result<JobRow> {
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

/// Leases `unit` to `owner` until `lease_until` (in the caller's write
/// transaction), and updates the row in hand to match.
async fn lease(
    conn: &mut SqliteConnection,
    unit: &mut UnitRow,
    owner: &str,
    lease_until: Millis,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "UPDATE migration_units SET lease_owner = ?, lease_until = ?, updated_at = ? \
         WHERE job = ? AND token = ? AND category = ?",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(unit.job)
    .bind(&unit.token)
    .bind(&unit.category)
    .execute(&mut *conn)
    .await?;
    unit.lease_owner = Some(owner.to_string());
    unit.lease_until = lease_until;
    unit.updated_at = now;
    Ok(())
}

/// Records how a worker leaves a unit and releases its lease, on the
/// caller's connection (alone, or inside its transaction). False (and
/// nothing changed) if the worker no longer holds the lease.
pub(crate) async fn finish_unit_in(
    conn: &mut SqliteConnection,
    token: &str,
    category: &str,
    release: &UnitRelease,
) -> Result<bool> {
    let c = release.outcome.columns();
    // A retried unit keeps its state when it was already committed: only
    // its purge failed.
    let changed = sqlx::query(
        "UPDATE migration_units SET \
            state = CASE WHEN ? = 'pending' AND state = 'committed' THEN 'committed' ELSE ? END, \
            purge_after = COALESCE(?, purge_after), moved_bytes = COALESCE(?, moved_bytes), \
            error = ?, lease_owner = NULL, lease_until = ?, attempts = attempts + ?, \
            updated_at = ? \
         WHERE job = ? AND token = ? AND category = ? AND lease_owner = ?",
    )
    .bind(c.state.as_str())
    .bind(c.state.as_str())
    .bind(c.purge_after)
    .bind(c.moved_bytes)
    .bind(c.error)
    .bind(c.lease_until)
    .bind(c.failed)
    .bind(release.now)
    .bind(release.job)
    .bind(token)
    .bind(category)
    .bind(&release.owner)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

fn unit_from(r: &SqliteRow) -> Result<UnitRow> {
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

#[async_trait]
impl JobStore for SqliteCatalog {
    async fn create_job(&self, job: &JobRow) -> Result<i64> {
        let mut tx = self.write_tx().await?;
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
            "INSERT INTO migration_jobs (state, created_at, finished_at, policy, rate, grace_ms, units, bytes) \
             VALUES ('planning', ?, NULL, ?, ?, ?, 0, 0) RETURNING id",
        )
        .bind(job.created_at)
        .bind(&job.policy)
        .bind(job.rate)
        .bind(job.grace_ms)
        .fetch_one(&mut *tx)
        .await?;
        self.commit(tx).await?;
        Ok(id)
    }

    async fn add_units(&self, job: i64, units: &[UnitRow]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let mut bytes = 0i64;
        for u in units {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO migration_units ({UNIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, 0, 0, 0, NULL, ?)"
            )))
            .bind(job)
            .bind(&u.token)
            .bind(&u.category)
            .bind(u.priority)
            .bind(u.from.join(","))
            .bind(u.to.join(","))
            .bind(&u.custodian_from)
            .bind(&u.custodian_to)
            .bind(u.objects)
            .bind(u.bytes)
            .bind(UnitState::Pending.as_str())
            .bind(u.updated_at)
            .execute(&mut *tx)
            .await?;
            bytes += u.bytes;
        }
        sqlx::query("UPDATE migration_jobs SET units = units + ?, bytes = bytes + ? WHERE id = ?")
            .bind(units.len() as i64)
            .bind(bytes)
            .bind(job)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(())
    }

    async fn discard_units(&self, job: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM migration_jobs WHERE id = ?")
                .bind(job)
                .fetch_optional(&mut *tx)
                .await?;
        if state.as_deref() != Some("planning") {
            return Err(Error::Conflict {
                reason: format!("migration job {job} is not being planned"),
            });
        }
        let n = sqlx::query("DELETE FROM migration_units WHERE job = ?")
            .bind(job)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE migration_jobs SET units = 0, bytes = 0 WHERE id = ?")
            .bind(job)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(n)
    }

    async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn open_job(&self) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs WHERE state IN ('planning', 'running', 'paused') ORDER BY id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM migration_jobs ORDER BY id DESC LIMIT ?"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    async fn set_job_state(&self, id: i64, state: JobState, now: Millis) -> Result<()> {
        let finished = matches!(state, JobState::Cancelled | JobState::Done).then_some(now);
        let changed =
            sqlx::query("UPDATE migration_jobs SET state = ?, finished_at = ? WHERE id = ?")
                .bind(state.as_str())
                .bind(finished)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        self.durable().await?;
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
        // Due purges come first, oldest first: old copies (in regions the
        // policy may now forbid) last only the grace period, not until every
        // other unit of the job has been copied. Then pending units by
        // priority. Each is one ordered index scan (schema 0004): no sort,
        // however many units the job has.
        let mut tx = self.write_tx().await?;
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UNIT_COLS} FROM migration_units \
             WHERE job = ? AND state = 'committed' AND purge_after <= ? AND lease_until < ? \
             ORDER BY purge_after, token, category LIMIT ?"
        )))
        .bind(job)
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let left = i64::from(limit) - rows.len() as i64;
        if left > 0 {
            rows.extend(
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {UNIT_COLS} FROM migration_units \
                     WHERE job = ? AND state = 'pending' AND lease_until < ? \
                     ORDER BY priority, token, category LIMIT ?"
                )))
                .bind(job)
                .bind(now)
                .bind(left)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        let mut units = rows.iter().map(unit_from).collect::<Result<Vec<_>>>()?;
        for u in &mut units {
            lease(&mut tx, u, owner, lease_until, now).await?;
        }
        // A claim lost to a power cut is only a unit claimed again. A purge
        // is not undone by one: it is handed out only once the move it
        // follows (perhaps committed lazily) is on disk.
        self.commit_lazily(tx).await?;
        if units.iter().any(|u| u.state == UnitState::Committed) {
            self.durable().await?;
        }
        Ok(units)
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
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UNIT_COLS} FROM migration_units \
             WHERE job = ? AND token = ? AND category = ? AND state = 'pending' \
               AND lease_until < ? AND bytes <= ?"
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
        let mut unit = unit_from(&row)?;
        lease(&mut tx, &mut unit, owner, lease_until, now).await?;
        self.commit(tx).await?;
        Ok(Some(unit))
    }

    async fn renew_leases(
        &self,
        job: i64,
        owner: &str,
        units: &[(String, String)],
        lease_until: Millis,
    ) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let mut held = 0;
        for (token, category) in units {
            held += sqlx::query(
                "UPDATE migration_units SET lease_until = ? \
                 WHERE job = ? AND token = ? AND category = ? AND lease_owner = ?",
            )
            .bind(lease_until)
            .bind(job)
            .bind(token)
            .bind(category)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        self.commit(tx).await?;
        Ok(held)
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
        let mut conn = self.pool.acquire().await?;
        let held = finish_unit_in(&mut conn, token, category, &release).await?;
        drop(conn);
        self.durable().await?;
        Ok(held)
    }

    async fn finish_unit_with_receipt(
        &self,
        token: &str,
        category: &str,
        release: &UnitRelease,
        receipt: &LedgerAppend,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let held = finish_unit_in(&mut tx, token, category, release).await?;
        ledger_append(&mut tx, receipt).await?;
        self.commit(tx).await?;
        Ok(held)
    }

    async fn finish_units_with_receipts(&self, done: &[UnitReceipt]) -> Result<Vec<bool>> {
        let mut tx = self.write_tx().await?;
        let mut held = Vec::with_capacity(done.len());
        for d in done {
            held.push(finish_unit_in(&mut tx, &d.token, &d.category, &d.release).await?);
            ledger_append(&mut tx, &d.receipt).await?;
        }
        self.commit(tx).await?;
        Ok(held)
    }

    async fn cancel_pending(&self, job: i64, now: Millis) -> Result<u64> {
        // Live as `job_counts` counts it: a unit waiting to retry after an
        // error (no owner, `lease_until` = its retry time) is held by nobody.
        let cancelled = sqlx::query(
            "UPDATE migration_units SET state = 'cancelled', updated_at = ? \
             WHERE job = ? AND state = 'pending' \
               AND (lease_owner IS NULL OR lease_until < ?)",
        )
        .bind(now)
        .bind(job)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.durable().await?;
        Ok(cancelled)
    }

    async fn job_counts(&self, job: i64, now: Millis) -> Result<JobCounts> {
        // Grouped by state alone, which the (job, state, …) indexes give in
        // order: no sort of the job's units.
        let rows = sqlx::query(
            "SELECT state, COUNT(*), \
                    SUM(lease_owner IS NOT NULL AND lease_until >= ?), \
                    CAST(SUM(bytes) AS BIGINT) \
             FROM migration_units WHERE job = ? GROUP BY state",
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
            "SELECT EXISTS (SELECT 1 FROM migration_units WHERE job = ? AND state = 'pending'), \
                    EXISTS (SELECT 1 FROM migration_units WHERE job = ? AND state = 'committed')",
        )
        .bind(job)
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
            "SELECT {UNIT_COLS} FROM migration_units WHERE job = ? AND state = ? \
             ORDER BY priority, token, category LIMIT ?"
        )))
        .bind(job)
        .bind(state.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(unit_from).collect()
    }
}
