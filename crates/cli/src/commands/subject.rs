//! `subject add`, `import`, `show`, `rehome` and `erase`.

use std::path::Path;

use anyhow::Result;
use domicile_core::exposure::ASSUMPTION;
use domicile_core::ids::SubjectId;
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::Engine;
use serde_json::json;

use super::{jurisdiction, subject};
use crate::BadInput;
use crate::cli::SubjectCmd;
use crate::output::{self, Format, Table, emit};
use crate::progress::Progress;

pub(super) async fn run(engine: &Engine, format: Format, cmd: SubjectCmd) -> Result<u8> {
    match cmd {
        SubjectCmd::Add { id, home } => {
            let id = subject(&id)?;
            let home = jurisdiction(&home)?;
            engine.add_subject(&id, home).await?;
            if format != Format::Table {
                emit(
                    format,
                    &json!({"subject": id, "home": home}),
                    &Table::new(&["subject", "home"]),
                )?;
            }
            Ok(0)
        }
        SubjectCmd::Import { file } => {
            let rows = read_subject_csv(&file)?;
            let mut progress = Progress::new("import", rows.len() as u64);
            let r = engine.import_subjects(&rows, |n| progress.inc(n)).await?;
            progress.finish();
            let mut t = Table::new(&["rows", "added", "already registered"]);
            t.row(vec![
                r.rows.to_string(),
                r.added.to_string(),
                (r.rows - r.added).to_string(),
            ]);
            emit(format, &r, &t)?;
            Ok(0)
        }
        SubjectCmd::Show { id } => {
            let v = engine.show_subject(&subject(&id)?).await?;
            let mut t = Table::new(&[
                "category",
                "regions",
                "epoch",
                "objects",
                "bytes",
                "custodian",
                "since",
            ]);
            for c in &v.categories {
                t.row(vec![
                    c.category.clone(),
                    c.regions.join(","),
                    c.epoch.to_string(),
                    c.objects.to_string(),
                    c.bytes.to_string(),
                    c.custodian.clone(),
                    output::time(c.since),
                ]);
            }
            emit(format, &v, &t)?;
            if format == Format::Table {
                println!("\nhome: {}", v.home);
                let reach: Vec<String> = v
                    .exposure
                    .iter()
                    .filter(|e| e.level != domicile_core::exposure::Level::None)
                    .map(|e| {
                        format!(
                            "{} ({}: {})",
                            e.authority,
                            e.level.as_str(),
                            e.grounds.join(", ")
                        )
                    })
                    .collect();
                println!(
                    "could be compelled by: {}",
                    if reach.is_empty() {
                        "nobody".into()
                    } else {
                        reach.join(", ")
                    }
                );
                println!("{ASSUMPTION}");
                crate::render::print_citations(&domicile_core::presets::cited(
                    v.exposure.iter().flat_map(|e| e.grounds.iter()),
                ));
            }
            Ok(0)
        }
        SubjectCmd::Rehome { id, home } => {
            let id = subject(&id)?;
            let home = jurisdiction(&home)?;
            let old = engine.rehome(&id, home).await?;
            if format == Format::Table {
                println!(
                    "rehomed from {old} to {home}; its data follows at the next `migrate apply`"
                );
            } else {
                emit(
                    format,
                    &json!({"subject": id, "from": old, "to": home}),
                    &Table::new(&["subject"]),
                )?;
            }
            Ok(0)
        }
        SubjectCmd::Erase { id } => {
            let r = engine.erase_subject(&subject(&id)?).await?;
            let mut t = Table::new(&["placements", "objects", "copies deleted"]);
            t.row(vec![
                r.placements.to_string(),
                r.objects.to_string(),
                r.copies_deleted.to_string(),
            ]);
            emit(format, &r, &t)?;
            Ok(0)
        }
    }
}

/// Reads `subject,home` rows (the engine's parser, as `POST
/// /v1/subjects/import` uses it). Every row is checked before anything is
/// written, so a bad file changes nothing.
fn read_subject_csv(path: &Path) -> Result<Vec<(SubjectId, Jurisdiction)>> {
    let file = std::fs::File::open(path)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
    Ok(domicile_engine::subjects::parse_subject_csv(
        std::io::BufReader::new(file),
        &path.display().to_string(),
    )?)
}
