//! The blob plane: the real azure-storage-blob SDK uploads (single put and parallel blocks),
//! lists, downloads (parallel ranges) and deletes through a SAS moat signed; and every bad SAS
//! or request is refused with Azure's XML error and stores nothing.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Http, Server, registry_body};
use serde_json::json;

async fn sas(http: &Http, account_id: &str, resource: &str, sr: &str, sp: &str, secs: i64) -> String {
    let expiry =
        (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let r = http
        .call(
            "POST",
            &format!("{account_id}/ListServiceSas"),
            Some(&json!({"canonicalizedResource": resource, "signedResource": sr, "signedPermission": sp, "signedExpiry": expiry})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["serviceSasToken"].as_str().unwrap().to_string()
}

/// Creates registry `name`; returns its storage account's ARM ID and name.
async fn storage_account(server: &Server, http: &Http, name: &str) -> (String, String) {
    let reg = http.call("PUT", &server.registry_path("default", name), Some(&registry_body("eastus")), &[]).await;
    assert_eq!(reg.status, 201, "{}", reg.text);
    let sa_id = reg.body["properties"]["regionDetails"][0]["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]["resourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let account = sa_id.rsplit('/').next().unwrap().to_string();
    (sa_id, account)
}

/// The server's memory moves in 4 KiB pages, not 2 MiB ones: with transparent huge pages, each
/// 1 MiB transfer buffer kept a whole huge page resident (docs/BENCHMARKS.md, session 12).
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        eprintln!("SKIP: MIMALLOC_ALLOW_THP is set in the environment, which leaves huge pages to mimalloc");
        return;
    }
    let server = Server::start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) else {
        eprintln!("SKIP: this kernel's /proc/PID/status has no THP_enabled line (Linux before 5.0)");
        return;
    };
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "`moat serve` runs with transparent huge pages off: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_sdk_uploads_and_downloads_through_a_sas() {
    let server = Server::start();
    let http = server.http();
    let (sa_id, account) = storage_account(&server, &http, "blobreg").await;
    let token = sas(&http, &sa_id, &format!("/blob/{account}/upload-1"), "c", "racwdl", 3600).await;

    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/blob_sdk.py"))
        .args([&server.url, &account, "upload-1", &token])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the SDK script failed (scripts/test.sh installs azure-storage-blob==12.31.1):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["big_bytes"], 3 * 1024 * 1024 + 123);

    // Equal bytes are stored once: the data directory holds one copy of the big blob.
    let base = format!("{}/{account}/upload-1", server.url);
    let anon = http.anonymous();
    let put = |name: &str, token: &str, body: &[u8]| {
        let url = format!("{base}/{name}?{token}");
        let body = body.to_vec();
        let a = Http { base: anon.base.clone(), token: None, client: anon.client.clone() };
        async move { a.raw("PUT", &url, Some(body), Some("application/octet-stream"), &[("x-ms-blob-type", "BlockBlob")]).await }
    };
    assert_eq!(put("copy-a", &token, b"same bytes").await.status, 201);
    assert_eq!(put("copy-b", &token, b"same bytes").await.status, 201);
    let count = walk(&server.dir.join("blobs/sha256"));
    assert_eq!(put("copy-c", &token, b"same bytes").await.status, 201);
    assert_eq!(walk(&server.dir.join("blobs/sha256")), count, "equal bytes are stored once");

    // Listing with a delimiter pages by entries: a folder is one prefix, listed once.
    for name in ["tree/a/1", "tree/a/2", "tree/a/3", "tree/b", "tree/c/1", "tree/d"] {
        assert_eq!(put(name, &token, name.as_bytes()).await.status, 201);
    }
    let mut seen = Vec::new();
    let mut marker = String::new();
    for _ in 0..10 {
        let url = format!("{base}?restype=container&comp=list&prefix=tree/&delimiter=/&maxresults=2&marker={marker}&{token}");
        let r = anon.raw("GET", &url, None, None, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for chunk in r.text.split("<Name>").skip(1) {
            seen.push(chunk.split("</Name>").next().unwrap().to_string());
        }
        marker = r.text.split("<NextMarker>").nth(1).and_then(|m| m.split("</NextMarker>").next()).unwrap_or("").to_string();
        let enc: String = marker.bytes().map(|b| format!("%{b:02X}")).collect();
        marker = enc;
        if marker.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["tree/a/", "tree/b", "tree/c/", "tree/d"]);
    let count = walk(&server.dir.join("blobs/sha256"));

    // Refusals: Azure's XML error with x-ms-error-code, and nothing stored.
    let read_only = sas(&http, &sa_id, &format!("/blob/{account}/upload-1"), "c", "rl", 3600).await;
    let other_container = sas(&http, &sa_id, &format!("/blob/{account}/upload-2"), "c", "racwdl", 3600).await;
    let short = sas(&http, &sa_id, &format!("/blob/{account}/upload-1"), "c", "racwdl", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("no SAS", format!("{base}/x"), 403, "AuthenticationFailed"),
        ("read-only SAS", format!("{base}/x?{read_only}"), 403, "AuthorizationPermissionMismatch"),
        ("SAS of another container", format!("{base}/x?{other_container}"), 403, "AuthenticationFailed"),
        ("altered SAS", format!("{base}/x?{}", token.replace("sp=racwdl", "sp=rwdl")), 403, "AuthenticationFailed"),
        ("expired SAS", format!("{base}/x?{short}"), 403, "AuthenticationFailed"),
        ("escaping name (encoded, since clients normalise ../)", format!("{base}/a%2F..%2Fx?{token}"), 400, "InvalidResourceName"),
        ("bad container name", format!("{}/{account}/Upload_1/x?{token}", server.url), 400, "InvalidResourceName"),
    ];
    for (what, url, status, code) in cases {
        let r = anon.raw("PUT", &url, Some(b"nope".to_vec()), Some("application/octet-stream"), &[("x-ms-blob-type", "BlockBlob")]).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert_eq!(r.header("x-ms-error-code").as_deref(), Some(code), "{what}: {}", r.text);
        assert!(r.text.starts_with("<?xml") && r.text.contains(&format!("<Code>{code}</Code>")), "{what}: {}", r.text);
    }
    assert!(walk(&server.dir.join("blobs/sha256")) == count, "refused uploads stored nothing");
    let r = anon
        .raw(
            "PUT",
            &format!("{base}/x?{token}"),
            Some(b"x".to_vec()),
            Some("application/octet-stream"),
            &[("x-ms-blob-type", "AppendBlob")],
        )
        .await;
    assert_eq!(r.header("x-ms-error-code").as_deref(), Some("UnsupportedBlobType"));
    let r = anon
        .raw(
            "PUT",
            &format!("{base}/x?comp=blocklist&{token}"),
            Some(b"<BlockList><Latest>bm9wZQ==</Latest></BlockList>".to_vec()),
            Some("application/xml"),
            &[],
        )
        .await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("InvalidBlockList")), "{}", r.text);
    let r = anon.raw("GET", &format!("{base}/missing?{token}"), None, None, &[]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (404, Some("BlobNotFound")));
    let r = anon.raw("GET", &format!("{base}/missing?comp=blocklist&blocklisttype=uncommitted&{token}"), None, None, &[]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (404, Some("BlobNotFound")), "no blob and no blocks");
    // A container nothing was ever written to does not exist: listing it, reading or deleting a
    // blob in it is ContainerNotFound, as in Azure, not an empty list or BlobNotFound.
    let never = sas(&http, &sa_id, &format!("/blob/{account}/never-written"), "c", "rld", 3600).await;
    let never_base = format!("{}/{account}/never-written", server.url);
    for (method, url) in [
        ("GET", format!("{never_base}?restype=container&comp=list&{never}")),
        ("GET", format!("{never_base}/x?{never}")),
        ("HEAD", format!("{never_base}/x?{never}")),
        ("GET", format!("{never_base}/x?comp=blocklist&blocklisttype=uncommitted&{never}")),
        ("DELETE", format!("{never_base}/x?{never}")),
    ] {
        let r = anon.raw(method, &url, None, None, &[]).await;
        assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (404, Some("ContainerNotFound")), "{method} {url}: {}", r.text);
    }
    let r = anon.raw("GET", &format!("{base}/x?comp=blocklist&blocklisttype=latest&{token}"), None, None, &[]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("InvalidQueryParameterValue")), "{}", r.text);
    let r = anon.raw("GET", &format!("{base}/copy-a?{token}"), None, None, &[("x-ms-range", "bytes=100-200")]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (416, Some("InvalidRange")), "{}", r.text);
    assert_eq!(r.header("content-range").as_deref(), Some("bytes */10"));
    let huge = format!("<BlockList><Latest>bm9wZQ==</Latest>{}</BlockList>", " ".repeat(8 * 1024 * 1024));
    let r = anon.raw("PUT", &format!("{base}/x?comp=blocklist&{token}"), Some(huge.into_bytes()), Some("application/xml"), &[]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (413, Some("RequestBodyTooLarge")), "{}", r.text);
    // A Put Blob of `body` to `name` with one more header.
    let put_with = |name: &str, body: &[u8], extra: (&'static str, &'static str)| {
        let (url, body) = (format!("{base}/{name}?{token}"), body.to_vec());
        let a = Http { base: anon.base.clone(), token: None, client: anon.client.clone() };
        async move { a.raw("PUT", &url, Some(body), Some("application/octet-stream"), &[("x-ms-blob-type", "BlockBlob"), extra]).await }
    };
    // Conditions that fail change nothing; a date that is not an HTTP date is named.
    let r = put_with("x", b"new", ("if-match", "\"0xNOTTHEONE\"")).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (412, Some("ConditionNotMet")), "{}", r.text);
    assert_eq!(anon.raw("GET", &format!("{base}/x?{token}"), None, None, &[]).await.status, 404, "a failed If-Match created nothing");
    // A body whose MD5 is not the announced one is refused, and nothing of it is kept: Put Blob,
    // Put Block, and Put Block staged in place (moat's offset extension).
    let md5_of_other = "kAFQmDzST7DWlj99KOF/cg=="; // MD5 of "abc"
    let r = put_with("md5.bin", b"abd", ("content-md5", md5_of_other)).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("Md5Mismatch")), "{}", r.text);
    assert_eq!(anon.raw("GET", &format!("{base}/md5.bin?{token}"), None, None, &[]).await.status, 404);
    let r = put_with("md5.bin", b"abc", ("content-md5", md5_of_other)).await;
    assert_eq!((r.status, r.header("content-md5").as_deref()), (201, Some(md5_of_other)), "{}", r.text);
    for offset in [None, Some("0")] {
        let mut headers = vec![("content-md5", md5_of_other)];
        headers.extend(offset.map(|o| ("x-moat-block-offset", o)));
        let r = anon
            .raw("PUT", &format!("{base}/md5-blocks.bin?comp=block&blockid=YmxrMQ%3D%3D&{token}"), Some(b"abd".to_vec()), None, &headers)
            .await;
        assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("Md5Mismatch")), "offset {offset:?}: {}", r.text);
        let listed =
            anon.raw("GET", &format!("{base}/md5-blocks.bin?comp=blocklist&blocklisttype=uncommitted&{token}"), None, None, &[]).await;
        assert!(!listed.text.contains("YmxrMQ"), "a refused block is not staged: {}", listed.text);
    }
    // A body of unknown length (sent in chunks) is refused with Azure's 411, for Put Blob and
    // Put Block, and stores nothing.
    for (name, query) in [("chunked.bin", ""), ("chunked-blocks.bin", "comp=block&blockid=YmxrMQ%3D%3D&")] {
        let url = format!("{base}/{name}?{query}{token}");
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H", "x-ms-blob-type: BlockBlob"])
            .args(["-H", "Transfer-Encoding: chunked", "--data-binary", "abc", &url])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "411", "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let listed = anon.raw("GET", &format!("{base}/{name}?comp=blocklist&blocklisttype=uncommitted&{token}"), None, None, &[]).await;
        assert_eq!(listed.status, 404, "{name}: nothing staged or stored: {}", listed.text);
    }
    // All the block IDs of one blob have one length: a block whose ID is longer than one staged
    // before is refused, and the staged one stays.
    let block = |id: &str| {
        let url = format!("{base}/ids.bin?comp=block&blockid={id}&{token}");
        let a = Http { base: anon.base.clone(), token: None, client: anon.client.clone() };
        async move { a.raw("PUT", &url, Some(b"abc".to_vec()), None, &[]).await }
    };
    assert_eq!(block("YmxrMQ%3D%3D").await.status, 201);
    let r = block("YmxrMTAwMA%3D%3D").await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("InvalidBlobOrBlock")), "{}", r.text);
    let listed = anon.raw("GET", &format!("{base}/ids.bin?comp=blocklist&blocklisttype=uncommitted&{token}"), None, None, &[]).await;
    assert!(listed.text.contains("YmxrMQ==") && !listed.text.contains("YmxrMTAwMA"), "{}", listed.text);
    let r = put_with("md5.bin", b"abc", ("content-md5", "not base64!")).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("InvalidMd5")), "{}", r.text);
    let r = anon.raw("GET", &format!("{base}/md5.bin?{token}"), None, None, &[("x-ms-range-get-content-md5", "true")]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("InvalidHeaderValue")), "a whole blob has no range MD5");
    let r = anon
        .raw("GET", &format!("{base}/md5.bin?{token}"), None, None, &[("x-ms-range-get-content-md5", "true"), ("x-ms-range", "bytes=0-2")])
        .await;
    assert_eq!((r.status, r.header("content-md5").as_deref(), r.text.as_str()), (206, Some(md5_of_other), "abc"));
    let r = anon.raw("GET", &format!("{base}/copy-a?{token}"), None, None, &[("if-modified-since", "yesterday")]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("InvalidHeaderValue")), "{}", r.text);
    assert!(r.text.contains("if-modified-since"), "{}", r.text);

    // The SAS decisions are in the activity log.
    let log = http
        .get(&format!(
            "{}/providers/Microsoft.Insights/eventtypes/management/values?$top=1000&$filter=result eq 'denied'",
            server.sub_path()
        ))
        .await;
    let rules: Vec<&str> = log.body["value"].as_array().unwrap().iter().map(|e| e["rule"].as_str().unwrap()).collect();
    assert!(rules.iter().any(|r| r.contains("expired")) && rules.iter().any(|r| r.contains("permission")), "{rules:?}");

    // ListServiceSas needs more than Reader, and refuses bad requests.
    let r = http
        .call("POST", &format!("{sa_id}/ListServiceSas"), Some(&json!({"canonicalizedResource": "/blob/other/x", "signedResource": "c", "signedPermission": "r", "signedExpiry": "2999-01-01T00:00:00Z"})), &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

/// Where the local store under data directory `data` keeps the bytes whose sha256 is `sha`
/// (hex), as docs/OPERATIONS.md lays it out.
fn stored_file(data: &std::path::Path, sha: &str) -> std::path::PathBuf {
    data.join("blobs/sha256").join(&sha[..2]).join(sha)
}

/// The sha256 of `bytes`, in hex.
fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()).unwrap_or(0)
}

/// Put Block List records the sha256 of the blocks it names, in its order. With moat's
/// `x-moat-block-offset` hint, blocks are hashed ahead as they arrive (prehash.rs); the commit
/// must still be right whenever the hint and the list disagree: a list in another order, a block
/// staged again with other bytes after it was hashed, a list shorter than what was staged, a
/// wrong hint, no hint; and blocks arriving concurrently. A hint that is not a number is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_blobs_hash_right_whatever_order_their_blocks_arrive_in() {
    let server = Server::start();
    let http = server.http();
    let (b, _) = Blocks::new(&server, &http, "blockreg").await;
    let at = |i: usize| Some(Blocks::offset(i));

    // In order with hints, one at a time: everything is hashed ahead.
    for i in 0..6 {
        b.stage("ordered", i, 0, at(i)).await;
    }
    b.commit("ordered", &[0, 1, 2, 3, 4, 5], &[0; 6]).await;
    // Staged in order, committed in another.
    for i in 0..6 {
        b.stage("reordered", i, 0, at(i)).await;
    }
    b.commit("reordered", &[0, 2, 1, 3, 5, 4], &[0; 6]).await;
    // Block 1 staged again with other bytes after it was hashed.
    for i in 0..4 {
        b.stage("restaged", i, 0, at(i)).await;
    }
    b.stage("restaged", 1, 9, at(1)).await;
    b.commit("restaged", &[0, 1, 2, 3], &[0, 9, 0, 0]).await;
    // Fewer blocks committed than staged.
    for i in 0..5 {
        b.stage("shorter", i, 0, at(i)).await;
    }
    b.commit("shorter", &[0, 1, 2], &[0; 3]).await;
    // Hints that lie (block 2 claims block 1's place), and no hints at all.
    for (i, hint) in [(0, at(0)), (2, at(1)), (1, at(2)), (3, at(3))] {
        b.stage("lying", i, 0, hint).await;
    }
    b.commit("lying", &[0, 1, 2, 3], &[0; 4]).await;
    for i in 0..4 {
        b.stage("unhinted", i, 0, None).await;
    }
    b.commit("unhinted", &[0, 1, 2, 3], &[0; 4]).await;
    // Sixteen blocks at once, finishing in whatever order.
    let mut at_once = tokio::task::JoinSet::new();
    for i in 0..16 {
        let b = b.clone();
        at_once.spawn(async move { b.stage("concurrent", i, 0, Some(Blocks::offset(i))).await });
    }
    while let Some(done) = at_once.join_next().await {
        done.unwrap();
    }
    let concurrent = b.commit("concurrent", &(0..16).collect::<Vec<_>>(), &[0; 16]).await;
    // The same name uploaded again: a fresh running hash (and staging file), not the old one's.
    for i in 0..3 {
        b.stage("ordered", i, 5, at(i)).await;
    }
    let again = b.commit("ordered", &[0, 1, 2], &[5; 3]).await;
    // A Put Blob over staged blocks drops them, and their staging file.
    for i in 0..2 {
        b.stage("replaced", i, 0, at(i)).await;
    }
    let url = format!("{}/replaced?{}", b.base, b.token);
    let r = b.anon.raw("PUT", &url, Some(b"whole".to_vec()), Some("text/plain"), &[("x-ms-blob-type", "BlockBlob")]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Blocks written in place became one stored file (linked, or written out whole when the
    // list did not match their places); none of the staging files is left.
    for sha in [&again, &concurrent] {
        let stored = stored_file(&server.dir, sha);
        assert!(stored.is_file(), "{} is stored whole", stored.display());
    }
    assert_eq!(walk(&server.dir.join("blobs/staging")), 0, "committed blobs leave no staging file");

    let url = format!("{}/bad?comp=block&blockid={}&{}", b.base, urlencode(&Blocks::id(0)), b.token);
    let r = b.anon.raw("PUT", &url, Some(b"x".to_vec()), Some("application/octet-stream"), &[("x-moat-block-offset", "-1")]).await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (400, Some("InvalidHeaderValue")), "{}", r.text);
    let r = b.anon.raw("GET", &format!("{}/bad?comp=blocklist&blocklisttype=uncommitted&{}", b.base, b.token), None, None, &[]).await;
    assert_eq!(r.status, 404, "the refused block was not staged: {}", r.text);
}

/// Blocks written in place become the stored blob by a link (the stored file is the staging
/// file: same inode), and survive a crash: after a SIGKILL and a restart, the blocks staged
/// before it are still there, a list of exactly them is still linked, and an upload continued
/// after the restart completes (its later blocks go to a new staging file, so the commit writes
/// the blob out whole). A staging file no block is in — what a crash between writing a block and
/// recording it leaves — is removed at the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_written_in_place_are_linked_and_survive_a_crash() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[]);
    let http = server.http();
    let (b, account) = Blocks::new(&server, &http, "crashreg").await;
    let staging = dir.join("blobs/staging");
    let inodes = || -> Vec<u64> { std::fs::read_dir(&staging).unwrap().map(|e| e.unwrap().metadata().unwrap().ino()).collect() };
    let stored_inode = |sha: &str| std::fs::metadata(stored_file(&dir, sha)).unwrap().ino();

    for i in 0..3 {
        b.stage("direct", i, 0, Some(Blocks::offset(i))).await;
    }
    let before = inodes();
    assert_eq!(before.len(), 1, "one staging file holds the blob's blocks");
    let sha = b.commit("direct", &[0, 1, 2], &[0; 3]).await;
    assert_eq!(stored_inode(&sha), before[0], "the staging file became the stored blob");
    assert!(inodes().is_empty());

    // Other bytes than "direct"'s (salt 3): equal bytes would find its stored file there.
    for (blob, salt) in [("resumed", 0), ("linked", 3)] {
        for i in 0..3 {
            b.stage(blob, i, salt, Some(Blocks::offset(i))).await;
        }
    }
    server.kill();
    let before = inodes();
    assert_eq!(before.len(), 2);
    std::fs::write(staging.join("0123456789abcdef0123456789abcdef"), b"a block never recorded").unwrap();

    let server = Server::start_in(&dir, &[]);
    assert_eq!(inodes().len(), 2, "the file no block is in was removed, the others kept");
    let b = Blocks { anon: server.http().anonymous(), base: format!("{}/{account}/blocks", server.url), token: b.token.clone() };
    let sha = b.commit("linked", &[0, 1, 2], &[3; 3]).await;
    assert!(before.contains(&stored_inode(&sha)), "a staging file from before the restart is linked too");
    for i in 3..6 {
        b.stage("resumed", i, 0, Some(Blocks::offset(i))).await;
    }
    assert_eq!(inodes().len(), 2, "blocks after the restart went to a new file");
    b.commit("resumed", &[0, 1, 2, 3, 4, 5], &[0; 6]).await;
    assert!(inodes().is_empty(), "the commits removed every staging file");
}

/// A block list that names only finished blocks is committed while another Put Block of the
/// blob is still writing into the same staging file: the commit must not link a file that is
/// still being written (it writes the blob out instead), and the late block, recorded after the
/// commit, is staged for the next one with its bytes intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_during_a_write_into_the_same_staging_file_links_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start();
    let http = server.http();
    let (b, account) = Blocks::new(&server, &http, "racereg").await;
    for i in 0..2 {
        b.stage("racing", i, 0, Some(Blocks::offset(i))).await;
    }
    // Block 2 by hand: headers and half the body, then a pause.
    let data = Blocks::data(2, 7);
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let path = format!("/{account}/blocks/racing?comp=block&blockid={}&{}", urlencode(&Blocks::id(2)), b.token);
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nx-moat-block-offset: {}\r\nConnection: close\r\n\r\n",
        data.len(),
        Blocks::offset(2)
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&data[..data.len() / 2]).await.unwrap();
    sock.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let first = b.commit("racing", &[0, 1], &[0, 0]).await;

    sock.write_all(&data[data.len() / 2..]).await.unwrap();
    let mut reply = String::new();
    sock.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 201"), "the late block is staged: {reply}");
    // Had the commit linked the file being written, the late bytes would be in the stored blob.
    let stored = std::fs::read(stored_file(&server.dir, &first)).unwrap();
    assert_eq!(stored.len(), Blocks::len(0) + Blocks::len(1), "the stored blob is the two blocks, nothing more");
    let r = b.anon.raw("GET", &format!("{}/racing?comp=blocklist&blocklisttype=uncommitted&{}", b.base, b.token), None, None, &[]).await;
    assert!(r.text.contains(&Blocks::id(2)), "{}", r.text);
    // Alone in the next list, at an offset its file does not start with: written out whole.
    let url = format!("{}/racing?comp=blocklist&{}", b.base, b.token);
    let xml = format!("<BlockList><Latest>{}</Latest></BlockList>", Blocks::id(2));
    let r = b.anon.raw("PUT", &url, Some(xml.into_bytes()), Some("application/xml"), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let got = b.anon.client.get(format!("{}/racing?{}", b.base, b.token)).send().await.unwrap();
    assert!(got.bytes().await.unwrap() == data, "the late block's bytes");
    assert_eq!(walk(&server.dir.join("blobs/staging")), 0, "no staging file is left");
}

#[derive(Clone)]
struct Blocks {
    anon: Http,
    base: String,
    token: String,
}

impl Blocks {
    /// A container "blocks" in registry `registry`'s storage account, with a SAS for it; and the
    /// account's name.
    async fn new(server: &Server, http: &Http, registry: &str) -> (Blocks, String) {
        let (sa_id, account) = storage_account(server, http, registry).await;
        let token = sas(http, &sa_id, &format!("/blob/{account}/blocks"), "c", "racwdl", 3600).await;
        (Blocks { anon: http.anonymous(), base: format!("{}/{account}/blocks", server.url), token }, account)
    }

    fn id(i: usize) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("block-{i:04}"))
    }

    /// Above the smallest block moat hashes ahead (256 KiB).
    fn len(i: usize) -> usize {
        300_000 + i * 1_000
    }

    fn data(i: usize, salt: u8) -> Vec<u8> {
        (0..Self::len(i)).map(|n| (n as u8).wrapping_mul(31) ^ i as u8 ^ salt).collect()
    }

    /// Block i's offset when blocks go in index order.
    fn offset(i: usize) -> u64 {
        (0..i).map(|j| Self::len(j) as u64).sum()
    }

    async fn stage(&self, blob: &str, i: usize, salt: u8, offset: Option<u64>) {
        let url = format!("{}/{blob}?comp=block&blockid={}&{}", self.base, urlencode(&Self::id(i)), self.token);
        let hint = offset.map(|o| o.to_string());
        let headers: Vec<(&str, &str)> = hint.iter().map(|h| ("x-moat-block-offset", h.as_str())).collect();
        let r = self.anon.raw("PUT", &url, Some(Self::data(i, salt)), Some("application/octet-stream"), &headers).await;
        assert_eq!(r.status, 201, "staging block {i} of {blob}: {}", r.text);
    }

    /// Commits `list` and checks the recorded sha256 and the bytes read back; returns the sha256.
    async fn commit(&self, blob: &str, list: &[usize], salts: &[u8]) -> String {
        let xml: String = list.iter().map(|i| format!("<Latest>{}</Latest>", Self::id(*i))).collect();
        let url = format!("{}/{blob}?comp=blocklist&{}", self.base, self.token);
        let r = self.anon.raw("PUT", &url, Some(format!("<BlockList>{xml}</BlockList>").into_bytes()), Some("application/xml"), &[]).await;
        assert_eq!(r.status, 201, "committing {blob}: {}", r.text);
        let expected: Vec<u8> = list.iter().zip(salts).flat_map(|(i, s)| Self::data(*i, *s)).collect();
        let sha = hex_sha256(&expected);
        assert_eq!(r.header("x-moat-content-sha256").as_deref(), Some(sha.as_str()), "{blob}: the recorded sha256");
        let got = self.anon.client.get(format!("{}/{blob}?{}", self.base, self.token)).send().await.unwrap();
        assert_eq!(got.status(), 200);
        assert!(got.bytes().await.unwrap() == expected, "{blob}: the bytes read back");
        sha
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Garbage collection, through the binary, collecting every second with 3 s of grace: a
/// stored file goes once nothing refers to it (a deleted blob's, a deleted multi-block blob's
/// parts, a deleted model version's files), and stays while anything does (another blob with
/// equal bytes, a committed blob's parts, a model version).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_removes_stored_files_nothing_refers_to() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(&tmp.path().join("data"), &[("MOAT_GC_INTERVAL_SECS", "1"), ("MOAT_GC_GRACE_SECS", "3")]);
    let http = server.http();
    let (b, _) = Blocks::new(&server, &http, "gcreg").await;
    let stored = |bytes: &[u8]| stored_file(&server.dir, &hex_sha256(bytes));
    let call = |method: &'static str, name: &str, body: Option<&[u8]>| {
        let url = format!("{}/{name}?{}", b.base, b.token);
        let body = body.map(|b| b.to_vec());
        let anon = &b.anon;
        async move { anon.raw(method, &url, body, Some("application/octet-stream"), &[("x-ms-blob-type", "BlockBlob")]).await }
    };
    assert_eq!(call("PUT", "a", Some(b"bytes only blob a has")).await.status, 201);
    assert_eq!(call("PUT", "b", Some(b"bytes blobs b and c share")).await.status, 201);
    assert_eq!(call("PUT", "c", Some(b"bytes blobs b and c share")).await.status, 201);
    for i in 0..3 {
        b.stage("d", i, 7, None).await;
    }
    b.commit("d", &[0, 1, 2], &[7; 3]).await;
    let parts: Vec<_> = (0..3).map(|i| stored(&Blocks::data(i, 7))).collect();
    assert!(parts.iter().all(|p| p.is_file()), "blocks without places are stored on their own, as the blob's parts");

    // A model version, through the CLI.
    std::fs::create_dir_all(tmp.path().join("model")).unwrap();
    let weights = b"weights only the model version has".to_vec();
    std::fs::write(tmp.path().join("model/weights.bin"), &weights).unwrap();
    std::fs::write(tmp.path().join("model.yml"), "name: gcm\nversion: 1\npath: ./model\n").unwrap();
    server.moat_json(&["model", "create", "--file", tmp.path().join("model.yml").to_str().unwrap(), "--registry-name", "gcreg"]);
    assert!(stored(&weights).is_file());

    assert_eq!(call("DELETE", "a", None).await.status, 202);
    assert_eq!(call("DELETE", "b", None).await.status, 202);
    assert!(common::gone_within(&stored(b"bytes only blob a has")).await, "a deleted blob's bytes go at a collection\n{}", server.log());
    // Two more collections have run by now (a second apart) and the grace has passed for
    // every file written above: what is referenced stays.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert!(stored(b"bytes blobs b and c share").is_file(), "blob c still has these bytes");
    let got = call("GET", "c", None).await;
    assert_eq!((got.status, got.text.as_str()), (200, "bytes blobs b and c share"));
    assert!(parts.iter().all(|p| p.is_file()), "a committed blob's parts stay");
    let d = b.anon.client.get(format!("{}/d?{}", b.base, b.token)).send().await.unwrap().bytes().await.unwrap();
    assert!(d == (0..3).flat_map(|i| Blocks::data(i, 7)).collect::<Vec<_>>(), "blob d reads whole");
    assert!(stored(&weights).is_file(), "a model version's files stay");

    // Deleting the multi-block blob, then the version, lets their bytes go.
    assert_eq!(call("DELETE", "d", None).await.status, 202);
    for p in &parts {
        assert!(common::gone_within(p).await, "a deleted blob's parts go: {}", p.display());
    }
    let out = server.moat(&["model", "delete", "--name", "gcm", "--version", "1", "--registry-name", "gcreg"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(common::gone_within(&stored(&weights)).await, "a deleted version's files go");

    // Deleting a registry lets its storage account's bytes go.
    let (other, _) = Blocks::new(&server, &http, "gcreg2").await;
    let url = format!("{}/x?{}", other.base, other.token);
    let r = other
        .anon
        .raw("PUT", &url, Some(b"bytes of a registry deleted".to_vec()), Some("text/plain"), &[("x-ms-blob-type", "BlockBlob")])
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(http.call("DELETE", &server.registry_path("default", "gcreg2"), None, &[]).await.status, 202);
    assert!(common::gone_within(&stored(b"bytes of a registry deleted")).await, "a deleted registry's bytes go");
    assert!(server.log().contains("garbage collected unreferenced stored files"), "collections are logged");
}

/// A byte store records which database it holds the bytes of: started on another database
/// (where every stored file would look unreferenced), moat collects nothing from it and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_stays_off_on_another_databases_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let gc = [("MOAT_GC_INTERVAL_SECS", "1"), ("MOAT_GC_GRACE_SECS", "3")];
    let first = Server::start_in(&tmp.path().join("first"), &gc);
    let http = first.http();
    let (b, _) = Blocks::new(&first, &http, "pairreg").await;
    let url = format!("{}/kept?{}", b.base, b.token);
    let r = b
        .anon
        .raw("PUT", &url, Some(b"bytes of the first database".to_vec()), Some("text/plain"), &[("x-ms-blob-type", "BlockBlob")])
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sha = r.header("x-moat-content-sha256").unwrap();
    let stored = stored_file(&tmp.path().join("first"), &sha);
    assert!(stored.is_file());
    first.stop();

    let blob_url = format!("file://{}", tmp.path().join("first/blobs").display());
    let mut envs = gc.to_vec();
    envs.push(("MOAT_BLOB_URL", &blob_url));
    let second = Server::start_in(&tmp.path().join("second"), &envs);
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    assert!(stored.is_file(), "nothing is collected from another database's bytes");
    let log = second.log();
    assert!(log.contains("garbage collection is off") && log.contains("another database"), "{log}");
    second.stop();

    // A byte store from before the pairing (no store-id) is adopted only by a database that
    // refers to some of its files.
    let id_file = tmp.path().join("first/blobs/store-id");
    std::fs::remove_file(&id_file).unwrap();
    let third = Server::start_in(&tmp.path().join("third"), &envs);
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    assert!(stored.is_file() && !id_file.exists());
    assert!(third.log().contains("holds content but no store-id"), "{}", third.log());
    third.stop();

    // Its own database again: adopted, and collections resume (the blob is still referenced,
    // so it stays).
    let again = Server::start_in(&tmp.path().join("first"), &gc);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(stored.is_file() && id_file.is_file());
    assert!(!again.log().contains("garbage collection is off"), "{}", again.log());
}

/// Upload locations that `startPendingUpload` handed out and nobody committed expire once
/// nothing was written to them for upload_ttl_secs: emptied, sealed (their write SAS no longer
/// writes) and forgotten, so their bytes are garbage collected. One still being written, and a
/// committed one, stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_locations_never_committed_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let envs = [("MOAT_UPLOAD_TTL_SECS", "5"), ("MOAT_GC_INTERVAL_SECS", "1"), ("MOAT_GC_GRACE_SECS", "3")];
    let server = Server::start_in(&tmp.path().join("data"), &envs);
    let http = server.http();
    let reg = server.registry_path("default", "expreg");
    assert_eq!(http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);
    let start = |version: &'static str| {
        let http = &http;
        let reg = &reg;
        async move {
            let r = http.call("POST", &format!("{reg}/models/m/versions/{version}/startPendingUpload"), Some(&json!({})), &[]).await;
            assert_eq!(r.status, 200, "{}", r.text);
            let b = &r.body["blobReferenceForConsumption"];
            (b["blobUri"].as_str().unwrap().to_string(), b["credential"]["sasUri"].as_str().unwrap().to_string())
        }
    };
    let anon = http.anonymous();
    let put = |sas_uri: &str, name: &str, body: &[u8]| {
        let (base, sas) = sas_uri.split_once('?').unwrap();
        let url = format!("{base}/{name}?{sas}");
        let (body, anon) = (body.to_vec(), &anon);
        async move { anon.raw("PUT", &url, Some(body), Some("application/octet-stream"), &[("x-ms-blob-type", "BlockBlob")]).await.status }
    };
    let stored = |bytes: &[u8]| stored_file(&server.dir, &hex_sha256(bytes));

    let (abandoned, abandoned_sas) = start("1").await;
    assert_eq!(put(&abandoned_sas, "w.bin", b"bytes nobody committed").await, 201);
    let (committed, committed_sas) = start("2").await;
    assert_eq!(put(&committed_sas, "w.bin", b"bytes of version 2").await, 201);
    let v = http.call("PUT", &format!("{reg}/models/m/versions/2"), Some(&json!({"properties": {"modelUri": committed}})), &[]).await;
    assert_eq!(v.status, 201, "{}", v.text);
    let (_, busy_sas) = start("3").await;

    // The busy location is written every quarter second; the abandoned one not at all (it is
    // only listed, which is no write).
    let (base, sas) = abandoned_sas.split_once('?').unwrap();
    let listing = format!("{base}?restype=container&comp=list&{sas}");
    let mut expired = false;
    for i in 0..200 {
        assert_eq!(put(&busy_sas, &format!("part-{i}"), format!("busy {i}").as_bytes()).await, 201, "a location in use stays");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let listed = anon.raw("GET", &listing, None, None, &[]).await;
        assert_eq!(listed.status, 200, "{}", listed.text);
        if !listed.text.contains("w.bin") {
            expired = true;
            break;
        }
    }
    assert!(expired, "the abandoned location expired; log:\n{}", server.log());
    assert_eq!(put(&abandoned_sas, "late.bin", b"late").await, 409, "its write SAS writes no more");
    assert_eq!(put(&busy_sas, "after", b"after").await, 201, "the location in use, as old, did not expire");
    let v = http.call("PUT", &format!("{reg}/models/m/versions/1"), Some(&json!({"properties": {"modelUri": abandoned}})), &[]).await;
    assert_eq!(v.status, 400, "{}", v.text);
    assert!(v.text.contains("expired unused"), "{}", v.text);
    assert!(common::gone_within(&stored(b"bytes nobody committed")).await, "its bytes were collected");
    assert!(stored(b"bytes of version 2").is_file(), "a committed version's files stay");
    let v = http.call("GET", &format!("{reg}/models/m/versions/2"), None, &[]).await;
    assert_eq!(v.status, 200);
}

/// `moat storage gc`: a collection on demand (the schedule off here), with a dry run that
/// counts what would go and removes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gc_collects_on_demand_and_dry_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(&tmp.path().join("data"), &[("MOAT_GC_INTERVAL_SECS", "0"), ("MOAT_GC_GRACE_SECS", "2")]);
    let http = server.http();
    let (b, _) = Blocks::new(&server, &http, "ondemand").await;
    let body = b"bytes deleted, then collected on demand".to_vec();
    let url = format!("{}/x?{}", b.base, b.token);
    assert_eq!(b.anon.raw("PUT", &url, Some(body.clone()), Some("text/plain"), &[("x-ms-blob-type", "BlockBlob")]).await.status, 201);
    assert_eq!(b.anon.raw("DELETE", &url, None, None, &[]).await.status, 202);
    let stored = stored_file(&server.dir, &hex_sha256(&body));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(stored.is_file(), "no collection is scheduled");

    let dry = server.moat_json(&["storage", "gc", "--dry-run"]);
    assert_eq!((dry["dryRun"].as_bool(), dry["removed"].as_u64(), dry["graceSeconds"].as_u64()), (Some(true), Some(1), Some(2)), "{dry}");
    assert_eq!(dry["removedBytes"].as_u64(), Some(body.len() as u64));
    assert!(stored.is_file(), "a dry run removes nothing");
    // The parameter's name is case-insensitive, as ARM's are: a mistyped case is still a dry run.
    let sub = server.profile().subscription;
    let api = format!("/subscriptions/{sub}/providers/Moat.Storage/garbageCollection");
    let r = http.call("POST", &format!("{api}?DRYRUN=True"), None, &[]).await;
    assert_eq!((r.status, r.body["dryRun"].as_bool(), r.body["removed"].as_u64()), (200, Some(true), Some(1)), "{}", r.text);
    let r = http.call("POST", &format!("{api}?dryRun=maybe"), None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidQueryParameterValue"), "{}", r.text);
    assert!(stored.is_file());
    let done = server.moat_json(&["storage", "gc"]);
    assert_eq!((done["dryRun"].as_bool(), done["removed"].as_u64()), (Some(false), Some(1)), "{done}");
    assert!(!stored.exists(), "the collection removed it");
    let again = server.moat_json(&["storage", "gc"]);
    assert_eq!(again["removed"].as_u64(), Some(0), "{again}");
    let out = server.moat(&["storage", "gc", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("moat storage gc --dry-run"));
}

/// Azurite's well-known development account key.
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The same collection on an object store (Azurite), where the database keeps writers and the
/// collector apart: content a writer claimed since the cutoff stays, even unreferenced and old;
/// once the claim is older than the grace period it goes; bytes stored again after a collection
/// are whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_gc_collects_an_object_store_and_keeps_what_writers_claimed() {
    let Ok(endpoint) = std::env::var("MOAT_TEST_AZURITE") else {
        eprintln!("SKIP: MOAT_TEST_AZURITE is not set (scripts/test.sh starts Azurite and sets it)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let blob_url = format!("azure://moat-test/{}", uuid::Uuid::new_v4());
    let env = [
        ("MOAT_GC_INTERVAL_SECS", "0"),
        ("MOAT_GC_GRACE_SECS", "2"),
        ("MOAT_BLOB_URL", &blob_url),
        ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
        ("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY),
        ("AZURE_STORAGE_ENDPOINT", &endpoint),
        ("AZURE_ALLOW_HTTP", "true"),
    ];
    let server = Server::start_in(&tmp.path().join("data"), &env);
    let http = server.http();
    let (b, _) = Blocks::new(&server, &http, "remotegc").await;
    let put = |name: &str, body: &[u8]| {
        let url = format!("{}/{name}?{}", b.base, b.token);
        let anon = b.anon.clone();
        let body = body.to_vec();
        async move { anon.raw("PUT", &url, Some(body), Some("text/plain"), &[("x-ms-blob-type", "BlockBlob")]).await.status }
    };
    let delete = |name: &str| {
        let url = format!("{}/{name}?{}", b.base, b.token);
        let anon = b.anon.clone();
        async move { anon.raw("DELETE", &url, None, None, &[]).await.status }
    };
    let kept = b"bytes a blob still refers to".to_vec();
    let dropped = b"bytes whose blob was deleted, on an object store".to_vec();
    assert_eq!(put("kept", &kept).await, 201);
    assert_eq!(put("dropped", &dropped).await, 201);
    assert_eq!(delete("dropped").await, 202);
    assert!(server.dir.join("blobs/sha256").read_dir().unwrap().all(|shard| shard.unwrap().path().read_dir().unwrap().next().is_none()));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    // Stored again (found in the store, so claimed, not written), then deleted again: old and
    // unreferenced, but claimed since the cutoff, so kept.
    assert_eq!(put("again", &dropped).await, 201);
    assert_eq!(delete("again").await, 202);
    let dry = server.moat_json(&["storage", "gc", "--dry-run"]);
    assert_eq!((dry["files"].as_u64(), dry["removed"].as_u64(), dry["kept"].as_u64()), (Some(2), Some(0), Some(1)), "{dry}");
    let done = server.moat_json(&["storage", "gc"]);
    assert_eq!((done["files"].as_u64(), done["removed"].as_u64(), done["kept"].as_u64()), (Some(2), Some(0), Some(1)), "{done}");

    // Once the claim is older than the grace period, it goes; the referenced one stays.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let dry = server.moat_json(&["storage", "gc", "--dry-run"]);
    assert_eq!((dry["removed"].as_u64(), dry["removedBytes"].as_u64()), (Some(1), Some(dropped.len() as u64)), "{dry}");
    let done = server.moat_json(&["storage", "gc"]);
    assert_eq!(
        (done["files"].as_u64(), done["removed"].as_u64(), done["removedBytes"].as_u64()),
        (Some(2), Some(1), Some(dropped.len() as u64)),
        "{done}"
    );
    let again = server.moat_json(&["storage", "gc"]);
    assert_eq!((again["files"].as_u64(), again["removed"].as_u64()), (Some(1), Some(0)), "the object is gone from the store: {again}");
    let got = b.anon.raw("GET", &format!("{}/kept?{}", b.base, b.token), None, None, &[]).await;
    assert_eq!((got.status, got.text.as_bytes()), (200, kept.as_slice()), "a referenced blob's bytes stay");

    // The collected bytes, stored again, are written again and read back whole.
    assert_eq!(put("back", &dropped).await, 201);
    let got = b.anon.raw("GET", &format!("{}/back?{}", b.base, b.token), None, None, &[]).await;
    assert_eq!((got.status, got.text.as_bytes()), (200, dropped.as_slice()));
    let young = server.moat_json(&["storage", "gc"]);
    assert_eq!((young["files"].as_u64(), young["removed"].as_u64()), (Some(2), Some(0)), "{young}");

    // Another database on the same objects (a second installation pointed at this prefix) finds
    // them paired with this one and collects nothing: every object would look unreferenced.
    let stranger = Server::start_in(&tmp.path().join("stranger"), &env);
    let log = stranger.log();
    assert!(log.contains("garbage collection is off") && log.contains("another database"), "{log}");
    let refused = stranger.moat(&["storage", "gc"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("GarbageCollectionOff"), "{}", String::from_utf8_lossy(&refused.stderr));
    stranger.stop();
    let after = server.moat_json(&["storage", "gc", "--dry-run"]);
    assert_eq!(after["files"].as_u64(), Some(2), "both objects are still there: {after}");
}
