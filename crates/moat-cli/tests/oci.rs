//! The container registry plane through the real binary: skopeo pushes and pulls a multi-layer
//! image by tag and by digest, a layer is mounted across repositories, an artifact is found
//! through the referrers API, our conformance suite (tests/oci_conformance.py) passes, every
//! OCI route answers every role as docs/OCI.md says, the network switch closes the plane, and
//! upload sessions survive a crash.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Http, Server, assign, create_sp, token_for};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const REGISTRY_USER: &str = "1823dd4f-9b8c-4ab6-ab4e-7397a3684615";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(b)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates registry `name` through the CLI; returns its container registry's name and its ID.
fn create_registry(server: &Server, name: &str) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("r.yml"), format!("name: {name}\nlocation: eastus\n")).unwrap();
    let reg = server.moat_json(&["registry", "create", "--file", tmp.path().join("r.yml").to_str().unwrap()]);
    let acr =
        reg["properties"]["regionDetails"][0]["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"].as_str().unwrap();
    (acr.rsplit('/').next().unwrap().to_string(), reg["id"].as_str().unwrap().to_string())
}

/// Writes an OCI image layout with these layers under tag `v1`; returns the manifest's digest.
fn oci_layout(dir: &Path, layers: &[Vec<u8>]) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = sha(b);
        std::fs::write(blobs.join(&d[7..]), b).unwrap();
        json!({"digest": d, "size": b.len()})
    };
    let mut descs = Vec::new();
    for l in layers {
        let mut d = put(l);
        d["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
        descs.push(d);
    }
    let diff_ids: Vec<&Value> = descs.iter().map(|d| &d["digest"]).collect();
    let config = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let mut cfg = put(config.to_string().as_bytes());
    cfg["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": descs}).to_string();
    let m = put(manifest.as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": m["digest"], "size": m["size"],
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    m["digest"].as_str().unwrap().to_string()
}

fn skopeo(args: &[&str]) -> std::process::Output {
    Command::new("skopeo").args(args).output().expect("skopeo runs (scripts/test.sh installs it: apt-get install skopeo)")
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_push_pull_mount_referrers_and_the_conformance_suite() {
    let server = Server::start();
    let (acr, registry_id) = create_registry(&server, "images");
    let http = server.http();
    // What an OCI client needs, from the CLI (like `az acr login --expose-token`).
    let login = server.moat_json(&["acr", "login", "--registry-name", "images", "--expose-token"]);
    let host = host_of(&server.url);
    assert_eq!(login["loginServer"], format!("{acr}.cr.moat.internal"));
    assert_eq!(login["imagePrefix"], format!("{host}/{acr}"));
    let token = login["accessToken"].as_str().unwrap().to_string();
    let creds = format!("{}:{token}", login["username"].as_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();

    // A three-layer image pushed by tag (digests preserved: no recompression).
    let layers: Vec<Vec<u8>> =
        [700_000usize, 3_000_000, 10].iter().enumerate().map(|(i, n)| (0..*n).map(|j| ((j * 7 + i) % 251) as u8).collect()).collect();
    let src = tmp.path().join("src");
    let digest = oci_layout(&src, &layers);
    let image = format!("docker://{host}/{acr}/team/env");
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", src.display()),
        &format!("{image}:v1"),
    ]);
    ok(&out, "skopeo copy (push)");

    // Pulled back by tag and by digest: the same bytes, blob for blob.
    for (i, reference) in [format!("{image}:v1"), format!("{image}@{digest}")].iter().enumerate() {
        let dest = tmp.path().join(format!("back{i}"));
        let out = skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            reference,
            &format!("oci:{}:v1", dest.display()),
        ]);
        ok(&out, "skopeo copy (pull)");
        for l in &layers {
            let d = sha(l);
            assert_eq!(std::fs::read(dest.join("blobs/sha256").join(&d[7..])).unwrap(), *l, "layer {d} pulled by {reference}");
        }
        assert!(dest.join("blobs/sha256").join(&digest[7..]).exists(), "the manifest keeps its digest");
    }
    let inspect: Value =
        serde_json::from_str(&ok(&skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &format!("{image}:v1")]), "skopeo inspect"))
            .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);

    // Tags listed by skopeo, after a second tag.
    ok(
        &skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", src.display()),
            &format!("{image}:latest"),
        ]),
        "skopeo copy (second tag)",
    );
    let tags: Value =
        serde_json::from_str(&ok(&skopeo(&["list-tags", "--tls-verify=false", "--creds", &creds, &image]), "skopeo list-tags")).unwrap();
    assert_eq!(tags["Tags"], json!(["latest", "v1"]));

    // Cross-repository mount: no bytes sent, the layer is then in the other repository.
    let layer = sha(&layers[1]);
    let r = http.raw("POST", &format!("/v2/{acr}/other/blobs/uploads/?mount={layer}&from={acr}/team/env"), None, None, &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("docker-content-digest").as_deref(), Some(layer.as_str()));
    assert_eq!(r.header("location").unwrap(), format!("/v2/{acr}/other/blobs/{layer}"));
    let r = http.raw("HEAD", &format!("/v2/{acr}/other/blobs/{layer}"), None, None, &[]).await;
    assert_eq!((r.status, r.header("content-length")), (200, Some(layers[1].len().to_string())));
    // Equal bytes are stored once: the store holds one file per distinct content.
    let stored = walk(&server.dir.join("blobs/sha256"));
    assert_eq!(stored, 5, "3 layers, the config and the manifest, each once (the mount copied nothing)");

    // An artifact with a subject, found through the referrers API.
    let empty = b"{}";
    let r = http
        .raw(
            "POST",
            &format!("/v2/{acr}/team/env/blobs/uploads/?digest={}", sha(empty)),
            Some(empty.to_vec()),
            Some("application/octet-stream"),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sig = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(empty), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1},
        "annotations": {"org.example.signer": "ci"}})
    .to_string();
    let r = http
        .raw(
            "PUT",
            &format!("/v2/{acr}/team/env/manifests/{}", sha(sig.as_bytes())),
            Some(sig.clone().into_bytes()),
            Some(OCI_MANIFEST),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("oci-subject").as_deref(), Some(digest.as_str()));
    let r = http.get(&format!("/v2/{acr}/team/env/referrers/{digest}?artifactType=application/vnd.example.signature")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("oci-filters-applied").as_deref(), Some("artifactType"));
    assert_eq!(r.body["manifests"][0]["digest"], sha(sig.as_bytes()));
    assert_eq!(r.body["manifests"][0]["annotations"]["org.example.signer"], "ci");
    let r = http.get(&format!("/v2/{acr}/team/env/referrers/{digest}?artifactType=application/other")).await;
    assert_eq!(r.body["manifests"], json!([]));

    // The conformance suite, with a pull-only principal for the denial checks.
    let p = server.profile();
    let (oid, app, secret) = create_sp(&http, "puller").await;
    assign(&http, &registry_id, &oid, READER).await;
    let reader = token_for(&http, &p.tenant, &app, &secret).await;
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oci_conformance.py"))
        .args(["--base", &server.url, "--prefix", &acr, "--password", &token, "--reader-password", &reader])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        out.status.success() && report["failed"] == 0 && report["skipped"] == 0,
        "the conformance suite failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report["passed"].as_u64().unwrap() >= 70, "{report}");
}

fn walk(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() { n += walk(&e.path()) } else { n += 1 }
    }
    n
}

/// Assigns a role and returns the assignment's path (to delete it later).
async fn assign_at(admin: &Http, scope: &str, principal: &str, role: &str) -> String {
    let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{}", uuid::Uuid::new_v4());
    let r = admin.call("PUT", &path, Some(&json!({"properties": {"roleDefinitionId": role, "principalId": principal}})), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    path
}

/// Pushes a one-layer image as `repo:v1` with raw HTTP; returns (layer digest, manifest, its digest).
async fn push_image(http: &Http, repo: &str) -> (String, String, String) {
    let layer = b"layer bytes".to_vec();
    let config = br#"{"os":"linux"}"#.to_vec();
    for b in [&layer, &config] {
        let r = http
            .raw("POST", &format!("/v2/{repo}/blobs/uploads/?digest={}", sha(b)), Some(b.to_vec()), Some("application/octet-stream"), &[])
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}]})
    .to_string();
    let r = http.raw("PUT", &format!("/v2/{repo}/manifests/v1"), Some(manifest.clone().into_bytes()), Some(OCI_MANIFEST), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let digest = sha(manifest.as_bytes());
    (sha(&layer), manifest, digest)
}

/// Every OCI route, for every kind of caller: Owner, Contributor, AzureML Registry User and
/// Reader on the registry, a principal with no role, and no credential at all. `expect` maps
/// each to `status` or `status/CODE`.
#[tokio::test(flavor = "multi_thread")]
async fn every_oci_route_answers_every_role_as_documented() {
    let server = Server::start();
    let (acr, registry_id) = create_registry(&server, "roles");
    let admin = server.http();
    let repo = format!("{acr}/team/img");
    let (layer, manifest, mdigest) = push_image(&admin, &repo).await;
    let missing = sha(b"never pushed");

    let p = server.profile();
    let mut callers: Vec<(char, Http)> = vec![('O', admin.with_token(admin.token.as_deref().unwrap())), ('A', admin.anonymous())];
    let mut reader_assignment = String::new();
    let mut reader_http = None;
    for (code, role) in [('C', Some(CONTRIBUTOR)), ('U', Some(REGISTRY_USER)), ('R', Some(READER)), ('N', None)] {
        let (oid, app, secret) = create_sp(&admin, &format!("oci-{code}")).await;
        if let Some(role) = role {
            let path = assign_at(&admin, &registry_id, &oid, role).await;
            if code == 'R' {
                reader_assignment = path;
            }
        }
        let h = admin.with_token(&token_for(&admin, &p.tenant, &app, &secret).await);
        if code == 'R' {
            reader_http = Some(admin.with_token(h.token.as_deref().unwrap()));
        }
        callers.push((code, h));
    }

    let pull = "O:200 C:200 U:200 R:200 N:404/NAME_UNKNOWN A:401/UNAUTHORIZED";
    let push = |ok: &str| format!("O:{ok} C:{ok} U:{ok} R:403/DENIED N:404/NAME_UNKNOWN A:401/UNAUTHORIZED");
    let table: Vec<(&str, String, Option<Vec<u8>>, String)> = vec![
        ("GET", "/v2/".into(), None, "O:200 C:200 U:200 R:200 N:200 A:401/UNAUTHORIZED".into()),
        ("GET", format!("/v2/{repo}/manifests/v1"), None, pull.into()),
        ("HEAD", format!("/v2/{repo}/manifests/{mdigest}"), None, pull.into()),
        ("PUT", format!("/v2/{repo}/manifests/v2"), Some(manifest.clone().into_bytes()), push("201")),
        (
            "DELETE",
            format!("/v2/{repo}/manifests/{missing}"),
            None,
            "O:404/MANIFEST_UNKNOWN C:404/MANIFEST_UNKNOWN U:403/DENIED R:403/DENIED N:404/NAME_UNKNOWN A:401/UNAUTHORIZED".into(),
        ),
        ("GET", format!("/v2/{repo}/blobs/{layer}"), None, pull.into()),
        ("HEAD", format!("/v2/{repo}/blobs/{layer}"), None, pull.into()),
        (
            "DELETE",
            format!("/v2/{repo}/blobs/{missing}"),
            None,
            "O:404/BLOB_UNKNOWN C:404/BLOB_UNKNOWN U:403/DENIED R:403/DENIED N:404/NAME_UNKNOWN A:401/UNAUTHORIZED".into(),
        ),
        ("POST", format!("/v2/{repo}/blobs/uploads/"), None, push("202")),
        ("GET", format!("/v2/{repo}/blobs/uploads/{{upload}}"), None, push("204")),
        ("PATCH", format!("/v2/{repo}/blobs/uploads/{{upload}}"), Some(b"abc".to_vec()), push("202")),
        ("PUT", format!("/v2/{repo}/blobs/uploads/{{upload}}?digest={}", sha(b"abc")), Some(b"abc".to_vec()), push("201")),
        ("DELETE", format!("/v2/{repo}/blobs/uploads/{{upload}}"), None, push("204")),
        ("GET", format!("/v2/{repo}/tags/list"), None, pull.into()),
        ("GET", format!("/v2/{repo}/referrers/{mdigest}"), None, pull.into()),
    ];
    let mut failures = Vec::new();
    for (method, template, body, expect) in &table {
        for (code, http) in &callers {
            let mut path = template.clone();
            if path.contains("{upload}") {
                let r = admin.raw("POST", &format!("/v2/{repo}/blobs/uploads/"), None, None, &[]).await;
                path = path.replace("{upload}", r.header("location").unwrap().rsplit('/').next().unwrap());
            }
            let ct = if path.contains("/manifests/") { Some(OCI_MANIFEST) } else { Some("application/octet-stream") };
            let r = http.raw(method, &path, body.clone(), ct, &[]).await;
            let want = expect.split(' ').find_map(|e| e.strip_prefix(&format!("{code}:"))).unwrap();
            let (status, err) = want.split_once('/').map_or((want, None), |(s, c)| (s, Some(c)));
            let got_code = r.body["errors"][0]["code"].as_str().unwrap_or_default().to_string();
            // A HEAD answer has no body to carry the code.
            let code_differs = *method != "HEAD" && err.is_some_and(|c| c != got_code);
            if r.status.to_string() != status || code_differs {
                failures.push(format!("{code} {method} {path}: expected {want}, got {} {got_code} {}", r.status, r.text));
            }
            if r.status == 401 {
                assert!(r.header("www-authenticate").unwrap().starts_with("Bearer realm="), "{method} {path}");
            }
            assert_eq!(r.header("docker-distribution-api-version").as_deref(), Some("registry/2.0"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));

    // The token endpoint grants what the roles allow now, and nothing to a stranger.
    let scope = format!("repository:{repo}:pull,push,delete");
    for (code, http) in &callers {
        let basic = http.token.as_deref().map(|t| {
            use base64::Engine;
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("00000000-0000-0000-0000-000000000000:{t}")))
        });
        let anon = http.anonymous();
        let headers: Vec<(&str, &str)> = basic.as_deref().map(|b| vec![("authorization", b)]).unwrap_or_default();
        let r = anon.raw("GET", &format!("/oauth2/token?service=x&scope={scope}"), None, None, &headers).await;
        if *code == 'A' {
            assert_eq!(r.status, 401, "{}", r.text);
            continue;
        }
        assert_eq!(r.status, 200, "{code}: {}", r.text);
        let claims = decode_claims(r.body["access_token"].as_str().unwrap());
        let granted = &claims["access"][0]["actions"];
        let want = match code {
            'O' | 'C' => json!(["delete", "pull", "push"]),
            'U' => json!(["pull", "push"]),
            'R' => json!(["pull"]),
            _ => json!([]),
        };
        assert_eq!(granted, &want, "{code}'s grant");
    }

    // A revoked role takes effect on the next request, whatever the token says.
    let reader = reader_http.unwrap();
    let exchange = reader
        .anonymous()
        .raw(
            "POST",
            "/oauth2/token",
            Some(
                format!("grant_type=password&username=x&password={}&service=x&scope={scope}", reader.token.as_deref().unwrap())
                    .into_bytes(),
            ),
            Some("application/x-www-form-urlencoded"),
            &[],
        )
        .await;
    assert_eq!(exchange.status, 200, "{}", exchange.text);
    let registry_token = reader.with_token(exchange.body["token"].as_str().unwrap());
    assert_eq!(registry_token.get(&format!("/v2/{repo}/manifests/v1")).await.status, 200);
    assert_eq!(admin.call("DELETE", &reader_assignment, None, &[]).await.status, 200);
    let r = registry_token.get(&format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!((r.status, r.body["errors"][0]["code"].as_str()), (404, Some("NAME_UNKNOWN")), "{}", r.text);

    // The container registry's public switch closes the plane, with a denial that says why.
    let out = server.moat(&["acr", "update", "--registry-name", "roles", "--public-network-access", "Disabled"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = admin.get(&format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let e = &r.body["errors"][0];
    assert_eq!(e["code"], "DENIED");
    assert!(e["detail"]["scope"].as_str().unwrap().contains("microsoft.containerregistry/registries"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("private endpoint"), "the denial names the fix: {e}");
    let creds = format!("0:{}", admin.token.as_deref().unwrap());
    let out = skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &format!("docker://{}/{repo}:v1", host_of(&server.url))]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = server.moat(&["acr", "update", "--registry-name", "roles", "--public-network-access", "Enabled"]);
    assert!(out.status.success());
    assert_eq!(admin.get(&format!("/v2/{repo}/manifests/v1")).await.status, 200);
}

fn decode_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// An upload session survives SIGKILL at its last acknowledged length; bytes a crash left in
/// the upload area without a session are removed at start.
#[tokio::test(flavor = "multi_thread")]
async fn upload_sessions_survive_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[]);
    let (acr, _) = create_registry(&server, "crashy");
    let http = server.http();
    let repo = format!("{acr}/big");
    let r = http.raw("POST", &format!("/v2/{repo}/blobs/uploads/"), None, None, &[]).await;
    let location = r.header("location").unwrap();
    let first: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let second: Vec<u8> = (0..500_000u32).map(|i| (i % 241) as u8).collect();
    let r = http.raw("PATCH", &location, Some(first.clone()), Some("application/octet-stream"), &[("content-range", "0-999999")]).await;
    assert_eq!((r.status, r.header("range").as_deref()), (202, Some("0-999999")), "{}", r.text);
    std::fs::write(dir.join("blobs/uploads/orphan-from-a-crash"), b"half").unwrap();
    server.kill();

    let server = Server::start_in(&dir, &[]);
    assert!(!dir.join("blobs/uploads/orphan-from-a-crash").exists(), "bytes without a session are removed at start");
    let http = server.http();
    let r = http.raw("GET", &location, None, None, &[]).await;
    assert_eq!((r.status, r.header("range").as_deref()), (204, Some("0-999999")), "{}", r.text);
    // A chunk that does not continue the upload is refused with where to resume.
    let r = http.raw("PATCH", &location, Some(second.clone()), Some("application/octet-stream"), &[("content-range", "5-500004")]).await;
    assert_eq!((r.status, r.header("range").as_deref()), (416, Some("0-999999")), "{}", r.text);
    let r =
        http.raw("PATCH", &location, Some(second.clone()), Some("application/octet-stream"), &[("content-range", "1000000-1499999")]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let whole = [first, second].concat();
    let r = http.raw("PUT", &format!("{location}?digest={}", sha(&whole)), None, None, &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let got = http
        .client
        .get(format!("{}/v2/{repo}/blobs/{}", server.url, sha(&whole)))
        .bearer_auth(http.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().to_vec(), whole);
    assert_eq!(std::fs::read_dir(dir.join("blobs/uploads")).unwrap().count(), 0, "a finished upload leaves nothing behind");
}

/// With the registry closed to the public network, skopeo inside a namespace-mode virtual
/// network pushes and pulls through a private endpoint (group `registry`); skopeo on the host
/// is refused with the admission error. Needs root.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_inside_a_namespace_reaches_a_private_container_registry() {
    if let Some(why) = common::skip_reason_netns() {
        eprintln!("SKIP skopeo_inside_a_namespace_reaches_a_private_container_registry: {why}");
        return;
    }
    let ns = common::Netns::new(format!("moat-oci-{}", std::process::id()));
    // Plain HTTP on the namespace's 10.x endpoint is forced on purpose (skopeo with
    // --tls-verify=false); tests/byname.rs does the same over verified TLS.
    let tmp_server = tempfile::tempdir().unwrap();
    let server = Server::start_in(&tmp_server.path().join("data"), &[("MOAT_ALLOW_PLAIN_HTTP_ON_NETWORK", "true")]);
    let (acr, registry_id) = create_registry(&server, "closed");
    let http = server.http();
    let sub = server.sub_path();
    let reg = http.get(&registry_id).await;
    let acr_id = reg.body["properties"]["regionDetails"][0]["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let out = server.moat(&["registry", "update", "--name", "closed", "--set", "publicNetworkAccess=Disabled"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let net = format!("{sub}/resourceGroups/default/providers/Microsoft.Network");
    common::namespace_vnet(&http, &net, "vnet-oci", &ns.0, "10.253.0.0/16", "10.253.1.0/24").await;
    common::private_endpoint(&server, &http, &net, "pe-reg", "vnet-oci", &registry_id, "amlregistry").await;
    let url = common::private_endpoint(&server, &http, &net, "pe-acr", "vnet-oci", &acr_id, "registry").await;

    let tmp = tempfile::tempdir().unwrap();
    let layers = vec![(0..400_000u32).map(|i| (i % 239) as u8).collect::<Vec<u8>>()];
    let src = tmp.path().join("src");
    let digest = oci_layout(&src, &layers);
    let creds = format!("00000000-0000-0000-0000-000000000000:{}", http.token.as_deref().unwrap());
    let inside =
        |args: &[&str]| Command::new("ip").args(["netns", "exec", &ns.0, "skopeo"]).args(args).output().expect("ip netns exec skopeo runs");
    let private_image = format!("docker://{}/{acr}/team/env", host_of(&url));
    ok(
        &inside(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", src.display()),
            &format!("{private_image}:v1"),
        ]),
        "skopeo push inside the namespace",
    );
    let back = tmp.path().join("back");
    ok(
        &inside(&[
            "copy",
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &format!("{private_image}@{digest}"),
            &format!("oci:{}:v1", back.display()),
        ]),
        "skopeo pull inside the namespace",
    );
    assert_eq!(std::fs::read(back.join("blobs/sha256").join(&sha(&layers[0])[7..])).unwrap(), layers[0]);

    // An environment pinning that image is created from inside the network (Azure does not
    // support this with the container registry closed); from the host it is refused.
    let yml = tmp.path().join("env.yml");
    std::fs::write(&yml, format!("name: py\nversion: \"1\"\nimage: {acr}.cr.moat.internal/team/env:v1\n")).unwrap();
    let args = ["environment", "create", "--file", yml.to_str().unwrap(), "--registry-name", "closed"];
    let created = server.moat_in(&ns.0, &args);
    assert!(created.status.success(), "environment create inside the namespace: {}", String::from_utf8_lossy(&created.stderr));
    let v: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(v["properties"]["image"], format!("{acr}.cr.moat.internal/team/env@{digest}"));
    let from_host = server.moat(&args);
    assert!(!from_host.status.success() && String::from_utf8_lossy(&from_host.stderr).contains("PublicNetworkAccessDisabled"));

    // The host reaches only the public listener, which refuses the closed container registry.
    let public_image = format!("docker://{}/{acr}/team/env:v1", host_of(&server.url));
    let out = skopeo(&["inspect", "--tls-verify=false", "--creds", &creds, &public_image]);
    assert!(!out.status.success(), "the host read a private container registry");
    let r = http.get(&format!("/v2/{acr}/team/env/manifests/v1")).await;
    assert_eq!((r.status, r.body["errors"][0]["code"].as_str()), (403, Some("DENIED")), "{}", r.text);
    assert_eq!(r.body["errors"][0]["detail"]["reason"], "PublicNetworkAccessDisabled", "{}", r.text);
}

/// `moat environment create` with an image of the registry's container registry pins it to its
/// digest, whether named by login server or by path; the pinned manifest and its layers cannot
/// be deleted while the version exists; images elsewhere are refused or kept as given.
#[tokio::test(flavor = "multi_thread")]
async fn environments_pin_their_images() {
    let server = Server::start();
    let (acr, _) = create_registry(&server, "envs");
    let (other_acr, _) = create_registry(&server, "elsewhere");
    let http = server.http();
    let repo = format!("{acr}/team/py");
    let (layer, _, digest) = push_image(&http, &repo).await;
    let tmp = tempfile::tempdir().unwrap();
    let create = |version: &str, image: &str| {
        let yml = tmp.path().join(format!("env-{version}.yml"));
        std::fs::write(&yml, format!("name: py\nversion: \"{version}\"\nimage: {image}\nos_type: linux\n")).unwrap();
        server.moat(&["environment", "create", "--file", yml.to_str().unwrap(), "--registry-name", "envs"])
    };
    let pinned = format!("{acr}.cr.moat.internal/team/py@{digest}");
    for (version, image) in
        [("1", format!("{acr}.cr.moat.internal/team/py:v1")), ("2", format!("{}/{acr}/team/py:v1", host_of(&server.url)))]
    {
        let out = create(version, &image);
        let v: Value = serde_json::from_str(&ok(&out, "environment create")).unwrap();
        assert_eq!(v["properties"]["image"], pinned.as_str(), "{image} is pinned to its digest");
    }
    // Moving the tag does not move the environment.
    let other = br#"{"os":"windows"}"#.to_vec();
    let r = http
        .raw(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={}", sha(&other)),
            Some(other.clone()),
            Some("application/octet-stream"),
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    let m2 = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&other), "size": other.len()}, "layers": []})
    .to_string();
    assert_eq!(http.raw("PUT", &format!("/v2/{repo}/manifests/v1"), Some(m2.into_bytes()), Some(OCI_MANIFEST), &[]).await.status, 201);
    let shown = server.moat_json(&["environment", "show", "--name", "py", "--version", "1", "--registry-name", "envs"]);
    assert_eq!(shown["properties"]["image"], pinned.as_str());

    // The pinned manifest and its layer stay; the tag can go.
    let r = http.raw("DELETE", &format!("/v2/{repo}/manifests/{digest}"), None, None, &[]).await;
    assert_eq!((r.status, r.body["errors"][0]["code"].as_str()), (409, Some("DENIED")), "{}", r.text);
    assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("environments/py/versions/"), "{}", r.text);
    let r = http.raw("DELETE", &format!("/v2/{repo}/blobs/{layer}"), None, None, &[]).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(http.raw("DELETE", &format!("/v2/{repo}/manifests/v1"), None, None, &[]).await.status, 202);
    assert_eq!(http.raw("HEAD", &format!("/v2/{repo}/manifests/{digest}"), None, None, &[]).await.status, 200);

    // Refused: a missing tag, an image in another registry's container registry.
    let out = create("3", &format!("{acr}.cr.moat.internal/team/py:nope"));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ImageNotFound"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = create("3", &format!("{other_acr}.cr.moat.internal/team/py:v1"));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ImageNotInRegistry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A public image is kept as given (moat cannot and need not resolve it).
    let v: Value =
        serde_json::from_str(&ok(&create("3", "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest"), "public image")).unwrap();
    assert_eq!(v["properties"]["image"], "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest");

    // With the pinning versions gone, the manifest can be deleted.
    for version in ["1", "2"] {
        let out = server.moat(&["environment", "delete", "--name", "py", "--version", version, "--registry-name", "envs"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(http.raw("DELETE", &format!("/v2/{repo}/manifests/{digest}"), None, None, &[]).await.status, 202);

    // With the container registry closed to the public network, pinning from outside is refused
    // (its tags cannot be probed that way).
    push_image(&http, &repo).await;
    assert!(server.moat(&["acr", "update", "--registry-name", "envs", "--public-network-access", "Disabled"]).status.success());
    let out = create("4", &format!("{acr}.cr.moat.internal/team/py:v1"));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("PublicNetworkAccessDisabled"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unfinished uploads do not pile up: a session idle longer than upload_ttl_secs is ended and
/// its bytes removed; fresh sessions keep working.
#[tokio::test(flavor = "multi_thread")]
async fn idle_upload_sessions_expire() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[("MOAT_UPLOAD_TTL_SECS", "2")]);
    let (acr, _) = create_registry(&server, "ttl");
    let http = server.http();
    let r = http.raw("POST", &format!("/v2/{acr}/idle/blobs/uploads/"), None, None, &[]).await;
    let location = r.header("location").unwrap();
    let r = http.raw("PATCH", &location, Some(vec![7u8; 1000]), Some("application/octet-stream"), &[]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(std::fs::read_dir(dir.join("blobs/uploads")).unwrap().count(), 1);
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = http.raw("GET", &location, None, None, &[]).await;
        if r.status == 404 {
            assert_eq!(r.body["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
            gone = true;
            break;
        }
    }
    assert!(gone, "the idle session was never ended; log:\n{}", server.log());
    // The session's row goes first (a crash then leaves only bytes, which a restart removes),
    // its bytes a moment later.
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = std::fs::read_dir(dir.join("blobs/uploads")).unwrap().count();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "its bytes went with it");
    let r = http.raw("POST", &format!("/v2/{acr}/idle/blobs/uploads/"), None, None, &[]).await;
    let fresh = r.header("location").unwrap();
    let r =
        http.raw("PUT", &format!("{fresh}?digest={}", sha(b"later")), Some(b"later".to_vec()), Some("application/octet-stream"), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Garbage collection of image bytes, collecting every second with 3 s of grace: a layer
/// two repositories share stays while either has it; a deleted manifest's and deleted blobs'
/// bytes go once nothing refers to them, and the image can be pushed again afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_image_bytes_are_garbage_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[("MOAT_GC_INTERVAL_SECS", "1"), ("MOAT_GC_GRACE_SECS", "3")]);
    let (acr, _) = create_registry(&server, "gcimg");
    let http = server.http();
    let stored = |digest: &str| {
        let hex = digest.strip_prefix("sha256:").unwrap().to_string();
        dir.join("blobs/sha256").join(&hex[..2]).join(hex)
    };
    let (a, b) = (format!("{acr}/team/a"), format!("{acr}/team/b"));
    let (layer, _, manifest) = push_image(&http, &a).await;
    let r = http.raw("POST", &format!("/v2/{b}/blobs/uploads/?mount={layer}&from={a}"), None, None, &[]).await;
    assert_eq!(r.status, 201, "mounted: {}", r.text);
    assert!(stored(&layer).is_file() && stored(&manifest).is_file());

    // Repository a lets go of the manifest and the layer; b still has the layer.
    let r = http.raw("DELETE", &format!("/v2/{a}/manifests/{manifest}"), None, None, &[]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let r = http.raw("DELETE", &format!("/v2/{a}/blobs/{layer}"), None, None, &[]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(common::gone_within(&stored(&manifest)).await, "a deleted manifest's bytes go; log:\n{}", server.log());
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert!(stored(&layer).is_file(), "the layer repository b still has stays");
    let r = http.raw("GET", &format!("/v2/{b}/blobs/{layer}"), None, None, &[]).await;
    assert_eq!((r.status, r.text.as_str()), (200, "layer bytes"));

    // Once b lets go too, the layer goes; pushing the image again stores it again.
    let r = http.raw("DELETE", &format!("/v2/{b}/blobs/{layer}"), None, None, &[]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(common::gone_within(&stored(&layer)).await, "a layer no repository has goes");
    let (_, _, again) = push_image(&http, &a).await;
    assert_eq!(again, manifest);
    let r = http.raw("GET", &format!("/v2/{a}/blobs/{layer}"), None, None, &[]).await;
    assert_eq!((r.status, r.text.as_str()), (200, "layer bytes"), "pushed again after it was collected");
}
