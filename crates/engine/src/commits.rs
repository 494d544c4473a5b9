//! Group commit of concurrent writes' index rows: a write enqueues its
//! commit, one writer task commits what is queued as one batch
//! (`Catalog::commit_objects`: one transaction, one log sync), and each
//! write is answered with its own item's result only once its batch is
//! durable.
//!
//! While a batch commits, the next one gathers; up to [`WRITERS`] batches
//! are in flight at once, so one batch's log sync overlaps the next one's
//! statements (the catalog shares a sync among the commits before it). A
//! write whose request is dropped while queued is still committed or
//! refused as if it waited: the writer task, not the request, owns the
//! batch, so an item is never lost between being taken and being answered.
//! A process killed with items queued or in a batch acknowledged none of
//! them; their blobs have write intents, so they are collected.

use std::sync::{Arc, Mutex};

use domicile_catalog::{Catalog, CommitOutcome, ObjectCommit};
use tokio::sync::oneshot;

/// Most items in one batch (one transaction).
const MAX_BATCH: usize = 256;
/// Most batches in flight at once.
const WRITERS: usize = 2;

type Reply = oneshot::Sender<domicile_catalog::Result<CommitOutcome>>;

/// The queue of commits waiting for a writer (one per engine).
#[derive(Debug, Default)]
pub(crate) struct CommitQueue {
    state: Mutex<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    items: Vec<(ObjectCommit, Reply)>,
    /// Writer tasks running.
    writers: usize,
    /// Batches committed, and items in them (for tests and profiles).
    batches: u64,
    committed: u64,
}

impl CommitQueue {
    /// Commits `item` in the next batch; returns its own result, once the
    /// batch is durable.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        catalog: &Arc<dyn Catalog>,
        item: ObjectCommit,
    ) -> domicile_catalog::Result<CommitOutcome> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = self.state.lock().unwrap_or_else(|p| p.into_inner());
            q.items.push((item, reply));
            let start = q.writers < WRITERS;
            if start {
                q.writers += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().write(catalog.clone()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(domicile_catalog::Error::Io {
                path: "(commit queue)".into(),
                source: std::io::Error::other("the commit writer stopped before answering"),
            })
        })
    }

    /// A writer task: commits batches while items are queued.
    async fn write(self: Arc<Self>, catalog: Arc<dyn Catalog>) {
        let _panic = Unwinding(&self);
        loop {
            let batch: Vec<(ObjectCommit, Reply)> = {
                let mut q = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if q.items.is_empty() {
                    q.writers -= 1;
                    return;
                }
                let n = q.items.len().min(MAX_BATCH);
                q.batches += 1;
                q.committed += n as u64;
                q.items.drain(..n).collect()
            };
            let (items, replies): (Vec<ObjectCommit>, Vec<Reply>) = batch.into_iter().unzip();
            let results = catalog.commit_objects(&items).await;
            debug_assert_eq!(results.len(), replies.len());
            for (reply, result) in replies.into_iter().zip(results) {
                // A request that went away does not need its answer.
                let _ = reply.send(result);
            }
        }
    }

    /// Batches committed so far, and the items in them.
    #[cfg_attr(not(feature = "test-support"), allow(dead_code))]
    pub(crate) fn counts(&self) -> (u64, u64) {
        let q = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (q.batches, q.committed)
    }
}

/// Gives a writer task's place back if it panics (it returns normally only
/// from under the queue's lock, having given it back there): later items
/// then start a writer of their own instead of waiting for ever.
struct Unwinding<'a>(&'a CommitQueue);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            q.writers -= 1;
        }
    }
}
