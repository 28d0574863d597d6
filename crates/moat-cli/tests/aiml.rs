//! The real azure-ai-ml SDK against moat, over moat's default HTTPS: `MLClient(registry_name=…)`
//! finds the registry through discovery and uses the registry data plane (`/mferp/
//! managementfrontend`: tempdatarefs, the version routes, datarefs) and the blob plane, for a
//! model (created, downloaded, archived, restored), data, an environment and a component with its
//! code. What it uploads is what moat records (paths, sizes, sha256) and what moat's own CLI
//! downloads; the data plane's host-style locations are served.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Server, registry_body};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `{path: [size, sha256]}` as the script prints a folder's files.
fn files_of(v: &Value) -> BTreeMap<String, (u64, String)> {
    v.as_object().unwrap().iter().map(|(p, v)| (p.clone(), (v[0].as_u64().unwrap(), v[1].as_str().unwrap().to_string()))).collect()
}

/// What moat recorded of a version's files.
fn recorded(version: &Value) -> BTreeMap<String, (u64, String)> {
    version["properties"]["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files: {version}"))
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), (f["size"].as_u64().unwrap(), f["sha256"].as_str().unwrap().to_string())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_ai_ml_sdk_creates_every_asset_type_and_round_trips_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_default(&tmp.path().join("data"), &[]);
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("data/profile.json")).unwrap()).unwrap();
    let ca = profile["caCertificate"].as_str().unwrap().to_string();
    let http = server.http_trusting(&ca);
    let reg = server.registry_path("default", "aimlreg");
    assert_eq!(http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);

    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/asset_aiml.py"))
        .args([&server.url, "aimlreg", work.to_str().unwrap()])
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("MOAT_TOKEN", server.token())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "asset_aiml.py:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["id"], "azureml://registries/aimlreg/models/sentiment/versions/1");
    let sdk_files = files_of(&seen["files"]);

    // What moat recorded, on the management plane: the SDK's files, each with its sha256,
    // under the folder the SDK named (its basename, as Azure has it).
    let v = http.get(&format!("{reg}/models/sentiment/versions/1")).await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.body["properties"]["isArchived"], false, "restored");
    assert_eq!(recorded(&v.body), sdk_files);
    let model_uri = v.body["properties"]["modelUri"].as_str().unwrap().to_string();
    assert!(model_uri.starts_with(&server.url) && model_uri.ends_with("/sentiment-model"), "path-style on ARM: {model_uri}");

    // The other types: data from a folder and from one file, an environment with its build
    // context, a component whose code became a code asset; each as the SDK sent it.
    for (path, want) in [("data/rows/versions/1", "rows"), ("data/one/versions/1", "one"), ("environments/trainer/versions/1", "ctx")] {
        let got = http.get(&format!("{reg}/{path}")).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text);
        assert_eq!(recorded(&got.body), files_of(&seen[want]), "{path}");
    }
    let env = http.get(&format!("{reg}/environments/trainer/versions/1")).await;
    assert_eq!(env.body["properties"]["build"]["dockerfilePath"], "Dockerfile");
    let component = http.get(&format!("{reg}/components/train_step/versions/1")).await;
    assert_eq!(component.status, 200, "{}", component.text);
    assert_eq!(component.body["properties"]["componentSpec"]["code"], seen["code"]);
    let code = seen["code"].as_str().unwrap().trim_start_matches("azureml://registries/aimlreg/");
    let code = http.get(&format!("{reg}/{code}")).await;
    assert_eq!(code.status, 200, "{}", code.text);
    assert_eq!(recorded(&code.body), files_of(&seen["src"]));

    // moat's own CLI downloads what the SDK uploaded.
    let dest = tmp.path().join("cli");
    let d = server.moat(&[
        "model",
        "download",
        "--name",
        "sentiment",
        "--version",
        "1",
        "--registry-name",
        "aimlreg",
        "--download-path",
        dest.to_str().unwrap(),
    ]);
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    for (path, (size, sha)) in &sdk_files {
        let bytes = std::fs::read(dest.join("sentiment").join(path)).unwrap();
        assert_eq!((bytes.len() as u64, format!("{:x}", Sha256::digest(&bytes))), (*size, sha.clone()), "{path}");
    }

    // The data plane shows the same version with its asset ID and a host-style location...
    let dp = format!("/mferp/managementfrontend{reg}/models/sentiment/versions/1?api-version=2021-10-01-dataplanepreview");
    let shown = http.get(&dp).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.body["id"], "azureml://registries/aimlreg/models/sentiment/versions/1");
    assert_eq!(shown.body["properties"]["flavors"], serde_json::json!({}));
    // Its ARM words match without case, as on the management plane.
    let lower = http.get(&dp.replace("Microsoft.MachineLearningServices/registries", "microsoft.machinelearningservices/REGISTRIES")).await;
    assert_eq!((lower.status, &lower.body["id"]), (200, &shown.body["id"]), "{}", lower.text);
    let host_style = shown.body["properties"]["modelUri"].as_str().unwrap().to_string();
    let (_, after_scheme) = host_style.split_once("://").unwrap();
    let (authority, path) = after_scheme.split_once('/').unwrap();
    let account = model_uri.trim_start_matches(&format!("{}/", server.url)).split('/').next().unwrap().to_string();
    assert!(authority.starts_with(&format!("{account}.blob.")), "{host_style}");
    assert_eq!(format!("{}/{account}/{path}", server.url), model_uri, "the same place");

    // ...which moat serves: the listing of the version's folder, asked host-style (the Host
    // header naming the account) with the read SAS of datarefs.
    let refs = http
        .call(
            "POST",
            &format!("/mferp/managementfrontend{reg}/datarefs/sentiment/versions/1?api-version=2021-10-01-dataplanepreview"),
            Some(&serde_json::json!({"assetId": seen["id"], "blobUri": host_style})),
            &[],
        )
        .await;
    assert_eq!(refs.status, 200, "{}", refs.text);
    let sas_uri = refs.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap();
    let sas = sas_uri.split_once('?').unwrap().1;
    let container = path.split('/').next().unwrap();
    let listing = http
        .client
        .get(format!("{}/{container}?restype=container&comp=list&prefix=sentiment-model/weights/&{sas}", server.url))
        .header("host", authority)
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let xml = listing.text().await.unwrap();
    assert!(
        xml.contains("<Name>sentiment-model/weights/model.bin</Name>") && xml.contains("<Name>sentiment-model/weights/empty.txt</Name>"),
        "{xml}"
    );
}
