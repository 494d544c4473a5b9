//! Garbage collection, off the request path: blobs that no index row points
//! at any more (overwritten, deleted, erased, or written by a write that
//! never committed) are deleted from every region they were written to; so
//! are the blobs of writes whose writer died before committing, once their
//! intent is due, with the staged copies such a writer left half-written.
//!
//! - **When a blob is due.** A replaced or deleted blob stays readable for
//!   a grace period ([`GcOptions::grace`], 5 minutes by default), so a read
//!   that opened the old version before the overwrite finishes with it. A
//!   blob nobody can read (a write that was refused, fenced or carried
//!   elsewhere, copies outside the placement) is due at once. A write's
//!   intent is due after `EngineOptions::intent_ttl`; a migration's
//!   left-behind blobs after the job's own grace period. Erasure deletes
//!   the subject's blobs itself, at once.
//! - **Who collects.** No request does: an overwrite or a delete only
//!   queues (in the transaction of its commit). `serve` runs
//!   [`Engine::collect_garbage_every`], and each pass
//!   ([`Engine::collect_garbage`]) is bounded: at most
//!   [`GcOptions::pass_rows`] rows and [`GcOptions::pass_time`], each
//!   deletion at most [`GcOptions::delete_timeout`].
//! - **A row that fails** keeps the regions its blob is still in, counts an
//!   attempt and waits for its next try (exponential, from
//!   [`GcOptions::retry_base`] to [`GcOptions::retry_max`]), all in the
//!   catalog (`Catalog::retry_garbage`): the next pass takes the rows
//!   behind it first, and every process sharing the catalog sees it.
//! - **A region that is down** (after [`GcOptions::region_failures`]
//!   deletions in a row fail there) is backed off from, in this process,
//!   for a growing interval ([`GcOptions::region_backoff`] doubling up to
//!   [`GcOptions::region_backoff_max`]): its rows are put off until then
//!   without being tried (their other regions are still cleaned), instead
//!   of each one waiting for its own timeout. A backoff is logged once when
//!   it starts, and the region's return once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use domicile_catalog::{GarbageRetry, GarbageRow};
use domicile_store::BlobPath;
use futures::StreamExt;

use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::Result;

pub(crate) mod settings;

pub use settings::GcOptions;
use settings::doubled;

/// What a collection pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReport {
    /// Rows finished: their blob is gone from every region.
    pub blobs: u64,
    /// Deletions of a blob from one region that succeeded.
    pub copies_deleted: u64,
    /// Rows whose deletion failed somewhere: retried later.
    pub failures: u64,
    /// Rows put off, untried, because a region they name is backed off from.
    pub put_off: u64,
    /// The regions this pass found backed off from, or began to back off from.
    pub regions_backed_off: Vec<String>,
    /// Whether the pass stopped at its bound (rows or time) with rows left.
    pub more: bool,
}

/// Rows read per page.
const PAGE: u32 = 256;
/// Rows deleted at once within a page.
const IN_FLIGHT: usize = 8;
/// The pause before the next pass when a pass stopped at its bound.
const CATCH_UP: Duration = Duration::from_secs(1);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What became of one row.
enum Outcome {
    Finished {
        copies: u64,
    },
    Retry {
        retry: GarbageRetry,
        copies: u64,
    },
    /// The pass ran out of time before it tried the row.
    Untried,
}

impl GcReport {
    /// Adds a later pass's counts to these; `more` is the later pass's.
    fn absorb(&mut self, later: GcReport) {
        self.blobs += later.blobs;
        self.copies_deleted += later.copies_deleted;
        self.failures += later.failures;
        self.put_off += later.put_off;
        for region in later.regions_backed_off {
            if !self.regions_backed_off.contains(&region) {
                self.regions_backed_off.push(region);
            }
        }
        self.more = later.more;
    }
}

impl Engine {
    /// Runs bounded passes one after the other until one does not stop at
    /// its bound, or one that did collected nothing (it would only meet the
    /// same rows again): what a process without a background collector
    /// (`domicile gc`) runs. The passes' counts, summed.
    pub async fn collect_all_due(&self) -> Result<GcReport> {
        let mut total = GcReport::default();
        loop {
            let pass = self.collect_garbage().await?;
            let go_on = pass.more && pass.blobs > 0;
            total.absorb(pass);
            if !go_on {
                return Ok(total);
            }
        }
    }

    /// Runs a bounded collection pass now and then every `every` until
    /// `stop` resolves (a pass in progress is dropped then: each of its
    /// deletions is idempotent, and what it had not finished stays queued).
    /// A pass that stopped at its bound is followed by the next one soon.
    /// A failed pass is logged and retried at the next.
    pub async fn collect_garbage_every(
        &self,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let passes = async {
            loop {
                let next = match self.collect_garbage().await {
                    Ok(r) => {
                        if r.blobs > 0 || r.failures > 0 || r.put_off > 0 {
                            tracing::info!(
                                blobs = r.blobs,
                                copies = r.copies_deleted,
                                failures = r.failures,
                                put_off = r.put_off,
                                backed_off = ?r.regions_backed_off,
                                more = r.more,
                                "garbage collection pass"
                            );
                        } else {
                            tracing::debug!("garbage collection pass: nothing due");
                        }
                        if r.more { every.min(CATCH_UP) } else { every }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "garbage collection pass failed; retried at the next");
                        every
                    }
                };
                tokio::time::sleep(next).await;
            }
        };
        tokio::select! {
            () = stop => {}
            () = passes => {}
        }
    }

    /// One bounded collection pass: deletes the blobs of due garbage rows
    /// (at most [`GcOptions::pass_rows`], for at most
    /// [`GcOptions::pass_time`]), oldest due first. A row that cannot be
    /// deleted everywhere is put off in the catalog (see the module's
    /// documentation), so the next pass takes the rows behind it first.
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        let opts = &self.options.gc;
        let started = Instant::now();
        let now = now_millis();
        let mut report = GcReport::default();
        let mut seen = HashSet::new();
        let mut taken: u32 = 0;
        loop {
            let left = opts.pass_rows.saturating_sub(taken);
            if left == 0 || started.elapsed() >= opts.pass_time {
                // Whether anything is left is one more read away.
                report.more = !self.catalog.due_garbage(1, now).await?.is_empty();
                break;
            }
            let rows: Vec<GarbageRow> = self
                .catalog
                .due_garbage(left.min(PAGE), now)
                .await?
                .into_iter()
                .filter(|r| seen.insert(r.id))
                .collect();
            if rows.is_empty() {
                break;
            }
            taken += rows.len() as u32;
            let outcomes: Vec<Result<Outcome>> = futures::stream::iter(rows)
                .map(|row| async move { self.collect_row(&row, started).await })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            let mut retries = Vec::new();
            for out in outcomes {
                match out? {
                    Outcome::Finished { copies } => {
                        report.blobs += 1;
                        report.copies_deleted += copies;
                    }
                    Outcome::Retry { retry, copies } => {
                        report.copies_deleted += copies;
                        if retry.failed {
                            report.failures += 1;
                        } else if retry.next_try > now {
                            report.put_off += 1;
                        }
                        retries.push(retry);
                    }
                    Outcome::Untried => report.more = true,
                }
            }
            self.catalog.retry_garbage(&retries).await?;
        }
        report.regions_backed_off = self.gc.backed_off_now();
        Ok(report)
    }

    /// Deletes one row's blob from each of its regions that is not backed
    /// off from, and finishes the row or says when to take it next.
    async fn collect_row(&self, row: &GarbageRow, started: Instant) -> Result<Outcome> {
        if let Some(upload) = crate::multipart::swept_upload(&row.blob_id) {
            return self.sweep_row(row, upload, started).await;
        }
        let opts = &self.options.gc;
        let path = BlobPath::new(&row.token, &row.category, &row.blob_id)?;
        let mut left = Vec::new();
        let mut failed = false;
        let mut put_off_until: Option<Instant> = None;
        let mut copies = 0;
        if started.elapsed() >= opts.pass_time {
            return Ok(Outcome::Untried);
        }
        for region in &row.regions {
            // A region since removed from the config cannot be reached.
            let Some(store) = self.regions.get(region) else {
                continue;
            };
            if started.elapsed() >= opts.pass_time {
                left.push(region.clone());
                continue;
            }
            if let Some(until) = self.gc.backed_off(region) {
                left.push(region.clone());
                put_off_until = put_off_until.max(Some(until));
                continue;
            }
            let error = match tokio::time::timeout(opts.delete_timeout, store.delete(&path)).await {
                Ok(Ok(())) => {
                    self.gc.succeeded(region);
                    copies += 1;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {:?}", opts.delete_timeout),
            };
            failed = true;
            left.push(region.clone());
            if let Some(wait) = self.gc.failed(region, opts) {
                tracing::warn!(
                    region = %region,
                    error = %error,
                    backoff_secs = wait.as_secs_f64(),
                    "blob deletions fail in this region: backing off from it"
                );
            } else {
                tracing::debug!(region = %region, error = %error, "blob deletion failed");
            }
        }
        if left.is_empty() {
            match self.catalog.finish_garbage(row.id, None).await {
                // A concurrent pass finished the same row first.
                Ok(()) | Err(domicile_catalog::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Outcome::Finished { copies });
        }
        let now = now_millis();
        let next_try = if failed {
            let attempts = u32::try_from(row.attempts.max(0)).unwrap_or(u32::MAX);
            now + millis(doubled(opts.retry_base, attempts, opts.retry_max))
        } else {
            // Put off until its regions' backoff ends (or, out of time,
            // left due).
            put_off_until.map_or(row.next_try, |until| {
                now + millis(until.saturating_duration_since(Instant::now()))
            })
        };
        Ok(Outcome::Retry {
            retry: GarbageRetry {
                id: row.id,
                regions: left,
                next_try,
                failed,
            },
            copies,
        })
    }

    /// Deletes the blobs an erasure queued, and everything else under the
    /// subject's prefix, from every region: an erasure's own cleanup, which
    /// runs no pass over other subjects' garbage. Each row whose regions
    /// were all cleaned is finished; a row naming a region that failed
    /// stays queued for the background pass, and the first failure is
    /// returned. Returns how many objects were deleted.
    /// A multipart upload's sweep row (see [`crate::multipart`]): done, put
    /// off while a manifest names the upload, or retried after a failure.
    async fn sweep_row(&self, row: &GarbageRow, upload: &str, started: Instant) -> Result<Outcome> {
        let opts = &self.options.gc;
        if started.elapsed() >= opts.pass_time {
            return Ok(Outcome::Untried);
        }
        let (next_try, failed) = match self.sweep_upload(row, upload).await {
            Ok(None) => {
                match self.catalog.finish_garbage(row.id, None).await {
                    Ok(()) | Err(domicile_catalog::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Outcome::Finished { copies: 0 });
            }
            Ok(Some(next_try)) => (next_try, false),
            Err(e) => {
                tracing::debug!(error = %e, "a multipart upload's sweep failed; retried later");
                let attempts = u32::try_from(row.attempts.max(0)).unwrap_or(u32::MAX);
                let wait = doubled(opts.retry_base, attempts, opts.retry_max);
                (now_millis() + millis(wait), true)
            }
        };
        Ok(Outcome::Retry {
            retry: GarbageRetry {
                id: row.id,
                regions: row.regions.clone(),
                next_try,
                failed,
            },
            copies: 0,
        })
    }

    pub(crate) async fn purge_erased(&self, token: &str, rows: &[GarbageRow]) -> Result<u64> {
        // Whatever else the subject's prefix holds goes too: staging files
        // of writes killed mid-way (the subject's ciphertext, shredded but
        // not to be left behind) and anything foreign put there.
        let prefix = domicile_store::layout::prefix_for(token)?;
        let mut deleted = 0;
        let mut failed = HashSet::new();
        let mut first_error = None;
        for (id, store) in &self.regions {
            match store.delete_prefix(&prefix).await {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(region = %id, error = %e, "an erased subject's blobs could not be deleted here; the background collection retries");
                    failed.insert(id.as_str());
                    first_error.get_or_insert(e);
                }
            }
        }
        for row in rows {
            if row.regions.iter().any(|r| failed.contains(r.as_str())) {
                continue;
            }
            match self.catalog.finish_garbage(row.id, None).await {
                Ok(()) | Err(domicile_catalog::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::settings::GcState;
    use super::*;

    #[test]
    fn waits_double_up_to_their_bound() {
        let s = Duration::from_secs;
        assert_eq!(doubled(s(10), 0, s(600)), s(10));
        assert_eq!(doubled(s(10), 3, s(600)), s(80));
        assert_eq!(doubled(s(10), 6, s(600)), s(600));
        assert_eq!(doubled(s(10), 40, s(600)), s(600));
        assert_eq!(doubled(s(10), u32::MAX, s(600)), s(600));
    }

    #[test]
    fn a_region_is_backed_off_from_after_failures_in_a_row_and_longer_each_time() {
        let opts = GcOptions {
            region_failures: 3,
            region_backoff: Duration::from_secs(10),
            region_backoff_max: Duration::from_secs(25),
            ..GcOptions::default()
        };
        let state = GcState::default();
        assert_eq!(state.failed("r", &opts), None);
        // A success in between starts the count again.
        state.succeeded("r");
        assert_eq!(state.failed("r", &opts), None);
        assert_eq!(state.failed("r", &opts), None);
        assert!(state.backed_off("r").is_none());
        assert_eq!(state.failed("r", &opts), Some(Duration::from_secs(10)));
        assert!(state.backed_off("r").is_some());
        assert!(state.backed_off("other").is_none());
        // Failures of deletions in flight during the backoff change nothing.
        assert_eq!(state.failed("r", &opts), None);
        // Failing again after a backoff: at once, for longer, up to the bound.
        state.expire("r");
        assert_eq!(state.failed("r", &opts), Some(Duration::from_secs(20)));
        state.expire("r");
        assert_eq!(state.failed("r", &opts), Some(Duration::from_secs(25)));
        state.succeeded("r");
        assert!(state.backed_off("r").is_none());
        assert_eq!(state.failed("r", &opts), None, "healthy again");
    }
}
