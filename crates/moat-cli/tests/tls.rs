//! HTTPS from moat's local certificate authority, through the real binary: the CLI trusts the
//! CA through its profile and works end to end (registry, model upload and download through
//! the blob plane's SAS URLs); curl trusts it only when told to; plain HTTP gets nowhere.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::Server;

#[test]
fn the_cli_and_curl_speak_verified_tls_to_moat() {
    let tmp = tempfile::tempdir().unwrap();
    // No TLS setting at all: HTTPS is the default.
    let server = Server::start_default(&tmp.path().join("data"), &[]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("data/profile.json")).unwrap()).unwrap();
    let ca = profile["caCertificate"].as_str().unwrap().to_string();
    assert!(std::fs::read_to_string(&ca).unwrap().contains("BEGIN CERTIFICATE"));

    std::fs::write(tmp.path().join("r.yml"), "name: tlsreg\nlocation: eastus\n").unwrap();
    server.moat_json(&["registry", "create", "--file", tmp.path().join("r.yml").to_str().unwrap()]);
    std::fs::create_dir_all(tmp.path().join("model")).unwrap();
    let weights: Vec<u8> = (0..10_000_000u32).map(|i| (i % 239) as u8).collect();
    std::fs::write(tmp.path().join("model/weights.bin"), &weights).unwrap();
    std::fs::write(tmp.path().join("model.yml"), "name: m\nversion: 1\npath: ./model\n").unwrap();
    let m = server.moat_json(&["model", "create", "--file", tmp.path().join("model.yml").to_str().unwrap(), "--registry-name", "tlsreg"]);
    assert_eq!(m["properties"]["files"][0]["path"], "weights.bin");
    let out = tmp.path().join("out");
    let d = server.moat(&[
        "model",
        "download",
        "--name",
        "m",
        "--version",
        "1",
        "--registry-name",
        "tlsreg",
        "--download-path",
        out.to_str().unwrap(),
    ]);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    assert_eq!(std::fs::read(out.join("m/weights.bin")).unwrap(), weights);

    // A private registry reached through a private endpoint: its listener speaks TLS too, with a
    // certificate for its address from the same CA, and the CLI follows it with --source-address.
    server.moat_json(&["registry", "update", "--name", "tlsreg", "--set", "publicNetworkAccess=Disabled"]);
    server.moat_json(&[
        "network",
        "vnet",
        "create",
        "--name",
        "v",
        "--address-prefixes",
        "127.44.0.0/16",
        "--subnet-name",
        "s1",
        "--subnet-prefixes",
        "127.44.1.0/24",
    ]);
    let reg_id = format!(
        "/subscriptions/{}/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/tlsreg",
        profile["subscriptionId"].as_str().unwrap()
    );
    let pe = server.moat_json(&[
        "network",
        "private-endpoint",
        "create",
        "--name",
        "pe",
        "--vnet-name",
        "v",
        "--subnet",
        "s1",
        "--group-id",
        "amlregistry",
        "--private-connection-resource-id",
        &reg_id,
    ]);
    let pe_url = pe["properties"]["serviceUrl"].as_str().unwrap().to_string();
    assert!(pe_url.starts_with("https://127.44.1.4:"), "{pe_url}");
    let outside = server.moat(&["model", "show", "--name", "m", "--version", "1", "--registry-name", "tlsreg"]);
    assert!(String::from_utf8_lossy(&outside.stderr).contains("PublicNetworkAccessDisabled"));
    let inside =
        server.moat(&["--source-address", "127.44.1.7", "model", "show", "--name", "m", "--version", "1", "--registry-name", "tlsreg"]);
    assert!(inside.status.success(), "through the endpoint over TLS: {}", String::from_utf8_lossy(&inside.stderr));

    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP the curl part: curl is not installed");
        return;
    }
    let url = format!("{}/healthz", server.url);
    let trusted = Command::new("curl").args(["-sS", "-m", "5", "--cacert", &ca, &url]).output().unwrap();
    assert!(trusted.status.success(), "curl --cacert: {}", String::from_utf8_lossy(&trusted.stderr));
    let untrusted = Command::new("curl").args(["-sS", "-m", "5", &url]).output().unwrap();
    assert_eq!(untrusted.status.code(), Some(60), "without the CA, curl must refuse the certificate");
    let pe_health = Command::new("curl")
        .args(["-sS", "-m", "5", "--interface", "127.44.1.7", "--cacert", &ca, &format!("{pe_url}/healthz")])
        .output()
        .unwrap();
    assert!(pe_health.status.success(), "the endpoint's certificate verifies by IP: {}", String::from_utf8_lossy(&pe_health.stderr));
    // Deleting the endpoint closes its TLS listener for real.
    let closing = server.moat(&["network", "private-endpoint", "delete", "--name", "pe"]);
    assert!(closing.status.success());
    let mut closed = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(pe_url.trim_start_matches("https://")).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(closed, "a deleted endpoint's TLS listener still accepts connections");

    let plain = Command::new("curl").args(["-sS", "-m", "5", &url.replace("https://", "http://")]).output().unwrap();
    assert!(!plain.status.success() || !String::from_utf8_lossy(&plain.stdout).contains("ok"), "plain HTTP must not be served");
}
