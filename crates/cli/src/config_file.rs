//! Loading the deployment's config file, for every command that needs it.

use std::path::Path;

use anyhow::Result;
use domicile_core::Config;

/// Reads and validates a config file; its errors are `FILE:LINE:COL: message`.
pub fn load(path: &Path) -> Result<Config> {
    Ok(Config::load(path)?)
}
