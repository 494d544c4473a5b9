//! `domicile init`: a commented example deployment.

use std::path::Path;

use anyhow::{Context, Result};

use crate::BadInput;

/// The example config, validated by the tests.
pub const EXAMPLE: &str = include_str!("../../../examples/domicile.toml");

pub fn run(dir: &Path) -> Result<u8> {
    let path = dir.join("domicile.toml");
    if path.exists() {
        return Err(BadInput(format!(
            "{} already exists; not overwriting it",
            path.display()
        ))
        .into());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&path, EXAMPLE).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    println!(
        "next: cd {} && domicile policy check && domicile subject add alice --home IN",
        dir.display()
    );
    Ok(0)
}
