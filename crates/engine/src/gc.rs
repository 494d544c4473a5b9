//! Garbage collection: blobs that no index row points at any more
//! (overwritten, deleted, erased, or written by a fenced write) are deleted
//! from every region they were written to; so are the blobs of writes whose
//! writer died before committing, once their intent is due, with the staged
//! copies such a writer left half-written. A pass runs after each overwrite
//! or deletion and during erasure; a server also runs one now and then
//! (`collect_garbage_every`), so a dead writer's leftovers go once due even
//! where nothing is overwritten.

use std::time::Duration;

use domicile_store::BlobPath;

use crate::engine::Engine;
use crate::error::Result;

/// What a collection pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub blobs: u64,
    pub copies_deleted: u64,
    pub failures: u64,
}

const PAGE: u32 = 256;

impl Engine {
    /// Runs a collection pass now and then every `every` until `stop`
    /// resolves (a pass in progress is dropped then: each of its deletions is
    /// idempotent, and what it had not finished stays queued). A failed pass
    /// is logged and retried at the next.
    pub async fn collect_garbage_every(
        &self,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let passes = async {
            loop {
                if let Some(r) = self.collect_now().await
                    && (r.blobs > 0 || r.failures > 0)
                {
                    tracing::info!(
                        blobs = r.blobs,
                        copies = r.copies_deleted,
                        failures = r.failures,
                        "garbage collected"
                    );
                }
                tokio::time::sleep(every).await;
            }
        };
        tokio::select! {
            () = stop => {}
            () = passes => {}
        }
    }

    /// Deletes every queued blob that is due. A blob that cannot be deleted
    /// everywhere stays queued for the next pass.
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let mut seen_failures = std::collections::HashSet::new();
        loop {
            // Due rows only: a write's intent waits for its writer.
            let rows = self
                .catalog
                .due_garbage(PAGE, crate::clock::now_millis())
                .await?;
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| !seen_failures.contains(&r.id))
                .collect();
            if rows.is_empty() {
                return Ok(report);
            }
            for row in rows {
                let path = BlobPath::new(&row.token, &row.category, &row.blob_id)?;
                let mut ok = true;
                for region in &row.regions {
                    // A region since removed from the config cannot be reached.
                    let Some(store) = self.regions.get(region) else {
                        continue;
                    };
                    match store.delete(&path).await {
                        Ok(()) => report.copies_deleted += 1,
                        Err(e) => {
                            tracing::warn!(region = %region, error = %e, "blob deletion failed");
                            ok = false;
                        }
                    }
                }
                if ok {
                    match self.catalog.finish_garbage(row.id, None).await {
                        // A concurrent pass finished the same row first.
                        Ok(()) | Err(domicile_catalog::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    report.blobs += 1;
                } else {
                    report.failures += 1;
                    seen_failures.insert(row.id);
                }
            }
        }
    }
}
