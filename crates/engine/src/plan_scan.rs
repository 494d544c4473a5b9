//! The plan's scan of every placement, on every core.
//!
//! Tokens are keyed hashes in hex, so their first two hex digits split
//! them into [`BUCKETS`] ranges of about the same size. Each of a few
//! workers plans every n-th range with its own [`Planner`] (the catalog
//! reads its next page while the worker plans the current one), and their
//! [`Tally`]s merge into the summary one planner would have made (see
//! `domicile_core::plan`). The moves are handed over in token order: the
//! caller drains the ranges in order, each from the worker that plans it,
//! and a worker that runs ahead of the caller waits once it holds
//! [`MOVES_AHEAD`] moves not yet handed over. So memory stays bounded by a
//! few pages per worker, however many subjects there are.
//!
//! A catalog that fits in one page is planned from that page alone,
//! without the ranges.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use domicile_catalog::{Catalog, PlacementSummary, TokenRange};
use domicile_core::Config;
use domicile_core::ids::RegionId;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::plan::{Current, Move, PlanSummary, Planner, Tally};
use tokio::sync::{Semaphore, mpsc};

use crate::error::{Error, Result};
use crate::reports::PAGE;

/// Ranges of tokens the scan is split into: by the first two hex digits.
pub const BUCKETS: usize = 256;

/// Moves a worker may hold that the caller has not taken yet.
pub const MOVES_AHEAD: usize = 4 * PAGE as usize;

/// Which moves a plan builds and hands over; its totals always count
/// every move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveList {
    /// Every move, in token order.
    All,
    /// The first `n` moves in token order (none for 0): the others are
    /// counted without being built.
    First(usize),
}

impl MoveList {
    fn wanted(self) -> usize {
        match self {
            MoveList::All => usize::MAX,
            MoveList::First(n) => n,
        }
    }
}

/// The workers a scan runs: one per core, at least two (one plans while
/// the other's page is read), at most eight.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// The range of bucket `i` of [`BUCKETS`]: tokens from its two hex digits
/// up to the next bucket's; the first range is open below and the last
/// above, so tokens of any shape fall in exactly one.
fn bucket(i: usize, bounds: &[String]) -> TokenRange<'_> {
    TokenRange {
        from: i
            .checked_sub(1)
            .and_then(|j| bounds.get(j))
            .map(String::as_str),
        until: bounds.get(i).map(String::as_str),
    }
}

/// "01" … "ff": the lower ends of buckets 1 to 255.
fn bounds() -> Vec<String> {
    (1..BUCKETS).map(|i| format!("{i:02x}")).collect()
}

/// Reads a catalog row as the planner's `Current`, parsing a placement's
/// regions only when they differ from the previous row's (neighbouring
/// placements mostly share them).
#[derive(Debug, Default)]
struct Rows {
    regions: Vec<RegionId>,
    parsed: Option<Vec<String>>,
}

impl Rows {
    fn current<'a>(&'a mut self, p: &'a PlacementSummary) -> Result<Current<'a>> {
        let home: Jurisdiction = p
            .home
            .parse()
            .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
        if self.parsed.as_ref() != Some(&p.regions) {
            self.regions.clear();
            self.regions
                .extend(p.regions.iter().filter_map(|r| r.parse().ok()));
            self.parsed = Some(p.regions.clone());
        }
        Ok(Current {
            token: &p.token,
            home,
            category: &p.category,
            regions: &self.regions,
            custodian: &p.custodian,
            objects: p.objects.max(0) as u64,
            bytes: p.bytes.max(0) as u64,
        })
    }
}

/// Plans one page; builds at most `room` moves (the rest are counted).
fn plan_page(
    planner: &mut Planner<'_>,
    rows: &mut Rows,
    page: &[PlacementSummary],
    room: usize,
) -> Result<Vec<Move>> {
    let mut moves = Vec::new();
    for p in page {
        let cur = rows.current(p)?;
        if moves.len() < room {
            if let Some(m) = planner
                .observe(cur)
                .map_err(|e| Error::Config(e.to_string()))?
            {
                moves.push(m);
            }
        } else {
            planner
                .observe_unlisted(cur)
                .map_err(|e| Error::Config(e.to_string()))?;
        }
    }
    Ok(moves)
}

/// One bucket's moves from one page, or the end of the bucket.
#[derive(Debug)]
struct Batch {
    bucket: usize,
    moves: Vec<Move>,
    end: bool,
}

/// What the caller hands moves to, and how many it has taken.
struct Handover {
    /// Moves handed over so far (shared with the workers, which stop
    /// building moves once the caller has all it wants).
    taken: Arc<AtomicUsize>,
    wanted: usize,
}

/// Plans `desired` over every placement of `catalog`, made under
/// `present`, handing the moves `list` asks for to `on_batch` in token
/// order.
pub async fn plan<F, Fut>(
    catalog: Arc<dyn Catalog>,
    present: Arc<Config>,
    desired: Arc<Config>,
    list: MoveList,
    on_batch: F,
) -> Result<PlanSummary>
where
    F: FnMut(Vec<Move>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    plan_paged(catalog, present, desired, list, PAGE, on_batch).await
}

/// [`plan`] in pages of `page` placements.
async fn plan_paged<F, Fut>(
    catalog: Arc<dyn Catalog>,
    present: Arc<Config>,
    desired: Arc<Config>,
    list: MoveList,
    page: u32,
    mut on_batch: F,
) -> Result<PlanSummary>
where
    F: FnMut(Vec<Move>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let wanted = list.wanted();
    // A small catalog: one page, one planner.
    let first = catalog
        .placements_range_page(TokenRange::default(), None, page)
        .await?;
    if first.len() < page as usize {
        let mut planner = Planner::new(&present, &desired);
        let moves = plan_page(&mut planner, &mut Rows::default(), &first, wanted)?;
        if !moves.is_empty() {
            on_batch(moves).await?;
        }
        return Ok(planner.finish());
    }
    drop(first);

    let n = workers();
    let handover = Handover {
        taken: Arc::new(AtomicUsize::new(0)),
        wanted,
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut lanes = Vec::with_capacity(n);
    for w in 0..n {
        let (tx, rx) = mpsc::unbounded_channel::<Result<Batch>>();
        let ahead = Arc::new(Semaphore::new(MOVES_AHEAD));
        lanes.push((rx, ahead.clone()));
        let (catalog, present, desired) = (catalog.clone(), present.clone(), desired.clone());
        let taken = handover.taken.clone();
        tasks.spawn(async move {
            let run = worker(
                w, n, &catalog, &present, &desired, &tx, &ahead, &taken, wanted, page,
            )
            .await;
            match run {
                Ok(tally) => Some(tally),
                Err(e) => {
                    // The caller learns of it in the bucket it waits on.
                    let _ = tx.send(Err(e));
                    None
                }
            }
        });
    }

    for b in 0..BUCKETS {
        let (rx, ahead) = &mut lanes[b % n];
        loop {
            let batch = match rx.recv().await {
                Some(batch) => batch?,
                None => return Err(Error::Internal("a plan worker stopped".into())),
            };
            if batch.bucket != b {
                return Err(Error::Internal(format!(
                    "a plan worker sent bucket {} where {b} was due",
                    batch.bucket
                )));
            }
            let held = batch.moves.len();
            let mut moves = batch.moves;
            let room = handover
                .wanted
                .saturating_sub(handover.taken.load(Ordering::Acquire));
            moves.truncate(room);
            if !moves.is_empty() {
                handover.taken.fetch_add(moves.len(), Ordering::AcqRel);
                on_batch(moves).await?;
            }
            ahead.add_permits(held);
            if batch.end {
                break;
            }
        }
    }

    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Some(t)) => tally.merge(t),
            Ok(None) => return Err(Error::Internal("a plan worker failed".into())),
            Err(e) => return Err(Error::Internal(format!("a plan worker: {e}"))),
        }
    }
    Ok(tally.summary(&present, &desired))
}

/// Plans buckets `w`, `w + n`, … in order and sends their moves, then
/// returns what it counted.
#[allow(clippy::too_many_arguments)]
async fn worker(
    w: usize,
    n: usize,
    catalog: &Arc<dyn Catalog>,
    present: &Config,
    desired: &Config,
    tx: &mpsc::UnboundedSender<Result<Batch>>,
    ahead: &Semaphore,
    taken: &AtomicUsize,
    wanted: usize,
    page_size: u32,
) -> Result<Tally> {
    let bounds = Arc::new(bounds());
    let mut planner = Planner::new(present, desired);
    let mut rows = Rows::default();
    let fetch = |b: usize, after: Option<(String, String)>| {
        let (catalog, bounds) = (catalog.clone(), bounds.clone());
        tokio::spawn(async move {
            catalog
                .placements_range_page(
                    bucket(b, &bounds),
                    after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
                    page_size,
                )
                .await
        })
    };
    let mine: Vec<usize> = (w..BUCKETS).step_by(n).collect();
    let mut next = mine.first().map(|&b| (b, fetch(b, None)));
    let mut i = 0;
    while let Some((b, pending)) = next.take() {
        let page = pending
            .await
            .map_err(|e| Error::Internal(format!("catalog scan task: {e}")))??;
        let end = page.len() < page_size as usize;
        // The next page of this bucket, or the first of the next one, is
        // read while this one is planned.
        next = if !end {
            page.last().map(|last| {
                (
                    b,
                    fetch(b, Some((last.token.clone(), last.category.clone()))),
                )
            })
        } else {
            i += 1;
            mine.get(i).map(|&nb| (nb, fetch(nb, None)))
        };
        let room = wanted.saturating_sub(taken.load(Ordering::Acquire));
        let moves = plan_page(&mut planner, &mut rows, &page, room)?;
        if !moves.is_empty() {
            let permits = u32::try_from(moves.len()).unwrap_or(u32::MAX);
            ahead
                .acquire_many(permits)
                .await
                .map_err(|_| Error::Internal("plan handover closed".into()))?
                .forget();
        }
        if (!moves.is_empty() || end)
            && tx
                .send(Ok(Batch {
                    bucket: b,
                    moves,
                    end,
                }))
                .is_err()
        {
            // The caller stopped (it failed): nothing more to do.
            return Err(Error::Internal("the plan was abandoned".into()));
        }
    }
    Ok(planner.into_tally())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The scan in ranges on several workers against one planner fed every
    //! placement in one sequence.
    use domicile_catalog::sqlite::SqliteCatalog;
    use domicile_catalog::{LedgerAppend, PlacementRow, PlacementState, SubjectRow};

    use super::*;

    const V1: &str = include_str!("../../../examples/demo-v1.toml");
    const V2: &str = include_str!("../../../examples/demo-v2.toml");

    fn entry() -> LedgerAppend {
        LedgerAppend {
            kind: "placement".into(),
            subject: None,
            body: serde_json::json!({}),
            at: 1,
            actor: "cli:test".into(),
        }
    }

    /// `n` subjects with tokens spread over the hex ranges (and a few that
    /// are not hex), several homes, in cn-north; every third with a
    /// payment placement too.
    async fn catalog(n: u64) -> Arc<dyn Catalog> {
        let cat = SqliteCatalog::open_memory().await.unwrap();
        for i in 0..n {
            let token = if i % 50 == 7 {
                format!("tok-{i:04}")
            } else {
                format!("{:016x}{i:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            };
            let home = ["IN", "CN", "TW", "IN", "SG"][(i % 5) as usize];
            let subject = SubjectRow {
                token: token.clone(),
                home: home.into(),
                created_at: 1,
                id_enc: None,
            };
            cat.add_subject(&subject, entry()).await.unwrap();
            let categories: &[&str] = if i % 3 == 0 {
                &["payment", "profile"]
            } else {
                &["profile"]
            };
            for category in categories {
                let row = PlacementRow {
                    token: token.clone(),
                    category: category.to_string(),
                    regions: vec!["cn-north".into()],
                    epoch: 1,
                    state: PlacementState::Active,
                    custodian: "operator-kms".into(),
                    wrapped_key: vec![1],
                    objects: 0,
                    bytes: 0,
                    since: 1,
                };
                cat.ensure_placement(&row, 0, entry()).await.unwrap();
            }
        }
        Arc::new(cat)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ranges_on_several_workers_plan_as_one_planner_in_token_order() {
        let base = std::path::Path::new("/");
        let v1 = Arc::new(Config::parse("v1", V1, base).unwrap());
        let v2 = Arc::new(Config::parse("v2", V2, base).unwrap());
        let cat = catalog(700).await;
        // One planner over every placement, in one sequence.
        let all = cat.placements_page(None, u32::MAX).await.unwrap();
        let mut planner = Planner::new(&v1, &v2);
        let expected = plan_page(&mut planner, &mut Rows::default(), &all, usize::MAX).unwrap();
        let summary = planner.finish();
        assert!(expected.len() > 300, "{}", expected.len());
        // Pages of 3: buckets of several pages, and a first page that is
        // full, so the scan runs in ranges.
        for list in [MoveList::All, MoveList::First(0), MoveList::First(5)] {
            let mut moves = Vec::new();
            let got = plan_paged(cat.clone(), v1.clone(), v2.clone(), list, 3, |batch| {
                moves.extend(batch);
                std::future::ready(Ok(()))
            })
            .await
            .unwrap();
            assert_eq!(got, summary, "{list:?}");
            let want = match list {
                MoveList::All => expected.len(),
                MoveList::First(n) => n,
            };
            assert_eq!(moves, expected[..want], "{list:?}");
        }
        // The same catalog in one page: one planner, the same plan.
        let one = plan_paged(cat.clone(), v1, v2, MoveList::All, 10_000, |_| {
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
        assert_eq!(one, summary);
    }
}
