//! Trust in an external OpenID Connect issuer, for real: a second moat plays the issuer (it
//! publishes OpenID metadata and a JWKS like Entra ID or Keycloak), and the first trusts it
//! through its configuration file.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Server, registry_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_trusted_issuer_map_to_registered_users() {
    let issuer = Server::start();
    let ip = issuer.profile();
    let issuer_url = format!("{}/{}/v2.0", issuer.url, ip.tenant);
    let external_token = issuer.token();
    let external_oid = issuer.moat_json(&["ad", "sp", "show", "--id", &ip.client_id])["id"].as_str().unwrap().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("moat.toml");
    std::fs::write(&cfg, format!("[[oidc_issuers]]\nissuer = \"{issuer_url}\"\naudience = \"api://moat/management\"\n")).unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start_in(&dir, &[("MOAT_CONFIG", cfg.to_str().unwrap())]);
    let admin = server.http();
    let sub = server.sub_path();
    let as_external = admin.with_token(&external_token);

    // Trusted issuer, unregistered identity: refused, saying how to register it.
    let r = as_external.get(&sub).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("not registered") && msg.contains(&external_oid), "{msg}");

    // Registered and given Reader: reads work, writes are denied and logged under its name.
    let user = server.moat_json(&[
        "ad",
        "user",
        "create",
        "--display-name",
        "Issuer admin",
        "--user-principal-name",
        "ext-admin@issuer.example",
        "--external-issuer",
        &issuer_url,
        "--external-subject",
        &external_oid,
    ]);
    assert_eq!(user["identities"][0]["issuer"], issuer_url.as_str());
    server.moat_json(&["role", "assignment", "create", "--assignee", "ext-admin@issuer.example", "--role", "Reader"]);
    assert_eq!(as_external.get(&sub).await.status, 200);
    let w = as_external.call("PUT", &server.registry_path("default", "extreg"), Some(&registry_body("eastus")), &[]).await;
    assert_eq!((w.status, w.code().as_str()), (403, "AuthorizationFailed"), "{}", w.text);
    let log = server.moat_json(&["monitor", "activity-log", "list", "--principal", "ext-admin@issuer.example", "--result", "denied"]);
    assert!(log.as_array().unwrap().iter().any(|e| e["caller"] == "ext-admin@issuer.example"), "{log}");

    // The wrong audience, another identity of the same issuer, and an untrusted issuer fail.
    let form =
        format!("grant_type=client_credentials&client_id={}&client_secret={}&scope=api://moat/ml/.default", ip.client_id, ip.client_secret);
    let ml = issuer
        .http()
        .anonymous()
        .raw("POST", "/oauth2/v2.0/token", Some(form.into_bytes()), Some("application/x-www-form-urlencoded"), &[])
        .await;
    let r = admin.with_token(ml.body["access_token"].as_str().unwrap()).get(&sub).await;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("audience"), "{}", r.text);
    let other = issuer.moat_json(&["ad", "sp", "create-for-rbac", "--name", "someone-else"]);
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        other["appId"].as_str().unwrap(),
        other["password"].as_str().unwrap()
    );
    let tok = issuer
        .http()
        .anonymous()
        .raw("POST", "/oauth2/v2.0/token", Some(form.into_bytes()), Some("application/x-www-form-urlencoded"), &[])
        .await;
    let r = admin.with_token(tok.body["access_token"].as_str().unwrap()).get(&sub).await;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("not registered"));
    let stranger = Server::start();
    let r = admin.with_token(&stranger.token()).get(&sub).await;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("is not trusted"), "{}", r.text);
    // Password sign-in is not possible for an external user.
    let form = "grant_type=password&username=ext-admin@issuer.example&password=anything-at-all";
    let r = admin
        .anonymous()
        .raw("POST", "/oauth2/v2.0/token", Some(form.as_bytes().to_vec()), Some("application/x-www-form-urlencoded"), &[])
        .await;
    assert_eq!(r.status, 401);
}
