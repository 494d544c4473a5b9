//! Subjects: registration, import, inspection, re-homing and erasure.

use domicile_catalog::{LedgerAppend, SubjectRow};
use domicile_core::exposure::Level;
use domicile_core::ids::SubjectId;
use domicile_core::jurisdiction::Jurisdiction;
use serde::Serialize;
use serde_json::json;

use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// One category of a subject, as `subject show` reports it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryView {
    pub category: String,
    pub regions: Vec<String>,
    pub epoch: i64,
    pub objects: i64,
    pub bytes: i64,
    pub custodian: String,
    pub since: i64,
    pub state: String,
}

/// One authority's reach over a subject.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthorityLevel {
    pub authority: Jurisdiction,
    pub level: Level,
    /// The reach rules behind it: preset names, or the ground of a
    /// hand-written rule. Empty when the level is none.
    pub grounds: Vec<String>,
}

/// `subject show`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectView {
    pub subject: String,
    pub home: Jurisdiction,
    pub categories: Vec<CategoryView>,
    pub exposure: Vec<AuthorityLevel>,
}

/// What an erasure removed.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureReport {
    pub placements: u64,
    pub objects: u64,
    pub copies_deleted: u64,
}

/// Rows of subjects to import per transaction.
pub const IMPORT_BATCH: usize = 2_000;

/// The most subjects one page of [`Engine::list_subjects`] holds.
pub const MAX_PAGE: u32 = 1_000;

/// One registered subject in a listing.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectListed {
    /// The subject's id, opened with the deployment's secrets; absent if
    /// it was not recorded at registration.
    pub subject: Option<String>,
    /// The keyed hash the catalog knows the subject by.
    pub token: String,
    /// Home jurisdiction, ISO 3166-1 alpha-2.
    pub home: String,
    /// When it was registered, in milliseconds since the epoch.
    pub created_at: i64,
}

/// One page of [`Engine::list_subjects`].
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubjectPage {
    pub subjects: Vec<SubjectListed>,
    /// The cursor of the next page (`after`), absent on the last one.
    pub next: Option<String>,
}

/// What an import registered.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportReport {
    /// Rows read (a repeated row counts once).
    pub rows: u64,
    /// Subjects registered; the rest were registered already.
    pub added: u64,
}

/// Reads `subject,home` rows of CSV (`source` names it in errors); a header
/// row `subject,...` is allowed. Every row is checked before any is
/// returned, so a bad file gets an error naming its line and registers
/// nothing. A subject repeated with the same home counts once; with another
/// home it is an error.
pub fn parse_subject_csv(
    data: impl std::io::Read,
    source: &str,
) -> Result<Vec<(SubjectId, Jurisdiction)>> {
    use std::str::FromStr;
    let bad = |line: usize, what: &dyn std::fmt::Display| {
        Error::Invalid(format!("{source}:{line}: {what}"))
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let mut out = Vec::new();
    let mut seen: std::collections::HashMap<SubjectId, (Jurisdiction, usize)> =
        std::collections::HashMap::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 1;
        let rec = rec.map_err(|e| bad(line, &e))?;
        if i == 0 && rec.get(0) == Some("subject") {
            continue;
        }
        if rec.len() != 2 {
            return Err(bad(
                line,
                &format!("expected 2 columns (subject,home), found {}", rec.len()),
            ));
        }
        let id = SubjectId::from_str(&rec[0]).map_err(|e| bad(line, &e))?;
        let home = Jurisdiction::from_str(&rec[1]).map_err(|e| bad(line, &e))?;
        match seen.get(&id) {
            Some((h, _)) if *h == home => continue,
            Some((_, first)) => {
                return Err(bad(
                    line,
                    &format!("repeats the subject of line {first} with another home"),
                ));
            }
            None => {
                seen.insert(id.clone(), (home, line));
            }
        }
        out.push((id, home));
    }
    Ok(out)
}

impl Engine {
    /// Registers a subject. Refused, changing nothing, while a custodian
    /// the policy names for its home cannot be used (its key is missing or
    /// another): its data could not be written.
    pub async fn add_subject(&self, id: &SubjectId, home: Jurisdiction) -> Result<String> {
        self.check_custodians_of(home).await?;
        let token = self.tokens.subject(id);
        let now = now_millis();
        let row = SubjectRow {
            token: token.clone(),
            home: home.to_string(),
            created_at: now,
            id_enc: self.tokens.seal_id(&token, id),
        };
        let ledger = LedgerAppend {
            kind: "subject".into(),
            subject: Some(token.clone()),
            body: json!({"home": home.code()}),
            at: now,
            actor: crate::actor::current(),
        };
        match self.catalog.add_subject(&row, ledger).await {
            Ok(()) => Ok(token),
            Err(domicile_catalog::Error::AlreadyExists { .. }) => Err(Error::AlreadyRegistered),
            Err(e) => Err(e.into()),
        }
    }

    /// Every custodian the acting policy names for a home's categories is
    /// usable.
    async fn check_custodians_of(&self, home: Jurisdiction) -> Result<()> {
        let config = self.config();
        for category in config.categories() {
            let req = config
                .policy
                .requirement(&config.topology, home, category.as_str());
            if let Some(c) = req.custodian {
                self.keyring(c.as_str()).await?;
            }
        }
        Ok(())
    }

    /// Registers many subjects in one transaction; already registered ones
    /// are skipped. Returns how many were added.
    pub async fn add_subjects(&self, batch: &[(SubjectId, Jurisdiction)]) -> Result<u64> {
        let now = now_millis();
        let rows: Vec<SubjectRow> = batch
            .iter()
            .map(|(id, home)| {
                let token = self.tokens.subject(id);
                SubjectRow {
                    id_enc: self.tokens.seal_id(&token, id),
                    token,
                    home: home.to_string(),
                    created_at: now,
                }
            })
            .collect();
        Ok(self
            .catalog
            .add_subjects(&rows, now, &crate::actor::current())
            .await?)
    }

    /// Registers checked rows (from [`parse_subject_csv`]) in transactions
    /// of [`IMPORT_BATCH`]; `progress` hears how many rows each one took.
    pub async fn import_subjects(
        &self,
        rows: &[(SubjectId, Jurisdiction)],
        mut progress: impl FnMut(u64),
    ) -> Result<ImportReport> {
        let mut added = 0;
        for batch in rows.chunks(IMPORT_BATCH) {
            added += self.add_subjects(batch).await?;
            progress(batch.len() as u64);
        }
        Ok(ImportReport {
            rows: rows.len() as u64,
            added,
        })
    }

    /// One page of registered subjects in token order, after the cursor
    /// `after` (the `next` of the page before), at most `limit` (1 to
    /// [`MAX_PAGE`]), filtered by home and by a region holding one of their
    /// placements. A cursor that is no token is refused.
    pub async fn list_subjects(
        &self,
        after: Option<&str>,
        limit: u32,
        home: Option<Jurisdiction>,
        region: Option<&str>,
    ) -> Result<SubjectPage> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        if let Some(a) = after
            && (a.is_empty() || a.len() > 128 || !a.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Error::Invalid(
                "the cursor is not one a page of this listing gave".into(),
            ));
        }
        if let Some(r) = region
            && !self
                .config()
                .topology
                .regions
                .iter()
                .any(|x| x.id.as_str() == r)
        {
            return Err(Error::Invalid(format!("no region {r:?} in the topology")));
        }
        let home = home.map(|h| h.to_string());
        let rows = self
            .catalog
            .subjects_page(after, limit, home.as_deref(), region)
            .await?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.token.clone()))
            .flatten();
        let subjects = rows
            .into_iter()
            .map(|r| SubjectListed {
                subject: r
                    .id_enc
                    .as_deref()
                    .and_then(|s| self.tokens.open_id(&r.token, s)),
                token: r.token,
                home: r.home,
                created_at: r.created_at,
            })
            .collect();
        Ok(SubjectPage { subjects, next })
    }

    /// Every subject that holds at least one object, by id, for listings
    /// that span subjects (an S3 listing above the subject level). Ids are
    /// only readable with the deployment's secrets, so this is one pass over
    /// the placements (streamed in token order) and one seal lookup per 500
    /// subjects: O(subjects with data) per call, with the ids in memory.
    /// Subjects whose id was not sealed at registration are absent.
    pub async fn subjects_with_objects(&self) -> Result<Vec<SubjectId>> {
        let mut tokens: Vec<String> = Vec::new();
        self.for_each_placement(|p| {
            if p.objects > 0 && tokens.last() != Some(&p.token) {
                tokens.push(p.token.clone());
            }
            Ok(())
        })
        .await?;
        let mut out = Vec::with_capacity(tokens.len());
        for batch in tokens.chunks(500) {
            let names = self.subject_names(batch).await?;
            out.extend(
                batch
                    .iter()
                    .filter_map(|t| names.get(t))
                    .filter_map(|id| id.parse::<SubjectId>().ok()),
            );
        }
        Ok(out)
    }

    /// Where a subject's data is and who could reach it.
    pub async fn show_subject(&self, id: &SubjectId) -> Result<SubjectView> {
        let (token, home) = self.registered(id).await?;
        let placements = self.catalog.placements_of(&token).await?;
        let categories = placements
            .iter()
            .map(|p| CategoryView {
                category: p.category.clone(),
                regions: p.regions.clone(),
                epoch: p.epoch,
                objects: p.objects,
                bytes: p.bytes,
                custodian: p.custodian.clone(),
                since: p.since,
                state: if p.state.is_active() {
                    "active".into()
                } else {
                    "moving".into()
                },
            })
            .collect();
        let exposure = self
            .subject_exposure(&placements)
            .into_iter()
            .map(|(authority, level, grounds)| AuthorityLevel {
                authority,
                level,
                grounds,
            })
            .collect();
        Ok(SubjectView {
            subject: id.to_string(),
            home,
            categories,
            exposure,
        })
    }

    /// Changes a subject's home. Its data follows at the next migration.
    pub async fn rehome(&self, id: &SubjectId, home: Jurisdiction) -> Result<Jurisdiction> {
        let (token, old) = self.registered(id).await?;
        let ledger = LedgerAppend {
            kind: "rehome".into(),
            subject: Some(token.clone()),
            body: json!({"from": old.code(), "to": home.code()}),
            at: now_millis(),
            actor: crate::actor::current(),
        };
        self.catalog.set_home(&token, home.code(), ledger).await?;
        Ok(old)
    }

    /// Erases a subject: index rows, placements and wrapped data keys go in
    /// one catalog transaction with the ledger entry (the keys' deletion
    /// shreds every copy at once); then the subject's blobs are purged from
    /// every region at once, by the erasure itself (no grace period, and no
    /// collection of other subjects' garbage). What a region that fails
    /// keeps stays queued for the background collection.
    pub async fn erase_subject(&self, id: &SubjectId) -> Result<ErasureReport> {
        let (token, _) = self.registered(id).await?;
        let placements = self.catalog.placements_of(&token).await?;
        let objects: i64 = placements.iter().map(|p| p.objects).sum();
        let ledger = LedgerAppend {
            kind: "erasure".into(),
            subject: Some(token.clone()),
            body: json!({
                "placements": placements.len(),
                "objects": objects,
                "keys_shredded": placements.iter().map(|p| json!({"category": p.category, "custodian": p.custodian})).collect::<Vec<_>>(),
            }),
            at: now_millis(),
            actor: crate::actor::current(),
        };
        let garbage = self.catalog.erase_subject(&token, ledger).await?;
        self.forget_keys(&token);
        let copies_deleted = self.purge_erased(&token, &garbage).await?;
        Ok(ErasureReport {
            placements: placements.len() as u64,
            objects: garbage.len() as u64,
            copies_deleted,
        })
    }
}
