//! moat's DNS server through the real binary, queried with real `dig`: every resource has a
//! name under the zone with Azure's privatelink CNAME step; a querier in a virtual network
//! (by its source address, loopback mode) gets the private endpoint's address, anyone else
//! the public listener's; unknown names are NXDOMAIN; records follow the endpoints.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Server, registry_body};
use serde_json::json;

fn dig(port: u16, source: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new("dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"]);
    if let Some(s) = source {
        cmd.args(["-b", s]);
    }
    let out = cmd.args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn short(port: u16, source: Option<&str>, name: &str) -> Vec<String> {
    dig(port, source, &[name, "A", "+short"]).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_horizon_answers_follow_networks_and_endpoints() {
    if Command::new("dig").arg("-v").output().is_err() {
        eprintln!("SKIP split_horizon_answers_follow_networks_and_endpoints: dig is not installed (Debian: bind9-dnsutils)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Port 0: moat picks one free for both UDP and TCP and prints it.
    let server = Server::start_in(&tmp.path().join("data"), &[("MOAT_DNS_LISTEN", "127.0.0.1:0")]);
    let port: u16 = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("  dns: 127.0.0.1:")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no DNS line in {:?}", server.banner));
    let http = server.http();
    let reg = server.registry_path("default", "dnsreg");
    let created = http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let sa_id = created.body["properties"]["regionDetails"][0]["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]
        ["resourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let account = sa_id.rsplit('/').next().unwrap().to_string();
    let guid = created.body["properties"]["managedResourceGroup"]["resourceId"].as_str().unwrap().rsplit('_').next().unwrap().to_string();
    let blob = format!("{account}.blob.moat.internal");
    let registry = format!("{guid}.registry.eastus.api.moat.internal");

    // Public answers: the CNAME step, then the public listener's address.
    assert_eq!(short(port, None, &blob), vec![format!("{account}.privatelink.blob.moat.internal."), "127.0.0.1".to_string()]);
    assert_eq!(
        short(port, None, &registry),
        vec![format!("{guid}.registry.eastus.privatelink.api.moat.internal."), "127.0.0.1".to_string()]
    );
    assert_eq!(short(port, None, "eastus.api.moat.internal").last().map(String::as_str), Some("127.0.0.1"));
    assert!(dig(port, None, &["nosuch.blob.moat.internal", "A"]).contains("status: NXDOMAIN"));
    assert!(dig(port, None, &["example.com", "A"]).contains("status: REFUSED"));
    assert_eq!(short(port, None, &blob.to_uppercase()).last().map(String::as_str), Some("127.0.0.1"), "names are case-insensitive");
    assert!(dig(port, None, &[&blob, "A", "+tcp"]).contains("127.0.0.1"), "TCP answers too");

    // A network with an endpoint to the storage account: its members get the private address.
    let net = format!("{}/resourceGroups/default/providers/Microsoft.Network", server.sub_path());
    let vnet = json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["127.66.0.0/16"]},
        "subnets": [{"name": "s1", "properties": {"addressPrefix": "127.66.1.0/24"}}]}});
    assert_eq!(http.call("PUT", &format!("{net}/virtualNetworks/dnsnet"), Some(&vnet), &[]).await.status, 201);
    let pe = json!({"properties": {"subnet": {"id": format!("{net}/virtualNetworks/dnsnet/subnets/s1")},
        "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": sa_id, "groupIds": ["blob"]}}]}});
    let r = http.call("PUT", &format!("{net}/privateEndpoints/pe-dns"), Some(&pe), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["properties"]["customDnsConfigs"][0]["fqdn"], blob.as_str(), "{}", r.text);
    // An endpoint alone changes no answer: as in Azure, the records live in a private DNS zone,
    // which the network must be linked to.
    assert_eq!(short(port, Some("127.66.1.9"), &blob).last().map(String::as_str), Some("127.0.0.1"));
    let zones = format!("{}/resourceGroups/default/providers/Microsoft.Network/privateDnsZones", server.sub_path());
    let bad = http.call("PUT", &format!("{zones}/privatelink.blob.core.windows.net"), Some(&json!({"location": "global"})), &[]).await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "UnsupportedPrivateDnsZone"), "{}", bad.text);
    let zone_id = format!("{zones}/privatelink.blob.moat.internal");
    assert_eq!(http.call("PUT", &zone_id, Some(&json!({"location": "global"})), &[]).await.status, 201);
    let group = json!({"properties": {"privateDnsZoneConfigs": [{"name": "blob", "properties": {"privateDnsZoneId": zone_id}}]}});
    let g = http.call("PUT", &format!("{net}/privateEndpoints/pe-dns/privateDnsZoneGroups/default"), Some(&group), &[]).await;
    assert_eq!(g.status, 201, "{}", g.text);
    let records = http.get(&format!("{zone_id}/ALL")).await;
    assert_eq!(records.body["value"][0]["name"], format!("{account}"), "{}", records.text);
    assert_eq!(records.body["value"][0]["properties"]["aRecords"][0]["ipv4Address"], "127.66.1.4");
    assert_eq!(short(port, Some("127.66.1.9"), &blob).last().map(String::as_str), Some("127.0.0.1"), "not linked yet");
    let link = json!({"location": "global", "properties": {"virtualNetwork": {"id": format!("{net}/virtualNetworks/dnsnet")}, "registrationEnabled": false}});
    let l = http.call("PUT", &format!("{zone_id}/virtualNetworkLinks/dnsnet-link"), Some(&link), &[]).await;
    assert_eq!(l.status, 201, "{}", l.text);
    let undeletable = http.call("DELETE", &zone_id, None, &[]).await;
    assert_eq!((undeletable.status, undeletable.code().as_str()), (409, "CannotDeleteZoneWithVirtualNetworkLinks"));
    let mut inside = Vec::new();
    for _ in 0..50 {
        inside = short(port, Some("127.66.1.9"), &blob);
        if inside.last().map(String::as_str) == Some("127.66.1.4") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(inside, vec![format!("{account}.privatelink.blob.moat.internal."), "127.66.1.4".to_string()]);
    assert_eq!(short(port, None, &blob).last().map(String::as_str), Some("127.0.0.1"), "outside the network: the public address");
    assert_eq!(short(port, Some("127.66.1.9"), &registry).last().map(String::as_str), Some("127.0.0.1"), "no endpoint to the registry");

    // The record goes with the endpoint.
    assert_eq!(http.call("DELETE", &format!("{net}/privateEndpoints/pe-dns"), None, &[]).await.status, 200);
    let mut after = Vec::new();
    for _ in 0..50 {
        after = short(port, Some("127.66.1.9"), &blob);
        if after.last().map(String::as_str) == Some("127.0.0.1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(after.last().map(String::as_str), Some("127.0.0.1"));
}
