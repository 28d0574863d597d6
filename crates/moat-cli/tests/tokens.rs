//! Token attacks against the real server: each is refused with a 401 that says which.
//! Tokens with valid signatures but bad claims are signed with the server's own key, read from
//! its store (as an attacker who stole a key would, minus the need to).

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Server;
use moat_core::identity::Claims;
use moat_core::{AUDIENCE_MANAGEMENT, Store, TokenIssuer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_tokens_are_refused_with_the_reason() {
    let server = Server::start();
    let http = server.http();
    let p = server.profile();
    let good = http.token.clone().unwrap();
    let sub = server.sub_path();
    assert_eq!(http.get(&sub).await.status, 200);

    // The server's own key, read from its store.
    let store = Store::open(&format!("sqlite://{}/moat.db", server.dir.display())).await.unwrap();
    let issuer_url = format!("{}/{}/v2.0", server.url, p.tenant);
    let signer = TokenIssuer::load_or_create(&store, issuer_url.clone(), "t").await.unwrap();
    let payload: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(good.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(payload.iss, issuer_url);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let header = |alg: &str| URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    // HS256 "signed" with the public key: the classic algorithm confusion.
    let jwks = http.anonymous().get(&format!("/{}/discovery/v2.0/keys", p.tenant)).await;
    let x = jwks.body["keys"][0]["x"].as_str().unwrap().to_string();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    let mut tampered: Vec<String> = good.split('.').map(str::to_string).collect();
    tampered[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Claims { oid: uuid::Uuid::new_v4().to_string(), ..payload.clone() }).unwrap());

    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", signer.sign(&Claims { exp: now - 600, nbf: now - 4000, iat: now - 4000, ..payload.clone() }).unwrap(), "expired"),
        ("not yet valid", signer.sign(&Claims { nbf: now + 600, exp: now + 4000, ..payload.clone() }).unwrap(), "not valid yet"),
        ("wrong audience", signer.sign(&Claims { aud: "api://someone-else".into(), ..payload.clone() }).unwrap(), "audience"),
        ("wrong issuer", signer.sign(&Claims { iss: "https://evil.example/v2.0".into(), ..payload.clone() }).unwrap(), "not issued by"),
        ("other tenant", signer.sign(&Claims { tid: uuid::Uuid::new_v4().to_string(), ..payload.clone() }).unwrap(), "another tenant"),
        ("alg none", format!("{}.{body}.", header("none")), "only ES256"),
        ("HS256 with the public key", hs, "only ES256"),
        ("RS256 header", format!("{}.{body}.c2ln", header("RS256")), "only ES256"),
        ("tampered payload", tampered.join("."), "signature"),
        (
            "unknown principal",
            signer.sign(&Claims { oid: uuid::Uuid::new_v4().to_string(), ..payload.clone() }).unwrap(),
            "no longer exists",
        ),
        ("garbage", "not.a.jwt".to_string(), "well-formed"),
        ("empty", String::new(), "Bearer"),
    ];
    for (what, token, reason) in cases {
        let r = http.with_token(&token).get(&sub).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        assert_eq!(r.code(), "AuthenticationFailed", "{what}");
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(reason), "{what}: '{msg}' does not say '{reason}'");
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"), "{what}: {challenge}");
    }
    // A valid token still works, and the refusals are in the activity log.
    assert_eq!(http.get(&sub).await.status, 200);
    let log =
        http.get(&format!("{sub}/providers/Microsoft.Insights/eventtypes/management/values?$filter=result eq 'unauthenticated'")).await;
    let rules: Vec<&str> = log.body["value"].as_array().unwrap().iter().map(|e| e["rule"].as_str().unwrap()).collect();
    assert!(rules.iter().any(|r| r.contains("expired")) && rules.iter().any(|r| r.contains("only ES256")), "{rules:?}");
    let _ = AUDIENCE_MANAGEMENT;
}

/// Keys rotate on schedule; tokens signed by a superseded key stay valid until they expire,
/// and the JWKS publishes every key still in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_without_invalidating_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start_in(&dir, &[("MOAT_SIGNING_KEY_ROTATION_SECS", "2")]);
    let http = server.http();
    let p = server.profile();
    let sub = server.sub_path();
    let kid = |t: &str| -> String {
        let h: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        h["kid"].as_str().unwrap().to_string()
    };
    let first = http.token.clone().unwrap();
    let mut second = first.clone();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        second = server.token();
        if kid(&second) != kid(&first) {
            break;
        }
    }
    assert_ne!(kid(&second), kid(&first), "the signing key did not rotate within 10 s");
    // Both tokens work; the JWKS lists both keys.
    assert_eq!(http.get(&sub).await.status, 200, "a token signed by the superseded key still verifies");
    assert_eq!(http.with_token(&second).get(&sub).await.status, 200);
    let jwks = http.anonymous().get(&format!("/{}/discovery/v2.0/keys", p.tenant)).await;
    let kids: Vec<&str> = jwks.body["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&kid(&first).as_str()) && kids.contains(&kid(&second).as_str()), "{kids:?}");
}

/// Repeated failed password sign-ins lock that user out from that address for a while;
/// each failure is in the activity log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_lock_the_user_out_from_that_address() {
    let server = Server::start();
    let http = server.http();
    server.moat_json(&[
        "ad",
        "user",
        "create",
        "--display-name",
        "Lou",
        "--user-principal-name",
        "lou@example.com",
        "--password",
        "lou's right password",
    ]);
    let attempt = |password: &str| {
        let form = format!("grant_type=password&username=lou@example.com&password={password}");
        let h = http.anonymous();
        async move { h.raw("POST", "/oauth2/v2.0/token", Some(form.into_bytes()), Some("application/x-www-form-urlencoded"), &[]).await }
    };
    for i in 0..5 {
        let r = attempt(&format!("wrong-{i}")).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_grant")), "{}", r.text);
    }
    let locked = attempt("lou's right password").await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert_eq!(locked.body["error"], "temporarily_locked");
    assert!(locked.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // An unknown user is refused the same way (no enumeration), and logged.
    let r = http
        .anonymous()
        .raw(
            "POST",
            "/oauth2/v2.0/token",
            Some(b"grant_type=password&username=nobody@example.com&password=whatever".to_vec()),
            Some("application/x-www-form-urlencoded"),
            &[],
        )
        .await;
    assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_grant")));
    let log = http
        .get(&format!(
            "{}/providers/Microsoft.Insights/eventtypes/management/values?$filter=result eq 'unauthenticated'",
            server.sub_path()
        ))
        .await;
    let rules: Vec<&str> = log.body["value"].as_array().unwrap().iter().map(|e| e["rule"].as_str().unwrap()).collect();
    assert_eq!(rules.iter().filter(|r| r.contains("lou@example.com")).count(), 5, "{rules:?}");
    assert!(rules.iter().any(|r| r.contains("nobody@example.com")));
}

/// A principal deleted is gone for its very next request, even though its token verified a
/// moment before (moat remembers verified tokens and principals that authenticated; deleting
/// a principal forgets them).
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_principals_token_stops_working_on_the_next_request() {
    let server = common::Server::start();
    let admin = server.http();
    let p = server.profile();
    let (oid, app, secret) = common::create_sp(&admin, "short-lived").await;
    let token = common::token_for(&admin, &p.tenant, &app, &secret).await;
    let sp = admin.with_token(&token);
    let path = format!("/subscriptions/{}/providers/Microsoft.MachineLearningServices/registries", p.subscription);
    for _ in 0..3 {
        let r = sp.get(&path).await;
        assert_ne!(r.status, 401, "the token authenticates: {}", r.text);
    }
    let del = admin.call("DELETE", &format!("/v1.0/servicePrincipals/{oid}"), None, &[]).await;
    assert_eq!(del.status, 204, "{}", del.text);
    let r = sp.get(&path).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.text.contains("no longer exists"), "{}", r.text);
}
