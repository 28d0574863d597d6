//! The blob plane: `/{account}/{container}[/{blob}]`, path-style as the Azure storage emulator
//! serves it, so that the azure-storage-blob SDK works unchanged. The request is parsed by hand
//! into a [`BlobEndpoint`] (Azure Blob multiplexes operations on query verbs), then one domain
//! function runs. Errors are Azure's XML.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use moat_core::blobs::{BlobConditions, BlobProps, BlobTarget, Md5Checked, ReadCondition};
use moat_core::{Error, Moat};
use moat_store::BlobRow;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use moat_types::uri::percent_decode;

use crate::error::describe;

const MS_VERSION: &str = "2025-01-05";

/// The operations of the blob plane moat serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobEndpoint {
    PutBlob,
    PutBlock {
        block_id: String,
    },
    PutBlockList,
    GetBlockList {
        list_type: BlockListType,
    },
    GetBlob,
    GetBlobProperties,
    DeleteBlob,
    SetBlobMetadata,
    /// `include_metadata`: `include=metadata` (a list that names it).
    ListBlobs {
        prefix: String,
        delimiter: Option<String>,
        marker: Option<String>,
        max_results: i64,
        include_metadata: bool,
    },
}

/// Which staged blocks Get Block List reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockListType {
    Committed,
    Uncommitted,
    All,
}

/// A parsed blob-plane request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRequest {
    pub account: String,
    pub container: String,
    pub blob: Option<String>,
    pub query: Vec<(String, String)>,
    pub endpoint: BlobEndpoint,
}

/// Whether a path's first segment is a storage account name (11 lowercase hex characters), so
/// that the blob plane owns the request.
pub fn is_blob_path(path: &str) -> bool {
    moat_core::registries::is_account_name(path.trim_start_matches('/').split('/').next().unwrap_or(""))
}

fn bad(code: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid { code, target: None, message: message.into() }
}

/// Parses method, path and query into a request, or says why it is not one moat serves.
pub fn parse(method: &Method, path: &str, raw_query: Option<&str>) -> Result<BlobRequest, Error> {
    let mut query = Vec::new();
    for pair in raw_query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k, true), percent_decode(v, true)) else {
            return Err(bad("InvalidQueryParameterValue", format!("The query parameter '{pair}' is not valid percent-encoding.")));
        };
        query.push((k, v));
    }
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let account = parts.next().unwrap_or_default().to_string();
    let container = percent_decode(parts.next().unwrap_or_default(), false).unwrap_or_default();
    let blob = match parts.next() {
        Some(b) if !b.is_empty() => {
            Some(percent_decode(b, false).ok_or_else(|| bad("InvalidUri", "The blob name is not valid percent-encoding."))?)
        }
        _ => None,
    };
    if container.is_empty() {
        return Err(bad("UnsupportedOperation", "Account-level operations are not served; address a container."));
    }
    let comp = get("comp");
    let restype = get("restype");
    let endpoint = match (method.as_str(), blob.is_some(), restype.as_deref(), comp.as_deref()) {
        ("PUT", true, None, None) => BlobEndpoint::PutBlob,
        ("PUT", true, None, Some("block")) => BlobEndpoint::PutBlock {
            block_id: get("blockid").ok_or_else(|| bad("MissingRequiredQueryParameter", "Put Block needs the blockid query parameter."))?,
        },
        ("PUT", true, None, Some("blocklist")) => BlobEndpoint::PutBlockList,
        ("PUT", true, None, Some("metadata")) => BlobEndpoint::SetBlobMetadata,
        ("GET", true, None, Some("blocklist")) => BlobEndpoint::GetBlockList {
            list_type: match get("blocklisttype").as_deref() {
                None | Some("committed") => BlockListType::Committed,
                Some("uncommitted") => BlockListType::Uncommitted,
                Some("all") => BlockListType::All,
                Some(other) => {
                    return Err(bad(
                        "InvalidQueryParameterValue",
                        format!("blocklisttype must be committed, uncommitted or all, not '{other}'."),
                    ));
                }
            },
        },
        ("GET", true, None, None) => BlobEndpoint::GetBlob,
        ("HEAD", true, None, None) => BlobEndpoint::GetBlobProperties,
        ("DELETE", true, None, None) => BlobEndpoint::DeleteBlob,
        ("GET", false, Some("container"), Some("list")) => {
            let max_results = match get("maxresults") {
                None => 5000,
                Some(m) => m.parse::<i64>().ok().filter(|n| (1..=5000).contains(n)).ok_or_else(|| {
                    bad("OutOfRangeQueryParameterValue", format!("maxresults must be a number from 1 to 5000, not '{m}'."))
                })?,
            };
            BlobEndpoint::ListBlobs {
                prefix: get("prefix").unwrap_or_default(),
                delimiter: get("delimiter").filter(|d| !d.is_empty()),
                marker: get("marker").filter(|m| !m.is_empty()),
                max_results,
                include_metadata: get("include").is_some_and(|i| i.split(',').any(|w| w.trim() == "metadata")),
            }
        }
        (m, _, r, c) => {
            return Err(bad(
                "UnsupportedOperation",
                format!(
                    "{m} with restype={} comp={} is not served; moat serves Put Blob, Put Block, Put Block List, Get Block List, Get Blob, Get Blob Properties, Set Blob Metadata, Delete Blob and List Blobs.",
                    r.unwrap_or("-"),
                    c.unwrap_or("-")
                ),
            ));
        }
    };
    Ok(BlobRequest { account, container, blob, query, endpoint })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// An error as Azure Blob writes it: XML body and `x-ms-error-code`.
pub fn xml_error(e: Error, head: bool) -> Response {
    let (status, mut code, _target, message) = describe(&e);
    if status == StatusCode::PRECONDITION_FAILED {
        // Azure Blob's name for a conditional header that failed.
        code = "ConditionNotMet".into();
    }
    // Azure's statuses for a body over the limit, and for one of unknown length.
    let status = match code.as_str() {
        "RequestBodyTooLarge" => StatusCode::PAYLOAD_TOO_LARGE,
        "MissingContentLengthHeader" => StatusCode::LENGTH_REQUIRED,
        _ => status,
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
        xml_escape(&code),
        xml_escape(&message)
    );
    let mut resp = if head { status.into_response() } else { (status, body).into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    if let Ok(v) = HeaderValue::from_str(&code) {
        h.insert("x-ms-error-code", v);
    }
    common_headers(h);
    resp
}

fn common_headers(h: &mut HeaderMap) {
    h.insert("x-ms-version", HeaderValue::from_static(MS_VERSION));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert("x-ms-request-id", v);
    }
}

/// An RFC 3339 time as an HTTP date (IMF-fixdate, GMT), through the same crate that reads them.
fn http_date(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| httpdate::fmt_http_date(t.into()))
        .unwrap_or_default()
}

/// The body's announced MD5 (`Content-MD5`, base64 of 16 bytes), if any.
fn announced_md5(h: &HeaderMap) -> Result<Option<[u8; 16]>, Error> {
    let Some(v) = h.get("content-md5") else { return Ok(None) };
    use base64::Engine as _;
    let raw = v.to_str().ok().and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok());
    match raw.and_then(|r| <[u8; 16]>::try_from(r.as_slice()).ok()) {
        Some(md5) => Ok(Some(md5)),
        None => Err(bad("InvalidMd5", "Content-MD5 is not the base64 of an MD5 (16 bytes).")),
    }
}

/// The body's length, which Put Blob and Put Block require as Azure does: `Content-Length`, or
/// none when the request framing says there is no body (`exact`, what the connection knows of
/// the body's length). A body sent in chunks of unknown total is refused (411), not stored.
fn content_length(h: &HeaderMap, exact: Option<u64>) -> Result<u64, Error> {
    match h.get(header::CONTENT_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("InvalidHeaderValue", "Content-Length is not a number of bytes.")),
        None => exact.ok_or_else(|| {
            bad("MissingContentLengthHeader", "The Content-Length header was not specified; send the body with its length.")
        }),
    }
}

/// The request body (of `len` bytes), checked against its `Content-MD5` when it has one.
fn checked_body<'a>(headers: &HeaderMap, body: &'a mut BodyReader, len: u64) -> Result<Md5Checked<&'a mut BodyReader>, Error> {
    Ok(Md5Checked::new(body, announced_md5(headers)?, Some(len)))
}

/// `outcome`, after reading (a bounded amount of) what the client is still sending when it is a
/// refusal: a refusal before or while the body is read would otherwise reach an uploading
/// client as a reset connection, which SDKs retry, instead of the answer.
async fn drained<T>(outcome: Result<T, Error>, body: &mut BodyReader) -> Result<T, Error> {
    if outcome.is_err() {
        drain(body).await;
    }
    outcome
}

/// Reads (a bounded amount of) what the client is still sending after a refusal.
pub(crate) async fn drain(body: &mut BodyReader) {
    let _ = tokio::io::copy(&mut body.take(64 * 1024 * 1024), &mut tokio::io::sink()).await;
}

/// Echoes a verified `Content-MD5`, as Azure does.
fn echo_md5(headers: &HeaderMap, resp: &mut Response) {
    if let Some(v) = headers.get("content-md5") {
        resp.headers_mut().insert("content-md5", v.clone());
    }
}

/// The request's conditional headers. A header unreadable as text is refused, not taken as
/// absent (a condition must never be dropped silently); dates are read in any of RFC 9110's
/// three forms, and anything else is a 400, as Azure answers.
fn conditions(h: &HeaderMap) -> Result<BlobConditions, Error> {
    let text = |n: &header::HeaderName| match h.get(n) {
        None => Ok(None),
        Some(v) => v.to_str().map(|v| Some(v.to_string())).map_err(|_| bad("InvalidHeaderValue", format!("{n} is not readable text."))),
    };
    let date = |n: header::HeaderName| match text(&n)? {
        None => Ok(None),
        Some(v) => httpdate::parse_http_date(&v)
            .map(|t| Some(time::OffsetDateTime::from(t)))
            .map_err(|_| bad("InvalidHeaderValue", format!("{n}: '{v}' is not an HTTP date (like 'Tue, 01 Dec 2026 08:00:00 GMT')."))),
    };
    Ok(BlobConditions {
        if_match: text(&header::IF_MATCH)?,
        if_none_match: text(&header::IF_NONE_MATCH)?,
        if_modified_since: date(header::IF_MODIFIED_SINCE)?,
        if_unmodified_since: date(header::IF_UNMODIFIED_SINCE)?,
    })
}

/// A blob's metadata as parsed from its stored JSON (see [`BlobProps`]), in name order.
fn metadata_of(b: &BlobRow) -> Vec<(String, String)> {
    b.metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<std::collections::BTreeMap<String, String>>(m).ok())
        .map(|m| m.into_iter().collect())
        .unwrap_or_default()
}

/// `<Metadata>` of a List Blobs entry (`include=metadata`).
fn metadata_xml(b: &BlobRow) -> String {
    let mut x = String::from("<Metadata>");
    for (k, v) in metadata_of(b) {
        // Names are identifiers (checked when set), so they are element names as they are.
        x.push_str(&format!("<{k}>{}</{k}>", xml_escape(&v)));
    }
    x.push_str("</Metadata>");
    x
}

/// Metadata at most this many bytes in all (names and values), as in Azure.
const METADATA_MAX: usize = 8 * 1024;

/// The request's `x-ms-meta-*` headers as stored metadata (a JSON object; `None` when there
/// are none). Names are C# identifiers, as Azure requires; stored (and answered) lower case,
/// since HTTP names are not case-sensitive and Azure compares them without case.
fn metadata(h: &HeaderMap) -> Result<Option<String>, Error> {
    let mut m = std::collections::BTreeMap::new();
    let mut total = 0;
    for (name, value) in h {
        let Some(key) = name.as_str().strip_prefix("x-ms-meta-") else { continue };
        let identifier = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(bad(
                "InvalidMetadata",
                format!("The metadata name '{key}' is not an identifier (a letter or '_', then letters, digits or '_')."),
            ));
        }
        let value = value.to_str().map_err(|_| bad("InvalidMetadata", format!("The value of metadata '{key}' is not readable text.")))?;
        total += key.len() + value.len();
        if m.insert(key.to_string(), value.to_string()).is_some() {
            return Err(bad("InvalidMetadata", format!("The metadata name '{key}' is given more than once.")));
        }
    }
    if total > METADATA_MAX {
        return Err(bad("MetadataTooLarge", format!("The metadata is {total} bytes; at most {METADATA_MAX} are allowed.")));
    }
    Ok(if m.is_empty() { None } else { Some(serde_json::to_string(&m).map_err(|e| Error::Internal(e.to_string()))?) })
}

/// `x-ms-meta-*` of blob `b`: what Get Blob and Get Blob Properties answer (writes, as in
/// Azure, do not echo it).
fn metadata_headers(h: &mut HeaderMap, b: &BlobRow) {
    for (k, v) in metadata_of(b) {
        if let (Ok(name), Ok(v)) = (header::HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()), HeaderValue::from_str(&v)) {
            h.insert(name, v);
        }
    }
}

fn blob_headers(h: &mut HeaderMap, b: &BlobRow) {
    common_headers(h);
    let pairs = [
        (header::ETAG.as_str(), b.etag.clone()),
        (header::LAST_MODIFIED.as_str(), http_date(&b.updated_at)),
        ("x-ms-creation-time", http_date(&b.created_at)),
        // moat's extension: the sha256 it computed while storing, so a client can verify an
        // upload, or skip a file already uploaded, without reading the bytes back.
        ("x-moat-content-sha256", b.digest.trim_start_matches("sha256:").to_string()),
    ];
    for (k, v) in pairs {
        if let (Ok(name), Ok(v)) = (header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
            h.insert(name, v);
        }
    }
}

/// A response body of the next `len` bytes of `reader`, streamed in the chunks it reads (local
/// files: 1 MiB read ahead, handed to the connection without a copy). An early end is an
/// error, so the client sees a broken transfer rather than a short one.
pub(crate) fn limited_body(reader: moat_core::BlobReader, len: u64) -> Body {
    use futures_util::StreamExt;
    let stream = futures_util::stream::unfold((reader.into_stream(), len), |(mut chunks, left)| async move {
        if left == 0 {
            return None;
        }
        match chunks.next().await {
            None => Some((Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob shorter than recorded")), (chunks, 0))),
            Some(Ok(mut b)) => {
                b.truncate(left.min(b.len() as u64) as usize);
                let n = b.len() as u64;
                Some((Ok(b), (chunks, left - n)))
            }
            Some(Err(e)) => Some((Err(e), (chunks, 0))),
        }
    });
    Body::from_stream(stream)
}

/// Adapts a request body to `AsyncRead` for streaming into the byte store.
pub(crate) struct BodyReader {
    pub(crate) stream: axum::body::BodyDataStream,
    pub(crate) buf: Bytes,
}

impl BodyReader {
    pub(crate) fn new(body: Body) -> Self {
        BodyReader { stream: body.into_data_stream(), buf: Bytes::new() }
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            if !self.buf.is_empty() {
                let n = out.remaining().min(self.buf.len());
                let chunk = self.buf.split_to(n);
                out.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(b))) => self.buf = b,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// `bytes=a-b` or `bytes=a-` → (start, inclusive end).
fn parse_range(h: &HeaderMap) -> Result<Option<(u64, Option<u64>)>, Error> {
    let Some(v) = h.get("x-ms-range").or_else(|| h.get(header::RANGE)) else { return Ok(None) };
    let v = v.to_str().map_err(|_| bad("InvalidRange", "The range header is not text."))?;
    let spec = v.strip_prefix("bytes=").ok_or_else(|| bad("InvalidRange", format!("'{v}' is not a bytes range.")))?;
    let (a, b) = spec.split_once('-').ok_or_else(|| bad("InvalidRange", format!("'{v}' is not a bytes range.")))?;
    let start = a.parse::<u64>().map_err(|_| bad("InvalidRange", format!("'{v}' has no valid start.")))?;
    let end =
        if b.is_empty() { None } else { Some(b.parse::<u64>().map_err(|_| bad("InvalidRange", format!("'{v}' has no valid end.")))?) };
    if end.is_some_and(|e| e < start) {
        return Err(bad("InvalidRange", format!("'{v}' ends before it starts.")));
    }
    Ok(Some((start, end)))
}

/// Block IDs of a Put Block List body, in order.
fn parse_block_list(xml: &str) -> Result<Vec<String>, Error> {
    let body = xml.trim_start_matches('\u{feff}');
    let start = body.find("<BlockList>").ok_or_else(|| bad("InvalidXmlDocument", "The body is not a <BlockList>."))?;
    let end = body.rfind("</BlockList>").ok_or_else(|| bad("InvalidXmlDocument", "The <BlockList> is not closed."))?;
    let mut rest = &body[start + "<BlockList>".len()..end];
    let mut ids = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(ids);
        }
        let (tag, after) = ["Latest", "Uncommitted", "Committed"]
            .iter()
            .find_map(|t| rest.strip_prefix(&format!("<{t}>")).map(|a| (*t, a)))
            .ok_or_else(|| bad("InvalidXmlDocument", "A block list holds only <Latest>, <Uncommitted> or <Committed> entries."))?;
        let close = format!("</{tag}>");
        let stop = after.find(&close).ok_or_else(|| bad("InvalidXmlDocument", format!("<{tag}> is not closed.")))?;
        if tag == "Committed" {
            return Err(bad("InvalidBlockList", "moat keeps no committed block lists; send every block as <Latest>."));
        }
        ids.push(after[..stop].trim().to_string());
        rest = &after[stop + close.len()..];
    }
}

fn content_type(h: &HeaderMap, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| h.get(*n)).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn list_xml(base: &str, req: &BlobRequest, listing: &moat_core::blobs::BlobListing) -> String {
    let BlobEndpoint::ListBlobs { prefix, delimiter, marker, max_results, include_metadata } = &req.endpoint else { return String::new() };
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/{}/\" ContainerName=\"{}\">",
        xml_escape(base),
        xml_escape(&req.account),
        xml_escape(&req.container)
    );
    if !prefix.is_empty() {
        x.push_str(&format!("<Prefix>{}</Prefix>", xml_escape(prefix)));
    }
    if let Some(m) = marker {
        x.push_str(&format!("<Marker>{}</Marker>", xml_escape(m)));
    }
    x.push_str(&format!("<MaxResults>{max_results}</MaxResults>"));
    if let Some(d) = delimiter {
        x.push_str(&format!("<Delimiter>{}</Delimiter>", xml_escape(d)));
    }
    x.push_str("<Blobs>");
    // Azure interleaves blobs and prefixes in name order.
    let mut entries: Vec<(&str, String)> = listing
        .blobs
        .iter()
        .map(|b| {
            (
                b.name.as_str(),
                format!(
                    "<Blob><Name>{}</Name><Properties><Creation-Time>{}</Creation-Time><Last-Modified>{}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>{}</Content-Type><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties>{}</Blob>",
                    xml_escape(&b.name),
                    http_date(&b.created_at),
                    http_date(&b.updated_at),
                    xml_escape(&b.etag),
                    b.size,
                    xml_escape(b.content_type.as_deref().unwrap_or("application/octet-stream")),
                    if *include_metadata { metadata_xml(b) } else { String::new() }
                ),
            )
        })
        .chain(listing.prefixes.iter().map(|p| (p.as_str(), format!("<BlobPrefix><Name>{}</Name></BlobPrefix>", xml_escape(p)))))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (_, e) in entries {
        x.push_str(&e);
    }
    x.push_str("</Blobs>");
    x.push_str(&match &listing.next_marker {
        Some(m) => format!("<NextMarker>{}</NextMarker>", xml_escape(m)),
        None => "<NextMarker />".to_string(),
    });
    x.push_str("</EnumerationResults>");
    x
}

/// Serves one blob-plane request.
pub async fn handle(moat: &Moat, req: Request, client: &str, origin: &str) -> Response {
    let head = req.method() == Method::HEAD;
    let parsed = match parse(req.method(), req.uri().path(), req.uri().query()) {
        Ok(p) => p,
        Err(e) => return xml_error(e, head),
    };
    match serve(moat, &parsed, req, client, origin).await {
        Ok(r) => r,
        Err(e) => xml_error(e, head),
    }
}

async fn serve(moat: &Moat, p: &BlobRequest, req: Request, client: &str, origin: &str) -> Result<Response, Error> {
    let headers = req.headers().clone();
    let exact_len = axum::body::HttpBody::size_hint(req.body()).exact();
    let conditions = conditions(&headers)?;
    let t = BlobTarget {
        account: &p.account,
        container: &p.container,
        blob: p.blob.as_deref(),
        query: &p.query,
        client,
        origin,
        conditions: &conditions,
    };
    match &p.endpoint {
        BlobEndpoint::PutBlob => {
            let mut body = BodyReader { stream: req.into_body().into_data_stream(), buf: Bytes::new() };
            let stored = async {
                match headers.get("x-ms-blob-type").and_then(|v| v.to_str().ok()) {
                    Some("BlockBlob") => {}
                    Some(other) => return Err(bad("UnsupportedBlobType", format!("Only block blobs are served, not {other}."))),
                    None => return Err(bad("MissingRequiredHeader", "Put Blob needs the x-ms-blob-type header.")),
                }
                let props = BlobProps {
                    content_type: content_type(&headers, &["x-ms-blob-content-type", "content-type"]),
                    metadata: metadata(&headers)?,
                };
                let len = content_length(&headers, exact_len)?;
                moat.put_blob(&t, checked_body(&headers, &mut body, len)?, props).await
            }
            .await;
            let row = drained(stored, &mut body).await?;
            let mut resp = StatusCode::CREATED.into_response();
            blob_headers(resp.headers_mut(), &row);
            echo_md5(&headers, &mut resp);
            resp.headers_mut().insert("x-ms-request-server-encrypted", HeaderValue::from_static("true"));
            Ok(resp)
        }
        BlobEndpoint::PutBlock { block_id } => {
            let mut body = BodyReader { stream: req.into_body().into_data_stream(), buf: Bytes::new() };
            let staged = async {
                // moat's extension: where the client will put the block (see Moat::put_block).
                let offset = match headers.get("x-moat-block-offset") {
                    None => None,
                    Some(v) => Some(v.to_str().ok().and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| {
                        bad("InvalidHeaderValue", "x-moat-block-offset is the block's byte offset in the blob, a decimal number.")
                    })?),
                };
                let length = content_length(&headers, exact_len)?;
                moat.put_block(&t, block_id, offset, Some(length), checked_body(&headers, &mut body, length)?).await
            }
            .await;
            drained(staged, &mut body).await?;
            let mut resp = StatusCode::CREATED.into_response();
            common_headers(resp.headers_mut());
            echo_md5(&headers, &mut resp);
            resp.headers_mut().insert("x-ms-request-server-encrypted", HeaderValue::from_static("true"));
            Ok(resp)
        }
        BlobEndpoint::PutBlockList => {
            let mut body = Vec::new();
            let mut reader = BodyReader { stream: req.into_body().into_data_stream(), buf: Bytes::new() }.take(8 * 1024 * 1024 + 1);
            reader.read_to_end(&mut body).await.map_err(|e| bad("InvalidXmlDocument", format!("The body could not be read: {e}")))?;
            if body.len() > 8 * 1024 * 1024 {
                return Err(bad("RequestBodyTooLarge", "A block list body is at most 8 MiB."));
            }
            let text = String::from_utf8(body).map_err(|_| bad("InvalidXmlDocument", "The block list is not UTF-8."))?;
            let ids = parse_block_list(&text)?;
            let props = BlobProps { content_type: content_type(&headers, &["x-ms-blob-content-type"]), metadata: metadata(&headers)? };
            let row = moat.put_block_list(&t, &ids, props).await?;
            let mut resp = StatusCode::CREATED.into_response();
            blob_headers(resp.headers_mut(), &row);
            resp.headers_mut().insert("x-ms-request-server-encrypted", HeaderValue::from_static("true"));
            Ok(resp)
        }
        BlobEndpoint::GetBlockList { list_type } => {
            let blocks = moat.get_block_list(&t).await?;
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
            if *list_type != BlockListType::Uncommitted {
                xml.push_str("<CommittedBlocks />");
            }
            if *list_type != BlockListType::Committed {
                xml.push_str("<UncommittedBlocks>");
                for b in &blocks {
                    xml.push_str(&format!("<Block><Name>{}</Name><Size>{}</Size></Block>", xml_escape(&b.block_id), b.size));
                }
                xml.push_str("</UncommittedBlocks>");
            }
            xml.push_str("</BlockList>");
            let mut resp = (StatusCode::OK, xml).into_response();
            common_headers(resp.headers_mut());
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
            Ok(resp)
        }
        BlobEndpoint::GetBlob | BlobEndpoint::GetBlobProperties => {
            let (row, parts) = moat.get_blob(&t).await?;
            if conditions.check_read(&row)? == ReadCondition::NotModified {
                let mut resp = StatusCode::NOT_MODIFIED.into_response();
                blob_headers(resp.headers_mut(), &row);
                metadata_headers(resp.headers_mut(), &row);
                return Ok(resp);
            }
            let size = row.size as u64;
            // Get Blob Properties describes the whole blob, whatever Range says.
            let range = if p.endpoint == BlobEndpoint::GetBlobProperties { None } else { parse_range(&headers)? };
            let (start, end, status) = match range {
                None => (0, size.saturating_sub(1), StatusCode::OK),
                Some((s, _)) if s >= size => {
                    let mut resp = xml_error(
                        bad("InvalidRange", format!("The range starts at {s} but the blob has {size} bytes.")),
                        p.endpoint == BlobEndpoint::GetBlobProperties,
                    );
                    *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                        resp.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return Ok(resp);
                }
                Some((s, e)) => (s, e.unwrap_or(size - 1).min(size - 1), StatusCode::PARTIAL_CONTENT),
            };
            let len = if size == 0 { 0 } else { end - start + 1 };
            // `x-ms-range-get-content-md5: true` (the SDKs' validate_content): the range's MD5,
            // for ranges of up to 4 MiB, which are read whole first to compute it.
            let range_md5 = p.endpoint == BlobEndpoint::GetBlob
                && headers.get("x-ms-range-get-content-md5").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if range_md5 && (range.is_none() || len > 4 * 1024 * 1024) {
                return Err(bad("InvalidHeaderValue", "x-ms-range-get-content-md5 needs a Range (x-ms-range) of at most 4 MiB."));
            }
            let mut md5 = None;
            let body = if p.endpoint == BlobEndpoint::GetBlobProperties || len == 0 {
                Body::empty()
            } else if range_md5 {
                let mut bytes = Vec::with_capacity(len as usize);
                moat.blob_reader(parts, start)
                    .take(len)
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|e| Error::Internal(format!("reading a blob's range: {e}")))?;
                if bytes.len() as u64 != len {
                    return Err(Error::Internal(format!("stored bytes are shorter than recorded: {} of {len}", bytes.len())));
                }
                md5 = Some(moat_core::blobs::content_md5(&bytes));
                Body::from(bytes)
            } else {
                limited_body(moat.blob_reader(parts, start), len)
            };
            let mut resp = (status, body).into_response();
            let h = resp.headers_mut();
            if let Some(v) = md5.and_then(|m| HeaderValue::from_str(&m).ok()) {
                h.insert("content-md5", v);
            }
            blob_headers(h, &row);
            metadata_headers(h, &row);
            h.insert("x-ms-server-encrypted", HeaderValue::from_static("true"));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
            if let Ok(v) = HeaderValue::from_str(row.content_type.as_deref().unwrap_or("application/octet-stream")) {
                h.insert(header::CONTENT_TYPE, v);
            }
            let shown_len = if p.endpoint == BlobEndpoint::GetBlobProperties { size } else { len };
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(shown_len));
            if status == StatusCode::PARTIAL_CONTENT
                && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}"))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
            Ok(resp)
        }
        BlobEndpoint::SetBlobMetadata => {
            let row = moat.set_blob_metadata(&t, metadata(&headers)?).await?;
            let mut resp = StatusCode::OK.into_response();
            // Only what Azure answers: the new ETag and time, not the metadata itself.
            blob_headers(resp.headers_mut(), &row);
            resp.headers_mut().insert("x-ms-request-server-encrypted", HeaderValue::from_static("true"));
            Ok(resp)
        }
        BlobEndpoint::DeleteBlob => {
            moat.delete_blob(&t).await?;
            let mut resp = StatusCode::ACCEPTED.into_response();
            common_headers(resp.headers_mut());
            Ok(resp)
        }
        BlobEndpoint::ListBlobs { prefix, delimiter, marker, max_results, .. } => {
            let listing = moat.list_blobs(&t, prefix, delimiter.as_deref(), marker.as_deref(), *max_results).await?;
            let xml = list_xml(&moat.config().public_url, p, &listing);
            let mut resp = (StatusCode::OK, xml).into_response();
            common_headers(resp.headers_mut());
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
            Ok(resp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_operations() {
        let p = |m: &str, path: &str, q: Option<&str>| parse(&Method::from_bytes(m.as_bytes()).unwrap(), path, q);
        assert_eq!(p("PUT", "/0123456789a/c1/dir/a%20b.bin", Some("sig=x")).unwrap().blob.as_deref(), Some("dir/a b.bin"));
        assert_eq!(
            p("PUT", "/0123456789a/c1/b", Some("comp=block&blockid=QUFB%3D%3D")).unwrap().endpoint,
            BlobEndpoint::PutBlock { block_id: "QUFB==".into() }
        );
        assert_eq!(p("PUT", "/0123456789a/c1/b", Some("comp=blocklist")).unwrap().endpoint, BlobEndpoint::PutBlockList);
        assert_eq!(
            p("GET", "/0123456789a/c1/b", Some("comp=blocklist")).unwrap().endpoint,
            BlobEndpoint::GetBlockList { list_type: BlockListType::Committed }
        );
        assert_eq!(
            p("GET", "/0123456789a/c1/b", Some("comp=blocklist&blocklisttype=uncommitted")).unwrap().endpoint,
            BlobEndpoint::GetBlockList { list_type: BlockListType::Uncommitted }
        );
        assert!(p("GET", "/0123456789a/c1/b", Some("comp=blocklist&blocklisttype=latest")).is_err());
        assert_eq!(p("HEAD", "/0123456789a/c1/b", None).unwrap().endpoint, BlobEndpoint::GetBlobProperties);
        assert_eq!(p("PUT", "/0123456789a/c1/b", Some("comp=metadata")).unwrap().endpoint, BlobEndpoint::SetBlobMetadata);
        match p("GET", "/0123456789a/c1", Some("restype=container&comp=list&prefix=m%2F&delimiter=%2F&maxresults=2")).unwrap().endpoint {
            BlobEndpoint::ListBlobs { prefix, delimiter, max_results, include_metadata, .. } => {
                assert_eq!((prefix.as_str(), delimiter.as_deref(), max_results, include_metadata), ("m/", Some("/"), 2, false));
            }
            e => panic!("{e:?}"),
        }
        match p("GET", "/0123456789a/c1", Some("restype=container&comp=list&include=snapshots%2Cmetadata")).unwrap().endpoint {
            BlobEndpoint::ListBlobs { include_metadata, .. } => assert!(include_metadata),
            e => panic!("{e:?}"),
        }
        for (m, path, q) in [
            ("PUT", "/0123456789a/c1/b", Some("comp=block")),
            ("POST", "/0123456789a/c1/b", None),
            ("GET", "/0123456789a/c1", Some("restype=container&comp=list&maxresults=0")),
            ("GET", "/0123456789a", None),
            ("PUT", "/0123456789a/c1", Some("restype=container")),
            ("GET", "/0123456789a/c1/b", Some("x=%zz")),
        ] {
            assert!(p(m, path, q).is_err(), "{m} {path} {q:?}");
        }
        assert!(is_blob_path("/0123456789a/c"));
        assert!(!is_blob_path("/subscriptions/x"));
        assert!(!is_blob_path("/0123456789A/c"));
    }

    #[test]
    fn block_lists() {
        let ids = parse_block_list(
            "<?xml version='1.0' encoding='utf-8'?>\n<BlockList><Latest>QQ==</Latest><Uncommitted>Qg==</Uncommitted></BlockList>",
        )
        .unwrap();
        assert_eq!(ids, ["QQ==", "Qg=="]);
        assert!(parse_block_list("<BlockList><Committed>QQ==</Committed></BlockList>").is_err());
        assert!(parse_block_list("<Blocks/>").is_err());
        assert!(parse_block_list("<BlockList><Latest>QQ==</BlockList>").is_err());
    }
}
