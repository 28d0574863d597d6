//! Moving files through the blob plane with a SAS URL, verified end to end with sha256.
//!
//! Uploads go in blocks, several in flight, and resume: a block's ID names the file version
//! (path, size, modification time) and the block's index, so a second run asks the server which
//! blocks it already holds (Get Block List) and sends only the rest; a file already committed
//! with the same sha256 is skipped. Downloads fetch ranges in parallel, write them in order to
//! `<file>.moat-part`, and a second run carries on from that file's length. Memory stays bounded
//! by the blocks in flight whatever the file size.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::ClientError;

/// Range size for downloads.
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// Block size for uploads; smaller files go in one Put Blob. moat keeps each block's bytes in
/// memory until it has hashed them (a budget of 24 MiB a node, docs/ASSETS.md): four blocks of
/// 4 MiB in flight fit, inside the server's memory target. Files of more than
/// [`MAX_BLOCKS`] × 4 MiB (~195 GiB) go in larger blocks ([`block_size`]).
pub const UPLOAD_BLOCK: usize = 4 * 1024 * 1024;
/// Blocks a blob may be made of (Azure's limit, and moat's).
pub use moat_types::assets::MAX_BLOCKS;

/// The block size an upload of `size` bytes uses: [`UPLOAD_BLOCK`], or, for a file that would
/// need more than [`MAX_BLOCKS`] of those, the least whole number of MiB that fits it in as
/// many.
pub fn block_size(size: u64) -> usize {
    const MIB: u64 = 1024 * 1024;
    (UPLOAD_BLOCK as u64).max(size.div_ceil(MAX_BLOCKS as u64).div_ceil(MIB) * MIB) as usize
}
/// Blocks (or ranges) in flight at once.
pub const CONCURRENCY: usize = 4;
/// The response header in which moat reports the sha256 it computed for a stored blob.
pub const SHA256_HEADER: &str = "x-moat-content-sha256";
/// The suffix of a download in progress.
pub const PARTIAL_SUFFIX: &str = ".moat-part";

/// Called with every number of bytes done: sent, found already on the server, or received.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What one file's transfer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// The file's size.
    pub size: u64,
    /// Bytes that crossed the network in this run (less than `size` when resumed or skipped).
    pub moved: u64,
    /// The verified sha256, in hex.
    pub sha256: String,
}

fn encode_path(p: &str) -> String {
    p.split('/').map(moat_types::uri::percent_encode).collect::<Vec<_>>().join("/")
}

/// `{base}/{path}?{sas}` from a SAS URL of a container or folder.
pub fn blob_url(sas_url: &str, path: &str) -> String {
    let (base, sas) = sas_url.split_once('?').unwrap_or((sas_url, ""));
    format!("{}/{}?{sas}", base.trim_end_matches('/'), encode_path(path))
}

/// A transport error on a SAS URL, named without its query: reqwest's own message names the
/// URL whole, signature included, and messages end up in terminals and CI logs.
fn transport(url: &str, e: reqwest::Error) -> ClientError {
    crate::transport_error(named(url), e.without_url())
}

/// Tries a blob request gets: the first, and four more after a failure that may pass.
const ATTEMPTS: u32 = 5;
/// Pause before the first retry; it doubles for each next one (0.5, 1, 2, 4 s: 7.5 s in all,
/// enough for a server to restart, or a load balancer to find another node).
const FIRST_PAUSE_MS: u64 = 500;
/// How long a Put Block List may take: the commit of a blob whose blocks were not staged in
/// place copies it whole.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a failed request may succeed if tried again: the connection failed or dropped, or
/// the server timed out, was busy or failed (408, 429, 500, 502, 503, 504). Anything else (a
/// refusal, a wrong SAS, bytes that do not match, a certificate not trusted) fails the same way
/// every time.
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Transport { .. } => true,
        ClientError::Api { status, .. } => matches!(status, 408 | 429 | 500 | 502 | 503 | 504),
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has been tried [`ATTEMPTS`] times,
/// pausing between tries and saying so on stderr (`what` names the blob, never its SAS).
/// Only for requests that are safe to repeat: reads, and writes of the same bytes to the same
/// place (a block, a whole small blob).
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if transient(&e) && tries < ATTEMPTS => {
                pause(what, &e, tries).await;
                tries += 1;
            }
            done => return done,
        }
    }
}

/// The pause after failed try number `tries` (1-based).
async fn pause(what: &str, e: &ClientError, tries: u32) {
    let ms = FIRST_PAUSE_MS << (tries - 1);
    // A transport error names the blob already.
    let about = if matches!(e, ClientError::Transport { .. }) { e.to_string() } else { format!("{what}: {e}") };
    eprintln!("{about}; trying again in {:.1} s (retry {tries} of {})", ms as f64 / 1000.0, ATTEMPTS - 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// A blob URL for messages: without its SAS.
fn named(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn joined(e: tokio::task::JoinError) -> ClientError {
    ClientError::Local(format!("a transfer task failed: {e}"))
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("Error").to_string();
    let text = resp.text().await.unwrap_or_default();
    let message = text.split("<Message>").nth(1).and_then(|m| m.split("</Message>").next()).unwrap_or(&text).to_string();
    Err(ClientError::Api { status, code, message, target: None })
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes the first bytes of a file (all of it by default), streaming, off the async threads.
async fn hash_prefix(path: &Path) -> Result<(Sha256, u64), ClientError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let io = |e: std::io::Error| ClientError::Local(format!("cannot read {}: {e}", path.display()));
        let mut f = std::fs::File::open(&path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                return Ok((hasher, total));
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
    })
    .await
    .map_err(joined)?
}

/// The sha256 of a local file, in hex.
pub async fn sha256_file(path: &Path) -> Result<String, ClientError> {
    Ok(hex(&hash_prefix(path).await?.0.finalize()))
}

/// Names this version of a local file, so that blocks staged from another version are never
/// mistaken for this one's.
fn fingerprint(path: &Path, meta: &std::fs::Metadata) -> String {
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // The block size too: a block of an upload cut otherwise is another block.
    let h = Sha256::digest(format!("{}\n{}\n{mtime}\n{}", abs.display(), meta.len(), block_size(meta.len())).as_bytes());
    hex(&h[..6])
}

fn block_id(fingerprint: &str, index: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{fingerprint}-{index:06}"))
}

/// The IDs of the blocks staged (not yet committed) for a blob; none when it does not exist.
pub async fn staged_blocks(http: &reqwest::Client, url: &str) -> Result<HashSet<String>, ClientError> {
    let list_url = format!("{url}&comp=blocklist&blocklisttype=uncommitted");
    let text = retrying(named(url), || async {
        let resp = http.get(&list_url).send().await.map_err(|e| transport(&list_url, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(String::new());
        }
        check(resp).await?.text().await.map_err(|e| transport(&list_url, e))
    })
    .await?;
    Ok(text.split("<Name>").skip(1).filter_map(|n| n.split("</Name>").next()).map(str::to_string).collect())
}

/// The sha256 (hex) the server recorded for the blob at `url`, if the blob exists with `size`
/// bytes.
async fn remote_sha256(http: &reqwest::Client, url: &str, size: u64) -> Result<Option<String>, ClientError> {
    let resp = http.head(url).send().await.map_err(|e| transport(url, e))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let resp = check(resp).await?;
    let len = header(&resp, "content-length").and_then(|l| l.parse::<u64>().ok());
    Ok(header(&resp, SHA256_HEADER).filter(|_| len == Some(size)))
}

/// Whether the blob at `url` already holds exactly the local file (a resumed run).
async fn already_uploaded(http: &reqwest::Client, url: &str, path: &Path, size: u64) -> Result<Option<String>, ClientError> {
    let Some(remote) = retrying(named(url), || remote_sha256(http, url, size)).await? else { return Ok(None) };
    let local = sha256_file(path).await?;
    Ok((local == remote).then_some(local))
}

fn verify_upload(resp: &reqwest::Response, path: &Path, local: &str) -> Result<(), ClientError> {
    match header(resp, SHA256_HEADER) {
        Some(remote) if remote != local => Err(ClientError::Integrity(format!(
            "{}: the server stored bytes with sha256 {remote}, but the file's is {local}; did it change during the upload?",
            path.display()
        ))),
        _ => Ok(()),
    }
}

struct Block {
    id: String,
    /// Where the block goes in the blob.
    offset: u64,
    len: u64,
    /// None when the server already holds this block.
    data: Option<bytes::Bytes>,
}

/// Blocks read but not hashed yet that an upload lets wait before reading slows down to the
/// hashing thread's pace.
const HASH_BEHIND: usize = 8;

/// Block buffers an upload fills and sends. A block's buffer comes back here when its request
/// has sent it, to be filled again: a fresh 4 MiB allocation for every block would have the
/// kernel fault in and zero 1 GiB of memory per GiB sent.
#[derive(Clone)]
struct BlockPool {
    buffers: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    /// The block size: every buffer's capacity.
    size: usize,
}

/// More than the blocks that can be in flight, queued, waiting to be hashed and being read at
/// once.
const POOLED_BLOCKS: usize = CONCURRENCY + HASH_BEHIND + 4;

impl BlockPool {
    fn new(size: usize) -> BlockPool {
        BlockPool { buffers: Default::default(), size }
    }

    fn take(&self) -> PooledBlock {
        let mut buf = self.buffers.lock().ok().and_then(|mut p| p.pop()).unwrap_or_else(|| Vec::with_capacity(self.size));
        buf.clear();
        PooledBlock { buf, pool: self.clone() }
    }
}

/// A block's bytes, given back to its pool when dropped.
struct PooledBlock {
    buf: Vec<u8>,
    pool: BlockPool,
}

impl AsRef<[u8]> for PooledBlock {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBlock {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == self.pool.size
            && let Ok(mut p) = self.pool.buffers.lock()
            && p.len() < POOLED_BLOCKS
        {
            p.push(buf);
        }
    }
}

/// Uploads a local file to `url` (a blob URL with its SAS), resuming a previous attempt.
pub async fn upload_file(http: &reqwest::Client, url: &str, path: &Path, progress: Progress) -> Result<Transfer, ClientError> {
    let io = |e: std::io::Error| ClientError::Local(format!("cannot read {}: {e}", path.display()));
    let meta = tokio::fs::metadata(path).await.map_err(io)?;
    let size = meta.len();
    if let Some(sha256) = already_uploaded(http, url, path, size).await? {
        progress(size);
        return Ok(Transfer { size, moved: 0, sha256 });
    }
    if size as usize <= UPLOAD_BLOCK {
        let buf = bytes::Bytes::from(tokio::fs::read(path).await.map_err(io)?);
        let local = hex(&Sha256::digest(&buf));
        let resp = retrying(named(url), || async {
            let resp = http.put(url).header("x-ms-blob-type", "BlockBlob").body(buf.clone()).send().await.map_err(|e| transport(url, e))?;
            check(resp).await
        })
        .await?;
        verify_upload(&resp, path, &local)?;
        progress(size);
        return Ok(Transfer { size, moved: size, sha256: local });
    }

    let fp = fingerprint(path, &meta);
    let staged = staged_blocks(http, url).await?;
    // One thread reads the file in order; the blocks it hands over go out in parallel, and to a
    // thread that hashes them in order. The hash need not keep up with the sending: the server
    // hashes the blob as blocks arrive too, and with both hashes behind at the end, client and
    // server finish theirs at once on two cores (the server's answer to Put Block List waits
    // for its own), where a client that hashed before sending left one core idle while the
    // server caught up.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Block>(2);
    let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(HASH_BEHIND);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        while let Ok(block) = hash_rx.recv() {
            hasher.update(&block);
        }
        hex(&hasher.finalize())
    });
    let source = path.to_path_buf();
    let block_len = block_size(size);
    let pool = BlockPool::new(block_len);
    let reader = tokio::task::spawn_blocking(move || -> Result<(), ClientError> {
        let io = |e: std::io::Error| ClientError::Local(format!("cannot read {}: {e}", source.display()));
        let mut f = std::fs::File::open(&source).map_err(io)?;
        for index in 0u64.. {
            // read_to_end fills spare capacity without zeroing it first (4 MiB a block), and
            // with `take` it never grows the buffer.
            let mut block = pool.take();
            (&mut f).take(block_len as u64).read_to_end(&mut block.buf).map_err(io)?;
            let filled = block.buf.len();
            if filled == 0 {
                break;
            }
            let block = bytes::Bytes::from_owner(block);
            if hash_tx.send(block.clone()).is_err() {
                break;
            }
            let id = block_id(&fp, index);
            let data = if staged.contains(&id) { None } else { Some(block) };
            let offset = index * block_len as u64;
            if tx.blocking_send(Block { id, offset, len: filled as u64, data }).is_err() {
                // The sender side stopped: an upload failed and its error is reported there.
                break;
            }
        }
        Ok(())
    });
    let mut ids = Vec::new();
    let mut moved = 0;
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(block) = rx.recv().await {
        ids.push(block.id.clone());
        let Some(data) = block.data else {
            progress(block.len);
            continue;
        };
        while in_flight.len() >= CONCURRENCY {
            if let Some(done) = in_flight.join_next().await {
                moved += done.map_err(joined)??;
            }
        }
        let block_url = format!("{url}&comp=block&blockid={}", encode_path(&block.id));
        let (http, progress) = (http.clone(), progress.clone());
        in_flight.spawn(async move {
            // moat's extension: with the offset, the server writes the block where it goes in
            // the blob and hashes the blob as blocks arrive, so the commit neither copies the
            // bytes nor waits for a hash of the whole file.
            retrying(named(&block_url), || async {
                let resp = http
                    .put(&block_url)
                    .header("x-moat-block-offset", block.offset)
                    .body(data.clone())
                    .send()
                    .await
                    .map_err(|e| transport(&block_url, e))?;
                check(resp).await
            })
            .await?;
            progress(block.len);
            Ok::<u64, ClientError>(block.len)
        });
    }
    while let Some(done) = in_flight.join_next().await {
        moved += done.map_err(joined)??;
    }
    reader.await.map_err(joined)??;
    let xml: String = std::iter::once("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>".to_string())
        .chain(ids.iter().map(|i| format!("<Latest>{i}</Latest>")))
        .chain(std::iter::once("</BlockList>".to_string()))
        .collect();
    let list_url = format!("{url}&comp=blocklist");
    let xml = bytes::Bytes::from(xml);
    // A commit may copy the whole blob (blocks not staged in place), longer than the client's
    // usual request timeout: it gets an hour.
    let commit = |xml: bytes::Bytes| http.put(&list_url).timeout(COMMIT_TIMEOUT).body(xml).send();
    let (resp, local) = tokio::join!(commit(xml.clone()), hashing);
    let local = local.map_err(joined)?;
    // A commit whose answer was lost may have happened: a retry first looks whether the blob now
    // holds the file (its blocks are gone once committed, so committing them again would be
    // refused), and commits again only if not; a retried commit refused because another one of
    // this upload got there first looks again.
    let local_sha = local.as_str();
    let committed = move || async move { Ok::<bool, ClientError>(remote_sha256(http, url, size).await?.as_deref() == Some(local_sha)) };
    let mut first = Some(resp);
    retrying(named(url), || {
        let (first, xml, list_url, commit) = (first.take(), xml.clone(), &list_url, &commit);
        async move {
            let retry = first.is_none();
            let resp = match first {
                Some(sent) => sent,
                None if committed().await? => return Ok(()),
                None => commit(xml).await,
            };
            match check(resp.map_err(|e| transport(list_url, e))?).await {
                Ok(resp) => verify_upload(&resp, path, local_sha),
                Err(ClientError::Api { status: 400, .. }) if retry && committed().await? => Ok(()),
                Err(e) => Err(e),
            }
        }
    })
    .await?;
    Ok(Transfer { size, moved, sha256: local })
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(PARTIAL_SUFFIX);
    dest.with_file_name(name)
}

/// A range of a download as it came off the connection: the pieces are slices of the HTTP
/// client's read buffers, kept as they are rather than copied into one (8 MiB) buffer.
type Pieces = Arc<[bytes::Bytes]>;

/// Bytes passed on to the hashing and writing threads at a time, once the range they belong to
/// is the next in order.
const BATCH: usize = 1024 * 1024;

/// A range being fetched: its pieces as they come off the connection, then its end (the channel
/// closes) or an error.
struct Fetch {
    pieces: tokio::sync::mpsc::UnboundedReceiver<Result<bytes::Bytes, ClientError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts fetching bytes `start..=end`. The pieces wait in the channel until they are taken (at
/// most the range's size). A connection that fails or drops partway is tried again (see
/// [`retrying`]) for the bytes still missing, so the pieces passed on stay in order, each once.
fn fetch_range(http: reqwest::Client, url: String, start: u64, end: u64) -> Fetch {
    let (tx, pieces) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let got = std::sync::atomic::AtomicU64::new(0);
        if let Err(e) = retrying(named(&url), || fetch_from(&http, &url, start, end, &got, &tx)).await {
            let _ = tx.send(Err(e));
        }
    });
    Fetch { pieces, task }
}

/// One try at the bytes of `start..=end` past the `got` already passed on; counts what it
/// passes on in `got`.
async fn fetch_from(
    http: &reqwest::Client,
    url: &str,
    start: u64,
    end: u64,
    got: &std::sync::atomic::AtomicU64,
    tx: &tokio::sync::mpsc::UnboundedSender<Result<bytes::Bytes, ClientError>>,
) -> Result<(), ClientError> {
    use std::sync::atomic::Ordering::Relaxed;
    let from = start + got.load(Relaxed);
    let resp = http.get(url).header("x-ms-range", format!("bytes={from}-{end}")).send().await.map_err(|e| transport(url, e))?;
    let mut resp = check(resp).await?;
    while let Some(piece) = resp.chunk().await.map_err(|e| transport(url, e))? {
        // An HTTP/2 stream may end with an empty frame: nothing to pass on.
        if !piece.is_empty() {
            got.fetch_add(piece.len() as u64, Relaxed);
            if tx.send(Ok(piece)).is_err() {
                // Nobody waits for the range any more.
                return Ok(());
            }
        }
    }
    let got = got.load(Relaxed);
    if got != end - start + 1 {
        return Err(ClientError::Transport {
            endpoint: named(url).to_string(),
            cause: format!("the connection ended after {got} of the range's {} bytes", end - start + 1),
        });
    }
    Ok(())
}

/// Writes all of `pieces`, several at a time (one writev for many small pieces).
pub(crate) fn write_pieces(f: &mut std::fs::File, pieces: &[bytes::Bytes]) -> std::io::Result<()> {
    let pieces: Vec<&bytes::Bytes> = pieces.iter().filter(|p| !p.is_empty()).collect();
    for group in pieces.chunks(64) {
        let mut slices: Vec<std::io::IoSlice> = group.iter().map(|p| std::io::IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = f.write_vectored(rest)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            std::io::IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}

/// Downloads a blob of known `size` and sha256 to `dest`, resuming a previous attempt and
/// skipping a file already there with the right content.
pub async fn download_file(
    http: &reqwest::Client,
    url: &str,
    dest: &Path,
    size: u64,
    expected_sha256: &str,
    progress: Progress,
) -> Result<Transfer, ClientError> {
    let io = |e: std::io::Error| ClientError::Local(format!("cannot write {}: {e}", dest.display()));
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    if tokio::fs::metadata(dest).await.map(|m| m.len() == size).unwrap_or(false) && sha256_file(dest).await? == expected_sha256 {
        progress(size);
        return Ok(Transfer { size, moved: 0, sha256: expected_sha256.to_string() });
    }
    let part = partial_path(dest);
    if size <= BLOCK_SIZE as u64 {
        return download_small(http, url, dest, &part, size, expected_sha256, progress).await;
    }
    // Ranges are written in order, so whatever a previous run left is a correct prefix.
    let (hasher, offset) = match tokio::fs::metadata(&part).await {
        Ok(m) if m.len() <= size => hash_prefix(&part).await?,
        _ => (Sha256::new(), 0),
    };
    progress(offset);
    // Written around the page cache where the file system allows (see direct.rs).
    let file = crate::direct::DownloadWriter::open(&part, offset).map_err(io)?;
    let mut ranges = (offset..size).step_by(BLOCK_SIZE).map(|s| (s, (s + BLOCK_SIZE as u64).min(size) - 1));
    // Hashing and writing run on two threads of their own, both fed the bytes in order, so that
    // the ranges keep arriving meanwhile (awaiting each write here would stall the fetches in
    // flight) and hashing (~0.5 s per GiB) does not wait for the page cache copy or the
    // reverse. The next range in order is passed on as it arrives, 1 MiB at a time, not once
    // it is whole: hashing, the slowest step, then never waits for a range's last bytes while
    // its first ones are there. Progress counts bytes written to the partial file, not bytes
    // received: what it shows is what a run interrupted then would keep (received ranges wait
    // in memory).
    let depth = CONCURRENCY * BLOCK_SIZE / BATCH;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Pieces>(depth);
    let (hash_tx, mut hash_rx) = tokio::sync::mpsc::channel::<Pieces>(depth);
    let hashing = tokio::task::spawn_blocking(move || {
        let mut h = hasher;
        while let Some(pieces) = hash_rx.blocking_recv() {
            pieces.iter().for_each(|p| h.update(p));
        }
        h
    });
    let dest_name = dest.display().to_string();
    let written_progress = progress.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<(), ClientError> {
        let mut f = file;
        let failed = |e: std::io::Error| ClientError::Local(format!("cannot write {dest_name}: {e}"));
        // Written data is flushed to disk in the background every 64 MiB, so the final fsync
        // has little left to do (what went through the page cache, and the file's size).
        let flusher_file = f.try_clone().map_err(failed)?;
        let (flush_tx, flush_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let flusher = std::thread::spawn(move || {
            while flush_rx.recv().is_ok() {
                let _ = flusher_file.sync_data();
            }
        });
        let mut since_flush = 0usize;
        let mut outcome = Ok(());
        while let Some(pieces) = rx.blocking_recv() {
            if let Err(e) = f.push(&pieces) {
                outcome = Err(failed(e));
                break;
            }
            let len: usize = pieces.iter().map(|p| p.len()).sum();
            written_progress(len as u64);
            since_flush += len;
            if since_flush >= 64 * 1024 * 1024 {
                since_flush = 0;
                let _ = flush_tx.try_send(());
            }
        }
        drop(flush_tx);
        let _ = flusher.join();
        outcome?;
        f.finish().map_err(failed)
    });
    let mut moved = 0;
    let mut fetch_error = None;
    let mut fetches = std::collections::VecDeque::with_capacity(CONCURRENCY);
    let start = |(s, e): (u64, u64)| fetch_range(http.clone(), url.to_string(), s, e);
    fetches.extend(ranges.by_ref().take(CONCURRENCY).map(start));
    // Passes `batch` on; false if the writer stopped (its error is reported below).
    let pass = |batch: Vec<bytes::Bytes>| {
        let (hash_tx, tx) = (&hash_tx, &tx);
        async move {
            let pieces: Pieces = batch.into();
            hash_tx.send(pieces.clone()).await.is_ok() && tx.send(pieces).await.is_ok()
        }
    };
    'ranges: while let Some(mut next) = fetches.pop_front() {
        fetches.extend(ranges.next().map(start));
        let (mut batch, mut batched) = (Vec::new(), 0);
        loop {
            match next.pieces.recv().await {
                Some(Ok(piece)) => {
                    batched += piece.len();
                    moved += piece.len() as u64;
                    batch.push(piece);
                    if batched >= BATCH {
                        batched = 0;
                        if !pass(std::mem::take(&mut batch)).await {
                            break 'ranges;
                        }
                    }
                }
                Some(Err(e)) => {
                    fetch_error = Some(e);
                    break 'ranges;
                }
                None => break,
            }
        }
        if !batch.is_empty() && !pass(batch).await {
            break;
        }
    }
    drop(fetches);
    drop((tx, hash_tx));
    let written = writer.await.map_err(joined)?;
    let hasher = hashing.await.map_err(joined)?;
    written?;
    if let Some(e) = fetch_error {
        // What was written is a correct prefix, which the next run carries on from.
        let kept = format!("the bytes received so far are kept in {}: run the command again to carry on from there", part.display());
        return Err(match e {
            ClientError::Transport { endpoint, cause } => ClientError::Transport { endpoint, cause: format!("{cause}; {kept}") },
            ClientError::Integrity(m) => ClientError::Integrity(format!("{m}; {kept}")),
            other => other,
        });
    }
    let got = hex(&hasher.finalize());
    if got != expected_sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(ClientError::Integrity(format!(
            "{}: the downloaded bytes have sha256 {got}, but the registry recorded {expected_sha256}; the partial file was removed, run again",
            dest.display()
        )));
    }
    tokio::fs::rename(&part, dest).await.map_err(io)?;
    Ok(Transfer { size, moved, sha256: got })
}

/// A file of one range: fetched into memory, hashed, written through the page cache and synced,
/// without the threads and the aligned buffer a big file's pipeline sets up (most of a small
/// file's time otherwise). A partial file left earlier is written over.
async fn download_small(
    http: &reqwest::Client,
    url: &str,
    dest: &Path,
    part: &Path,
    size: u64,
    expected_sha256: &str,
    progress: Progress,
) -> Result<Transfer, ClientError> {
    let mut pieces = Vec::new();
    if size > 0 {
        let mut fetch = fetch_range(http.clone(), url.to_string(), 0, size - 1);
        while let Some(piece) = fetch.pieces.recv().await {
            pieces.push(piece?);
        }
    }
    let got = hex(&pieces
        .iter()
        .fold(Sha256::new(), |mut h, p| {
            h.update(p);
            h
        })
        .finalize());
    if got != expected_sha256 {
        return Err(ClientError::Integrity(format!(
            "{}: the downloaded bytes have sha256 {got}, but the registry recorded {expected_sha256}; nothing was written, run again",
            dest.display()
        )));
    }
    let (part, dest) = (part.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let io = |e: std::io::Error| ClientError::Local(format!("cannot write {}: {e}", dest.display()));
        let mut f = std::fs::File::create(&part).map_err(io)?;
        write_pieces(&mut f, &pieces).map_err(io)?;
        f.sync_data().map_err(io)?;
        std::fs::rename(&part, &dest).map_err(io)
    })
    .await
    .map_err(joined)??;
    progress(size);
    Ok(Transfer { size, moved: size, sha256: got })
}

/// Files up to this size (one download range) move several at a time: at most
/// [`FILES_AT_ONCE`], and at most [`BYTES_AT_ONCE`] of them together; bigger ones one at a time,
/// each in blocks or ranges in parallel. A folder of many small files would otherwise take a
/// few round trips per file, one file after the other (a millisecond or two each here, more
/// over a real network).
pub const SMALL_FILE: u64 = BLOCK_SIZE as u64;
/// Small files moved at once.
pub const FILES_AT_ONCE: usize = 16;
/// Bytes of small files moved at once (each counts as at least 1 MiB): what they hold in memory.
pub const BYTES_AT_ONCE: u64 = 16 * 1024 * 1024;

/// Runs `each` over the files of `sizes` (by index), those of at most [`SMALL_FILE`] bytes
/// several at a time (see there), then the others one at a time; adds up what they return, and
/// stops at the first error (transfers under way are dropped).
async fn small_ones_at_once<F, Fut>(sizes: impl Iterator<Item = u64>, each: F) -> Result<u64, ClientError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<u64, ClientError>>,
{
    use futures_util::StreamExt;
    const MIB: u64 = 1024 * 1024;
    let sizes: Vec<u64> = sizes.collect();
    let small = (0..sizes.len()).filter(|&i| sizes[i] <= SMALL_FILE);
    let big = (0..sizes.len()).filter(|&i| sizes[i] > SMALL_FILE);
    let mut moved = 0;
    // One permit per MiB of the budget.
    let budget = tokio::sync::Semaphore::new((BYTES_AT_ONCE / MIB) as usize);
    let (budget, each, sizes) = (&budget, &each, &sizes);
    let within_budget = |i: usize| async move {
        let mib = sizes[i].div_ceil(MIB).clamp(1, BYTES_AT_ONCE / MIB) as u32;
        let _held = budget.acquire_many(mib).await.map_err(|e| ClientError::Local(format!("transfer budget: {e}")))?;
        each(i).await
    };
    let mut at_once = futures_util::stream::iter(small).map(within_budget).buffer_unordered(FILES_AT_ONCE);
    while let Some(done) = at_once.next().await {
        moved += done?;
    }
    for item in big {
        moved += each(item).await?;
    }
    Ok(moved)
}

/// A file of a folder upload: the local file, its path under the upload location, its size.
pub struct UploadItem {
    pub local: PathBuf,
    pub path: String,
    pub size: u64,
}

/// Uploads a folder's `files` under the folder SAS URL `sas_url` (see [`SMALL_FILE`] for the
/// order); returns the bytes sent.
pub async fn upload_files(http: &reqwest::Client, sas_url: &str, files: &[UploadItem], progress: Progress) -> Result<u64, ClientError> {
    small_ones_at_once(files.iter().map(|f| f.size), |i| {
        let f = &files[i];
        let (url, progress) = (blob_url(sas_url, &f.path), progress.clone());
        async move { upload_file(http, &url, &f.local, progress).await.map(|t| t.moved) }
    })
    .await
}

/// A file of a folder download: its blob URL (with the SAS), where it goes, its size and sha256.
pub struct DownloadItem {
    pub url: String,
    pub dest: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Downloads a folder's `files` (see [`SMALL_FILE`] for the order); returns the bytes fetched.
pub async fn download_files(http: &reqwest::Client, files: &[DownloadItem], progress: Progress) -> Result<u64, ClientError> {
    small_ones_at_once(files.iter().map(|f| f.size), |i| {
        let (f, progress) = (&files[i], progress.clone());
        async move { download_file(http, &f.url, &f.dest, f.size, &f.sha256, progress).await.map(|t| t.moved) }
    })
    .await
}

/// Names of the blobs under a container SAS URL whose names start with `prefix`.
pub async fn list_blobs(http: &reqwest::Client, container_sas_url: &str, prefix: &str) -> Result<Vec<String>, ClientError> {
    let (base, sas) = container_sas_url.split_once('?').unwrap_or((container_sas_url, ""));
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let url = format!("{base}?restype=container&comp=list&prefix={}&marker={}&{sas}", encode_path(prefix), encode_path(&marker));
        let text = retrying(named(&url), || async {
            let resp = http.get(&url).send().await.map_err(|e| transport(&url, e))?;
            check(resp).await?.text().await.map_err(|e| transport(&url, e))
        })
        .await?;
        for blob in text.split("<Blob>").skip(1) {
            if let Some(name) = blob.split("<Name>").nth(1).and_then(|n| n.split("</Name>").next()) {
                names.push(
                    name.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&"),
                );
            }
        }
        match text.split("<NextMarker>").nth(1).and_then(|m| m.split("</NextMarker>").next()) {
            Some(m) if !m.is_empty() => marker = m.to_string(),
            _ => return Ok(names),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request to a loopback port nobody listens on.
    #[tokio::test]
    async fn a_transport_error_names_the_blob_but_not_its_signature() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/acct/c/f.bin?sv=2025-01-05&sig=SECRETSIG");
        let e = crate::http_client(&url, None).unwrap().get(&url).send().await.unwrap_err();
        assert!(e.to_string().contains("SECRETSIG"), "reqwest's own message names the URL whole: {e}");
        let said = transport(&url, e).to_string();
        assert!(said.contains(&format!("127.0.0.1:{port}/acct/c/f.bin")) && !said.contains("SECRETSIG"), "{said}");
    }

    /// A blob server whose certificate the client does not trust: the download's range fails
    /// at its first try, as a TLS failure that says why, instead of after four retries.
    #[tokio::test]
    async fn an_untrusted_certificate_is_not_tried_again() {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        crate::install_crypto_provider();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![cert.cert.der().clone()], key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = handshakes.clone();
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = acceptor.accept(socket).await;
            }
        });
        let url = format!("https://127.0.0.1:{port}/acct/c/f.bin?sv=2025-01-05&sig=SECRETSIG");
        let mut fetch = fetch_range(crate::http_client(&url, None).unwrap(), url.clone(), 0, 9);
        let e = match fetch.pieces.recv().await {
            Some(Err(e)) => e,
            other => panic!("the range must fail: {other:?}"),
        };
        assert!(matches!(e, ClientError::Tls { .. }), "{e:?}");
        let said = e.to_string();
        assert!(said.contains("certificate") && !said.contains("SECRETSIG"), "{said}");
        assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 1, "tried once, not again");
        server.abort();
    }

    #[test]
    fn pieces_are_written_whole_and_in_order() {
        // 200 pieces of uneven sizes: more than one writev's worth, some empty, and a last
        // writev's worth that would be only empty pieces.
        let mut pieces: Vec<bytes::Bytes> =
            (0..200u32).map(|i| bytes::Bytes::from(vec![(i % 251) as u8; (i as usize * 37) % 5000])).collect();
        pieces.extend(std::iter::repeat_n(bytes::Bytes::new(), 70));
        let dir = std::env::temp_dir().join(format!("moat-pieces-{}", std::process::id()));
        let mut f = std::fs::File::create(&dir).unwrap();
        write_pieces(&mut f, &pieces).unwrap();
        drop(f);
        let want: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(std::fs::read(&dir).unwrap(), want);
        std::fs::remove_file(&dir).unwrap();
    }

    /// Files of up to 50,000 blocks of 4 MiB go in those; larger ones in the least whole MiB
    /// that fits them in 50,000 blocks.
    #[test]
    fn blocks_grow_only_past_the_block_limit() {
        let mib = 1024 * 1024u64;
        let max_blocks = MAX_BLOCKS as u64;
        assert_eq!(block_size(0), UPLOAD_BLOCK);
        assert_eq!(block_size(max_blocks * 4 * mib), UPLOAD_BLOCK);
        assert_eq!(block_size(max_blocks * 4 * mib + 1), 5 * mib as usize);
        for size in [max_blocks * 4 * mib + 1, 1 << 40, 5 << 40] {
            let b = block_size(size) as u64;
            assert!(size.div_ceil(b) <= max_blocks && b.is_multiple_of(mib), "{size}: {b}");
            assert!(size.div_ceil(b - mib) > max_blocks, "{size}: {b} is not the least");
        }
    }

    #[test]
    fn block_buffers_come_back_to_the_pool_empty() {
        let pool = BlockPool::new(UPLOAD_BLOCK);
        let mut held: Vec<PooledBlock> = (0..POOLED_BLOCKS + 3).map(|_| pool.take()).collect();
        held[0].buf.extend_from_slice(b"old bytes");
        let first = held[0].buf.as_ptr();
        drop(held.remove(0));
        let again = pool.take();
        assert_eq!(again.buf.as_ptr(), first, "the freed buffer is reused");
        assert!(again.buf.is_empty() && again.buf.capacity() == UPLOAD_BLOCK);
        drop(held);
        assert_eq!(pool.buffers.lock().unwrap().len(), POOLED_BLOCKS, "the pool keeps at most POOLED_BLOCKS");
    }
}
