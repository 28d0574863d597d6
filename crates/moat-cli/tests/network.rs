//! Network isolation in loopback mode, through the real binary and real sockets: a registry
//! with public access disabled, virtual networks bound to 127.x ranges, private endpoints
//! with their own listeners, the approval workflow, and admission on every plane — each seed
//! scenario of the Azure spec (§5), with the denial's code, message and audit entry.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;

use common::{Http, Server, registry_body};
use serde_json::{Value, json};

const NET: &str = "/resourceGroups/default/providers/Microsoft.Network";

struct Fixture {
    server: Server,
    http: Http,
    sub: String,
    reg: String,
    sa: String,
    model_blob_sas: String,
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// A registry `privreg` holding model `m` version 1 (one file, `model.bin`), and a read SAS
/// URL of that file taken while the registry was still public.
async fn fixture() -> Fixture {
    let server = Server::start();
    let http = server.http();
    let sub = server.sub_path();
    let reg = server.registry_path("default", "privreg");
    let created = http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let sa = created.body["properties"]["regionDetails"][0]["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]
        ["resourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let up = http.call("POST", &format!("{reg}/models/m/versions/1/startPendingUpload"), Some(&json!({})), &[]).await;
    let sas_uri = up.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap().to_string();
    let (base, sas) = sas_uri.split_once('?').unwrap();
    let put = http
        .anonymous()
        .raw("PUT", &format!("{base}/model.bin?{sas}"), Some(b"weights".to_vec()), None, &[("x-ms-blob-type", "BlockBlob")])
        .await;
    assert_eq!(put.status, 201, "{}", put.text);
    let v = http.call("PUT", &format!("{reg}/models/m/versions/1"), Some(&json!({"properties": {"modelUri": base}})), &[]).await;
    assert_eq!(v.status, 201, "{}", v.text);
    let r = http
        .call(
            "POST",
            &format!("{reg}/datareferences/m/versions/1"),
            Some(&json!({"assetId": "azureml://registries/privreg/models/m/versions/1"})),
            &[],
        )
        .await;
    let read = r.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap().to_string();
    let (folder, rsas) = read.split_once('?').unwrap();
    let model_blob_sas = format!("{folder}/model.bin?{rsas}");
    Fixture { server, http, sub, reg, sa, model_blob_sas }
}

impl Fixture {
    async fn set_public(&self, resource: &str, value: Value) {
        let r = if resource == self.reg {
            let mut body = self.http.get(&self.reg).await.body;
            body["properties"]["publicNetworkAccess"] = value;
            for k in ["id", "name", "type", "systemData"] {
                body.as_object_mut().unwrap().remove(k);
            }
            self.http.call("PUT", &self.reg, Some(&body), &[]).await
        } else {
            self.http.call("PATCH", resource, Some(&json!({"properties": {"publicNetworkAccess": value}})), &[]).await
        };
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
    }

    async fn vnet(&self, name: &str, space: &str, subnet: &str) {
        let r = self
            .http
            .call(
                "PUT",
                &format!("{}{NET}/virtualNetworks/{name}", self.sub),
                Some(&json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": [space]},
                    "subnets": [{"name": "s1", "properties": {"addressPrefix": subnet}}]}})),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    /// Creates a private endpoint and returns (its listener URL, its address, its body).
    async fn endpoint(&self, name: &str, vnet: &str, target: &str, group: &str, manual: bool) -> (String, String, Value) {
        let list = if manual { "manualPrivateLinkServiceConnections" } else { "privateLinkServiceConnections" };
        let r = self
            .http
            .call(
                "PUT",
                &format!("{}{NET}/privateEndpoints/{name}", self.sub),
                Some(&json!({"properties": {
                    "subnet": {"id": format!("{}{NET}/virtualNetworks/{vnet}/subnets/s1", self.sub)},
                    list: [{"name": format!("{name}-conn"), "properties": {"privateLinkServiceId": target, "groupIds": [group], "requestMessage": "from team a"}}]}})),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        // The listener opens asynchronously; its URL appears once it is bound.
        for _ in 0..100 {
            let got = self.http.get(&format!("{}{NET}/privateEndpoints/{name}", self.sub)).await;
            if let Some(url) = got.body["properties"]["serviceUrl"].as_str() {
                let address = got.body["properties"]["customDnsConfigs"][0]["ipAddresses"][0].as_str().unwrap().to_string();
                return (url.to_string(), address, got.body);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("private endpoint {name} never reported a serviceUrl");
    }

    fn model_path(&self) -> String {
        format!("{}/models/m/versions/1", self.reg)
    }

    /// The read SAS URL of `model.bin`, re-aimed at another listener.
    fn blob_via(&self, base: &str) -> String {
        let path = self.model_blob_sas.splitn(4, '/').nth(3).unwrap();
        format!("{}/{path}", base.trim_end_matches('/'))
    }
}

fn assert_denied(r: &common::Reply, code: &str, mentions: &[&str]) {
    assert_eq!(r.status, 403, "want {code}: {}", r.text);
    assert_eq!(r.specific_code(), code, "{}", r.text);
    let text = r.text.replace("&apos;", "'").replace("&quot;", "\"");
    for m in mentions {
        assert!(text.contains(m), "the denial should mention '{m}': {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_registry_is_reached_only_through_approved_endpoints_from_its_network() {
    let f = fixture().await;
    let http = &f.http;
    // Public and open: everything works from the public listener.
    assert_eq!(http.get(&f.model_path()).await.status, 200);
    assert_eq!(http.anonymous().raw("GET", &f.model_blob_sas, None, None, &[]).await.status, 200);

    // Disabled on the registry closes metadata, discovery and (inherited) the blob plane.
    f.set_public(&f.reg, json!("Disabled")).await;
    let r = http.get(&f.model_path()).await;
    assert_denied(&r, "PublicNetworkAccessDisabled", &["privreg", "public network", "private endpoint with group ID 'amlregistry'"]);
    let r = http.get("/registrymanagement/v1.0/registries/privreg/discovery").await;
    assert_denied(&r, "PublicNetworkAccessDisabled", &["privreg"]);
    let r = http.anonymous().raw("GET", &f.model_blob_sas, None, None, &[]).await;
    assert_denied(&r, "PublicNetworkAccessDisabled", &["inherited from registry 'privreg'", "group ID 'blob'"]);
    assert!(r.text.starts_with("<?xml"), "the blob plane answers in its own XML envelope: {}", r.text);
    // The management plane stays reachable, like ARM.
    assert_eq!(http.get(&f.reg).await.status, 200);
    // A caller who may not read the registry learns nothing from the denial.
    let out = http.call("POST", "/v1.0/servicePrincipals", Some(&json!({"displayName": "stranger"})), &[]).await;
    let token = http
        .anonymous()
        .raw(
            "POST",
            &format!("/{}/oauth2/v2.0/token", f.server.profile().tenant),
            Some(
                format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}",
                    out.body["appId"].as_str().unwrap(),
                    out.body["password"].as_str().unwrap()
                )
                .into_bytes(),
            ),
            Some("application/x-www-form-urlencoded"),
            &[],
        )
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let stranger = http.with_token(&token).get(&f.model_path()).await;
    assert_eq!(stranger.status, 404, "{}", stranger.text);
    assert!(!stranger.text.contains("public network"), "{}", stranger.text);

    // A network, and endpoints to the registry and to its storage account.
    f.vnet("vnet1", "127.50.0.0/16", "127.50.1.0/24").await;
    let (aml_url, aml_ip, aml_body) = f.endpoint("pe-aml", "vnet1", &f.reg, "amlregistry", false).await;
    let (blob_url, blob_ip, _) = f.endpoint("pe-blob", "vnet1", &f.sa, "blob", false).await;
    assert_eq!(aml_ip, "127.50.1.4", "the first address after the four reserved ones");
    assert_eq!(blob_ip, "127.50.1.5");
    assert_eq!(
        aml_body["properties"]["privateLinkServiceConnections"][0]["properties"]["privateLinkServiceConnectionState"]["status"],
        "Approved"
    );
    // The provider sees the same connections, approved.
    let conns = http.get(&format!("{}/privateEndpointConnections", f.reg)).await;
    assert_eq!(conns.body["value"].as_array().unwrap().len(), 1, "{}", conns.text);
    assert_eq!(conns.body["value"][0]["properties"]["privateLinkServiceConnectionState"]["status"], "Approved");
    let shown = http.get(&f.reg).await;
    let embedded = &shown.body["properties"]["registryPrivateEndpointConnections"][0];
    assert_eq!(embedded["properties"]["registryPrivateLinkServiceConnectionState"]["status"], "Approved", "{}", shown.text);
    assert!(embedded["properties"]["privateEndpoint"]["id"].as_str().unwrap().ends_with("/privateEndpoints/pe-aml"));

    // From inside the network, through the endpoints: metadata and bytes.
    let inside = http.at(&aml_url, ip("127.50.1.77"));
    let r = inside.get(&f.model_path()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(inside.get("/registrymanagement/v1.0/registries/privreg/discovery").await.status, 200);
    let bytes = http.at(&blob_url, ip("127.50.1.77")).anonymous().raw("GET", &f.blob_via(&blob_url), None, None, &[]).await;
    assert_eq!((bytes.status, bytes.text.as_str()), (200, "weights"));

    // From outside the network, at the endpoint's own address: refused.
    let outside = http.at(&aml_url, ip("127.0.0.1")).get(&f.model_path()).await;
    assert_denied(&outside, "PeerOutsideVirtualNetwork", &["pe-aml", "127.0.0.1", "127.50.0.0/16"]);
    // An endpoint serves one plane of one resource.
    let wrong_plane = http.at(&aml_url, ip("127.50.1.77")).anonymous().raw("GET", &f.blob_via(&aml_url), None, None, &[]).await;
    assert_denied(&wrong_plane, "PrivateEndpointWrongTarget", &["pe-aml", "group ID 'blob'"]);
    // Management requests go to the public listener.
    let mgmt = inside.get(&f.reg).await;
    assert_denied(&mgmt, "NotServedByPrivateEndpoint", &["public endpoint"]);

    // Registry private, storage explicitly public: bytes flow from the public listener, metadata does not.
    f.set_public(&f.sa, json!("Enabled")).await;
    assert_eq!(http.anonymous().raw("GET", &f.model_blob_sas, None, None, &[]).await.status, 200);
    assert_denied(&http.get(&f.model_path()).await, "PublicNetworkAccessDisabled", &[]);
    // …and the other way round.
    f.set_public(&f.reg, json!("Enabled")).await;
    f.set_public(&f.sa, json!("Disabled")).await;
    assert_eq!(http.get(&f.model_path()).await.status, 200);
    let r = http.anonymous().raw("GET", &f.model_blob_sas, None, None, &[]).await;
    assert_denied(&r, "PublicNetworkAccessDisabled", &["its public network access is Disabled"]);
    // A switch takes effect on the next request, on a connection already open.
    let keep = http.at(&f.server.url, None);
    assert_eq!(keep.get(&f.model_path()).await.status, 200);
    f.set_public(&f.reg, json!("Disabled")).await;
    assert_eq!(keep.get(&f.model_path()).await.status, 403);

    // Diagnosis: from inside vnet1, amlregistry and blob go through their endpoints, and the
    // container registry (no endpoint, public access inherited Disabled) is out of reach, with the fix.
    f.set_public(&f.sa, json!(null)).await;
    let d = http.call("POST", &format!("{}/diagnoseNetwork", f.reg), Some(&json!({"sourceAddress": "127.50.1.77"})), &[]).await;
    assert_eq!(d.status, 200, "{}", d.text);
    let planes = d.body["planes"].as_array().unwrap();
    let by = |g: &str| planes.iter().find(|p| p["groupId"] == g).unwrap().clone();
    assert_eq!((by("amlregistry")["reachable"].as_bool(), by("amlregistry")["path"].as_str()), (Some(true), Some("privateEndpoint")));
    assert_eq!(by("amlregistry")["serviceUrl"].as_str(), Some(aml_url.as_str()));
    assert_eq!((by("blob")["reachable"].as_bool(), by("blob")["path"].as_str()), (Some(true), Some("privateEndpoint")));
    let acr = by("registry");
    assert_eq!(acr["reachable"], false, "{acr}");
    let why = acr["findings"].to_string();
    assert!(why.contains("PublicNetworkAccessDisabled") || why.contains("public network access is Disabled"), "{why}");
    assert!(why.contains("no private endpoint with group ID 'registry'") && why.contains("vnet1"), "{why}");
    // DNS in the diagnosis: with no private DNS zone yet, the blob endpoint's name resolves to
    // the public listener from vnet1, and the diagnosis says how to fix it…
    let blob = by("blob");
    assert_eq!(blob["dns"][0]["answer"], "public", "{blob}");
    let dns_why = blob["dnsFindings"].to_string();
    assert!(dns_why.contains("privatelink.blob.moat.internal") && dns_why.contains("pe-blob") && dns_why.contains("vnet1"), "{dns_why}");
    // …and once the zone is linked and the endpoint has a zone group, the name answers privately.
    let zone_id = format!("{}/resourceGroups/default/providers/Microsoft.Network/privateDnsZones/privatelink.blob.moat.internal", f.sub);
    assert_eq!(http.call("PUT", &zone_id, Some(&json!({"location": "global"})), &[]).await.status, 201);
    let link = json!({"location": "global", "properties": {"virtualNetwork": {"id": format!("{}{NET}/virtualNetworks/vnet1", f.sub)}}});
    assert_eq!(http.call("PUT", &format!("{zone_id}/virtualNetworkLinks/l1"), Some(&link), &[]).await.status, 201);
    let zg = json!({"properties": {"privateDnsZoneConfigs": [{"name": "b", "properties": {"privateDnsZoneId": zone_id}}]}});
    let r = http.call("PUT", &format!("{}{NET}/privateEndpoints/pe-blob/privateDnsZoneGroups/default", f.sub), Some(&zg), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let d = http.call("POST", &format!("{}/diagnoseNetwork", f.reg), Some(&json!({"sourceAddress": "127.50.1.77"})), &[]).await;
    let blob = d.body["planes"].as_array().unwrap().iter().find(|p| p["groupId"] == "blob").unwrap().clone();
    assert_eq!(blob["dns"][0]["answer"], blob_ip.to_string(), "{blob}");
    assert!(blob["dns"][0]["source"].as_str().unwrap().contains("vnet1"), "{blob}");
    assert_eq!(blob["dnsFindings"], json!([]), "{blob}");

    // From the public network nothing is reachable, and each plane says what to create.
    let d = http.call("POST", &format!("{}/diagnoseNetwork", f.reg), Some(&json!({})), &[]).await;
    assert!(d.body["planes"].as_array().unwrap().iter().all(|p| p["reachable"] == false), "{}", d.text);
    let bad = http.call("POST", &format!("{}/diagnoseNetwork", f.reg), Some(&json!({"sourceAddress": "not-an-ip"})), &[]).await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "InvalidSourceAddress"));

    // Every denial is in the activity log with its rule.
    let log = http
        .get(&format!("{}/providers/Microsoft.Insights/eventtypes/management/values?$top=1000&$filter=result eq 'denied'", f.sub))
        .await;
    let rules: Vec<&str> = log.body["value"].as_array().unwrap().iter().filter_map(|e| e["rule"].as_str()).collect();
    for code in ["PublicNetworkAccessDisabled", "PeerOutsideVirtualNetwork", "PrivateEndpointWrongTarget"] {
        assert!(rules.iter().any(|r| r.starts_with(code)), "{code} not in the activity log: {rules:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_wait_for_approval_and_can_be_rejected_or_disconnected() {
    let f = fixture().await;
    let http = &f.http;
    f.set_public(&f.reg, json!("Disabled")).await;
    f.vnet("vnet2", "127.60.0.0/16", "127.60.1.0/24").await;
    let (url, _, body) = f.endpoint("pe-manual", "vnet2", &f.reg, "amlregistry", true).await;
    let state = &body["properties"]["manualPrivateLinkServiceConnections"][0]["properties"]["privateLinkServiceConnectionState"];
    assert_eq!((state["status"].as_str(), state["description"].as_str()), (Some("Pending"), Some("from team a")));
    let inside = http.at(&url, ip("127.60.1.9"));
    assert_denied(&inside.get(&f.model_path()).await, "PrivateEndpointNotApproved", &["Pending", "pe-manual"]);

    // The owner approves: the same connection now serves.
    let conn = format!("{}/privateEndpointConnections/pe-manual-conn", f.reg);
    let r = http
        .call(
            "PUT",
            &conn,
            Some(&json!({"properties": {"privateLinkServiceConnectionState": {"status": "Approved", "description": "ok by owner"}}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(inside.get(&f.model_path()).await.status, 200);
    let pe = http.get(&format!("{}{NET}/privateEndpoints/pe-manual", f.sub)).await;
    let st = &pe.body["properties"]["manualPrivateLinkServiceConnections"][0]["properties"]["privateLinkServiceConnectionState"];
    assert_eq!((st["status"].as_str(), st["description"].as_str()), (Some("Approved"), Some("ok by owner")), "both views agree");

    // Deleting the connection on the provider side leaves the endpoint Disconnected.
    assert_eq!(http.call("DELETE", &conn, None, &[]).await.status, 200);
    assert_denied(&inside.get(&f.model_path()).await, "PrivateEndpointNotApproved", &["Disconnected"]);
    let pe = http.get(&format!("{}{NET}/privateEndpoints/pe-manual", f.sub)).await;
    assert_eq!(
        pe.body["properties"]["manualPrivateLinkServiceConnections"][0]["properties"]["privateLinkServiceConnectionState"]["status"],
        "Disconnected"
    );
    assert_eq!(http.get(&format!("{}/privateEndpointConnections", f.reg)).await.body["value"], json!([]));

    // A rejected request stays rejected.
    let (url2, _, _) = f.endpoint("pe-rejected", "vnet2", &f.reg, "amlregistry", true).await;
    let conn2 = format!("{}/privateEndpointConnections/pe-rejected-conn", f.reg);
    let r =
        http.call("PUT", &conn2, Some(&json!({"properties": {"privateLinkServiceConnectionState": {"status": "Rejected"}}})), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_denied(&http.at(&url2, ip("127.60.1.9")).get(&f.model_path()).await, "PrivateEndpointNotApproved", &["Rejected"]);
    let again =
        http.call("PUT", &conn2, Some(&json!({"properties": {"privateLinkServiceConnectionState": {"status": "Approved"}}})), &[]).await;
    assert_eq!((again.status, again.code().as_str()), (409, "RejectedConnectionCannotBeApproved"), "{}", again.text);

    // Deleting the endpoint closes its listener.
    assert_eq!(http.call("DELETE", &format!("{}{NET}/privateEndpoints/pe-rejected", f.sub), None, &[]).await.status, 200);
    let mut closed = false;
    for _ in 0..100 {
        moat_client::install_crypto_provider();
        let c = reqwest::Client::builder().local_address(ip("127.60.1.9")).build().unwrap();
        if c.get(format!("{url2}/healthz")).send().await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(closed, "the listener of a deleted endpoint still accepts connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_to_one_registry_never_reaches_another_and_bad_endpoints_are_refused() {
    let f = fixture().await;
    let http = &f.http;
    let other = f.server.registry_path("default", "otherreg");
    assert_eq!(http.call("PUT", &other, Some(&registry_body("eastus")), &[]).await.status, 201);
    let body = http.get(&f.reg).await.body;
    let mut private = body.clone();
    private["properties"]["publicNetworkAccess"] = json!("Disabled");
    for k in ["id", "name", "type", "systemData"] {
        private.as_object_mut().unwrap().remove(k);
    }
    let mut other_private = private.clone();
    other_private["properties"].as_object_mut().unwrap().remove("regionDetails");
    assert_eq!(http.call("PUT", &other, Some(&other_private), &[]).await.status, 200);
    f.vnet("vnet3", "127.70.0.0/16", "127.70.1.0/24").await;
    let (url, _, _) = f.endpoint("pe-a", "vnet3", &f.reg, "amlregistry", false).await;
    let inside = http.at(&url, ip("127.70.1.20"));
    assert_eq!(inside.get(&f.model_path()).await.status, 200);
    let r = inside.get(&format!("{other}/models")).await;
    assert_denied(&r, "PrivateEndpointWrongTarget", &["pe-a"]);
    // Whether the other registry exists is not revealed: a name that exists nowhere gets the same answer.
    let ghost = inside.get(&format!("{}/models", other.replace("otherreg", "ghostreg"))).await;
    assert_eq!((ghost.status, ghost.specific_code()), (403, r.specific_code()), "{}", ghost.text);

    // Bad requests, each with its own code.
    let pe = |name: &str| format!("{}{NET}/privateEndpoints/{name}", f.sub);
    let subnet = format!("{}{NET}/virtualNetworks/vnet3/subnets/s1", f.sub);
    let conn = |target: &str, group: &str| json!({"properties": {"subnet": {"id": subnet}, "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": target, "groupIds": [group]}}]}});
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        ("unknown group ID", pe("bad1"), conn(&f.reg, "sql"), 400, "InvalidGroupId"),
        ("group ID of another kind of resource", pe("bad2"), conn(&f.reg, "blob"), 400, "PrivateLinkServiceNotFound"),
        ("no such registry", pe("bad3"), conn(&other.replace("otherreg", "ghostreg"), "amlregistry"), 400, "PrivateLinkServiceNotFound"),
        (
            "no such subnet",
            pe("bad4"),
            json!({"properties": {"subnet": {"id": format!("{}{NET}/virtualNetworks/vnet3/subnets/nope", f.sub)}, "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": f.reg, "groupIds": ["amlregistry"]}}]}}),
            400,
            "InvalidSubnetId",
        ),
        (
            "two connections",
            pe("bad5"),
            json!({"properties": {"subnet": {"id": subnet}, "privateLinkServiceConnections": [], "manualPrivateLinkServiceConnections": []}}),
            400,
            "InvalidPrivateLinkServiceConnections",
        ),
    ];
    for (what, path, body, status, code) in cases {
        let r = http.call("PUT", &path, Some(&body), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{what}: {}", r.text);
    }
    // Not in the registry's managed resource group.
    let mrg = body["properties"]["managedResourceGroup"]["resourceId"].as_str().unwrap();
    let r = http
        .call("PUT", &format!("{mrg}/providers/Microsoft.Network/privateEndpoints/sneaky"), Some(&conn(&f.reg, "amlregistry")), &[])
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "PrivateEndpointInManagedResourceGroup"), "{}", r.text);

    // Virtual networks are validated.
    let vnet = |space: &str, subnets: Value| json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": [space]}, "subnets": subnets}});
    let vcases = vec![
        ("outside loopback", vnet("10.0.0.0/16", json!([])), "InvalidAddressSpace"),
        ("host bits", vnet("127.80.0.1/16", json!([])), "InvalidAddressPrefixFormat"),
        (
            "subnet outside",
            vnet("127.80.0.0/16", json!([{"name": "a", "properties": {"addressPrefix": "127.81.0.0/24"}}])),
            "InvalidAddressSpace",
        ),
        (
            "overlapping subnets",
            vnet(
                "127.80.0.0/16",
                json!([{"name": "a", "properties": {"addressPrefix": "127.80.0.0/24"}}, {"name": "b", "properties": {"addressPrefix": "127.80.0.128/25"}}]),
            ),
            "InvalidAddressSpace",
        ),
    ];
    for (what, body, code) in vcases {
        let r = http.call("PUT", &format!("{}{NET}/virtualNetworks/bad", f.sub), Some(&body), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{what}: {}", r.text);
    }
    // A subnet with an endpoint cannot go away, nor can its network.
    let r = http.call("DELETE", &format!("{}{NET}/virtualNetworks/vnet3/subnets/s1", f.sub), None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (409, "InUseSubnetCannotBeDeleted"), "{}", r.text);
    let r = http.call("DELETE", &format!("{}{NET}/virtualNetworks/vnet3", f.sub), None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (409, "InUseSubnetCannotBeDeleted"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_firewall_lets_through_only_its_ip_rules() {
    let f = fixture().await;
    let http = &f.http;
    let r = http
        .call(
            "PATCH",
            &f.sa,
            Some(&json!({"properties": {"networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.9"}, {"value": "127.40.0.0/16"}]}}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["properties"]["networkAcls"]["defaultAction"], "Deny");
    assert_eq!(r.body["properties"]["networkAcls"]["ipRules"][1]["value"], "127.40.0.0/16");
    let base = f.server.url.clone();
    for (source, ok) in [("127.0.0.9", true), ("127.40.3.3", true), ("127.0.0.1", false), ("127.41.0.1", false)] {
        let r = http.at(&base, ip(source)).anonymous().raw("GET", &f.model_blob_sas, None, None, &[]).await;
        if ok {
            assert_eq!(r.status, 200, "{source}: {}", r.text);
        } else {
            assert_denied(&r, "IpNotAllowed", &[source]);
        }
    }
    // The firewall governs the blob plane only; metadata is the registry's.
    assert_eq!(http.get(&f.model_path()).await.status, 200);
    // Bad rules are refused and change nothing.
    let r = http
        .call(
            "PATCH",
            &f.sa,
            Some(&json!({"properties": {"networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "10.0.0.1/8"}]}}})),
            &[],
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidAddressPrefixFormat"), "{}", r.text);
    let r = http.call("PATCH", &f.sa, Some(&json!({"properties": {"isHnsEnabled": true}})), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "PropertyNotPatchable"), "{}", r.text);
    assert_eq!(http.at(&base, ip("127.0.0.9")).anonymous().raw("GET", &f.model_blob_sas, None, None, &[]).await.status, 200);
    // Removing the firewall opens it again.
    let r = http.call("PATCH", &f.sa, Some(&json!({"properties": {"networkAcls": null}})), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(http.anonymous().raw("GET", &f.model_blob_sas, None, None, &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_endpoints_listen_on_host_addresses_and_say_when_they_cannot() {
    let f = fixture().await;
    let http = &f.http;
    f.set_public(&f.reg, json!("Disabled")).await;
    let net = format!("{}{NET}", f.sub);
    for (name, space, subnet) in [("hostnet", "127.91.0.0/16", "127.91.1.0/24"), ("elsewhere", "10.99.0.0/16", "10.99.1.0/24")] {
        let r = http
            .call(
                "PUT",
                &format!("{net}/virtualNetworks/{name}"),
                Some(
                    &json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": [space]}, "binding": {"mode": "Host"},
                    "subnets": [{"name": "s1", "properties": {"addressPrefix": subnet}}]}}),
                ),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // 127.91.1.4 is an address of this host (all of 127/8 is): the listener opens.
    let (url, _, _) = f.endpoint("pe-host", "hostnet", &f.reg, "amlregistry", false).await;
    assert_eq!(http.at(&url, ip("127.91.1.8")).get(&f.model_path()).await.status, 200);
    // 10.99.1.4 is not a loopback address: without TLS moat will not serve plain HTTP there
    // (tokens would cross the network in clear), and the endpoint says so instead of pretending.
    let r = http
        .call(
            "PUT",
            &format!("{net}/privateEndpoints/pe-nowhere"),
            Some(&json!({"properties": {"subnet": {"id": format!("{net}/virtualNetworks/elsewhere/subnets/s1")},
                "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": f.reg, "groupIds": ["amlregistry"]}}]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut failed = Value::Null;
    for _ in 0..100 {
        failed = http.get(&format!("{net}/privateEndpoints/pe-nowhere")).await.body;
        if failed["properties"]["listenerError"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(failed["properties"]["provisioningState"], "Failed", "{failed}");
    let why = failed["properties"]["listenerError"].as_str().unwrap();
    assert!(why.contains("10.99.1.4") && why.contains("plain HTTP") && why.contains("turn on tls"), "{why}");
    assert!(failed["properties"]["serviceUrl"].is_null());
}
