//! Walking a region folder as a test sees it: every file, staging files
//! included, while purges may be removing folders meanwhile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Adds every file under `dir` to `out`, relative to `root`. A folder
/// that does not exist (or no longer does) adds nothing.
pub fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    // The entry's own type (from the listing, no second lookup): a folder
    // removed meanwhile by a purge is never mistaken for a file.
    for e in entries.flatten() {
        let Ok(ty) = e.file_type() else { continue };
        let path = e.path();
        if ty.is_dir() {
            walk(root, &path, out);
        } else {
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}
