//! What the collector is set with ([`GcOptions`]) and what a process
//! remembers between passes of each region's deletions ([`GcState`]: the
//! backoff from a region that keeps failing). Apart from the passes
//! themselves (`gc`), so the engine can hold both without depending on them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How garbage is collected (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// How long a replaced or deleted blob stays readable before it is due
    /// for deletion, so that reads in flight finish. `serve --gc-grace`.
    pub grace: Duration,
    /// The most garbage rows one pass takes.
    pub pass_rows: u32,
    /// How long one pass may run; what it did not reach waits for the next.
    pub pass_time: Duration,
    /// How long one deletion in one region may take before it counts as
    /// failed (an unreachable store otherwise retries for minutes).
    pub delete_timeout: Duration,
    /// How long a row whose deletion failed waits before its first retry;
    /// the wait doubles with each failed attempt.
    pub retry_base: Duration,
    /// The longest a failed row waits between tries.
    pub retry_max: Duration,
    /// Failed deletions in a row, in one region, after which a pass backs
    /// off from that region.
    pub region_failures: u32,
    /// The first backoff from a region; it doubles each time the region
    /// fails again after one, until a deletion there succeeds.
    pub region_backoff: Duration,
    /// The longest backoff from a region.
    pub region_backoff_max: Duration,
    /// How long a multipart upload may stay incomplete before its staged
    /// parts are collected (`serve --multipart-expiry`, 7 days).
    pub upload_expiry: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(300),
            pass_rows: 2_000,
            pass_time: Duration::from_secs(30),
            delete_timeout: Duration::from_secs(20),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3_600),
            region_failures: 3,
            region_backoff: Duration::from_secs(10),
            region_backoff_max: Duration::from_secs(600),
            upload_expiry: Duration::from_secs(7 * 86_400),
        }
    }
}

/// What this process knows of each region's deletions: a region is backed
/// off from after failures in a row, for a growing interval.
#[derive(Debug, Default)]
pub(crate) struct GcState {
    regions: Mutex<HashMap<String, RegionHealth>>,
}

#[derive(Debug, Default, Clone)]
struct RegionHealth {
    /// Failed deletions in a row since the last success or backoff.
    failures: u32,
    /// Backoffs in a row since the last success: the next one is longer.
    backoffs: u32,
    /// Backed off from until then.
    until: Option<Instant>,
}

impl GcState {
    /// Until when deletions in `region` are put off, if they are now.
    pub(super) fn backed_off(&self, region: &str) -> Option<Instant> {
        let regions = self.regions.lock().ok()?;
        regions
            .get(region)
            .and_then(|h| h.until)
            .filter(|until| *until > Instant::now())
    }

    /// The regions backed off from now, sorted.
    pub(super) fn backed_off_now(&self) -> Vec<String> {
        let Ok(regions) = self.regions.lock() else {
            return Vec::new();
        };
        let at = Instant::now();
        let mut out: Vec<String> = regions
            .iter()
            .filter(|(_, h)| h.until.is_some_and(|u| u > at))
            .map(|(r, _)| r.clone())
            .collect();
        out.sort();
        out
    }

    pub(super) fn succeeded(&self, region: &str) {
        let Ok(mut regions) = self.regions.lock() else {
            return;
        };
        if let Some(h) = regions.remove(region)
            && h.backoffs > 0
        {
            tracing::info!(region = %region, "region reachable again: collecting its garbage");
        }
    }

    /// Records a failed deletion; returns the backoff it starts, if any.
    pub(super) fn failed(&self, region: &str, opts: &GcOptions) -> Option<Duration> {
        let mut regions = self.regions.lock().ok()?;
        let h = regions.entry(region.to_string()).or_default();
        // Deletions that were in flight when the backoff began belong to
        // the same outage: they neither start nor lengthen one.
        if h.until.is_some_and(|until| until > Instant::now()) {
            return None;
        }
        h.failures += 1;
        // A region failing again after a backoff is still down: back off
        // at once, for longer.
        if h.failures < opts.region_failures.max(1) && h.backoffs == 0 {
            return None;
        }
        let wait = doubled(opts.region_backoff, h.backoffs, opts.region_backoff_max);
        h.backoffs = h.backoffs.saturating_add(1);
        h.failures = 0;
        h.until = Some(Instant::now() + wait);
        Some(wait)
    }
}

#[cfg(test)]
impl GcState {
    /// Ends a region's backoff now, as time would.
    pub(super) fn expire(&self, region: &str) {
        if let Ok(mut regions) = self.regions.lock()
            && let Some(h) = regions.get_mut(region)
        {
            h.until = Some(Instant::now());
        }
    }
}

/// `base` doubled `times` times, at most `max`.
pub(super) fn doubled(base: Duration, times: u32, max: Duration) -> Duration {
    base.checked_mul(1u32.checked_shl(times.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}
