//! One storage region: an object store plus the region id every error and log names.
//!
//! This is a thin layer over `object_store`, so that the engine speaks in [`BlobPath`]s and
//! this crate's [`Error`], and so that "not found" is a value (`head` → `None`, `delete` is
//! idempotent) rather than an error to string-match.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutOptions, PutPayload, WriteMultipart,
};

use crate::error::{Error, Result};
use crate::folder::{self, Folder};
use crate::layout::BlobPath;
use crate::location::{Location, S3Location};

/// How a region's store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionOptions {
    /// Whether local-folder regions fsync each written object and its folder before a
    /// write returns. On by default: the catalog commits an index row right after the blob
    /// is written, and that row must never point at a blob a power cut could lose. Turn off
    /// only for throwaway data or benchmarks that say so.
    pub fsync: bool,
    /// The credential of an `s3://` region. Without one, the standard `AWS_*`
    /// environment (or the instance's role) is used.
    pub credentials: Option<S3Credentials>,
}

impl Default for RegionOptions {
    fn default() -> Self {
        Self {
            fsync: true,
            credentials: None,
        }
    }
}

/// An access key for an S3-compatible region. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// An `s3://` region's object store. PUTs of one object are atomic on S3,
/// and a multipart upload is invisible until completed, which is what the
/// blob writer relies on.
fn open_s3(id: &str, s3: &S3Location, options: &RegionOptions) -> Result<Arc<dyn ObjectStore>> {
    // reqwest's rustls has no provider of its own here (ring-only tree):
    // install ring's once per process; a second install is refused, harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket)
        .with_region(s3.region.as_deref().unwrap_or("us-east-1"))
        .with_virtual_hosted_style_request(false);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(c) = &options.credentials {
        builder = builder
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key);
    }
    let store = builder
        .build()
        .map_err(|source| Error::from_store(id, &Path::default(), source))?;
    Ok(match &s3.prefix {
        Some(prefix) => Arc::new(PrefixStore::new(store, prefix.as_str())),
        None => Arc::new(store),
    })
}

/// A storage region's object store.
///
/// Cheap to clone: clones share the store.
#[derive(Debug, Clone)]
pub struct RegionStore {
    id: String,
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The same folder without a per-object fsync, for bulk copies that are
    /// made durable together by [`RegionStore::sync`]; `None` where writes
    /// need no fsync of their own (object stores, memory).
    bulk: Option<Arc<dyn ObjectStore>>,
    /// The folder of a local region, as files: where a killed writer's
    /// staging files (which the object store's listings hide) can be found,
    /// and what whole-file copies and deletions work on.
    folder: Option<Folder>,
    /// Coalesces concurrent [`RegionStore::sync`] calls (shared by clones).
    sync_gate: Arc<SyncGate>,
}

/// Group commit for `sync`: a caller whose writes an already finished sync
/// covered returns at once; otherwise one sync covers every caller that
/// asked before it started.
#[derive(Debug, Default)]
struct SyncGate {
    requested: std::sync::atomic::AtomicU64,
    done: tokio::sync::Mutex<u64>,
}

/// A staging file left by a writer that died before renaming it into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Path of the file, relative to the region's folder.
    pub path: String,
    pub size: u64,
    /// How long since it was last written.
    pub age: std::time::Duration,
}

impl Leftover {
    /// The id of the blob this is a staged copy of (its file name before
    /// `#N`).
    pub fn blob_id(&self) -> Option<&str> {
        self.path.rsplit('/').next().and_then(folder::staged_of)
    }
}

/// One entry of a region listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    /// An object at a path of the blob layout.
    Blob {
        /// Where it is.
        path: BlobPath,
        /// Its stored size.
        size: u64,
    },
    /// An object whose path is not of the blob layout. Nothing of ours writes these, so
    /// `verify` flags them.
    Foreign {
        /// Where it is.
        path: Path,
        /// Its stored size.
        size: u64,
    },
}

impl ListEntry {
    /// Where the object is.
    pub fn location(&self) -> Path {
        match self {
            ListEntry::Blob { path, .. } => path.location(),
            ListEntry::Foreign { path, .. } => path.clone(),
        }
    }

    /// Sorts an object at `location` into a blob of the layout or a foreign object.
    fn of(location: Path, size: u64) -> ListEntry {
        match BlobPath::parse(&location) {
            Ok(path) => ListEntry::Blob { path, size },
            Err(_) => ListEntry::Foreign {
                path: location,
                size,
            },
        }
    }
}

/// Entries per chunk handed over by [`RegionStore::list_ordered`]'s walk.
const LIST_CHUNK: usize = 1024;

/// A folder's entries not yet visited: names and paths.
type DirEntries = std::vec::IntoIter<(std::ffi::OsString, PathBuf)>;

/// A depth-first walk of a local region's folder, each folder's entries in
/// byte order of their names, yielding what the object store's listing
/// yields: files (links followed, broken links skipped), not the staging
/// files of writes in progress (`name#DIGITS`).
struct SortedWalk {
    /// Per open folder: its path parts below the root, and its entries not
    /// yet visited.
    stack: Vec<(Vec<String>, DirEntries)>,
    /// An error to yield before anything else (the root does not read).
    first: Option<Error>,
}

impl SortedWalk {
    fn new(root: PathBuf) -> Self {
        let mut walk = SortedWalk {
            stack: Vec::new(),
            first: None,
        };
        match sorted_dir(&root) {
            Ok(entries) => walk.stack.push((Vec::new(), entries)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => walk.first = Some(Error::Io { path: root, source }),
        }
        walk
    }
}

fn sorted_dir(dir: &FsPath) -> std::io::Result<DirEntries> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| (e.file_name(), e.path())))
        .collect::<std::io::Result<Vec<_>>>()?;
    // OsString orders by bytes on Unix.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries.into_iter())
}

impl Iterator for SortedWalk {
    type Item = Result<ListEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.first.take() {
            return Some(Err(e));
        }
        loop {
            let (parts, entries) = self.stack.last_mut()?;
            let Some((name, path)) = entries.next() else {
                self.stack.pop();
                continue;
            };
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // Removed meanwhile, or a broken link.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Some(Err(Error::Io { path, source })),
            };
            let name = name.to_string_lossy().into_owned();
            if meta.is_dir() {
                let mut below = parts.clone();
                below.push(name);
                match sorted_dir(&path) {
                    Ok(entries) => self.stack.push((below, entries)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Some(Err(Error::Io { path, source })),
                }
                continue;
            }
            // The object store's own rule for what its listings hide.
            let staging = name
                .split_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !meta.is_file() || staging {
                continue;
            }
            let location = Path::from_iter(
                parts
                    .iter()
                    .map(String::as_str)
                    .chain(std::iter::once(name.as_str())),
            );
            return Some(Ok(ListEntry::of(location, meta.len())));
        }
    }
}

/// A collected region listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Blobs of the layout, with their stored sizes.
    pub blobs: Vec<(BlobPath, u64)>,
    /// Objects that are not blobs of the layout, with their sizes.
    pub foreign: Vec<(Path, u64)>,
}

impl RegionStore {
    /// Opens region `id` at `url` with default [`RegionOptions`].
    ///
    /// `file://relative/path` is resolved against `base_dir` (the configuration file's
    /// folder), `file:///abs/path` is absolute; the folder is created if missing.
    /// `s3://bucket[/prefix]?endpoint=…&region=…` is a bucket of an S3-compatible service.
    /// `memory://` gives a fresh in-memory store (tests). Other schemes are refused.
    pub fn open(id: &str, url: &str, base_dir: &FsPath) -> Result<Self> {
        Self::open_with(id, url, base_dir, &RegionOptions::default())
    }

    /// Opens region `id` at `url` with explicit options.
    pub fn open_with(
        id: &str,
        url: &str,
        base_dir: &FsPath,
        options: &RegionOptions,
    ) -> Result<Self> {
        let mut folder = None;
        let mut bulk: Option<Arc<dyn ObjectStore>> = None;
        let store: Arc<dyn ObjectStore> = match Location::parse(url, base_dir)? {
            Location::LocalDir(dir) => {
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                let open = |fsync| {
                    LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|source| Error::from_store(id, &Path::default(), source))
                        // Purges would otherwise leave one empty folder per subject behind.
                        .map(|fs| Arc::new(fs.with_automatic_cleanup(true).with_fsync(fsync)))
                };
                let store = open(options.fsync)?;
                // The object store maps objects under the canonical folder.
                let root = std::fs::canonicalize(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                folder = Some(Folder::new(store.clone(), root));
                if options.fsync {
                    bulk = Some(open(false)? as Arc<dyn ObjectStore>);
                }
                store
            }
            Location::Memory => Arc::new(InMemory::new()),
            Location::S3(s3) => open_s3(id, &s3, options)?,
        };
        let mut region = Self::from_object_store(id, url, store);
        region.folder = folder;
        region.bulk = bulk;
        Ok(region)
    }

    /// Wraps an existing object store, e.g. a test wrapper that injects failures.
    pub fn from_object_store(id: &str, url: &str, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            id: id.to_owned(),
            url: url.to_owned(),
            store,
            bulk: None,
            folder: None,
            sync_gate: Arc::default(),
        }
    }

    /// The region id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The URL the region was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store, for what this type does not cover.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn err(&self, location: &Path) -> impl Fn(object_store::Error) -> Error + '_ {
        let location = location.clone();
        move |source| Error::from_store(&self.id, &location, source)
    }

    /// Stores `bytes` at `path` atomically: readers see all of it or nothing.
    pub async fn put(&self, path: &BlobPath, bytes: Bytes) -> Result<()> {
        let location = path.location();
        self.store
            .put_opts(&location, PutPayload::from(bytes), PutOptions::default())
            .await
            .map_err(self.err(&location))?;
        Ok(())
    }

    /// Starts a multipart upload to `path`, for blobs too large to buffer. Nothing is
    /// visible at `path` until [`WriteMultipart::finish`]; abort it on failure.
    ///
    /// `part_size` is the size of each uploaded part (S3 needs at least 5 MiB for all but
    /// the last).
    pub async fn put_multipart(&self, path: &BlobPath, part_size: usize) -> Result<WriteMultipart> {
        let location = path.location();
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(self.err(&location))?;
        Ok(WriteMultipart::new_with_chunk_size(upload, part_size))
    }

    /// Reads the whole object at `path`.
    pub async fn get(&self, path: &BlobPath) -> Result<Bytes> {
        let location = path.location();
        let err = self.err(&location);
        let result = self
            .store
            .get_opts(&location, GetOptions::default())
            .await
            .map_err(&err)?;
        result.bytes().await.map_err(err)
    }

    /// Reads `range` of the stored object. A range running past the end is cut at the end
    /// (as HTTP range requests are), so callers can over-ask when they do not know the size.
    pub async fn get_range(&self, path: &BlobPath, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let location = path.location();
        let err = self.err(&location);
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&location, options)
            .await
            .map_err(&err)?;
        result.bytes().await.map_err(err)
    }

    /// The stored size of the object at `path`, or `None` if there is none.
    pub async fn head(&self, path: &BlobPath) -> Result<Option<u64>> {
        let location = path.location();
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(&location, options).await {
            Ok(result) => Ok(Some(result.meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::from_store(&self.id, &location, source)),
        }
    }

    /// Deletes the object at `path`. Deleting what is not there succeeds, so purges and
    /// erasure can be retried after a crash. On a local folder, the staged copies that
    /// writers killed mid-way left of this blob (ciphertext no listing shows) go too, in
    /// the same call.
    pub async fn delete(&self, path: &BlobPath) -> Result<()> {
        let location = path.location();
        if let Some(folder) = &self.folder {
            self.delete_in_folder(folder, &location, folder::delete_file)
                .await?;
            return Ok(());
        }
        self.delete_location(&location).await
    }

    /// Runs `delete` (of a file or of a folder's tree) on the file of
    /// `location` in a local region, in one blocking call; returns how
    /// many files went.
    async fn delete_in_folder(
        &self,
        folder: &Folder,
        location: &Path,
        delete: fn(&FsPath, &FsPath) -> std::io::Result<u64>,
    ) -> Result<u64> {
        let file = folder.file(location).map_err(self.err(location))?;
        let root = folder.root().to_path_buf();
        folder::blocking("(delete)", move || {
            delete(&root, &file).map_err(|source| Error::Io { path: file, source })
        })
        .await
    }

    /// The folder of a local region.
    fn local_root(&self) -> Option<PathBuf> {
        self.folder.as_ref().map(|f| f.root().to_path_buf())
    }

    /// Deletes an object by its raw path, e.g. a foreign object `verify` found. Idempotent.
    pub async fn delete_location(&self, location: &Path) -> Result<()> {
        match self.store.delete(location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::from_store(&self.id, location, source)),
        }
    }

    /// Streams every object under `prefix` (the whole region for `None`), sorting each
    /// into a blob of the layout or a foreign object. The order is unspecified.
    pub fn list_stream(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ListEntry>> {
        let id = self.id.clone();
        let at = prefix.cloned().unwrap_or_default();
        self.store
            .list(prefix)
            .map_err(move |source| Error::from_store(&id, &at, source))
            .map_ok(|meta| ListEntry::of(meta.location, meta.size))
            .boxed()
    }

    /// Streams every object of the region in an order a merge with the
    /// index can rely on: the blobs of one subject token come together, and
    /// tokens come in ascending byte order (foreign objects may come
    /// anywhere). A local folder is walked with each folder's entries
    /// sorted by name (the object store's own walk is in directory order),
    /// in a blocking task that hands over a chunk at a time, so memory
    /// holds the folders on the current path, not the region. Other stores
    /// list in key order (S3 and memory list lexicographically; a store
    /// wrapped by the caller is listed whole and sorted), which has both
    /// properties: a token's objects share the prefix
    /// `v1/{fan}/{token}/`, and `/` sorts before every hex digit.
    pub fn list_ordered(&self) -> BoxStream<'static, Result<ListEntry>> {
        let Some(root) = self.local_root() else {
            if self.url.starts_with("s3://") || self.url.starts_with("memory://") {
                return self.list_stream(None);
            }
            // A store wrapped by the caller (`from_object_store`), whose
            // order is unknown: listed whole, then sorted.
            let listing = self.list_stream(None);
            return futures::stream::once(async move {
                let mut all: Vec<Result<ListEntry>> = listing.collect().await;
                all.sort_by(|a, b| match (a, b) {
                    (Ok(a), Ok(b)) => a.location().as_ref().cmp(b.location().as_ref()),
                    _ => std::cmp::Ordering::Equal,
                });
                futures::stream::iter(all)
            })
            .flatten()
            .boxed();
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Result<ListEntry>>>(2);
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(LIST_CHUNK);
            for item in SortedWalk::new(root) {
                chunk.push(item);
                if chunk.len() == LIST_CHUNK
                    && tx
                        .blocking_send(std::mem::replace(
                            &mut chunk,
                            Vec::with_capacity(LIST_CHUNK),
                        ))
                        .is_err()
                {
                    return; // the reader went away
                }
            }
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
        });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|chunk| (futures::stream::iter(chunk), rx))
        })
        .flatten()
        .boxed()
    }

    /// This region for bulk writes: the same objects, but a local folder does
    /// not fsync each one. Call [`RegionStore::sync`] before relying on what
    /// was written (a migration does, once per unit, before committing it).
    pub fn deferred(&self) -> RegionStore {
        RegionStore {
            id: self.id.clone(),
            url: self.url.clone(),
            store: self.bulk.clone().unwrap_or_else(|| self.store.clone()),
            bulk: None,
            folder: self.folder.clone(),
            sync_gate: self.sync_gate.clone(),
        }
    }

    /// Makes every write to this region durable: one `syncfs` of a local
    /// region's filesystem (a single journal commit for all the files a bulk
    /// copy wrote, instead of one per file). Other stores acknowledge writes
    /// only once durable, so there is nothing to do.
    pub async fn sync(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        let Some(dir) = self.local_root() else {
            return Ok(());
        };
        // Everything this caller wrote happened before this ticket.
        let ticket = self.sync_gate.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.sync_gate.done.lock().await;
        if *done >= ticket {
            return Ok(()); // a sync that started after our writes finished
        }
        let covers = self.sync_gate.requested.load(Ordering::SeqCst);
        folder::blocking("(syncfs)", move || {
            let f = std::fs::File::open(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            rustix::fs::syncfs(&f).map_err(|e| Error::Io {
                path: dir.clone(),
                source: e.into(),
            })
        })
        .await?;
        *done = covers;
        Ok(())
    }

    /// Staging files under `prefix` that a writer killed mid-write left in a
    /// local region. The object store writes `name#N` and renames it into
    /// place; a kill in between leaves ciphertext that no listing shows, so
    /// verification and purges look for it here. Other regions have none
    /// (an S3 upload is invisible until it completes).
    pub async fn leftovers(&self, prefix: Option<&Path>) -> Result<Vec<Leftover>> {
        let Some(root) = self.local_root() else {
            return Ok(Vec::new());
        };
        let start = match prefix {
            Some(p) => root.join(p.as_ref()),
            None => root.clone(),
        };
        folder::blocking("(leftover scan)", move || scan_leftovers(&root, &start)).await
    }

    /// Deletes the staging files under `prefix` older than `min_age` (a
    /// younger one may belong to a write still in progress). Returns how many.
    pub async fn remove_leftovers(
        &self,
        prefix: Option<&Path>,
        min_age: std::time::Duration,
    ) -> Result<u64> {
        let Some(root) = self.local_root() else {
            return Ok(0);
        };
        let mut removed = 0;
        for l in self.leftovers(prefix).await? {
            if l.age < min_age {
                continue;
            }
            let path = root.join(&l.path);
            match tokio::fs::remove_file(&path).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
        Ok(removed)
    }

    /// Deletes every object under `prefix`, whatever it is (blobs, foreign
    /// objects, staging files of writes killed mid-way), and returns how
    /// many. A local folder does it in one blocking call and removes the
    /// folders it empties; other stores list the prefix and delete in bulk
    /// (one request per thousand objects on S3). The region's root is
    /// refused: a prefix names one subject, or one of its categories.
    pub async fn delete_prefix(&self, prefix: &Path) -> Result<u64> {
        if prefix.parts().next().is_none() {
            return Err(Error::InvalidBlobPath {
                path: String::new(),
                reason: "a deletion by prefix needs a prefix; the region's root is refused",
            });
        }
        if let Some(folder) = &self.folder {
            return self
                .delete_in_folder(folder, prefix, folder::delete_tree)
                .await;
        }
        let listed = self.store.list(Some(prefix)).map_ok(|m| m.location).boxed();
        let mut deleted = self.store.delete_stream(listed);
        let mut n = 0;
        while let Some(done) = deleted.next().await {
            match done {
                Ok(_) => n += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(Error::from_store(&self.id, prefix, source)),
            }
        }
        Ok(n)
    }

    /// The files of this region, where its writes are not fsynced one by
    /// one (a [`RegionStore::deferred`] handle, or a folder opened without
    /// fsync): whole-file copies may write there.
    pub(crate) fn unsynced_folder(&self) -> Option<&Folder> {
        self.folder.as_ref().filter(|_| self.bulk.is_none())
    }

    /// The files of a local-folder region.
    pub(crate) fn folder(&self) -> Option<&Folder> {
        self.folder.as_ref()
    }

    /// Collects [`RegionStore::list_stream`]; for prefixes known to be small (one subject).
    pub async fn list(&self, prefix: Option<&Path>) -> Result<Listing> {
        let mut listing = Listing::default();
        let mut entries = self.list_stream(prefix);
        while let Some(entry) = entries.try_next().await? {
            match entry {
                ListEntry::Blob { path, size } => listing.blobs.push((path, size)),
                ListEntry::Foreign { path, size } => listing.foreign.push((path, size)),
            }
        }
        Ok(listing)
    }
}

/// Walks `start` (inside `root`) for `name#DIGITS` files.
fn scan_leftovers(root: &FsPath, start: &FsPath) -> Result<Vec<Leftover>> {
    let mut out = Vec::new();
    let mut stack = vec![start.to_path_buf()];
    let now = std::time::SystemTime::now();
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if folder::staged_of(name).is_none() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            out.push(Leftover {
                path: rel,
                size: meta.len(),
                age,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00aa11bb22cc33dd";

    #[tokio::test]
    async fn memory_region_basics() -> Result<()> {
        let region = RegionStore::open("mem", "memory://", FsPath::new("/"))?;
        let path = BlobPath::new_random(TOKEN, "docs")?;
        assert_eq!(region.head(&path).await?, None);
        assert!(region.get(&path).await.is_err_and(|e| e.is_not_found()));
        region
            .put(&path, Bytes::from_static(b"hello world"))
            .await?;
        assert_eq!(region.head(&path).await?, Some(11));
        assert_eq!(region.get(&path).await?, Bytes::from_static(b"hello world"));
        assert_eq!(
            region.get_range(&path, 6..100).await?,
            Bytes::from_static(b"world")
        );
        region
            .object_store()
            .put(&Path::from("stray.txt"), PutPayload::from_static(b"x"))
            .await
            .map_err(|e| Error::from_store("mem", &Path::default(), e))?;
        let listing = region.list(None).await?;
        assert_eq!(listing.blobs, vec![(path.clone(), 11)]);
        assert_eq!(listing.foreign, vec![(Path::from("stray.txt"), 1)]);
        region.delete(&path).await?;
        region.delete(&path).await?;
        assert_eq!(region.head(&path).await?, None);
        Ok(())
    }

    #[test]
    fn unknown_schemes_name_the_supported_ones() {
        let err = RegionStore::open("x", "gs://bucket", FsPath::new("/"));
        let Err(Error::BadUrl { reason, .. }) = err else {
            panic!("expected BadUrl, got {err:?}");
        };
        assert!(reason.contains("file://") && reason.contains("memory://"));
    }
}
