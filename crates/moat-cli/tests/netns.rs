//! Namespace-mode isolation, for real: two Linux network namespaces made by the test, one
//! holding private endpoints to a private registry. From inside it, `moat model create` and
//! `moat model download` work; from the other namespace and from the host, every plane is
//! refused. Needs root (network namespaces); prints why it skips otherwise.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Netns, Server, registry_body, skip_reason_netns as skip_reason};
use serde_json::json;

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_processes_inside_the_approved_namespace_reach_a_private_registry() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP only_processes_inside_the_approved_namespace_reach_a_private_registry: {why}");
        return;
    }
    let tag = std::process::id();
    let ns_a = Netns::new(format!("moat-a-{tag}"));
    // moat attaches to namespace A, which the operator made; it makes namespace B itself.
    let ns_b = Netns::expected(format!("moat-b-{tag}"));
    assert!(!ns_b.exists());
    // Plain HTTP inside the namespaces (10.x addresses) is forced on purpose; tests/byname.rs
    // covers the same isolation over TLS.
    let tmp_server = tempfile::tempdir().unwrap();
    let server = Server::start_in(&tmp_server.path().join("data"), &[("MOAT_ALLOW_PLAIN_HTTP_ON_NETWORK", "true")]);
    let http = server.http();
    let sub = server.sub_path();
    let reg = server.registry_path("default", "nsreg");
    let created = http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let sa = created.body["properties"]["regionDetails"][0]["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]
        ["resourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut private = registry_body("eastus");
    private["properties"]["publicNetworkAccess"] = json!("Disabled");
    assert_eq!(http.call("PUT", &reg, Some(&private), &[]).await.status, 200);

    let net = format!("{sub}/resourceGroups/default/providers/Microsoft.Network");
    for (vnet, ns, space, subnet) in
        [("vnet-a", &ns_a.0, "10.251.0.0/16", "10.251.1.0/24"), ("vnet-b", &ns_b.0, "10.252.0.0/16", "10.252.1.0/24")]
    {
        let r = http
            .call(
                "PUT",
                &format!("{net}/virtualNetworks/{vnet}"),
                Some(&json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": [space]},
                    "binding": {"mode": "Namespace", "namespace": ns},
                    "subnets": [{"name": "s1", "properties": {"addressPrefix": subnet}}]}})),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for _ in 0..100 {
        if ns_b.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ns_b.exists(), "moat did not create the namespace of vnet-b; its log:\n{}", server.log());
    let mut urls = Vec::new();
    for (pe, target, group) in [("pe-reg", reg.as_str(), "amlregistry"), ("pe-blob", sa.as_str(), "blob")] {
        let r = http
            .call(
                "PUT",
                &format!("{net}/privateEndpoints/{pe}"),
                Some(&json!({"properties": {"subnet": {"id": format!("{net}/virtualNetworks/vnet-a/subnets/s1")},
                    "privateLinkServiceConnections": [{"name": pe, "properties": {"privateLinkServiceId": target, "groupIds": [group]}}]}})),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let mut url = None;
        for _ in 0..100 {
            url = http.get(&format!("{net}/privateEndpoints/{pe}")).await.body["properties"]["serviceUrl"].as_str().map(str::to_string);
            if url.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        urls.push(url.unwrap_or_else(|| panic!("{pe} has no listener; the server log:\n{}", server.log())));
    }
    assert!(urls[0].starts_with("http://10.251.1.4:"), "{urls:?}");
    // Private DNS: the blob zone, linked to vnet-a, holding pe-blob's record.
    let zone_id = format!("{sub}/resourceGroups/default/providers/Microsoft.Network/privateDnsZones/privatelink.blob.moat.internal");
    assert_eq!(http.call("PUT", &zone_id, Some(&json!({"location": "global"})), &[]).await.status, 201);
    let link = json!({"location": "global", "properties": {"virtualNetwork": {"id": format!("{net}/virtualNetworks/vnet-a")}}});
    assert_eq!(http.call("PUT", &format!("{zone_id}/virtualNetworkLinks/a"), Some(&link), &[]).await.status, 201);
    let group = json!({"properties": {"privateDnsZoneConfigs": [{"name": "blob", "properties": {"privateDnsZoneId": zone_id}}]}});
    assert_eq!(
        http.call("PUT", &format!("{net}/privateEndpoints/pe-blob/privateDnsZoneGroups/default"), Some(&group), &[]).await.status,
        201
    );

    // A model from local files, created and downloaded from inside namespace A.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("model")).unwrap();
    let weights: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(tmp.path().join("model/weights.bin"), &weights).unwrap();
    std::fs::write(tmp.path().join("model.yml"), "name: m\nversion: 1\npath: ./model\n").unwrap();
    let yml = tmp.path().join("model.yml");
    let created = server.moat_in(&ns_a.0, &["model", "create", "--file", yml.to_str().unwrap(), "--registry-name", "nsreg"]);
    assert!(created.status.success(), "create inside namespace A: {}\nserver log:\n{}", text(&created), server.log());
    let out_dir = tmp.path().join("out");
    let got = server.moat_in(
        &ns_a.0,
        &["model", "download", "--name", "m", "--version", "1", "--registry-name", "nsreg", "--download-path", out_dir.to_str().unwrap()],
    );
    assert!(got.status.success(), "download inside namespace A: {}", text(&got));
    assert_eq!(std::fs::read(out_dir.join("m/weights.bin")).unwrap(), weights);

    // From namespace B and from the host: every plane refused.
    let from_b = server.moat_in(&ns_b.0, &["model", "show", "--name", "m", "--version", "1", "--registry-name", "nsreg"]);
    assert!(!from_b.status.success() && text(&from_b).contains("PublicNetworkAccessDisabled"), "{}", text(&from_b));
    let from_host = server.moat(&["model", "show", "--name", "m", "--version", "1", "--registry-name", "nsreg"]);
    assert!(!from_host.status.success() && text(&from_host).contains("PublicNetworkAccessDisabled"), "{}", text(&from_host));
    // The endpoints' listeners exist only inside namespace A.
    for url in &urls {
        let host = Command::new("curl").args(["-sS", "-m", "3", &format!("{url}/healthz")]).output().unwrap();
        assert!(!host.status.success(), "the host reached {url}");
        let b = Command::new("ip").args(["netns", "exec", &ns_b.0, "curl", "-sS", "-m", "3", &format!("{url}/healthz")]).output().unwrap();
        assert!(!b.status.success(), "namespace B reached {url}");
        let a = Command::new("ip").args(["netns", "exec", &ns_a.0, "curl", "-sS", "-m", "3", &format!("{url}/healthz")]).output().unwrap();
        assert!(a.status.success(), "namespace A cannot reach {url}: {}", text(&a));
    }
    // DNS inside each namespace answers in that network's view: A gets the endpoint's address.
    let account = sa.rsplit('/').next().unwrap();
    let name = format!("{account}.blob.moat.internal");
    let dig_in = |ns: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", ns, "dig", "@127.0.0.1", "+time=2", "+tries=1", &name, "A", "+short"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or_default().to_string()
    };
    if Command::new("dig").arg("-v").output().is_ok() {
        assert_eq!(dig_in(&ns_a.0), "10.251.1.5", "inside A: the blob endpoint");
        assert_eq!(dig_in(&ns_b.0), "127.0.0.1", "inside B: the public surface (moat's own, in B)");
    } else {
        eprintln!("SKIP the DNS part: dig is not installed");
    }

    // The blob plane of the private registry from the host, with a valid SAS: refused.
    let r = http
        .call(
            "POST",
            &format!("{reg}/datareferences/m/versions/1"),
            Some(&json!({"assetId": "azureml://registries/nsreg/models/m/versions/1"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "datareferences is amlregistry plane: {}", r.text);

    // Deleting the endpoint takes its address off namespace A.
    assert_eq!(http.call("DELETE", &format!("{net}/privateEndpoints/pe-reg"), None, &[]).await.status, 200);
    let mut gone = false;
    for _ in 0..100 {
        let addrs = Command::new("ip").args(["-n", &ns_a.0, "addr", "show", "dev", "lo"]).output().unwrap();
        if !String::from_utf8_lossy(&addrs.stdout).contains("10.251.1.4/") {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "the endpoint's address is still on namespace A's loopback");

    // The namespace moat made goes with its network; the operator's stays.
    assert_eq!(http.call("DELETE", &format!("{net}/virtualNetworks/vnet-b"), None, &[]).await.status, 200);
    for _ in 0..100 {
        if !ns_b.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!ns_b.exists(), "the namespace moat created for vnet-b outlived it");
    assert!(ns_a.exists());
}
