//! `reach explain`: the grounds of one authority's reach under the active
//! config (the applied policy version, if any, as every report uses it);
//! the engine's `reach::explain`, as a table or JSON.

use anyhow::Result;
use domicile_core::exposure::ASSUMPTION;
use domicile_core::presets::NOT_LEGAL_ADVICE;
use domicile_engine::Engine;
use domicile_engine::reach::explain;

use super::jurisdiction;
use crate::cli::ReachCmd;
use crate::output::{Format, Table, emit};

pub(super) fn run(engine: &Engine, format: Format, cmd: ReachCmd) -> Result<u8> {
    match cmd {
        ReachCmd::Explain { authority } => {
            let a = jurisdiction(&authority)?;
            let e = explain(&engine.config(), a);
            let mut t = Table::new(&["ground", "over", "reaches", "at"]);
            for g in &e.grounds {
                t.row(vec![
                    g.ground.clone(),
                    g.over.join(", "),
                    g.reaches_text.clone(),
                    g.at.clone(),
                ]);
            }
            if format != Format::Table {
                emit(format, &e, &t)?;
                return Ok(0);
            }
            println!(
                "The grounds of {a}'s reach ({}) under {}:\n",
                e.name, e.config
            );
            if e.grounds.is_empty() {
                println!("No reach rule gives {a} any reach: it could compel nothing here.");
            } else {
                print!("{}", t.render());
            }
            for p in e.grounds.iter().filter_map(|g| g.preset_ref) {
                println!("\n{}: {}", p.name, p.title);
                for c in p.citations {
                    println!("  - {c}");
                }
                println!("  {}", p.summary);
            }
            println!("\n{ASSUMPTION}");
            println!("{NOT_LEGAL_ADVICE}");
            Ok(0)
        }
    }
}
