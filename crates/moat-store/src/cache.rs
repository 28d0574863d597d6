//! Resource documents remembered in memory, so that a read by ID (every asset GET, every
//! registry lookup) costs a map lookup instead of a statement.
//!
//! Only on SQLite, where this process is the database's only writer and so sees every change.
//! Correctness rests on two rules:
//! - a write transaction forgets every key it touched once its commit has returned (whether the
//!   commit succeeded or not: forgetting is always safe), and bumps the generation;
//! - a reader that missed notes the generation before its statement and remembers the row only
//!   if the generation is unchanged afterwards, so a row read just before a concurrent commit is
//!   never put back after that commit forgot it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use crate::StoredResource;

/// The most document bytes kept; past it the cache starts over (documents are metadata, but a
/// version with many files can be large, and memory must stay flat).
const MAX_BYTES: usize = 32 << 20;
/// The most documents kept.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct ResourceCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    map: HashMap<String, Arc<StoredResource>>,
}

/// What a write transaction changed, to forget at commit.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    keys: Vec<String>,
    prefixes: Vec<String>,
}

impl Touched {
    pub(crate) fn key(&mut self, key: &str) {
        self.keys.push(key.to_string());
    }

    pub(crate) fn prefix(&mut self, prefix: &str) {
        self.prefixes.push(prefix.to_string());
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.prefixes.is_empty()
    }
}

fn size_of(r: &StoredResource) -> usize {
    r.body.len() + r.id.len() + 256
}

impl ResourceCache {
    /// The remembered document, or the generation to pass to [`ResourceCache::remember`].
    pub(crate) fn get(&self, key: &str) -> Result<Arc<StoredResource>, u64> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.map.get(key) {
            Some(r) => Ok(Arc::clone(r)),
            None => Err(inner.generation),
        }
    }

    /// Remembers `r`, read after [`ResourceCache::get`] returned `generation`, unless a write
    /// committed meanwhile.
    pub(crate) fn remember(&self, generation: u64, key: &str, r: &Arc<StoredResource>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.generation != generation {
            return;
        }
        let size = size_of(r);
        if size > MAX_BYTES / 16 {
            return;
        }
        if inner.bytes + size > MAX_BYTES || inner.map.len() >= MAX_ENTRIES {
            inner.map.clear();
            inner.bytes = 0;
        }
        if let Some(old) = inner.map.insert(key.to_string(), Arc::clone(r)) {
            inner.bytes -= size_of(&old);
        }
        inner.bytes += size;
    }

    /// Forgets what a transaction touched (called once its commit has returned).
    pub(crate) fn forget(&self, touched: &Touched) {
        if touched.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.generation += 1;
        let mut freed = 0;
        for k in &touched.keys {
            if let Some(old) = inner.map.remove(k) {
                freed += size_of(&old);
            }
        }
        if !touched.prefixes.is_empty() {
            inner.map.retain(|k, r| {
                let gone = touched.prefixes.iter().any(|p| k.starts_with(p.as_str()));
                if gone {
                    freed += size_of(r);
                }
                !gone
            });
        }
        inner.bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, body: &str) -> Arc<StoredResource> {
        Arc::new(StoredResource {
            id: id.into(),
            kind: "k".into(),
            subscription_id: "s".into(),
            group_key: None,
            name: "n".into(),
            body: body.into(),
            etag: "e".into(),
            created_at: "t".into(),
            updated_at: "t".into(),
        })
    }

    #[test]
    fn a_read_that_raced_a_commit_is_not_remembered() {
        let c = ResourceCache::default();
        let generation = c.get("a").unwrap_err();
        // A write commits between the reader's miss and its remember.
        let mut t = Touched::default();
        t.key("a");
        c.forget(&t);
        c.remember(generation, "a", &doc("a", "old"));
        assert!(c.get("a").is_err(), "the stale row must not be served");
        let generation = c.get("a").unwrap_err();
        c.remember(generation, "a", &doc("a", "new"));
        assert_eq!(c.get("a").map(|r| r.body.clone()), Ok("new".to_string()));
    }

    #[test]
    fn prefixes_forget_children_and_bytes_stay_bounded() {
        let c = ResourceCache::default();
        for k in ["/r/a", "/r/a/x", "/r/b"] {
            let g = c.get(k).unwrap_err();
            c.remember(g, k, &doc(k, "body"));
        }
        let mut t = Touched::default();
        t.prefix("/r/a");
        c.forget(&t);
        assert!(c.get("/r/a").is_err() && c.get("/r/a/x").is_err());
        assert!(c.get("/r/b").is_ok());
        let big = "x".repeat(MAX_BYTES / 32);
        for i in 0..100 {
            let k = format!("/big/{i}");
            let g = c.get(&k).unwrap_err();
            c.remember(g, &k, &doc(&k, &big));
        }
        let inner = c.inner.lock().unwrap_or_else(|p| p.into_inner());
        assert!(inner.bytes <= MAX_BYTES, "{} bytes kept", inner.bytes);
        assert_eq!(inner.bytes, inner.map.values().map(|r| size_of(r)).sum::<usize>());
    }
}
