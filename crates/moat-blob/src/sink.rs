//! A pipelined file sink: the async side gathers incoming bytes into 1 MiB buffers and hands
//! them to a blocking hasher, which passes each hashed buffer on to a writer thread, so
//! receiving, hashing and writing overlap: on 2 cores, hashing (~0.5 s per GiB with SHA-NI)
//! and the kernel's copy into the page cache (0.2–2 s per GiB, see docs/BENCHMARKS.md) no longer
//! take turns on one core. A third, blocking helper flushes written data to disk every
//! [`SYNC_EVERY`] bytes while the writer goes on, so the final fsync has little left to do.
//! Spent buffers go back to a process-wide pool to be filled again (by this write or the next),
//! so uploads keep touching the same few MiB of memory instead of faulting fresh pages in for
//! every request (8 % of the server's CPU during 8 MiB Put Blocks before the pool). A write that
//! fits in one buffer starts no thread.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use sha2::{Digest as _, Sha256, Sha512};

use crate::BlobError;

/// Bytes gathered before a hand-over to the hasher.
pub(crate) const BUFFER: usize = 1024 * 1024;
/// Buffers queued at each step (async side → hasher → writer).
const DEPTH: usize = 2;
/// Written bytes between background flushes.
const SYNC_EVERY: u64 = 64 * 1024 * 1024;
/// Spare buffers kept for the next writes (16 MiB at most, idle).
const POOL_MAX: usize = 16;
/// Bytes that staged blocks keep in memory at once, all writes together (see [`Kept`]): the
/// CLI's four 4 MiB blocks in flight, and room for some more. A block without room is written
/// through the page cache and read back from there to be hashed.
pub(crate) const KEEP_MAX: usize = 24 * BUFFER;
/// Direct I/O alignment of memory (4096 suits every device).
const ALIGN: usize = 4096;
/// Alignment of the file ranges written directly: whole pages of any size up to 64 KiB (arm64
/// and ppc64 kernels may use 64 KiB pages), so that no page holds both bytes written directly
/// and bytes another block writes through the page cache.
const FILE_ALIGN: u64 = 64 * 1024;

static KEPT: AtomicUsize = AtomicUsize::new(0);
/// Buffers written directly, all sinks together (for tests).
static DIRECT_WRITES: AtomicU64 = AtomicU64::new(0);

/// Buffers written with `O_DIRECT` so far (for tests).
#[cfg(test)]
pub(crate) fn direct_writes() -> u64 {
    DIRECT_WRITES.load(Ordering::SeqCst)
}

/// Bytes kept now, all blocks together (for tests).
#[cfg(test)]
pub(crate) fn kept_now() -> usize {
    KEPT.load(Ordering::SeqCst)
}

/// Set by a test to have direct writes refused as a file system without `O_DIRECT` refuses
/// them (`EINVAL`), which none of the file systems tests run on does.
#[cfg(test)]
pub(crate) static REFUSE_DIRECT: AtomicBool = AtomicBool::new(false);

#[cfg(test)]
fn direct_refused() -> bool {
    REFUSE_DIRECT.load(Ordering::SeqCst)
}

#[cfg(not(test))]
fn direct_refused() -> bool {
    false
}

/// Held by the tests that keep bytes or count direct writes, which share the process's budget.
#[cfg(test)]
pub(crate) static KEEP_TEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// An empty buffer of [`BUFFER`] capacity, from the pool when it has one.
pub(crate) fn take_buffer() -> Vec<u8> {
    POOL.lock().ok().and_then(|mut p| p.pop()).unwrap_or_else(|| Vec::with_capacity(BUFFER))
}

/// Gives a buffer from [`take_buffer`] back (dropped when the pool is full).
pub(crate) fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() != BUFFER {
        return;
    }
    buf.clear();
    if let Ok(mut p) = POOL.lock()
        && p.len() < POOL_MAX
    {
        p.push(buf);
    }
}

/// A pooled buffer's bytes, shared without a copy (`Bytes::from_owner`) and given back to the
/// pool when the last share is dropped: a download's chunks reuse the same few MiB.
pub(crate) struct Pooled(pub Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

/// A staged block's bytes, still in memory after they were written to their staging file, so
/// that the running hash of its blob (moat-core's prehash.rs) reads them here rather than
/// reading the file back. Staged blocks are written around the page cache (see
/// [`Sink::start_shared`]), so a read back would come from the disk, and even from the page
/// cache it copied every byte once more. All kept blocks together hold at most [`KEEP_MAX`]
/// bytes, reserved for the whole block before its first byte is written ([`Kept::reserve`]):
/// a block without room is written through the page cache instead, so that its hash reads it
/// from there. Dropping one gives its buffers and its room back.
pub struct Kept {
    bufs: Vec<Vec<u8>>,
    /// Buffers reserved in [`KEPT`].
    reserved: usize,
}

impl Kept {
    /// Room for the buffers of a block of `len` bytes, if the budget has it.
    pub(crate) fn reserve(len: u64) -> Option<Kept> {
        if len == 0 || len > KEEP_MAX as u64 {
            return None;
        }
        let n = len.div_ceil(BUFFER as u64) as usize;
        KEPT.fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| (k + n * BUFFER <= KEEP_MAX).then_some(k + n * BUFFER)).ok()?;
        Some(Kept { bufs: Vec::with_capacity(n), reserved: n })
    }

    /// Keeps `buf`, within the room reserved; gives it back otherwise.
    fn keep(&mut self, buf: Vec<u8>) -> bool {
        if self.bufs.len() >= self.reserved {
            give_back(buf);
            return false;
        }
        self.bufs.push(buf);
        true
    }

    /// The bytes kept.
    pub fn len(&self) -> u64 {
        self.bufs.iter().map(|b| b.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs.iter().map(|b| b.as_slice())
    }
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kept({} bytes)", self.len())
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        for buf in self.bufs.drain(..) {
            give_back(buf);
        }
        KEPT.fetch_sub(self.reserved * BUFFER, Ordering::AcqRel);
    }
}

/// What the worker returns: the file and the hashes, past everything it was given.
pub(crate) struct Sunk {
    pub file: std::fs::File,
    pub sha256: Option<Sha256>,
    pub sha512: Option<Sha512>,
    /// A shared sink's bytes, when all of them could be kept.
    pub kept: Option<Kept>,
}

pub(crate) struct Sink {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    /// Taken when awaited: at the end, or early to learn why it stopped.
    worker: Option<tokio::task::JoinHandle<std::io::Result<Sunk>>>,
    pending: Vec<u8>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.pending));
    }
}

impl Sink {
    /// Starts a worker appending to `file` (at its current position) and continuing the hashes.
    /// With `flush`, written data goes to disk in the background as it accumulates (a spool
    /// that is uploaded elsewhere does without).
    pub fn start(file: std::fs::File, sha256: Option<Sha256>, sha512: Option<Sha512>, flush: bool) -> Sink {
        Self::spawn(file, Hashes { sha256, sha512 }, flush, None, Box::new(()))
    }

    /// Starts a worker writing, unhashed, from `at` in `file`, a file other sinks write too,
    /// keeping the bytes written in `kept` ([`Sunk::kept`]; room reserved for the whole block).
    /// Buffers whose range of the file is aligned to [`FILE_ALIGN`] (all of a block that starts
    /// at such an offset, but a short last one) go through `direct`, the same file opened with
    /// `O_DIRECT`: a kept block is hashed from memory and its blob is not read until a client
    /// asks, so copying it into the page cache was work for nothing, and on this project's VM
    /// the costliest part of an upload (docs/BENCHMARKS.md). Pass `direct` only with `kept`: a
    /// block written around the cache and not kept would be read back from the disk. The rest
    /// goes through the page cache, holding `turn`: the kernel serialises buffered writes to one
    /// file anyway (ext4 takes the inode's lock), but a waiting writer there spins on a core
    /// (6.5 % of the server's CPU with four 8 MiB blocks in flight); waiting here, it sleeps.
    /// `hold` is dropped when the worker ends, after its last write: a buffer handed over is
    /// written even if the sink is dropped (a failed or cancelled request), so whoever reserved
    /// the range must not free it before.
    pub fn start_shared(
        file: std::fs::File,
        direct: Option<std::fs::File>,
        at: u64,
        kept: Option<Kept>,
        turn: Arc<Mutex<()>>,
        hold: Box<dyn Send>,
    ) -> Sink {
        let place = Place {
            turn,
            direct_ok: AtomicBool::new(direct.is_some()),
            direct,
            at: AtomicU64::new(at),
            kept: Mutex::new(kept),
            scratch: Mutex::new(Vec::new()),
        };
        Self::spawn(file, Hashes { sha256: None, sha512: None }, true, Some(place), hold)
    }

    fn spawn(file: std::fs::File, hashes: Hashes, flush: bool, place: Option<Place>, hold: Box<dyn Send>) -> Sink {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(DEPTH);
        let worker = tokio::task::spawn_blocking(move || {
            let sunk = run(file, hashes, flush, place, rx);
            drop(hold);
            sunk
        });
        Sink { tx: Some(tx), worker: Some(worker), pending: take_buffer() }
    }

    /// Reads once from `reader` straight into the buffer being filled (no copy, no zeroed
    /// buffer of the caller's); returns the bytes read, 0 at the end of `reader`. A failed read
    /// is [`BlobError::Source`], a failed write [`BlobError::Io`].
    pub async fn read_from<R: tokio::io::AsyncRead + Unpin>(&mut self, reader: &mut R) -> Result<usize, BlobError> {
        use tokio::io::AsyncReadExt;
        // The buffer is handed over when full, so it always has room: the read never grows it.
        let n = reader.read_buf(&mut self.pending).await.map_err(BlobError::Source)?;
        if self.pending.len() >= BUFFER {
            self.hand_over().await?;
        }
        Ok(n)
    }

    async fn hand_over(&mut self) -> std::io::Result<()> {
        let buf = std::mem::replace(&mut self.pending, take_buffer());
        let Some(tx) = &self.tx else { return Err(std::io::Error::other("write after finish")) };
        if tx.send(buf).await.is_err() {
            // The worker stopped: its error says why.
            self.tx = None;
            return Err(match self.join().await {
                Err(e) => e,
                Ok(_) => std::io::Error::other("the writer stopped"),
            });
        }
        Ok(())
    }

    async fn join(&mut self) -> std::io::Result<Sunk> {
        match self.worker.take() {
            Some(w) => w.await.map_err(std::io::Error::other)?,
            None => Err(std::io::Error::other("the writer stopped")),
        }
    }

    /// Hands over the rest and waits for the worker; the file is written (not yet fsynced).
    pub async fn finish(mut self) -> std::io::Result<Sunk> {
        let handed = if self.pending.is_empty() { Ok(()) } else { self.hand_over().await };
        handed?;
        self.tx = None;
        self.join().await
    }
}

struct Hashes {
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl Hashes {
    fn update(&mut self, buf: &[u8]) {
        if let Some(h) = self.sha256.as_mut() {
            h.update(buf);
        }
        if let Some(h) = self.sha512.as_mut() {
            h.update(buf);
        }
    }
}

/// The worker: writes every buffer, hashing it first where there are hashes to continue, and
/// returns the file, the hashes and the bytes kept.
fn run(
    file: std::fs::File,
    mut hashes: Hashes,
    flush: bool,
    place: Option<Place>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<Sunk> {
    if hashes.sha256.is_none() && hashes.sha512.is_none() {
        // Nothing to hash (a block staged in place: its blob is hashed as a whole elsewhere):
        // this thread writes, and starts no other. A writer thread per block was a thread
        // created and ended per Put Block (256 per GiB of 4 MiB blocks), each with its own
        // allocator heap, to pass buffers along.
        write_all(&file, flush, place.as_ref(), std::iter::from_fn(|| rx.blocking_recv()))?;
    } else {
        hash_and_hand_over(&file, &mut hashes, flush, place.as_ref(), rx)?;
    }
    let kept = place.and_then(|p| p.kept.into_inner().unwrap_or_else(|e| e.into_inner()));
    Ok(Sunk { file, sha256: hashes.sha256, sha512: hashes.sha512, kept })
}

/// The hasher: hashes each buffer and passes it to the writer thread, which it starts with the
/// second buffer (a single buffer is written here, with no thread).
fn hash_and_hand_over(
    file: &std::fs::File,
    hashes: &mut Hashes,
    flush: bool,
    place: Option<&Place>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    std::thread::scope(|scope| {
        let mut first: Option<Vec<u8>> = None;
        let mut writer = None;
        while let Some(buf) = rx.blocking_recv() {
            hashes.update(&buf);
            let (to_writer, _) = match &writer {
                Some(w) => w,
                None => match first.take() {
                    None => {
                        first = Some(buf);
                        continue;
                    }
                    Some(held) => {
                        let (to_writer, from_hasher) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
                        let handle = scope.spawn(move || write_all(file, flush, place, from_hasher.into_iter()));
                        // A failed send means the writer stopped: its result says why.
                        let _ = to_writer.send(held);
                        writer.insert((to_writer, handle))
                    }
                },
            };
            if to_writer.send(buf).is_err() {
                break;
            }
        }
        match writer {
            Some((to_writer, handle)) => {
                drop(to_writer);
                handle.join().map_err(|_| std::io::Error::other("the writer panicked"))?
            }
            None => first.map_or(Ok(()), |buf| {
                let written = write_turn(file, place, &buf);
                keep_or_give_back(place, buf);
                written
            }),
        }
    })
}

/// The writer: appends each buffer to `file` and gives it back to the pool (a kept block's stay
/// with it, see [`Kept`]); with `flush`, a helper thread flushes to disk every
/// [`SYNC_EVERY`] bytes (skipped while one flush is still running).
fn write_all(file: &std::fs::File, flush: bool, place: Option<&Place>, bufs: impl Iterator<Item = Vec<u8>>) -> std::io::Result<()> {
    std::thread::scope(|scope| {
        let mut flusher = None;
        let mut since_sync = 0u64;
        let mut outcome = Ok(());
        for buf in bufs {
            if let Err(e) = write_turn(file, place, &buf) {
                outcome = Err(e);
                break;
            }
            since_sync += buf.len() as u64;
            keep_or_give_back(place, buf);
            if flush && since_sync >= SYNC_EVERY {
                since_sync = 0;
                let (sync_tx, _) = flusher.get_or_insert_with(|| {
                    let (sync_tx, sync_rx) = mpsc::sync_channel::<()>(1);
                    let handle = scope.spawn(move || -> std::io::Result<()> {
                        while sync_rx.recv().is_ok() {
                            file.sync_data()?;
                        }
                        Ok(())
                    });
                    (sync_tx, handle)
                });
                // A flush already running is enough: skip rather than wait.
                let _ = sync_tx.try_send(());
            }
        }
        if let Some((sync_tx, handle)) = flusher {
            drop(sync_tx);
            let flushed = handle.join().map_err(|_| std::io::Error::other("the flusher panicked"))?;
            outcome = outcome.and(flushed);
        }
        outcome
    })
}

/// Adds a written buffer to its place's kept bytes, or gives it back to the pool. Past the room
/// reserved (more bytes than the block announced cannot reach a sink), nothing is kept.
fn keep_or_give_back(place: Option<&Place>, buf: Vec<u8>) {
    let Some(p) = place else { return give_back(buf) };
    let mut kept = p.kept.lock().unwrap_or_else(|e| e.into_inner());
    match kept.as_mut() {
        Some(k) => {
            if !k.keep(buf) {
                *kept = None;
            }
        }
        None => give_back(buf),
    }
}

/// Where a shared sink writes: from `at`, in a file that other sinks write too.
struct Place {
    turn: Arc<Mutex<()>>,
    /// The file opened with `O_DIRECT`, if the file system allowed it.
    direct: Option<std::fs::File>,
    /// Off once a direct write was refused: the rest goes through the page cache.
    direct_ok: AtomicBool,
    /// Where the next buffer goes.
    at: AtomicU64,
    /// The bytes written so far, when the block is kept.
    kept: Mutex<Option<Kept>>,
    /// An aligned copy of a buffer whose memory is not aligned for direct I/O (moat's allocator
    /// aligns 1 MiB buffers; another may not).
    scratch: Mutex<Vec<u8>>,
}

/// Writes `buf`: a plain sink's at the file's position; a shared sink's at its place, directly
/// when aligned, through the page cache holding the turn otherwise.
fn write_turn(mut file: &std::fs::File, place: Option<&Place>, buf: &[u8]) -> std::io::Result<()> {
    let Some(p) = place else { return file.write_all(buf) };
    let at = p.at.fetch_add(buf.len() as u64, Ordering::Relaxed);
    if let Some(direct) = p.direct.as_ref().filter(|_| p.direct_ok.load(Ordering::Relaxed))
        && (buf.len() as u64).is_multiple_of(FILE_ALIGN)
        && at.is_multiple_of(FILE_ALIGN)
    {
        let mut scratch = p.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let aligned: &[u8] = if (buf.as_ptr() as usize).is_multiple_of(ALIGN) {
            buf
        } else {
            if scratch.len() < buf.len() + ALIGN {
                *scratch = vec![0u8; buf.len() + ALIGN];
            }
            let start = scratch.as_ptr().align_offset(ALIGN);
            scratch[start..start + buf.len()].copy_from_slice(buf);
            &scratch[start..start + buf.len()]
        };
        let written =
            if direct_refused() { Err(std::io::Error::from_raw_os_error(libc::EINVAL)) } else { direct.write_all_at(aligned, at) };
        match written {
            Ok(()) => {
                DIRECT_WRITES.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            // Refused (a file system without direct I/O for this file, or stricter alignment):
            // written again, whole, through the page cache, and so is the rest.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => p.direct_ok.store(false, Ordering::Relaxed),
            Err(e) => return Err(e),
        }
    }
    let _turn = p.turn.lock().unwrap_or_else(|e| e.into_inner());
    file.write_all_at(buf, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: Sha256) -> String {
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_and_hashes_everything_in_order_whatever_the_chunking() {
        let dir = tempfile::tempdir().unwrap();
        // Sizes around the buffer and flush boundaries: no thread, one buffer plus a bit, many.
        for (i, size) in [0usize, 1, BUFFER - 1, BUFFER, BUFFER + 1, 3 * BUFFER + 17, (SYNC_EVERY as usize) + 5].into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|n| (n * 31 + n / 4096) as u8).collect();
            let path = dir.path().join(format!("f{i}"));
            let file = std::fs::File::create(&path).unwrap();
            let mut sink = Sink::start(file, Some(Sha256::new()), Some(Sha512::new()), true);
            // Uneven chunks, as the network delivers them.
            for mut chunk in data.chunks(65_521) {
                while sink.read_from(&mut chunk).await.unwrap() > 0 {}
            }
            let sunk = sink.finish().await.unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "size {size}");
            assert_eq!(hex(sunk.sha256.unwrap()), hex(Sha256::new_with_prefix(&data)), "size {size}");
            assert_eq!(sunk.sha512.unwrap().finalize(), Sha512::new_with_prefix(&data).finalize(), "size {size}");
        }
    }

    #[test]
    fn pooled_buffers_come_back_empty_and_full_sized() {
        let mut b = take_buffer();
        b.extend_from_slice(b"left over");
        give_back(b);
        // Another size is not pooled (a grown buffer would break the no-growth reads).
        give_back(Vec::with_capacity(BUFFER * 2));
        for _ in 0..POOL_MAX + 2 {
            let b = take_buffer();
            assert!(b.is_empty(), "a pooled buffer kept {} bytes", b.len());
            assert_eq!(b.capacity(), BUFFER);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_from_a_source_stores_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * BUFFER + 4321).map(|n| (n * 7 + n / 999) as u8).collect();
        let path = dir.path().join("f");
        let mut sink = Sink::start(std::fs::File::create(&path).unwrap(), Some(Sha256::new()), None, true);
        // A source that returns odd-sized pieces, as a socket does.
        let (mut tx, mut rx) = tokio::io::duplex(70_001);
        let feed = data.clone();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in feed.chunks(33_333) {
                tx.write_all(piece).await.unwrap();
            }
        });
        let mut total = 0;
        loop {
            let n = sink.read_from(&mut rx).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        writer.await.unwrap();
        let sunk = sink.finish().await.unwrap();
        assert_eq!(total, data.len());
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert_eq!(hex(sunk.sha256.unwrap()), hex(Sha256::new_with_prefix(&data)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_ends_the_sink_with_the_error_and_never_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"").unwrap();
        for size in [10, 5 * BUFFER] {
            // Read-only: every write fails, in the hasher (one buffer) or the writer thread.
            let file = std::fs::File::open(&path).unwrap();
            let mut sink = Sink::start(file, Some(Sha256::new()), None, true);
            let data = vec![7u8; size];
            let outcome = async {
                let mut source = &data[..];
                while sink.read_from(&mut source).await? > 0 {}
                sink.finish().await.map_err(BlobError::Io)
            };
            let err = tokio::time::timeout(std::time::Duration::from_secs(20), outcome)
                .await
                .expect("the sink hung after a failed write")
                .err()
                .expect("a write to a read-only file succeeded");
            // The cause itself, not a generic "stopped".
            let BlobError::Io(err) = err else { panic!("size {size}: {err}") };
            assert_eq!(err.raw_os_error(), Some(9), "size {size}: {err}");
        }
    }
}
