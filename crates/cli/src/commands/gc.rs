//! `gc`: the collection passes `serve` runs in the background, run until
//! nothing due is left (`Engine::collect_all_due`), for deployments used
//! from the command line alone.

use anyhow::Result;
use domicile_engine::Engine;

use crate::output::{Format, Table, emit};

/// The passes' totals; exit 1 if some blobs could not be deleted
/// everywhere yet.
pub(super) async fn run(engine: &Engine, format: Format) -> Result<u8> {
    let total = engine.collect_all_due().await?;
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
