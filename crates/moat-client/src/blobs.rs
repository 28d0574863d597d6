//! Moving files through the blob plane with a SAS URL: uploads in blocks (several in flight),
//! downloads streamed to disk, listings.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ClientError;

/// Block size for uploads; files up to this size go in one Put Blob.
pub const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// Blocks in flight at once.
pub const CONCURRENCY: usize = 4;

fn encode_path(p: &str) -> String {
    p.split('/').map(moat_types::uri::percent_encode).collect::<Vec<_>>().join("/")
}

/// `{base}/{path}?{sas}` from a SAS URL of a container or folder.
pub fn blob_url(sas_url: &str, path: &str) -> String {
    let (base, sas) = sas_url.split_once('?').unwrap_or((sas_url, ""));
    format!("{}/{}?{sas}", base.trim_end_matches('/'), encode_path(path))
}

fn transport(url: &str, e: reqwest::Error) -> ClientError {
    let base = url.split('?').next().unwrap_or(url).to_string();
    ClientError::Transport { endpoint: base, cause: e.to_string() }
}

async fn check(url: &str, resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let code = resp.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).unwrap_or("Error").to_string();
    let text = resp.text().await.unwrap_or_default();
    let message = text.split("<Message>").nth(1).and_then(|m| m.split("</Message>").next()).unwrap_or(&text).to_string();
    let _ = url;
    Err(ClientError::Api { status, code, message, target: None })
}

/// Uploads a local file to `url` (a blob URL with its SAS).
pub async fn upload_file(http: &reqwest::Client, url: &str, path: &Path) -> Result<u64, ClientError> {
    let io = |e: std::io::Error| ClientError::Profile(format!("cannot read {}: {e}", path.display()));
    let size = tokio::fs::metadata(path).await.map_err(io)?.len();
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    if size as usize <= BLOCK_SIZE {
        let mut buf = Vec::with_capacity(size as usize);
        file.read_to_end(&mut buf).await.map_err(io)?;
        let resp = http.put(url).header("x-ms-blob-type", "BlockBlob").body(buf).send().await.map_err(|e| transport(url, e))?;
        check(url, resp).await?;
        return Ok(size);
    }
    let mut ids = Vec::new();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut index = 0u64;
    loop {
        let mut buf = vec![0u8; BLOCK_SIZE];
        let mut filled = 0;
        while filled < BLOCK_SIZE {
            let n = file.read(&mut buf[filled..]).await.map_err(io)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        use base64::Engine;
        let id = base64::engine::general_purpose::STANDARD.encode(format!("{index:010}"));
        index += 1;
        ids.push(id.clone());
        let block_url = format!("{url}&comp=block&blockid={}", encode_path(&id));
        let http = http.clone();
        if in_flight.len() >= crate::blobs::CONCURRENCY
            && let Some(done) = in_flight.join_next().await
        {
            done.map_err(|e| ClientError::Decode(e.to_string()))??;
        }
        in_flight.spawn(async move {
            let resp = http.put(&block_url).body(buf).send().await.map_err(|e| transport(&block_url, e))?;
            check(&block_url, resp).await.map(|_| ())
        });
    }
    while let Some(done) = in_flight.join_next().await {
        done.map_err(|e| ClientError::Decode(e.to_string()))??;
    }
    let xml: String = std::iter::once("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>".to_string())
        .chain(ids.iter().map(|i| format!("<Latest>{i}</Latest>")))
        .chain(std::iter::once("</BlockList>".to_string()))
        .collect();
    let list_url = format!("{url}&comp=blocklist");
    let resp = http.put(&list_url).body(xml).send().await.map_err(|e| transport(&list_url, e))?;
    check(&list_url, resp).await?;
    Ok(size)
}

/// Downloads a blob to a local file, streaming.
pub async fn download_file(http: &reqwest::Client, url: &str, dest: &Path) -> Result<u64, ClientError> {
    let io = |e: std::io::Error| ClientError::Profile(format!("cannot write {}: {e}", dest.display()));
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let resp = http.get(url).send().await.map_err(|e| transport(url, e))?;
    let mut resp = check(url, resp).await?;
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let mut total = 0;
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(url, e))? {
        file.write_all(&chunk).await.map_err(io)?;
        total += chunk.len() as u64;
    }
    file.sync_all().await.map_err(io)?;
    Ok(total)
}

/// Names of the blobs under a container SAS URL whose names start with `prefix`.
pub async fn list_blobs(http: &reqwest::Client, container_sas_url: &str, prefix: &str) -> Result<Vec<String>, ClientError> {
    let (base, sas) = container_sas_url.split_once('?').unwrap_or((container_sas_url, ""));
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let url = format!("{base}?restype=container&comp=list&prefix={}&marker={}&{sas}", encode_path(prefix), encode_path(&marker));
        let resp = http.get(&url).send().await.map_err(|e| transport(&url, e))?;
        let text = check(&url, resp).await?.text().await.map_err(|e| transport(&url, e))?;
        for blob in text.split("<Blob>").skip(1) {
            if let Some(name) = blob.split("<Name>").nth(1).and_then(|n| n.split("</Name>").next()) {
                names.push(
                    name.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&"),
                );
            }
        }
        match text.split("<NextMarker>").nth(1).and_then(|m| m.split("</NextMarker>").next()) {
            Some(m) if !m.is_empty() => marker = m.to_string(),
            _ => return Ok(names),
        }
    }
}
