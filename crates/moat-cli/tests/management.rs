//! The management plane over real sockets: async operations, ETags, paging, uniqueness,
//! bad inputs, the managed resource group's deny assignment, and authentication of every route.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Http, Server, registry_body};
use serde_json::{Value, json};

async fn registry_count(http: &Http, sub: &str) -> usize {
    let r = http.get(&format!("{sub}/providers/Microsoft.MachineLearningServices/registries")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["value"].as_array().unwrap().len()
}

async fn poll_succeeded(http: &Http, url: &str) -> Value {
    for _ in 0..50 {
        let r = http.get(url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["status"] != "InProgress" {
            return r.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("operation {url} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_delete_are_asynchronous_operations() {
    let server = Server::start();
    let http = server.http();
    let path = server.registry_path("default", "asyncreg");

    let put = http.call("PUT", &format!("{path}?api-version=2025-09-01"), Some(&registry_body("eastus")), &[]).await;
    assert_eq!(put.status, 201, "{}", put.text);
    assert_eq!(put.body["properties"]["provisioningState"], "Succeeded");
    let etag = put.header("etag").unwrap();
    let op_url = put.header("azure-asyncoperation").expect("Azure-AsyncOperation header");
    assert!(op_url.contains("api-version=2025-09-01"), "{op_url}");
    let status = poll_succeeded(&http, &op_url).await;
    assert_eq!(status["status"], "Succeeded");
    assert_eq!(status["percentComplete"], 100.0);
    assert_eq!(status["resourceId"], put.body["id"]);

    // PUT again: an update, 200, a new ETag.
    let again = http.call("PUT", &path, Some(&json!({"location": "eastus", "tags": {"a": "b"}, "properties": {}})), &[]).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_ne!(again.header("etag").unwrap(), etag);
    assert_eq!(again.body["tags"]["a"], "b");

    let del = http.call("DELETE", &path, None, &[]).await;
    assert_eq!(del.status, 202, "{}", del.text);
    let location = del.header("location").expect("Location header");
    let status = poll_succeeded(&http, &del.header("azure-asyncoperation").unwrap()).await;
    assert_eq!(status["status"], "Succeeded");
    assert_eq!(http.get(&location).await.status, 204);
    assert_eq!(http.get(&path).await.status, 404);
    assert_eq!(http.get(&path).await.code(), "ResourceNotFound");
    // Deleting what is gone is not an error.
    assert_eq!(http.call("DELETE", &path, None, &[]).await.status, 204);
    // Unknown operations are 404.
    let unknown = op_url.replace(op_url.rsplit('/').next().unwrap().split('?').next().unwrap(), "00000000-0000-0000-0000-000000000000");
    assert_eq!(http.get(&unknown).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_names_are_unique_across_groups_case_insensitively() {
    let server = Server::start();
    let http = server.http();
    let sub = server.sub_path();
    let g = http.call("PUT", &format!("{sub}/resourceGroups/other"), Some(&json!({"location": "westus"})), &[]).await;
    assert_eq!(g.status, 201, "{}", g.text);

    let first = http.call("PUT", &server.registry_path("default", "Shared-Reg"), Some(&registry_body("eastus")), &[]).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let clash = http.call("PUT", &server.registry_path("other", "shared-reg"), Some(&registry_body("westus")), &[]).await;
    assert_eq!(clash.status, 409, "{}", clash.text);
    assert_eq!(clash.code(), "RegistryNameNotAvailable");
    assert!(clash.body["error"]["message"].as_str().unwrap().contains("shared-reg"));
    // Nothing was created by the refused request.
    assert_eq!(http.get(&server.registry_path("other", "shared-reg")).await.status, 404);
    let other = http.get(&format!("{sub}/resourceGroups/other/resources")).await;
    assert_eq!(other.body["value"], json!([]));
    assert_eq!(registry_count(&http, &sub).await, 1);
    let groups = http.get(&format!("{sub}/resourceGroups")).await;
    assert_eq!(groups.body["value"].as_array().unwrap().len(), 3, "default, other and one managed group: {}", groups.text);

    // The same registry in another casing is the same resource: an update, not a clash.
    let same = http.call("PUT", &server.registry_path("DEFAULT", "SHARED-REG"), Some(&registry_body("eastus")), &[]).await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.body["name"], "Shared-Reg", "the created casing is kept");

    // Once deleted, the name is free again.
    assert_eq!(http.call("DELETE", &server.registry_path("default", "shared-reg"), None, &[]).await.status, 202);
    assert_eq!(http.call("PUT", &server.registry_path("other", "shared-reg"), Some(&registry_body("westus")), &[]).await.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creations_of_one_name_yield_one_winner() {
    let server = Server::start();
    let http = server.http();
    let sub = server.sub_path();
    let mut groups = Vec::new();
    for i in 0..8 {
        let g = format!("g{i}");
        assert_eq!(http.call("PUT", &format!("{sub}/resourceGroups/{g}"), Some(&json!({"location": "eastus"})), &[]).await.status, 201);
        groups.push(g);
    }
    let mut tasks = Vec::new();
    for g in &groups {
        let h = Http { base: http.base.clone(), token: http.token.clone(), client: http.client.clone() };
        let path = server.registry_path(g, "contested");
        tasks.push(tokio::spawn(async move { h.call("PUT", &path, Some(&registry_body("eastus")), &[]).await.status }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(registry_count(&http, &sub).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_guard_updates() {
    let server = Server::start();
    let http = server.http();
    let path = server.registry_path("default", "etagged");
    let created = http.call("PUT", &path, Some(&registry_body("eastus")), &[("if-none-match", "*")]).await;
    assert_eq!(created.status, 201);
    let etag = created.header("etag").unwrap();
    assert_eq!(http.get(&path).await.header("etag").unwrap(), etag);

    // If-None-Match: * on an existing resource refuses to overwrite it.
    let r = http.call("PUT", &path, Some(&registry_body("eastus")), &[("if-none-match", "*")]).await;
    assert_eq!((r.status, r.code().as_str()), (412, "PreconditionFailed"));
    // A stale If-Match is refused and changes nothing.
    let body = json!({"location": "eastus", "tags": {"x": "1"}, "properties": {}});
    let r = http.call("PUT", &path, Some(&body), &[("if-match", "\"stale\"")]).await;
    assert_eq!((r.status, r.code().as_str()), (412, "PreconditionFailed"));
    assert_eq!(http.get(&path).await.body["tags"], json!({}));
    // The current ETag goes through and yields a new one.
    let r = http.call("PUT", &path, Some(&body), &[("if-match", &etag)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let etag2 = r.header("etag").unwrap();
    assert_ne!(etag2, etag);
    // PATCH with the old ETag fails, with the new one succeeds.
    let patch = json!({"tags": {"y": "2"}});
    assert_eq!(http.call("PATCH", &path, Some(&patch), &[("if-match", &etag)]).await.status, 412);
    let r = http.call("PATCH", &path, Some(&patch), &[("if-match", &etag2)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["tags"], json!({"y": "2"}));
    // DELETE honours If-Match too.
    assert_eq!(http.call("DELETE", &path, None, &[("if-match", &etag2)]).await.status, 412);
    // Resource groups carry ETags as well.
    let g = http.get(&format!("{}/resourceGroups/default", server.sub_path())).await;
    assert!(g.header("etag").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_next_link() {
    let server = Server::start();
    let http = server.http();
    let sub = server.sub_path();
    for i in 0..5 {
        assert_eq!(
            http.call("PUT", &server.registry_path("default", &format!("page{i}")), Some(&registry_body("eastus")), &[]).await.status,
            201
        );
    }
    let mut names = Vec::new();
    let mut next =
        Some(format!("{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries?api-version=2025-09-01&$top=2"));
    let mut pages = 0;
    while let Some(url) = next {
        let r = http.get(&url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        pages += 1;
        for v in r.body["value"].as_array().unwrap() {
            names.push(v["name"].as_str().unwrap().to_string());
        }
        if pages == 1 {
            // A registry added while paging does not disturb what was listed already.
            assert_eq!(
                http.call("PUT", &server.registry_path("default", "page-late"), Some(&registry_body("eastus")), &[]).await.status,
                201
            );
        }
        next = r.body["nextLink"].as_str().map(str::to_string);
        if let Some(n) = &next {
            assert!(n.starts_with(&server.url) && n.contains("$skipToken=") && n.contains("$top=2"), "{n}");
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = names.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "no duplicates: {names:?}");
    for i in 0..5 {
        assert!(names.contains(&format!("page{i}")), "{names:?}");
    }
    // The subscription-wide list sees the same registries.
    assert_eq!(registry_count(&http, &sub).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_specific_errors_and_change_nothing() {
    let server = Server::start();
    let http = server.http();
    let sub = server.sub_path();
    let reg = server.registry_path("default", "goodname");
    assert_eq!(http.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);
    let etag = http.get(&reg).await.header("etag").unwrap();
    let new = server.registry_path("default", "newname");
    let big = format!("{{\"location\":\"eastus\",\"tags\":{{\"a\":\"{}\"}}}}", "x".repeat(2 * 1024 * 1024));

    // (method, path, body, content type, status, code, target)
    type Case<'a> = (&'a str, String, Vec<u8>, &'a str, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("PUT", new.clone(), b"{\"location\": \"eastus\",".to_vec(), "application/json", 400, "InvalidRequestContent", None),
        ("PUT", new.clone(), b"".to_vec(), "application/json", 400, "InvalidRequestContent", None),
        ("PUT", new.clone(), br#"{"location":"eastus","properties":{"colour":"red"}}"#.to_vec(), "application/json", 400, "InvalidRequestContent", Some("properties.colour")),
        ("PUT", new.clone(), br#"{"location":"eastus","tags":5}"#.to_vec(), "application/json", 400, "InvalidRequestContent", Some("tags")),
        ("PUT", new.clone(), br#"{"location":"eastus","properties":{"regionDetails":[{"location":7}]}}"#.to_vec(), "application/json", 400, "InvalidRequestContent", Some("properties.regionDetails[0].location")),
        ("PUT", new.clone(), br#"{"properties":{}}"#.to_vec(), "application/json", 400, "LocationRequired", Some("location")),
        ("PUT", new.clone(), br#"{"location":"east-us!"}"#.to_vec(), "application/json", 400, "LocationNotAvailableForResourceType", Some("location")),
        ("PUT", new.clone(), br#"{"location":"eastus","properties":{"publicNetworkAccess":"Maybe"}}"#.to_vec(), "application/json", 400, "InvalidRequestContent", Some("properties.publicNetworkAccess")),
        ("PUT", new.clone(), br#"{"location":"eastus","tags":{"a/b":"c"}}"#.to_vec(), "application/json", 400, "InvalidTagNameCharacters", Some("tags.a/b")),
        ("PUT", new.clone(), br#"{"location":"eastus","properties":{"regionDetails":[{"location":"eastus","storageAccountDetails":[{"userCreatedStorageAccount":{}}]}]}}"#.to_vec(), "application/json", 400, "UserCreatedStorageNotSupported", Some("properties.regionDetails[0].storageAccountDetails[0].userCreatedStorageAccount")),
        ("PUT", new.clone(), br#"{"location":"eastus"}"#.to_vec(), "text/plain", 415, "UnsupportedMediaType", None),
        ("PUT", new.clone(), big.into_bytes(), "application/json", 413, "RequestEntityTooLarge", None),
        ("PUT", server.registry_path("default", "-bad"), br#"{"location":"eastus"}"#.to_vec(), "application/json", 400, "InvalidResourceName", Some("name")),
        ("PUT", server.registry_path("default", "a"), br#"{"location":"eastus"}"#.to_vec(), "application/json", 400, "InvalidResourceName", Some("name")),
        ("PUT", server.registry_path("nosuchgroup", "newname"), br#"{"location":"eastus"}"#.to_vec(), "application/json", 404, "ResourceGroupNotFound", None),
        ("PUT", "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/newname".to_string(), br#"{"location":"eastus"}"#.to_vec(), "application/json", 404, "SubscriptionNotFound", None),
        ("PUT", format!("{new}?api-version=latest"), br#"{"location":"eastus"}"#.to_vec(), "application/json", 400, "InvalidApiVersionParameter", Some("api-version")),
        ("PUT", reg.clone(), br#"{"location":"westus"}"#.to_vec(), "application/json", 400, "PropertyChangeNotAllowed", Some("location")),
        ("PUT", reg.clone(), br#"{"location":"eastus","name":"othername"}"#.to_vec(), "application/json", 400, "InvalidRequestContent", Some("name")),
        ("PATCH", reg.clone(), br#"{"properties":{"publicNetworkAccess":"Disabled"}}"#.to_vec(), "application/json", 400, "InvalidRequestContent", Some("properties")),
        ("PATCH", reg.clone(), br#"{"identity":{"type":"UserAssigned"}}"#.to_vec(), "application/json", 400, "InvalidIdentityType", Some("identity.type")),
        ("GET", format!("{sub}/providers/Microsoft.MachineLearningServices/registries?$top=0"), vec![], "application/json", 400, "InvalidQueryParameterValue", Some("$top")),
        ("GET", format!("{sub}/providers/Microsoft.MachineLearningServices/registries?$skipToken=%%%"), vec![], "application/json", 400, "InvalidSkipToken", Some("$skipToken")),
        ("POST", reg.clone(), br#"{}"#.to_vec(), "application/json", 405, "MethodNotAllowed", None),
        ("GET", format!("{sub}/resourceGroups/default/providers/Microsoft.Nothing/things/x"), vec![], "application/json", 404, "NotFound", None),
        ("PUT", format!("{sub}/resourceGroups/bad%20name"), br#"{"location":"eastus"}"#.to_vec(), "application/json", 400, "InvalidResourceGroupName", Some("resourceGroupName")),
        ("PUT", format!("{sub}/resourceGroups/nolocation"), br#"{}"#.to_vec(), "application/json", 400, "LocationRequired", Some("location")),
        ("PUT", format!("{sub}/resourceGroups/default"), br#"{"location":"elsewhere"}"#.to_vec(), "application/json", 400, "InvalidResourceGroupLocation", Some("location")),
    ];
    for (method, path, body, ct, status, code, target) in cases {
        let body = if body.is_empty() && method == "GET" { None } else { Some(body) };
        let r = http.raw(method, &path, body, Some(ct), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{method} {path}: {}", r.text.chars().take(400).collect::<String>());
        assert_eq!(r.body["error"]["target"].as_str(), target, "{method} {path}: {}", r.text);
        assert!(!r.body["error"]["message"].as_str().unwrap().is_empty());
    }
    // The message of an unknown property names it.
    let r = http
        .raw("PUT", &new, Some(br#"{"location":"eastus","properties":{"colour":"red"}}"#.to_vec()), Some("application/json"), &[])
        .await;
    assert!(r.body["error"]["message"].as_str().unwrap().contains("colour"), "{}", r.text);

    // Nothing changed: one registry, same ETag, no stray groups.
    assert_eq!(registry_count(&http, &sub).await, 1);
    assert_eq!(http.get(&reg).await.header("etag").unwrap(), etag);
    let groups = http.get(&format!("{sub}/resourceGroups")).await;
    assert_eq!(groups.body["value"].as_array().unwrap().len(), 2, "{}", groups.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_resource_groups_carry_a_deny_assignment() {
    let server = Server::start();
    let http = server.http();
    let reg = http.call("PUT", &server.registry_path("default", "guarded"), Some(&registry_body("eastus")), &[]).await;
    let mrg = reg.body["properties"]["managedResourceGroup"]["resourceId"].as_str().unwrap().to_string();
    let mrg_name = mrg.rsplit('/').next().unwrap().to_string();

    let r = http.call("PUT", &mrg, Some(&json!({"location": "eastus", "tags": {"x": "y"}})), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "DenyAssignmentAuthorizationFailed"), "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("guarded"), "names the owner: {}", r.text);
    let r = http.call("DELETE", &mrg, None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "DenyAssignmentAuthorizationFailed"));
    let r = http.call("PUT", &server.registry_path(&mrg_name, "inside"), Some(&registry_body("eastus")), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "DenyAssignmentAuthorizationFailed"));
    assert_eq!(http.get(&mrg).await.body["tags"], json!({}));

    // A group that holds a registry cannot be deleted until the registry is.
    let sub = server.sub_path();
    assert_eq!(http.call("PUT", &format!("{sub}/resourceGroups/team"), Some(&json!({"location": "eastus"})), &[]).await.status, 201);
    assert_eq!(http.call("PUT", &server.registry_path("team", "teamreg"), Some(&registry_body("eastus")), &[]).await.status, 201);
    let r = http.call("DELETE", &format!("{sub}/resourceGroups/team"), None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (409, "ResourceGroupNotEmpty"));
    assert_eq!(http.call("DELETE", &server.registry_path("team", "teamreg"), None, &[]).await.status, 202);
    let r = http.call("DELETE", &format!("{sub}/resourceGroups/team"), None, &[]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(http.get(&format!("{sub}/resourceGroups/team")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_match_arm_keywords_case_insensitively() {
    let server = Server::start();
    let http = server.http();
    assert_eq!(http.call("PUT", &server.registry_path("default", "CaseReg"), Some(&registry_body("eastus")), &[]).await.status, 201);
    let p = server.profile();
    // curl, a real client, with az's lower-case `resourcegroups` and other odd casings.
    let url = format!(
        "{}/SUBSCRIPTIONS/{}/resourcegroups/Default/providers/microsoft.machinelearningservices/REGISTRIES/casereg?api-version=2025-09-01",
        server.url, p.subscription
    );
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {}", http.token.clone().unwrap()), &url])
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["name"], "CaseReg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked() {
    let server = Server::start();
    let http = server.http();
    let p = server.profile();
    let sub = server.sub_path();

    // Wrong secret: 401 invalid_client, no token.
    let form = format!("grant_type=client_credentials&client_id={}&client_secret=wrong", p.client_id);
    let r =
        http.anonymous().raw("POST", "/oauth2/v2.0/token", Some(form.into_bytes()), Some("application/x-www-form-urlencoded"), &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "invalid_client");
    // Another tenant's token endpoint does not exist here.
    let form = format!("grant_type=client_credentials&client_id={}&client_secret={}", p.client_id, p.client_secret);
    let r = http
        .anonymous()
        .raw(
            "POST",
            "/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token",
            Some(form.clone().into_bytes()),
            Some("application/x-www-form-urlencoded"),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    // An ML-audience token opens discovery but not the management plane.
    let ml = http
        .anonymous()
        .raw(
            "POST",
            "/oauth2/v2.0/token",
            Some(format!("{form}&scope=api://moat/ml/.default").into_bytes()),
            Some("application/x-www-form-urlencoded"),
            &[],
        )
        .await;
    assert_eq!(ml.status, 200, "{}", ml.text);
    assert_eq!(ml.body["token_type"], "Bearer");
    let ml_token = ml.body["access_token"].as_str().unwrap();
    let r = http.with_token(ml_token).get(&sub).await;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("audience"), "{}", r.text);
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(http.call("PUT", &server.registry_path("default", "tokreg"), Some(&registry_body("eastus")), &[]).await.status, 201);
    assert_eq!(http.with_token(ml_token).get("/registrymanagement/v1.0/registries/tokreg/discovery").await.status, 200);
    // A tampered token is refused.
    let good = http.token.clone().unwrap();
    let mut parts: Vec<&str> = good.split('.').collect();
    let sig = parts[2].chars().rev().collect::<String>();
    parts[2] = &sig;
    let r = http.with_token(&parts.join(".")).get(&sub).await;
    assert_eq!(r.status, 401);
    // OpenID metadata and keys are public and describe the issuer.
    let conf = http.anonymous().get(&format!("/{}/v2.0/.well-known/openid-configuration", p.tenant)).await;
    assert_eq!(conf.status, 200);
    let jwks = http.anonymous().get(conf.body["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(jwks.body["keys"][0]["alg"], "ES256");
}

/// Every route in the OpenAPI document is served, and every non-public one refuses requests
/// without a valid token. The document is generated from the code, so a route added without
/// documentation fails `openapi_document_is_current`, and one documented is checked here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_requires_authentication() {
    let server = Server::start();
    let http = server.http();
    let p = server.profile();
    let out = std::process::Command::new(common::BIN).arg("openapi").output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let public = [
        "/oauth2/v2.0/token",
        "/{tenantId}/oauth2/v2.0/token",
        "/{tenantId}/v2.0/.well-known/openid-configuration",
        "/{tenantId}/discovery/v2.0/keys",
        "/healthz",
    ];
    let mut checked = 0;
    for (template, ops) in doc["paths"].as_object().unwrap() {
        let path = template
            .replace("{subscriptionId}", &p.subscription)
            .replace("{tenantId}", &p.tenant)
            .replace("{resourceGroupName}", "default")
            .replace("{location}", "eastus")
            .replace("{operationId}", "00000000-0000-0000-0000-000000000000")
            .replace("{registryName}", "nosuchregistry")
            .replace("{accountName}", "nosuchaccount")
            .replace("{resourceProviderNamespace}", "Microsoft.MachineLearningServices")
            .replace("{resourceType}", "registries")
            .replace("{resourceName}", "nosuchregistry")
            .replace("{roleDefinitionId}", "00000000-0000-0000-0000-000000000001")
            .replace("{roleAssignmentName}", "00000000-0000-0000-0000-000000000002")
            .replace("{userId}", "nobody@example.com")
            .replace("{assetType}", "models")
            .replace("{assetName}", "nosuchmodel")
            .replace("{version}", "1")
            .replace("{servicePrincipalId}", "00000000-0000-0000-0000-000000000003")
            .replace("{vnetName}", "nosuchvnet")
            .replace("{subnetName}", "nosuchsubnet")
            .replace("{endpointName}", "nosuchendpoint")
            .replace("{connectionName}", "nosuchconnection")
            .replace("{zoneName}", "privatelink.blob.moat.internal")
            .replace("{linkName}", "nosuchlink")
            .replace("{groupName}", "nosuchgroup");
        assert!(!path.contains('{'), "unsubstituted parameter in {template}");
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            let body = if m == "PUT" || m == "PATCH" || m == "POST" { Some(b"{}".to_vec()) } else { None };
            let is_public = public.contains(&template.as_str());
            let anon = http.anonymous().raw(&m, &path, body.clone(), Some("application/json"), &[]).await;
            if is_public {
                assert_ne!(anon.status, 401, "{m} {template} is public");
            } else {
                assert_eq!(anon.status, 401, "{m} {template} without a token: {}", anon.text);
                assert!(anon.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")), "{m} {template}");
                let bad = http.with_token("not-a-jwt").raw(&m, &path, body.clone(), Some("application/json"), &[]).await;
                assert_eq!(bad.status, 401, "{m} {template} with a garbage token");
                // With a valid token the route exists (whatever the answer, it is not the
                // no-route fallback).
                let authed = http.raw(&m, &path, body, Some("application/json"), &[]).await;
                assert!(!(authed.status == 404 && authed.code() == "NotFound"), "{m} {template} is not routed: {}", authed.text);
                assert_ne!(authed.status, 405, "{m} {template}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 23, "only {checked} routes documented");
}
