//! Verification, trusting neither the catalog nor the regions alone:
//! - `verify` lists every region and checks each stored blob against the
//!   index and the policy, and each indexed copy against the regions, in
//!   one merge of the index (read in pages in (token, blob id) order) with
//!   every region's listing in the same order: memory stays bounded
//!   whatever the count, and problems beyond a cap are counted, not kept;
//! - `verify --deep` also opens every object's data key through its
//!   custodian, and checks that each copy decrypts and authenticates (every
//!   chunk) and that its sealed name and metadata open; a custodian that
//!   cannot be reached is reported once, its objects counted as unchecked;
//! - `ledger verify` re-computes the whole hash chain and checks it
//!   against the signed checkpoints (crate::checkpoint).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use domicile_catalog::{IndexEntry, ObjectRow, PlacementRow};
use domicile_core::Config;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::policy::Requirement;
use domicile_store::{BlobPath, ListEntry, RegionStore};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// One thing `verify` found wrong.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// `missing`, `size`, `checksum`, `orphan`, `stray`, `forbidden`, `foreign`, `unreadable`,
    /// `custodian` (a custodian's key is missing, not the one recorded, or cannot be
    /// reached: the custodian's id stands in `region`), and with `--deep`
    /// `undecryptable` (the object's data key does not unwrap, a copy does not
    /// decrypt and authenticate, or its sealed name or metadata do not open)
    /// and `manifest` (an object of parts names a part that is missing or
    /// was written again).
    pub kind: String,
    pub region: String,
    pub subject: String,
    pub category: String,
    pub blob: String,
    pub detail: String,
}

/// What `verify` scanned and found.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    pub regions: u64,
    pub blobs_scanned: u64,
    pub objects_indexed: u64,
    pub copies_checked: u64,
    pub checksums_verified: u64,
    /// With `--deep`: objects whose key, copies, name and metadata all opened.
    pub objects_decrypted: u64,
    /// With `--deep`: objects not checked because their custodian could not
    /// be reached or used (reported once as a `custodian` problem).
    pub objects_unchecked: u64,
    /// The problems kept: the first [`VerifyOptions::keep_problems`] found.
    pub problems: Vec<Problem>,
    /// Every problem found, kept in `problems` or only counted.
    pub problems_found: u64,
    /// Every problem found, by kind.
    pub problems_by_kind: BTreeMap<String, u64>,
}

/// What `ledger verify` found.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerReport {
    pub entries: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// Signed checkpoints that matched the chain (crate::checkpoint).
    pub checkpoints: u64,
    pub ok: bool,
    pub error: Option<String>,
}

/// Staging files younger than this may belong to writes in progress.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Index rows per page of the deep check.
const DEEP_PAGE: u32 = 500;

/// What opening one object found.
enum Opened {
    Ok,
    Problems(Vec<Problem>),
    /// Its custodian cannot be reached or used: why, once.
    CustodianUnusable(String),
}

impl Engine {
    /// Re-computes the ledger's hash chain from the first entry, and
    /// checks it against every stored checkpoint (see
    /// [`Engine::verify_ledger_with`]).
    pub async fn verify_ledger(&self) -> Result<LedgerReport> {
        self.verify_ledger_with(&[]).await
    }

    /// [`Engine::verify`], then the deep check: every object's data key is
    /// opened through its custodian, every copy read whole and decrypted
    /// (each chunk authenticates), and its sealed name and metadata opened.
    /// The index is read in pages, so memory stays bounded.
    pub async fn verify_deep(&self, checksums: bool) -> Result<VerifyReport> {
        self.verify_deep_with(&VerifyOptions {
            checksums,
            ..VerifyOptions::default()
        })
        .await
    }

    /// [`Engine::verify_deep`] with the plain scan's options (its
    /// progress counts the objects opened too).
    pub async fn verify_deep_with(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        let mut report = self.verify_with(options).await?;
        // Custodians already reported (their key is missing, another, or
        // cannot be reached): their objects are counted, not opened.
        let mut unusable: BTreeSet<String> = report
            .problems
            .iter()
            .filter(|p| p.kind == "custodian")
            .map(|p| p.region.clone())
            .collect();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .catalog
                .objects_page(
                    after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                    DEEP_PAGE,
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.token.clone(), last.blob_id.clone()));
            let mut keys: Vec<(String, String)> = page
                .iter()
                .map(|o| (o.token.clone(), o.category.clone()))
                .collect();
            keys.dedup();
            let placements: HashMap<(String, String), PlacementRow> = self
                .catalog
                .get_placements(&keys)
                .await?
                .into_iter()
                .flatten()
                .map(|p| ((p.token.clone(), p.category.clone()), p))
                .collect();
            for o in &page {
                // An object without a placement is the plain scan's finding.
                let Some(p) = placements.get(&(o.token.clone(), o.category.clone())) else {
                    continue;
                };
                if let Some(progress) = &options.progress {
                    progress.objects_opened.fetch_add(1, Ordering::Relaxed);
                }
                if unusable.contains(&p.custodian) {
                    report.objects_unchecked += 1;
                    continue;
                }
                match self.open_object(p, o).await? {
                    Opened::Ok => report.objects_decrypted += 1,
                    Opened::Problems(found) => {
                        for p in found {
                            report.add(p, KEEP_PROBLEMS);
                        }
                    }
                    Opened::CustodianUnusable(why) => {
                        unusable.insert(p.custodian.clone());
                        report.objects_unchecked += 1;
                        report.add(
                            Problem {
                                kind: "custodian".into(),
                                region: p.custodian.clone(),
                                subject: String::new(),
                                category: String::new(),
                                blob: String::new(),
                                detail: why,
                            },
                            KEEP_PROBLEMS,
                        );
                    }
                }
            }
        }
        Ok(report)
    }

    /// Opens one object's key, copies, name and metadata.
    async fn open_object(&self, p: &PlacementRow, o: &ObjectRow) -> Result<Opened> {
        let undecryptable = |region: &str, detail: String| Problem {
            kind: "undecryptable".into(),
            region: region.into(),
            subject: o.token.clone(),
            category: o.category.clone(),
            blob: o.blob_id.clone(),
            detail,
        };
        let first_region = p.regions.first().map_or("", String::as_str);
        let dek = match self.data_key(p).await {
            Ok(k) => k,
            Err(e @ (Error::CustodianUnavailable { .. } | Error::Custody(_))) => {
                return Ok(Opened::CustodianUnusable(e.to_string()));
            }
            Err(Error::Store(e)) => {
                return Ok(Opened::Problems(vec![undecryptable(
                    first_region,
                    format!(
                        "the data key does not unwrap under custodian {}: {e}",
                        p.custodian
                    ),
                )]));
            }
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        if let Err(e) = self.info(o, &dek) {
            found.push(undecryptable(
                first_region,
                format!("sealed name or metadata does not open: {e}"),
            ));
        }
        found.extend(self.check_manifest(p, o, &dek).await?);
        let path = BlobPath::new(&o.token, &o.category, &o.blob_id)?;
        let key = self.options.encrypt.then_some(&dek);
        for region in &p.regions {
            let store = self.region(region)?;
            let read = async {
                let mut stream =
                    domicile_store::read_blob(store, &path, key, o.size as u64, None).await?;
                while let Some(piece) = stream.next().await {
                    piece?;
                }
                Ok::<_, domicile_store::Error>(())
            };
            match read.await {
                Ok(()) => {}
                // A missing copy is the plain scan's `missing`.
                Err(domicile_store::Error::NotFound { .. }) => {}
                Err(
                    e @ (domicile_store::Error::Corrupt { .. }
                    | domicile_store::Error::Crypto { .. }),
                ) => found.push(undecryptable(region, e.to_string())),
                Err(e) => found.push(Problem {
                    kind: "unreadable".into(),
                    ..undecryptable(region, e.to_string())
                }),
            }
        }
        Ok(if found.is_empty() {
            Opened::Ok
        } else {
            Opened::Problems(found)
        })
    }

    /// Scans every region. With `checksums`, re-reads every copy and checks
    /// its BLAKE3 against the index. See [`Engine::verify_with`].
    pub async fn verify(&self, checksums: bool) -> Result<VerifyReport> {
        self.verify_with(&VerifyOptions {
            checksums,
            ..VerifyOptions::default()
        })
        .await
    }

    /// Scans every region against the index and the policy in one merge:
    /// the catalog's index is read in pages ordered by (token, blob id),
    /// each region's listing in the same order (one subject's blobs at a
    /// time), and the three meet key by key, so memory holds a page, one
    /// subject's listing per region, and the problems kept
    /// ([`VerifyOptions::keep_problems`]), whatever the count of objects.
    pub async fn verify_with(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        let config = self.follow_policy().await?.config.clone();
        // Blobs awaiting deletion, which may legitimately be anywhere.
        let pending: HashSet<String> = self
            .catalog
            .garbage(u32::MAX)
            .await?
            .into_iter()
            .map(|g| g.blob_id)
            .collect();
        let mut scan = Scan::new(options.keep_problems);
        scan.progress = options.progress.clone();

        // A custodian whose key is missing, another, refused or unreachable:
        // every copy it wraps is unreadable, whatever the regions hold.
        for id in self.keyrings.keys() {
            match self.keyring(id).await {
                Ok(_) => {}
                Err(Error::Custody(why)) => scan.problem("custodian", id, "", "", "", why),
                Err(e @ Error::CustodianUnavailable { .. }) => {
                    scan.problem("custodian", id, "", "", "", e.to_string());
                }
                Err(e) => return Err(e),
            }
        }

        let mut regions = Vec::with_capacity(self.regions.len());
        for (region_id, store) in &self.regions {
            // Ciphertext a killed writer left half-written: no listing shows
            // it, so it is looked for on its own. Young ones may be writes
            // still in progress; those of a blob queued for collection (a
            // dead writer's intent) go with it when it is collected.
            for l in store.leftovers(None).await? {
                if l.age >= LEFTOVER_AGE && !l.blob_id().is_some_and(|b| pending.contains(b)) {
                    scan.problem(
                        "staging",
                        region_id,
                        "",
                        "",
                        "",
                        format!(
                            "{} bytes left by an interrupted write at {}",
                            l.size, l.path
                        ),
                    );
                }
            }
            scan.report.regions += 1;
            regions.push(RegionCursor::new(region_id, store.list_ordered()));
        }
        let catalog = self.catalog.clone();
        let page = options.page.max(1);
        let index = IndexCursor::new(move |after: Option<(String, String)>| {
            let catalog = catalog.clone();
            async move {
                let after = after.as_ref().map(|(t, b)| (t.as_str(), b.as_str()));
                Ok(catalog.index_page(after, page).await?)
            }
        });
        let ctx = Checks {
            config: &config,
            pending: &pending,
            checksums: options.checksums,
            stores: &self.regions,
            requirements: HashMap::new(),
        };
        merge(ctx, index, regions, &mut scan).await?;
        Ok(scan.report)
    }
}

/// How far a scan has come, for a caller that watches it from elsewhere
/// ([`VerifyOptions::progress`]); the counts grow as the scan goes.
#[derive(Debug, Default)]
pub struct VerifyProgress {
    /// Index rows met with the regions' listings.
    pub objects_indexed: AtomicU64,
    /// Copies checked against their index row.
    pub copies_checked: AtomicU64,
    /// With the deep check: objects opened through their custodian (or
    /// found unopenable).
    pub objects_opened: AtomicU64,
}

/// How [`Engine::verify_with`] scans.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Re-read every copy and check its BLAKE3 against the index.
    pub checksums: bool,
    /// Index rows per catalog page.
    pub page: u32,
    /// Problems kept in the report; beyond them, problems are only counted
    /// ([`VerifyReport::problems_found`], [`VerifyReport::problems_by_kind`]).
    pub keep_problems: usize,
    /// Counts kept up to date as the scan goes.
    pub progress: Option<Arc<VerifyProgress>>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            checksums: true,
            page: INDEX_PAGE,
            keep_problems: KEEP_PROBLEMS,
            progress: None,
        }
    }
}

/// Index rows per page of the plain scan.
const INDEX_PAGE: u32 = 2_000;

/// Problems a report keeps by default; the rest are counted.
pub const KEEP_PROBLEMS: usize = 10_000;

impl VerifyReport {
    /// Adds a problem: kept while fewer than `keep` are, counted always.
    fn add(&mut self, problem: Problem, keep: usize) {
        self.problems_found += 1;
        *self
            .problems_by_kind
            .entry(problem.kind.clone())
            .or_default() += 1;
        if self.problems.len() < keep {
            self.problems.push(problem);
        }
    }

    /// Whether any problem was found, kept or not.
    pub fn is_clean(&self) -> bool {
        self.problems_found == 0 && self.problems.is_empty()
    }
}

/// A scan in progress: its report, and how many problems it keeps.
struct Scan {
    report: VerifyReport,
    keep: usize,
    progress: Option<Arc<VerifyProgress>>,
}

impl Scan {
    fn new(keep: usize) -> Self {
        Scan {
            report: VerifyReport::default(),
            keep,
            progress: None,
        }
    }

    /// Adds one to a count of [`VerifyProgress`], if anyone watches.
    fn advance(&self, count: fn(&VerifyProgress) -> &AtomicU64) {
        if let Some(p) = &self.progress {
            count(p).fetch_add(1, Ordering::Relaxed);
        }
    }

    fn problem(
        &mut self,
        kind: &str,
        region: &str,
        token: &str,
        category: &str,
        blob: &str,
        detail: String,
    ) {
        self.report.add(
            Problem {
                kind: kind.into(),
                region: region.into(),
                subject: token.into(),
                category: category.into(),
                blob: blob.into(),
                detail,
            },
            self.keep,
        );
    }
}

/// The catalog's index, read a page ahead (the next page is fetched while
/// this one is merged), checked to come in (token, blob id) byte order.
struct IndexCursor<F> {
    fetch: F,
    page: std::collections::VecDeque<IndexEntry>,
    next: Option<tokio::task::JoinHandle<Result<Vec<IndexEntry>>>>,
    last: Option<(String, String)>,
}

impl<F, Fut> IndexCursor<F>
where
    F: FnMut(Option<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<IndexEntry>>> + Send + 'static,
{
    fn new(mut fetch: F) -> Self {
        let next = Some(tokio::spawn(fetch(None)));
        IndexCursor {
            fetch,
            page: Default::default(),
            next,
            last: None,
        }
    }

    /// The next row's key, reading the next page if this one is done.
    async fn peek(&mut self) -> Result<Option<(&str, &str)>> {
        if self.page.is_empty()
            && let Some(pending) = self.next.take()
        {
            let page = pending
                .await
                .map_err(|e| Error::Internal(format!("index scan task: {e}")))??;
            if let Some(last) = page.last() {
                let after = (last.token.clone(), last.blob_id.clone());
                self.next = Some(tokio::spawn((self.fetch)(Some(after))));
            }
            self.page = page.into();
        }
        Ok(self
            .page
            .front()
            .map(|e| (e.token.as_str(), e.blob_id.as_str())))
    }

    fn take(&mut self) -> Result<Option<IndexEntry>> {
        let Some(e) = self.page.pop_front() else {
            return Ok(None);
        };
        if self.last.as_ref().is_some_and(|(t, b)| {
            (t.as_str(), b.as_str()) >= (e.token.as_str(), e.blob_id.as_str())
        }) {
            return Err(Error::Internal(format!(
                "the catalog's index does not come in (token, blob id) order at {}/{}",
                e.token, e.blob_id
            )));
        }
        self.last = Some((e.token.clone(), e.blob_id.clone()));
        Ok(Some(e))
    }
}

/// One blob of a region's listing.
struct Listed {
    path: BlobPath,
    size: u64,
}

/// A region's ordered listing, one subject token's blobs at a time, those
/// sorted by (blob id, category).
struct RegionCursor {
    id: String,
    /// `None` once it ended or failed.
    listing: Option<BoxStream<'static, domicile_store::Result<ListEntry>>>,
    group: std::collections::VecDeque<Listed>,
    /// The first blob of the next token, read ahead.
    ahead: Option<Listed>,
    last_token: Option<String>,
}

impl RegionCursor {
    fn new(id: &str, listing: BoxStream<'static, domicile_store::Result<ListEntry>>) -> Self {
        RegionCursor {
            id: id.to_string(),
            listing: Some(listing),
            group: Default::default(),
            ahead: None,
            last_token: None,
        }
    }

    /// The key of the next blob, reading the next token's blobs if this
    /// one's are done. Foreign objects and a failing listing are reported
    /// on the way.
    async fn peek(&mut self, scan: &mut Scan) -> Result<Option<(&str, &str)>> {
        if self.group.is_empty() {
            self.fill(scan).await?;
        }
        Ok(self
            .group
            .front()
            .map(|l| (l.path.token(), l.path.blob_id())))
    }

    async fn fill(&mut self, scan: &mut Scan) -> Result<()> {
        let mut group: Vec<Listed> = self.ahead.take().into_iter().collect();
        while let Some(listing) = self.listing.as_mut() {
            match listing.next().await {
                None => self.listing = None,
                Some(Err(e)) => {
                    scan.problem("unreadable", &self.id, "", "", "", e.to_string());
                    self.listing = None;
                }
                Some(Ok(ListEntry::Foreign { path, .. })) => {
                    scan.problem(
                        "foreign",
                        &self.id,
                        "",
                        "",
                        "",
                        format!("unexpected file {path}"),
                    );
                }
                Some(Ok(ListEntry::Blob { path, size })) => {
                    scan.report.blobs_scanned += 1;
                    let listed = Listed { path, size };
                    if group
                        .first()
                        .is_some_and(|g| g.path.token() != listed.path.token())
                    {
                        self.ahead = Some(listed);
                        break;
                    }
                    group.push(listed);
                }
            }
        }
        let Some(first) = group.first() else {
            return Ok(());
        };
        let token = first.path.token();
        if self.last_token.as_deref().is_some_and(|t| t >= token) {
            return Err(Error::Internal(format!(
                "region {} lists subject {token} after {}: its listing is not in key order",
                self.id,
                self.last_token.as_deref().unwrap_or_default()
            )));
        }
        self.last_token = Some(token.to_string());
        group.sort_by(|a, b| {
            (a.path.blob_id(), a.path.category()).cmp(&(b.path.blob_id(), b.path.category()))
        });
        self.group = group.into();
        Ok(())
    }
}

/// What every key of the merge is checked against.
struct Checks<'a> {
    config: &'a Config,
    pending: &'a HashSet<String>,
    checksums: bool,
    stores: &'a BTreeMap<String, RegionStore>,
    /// One requirement per (home, category), not one per blob.
    requirements: HashMap<(Jurisdiction, String), Requirement>,
}

/// The merge: key by key in (token, blob id) order, the index row there
/// (if any) and every region's blobs there.
async fn merge<F, Fut>(
    mut checks: Checks<'_>,
    mut index: IndexCursor<F>,
    mut regions: Vec<RegionCursor>,
    scan: &mut Scan,
) -> Result<()>
where
    F: FnMut(Option<(String, String)>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<IndexEntry>>> + Send + 'static,
{
    loop {
        let mut key: Option<(String, String)> = None;
        let lower = |key: &mut Option<(String, String)>, (t, b): (&str, &str)| {
            if key
                .as_ref()
                .is_none_or(|(kt, kb)| (t, b) < (kt.as_str(), kb.as_str()))
            {
                *key = Some((t.to_string(), b.to_string()));
            }
        };
        if let Some(k) = index.peek().await? {
            lower(&mut key, k);
        }
        for r in &mut regions {
            if let Some(k) = r.peek(scan).await? {
                lower(&mut key, k);
            }
        }
        let Some((token, blob)) = key else {
            break;
        };
        let at = |k: Option<(&str, &str)>| k == Some((token.as_str(), blob.as_str()));
        let row = if at(index.peek().await?) {
            index.take()?
        } else {
            None
        };
        let mut hits: Vec<(&str, Listed)> = Vec::new();
        for r in &mut regions {
            while r
                .group
                .front()
                .is_some_and(|l| l.path.token() == token && l.path.blob_id() == blob)
            {
                if let Some(l) = r.group.pop_front() {
                    hits.push((&r.id, l));
                }
            }
        }
        match row {
            Some(row) => {
                scan.report.objects_indexed += 1;
                scan.advance(|p| &p.objects_indexed);
                checks.indexed(scan, &row, hits).await?;
            }
            None => {
                for (region, l) in hits {
                    checks.unindexed(scan, region, &l);
                }
            }
        }
    }
    Ok(())
}

impl Checks<'_> {
    /// A stored blob without an index row at its key.
    fn unindexed(&self, scan: &mut Scan, region: &str, l: &Listed) {
        if !self.pending.contains(l.path.blob_id()) {
            scan.problem(
                "orphan",
                region,
                l.path.token(),
                l.path.category(),
                l.path.blob_id(),
                "stored blob that no index row points at".into(),
            );
        }
    }

    /// An index row, and the blobs the regions hold at its key.
    async fn indexed(
        &mut self,
        scan: &mut Scan,
        row: &IndexEntry,
        hits: Vec<(&str, Listed)>,
    ) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        for (region, l) in hits {
            if l.path.category() != row.category {
                scan.problem(
                    "orphan",
                    region,
                    l.path.token(),
                    l.path.category(),
                    l.path.blob_id(),
                    "blob id is indexed under another subject or category".into(),
                );
                continue;
            }
            let Some((home, placed)) = &row.placement else {
                scan.problem(
                    "orphan",
                    region,
                    &row.token,
                    &row.category,
                    &row.blob_id,
                    "indexed object has no placement".into(),
                );
                continue;
            };
            seen.push(region);
            self.copy(scan, region, row, home, placed, &l).await?;
        }
        // Every indexed copy must have been seen where its placement says.
        if let Some((_, placed)) = &row.placement {
            for r in placed {
                if !seen.contains(&r.as_str()) {
                    scan.problem(
                        "missing",
                        r,
                        &row.token,
                        &row.category,
                        &row.blob_id,
                        "indexed copy not found in its region".into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// One stored copy of an indexed, placed object.
    async fn copy(
        &mut self,
        scan: &mut Scan,
        region: &str,
        row: &IndexEntry,
        home: &str,
        placed: &[String],
        l: &Listed,
    ) -> Result<()> {
        let topo = &self.config.topology;
        let home_j: Jurisdiction = home
            .parse()
            .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
        let config = self.config;
        let req = self
            .requirements
            .entry((home_j, row.category.clone()))
            .or_insert_with(|| config.policy.requirement(topo, home_j, &row.category));
        let problem = |scan: &mut Scan, kind: &str, detail: String| {
            scan.problem(
                kind,
                region,
                &row.token,
                &row.category,
                &row.blob_id,
                detail,
            );
        };
        if !req.allows(topo, region) {
            problem(
                scan,
                "forbidden",
                format!("copy in a region the policy forbids for home {home}"),
            );
        }
        if !placed.iter().any(|p| p == region) {
            if !self.pending.contains(&row.blob_id) {
                problem(
                    scan,
                    "stray",
                    format!("copy outside the placement [{}]", placed.join(", ")),
                );
            }
            return Ok(());
        }
        scan.report.copies_checked += 1;
        scan.advance(|p| &p.copies_checked);
        if l.size as i64 != row.stored_size {
            problem(
                scan,
                "size",
                format!("stored size {}, index says {}", l.size, row.stored_size),
            );
            return Ok(());
        }
        if self.checksums {
            let Some(store) = self.stores.get(region) else {
                return Ok(());
            };
            match domicile_store::checksum_of(store, &l.path).await {
                Ok((_, sum)) if sum == row.checksum => scan.report.checksums_verified += 1,
                Ok((_, sum)) => problem(
                    scan,
                    "checksum",
                    format!("BLAKE3 {sum}, index says {}", row.checksum),
                ),
                Err(e) => problem(scan, "unreadable", e.to_string()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The streaming merge against the former scan (whole index in a map,
    //! each region listed in any order), on random deployments with the
    //! tricky cases: orphans between indexed blobs, copies under another
    //! category, objects without placements, strays, forbidden regions,
    //! missing copies in regions without a store, wrong sizes and sums,
    //! tokens that prefix others, categories whose order differs from
    //! their paths' (`a` and `a-b`), empty regions, and pages of one row.
    use std::sync::Arc;

    use bytes::Bytes;
    use domicile_test_support::rng::Rng;

    use super::*;

    const CONFIG: &str = include_str!("../../../examples/demo-v1.toml");

    struct World {
        config: Config,
        stores: BTreeMap<String, RegionStore>,
        index: Vec<IndexEntry>,
        pending: HashSet<String>,
        _dir: tempfile::TempDir,
    }

    fn hex(rng: &mut Rng, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[rng.below(16) as usize]))
            .collect()
    }

    async fn world(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse("test", CONFIG, dir.path()).unwrap();
        let mut stores = BTreeMap::new();
        let local = format!("file://{}", dir.path().join("cn").display());
        stores.insert(
            "cn-north".to_string(),
            RegionStore::open("cn-north", &local, dir.path()).unwrap(),
        );
        for id in ["aws-ap-southeast-1", "in-mumbai"] {
            stores.insert(
                id.to_string(),
                RegionStore::open(id, "memory://", dir.path()).unwrap(),
            );
        }
        // Regions a placement may name; tw-taipei has no store here.
        let ids = ["cn-north", "aws-ap-southeast-1", "in-mumbai", "tw-taipei"];
        let mut tokens: Vec<String> = (0..6).map(|_| format!("ab{}", hex(&mut rng, 14))).collect();
        tokens.push(format!("{}0a", tokens[0]));
        tokens.push(hex(&mut rng, 16));
        let categories = ["a", "a-b", "profile"];
        let mut index = Vec::new();
        let mut pending = HashSet::new();
        for token in &tokens {
            for category in categories {
                if rng.below(4) == 0 {
                    continue;
                }
                let placement = (rng.below(6) != 0).then(|| {
                    let home = if rng.below(2) == 0 { "CN" } else { "IN" };
                    let mut regions: Vec<String> = Vec::new();
                    for _ in 0..rng.range(0, 2) {
                        let r = ids[rng.below(4) as usize].to_string();
                        if !regions.contains(&r) {
                            regions.push(r);
                        }
                    }
                    (home.to_string(), regions)
                });
                for _ in 0..rng.range(0, 4) {
                    let blob = hex(&mut rng, 32);
                    let bytes = Bytes::from(vec![rng.below(256) as u8; rng.range(1, 64) as usize]);
                    let mut checksum = blake3::hash(&bytes).to_hex().to_string();
                    if rng.below(8) == 0 {
                        checksum = "0".repeat(64);
                    }
                    let mut stored_size = bytes.len() as i64;
                    if rng.below(10) == 0 {
                        stored_size += 1;
                    }
                    for (id, store) in &stores {
                        let placed = placement
                            .as_ref()
                            .is_some_and(|(_, r)| r.iter().any(|r| r == id));
                        let chance = if placed { 8 } else { 1 };
                        if rng.below(10) < chance {
                            let at = if rng.below(12) == 0 { "a-b" } else { category };
                            let path = BlobPath::new(token, at, &blob).unwrap();
                            store.put(&path, bytes.clone()).await.unwrap();
                        }
                    }
                    if rng.below(10) == 0 {
                        pending.insert(blob.clone());
                    }
                    index.push(IndexEntry {
                        token: token.clone(),
                        category: category.to_string(),
                        blob_id: blob,
                        stored_size,
                        checksum,
                        placement: placement.clone(),
                    });
                }
                // Orphans, some awaiting collection.
                for _ in 0..rng.range(0, 2) {
                    let blob = hex(&mut rng, 32);
                    let id = ids[rng.below(3) as usize];
                    let path = BlobPath::new(token, category, &blob).unwrap();
                    stores[id]
                        .put(&path, Bytes::from_static(b"orphan"))
                        .await
                        .unwrap();
                    if rng.below(3) == 0 {
                        pending.insert(blob);
                    }
                }
            }
        }
        std::fs::write(dir.path().join("cn").join("notes.txt"), b"x").unwrap();
        index.sort_by(|a, b| (&a.token, &a.blob_id).cmp(&(&b.token, &b.blob_id)));
        World {
            config,
            stores,
            index,
            pending,
            _dir: dir,
        }
    }

    async fn streamed(w: &World, page: usize, keep: usize) -> VerifyReport {
        let mut scan = Scan::new(keep);
        let regions = w
            .stores
            .iter()
            .map(|(id, s)| {
                scan.report.regions += 1;
                RegionCursor::new(id, s.list_ordered())
            })
            .collect();
        let rows = Arc::new(w.index.clone());
        let index = IndexCursor::new(move |after: Option<(String, String)>| {
            let rows = rows.clone();
            async move {
                Ok(rows
                    .iter()
                    .filter(|e| {
                        after.as_ref().is_none_or(|(t, b)| {
                            (e.token.as_str(), e.blob_id.as_str()) > (t.as_str(), b.as_str())
                        })
                    })
                    .take(page)
                    .cloned()
                    .collect())
            }
        });
        let checks = Checks {
            config: &w.config,
            pending: &w.pending,
            checksums: true,
            stores: &w.stores,
            requirements: HashMap::new(),
        };
        merge(checks, index, regions, &mut scan).await.unwrap();
        scan.report
    }

    /// The scan as it was: the whole index in a map by blob id, each
    /// region listed in the object store's order.
    async fn former(w: &World) -> VerifyReport {
        let mut scan = Scan::new(usize::MAX);
        let topo = &w.config.topology;
        let index: HashMap<&str, &IndexEntry> =
            w.index.iter().map(|e| (e.blob_id.as_str(), e)).collect();
        scan.report.objects_indexed = index.len() as u64;
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for (region_id, store) in &w.stores {
            scan.report.regions += 1;
            let listing = store.list(None).await.unwrap();
            for (path, _) in &listing.foreign {
                scan.problem(
                    "foreign",
                    region_id,
                    "",
                    "",
                    "",
                    format!("unexpected file {path}"),
                );
            }
            for (path, size) in listing.blobs {
                scan.report.blobs_scanned += 1;
                let blob = path.blob_id().to_string();
                let Some(ix) = index.get(blob.as_str()) else {
                    if !w.pending.contains(&blob) {
                        scan.problem(
                            "orphan",
                            region_id,
                            path.token(),
                            path.category(),
                            &blob,
                            "stored blob that no index row points at".into(),
                        );
                    }
                    continue;
                };
                if ix.token != path.token() || ix.category != path.category() {
                    scan.problem(
                        "orphan",
                        region_id,
                        path.token(),
                        path.category(),
                        &blob,
                        "blob id is indexed under another subject or category".into(),
                    );
                    continue;
                }
                let Some((home, regions)) = &ix.placement else {
                    scan.problem(
                        "orphan",
                        region_id,
                        &ix.token,
                        &ix.category,
                        &blob,
                        "indexed object has no placement".into(),
                    );
                    continue;
                };
                seen.insert((blob.clone(), region_id.clone()));
                let req = w
                    .config
                    .policy
                    .requirement(topo, home.parse().unwrap(), &ix.category);
                let p = |scan: &mut Scan, kind: &str, detail: String| {
                    scan.problem(kind, region_id, &ix.token, &ix.category, &blob, detail);
                };
                if !req.allows(topo, region_id) {
                    p(
                        &mut scan,
                        "forbidden",
                        format!("copy in a region the policy forbids for home {home}"),
                    );
                }
                if !regions.contains(region_id) {
                    if !w.pending.contains(&blob) {
                        p(
                            &mut scan,
                            "stray",
                            format!("copy outside the placement [{}]", regions.join(", ")),
                        );
                    }
                    continue;
                }
                scan.report.copies_checked += 1;
                if size as i64 != ix.stored_size {
                    p(
                        &mut scan,
                        "size",
                        format!("stored size {size}, index says {}", ix.stored_size),
                    );
                    continue;
                }
                let (_, sum) = domicile_store::checksum_of(store, &path).await.unwrap();
                if sum == ix.checksum {
                    scan.report.checksums_verified += 1;
                } else {
                    p(
                        &mut scan,
                        "checksum",
                        format!("BLAKE3 {sum}, index says {}", ix.checksum),
                    );
                }
            }
        }
        for ix in &w.index {
            let Some((_, regions)) = &ix.placement else {
                continue;
            };
            for r in regions {
                if !seen.contains(&(ix.blob_id.clone(), r.clone())) {
                    scan.problem(
                        "missing",
                        r,
                        &ix.token,
                        &ix.category,
                        &ix.blob_id,
                        "indexed copy not found in its region".into(),
                    );
                }
            }
        }
        scan.report
    }

    fn sorted(mut v: Vec<Problem>) -> Vec<Problem> {
        v.sort_by(|a, b| {
            (
                &a.kind,
                &a.region,
                &a.subject,
                &a.category,
                &a.blob,
                &a.detail,
            )
                .cmp(&(
                    &b.kind,
                    &b.region,
                    &b.subject,
                    &b.category,
                    &b.blob,
                    &b.detail,
                ))
        });
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_merge_finds_what_the_former_scan_found() {
        let mut kinds = BTreeSet::new();
        for seed in 0..24 {
            let w = world(seed).await;
            let want = former(&w).await;
            kinds.extend(want.problems.iter().map(|p| p.kind.clone()));
            for page in [1, 2, 3, 1000] {
                let got = streamed(&w, page, usize::MAX).await;
                let ctx = format!("seed {seed}, page {page}");
                assert_eq!(
                    sorted(got.problems.clone()),
                    sorted(want.problems.clone()),
                    "{ctx}"
                );
                assert_eq!(got.blobs_scanned, want.blobs_scanned, "{ctx}");
                assert_eq!(got.objects_indexed, want.objects_indexed, "{ctx}");
                assert_eq!(got.copies_checked, want.copies_checked, "{ctx}");
                assert_eq!(got.checksums_verified, want.checksums_verified, "{ctx}");
                assert_eq!(got.regions, want.regions, "{ctx}");
                assert_eq!(got.problems_found, want.problems.len() as u64, "{ctx}");
            }
        }
        // The random deployments did reach every kind the scan reports.
        for k in [
            "orphan",
            "stray",
            "forbidden",
            "missing",
            "size",
            "checksum",
            "foreign",
        ] {
            assert!(kinds.contains(k), "no {k} in any deployment: {kinds:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_cap_problems_are_counted_not_kept() {
        let w = world(7).await;
        let all = streamed(&w, 2, usize::MAX).await;
        assert!(all.problems.len() > 3, "{:#?}", all.problems);
        let capped = streamed(&w, 2, 3).await;
        assert_eq!(capped.problems.len(), 3);
        assert_eq!(capped.problems_found, all.problems.len() as u64);
        assert_eq!(capped.problems_by_kind, all.problems_by_kind);
        assert_eq!(
            capped.problems_by_kind.values().sum::<u64>(),
            capped.problems_found
        );
        assert!(!capped.is_clean());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_regions_and_an_empty_index_are_clean() {
        let dir = tempfile::tempdir().unwrap();
        let w = World {
            config: Config::parse("test", CONFIG, dir.path()).unwrap(),
            stores: [("cn-north", "memory://"), ("in-mumbai", "memory://")]
                .into_iter()
                .map(|(id, url)| {
                    (
                        id.to_string(),
                        RegionStore::open(id, url, dir.path()).unwrap(),
                    )
                })
                .collect(),
            index: Vec::new(),
            pending: HashSet::new(),
            _dir: dir,
        };
        let r = streamed(&w, 1, 10).await;
        assert!(
            r.is_clean() && r.regions == 2 && r.blobs_scanned == 0,
            "{r:#?}"
        );
    }
}
