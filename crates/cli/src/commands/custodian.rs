//! `custodian rotate`: every data key of a custodian wrapped again under its
//! key's newest version.

use anyhow::Result;
use domicile_engine::{Engine, RotateOptions};

use crate::cli::CustodianCmd;
use crate::output::{Format, Table, emit};

pub(super) async fn run(engine: &Engine, format: Format, cmd: CustodianCmd) -> Result<u8> {
    match cmd {
        CustodianCmd::Rotate { name } => {
            let r = engine
                .rotate_custodian(&name, &RotateOptions::default())
                .await?;
            let mut t = Table::new(&[
                "custodian",
                "key",
                "version",
                "rewrapped",
                "current",
                "skipped",
            ]);
            t.row(vec![
                r.custodian.clone(),
                r.identity.clone(),
                r.key_version.map_or_else(|| "-".into(), |v| v.to_string()),
                r.rewrapped.to_string(),
                r.current.to_string(),
                r.skipped.to_string(),
            ]);
            emit(format, &r, &t)?;
            if format == Format::Table {
                println!(
                    "\n{} placements walked{}{}: every data key of {} is under its key's newest version",
                    r.placements,
                    if r.new_key {
                        ", new master key added"
                    } else {
                        ""
                    },
                    if r.resumed {
                        ", an unfinished rotation finished"
                    } else {
                        ""
                    },
                    r.custodian
                );
            }
            Ok(0)
        }
    }
}
