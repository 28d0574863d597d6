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

    // A profile that does not trust moat's CA: the CLI says the certificate is why, at once.
    let mut stranger = profile.clone();
    stranger.as_object_mut().unwrap().remove("caCertificate");
    let stranger_path = tmp.path().join("stranger.json");
    std::fs::write(&stranger_path, stranger.to_string()).unwrap();
    let refused = Command::new(common::BIN)
        .args(["--profile", stranger_path.to_str().unwrap(), "model", "show", "--name", "m", "--version", "1", "--registry-name", "tlsreg"])
        .env_remove("MOAT_PROFILE")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && said.contains("TLS: invalid peer certificate: UnknownIssuer"), "{said}");

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

/// The operator's own certificate on the public listener (here from a CA made with openssl):
/// clients that trust the operator's CA connect; moat's local CA alone no longer verifies it;
/// the CLI trusts both through the bundle its profile names. Half a set of files is refused.
#[test]
fn an_operator_certificate_replaces_the_local_one_on_the_public_listener() {
    for tool in ["openssl", "curl"] {
        if Command::new(tool).arg("version").output().is_err() && Command::new(tool).arg("--version").output().is_err() {
            eprintln!("SKIP an_operator_certificate_replaces_the_local_one_on_the_public_listener: {tool} is not installed");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(d).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "op-ca.key", "-out", "op-ca.crt", "-days", "2", "-subj", "/CN=Operator CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(&[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=moat.example"]].concat());
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "op-ca.crt",
        "-CAkey",
        "op-ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.crt",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
    ]);
    let path = |f: &str| d.join(f).to_str().unwrap().to_string();

    // Half a set of files is a configuration error.
    let half = Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d.join("half"))
        .env("MOAT_TLS_CERT_FILE", path("leaf.crt"))
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half.stderr).contains("go together"), "{}", String::from_utf8_lossy(&half.stderr));

    let (cert, key, ca) = (path("leaf.crt"), path("leaf.key"), path("op-ca.crt"));
    let server = Server::start_default(
        &d.join("data"),
        &[("MOAT_TLS_CERT_FILE", cert.as_str()), ("MOAT_TLS_KEY_FILE", key.as_str()), ("MOAT_TLS_CA_FILE", ca.as_str())],
    );
    let url = format!("{}/healthz", server.url);
    let with_operator_ca = Command::new("curl").args(["-sS", "-m", "5", "--cacert", &ca, &url]).output().unwrap();
    assert!(with_operator_ca.status.success(), "the operator's CA verifies: {}", String::from_utf8_lossy(&with_operator_ca.stderr));
    let local_ca = path("data/tls/ca.crt");
    let with_local_ca = Command::new("curl").args(["-sS", "-m", "5", "--cacert", &local_ca, &url]).output().unwrap();
    assert_eq!(with_local_ca.status.code(), Some(60), "moat's own CA did not issue what the listener presents");
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("data/profile.json")).unwrap()).unwrap();
    assert!(profile["caCertificate"].as_str().unwrap().ends_with("trust.pem"), "{profile}");
    // The CLI, through the profile's bundle.
    let account = server.moat_json(&["account", "show"]);
    assert!(account["id"].is_string(), "{account}");
}
