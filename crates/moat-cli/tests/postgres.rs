//! The whole server on PostgreSQL: the same binary, with `MOAT_DATABASE_URL` naming a fresh
//! database of the server that `MOAT_TEST_POSTGRES_URL` points at (scripts/test.sh starts one on
//! loopback), and bytes in an object store: S3 (moto server, `MOAT_TEST_S3`) for one node, Azure
//! Blob Storage (Azurite, `MOAT_TEST_AZURITE`) shared by two. A registry, a model uploaded and
//! downloaded, an image pushed and pinned by an environment, all still there after a restart.
//! Skips, saying why, without those variables.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread")]
async fn the_server_runs_on_postgresql_and_keeps_everything_across_a_restart() {
    let Some(db) = common::TestDatabase::create("the_server_runs_on_postgresql") else { return };
    let url = db.url.clone();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut env = vec![("MOAT_DATABASE_URL", url.clone())];
    match std::env::var("MOAT_TEST_S3") {
        Ok(endpoint) => {
            env.push(("MOAT_BLOB_URL", format!("s3://moat-test/{}", uuid::Uuid::new_v4())));
            env.push(("AWS_ACCESS_KEY_ID", "test".into()));
            env.push(("AWS_SECRET_ACCESS_KEY", "test".into()));
            env.push(("AWS_REGION", "us-east-1".into()));
            env.push(("AWS_ENDPOINT", endpoint));
            env.push(("AWS_ALLOW_HTTP", "true".into()));
        }
        Err(_) => eprintln!("SKIP (in part): MOAT_TEST_S3 is not set, so the bytes stay on the local disk"),
    }
    let node_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_in(&dir, &node_env);
    assert!(!dir.join("moat.db").exists(), "no SQLite database when PostgreSQL is configured");
    std::fs::write(tmp.path().join("r.yml"), "name: pgreg\nlocation: eastus\n").unwrap();
    let reg = server.moat_json(&["registry", "create", "--file", tmp.path().join("r.yml").to_str().unwrap()]);
    let acr_id =
        reg["properties"]["regionDetails"][0]["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"].as_str().unwrap();
    let acr = acr_id.rsplit('/').next().unwrap().to_string();

    // More concurrent writers than the node's pool has connections (16): every one completes.
    let http = server.http();
    let reg_path = server.registry_path("default", "pgreg");
    let mut writers = Vec::new();
    for i in 0..48 {
        let h = http.at(&server.url, None);
        let reg_path = reg_path.clone();
        writers.push(tokio::spawn(async move {
            let body = serde_json::json!({"properties": {"componentSpec": {"name": "busy", "type": "command", "command": "echo"}}});
            let mut failed = Vec::new();
            for j in 0..8 {
                let r = h.call("PUT", &format!("{reg_path}/components/busy/versions/{i}.{j}"), Some(&body), &[]).await;
                if r.status != 201 {
                    failed.push((r.status, r.text));
                }
            }
            failed
        }));
    }
    for w in writers {
        let failed = w.await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
    }

    // A model through the blob plane.
    std::fs::create_dir_all(tmp.path().join("model")).unwrap();
    let weights: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(tmp.path().join("model/w.bin"), &weights).unwrap();
    std::fs::write(tmp.path().join("model.yml"), "name: m\nversion: 1\npath: ./model\n").unwrap();
    server.moat_json(&["model", "create", "--file", tmp.path().join("model.yml").to_str().unwrap(), "--registry-name", "pgreg"]);
    // Creating the same version again with other content is a clean conflict.
    std::fs::write(tmp.path().join("model/w.bin"), b"other").unwrap();
    let again = server.moat(&["model", "create", "--file", tmp.path().join("model.yml").to_str().unwrap(), "--registry-name", "pgreg"]);
    assert!(!again.status.success());

    // An image, and an environment pinning it.
    let http = server.http();
    let layer = b"pg layer".to_vec();
    let config = br#"{"os":"linux"}"#.to_vec();
    let sha = |b: &[u8]| {
        use sha2::Digest as _;
        format!("sha256:{}", sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>())
    };
    for b in [&layer, &config] {
        let r = http
            .raw(
                "POST",
                &format!("/v2/{acr}/pg/img/blobs/uploads/?digest={}", sha(b)),
                Some(b.to_vec()),
                Some("application/octet-stream"),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // A second layer in two chunks of an upload session (each chunk its own object in an
    // object store, joined when the session finishes).
    // (Letters, so that the reply's text is the bytes.)
    let layer2: Vec<u8> = (0..3_000_000u32).map(|i| b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26).collect();
    let start = http.raw("POST", &format!("/v2/{acr}/pg/img/blobs/uploads/"), None, None, &[]).await;
    assert_eq!(start.status, 202, "{}", start.text);
    let mut location = start.headers["location"].to_str().unwrap().to_string();
    for (from, chunk) in [(0usize, &layer2[..1_000_000]), (1_000_000, &layer2[1_000_000..])] {
        let range = format!("{from}-{}", from + chunk.len() - 1);
        let r = http
            .raw("PATCH", &location, Some(chunk.to_vec()), Some("application/octet-stream"), &[("content-range", range.as_str())])
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        location = r.headers["location"].to_str().unwrap().to_string();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = http.raw("PUT", &format!("{location}{sep}digest={}", sha(&layer2)), None, None, &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let back = http.raw("GET", &format!("/v2/{acr}/pg/img/blobs/{}", sha(&layer2)), None, None, &[]).await;
    assert_eq!(back.status, 200);
    assert!(back.text.as_bytes() == layer2, "the joined layer reads back whole");
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}]})
    .to_string();
    let r = http
        .raw(
            "PUT",
            &format!("/v2/{acr}/pg/img/manifests/v1"),
            Some(manifest.clone().into_bytes()),
            Some("application/vnd.oci.image.manifest.v1+json"),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    std::fs::write(tmp.path().join("env.yml"), format!("name: e\nversion: \"1\"\nimage: {acr}.cr.moat.internal/pg/img:v1\n")).unwrap();
    let env =
        server.moat_json(&["environment", "create", "--file", tmp.path().join("env.yml").to_str().unwrap(), "--registry-name", "pgreg"]);
    assert_eq!(env["properties"]["image"], format!("{acr}.cr.moat.internal/pg/img@{}", sha(manifest.as_bytes())));
    server.stop();

    // After a restart on the same database: everything is there.
    let server = Server::start_in(&dir, &node_env);
    let out = tmp.path().join("out");
    let d = server.moat(&[
        "model",
        "download",
        "--name",
        "m",
        "--version",
        "1",
        "--registry-name",
        "pgreg",
        "--download-path",
        out.to_str().unwrap(),
    ]);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    assert_eq!(std::fs::read(out.join("m/w.bin")).unwrap(), weights);
    let http = server.http();
    let tags = http.get(&format!("/v2/{acr}/pg/img/tags/list")).await;
    assert_eq!(tags.body["tags"], serde_json::json!(["v1"]), "{}", tags.text);
    let del = http.raw("DELETE", &format!("/v2/{acr}/pg/img/manifests/{}", sha(manifest.as_bytes())), None, None, &[]).await;
    assert_eq!(del.status, 409, "the pin survived the restart: {}", del.text);
    let activity = server.moat_json(&["monitor", "activity-log", "list"]);
    assert!(activity.as_array().is_some_and(|a| !a.is_empty()), "the activity log is in PostgreSQL too");
    if node_env.iter().any(|(k, _)| *k == "MOAT_BLOB_URL") {
        assert_eq!(files_under(&dir.join("blobs/sha256")), 0, "the bytes live in the object store");
    }
    server.stop();
}

const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The time of a log line (its leading RFC 3339 timestamp, in UTC) in seconds since the start of
/// its month: what telling apart lines a few seconds apart needs.
fn log_time(line: &str) -> f64 {
    let at = line.find('T').unwrap_or_else(|| panic!("no timestamp in {line}"));
    let day: f64 = line[at - 2..at].parse().unwrap();
    let clock: Vec<f64> = line[at + 1..].split(['Z', ' ']).next().unwrap().split(':').map(|p| p.parse().unwrap()).collect();
    day * 86_400.0 + clock[0] * 3600.0 + clock[1] * 60.0 + clock[2]
}

/// The files under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()).unwrap_or(0)
}

/// Two nodes on one PostgreSQL database and one Azurite container: a model uploaded through
/// one downloads through the other; 32 concurrent creations of one version across both give
/// one winner and 31 clean conflicts; a switch flipped and a role assigned on one node apply to
/// the very next request on the other.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_one_database_act_as_one_registry() {
    let Some(db) = common::TestDatabase::create("two_nodes_on_one_database_act_as_one_registry") else { return };
    let url = db.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let mut env = vec![("MOAT_DATABASE_URL", url.clone())];
    let azurite = std::env::var("MOAT_TEST_AZURITE").ok();
    match &azurite {
        Some(endpoint) => {
            // Credentials reach moat as object_store reads them, from the environment.
            env.push(("MOAT_BLOB_URL", format!("azure://moat-test/{}", uuid::Uuid::new_v4())));
            env.push(("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1".into()));
            env.push(("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY.into()));
            env.push(("AZURE_STORAGE_ENDPOINT", endpoint.clone()));
            env.push(("AZURE_ALLOW_HTTP", "true".into()));
            // The shared store's scheduled collection, every second: one node per period runs it.
            env.push(("MOAT_GC_INTERVAL_SECS", "1".into()));
        }
        None => eprintln!("SKIP (in part): MOAT_TEST_AZURITE is not set, so the nodes keep bytes on their own disks and no model crosses"),
    }
    let env_a: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Server::start_in(&tmp.path().join("a"), &env_a);
    // Node B serves the same installation: it gets the administrator's profile (whose secret the
    // shared database verifies) rather than minting a new one.
    std::fs::create_dir_all(tmp.path().join("b")).unwrap();
    std::fs::copy(a.dir.join("profile.json"), tmp.path().join("b/profile.json")).unwrap();
    // Behind a load balancer every node has the same public URL (it names the token issuer);
    // here node B takes node A's, and listens on a port of its own.
    let mut env_b = env_a.clone();
    env_b.extend([("MOAT_PUBLIC_URL", a.url.as_str()), ("MOAT_LISTEN", "127.0.0.1:0")]);
    let b = Server::start_in(&tmp.path().join("b"), &env_b);
    // Its own port, from the banner (the public URL is node A's).
    let listen_b = b.banner.iter().find_map(|l| l.strip_prefix("  bound to: ")).unwrap_or_else(|| panic!("{:?}", b.banner)).to_string();
    let b_url = format!("http://{listen_b}");
    let ha = a.http();
    let hb = ha.at(&b_url, None);

    let reg = a.registry_path("default", "shared");
    assert_eq!(ha.call("PUT", &reg, Some(&common::registry_body("eastus")), &[]).await.status, 201);
    assert_eq!(hb.get(&reg).await.status, 200, "node B serves what node A created");

    if azurite.is_some() {
        // A model uploaded through node A (the CLI, in parallel blocks; larger than one part
        // of a multipart upload to the object store)...
        std::fs::create_dir_all(tmp.path().join("model")).unwrap();
        let weights: Vec<u8> = (0..20_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        std::fs::write(tmp.path().join("model/w.bin"), &weights).unwrap();
        std::fs::write(tmp.path().join("model.yml"), "name: m\nversion: 1\npath: ./model\n").unwrap();
        a.moat_json(&["model", "create", "--file", tmp.path().join("model.yml").to_str().unwrap(), "--registry-name", "shared"]);
        // ...downloads through node B, byte for byte, with a read SAS node B signed.
        let r = hb
            .call(
                "POST",
                &format!("{reg}/datareferences/m/versions/1"),
                Some(&serde_json::json!({"assetId": "azureml://registries/shared/models/m/versions/1"})),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let sas = r.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap();
        let (container, query) = sas.split_once('?').unwrap();
        let via_b = format!("{}/w.bin?{query}", container.replacen(&a.url, &b_url, 1));
        assert!(via_b.starts_with(&b_url), "{via_b}");
        let got = reqwest::get(&via_b).await.unwrap();
        assert_eq!(got.status(), 200);
        assert!(got.bytes().await.unwrap() == weights, "node B serves the bytes node A stored");
        for node in [&a, &b] {
            assert_eq!(files_under(&node.dir.join("blobs/sha256")), 0, "the bytes live in Azurite, not on {}", node.dir.display());
            assert_eq!(files_under(&node.dir.join("blobs/tmp")), 0, "no temporary file is left on {}", node.dir.display());
        }
    }

    // 32 concurrent creations of the same version with different content, across both nodes.
    let version = format!("{reg}/components/c/versions/1");
    let mut tasks = Vec::new();
    for i in 0..32 {
        let h = if i % 2 == 0 { ha.at(&a.url, None) } else { ha.at(&b_url, None) };
        let path = version.clone();
        tasks.push(tokio::spawn(async move {
            let body =
                serde_json::json!({"properties": {"componentSpec": {"name": "c", "type": "command", "command": format!("echo {i}")}}});
            let r = h.call("PUT", &path, Some(&body), &[]).await;
            (r.status, r.code())
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let winners = outcomes.iter().filter(|(s, _)| *s == 201).count();
    let conflicts = outcomes.iter().filter(|(s, c)| *s == 409 && c == "AssetContentImmutable").count();
    assert_eq!((winners, conflicts), (1, 31), "{outcomes:?}");

    // A role assigned on node A lets its holder in on node B's very next request, and one
    // removed shuts them out the same way.
    let p = a.profile();
    let (oid, app, secret) = common::create_sp(&ha, "reader-b").await;
    let token = common::token_for(&ha, &p.tenant, &app, &secret).await;
    let reader_b = hb.with_token(&token);
    assert_eq!(reader_b.get(&reg).await.status, 404, "no role yet: the registry is hidden");
    let assignment = common::assign(&ha, &reg, &oid, "acdd72a7-3385-48ef-bd42-f606fba81ae7").await;
    assert_eq!(reader_b.get(&reg).await.status, 200, "node B's next request sees the role assigned on node A");
    assert_eq!(ha.call("DELETE", &assignment, None, &[]).await.status, 200);
    assert_eq!(reader_b.get(&reg).await.status, 404, "node B's next request no longer sees the removed role");

    // A switch flipped on node A denies node B's very next request.
    assert_eq!(hb.get(&version).await.status, 200);
    let mut private = common::registry_body("eastus");
    private["properties"]["publicNetworkAccess"] = serde_json::json!("Disabled");
    assert_eq!(ha.call("PUT", &reg, Some(&private), &[]).await.status, 200);
    let r = hb.get(&version).await;
    assert_eq!(r.status, 403, "node B's next request after the flip on node A: {}", r.text);
    assert!(r.text.contains("PublicNetworkAccessDisabled"), "{}", r.text);
    if azurite.is_some() {
        // Both nodes' timers fire every second; the shared schedule lets one collection run per
        // period, whichever node's timer fires first: nine tenths of a second at least between
        // two collections, on whichever nodes.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let mut runs: Vec<(f64, char)> = [(a.log(), 'A'), (b.log(), 'B')]
            .iter()
            .flat_map(|(log, node)| {
                log.lines().filter(|l| l.contains("scheduled garbage collection ran")).map(move |l| (log_time(l), *node))
            })
            .collect();
        runs.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(runs.len() >= 4, "the schedule runs: {runs:?}");
        for pair in runs.windows(2) {
            assert!(pair[1].0 - pair[0].0 > 0.6, "two collections in one period: {runs:?}");
        }
    }
    a.stop();
    b.stop();
}
