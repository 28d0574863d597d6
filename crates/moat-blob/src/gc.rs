//! Garbage collection of the local store: stored files that nothing refers to any more.
//!
//! Equal bytes are stored once, so a write that finds its bytes stored already writes nothing
//! and refers to the file that is there. A collector that removed that file between the write's
//! finding it and the write's row becoming visible would leave a row pointing at nothing. Two
//! rules close that window:
//!
//! - **Writers freshen before they publish.** Whoever stores bytes sets the file's
//!   modification time to now before its row is committed: a new file is touched before it is
//!   renamed or linked into `sha256/`, and a file found there is touched in place, then checked
//!   to be still there (the same inode, under the same name). If it is gone, the writer stores
//!   its own copy instead.
//! - **The collector removes only files that are old and were unreferenced.** It is given the
//!   digests every row refers to, read in one snapshot, and a cutoff (now minus a grace period
//!   longer than any write takes between touching a file and committing its row). A file whose
//!   modification time is before the cutoff and that no row names is first renamed into `gc/`,
//!   out of every writer's sight; its time is read again there, and only if it is still old is it
//!   removed. A writer that touched it before the rename made it new (the collector puts it
//!   back); a writer that comes after finds the name gone and writes its own copy.
//!
//! A crash between the rename and the removal leaves the file in `gc/`; opening the store puts
//! such files back, to be judged again by the next collection.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use moat_types::Digest;

/// What one collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Stored files looked at.
    pub files: u64,
    /// Files removed, and their bytes.
    pub removed: u64,
    pub removed_bytes: u64,
    /// Files that were old and unreferenced when listed, but freshened by a writer before they
    /// could be removed, and so put back.
    pub kept: u64,
}

/// Sets `path`'s modification time to now and checks that it still names the same file
/// afterwards. False when there is no file at `path` (any more): the caller must store its own.
pub(crate) fn freshen(path: &Path) -> std::io::Result<bool> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match f.set_modified(SystemTime::now()) {
        Ok(()) => {}
        // Another user's file (restored from a backup as another user, say): the caller
        // stores its own copy, which replaces it.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(false),
        Err(e) => return Err(e),
    }
    let ino = f.metadata()?.ino();
    // A collector that renamed the file away before the new time was set may remove it; it can
    // only have done so before this look, which then finds the name gone.
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(m.ino() == ino),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the modification time of `path` (not yet in the store) to now.
pub(crate) fn touch(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.set_modified(SystemTime::now())
}

/// Removes every file under `root/sha256` older than `cutoff` whose digest is not in
/// `referenced`, by way of `root/gc` (see the module's documentation); with `dry_run`, only
/// counts them (as `removed`). Blocking.
pub(crate) fn sweep(root: &Path, cutoff: SystemTime, referenced: &HashSet<Digest>, dry_run: bool) -> std::io::Result<Swept> {
    let trash = root.join("gc");
    std::fs::create_dir_all(&trash)?;
    // Anything an earlier collection failed to finish goes back first, to be judged again.
    restore(root)?;
    let mut out = Swept::default();
    let mut shards: Vec<_> = std::fs::read_dir(root.join("sha256"))?.collect::<Result<_, _>>()?;
    shards.sort_by_key(|e| e.file_name());
    for shard in shards {
        if !shard.file_type()?.is_dir() {
            continue;
        }
        let mut touched_shard = false;
        for entry in std::fs::read_dir(shard.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(digest) = digest_named(&name) else {
                continue;
            };
            out.files += 1;
            if referenced.contains(&digest) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.modified()? >= cutoff {
                continue;
            }
            if dry_run {
                out.removed += 1;
                out.removed_bytes += meta.len();
                continue;
            }
            let held = trash.join(&name);
            #[cfg(test)]
            BEFORE_SET_ASIDE.with(|h| h.borrow().as_ref().map(|f| f(&entry.path())));
            match std::fs::rename(entry.path(), &held) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            touched_shard = true;
            let decided = std::fs::metadata(&held).and_then(|again| {
                if again.modified()? >= cutoff {
                    // A writer freshened it before it moved: it is about to be referred to.
                    put_back(&held, &entry.path())?;
                    out.kept += 1;
                } else {
                    std::fs::remove_file(&held)?;
                    out.removed += 1;
                    out.removed_bytes += again.len();
                }
                Ok(())
            });
            if let Err(e) = decided {
                // Not left aside on a failure: back under its name (else a restart puts it back).
                let _ = put_back(&held, &entry.path());
                return Err(e);
            }
        }
        if touched_shard {
            std::fs::File::open(shard.path())?.sync_all()?;
        }
    }
    Ok(out)
}

#[cfg(test)]
thread_local! {
    /// Called (in tests) between a file's listing and its move into `gc/`: where a racing
    /// writer's freshening would land.
    static BEFORE_SET_ASIDE: std::cell::RefCell<Option<fn(&Path)>> = const { std::cell::RefCell::new(None) };
}

/// The digest a stored file's name (its hex) is, if it is one.
fn digest_named(name: &std::ffi::OsStr) -> Option<Digest> {
    Digest::parse(&format!("sha256:{}", name.to_str()?)).ok()
}

/// Puts a file from `gc/` back under its name, unless a writer stored its own copy there
/// meanwhile (the same bytes), and forgets the one in `gc/`.
fn put_back(held: &Path, name: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(held, name) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_file(held)
}

/// Puts back what a collection interrupted by a crash left in `root/gc`. Blocking.
pub(crate) fn restore(root: &Path) -> std::io::Result<u64> {
    let trash = root.join("gc");
    let entries = match std::fs::read_dir(&trash) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut restored = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(digest) = digest_named(&name) else {
            std::fs::remove_file(entry.path())?;
            continue;
        };
        let hex = digest.hex();
        let shard = root.join("sha256").join(&hex[..2]);
        std::fs::create_dir_all(&shard)?;
        put_back(&entry.path(), &shard.join(&hex))?;
        std::fs::File::open(&shard)?.sync_all()?;
        restored += 1;
    }
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::BlobStore;

    fn age(store: &BlobStore, d: &Digest, by: Duration) {
        let f = std::fs::File::open(store.path_of(d)).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    #[tokio::test]
    async fn old_unreferenced_files_go_and_the_rest_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let a = store.put(&b"gone: old and unreferenced"[..], None, u64::MAX).await.unwrap().digest;
        let b = store.put(&b"kept: referenced"[..], None, u64::MAX).await.unwrap().digest;
        let c = store.put(&b"kept: new"[..], None, u64::MAX).await.unwrap().digest;
        age(&store, &a, Duration::from_secs(7200));
        age(&store, &b, Duration::from_secs(7200));
        let cutoff = SystemTime::now() - Duration::from_secs(3600);
        let dry = store.collect_garbage(cutoff, Arc::new([b].into_iter().collect()), true, ()).await.unwrap().unwrap();
        assert_eq!(dry, Swept { files: 3, removed: 1, removed_bytes: 26, kept: 0 }, "a dry run counts what would go");
        assert!(store.get(&a).await.unwrap().is_some(), "and removes nothing");
        let swept = store.collect_garbage(cutoff, Arc::new([b].into_iter().collect()), false, ()).await.unwrap().unwrap();
        assert_eq!(swept, Swept { files: 3, removed: 1, removed_bytes: 26, kept: 0 });
        assert!(store.get(&a).await.unwrap().is_none(), "the old, unreferenced file is gone");
        assert!(store.get(&b).await.unwrap().is_some() && store.get(&c).await.unwrap().is_some());
        assert_eq!(std::fs::read_dir(dir.path().join("gc")).unwrap().count(), 0, "nothing is left set aside");
    }

    #[tokio::test]
    async fn storing_bytes_that_are_there_freshens_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let a = store.put(&b"the same bytes, twice"[..], None, u64::MAX).await.unwrap().digest;
        age(&store, &a, Duration::from_secs(7200));
        let again = store.put(&b"the same bytes, twice"[..], None, u64::MAX).await.unwrap();
        assert!(!again.created, "equal bytes are stored once");
        let cutoff = SystemTime::now() - Duration::from_secs(3600);
        let swept = store.collect_garbage(cutoff, Arc::new(HashSet::new()), false, ()).await.unwrap().unwrap();
        assert_eq!(swept.removed, 0, "a write that found the bytes made them new: its row may not be committed yet");
        assert!(store.get(&a).await.unwrap().is_some());
        // Without the second write they would have gone.
        age(&store, &a, Duration::from_secs(7200));
        let swept = store.collect_garbage(cutoff, Arc::new(HashSet::new()), false, ()).await.unwrap().unwrap();
        assert_eq!(swept.removed, 1);
    }

    #[tokio::test]
    async fn a_file_set_aside_by_an_interrupted_collection_is_put_back_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let a = store.put(&b"set aside, then a crash"[..], None, u64::MAX).await.unwrap().digest;
        std::fs::create_dir_all(dir.path().join("gc")).unwrap();
        std::fs::rename(store.path_of(&a), dir.path().join("gc").join(a.hex())).unwrap();
        std::fs::write(dir.path().join("gc").join("not-a-digest"), b"x").unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        assert!(store.get(&a).await.unwrap().is_some(), "put back under its name");
        assert_eq!(std::fs::read_dir(dir.path().join("gc")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_file_freshened_after_it_was_listed_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).await.unwrap();
        let a = store.put(&b"listed old, freshened before it moved"[..], None, u64::MAX).await.unwrap().digest;
        age(&store, &a, Duration::from_secs(7200));
        let cutoff = SystemTime::now() - Duration::from_secs(3600);
        // A writer that found these bytes freshens them after the collector listed them old.
        BEFORE_SET_ASIDE.with(|h| {
            *h.borrow_mut() = Some(|p: &Path| {
                assert!(freshen(p).unwrap());
            })
        });
        let swept = sweep(dir.path(), cutoff, &HashSet::new(), false).unwrap();
        BEFORE_SET_ASIDE.with(|h| *h.borrow_mut() = None);
        assert_eq!(swept, Swept { files: 1, removed: 0, removed_bytes: 0, kept: 1 }, "judged again once set aside, and kept");
        assert!(store.get(&a).await.unwrap().is_some(), "back under its name");
        assert_eq!(std::fs::read_dir(dir.path().join("gc")).unwrap().count(), 0);
    }

    #[test]
    fn freshen_reports_a_file_that_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        assert!(!freshen(&p).unwrap());
        std::fs::write(&p, b"x").unwrap();
        std::fs::File::open(&p).unwrap().set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
        assert!(freshen(&p).unwrap());
        let m = std::fs::metadata(&p).unwrap().modified().unwrap();
        assert!(m > SystemTime::now() - Duration::from_secs(60), "the modification time is now");
    }
}
