//! The whole server on PostgreSQL: the same binary, with `MOAT_DATABASE_URL` naming a fresh
//! database of the server that `MOAT_TEST_POSTGRES_URL` points at (scripts/test.sh starts one on
//! loopback). A registry, a model uploaded and downloaded, an image pushed and pinned by an
//! environment, all still there after a restart. Skips, saying why, without that variable.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread")]
async fn the_server_runs_on_postgresql_and_keeps_everything_across_a_restart() {
    let Some(db) = common::TestDatabase::create("the_server_runs_on_postgresql") else { return };
    let url = db.url.clone();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[("MOAT_DATABASE_URL", url.as_str())]);
    assert!(!dir.join("moat.db").exists(), "no SQLite database when PostgreSQL is configured");
    std::fs::write(tmp.path().join("r.yml"), "name: pgreg\nlocation: eastus\n").unwrap();
    let reg = server.moat_json(&["registry", "create", "--file", tmp.path().join("r.yml").to_str().unwrap()]);
    let acr_id =
        reg["properties"]["regionDetails"][0]["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"].as_str().unwrap();
    let acr = acr_id.rsplit('/').next().unwrap().to_string();

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
    let server = Server::start_in(&dir, &[("MOAT_DATABASE_URL", url.as_str())]);
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
    server.stop();
}

/// Two nodes on one PostgreSQL database: what one creates the other serves; 32 concurrent
/// creations of one version across both give one winner and 31 clean conflicts; a switch
/// flipped and a role assigned on one node take effect on the other within a second.
#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_one_database_act_as_one_registry() {
    let Some(db) = common::TestDatabase::create("two_nodes_on_one_database_act_as_one_registry") else { return };
    let url = db.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let env = [("MOAT_DATABASE_URL", url.as_str())];
    let a = Server::start_in(&tmp.path().join("a"), &env);
    // Node B serves the same installation: it gets the administrator's profile (whose secret the
    // shared database verifies) rather than minting a new one.
    std::fs::create_dir_all(tmp.path().join("b")).unwrap();
    std::fs::copy(a.dir.join("profile.json"), tmp.path().join("b/profile.json")).unwrap();
    // Behind a load balancer every node has the same public URL (it names the token issuer);
    // here node B takes node A's, and listens on a port of its own.
    let port_b = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen_b = format!("127.0.0.1:{port_b}");
    let b = Server::start_in(
        &tmp.path().join("b"),
        &[("MOAT_DATABASE_URL", url.as_str()), ("MOAT_PUBLIC_URL", a.url.as_str()), ("MOAT_LISTEN", listen_b.as_str())],
    );
    let b_url = format!("http://{listen_b}");
    let ha = a.http();
    let hb = ha.at(&b_url, None);

    let reg = a.registry_path("default", "shared");
    assert_eq!(ha.call("PUT", &reg, Some(&common::registry_body("eastus")), &[]).await.status, 201);
    assert_eq!(hb.get(&reg).await.status, 200, "node B serves what node A created");

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

    // A switch flipped on node A denies requests on node B within a second.
    assert_eq!(hb.get(&version).await.status, 200);
    let mut private = common::registry_body("eastus");
    private["properties"]["publicNetworkAccess"] = serde_json::json!("Disabled");
    assert_eq!(ha.call("PUT", &reg, Some(&private), &[]).await.status, 200);
    let flipped = std::time::Instant::now();
    let mut denied = None;
    while flipped.elapsed() < std::time::Duration::from_secs(3) {
        let r = hb.get(&version).await;
        if r.status == 403 {
            assert!(r.text.contains("PublicNetworkAccessDisabled"), "{}", r.text);
            denied = Some(flipped.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let denied = denied.expect("node B never applied the switch flipped on node A");
    assert!(denied < std::time::Duration::from_secs(1), "node B applied the switch after {denied:?}");

    // A role assigned on node A lets its holder in on node B within a second.
    let p = a.profile();
    let (oid, app, secret) = common::create_sp(&ha, "reader-b").await;
    let token = common::token_for(&ha, &p.tenant, &app, &secret).await;
    let reader_b = hb.with_token(&token);
    assert_eq!(reader_b.get(&reg).await.status, 404, "no role yet: the registry is hidden");
    common::assign(&ha, &reg, &oid, "acdd72a7-3385-48ef-bd42-f606fba81ae7").await;
    let assigned = std::time::Instant::now();
    let mut allowed = None;
    while assigned.elapsed() < std::time::Duration::from_secs(3) {
        if reader_b.get(&reg).await.status == 200 {
            allowed = Some(assigned.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let allowed = allowed.expect("node B never applied the role assigned on node A");
    assert!(allowed < std::time::Duration::from_secs(1), "node B applied the assignment after {allowed:?}");
    eprintln!("switch applied on node B after {denied:?}, role after {allowed:?}");
    a.stop();
    b.stop();
}
