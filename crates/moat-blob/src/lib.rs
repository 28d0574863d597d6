//! Content-addressed bytes behind asset files and OCI blobs, so that equal bytes are stored
//! once: on the local file system (the embedded default) or, for several nodes, in Azure Blob
//! Storage or an S3-compatible store (see `remote.rs`). One type, [`BlobStore`], one contract.
//!
//! Writes are crash-safe: the bytes stream into a temporary file while being hashed and are
//! verified against the expected digest. Locally, the file is fsynced, renamed into place, and
//! the directory fsynced; remotely, it is uploaded to its final name, which the store makes
//! visible only when complete. Temporary files left by a crash are removed when the store
//! opens. Memory use is a few buffers whatever the size.

use std::path::{Path, PathBuf};

mod gc;
mod reader;
mod remote;
mod sink;
pub use gc::Swept;
use reader::Segment;
pub use reader::{BlobReader, ChunkStream};
use remote::Remote;
pub use sink::Kept;
use sink::Sink;

use moat_types::Digest;
use moat_types::oci::{Algorithm, OciDigest};
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes do not hash to the digest the client announced.
    #[error("the content's digest is {actual}, not the expected {expected}")]
    DigestMismatch { expected: String, actual: String },
    /// No upload session of that ID (never started, finished, or cancelled).
    #[error("no upload {0} is in progress")]
    UnknownUpload(String),
    /// The content is larger than the caller allowed.
    #[error("the content exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("blob storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Reading the content from its source (a request's body) failed: nothing was stored.
    #[error("reading the content failed: {0}")]
    Source(std::io::Error),
    /// The object store (Azure Blob Storage, S3) failed.
    #[error("object store error: {0}")]
    Store(String),
    /// The blob backend is configured wrongly.
    #[error("{0}")]
    Config(String),
}

/// Told by an object store backend of each content it is about to look for before it puts it
/// (moat-core claims it in the database, so that a garbage collection running meanwhile does not
/// delete bytes a writer has just found there). An error fails the write.
pub trait Claimer: Send + Sync {
    fn claim<'a>(&'a self, d: &'a Digest) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BlobError>> + Send + 'a>>;
}

/// A stored content, as an object store lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub digest: Digest,
    pub size: u64,
    /// When the store last wrote it.
    pub modified: std::time::SystemTime,
}

/// What a completed write stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub digest: Digest,
    pub size: u64,
    /// False when equal bytes were already stored (nothing new was written).
    pub created: bool,
}

const BUFFER: usize = 256 * 1024;

/// A piece of stored bytes: a whole content-addressed blob, or a range (from `offset`) of a
/// staging file, where blocks whose place in their blob is known are written in place (see
/// [`BlobStore::stage_at`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Stored(Digest),
    Staged { file: String, offset: u64 },
}

/// A content-addressed store: under one directory, or in an object store with the directory
/// holding only temporary files.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    remote: Option<Remote>,
    /// The running sha256 of upload sessions fed in order (by ID, with the length it covers),
    /// so that finishing a streamed upload does not read its bytes again.
    running: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u64, Sha256)>>>,
    /// Whose turn it is to write to each staging file being written (see `Sink::start_shared`).
    turns: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<std::sync::Mutex<()>>>>>,
    /// Whether writers' temporary files are unnamed (see [`unnamed_works`]).
    unnamed: bool,
}

impl BlobStore {
    /// Opens (creating) the local store and removes temporary files an earlier crash left behind.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        Self::open_with(root, None, &[]).await
    }

    /// Opens the store `url` names — `file:///PATH`, `azure://CONTAINER[/PREFIX]` or
    /// `s3://BUCKET[/PREFIX]`, or the local store under `root` without one — keeping temporary
    /// files under `root`. Object stores take credentials and endpoints from the environment
    /// (`AZURE_STORAGE_*`, `AWS_*`), then from `options`; they are checked before this returns.
    pub async fn open_with(root: impl Into<PathBuf>, url: Option<&str>, options: &[(String, String)]) -> Result<Self, BlobError> {
        let mut root = root.into();
        let mut remote = None;
        match url {
            None => {}
            Some(u) if u.starts_with("file://") => {
                let path = &u["file://".len()..];
                if !path.starts_with('/') {
                    return Err(BlobError::Config(format!("blob URL '{u}': a file URL names an absolute path (file:///srv/moat/blobs)")));
                }
                root = PathBuf::from(path);
            }
            Some(u) => {
                let r = Remote::open(u, options)?;
                r.probe().await.map_err(|e| BlobError::Config(format!("blob URL '{u}' does not answer: {e}")))?;
                remote = Some(r);
            }
        }
        tokio::fs::create_dir_all(root.join("sha256")).await?;
        let tmp = root.join("tmp");
        if tokio::fs::try_exists(&tmp).await? {
            let mut entries = tokio::fs::read_dir(&tmp).await?;
            let mut removed = 0;
            while let Some(e) = entries.next_entry().await? {
                tokio::fs::remove_file(e.path()).await?;
                removed += 1;
            }
            if removed > 0 {
                tracing::info!(removed, "removed temporary blob files left by an interrupted write");
            }
        }
        tokio::fs::create_dir_all(&tmp).await?;
        tokio::fs::create_dir_all(root.join("uploads")).await?;
        tokio::fs::create_dir_all(root.join("staging")).await?;
        let gc_root = root.clone();
        let restored = blocking(move || gc::restore(&gc_root)).await?;
        if restored > 0 {
            tracing::info!(restored, "put back stored files that an interrupted garbage collection had set aside");
        }
        // The directories' own names must be durable before anything in them is acknowledged.
        sync_dir(&root).await?;
        let probed = tmp.clone();
        let unnamed = blocking(move || Ok(unnamed_works(&probed))).await?;
        if !unnamed {
            tracing::info!("temporary blob files are named: this file system (or a missing /proc) does not allow unnamed ones");
        }
        Ok(BlobStore { root, remote, running: Default::default(), turns: Default::default(), unnamed })
    }

    /// The store with named temporary files, as on a file system without unnamed ones (for tests).
    #[cfg(test)]
    pub(crate) fn named_temporaries(mut self) -> Self {
        self.unnamed = false;
        self
    }

    /// Where the bytes live, for logs: a directory or the object store URL.
    pub fn describe(&self) -> String {
        match &self.remote {
            Some(r) => r.url.clone(),
            None => self.root.display().to_string(),
        }
    }

    fn running_take(&self, id: &str) -> Result<Option<(u64, Sha256)>, BlobError> {
        Ok(self.running.lock().map_err(|_| std::io::Error::other("poisoned"))?.remove(id))
    }

    fn running_put(&self, id: &str, length: u64, h: Sha256) -> Result<(), BlobError> {
        self.running.lock().map_err(|_| std::io::Error::other("poisoned"))?.insert(id.to_string(), (length, h));
        Ok(())
    }

    fn path_of(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// Starts a write: bytes go to a temporary file and are hashed as they arrive.
    pub async fn writer(&self, limit: u64) -> Result<BlobWriter, BlobError> {
        self.writer_for(Algorithm::Sha256, limit).await
    }

    /// Like [`BlobStore::writer`], also computing the digest `algorithm` asks for (the
    /// store is keyed by sha256 whatever the client's algorithm).
    pub async fn writer_for(&self, algorithm: Algorithm, limit: u64) -> Result<BlobWriter, BlobError> {
        let (tmp, file) = if self.unnamed {
            let dir = self.root.join("tmp");
            (None, blocking(move || open_unnamed(&dir)).await?)
        } else {
            let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
            let file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).await?.into_std().await;
            (Some(tmp), file)
        };
        let sha512 = (algorithm == Algorithm::Sha512).then(Sha512::new);
        // A spool for an object store need not reach the disk.
        let sink = Sink::start(file, Some(Sha256::new()), sha512, self.remote.is_none());
        Ok(BlobWriter { store: self.clone(), tmp, sink: Some(sink), size: 0, limit })
    }

    /// Streams `reader` into the store. With `expected`, the write fails (storing nothing) unless
    /// the bytes hash to it; `limit` bounds the size.
    pub async fn put<R: AsyncRead + Unpin>(&self, mut reader: R, expected: Option<&Digest>, limit: u64) -> Result<Stored, BlobError> {
        let mut w = self.writer(limit).await?;
        while w.read_from(&mut reader).await? > 0 {}
        w.finish(expected).await
    }

    /// The digest and size of the concatenation of stored blobs, read once and never written:
    /// a blob made of blocks keeps its blocks as parts.
    pub async fn hash_parts(&self, parts: &[Digest]) -> Result<(Digest, u64), BlobError> {
        // From the start, the parts' sizes do not matter.
        let pieces: Vec<(Piece, u64)> = parts.iter().map(|d| (Piece::Stored(*d), u64::MAX)).collect();
        let (h, size) = self.hash_pieces(&pieces, Sha256::new()).await?;
        Ok((Digest::from_bytes(h.finalize().into()), size))
    }

    /// Continues `hasher` over the concatenation of `pieces` (each with its length; `u64::MAX`
    /// for a whole stored blob); returns it with the number of bytes read, off the async
    /// workers (see `hash_chunks`).
    pub async fn hash_pieces(&self, pieces: &[(Piece, u64)], hasher: Sha256) -> Result<(Sha256, u64), BlobError> {
        let (h, _, size) = hash_chunks(self.pieces_reader(pieces.to_vec(), 0), hasher, None).await?;
        Ok((h, size))
    }

    /// A reader over `parts` (digests with their sizes) from byte `start`: parts are opened one
    /// at a time, as the reading reaches them.
    pub fn parts_reader(&self, parts: Vec<(Digest, u64)>, start: u64) -> BlobReader {
        self.pieces_reader(parts.into_iter().map(|(d, n)| (Piece::Stored(d), n)).collect(), start)
    }

    /// A reader over `pieces` (with their lengths) from byte `start`. Staged pieces exist on
    /// the local disk only.
    pub fn pieces_reader(&self, pieces: Vec<(Piece, u64)>, start: u64) -> BlobReader {
        if let Some(r) = &self.remote {
            let mut parts = Vec::with_capacity(pieces.len());
            for (p, n) in pieces {
                match p {
                    Piece::Stored(d) => parts.push((d, n)),
                    Piece::Staged { .. } => {
                        let e = std::io::Error::other("staged pieces exist on the local disk only");
                        return BlobReader::new(tokio_util::io::StreamReader::new(futures_util::stream::iter([Err::<bytes::Bytes, _>(e)])));
                    }
                }
            }
            return r.parts_reader(parts, start);
        }
        BlobReader::local(
            parts_from(pieces, start)
                .map(|(p, skip, size)| {
                    let len = if size == u64::MAX { size } else { size - skip };
                    match p {
                        Piece::Stored(d) => Segment { path: self.path_of(&d), file: None, offset: skip, len },
                        Piece::Staged { file, offset } => {
                            Segment { path: self.staging_path(&file), file: None, offset: offset + skip, len }
                        }
                    }
                })
                .collect(),
        )
    }

    /// Whether blocks can be staged in place ([`BlobStore::stage_at`]): on the local disk.
    pub fn stages_in_place(&self) -> bool {
        self.remote.is_none()
    }

    /// Whether garbage collection runs on this store: on the local disk
    /// ([`BlobStore::collect_garbage`]), and on an object store once writers claim what they
    /// store ([`BlobStore::set_claimer`]; the caller collects, from [`BlobStore::stored`]).
    pub fn collects_garbage(&self) -> bool {
        self.remote.as_ref().is_none_or(|r| r.claimer.is_some())
    }

    /// Whether the bytes are in an object store.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Has an object store's writers claim each content before they look for it in the store
    /// (nothing for the local store, whose writers freshen files instead).
    pub fn set_claimer(&mut self, claimer: std::sync::Arc<dyn Claimer>) {
        if let Some(r) = &mut self.remote {
            r.claimer = Some(claimer);
        }
    }

    /// An object store's stored contents, with their sizes and times (an error for the local
    /// store, which collects its own garbage).
    pub fn stored(&self) -> futures_util::stream::BoxStream<'static, Result<StoredObject, BlobError>> {
        match &self.remote {
            Some(r) => r.stored(),
            None => {
                use futures_util::StreamExt as _;
                futures_util::stream::once(async { Err(BlobError::Config("the local store is listed by its own collection".into())) })
                    .boxed()
            }
        }
    }

    /// The identity of the metadata this store was last used with (`store-id`, a file or an
    /// object, written by [`BlobStore::set_owner`]); `None` when none was recorded.
    pub async fn owner(&self) -> Result<Option<String>, BlobError> {
        if let Some(r) = &self.remote {
            return r.owner().await;
        }
        match tokio::fs::read_to_string(self.root.join("store-id")).await {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the store holds `d`.
    pub async fn holds(&self, d: &Digest) -> Result<bool, BlobError> {
        if let Some(r) = &self.remote {
            return r.exists(d).await;
        }
        Ok(tokio::fs::try_exists(self.path_of(d)).await?)
    }

    /// Whether the store holds any content at all.
    pub async fn holds_any(&self) -> Result<bool, BlobError> {
        if let Some(r) = &self.remote {
            return r.holds_any().await;
        }
        let root = self.root.join("sha256");
        Ok(blocking(move || {
            for shard in std::fs::read_dir(root)? {
                let shard = shard?;
                if shard.file_type()?.is_dir() && std::fs::read_dir(shard.path())?.next().is_some() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await?)
    }

    /// Records which metadata this store holds the bytes of (see [`BlobStore::owner`]).
    pub async fn set_owner(&self, id: &str) -> Result<(), BlobError> {
        if let Some(r) = &self.remote {
            return r.set_owner(id).await;
        }
        let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        tokio::fs::write(&tmp, format!("{id}\n")).await?;
        let file = std::fs::File::open(&tmp)?;
        blocking(move || file.sync_all()).await?;
        tokio::fs::rename(&tmp, self.root.join("store-id")).await?;
        sync_dir(&self.root).await?;
        Ok(())
    }

    fn staging_path(&self, file: &str) -> PathBuf {
        self.root.join("staging").join(file)
    }

    fn check_staging_name(file: &str) -> Result<(), BlobError> {
        if file.is_empty() || file.len() > 64 || !file.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(BlobError::Config(format!("'{file}' is not a staging file name")));
        }
        Ok(())
    }

    /// Writes `reader` (at most `limit` bytes) at `offset` of staging file `file` (letters,
    /// digits and `-`; created when new), without hashing it, and makes it durable; returns the
    /// bytes written and, with `keep` and when the budget of [`Kept`] has room for `limit`
    /// bytes, the bytes themselves, in memory, for the caller to hash: such a block is written
    /// around the page cache where it can be. A block whose place in its blob is known goes where it will stay, so the
    /// blob's sha256 is the only hash its bytes need and a commit moves no byte
    /// ([`BlobStore::install_staged`]). The caller keeps writes to one file from overlapping:
    /// nothing is written outside `offset..offset + limit`, and `hold` is dropped once nothing
    /// more will be written (which may be after this returned an error, or was cancelled).
    pub async fn stage_at<R: AsyncRead + Unpin>(
        &self,
        file: &str,
        offset: u64,
        mut reader: R,
        limit: u64,
        hold: Box<dyn Send>,
        keep: bool,
    ) -> Result<(u64, Option<Kept>), BlobError> {
        Self::check_staging_name(file)?;
        if self.remote.is_some() {
            return Err(BlobError::Config("blocks are staged in place on the local disk only".into()));
        }
        let (path, dir) = (self.staging_path(file), self.root.join("staging"));
        let turn = self.turn(file);
        let held = turn.clone();
        let kept = if keep { Kept::reserve(limit) } else { None };
        let kept_too = kept.is_some();
        let (f, direct) = blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            // Opened in turn: a writer that finds the file finds its name durable already.
            let _turn = held.lock().unwrap_or_else(|e| e.into_inner());
            let f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(f) => {
                    std::fs::File::open(&dir)?.sync_all()?;
                    f
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::OpenOptions::new().write(true).open(&path)?,
                Err(e) => return Err(e),
            };
            // For the aligned writes of a kept block; a file system that refuses O_DIRECT gets
            // them all through the page cache.
            let direct = kept_too.then(|| std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path).ok()).flatten();
            Ok((f, direct))
        })
        .await?;
        let mut sink = Sink::start_shared(f, direct, offset, kept, turn, hold);
        let mut size = 0u64;
        // Never more than `limit` reaches the sink: the range ends there.
        let mut limited = (&mut reader).take(limit);
        loop {
            let n = sink.read_from(&mut limited).await?;
            if n == 0 {
                break;
            }
            size += n as u64;
        }
        if reader.read(&mut [0u8; 1]).await.map_err(BlobError::Source)? > 0 {
            return Err(BlobError::TooLarge { limit });
        }
        let sunk = sink.finish().await?;
        let file = sunk.file;
        blocking(move || file.sync_data()).await?;
        Ok((size, sunk.kept))
    }

    /// The turn of staging file `file`'s writers, shared while any of them lives.
    fn turn(&self, file: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = turns.get(file).and_then(|w| w.upgrade()) {
            return t;
        }
        turns.retain(|_, w| w.strong_count() > 0);
        let t = std::sync::Arc::new(std::sync::Mutex::new(()));
        turns.insert(file.to_string(), std::sync::Arc::downgrade(&t));
        t
    }

    /// Makes staging file `file`, whose `size` bytes hash to `digest`, the stored blob `digest`:
    /// linked into the store, never copied (nothing happens when equal bytes are there). The
    /// staging file's name stays until [`BlobStore::remove_staged`], so a commit that fails
    /// after this can be retried; the caller must never write to the file again. Returns
    /// whether the blob is new.
    pub async fn install_staged(&self, file: &str, digest: &Digest, size: u64) -> Result<bool, BlobError> {
        Self::check_staging_name(file)?;
        let src = self.staging_path(file);
        let len = tokio::fs::metadata(&src).await?.len();
        if len != size {
            return Err(BlobError::Io(std::io::Error::other(format!("staging file {file} holds {len} bytes, not {size}"))));
        }
        let final_path = self.path_of(digest);
        let dir = shard_of(&final_path).await?;
        // Fresh before it is in the store's sight, or found there and freshened in place (see
        // gc.rs): a garbage collection cannot take it before its row is committed.
        let staged = src.clone();
        blocking(move || gc::touch(&staged)).await?;
        let created = match tokio::fs::hard_link(&src, &final_path).await {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let found = final_path.clone();
                if blocking(move || gc::freshen(&found)).await? {
                    false
                } else {
                    // Being collected (or not ours to freshen): this file replaces it, by a
                    // link under a temporary name renamed over it.
                    let tmp = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
                    tokio::fs::hard_link(&src, &tmp).await?;
                    tokio::fs::rename(&tmp, &final_path).await?;
                    true
                }
            }
            Err(e) => return Err(e.into()),
        };
        // Synced either way: another writer may have linked it without having synced yet.
        sync_dir(&dir).await?;
        Ok(created)
    }

    /// Removes `path`, a file under the store's root, without waiting for a big one's blocks to
    /// be freed: it leaves its directory at once (renamed into `tmp/`) and goes in the
    /// background (see [`remove_tmp`]). False if there was no file.
    async fn discard(&self, path: &Path) -> std::io::Result<bool> {
        let aside = self.root.join("tmp").join(uuid::Uuid::new_v4().simple().to_string());
        match tokio::fs::rename(path, &aside).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        blocking(move || {
            remove_tmp(aside);
            Ok(())
        })
        .await?;
        Ok(true)
    }

    /// The size of staging file `file`, `None` when there is none.
    pub async fn staged_len(&self, file: &str) -> Result<Option<u64>, BlobError> {
        Self::check_staging_name(file)?;
        match tokio::fs::metadata(self.staging_path(file)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes staging file `file`; false if it was not there.
    pub async fn remove_staged(&self, file: &str) -> Result<bool, BlobError> {
        Self::check_staging_name(file)?;
        Ok(self.discard(&self.staging_path(file)).await?)
    }

    /// The staging files on disk, with the time each was last written.
    pub async fn staged_files(&self) -> Result<Vec<(String, std::time::SystemTime)>, BlobError> {
        let mut out = Vec::new();
        if self.remote.is_some() {
            return Ok(out);
        }
        let mut entries = tokio::fs::read_dir(self.root.join("staging")).await?;
        while let Some(e) = entries.next_entry().await? {
            // A file removed meanwhile (a commit's) is simply not listed.
            let modified = match e.metadata().await {
                Ok(m) => m.modified()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            out.push((e.file_name().to_string_lossy().into_owned(), modified));
        }
        Ok(out)
    }

    /// Opens a stored blob for reading, with its size.
    pub async fn get(&self, d: &Digest) -> Result<Option<(BlobReader, u64)>, BlobError> {
        self.get_at(d, 0).await
    }

    /// Opens a stored blob for reading from byte `start`, with its (whole) size.
    pub async fn get_at(&self, d: &Digest, start: u64) -> Result<Option<(BlobReader, u64)>, BlobError> {
        if let Some(r) = &self.remote {
            return r.get(d, start).await;
        }
        let path = self.path_of(d);
        let opened = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path)?;
            let size = f.metadata()?.len();
            Ok::<_, std::io::Error>((path, f, size))
        })
        .await
        .map_err(std::io::Error::other)?;
        match opened {
            Ok((path, f, size)) => {
                let offset = start.min(size);
                Ok(Some((BlobReader::local(vec![Segment { path, file: Some(f), offset, len: size - offset }]), size)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, BlobError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
            return Err(BlobError::UnknownUpload(id.chars().take(64).collect()));
        }
        Ok(self.root.join("uploads").join(id))
    }

    /// Opens upload `id`'s file for writing.
    async fn open_upload(&self, id: &str) -> Result<(PathBuf, tokio::fs::File), BlobError> {
        let path = self.upload_path(id)?;
        match tokio::fs::OpenOptions::new().write(true).open(&path).await {
            Ok(f) => Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BlobError::UnknownUpload(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves the complete, verified file `src` into the store as `digest`: renamed into its
    /// shard (made durable in its parent when new), the directory synced. `unsynced`, if given,
    /// is fsynced first — unless equal bytes are already there, in which case nothing moves
    /// and false is returned (`src` is left to the caller).
    async fn install(&self, src: &Path, digest: &Digest, unsynced: Option<std::fs::File>) -> Result<bool, BlobError> {
        let final_path = self.path_of(digest);
        let dir = final_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        // Equal bytes already stored are used if they can be freshened in place (a garbage
        // collection is not taking them away; see gc.rs); else these are stored, fresh.
        let found = final_path.clone();
        if blocking(move || gc::freshen(&found)).await? {
            // Another writer may have renamed it without having synced the directory yet.
            sync_dir(&dir).await?;
            return Ok(false);
        }
        if let Some(file) = unsynced {
            blocking(move || file.sync_all()).await?;
        }
        let fresh = src.to_path_buf();
        blocking(move || gc::touch(&fresh)).await?;
        shard_of(&final_path).await?;
        tokio::fs::rename(src, &final_path).await?;
        sync_dir(&dir).await?;
        Ok(true)
    }

    /// Like [`BlobStore::install`], for an unnamed file (see [`unnamed_works`]): given its name
    /// in the store by a link, unless equal bytes are there already; closed either way, a big
    /// one in the background (see [`dispose`]).
    async fn install_unnamed(&self, file: std::fs::File, digest: &Digest) -> Result<bool, BlobError> {
        let final_path = self.path_of(digest);
        let tmp_dir = self.root.join("tmp");
        // All of it on one blocking thread: a small blob's write is mostly these steps, and
        // each hop to a blocking thread and back is two context switches.
        let (created, file) = blocking(move || {
            let dir = final_path.parent().unwrap_or(Path::new(".")).to_path_buf();
            let created = if gc::freshen(&final_path)? {
                false
            } else {
                make_shard(&final_path)?;
                file.sync_all()?;
                // Fresh before it is in the store's sight (see gc.rs).
                file.set_modified(std::time::SystemTime::now())?;
                link_unnamed(&file, &final_path, &tmp_dir)?
            };
            // Another writer may have linked it without having synced the directory yet.
            sync_dir_now(&dir)?;
            Ok((created, file))
        })
        .await?;
        dispose(file);
        Ok(created)
    }

    /// Starts a resumable upload session `id` (letters, digits and `-`): an empty file that
    /// survives restarts until it is finished or discarded.
    pub async fn upload_start(&self, id: &str) -> Result<(), BlobError> {
        let path = self.upload_path(id)?;
        if self.remote.is_some() {
            // Chunks are objects of their own; there is nothing to create before the first.
            return self.running_put(id, 0, Sha256::new());
        }
        tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
        sync_dir(&self.root.join("uploads")).await?;
        self.running.lock().map_err(|_| std::io::Error::other("poisoned"))?.insert(id.to_string(), (0, Sha256::new()));
        Ok(())
    }

    /// Appends `reader` to upload `id`, whose acknowledged length is `offset` (anything after it,
    /// left by an unacknowledged write, is cut first). The bytes are durable when this returns
    /// the new length. `limit` bounds the session's total size.
    pub async fn upload_append<R: AsyncRead + Unpin>(&self, id: &str, offset: u64, mut reader: R, limit: u64) -> Result<u64, BlobError> {
        if let Some(r) = &self.remote {
            self.upload_path(id)?;
            let mut hasher = match self.running_take(id)? {
                Some((len, h)) if len == offset => Some(h),
                _ => None,
            };
            let mut size = offset;
            let mut inspect = |chunk: &[u8]| {
                size += chunk.len() as u64;
                if size > limit {
                    return Err(BlobError::TooLarge { limit });
                }
                if let Some(h) = hasher.as_mut() {
                    h.update(chunk);
                }
                Ok(())
            };
            let length = r.upload_append(id, offset, reader, &mut inspect).await?;
            if let Some(h) = hasher {
                self.running_put(id, length, h)?;
            }
            return Ok(length);
        }
        let (_, mut file) = self.open_upload(id).await?;
        if file.metadata().await?.len() != offset {
            file.set_len(offset).await?;
        }
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        // Continue the running hash only if it covers exactly the bytes before this chunk.
        let hasher = {
            let mut running = self.running.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            match running.remove(id) {
                Some((len, h)) if len == offset => Some(h),
                _ => None,
            }
        };
        let mut sink = Sink::start(file.into_std().await, hasher, None, true);
        let mut size = offset;
        loop {
            let n = sink.read_from(&mut reader).await?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limit {
                return Err(BlobError::TooLarge { limit });
            }
        }
        let sunk = sink.finish().await?;
        let hasher = sunk.sha256;
        blocking(move || sunk.file.sync_data()).await?;
        if let Some(h) = hasher {
            self.running.lock().map_err(|_| std::io::Error::other("poisoned"))?.insert(id.to_string(), (size, h));
        }
        Ok(size)
    }

    /// Finishes upload `id` of acknowledged length `length`: verifies the bytes against
    /// `expected` and moves them into the store (or drops them if equal bytes are there).
    pub async fn upload_finish(&self, id: &str, length: u64, expected: &OciDigest) -> Result<Stored, BlobError> {
        if let Some(r) = &self.remote {
            self.upload_path(id)?;
            let cached = self.running_take(id)?;
            let (sha256, other) = match cached {
                Some((len, h)) if len == length && expected.algorithm() == Algorithm::Sha256 => {
                    (Digest::from_bytes(h.finalize().into()), None)
                }
                _ => {
                    let (sha256, other, _) = hash_reader(r.upload_reader(id, length).await?, expected.algorithm()).await?;
                    (sha256, other)
                }
            };
            let actual = other.unwrap_or_else(|| OciDigest::from_sha256(&sha256));
            if actual != *expected {
                return Err(BlobError::DigestMismatch { expected: expected.to_string(), actual: actual.to_string() });
            }
            // Verified: the chunks are copied, in order, to the content's own object.
            let created = r.install(&sha256, r.upload_reader(id, length).await?).await?;
            r.upload_discard(id).await?;
            return Ok(Stored { digest: sha256, size: length, created });
        }
        let (path, file) = self.open_upload(id).await?;
        if file.metadata().await?.len() != length {
            file.set_len(length).await?;
            file.sync_data().await?;
        }
        drop(file);
        let cached = self.running.lock().map_err(|_| std::io::Error::other("poisoned"))?.remove(id);
        let (sha256, other) = match cached {
            Some((len, h)) if len == length && expected.algorithm() == Algorithm::Sha256 => (Digest::from_bytes(h.finalize().into()), None),
            _ => hash_file(&path, expected.algorithm()).await?,
        };
        let actual = other.unwrap_or_else(|| OciDigest::from_sha256(&sha256));
        if actual != *expected {
            return Err(BlobError::DigestMismatch { expected: expected.to_string(), actual: actual.to_string() });
        }
        // The appends made the bytes durable already.
        let created = self.install(&path, &sha256, None).await?;
        if created {
            sync_dir(&self.root.join("uploads")).await?;
        } else {
            self.discard(&path).await?;
        }
        Ok(Stored { digest: sha256, size: length, created })
    }

    /// Removes upload `id`'s bytes (cancelled or expired); false if there were none.
    pub async fn upload_discard(&self, id: &str) -> Result<bool, BlobError> {
        let path = self.upload_path(id)?;
        if let Ok(mut running) = self.running.lock() {
            running.remove(id);
        }
        if let Some(r) = &self.remote {
            return r.upload_discard(id).await;
        }
        Ok(self.discard(&path).await?)
    }

    /// The IDs of the upload sessions whose bytes are on disk.
    pub async fn upload_ids(&self) -> Result<Vec<String>, BlobError> {
        if let Some(r) = &self.remote {
            return r.upload_ids().await;
        }
        let mut out = Vec::new();
        let mut entries = tokio::fs::read_dir(self.root.join("uploads")).await?;
        while let Some(e) = entries.next_entry().await? {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    /// Garbage collection (local store only; `None` for an object store): removes the stored
    /// files last stored before `cutoff` whose digests are not in `referenced`, which
    /// must hold every digest that a committed row names, read in one snapshot after `cutoff`
    /// (see gc.rs for why writers racing with this are safe).
    pub async fn collect_garbage(
        &self,
        cutoff: std::time::SystemTime,
        referenced: std::sync::Arc<std::collections::HashSet<Digest>>,
        dry_run: bool,
        hold: impl Send + 'static,
    ) -> Result<Option<Swept>, BlobError> {
        if self.remote.is_some() {
            return Ok(None);
        }
        let root = self.root.clone();
        // `hold` (the caller's guard) lives as long as the sweep, even if the caller stops
        // waiting for it.
        Ok(Some(
            blocking(move || {
                let swept = gc::sweep(&root, cutoff, &referenced, dry_run);
                drop(hold);
                swept
            })
            .await?,
        ))
    }

    /// [`BlobStore::delete`] of content just listed by [`BlobStore::stored`]: on an object store,
    /// without asking first whether it is there, so false only where the store says so (Azure;
    /// S3 answers a delete of nothing with success).
    pub async fn delete_listed(&self, d: &Digest) -> Result<bool, BlobError> {
        match &self.remote {
            Some(r) => r.delete_listed(d).await,
            None => self.delete(d).await,
        }
    }

    /// Removes a blob; false if it was not there.
    pub async fn delete(&self, d: &Digest) -> Result<bool, BlobError> {
        if let Some(r) = &self.remote {
            return r.delete(d).await;
        }
        match tokio::fs::remove_file(self.path_of(d)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The parts (digests with their sizes) that byte `start` of their concatenation and the bytes
/// after it fall in, each with the offset to start from in it (0 but in the first) and its size.
fn parts_from<P>(parts: Vec<(P, u64)>, start: u64) -> impl Iterator<Item = (P, u64, u64)> {
    let mut skip = start;
    parts.into_iter().filter_map(move |(d, size)| {
        if skip >= size {
            skip -= size;
            return None;
        }
        let offset = std::mem::take(&mut skip);
        Some((d, offset, size))
    })
}

/// A write in progress. Dropped without [`BlobWriter::finish`], it leaves nothing behind.
pub struct BlobWriter {
    store: BlobStore,
    /// The temporary file's name, when it has one (see [`unnamed_works`]).
    tmp: Option<PathBuf>,
    /// Hashes (sha256, and sha512 when the client names its content so) and writes.
    sink: Option<Sink>,
    size: u64,
    limit: u64,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter").field("size", &self.size).finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// Reads once from `reader` into the write; returns the bytes read, 0 at the end of
    /// `reader`. A failed read is [`BlobError::Source`].
    pub async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> Result<usize, BlobError> {
        let n = match self.sink.as_mut() {
            Some(s) => s.read_from(reader).await?,
            None => return Err(BlobError::Io(std::io::Error::other("write after finish"))),
        };
        self.size += n as u64;
        if self.size > self.limit {
            return Err(BlobError::TooLarge { limit: self.limit });
        }
        Ok(n)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies the digest (if one is expected), makes the bytes durable and visible.
    pub async fn finish(self, expected: Option<&Digest>) -> Result<Stored, BlobError> {
        self.finish_checked(expected.map(OciDigest::from_sha256).as_ref()).await
    }

    /// Like [`BlobWriter::finish`], with the expected digest in either algorithm (sha512 needs
    /// a writer from [`BlobStore::writer_for`]).
    pub async fn finish_checked(mut self, expected: Option<&OciDigest>) -> Result<Stored, BlobError> {
        let sink = self.sink.take().ok_or_else(|| BlobError::Io(std::io::Error::other("finished twice")))?;
        let sunk = sink.finish().await?;
        let sha256 = sunk.sha256.ok_or_else(|| BlobError::Io(std::io::Error::other("no sha256 was computed")))?;
        let digest = Digest::from_bytes(sha256.finalize().into());
        let size = self.size;
        if let Some(exp) = expected {
            let actual = match (exp.algorithm(), sunk.sha512) {
                (Algorithm::Sha512, Some(h)) => OciDigest::from_hex(Algorithm::Sha512, hex(&h.finalize())),
                _ => OciDigest::from_sha256(&digest),
            };
            if *exp != actual {
                return Err(BlobError::DigestMismatch { expected: exp.to_string(), actual: actual.to_string() });
            }
        }
        // Not created, or uploaded: the temporary file goes when the writer drops.
        let created = match (&self.store.remote, &self.tmp) {
            (Some(r), Some(tmp)) => {
                drop(sunk.file);
                r.install(&digest, tokio::fs::File::open(tmp).await?).await?
            }
            (Some(r), None) => {
                use std::io::Seek;
                // Read from its start by a descriptor of its own; this one closes it afterwards.
                let mut spool = sunk.file;
                spool.seek(std::io::SeekFrom::Start(0))?;
                let reading = spool.try_clone()?;
                let created = r.install(&digest, tokio::fs::File::from_std(reading)).await;
                dispose(spool);
                created?
            }
            (None, Some(tmp)) => self.store.install(tmp, &digest, Some(sunk.file)).await?,
            (None, None) => self.store.install_unnamed(sunk.file, &digest).await?,
        };
        Ok(Stored { digest, size, created })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Renamed away on success; otherwise the partial file goes (or the whole one, when
        // equal bytes were stored already).
        if let Some(tmp) = self.tmp.take() {
            remove_tmp(tmp);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file, and its digest in `algorithm` too when that is not sha256: one read.
async fn hash_file(path: &Path, algorithm: Algorithm) -> Result<(Digest, Option<OciDigest>), BlobError> {
    let (sha256, other, _) = hash_reader(tokio::fs::File::open(path).await?, algorithm).await?;
    Ok((sha256, other))
}

/// The sha256 of what `f` reads, its digest in `algorithm` too when that is not sha256, and
/// its size: one read.
async fn hash_reader<R: AsyncRead + Unpin>(f: R, algorithm: Algorithm) -> Result<(Digest, Option<OciDigest>, u64), BlobError> {
    let (h256, h512, size) = hash_chunks(f, Sha256::new(), (algorithm == Algorithm::Sha512).then(Sha512::new)).await?;
    let other = h512.map(|h| OciDigest::from_hex(Algorithm::Sha512, hex(&h.finalize())));
    Ok((Digest::from_bytes(h256.finalize().into()), other, size))
}

/// Continues the hashes over what `reader` reads; returns them with the number of bytes read.
/// Each chunk is hashed on the blocking pool while the next is read (so a long hash, 0.5 s per
/// GiB, holds no async worker), in pooled buffers.
async fn hash_chunks<R: AsyncRead + Unpin>(
    mut reader: R,
    sha256: Sha256,
    sha512: Option<Sha512>,
) -> Result<(Sha256, Option<Sha512>, u64), BlobError> {
    let mut size = 0u64;
    let mut idle = ((sha256, sha512), sink::take_buffer());
    let mut next = sink::take_buffer();
    let result = loop {
        next.clear();
        // Fill the chunk (a short read is not the end); read_buf fills spare capacity only, so
        // the pooled buffer is never reallocated.
        while next.len() < BUFFER {
            if reader.read_buf(&mut next).await? == 0 {
                break;
            }
        }
        if next.is_empty() {
            let (h256, h512) = idle.0;
            break Ok((h256, h512, size));
        }
        size += next.len() as u64;
        let ((mut h256, mut h512), spare) = idle;
        let chunk = std::mem::replace(&mut next, spare);
        idle = blocking(move || {
            h256.update(&chunk);
            if let Some(h) = h512.as_mut() {
                h.update(&chunk);
            }
            Ok(((h256, h512), chunk))
        })
        .await?;
    };
    sink::give_back(next);
    sink::give_back(idle.1);
    result
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> std::io::Result<T> + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other)?
}

/// Whether `tmp` takes unnamed files (`O_TMPFILE`) that can be given a name later (`linkat`
/// through `/proc/self/fd`): a writer's bytes then never have a name in `tmp/` to create and
/// remove (16 writers at once spun on that directory's lock), go into the store by a link rather
/// than a rename across directories, and vanish by themselves if the process stops. Tried once,
/// when the store opens; without, temporary files are named.
fn unnamed_works(tmp: &Path) -> bool {
    let Ok(file) = open_unnamed(tmp) else { return false };
    let probe = tmp.join(format!("probe-{}", uuid::Uuid::new_v4().simple()));
    let linked = link_at(&file, &probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    linked
}

/// An unnamed file in `dir`, open for reading and writing, with the mode a named one would get
/// (0666 less the umask).
fn open_unnamed(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_TMPFILE).open(dir)
}

/// Gives open `file` the name `dest` (which must not exist).
fn link_at(file: &std::fs::File, dest: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let cwd = rustix::fs::CWD;
    let by_fd = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(cwd, by_fd.as_str(), cwd, dest, rustix::fs::AtFlags::SYMLINK_FOLLOW).map_err(std::io::Error::from)
}

/// Links unnamed `file` into the store as `dest`; false if equal bytes were there and could be
/// freshened in place. Stored bytes being collected are replaced: linked under a temporary
/// name in `tmp_dir`, renamed over them.
fn link_unnamed(file: &std::fs::File, dest: &Path, tmp_dir: &Path) -> std::io::Result<bool> {
    match link_at(file, dest) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if gc::freshen(dest)? {
                return Ok(false);
            }
            let tmp = tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
            link_at(file, &tmp)?;
            std::fs::rename(&tmp, dest)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Closes `file`: a big unnamed one (its last descriptor frees its blocks, see
/// [`REMOVED_IN_BACKGROUND`]) on a blocking thread, without waiting.
fn dispose(file: std::fs::File) {
    let big = file.metadata().is_ok_and(|m| m.len() >= REMOVED_IN_BACKGROUND);
    now_or_in_background(big, move || drop(file));
}

/// Files at least this big are removed in the background: freeing a file's blocks takes time
/// that grows with its size, ~0.2 s per GiB on ext4 mounted with `discard` (which trims them
/// there and then), and nobody waits for it.
const REMOVED_IN_BACKGROUND: u64 = 64 * 1024 * 1024;

/// Removes `path` (in `tmp/`, which is emptied at start), a big file on a blocking thread
/// without waiting for it. Never fails: a file left behind goes at the next start.
fn remove_tmp(path: PathBuf) {
    let big = std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() >= REMOVED_IN_BACKGROUND);
    now_or_in_background(big, move || {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "removing a temporary blob file failed; it goes at the next start");
        }
    });
}

/// Runs `f` on a blocking thread without waiting for it when `big` (and in a runtime); now
/// otherwise.
fn now_or_in_background(big: bool, f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if big => drop(rt.spawn_blocking(f)),
        _ => f(),
    }
}

/// The shard directory stored blob `path` goes in, created (and made durable in its parent)
/// when new.
async fn shard_of(path: &Path) -> std::io::Result<PathBuf> {
    let path = path.to_path_buf();
    blocking(move || make_shard(&path)).await
}

/// [`shard_of`], on the calling thread.
fn make_shard(path: &Path) -> std::io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    if !dir.try_exists()? {
        std::fs::create_dir_all(&dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir_now(parent)?;
        }
    }
    Ok(dir)
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    blocking(move || sync_dir_now(&dir)).await
}

/// Makes `dir`'s entries durable, on the calling thread.
fn sync_dir_now(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(b: &[u8]) -> Digest {
        Digest::from_bytes(Sha256::digest(b).into())
    }

    fn count_files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    }

    #[tokio::test]
    async fn stores_once_verifies_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        assert!(store.unnamed, "this file system takes unnamed temporary files");
        stores_once_verifies_and_leaves_no_temp_files_in(store, dir.path()).await;
        // And where temporary files must be named.
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap().named_temporaries();
        stores_once_verifies_and_leaves_no_temp_files_in(store, dir.path()).await;
    }

    async fn stores_once_verifies_and_leaves_no_temp_files_in(store: BlobStore, root: &Path) {
        let mut names_in_tmp = 0;
        // Larger than one buffer, so the streaming loop runs several times.
        let data: Vec<u8> = (0..(BUFFER * 3 + 17)).map(|i| (i * 31 % 251) as u8).collect();
        let d = digest_of(&data);
        // Watched while the write is under way: a named temporary file shows in tmp/.
        let mut w = store.writer(u64::MAX).await.unwrap();
        w.read_from(&mut &data[..BUFFER]).await.unwrap();
        names_in_tmp += count_files(&root.join("tmp"));
        drop(w);
        assert_eq!(count_files(&root.join("tmp")), 0, "a dropped write leaves nothing");
        assert_eq!(names_in_tmp, usize::from(!store.unnamed), "a temporary file has a name only where it must");
        let first = store.put(&data[..], Some(&d), u64::MAX).await.unwrap();
        assert_eq!(first, Stored { digest: d, size: data.len() as u64, created: true });
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        std::fs::write(root.join("reference"), b"").unwrap();
        assert_eq!(mode(&store.path_of(&d)), mode(&root.join("reference")), "a stored file has a new file's usual mode");
        let second = store.put(&data[..], None, u64::MAX).await.unwrap();
        assert!(!second.created, "equal bytes are stored once");
        let (mut f, size) = store.get(&d).await.unwrap().unwrap();
        assert_eq!(size, data.len() as u64);
        let mut back = Vec::new();
        f.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data);

        // A wrong digest stores nothing.
        let other = digest_of(b"something else");
        match store.put(&b"payload"[..], Some(&other), u64::MAX).await {
            Err(BlobError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, other.to_string());
                assert_eq!(actual, digest_of(b"payload").to_string());
            }
            r => panic!("{r:?}"),
        }
        assert!(store.get(&digest_of(b"payload")).await.unwrap().is_none());
        // Over the limit stores nothing.
        assert!(matches!(store.put(&b"0123456789"[..], None, 5).await, Err(BlobError::TooLarge { limit: 5 })));
        assert_eq!(count_files(&root.join("tmp")), 0);

        assert!(store.delete(&d).await.unwrap());
        assert!(!store.delete(&d).await.unwrap());
        assert!(store.get(&d).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn opening_removes_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/partial"), b"half a blob").unwrap();
        BlobStore::open(dir.path()).await.unwrap();
        assert_eq!(count_files(&dir.path().join("tmp")), 0);
    }
}

#[cfg(test)]
mod parts_tests {
    use super::*;

    /// Blocks staged in place land at their offsets whatever their order, read back as ranges,
    /// and the whole file becomes a stored blob by a link: no byte copied.
    #[tokio::test]
    async fn staged_blocks_are_written_in_place_and_linked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        assert_eq!(store.stage_at("f1", 5, &b"world"[..], 5, Box::new(()), false).await.unwrap().0, 5);
        assert_eq!(store.stage_at("f1", 0, &b"hello"[..], 5, Box::new(()), false).await.unwrap().0, 5);
        assert!(matches!(store.stage_at("f2", 0, &b"too long"[..], 3, Box::new(()), false).await, Err(BlobError::TooLarge { limit: 3 })));
        assert!(matches!(store.stage_at("../f1", 0, &b"x"[..], 1, Box::new(()), false).await, Err(BlobError::Config(_))));
        assert_eq!(store.staged_len("f1").await.unwrap(), Some(10));
        assert_eq!(store.staged_len("nothing").await.unwrap(), None);

        let at = |o: u64| (Piece::Staged { file: "f1".into(), offset: o }, 5);
        let mut out = Vec::new();
        store.pieces_reader(vec![at(5), at(0)], 3).read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"ldhello", "ranges in the list's order, from any offset");
        let (h, n) = store.hash_pieces(&[at(0), at(5)], Sha256::new()).await.unwrap();
        let d = Digest::from_bytes(h.finalize().into());
        assert_eq!((d, n), (Digest::from_bytes(Sha256::digest(b"helloworld").into()), 10));

        assert!(store.install_staged("f1", &d, 9).await.is_err(), "the file must be exactly the blob");
        assert!(store.install_staged("f1", &d, 10).await.unwrap(), "new bytes");
        assert!(!store.install_staged("f1", &d, 10).await.unwrap(), "there already");
        let names: Vec<String> = store.staged_files().await.unwrap().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"f1".to_string()), "the staging name stays until removed: {names:?}");
        assert!(store.remove_staged("f1").await.unwrap());
        assert!(!store.remove_staged("f1").await.unwrap());
        let (mut r, size) = store.get(&d).await.unwrap().unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!((out.as_slice(), size), (&b"helloworld"[..], 10));
    }

    #[tokio::test]
    async fn a_big_staging_file_leaves_at_once_and_goes_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        assert_eq!(store.stage_at("big", 0, &b"head"[..], 4, Box::new(()), false).await.unwrap().0, 4);
        // As big as background removal needs, sparse: nothing to write.
        std::fs::OpenOptions::new().write(true).open(store.staging_path("big")).unwrap().set_len(REMOVED_IN_BACKGROUND).unwrap();
        assert_eq!(store.stage_at("small", 0, &b"tail"[..], 4, Box::new(()), false).await.unwrap().0, 4);

        assert!(store.remove_staged("big").await.unwrap());
        assert!(store.remove_staged("small").await.unwrap());
        assert_eq!(store.staged_files().await.unwrap().len(), 0, "both are out of the staging directory when the call returns");
        assert!(!store.remove_staged("big").await.unwrap(), "and cannot be removed twice");
        // The small one is gone already; the big one within moments, on a thread of its own.
        let count = || std::fs::read_dir(dir.path().join("tmp")).map(|d| d.count()).unwrap_or(0);
        let mut left = count();
        for _ in 0..200 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            left = count();
        }
        assert_eq!(left, 0, "the set-aside file was removed");
    }

    /// A body that fails after buffers were handed over: they are still written, and `hold`
    /// (the caller's reservation of the range) is let go only after the last of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staged_write_lets_go_of_its_range_only_after_its_last_byte() {
        struct Failing;
        impl AsyncRead for Failing {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Err(std::io::Error::other("connection reset")))
            }
        }
        struct Hold(std::path::PathBuf, std::sync::Arc<std::sync::Mutex<Option<u64>>>);
        impl Drop for Hold {
            fn drop(&mut self) {
                *self.1.lock().unwrap() = Some(std::fs::metadata(&self.0).map(|m| m.len()).unwrap_or(0));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let hold = Hold(dir.path().join("staging/f"), seen.clone());
        let data = vec![7u8; 5 * 1024 * 1024 / 2];
        let body = tokio::io::AsyncReadExt::chain(&data[..], Failing);
        let r = store.stage_at("f", 0, body, data.len() as u64 + 1, Box::new(hold), false).await;
        assert!(matches!(r, Err(BlobError::Source(_))), "{r:?}");
        let at_release = loop {
            if let Some(n) = *seen.lock().unwrap() {
                break n;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        let fin = std::fs::metadata(dir.path().join("staging/f")).unwrap().len();
        assert!(fin >= 1024 * 1024, "the full buffers handed over were written ({fin} bytes)");
        assert_eq!(at_release, fin, "nothing was written after the range was let go");
    }

    /// Whether this directory's file system takes `O_DIRECT` writes.
    fn takes_direct_io(dir: &Path) -> bool {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let probe = dir.join("direct-probe");
        let f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).custom_flags(libc::O_DIRECT).open(&probe);
        let buf = vec![0u8; 2 * sink::BUFFER];
        let start = buf.as_ptr().align_offset(4096);
        let ok = f.and_then(|f| f.write_all_at(&buf[start..start + 65536], 0)).is_ok();
        let _ = std::fs::remove_file(probe);
        ok
    }

    /// Kept blocks go around the page cache where their range is aligned (a short last buffer,
    /// and a block at an odd offset, through it) and read back the same; their bytes are kept,
    /// and their room in the budget is given back when they are dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn staged_blocks_read_back_the_same_whatever_their_alignment() {
        let _only = sink::KEEP_TEST.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let (kept_before, direct_before) = (sink::kept_now(), sink::direct_writes());
        let mib = 1024 * 1024;
        let data: Vec<u8> = (0..11 * mib + 4099).map(|n| (n * 13 + n / 4096) as u8).collect();
        // Arrival out of order: a block at an unaligned offset that ends the blob with a short
        // buffer, then an aligned one-byte block, then the aligned head.
        let cuts = [(0, 3 * mib), (3 * mib, 3 * mib + 1), (3 * mib + 1, data.len())];
        let mut kepts = Vec::new();
        for (start, end) in [cuts[2], cuts[1], cuts[0]] {
            let len = (end - start) as u64;
            let (n, kept) = store.stage_at("f", start as u64, &data[start..end], len, Box::new(()), true).await.unwrap();
            assert_eq!(n, len);
            let kept = kept.expect("kept");
            assert_eq!(kept.chunks().collect::<Vec<_>>().concat(), &data[start..end]);
            kepts.push(kept);
        }
        assert!(std::fs::read(dir.path().join("staging/f")).unwrap() == data, "the staging file holds the blob");
        assert_eq!(sink::kept_now() - kept_before, (9 + 1 + 3) * sink::BUFFER, "room for each block's buffers");
        if takes_direct_io(dir.path()) {
            // The head's three 1 MiB buffers; nothing of the other two blocks.
            assert_eq!(sink::direct_writes() - direct_before, 3, "the aligned buffers went around the page cache");
        } else {
            eprintln!("skipped the direct-write count: this file system refuses O_DIRECT");
        }
        drop(kepts);
        assert_eq!(sink::kept_now(), kept_before, "dropped blocks give their room back");
    }

    /// A file system that opens files with `O_DIRECT` but refuses the writes (`EINVAL`) gets the
    /// refused buffer again through the page cache, and the rest of the block too: the staging
    /// file and the kept bytes hold the block whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_direct_write_is_written_again_through_the_page_cache() {
        let _only = sink::KEEP_TEST.lock().await;
        let dir = tempfile::tempdir().unwrap();
        if !takes_direct_io(dir.path()) {
            eprintln!("SKIP: this file system refuses O_DIRECT opens, so no direct write is tried");
            return;
        }
        let store = BlobStore::open(dir.path()).await.unwrap();
        let data: Vec<u8> = (0..3 * sink::BUFFER + 100).map(|n| (n * 7 + n / 65_536) as u8).collect();
        let len = data.len() as u64;
        let direct_before = sink::direct_writes();
        sink::REFUSE_DIRECT.store(true, std::sync::atomic::Ordering::SeqCst);
        let staged = store.stage_at("f", 0, &data[..], len, Box::new(()), true).await;
        sink::REFUSE_DIRECT.store(false, std::sync::atomic::Ordering::SeqCst);
        let (n, kept) = staged.unwrap();
        assert_eq!(n, len);
        assert_eq!(sink::direct_writes(), direct_before, "every direct write was refused");
        assert!(std::fs::read(dir.path().join("staging/f")).unwrap() == data, "the staging file holds the block whole");
        assert!(kept.expect("kept").chunks().collect::<Vec<_>>().concat() == data);
        // Direct writes were refused for that block only: the next one goes around the cache.
        let (_, kept) =
            store.stage_at("f", 4 * sink::BUFFER as u64, &data[..sink::BUFFER], sink::BUFFER as u64, Box::new(()), true).await.unwrap();
        assert_eq!(sink::direct_writes(), direct_before + 1);
        assert_eq!(kept.expect("kept").len(), sink::BUFFER as u64);
    }

    /// A block that finds no room in the budget is neither kept nor written around the page
    /// cache (its hash will read it from there); with room again, blocks are kept again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_block_without_room_to_be_kept_goes_through_the_page_cache() {
        let _only = sink::KEEP_TEST.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let data = vec![5u8; 2 * sink::BUFFER];
        let len = data.len() as u64;
        let hog = sink::Kept::reserve(sink::KEEP_MAX as u64 - sink::kept_now() as u64).expect("the whole budget");
        let direct_before = sink::direct_writes();
        let (n, kept) = store.stage_at("f", 0, &data[..], len, Box::new(()), true).await.unwrap();
        assert_eq!((n, kept.is_none()), (len, true), "no room: not kept");
        assert_eq!(sink::direct_writes(), direct_before, "not kept: not written around the page cache");
        drop(hog);
        let (_, kept) = store.stage_at("f", len, &data[..], len, Box::new(()), true).await.unwrap();
        assert_eq!(kept.expect("room again").len(), len);
        assert!(std::fs::read(dir.path().join("staging/f")).unwrap() == [&data[..], &data[..]].concat());
    }

    #[tokio::test]
    async fn parts_read_as_one_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let a = store.put(&b"0123456789"[..], None, u64::MAX).await.unwrap();
        let b = store.put(&b"abcdef"[..], None, u64::MAX).await.unwrap();
        let parts = vec![(a.digest, a.size), (b.digest, b.size), (a.digest, a.size)];
        let (d, size) = store.hash_parts(&[a.digest, b.digest, a.digest]).await.unwrap();
        let whole = b"0123456789abcdef0123456789";
        assert_eq!((d, size), (Digest::from_bytes(Sha256::digest(whole).into()), 26));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "nothing was written");
        for start in [0u64, 3, 10, 12, 16, 25, 26] {
            let mut out = Vec::new();
            store.parts_reader(parts.clone(), start).read_to_end(&mut out).await.unwrap();
            assert_eq!(out, &whole[start as usize..], "from {start}");
        }
    }

    #[tokio::test]
    async fn local_reads_stream_in_chunks_and_refuse_a_short_file() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let whole: Vec<u8> = (0..(5u32 << 19) + 7).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let d = store.put(&whole[..], None, u64::MAX).await.unwrap().digest;
        for start in [0u64, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 3, whole.len() as u64 - 1, whole.len() as u64] {
            let (reader, size) = store.get_at(&d, start).await.unwrap().unwrap();
            assert_eq!(size, whole.len() as u64);
            let mut chunks = reader.into_stream();
            let mut out = Vec::new();
            while let Some(c) = chunks.next().await {
                let c = c.unwrap();
                assert!(!c.is_empty() && c.len() <= 1 << 20, "chunks of at most 1 MiB, none empty");
                out.extend_from_slice(&c);
            }
            assert!(out == whole[start as usize..], "from {start}");
        }
        // Stored bytes that lost their tail (a damaged disk) end in an error, not a short answer.
        let (reader, _) = store.get(&d).await.unwrap().unwrap();
        std::fs::OpenOptions::new().write(true).open(store.path_of(&d)).unwrap().set_len(1000).unwrap();
        let got: Vec<_> = reader.into_stream().collect().await;
        let err = got.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    }
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    fn sha256_of(b: &[u8]) -> OciDigest {
        OciDigest::of(Algorithm::Sha256, b)
    }

    #[tokio::test]
    async fn sessions_append_in_order_cut_unacknowledged_bytes_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        store.upload_start("u1").await.unwrap();
        assert_eq!(store.upload_append("u1", 0, &b"hello "[..], 100).await.unwrap(), 6);
        assert_eq!(store.upload_append("u1", 6, &b"world"[..], 100).await.unwrap(), 11);
        // A wrong digest keeps the session (the client may retry the PUT correctly).
        assert!(matches!(store.upload_finish("u1", 11, &sha256_of(b"other")).await, Err(BlobError::DigestMismatch { .. })));
        let s = store.upload_finish("u1", 11, &sha256_of(b"hello world")).await.unwrap();
        assert_eq!((s.size, s.created), (11, true));
        assert!(matches!(store.upload_finish("u1", 11, &sha256_of(b"hello world")).await, Err(BlobError::UnknownUpload(_))));

        // After a restart (no running hash), bytes past the acknowledged length are cut, and
        // the file is hashed from disk.
        store.upload_start("u2").await.unwrap();
        store.upload_append("u2", 0, &b"abc"[..], 100).await.unwrap();
        std::fs::write(dir.path().join("uploads/u2"), b"abcGARBAGE").unwrap();
        let reopened = BlobStore::open(dir.path()).await.unwrap();
        assert_eq!(reopened.upload_append("u2", 3, &b"def"[..], 100).await.unwrap(), 6);
        let s = reopened.upload_finish("u2", 6, &OciDigest::of(Algorithm::Sha512, b"abcdef")).await.unwrap();
        assert_eq!(s.digest.to_string(), sha256_of(b"abcdef").to_string(), "the store is keyed by sha256 whatever the client's algorithm");
        // Over the limit fails; unknown and malformed IDs are refused.
        reopened.upload_start("u3").await.unwrap();
        assert!(matches!(reopened.upload_append("u3", 0, &b"0123456789"[..], 5).await, Err(BlobError::TooLarge { .. })));
        assert!(matches!(reopened.upload_append("nope", 0, &b"x"[..], 5).await, Err(BlobError::UnknownUpload(_))));
        assert!(matches!(reopened.upload_append("../x", 0, &b"x"[..], 5).await, Err(BlobError::UnknownUpload(_))));
        assert!(reopened.upload_discard("u3").await.unwrap());
        assert!(reopened.upload_ids().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_writer_verifies_sha512() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let mut w = store.writer_for(Algorithm::Sha512, 100).await.unwrap();
        w.read_from(&mut &b"data"[..]).await.unwrap();
        assert!(w.finish_checked(Some(&OciDigest::of(Algorithm::Sha512, b"data"))).await.unwrap().created);
        let mut w = store.writer_for(Algorithm::Sha512, 100).await.unwrap();
        w.read_from(&mut &b"data"[..]).await.unwrap();
        assert!(matches!(w.finish_checked(Some(&OciDigest::of(Algorithm::Sha512, b"other"))).await, Err(BlobError::DigestMismatch { .. })));
    }
}
