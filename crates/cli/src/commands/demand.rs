//! `demand`: what an authority could compel for one subject.

use anyhow::Result;
use domicile_core::exposure::ASSUMPTION;
use domicile_engine::Engine;

use super::{jurisdiction, subject};
use crate::output::{Format, Table, emit};

pub(super) async fn run(
    engine: &Engine,
    format: Format,
    authority: String,
    id: String,
) -> Result<u8> {
    let a = jurisdiction(&authority)?;
    let id = subject(&id)?;
    let d = engine.demand(a, &id).await?;
    let mut t = Table::new(&["category", "region", "objects", "bytes", "level", "grounds"]);
    for c in &d.copies {
        t.row(vec![
            c.category.clone(),
            c.region.clone(),
            c.objects.to_string(),
            c.bytes.to_string(),
            c.level.as_str().into(),
            c.grounds.join(", "),
        ]);
    }
    emit(format, &d, &t)?;
    if format == Format::Table {
        println!(
            "\n{} could compel: {} (recorded as ledger entry {}).\n{}",
            d.authority,
            d.level.as_str(),
            d.ledger_seq,
            ASSUMPTION
        );
        crate::render::print_citations(&domicile_core::presets::cited(
            d.copies.iter().flat_map(|c| c.grounds.iter()),
        ));
    }
    Ok(0)
}
