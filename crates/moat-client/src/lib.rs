//! The typed HTTP client of moat, used by the CLI and the tests. With moat-net, the only crate
//! that opens outbound connections.

#![allow(clippy::disallowed_methods)]

pub mod blobs;
mod direct;
pub mod routes;

use std::path::Path;
use std::time::Duration;

use moat_types::arm::TokenResponse;
pub use reqwest::Method;
use reqwest::{StatusCode, header};
use serde::{Deserialize, Serialize};

/// A ready-to-use client profile: where moat is and how to sign in. `moat serve` writes one
/// for the administrator into its data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// Base URL of the moat installation, e.g. `http://127.0.0.1:7700`.
    pub endpoint: String,
    pub tenant_id: String,
    pub subscription_id: String,
    /// Resource group used when a command is given none.
    pub resource_group: String,
    /// Service principal sign-in: the application (client) ID and its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// User sign-in: the user principal name and the access token `moat login` obtained (the
    /// password is never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Unix time at which `access_token` expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<i64>,
    /// PEM file of the certificate authority to trust for an `https://` endpoint (moat's local
    /// CA, which `moat serve` writes into the profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, ClientError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ClientError::Profile(format!("cannot read the profile {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| ClientError::Profile(format!("the profile {} is invalid: {e}", path.display())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request; `code` is its error code.
    #[error("{message} (code: {code}, HTTP {status})")]
    Api { status: u16, code: String, message: String, target: Option<String> },
    #[error("cannot reach moat at {endpoint}: {cause}")]
    Transport { endpoint: String, cause: String },
    /// The TLS handshake with `endpoint` failed (its certificate is not trusted, or names
    /// another host): unlike a dropped connection, trying again cannot help.
    #[error("cannot reach moat at {endpoint}: {cause}")]
    Tls { endpoint: String, cause: String },
    #[error("{0}")]
    Profile(String),
    #[error("unexpected response from moat: {0}")]
    Decode(String),
    #[error("{0}")]
    Timeout(String),
    /// A local file could not be read or written.
    #[error("{0}")]
    Local(String),
    /// Bytes did not match the digest they were meant to have.
    #[error("{0}")]
    Integrity(String),
}

/// A decoded response.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub etag: Option<String>,
    pub async_operation: Option<String>,
    pub location: Option<String>,
    pub body: serde_json::Value,
}

pub const AUDIENCE_MANAGEMENT: &str = "api://moat/management";
pub const AUDIENCE_ML: &str = "api://moat/ml";

/// A client bound to a profile. It fetches a token on first use and reuses it.
pub struct Client {
    http: reqwest::Client,
    profile: Profile,
    token: tokio::sync::Mutex<Option<String>>,
    /// The address in a virtual network this client calls from, if any.
    source: Option<std::net::IpAddr>,
    /// The private endpoints usable from `source`, learned on first use.
    routes: tokio::sync::OnceCell<routes::Routes>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.profile.endpoint).finish_non_exhaustive()
    }
}

fn header_string(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Turns an error body (ARM, AzureML or OAuth2 envelope) into a [`ClientError::Api`].
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    let err = &v["error"];
    let (code, message, target) = if let Some(s) = err.as_str() {
        (s.to_string(), v["error_description"].as_str().unwrap_or(s).to_string(), None)
    } else {
        // AzureML envelopes carry the specific code at the end of the innerError chain.
        let mut code = err["code"].as_str().unwrap_or("").to_string();
        let mut inner = &err["innerError"];
        while let Some(c) = inner["code"].as_str() {
            code = c.to_string();
            inner = &inner["innerError"];
        }
        (code, err["message"].as_str().unwrap_or("").to_string(), err["target"].as_str().map(str::to_string))
    };
    let code = if code.is_empty() { status.canonical_reason().unwrap_or("Error").replace(' ', "") } else { code };
    let message = if message.is_empty() { format!("the server answered {status}") } else { message };
    ClientError::Api { status: status.as_u16(), code, message, target }
}

/// A request to `endpoint` that got no answer: [`ClientError::Tls`] when its TLS handshake
/// failed, with rustls's reason (reqwest's own message says only "error sending request"),
/// [`ClientError::Transport`] otherwise.
pub(crate) fn transport_error(endpoint: &str, e: reqwest::Error) -> ClientError {
    let endpoint = endpoint.to_string();
    match tls_failure(&e) {
        Some(why) => ClientError::Tls { endpoint, cause: format!("{e}: TLS: {why}") },
        None => ClientError::Transport { endpoint, cause: e.to_string() },
    }
}

/// The TLS error behind a failed request, if that is what failed it. rustls reports it inside
/// I/O errors (nested), whose own `source` skips what they wrap, so each is opened.
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        if let Some(t) = s.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        next = match s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => s.source(),
        };
    }
    None
}

/// TLS that trusts exactly the certificate authority in the PEM file `ca` (moat's local CA).
fn tls_trusting(ca: &str) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: String| ClientError::Profile(format!("the CA certificate {ca}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

fn http_client(endpoint: &str, source: Option<std::net::IpAddr>) -> Result<reqwest::Client, ClientError> {
    http_client_trusting(endpoint, source, None)
}

/// Makes ring the process's TLS crypto provider (once); reqwest needs one before it builds a
/// client, even for plain HTTP.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn http_client_trusting(endpoint: &str, source: Option<std::net::IpAddr>, ca: Option<&str>) -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca {
        builder = builder.use_preconfigured_tls(tls_trusting(ca)?);
    }
    builder
        .timeout(Duration::from_secs(120))
        .local_address(source)
        .build()
        .map_err(|e| ClientError::Transport { endpoint: endpoint.to_string(), cause: e.to_string() })
}

async fn request_token(
    http: &reqwest::Client,
    endpoint: &str,
    tenant: &str,
    form: &[(&str, &str)],
    audience: &str,
) -> Result<TokenResponse, ClientError> {
    let scope = format!("{audience}/.default");
    let mut form: Vec<(&str, &str)> = form.to_vec();
    form.push(("scope", &scope));
    let url = format!("{}/{tenant}/oauth2/v2.0/token", endpoint.trim_end_matches('/'));
    let transport = |e: reqwest::Error| transport_error(endpoint, e);
    let resp = http.post(url).form(&form).send().await.map_err(transport)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(transport)?;
    if !status.is_success() {
        return Err(api_error(status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Fetches a JSON document without credentials (OpenID metadata, JWKS of trusted issuers).
pub async fn fetch_json(url: &str) -> Result<serde_json::Value, ClientError> {
    let http = http_client(url, None)?;
    let transport = |e: reqwest::Error| transport_error(url, e);
    let resp = http.get(url).timeout(Duration::from_secs(10)).send().await.map_err(transport)?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(transport)?;
    if !status.is_success() {
        return Err(api_error(status, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Signs a user in with the `password` grant; the token is for the management audience.
pub async fn login_user(
    endpoint: &str,
    tenant: &str,
    username: &str,
    password: &str,
    ca: Option<&str>,
) -> Result<TokenResponse, ClientError> {
    let http = http_client_trusting(endpoint, None, ca)?;
    request_token(
        &http,
        endpoint,
        tenant,
        &[("grant_type", "password"), ("username", username), ("password", password)],
        AUDIENCE_MANAGEMENT,
    )
    .await
}

/// Checks service principal credentials by exchanging them for a token.
pub async fn login_service_principal(
    endpoint: &str,
    tenant: &str,
    app_id: &str,
    secret: &str,
    ca: Option<&str>,
) -> Result<TokenResponse, ClientError> {
    let http = http_client_trusting(endpoint, None, ca)?;
    request_token(
        &http,
        endpoint,
        tenant,
        &[("grant_type", "client_credentials"), ("client_id", app_id), ("client_secret", secret)],
        AUDIENCE_MANAGEMENT,
    )
    .await
}

impl Client {
    pub fn new(profile: Profile) -> Result<Client, ClientError> {
        let http = http_client_trusting(&profile.endpoint, None, profile.ca_certificate.as_deref())?;
        Ok(Client { http, profile, token: tokio::sync::Mutex::new(None), source: None, routes: tokio::sync::OnceCell::new() })
    }

    /// Calls from `source`, an address in a virtual network (loopback mode: an address of the
    /// network's 127.x range). Data-plane requests then go through the network's approved
    /// private endpoints where there are some.
    pub fn with_source(mut self, source: std::net::IpAddr) -> Result<Client, ClientError> {
        self.http = http_client_trusting(&self.profile.endpoint, Some(source), self.profile.ca_certificate.as_deref())?;
        self.source = Some(source);
        Ok(self)
    }

    /// The source address this client calls from, if one was set.
    pub fn source(&self) -> Option<std::net::IpAddr> {
        self.source
    }

    /// The private endpoints usable from the source address (none without one).
    pub async fn routes(&self) -> Result<&routes::Routes, ClientError> {
        self.routes
            .get_or_try_init(|| async {
                let sub = format!("/subscriptions/{}/providers/Microsoft.Network", self.profile.subscription_id);
                let vnets = self.list_direct(&format!("{sub}/virtualNetworks")).await?;
                let endpoints = self.list_direct(&format!("{sub}/privateEndpoints")).await?;
                // An address is local if a socket can be bound to it here.
                let is_local = |ip: std::net::IpAddr| std::net::UdpSocket::bind((ip, 0)).is_ok();
                Ok(routes::Routes::from_lists(self.source, &is_local, &vnets, &endpoints))
            })
            .await
    }

    /// Every item of a management-plane list, following `nextLink`, never routed.
    async fn list_direct(&self, path: &str) -> Result<Vec<serde_json::Value>, ClientError> {
        let mut items = Vec::new();
        let mut next = Some(self.url(path));
        while let Some(url) = next {
            let page = self.send_to(Method::GET, &url, None, &[], None).await?.body;
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            next = page["nextLink"].as_str().map(str::to_string);
        }
        Ok(items)
    }

    /// A blob-plane URL as this client should use it: through the storage account's private
    /// endpoint when the source network has one.
    pub async fn blob_url(&self, url: &str) -> Result<String, ClientError> {
        Ok(self.routes().await?.for_blob_url(url).unwrap_or_else(|| url.to_string()))
    }

    /// The underlying HTTP client (for the blob plane, which authenticates by SAS).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.profile.endpoint.trim_end_matches('/'))
        }
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        transport_error(&self.profile.endpoint, e)
    }

    /// A token of `audience` for the profile: exchanged from the service principal's
    /// credentials, or the one `moat login` stored for a user.
    pub async fn get_token(&self, audience: &str) -> Result<TokenResponse, ClientError> {
        match (&self.profile.client_id, &self.profile.client_secret) {
            (Some(id), Some(secret)) => {
                let form = [("grant_type", "client_credentials"), ("client_id", id.as_str()), ("client_secret", secret.as_str())];
                request_token(&self.http, &self.profile.endpoint, &self.profile.tenant_id, &form, audience).await
            }
            _ => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
                match (&self.profile.access_token, self.profile.expires_on) {
                    (Some(t), Some(exp)) if exp > now + 30 && audience == AUDIENCE_MANAGEMENT => Ok(TokenResponse {
                        token_type: "Bearer".into(),
                        expires_in: exp - now,
                        expires_on: exp,
                        access_token: t.clone(),
                        resource: audience.to_string(),
                    }),
                    (Some(_), Some(exp)) if exp > now + 30 => Err(ClientError::Profile(format!(
                        "this profile holds a token for {AUDIENCE_MANAGEMENT} only; sign in again with `moat login`"
                    ))),
                    _ => Err(ClientError::Profile("the sign-in of this profile has expired or is missing; run `moat login`".into())),
                }
            }
        }
    }

    async fn bearer(&self) -> Result<String, ClientError> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            return Ok(t.clone());
        }
        let t = self.get_token(AUDIENCE_MANAGEMENT).await?.access_token;
        *guard = Some(t.clone());
        Ok(t)
    }

    /// Sends a request with the profile's token; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<ApiResponse, ClientError> {
        let url = match routes::is_data_plane_path(path) {
            true => match self.routes().await?.for_path(path) {
                Some(base) => format!("{base}{path}"),
                None => self.url(path),
            },
            false => self.url(path),
        };
        self.send_to(method, &url, body, headers, None).await
    }

    /// [`Client::send`] of a management-plane request that the server may take long to answer
    /// (a garbage collection of a large store): waits up to `wait` instead of the usual two
    /// minutes.
    pub async fn send_waiting(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        wait: Duration,
    ) -> Result<ApiResponse, ClientError> {
        self.send_to(method, &self.url(path), body, &[], Some(wait)).await
    }

    /// Sends a request to `url` as given (no private endpoint routing), waiting up to `wait` for
    /// the answer (the client's default without).
    async fn send_to(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
        wait: Option<Duration>,
    ) -> Result<ApiResponse, ClientError> {
        let token = self.bearer().await?;
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(w) = wait {
            req = req.timeout(w);
        }
        if !url.contains("api-version=") {
            req = req.query(&[("api-version", "2025-09-01")]);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header(header::CONTENT_TYPE, "application/json").body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let etag = header_string(&resp, "etag");
        let async_operation = header_string(&resp, "azure-asyncoperation");
        let location = header_string(&resp, "location");
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))?
        };
        Ok(ApiResponse { status: status.as_u16(), etag, async_operation, location, body })
    }

    pub async fn get(&self, path: &str) -> Result<ApiResponse, ClientError> {
        self.send(Method::GET, path, None, &[]).await
    }

    /// Follows `nextLink` and returns every item of a list.
    pub async fn list_all(&self, path: &str) -> Result<Vec<serde_json::Value>, ClientError> {
        let mut items = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(p) = next {
            let page = self.get(&p).await?.body;
            if let Some(v) = page["value"].as_array() {
                items.extend(v.iter().cloned());
            }
            next = page["nextLink"].as_str().map(str::to_string);
        }
        Ok(items)
    }

    /// Polls an `Azure-AsyncOperation` URL until the operation ends; returns its final status.
    pub async fn wait_for_operation(&self, url: &str, timeout: Duration) -> Result<serde_json::Value, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.get(url).await?.body;
            match status["status"].as_str() {
                Some("Succeeded") => return Ok(status),
                Some("Failed") | Some("Canceled") => {
                    return Err(ClientError::Api {
                        status: 200,
                        code: status["error"]["code"].as_str().unwrap_or("OperationFailed").to_string(),
                        message: status["error"]["message"].as_str().unwrap_or("the operation failed").to_string(),
                        target: None,
                    });
                }
                _ => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Timeout(format!("the operation {url} did not finish within {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
