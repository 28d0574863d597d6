//! The README walkthrough, end to end through the real binary: serve, create a registry from
//! YAML, show it with its managed resources, flip public access, discover it, restart.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Server;
use serde_json::Value;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/registry.yml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_show_update_discover_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start_in(&dir, &[]);

    // account show: the subscription id and tenant of the bootstrap.
    let account = server.moat_json(&["account", "show"]);
    let p = server.profile();
    assert_eq!(account["id"], p.subscription);
    assert_eq!(account["tenantId"], p.tenant);

    let created = server.moat_json(&["registry", "create", "--file", EXAMPLE]);
    assert_eq!(created["name"], "demo-registry");
    let shown = server.moat_json(&["registry", "show", "--name", "demo-registry"]);
    let mut resource = shown.clone();
    assert!(resource.as_object_mut().unwrap().remove("fqdns").is_some(), "show adds the names: {shown}");
    assert_eq!(resource, created);
    let props = &shown["properties"];
    assert_eq!(props["publicNetworkAccess"], "Enabled");
    assert_eq!(
        props["discoveryUrl"].as_str().unwrap(),
        format!("{}/registrymanagement/v1.0/registries/demo-registry/discovery", server.url)
    );
    assert!(props["mlFlowRegistryUri"].as_str().unwrap().starts_with("azureml://"));
    assert_eq!(shown["identity"]["type"], "SystemAssigned");
    assert!(shown["systemData"]["createdAt"].is_string());

    // The managed resource group really holds one storage account per storage entry and one
    // container registry shared by every region.
    let mrg = props["managedResourceGroup"]["resourceId"].as_str().unwrap();
    let mrg_name = mrg.rsplit('/').next().unwrap();
    assert!(mrg_name.starts_with("azureml-rg-demo-registry_"), "{mrg_name}");
    let regions = props["regionDetails"].as_array().unwrap();
    assert_eq!(regions.iter().map(|r| r["location"].as_str().unwrap()).collect::<Vec<_>>(), ["eastus", "westus"]);
    let storage_ids: Vec<String> = regions
        .iter()
        .flat_map(|r| r["storageAccountDetails"].as_array().unwrap().iter())
        .map(|s| s["systemCreatedStorageAccount"]["armResourceId"]["resourceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(storage_ids.len(), 3);
    let acr_ids: Vec<&str> =
        regions.iter().map(|r| r["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"].as_str().unwrap()).collect();
    assert!(acr_ids.iter().all(|a| *a == acr_ids[0]), "one container registry for all regions");

    let http = server.http();
    let group = http.get(mrg).await;
    assert_eq!(group.status, 200, "{}", group.text);
    assert_eq!(group.body["managedBy"], shown["id"]);
    let contents = http.get(&format!("{mrg}/resources")).await;
    let mut held: Vec<String> = contents.body["value"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    held.sort();
    let mut expected = storage_ids.clone();
    expected.push(acr_ids[0].to_string());
    expected.sort();
    assert_eq!(held, expected);
    for id in &storage_ids {
        let sa = http.get(id).await;
        assert_eq!(sa.status, 200, "{}", sa.text);
        assert_eq!(sa.body["type"], "Microsoft.Storage/storageAccounts");
        let name = sa.body["name"].as_str().unwrap();
        assert!(name.len() == 11 && name.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{name}");
        assert!(sa.body["properties"]["publicNetworkAccess"].is_null(), "follows the registry until set");
        let port = server.url.rsplit(':').next().unwrap();
        assert_eq!(
            sa.body["properties"]["primaryEndpoints"]["blob"],
            format!("http://{name}.blob.moat.internal:{port}/"),
            "named, as in Azure"
        );
    }
    let acr = http.get(acr_ids[0]).await;
    assert_eq!(acr.status, 200);
    assert_eq!(acr.body["type"], "Microsoft.ContainerRegistry/registries");
    assert_eq!(acr.body["sku"]["name"], "Premium");
    assert_eq!(acr.body["properties"]["replicationLocations"], serde_json::json!(["eastus", "westus"]));

    // update --set sticks.
    let updated = server.moat_json(&["registry", "update", "--name", "demo-registry", "--set", "publicNetworkAccess=Disabled"]);
    assert_eq!(updated["properties"]["publicNetworkAccess"], "Disabled");
    assert_eq!(server.moat_json(&["registry", "show", "--name", "demo-registry"])["properties"]["publicNetworkAccess"], "Disabled");

    // A private registry closes discovery to the public listener too, and says why.
    let closed = http.get("/registrymanagement/v1.0/registries/demo-registry/discovery").await;
    assert_eq!(closed.status, 403, "{}", closed.text);
    assert_eq!(closed.body["error"]["innerError"]["code"], "PublicNetworkAccessDisabled", "{}", closed.text);
    assert!(closed.text.contains("demo-registry") && closed.text.contains("private endpoint"), "{}", closed.text);
    server.moat_json(&["registry", "update", "--name", "demo-registry", "--set", "publicNetworkAccess=Enabled"]);

    // Discovery returns the documented JSON.
    let disc = http.get("/registrymanagement/v1.0/registries/demo-registry/discovery").await;
    assert_eq!(disc.status, 200, "{}", disc.text);
    assert_eq!(disc.body["registryName"], "demo-registry");
    assert_eq!(disc.body["tenantId"], p.tenant);
    assert_eq!(disc.body["primaryRegion"], "eastus");
    assert_eq!(disc.body["regions"], serde_json::json!(["eastus", "westus"]));
    assert_eq!(disc.body["subscriptionId"], p.subscription);
    assert_eq!(disc.body["resourceGroup"], "default");
    assert_eq!(disc.body["primaryRegionResourceProviderUri"], format!("{}/", server.url));
    // Each region's name for the registry (which moat's DNS answers), with the public port.
    let port = server.url.rsplit(':').next().unwrap();
    let guid_of = |region: &str| {
        let uri = disc.body["registryFqdns"][region]["uri"].as_str().unwrap_or_else(|| panic!("{}", disc.text)).to_string();
        let host = uri.strip_prefix("http://").and_then(|u| u.strip_suffix(&format!(":{port}"))).unwrap_or_else(|| panic!("{uri}"));
        let guid = host.strip_suffix(&format!(".registry.{region}.api.moat.internal")).unwrap_or_else(|| panic!("{uri}"));
        assert!(uuid::Uuid::parse_str(guid).is_ok(), "{uri}");
        guid.to_string()
    };
    assert_eq!(guid_of("eastus"), guid_of("westus"), "one registry, one GUID, a name per region");
    let reg_json = server.moat_json(&["registry", "show", "--name", "demo-registry"]);
    let acr = reg_json["properties"]["regionDetails"][0]["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        disc.body["containerRegistryFqdns"],
        serde_json::json!([
            format!("{acr}.cr.moat.internal:{port}"),
            format!("{acr}.eastus.data.cr.moat.internal:{port}"),
            format!("{acr}.westus.data.cr.moat.internal:{port}")
        ])
    );
    let accounts = disc.body["storageAccountFqdns"].as_object().unwrap_or_else(|| panic!("{}", disc.text));
    assert!(!accounts.is_empty(), "{}", disc.text);
    for (account, v) in accounts {
        assert_eq!(v["uri"], format!("http://{account}.blob.moat.internal:{port}"));
    }
    // `moat registry show` prints the names too.
    assert_eq!(reg_json["fqdns"]["registry"], disc.body["registryFqdns"], "{reg_json}");
    assert_eq!(reg_json["fqdns"]["containerRegistry"], disc.body["containerRegistryFqdns"]);
    assert_eq!(reg_json["fqdns"]["storageAccounts"], disc.body["storageAccountFqdns"]);
    // Discovery is case-insensitive on the name, like the uniqueness rule.
    assert_eq!(http.get("/registrymanagement/v1.0/registries/DEMO-registry/discovery").await.status, 200);

    // A second server on the same data directory is refused.
    let second =
        std::process::Command::new(common::BIN).args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already using the data directory"));

    // Restart on the same data directory: nothing is lost, the profile still works.
    let before: Value = shown.clone();
    server.stop();
    let server = Server::start_in(&dir, &[]);
    assert_eq!(server.profile().client_id, p.client_id);
    assert_eq!(server.profile().client_secret, p.client_secret, "a valid profile is kept across restarts");
    let after = server.moat_json(&["registry", "show", "--name", "demo-registry"]);
    assert_eq!(after["properties"]["publicNetworkAccess"], "Enabled");
    assert_eq!(after["properties"]["regionDetails"], before["properties"]["regionDetails"]);
    assert_eq!(after["identity"], before["identity"]);
    let listed = server.moat_json(&["registry", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // Table output.
    let table = server.moat(&["registry", "list", "--output", "table"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.lines().next().unwrap().starts_with("Name"), "{text}");
    assert!(text.contains("demo-registry") && text.contains("Enabled"), "{text}");

    // Delete through the CLI removes the managed resources too.
    let out = server.moat(&["registry", "delete", "--name", "demo-registry", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let http = server.http();
    assert_eq!(http.get(mrg).await.status, 404);
    assert_eq!(http.get(&storage_ids[0]).await.status, 404);
    let out = server.moat(&["registry", "show", "--name", "demo-registry"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ResourceNotFound") && err.contains("demo-registry"), "{err}");
    server.stop();
}

#[test]
fn profile_is_private_and_cli_errors_are_one_sentence() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    let mode = std::fs::metadata(&server.profile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(&server.dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);

    // A bad file: non-zero exit and a message naming the problem.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("r.yml");
    std::fs::write(&bad, "name: x1\nlocation: eastus\npublic_network_acess: disabled\n").unwrap();
    let out = server.moat(&["registry", "create", "--file", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("public_network_acess"), "{err}");

    // A server-side refusal carries the server's code.
    std::fs::write(&bad, "name: x\nlocation: eastus\n").unwrap();
    let out = server.moat(&["registry", "create", "--file", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("InvalidResourceName") && err.contains("'x'"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Creating twice is refused with a hint instead of silently updating.
    let good = tmp.path().join("g.yml");
    std::fs::write(&good, "name: twice\nlocation: eastus\n").unwrap();
    assert!(server.moat(&["registry", "create", "--file", good.to_str().unwrap()]).status.success());
    let out = server.moat(&["registry", "create", "--file", good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    // Deleting without --yes and without a terminal refuses.
    let out = server.moat(&["registry", "delete", "--name", "twice"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
}

#[test]
fn serve_refuses_bad_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path())
        .env("MOAT_LISTNE", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MOAT_LISTNE"));

    let cfg = tmp.path().join("moat.toml");
    std::fs::write(&cfg, "listen = '127.0.0.1:0'\nlisten_port = 1\n").unwrap();
    let out = std::process::Command::new(common::BIN).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen_port"));

    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--tls=false", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"), "plain HTTP is for loopback only");
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands: &[&[&str]] = &[
        &["serve"],
        &["account", "show"],
        &["account", "get-access-token"],
        &["group", "create"],
        &["group", "show"],
        &["group", "list"],
        &["group", "delete"],
        &["registry", "create"],
        &["registry", "show"],
        &["registry", "list"],
        &["registry", "update"],
        &["registry", "delete"],
        &["openapi"],
        &["login"],
        &["ad", "user", "create"],
        &["ad", "sp", "create-for-rbac"],
        &["role", "definition", "create"],
        &["role", "assignment", "create"],
        &["monitor", "activity-log", "list"],
        &["model", "create"],
        &["model", "show"],
        &["model", "list"],
        &["model", "archive"],
        &["model", "restore"],
        &["model", "update"],
        &["model", "delete"],
        &["model", "download"],
        &["data", "create"],
        &["component", "create"],
        &["environment", "create"],
    ];
    for c in commands {
        let out = std::process::Command::new(common::BIN).args(*c).arg("--help").output().unwrap();
        assert!(out.status.success(), "{c:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "`moat {} --help` has no example:\n{text}", c.join(" "));
    }
}

#[test]
fn login_writes_a_relative_profile_and_takes_the_endpoint_from_the_default_one() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start();
    server.moat_json(&[
        "ad",
        "user",
        "create",
        "--display-name",
        "Rel",
        "--user-principal-name",
        "rel@example.com",
        "--password",
        "a long password",
    ]);
    let cwd = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .current_dir(cwd.path())
        .env_remove("MOAT_PROFILE")
        .env("MOAT_DATA_DIR", &server.dir)
        .env("XDG_CONFIG_HOME", cwd.path().join("config"))
        .args(["--profile", "rel.json", "login", "-u", "rel@example.com", "-p", "a long password"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = cwd.path().join("rel.json");
    assert_eq!(std::fs::metadata(&written).unwrap().permissions().mode() & 0o777, 0o600);
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&written).unwrap()).unwrap();
    assert_eq!(profile["endpoint"], server.url.as_str());
    assert_eq!(profile["user"], "rel@example.com");
}

/// `moat … | head`: when the reader stops early the command ends quietly (exit 0, nothing on
/// stderr), as Unix tools do, rather than panicking on the closed pipe.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    use std::io::Read;
    let mut child = std::process::Command::new(common::BIN)
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here, with most of the 250 KB document unread.
    let out = child.wait_with_output().unwrap();
    assert_eq!(&first[..1], b"{");
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
