//! Real clients reach a private registry by name over verified TLS from inside a namespace-mode
//! network linked to the privatelink zones — curl on the registry plane (discovery) and the
//! OCI plane, skopeo on the OCI plane, the azure-storage-blob SDK and curl on the blob plane,
//! azure-ai-ml on the registry data plane and the blob plane — with nothing but moat's CA to
//! trust (no insecure flags, no addresses). From the host the
//! same names lead to the public listener, which refuses with the admission error. Needs root.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Output};

use common::{Netns, Server};
use serde_json::{Value, json};

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_skopeo_and_the_sdk_reach_a_private_registry_by_name_over_verified_tls() {
    if let Some(why) = common::skip_reason_netns() {
        eprintln!("SKIP curl_skopeo_and_the_sdk_reach_a_private_registry_by_name_over_verified_tls: {why}");
        return;
    }
    // moat makes the namespace (and its resolv.conf pointing at moat's DNS inside it).
    let ns = Netns::expected(format!("moat-name-{}", std::process::id()));
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_in(&tmp.path().join("data"), &[("MOAT_TLS", "true")]);
    let port = server.url.rsplit(':').next().unwrap().to_string();
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(&server.profile).unwrap()).unwrap();
    let ca = profile["caCertificate"].as_str().unwrap().to_string();
    let cert_dir = tmp.path().join("certs");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(&ca, cert_dir.join("moat-ca.crt")).unwrap();

    std::fs::write(tmp.path().join("r.yml"), "name: named\nlocation: eastus\npublic_network_access: Disabled\n").unwrap();
    let reg = server.moat_json(&["registry", "create", "--file", tmp.path().join("r.yml").to_str().unwrap()]);
    let reg_id = reg["id"].as_str().unwrap().to_string();
    let region = &reg["properties"]["regionDetails"][0];
    let sa_id =
        region["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]["resourceId"].as_str().unwrap().to_string();
    let acr_id = region["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"].as_str().unwrap().to_string();
    let account = sa_id.rsplit('/').next().unwrap().to_string();
    let acr = acr_id.rsplit('/').next().unwrap().to_string();
    let http = server.http_trusting(&ca);

    // The network, three private endpoints, three privatelink zones linked to it, zone groups.
    let sub = server.sub_path();
    let net = format!("{sub}/resourceGroups/default/providers/Microsoft.Network");
    common::namespace_vnet(&http, &net, "vnet-n", &ns.0, "10.254.0.0/16", "10.254.1.0/24").await;
    for (pe, target, group, zone) in [
        ("pe-reg", &reg_id, "amlregistry", "privatelink.api.moat.internal"),
        ("pe-blob", &sa_id, "blob", "privatelink.blob.moat.internal"),
        ("pe-acr", &acr_id, "registry", "privatelink.cr.moat.internal"),
    ] {
        let url = common::private_endpoint(&server, &http, &net, pe, "vnet-n", target, group).await;
        assert!(url.starts_with("https://10.254.1."), "{url}");
        let zone_id = format!("{net}/privateDnsZones/{zone}");
        assert_eq!(http.call("PUT", &zone_id, Some(&json!({"location": "global"})), &[]).await.status, 201);
        let link = json!({"location": "global", "properties": {"virtualNetwork": {"id": format!("{net}/virtualNetworks/vnet-n")}}});
        assert_eq!(http.call("PUT", &format!("{zone_id}/virtualNetworkLinks/n"), Some(&link), &[]).await.status, 201);
        let zg = json!({"properties": {"privateDnsZoneConfigs": [{"name": "z", "properties": {"privateDnsZoneId": zone_id}}]}});
        assert_eq!(
            http.call("PUT", &format!("{net}/privateEndpoints/{pe}/privateDnsZoneGroups/default"), Some(&zg), &[]).await.status,
            201
        );
    }
    let token = http.token.clone().unwrap();
    let bearer = format!("Authorization: Bearer {token}");
    let in_ns = |program: &str, args: &[&str]| Command::new("ip").args(["netns", "exec", &ns.0, program]).args(args).output().unwrap();

    // Registry plane: discovery at the registry's own host name.
    let guid_host = {
        let d = http.get("/registrymanagement/v1.0/registries/named/discovery").await;
        // Closed to the public: the host is refused, and told why.
        assert_eq!(d.status, 403, "{}", d.text);
        assert!(d.text.contains("PublicNetworkAccessDisabled"), "{}", d.text);
        let pe = http.get(&format!("{net}/privateEndpoints/pe-reg")).await;
        pe.body["properties"]["customDnsConfigs"][0]["fqdn"].as_str().unwrap().to_string()
    };
    let url = format!("https://{guid_host}:{port}/registrymanagement/v1.0/registries/named/discovery");
    let got = in_ns("curl", &["-sS", "--fail-with-body", "--cacert", &ca, "-H", &bearer, &url]);
    assert!(got.status.success(), "discovery by name inside the network: {}", text(&got));
    let d: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(d["registryName"], "named", "{d}");

    // OCI plane by login server: the token challenge, then skopeo push and pull.
    let login = format!("{acr}.cr.moat.internal:{port}");
    let got = in_ns("curl", &["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", &ca, &format!("https://{login}/v2/")]);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "401", "{}", text(&got));
    let src = tmp.path().join("img");
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i % 233) as u8).collect();
    write_layout(&src, &layer);
    let creds = format!("00000000-0000-0000-0000-000000000000:{token}");
    let cert_dir_s = cert_dir.to_str().unwrap();
    let push = in_ns(
        "skopeo",
        &[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            cert_dir_s,
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", src.display()),
            &format!("docker://{login}/team/env:v1"),
        ],
    );
    assert!(push.status.success(), "skopeo push by name: {}", text(&push));
    let inspect = in_ns("skopeo", &["inspect", "--cert-dir", cert_dir_s, "--creds", &creds, &format!("docker://{login}/team/env:v1")]);
    assert!(inspect.status.success(), "skopeo inspect by name: {}", text(&inspect));

    // Blob plane by account name: the SDK uploads and downloads with a SAS, verifying TLS.
    let expiry =
        (time::OffsetDateTime::now_utc() + time::Duration::hours(1)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let sas = http
        .call(
            "POST",
            &format!("{sa_id}/ListServiceSas"),
            Some(&json!({"canonicalizedResource": format!("/blob/{account}/byname"), "signedResource": "c", "signedPermission": "racwdl",
                "signedExpiry": expiry})),
            &[],
        )
        .await;
    assert_eq!(sas.status, 200, "{}", sas.text);
    let sas = sas.body["serviceSasToken"].as_str().unwrap().to_string();
    let blob_url = format!("https://{account}.blob.moat.internal:{port}/{account}/byname/hello.bin?{sas}");
    let script = "import sys\nfrom azure.storage.blob import BlobClient\n\
        c = BlobClient.from_blob_url(sys.argv[1], connection_verify=sys.argv[2])\n\
        data = bytes(range(256)) * 4096\n\
        c.upload_blob(data, overwrite=True)\n\
        assert c.download_blob().readall() == data\n\
        print('ok', len(data))\n";
    let got = in_ns("python3", &["-c", script, &blob_url, &ca]);
    assert!(got.status.success() && String::from_utf8_lossy(&got.stdout).contains("ok 1048576"), "SDK by name: {}", text(&got));
    let got = in_ns("curl", &["-sS", "--fail-with-body", "--cacert", &ca, "-o", "/dev/null", "-w", "%{http_code}", &blob_url]);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "200", "{}", text(&got));

    // azure-ai-ml inside the network, given only the registry's name: discovery there answers
    // the data plane at that name, and SAS URIs by the storage account's name, so the SDK's
    // every request goes through a private endpoint. It creates a model and downloads it.
    let folder = tmp.path().join("sdk-model");
    std::fs::create_dir_all(folder.join("weights")).unwrap();
    let weights: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(folder.join("weights/w.bin"), &weights).unwrap();
    let out = tmp.path().join("sdk-out");
    let sdk = |base: &str, inside: bool| {
        let mut cmd = Command::new("ip");
        if inside {
            cmd.args(["netns", "exec", &ns.0]);
        } else {
            cmd = Command::new("env");
        }
        cmd.args(["python3", "-c", AIML_MODEL, base, folder.to_str().unwrap(), out.to_str().unwrap()])
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("MOAT_TOKEN", &token)
            .output()
            .unwrap()
    };
    let got = sdk(&format!("https://{guid_host}:{port}/"), true);
    assert!(got.status.success(), "azure-ai-ml by name inside the network: {}", text(&got));
    assert!(String::from_utf8_lossy(&got.stdout).contains("azureml://registries/named/models/inside/versions/1"), "{}", text(&got));
    assert_eq!(std::fs::read(out.join("inside/sdk-model/weights/w.bin")).unwrap(), weights);
    // The same SDK on the host, at moat's address: refused at discovery, saying why.
    let got = sdk(&format!("https://127.0.0.1:{port}/"), false);
    assert!(!got.status.success() && text(&got).contains("its public network access is Disabled"), "{}", text(&got));

    // From the host, the same names lead to the public listener (what moat's DNS answers
    // outside the network), whose certificate also verifies — and which refuses.
    let resolve = |host: &str| format!("{host}:{port}:127.0.0.1");
    let host_oci = Command::new("curl")
        .args(["-sS", "--cacert", &ca, "--resolve", &resolve(&format!("{acr}.cr.moat.internal")), "-H", &bearer])
        .arg(format!("https://{login}/v2/team/env/manifests/v1"))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&host_oci.stdout).unwrap_or(Value::Null);
    assert_eq!(body["errors"][0]["code"], "DENIED", "{}", text(&host_oci));
    assert_eq!(body["errors"][0]["detail"]["reason"], "PublicNetworkAccessDisabled", "{}", text(&host_oci));
    let host_blob = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &ca,
            "--resolve",
            &resolve(&format!("{account}.blob.moat.internal")),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(&blob_url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&host_blob.stdout), "403", "{}", text(&host_blob));
    let host_disc =
        Command::new("curl").args(["-sS", "--cacert", &ca, "--resolve", &resolve(&guid_host), "-H", &bearer]).arg(&url).output().unwrap();
    assert!(String::from_utf8_lossy(&host_disc.stdout).contains("PublicNetworkAccessDisabled"), "{}", text(&host_disc));
}

/// azure-ai-ml creating model `inside` from a folder and downloading it. Arguments: the base URL
/// (as moat's "cloud": discovery and resource manager), the folder, the download path; the
/// token in MOAT_TOKEN.
const AIML_MODEL: &str = "import os, sys, time
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Model
from azure.core.credentials import AccessToken
base, folder, out = sys.argv[1:4]
class MoatToken:
    def get_token(self, *scopes, **kwargs):
        return AccessToken(os.environ['MOAT_TOKEN'], int(time.time()) + 3000)
cloud = {k: base for k in ('azure_portal', 'resource_manager', 'active_directory', 'aml_resource_id', 'registry_discovery_endpoint')}
cloud['storage_endpoint'] = 'core.windows.net'
ml = MLClient(MoatToken(), registry_name='named', enable_telemetry=False, cloud='moat', cloud_metadata=cloud)
print(ml.models.create_or_update(Model(name='inside', version='1', path=folder)).id)
ml.models.download(name='inside', version='1', download_path=out)
";

/// An OCI layout with one layer and tag v1.
fn write_layout(dir: &std::path::Path, layer: &[u8]) {
    use sha2::Digest as _;
    let sha = |b: &[u8]| format!("sha256:{}", sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>());
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blobs.join(&d[7..]), b).unwrap();
        d
    };
    let ld = put(layer);
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [ld]}}).to_string();
    let cd = put(config.as_bytes());
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]})
    .to_string();
    let md = put(manifest.as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
}
