//! Verification, trusting neither the catalog nor the regions alone:
//! - `verify` lists every region and checks each stored blob against the
//!   index and the policy, and each indexed copy against the regions;
//! - `verify --deep` also opens every object's data key through its
//!   custodian, and checks that each copy decrypts and authenticates (every
//!   chunk) and that its sealed name and metadata open; a custodian that
//!   cannot be reached is reported once, its objects counted as unchecked;
//! - `ledger verify` re-computes the whole hash chain and checks it
//!   against the signed checkpoints (crate::checkpoint).

use std::collections::{BTreeSet, HashMap, HashSet};

use domicile_catalog::{ObjectRow, PlacementRow};
use domicile_store::{BlobPath, ListEntry};
use futures::StreamExt;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// One thing `verify` found wrong.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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
    pub problems: Vec<Problem>,
}

/// What `ledger verify` found.
#[derive(Debug, Clone, Serialize)]
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

struct Indexed {
    token: String,
    category: String,
    stored_size: i64,
    checksum: String,
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
        let mut report = self.verify(checksums).await?;
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
                if unusable.contains(&p.custodian) {
                    report.objects_unchecked += 1;
                    continue;
                }
                match self.open_object(p, o).await? {
                    Opened::Ok => report.objects_decrypted += 1,
                    Opened::Problems(found) => report.problems.extend(found),
                    Opened::CustodianUnusable(why) => {
                        unusable.insert(p.custodian.clone());
                        report.objects_unchecked += 1;
                        report.problems.push(Problem {
                            kind: "custodian".into(),
                            region: p.custodian.clone(),
                            subject: String::new(),
                            category: String::new(),
                            blob: String::new(),
                            detail: why,
                        });
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
    /// its BLAKE3 against the index.
    pub async fn verify(&self, checksums: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let config = self.follow_policy().await?.config.clone();
        let topo = &config.topology;

        // The catalog's view: placements, index rows, blobs awaiting deletion.
        let mut placements: HashMap<(String, String), (Vec<String>, String)> = HashMap::new();
        self.for_each_placement(|p| {
            placements.insert(
                (p.token.clone(), p.category.clone()),
                (p.regions.clone(), p.home.clone()),
            );
            Ok(())
        })
        .await?;
        let mut index: HashMap<String, Indexed> = HashMap::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .catalog
                .objects_page(after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), 2_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.token.clone(), last.blob_id.clone()));
            for o in page {
                index.insert(
                    o.blob_id.clone(),
                    Indexed {
                        token: o.token,
                        category: o.category,
                        stored_size: o.stored_size,
                        checksum: o.checksum,
                    },
                );
            }
        }
        report.objects_indexed = index.len() as u64;
        let pending: HashSet<String> = self
            .catalog
            .garbage(u32::MAX)
            .await?
            .into_iter()
            .map(|g| g.blob_id)
            .collect();

        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut requirements: HashMap<
            (domicile_core::Jurisdiction, String),
            domicile_core::policy::Requirement,
        > = HashMap::new();
        let problem = |report: &mut VerifyReport,
                       kind: &str,
                       region: &str,
                       token: &str,
                       category: &str,
                       blob: &str,
                       detail: String| {
            report.problems.push(Problem {
                kind: kind.into(),
                region: region.into(),
                subject: token.into(),
                category: category.into(),
                blob: blob.into(),
                detail,
            });
        };

        // A custodian whose key is missing, another, refused or unreachable:
        // every copy it wraps is unreadable, whatever the regions hold.
        for id in self.keyrings.keys() {
            match self.keyring(id).await {
                Ok(_) => {}
                Err(Error::Custody(why)) => {
                    problem(&mut report, "custodian", id, "", "", "", why);
                }
                Err(e @ Error::CustodianUnavailable { .. }) => {
                    problem(&mut report, "custodian", id, "", "", "", e.to_string());
                }
                Err(e) => return Err(e),
            }
        }

        for (region_id, store) in &self.regions {
            // Ciphertext a killed writer left half-written: no listing shows
            // it, so it is looked for on its own. Young ones may be writes
            // still in progress; those of a blob queued for collection (a
            // dead writer's intent) go with it when it is collected.
            for l in store.leftovers(None).await? {
                if l.age >= LEFTOVER_AGE && !l.blob_id().is_some_and(|b| pending.contains(b)) {
                    problem(
                        &mut report,
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
            report.regions += 1;
            let mut listing = store.list_stream(None);
            while let Some(entry) = listing.next().await {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        problem(
                            &mut report,
                            "unreadable",
                            region_id,
                            "",
                            "",
                            "",
                            e.to_string(),
                        );
                        break;
                    }
                };
                let (path, size) = match entry {
                    ListEntry::Blob { path, size } => (path, size),
                    ListEntry::Foreign { path: location, .. } => {
                        problem(
                            &mut report,
                            "foreign",
                            region_id,
                            "",
                            "",
                            "",
                            format!("unexpected file {location}"),
                        );
                        continue;
                    }
                };
                report.blobs_scanned += 1;
                let blob = path.blob_id().to_string();
                let Some(ix) = index.get(&blob) else {
                    if !pending.contains(&blob) {
                        problem(
                            &mut report,
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
                    problem(
                        &mut report,
                        "orphan",
                        region_id,
                        path.token(),
                        path.category(),
                        &blob,
                        "blob id is indexed under another subject or category".into(),
                    );
                    continue;
                }
                let Some((regions, home)) =
                    placements.get(&(ix.token.clone(), ix.category.clone()))
                else {
                    problem(
                        &mut report,
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
                let home_j = home
                    .parse()
                    .map_err(|_| Error::Internal("catalog holds an invalid home".into()))?;
                // One requirement per (home, category), not one per blob.
                let req = requirements
                    .entry((home_j, ix.category.clone()))
                    .or_insert_with(|| config.policy.requirement(topo, home_j, &ix.category));
                if !req.allows(topo, region_id) {
                    problem(
                        &mut report,
                        "forbidden",
                        region_id,
                        &ix.token,
                        &ix.category,
                        &blob,
                        format!("copy in a region the policy forbids for home {home}"),
                    );
                }
                if !regions.contains(region_id) {
                    if !pending.contains(&blob) {
                        problem(
                            &mut report,
                            "stray",
                            region_id,
                            &ix.token,
                            &ix.category,
                            &blob,
                            format!("copy outside the placement [{}]", regions.join(", ")),
                        );
                    }
                    continue;
                }
                report.copies_checked += 1;
                if size as i64 != ix.stored_size {
                    problem(
                        &mut report,
                        "size",
                        region_id,
                        &ix.token,
                        &ix.category,
                        &blob,
                        format!("stored size {size}, index says {}", ix.stored_size),
                    );
                    continue;
                }
                if checksums {
                    match domicile_store::checksum_of(store, &path).await {
                        Ok((_, sum)) if sum == ix.checksum => report.checksums_verified += 1,
                        Ok((_, sum)) => problem(
                            &mut report,
                            "checksum",
                            region_id,
                            &ix.token,
                            &ix.category,
                            &blob,
                            format!("BLAKE3 {sum}, index says {}", ix.checksum),
                        ),
                        Err(e) => problem(
                            &mut report,
                            "unreadable",
                            region_id,
                            &ix.token,
                            &ix.category,
                            &blob,
                            e.to_string(),
                        ),
                    }
                }
            }
        }
        // Every indexed copy must have been seen where its placement says.
        for (blob, ix) in &index {
            let Some((regions, _)) = placements.get(&(ix.token.clone(), ix.category.clone()))
            else {
                continue;
            };
            for r in regions {
                if !seen.contains(&(blob.clone(), r.clone())) {
                    problem(
                        &mut report,
                        "missing",
                        r,
                        &ix.token,
                        &ix.category,
                        blob,
                        "indexed copy not found in its region".into(),
                    );
                }
            }
        }
        Ok(report)
    }
}
