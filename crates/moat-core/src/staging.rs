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
use std::sync::{Arc, Mutex};

use moat_blob::Piece;
use moat_types::Digest;

/// Blobs with staging state held at once; beyond this, idle ones are forgotten (their staged
/// blocks stay readable, and new blocks start another file).
const MAX_FILES: usize = 1024;
/// Ranges remembered across all files (~50 bytes each): beyond this, blocks are stored on their
/// own, so that a client staging millions of tiny blocks cannot grow the node's memory.
const MAX_RANGES: usize = 1_000_000;

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

/// One blob's staging file, as this node writes it.
struct File {
    name: String,
    /// Reserved ranges (offset → end): staged blocks and writes in flight, never overlapping.
    ranges: BTreeMap<u64, u64>,
    in_flight: usize,
    /// Linked into the store: never written again.
    retired: bool,
    /// Its ranges count towards [`MAX_RANGES`] (until it is forgotten).
    counted: bool,
}

impl File {
    fn new() -> File {
        File { name: uuid::Uuid::new_v4().simple().to_string(), ranges: BTreeMap::new(), in_flight: 0, retired: false, counted: true }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.ranges.range(..end).next_back().is_some_and(|(_, e)| *e > start)
    }
}

/// A reserved range: the write goes to `file` at `offset`; [`Staging::done`] ends it.
pub(crate) struct Ticket {
    state: Arc<Mutex<File>>,
    pub file: String,
    pub offset: u64,
    pub token: String,
}

/// The staging files of the blobs being uploaded to this node.
#[derive(Default)]
pub(crate) struct Staging {
    files: Mutex<HashMap<Key, Arc<Mutex<File>>>>,
    /// Ranges held by counted files.
    ranges: std::sync::atomic::AtomicUsize,
}

fn key(account: &str, container: &str, blob: &str) -> Key {
    (account.to_string(), container.to_string(), blob.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Staging {
    /// Reserves `len` bytes at `offset` of the blob's staging file for a block; `None` when the
    /// range overlaps one reserved already (the block is then stored on its own).
    pub fn begin(&self, (account, container, blob): (&str, &str, &str), offset: u64, len: u64) -> Option<Ticket> {
        let end = offset.checked_add(len)?;
        let mut files = lock(&self.files);
        if files.len() >= MAX_FILES && !files.contains_key(&key(account, container, blob)) {
            // Forget idle files; their blocks stay readable, as recorded.
            files.retain(|_, f| {
                let mut f = lock(f);
                f.in_flight > 0 || {
                    self.uncount(&mut f);
                    false
                }
            });
            if files.len() >= MAX_FILES {
                return None;
            }
        }
        let state = files.entry(key(account, container, blob)).or_insert_with(|| Arc::new(Mutex::new(File::new())));
        if lock(state).retired {
            self.uncount(&mut lock(state));
            *state = Arc::new(Mutex::new(File::new()));
        }
        let state = state.clone();
        let mut f = lock(&state);
        if f.overlaps(offset, end) || self.ranges.load(Relaxed) >= MAX_RANGES {
            return None;
        }
        self.ranges.fetch_add(1, Relaxed);
        f.ranges.insert(offset, end);
        f.in_flight += 1;
        let file = f.name.clone();
        drop(f);
        Some(Ticket { state, file, offset, token: uuid::Uuid::new_v4().simple().to_string() })
    }

    /// Ends a write: with `recorded`, its range stays reserved (a staged block is there);
    /// otherwise it is free again.
    pub fn done(&self, ticket: Ticket, recorded: bool) {
        let mut f = lock(&ticket.state);
        f.in_flight -= 1;
        if !recorded && f.ranges.remove(&ticket.offset).is_some() && f.counted {
            self.ranges.fetch_sub(1, Relaxed);
        }
    }

    /// Claims staging file `file` of the blob for linking into the store: true when no write
    /// into it is in flight and none will start (this node writes it no more). A file this node
    /// is not writing (an older one of the blob's, or one from before a restart) is never
    /// written again anyway.
    pub fn retire(&self, (account, container, blob): (&str, &str, &str), file: &str) -> bool {
        let files = lock(&self.files);
        let Some(state) = files.get(&key(account, container, blob)) else { return true };
        let mut f = lock(state);
        if f.name != file {
            return true;
        }
        if f.in_flight > 0 {
            return false;
        }
        f.retired = true;
        true
    }

    /// After the blob's staged blocks were dropped (committed or deleted): forgets its staging
    /// state and returns whether `files` (those the dropped blocks were in) can be removed —
    /// not while a write into one of them is still in flight (those are left to the sweep).
    pub fn forget(&self, (account, container, blob): (&str, &str, &str), files: &[String]) -> bool {
        let Some(state) = lock(&self.files).remove(&key(account, container, blob)) else { return true };
        let mut f = lock(&state);
        self.uncount(&mut f);
        !(f.in_flight > 0 && files.contains(&f.name))
    }

    /// Stops counting `f`'s ranges (it is being forgotten or replaced).
    fn uncount(&self, f: &mut File) {
        if std::mem::take(&mut f.counted) {
            self.ranges.fetch_sub(f.ranges.len(), Relaxed);
        }
    }

    /// Whether this node is writing staging file `file` (for the sweep).
    pub fn live(&self, file: &str) -> bool {
        lock(&self.files).values().any(|f| {
            let f = lock(f);
            f.name == file && !f.retired
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: (&str, &str, &str) = ("a", "c", "b");

    #[test]
    fn ranges_never_overlap_and_free_up_when_a_write_fails() {
        let s = Staging::default();
        let t1 = s.begin(B, 0, 10).unwrap();
        assert!(s.begin(B, 5, 10).is_none(), "overlaps the first");
        assert!(s.begin(B, 9, 1).is_none(), "last byte of the first");
        let t2 = s.begin(B, 10, 10).unwrap();
        assert_eq!(t1.file, t2.file, "one file per blob");
        assert_ne!(t1.token, t2.token);
        s.done(t2, false);
        let t3 = s.begin(B, 10, 10).expect("a failed write frees its range");
        s.done(t3, true);
        assert!(s.begin(B, 15, 1).is_none(), "a staged block keeps its range");
        assert!(s.begin(("a", "c", "other"), 0, 10).is_some(), "another blob has its own file");
        assert!(s.begin(B, u64::MAX, 2).is_none(), "no range past the end of numbers");
        s.done(t1, true);
    }

    #[test]
    fn a_retired_file_is_never_written_again() {
        let s = Staging::default();
        let t = s.begin(B, 0, 10).unwrap();
        let file = t.file.clone();
        assert!(!s.retire(B, &file), "a write is in flight");
        s.done(t, true);
        assert!(s.live(&file));
        assert!(s.retire(B, &file));
        assert!(!s.live(&file));
        let t = s.begin(B, 0, 10).expect("the blob's next block starts a new file");
        assert_ne!(t.file, file);
        assert!(s.retire(B, &file), "the old file is not being written");
        assert!(!s.forget(B, std::slice::from_ref(&t.file)), "a write into it is in flight");
        s.done(t, true);
        assert!(s.forget(B, &[file]));
    }

    #[test]
    fn ranges_are_bounded_across_files_and_given_back() {
        let s = Staging::default();
        s.ranges.store(MAX_RANGES - 1, Relaxed);
        let t = s.begin(B, 0, 1).expect("the last range there is room for");
        assert!(s.begin(("a", "c", "other"), 0, 1).is_none(), "no room: stored on its own");
        s.done(t, false);
        let t = s.begin(("a", "c", "other"), 0, 1).expect("a failed write gives its range back");
        s.done(t, true);
        assert_eq!(s.ranges.load(Relaxed), MAX_RANGES);
        assert!(s.forget(("a", "c", "other"), &[]));
        assert_eq!(s.ranges.load(Relaxed), MAX_RANGES - 1, "a forgotten file gives its ranges back");
        // A write in flight when its file is forgotten gives nothing back twice.
        let t = s.begin(B, 5, 1).unwrap();
        assert!(s.forget(B, &[]));
        s.done(t, false);
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
