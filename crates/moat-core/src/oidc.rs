//! Trust in external OpenID Connect issuers (Keycloak, Entra ID, another moat…): their keys
//! are fetched from the issuer's JWKS and cached; their tokens map to users registered with
//! the issuer and subject the tokens carry. moat never opens the connection itself: the
//! composition root hands in a fetch function (outbound connections live in moat-client).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{Error, Result};

/// One trusted issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIssuer {
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// The `aud` its tokens must carry.
    pub audience: String,
    /// Where its keys are; discovered from `{issuer}/.well-known/openid-configuration` if unset.
    pub jwks_uri: Option<String>,
}

/// Fetches a JSON document over HTTP(S).
pub type FetchJson =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = std::result::Result<serde_json::Value, String>> + Send>> + Send + Sync>;

/// Keys older than this are refetched.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown key ID refetches at most this often.
const MIN_REFETCH: Duration = Duration::from_secs(10);

struct Cached {
    keys: JwkSet,
    fetched: Instant,
    /// Why the last fetch failed, if it did.
    error: Option<String>,
}

pub(crate) struct ExternalIssuers {
    issuers: Vec<ExternalIssuer>,
    fetch: Option<FetchJson>,
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
}

/// What moat takes from an external token.
#[derive(Clone, Debug)]
pub(crate) struct ExternalIdentity {
    pub issuer: String,
    /// `oid` when present (Entra ID), else `sub`.
    pub subject: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

fn unauth(reason: impl Into<String>) -> Error {
    Error::Unauthenticated { reason: reason.into() }
}

/// The `iss` of a token, read without verifying anything (to pick the verifier).
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let v: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    v["iss"].as_str().map(str::to_string)
}

impl ExternalIssuers {
    pub(crate) fn new(issuers: Vec<ExternalIssuer>, fetch: Option<FetchJson>) -> Self {
        ExternalIssuers { issuers, fetch, cache: tokio::sync::Mutex::new(HashMap::new()) }
    }

    pub(crate) fn trusts(&self, issuer: &str) -> bool {
        self.issuers.iter().any(|i| i.issuer == issuer)
    }

    async fn fetch_keys(&self, cfg: &ExternalIssuer) -> Result<JwkSet> {
        let fetch = self.fetch.as_ref().ok_or_else(|| Error::Internal("no fetcher for external issuers".into()))?;
        let jwks_uri = match &cfg.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", cfg.issuer.trim_end_matches('/'));
                let doc = fetch(url.clone()).await.map_err(|e| unauth(format!("the issuer's metadata at {url} could not be read: {e}")))?;
                doc["jwks_uri"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| unauth(format!("the issuer's metadata at {url} names no jwks_uri")))?
            }
        };
        let doc = fetch(jwks_uri.clone()).await.map_err(|e| unauth(format!("the issuer's keys at {jwks_uri} could not be read: {e}")))?;
        serde_json::from_value(doc).map_err(|e| unauth(format!("the issuer's keys at {jwks_uri} are not a JWKS: {e}")))
    }

    /// The issuer's keys, refetched when stale or when `kid` is unknown, at most every 10 s
    /// (failures too). The fetch runs without holding the cache, so one slow issuer does not
    /// stall sign-ins of another.
    async fn keys_for(&self, cfg: &ExternalIssuer, kid: Option<&str>) -> Result<JwkSet> {
        {
            let cache = self.cache.lock().await;
            if let Some(c) = cache.get(&cfg.issuer) {
                let known = kid.is_none_or(|k| c.keys.find(k).is_some());
                let fresh = c.fetched.elapsed() < MAX_AGE && (known || c.fetched.elapsed() < MIN_REFETCH);
                if fresh || c.fetched.elapsed() < MIN_REFETCH {
                    return match &c.error {
                        Some(e) if c.keys.keys.is_empty() => Err(unauth(e.clone())),
                        _ => Ok(c.keys.clone()),
                    };
                }
            }
        }
        let fetched = self.fetch_keys(cfg).await;
        let mut cache = self.cache.lock().await;
        let previous = cache.remove(&cfg.issuer).map(|c| c.keys);
        let entry = match &fetched {
            Ok(keys) => Cached { keys: keys.clone(), fetched: Instant::now(), error: None },
            // Keep serving the keys we had; remember the failure so it is not retried at once.
            Err(e) => Cached { keys: previous.unwrap_or(JwkSet { keys: vec![] }), fetched: Instant::now(), error: Some(e.to_string()) },
        };
        let keys = entry.keys.clone();
        cache.insert(cfg.issuer.clone(), entry);
        match fetched {
            Ok(k) => Ok(k),
            Err(e) if keys.keys.is_empty() => Err(e),
            Err(_) => Ok(keys),
        }
    }

    /// Verifies a token of a trusted issuer: an asymmetric algorithm that matches the key,
    /// the signature, `iss`, `aud`, `exp` and `nbf`.
    pub(crate) async fn verify(&self, token: &str, issuer: &str) -> Result<ExternalIdentity> {
        let cfg =
            self.issuers.iter().find(|i| i.issuer == issuer).ok_or_else(|| unauth(format!("the issuer '{issuer}' is not trusted")))?;
        let malformed = || unauth("the bearer token is not a well-formed JWT");
        let header: RawHeader = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(malformed)?;
        let alg = match header.alg.as_str() {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            other => {
                return Err(unauth(format!("the token is signed with '{other}'; external issuers must use RS256/384/512 or ES256/384")));
            }
        };
        let keys = self.keys_for(cfg, header.kid.as_deref()).await?;
        let jwk = match &header.kid {
            Some(k) => keys.find(k).ok_or_else(|| unauth(format!("the issuer '{issuer}' publishes no key '{k}'")))?,
            None if keys.keys.len() == 1 => &keys.keys[0],
            None => return Err(unauth("the token has no 'kid' and the issuer publishes several keys")),
        };
        let key_is_rsa = matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::RSA(_));
        let key_is_ec = matches!(jwk.algorithm, jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_));
        let alg_is_rsa = matches!(alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512);
        if !(key_is_rsa && alg_is_rsa || key_is_ec && !alg_is_rsa) {
            return Err(unauth(format!("the token's algorithm {} does not match the type of the issuer's key", header.alg)));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| unauth(format!("the issuer's key cannot be used: {e}")))?;
        let mut v = Validation::new(alg);
        v.set_audience(&[&cfg.audience]);
        v.set_issuer(&[&cfg.issuer]);
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => unauth("the token has expired; get a new one"),
                K::ImmatureSignature => unauth("the token is not valid yet (nbf is in the future)"),
                K::InvalidAudience => unauth(format!("the token's audience is wrong; expected {}", cfg.audience)),
                K::InvalidSignature => unauth("the token's signature is invalid"),
                _ => unauth(format!("the token is invalid: {e}")),
            }
        })?;
        let subject = claims["oid"]
            .as_str()
            .or(claims["sub"].as_str())
            .map(str::to_string)
            .ok_or_else(|| unauth("the token names no subject (neither 'oid' nor 'sub')"))?;
        Ok(ExternalIdentity { issuer: cfg.issuer.clone(), subject })
    }
}
