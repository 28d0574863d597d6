//! Shared access signatures for the blob plane, in Azure's service-SAS shape: the query
//! parameters `sv sr sp st se spr sig`, signed with HMAC-SHA256 under the storage account's key
//! over Azure's string-to-sign. A SAS grants one container (`sr=c`) or one blob (`sr=b`), a set
//! of permissions, and a time window.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use moat_types::uri::percent_encode;
use ring::hmac;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `sv` moat signs with.
pub const SAS_VERSION: &str = "2025-01-05";

/// What a SAS allows, in Azure's letters: read, add, create, write, delete, list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub read: bool,
    pub add: bool,
    pub create: bool,
    pub write: bool,
    pub delete: bool,
    pub list: bool,
}

impl Permissions {
    pub fn parse(sp: &str) -> Option<Permissions> {
        let mut p = Permissions::default();
        for c in sp.chars() {
            match c {
                'r' => p.read = true,
                'a' => p.add = true,
                'c' => p.create = true,
                'w' => p.write = true,
                'd' => p.delete = true,
                'l' => p.list = true,
                _ => return None,
            }
        }
        Some(p)
    }

    /// Azure's canonical order: `racwdl`.
    pub fn letters(&self) -> String {
        [(self.read, 'r'), (self.add, 'a'), (self.create, 'c'), (self.write, 'w'), (self.delete, 'd'), (self.list, 'l')]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, c)| *c)
            .collect()
    }
}

/// A grant: what a SAS allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub account: String,
    pub container: String,
    /// `Some` for a blob SAS (`sr=b`), `None` for a container SAS (`sr=c`).
    pub blob: Option<String>,
    pub permissions: Permissions,
    pub start: Option<OffsetDateTime>,
    pub expiry: OffsetDateTime,
}

/// Why a SAS is refused, phrased for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the request carries no shared access signature (sig); ask moat for a SAS URL")]
    Missing,
    #[error("the shared access signature is malformed: {0}")]
    Malformed(String),
    #[error("the shared access signature expired at {0}; request a new one")]
    Expired(String),
    #[error("the shared access signature is not valid before {0}")]
    NotYetValid(String),
    #[error("the shared access signature's signature does not match: it was altered or signed for another resource")]
    BadSignature,
    #[error("the shared access signature grants {granted}, not {requested}")]
    WrongResource { granted: String, requested: String },
    #[error("the shared access signature lacks the '{0}' permission")]
    Permission(char),
}

fn fmt_time(t: OffsetDateTime) -> String {
    // Whole seconds, UTC, as Azure writes them.
    let t = t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

fn string_to_sign(sp: &str, st: &str, se: &str, resource: &str, spr: &str, sv: &str, sr: &str) -> String {
    // Azure service SAS, version 2020-12-06 and later: permissions, start, expiry, canonicalized
    // resource, identifier, IP, protocol, version, resource, snapshot time, encryption scope,
    // and five response-header overrides (moat issues none of the optional ones).
    [sp, st, se, resource, "", "", spr, sv, sr, "", "", "", "", "", "", ""].join("\n")
}

fn canonical_resource(account: &str, container: &str, blob: Option<&str>) -> String {
    match blob {
        Some(b) => format!("/blob/{account}/{container}/{b}"),
        None => format!("/blob/{account}/{container}"),
    }
}

fn mac(key: &[u8], text: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    STANDARD.encode(hmac::sign(&k, text.as_bytes()).as_ref())
}

/// The SAS query string (without `?`) for a grant.
pub fn sign(key: &[u8], g: &Grant) -> String {
    let sp = g.permissions.letters();
    let st = g.start.map(fmt_time).unwrap_or_default();
    let se = fmt_time(g.expiry);
    let sr = if g.blob.is_some() { "b" } else { "c" };
    let resource = canonical_resource(&g.account, &g.container, g.blob.as_deref());
    let sig = mac(key, &string_to_sign(&sp, &st, &se, &resource, "https,http", SAS_VERSION, sr));
    let mut q = format!("sv={SAS_VERSION}&sr={sr}&sp={sp}");
    if !st.is_empty() {
        q.push_str(&format!("&st={}", percent_encode(&st)));
    }
    q.push_str(&format!("&se={}&spr=https,http&sig={}", percent_encode(&se), percent_encode(&sig)));
    q
}

/// The operation a request performs on the blob plane, for permission checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    Delete,
    List,
}

/// Verifies the SAS in `query` (already percent-decoded pairs) for `account/container[/blob]`
/// at time `now`, needing `need`.
pub fn verify(
    key: &[u8],
    query: &[(String, String)],
    account: &str,
    container: &str,
    blob: Option<&str>,
    need: Need,
    now: OffsetDateTime,
) -> Result<Grant, SasError> {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let sig = get("sig").ok_or(SasError::Missing)?;
    let sv = get("sv").ok_or_else(|| SasError::Malformed("no sv".into()))?;
    let sr = get("sr").ok_or_else(|| SasError::Malformed("no sr".into()))?;
    let sp = get("sp").ok_or_else(|| SasError::Malformed("no sp".into()))?;
    let se = get("se").ok_or_else(|| SasError::Malformed("no se".into()))?;
    let st = get("st").unwrap_or("");
    let spr = get("spr").unwrap_or("");
    let permissions = Permissions::parse(sp).ok_or_else(|| SasError::Malformed(format!("unknown permission in sp={sp}")))?;
    let signed_blob = match sr {
        "c" => None,
        "b" => Some(blob.ok_or_else(|| SasError::WrongResource { granted: "a blob".into(), requested: format!("container {container}") })?),
        other => return Err(SasError::Malformed(format!("sr={other}; moat signs c and b"))),
    };
    let resource = canonical_resource(account, container, signed_blob);
    let expected = mac(key, &string_to_sign(sp, st, se, &resource, spr, sv, sr));
    #[allow(deprecated)]
    let same = ring::constant_time::verify_slices_are_equal(expected.as_bytes(), sig.as_bytes()).is_ok();
    if !same {
        // The signature covers the resource: a SAS for another container fails here.
        return Err(SasError::BadSignature);
    }
    let expiry = OffsetDateTime::parse(se, &Rfc3339).map_err(|_| SasError::Malformed(format!("se={se} is not an RFC 3339 time")))?;
    let start =
        if st.is_empty() { None } else { Some(OffsetDateTime::parse(st, &Rfc3339).map_err(|_| SasError::Malformed(format!("st={st}")))?) };
    if now > expiry {
        return Err(SasError::Expired(se.to_string()));
    }
    if let Some(s) = start
        && now + time::Duration::minutes(5) < s
    {
        return Err(SasError::NotYetValid(st.to_string()));
    }
    let ok = match need {
        Need::Read => permissions.read,
        // Creating or replacing a block blob needs `w`: `c` (create only) and `a` (append)
        // must not let a SAS overwrite.
        Need::Write => permissions.write,
        Need::Delete => permissions.delete,
        Need::List => permissions.list,
    };
    if !ok {
        let letter = match need {
            Need::Read => 'r',
            Need::Write => 'w',
            Need::Delete => 'd',
            Need::List => 'l',
        };
        return Err(SasError::Permission(letter));
    }
    Ok(Grant { account: account.into(), container: container.into(), blob: signed_blob.map(str::to_string), permissions, start, expiry })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                let mut out = Vec::new();
                let b = v.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' && i + 2 < b.len() + 1 {
                        out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                (k.to_string(), String::from_utf8(out).unwrap())
            })
            .collect()
    }

    #[test]
    fn round_trip_and_every_refusal() {
        let key = b"0123456789abcdef0123456789abcdef";
        let now = OffsetDateTime::now_utc();
        let g = Grant {
            account: "acct0000001".into(),
            container: "upload-1".into(),
            blob: None,
            permissions: Permissions::parse("rcwl").unwrap(),
            start: None,
            expiry: now + time::Duration::hours(1),
        };
        let q = pairs(&sign(key, &g));
        let ok = verify(key, &q, "acct0000001", "upload-1", Some("a/b.bin"), Need::Write, now).unwrap();
        assert_eq!(ok.container, "upload-1");
        assert_eq!(verify(key, &q, "acct0000001", "upload-2", Some("x"), Need::Read, now), Err(SasError::BadSignature));
        assert_eq!(verify(key, &q, "acct0000002", "upload-1", Some("x"), Need::Read, now), Err(SasError::BadSignature));
        assert_eq!(
            verify(b"another key, same length.........", &q, "acct0000001", "upload-1", None, Need::List, now),
            Err(SasError::BadSignature)
        );
        assert_eq!(verify(key, &q, "acct0000001", "upload-1", Some("x"), Need::Delete, now), Err(SasError::Permission('d')));
        assert!(matches!(
            verify(key, &q, "acct0000001", "upload-1", None, Need::List, now + time::Duration::hours(2)),
            Err(SasError::Expired(_))
        ));
        let mut tampered = q.clone();
        for (k, v) in &mut tampered {
            if k == "sp" {
                *v = "rcwdl".into();
            }
        }
        assert_eq!(verify(key, &tampered, "acct0000001", "upload-1", None, Need::Delete, now), Err(SasError::BadSignature));
        let no_sig: Vec<_> = q.iter().filter(|(k, _)| k != "sig").cloned().collect();
        assert_eq!(verify(key, &no_sig, "acct0000001", "upload-1", None, Need::Read, now), Err(SasError::Missing));
        // `c` (create) and `a` (add) do not allow overwriting a block blob.
        let create_only = Grant { permissions: Permissions::parse("ca").unwrap(), ..g.clone() };
        let qc = pairs(&sign(key, &create_only));
        assert_eq!(verify(key, &qc, "acct0000001", "upload-1", Some("x"), Need::Write, now), Err(SasError::Permission('w')));
        // A blob SAS is bound to its blob.
        let b = Grant { blob: Some("m/model.bin".into()), ..g };
        let qb = pairs(&sign(key, &b));
        assert!(verify(key, &qb, "acct0000001", "upload-1", Some("m/model.bin"), Need::Read, now).is_ok());
        assert_eq!(verify(key, &qb, "acct0000001", "upload-1", Some("m/other.bin"), Need::Read, now), Err(SasError::BadSignature));
    }
}
