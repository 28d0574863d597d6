//! A block blob's sha256, computed while its blocks arrive rather than when they are committed.
//!
//! Put Block List must record the sha256 of the whole blob, the concatenation of its blocks.
//! Hashing it at commit costs ~0.5 s per GiB after the last block, while the client waits (so
//! ~25 s for a 50 GiB model). A client that knows where each block goes can say so: moat's CLI
//! sends `x-moat-block-offset` (the block's byte offset in the blob) with every Put Block, and
//! this node then hashes the blocks in offset order as they arrive: a background task continues
//! a running hash over each block, as far as the blocks are contiguous, from the bytes its Put
//! Block kept in memory (see [`Prehash::wants`]) or else read from where the block is stored.
//!
//! The hint is only a hint, so it is checked: the commit uses the running hash only when the
//! blocks it covers, by ID *and* digest, are exactly the first blocks of the committed list,
//! and hashes the rest of the list from there; otherwise (a list in another order, a block
//! staged again with other bytes, blocks that went to another node) it hashes the whole list
//! as before. Content-addressed bytes never change under a digest, so a running hash over
//! digests equals the hash of the blob they make up. Without the hint (the Azure SDK), nothing
//! is hashed ahead: the order in which blocks arrive is not the list's order often enough to
//! guess from it (seen: 4 parallel blocks from the CLI left the guess wrong within 68 blocks of
//! 128 every time, and a wrong guess costs a second hash).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Sha256;

use crate::staging::BlockAt;
use moat_blob::Kept;

/// Uploads followed at once; beyond this, the least recently touched is dropped (its commit
/// then hashes everything, as without this module).
const MAX_CHAINS: usize = 64;
/// Blocks waiting for an earlier one, per upload; beyond this, later ones are not followed.
const MAX_WAITING: usize = 4096;
/// Blocks followed per upload: a block list holds at most this many (Azure's limit).
const MAX_FOLLOWED: usize = crate::blobs::MAX_BLOCKS;
/// Smaller blocks are not followed (the commit hashes them): a parallel uploader's blocks are
/// MiBs (the CLI's 4, the SDK's 4 or 8), and with this floor, the memory the chains can hold
/// (~100 bytes a block) is bounded by what was uploaded (at most 64 × 50,000 blocks of at
/// least 256 KiB before the caps above apply).
const MIN_BLOCK: u64 = 256 * 1024;
/// An upload with no Put Block for this long is dropped when room is needed.
const IDLE: Duration = Duration::from_secs(3600);
/// The bytes kept for an upload's waiting blocks are let go once its running hash has not moved
/// for this long (a client that stopped, or a block that never comes), so that they do not
/// hold the node's budget of kept bytes (moat_blob::Kept); those blocks are then read back
/// from their place.
const KEEP_IDLE: Duration = Duration::from_secs(30);
/// Blocks are kept only this close after the running hash: one further ahead (an upload resumed
/// after a restart, whose hash waits for a block that was staged before it) would hold its
/// room until its turn, which may never come.
const KEEP_WINDOW: u64 = 32 * 1024 * 1024;

type Key = (String, String, String);

/// A staged block: its ID, where its bytes are, and its size.
type Staged = (String, BlockAt, u64);

/// The blocks of one blob being uploaded, as this node saw them.
#[derive(Default)]
struct Chain {
    /// Staged blocks not hashed yet, by the offset their client gave, with their bytes when
    /// the Put Block kept them in memory.
    waiting: BTreeMap<u64, (Staged, Option<Kept>)>,
    /// The blocks the running hash covers, in order.
    hashed: Vec<(String, BlockAt)>,
    hasher: Sha256,
    /// Bytes the running hash covers: the offset of the next block to hash.
    size: u64,
    /// A task is hashing (it has taken `hasher`).
    busy: bool,
    /// A block's bytes were not as staged: the chain is given up.
    broken: bool,
    /// The commit took the chain: the task stops at the first block not kept in memory.
    closed: bool,
    touched: Option<Instant>,
    /// When the running hash last moved (or the chain began).
    advanced: Option<Instant>,
    /// Some waiting block has its bytes kept.
    keeps: bool,
}

impl Chain {
    /// Whether a block at `offset` is worth keeping for this chain's hash.
    fn keeps_at(&self, offset: u64) -> bool {
        !self.broken && !self.closed && offset >= self.size && offset - self.size < KEEP_WINDOW
    }

    /// Lets go of the bytes kept for waiting blocks.
    fn drop_kept(&mut self) {
        if std::mem::take(&mut self.keeps) {
            self.waiting.values_mut().for_each(|(_, kept)| *kept = None);
        }
    }
}

/// What the running hash covers when a commit takes it.
pub(crate) struct Prefix {
    pub blocks: Vec<(String, BlockAt)>,
    pub hasher: Sha256,
    pub size: u64,
}

/// The chains of the uploads in progress on this node.
#[derive(Default)]
pub(crate) struct Prehash {
    chains: Mutex<HashMap<Key, Arc<Chained>>>,
}

struct Chained {
    chain: Mutex<Chain>,
    idle: tokio::sync::Notify,
}

fn key(account: &str, container: &str, blob: &str) -> Key {
    (account.to_string(), container.to_string(), blob.to_string())
}

impl Prehash {
    /// Whether a Put Block of `len` bytes at `offset` of the blob should keep its bytes for the
    /// running hash: its block will be hashed soon (it is within [`KEEP_WINDOW`] of where the
    /// hash is, and the upload is followed). Lets go of the bytes kept for uploads whose hash
    /// has not moved for [`KEEP_IDLE`] first, so that their room is there for this one.
    pub fn wants(&self, (account, container, blob): (&str, &str, &str), offset: u64, len: u64) -> bool {
        let now = Instant::now();
        let chains = self.chains.lock().unwrap_or_else(|e| e.into_inner());
        for c in chains.values() {
            let mut c = c.chain.lock().unwrap_or_else(|e| e.into_inner());
            if c.keeps && c.advanced.is_some_and(|t| now.duration_since(t) >= KEEP_IDLE) {
                c.drop_kept();
            }
        }
        if len < MIN_BLOCK {
            return false;
        }
        match chains.get(&key(account, container, blob)) {
            // A new upload's hash starts at 0.
            None => offset < KEEP_WINDOW,
            Some(c) => c.chain.lock().unwrap_or_else(|e| e.into_inner()).keeps_at(offset),
        }
    }

    /// A Put Block stored block `id` (at `at`, `len` bytes) at `offset` in the blob, as its
    /// client says: the hash goes on as far as the blocks are contiguous. `kept` is the
    /// block's bytes, when its Put Block kept them: they are hashed from memory, and the
    /// block's place is read only when they are not there.
    pub fn staged(
        &self,
        (account, container, blob): (&str, &str, &str),
        offset: u64,
        block: Staged,
        kept: Option<Kept>,
        blobs: &moat_blob::BlobStore,
    ) {
        let now = Instant::now();
        let chained = {
            let mut chains = self.chains.lock().unwrap_or_else(|e| e.into_inner());
            if chains.len() >= MAX_CHAINS && !chains.contains_key(&key(account, container, blob)) {
                let touched = |c: &Arc<Chained>| c.chain.lock().map(|c| c.touched).unwrap_or(None);
                chains.retain(|_, c| touched(c).is_some_and(|t| now.duration_since(t) < IDLE));
                if chains.len() >= MAX_CHAINS
                    && let Some(oldest) = chains.iter().min_by_key(|(_, c)| touched(c)).map(|(k, _)| k.clone())
                {
                    chains.remove(&oldest);
                }
            }
            chains
                .entry(key(account, container, blob))
                .or_insert_with(|| Arc::new(Chained { chain: Mutex::new(Chain::default()), idle: tokio::sync::Notify::new() }))
                .clone()
        };
        let run = {
            let mut c = chained.chain.lock().unwrap_or_else(|e| e.into_inner());
            c.touched = Some(now);
            // A block before the hashed part (staged again) cannot be followed; the commit
            // finds out whether the list still starts with what was hashed.
            if offset < c.size
                || block.2 < MIN_BLOCK
                || (c.waiting.len() >= MAX_WAITING && !c.waiting.contains_key(&offset))
                || c.hashed.len() + c.waiting.len() >= MAX_FOLLOWED
            {
                return;
            }
            c.advanced.get_or_insert(now);
            // Only where wants() would have said so now (the chain may have broken meanwhile).
            let kept = kept.filter(|_| c.keeps_at(offset));
            c.keeps |= kept.is_some();
            c.waiting.insert(offset, (block, kept));
            let run = !c.busy && !c.broken && !c.closed && c.waiting.contains_key(&c.size);
            c.busy |= run;
            run
        };
        if run {
            let blobs = blobs.clone();
            tokio::spawn(async move { hash_ahead(chained, blobs).await });
        }
    }

    /// The commit of the blob takes its chain: waits for the block being hashed, if any, and
    /// returns what the running hash covers (`None` when there is nothing usable).
    pub async fn take(&self, account: &str, container: &str, blob: &str) -> Option<Prefix> {
        let chained = self.chains.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(account, container, blob))?;
        loop {
            let idle = chained.idle.notified();
            {
                let mut c = chained.chain.lock().unwrap_or_else(|e| e.into_inner());
                c.closed = true;
                if !c.busy {
                    if c.broken || c.hashed.is_empty() {
                        return None;
                    }
                    return Some(Prefix { blocks: std::mem::take(&mut c.hashed), hasher: std::mem::take(&mut c.hasher), size: c.size });
                }
            }
            idle.await;
        }
    }

    /// Uploads followed (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.chains.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Waits until the blob's running hash has caught up with its contiguous blocks (for
    /// tests: a commit does not wait for that, it hashes what is left itself).
    #[cfg(test)]
    async fn caught_up(&self, account: &str, container: &str, blob: &str) {
        let Some(chained) = self.chains.lock().unwrap().get(&key(account, container, blob)).cloned() else { return };
        loop {
            let idle = chained.idle.notified();
            if !chained.chain.lock().unwrap().busy {
                return;
            }
            idle.await;
        }
    }
}

/// Hashes waiting blocks in offset order while the next one is there (and the commit has not
/// taken the chain).
async fn hash_ahead(chained: Arc<Chained>, blobs: moat_blob::BlobStore) {
    loop {
        let next = {
            let mut c = chained.chain.lock().unwrap_or_else(|e| e.into_inner());
            let at = c.size;
            // Once the commit took the chain, only blocks kept in memory are still hashed here
            // (~2 ms for 4 MiB, at most the budget's 24 MiB): the commit waits for them rather
            // than read them from their place, around the page cache, from the disk.
            let usable = !c.broken && (!c.closed || c.waiting.get(&at).is_some_and(|(_, kept)| kept.is_some()));
            let next = if usable { c.waiting.remove(&at) } else { None };
            // Decided under the same lock a new block is added under: a block added after this
            // starts a task of its own.
            c.busy = next.is_some();
            next.map(|block| (block, std::mem::take(&mut c.hasher)))
        };
        let Some((((id, at, len), kept), hasher)) = next else {
            chained.idle.notify_waiters();
            return;
        };
        let hashed = match kept.filter(|k| k.len() == len) {
            // 8 MiB take ~4 ms to hash: off the async workers.
            Some(kept) => tokio::task::spawn_blocking(move || {
                let mut h = hasher;
                kept.chunks().for_each(|c| sha2::Digest::update(&mut h, c));
                (h, kept.len())
            })
            .await
            .map_err(|e| moat_blob::BlobError::Io(std::io::Error::other(e))),
            None => blobs.hash_pieces(&[(at.piece(), len)], hasher).await,
        };
        let mut c = chained.chain.lock().unwrap_or_else(|e| e.into_inner());
        match hashed {
            Ok((h, n)) if n == len => {
                c.hasher = h;
                c.size += n;
                c.advanced = Some(Instant::now());
                c.hashed.push((id, at));
                // Blocks the hash has passed (offsets inside this one) can never be used.
                let passed: Vec<u64> = c.waiting.range(..c.size).map(|(o, _)| *o).collect();
                for o in passed {
                    c.waiting.remove(&o);
                }
            }
            Ok((_, n)) => {
                tracing::warn!(block = %at, staged = len, read = n, "a staged block reads back at another size; the commit will hash the blob whole");
                c.broken = true;
                c.drop_kept();
            }
            Err(e) => {
                tracing::warn!(error = %e, "hashing a staged block ahead of its commit failed; the commit will hash the blob whole");
                c.broken = true;
                c.drop_kept();
            }
        }
    }
}

/// How much of the committed list (block `ids` and where their bytes are, in order) `prefix`
/// covers: its length when its blocks are exactly the list's first ones, by ID and place.
pub(crate) fn covered(prefix: &Prefix, ids: &[String], places: &[BlockAt]) -> Option<usize> {
    let n = prefix.blocks.len();
    let listed = ids.iter().zip(places);
    (n <= ids.len().min(places.len()) && prefix.blocks.iter().zip(listed).all(|((id, d), (i, e))| id == i && d == e)).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_types::Digest;
    use sha2::Digest as _;

    async fn store() -> (tempfile::TempDir, moat_blob::BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = moat_blob::BlobStore::open_with(dir.path(), None, &[]).await.unwrap();
        (dir, blobs)
    }

    async fn put(blobs: &moat_blob::BlobStore, bytes: &[u8]) -> BlockAt {
        BlockAt::Stored(blobs.put(bytes, None, u64::MAX).await.unwrap().digest)
    }

    /// Writes `bytes` at `offset` of staging file `file`, as a Put Block with a place does.
    async fn stage(blobs: &moat_blob::BlobStore, file: &str, offset: u64, bytes: &[u8]) -> BlockAt {
        stage_kept(blobs, file, offset, bytes).await.0
    }

    /// [`stage`], with the bytes the write kept in memory.
    async fn stage_kept(blobs: &moat_blob::BlobStore, file: &str, offset: u64, bytes: &[u8]) -> (BlockAt, Kept) {
        let (n, kept) = blobs.stage_at(file, offset, bytes, bytes.len() as u64, Box::new(()), true).await.unwrap();
        assert_eq!(n, bytes.len() as u64);
        let kept = kept.expect("the bytes are kept");
        assert_eq!(kept.chunks().collect::<Vec<_>>().concat(), bytes);
        (BlockAt::Staged { file: file.into(), offset, token: format!("t{offset}") }, kept)
    }

    const B: (&str, &str, &str) = ("a", "c", "b");

    /// Waiting blocks of blob `blob` (account "a", container "c") that hold their bytes.
    fn kept_waiting(p: &Prehash, blob: &str) -> usize {
        let chains = p.chains.lock().unwrap();
        let c = chains[&key("a", "c", blob)].chain.lock().unwrap();
        c.waiting.values().filter(|(_, k)| k.is_some()).count()
    }

    /// Blocks arriving out of order hash in offset order; a gap stops the hash until filled.
    #[tokio::test]
    async fn hashes_in_offset_order_as_far_as_blocks_are_contiguous() {
        let (_dir, blobs) = store().await;
        let p = Prehash::default();
        let data: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; MIN_BLOCK as usize + i as usize]).collect();
        let offsets: Vec<u64> = data.iter().scan(0u64, |o, d| Some(std::mem::replace(o, *o + d.len() as u64))).collect();
        // Arrival: 3, 1, 0, 4 — block 2 is missing, so 3 and 4 wait.
        for i in [3usize, 1, 0, 4] {
            let d = put(&blobs, &data[i]).await;
            p.staged(B, offsets[i], (format!("id{i}"), d, data[i].len() as u64), None, &blobs);
        }
        p.caught_up("a", "c", "b").await;
        let ids = |pre: &Prefix| pre.blocks.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
        let prefix = p.take("a", "c", "b").await.expect("a running hash");
        assert_eq!(ids(&prefix), ["id0", "id1"]);
        assert_eq!(prefix.size, offsets[2]);
        assert_eq!(prefix.hasher.finalize().as_slice(), sha2::Sha256::digest([&data[0][..], &data[1][..]].concat()).as_slice());
        assert_eq!(p.len(), 0, "the commit took the chain");

        // The same, with the gap filled, the blocks written in place: everything is hashed ahead,
        // from the bytes kept in memory or, for blocks without them, read from their place.
        for i in [3usize, 1, 0, 4, 2] {
            let (d, kept) = stage_kept(&blobs, "f1", offsets[i], &data[i]).await;
            p.staged(B, offsets[i], (format!("id{i}"), d, data[i].len() as u64), (i % 2 == 0).then_some(kept), &blobs);
        }
        p.caught_up("a", "c", "b").await;
        let prefix = p.take("a", "c", "b").await.unwrap();
        assert_eq!(ids(&prefix), ["id0", "id1", "id2", "id3", "id4"]);
        assert_eq!(prefix.hasher.finalize().as_slice(), sha2::Sha256::digest(data.concat()).as_slice());
    }

    /// A block whose bytes were kept is hashed from them, not read back (its place is not
    /// read at all: bytes changed there behind moat's back do not count); kept bytes of
    /// another length are not used.
    #[tokio::test]
    async fn kept_bytes_are_hashed_instead_of_the_staged_place() {
        let (dir, blobs) = store().await;
        let p = Prehash::default();
        let n = MIN_BLOCK as usize;
        let (a, b) = (vec![b'a'; n], vec![b'b'; n]);
        let (at_a, kept_a) = stage_kept(&blobs, "f", 0, &a).await;
        let (at_b, _) = stage_kept(&blobs, "f", n as u64, &b).await;
        let (_, short) = stage_kept(&blobs, "g", 0, &b[..10]).await;
        let path = dir.path().join("staging").join("f");
        let mut on_disk = std::fs::read(&path).unwrap();
        on_disk[0] = b'X';
        on_disk[n] = b'Y';
        std::fs::write(&path, &on_disk).unwrap();
        p.staged(B, 0, ("a".into(), at_a, n as u64), Some(kept_a), &blobs);
        p.staged(B, n as u64, ("b".into(), at_b, n as u64), Some(short), &blobs);
        p.caught_up("a", "c", "b").await;
        let prefix = p.take("a", "c", "b").await.unwrap();
        let expected = [&a[..], &on_disk[n..]].concat();
        assert_eq!(prefix.hasher.finalize().as_slice(), sha2::Sha256::digest(&expected).as_slice());
    }

    /// The bytes kept for blocks waiting after a gap are let go once their upload's hash has not
    /// moved for a while, before the next Put Block of any upload; an active upload's stay.
    #[tokio::test]
    async fn kept_bytes_of_an_idle_upload_are_let_go() {
        let (_dir, blobs) = store().await;
        let p = Prehash::default();
        let n = MIN_BLOCK as usize;
        let data = vec![b'x'; n];
        // Both uploads wait for their block 0.
        for (blob, file) in [("idle", "f1"), ("busy", "f2")] {
            let (at, kept) = stage_kept(&blobs, file, n as u64, &data).await;
            p.staged(("a", "c", blob), n as u64, ("id1".into(), at, n as u64), Some(kept), &blobs);
        }
        assert_eq!((kept_waiting(&p, "idle"), kept_waiting(&p, "busy")), (1, 1));
        {
            let chains = p.chains.lock().unwrap();
            let Some(long_ago) = Instant::now().checked_sub(KEEP_IDLE) else { return };
            chains[&key("a", "c", "idle")].chain.lock().unwrap().advanced = Some(long_ago);
        }
        assert!(p.wants(("a", "c", "busy"), 2 * n as u64, n as u64));
        let (at, kept) = stage_kept(&blobs, "f2", 2 * n as u64, &data).await;
        p.staged(("a", "c", "busy"), 2 * n as u64, ("id2".into(), at, n as u64), Some(kept), &blobs);
        assert_eq!((kept_waiting(&p, "idle"), kept_waiting(&p, "busy")), (0, 2));
    }

    /// Blocks are kept only close after where the hash is, while the upload is followed.
    #[tokio::test]
    async fn only_blocks_hashed_soon_are_kept() {
        let (_dir, blobs) = store().await;
        let p = Prehash::default();
        let n = MIN_BLOCK;
        // A new upload: near its start only (one resumed after a restart starts far on).
        assert!(p.wants(B, 0, n) && p.wants(B, KEEP_WINDOW - 1, n));
        assert!(!p.wants(B, KEEP_WINDOW, n), "too far ahead");
        assert!(!p.wants(B, 0, n - 1), "too small to be followed");
        let (at, kept) = stage_kept(&blobs, "f", n, &vec![1u8; n as usize]).await;
        p.staged(B, n, ("id1".into(), at, n), Some(kept), &blobs);
        assert!(p.wants(B, 0, n) && p.wants(B, 2 * n, n));
        assert!(!p.wants(B, KEEP_WINDOW + 1, n));
        // A block kept where it is not wanted is not held: far ahead, or on a broken chain.
        let (at, kept) = stage_kept(&blobs, "f", KEEP_WINDOW, &vec![2u8; n as usize]).await;
        p.staged(B, KEEP_WINDOW, ("far".into(), at, n), Some(kept), &blobs);
        assert_eq!(kept_waiting(&p, "b"), 1, "only the near block is held");
        p.chains.lock().unwrap()[&key("a", "c", "b")].chain.lock().unwrap().broken = true;
        assert!(!p.wants(B, 0, n), "a broken chain keeps nothing");
    }

    /// A commit that comes while kept blocks still wait for the hash gets them hashed too: the
    /// task finishes them from memory instead of leaving them to be read from the disk.
    #[tokio::test]
    async fn a_commit_waits_for_the_kept_blocks_rather_than_read_them_back() {
        let (_dir, blobs) = store().await;
        let p = Prehash::default();
        let n = MIN_BLOCK as usize;
        let mut staged = Vec::new();
        for i in 0..3u8 {
            staged.push(stage_kept(&blobs, "f", (i as usize * n) as u64, &vec![i; n]).await);
        }
        // No await between the Put Blocks' records and the commit: the task starts after both.
        for (i, (at, kept)) in staged.into_iter().enumerate() {
            p.staged(B, (i * n) as u64, (format!("id{i}"), at, n as u64), Some(kept), &blobs);
        }
        let prefix = p.take("a", "c", "b").await.expect("the kept blocks are hashed");
        assert_eq!(prefix.blocks.len(), 3);
        let all: Vec<u8> = (0..3u8).flat_map(|i| vec![i; n]).collect();
        assert_eq!(prefix.hasher.finalize().as_slice(), sha2::Sha256::digest(&all).as_slice());
    }

    /// The running hash is used only for the list's exact first blocks, by ID and place.
    #[tokio::test]
    async fn a_prefix_counts_only_when_ids_and_digests_match_the_list() {
        let (_dir, blobs) = store().await;
        let p = Prehash::default();
        let n = MIN_BLOCK as usize;
        let (a, b) = (put(&blobs, &vec![b'a'; n]).await, put(&blobs, &vec![b'b'; n]).await);
        let c = stage(&blobs, "f", 2 * n as u64, &vec![b'c'; n]).await;
        p.staged(B, 0, ("x".into(), a.clone(), n as u64), None, &blobs);
        p.staged(B, n as u64, ("y".into(), b.clone(), n as u64), None, &blobs);
        p.staged(B, 2 * n as u64, ("w".into(), c.clone(), n as u64), None, &blobs);
        p.caught_up("a", "c", "b").await;
        let prefix = p.take("a", "c", "b").await.unwrap();
        let covers = |v: &[(&str, &BlockAt)]| {
            let ids: Vec<String> = v.iter().map(|(i, _)| i.to_string()).collect();
            let places: Vec<BlockAt> = v.iter().map(|(_, d)| (*d).clone()).collect();
            covered(&prefix, &ids, &places)
        };
        assert_eq!(covers(&[("x", &a), ("y", &b), ("w", &c), ("z", &a)]), Some(3));
        assert_eq!(covers(&[("x", &a), ("y", &b), ("w", &c)]), Some(3));
        // Another order, a re-staged block with other bytes, a shorter list: hash it all.
        assert_eq!(covers(&[("y", &b), ("x", &a), ("w", &c)]), None);
        assert_eq!(covers(&[("x", &a), ("y", &a), ("w", &c)]), None);
        assert_eq!(covers(&[("x", &a)]), None);
        // The same place written again (another write's token) is other bytes.
        let again = BlockAt::Staged { file: "f".into(), offset: 2 * n as u64, token: "other".into() };
        assert_eq!(covers(&[("x", &a), ("y", &b), ("w", &again)]), None);
        // Nothing is left for a second commit of the same blob.
        assert!(p.take("a", "c", "b").await.is_none());
    }

    /// A block whose bytes are gone, or whose stated size is wrong, gives the chain up; a
    /// block under MIN_BLOCK is not followed at all.
    #[tokio::test]
    async fn a_block_that_does_not_read_back_as_staged_gives_up_the_chain() {
        let (_dir, blobs) = store().await;
        let p = Prehash::default();
        p.staged(B, 0, ("id".into(), BlockAt::Stored(Digest::from_bytes([7; 32])), MIN_BLOCK), None, &blobs);
        p.caught_up("a", "c", "b").await;
        assert!(p.take("a", "c", "b").await.is_none());
        let d = put(&blobs, &vec![1; MIN_BLOCK as usize]).await;
        p.staged(B, 0, ("id".into(), d, MIN_BLOCK + 1), None, &blobs);
        p.caught_up("a", "c", "b").await;
        assert!(p.take("a", "c", "b").await.is_none());
        // Small blocks are left to the commit.
        let d = put(&blobs, b"small").await;
        p.staged(B, 0, ("id".into(), d, 5), None, &blobs);
        p.caught_up("a", "c", "b").await;
        assert!(p.take("a", "c", "b").await.is_none());
    }

    #[tokio::test]
    async fn followed_uploads_are_bounded() {
        let (_dir, blobs) = store().await;
        let p = Prehash::default();
        // Offsets that never start at 0: nothing is hashed, every upload just waits.
        for i in 0..MAX_CHAINS + 10 {
            p.staged(("a", "c", &format!("b{i}")), 8, ("id".into(), BlockAt::Stored(Digest::from_bytes([1; 32])), MIN_BLOCK), None, &blobs);
        }
        assert!(p.len() <= MAX_CHAINS, "{} uploads followed", p.len());
    }
}
