//! Garbage collection: blobs that no index row points at any more
//! (overwritten, deleted, erased, or written by a fenced write) are deleted
//! from every region they were written to; so are the blobs of writes whose
//! writer died before committing, once their intent is due.

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
