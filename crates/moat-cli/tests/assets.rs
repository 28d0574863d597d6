//! Registry assets end to end: a model folder goes up with the azure-storage-blob SDK through
//! the SAS of `startPendingUpload`, the version commits it (paths, sizes, sha256), and it comes
//! back down through the read SAS of `datareferences`, byte for byte. Plus immutability,
//! archive and restore, list views, and what a Registry User may do.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Http, Server, registry_body};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn python(args: &[&str]) {
    let out =
        std::process::Command::new("python3").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/asset_sdk.py")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "asset_sdk.py {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_model(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut seed = 99u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect()
    };
    let files = vec![
        ("MLmodel".to_string(), b"flavors:\n  python_function: {}\n".to_vec()),
        ("weights/model.bin".to_string(), bytes(300_000)),
        ("weights/empty.txt".to_string(), vec![]),
        ("tokenizer/vocab.json".to_string(), bytes(5_000)),
    ];
    for (p, b) in &files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b).unwrap();
    }
    files
}

async fn upload_model(http: &Http, reg: &str, name: &str, version: &str, src: &Path) -> String {
    upload_for(http, &format!("{reg}/models/{name}/versions/{version}"), src).await.0
}

/// Uploads folder `src` with the SDK into a fresh pending upload location of the version at
/// `version_path`; returns the location's blobUri and its SAS URI.
async fn upload_for(http: &Http, version_path: &str, src: &Path) -> (String, String) {
    let r = http
        .call("POST", &format!("{version_path}/startPendingUpload"), Some(&json!({"pendingUploadType": "TemporaryBlobReference"})), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let blob_ref = &r.body["blobReferenceForConsumption"];
    assert_eq!(blob_ref["credential"]["credentialType"], "SAS");
    let sas = blob_ref["credential"]["sasUri"].as_str().unwrap().to_string();
    python(&["upload", &sas, src.to_str().unwrap()]);
    (blob_ref["blobUri"].as_str().unwrap().to_string(), sas)
}

/// A server with a registry named `name`: the server, an admin client, the registry's ARM path.
async fn server_with_registry(name: &str) -> (Server, Http, String) {
    let server = Server::start();
    let http = server.http();
    let reg = server.registry_path("default", name);
    assert_eq!(http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);
    (server, http, reg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_folder_round_trips_through_the_sdk() {
    let server = Server::start();
    let http = server.http();
    let reg = server.registry_path("default", "assetreg");
    assert_eq!(http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("model");
    let files = write_model(&src);

    let blob_uri = upload_model(&http, &reg, "sentiment", "1", &src).await;
    let body = json!({"properties": {"modelType": "CustomModel", "modelUri": blob_uri, "description": "first", "tags": {"team": "nlp"}}});
    let v = http.call("PUT", &format!("{reg}/models/sentiment/versions/1"), Some(&body), &[]).await;
    assert_eq!(v.status, 201, "{}", v.text);
    let mut recorded: Vec<(String, u64, String)> = v.body["properties"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["size"].as_u64().unwrap(), f["sha256"].as_str().unwrap().to_string()))
        .collect();
    recorded.sort();
    let mut expected: Vec<(String, u64, String)> =
        files.iter().map(|(p, b)| (p.clone(), b.len() as u64, format!("{:x}", Sha256::digest(b)))).collect();
    expected.sort();
    assert_eq!(recorded, expected, "each file's path, size and sha256 are recorded");

    // Read it back through datareferences.
    let asset_id = "azureml://registries/assetreg/models/sentiment/versions/1";
    let r = http.call("POST", &format!("{reg}/datareferences/sentiment/versions/1"), Some(&json!({"assetId": asset_id})), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let dest = tmp.path().join("download");
    python(&["download", r.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap(), dest.to_str().unwrap()]);
    for (p, b) in &files {
        assert_eq!(&std::fs::read(dest.join(p)).unwrap(), b, "{p}");
    }

    // The committed bytes can no longer change, not even with the upload SAS.
    let upload_sas = {
        let again = http.call("POST", &format!("{reg}/models/sentiment/versions/2/startPendingUpload"), Some(&json!({})), &[]).await;
        assert_eq!(again.status, 200);
        again
    };
    let sealed = http
        .anonymous()
        .raw(
            "PUT",
            &format!(
                "{blob_uri}/MLmodel?{}",
                r.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap().split_once('?').unwrap().1
            ),
            Some(b"x".to_vec()),
            None,
            &[("x-ms-blob-type", "BlockBlob")],
        )
        .await;
    assert_eq!(sealed.status, 403, "the read SAS cannot write: {}", sealed.text);
    // Re-creating the same version with the same content is idempotent; other content is refused.
    let same = http.call("PUT", &format!("{reg}/models/sentiment/versions/1"), Some(&body), &[]).await;
    assert_eq!(same.status, 200, "{}", same.text);
    let other_uri = upload_sas.body["blobReferenceForConsumption"]["blobUri"].as_str().unwrap();
    let changed =
        http.call("PUT", &format!("{reg}/models/sentiment/versions/1"), Some(&json!({"properties": {"modelUri": other_uri}})), &[]).await;
    assert_eq!((changed.status, changed.code().as_str()), (409, "AssetContentImmutable"), "{}", changed.text);
    // Azure's wording, which clients match on.
    assert!(changed.body["error"]["message"].as_str().unwrap().starts_with("Asset paths cannot be updated."), "{}", changed.text);
    // An upload location handed out for version 2 cannot commit version 3.
    python(&["upload", upload_sas.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap(), src.to_str().unwrap()]);
    let wrong =
        http.call("PUT", &format!("{reg}/models/sentiment/versions/3"), Some(&json!({"properties": {"modelUri": other_uri}})), &[]).await;
    assert_eq!((wrong.status, wrong.code().as_str()), (400, "InvalidAssetUri"), "{}", wrong.text);
    let v2 =
        http.call("PUT", &format!("{reg}/models/sentiment/versions/2"), Some(&json!({"properties": {"modelUri": other_uri}})), &[]).await;
    assert_eq!(v2.status, 201, "{}", v2.text);
    // Writing into a committed upload location is refused.
    let sas2 =
        upload_sas.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap().split_once('?').unwrap().1.to_string();
    let r = http
        .anonymous()
        .raw("PUT", &format!("{other_uri}/extra.bin?{sas2}"), Some(b"late".to_vec()), None, &[("x-ms-blob-type", "BlockBlob")])
        .await;
    assert_eq!((r.status, r.header("x-ms-error-code").as_deref()), (409, Some("BlobImmutableDueToPolicy")), "{}", r.text);

    // Mutable fields change; the container tracks latest and next versions; archive hides.
    let up = http
        .call(
            "PUT",
            &format!("{reg}/models/sentiment/versions/1"),
            Some(
                &json!({"properties": {"modelUri": blob_uri, "modelType": "CustomModel", "description": "better", "stage": "Production"}}),
            ),
            &[],
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text);
    assert_eq!(up.body["properties"]["description"], "better");
    assert_eq!(up.body["properties"]["tags"]["team"], "nlp", "tags not given are kept");
    let c = http.get(&format!("{reg}/models/sentiment")).await;
    assert_eq!(
        (c.body["properties"]["latestVersion"].as_str(), c.body["properties"]["nextVersion"].as_str()),
        (Some("2"), Some("3")),
        "{}",
        c.text
    );
    let arch = http
        .call(
            "PUT",
            &format!("{reg}/models/sentiment/versions/2"),
            Some(&json!({"properties": {"modelUri": other_uri, "isArchived": true}})),
            &[],
        )
        .await;
    assert_eq!(arch.status, 200, "{}", arch.text);
    assert_eq!(http.get(&format!("{reg}/models/sentiment")).await.body["properties"]["latestVersion"], "1");
    let names = |v: &Value| v["value"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&http.get(&format!("{reg}/models/sentiment/versions")).await.body), ["1"]);
    assert_eq!(names(&http.get(&format!("{reg}/models/sentiment/versions?listViewType=ArchivedOnly")).await.body), ["2"]);
    assert_eq!(names(&http.get(&format!("{reg}/models/sentiment/versions?listViewType=All")).await.body), ["1", "2"]);
    assert_eq!(http.get(&format!("{reg}/models/sentiment/versions?listViewType=Some")).await.status, 400);
    let restored = http
        .call(
            "PUT",
            &format!("{reg}/models/sentiment/versions/2"),
            Some(&json!({"properties": {"modelUri": other_uri, "isArchived": false}})),
            &[],
        )
        .await;
    assert_eq!(restored.status, 200);
    assert_eq!(names(&http.get(&format!("{reg}/models")).await.body), ["sentiment"]);

    // Versions without files: a component and an environment.
    let comp = http
        .call(
            "PUT",
            &format!("{reg}/components/train/versions/1"),
            Some(&json!({"properties": {"componentSpec": {"name": "train", "type": "command", "command": "python train.py"}}})),
            &[],
        )
        .await;
    assert_eq!(comp.status, 201, "{}", comp.text);
    let env = http
        .call(
            "PUT",
            &format!("{reg}/environments/base/versions/1"),
            Some(&json!({"properties": {"image": "mcr.microsoft.com/azureml/base:latest", "osType": "Linux"}})),
            &[],
        )
        .await;
    assert_eq!(env.status, 201, "{}", env.text);

    // Bad input: specific errors, nothing created.
    let cases: Vec<(String, Value, u16, &str, Option<&str>)> = vec![
        (
            format!("{reg}/models/sentiment/versions/9"),
            json!({"properties": {"modelType": "CustomModel"}}),
            400,
            "InvalidRequestContent",
            Some("properties.modelUri"),
        ),
        (
            format!("{reg}/models/sentiment/versions/9"),
            json!({"properties": {"modelUri": "https://elsewhere.example/x"}}),
            400,
            "InvalidAssetUri",
            Some("properties.modelUri"),
        ),
        (
            format!("{reg}/models/sentiment/versions/9"),
            json!({"properties": {"modelUri": blob_uri, "image": "x"}}),
            400,
            "InvalidRequestContent",
            Some("properties.image"),
        ),
        (
            format!("{reg}/components/train/versions/2"),
            json!({"properties": {"componentSpec": "not an object"}}),
            400,
            "InvalidRequestContent",
            Some("properties.componentSpec"),
        ),
        (
            format!("{reg}/data/d1/versions/1"),
            json!({"properties": {"dataType": "table", "dataUri": blob_uri}}),
            400,
            "InvalidRequestContent",
            Some("properties.dataType"),
        ),
        (
            format!("{reg}/environments/base/versions/2"),
            json!({"properties": {"osType": "Plan9", "image": "x"}}),
            400,
            "InvalidRequestContent",
            Some("properties.osType"),
        ),
        (format!("{reg}/models/-bad/versions/1"), json!({"properties": {}}), 400, "InvalidAssetName", Some("name")),
        (format!("{reg}/models/sentiment/versions/a%2Fb"), json!({"properties": {}}), 400, "InvalidAssetVersion", Some("version")),
        (format!("{reg}/models/{}/versions/1", "n".repeat(256)), json!({"properties": {}}), 400, "InvalidAssetName", Some("name")),
        (
            format!("{reg}/models/sentiment/versions/{}", "1".repeat(65)),
            json!({"properties": {}}),
            400,
            "InvalidAssetVersion",
            Some("version"),
        ),
        (format!("{reg}/gizmos/x/versions/1"), json!({"properties": {}}), 404, "NoRegisteredProviderFound", None),
    ];
    for (path, body, status, code, target) in cases {
        let r = http.call("PUT", &path, Some(&body), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{path}: {}", r.text);
        assert_eq!(r.body["error"]["target"].as_str(), target, "{path}");
    }
    assert_eq!(names(&http.get(&format!("{reg}/models/sentiment/versions?listViewType=All")).await.body), ["1", "2"]);
    assert_eq!(names(&http.get(&format!("{reg}/models")).await.body), ["sentiment"], "refused names created nothing");
    // The longest name and version are fine.
    let (long_name, long_version) = ("n".repeat(255), "1".repeat(64));
    let comp = json!({"properties": {"componentSpec": {"name": "long", "type": "command", "command": "run"}}});
    let r = http.call("PUT", &format!("{reg}/components/{long_name}/versions/{long_version}"), Some(&comp), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(http.get(&format!("{reg}/data/d1")).await.status, 404);

    // Deleting: versions, then the container; the registry's deletion takes its assets along.
    assert_eq!(http.call("DELETE", &format!("{reg}/models/sentiment"), None, &[]).await.code(), "ContainerHasVersions");
    assert_eq!(http.call("DELETE", &format!("{reg}/models/sentiment/versions/2"), None, &[]).await.status, 200);
    assert_eq!(http.get(&format!("{reg}/models/sentiment")).await.body["properties"]["latestVersion"], "1");
    assert_eq!(http.call("DELETE", &reg, None, &[]).await.status, 202);
    assert_eq!(http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);
    assert_eq!(http.get(&format!("{reg}/models/sentiment")).await.status, 404, "a new registry of the same name starts empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_built_from_a_context_carries_it() {
    let (server, http, reg) = server_with_registry("envreg").await;
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("app")).unwrap();
    std::fs::write(ctx.join("app/requirements.txt"), b"numpy==2.1.0\n").unwrap();
    let v1 = format!("{reg}/environments/trainer/versions/1");

    // A build context goes up like a model's files, through startPendingUpload and the SDK.
    let (context_uri, sas) = upload_for(&http, &v1, &ctx).await;
    let (context_uri, sas) = (context_uri.as_str(), sas.as_str());
    // Without its Dockerfile it could never be built: refused, and the location stays open.
    let build = |extra: Value| {
        let mut b = json!({"contextUri": context_uri});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"properties": {"build": b, "osType": "Linux"}})
    };
    let r = http.call("PUT", &v1, Some(&build(json!({}))), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "DockerfileNotFound"), "{}", r.text);
    assert_eq!(r.body["error"]["target"], "properties.build.dockerfilePath");
    // Bad build bodies: each a specific 400, nothing created.
    let elsewhere = json!({"properties": {"build": {"contextUri": "https://elsewhere.example/ctx"}}});
    let cases = [
        (
            json!({"properties": {"build": {"contextUri": context_uri}, "image": "python:3.11"}}),
            "InvalidRequestContent",
            "properties.build",
        ),
        (build(json!({"dockerfile": "Dockerfile"})), "InvalidRequestContent", "properties.build.dockerfile"),
        (build(json!({"dockerfilePath": "../Dockerfile"})), "InvalidRequestContent", "properties.build.dockerfilePath"),
        (build(json!({"dockerfilePath": 7})), "InvalidRequestContent", "properties.build.dockerfilePath"),
        (json!({"properties": {"build": {"dockerfilePath": "Dockerfile"}}}), "InvalidRequestContent", "properties.build.contextUri"),
        (json!({"properties": {"build": "ctx"}}), "InvalidRequestContent", "properties.build"),
        (elsewhere, "InvalidAssetUri", "properties.build.contextUri"),
    ];
    for (body, code, target) in cases {
        let r = http.call("PUT", &v1, Some(&body), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (400, code), "{body}: {}", r.text);
        assert_eq!(r.body["error"]["target"], target, "{body}");
    }
    assert_eq!(http.get(&v1).await.status, 404, "nothing was created");
    // The Dockerfile joins the same location, and the version commits the whole context.
    let dockerfile = b"FROM python:3.11-slim\nCOPY app /app\nRUN pip install -r /app/requirements.txt\n";
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    python(&["upload", sas, ctx.to_str().unwrap()]);
    // A build context is a folder, never one file.
    let one_file = json!({"properties": {"build": {"contextUri": format!("{context_uri}/Dockerfile")}}});
    let r = http.call("PUT", &v1, Some(&one_file), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidAssetUri"), "{}", r.text);
    let created = http.call("PUT", &v1, Some(&build(json!({}))), &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let p = &created.body["properties"];
    assert_eq!(p["build"], json!({"contextUri": context_uri, "dockerfilePath": "Dockerfile"}), "the default Dockerfile path is recorded");
    let mut files: Vec<(String, String)> = p["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["sha256"].as_str().unwrap().to_string()))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            ("Dockerfile".to_string(), format!("{:x}", Sha256::digest(dockerfile))),
            ("app/requirements.txt".to_string(), format!("{:x}", Sha256::digest(b"numpy==2.1.0\n")))
        ]
    );
    // The same context named again (with the default path spelled out) is the same version;
    // another Dockerfile path is other content.
    for spelled in ["Dockerfile", "./Dockerfile"] {
        let same = http.call("PUT", &v1, Some(&build(json!({"dockerfilePath": spelled}))), &[]).await;
        assert_eq!(same.status, 200, "{spelled}: {}", same.text);
    }
    let other = http.call("PUT", &v1, Some(&build(json!({"dockerfilePath": "app/Dockerfile"}))), &[]).await;
    assert_eq!((other.status, other.code().as_str()), (409, "AssetContentImmutable"), "{}", other.text);
    // It comes back down through datareferences, byte for byte.
    let asset_id = "azureml://registries/envreg/environments/trainer/versions/1";
    let r = http.call("POST", &format!("{reg}/datareferences/trainer/versions/1"), Some(&json!({"assetId": asset_id})), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let dest = tmp.path().join("sdk-down");
    python(&["download", r.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap(), dest.to_str().unwrap()]);
    assert_eq!(std::fs::read(dest.join("Dockerfile")).unwrap(), dockerfile);
    assert_eq!(std::fs::read(dest.join("app/requirements.txt")).unwrap(), b"numpy==2.1.0\n");

    // The CLI: `build: {path}` in the az ml YAML uploads the folder.
    std::fs::write(ctx.join("app/main.py"), b"print('serve')\n").unwrap();
    let yml = tmp.path().join("env.yml");
    std::fs::write(&yml, "name: trainer\nversion: 2\nbuild:\n  path: ./ctx\n  dockerfile_path: ./Dockerfile\ndescription: built here\n")
        .unwrap();
    let create = ["environment", "create", "--file", yml.to_str().unwrap(), "--registry-name", "envreg"];
    let e = server.moat_json(&create);
    assert_eq!(e["assetId"], "azureml://registries/envreg/environments/trainer/versions/2");
    assert_eq!(e["properties"]["build"]["dockerfilePath"], "Dockerfile");
    assert_eq!(e["properties"]["files"].as_array().unwrap().len(), 3, "{e}");
    let again = server.moat(&create);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && err.contains("exists with these files already"), "{err}");
    // The same files with another Dockerfile are another environment: refused, not reported as
    // the version that exists.
    std::fs::write(&yml, "name: trainer\nversion: 2\nbuild:\n  path: ./ctx\n  dockerfile_path: app/main.py\n").unwrap();
    let other = server.moat(&create);
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && err.contains("AssetContentImmutable"), "{err}");
    let out_dir = tmp.path().join("cli-down");
    let out = server.moat(&[
        "environment",
        "download",
        "--name",
        "azureml://registries/envreg/environments/trainer/versions/2",
        "--download-path",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["Dockerfile", "app/requirements.txt", "app/main.py"] {
        assert_eq!(std::fs::read(out_dir.join("trainer").join(f)).unwrap(), std::fs::read(ctx.join(f)).unwrap(), "{f}");
    }
    // Refused before anything is sent: an image and a context at once, a context without its
    // Dockerfile, a context that is not a local folder.
    for (yaml, says) in [
        ("name: trainer\nversion: 3\nimage: python:3.11\nbuild: {path: ./ctx}\n", "one of the two"),
        ("name: trainer\nversion: 3\nbuild: {path: ./ctx, dockerfile_path: prod/Dockerfile}\n", "has no prod/Dockerfile"),
        ("name: trainer\nversion: 3\nbuild: {path: 'https://example.com/ctx'}\n", "not a local folder"),
    ] {
        std::fs::write(&yml, yaml).unwrap();
        let out = server.moat(&create);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{yaml}: {err}");
    }
    assert_eq!(http.get(&format!("{reg}/environments/trainer/versions/3")).await.status, 404);
    // An environment that names an image has nothing to download, and says why.
    std::fs::write(&yml, "name: served\nversion: 1\nimage: python:3.11\n").unwrap();
    server.moat_json(&create);
    let out = server.moat(&[
        "environment",
        "download",
        "--name",
        "served",
        "--registry-name",
        "envreg",
        "--download-path",
        out_dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("NoFiles") && err.contains("names an image"), "{err}");
    // Deleting the version empties its context's location: the read SAS stops finding it.
    assert_eq!(http.call("DELETE", &v1, None, &[]).await.status, 200);
    let gone = http
        .anonymous()
        .raw(
            "GET",
            &format!(
                "{context_uri}/Dockerfile?{}",
                r.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap().split_once('?').unwrap().1
            ),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(gone.status, 404, "{}", gone.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_may_name_one_uploaded_file() {
    let (server, http, reg) = server_with_registry("filereg").await;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("up");
    std::fs::create_dir_all(src.join("raw")).unwrap();
    let csv = b"sepal_length,species\n5.1,setosa\n".to_vec();
    std::fs::write(src.join("raw/iris.csv"), &csv).unwrap();
    std::fs::write(src.join("raw/notes.txt"), b"not part of the asset").unwrap();
    let v1 = format!("{reg}/data/iris/versions/1");
    let (location, _) = upload_for(&http, &v1, &src).await;

    // A URI naming neither an uploaded folder nor an uploaded file is refused.
    let missing = json!({"properties": {"dataType": "uri_file", "dataUri": format!("{location}/raw/nothing.csv")}});
    let r = http.call("PUT", &v1, Some(&missing), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidAssetUri"), "{}", r.text);
    // As Azure's uri_file data does, the dataUri names the file itself: the version is that one
    // file, not the folder it sits in.
    let body = json!({"properties": {"dataType": "uri_file", "dataUri": format!("{location}/raw/iris.csv")}});
    let created = http.call("PUT", &v1, Some(&body), &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.body["properties"]["files"],
        json!([{"path": "iris.csv", "size": csv.len(), "sha256": format!("{:x}", Sha256::digest(&csv))}])
    );
    assert_eq!(http.call("PUT", &v1, Some(&body), &[]).await.status, 200, "the same again is the same version");
    // The CLI brings back that file, and only it.
    let dest = tmp.path().join("down");
    let out = server.moat(&[
        "data",
        "download",
        "--name",
        "iris",
        "--version",
        "1",
        "--registry-name",
        "filereg",
        "--download-path",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dest.join("iris/iris.csv")).unwrap(), csv);
    assert_eq!(std::fs::read_dir(dest.join("iris")).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_lists_page_whole_in_every_view_while_versions_are_added() {
    let (_server, http, reg) = server_with_registry("pagereg").await;
    let put = |v: String, archived: bool| {
        let http = &http;
        let url = format!("{reg}/components/pager/versions/{v}");
        async move {
            let spec =
                json!({"properties": {"isArchived": archived, "componentSpec": {"name": "pager", "type": "command", "command": "run"}}});
            let r = http.call("PUT", &url, Some(&spec), &[]).await;
            assert!(r.status == 200 || r.status == 201, "{url}: {}", r.text);
        }
    };
    // Versions 1-7, the even ones archived.
    for i in 1..=7 {
        put(i.to_string(), false).await;
        if i % 2 == 0 {
            put(i.to_string(), true).await;
        }
    }
    let views = [
        ("", vec!["1", "3", "5", "7"]),
        ("&listViewType=ArchivedOnly", vec!["2", "4", "6"]),
        ("&listViewType=All", vec!["1", "2", "3", "4", "5", "6", "7"]),
    ];
    let mut late = 100;
    for (view, want) in views {
        // Two at a time, following nextLink; after the first page a version is added (active)
        // and another archived, which must not disturb what the list walks through.
        let mut next = Some(format!("{reg}/components/pager/versions?api-version=2025-09-01&$top=2{view}"));
        let (mut got, mut pages) = (Vec::new(), 0);
        while let Some(url) = next {
            let r = http.get(&url).await;
            assert_eq!(r.status, 200, "{url}: {}", r.text);
            pages += 1;
            got.extend(r.body["value"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()));
            if pages == 1 {
                late += 1;
                put(late.to_string(), false).await;
                late += 1;
                put(late.to_string(), true).await;
            }
            next = r.body["nextLink"].as_str().map(str::to_string);
            if let Some(n) = &next {
                assert!(view.is_empty() || n.contains(&view[1..]), "the next page's link keeps the view {view}: {n}");
            }
        }
        assert!(pages >= 2, "{view}: {pages} pages");
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "{view}: no version twice: {got:?}");
        // Everything there before the walk is listed; what came during it may or may not be,
        // but only in its own view.
        let before: Vec<&String> = got.iter().filter(|n| n.parse::<u32>().unwrap() < 100).collect();
        assert_eq!(before, want, "{view}: {got:?}");
        for n in got.iter().filter(|n| n.parse::<u32>().unwrap() > 100) {
            let archived = n.parse::<u32>().unwrap() % 2 == 0;
            let fits = match view {
                "" => !archived,
                "&listViewType=ArchivedOnly" => archived,
                _ => true,
            };
            assert!(fits, "{view}: version {n} listed out of its view");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_user_manages_assets_but_not_the_registry() {
    let server = Server::start();
    let admin = server.http();
    let p = server.profile();
    let reg = server.registry_path("default", "userreg");
    assert_eq!(admin.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);
    let sp = server.moat_json(&["ad", "sp", "create-for-rbac", "--name", "publisher", "--role", "AzureML Registry User", "--scopes", &reg]);
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        sp["appId"].as_str().unwrap(),
        sp["password"].as_str().unwrap()
    );
    let t = admin
        .anonymous()
        .raw("POST", &format!("/{}/oauth2/v2.0/token", p.tenant), Some(form.into_bytes()), Some("application/x-www-form-urlencoded"), &[])
        .await;
    let user = admin.with_token(t.body["access_token"].as_str().unwrap());

    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("m");
    write_model(&src);
    let uri = upload_model(&user, &reg, "pub", "1", &src).await;
    let created = user.call("PUT", &format!("{reg}/models/pub/versions/1"), Some(&json!({"properties": {"modelUri": uri}})), &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let updated = user
        .call("PUT", &format!("{reg}/models/pub/versions/1"), Some(&json!({"properties": {"modelUri": uri, "description": "d"}})), &[])
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(user.call("DELETE", &format!("{reg}/models/pub/versions/1"), None, &[]).await.status, 200);
    // Not the registry, its network settings or its managed resources.
    let r = user.call("PATCH", &reg, Some(&json!({"tags": {"x": "y"}})), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "AuthorizationFailed"));
    let full = admin.get(&reg).await.body;
    let mut b = full.clone();
    b["properties"]["publicNetworkAccess"] = json!("Disabled");
    assert_eq!(user.call("PUT", &reg, Some(&b), &[]).await.status, 403);
    let sa =
        full["properties"]["regionDetails"][0]["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]["resourceId"]
            .as_str()
            .unwrap();
    assert_eq!(user.get(sa).await.status, 404);
    assert_eq!(
        user.call("POST", &format!("{sa}/ListServiceSas"), Some(&json!({"canonicalizedResource": "/blob/x/y", "signedResource": "c", "signedPermission": "r", "signedExpiry": "2999-01-01T00:00:00Z"})), &[]).await.status,
        404
    );
    // Asset reads and writes are in the activity log under the publisher's name.
    let log = admin
        .get(&format!(
            "{}/providers/Microsoft.Insights/eventtypes/management/values?$top=500&$filter=result eq 'allowed'",
            server.sub_path()
        ))
        .await;
    let ops: Vec<&str> = log.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["caller"] == "publisher")
        .map(|e| e["operationName"].as_str().unwrap())
        .collect();
    for action in ["registries/assets/write", "registries/assets/delete"] {
        assert!(ops.iter().any(|o| o.ends_with(action)), "{action} not logged: {ops:?}");
    }
}

#[test]
fn the_cli_publishes_and_fetches_assets() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("r.yml"), "name: clireg\nlocation: eastus\n").unwrap();
    server.moat_json(&["registry", "create", "--file", tmp.path().join("r.yml").to_str().unwrap()]);
    // A model folder with a file larger than one upload block, so that blocks are used.
    let files = write_model(&tmp.path().join("model"));
    let big: Vec<u8> = (0..(9 * 1024 * 1024 + 7)).map(|i| (i % 251) as u8).collect();
    std::fs::write(tmp.path().join("model/weights/large.bin"), &big).unwrap();
    std::fs::write(tmp.path().join("model.yml"), "$schema: https://azuremlschemas.azureedge.net/latest/model.schema.json\nname: clf\nversion: 1\npath: ./model\ntype: mlflow_model\ndescription: a classifier\ntags: {team: ml}\n").unwrap();
    let m = server.moat_json(&["model", "create", "--file", tmp.path().join("model.yml").to_str().unwrap(), "--registry-name", "clireg"]);
    assert_eq!(m["assetId"], "azureml://registries/clireg/models/clf/versions/1");
    assert_eq!(m["properties"]["modelType"], "MLFlowModel");
    assert_eq!(m["properties"]["files"].as_array().unwrap().len(), files.len() + 1);
    // Creating it again is idempotent: the same files give the version back, uploading nothing;
    // other files are refused, and the version keeps its own.
    let yml = tmp.path().join("model.yml");
    let create = ["model", "create", "--file", yml.to_str().unwrap(), "--registry-name", "clireg"];
    let again = server.moat(&create);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && err.contains("exists with these files already"), "{err}");
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap()["properties"]["files"], m["properties"]["files"]);
    let mut changed = big.clone();
    changed[5] ^= 1;
    std::fs::write(tmp.path().join("model/weights/large.bin"), &changed).unwrap();
    let refused = server.moat(&create);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("AssetAlreadyExists") && err.contains("weights/large.bin differs"), "{err}");
    std::fs::write(tmp.path().join("model/extra.txt"), b"x").unwrap();
    std::fs::write(tmp.path().join("model/weights/large.bin"), &big).unwrap();
    let refused = server.moat(&create);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("it has no extra.txt"), "{err}");
    std::fs::remove_file(tmp.path().join("model/extra.txt")).unwrap();
    // The same files as another type of model are other content: refused by the server, and the
    // version keeps its type.
    std::fs::write(&yml, "name: clf\nversion: 1\npath: ./model\ntype: custom_model\n").unwrap();
    let refused = server.moat(&create);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("AssetContentImmutable"), "{err}");
    std::fs::write(&yml, "$schema: https://azuremlschemas.azureedge.net/latest/model.schema.json\nname: clf\nversion: 1\npath: ./model\ntype: mlflow_model\ndescription: a classifier\ntags: {team: ml}\n").unwrap();
    // The asset ID works wherever a name and version do.
    let shown = server.moat_json(&["model", "show", "--name", "azureml://registries/clireg/models/clf/versions/1"]);
    assert_eq!(shown["properties"]["description"], "a classifier");
    let listed = server.moat_json(&["model", "list", "--registry-name", "clireg"]);
    assert_eq!(listed[0]["properties"]["latestVersion"], "1");
    // Update, archive and restore.
    let up = server.moat_json(&[
        "model",
        "update",
        "--name",
        "clf",
        "--version",
        "1",
        "--registry-name",
        "clireg",
        "--set",
        "stage=Production",
        "tags.owner=alice",
    ]);
    assert_eq!((up["properties"]["stage"].as_str(), up["properties"]["tags"]["owner"].as_str()), (Some("Production"), Some("alice")));
    server.moat_json(&["model", "archive", "--name", "clf", "--version", "1", "--registry-name", "clireg"]);
    assert_eq!(server.moat_json(&["model", "list", "--registry-name", "clireg", "--name", "clf"]), json!([]));
    assert_eq!(server.moat_json(&["model", "list", "--registry-name", "clireg", "--name", "clf", "--archived-only"])[0]["name"], "1");
    server.moat_json(&["model", "restore", "--name", "clf", "--version", "1", "--registry-name", "clireg"]);
    // Without a version, archive and restore act on the asset, not on its latest version.
    let names = |v: Value| v.as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    server.moat_json(&["model", "archive", "--name", "clf", "--registry-name", "clireg"]);
    assert!(names(server.moat_json(&["model", "list", "--registry-name", "clireg"])).is_empty());
    assert_eq!(names(server.moat_json(&["model", "list", "--registry-name", "clireg", "--archived-only"])), ["clf"]);
    assert_eq!(
        names(server.moat_json(&["model", "list", "--registry-name", "clireg", "--name", "clf"])),
        ["1"],
        "its versions keep their state"
    );
    server.moat_json(&["model", "restore", "--name", "clf", "--registry-name", "clireg"]);
    assert_eq!(names(server.moat_json(&["model", "list", "--registry-name", "clireg"])), ["clf"]);
    // The labels/latest asset ID names a version, not the asset.
    server.moat_json(&["model", "archive", "--name", "azureml://registries/clireg/models/clf/labels/latest"]);
    assert!(names(server.moat_json(&["model", "list", "--registry-name", "clireg", "--name", "clf"])).is_empty());
    assert_eq!(names(server.moat_json(&["model", "list", "--registry-name", "clireg"])), ["clf"]);
    server.moat_json(&["model", "restore", "--name", "clf", "--version", "1", "--registry-name", "clireg"]);
    // Download: every file, byte for byte, verified.
    let dest = tmp.path().join("out");
    let out = server.moat(&[
        "model",
        "download",
        "--name",
        "clf",
        "--version",
        "1",
        "--registry-name",
        "clireg",
        "--download-path",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (p, b) in &files {
        assert_eq!(&std::fs::read(dest.join("clf").join(p)).unwrap(), b, "{p}");
    }
    assert_eq!(std::fs::read(dest.join("clf/weights/large.bin")).unwrap(), big);
    // A code asset: a source folder, with the same verbs.
    std::fs::create_dir_all(tmp.path().join("src/pkg")).unwrap();
    std::fs::write(tmp.path().join("src/train.py"), b"print('train')\n").unwrap();
    std::fs::write(tmp.path().join("src/pkg/util.py"), b"X = 1\n").unwrap();
    std::fs::write(tmp.path().join("code.yml"), "name: trainer\nversion: 2\npath: ./src\ndescription: training code\n").unwrap();
    let code = server.moat_json(&["code", "create", "--file", tmp.path().join("code.yml").to_str().unwrap(), "--registry-name", "clireg"]);
    assert_eq!(code["assetId"], "azureml://registries/clireg/codes/trainer/versions/2");
    assert!(code["properties"]["codeUri"].as_str().is_some_and(|u| !u.is_empty()), "{code}");
    assert_eq!(code["properties"]["files"].as_array().unwrap().len(), 2);
    let out = server.moat(&[
        "code",
        "download",
        "--name",
        "azureml://registries/clireg/codes/trainer/versions/2",
        "--download-path",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(dest.join("trainer/pkg/util.py")).unwrap(), b"X = 1\n");
    assert_eq!(server.moat_json(&["code", "list", "--registry-name", "clireg"])[0]["name"], "trainer");
    // The asset's own ID (no version) names it too: the latest version, or the one --version picks.
    let latest = server.moat_json(&["code", "show", "--name", "azureml://registries/clireg/codes/trainer"]);
    assert_eq!(latest["name"], "2");
    let picked = server.moat_json(&["code", "show", "--name", "azureml://registries/clireg/codes/trainer", "--version", "2"]);
    assert_eq!(picked["properties"]["description"], "training code");
    // Components and environments.
    std::fs::write(
        tmp.path().join("comp.yml"),
        "name: train\nversion: 3\ntype: command\ncommand: python train.py\ninputs:\n  data: {type: uri_folder}\n",
    )
    .unwrap();
    let c =
        server.moat_json(&["component", "create", "--file", tmp.path().join("comp.yml").to_str().unwrap(), "--registry-name", "clireg"]);
    assert_eq!(c["properties"]["componentSpec"]["command"], "python train.py");
    std::fs::write(tmp.path().join("conda.yml"), "dependencies: [python=3.11]\n").unwrap();
    std::fs::write(
        tmp.path().join("env.yml"),
        "name: base\nversion: 1\nimage: mcr.microsoft.com/azureml/base:latest\nconda_file: conda.yml\n",
    )
    .unwrap();
    let e =
        server.moat_json(&["environment", "create", "--file", tmp.path().join("env.yml").to_str().unwrap(), "--registry-name", "clireg"]);
    assert_eq!(e["properties"]["condaFile"], "dependencies: [python=3.11]\n");
    // Deleting a version.
    let out = server.moat(&["model", "delete", "--name", "clf", "--version", "1", "--registry-name", "clireg"]);
    assert!(out.status.success());
    let out = server.moat(&["model", "show", "--name", "clf", "--version", "1", "--registry-name", "clireg"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("ResourceNotFound"));
}

/// Runs a CLI transfer and SIGKILLs it once its progress passes `percent`; returns whether it
/// was still running then.
fn interrupt(server: &Server, args: &[&str], verb: &str, percent: u64) -> bool {
    use std::io::BufRead;
    let mut child = server.moat_command(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        let done = line.strip_prefix(&format!("{verb}: ")).and_then(|r| r.split('%').next()).and_then(|p| p.parse::<u64>().ok());
        if done.is_some_and(|d| d >= percent) {
            break;
        }
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    running
}

/// `N sent|fetched, M already …` from the CLI's summary line.
fn counts(stderr: &str, moved: &str) -> (u64, u64) {
    let line = stderr.lines().find(|l| l.contains(moved)).unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    let inner = line.rsplit('(').next().unwrap();
    let mut nums = inner.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|n| n.parse::<u64>().unwrap());
    (nums.next().unwrap(), nums.next().unwrap())
}

/// A model folder of 192 MiB in 48 blocks, each different, and a small file: (folder, bytes).
fn big_model(tmp: &Path) -> (std::path::PathBuf, u64) {
    let src = tmp.join("model");
    std::fs::create_dir_all(&src).unwrap();
    let total: u64 = 192 * 1024 * 1024;
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(src.join("weights.bin")).unwrap());
        let pattern: Vec<u8> = (0..1024 * 1024).map(|i| (i * 31 % 253) as u8).collect();
        for mib in 0..192u32 {
            f.write_all(&mib.to_le_bytes()).unwrap();
            f.write_all(&pattern[4..]).unwrap();
        }
    }
    std::fs::write(src.join("config.json"), b"{\"layers\": 12}").unwrap();
    (src, total + 14)
}

/// A registry named `registry` and, in `tmp`, the big model folder and a model.yml for it
/// (`big`, version 1): (folder, bytes, model.yml).
fn registry_and_big_model(server: &Server, tmp: &Path, registry: &str) -> (std::path::PathBuf, u64, std::path::PathBuf) {
    std::fs::write(tmp.join("r.yml"), format!("name: {registry}\nlocation: eastus\n")).unwrap();
    server.moat_json(&["registry", "create", "--file", tmp.join("r.yml").to_str().unwrap()]);
    let (src, total) = big_model(tmp);
    let yml = tmp.join("model.yml");
    std::fs::write(&yml, "name: big\nversion: 1\npath: ./model\n").unwrap();
    (src, total, yml)
}

/// Runs a CLI transfer; once its progress reaches `percent`, kills the server (SIGKILL) and
/// starts it again at once on the same port and data. Returns the new server, whether the CLI
/// run succeeded, and what it printed.
fn across_a_restart(server: Server, dir: &Path, args: &[&str], verb: &str, percent: u64) -> (Server, bool, String) {
    use std::io::BufRead;
    let port = server.url.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let mut child = server.moat_command(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.strip_prefix(&format!("{verb}: ")).and_then(|r| r.split('%').next()).and_then(|p| p.parse::<u64>().ok());
        said.push(line);
        if done.is_some_and(|d| d >= percent) {
            break;
        }
    }
    // At 100 % the run may be done already (its commit was quick); before, it must not be.
    assert!(percent == 100 || child.try_wait().unwrap().is_none(), "the {verb} ended before the server could be killed: {said:?}");
    server.kill();
    let server = Server::start_in(dir, &[("MOAT_LISTEN", &format!("127.0.0.1:{port}"))]);
    said.extend(lines.map(|l| l.unwrap()));
    let ok = child.wait().unwrap().success();
    (server, ok, said.join("\n"))
}

#[test]
fn a_transfer_rides_out_a_server_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[]);
    let (src, _, yml) = registry_and_big_model(&server, tmp.path(), "restartreg");
    let want = std::fs::read(src.join("weights.bin")).unwrap();

    // The server dies a fifth of the way into the upload and comes back: the same run carries
    // on (the blocks that failed are sent again after a pause) and commits the version.
    let create = ["model", "create", "--file", yml.to_str().unwrap(), "--registry-name", "restartreg"];
    let (server, ok, said) = across_a_restart(server, &dir, &create, "upload", 20);
    assert!(ok, "the upload did not ride out the restart:\n{said}");
    assert!(said.contains("trying again in"), "the pauses are said:\n{said}");
    assert!(!said.contains("sig="), "no SAS in what is printed:\n{said}");
    let v = server.moat_json(&["model", "show", "--name", "big", "--version", "1", "--registry-name", "restartreg"]);
    let weights = v["properties"]["files"].as_array().unwrap().iter().find(|f| f["path"] == "weights.bin").unwrap().clone();
    assert_eq!(weights["sha256"].as_str().unwrap(), format!("{:x}", Sha256::digest(&want)));

    // The same for a download: the ranges cut off are fetched again from where they stopped.
    let dest = tmp.path().join("out");
    let download = [
        "model",
        "download",
        "--name",
        "big",
        "--version",
        "1",
        "--registry-name",
        "restartreg",
        "--download-path",
        dest.to_str().unwrap(),
    ];
    let (server, ok, said) = across_a_restart(server, &dir, &download, "download", 20);
    assert!(ok, "the download did not ride out the restart:\n{said}");
    assert!(said.contains("trying again in"), "the pauses are said:\n{said}");
    assert!(std::fs::read(dest.join("big/weights.bin")).unwrap() == want, "the bytes differ");
    assert!(!dest.join("big/weights.bin.moat-part").exists());

    // Killed once every block is sent, while the blob is being committed: the commit is tried
    // again, or found done if only its answer was lost; either way the version is whole.
    std::fs::write(&yml, "name: big\nversion: 2\npath: ./model\n").unwrap();
    let (server, ok, said) = across_a_restart(server, &dir, &create, "upload", 100);
    assert!(ok, "the commit did not ride out the restart:\n{said}");
    let v = server.moat_json(&["model", "show", "--name", "big", "--version", "2", "--registry-name", "restartreg"]);
    let weights = v["properties"]["files"].as_array().unwrap().iter().find(|f| f["path"] == "weights.bin").unwrap().clone();
    assert_eq!(weights["sha256"].as_str().unwrap(), format!("{:x}", Sha256::digest(&want)));
}

#[test]
fn the_cli_resumes_uploads_and_downloads_after_being_killed() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let (src, total, yml) = registry_and_big_model(&server, tmp.path(), "resumereg");
    let create = ["model", "create", "--file", yml.to_str().unwrap(), "--registry-name", "resumereg"];

    assert!(interrupt(&server, &create, "upload", 20), "the upload finished before it could be interrupted");
    let shown = server.moat(&["model", "show", "--name", "big", "--version", "1", "--registry-name", "resumereg"]);
    assert!(String::from_utf8_lossy(&shown.stderr).contains("ResourceNotFound"), "an interrupted create commits nothing");

    let out = server.moat(&create);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming the upload started earlier"), "{err}");
    let (sent, reused) = counts(&err, " sent, ");
    assert_eq!(sent + reused, total, "{err}");
    assert!(reused >= 8 * 1024 * 1024, "finished blocks are not sent again: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = v["properties"]["files"].as_array().unwrap().iter().find(|f| f["path"] == "weights.bin").unwrap().clone();
    assert_eq!(file["sha256"].as_str().unwrap(), format!("{:x}", Sha256::digest(std::fs::read(src.join("weights.bin")).unwrap())));

    let dest = tmp.path().join("out");
    let download =
        ["model", "download", "--name", "azureml://registries/resumereg/models/big/versions/1", "--download-path", dest.to_str().unwrap()];
    assert!(interrupt(&server, &download, "download", 20), "the download finished before it could be interrupted");
    assert!(dest.join("big/weights.bin.moat-part").exists(), "an interrupted download leaves its partial file");
    assert!(!dest.join("big/weights.bin").exists(), "and no file that looks complete");
    let out = server.moat(&download);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let (fetched, here) = counts(&err, " fetched, ");
    assert_eq!(fetched + here, total, "{err}");
    assert!(here >= 8 * 1024 * 1024, "bytes already downloaded are not fetched again: {err}");
    assert_eq!(std::fs::read(dest.join("big/weights.bin")).unwrap(), std::fs::read(src.join("weights.bin")).unwrap());
    assert!(!dest.join("big/weights.bin.moat-part").exists());
    // A third run finds everything in place and fetches nothing.
    let out = server.moat(&download);
    assert_eq!(counts(&String::from_utf8_lossy(&out.stderr), " fetched, ").0, 0);
}

#[test]
fn a_resumed_upload_leaves_out_files_removed_since_it_was_interrupted() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let (src, _, yml) = registry_and_big_model(&server, tmp.path(), "stalereg");
    let create = ["model", "create", "--file", yml.to_str().unwrap(), "--registry-name", "stalereg"];
    // Small files go first: config.json is in the upload location when the run is killed.
    assert!(interrupt(&server, &create, "upload", 20), "the upload finished before it could be interrupted");
    std::fs::remove_file(src.join("config.json")).unwrap();
    std::fs::write(src.join("notes.txt"), b"renamed from config.json").unwrap();

    let out = server.moat(&create);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("holds config.json, which") && err.contains("starting a new upload"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut paths: Vec<&str> = v["properties"]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, ["notes.txt", "weights.bin"], "the version holds what the folder holds now");
    let dest = tmp.path().join("out");
    let out = server.moat(&[
        "model",
        "download",
        "--name",
        "big",
        "--version",
        "1",
        "--registry-name",
        "stalereg",
        "--download-path",
        dest.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dest.join("big/config.json").exists());
    assert_eq!(std::fs::read(dest.join("big/notes.txt")).unwrap(), b"renamed from config.json");
}

#[test]
fn a_download_cut_off_by_the_server_resumes_from_its_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[]);
    let (src, total, yml) = registry_and_big_model(&server, tmp.path(), "cutreg");
    let out = server.moat(&["model", "create", "--file", yml.to_str().unwrap(), "--registry-name", "cutreg"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = std::fs::read(src.join("weights.bin")).unwrap();

    // The server dies (SIGKILL) a fifth of the way into the download: its connections drop.
    let dest = tmp.path().join("out");
    let download =
        ["model", "download", "--name", "big", "--version", "1", "--registry-name", "cutreg", "--download-path", dest.to_str().unwrap()];
    let mut child =
        server.moat_command(&download).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.strip_prefix("download: ").and_then(|r| r.split('%').next()).and_then(|p| p.parse::<u64>().ok());
        if done.is_some_and(|d| d >= 20) {
            break;
        }
    }
    let port = server.url.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    server.kill();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the download went on without its server: {rest:?}");
    let said = rest.last().cloned().unwrap_or_default();
    assert!(said.contains("weights.bin.moat-part: run the command again"), "the error says what is kept and what to do: {said}");
    assert!(!said.contains("sig="), "no SAS in the message: {said}");
    let partial = std::fs::read(dest.join("big/weights.bin.moat-part")).expect("a cut-off download leaves its partial file");
    assert!(!dest.join("big/weights.bin").exists(), "and no file that looks complete");
    assert!(partial.len() >= want.len() / 5, "the partial file holds what was written: {} bytes", partial.len());
    assert!(partial.len() < want.len(), "{rest:?}");
    assert!(partial[..] == want[..partial.len()], "the partial file is a prefix of the blob, nothing out of order");

    // Back on the same port and data, the next run carries on from the partial file.
    let server = Server::start_in(&dir, &[("MOAT_LISTEN", &format!("127.0.0.1:{port}"))]);
    let out = server.moat(&download);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let (fetched, here) = counts(&err, " fetched, ");
    assert_eq!(fetched + here, total, "{err}");
    assert!(here >= partial.len() as u64, "bytes already downloaded are not fetched again: {err}");
    assert_eq!(std::fs::read(dest.join("big/weights.bin")).unwrap(), want);
    assert!(!dest.join("big/weights.bin.moat-part").exists());
}

#[test]
fn a_folder_of_many_files_goes_up_and_down_whole_and_is_mended_file_by_file() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("r.yml"), "name: manyreg\nlocation: eastus\n").unwrap();
    server.moat_json(&["registry", "create", "--file", tmp.path().join("r.yml").to_str().unwrap()]);
    // 300 small files in nested folders (moved several at a time), one empty, and files past the
    // small-file size, past one download range and past one upload block (moved one at a time).
    let src = tmp.path().join("data");
    let mut files: Vec<(String, Vec<u8>)> = (0..300u32)
        .map(|i| {
            let len = (i as usize * 7919) % 40_000;
            (format!("shard{}/part-{i:04}.bin", i % 7), (0..len).map(|n| (n as u32 ^ i.wrapping_mul(2_654_435_761)) as u8).collect())
        })
        .collect();
    files.push(("empty.txt".into(), Vec::new()));
    for (name, mib) in [("medium.bin", 2usize), ("large.bin", 9)] {
        files.push((name.into(), (0..mib * 1024 * 1024 + 5).map(|n| (n * 13 / 7) as u8).collect()));
    }
    for (path, bytes) in &files {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let yml = tmp.path().join("data.yml");
    std::fs::write(&yml, "name: shards\nversion: 1\ntype: uri_folder\npath: ./data\n").unwrap();
    let out = server.moat(&["data", "create", "--file", yml.to_str().unwrap(), "--registry-name", "manyreg"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(counts(&err, " sent, "), (total, 0), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = v["properties"]["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len(), "every file is in the version");
    for (path, bytes) in &files {
        let f = listed.iter().find(|f| f["path"] == path.as_str()).unwrap_or_else(|| panic!("{path} is not in the version"));
        assert_eq!(f["sha256"].as_str().unwrap(), format!("{:x}", Sha256::digest(bytes)), "{path}");
    }

    let dest = tmp.path().join("out");
    let download =
        ["data", "download", "--name", "shards", "--version", "1", "--registry-name", "manyreg", "--download-path", dest.to_str().unwrap()];
    let out = server.moat(&download);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(counts(&err, " fetched, "), (total, 0), "{err}");
    for (path, bytes) in &files {
        assert!(std::fs::read(dest.join("shards").join(path)).unwrap() == *bytes, "{path} came down whole");
    }

    // Two files gone, one cut short, one changed: the next run fetches those four, whole.
    let root = dest.join("shards");
    std::fs::remove_file(root.join("shard3/part-0010.bin")).unwrap();
    std::fs::remove_file(root.join("large.bin")).unwrap();
    std::fs::write(root.join("shard1/part-0001.bin"), b"short").unwrap();
    let changed = root.join("medium.bin");
    let mut bytes = std::fs::read(&changed).unwrap();
    bytes[12_345] ^= 0xff;
    std::fs::write(&changed, bytes).unwrap();
    let mended = ["shard3/part-0010.bin", "large.bin", "shard1/part-0001.bin", "medium.bin"];
    let want: u64 = files.iter().filter(|(p, _)| mended.contains(&p.as_str())).map(|(_, b)| b.len() as u64).sum();
    let out = server.moat(&download);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(counts(&err, " fetched, "), (want, total - want), "{err}");
    for (path, bytes) in &files {
        assert!(std::fs::read(root.join(path)).unwrap() == *bytes, "{path} is whole again");
    }

    // Bytes that changed on the server's disk are refused, whatever the path they come down by.
    let flip = |path: &str, at: u64| {
        use std::os::unix::fs::FileExt;
        let bytes = &files.iter().find(|(p, _)| p == path).unwrap().1;
        let hex = format!("{:x}", Sha256::digest(bytes));
        let stored = server.dir.join("blobs/sha256").join(&hex[..2]).join(&hex);
        let f = std::fs::OpenOptions::new().write(true).open(&stored).unwrap_or_else(|e| panic!("{}: {e}", stored.display()));
        f.write_all_at(&[!bytes[at as usize]], at).unwrap();
    };
    for (path, at) in [("large.bin", 5 * 1024 * 1024), ("shard2/part-0002.bin", 100)] {
        flip(path, at);
        let fresh = tmp.path().join(format!("fresh-{}", path.len()));
        let args = [
            "data",
            "download",
            "--name",
            "shards",
            "--version",
            "1",
            "--registry-name",
            "manyreg",
            "--download-path",
            fresh.to_str().unwrap(),
        ];
        let out = server.moat(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{path}: altered bytes were accepted: {err}");
        assert!(err.contains(path) && err.contains("but the registry recorded"), "{path}: {err}");
        let got = fresh.join("shards").join(path);
        assert!(!got.exists(), "{path}: no file with the altered bytes is left");
        assert!(
            !got.with_file_name(format!("{}.moat-part", got.file_name().unwrap().to_str().unwrap())).exists(),
            "{path}: nor a partial one"
        );
    }
}
