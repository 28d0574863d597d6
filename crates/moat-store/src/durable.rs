//! Group commit on SQLite.
//!
//! With `synchronous=FULL`, every commit fsyncs the write-ahead log while it still holds the
//! write lock, so writers queue for the disk one fsync each. moat instead runs SQLite with
//! `synchronous=NORMAL` (a commit appends its frames to the WAL without an fsync) and makes each
//! commit durable itself before [`crate::WriteTx::commit`] returns: after releasing the write
//! lock, the committer fsyncs the WAL file, and one fsync covers every commit appended before it
//! started, so writers that committed meanwhile share it. Nothing is acknowledged before its
//! frames are on disk, as with FULL; the WAL is one append-only file, so a later frame's fsync
//! never leaves an earlier one behind.
//!
//! One difference from FULL, documented in docs/OPERATIONS.md: between its commit and the fsync
//! (well under a millisecond to a few), a change is visible to other requests of this process
//! before it is durable; a power loss in that window (not a crash of moat: the operating system
//! still holds the frames) can take back a change some other request saw, never one whose
//! writer was answered.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use crate::{Result, StoreError};

#[derive(Debug)]
pub(crate) struct WalSync {
    /// The database's write-ahead log (`<db>-wal`).
    wal: PathBuf,
    /// Commits appended to the WAL so far.
    committed: AtomicU64,
    /// Commits known durable so far.
    synced: AtomicU64,
    /// Held by the committer that is fsyncing on behalf of all.
    leader: Mutex<()>,
}

impl WalSync {
    pub(crate) fn new(database: PathBuf) -> WalSync {
        let mut wal = database.into_os_string();
        wal.push("-wal");
        WalSync { wal: PathBuf::from(wal), committed: AtomicU64::new(0), synced: AtomicU64::new(0), leader: Mutex::new(()) }
    }

    /// Called once a commit has returned: waits until its frames are on disk.
    pub(crate) async fn durable(&self) -> Result<()> {
        let mine = self.committed.fetch_add(1, Ordering::SeqCst) + 1;
        if self.synced.load(Ordering::SeqCst) >= mine {
            return Ok(());
        }
        let _leader = self.leader.lock().await;
        if self.synced.load(Ordering::SeqCst) >= mine {
            // The previous leader's fsync started after this commit: it covered it.
            return Ok(());
        }
        // Every commit counted so far has been appended; one fsync makes them all durable.
        let target = self.committed.load(Ordering::SeqCst);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || sync_file(&wal))
            .await
            .map_err(|e| StoreError::Durability(format!("the fsync task failed: {e}")))??;
        self.synced.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }
}

fn sync_file(path: &std::path::Path) -> Result<()> {
    match std::fs::File::open(path) {
        Ok(f) => f.sync_data().map_err(|e| StoreError::Durability(format!("fsync of {}: {e}", path.display()))),
        // SQLite removes the WAL only after checkpointing it into the database file (which it
        // fsyncs): what it held is durable already.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Durability(format!("opening {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_fsync_covers_every_commit_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        std::fs::write(dir.path().join("m.db-wal"), b"frames").unwrap();
        let s = std::sync::Arc::new(WalSync::new(db));
        let waits: Vec<_> = (0..50)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.durable().await })
            })
            .collect();
        for w in waits {
            assert!(matches!(w.await, Ok(Ok(()))));
        }
        assert_eq!(s.committed.load(Ordering::SeqCst), 50);
        assert_eq!(s.synced.load(Ordering::SeqCst), 50, "every commit is covered by an fsync that started after it");
        // No WAL (checkpointed and removed): nothing to make durable.
        std::fs::remove_file(dir.path().join("m.db-wal")).unwrap();
        assert!(s.durable().await.is_ok());
    }
}
