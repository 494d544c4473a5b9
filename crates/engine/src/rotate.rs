//! A custodian's rotation: every data key it wraps is wrapped again under
//! its key's newest version, online, and resumably.
//!
//! A `file://` custodian gets its next master key file first (unless a
//! rotation is to be finished: some keys are still under an older one); a
//! key manager's key gets its new version in the key manager, and the
//! rotation moves every key there (KMS `ReEncrypt`, Transit `rewrap`).
//!
//! The walk goes through the custodian's placements in pages. Each rewrap is
//! a compare-and-set on (token, category, epoch, custodian, old wrapped key):
//! a move or an erasure in the meantime wins, and the row is skipped (a move
//! brings a key of its own, made under the newest version). Writes go on
//! throughout: a rewrap changes neither the data key nor the epoch. Where
//! wrapped keys name their version (`file://`), the walk is repeated until
//! a pass finds none under an older one, so keys that other processes
//! wrapped behind the walk are moved too; killed midway, a rotation run
//! again finishes the same version instead of starting another.
//!
//! The ledger records the rotation's start and end (`rotation` entries: the
//! custodian, the key's identity and version, the counts), never a key. The
//! catalog's recorded identity of a `file://` custodian becomes the new
//! master key's at the end; until then the keyring holds the recorded key
//! as an earlier version, so the custodian is never taken for another.

use domicile_catalog::{LedgerAppend, PlacementRow, Rewrap};
use serde::Serialize;
use serde_json::json;

use crate::clock::now_millis;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// How a rotation runs.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Placements per page (and per rewrap transaction).
    pub page: u32,
    /// Stop after this many rewraps, leaving the rotation unfinished (for
    /// tests of a rotation that is interrupted and run again).
    pub stop_after: Option<u64>,
}

impl Default for RotateOptions {
    fn default() -> Self {
        RotateOptions {
            page: 200,
            stop_after: None,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RotationReport {
    pub custodian: String,
    /// The key's identity after the rotation (a `file://` master key's
    /// fingerprint, a KMS key's ARN, a Transit key's name).
    pub identity: String,
    /// The `file://` master key version now wrapping, if the keyring says.
    pub key_version: Option<u32>,
    /// Whether a new master key was added by this run (`file://`).
    pub new_key: bool,
    /// Whether this run finished a rotation an earlier run left unfinished.
    pub resumed: bool,
    /// Placements of the custodian, as the first pass found them.
    pub placements: u64,
    /// Rewrapped in every pass (later passes find keys wrapped behind the
    /// first one).
    pub rewrapped: u64,
    /// Already under the newest version when the first pass came.
    pub current: u64,
    /// Moved, erased or rewrapped by another process meanwhile.
    pub skipped: u64,
    /// Whether every key is under the newest version (false when stopped).
    pub complete: bool,
}

/// Passes after the first, looking for keys wrapped behind the walk.
const MAX_PASSES: u32 = 8;

impl Engine {
    /// Rotates custodian `id`: see the module's documentation.
    pub async fn rotate_custodian(
        &self,
        id: &str,
        options: &RotateOptions,
    ) -> Result<RotationReport> {
        let keyring = self.keyring(id).await?;
        let recorded_before = self.catalog.setting(&format!("custodian_key:{id}")).await?;
        let mut report = RotationReport {
            custodian: id.to_owned(),
            ..RotationReport::default()
        };
        // A file:// rotation left unfinished is finished, not started again.
        let stale = self.first_stale_placement(id).await?;
        report.resumed = stale.is_some();
        if stale.is_none() {
            report.new_key = keyring.add_master_key()?.is_some();
        }
        report.identity = keyring.identity().await?;
        report.key_version = keyring.key_file().and_then(|f| {
            f.file_name()?
                .to_str()?
                .strip_prefix("master-v")?
                .strip_suffix(".key")?
                .parse()
                .ok()
        });
        self.catalog
            .append_ledger(LedgerAppend {
                kind: "rotation".into(),
                subject: None,
                body: json!({
                    "phase": "start",
                    "custodian": id,
                    "key": report.identity,
                    "key_version": report.key_version,
                    "new_key": report.new_key,
                    "resumed": report.resumed,
                }),
                at: now_millis(),
                actor: crate::actor::current(),
            })
            .await?;
        tracing::info!(custodian = %id, new_key = report.new_key, resumed = report.resumed, "rotation started");

        let mut passes = 0;
        loop {
            let (stale_seen, stopped) = self
                .rotation_pass(id, options, passes == 0, &mut report)
                .await?;
            passes += 1;
            if stopped {
                return Ok(report);
            }
            // Keys that name no version were all rewrapped once: done.
            // Otherwise, until a pass finds none under an older version.
            if stale_seen == 0 || keyring.is_current(&[])?.is_none() {
                break;
            }
            if passes > MAX_PASSES {
                return Err(Error::Custody(format!(
                    "custodian {id}: keys keep appearing under an older master key (a process that cannot see the new one?); run the rotation again"
                )));
            }
        }
        report.complete = true;

        // The catalog recorded the key before the rotation: it records the
        // new one now, so the older file may be moved away.
        let setting = format!("custodian_key:{id}");
        if let Some(before) = recorded_before
            && before != report.identity
            && keyring.earlier_identities().contains(&before)
        {
            self.catalog.set_setting(&setting, &report.identity).await?;
        }
        self.catalog
            .append_ledger(LedgerAppend {
                kind: "rotation".into(),
                subject: None,
                body: json!({
                    "phase": "end",
                    "custodian": id,
                    "key": report.identity,
                    "key_version": report.key_version,
                    "placements": report.placements,
                    "rewrapped": report.rewrapped,
                    "current": report.current,
                    "skipped": report.skipped,
                }),
                at: now_millis(),
                actor: crate::actor::current(),
            })
            .await?;
        tracing::info!(custodian = %id, rewrapped = report.rewrapped, skipped = report.skipped, "rotation finished");
        Ok(report)
    }

    /// One walk over the custodian's placements. Returns how many were
    /// found under an older version (or of unknown version), and whether
    /// the walk stopped at `stop_after`.
    async fn rotation_pass(
        &self,
        id: &str,
        options: &RotateOptions,
        first: bool,
        report: &mut RotationReport,
    ) -> Result<(u64, bool)> {
        let keyring = self.keyring(id).await?;
        let mut stale_seen = 0;
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .catalog
                .custodian_placements_page(
                    id,
                    after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
                    options.page.max(1),
                )
                .await?;
            let Some(last) = page.last() else {
                return Ok((stale_seen, false));
            };
            after = Some((last.token.clone(), last.category.clone()));
            let mut rewraps = Vec::new();
            for p in &page {
                if first {
                    report.placements += 1;
                }
                if keyring.is_current(&p.wrapped_key)? == Some(true) {
                    if first {
                        report.current += 1;
                    }
                    continue;
                }
                stale_seen += 1;
                if options
                    .stop_after
                    .is_some_and(|n| report.rewrapped + rewraps.len() as u64 >= n)
                {
                    break;
                }
                rewraps.push(Self::rewrap_of(p, keyring, id).await?);
            }
            let stop = options
                .stop_after
                .is_some_and(|n| report.rewrapped + rewraps.len() as u64 >= n);
            for done in self.catalog.rewrap_placements(&rewraps).await? {
                if done {
                    report.rewrapped += 1;
                } else {
                    report.skipped += 1;
                }
            }
            if stop {
                return Ok((stale_seen, true));
            }
        }
    }

    async fn rewrap_of(
        p: &PlacementRow,
        keyring: &domicile_store::Keyring,
        id: &str,
    ) -> Result<Rewrap> {
        let new_key = keyring
            .rewrap(&p.wrapped_key, &Engine::key_context(&p.token, &p.category))
            .await?;
        Ok(Rewrap {
            token: p.token.clone(),
            category: p.category.clone(),
            epoch: p.epoch,
            custodian: id.to_owned(),
            old_key: p.wrapped_key.clone(),
            new_key,
        })
    }

    /// The first placement of `id` whose key is known to be under an older
    /// version than the keyring's newest, if any (`file://` only).
    async fn first_stale_placement(&self, id: &str) -> Result<Option<(String, String)>> {
        let keyring = self.keyring(id).await?;
        let mut after: Option<(String, String)> = None;
        loop {
            let page = self
                .catalog
                .custodian_placements_page(
                    id,
                    after.as_ref().map(|(t, c)| (t.as_str(), c.as_str())),
                    1_000,
                )
                .await?;
            let Some(last) = page.last() else {
                return Ok(None);
            };
            after = Some((last.token.clone(), last.category.clone()));
            for p in &page {
                if keyring.is_current(&p.wrapped_key)? == Some(false) {
                    return Ok(Some((p.token.clone(), p.category.clone())));
                }
            }
        }
    }
}
