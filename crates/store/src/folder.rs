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
//!
//! A migration's copies run on threads of their own, at a lower CPU
//! priority than the rest of the process ([`bulk`]), with buffers shared
//! across copies ([`DirectBuf`]).

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
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
    /// Copied and checked (the bytes written, or the copy read back): the stored size.
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

/// Copies `src` to `dst`, keeping the copy only if the bytes written hash
/// (BLAKE3) to `expected`. The copy is staged beside `dst` and renamed into
/// place only once checked, without fsync: the caller makes a bulk of
/// copies durable at once (`syncfs`). A file system error comes with the
/// file it happened on; a staged or bad copy is removed before returning.
///
/// Where the file system takes direct I/O, the staged copy is written from
/// a buffer the source was read and hashed into ([`write_direct`]), its
/// whole blocks with `O_DIRECT`: the bytes checked are the bytes written,
/// and they go to the disk without a second copy in the page cache (copying
/// into fresh page cache pages was the largest cost of a move, measured in
/// docs/benchmarks.md). Elsewhere the bytes go from file to file inside the
/// kernel (`copy_file_range`, which `io::copy` uses between two files) and
/// the copy is read back to be checked. Either way a blob of any size takes
/// bounded memory.
pub(crate) fn copy_file(
    src: &FsPath,
    dst: &FsPath,
    expected: &str,
) -> Result<Copied, (PathBuf, io::Error)> {
    let mut file = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Copied::Missing),
        Err(e) => return Err((src.to_path_buf(), e)),
    };
    let (mut out, staged) = stage(dst).map_err(at(dst))?;
    let outcome = match write_direct(&mut file, &mut out) {
        Ok(Some((len, sum))) if sum.eq_ignore_ascii_case(expected) => {
            keep(&staged, dst, len).map_err(at(dst))
        }
        // What was read from the source is what was written.
        Ok(Some((_, held))) => Ok(Copied::SourceSum(held)),
        Ok(None) => copy_and_read_back(&mut file, &mut out, &staged, src, dst, expected),
        Err(Failed::Read(e)) => Err((src.to_path_buf(), e)),
        Err(Failed::Write(e)) => Err((dst.to_path_buf(), e)),
    };
    if !matches!(outcome, Ok(Copied::Done(_))) {
        let _ = std::fs::remove_file(&staged);
    }
    outcome
}

/// Tags an I/O error with the file it happened on.
fn at(p: &FsPath) -> impl FnOnce(io::Error) -> (PathBuf, io::Error) {
    let p = p.to_path_buf();
    move |e| (p, e)
}

/// Renames a checked staged copy into place.
fn keep(staged: &FsPath, dst: &FsPath, len: u64) -> io::Result<Copied> {
    std::fs::rename(staged, dst)?;
    Ok(Copied::Done(len))
}

/// The copy through the kernel, read back to be checked: for file systems
/// without direct I/O. `out` is empty.
fn copy_and_read_back(
    file: &mut File,
    out: &mut File,
    staged: &FsPath,
    src: &FsPath,
    dst: &FsPath,
    expected: &str,
) -> Result<Copied, (PathBuf, io::Error)> {
    let checked = io::copy(file, out)
        .and_then(|len| {
            out.seek(SeekFrom::Start(0))?;
            Ok((len, sum_of(out)?))
        })
        .map_err(at(dst))?;
    match checked {
        (len, sum) if sum.eq_ignore_ascii_case(expected) => keep(staged, dst, len).map_err(at(dst)),
        // Which side is bad: the source is hashed again only now.
        (_, received) => file
            .seek(SeekFrom::Start(0))
            .and_then(|_| sum_of(file))
            .map(|held| {
                if held.eq_ignore_ascii_case(expected) {
                    Copied::ReceivedSum(received)
                } else {
                    Copied::SourceSum(held)
                }
            })
            .map_err(at(src)),
    }
}

/// Which side of a copy an I/O error happened on.
enum Failed {
    Read(io::Error),
    Write(io::Error),
}

/// Direct I/O needs buffers, offsets and lengths aligned to the device's
/// logical block: 4 KiB covers the devices in use.
const ALIGN: usize = 4096;

/// Bytes read, hashed and written at a time by [`write_direct`].
const CHUNK: usize = 1 << 20;

/// Bytes of [`write_direct`] buffers kept for later copies (see
/// [`DirectBuf`]): about what the copies of one busy move hold at once.
const POOLED_BYTES: usize = 64 << 20;

/// Most buffers kept.
const POOLED_MAX: usize = 128;

/// Buffers of finished copies, for the next ones, and their bytes.
static DIRECT_BUFS: std::sync::Mutex<(Vec<Vec<u8>>, usize)> =
    std::sync::Mutex::new((Vec::new(), 0));

/// A buffer for [`write_direct`], taken from the process's pool and given
/// back to it when dropped (while the pool holds under `POOLED_BYTES`).
/// Fresh memory costs a page fault and the kernel's zeroing per 4 KiB, which
/// cost more than the copy itself when each blocking thread made its own
/// 1 MiB buffer (a move of many small blobs starts dozens of threads): a
/// pooled buffer is zeroed once, and sized to the copies that need it.
struct DirectBuf(Vec<u8>);

impl DirectBuf {
    /// A buffer able to hold `len` bytes (at most `CHUNK`) on an `ALIGN`
    /// boundary: the smallest pooled one that does, or a new one.
    fn take(len: u64) -> Self {
        let need = usize::try_from(len)
            .unwrap_or(CHUNK)
            .clamp(1, CHUNK)
            .next_multiple_of(ALIGN)
            + ALIGN;
        let pooled = DIRECT_BUFS.lock().ok().and_then(|mut pool| {
            let (i, _) = pool
                .0
                .iter()
                .enumerate()
                .filter(|(_, b)| b.len() >= need)
                .min_by_key(|(_, b)| b.len())?;
            let raw = pool.0.swap_remove(i);
            pool.1 -= raw.len();
            Some(raw)
        });
        DirectBuf(pooled.unwrap_or_else(|| vec![0; need]))
    }

    /// The aligned part: a multiple of `ALIGN` bytes, at most `CHUNK`;
    /// `None` if the allocation cannot hold one aligned block.
    fn aligned(&mut self) -> Option<&mut [u8]> {
        let start = self.0.as_ptr().align_offset(ALIGN);
        let room = self.0.len().checked_sub(start)?;
        let len = (room / ALIGN * ALIGN).min(CHUNK);
        self.0.get_mut(start..start + len).filter(|b| !b.is_empty())
    }
}

impl Drop for DirectBuf {
    fn drop(&mut self) {
        let raw = std::mem::take(&mut self.0);
        if let Ok(mut pool) = DIRECT_BUFS.lock()
            && pool.1 + raw.len() <= POOLED_BYTES
            && pool.0.len() < POOLED_MAX
        {
            pool.1 += raw.len();
            pool.0.push(raw);
        }
    }
}

/// Writes what `src` holds into the empty file `out` with `O_DIRECT`,
/// hashing it on the way. Returns the length and the BLAKE3 of the bytes
/// written, or `None` (with `out` still empty and buffered) if the file
/// system does not take direct I/O. Whole blocks go direct; a last part
/// block goes through the page cache.
fn write_direct(src: &mut File, out: &mut File) -> Result<Option<(u64, String)>, Failed> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(&*out).map_err(|e| Failed::Write(e.into()))?;
    if fcntl_setfl(&*out, flags | OFlags::DIRECT).is_err() {
        return Ok(None);
    }
    // Sized by the source's length now: a file that grows meanwhile is
    // still copied whole, a buffer at a time.
    let len_now = src.metadata().map_err(Failed::Read)?.len();
    let mut raw = DirectBuf::take(len_now);
    let written = match raw.aligned() {
        Some(buf) => write_blocks(src, out, flags, buf)?,
        None => None, // not alignable here: leave it to the kernel's copy
    };
    if written.is_none() {
        // Back to buffered I/O, from the start, for the kernel's copy.
        fcntl_setfl(&*out, flags).map_err(|e| Failed::Write(e.into()))?;
        src.seek(SeekFrom::Start(0)).map_err(Failed::Read)?;
    }
    Ok(written)
}

/// [`write_direct`]'s copy through `buf` (whole blocks, aligned): whole
/// blocks written with `O_DIRECT`, a last part block with `out` back on its
/// buffered `flags`. `None` if the device refused the first direct write.
fn write_blocks(
    src: &mut File,
    out: &mut File,
    flags: rustix::fs::OFlags,
    buf: &mut [u8],
) -> Result<Option<(u64, String)>, Failed> {
    let mut hasher = blake3::Hasher::new();
    let mut len = 0u64;
    loop {
        let n = fill(src, buf).map_err(Failed::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        // Whole blocks go direct. The last part block (only a final
        // read is short: `buf` is whole blocks) is written through the
        // page cache, which the region's sync writes out: written
        // direct, zero-padded, the file would then be cut back to its
        // length, and ext4 reads the cut block back from the disk
        // before it can zero its end (one synchronous read per blob).
        let whole = n / ALIGN * ALIGN;
        if whole > 0 {
            match out.write_all(&buf[..whole]) {
                Ok(()) => {}
                // The device wants a larger alignment than ALIGN: only
                // possible on the first write, before anything is in `out`.
                Err(e) if e.kind() == ErrorKind::InvalidInput && len == 0 => {
                    return Ok(None);
                }
                Err(e) => return Err(Failed::Write(e)),
            }
        }
        if whole < n {
            rustix::fs::fcntl_setfl(&*out, flags).map_err(|e| Failed::Write(e.into()))?;
            out.write_all(&buf[whole..n]).map_err(Failed::Write)?;
        }
        len += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok(Some((len, hasher.finalize().to_hex().to_string())))
}

/// Reads from `src` until `buf` is full or the file ends; returns how
/// many bytes were read.
fn fill(src: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
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
        .map_err(|e| panicked(what, e))?
}

/// A blocking task's panic (or cancellation), as an I/O error on `what`.
fn panicked(what: &str, e: tokio::task::JoinError) -> Error {
    Error::Io {
        path: PathBuf::from(what),
        source: io::Error::other(e.to_string()),
    }
}

/// How far below the process's other threads the threads of bulk file
/// work ([`bulk`]) run: nice +10 gives a runnable thread about a tenth of
/// the CPU share of one at the process's own priority.
const BULK_NICE: i32 = 10;

/// Most bulk file operations running at once; more wait for a thread.
const BULK_THREADS: usize = 64;

/// Runs a bulk copy's file work (a migration's verified copies) on a
/// blocking thread of a pool of its own, whose threads run at a lower CPU
/// priority than the rest of the process (`BULK_NICE`). A move of many
/// small blobs keeps dozens of copies in flight; at the process's own
/// priority they crowd out, on a small machine, the threads the service
/// answers requests on and the catalog's connection, which a move's own
/// commits wait for. Where the pool cannot be made, the work runs as
/// [`blocking`] work does.
pub(crate) async fn bulk<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    static POOL: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("domicile-bulk")
            .max_blocking_threads(BULK_THREADS)
            .on_thread_start(|| {
                // Raising a thread's own nice value needs no privilege;
                // failing to is only a thread at the usual priority.
                if let Ok(nice) = rustix::process::getpriority_process(None) {
                    let _ = rustix::process::setpriority_process(None, (nice + BULK_NICE).min(19));
                }
            })
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no pool for bulk file work; it runs beside the rest"))
            .ok()
    });
    let Some(pool) = pool else {
        return blocking(what, work).await;
    };
    pool.spawn_blocking(work)
        .await
        .map_err(|e| panicked(what, e))?
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
    fn direct_writes_keep_every_length() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let lens = [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 17,
        ];
        // Up, then down again: pooled buffers grown by one copy serve the
        // next, larger or smaller.
        for &len in lens.iter().chain(lens.iter().rev()) {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ 0x5a).collect();
            let src = dir.path().join(format!("src-{len}"));
            std::fs::write(&src, &data)?;
            let (mut out, staged) = stage(&dir.path().join(format!("out/{len}")))?;
            let written = write_direct(&mut File::open(&src)?, &mut out).map_err(|e| match e {
                Failed::Read(e) | Failed::Write(e) => e,
            })?;
            assert_eq!(
                written,
                Some((len as u64, sum(&data))),
                "length {len}: this test needs a temporary folder on a file system with direct I/O (ext4, xfs; tmpfs from Linux 6.6)"
            );
            drop(out);
            assert!(std::fs::read(&staged)? == data, "length {len}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn bulk_work_runs_below_the_process_priority() -> Result<()> {
        /// The calling thread's nice value.
        fn nice() -> Result<i32> {
            rustix::process::getpriority_process(None).map_err(|e| Error::Io {
                path: PathBuf::from("(priority)"),
                source: e.into(),
            })
        }
        let outer = nice()?;
        let inner = bulk("(test)", nice).await?;
        assert_eq!(inner, (outer + BULK_NICE).min(19));
        // A panic in bulk work is an error, not a crash.
        let failed = bulk("(test)", || -> Result<()> { panic!("bulk work panicked") }).await;
        assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
        Ok(())
    }

    #[test]
    fn a_pooled_buffer_is_aligned_and_holds_what_it_was_taken_for() {
        for len in [0, 1, 4095, 4096, 4097, 100_000, CHUNK as u64, u64::MAX] {
            let mut buf = DirectBuf::take(len);
            let Some(aligned) = buf.aligned() else {
                panic!("no aligned block for {len}");
            };
            assert_eq!(aligned.as_ptr().align_offset(ALIGN), 0, "{len}");
            assert_eq!(aligned.len() % ALIGN, 0, "{len}");
            let want = usize::try_from(len).unwrap_or(CHUNK).clamp(1, CHUNK);
            assert!(aligned.len() >= want && aligned.len() <= CHUNK, "{len}");
        }
    }

    #[test]
    fn the_copy_through_the_kernel_is_read_back_and_checked()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("blob");
        let data: Vec<u8> = (0..(1 << 20) + 5).map(|i| (i % 253) as u8).collect();
        std::fs::write(&src, &data)?;
        let dst = dir.path().join("b/blob");
        let copy = |want: &str| -> Result<Copied, io::Error> {
            let (mut out, staged) = stage(&dst)?;
            let got =
                copy_and_read_back(&mut File::open(&src)?, &mut out, &staged, &src, &dst, want)
                    .map_err(|(_, e)| e);
            let _ = std::fs::remove_file(&staged);
            got
        };
        assert_eq!(copy(&sum(b"other"))?, Copied::SourceSum(sum(&data)));
        assert!(!dst.exists());
        assert_eq!(copy(&sum(&data))?, Copied::Done(data.len() as u64));
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
