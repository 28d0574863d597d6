//! The built-in token issuer (ES256 JWTs) and client-secret hashing.
//!
//! Signing keys live in the metadata store so that every node of a cluster signs and verifies
//! alike. Client secrets are random 256-bit strings, so a salted SHA-256 is enough to store
//! them; user passwords (guessable) get PBKDF2-HMAC-SHA256.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use moat_store::{SigningKeyRow, Store};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};

use crate::{Error, Result};

/// Audience of management-plane tokens.
pub const AUDIENCE_MANAGEMENT: &str = "api://moat/management";
/// Audience of data-plane (registry) tokens.
pub const AUDIENCE_ML: &str = "api://moat/ml";

/// Failed password sign-ins before a (user, client address) pair is locked out.
pub const LOCKOUT_THRESHOLD: u32 = 5;
const LOCKOUT_BASE_SECS: u64 = 30;
const LOCKOUT_MAX_SECS: u64 = 900;

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    locked_until: Option<std::time::Instant>,
}

/// Smart lockout for password sign-in: after [`LOCKOUT_THRESHOLD`] failures from one client
/// address for one user, that pair is locked for 30 s, doubling with each further failure up to
/// 15 minutes. Keyed by address as well as user, so that an attacker elsewhere cannot lock a
/// user out of their own machine.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<(String, String), Failures>>,
}

impl SignInThrottle {
    /// Refuses while the pair is locked; otherwise counts the attempt as a failure until it
    /// succeeds, so that guesses sent in parallel are all counted before any is checked.
    pub fn check(&self, user: &str, client_ip: &str) -> Result<()> {
        let mut map = self.failures.lock().map_err(|_| Error::Internal("sign-in throttle".into()))?;
        let now = std::time::Instant::now();
        if map.len() > 100_000 {
            // Bounded memory: forget what no longer matters, keep the lockouts in force.
            map.retain(|_, f| f.locked_until.is_some_and(|u| u > now));
        }
        let f = map.entry((user.to_ascii_lowercase(), client_ip.to_string())).or_default();
        if let Some(until) = f.locked_until
            && until > now
        {
            let secs = (until - now).as_secs() + 1;
            return Err(Error::Throttled {
                retry_after_secs: secs,
                message: format!("too many failed sign-ins for '{user}' from this address; try again in {secs} s"),
            });
        }
        f.count += 1;
        if f.count >= LOCKOUT_THRESHOLD {
            let exp = (f.count - LOCKOUT_THRESHOLD).min(10);
            let secs = (LOCKOUT_BASE_SECS << exp).min(LOCKOUT_MAX_SECS);
            f.locked_until = Some(now + std::time::Duration::from_secs(secs));
        }
        Ok(())
    }

    pub fn succeeded(&self, user: &str, client_ip: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&(user.to_ascii_lowercase(), client_ip.to_string()));
        }
    }
}

/// A hash checked when the user does not exist, so that unknown and known users take
/// the same time to refuse.
fn dummy_password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("moat-dummy-password-for-timing").unwrap_or_default())
}

/// Verifies `password` against `stored`, or against a dummy hash when there is none.
pub fn verify_password_constant_time(password: &str, stored: Option<&str>) -> bool {
    match stored {
        Some(h) => verify_secret(password, h),
        None => {
            let _ = verify_secret(password, dummy_password_hash());
            false
        }
    }
}

/// Claims of a moat access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub oid: String,
    pub tid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// `app` for service principals, `user` for users, `mi` for managed identities.
    pub idtyp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// A registry token's grant (OCI plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<crate::oci::TokenAccess>>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

/// Signs and verifies moat's own tokens.
pub struct TokenIssuer {
    issuer: String,
    /// Oldest first; the newest signs. Replaced whole on rotation or reload.
    keys: RwLock<Vec<Arc<SigningKey>>>,
    last_reload: std::sync::Mutex<Option<std::time::Instant>>,
    /// Tokens whose signature checked out (see [`Verified`]), so that a client's
    /// every request does not pay an ECDSA verification: the time-bound and audience checks
    /// are still made on each use. Cleared when full.
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], Verified>>,
}

/// Verified tokens remembered at most.
const VERIFIED_CACHE: usize = 8192;

/// A token verified before, remembered under the sha256 of its signature (the part of a token
/// that stands for it: the rest is readable by anyone) with the rest kept to compare, so that a
/// token is recognised only when it is the same token byte for byte. Hashing the signature (86
/// characters) instead of the whole token (~800) took 1.5 % of a GET's CPU off.
struct Verified {
    signed: Box<str>,
    claims: std::sync::Arc<Claims>,
}

/// How the verified-token memory knows a token: the sha256 of its signature, and the rest.
fn token_key(token: &str) -> ([u8; 32], &str) {
    let (signed, signature) = token.rsplit_once('.').unwrap_or(("", token));
    (Sha256::digest(signature.as_bytes()).into(), signed)
}
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY: i64 = 30;

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    SystemRandom::new().fill(&mut buf).map_err(|_| Error::Internal("system random number generator failed".into()))?;
    Ok(buf)
}

/// A fresh client secret: 32 random bytes, base64url.
pub fn new_secret() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// `sha256$<salt>$<digest>` of a secret.
pub fn hash_secret(secret: &str) -> Result<String> {
    let salt = random_bytes::<16>()?;
    Ok(format!("sha256${}${}", STANDARD.encode(salt), STANDARD.encode(salted_digest(&salt, secret))))
}

fn salted_digest(salt: &[u8], secret: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().to_vec()
}

/// PBKDF2-HMAC-SHA256 iterations for user passwords (OWASP's 2023 recommendation).
pub const PASSWORD_ITERATIONS: u32 = 600_000;

/// `pbkdf2-sha256$<iterations>$<salt>$<hash>` of a user password: slow on purpose, because
/// passwords, unlike generated secrets, can be guessed.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = random_bytes::<16>()?;
    let mut out = [0u8; 32];
    let iterations = std::num::NonZeroU32::new(PASSWORD_ITERATIONS).ok_or_else(|| Error::Internal("iterations".into()))?;
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.as_bytes(), &mut out);
    Ok(format!("pbkdf2-sha256${PASSWORD_ITERATIONS}${}${}", STANDARD.encode(salt), STANDARD.encode(out)))
}

/// Whether `secret` matches a hash made by [`hash_secret`] or [`hash_password`]
/// (constant-time comparison).
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    match parts.as_slice() {
        ["sha256", salt, digest] => {
            let (Ok(salt), Ok(digest)) = (STANDARD.decode(salt), STANDARD.decode(digest)) else {
                return false;
            };
            let actual = salted_digest(&salt, secret);
            #[allow(deprecated)]
            let same = ring::constant_time::verify_slices_are_equal(&actual, &digest).is_ok();
            same
        }
        ["pbkdf2-sha256", iterations, salt, digest] => {
            let (Ok(iterations), Ok(salt), Ok(digest)) = (iterations.parse::<u32>(), STANDARD.decode(salt), STANDARD.decode(digest)) else {
                return false;
            };
            let Some(iterations) = std::num::NonZeroU32::new(iterations) else { return false };
            ring::pbkdf2::verify(ring::pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, secret.as_bytes(), &digest).is_ok()
        }
        _ => false,
    }
}

async fn insert_new_key(store: &Store, now: &str) -> Result<()> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| Error::Internal("could not generate a signing key".into()))?;
    let row = SigningKeyRow {
        kid: uuid::Uuid::new_v4().simple().to_string(),
        pkcs8_b64: STANDARD.encode(doc.as_ref()),
        created_at: now.to_string(),
    };
    let mut tx = store.write().await?;
    tx.insert_signing_key(&row).await?;
    tx.commit().await?;
    Ok(())
}

fn decode_keys(rows: Vec<SigningKeyRow>) -> Result<Vec<Arc<SigningKey>>> {
    let rng = SystemRandom::new();
    let mut keys = Vec::new();
    for row in rows {
        let der = STANDARD.decode(&row.pkcs8_b64).map_err(|e| Error::Internal(format!("signing key {}: {e}", row.kid)))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| Error::Internal(format!("signing key {}: {e}", row.kid)))?;
        let public = pair.public_key().as_ref();
        // Uncompressed point: 0x04 || x (32) || y (32).
        if public.len() != 65 {
            return Err(Error::Internal(format!("signing key {}: unexpected public key length", row.kid)));
        }
        let x = URL_SAFE_NO_PAD.encode(&public[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&public[33..65]);
        let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|e| Error::Internal(format!("signing key {}: {e}", row.kid)))?;
        keys.push(Arc::new(SigningKey { kid: row.kid, encoding: EncodingKey::from_ec_der(&der), decoding, x, y }));
    }
    Ok(keys)
}

impl TokenIssuer {
    /// Loads the signing keys from the store, creating the first one if there is none.
    pub async fn load_or_create(store: &Store, issuer: String, now: &str) -> Result<Self> {
        if store.signing_keys().await?.is_empty() {
            insert_new_key(store, now).await?;
        }
        let keys = decode_keys(store.signing_keys().await?)?;
        Ok(TokenIssuer { issuer, keys: RwLock::new(keys), last_reload: std::sync::Mutex::new(None), verified: Default::default() })
    }

    fn current(&self) -> Vec<Arc<SigningKey>> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, keys: Vec<Arc<SigningKey>>) {
        match self.keys.write() {
            Ok(mut k) => *k = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        // A retired key's tokens must fail from now on: forget what was verified with any key.
        if let Ok(mut m) = self.verified.lock() {
            m.clear();
        }
    }

    /// Re-reads the keys from the store (another node may have rotated them). At most once a
    /// second, so that tokens with made-up key IDs cannot hammer the store.
    pub async fn reload(&self, store: &Store) -> Result<bool> {
        {
            let mut last = self.last_reload.lock().map_err(|_| Error::Internal("key reload lock".into()))?;
            if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
                return Ok(false);
            }
            *last = Some(std::time::Instant::now());
        }
        self.replace(decode_keys(store.signing_keys().await?)?);
        Ok(true)
    }

    /// Starts signing with a new key when the newest is `rotate_after` seconds old, and
    /// removes keys that were superseded more than `keep_after_superseded` seconds ago (by
    /// then every token they signed has expired). Returns whether a key was added.
    pub async fn rotate_if_due(
        &self,
        store: &Store,
        now: time::OffsetDateTime,
        rotate_after: i64,
        keep_after_superseded: i64,
    ) -> Result<bool> {
        let age = |row: &SigningKeyRow| {
            time::OffsetDateTime::parse(&row.created_at, &time::format_description::well_known::Rfc3339)
                .map(|t| (now - t).whole_seconds())
                .unwrap_or(i64::MAX)
        };
        let rows = store.signing_keys().await?;
        let rotated = match rows.last() {
            Some(newest) if age(newest) < rotate_after => false,
            _ => {
                let stamp = now.format(&time::format_description::well_known::Rfc3339).map_err(|e| Error::Internal(e.to_string()))?;
                insert_new_key(store, &stamp).await?;
                tracing::info!("rotated the token signing key");
                true
            }
        };
        let rows = store.signing_keys().await?;
        let mut retired = 0;
        for pair in rows.windows(2) {
            // pair[1] superseded pair[0] when it was created.
            if age(&pair[1]) > keep_after_superseded {
                let mut tx = store.write().await?;
                tx.delete_signing_key(&pair[0].kid).await?;
                tx.commit().await?;
                retired += 1;
            }
        }
        if rotated || retired > 0 {
            self.replace(decode_keys(store.signing_keys().await?)?);
        }
        Ok(rotated)
    }

    /// Whether the token's header names a key this issuer holds.
    pub fn knows_kid_of(&self, token: &str) -> bool {
        let kid = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["kid"].as_str().map(str::to_string));
        kid.is_some_and(|kid| self.current().iter().any(|k| k.kid == kid))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let keys = self.current();
        let key = keys.last().ok_or_else(|| Error::Internal("no signing key".into()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| Error::Internal(format!("signing a token: {e}")))
    }

    /// Verifies a token's signature, algorithm, issuer, audience and validity window.
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Result<Claims> {
        if let Some(c) = self.verified_before(token, audiences) {
            return Ok((*c).clone());
        }
        let claims = self.verify_signed(token, audiences)?;
        let (key, signed) = token_key(token);
        if let Ok(mut m) = self.verified.lock() {
            if m.len() >= VERIFIED_CACHE {
                m.clear();
            }
            m.insert(key, Verified { signed: signed.into(), claims: std::sync::Arc::new(claims.clone()) });
        }
        Ok(claims)
    }

    /// The claims of a token this issuer verified before (with keys still current), if it is
    /// still within its times and for one of `audiences`: what the full check would decide for
    /// a signature already known good.
    pub fn verified_before(&self, token: &str, audiences: &[&str]) -> Option<std::sync::Arc<Claims>> {
        let (key, signed) = token_key(token);
        let c = self.verified.lock().ok().and_then(|m| m.get(&key).filter(|v| *v.signed == *signed).map(|v| v.claims.clone()))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        (c.exp + LEEWAY > now && c.nbf - LEEWAY <= now && audiences.contains(&c.aud.as_str())).then_some(c)
    }

    /// The full check: header, key, signature, issuer, audience and times.
    fn verify_signed(&self, token: &str, audiences: &[&str]) -> Result<Claims> {
        let unauth = |reason: &str| Error::Unauthenticated { reason: reason.to_string() };
        // Read the header ourselves, so that algorithms the JWT library does not even know
        // (`none`) are refused by name like the ones it does.
        #[derive(Deserialize)]
        struct RawHeader {
            alg: String,
            kid: Option<String>,
        }
        let malformed = || unauth("the bearer token is not a well-formed JWT");
        let mut parts = token.split('.');
        let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let header: RawHeader = URL_SAFE_NO_PAD.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(malformed)?;
        if header.alg != "ES256" {
            return Err(unauth(&format!("the token is signed with '{}'; moat accepts only ES256", header.alg)));
        }
        let kid = header.kid.ok_or_else(|| unauth("the token has no 'kid' header"))?;
        let keys = self.current();
        let key = keys.iter().find(|k| k.kid == kid).ok_or_else(|| unauth("the token was signed by an unknown key"))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(audiences);
        v.set_issuer(&[&self.issuer]);
        v.validate_nbf = true;
        v.leeway = LEEWAY as u64;
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map(|d| d.claims).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => unauth("the token has expired; get a new one"),
                K::ImmatureSignature => unauth("the token is not valid yet (nbf is in the future)"),
                K::InvalidAudience => unauth(&format!("the token's audience is wrong; expected one of {audiences:?}")),
                K::InvalidIssuer => unauth(&format!("the token was not issued by {}", self.issuer)),
                K::InvalidSignature => unauth("the token's signature is invalid"),
                K::MissingRequiredClaim(c) => unauth(&format!("the token lacks the '{c}' claim")),
                _ => unauth("the token is invalid"),
            }
        })
    }

    /// The public keys, as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .current()
            .iter()
            .map(|k| serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": k.kid, "x": k.x, "y": k.y}))
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify() {
        let s = new_secret().unwrap();
        let h = hash_secret(&s).unwrap();
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret("other", &h));
        assert!(!verify_secret(&s, "garbage"));
        assert_ne!(hash_secret(&s).unwrap(), h, "salted");
        let p = hash_password("correct horse battery").unwrap();
        assert!(p.starts_with("pbkdf2-sha256$600000$"));
        assert!(verify_secret("correct horse battery", &p));
        assert!(!verify_secret("correct horse batterY", &p));
        assert!(!verify_secret("x", "pbkdf2-sha256$0$AAAA$AAAA"));
    }

    #[tokio::test]
    async fn tokens_round_trip_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/m.db", dir.path().display())).await.unwrap();
        let issuer = TokenIssuer::load_or_create(&store, "http://iss".into(), "t").await.unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: "http://iss".into(),
            aud: AUDIENCE_MANAGEMENT.into(),
            sub: "p".into(),
            oid: "p".into(),
            tid: "t".into(),
            iat: now,
            nbf: now,
            exp: now + 60,
            idtyp: "app".into(),
            appid: None,
            access: None,
        };
        let tok = issuer.sign(&claims).unwrap();
        assert_eq!(issuer.verify(&tok, &[AUDIENCE_MANAGEMENT]).unwrap(), claims);
        let err = issuer.verify(&tok, &[AUDIENCE_ML]).unwrap_err().to_string();
        assert!(err.contains("audience"), "{err}");
        let expired = issuer.sign(&Claims { exp: now - 3600, nbf: now - 7200, ..claims.clone() }).unwrap();
        assert!(issuer.verify(&expired, &[AUDIENCE_MANAGEMENT]).unwrap_err().to_string().contains("expired"));
        let future = issuer.sign(&Claims { nbf: now + 3600, exp: now + 7200, ..claims.clone() }).unwrap();
        assert!(issuer.verify(&future, &[AUDIENCE_MANAGEMENT]).unwrap_err().to_string().contains("not valid yet"));
        // Tamper with the payload: the signature no longer matches (and the token it came from,
        // verified above, is remembered under that signature: the rest must match too).
        let mut parts: Vec<String> = tok.split('.').map(str::to_string).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Claims { oid: "admin".into(), ..claims.clone() }).unwrap());
        assert!(issuer.verify(&parts.join("."), &[AUDIENCE_MANAGEMENT]).unwrap_err().to_string().contains("signature"));
        // alg=none is refused before any key is consulted.
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(issuer.verify(&none, &[AUDIENCE_MANAGEMENT]).is_err());
        // Keys survive a reload from the store.
        let again = TokenIssuer::load_or_create(&store, "http://iss".into(), "t").await.unwrap();
        assert!(again.verify(&tok, &[AUDIENCE_MANAGEMENT]).is_ok());
    }

    #[tokio::test]
    async fn rotation_keeps_old_keys_until_their_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/m.db", dir.path().display())).await.unwrap();
        let t0 = time::OffsetDateTime::now_utc();
        let stamp = t0.format(&time::format_description::well_known::Rfc3339).unwrap();
        let issuer = TokenIssuer::load_or_create(&store, "http://iss".into(), &stamp).await.unwrap();
        let now = t0.unix_timestamp();
        let claims = Claims {
            iss: "http://iss".into(),
            aud: AUDIENCE_MANAGEMENT.into(),
            sub: "p".into(),
            oid: "p".into(),
            tid: "t".into(),
            iat: now,
            nbf: now,
            exp: now + 3600,
            idtyp: "app".into(),
            appid: None,
            access: None,
        };
        let old = issuer.sign(&claims).unwrap();
        let later = |s: i64| t0 + time::Duration::seconds(s);
        // Not due yet.
        assert!(!issuer.rotate_if_due(&store, later(5), 10, 100).await.unwrap());
        // Due: a new key signs, the old one still verifies.
        assert!(issuer.rotate_if_due(&store, later(11), 10, 100).await.unwrap());
        let new = issuer.sign(&claims).unwrap();
        assert_ne!(old.split('.').next(), new.split('.').next(), "a new kid");
        assert!(issuer.verify(&old, &[AUDIENCE_MANAGEMENT]).is_ok());
        assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 2);
        // Long after it was superseded, the old key is retired and its tokens refused.
        assert!(issuer.rotate_if_due(&store, later(200), 10, 100).await.unwrap());
        let err = issuer.verify(&old, &[AUDIENCE_MANAGEMENT]).unwrap_err().to_string();
        assert!(err.contains("unknown key"), "{err}");
        assert!(issuer.verify(&new, &[AUDIENCE_MANAGEMENT]).is_ok());
        // Another node's view catches up through reload.
        let other = TokenIssuer::load_or_create(&store, "http://iss".into(), &stamp).await.unwrap();
        assert!(other.verify(&new, &[AUDIENCE_MANAGEMENT]).is_ok());
    }
}
