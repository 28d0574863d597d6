//! Blocks written where they will stay. A Put Block whose client says where the block goes in
//! its blob (`x-moat-block-offset`, as moat's CLI sends) is written, on the local disk, at that
//! offset of one staging file per blob, unhashed; the blob's sha256 (computed as the blocks
//! arrive, see prehash.rs) is then the only hash its bytes need, and when the committed list is
//! exactly those blocks in order, the commit links the file into the content-addressed store:
//! no byte is hashed twice, copied or rewritten. Other blocks (no hint, an object store, a range
//! that overlaps one already staged) are stored content-addressed as before, and a list that
//! mixes both, or names blocks in another order, is written out whole at its commit.
//!
//! Safety rests on two rules, both kept here, in memory, by the one node that owns the local
//! disk: writes to one staging file never overlap (a block's range is reserved before its first
//! byte is written, and stays reserved while a staged block may be there), and a file is written
//! only through the state that created it — once linked into the store (or forgotten by a
//! restart or for room), it is never written again, and later blocks of the blob start a new
//! file. So the bytes of a recorded block never change under it, and a linked file never
//! changes under its digest.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use moat_blob::Piece;
use moat_types::Digest;

/// Blobs with staging state held at once; beyond this, idle ones are forgotten (their staged
/// blocks stay readable, and new blocks start another file).
const MAX_FILES: usize = 1024;
/// Ranges remembered across all files (~50 bytes each): beyond this, blocks are stored on their
/// own, so that clients staging millions of tiny blocks cannot grow the node's memory.
const MAX_RANGES: usize = 1_000_000;
/// Ranges one file holds at most (a block list names at most this many blocks), so that one
/// blob cannot take the whole of [`MAX_RANGES`].
const MAX_RANGES_PER_FILE: usize = crate::blobs::MAX_BLOCKS;
/// Blocks written in place end within this many bytes (a staging file is sparse until filled;
/// ext4 files end at 16 TiB): a block placed further is stored on its own.
const MAX_STAGED_END: u64 = 8 << 40;

type Key = (String, String, String);

/// Where a staged block's bytes are, as recorded in its block row's `digest` column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlockAt {
    /// Content-addressed, under its sha256.
    Stored(Digest),
    /// At `offset` of staging file `file`, written by the write `token` names (so that two
    /// writes at one place are never taken for each other).
    Staged { file: String, offset: u64, token: String },
}

impl BlockAt {
    pub fn parse(s: &str) -> Option<BlockAt> {
        if let Some(rest) = s.strip_prefix("staged:") {
            let mut it = rest.splitn(3, ':');
            let (file, offset, token) = (it.next()?, it.next()?.parse().ok()?, it.next()?);
            return Some(BlockAt::Staged { file: file.into(), offset, token: token.into() });
        }
        Digest::parse(s).ok().map(BlockAt::Stored)
    }

    pub fn piece(&self) -> Piece {
        match self {
            BlockAt::Stored(d) => Piece::Stored(*d),
            BlockAt::Staged { file, offset, .. } => Piece::Staged { file: file.clone(), offset: *offset },
        }
    }
}

impl fmt::Display for BlockAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockAt::Stored(d) => write!(f, "{d}"),
            BlockAt::Staged { file, offset, token } => write!(f, "staged:{file}:{offset}:{token}"),
        }
    }
}

/// One staging file, as this node writes it. It lives while it is a blob's current file or a
/// write into it is in flight (each [`Reservation`] holds it).
struct File {
    name: String,
    /// Reserved ranges (offset → end): staged blocks and writes in flight, never overlapping.
    ranges: BTreeMap<u64, u64>,
    in_flight: usize,
    /// Linked into the store, or about to be: never written again.
    retired: bool,
    /// Its ranges count towards [`MAX_RANGES`] (until it is forgotten).
    counted: bool,
    touched: Instant,
}

impl File {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.ranges.range(..end).next_back().is_some_and(|(_, e)| *e > start)
    }
}

/// A reserved range of a staging file. It ends when its last holder lets go: the request that
/// writes the block, and the thread that writes its bytes (which may outlive a request that
/// failed or was cancelled, with buffers still queued). Only then is the range free again,
/// unless the block was recorded.
pub(crate) struct Reservation {
    state: Arc<Mutex<File>>,
    ranges: Arc<AtomicUsize>,
    pub file: String,
    pub offset: u64,
    pub token: String,
    recorded: AtomicBool,
}

impl Reservation {
    /// The block's row is recorded: its range stays reserved after the write ends.
    pub fn recorded(&self) {
        self.recorded.store(true, Relaxed);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut f = lock(&self.state);
        f.in_flight -= 1;
        if !self.recorded.load(Relaxed) && f.ranges.remove(&self.offset).is_some() && f.counted {
            self.ranges.fetch_sub(1, Relaxed);
        }
    }
}

/// The staging files of the blobs being uploaded to this node.
#[derive(Default)]
pub(crate) struct Staging {
    /// Each blob's current file: where its next blocks go.
    blobs: Mutex<HashMap<Key, Arc<Mutex<File>>>>,
    /// Every file state alive, current or forgotten with writes still in flight, by name.
    names: Mutex<HashMap<String, Weak<Mutex<File>>>>,
    /// Ranges held by counted files.
    ranges: Arc<AtomicUsize>,
}

fn key(account: &str, container: &str, blob: &str) -> Key {
    (account.to_string(), container.to_string(), blob.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Staging {
    fn new_file(&self) -> Arc<Mutex<File>> {
        let f = File {
            name: uuid::Uuid::new_v4().simple().to_string(),
            ranges: BTreeMap::new(),
            in_flight: 0,
            retired: false,
            counted: true,
            touched: Instant::now(),
        };
        let name = f.name.clone();
        let state = Arc::new(Mutex::new(f));
        let mut names = lock(&self.names);
        if names.len() >= 2 * MAX_FILES {
            names.retain(|_, w| w.strong_count() > 0);
        }
        names.insert(name, Arc::downgrade(&state));
        state
    }

    /// The state of file `name`, if alive.
    fn named(&self, name: &str) -> Option<Arc<Mutex<File>>> {
        lock(&self.names).get(name).and_then(Weak::upgrade)
    }

    /// Reserves `len` bytes at `offset` of the blob's staging file for a block; `None` when the
    /// range overlaps one reserved already, or past the bounds (the block is then stored on its
    /// own).
    pub fn begin(&self, (account, container, blob): (&str, &str, &str), offset: u64, len: u64) -> Option<Arc<Reservation>> {
        let end = offset.checked_add(len).filter(|e| *e > offset && *e <= MAX_STAGED_END)?;
        let mut blobs = lock(&self.blobs);
        if blobs.len() >= MAX_FILES && !blobs.contains_key(&key(account, container, blob)) {
            // Forget idle files; their blocks stay readable, as recorded.
            blobs.retain(|_, f| {
                let mut f = lock(f);
                f.in_flight > 0 || {
                    self.uncount(&mut f);
                    false
                }
            });
            if blobs.len() >= MAX_FILES {
                return None;
            }
        }
        let entry = blobs.entry(key(account, container, blob)).or_insert_with(|| self.new_file());
        let mut state = entry.clone();
        let mut f = lock(&state);
        // Checked under the lock that `retire` sets it under: a retired file takes no more writes.
        if f.retired {
            self.uncount(&mut f);
            drop(f);
            state = self.new_file();
            *entry = state.clone();
            f = lock(&state);
        }
        if f.overlaps(offset, end) || f.ranges.len() >= MAX_RANGES_PER_FILE || self.ranges.load(Relaxed) >= MAX_RANGES {
            return None;
        }
        self.ranges.fetch_add(1, Relaxed);
        f.ranges.insert(offset, end);
        f.in_flight += 1;
        f.touched = Instant::now();
        let file = f.name.clone();
        drop(f);
        Some(Arc::new(Reservation {
            state,
            ranges: self.ranges.clone(),
            file,
            offset,
            token: uuid::Uuid::new_v4().simple().to_string(),
            recorded: AtomicBool::new(false),
        }))
    }

    /// Claims staging file `file` for linking into the store: true when no write into it is in
    /// flight (whichever blob state it belongs to), and none will start.
    pub fn retire(&self, file: &str) -> bool {
        // A file with no state alive is no blob's current file and has no write in flight.
        let Some(state) = self.named(file) else { return true };
        let mut f = lock(&state);
        if f.in_flight > 0 {
            return false;
        }
        f.retired = true;
        true
    }

    /// Whether a write into staging file `file` is in flight.
    pub fn writing(&self, file: &str) -> bool {
        self.named(file).is_some_and(|f| lock(&f).in_flight > 0)
    }

    /// Forgets the blob's current file (its staged blocks were dropped: committed, deleted,
    /// replaced by a Put Blob): the blob's next block starts another. Writes in flight into it
    /// go on; [`Staging::writing`] still sees them.
    pub fn forget(&self, (account, container, blob): (&str, &str, &str)) {
        let state = lock(&self.blobs).remove(&key(account, container, blob));
        if let Some(state) = state {
            self.uncount(&mut lock(&state));
        }
    }

    /// Forgets the files no block was staged into for `idle` (their blocks expired, or were
    /// abandoned); returns how many.
    pub fn forget_idle(&self, idle: std::time::Duration) -> usize {
        let mut blobs = lock(&self.blobs);
        let before = blobs.len();
        blobs.retain(|_, f| {
            let mut f = lock(f);
            f.in_flight > 0 || f.touched.elapsed() < idle || {
                self.uncount(&mut f);
                false
            }
        });
        before - blobs.len()
    }

    /// Stops counting `f`'s ranges (it is being forgotten or replaced).
    fn uncount(&self, f: &mut File) {
        if std::mem::take(&mut f.counted) {
            self.ranges.fetch_sub(f.ranges.len(), Relaxed);
        }
    }

    /// Whether staging file `file` may still be written: a blob's current file not yet retired,
    /// or one with writes in flight (for the sweep).
    pub fn live(&self, file: &str) -> bool {
        self.named(file).is_some_and(|f| {
            let f = lock(&f);
            !f.retired || f.in_flight > 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: (&str, &str, &str) = ("a", "c", "b");

    /// A request's end: the block recorded or not.
    fn end(r: Arc<Reservation>, recorded: bool) {
        if recorded {
            r.recorded();
        }
    }

    #[test]
    fn ranges_never_overlap_and_free_up_when_a_write_fails() {
        let s = Staging::default();
        let t1 = s.begin(B, 0, 10).unwrap();
        assert!(s.begin(B, 5, 10).is_none(), "overlaps the first");
        assert!(s.begin(B, 9, 1).is_none(), "last byte of the first");
        let t2 = s.begin(B, 10, 10).unwrap();
        assert_eq!(t1.file, t2.file, "one file per blob");
        assert_ne!(t1.token, t2.token);
        end(t2, false);
        let t3 = s.begin(B, 10, 10).expect("a failed write frees its range");
        end(t3, true);
        assert!(s.begin(B, 15, 1).is_none(), "a staged block keeps its range");
        assert!(s.begin(("a", "c", "other"), 0, 10).is_some(), "another blob has its own file");
        assert!(s.begin(B, u64::MAX, 2).is_none(), "no range past the end of numbers");
        assert!(s.begin(B, MAX_STAGED_END, 1).is_none(), "nor past a file's largest size");
        assert!(s.begin(B, 0, 0).is_none(), "an empty block reserves nothing");
        end(t1, true);
    }

    /// The writer thread of a failed request may still hold queued buffers: the range stays
    /// reserved, and the file unlinkable, until it lets go too.
    #[test]
    fn a_range_is_free_only_when_its_writer_lets_go_too() {
        let s = Staging::default();
        let request = s.begin(B, 0, 10).unwrap();
        let writer = request.clone();
        let file = request.file.clone();
        end(request, false);
        assert!(s.begin(B, 0, 10).is_none(), "the writer still writes there");
        assert!(s.writing(&file) && !s.retire(&file));
        drop(writer);
        assert!(!s.writing(&file));
        end(s.begin(B, 0, 10).expect("free once both let go"), true);
    }

    #[test]
    fn a_retired_file_is_never_written_again() {
        let s = Staging::default();
        let t = s.begin(B, 0, 10).unwrap();
        let file = t.file.clone();
        assert!(!s.retire(&file), "a write is in flight");
        end(t, true);
        assert!(s.live(&file));
        assert!(s.retire(&file));
        assert!(!s.live(&file));
        let t = s.begin(B, 0, 10).expect("the blob's next block starts a new file");
        assert_ne!(t.file, file);
        assert!(s.retire(&file), "the old file is not being written");
        end(t, true);
    }

    /// Forgetting a blob's file (its blocks committed or deleted) while a write into it is still
    /// in flight: that write still forbids linking the file, and keeps it live for the sweep.
    #[test]
    fn a_forgotten_file_with_a_write_in_flight_is_still_being_written() {
        let s = Staging::default();
        let done = s.begin(B, 0, 10).unwrap();
        end(done, true);
        let late = s.begin(B, 10, 10).unwrap();
        let file = late.file.clone();
        s.forget(B);
        assert!(s.writing(&file) && s.live(&file) && !s.retire(&file));
        let next = s.begin(B, 10, 10).expect("the blob's next block goes to a new file");
        assert_ne!(next.file, file);
        end(late, true);
        assert!(!s.writing(&file) && !s.live(&file) && s.retire(&file), "no state is left for it");
        end(next, true);
    }

    #[test]
    fn idle_files_are_forgotten() {
        let s = Staging::default();
        end(s.begin(B, 0, 10).unwrap(), true);
        let busy = s.begin(("a", "c", "busy"), 0, 10).unwrap();
        assert_eq!(s.forget_idle(std::time::Duration::from_secs(3600)), 0, "touched a moment ago");
        assert_eq!(s.forget_idle(std::time::Duration::ZERO), 1, "the idle one, not the one in flight");
        assert_eq!(s.ranges.load(Relaxed), 1);
        end(busy, true);
    }

    #[test]
    fn ranges_are_bounded_across_files_and_given_back() {
        let s = Staging::default();
        s.ranges.store(MAX_RANGES - 1, Relaxed);
        let t = s.begin(B, 0, 1).expect("the last range there is room for");
        assert!(s.begin(("a", "c", "other"), 0, 1).is_none(), "no room: stored on its own");
        end(t, false);
        let t = s.begin(("a", "c", "other"), 0, 1).expect("a failed write gives its range back");
        end(t, true);
        assert_eq!(s.ranges.load(Relaxed), MAX_RANGES);
        s.forget(("a", "c", "other"));
        assert_eq!(s.ranges.load(Relaxed), MAX_RANGES - 1, "a forgotten file gives its ranges back");
        // A write in flight when its file is forgotten gives nothing back twice.
        let t = s.begin(B, 5, 1).unwrap();
        s.forget(B);
        end(t, false);
        assert_eq!(s.ranges.load(Relaxed), MAX_RANGES - 1);
    }

    #[test]
    fn block_places_round_trip_through_their_text() {
        let d = Digest::from_bytes([3; 32]);
        for at in [BlockAt::Stored(d), BlockAt::Staged { file: "f00".into(), offset: 8 << 20, token: "00ab".into() }] {
            assert_eq!(BlockAt::parse(&at.to_string()), Some(at));
        }
        assert_eq!(BlockAt::parse("staged:f:x:t"), None);
        assert_eq!(BlockAt::parse("nonsense"), None);
    }
}
