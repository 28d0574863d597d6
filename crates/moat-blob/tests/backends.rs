//! One contract, three backends: the local file system, Azure Blob Storage (Azurite) and S3
//! (moto server). scripts/test.sh starts the emulators on loopback and sets MOAT_TEST_AZURITE
//! and MOAT_TEST_S3; without them those two tests say why they skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use moat_blob::{BlobError, BlobStore, Claimer, StoredObject};
use moat_types::Digest;
use moat_types::oci::{Algorithm, OciDigest};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn digest_of(b: &[u8]) -> Digest {
    Digest::from_bytes(Sha256::digest(b).into())
}

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Bytes that are not all alike, from a seed.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn read_all(mut r: moat_blob::BlobReader) -> Vec<u8> {
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    out
}

fn tmp_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("tmp")).map(|d| d.count()).unwrap_or(0)
}

/// A claimer that records what it is told, and refuses when asked to.
#[derive(Default)]
struct Claims {
    seen: Mutex<Vec<Digest>>,
    refuse: AtomicBool,
}

impl Claimer for Claims {
    fn claim<'a>(&'a self, d: &'a Digest) -> Pin<Box<dyn Future<Output = Result<(), BlobError>> + Send + 'a>> {
        Box::pin(async move {
            if self.refuse.load(Ordering::SeqCst) {
                return Err(BlobError::Store("claim refused".into()));
            }
            self.seen.lock().unwrap().push(*d);
            Ok(())
        })
    }
}

/// What every backend must do. `open` opens the same store afresh (a restart, or another node).
/// A request body that breaks after a few bytes (a client that went away).
struct FailsAfter {
    left: Vec<u8>,
}

impl tokio::io::AsyncRead for FailsAfter {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left.is_empty() {
            return std::task::Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the client went away")));
        }
        let n = self.left.len().min(buf.remaining());
        buf.put_slice(&self.left[..n]);
        self.left.drain(..n);
        std::task::Poll::Ready(Ok(()))
    }
}

async fn contract(name: &str, url: Option<String>, options: Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let open = || BlobStore::open_with(dir.path(), url.as_deref(), &options);
    let store = open().await.unwrap();
    println!("{name}: bytes in {}", store.describe());

    // Put, read back, store once.
    let small = data(100_000, 1);
    let d = digest_of(&small);
    let first = store.put(&small[..], Some(&d), u64::MAX).await.unwrap();
    assert_eq!((first.digest, first.size, first.created), (d, small.len() as u64, true), "{name}");
    assert!(!store.put(&small[..], None, u64::MAX).await.unwrap().created, "{name}: equal bytes are stored once");
    let (r, size) = store.get(&d).await.unwrap().unwrap();
    assert_eq!(size, small.len() as u64);
    assert_eq!(read_all(r).await, small, "{name}");
    for start in [1u64, 4096, 99_999, 100_000] {
        let (r, size) = store.get_at(&d, start).await.unwrap().unwrap();
        assert_eq!(size, small.len() as u64);
        assert_eq!(read_all(r).await, &small[start as usize..], "{name}: from {start}");
    }
    // The empty content is content too.
    let empty = store.put(&b""[..], None, u64::MAX).await.unwrap();
    assert_eq!(empty.digest, digest_of(b""));
    assert_eq!(read_all(store.get(&empty.digest).await.unwrap().unwrap().0).await, b"");

    // Larger than a part: the multipart path, streamed; seen by a second opening.
    let big = data(20 * 1024 * 1024 + 12_345, 2);
    let big_d = digest_of(&big);
    assert!(store.put(&big[..], Some(&big_d), u64::MAX).await.unwrap().created);
    let other = open().await.unwrap();
    let (r, size) = other.get(&big_d).await.unwrap().unwrap();
    assert_eq!(size, big.len() as u64);
    assert!(read_all(r).await == big, "{name}: the large content reads back equal through another opening");
    let (r, _) = other.get_at(&big_d, 9 * 1024 * 1024 + 7).await.unwrap().unwrap();
    assert!(read_all(r).await == big[9 * 1024 * 1024 + 7..], "{name}: a range of the large content");

    // A wrong digest or an oversized body stores nothing.
    let wrong = digest_of(b"something else");
    match store.put(&b"payload"[..], Some(&wrong), u64::MAX).await {
        Err(BlobError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, wrong.to_string());
            assert_eq!(actual, digest_of(b"payload").to_string());
        }
        r => panic!("{name}: {r:?}"),
    }
    assert!(store.get(&digest_of(b"payload")).await.unwrap().is_none(), "{name}");
    assert!(matches!(store.put(&big[..], None, 1024).await, Err(BlobError::TooLarge { limit: 1024 })), "{name}");
    assert!(store.get(&digest_of(&big[..1024])).await.unwrap().is_none(), "{name}");
    assert_eq!(tmp_files(dir.path()), 0, "{name}: no temporary file is left");

    // Parts read and hash as one, from any offset.
    let a = store.put(&b"0123456789"[..], None, u64::MAX).await.unwrap();
    let b = store.put(&b"abcdef"[..], None, u64::MAX).await.unwrap();
    let whole = b"0123456789abcdef0123456789";
    assert_eq!(store.hash_parts(&[a.digest, b.digest, a.digest]).await.unwrap(), (digest_of(whole), 26), "{name}");
    let parts = vec![(a.digest, a.size), (b.digest, b.size), (a.digest, a.size)];
    for start in [0u64, 3, 10, 12, 16, 25] {
        assert_eq!(read_all(store.parts_reader(parts.clone(), start)).await, &whole[start as usize..], "{name}: parts from {start}");
    }
    let missing = digest_of(b"never stored");
    assert!(store.hash_parts(&[a.digest, missing]).await.is_err(), "{name}: a missing part is an error");

    // Upload sessions: appended in order, verified at the end, resumable from another opening.
    store.upload_start("s1").await.unwrap();
    assert_eq!(store.upload_append("s1", 0, &b"hello "[..], 1 << 30).await.unwrap(), 6);
    assert_eq!(store.upload_append("s1", 6, &b""[..], 1 << 30).await.unwrap(), 6, "{name}: an empty chunk adds nothing");
    assert_eq!(other.upload_append("s1", 6, &b"world"[..], 1 << 30).await.unwrap(), 11, "{name}: another node goes on");
    let hw = OciDigest::of(Algorithm::Sha256, b"hello world");
    assert!(matches!(store.upload_finish("s1", 11, &OciDigest::of(Algorithm::Sha256, b"x")).await, Err(BlobError::DigestMismatch { .. })));
    let done = store.upload_finish("s1", 11, &hw).await.unwrap();
    assert_eq!((done.size, done.created, done.digest), (11, true, digest_of(b"hello world")), "{name}");
    assert_eq!(read_all(other.get(&done.digest).await.unwrap().unwrap().0).await, b"hello world");
    assert!(!store.upload_ids().await.unwrap().contains(&"s1".to_string()), "{name}: a finished session leaves nothing");

    // A chunk written but never acknowledged (the client saw an error) is cut by the next
    // append at the acknowledged offset.
    store.upload_start("s2").await.unwrap();
    store.upload_append("s2", 0, &b"abc"[..], 1 << 30).await.unwrap();
    store.upload_append("s2", 3, &b"GARBAGE"[..], 1 << 30).await.unwrap();
    assert_eq!(other.upload_append("s2", 3, &b"def"[..], 1 << 30).await.unwrap(), 6);
    let s512 = other.upload_finish("s2", 6, &OciDigest::of(Algorithm::Sha512, b"abcdef")).await.unwrap();
    assert_eq!(s512.digest, digest_of(b"abcdef"), "{name}: keyed by sha256 whatever the client's algorithm");

    // A session larger than a part, in two chunks, finished by another opening.
    other.upload_start("s3").await.unwrap();
    let cut = 9 * 1024 * 1024 + 1;
    assert_eq!(other.upload_append("s3", 0, &big[..cut], 1 << 30).await.unwrap(), cut as u64);
    assert_eq!(store.upload_append("s3", cut as u64, &big[cut..], 1 << 30).await.unwrap(), big.len() as u64);
    let s = open().await.unwrap().upload_finish("s3", big.len() as u64, &OciDigest::from_sha256(&big_d)).await.unwrap();
    assert_eq!((s.digest, s.created), (big_d, false), "{name}: equal bytes were there already");

    // Limits, unknown and malformed IDs, discarding.
    store.upload_start("s4").await.unwrap();
    assert!(matches!(store.upload_append("s4", 0, &b"0123456789"[..], 5).await, Err(BlobError::TooLarge { .. })), "{name}");
    assert!(matches!(store.upload_append("../x", 0, &b"x"[..], 5).await, Err(BlobError::UnknownUpload(_))), "{name}");
    store.upload_append("s4", 0, &b"keep"[..], 5).await.unwrap();
    assert!(store.upload_ids().await.unwrap().contains(&"s4".to_string()), "{name}");
    assert!(store.upload_discard("s4").await.unwrap());
    assert!(!store.upload_ids().await.unwrap().contains(&"s4".to_string()), "{name}");

    if url.as_deref().is_some_and(|u| !u.starts_with("file://")) {
        // Object stores serve several nodes (a file URL is the local store, one node's, whose
        // appends a per-session lock keeps apart). Node A has written the chunk at 3 and is about to
        // record it; a client retry reaches node B, whose write of the same chunk fails midway.
        // B must not have removed A's chunk on the way: A's acknowledgement wins, and the
        // session must still read back whole.
        store.upload_start("s5").await.unwrap();
        assert_eq!(store.upload_append("s5", 0, &b"abc"[..], 1 << 30).await.unwrap(), 3);
        assert_eq!(store.upload_append("s5", 3, &b"defg"[..], 1 << 30).await.unwrap(), 7);
        let failing = FailsAfter { left: b"de".to_vec() };
        assert!(other.upload_append("s5", 3, failing, 1 << 30).await.is_err(), "{name}");
        let s5 = other.upload_finish("s5", 7, &OciDigest::of(Algorithm::Sha256, b"abcdefg")).await.unwrap();
        assert_eq!(s5.size, 7, "{name}");
    }

    // Pairing and presence, on every backend: the owner recorded, what is held.
    assert_eq!(store.owner().await.unwrap(), None, "{name}: no owner yet");
    store.set_owner("database-1").await.unwrap();
    assert_eq!(other.owner().await.unwrap().as_deref(), Some("database-1"), "{name}: seen by another opening");
    assert!(store.holds(&d).await.unwrap() && store.holds_any().await.unwrap(), "{name}");
    assert!(!store.holds(&missing).await.unwrap(), "{name}");

    if store.is_remote() {
        // What a collection judges: every content, with its size, written just now.
        assert!(!store.collects_garbage(), "{name}: not collected until writers claim what they store");
        let listed: Vec<StoredObject> = store.stored().try_collect().await.unwrap();
        let one = listed.iter().find(|o| o.digest == d).unwrap_or_else(|| panic!("{name}: {listed:?}"));
        assert_eq!(one.size, small.len() as u64, "{name}");
        let skew = one.modified.duration_since(SystemTime::now()).or_else(|e| Ok::<_, ()>(e.duration())).unwrap();
        assert!(skew < Duration::from_secs(120), "{name}: written {skew:?} from now");
        assert!(listed.iter().any(|o| o.digest == big_d && o.size == big.len() as u64), "{name}");
        assert!(listed.iter().all(|o| o.digest != missing), "{name}");
        // A claimer hears of each content before the store is asked for it, found or new, and
        // its refusal fails the write before anything is stored.
        let claims = Arc::new(Claims::default());
        let mut claimed = open().await.unwrap();
        claimed.set_claimer(claims.clone());
        assert!(claimed.collects_garbage(), "{name}");
        assert!(!claimed.put(&small[..], None, u64::MAX).await.unwrap().created);
        let fresh = data(1000, 9);
        assert!(claimed.put(&fresh[..], None, u64::MAX).await.unwrap().created);
        assert_eq!(*claims.seen.lock().unwrap(), vec![d, digest_of(&fresh)], "{name}");
        claims.refuse.store(true, Ordering::SeqCst);
        let refused = data(1000, 10);
        assert!(matches!(claimed.put(&refused[..], None, u64::MAX).await, Err(BlobError::Store(_))), "{name}");
        assert!(!store.holds(&digest_of(&refused)).await.unwrap(), "{name}: nothing stored without the claim");
    } else {
        assert!(store.collects_garbage(), "{name}");
        assert!(store.stored().try_next().await.is_err(), "{name}: the local store collects on its own");
    }

    // Deletes.
    assert!(store.delete(&d).await.unwrap());
    assert!(!store.delete(&d).await.unwrap(), "{name}: deleting twice reports nothing there");
    assert!(other.get(&d).await.unwrap().is_none(), "{name}");
    // A collection's delete of what it just listed: no question asked first.
    let listed = store.put(&b"listed, then collected"[..], None, u64::MAX).await.unwrap().digest;
    assert!(store.delete_listed(&listed).await.unwrap(), "{name}");
    assert!(other.get(&listed).await.unwrap().is_none(), "{name}");
    // Deleting it again: Azure and the disk say it is not there; S3 answers success anyway.
    assert_eq!(store.delete_listed(&listed).await.unwrap(), name == "s3", "{name}");
    assert_eq!(tmp_files(dir.path()), 0, "{name}: no temporary file is left");
}

#[tokio::test]
async fn contract_local() {
    contract("local", None, vec![]).await;
}

#[tokio::test]
async fn contract_file_url() {
    let dir = tempfile::tempdir().unwrap();
    contract("file URL", Some(format!("file://{}", dir.path().display())), vec![]).await;
    assert!(dir.path().join("sha256").is_dir(), "the bytes went where the URL says");
}

#[tokio::test]
async fn contract_azure_blob_storage() {
    let Ok(endpoint) = std::env::var("MOAT_TEST_AZURITE") else {
        eprintln!("SKIP: MOAT_TEST_AZURITE is not set (scripts/test.sh starts Azurite and sets it)");
        return;
    };
    let options =
        opts(&[("account_name", "devstoreaccount1"), ("access_key", AZURITE_KEY), ("endpoint", &endpoint), ("allow_http", "true")]);
    contract("azure", Some(format!("azure://moat-test/{}", uuid::Uuid::new_v4())), options).await;
}

#[tokio::test]
async fn contract_s3() {
    let Ok(endpoint) = std::env::var("MOAT_TEST_S3") else {
        eprintln!("SKIP: MOAT_TEST_S3 is not set (scripts/test.sh starts moto server and sets it)");
        return;
    };
    let options = opts(&[
        ("access_key_id", "test"),
        ("secret_access_key", "test"),
        ("region", "us-east-1"),
        ("endpoint", &endpoint),
        ("allow_http", "true"),
    ]);
    contract("s3", Some(format!("s3://moat-test/{}", uuid::Uuid::new_v4())), options).await;
}

#[tokio::test]
async fn bad_urls_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        ("ftp://x", "unknown scheme"),
        ("azure://", "name is missing"),
        ("file://relative/path", "absolute path"),
        ("s3:/bucket", "expected azure://"),
    ] {
        match BlobStore::open_with(dir.path(), Some(url), &[]).await {
            Err(BlobError::Config(msg)) => assert!(msg.contains(says), "{url}: {msg}"),
            r => panic!("{url}: {r:?}"),
        }
    }
    // A container that is not there fails at opening, not at the first upload.
    let Ok(endpoint) = std::env::var("MOAT_TEST_S3") else {
        eprintln!("SKIP (in part): MOAT_TEST_S3 is not set, so a missing bucket is not tried");
        return;
    };
    let options = opts(&[
        ("access_key_id", "k"),
        ("secret_access_key", "s"),
        ("region", "us-east-1"),
        ("endpoint", &endpoint),
        ("allow_http", "true"),
    ]);
    match BlobStore::open_with(dir.path(), Some("s3://no-such-bucket"), &options).await {
        Err(BlobError::Config(msg)) => assert!(msg.contains("does not answer") && msg.contains("s3://no-such-bucket"), "{msg}"),
        r => panic!("{r:?}"),
    }
}
