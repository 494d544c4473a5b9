//! Whole-file work on local-folder regions, each done in one blocking call:
//! the verified copy of a blob between two folders, the deletion of one
//! blob with the staged copies killed writers left of it, and the deletion
//! of everything under a prefix.
//!
//! The object store's local backend runs every call (open, stat, read,
//! write and rename) on a blocking thread of its own, so a verified copy of
//! one blob through it costs six thread hand-offs, and a purge one per file.
//! On a small machine those hand-offs cost more CPU than the copying itself
//! (measured in docs/benchmarks.md). These functions do the same file
//! operations the backend does, on the same files: paths are mapped by the
//! backend's own `path_to_filesystem`, and a write is staged as the backend
//! stages it (`name#N`, which its listings hide, then renamed into place),
//! so the backend and these functions always see one another's files.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Seek, SeekFrom};
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::error::{Error, Result};

/// A local-folder region as files: how its objects map to paths.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    fs: Arc<LocalFileSystem>,
    root: PathBuf,
}

/// What a copy between two folders did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Copied {
    /// Copied and read back intact: the stored size.
    Done(u64),
    /// The source is not there.
    Missing,
    /// The source's bytes hash to this, not the expected checksum: the copy was deleted.
    SourceSum(String),
    /// The source is intact but its copy read back hashes to this: it was deleted.
    ReceivedSum(String),
}

impl Folder {
    pub(crate) fn new(fs: Arc<LocalFileSystem>, root: PathBuf) -> Self {
        Self { fs, root }
    }

    /// The file of an object (or the folder of a prefix).
    pub(crate) fn file(&self, location: &Path) -> object_store::Result<PathBuf> {
        self.fs.path_to_filesystem(location)
    }

    /// The region's folder.
    pub(crate) fn root(&self) -> &FsPath {
        &self.root
    }
}

/// Copies `src` to `dst`, then reads the copy back: it is kept only if
/// its bytes hash (BLAKE3) to `expected`. The bytes go from file to file
/// inside the kernel (`copy_file_range`, which `io::copy` uses between two
/// files), so the data crosses into this process once, for the check, in
/// a fixed buffer: any size of blob, in bounded memory. The copy is staged
/// beside `dst` and renamed into place only once checked, without fsync:
/// the caller makes a bulk of copies durable at once (`syncfs`). A file
/// system error comes with the file it happened on; a staged or bad copy
/// is removed before returning.
pub(crate) fn copy_file(
    src: &FsPath,
    dst: &FsPath,
    expected: &str,
) -> Result<Copied, (PathBuf, io::Error)> {
    let at = |p: &FsPath| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut file = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Copied::Missing),
        Err(e) => return Err((src.to_path_buf(), e)),
    };
    let (mut out, staged) = stage(dst).map_err(at(dst))?;
    let checked = io::copy(&mut file, &mut out)
        .and_then(|len| {
            out.seek(SeekFrom::Start(0))?;
            Ok((len, sum_of(&mut out)?))
        })
        .map_err(at(dst));
    drop(out);
    let outcome = match checked {
        Ok((len, sum)) if sum.eq_ignore_ascii_case(expected) => {
            match std::fs::rename(&staged, dst) {
                Ok(()) => return Ok(Copied::Done(len)),
                Err(e) => Err((dst.to_path_buf(), e)),
            }
        }
        // Which side is bad: the source is hashed again only now.
        Ok((_, received)) => file
            .seek(SeekFrom::Start(0))
            .and_then(|_| sum_of(&mut file))
            .map(|held| {
                if held.eq_ignore_ascii_case(expected) {
                    Copied::ReceivedSum(received)
                } else {
                    Copied::SourceSum(held)
                }
            })
            .map_err(at(src)),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&staged);
    outcome
}

/// The BLAKE3 (lowercase hex) of what `file` holds from its position on.
fn sum_of(file: &mut File) -> io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Runs file work on a blocking thread; a panic there is an I/O error on `what`.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Io {
            path: PathBuf::from(what),
            source: io::Error::other(e.to_string()),
        })?
}

/// Most staged copies of one file at once (`#1` to `#STAGED_MAX`).
const STAGED_MAX: u32 = 1_000;

/// The name of the `n`th staged copy of `file`: `file#n`.
fn staged(file: &FsPath, n: u32) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!("#{n}"));
    PathBuf::from(name)
}

/// The file name a staged copy's name belongs to (`blob` for `blob#3`);
/// `None` for any other name.
pub(crate) fn staged_of(name: &str) -> Option<&str> {
    name.rsplit_once('#')
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map(|(file, _)| file)
}

/// Creates a fresh staging file `dst#N` (and `dst`'s folders if missing).
fn stage(dst: &FsPath) -> io::Result<(File, PathBuf)> {
    let mut n = 1u32;
    loop {
        let staged = staged(dst, n);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&staged)
        {
            Ok(f) => return Ok((f, staged)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && n < STAGED_MAX => n += 1,
            Err(e) if e.kind() == ErrorKind::NotFound && n == 1 => {
                let parent = dst.parent().ok_or(e)?;
                std::fs::create_dir_all(parent)?;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deletes the file `file` (inside `root`) and the staged copies of it a
/// writer killed mid-way left beside it (`file#1`, `file#2`, … up to the
/// first one missing: a blob's name is written by one writer, which stages
/// it as `#1`), then every folder above it that this left empty, up to
/// `root`, as the object store's automatic cleanup does. Returns how many
/// files were deleted; a missing file is nothing to delete.
pub(crate) fn delete_file(root: &FsPath, file: &FsPath) -> io::Result<u64> {
    inside(root, file)?;
    let mut files = 0u64;
    for n in 1..=STAGED_MAX {
        match std::fs::remove_file(staged(file, n)) {
            Ok(()) => files += 1,
            Err(e) if e.kind() == ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_file(file) {
        Ok(()) => files += 1,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    prune_above(root, file);
    Ok(files)
}

/// Refuses a path that is not strictly inside `root`.
fn inside(root: &FsPath, path: &FsPath) -> io::Result<()> {
    let climbs = path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir));
    if climbs || !path.starts_with(root) || path == root {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not inside {}", path.display(), root.display()),
        ));
    }
    Ok(())
}

/// Deletes every folder above `path` that is empty, up to `root`.
fn prune_above(root: &FsPath, path: &FsPath) {
    let mut above = path.parent();
    while let Some(d) = above
        && d != root
        && d.starts_with(root)
    {
        // Not empty (another subject's files): the cleanup ends here.
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        above = d.parent();
    }
}

/// Deletes the folder `dir` (inside `root`) with everything in it, then
/// every folder above it that this left empty, up to `root`, as the object
/// store's automatic cleanup does. Returns how many files were deleted; a
/// missing folder is nothing to delete.
pub(crate) fn delete_tree(root: &FsPath, dir: &FsPath) -> io::Result<u64> {
    inside(root, dir)?;
    let mut files = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                std::fs::remove_file(entry.path())?;
                files += 1;
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    prune_above(root, dir);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(data: &[u8]) -> String {
        blake3::hash(data).to_hex().to_string()
    }

    #[test]
    fn a_copy_is_staged_renamed_and_checked() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("a/blob");
        std::fs::create_dir_all(dir.path().join("a"))?;
        std::fs::write(&src, b"ciphertext")?;
        let dst = dir.path().join("b/x/blob");
        assert_eq!(
            copy_file(&src, &dst, &sum(b"ciphertext")).map_err(|(_, e)| e)?,
            Copied::Done(10)
        );
        assert_eq!(std::fs::read(&dst)?, b"ciphertext");
        // No staging file stays behind.
        assert_eq!(std::fs::read_dir(dir.path().join("b/x"))?.count(), 1);
        Ok(())
    }

    #[test]
    fn a_source_that_fails_its_checksum_is_not_copied() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("blob");
        std::fs::write(&src, b"tampered")?;
        let dst = dir.path().join("b/blob");
        let copy = |src: &FsPath, want: &[u8]| copy_file(src, &dst, &sum(want)).map_err(|(_, e)| e);
        let got = copy(&src, b"original")?;
        assert_eq!(got, Copied::SourceSum(sum(b"tampered")));
        assert!(!dst.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join("b"))?.count(),
            0,
            "the staged copy is deleted"
        );
        assert_eq!(copy(&dir.path().join("none"), b"x")?, Copied::Missing);
        assert!(!dst.exists());
        Ok(())
    }

    #[test]
    fn a_large_blob_is_copied_in_bounded_memory() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("blob");
        // Larger than the check's buffer, and not a multiple of it.
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data)?;
        let dst = dir.path().join("b/blob");
        assert_eq!(
            copy_file(&src, &dst, &sum(&data)).map_err(|(_, e)| e)?,
            Copied::Done(data.len() as u64)
        );
        assert!(std::fs::read(&dst)? == data);
        Ok(())
    }

    #[test]
    fn a_staged_name_names_its_file() {
        assert_eq!(staged_of("b1#3"), Some("b1"));
        assert_eq!(staged(FsPath::new("a/b1"), 3), PathBuf::from("a/b1#3"));
        for other in ["b1", "b1#", "b1#x", "b1#3x"] {
            assert_eq!(staged_of(other), None, "{other}");
        }
    }

    #[test]
    fn deleting_a_file_takes_its_staged_copies_and_prunes_empty_parents() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("v1/ab/t1/media"))?;
        for f in ["b1", "b1#1", "b1#2", "b2#1"] {
            std::fs::write(root.join("v1/ab/t1/media").join(f), b"x")?;
        }
        let b1 = root.join("v1/ab/t1/media/b1");
        assert_eq!(delete_file(root, &b1)?, 3);
        assert!(
            root.join("v1/ab/t1/media/b2#1").exists(),
            "another blob's staged copy is kept"
        );
        assert_eq!(delete_file(root, &b1)?, 0, "nothing left to delete");
        // Only a staged copy, no blob: a writer killed before its rename.
        assert_eq!(delete_file(root, &root.join("v1/ab/t1/media/b2"))?, 1);
        assert!(!root.join("v1").exists(), "emptied folders are pruned");
        assert!(root.exists(), "the region's folder stays");
        assert!(delete_file(root, root).is_err());
        assert!(delete_file(root, &root.join("v1/../../x")).is_err());
        Ok(())
    }

    #[test]
    fn deleting_a_tree_counts_its_files_and_prunes_empty_parents() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("v1/ab/t1/media"))?;
        std::fs::create_dir_all(root.join("v1/ab/t2/media"))?;
        for f in [
            "v1/ab/t1/media/b1",
            "v1/ab/t1/media/b2#1",
            "v1/ab/t2/media/b3",
        ] {
            std::fs::write(root.join(f), b"x")?;
        }
        assert_eq!(delete_tree(root, &root.join("v1/ab/t1/media"))?, 2);
        assert!(
            !root.join("v1/ab/t1").exists(),
            "the emptied parent is pruned"
        );
        assert!(
            root.join("v1/ab/t2/media/b3").exists(),
            "another subject is kept"
        );
        assert_eq!(delete_tree(root, &root.join("v1/ab/t1/media"))?, 0);
        assert_eq!(delete_tree(root, &root.join("v1/ab/t2/media"))?, 1);
        assert!(!root.join("v1").exists());
        assert!(root.exists(), "the region's folder stays");
        assert!(delete_tree(root, root).is_err());
        assert!(delete_tree(root, &dir.path().join("..")).is_err());
        Ok(())
    }
}
