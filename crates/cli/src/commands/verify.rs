//! `verify`: region scans against the catalog and the policy; `--deep`
//! also decrypts every object through its custodian.

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
            if r.is_clean() {
                "ok".to_string()
            } else if r.problems_found > r.problems.len() as u64 {
                format!(
                    "{} problem(s), the first {} listed ({})",
                    r.problems_found,
                    r.problems.len(),
                    r.problems_by_kind
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!("{} problem(s)", r.problems_found)
            }
        );
    }
    Ok(if r.is_clean() { 0 } else { EXIT_VIOLATION })
}
