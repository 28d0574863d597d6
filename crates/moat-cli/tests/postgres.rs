//! The whole server on PostgreSQL: the same binary, with `MOAT_DATABASE_URL` naming a fresh
//! database of the server that `MOAT_TEST_POSTGRES_URL` points at (scripts/test.sh starts one on
//! loopback). A registry, a model uploaded and downloaded, an image pushed and pinned by an
//! environment, all still there after a restart. Skips, saying why, without that variable.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::Server;

#[tokio::test(flavor = "multi_thread")]
async fn the_server_runs_on_postgresql_and_keeps_everything_across_a_restart() {
    let Ok(admin) = std::env::var("MOAT_TEST_POSTGRES_URL") else {
        eprintln!(
            "SKIP the_server_runs_on_postgresql: MOAT_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL on loopback and sets it)"
        );
        return;
    };
    let name = format!("moat_e2e_{}", std::process::id());
    let psql = |sql: &str| {
        let out = Command::new("psql").args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]).output().expect("psql runs");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    };
    psql(&format!("CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"));
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);

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
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}
