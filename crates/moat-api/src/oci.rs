//! The container registry plane over HTTP: `/v2/…` (OCI Distribution v1.1) and the ACR-style
//! token endpoint `/oauth2/token`. Paths are parsed by hand (repository names contain `/`),
//! then each request is authenticated, resolved to a repository, checked by
//! [`Moat::oci_check`] (the one authorization hook, then network admission), and served by one
//! domain function. Errors are the spec's JSON. See docs/OCI.md.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use moat_core::oci::{ManifestOut, OciAction, OciCaller, OciCredential, RANGE_CODE, Repo};
use moat_core::{Error, Moat};
use moat_types::oci::OCI_INDEX;
use moat_types::uri::percent_decode;
use tokio::io::AsyncReadExt;

use crate::AppState;
use crate::blob::{BodyReader, drain, limited_body};
use crate::listeners::TlsPeer;

const API_VERSION: &str = "registry/2.0";

/// What a `/v2/<name>/…` path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OciPath {
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    Uploads { name: String },
    Upload { name: String, id: String },
    Tags { name: String },
    Referrers { name: String, digest: String },
}

impl OciPath {
    /// Parses the part of the path after `/v2/`. The endpoint is named by the path's last
    /// segments (a reference, digest or upload ID holds no `/`), so a repository whose name has
    /// a segment such as `blobs` or `manifests` is read whole: `a/manifests/x/blobs/<digest>`
    /// is a blob of repository `a/manifests/x`.
    pub fn parse(rest: &str) -> Option<OciPath> {
        let rest = rest.trim_end_matches('/');
        // The repository: everything before the last `n` segments, not empty.
        let name_before = |n: usize| {
            let cut = rest.rmatch_indices('/').nth(n - 1)?.0;
            (cut > 0).then(|| rest[..cut].to_string())
        };
        let segs: Vec<&str> = rest.rsplit('/').take(3).collect();
        let last = |i: usize| segs.get(i).copied();
        let arg = segs.first().filter(|s| !s.is_empty()).map(|s| s.to_string());
        match (last(2), last(1), last(0)) {
            (_, Some("tags"), Some("list")) => Some(OciPath::Tags { name: name_before(2)? }),
            (_, Some("blobs"), Some("uploads")) => Some(OciPath::Uploads { name: name_before(2)? }),
            (Some("blobs"), Some("uploads"), _) => Some(OciPath::Upload { name: name_before(3)?, id: arg? }),
            (_, Some("manifests"), _) => Some(OciPath::Manifest { name: name_before(2)?, reference: arg? }),
            (_, Some("blobs"), _) => Some(OciPath::Blob { name: name_before(2)?, digest: arg? }),
            (_, Some("referrers"), _) => Some(OciPath::Referrers { name: name_before(2)?, digest: arg? }),
            _ => None,
        }
    }

    fn name(&self) -> &str {
        match self {
            OciPath::Manifest { name, .. }
            | OciPath::Blob { name, .. }
            | OciPath::Uploads { name }
            | OciPath::Upload { name, .. }
            | OciPath::Tags { name }
            | OciPath::Referrers { name, .. } => name,
        }
    }

    /// The right a method needs on this path, or `None` if the method is not served here.
    pub fn action(&self, method: &Method) -> Option<OciAction> {
        let m = method.clone();
        match self {
            OciPath::Manifest { .. } => match m {
                Method::GET | Method::HEAD => Some(OciAction::Pull),
                Method::PUT => Some(OciAction::Push),
                Method::DELETE => Some(OciAction::Delete),
                _ => None,
            },
            OciPath::Blob { .. } => match m {
                Method::GET | Method::HEAD => Some(OciAction::Pull),
                Method::DELETE => Some(OciAction::Delete),
                _ => None,
            },
            OciPath::Uploads { .. } => (m == Method::POST).then_some(OciAction::Push),
            OciPath::Upload { .. } => matches!(m, Method::GET | Method::PATCH | Method::PUT | Method::DELETE).then_some(OciAction::Push),
            OciPath::Tags { .. } | OciPath::Referrers { .. } => (m == Method::GET).then_some(OciAction::Pull),
        }
    }
}

/// An OCI error response (boxed: results carry it on every path).
struct OciError(Box<ErrorParts>);

struct ErrorParts {
    status: StatusCode,
    code: String,
    message: String,
    detail: serde_json::Value,
    headers: HeaderMap,
}

impl OciError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        OciError(Box::new(ErrorParts {
            status,
            code: code.into(),
            message: message.into(),
            detail: serde_json::Value::Null,
            headers: HeaderMap::new(),
        }))
    }

    fn with_header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, v);
        }
        self
    }

    fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.0.detail = detail;
        self
    }
}

impl From<Error> for OciError {
    fn from(e: Error) -> Self {
        let (status, code, target, message) = crate::error::describe(&e);
        match e {
            Error::Unauthenticated { reason } => {
                OciError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", format!("authentication required: {reason}"))
            }
            Error::Forbidden { code, action, scope, message } => OciError::new(StatusCode::FORBIDDEN, "DENIED", message)
                .with_detail(serde_json::json!({"reason": code, "action": action, "scope": scope})),
            Error::Conflict { code, message } if code == RANGE_CODE => OciError::new(StatusCode::RANGE_NOT_SATISFIABLE, code, message),
            Error::Throttled { .. } => OciError::new(status, "TOOMANYREQUESTS", message),
            _ => OciError::new(status, &code, message).with_detail(target.map(|t| serde_json::json!({"target": t})).unwrap_or_default()),
        }
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let e = *self.0;
        let body = serde_json::json!({"errors": [{"code": e.code, "message": e.message, "detail": e.detail}]});
        let mut resp = (e.status, axum::Json(body)).into_response();
        resp.headers_mut().extend(e.headers);
        resp
    }
}

type Reply = Result<Response, OciError>;

/// The request's host as the client wrote it (with port), and without the port.
fn host_of(req: &Parts) -> (String, Option<String>) {
    let full = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let bare = if let Some(rest) = full.strip_prefix('[') {
        rest.split_once(']').map(|(h, _)| h.to_string())
    } else {
        Some(full.rsplit_once(':').map_or(full.as_str(), |(h, _)| h).to_string())
    };
    (full, bare.filter(|h| !h.is_empty()))
}

fn scheme_of(req: &Parts) -> &'static str {
    if req.extensions.get::<ConnectInfo<TlsPeer>>().is_some() { "https" } else { "http" }
}

/// `WWW-Authenticate` for a request lacking (sufficient) credentials.
fn challenge(req: &Parts, scope: Option<(&str, OciAction)>) -> String {
    let (host, _) = host_of(req);
    let mut c = format!("Bearer realm=\"{}://{host}/oauth2/token\",service=\"{host}\"", scheme_of(req));
    if let Some((name, action)) = scope {
        let actions = match action {
            OciAction::Pull => "pull",
            OciAction::Push => "pull,push",
            OciAction::Delete => "delete",
        };
        c.push_str(&format!(",scope=\"repository:{name}:{actions}\""));
    }
    c
}

fn unauthorized(req: &Parts, scope: Option<(&str, OciAction)>, message: String) -> OciError {
    OciError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).with_header(header::WWW_AUTHENTICATE, &challenge(req, scope))
}

/// A request's credential, owned (a Basic password is decoded from the header).
enum Credential {
    Bearer(String),
    Password(String),
}

impl Credential {
    fn as_oci(&self) -> OciCredential<'_> {
        match self {
            Credential::Bearer(t) => OciCredential::Bearer(t),
            Credential::Password(p) => OciCredential::Password(p),
        }
    }

    fn secret(self) -> String {
        match self {
            Credential::Bearer(s) | Credential::Password(s) => s,
        }
    }
}

/// The credential of a request, if it has one.
fn credential(req: &Parts) -> Result<Option<Credential>, String> {
    let Some(v) = req.headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| "the Authorization header is not valid text".to_string())?;
    let (scheme, value) = v.split_once(' ').unwrap_or((v, ""));
    let value = value.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
        return Ok(Some(Credential::Bearer(value.to_string())));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(value).map_err(|_| "the Basic credential is not valid base64".to_string())?;
        let text = String::from_utf8(bytes).map_err(|_| "the Basic credential is not UTF-8".to_string())?;
        let (_, password) = text.split_once(':').ok_or_else(|| "the Basic credential has no ':' between user and password".to_string())?;
        if password.is_empty() {
            return Err("the Basic credential's password must be a moat access token".into());
        }
        return Ok(Some(Credential::Password(password.to_string())));
    }
    Err("the Authorization header must use the Bearer or Basic scheme".into())
}

fn query_pairs(req: &Parts) -> Vec<(String, String)> {
    req.uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

fn query<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut resp = (status, body).into_response();
    for (k, v) in headers {
        if let (Ok(name), Ok(v)) = (header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

fn range_header(length: u64) -> String {
    format!("0-{}", length.saturating_sub(1))
}

/// `GET /v2/`: 200 once authenticated, else the challenge.
pub async fn base(State(st): State<AppState>, req: Request) -> Response {
    let (req, _) = req.into_parts();
    let out = async {
        authenticate(&st.moat, &req, None).await?;
        Ok::<_, OciError>(respond(StatusCode::OK, &[("content-type", "application/json".into())], Body::from("{}")))
    }
    .await;
    finish(out)
}

fn finish(out: Reply) -> Response {
    let mut resp = out.unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static(API_VERSION));
    resp
}

async fn authenticate(moat: &Moat, req: &Parts, scope: Option<(&str, OciAction)>) -> Result<OciCaller, OciError> {
    let client = crate::auth::client_in(&req.extensions);
    let origin = crate::auth::origin_in(&req.extensions);
    let cred = match credential(req) {
        Ok(Some(c)) => c,
        Ok(None) => return Err(unauthorized(req, scope, "authentication required: send a registry token (see docs/OCI.md)".into())),
        Err(reason) => return Err(unauthorized(req, scope, format!("authentication required: {reason}"))),
    };
    match moat.oci_authenticate(cred.as_oci(), &client, &origin).await {
        Ok(who) => Ok(who),
        Err(Error::Unauthenticated { reason }) => {
            moat.audit_unauthenticated(&client, &origin, req.uri.path(), &reason).await.map_err(OciError::from)?;
            Err(unauthorized(req, scope, format!("authentication required: {reason}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every `/v2/<name>/…` request.
pub async fn dispatch(State(st): State<AppState>, req: Request) -> Response {
    finish(serve(&st.moat, req).await)
}

async fn serve(moat: &Moat, req: Request) -> Reply {
    let (req, body) = req.into_parts();
    let raw = req.uri.path().strip_prefix("/v2/").unwrap_or_default();
    let decoded = percent_decode(raw, false).unwrap_or_default();
    let Some(path) = OciPath::parse(&decoded) else {
        return Err(OciError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", format!("no OCI route serves '{}'", req.uri.path())));
    };
    let Some(action) = path.action(&req.method) else {
        return Err(OciError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{} is not supported on '{}'", req.method, req.uri.path()),
        ));
    };
    let who = authenticate(moat, &req, Some((path.name(), action))).await?;
    let (_, host) = host_of(&req);
    let repo = moat.oci_resolve(host.as_deref(), path.name())?;
    match moat.oci_check(&who, &repo, action).await {
        Err(Error::Unauthenticated { reason }) => return Err(unauthorized(&req, Some((path.name(), action)), reason)),
        other => other?,
    }
    let q = query_pairs(&req);
    let method = req.method.clone();
    match path {
        OciPath::Manifest { reference, .. } => match method {
            Method::GET | Method::HEAD => Ok(manifest_response(moat.oci_get_manifest(&repo, &reference, method == Method::HEAD).await?)),
            Method::PUT => put_manifest(moat, &repo, &reference, &req.headers, body).await,
            _ => {
                moat.oci_delete_manifest(&repo, &reference).await?;
                // A manifest deleted by digest names it; a tag names no content.
                let named: &[(&str, String)] = if reference.contains(':') { &[("docker-content-digest", reference.clone())] } else { &[] };
                Ok(respond(StatusCode::ACCEPTED, named, Body::empty()))
            }
        },
        OciPath::Blob { digest, .. } => match method {
            Method::DELETE => {
                moat.oci_delete_blob(&repo, &digest).await?;
                Ok(respond(StatusCode::ACCEPTED, &[("docker-content-digest", digest)], Body::empty()))
            }
            _ => get_blob(moat, &repo, &digest, method == Method::HEAD, &req.headers).await,
        },
        OciPath::Uploads { .. } => post_upload(moat, &who, &repo, host.as_deref(), &q, body).await,
        OciPath::Upload { id, .. } => match method {
            Method::GET => {
                let u = moat.oci_upload(&repo, &id).await?;
                Ok(upload_state(StatusCode::NO_CONTENT, &repo, &id, u.length as u64))
            }
            Method::PATCH => patch_upload(moat, &repo, &id, &req.headers, body).await,
            Method::PUT => {
                let digest = query(&q, "digest").ok_or_else(|| {
                    OciError::new(
                        StatusCode::BAD_REQUEST,
                        "DIGEST_INVALID",
                        "completing an upload needs ?digest=<digest of the whole blob>",
                    )
                })?;
                let digest = digest.to_string();
                // A last chunk is checked as a PATCH's is: a Content-Range that does not start
                // where the session ends is a 416, and the session stays for the right one.
                let mut reader = BodyReader::new(body);
                let with_chunk = has_body(&req.headers);
                let range = match with_chunk {
                    true => chunk_range(moat, &repo, &id, &req.headers, &mut reader).await?,
                    false => None,
                };
                let last = with_chunk.then_some(&mut reader);
                let outcome = moat.oci_finish_upload(&repo, &id, &digest, last, range.map(|r| r.0)).await;
                match outcome {
                    Ok(d) => Ok(created_blob(&repo, &d)),
                    Err(e) => Err(refused_chunk(moat, &repo, &id, e, &mut reader).await),
                }
            }
            _ => {
                moat.oci_cancel_upload(&repo, &id).await?;
                Ok(respond(StatusCode::NO_CONTENT, &[], Body::empty()))
            }
        },
        OciPath::Tags { .. } => {
            let n =
                match query(&q, "n") {
                    Some(n) => Some(n.parse::<usize>().map_err(|_| {
                        OciError::new(StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID", format!("n='{n}' is not a count"))
                    })?),
                    None => None,
                };
            let (tags, more) = moat.oci_tags(&repo, n, query(&q, "last")).await?;
            let mut headers = vec![("content-type", "application/json".to_string())];
            if more && let (Some(n), Some(last)) = (n, tags.last()) {
                headers.push(("link", format!("</v2/{}/tags/list?n={n}&last={last}>; rel=\"next\"", repo.shown)));
            }
            let body = serde_json::json!({"name": repo.shown, "tags": tags});
            Ok(respond(StatusCode::OK, &headers, Body::from(body.to_string())))
        }
        OciPath::Referrers { digest, .. } => {
            let filter = query(&q, "artifactType");
            let rows = moat.oci_referrers(&repo, &digest, filter).await?;
            let manifests: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut d = serde_json::json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
                    if let Some(t) = &r.artifact_type {
                        d["artifactType"] = t.clone().into();
                    }
                    if let Some(a) = r.annotations.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok()) {
                        d["annotations"] = a;
                    }
                    d
                })
                .collect();
            let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
            let mut headers = vec![("content-type", OCI_INDEX.to_string())];
            if filter.is_some() {
                headers.push(("oci-filters-applied", "artifactType".into()));
            }
            Ok(respond(StatusCode::OK, &headers, Body::from(body.to_string())))
        }
    }
}

fn has_body(h: &HeaderMap) -> bool {
    match header_str(h, "content-length") {
        Some(n) => n.trim().parse::<u64>().map(|n| n > 0).unwrap_or(true),
        None => h.contains_key(header::TRANSFER_ENCODING),
    }
}

fn manifest_response(m: ManifestOut) -> Response {
    let mut headers = vec![
        ("content-type", m.media_type.clone()),
        ("docker-content-digest", m.digest.clone()),
        ("etag", format!("\"{}\"", m.digest)),
        ("content-length", m.size.to_string()),
    ];
    if let Some(s) = &m.subject {
        headers.push(("oci-subject", s.clone()));
    }
    respond(StatusCode::OK, &headers, m.body.map(Body::from).unwrap_or_else(Body::empty))
}

async fn put_manifest(moat: &Moat, repo: &Repo, reference: &str, headers: &HeaderMap, body_in: Body) -> Reply {
    let content_type = header_str(headers, "content-type").unwrap_or_default().to_string();
    let limit = moat_types::oci::MAX_MANIFEST_BYTES as u64;
    let mut body = Vec::new();
    BodyReader::new(body_in)
        .take(limit + 1)
        .read_to_end(&mut body)
        .await
        .map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", format!("reading the manifest failed: {e}")))?;
    if body.len() as u64 > limit {
        return Err(OciError::new(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", format!("a manifest may be at most {limit} bytes")));
    }
    let (digest, subject) = moat.oci_put_manifest(repo, reference, &content_type, &body).await?;
    let mut headers = vec![("location", format!("/v2/{}/manifests/{digest}", repo.shown)), ("docker-content-digest", digest)];
    if let Some(s) = subject {
        headers.push(("oci-subject", s));
    }
    Ok(respond(StatusCode::CREATED, &headers, Body::empty()))
}

/// `bytes=a-b` / `bytes=a-` of a GET.
fn parse_range(h: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, OciError> {
    let Some(v) = header_str(h, "range") else { return Ok(None) };
    let bad = || {
        OciError::new(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", format!("range '{v}' is not satisfiable for {size} bytes"))
            .with_header(header::CONTENT_RANGE, &format!("bytes */{size}"))
    };
    let spec = v.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = if a.is_empty() {
        // A suffix: the last b bytes.
        let n: u64 = b.parse().map_err(|_| bad())?;
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| bad())?;
        let end = if b.is_empty() { size.saturating_sub(1) } else { b.parse::<u64>().map_err(|_| bad())?.min(size.saturating_sub(1)) };
        (start, end)
    };
    if start >= size || end < start {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

async fn get_blob(moat: &Moat, repo: &Repo, digest: &str, head: bool, headers: &HeaderMap) -> Reply {
    let blob = moat.oci_blob(repo, digest).await?;
    let size = blob.size as u64;
    let range = parse_range(headers, size)?;
    let (status, start, len) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut h = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("docker-content-digest", blob.digest.clone()),
        ("accept-ranges", "bytes".into()),
        ("etag", format!("\"{}\"", blob.digest)),
        ("content-length", len.to_string()),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        h.push(("content-range", format!("bytes {start}-{}/{size}", start + len - 1)));
    }
    let body = if head || len == 0 { Body::empty() } else { limited_body(moat.oci_open_blob(&blob, start).await?, len) };
    Ok(respond(status, &h, body))
}

fn created_blob(repo: &Repo, digest: &str) -> Response {
    respond(
        StatusCode::CREATED,
        &[("location", format!("/v2/{}/blobs/{digest}", repo.shown)), ("docker-content-digest", digest.to_string())],
        Body::empty(),
    )
}

fn upload_state(status: StatusCode, repo: &Repo, id: &str, length: u64) -> Response {
    respond(
        status,
        &[
            ("location", format!("/v2/{}/blobs/uploads/{id}", repo.shown)),
            ("range", range_header(length)),
            ("docker-upload-uuid", id.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

async fn post_upload(moat: &Moat, who: &OciCaller, repo: &Repo, host: Option<&str>, q: &[(String, String)], body: Body) -> Reply {
    if let Some(d) = query(q, "mount")
        && moat.oci_mount(who, repo, host, d, query(q, "from")).await?
    {
        return Ok(created_blob(repo, d));
    }
    if let Some(d) = query(q, "digest") {
        let d = moat.oci_put_blob(repo, d, BodyReader::new(body), None).await?;
        return Ok(created_blob(repo, &d));
    }
    let id = moat.oci_start_upload(repo).await?;
    Ok(upload_state(StatusCode::ACCEPTED, repo, &id, 0))
}

/// `Content-Range: <start>-<end>` (also `bytes <start>-<end>/<total>`).
fn content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, OciError> {
    let Some(v) = header_str(h, "content-range") else { return Ok(None) };
    let bad = || OciError::new(StatusCode::RANGE_NOT_SATISFIABLE, RANGE_CODE, format!("Content-Range '{v}' is not <start>-<end>"));
    let spec = v.trim().trim_start_matches("bytes").trim_start_matches('=').trim();
    let spec = spec.split('/').next().unwrap_or_default();
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = (a.trim().parse::<u64>().map_err(|_| bad())?, b.trim().parse::<u64>().map_err(|_| bad())?);
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

/// A 416 for a chunk of upload `id`, with where the session stands (`Location`, `Range`), so
/// that the client can resume from there.
async fn range_refused(moat: &Moat, repo: &Repo, id: &str, message: String) -> OciError {
    let refused = OciError::new(StatusCode::RANGE_NOT_SATISFIABLE, RANGE_CODE, message);
    match moat.oci_upload(repo, id).await {
        Ok(u) => refused
            .with_header(header::LOCATION, &format!("/v2/{}/blobs/uploads/{id}", repo.shown))
            .with_header(header::RANGE, &range_header(u.length as u64)),
        Err(e) => e.into(),
    }
}

/// A chunk's `Content-Range`, checked against its `Content-Length`: a malformed one, or one
/// that covers another count of bytes, is a 416 that says where the session stands, answered
/// once what the client is still sending of `body` has been read (a bounded amount).
async fn chunk_range(
    moat: &Moat,
    repo: &Repo,
    id: &str,
    headers: &HeaderMap,
    body: &mut BodyReader,
) -> Result<Option<(u64, u64)>, OciError> {
    let len = header_str(headers, "content-length").and_then(|l| l.parse::<u64>().ok());
    let checked = content_range(headers).map_err(|e| e.0.message).and_then(|range| match (range, len) {
        (Some((s, e)), Some(len)) if e - s + 1 != len => {
            Err(format!("Content-Range {s}-{e} covers {} bytes but Content-Length is {len}", e - s + 1))
        }
        _ => Ok(range),
    });
    match checked {
        Ok(range) => Ok(range),
        Err(message) => {
            drain(body).await;
            Err(range_refused(moat, repo, id, message).await)
        }
    }
}

/// The answer to a chunk the session refused: an out-of-order one is a 416 that says where the
/// session stands. What the client is still sending is read first (a bounded amount), so that
/// it gets to read the answer instead of a connection reset mid-upload.
async fn refused_chunk(moat: &Moat, repo: &Repo, id: &str, e: Error, reader: &mut BodyReader) -> OciError {
    drain(reader).await;
    match e {
        Error::Conflict { code, message } if code == RANGE_CODE => range_refused(moat, repo, id, message).await,
        e => e.into(),
    }
}

async fn patch_upload(moat: &Moat, repo: &Repo, id: &str, headers: &HeaderMap, body: Body) -> Reply {
    let mut reader = BodyReader::new(body);
    let range = chunk_range(moat, repo, id, headers, &mut reader).await?;
    let outcome = moat.oci_patch_upload(repo, id, range.map(|r| r.0), &mut reader).await;
    match outcome {
        Ok(length) => {
            if let Some((s, e)) = range
                && length != e + 1
            {
                // The body was shorter or longer than announced: the bytes are kept (they are
                // acknowledged by the Range below), and the client resumes from there.
                tracing::info!(upload = id, start = s, end = e, length, "chunk length differs from its Content-Range");
            }
            Ok(upload_state(StatusCode::ACCEPTED, repo, id, length))
        }
        Err(e) => Err(refused_chunk(moat, repo, id, e, &mut reader).await),
    }
}

/// `GET|POST /oauth2/token`: exchanges a moat access token (Basic password, `password` or
/// `refresh_token`) for a registry token.
pub async fn token(State(st): State<AppState>, req: Request) -> Response {
    let (req, body_in) = req.into_parts();
    let out = async {
        let client = crate::auth::client_in(&req.extensions);
        let origin = crate::auth::origin_in(&req.extensions);
        let (_, host) = host_of(&req);
        let mut params = query_pairs(&req);
        let basic = credential(&req).ok().flatten().map(Credential::secret);
        if req.method == Method::POST {
            let mut body = String::new();
            BodyReader::new(body_in)
                .take(64 * 1024)
                .read_to_string(&mut body)
                .await
                .map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", format!("the form body is unreadable: {e}")))?;
            for p in body.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                if let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) {
                    params.push((k, v));
                }
            }
        }
        let secret =
            query(&params, "password").or(query(&params, "refresh_token")).or(query(&params, "access_token")).map(str::to_string).or(basic);
        let Some(secret) = secret else {
            return Err(OciError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "send a moat access token as the Basic password (user 00000000-0000-0000-0000-000000000000) or as password/refresh_token",
            ));
        };
        let scopes: Vec<String> = params.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
        match st.moat.oci_token(&secret, &client, &origin, host.as_deref(), &scopes).await {
            Ok((token, expires_in)) => {
                let body = serde_json::json!({
                    "access_token": token,
                    "token": token,
                    "expires_in": expires_in,
                    "issued_at": moat_core::now_rfc3339(),
                });
                Ok(respond(StatusCode::OK, &[("content-type", "application/json".into())], Body::from(body.to_string())))
            }
            Err(Error::Unauthenticated { reason }) => {
                st.moat.audit_unauthenticated(&client, &origin, "/oauth2/token", &reason).await.map_err(OciError::from)?;
                Err(OciError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", format!("authentication failed: {reason}")))
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_by_their_last_keyword() {
        let p = |s: &str| OciPath::parse(s);
        assert_eq!(p("a/b/manifests/v1"), Some(OciPath::Manifest { name: "a/b".into(), reference: "v1".into() }));
        assert_eq!(p("a/blobs/sha256:00"), Some(OciPath::Blob { name: "a".into(), digest: "sha256:00".into() }));
        assert_eq!(p("a/b/blobs/uploads/"), Some(OciPath::Uploads { name: "a/b".into() }));
        assert_eq!(p("a/blobs/uploads/123"), Some(OciPath::Upload { name: "a".into(), id: "123".into() }));
        assert_eq!(p("x/tags/list"), Some(OciPath::Tags { name: "x".into() }));
        assert_eq!(p("x/referrers/sha256:1"), Some(OciPath::Referrers { name: "x".into(), digest: "sha256:1".into() }));
        // A repository may itself contain a keyword; the last one decides.
        assert_eq!(p("m/manifests/x/manifests/v"), Some(OciPath::Manifest { name: "m/manifests/x".into(), reference: "v".into() }));
        // The last segments decide, whatever keywords the repository's name holds.
        assert_eq!(p("acr/manifests/x/blobs/sha256:0"), Some(OciPath::Blob { name: "acr/manifests/x".into(), digest: "sha256:0".into() }));
        assert_eq!(p("a/blobs/uploads/manifests/v"), Some(OciPath::Manifest { name: "a/blobs/uploads".into(), reference: "v".into() }));
        assert_eq!(p("a/blobs/uploads/blobs/uploads/"), Some(OciPath::Uploads { name: "a/blobs/uploads".into() }));
        assert_eq!(p("a/blobs/uploads/blobs/uploads/9"), Some(OciPath::Upload { name: "a/blobs/uploads".into(), id: "9".into() }));
        assert_eq!(p("a/blobs/uploads/blobs/sha256:1"), Some(OciPath::Blob { name: "a/blobs/uploads".into(), digest: "sha256:1".into() }));
        assert_eq!(p("a/blobs/x/referrers/sha256:1"), Some(OciPath::Referrers { name: "a/blobs/x".into(), digest: "sha256:1".into() }));
        assert_eq!(p("t/tags/list/tags/list"), Some(OciPath::Tags { name: "t/tags/list".into() }));
        assert_eq!(p("a/manifests/blobs/uploads"), Some(OciPath::Uploads { name: "a/manifests".into() }));
        for bad in
            ["", "a", "manifests/v", "/manifests/v", "a/manifests/", "a/nothing/here", "blobs/uploads", "blobs/uploads/1", "tags/list"]
        {
            assert_eq!(p(bad), None, "{bad}");
        }
        assert_eq!(OciPath::Upload { name: "a".into(), id: "1".into() }.action(&Method::POST), None);
        assert_eq!(OciPath::Blob { name: "a".into(), digest: "d".into() }.action(&Method::PUT), None);
    }
}
