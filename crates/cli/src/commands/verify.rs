//! `verify`: region scans against the catalog and the policy; `--deep`
//! also decrypts every object through its custodian. `gc`: the collection
//! passes `serve` runs in the background, run until nothing due is left.

use anyhow::Result;
use domicile_engine::Engine;

use crate::EXIT_VIOLATION;
use crate::output::{Format, Table, emit};

pub(super) async fn run(engine: &Engine, format: Format, quick: bool, deep: bool) -> Result<u8> {
    let r = if deep {
        engine.verify_deep(!quick).await?
    } else {
        engine.verify(!quick).await?
    };
    let mut t = Table::new(&["kind", "region", "subject", "category", "blob", "detail"]);
    for p in &r.problems {
        t.row(vec![
            p.kind.clone(),
            p.region.clone(),
            p.subject.clone(),
            p.category.clone(),
            p.blob.clone(),
            p.detail.clone(),
        ]);
    }
    emit(format, &r, &t)?;
    if format == Format::Table {
        println!(
            "\n{} regions, {} blobs scanned, {} indexed objects, {} copies checked, {} checksums verified{}: {}",
            r.regions,
            r.blobs_scanned,
            r.objects_indexed,
            r.copies_checked,
            r.checksums_verified,
            if deep {
                format!(
                    ", {} objects decrypted, {} unchecked (custodian unusable)",
                    r.objects_decrypted, r.objects_unchecked
                )
            } else {
                String::new()
            },
            if r.problems.is_empty() {
                "ok".to_string()
            } else {
                format!("{} problem(s)", r.problems.len())
            }
        );
    }
    Ok(if r.problems.is_empty() {
        0
    } else {
        EXIT_VIOLATION
    })
}

/// `gc`: collection passes until none stops at its bound; the totals.
pub(super) async fn collect(engine: &Engine, format: Format) -> Result<u8> {
    let mut total = domicile_engine::GcReport::default();
    loop {
        let r = engine.collect_garbage().await?;
        total.blobs += r.blobs;
        total.copies_deleted += r.copies_deleted;
        total.failures += r.failures;
        total.put_off += r.put_off;
        for region in r.regions_backed_off {
            if !total.regions_backed_off.contains(&region) {
                total.regions_backed_off.push(region);
            }
        }
        // A pass that stopped at its bound having done nothing would only
        // meet the same rows again.
        if !r.more || r.blobs == 0 {
            break;
        }
    }
    let mut t = Table::new(&[
        "blobs",
        "copies deleted",
        "failed",
        "put off",
        "regions backed off",
    ]);
    t.row(vec![
        total.blobs.to_string(),
        total.copies_deleted.to_string(),
        total.failures.to_string(),
        total.put_off.to_string(),
        total.regions_backed_off.join(" "),
    ]);
    emit(format, &total, &t)?;
    if total.failures > 0 || total.put_off > 0 {
        eprintln!(
            "{} blobs could not be deleted everywhere yet; they are retried later",
            total.failures + total.put_off
        );
        return Ok(1);
    }
    Ok(0)
}
