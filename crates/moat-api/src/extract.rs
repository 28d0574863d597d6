//! Request parsing at the boundary: JSON bodies with field-precise errors, the common query
//! parameters, and ETag preconditions.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use moat_core::Preconditions;
use serde::de::DeserializeOwned;

use crate::error::ArmError;

/// Largest accepted management-plane body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Past this, an oversize body is no longer read to the end before the 413 goes out.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// Reads a body of at most [`MAX_BODY_BYTES`]. An oversize body is drained (up to
/// [`DRAIN_BYTES`]) before answering 413, so that a client still sending sees the answer
/// instead of a reset connection.
async fn read_limited(body: axum::body::Body) -> Result<Vec<u8>, ArmError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ArmError::http(StatusCode::BAD_REQUEST, "InvalidRequestContent", None, format!("The request body could not be read: {e}."))
        })?;
        seen += chunk.len();
        if seen <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if seen > DRAIN_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ArmError::http(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            None,
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        ));
    }
    Ok(buf)
}

/// A JSON body; a malformed, mistyped or unknown field is a 400 that names the field.
pub struct ArmJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ArmJson<T> {
    type Rejection = ArmError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let mime = ct.split(';').next().unwrap_or_default().trim();
            if !mime.eq_ignore_ascii_case("application/json") && !mime.to_ascii_lowercase().ends_with("+json") {
                return Err(ArmError::http(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    None,
                    format!("The request body must be JSON (Content-Type: application/json), not '{ct}'."),
                ));
            }
        }
        let bytes = read_limited(req.into_body()).await?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ArmError::http(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                None,
                "The request body is empty; send the resource as JSON.",
            ));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(ArmJson(v)),
            Err(e) => {
                // serde_path_to_error writes "?" for a segment it could not name (a syntax
                // error mid-document); report the part it could name.
                let path = e.path().to_string();
                let path = path.trim_end_matches('?').trim_end_matches('.');
                let target = if path.is_empty() { None } else { Some(path.to_string()) };
                let inner = e.into_inner();
                let message = match &target {
                    Some(p) => format!("The request content is invalid at '{p}': {inner}."),
                    None => format!("The request content is invalid: {inner}."),
                };
                Err(ArmError::http(StatusCode::BAD_REQUEST, "InvalidRequestContent", target, message))
            }
        }
    }
}

/// The query parameters every management route understands.
#[derive(Clone, Debug, Default)]
pub struct CommonQuery {
    pub api_version: Option<String>,
    /// Keyset paging cursor (opaque to clients).
    pub skip_token: Option<String>,
    pub top: Option<i64>,
    /// OData `$filter`; moat understands `field eq 'value'` terms joined by `and`.
    pub filter: Option<String>,
}

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

fn valid_api_version(v: &str) -> bool {
    if v == "v1.0" {
        return true;
    }
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let date = digits(0..4) && b.get(4) == Some(&b'-') && digits(5..7) && b.get(7) == Some(&b'-') && digits(8..10);
    let suffix_ok = match b.get(10..) {
        None | Some([]) => true,
        Some([b'-', rest @ ..]) => !rest.is_empty() && rest.iter().all(u8::is_ascii_alphanumeric),
        Some(_) => false,
    };
    date && suffix_ok
}

impl<S: Send + Sync> FromRequestParts<S> for CommonQuery {
    type Rejection = ArmError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only the four parameters are kept (names case-insensitive, the last one wins), read
        // straight from the query string: no map of every parameter per request.
        let mut found: [Option<String>; 4] = Default::default();
        const NAMES: [&str; 4] = ["api-version", "$skipToken", "$top", "$filter"];
        for (k, v) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(&k)) {
                found[i] = Some(v.into_owned());
            }
        }
        let [api_version, skip_token, top, filter] = found;
        if let Some(v) = &api_version
            && !valid_api_version(v)
        {
            return Err(ArmError::http(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                Some("api-version".into()),
                format!("The api-version '{v}' is invalid; use a date such as 2025-09-01 (or 2025-09-01-preview)."),
            ));
        }
        let top = match top {
            None => None,
            Some(t) => match t.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Some(n),
                _ => {
                    return Err(ArmError::http(
                        StatusCode::BAD_REQUEST,
                        "InvalidQueryParameterValue",
                        Some("$top".into()),
                        format!("$top must be a whole number from 1 to {MAX_PAGE}, not '{t}'."),
                    ));
                }
            },
        };
        Ok(CommonQuery { api_version, skip_token, top, filter })
    }
}

impl CommonQuery {
    /// The value of a `field eq 'value'` term of `$filter`; a filter on any other field is a 400.
    pub fn filter_eq(&self, allowed: &[&str]) -> Result<Vec<(String, String)>, ArmError> {
        let Some(f) = &self.filter else { return Ok(vec![]) };
        let bad = |why: String| ArmError::http(StatusCode::BAD_REQUEST, "InvalidFilterInQueryString", Some("$filter".into()), why);
        let mut out = Vec::new();
        for term in f.split(" and ") {
            let term = term.trim();
            let (field, rest) = term.split_once(" eq ").ok_or_else(|| bad(format!("'{term}' is not of the form field eq 'value'.")))?;
            let field = field.trim();
            let value = rest
                .trim()
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .ok_or_else(|| bad(format!("the value in '{term}' must be quoted with '.")))?;
            let Some(known) = allowed.iter().find(|a| a.eq_ignore_ascii_case(field)) else {
                return Err(bad(format!("filtering on '{field}' is not supported here; use {}.", allowed.join(" or "))));
            };
            out.push((known.to_string(), value.to_string()));
        }
        Ok(out)
    }

    pub fn limit(&self) -> i64 {
        self.top.unwrap_or(DEFAULT_PAGE)
    }

    /// The decoded paging cursor.
    pub fn after(&self) -> Result<Option<String>, ArmError> {
        use base64::Engine;
        let Some(t) = &self.skip_token else { return Ok(None) };
        let bad = || {
            ArmError::http(StatusCode::BAD_REQUEST, "InvalidSkipToken", Some("$skipToken".into()), "The $skipToken is not one moat issued.")
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
        String::from_utf8(raw).map(Some).map_err(|_| bad())
    }
}

/// `If-Match` / `If-None-Match`.
pub struct Conditions(pub Preconditions);

impl<S: Send + Sync> FromRequestParts<S> for Conditions {
    type Rejection = ArmError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let get = |h: header::HeaderName| -> Result<Option<String>, ArmError> {
            match parts.headers.get(&h) {
                None => Ok(None),
                Some(v) => v.to_str().map(|s| Some(s.to_string())).map_err(|_| {
                    ArmError::http(
                        StatusCode::BAD_REQUEST,
                        "InvalidHeaderValue",
                        Some(h.to_string()),
                        format!("The {h} header is not valid text."),
                    )
                }),
            }
        };
        Ok(Conditions(Preconditions { if_match: get(header::IF_MATCH)?, if_none_match: get(header::IF_NONE_MATCH)? }))
    }
}

#[cfg(test)]
mod tests {
    use super::valid_api_version;

    #[test]
    fn api_versions() {
        for ok in ["2025-09-01", "2024-04-01-preview", "v1.0", "2021-10-01-dataplanepreview"] {
            assert!(valid_api_version(ok), "{ok}");
        }
        for bad in ["", "2025", "2025-9-01", "latest", "2025-09-01-", "2025-09-01x"] {
            assert!(!valid_api_version(bad), "{bad}");
        }
    }
}
