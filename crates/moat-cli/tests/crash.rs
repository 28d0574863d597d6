//! Crash safety: the server is killed with SIGKILL, repeatedly, while clients upload (whole, or
//! in blocks written in place) and commit model versions concurrently. After every restart each acknowledged version is intact (its
//! files download and hash to what was recorded), every visible version is complete, and no
//! temporary file is left behind. Bounded: 5 rounds.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{Http, Server, registry_body};
use serde_json::json;
use sha2::{Digest, Sha256};

const ROUNDS: usize = 5;
const WRITERS: usize = 4;

/// One upload-and-commit; returns the version and the sha256 of its file once acknowledged.
async fn publish(http: &Http, reg: &str, version: &str, seed: u64) -> Option<(String, String)> {
    let mut x = seed;
    let data: Vec<u8> = (0..150_000)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
    let up = try_call(http, "POST", &format!("{reg}/models/crashy/versions/{version}/startPendingUpload"), Some(json!({}))).await?;
    let sas_uri = up["blobReferenceForConsumption"]["credential"]["sasUri"].as_str()?.to_string();
    let (base, sas) = sas_uri.split_once('?')?;
    if seed.is_multiple_of(2) {
        let put = http
            .client
            .put(format!("{base}/weights.bin?{sas}"))
            .header("x-ms-blob-type", "BlockBlob")
            .body(data.clone())
            .send()
            .await
            .ok()?;
        if put.status() != 201 {
            return None;
        }
    } else {
        // In three blocks with their places (as the CLI sends them): written in place in a
        // staging file, linked into the store at commit.
        let ids = ["Ymsw", "Ymsx", "Ymsy"]; // base64 of bk0, bk1, bk2
        for (i, id) in ids.iter().enumerate() {
            let part = data[i * 50_000..(i + 1) * 50_000].to_vec();
            let put = http
                .client
                .put(format!("{base}/weights.bin?{sas}&comp=block&blockid={id}"))
                .header("x-moat-block-offset", (i * 50_000).to_string())
                .body(part)
                .send()
                .await
                .ok()?;
            if put.status() != 201 {
                return None;
            }
        }
        let list: String = ids.iter().map(|id| format!("<Latest>{id}</Latest>")).collect();
        let put = http
            .client
            .put(format!("{base}/weights.bin?{sas}&comp=blocklist"))
            .body(format!("<BlockList>{list}</BlockList>"))
            .send()
            .await
            .ok()?;
        if put.status() != 201 {
            return None;
        }
    }
    let v =
        try_call(http, "PUT", &format!("{reg}/models/crashy/versions/{version}"), Some(json!({"properties": {"modelUri": base}}))).await?;
    assert_eq!(v["properties"]["files"][0]["sha256"], format!("{:x}", Sha256::digest(&data)), "the recorded digest is the uploaded one");
    Some((version.to_string(), format!("{:x}", Sha256::digest(&data))))
}

async fn try_call(http: &Http, method: &str, path: &str, body: Option<serde_json::Value>) -> Option<serde_json::Value> {
    let url = format!("{}{path}", http.base);
    let mut req =
        http.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url).bearer_auth(http.token.clone().unwrap());
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_uploads_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut reg = String::new();
    for round in 0..ROUNDS {
        let server = Server::start_in(&dir, &[]);
        let http = server.http();
        if round == 0 {
            reg = server.registry_path("default", "crashreg");
            assert_eq!(http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);
        }
        let so_far = acknowledged.lock().unwrap().clone();
        verify(&http, &reg, &so_far, &dir).await;
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let h = Http { base: http.base.clone(), token: http.token.clone(), client: http.client.clone() };
            let (reg, acked) = (reg.clone(), Arc::clone(&acknowledged));
            tasks.push(tokio::spawn(async move {
                for i in 0..1000 {
                    match publish(&h, &reg, &format!("r{round}-w{w}-{i}"), (round * 1000 + w * 100 + i) as u64).await {
                        Some(v) => acked.lock().unwrap().push(v),
                        None => return,
                    }
                }
            }));
        }
        // Let some versions land, then crash mid-flight.
        tokio::time::sleep(std::time::Duration::from_millis(300 + 150 * round as u64)).await;
        server.kill();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let server = Server::start_in(&dir, &[]);
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= ROUNDS, "too few versions were acknowledged ({}) for the test to mean anything", acked.len());
    let in_blocks = |v: &str| v.rsplit('-').next().and_then(|i| i.parse::<u64>().ok()).is_some_and(|i| !i.is_multiple_of(2));
    assert!(acked.iter().any(|(v, _)| in_blocks(v)), "no version uploaded in blocks was acknowledged");
    verify(&server.http(), &reg, &acked, &dir).await;
    server.stop();
}

/// Every acknowledged version is listed; every listed version downloads intact; no temporary
/// files remain.
async fn verify(http: &Http, reg: &str, acked: &[(String, String)], dir: &std::path::Path) {
    let mut listed = Vec::new();
    let mut next = Some(format!("{reg}/models/crashy/versions?listViewType=All&$top=100"));
    while let Some(url) = next {
        let r = http.get(&url).await;
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        for v in r.body["value"].as_array().unwrap() {
            listed.push((v["name"].as_str().unwrap().to_string(), v["properties"]["files"][0]["sha256"].as_str().unwrap().to_string()));
        }
        next = r.body["nextLink"].as_str().map(str::to_string);
    }
    for a in acked {
        assert!(listed.contains(a), "acknowledged version {} was lost", a.0);
    }
    for (version, sha) in &listed {
        let r = http
            .call(
                "POST",
                &format!("{reg}/datareferences/crashy/versions/{version}"),
                Some(&json!({"assetId": format!("azureml://registries/crashreg/models/crashy/versions/{version}")})),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let sas_uri = r.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap();
        let (base, sas) = sas_uri.split_once('?').unwrap();
        let bytes = http.client.get(format!("{base}/weights.bin?{sas}")).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&format!("{:x}", Sha256::digest(&bytes)), sha, "version {version} is not intact");
    }
    let tmp_files = std::fs::read_dir(dir.join("blobs/tmp")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(tmp_files, 0, "temporary files outlived a restart");
}
