//! The pace of a job's copies: a byte rate shared by this process's workers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Paces copies to a byte rate shared by this process's workers.
#[derive(Debug)]
pub(super) struct Pacer {
    rate: u64,
    next: Mutex<Instant>,
}

impl Pacer {
    pub(super) fn new(rate: u64) -> Self {
        Pacer {
            rate,
            next: Mutex::new(Instant::now()),
        }
    }

    pub(super) async fn take(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
