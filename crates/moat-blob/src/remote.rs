//! Content-addressed bytes in an object store — Azure Blob Storage or any S3-compatible store —
//! through `object_store`, for several moat nodes sharing one copy of every byte.
//!
//! Layout under the configured container (or bucket) and prefix:
//! - `sha256/<aa>/<hex>`: stored content, written only once verified;
//! - `uploads/<id>/<start>`: the acknowledged chunks of upload session `<id>`, each an object
//!   named by its first byte's offset (20 digits, so that names sort by offset).
//!
//! Nothing partial is ever visible: a large object goes up as a multipart (block) upload, which
//! the store makes visible only when it is committed; an aborted or crashed one leaves
//! uncommitted parts the store discards (Azure after a week; S3 by a lifecycle rule).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use moat_types::Digest;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{BlobError, BlobReader};

/// The size of one part of a multipart upload (and the largest single put).
const PART: usize = 8 * 1024 * 1024;
/// Parts in flight at once per upload.
const CONCURRENCY: usize = 4;
/// Seconds after which a chunk outside a session's acknowledged chain is a leftover of a write
/// that failed, not one still being acknowledged.
const LEFTOVER_AGE: i64 = 3600;

/// A session chunk's object.
struct Chunk {
    start: u64,
    size: u64,
    /// Seconds since it was written.
    age: i64,
    key: Key,
}

/// The chunks (sorted by start) that cover `0..length` exactly, preferring at each offset the
/// newest chunk that still lets the chain end at `length`; `None` if none does.
fn chain_to(chunks: &[Chunk], length: u64) -> Option<Vec<&Chunk>> {
    fn from<'a>(chunks: &'a [Chunk], at: u64, length: u64, seen: &mut std::collections::HashSet<u64>) -> Option<Vec<&'a Chunk>> {
        if at == length {
            return Some(Vec::new());
        }
        // An offset already known to lead nowhere is not searched again.
        if !seen.insert(at) {
            return None;
        }
        let mut here: Vec<&Chunk> = chunks.iter().filter(|c| c.start == at && c.size > 0 && at + c.size <= length).collect();
        here.sort_by_key(|c| c.age);
        for c in here {
            if let Some(mut rest) = from(chunks, at + c.size, length, seen) {
                rest.insert(0, c);
                return Some(rest);
            }
        }
        None
    }
    from(chunks, 0, length, &mut std::collections::HashSet::new())
}

#[derive(Clone)]
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    /// The URL as configured (it carries no credentials: those come from the environment).
    pub url: String,
    /// Told of each content before the store is asked whether it holds it (see [`Claimer`]).
    pub claimer: Option<Arc<dyn crate::Claimer>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish_non_exhaustive()
    }
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        BlobError::Store(e.to_string())
    }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn io(e: object_store::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Remote {
    /// Connects to `url`: `azure://CONTAINER[/PREFIX]` or `s3://BUCKET[/PREFIX]`. Credentials and
    /// endpoints come from the environment (`AZURE_STORAGE_*`, `AWS_*`, as `object_store` reads
    /// them) and then from `options` (the same keys, lower case).
    pub fn open(url: &str, options: &[(String, String)]) -> Result<Remote, BlobError> {
        let bad = |why: &str| BlobError::Config(format!("blob URL '{url}': {why}"));
        // The HTTP client needs a TLS provider before it is built; moat uses ring everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected azure://CONTAINER[/PREFIX] or s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the container or bucket name is missing"));
        }
        let store: Arc<dyn ObjectStore> = match scheme {
            "azure" | "az" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(bucket);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e: object_store::Error| bad(&e.to_string()))?, v);
                }
                Arc::new(b.build().map_err(|e| bad(&e.to_string()))?)
            }
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e: object_store::Error| bad(&e.to_string()))?, v);
                }
                Arc::new(b.build().map_err(|e| bad(&e.to_string()))?)
            }
            other => return Err(bad(&format!("unknown scheme '{other}'"))),
        };
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> =
            if prefix.is_empty() { store } else { Arc::new(object_store::prefix::PrefixStore::new(store, prefix)) };
        Ok(Remote { store, url: url.to_string(), claimer: None })
    }

    /// Checks that the container answers (a listing of one page), so a wrong URL or credential
    /// fails at start rather than at the first upload.
    pub async fn probe(&self) -> Result<(), BlobError> {
        self.store.list_with_delimiter(Some(&Key::from("sha256"))).await?;
        Ok(())
    }

    fn key(d: &Digest) -> Key {
        let hex = d.hex();
        Key::from(format!("sha256/{}/{hex}", &hex[..2]))
    }

    /// A chunk's object: its offset and a name of its own, so that two nodes writing the same
    /// chunk of a session at once (a client retrying elsewhere) never replace or remove each
    /// other's object; which one counts is decided when the chunks are read.
    fn chunk_key(id: &str, start: u64) -> Key {
        Key::from(format!("uploads/{id}/{start:020}-{}", uuid::Uuid::new_v4().simple()))
    }

    pub async fn exists(&self, d: &Digest) -> Result<bool, BlobError> {
        match self.store.head(&Self::key(d)).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Uploads `reader` as the content `d` (which the caller has verified), unless equal bytes
    /// are there already; true if it was uploaded.
    pub async fn install<R: AsyncRead + Unpin>(&self, d: &Digest, reader: R) -> Result<bool, BlobError> {
        if let Some(c) = &self.claimer {
            c.claim(d).await?;
        }
        if self.exists(d).await? {
            return Ok(false);
        }
        self.put_reader(&Self::key(d), reader, true, &mut |_| Ok(())).await?;
        Ok(true)
    }

    /// Streams `reader` into object `key`: one put when it fits in a part, a multipart upload
    /// otherwise. `inspect` sees every byte first (and may refuse). Without `empty`, nothing is
    /// written for an empty reader. Returns the byte count.
    async fn put_reader<R: AsyncRead + Unpin>(
        &self,
        key: &Key,
        mut reader: R,
        empty: bool,
        inspect: &mut (dyn FnMut(&[u8]) -> Result<(), BlobError> + Send),
    ) -> Result<u64, BlobError> {
        let first = read_part(&mut reader).await?;
        inspect(&first)?;
        if first.len() < PART {
            let n = first.len() as u64;
            if n > 0 || empty {
                self.store.put(key, PutPayload::from(Bytes::from(first))).await?;
            }
            return Ok(n);
        }
        let mut w = WriteMultipart::new_with_chunk_size(self.store.put_multipart(key).await?, PART);
        let mut total = first.len() as u64;
        w.put(Bytes::from(first));
        let outcome = loop {
            if let Err(e) = w.wait_for_capacity(CONCURRENCY).await {
                break Err(BlobError::from(e));
            }
            let part = match read_part(&mut reader).await {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            if part.is_empty() {
                break Ok(());
            }
            if let Err(e) = inspect(&part) {
                break Err(e);
            }
            total += part.len() as u64;
            w.put(Bytes::from(part));
        };
        match outcome {
            Ok(()) => {
                w.finish().await?;
                Ok(total)
            }
            Err(e) => {
                // Best effort: the store discards uncommitted parts by itself too.
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// Opens stored content from byte `start`, with its full size.
    pub async fn get(&self, d: &Digest, start: u64) -> Result<Option<(BlobReader, u64)>, BlobError> {
        self.open_key(&Self::key(d), start).await
    }

    async fn open_key(&self, key: &Key, start: u64) -> Result<Option<(BlobReader, u64)>, BlobError> {
        if start > 0 {
            // A range from the very end is empty, which stores refuse as a range: answer it here.
            let size = match self.store.head(key).await {
                Ok(m) => m.size,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            if start >= size {
                return Ok(Some((BlobReader::new(tokio::io::empty()), size)));
            }
        }
        let options = GetOptions { range: (start > 0).then_some(GetRange::Offset(start)), ..Default::default() };
        match self.store.get_opts(key, options).await {
            Ok(r) => {
                let size = r.meta.size;
                let stream = r.into_stream().map_err(io);
                Ok(Some((BlobReader::new(tokio_util::io::StreamReader::new(stream)), size)))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads several stored contents as one stream: each is opened when the reading reaches it.
    /// `parts` holds digests with the byte to start from in each.
    pub fn concat(&self, parts: Vec<(Key, u64)>) -> BlobReader {
        let me = self.clone();
        let stream = futures_util::stream::iter(parts)
            .then(move |(key, start)| {
                let me = me.clone();
                async move {
                    let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, format!("stored object {key} is missing"));
                    let (reader, _) = me.open_key(&key, start).await.map_err(std::io::Error::other)?.ok_or_else(missing)?;
                    Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024))
                }
            })
            .try_flatten();
        BlobReader::new(tokio_util::io::StreamReader::new(stream))
    }

    pub fn parts_reader(&self, parts: Vec<(Digest, u64)>, start: u64) -> BlobReader {
        self.concat(crate::parts_from(parts, start).map(|(d, offset, _)| (Self::key(&d), offset)).collect())
    }

    /// Deletes `d`, just listed, without asking first whether it is there (a round trip less):
    /// true unless the store answers that it was not (Azure does; S3 answers success either way).
    pub async fn delete_listed(&self, d: &Digest) -> Result<bool, BlobError> {
        match self.store.delete(&Self::key(d)).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, d: &Digest) -> Result<bool, BlobError> {
        // S3 answers a delete of nothing with success: ask first, to report it.
        if !self.exists(d).await? {
            return Ok(false);
        }
        self.delete_listed(d).await
    }

    /// The stored contents (`sha256/`): each digest with its size and when the store last
    /// wrote it. Objects there under other names (not moat's) are left out.
    pub fn stored(&self) -> futures_util::stream::BoxStream<'static, Result<crate::StoredObject, BlobError>> {
        self.store
            .list(Some(&Key::from("sha256")))
            .map_err(BlobError::from)
            .try_filter_map(|m| async move {
                let digest = m.location.filename().and_then(|n| Digest::parse(&format!("sha256:{n}")).ok());
                Ok(digest.map(|digest| crate::StoredObject { digest, size: m.size, modified: m.last_modified.into() }))
            })
            .boxed()
    }

    /// Whether any content is stored.
    pub async fn holds_any(&self) -> Result<bool, BlobError> {
        Ok(self.stored().try_next().await?.is_some())
    }

    /// The `store-id` object (see `BlobStore::owner`), if there is one.
    pub async fn owner(&self) -> Result<Option<String>, BlobError> {
        match self.store.get(&Key::from("store-id")).await {
            Ok(r) => Ok(Some(String::from_utf8_lossy(&r.bytes().await?).trim().to_string())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn set_owner(&self, id: &str) -> Result<(), BlobError> {
        self.store.put(&Key::from("store-id"), PutPayload::from(format!("{id}\n"))).await?;
        Ok(())
    }

    /// Upload session `id`'s chunk objects, by offset. A chunk's name is its offset, then `-`
    /// and a name of its own (or nothing: objects of sessions begun before chunks had names of
    /// their own were named by offset alone); its age is this node's clock minus the time the
    /// store recorded for it (clocks a few minutes apart do not matter against LEFTOVER_AGE).
    async fn chunks(&self, id: &str) -> Result<Vec<Chunk>, BlobError> {
        let prefix = Key::from(format!("uploads/{id}"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut out: Vec<Chunk> = self
            .store
            .list(Some(&prefix))
            .try_filter_map(move |m| async move {
                let start = m.location.filename().and_then(|n| n.split('-').next()).and_then(|n| n.parse::<u64>().ok());
                Ok(start.map(|start| Chunk { start, size: m.size, age: now - m.last_modified.timestamp(), key: m.location }))
            })
            .try_collect()
            .await?;
        out.sort_by_key(|c| c.start);
        Ok(out)
    }

    /// The chunks that make up the first `length` bytes of session `id`, in order: from the
    /// chunks at each offset, the newest that lets the chain end exactly at `length` (a chunk
    /// written but never acknowledged is older than the one written again after it, in the
    /// ordinary case of a retry). Chunks outside the chain are removed once they are older
    /// than [`LEFTOVER_AGE`]: a younger one at or past `length` may be another node's write
    /// whose acknowledgement is on its way, and removing it would lose acknowledged bytes.
    async fn acknowledged(&self, id: &str, length: u64) -> Result<Vec<(u64, u64, Key)>, BlobError> {
        let all = self.chunks(id).await?;
        let chain = chain_to(&all, length).ok_or_else(|| {
            let end = all.iter().filter(|c| c.start < length).map(|c| c.start + c.size).max().unwrap_or(0);
            BlobError::Store(format!("upload {id}'s chunks do not make up its acknowledged {length} bytes (they reach {end})"))
        })?;
        for c in &all {
            if c.age > LEFTOVER_AGE && !chain.iter().any(|k| k.key == c.key) {
                match self.store.delete(&c.key).await {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(chain.into_iter().map(|c| (c.start, c.size, c.key.clone())).collect())
    }

    /// Appends `reader` as the chunk at `offset`; `inspect` sees every byte (hash, limit).
    pub async fn upload_append<R: AsyncRead + Unpin>(
        &self,
        id: &str,
        offset: u64,
        reader: R,
        inspect: &mut (dyn FnMut(&[u8]) -> Result<(), BlobError> + Send),
    ) -> Result<u64, BlobError> {
        self.acknowledged(id, offset).await?;
        let n = self.put_reader(&Self::chunk_key(id, offset), reader, false, inspect).await?;
        Ok(offset + n)
    }

    /// Session `id`'s first `length` bytes as one stream.
    pub async fn upload_reader(&self, id: &str, length: u64) -> Result<BlobReader, BlobError> {
        let chunks = self.acknowledged(id, length).await?;
        Ok(self.concat(chunks.into_iter().map(|(_, _, key)| (key, 0)).collect()))
    }

    pub async fn upload_discard(&self, id: &str) -> Result<bool, BlobError> {
        let chunks = self.chunks(id).await?;
        for Chunk { key, .. } in &chunks {
            match self.store.delete(key).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(!chunks.is_empty())
    }

    /// The IDs of the sessions with chunks in the store.
    pub async fn upload_ids(&self) -> Result<Vec<String>, BlobError> {
        let listed = self.store.list_with_delimiter(Some(&Key::from("uploads"))).await?;
        Ok(listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect())
    }
}

/// Reads up to one part (less only at the end).
async fn read_part<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, BlobError> {
    let mut buf = vec![0u8; PART];
    let mut n = 0;
    while n < PART {
        let got = reader.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
    }
    buf.truncate(n);
    Ok(buf)
}
