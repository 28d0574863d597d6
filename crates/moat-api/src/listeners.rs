//! Listeners are data: an address and an origin. The public listener tags its requests
//! `public`; each private endpoint gets a listener of its own, on its allocated address, whose
//! requests carry the endpoint's key as their origin, so that network admission knows exactly
//! where a request came in. The endpoint listeners follow the network view: one opens when an
//! endpoint is created and closes when it is deleted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use moat_core::Moat;
use moat_core::network::{BindingMode, EndpointInfo};
use tower::Layer;

use crate::error::ArmError;

/// The origin of requests from the public listener.
pub const PUBLIC_ORIGIN: &str = "public";

/// Which listener a request came in on: `public`, or the key of a private endpoint.
#[derive(Clone, Debug)]
pub struct ListenerOrigin(pub Arc<str>);

/// The router for one listener: each request is tagged with the listener's origin and (over TLS)
/// its peer address as `ConnectInfo<SocketAddr>`, and its ARM path words canonicalised.
fn app(
    moat: Arc<Moat>,
    origin: Arc<str>,
) -> impl tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible, Future: Send> + Clone + Send + 'static
{
    let zone = moat.config().dns_zone.clone();
    let tag = move |mut req: Request| {
        req.extensions_mut().insert(ListenerOrigin(origin.clone()));
        host_style(&mut req, &zone);
        if let Some(axum::extract::ConnectInfo(TlsPeer(peer))) = req.extensions().get::<axum::extract::ConnectInfo<TlsPeer>>().copied() {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        }
        crate::canonicalize(req)
    };
    tower::util::MapRequestLayer::new(tag).layer(crate::router(moat))
}

/// The host a request was addressed to: an absolute-form target's authority, which wins over
/// `Host` (RFC 9112, 3.2.2; HTTP/2's `:authority` arrives as the URI's), else `Host`.
pub(crate) fn request_host<'a>(uri: &'a axum::http::Uri, headers: &'a axum::http::HeaderMap) -> Option<&'a str> {
    uri.authority().map(|a| a.as_str()).or_else(|| headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()))
}

/// A host-style blob request (`Host: {account}.blob.{zone}`, as Azure's own URLs are, and the
/// locations the data plane answers with) becomes the path-style request it means
/// (`/{account}/{container}/…`), before anything routes it. A path that starts with the account
/// already is path-style under the account's name, and stays as it is.
fn host_style(req: &mut Request, zone: &str) {
    let Some(account) = request_host(req.uri(), req.headers()).and_then(|h| moat_core::registries::account_of_host(h, zone)) else {
        return;
    };
    if req.uri().path().trim_start_matches('/').split('/').next() == Some(account.as_str()) {
        return;
    }
    let path = format!("/{account}{}", req.uri().path());
    crate::set_path(req, &path);
}

/// Turns Nagle's algorithm off on an accepted connection. A response goes out in two writes,
/// its head and then its body; with Nagle on, a body's small last segment (all of a small
/// Get Blob's body) waited for the client's delayed ACK of the head: ~40 ms on Linux, which
/// was most of a small download's time.
fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// A plain TCP listener whose connections have [`no_delay`].
fn plain(listener: tokio::net::TcpListener) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    axum::serve::ListenerExt::tap_io(listener, no_delay as fn(&mut tokio::net::TcpStream))
}

/// Serves the API on `listener` for requests of `origin` until `shutdown` resolves, then
/// drains in-flight requests.
pub async fn serve_origin(
    listener: tokio::net::TcpListener,
    moat: Arc<Moat>,
    origin: Arc<str>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(plain(listener), axum::ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app(moat, origin)))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A TLS listener for axum: connections are accepted and their handshakes run in their own
/// tasks (a slow or broken client never holds up the others); finished ones are handed over.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: tokio::net::TcpListener, config: Arc<moat_tls::rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // When the server stops (its receiver is dropped), stop accepting and let the
                // socket close, so that a closed listener really is closed.
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = tx.closed() => break,
                };
                let (mut tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                no_delay(&mut tcp);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor is gone: nothing will ever arrive.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The peer address of a TLS connection (axum's own `ConnectInfo<SocketAddr>` covers plain TCP
/// listeners only); turned into `ConnectInfo<SocketAddr>` before routing, so handlers see one type.
#[derive(Clone, Copy, Debug)]
pub struct TlsPeer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        TlsPeer(*stream.remote_addr())
    }
}

/// Like [`serve_origin`], over TLS.
pub async fn serve_origin_tls(
    listener: TlsListener,
    moat: Arc<Moat>,
    origin: Arc<str>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, axum::ServiceExt::<Request>::into_make_service_with_connect_info::<TlsPeer>(app(moat, origin)))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whether a private endpoint's listener serves `path` at all: identity (like Entra ID, always
/// reachable), discovery, the registry's asset operations and the blob plane. Which resource
/// and plane it may reach is network admission's decision; management requests go to the
/// public listener, as ARM stays reachable from everywhere.
pub fn endpoint_serves(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if crate::blob::is_blob_path(path)
        || lower == "/healthz"
        || lower.starts_with("/registrymanagement/")
        || lower == "/v2"
        || lower.starts_with("/v2/")
        || lower == "/oauth2/token"
        || lower.ends_with("/oauth2/v2.0/token")
        || lower.ends_with("/.well-known/openid-configuration")
        || lower.ends_with("/discovery/v2.0/keys")
    {
        return true;
    }
    // …/providers/Microsoft.MachineLearningServices/registries/{r}/{assets}/…
    let segs: Vec<&str> = lower.split('/').collect();
    segs.windows(4).any(|w| {
        w[0] == "microsoft.machinelearningservices"
            && w[1] == "registries"
            && matches!(w[3], "models" | "data" | "codes" | "components" | "environments" | "datareferences" | "tempdatarefs" | "datarefs")
    })
}

/// Refuses, on a private endpoint's listener, what it does not serve.
pub fn endpoint_gate(req: &Request) -> Option<Response> {
    let origin = req.extensions().get::<ListenerOrigin>().map(|o| o.0.clone());
    match origin {
        Some(o) if &*o != PUBLIC_ORIGIN && !endpoint_serves(req.uri().path()) => Some(ArmError::http(
            StatusCode::FORBIDDEN,
            "NotServedByPrivateEndpoint",
            None,
            format!(
                "This listener is private endpoint '{o}', which serves only its target's data plane (asset operations, discovery or blobs). \
                 Send management requests ('{}') to moat's public endpoint.",
                req.uri().path()
            ),
        )
        .into_response()),
        _ => None,
    }
}

struct Running {
    ip: IpAddr,
    /// The namespace it lives in (namespace mode), whose loopback holds its address.
    namespace: Option<String>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    fn close(self, key: &str, moat: &Moat) {
        let _ = self.stop.send(());
        moat.set_listener_url(key, None);
        if let Some(ns) = &self.namespace {
            crate::netns::remove_address(ns, self.ip);
        }
        tracing::info!(endpoint = %key, "private endpoint listener closed");
    }
}

/// Opens and closes private endpoint listeners as the network view changes, until `stop`.
/// Each listener binds its endpoint's address on `port` (the public listener's), or on a port
/// the system picks when that one is taken; `serviceUrl` reports where.
/// TLS for the listeners moat opens itself, when the public listener serves TLS: the local CA
/// issues each endpoint listener a certificate for its address; the public surface inside a
/// namespace presents the public listener's certificate (stored as `public`).
#[derive(Clone)]
pub struct ListenerTls {
    pub ca: Arc<moat_tls::LocalCa>,
    pub store: Arc<moat_tls::CertStore>,
    /// What the public listener's certificate names whatever the network view (its addresses,
    /// localhost, the public URL's host, the zone's one-label wildcards).
    pub public_names: Vec<moat_tls::SanEntry>,
    /// Each listener's current certificate and the names it was issued for, for renewal.
    pub issued: Arc<std::sync::Mutex<HashMap<String, Issued>>>,
    /// The public listener presents the operator's certificate: moat neither renews nor
    /// reissues it.
    pub operator_public: bool,
}

/// A listener's certificate and the names it was asked for.
pub type Issued = (moat_tls::IssuedCert, Vec<moat_tls::SanEntry>);

impl ListenerTls {
    pub fn new(ca: moat_tls::LocalCa, public_names: Vec<moat_tls::SanEntry>) -> Self {
        ListenerTls {
            ca: Arc::new(ca),
            store: moat_tls::CertStore::new(),
            public_names,
            issued: Default::default(),
            operator_public: false,
        }
    }

    /// Has the public listener present `cert` (the operator's) from now on.
    pub fn use_operator_public(&mut self, cert: Arc<moat_tls::rustls::sign::CertifiedKey>) {
        self.store.set("public", cert);
        if let Ok(mut map) = self.issued.lock() {
            map.remove("public");
        }
        self.operator_public = true;
    }

    /// Issues listener `key` a certificate for `sans` and serves it from now on.
    pub fn issue(&self, key: &str, sans: &[moat_tls::SanEntry]) -> Result<(), moat_tls::TlsError> {
        let issued = self.ca.issue(sans, moat_tls::DEFAULT_LEAF_VALIDITY)?;
        self.store.set(key, issued.certified_key());
        if let Ok(mut map) = self.issued.lock() {
            map.insert(key.to_string(), (issued, sans.to_vec()));
        }
        Ok(())
    }

    /// Reissues every certificate due at `now` (a third of its lifetime left); returns how many.
    pub fn renew_due_at(&self, now: std::time::SystemTime) -> usize {
        let due: Vec<(String, Vec<moat_tls::SanEntry>)> = match self.issued.lock() {
            Ok(map) => map
                .iter()
                .filter(|(_, (c, want))| moat_tls::needs_renewal(c, want, now))
                .map(|(k, (_, w))| (k.clone(), w.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut renewed = 0;
        for (key, sans) in due {
            match self.issue(&key, &sans) {
                Ok(()) => {
                    renewed += 1;
                    tracing::info!(listener = %key, "certificate renewed");
                }
                Err(e) => tracing::error!(listener = %key, error = %e, "cannot renew a certificate"),
            }
        }
        renewed
    }

    /// The public certificate's names for `view`: the fixed ones, and each region's registry
    /// host wildcard (`*.registry.<region>.api.<zone>`), which no one-label wildcard covers.
    fn public_sans(&self, view: &moat_core::network::NetView) -> Vec<moat_tls::SanEntry> {
        let mut sans = self.public_names.clone();
        for r in view.regions() {
            if let Ok(s) = moat_tls::SanEntry::dns(&format!("*.registry.{r}.api.{}", view.dns.zone)) {
                sans.push(s);
            }
        }
        sans.sort();
        sans.dedup();
        sans
    }

    /// Reissues the public certificate when the names it must carry changed.
    fn refresh_public(&self, view: &moat_core::network::NetView, issued_for: &mut Vec<moat_tls::SanEntry>) {
        if self.operator_public {
            return;
        }
        let wanted = self.public_sans(view);
        if *issued_for == wanted {
            return;
        }
        match self.issue("public", &wanted) {
            Ok(()) => {
                tracing::info!(names = wanted.len(), "public certificate reissued for changed names");
                *issued_for = wanted;
            }
            Err(e) => tracing::error!(error = %e, "cannot reissue the public certificate"),
        }
    }

    /// The TLS configuration of listener `key`; for an endpoint (`ip`), a certificate naming its
    /// address and its target's DNS names (public and privatelink forms), so that clients reach
    /// it by name with verification.
    fn config_for(&self, key: &str, ip: Option<IpAddr>, names: &[String]) -> std::io::Result<Arc<moat_tls::rustls::ServerConfig>> {
        if let Some(ip) = ip {
            let mut sans = vec![moat_tls::SanEntry::from(ip)];
            for n in names {
                match moat_tls::SanEntry::dns(n) {
                    Ok(s) => sans.push(s),
                    Err(e) => tracing::warn!(name = %n, error = %e, "a name left out of an endpoint's certificate"),
                }
            }
            self.issue(key, &sans).map_err(std::io::Error::other)?;
        }
        self.store.server_config(key, moat_tls::HTTP1_ONLY).map_err(std::io::Error::other)
    }
}

pub async fn run_endpoint_listeners(
    moat: Arc<Moat>,
    port: u16,
    dns: Arc<crate::dns::Dns>,
    tls: Option<ListenerTls>,
    allow_plain_http_on_network: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut changes = moat.network_changes();
    let mut running: HashMap<String, Running> = HashMap::new();
    // The public surface inside each namespace-mode network, by namespace.
    let mut ns_public: HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>> = HashMap::new();
    // Namespaces this process created (others were made by the operator and stay).
    let mut created: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Certificates are checked for renewal hourly (they are renewed with a third of their
    // lifetime left, so days ahead).
    let mut renewal = tokio::time::interval(std::time::Duration::from_secs(3600));
    renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut public_sans = tls.as_ref().map(|t| {
        let mut s = t.public_names.clone();
        s.sort();
        s.dedup();
        s
    });
    loop {
        let view = changes.borrow_and_update().clone();
        if let (Some(t), Some(issued_for)) = (&tls, public_sans.as_mut()) {
            t.refresh_public(&view, issued_for);
        }
        let wanted: HashMap<&str, &EndpointInfo> = view.endpoints().iter().map(|e| (e.key.as_str(), e)).collect();
        let gone: Vec<String> =
            running.iter().filter(|(key, r)| wanted.get(key.as_str()).is_none_or(|e| e.ip != r.ip)).map(|(k, _)| k.clone()).collect();
        for key in gone {
            if let Some(r) = running.remove(&key) {
                r.close(&key, &moat);
            }
        }
        ns_public.retain(|ns, _| view.namespaces().contains(ns));
        // Namespaces moat made itself go when their network goes.
        for ns in created.iter().filter(|ns| !view.namespaces().contains(ns)).cloned().collect::<Vec<_>>() {
            let n = ns.clone();
            let _ = tokio::task::spawn_blocking(move || crate::netns::delete(&n)).await;
            created.remove(&ns);
            tracing::info!(namespace = %ns, "network namespace deleted");
        }
        for ns in view.namespaces() {
            if ns_public.contains_key(ns) {
                continue;
            }
            if !crate::netns::exists(ns) {
                let n = ns.clone();
                match tokio::task::spawn_blocking(move || crate::netns::create(&n)).await.map_err(std::io::Error::other).and_then(|r| r) {
                    Ok(()) => {
                        created.insert(ns.clone());
                        // `ip netns exec` mounts this over /etc/resolv.conf: processes there
                        // resolve through moat's DNS inside the namespace.
                        let conf = std::path::Path::new("/etc/netns").join(ns);
                        if let Err(e) =
                            std::fs::create_dir_all(&conf).and_then(|()| std::fs::write(conf.join("resolv.conf"), "nameserver 127.0.0.1\n"))
                        {
                            tracing::warn!(namespace = %ns, error = %e, "cannot write the namespace's resolv.conf");
                        }
                        tracing::info!(namespace = %ns, "network namespace created");
                    }
                    Err(err) => {
                        tracing::error!(namespace = %ns, error = %err, "cannot create the network namespace");
                        continue;
                    }
                }
            }
            let mut stops = Vec::new();
            match open_public_in(&moat, ns, port, tls.as_ref()).await {
                Ok(stop) => stops.push(stop),
                Err(err) => tracing::error!(namespace = %ns, error = %err, "cannot serve inside the network namespace"),
            }
            let vnet_view = view.dns.namespace_views.iter().find(|(n, _)| n == ns).map(|(_, v)| v.clone());
            match open_dns_in(&dns, ns, vnet_view).await {
                Ok(stop) => stops.push(stop),
                Err(err) => tracing::error!(namespace = %ns, error = %err, "cannot serve DNS inside the network namespace"),
            }
            ns_public.insert(ns.clone(), stops);
        }
        for (key, e) in wanted {
            if running.contains_key(key) {
                continue;
            }
            match open(&moat, e, port, tls.as_ref(), allow_plain_http_on_network).await {
                Ok(r) => {
                    running.insert(key.to_string(), r);
                }
                Err(err) => {
                    tracing::error!(endpoint = %key, address = %e.ip, error = %err, "cannot open the private endpoint listener");
                    let hint = match e.mode {
                        BindingMode::Host if err.kind() != std::io::ErrorKind::PermissionDenied => {
                            " (a host-mode network's endpoint addresses must be on one of this host's interfaces)"
                        }
                        _ => "",
                    };
                    moat.set_listener_url(key, Some(Err(format!("cannot listen on {}: {err}{hint}", e.ip))));
                }
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
            _ = renewal.tick() => {
                if let Some(t) = &tls {
                    t.renew_due_at(std::time::SystemTime::now());
                }
            }
        }
    }
    for (key, r) in running {
        r.close(&key, &moat);
    }
    for stop in ns_public.into_values().flatten() {
        let _ = stop.send(());
    }
    // Namespaces outlive the process, like the networks they stand for.
    drop(created);
}

/// Serves `listener` for `origin` in the background until the returned sender fires (or drops).
fn spawn_serving(
    moat: &Arc<Moat>,
    listener: tokio::net::TcpListener,
    origin: &str,
    tls: Option<Arc<moat_tls::rustls::ServerConfig>>,
) -> std::io::Result<tokio::sync::oneshot::Sender<()>> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let m = Arc::clone(moat);
    let origin: Arc<str> = Arc::from(origin);
    let o = origin.clone();
    let shutdown = async move {
        let _ = rx.await;
    };
    match tls {
        Some(config) => {
            let l = TlsListener::new(listener, config)?;
            tokio::spawn(async move {
                if let Err(err) = serve_origin_tls(l, m, origin, shutdown).await {
                    tracing::error!(origin = %o, error = %err, "listener failed");
                }
            });
        }
        None => {
            tokio::spawn(async move {
                if let Err(err) = serve_origin(listener, m, origin, shutdown).await {
                    tracing::error!(origin = %o, error = %err, "listener failed");
                }
            });
        }
    }
    Ok(tx)
}

/// Binds `ip:port` (else `ip:0`), in `namespace` if given.
async fn bind(namespace: Option<&str>, ip: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    match namespace {
        None => match tokio::net::TcpListener::bind((ip, port)).await {
            Ok(l) => Ok(l),
            Err(_) => tokio::net::TcpListener::bind((ip, 0)).await,
        },
        Some(ns) => {
            let ns = ns.to_string();
            let std_listener = tokio::task::spawn_blocking(move || {
                crate::netns::bind_in(&ns, SocketAddr::new(ip, port)).or_else(|_| crate::netns::bind_in(&ns, SocketAddr::new(ip, 0)))
            })
            .await
            .map_err(std::io::Error::other)??;
            tokio::net::TcpListener::from_std(std_listener)
        }
    }
}

/// moat's DNS inside a namespace, on its 127.0.0.1:53: every query there is in the network's view.
async fn open_dns_in(dns: &Arc<crate::dns::Dns>, ns: &str, view: Option<String>) -> std::io::Result<tokio::sync::oneshot::Sender<()>> {
    let n = ns.to_string();
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 53);
    let (udp, tcp) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        Ok((crate::netns::bind_udp_in(&n, addr)?, crate::netns::bind_in(&n, addr)?))
    })
    .await
    .map_err(std::io::Error::other)??;
    let udp = tokio::net::UdpSocket::from_std(udp)?;
    let tcp = tokio::net::TcpListener::from_std(tcp)?;
    tracing::info!(namespace = %ns, "DNS open inside the network namespace on 127.0.0.1:53");
    Ok(dns.spawn(udp, tcp, moat_dns::ViewSelector::Fixed(view)))
}

/// moat's public surface inside a namespace, on its 127.0.0.1: requests there come from the
/// public network, as far as admission is concerned.
async fn open_public_in(
    moat: &Arc<Moat>,
    ns: &str,
    port: u16,
    tls: Option<&ListenerTls>,
) -> std::io::Result<tokio::sync::oneshot::Sender<()>> {
    let n = ns.to_string();
    tokio::task::spawn_blocking(move || crate::netns::loopback_up(&n)).await.map_err(std::io::Error::other)??;
    let listener = bind(Some(ns), IpAddr::from([127, 0, 0, 1]), port).await?;
    let addr = listener.local_addr()?;
    if addr.port() != port {
        tracing::warn!(namespace = %ns, %addr, "the public port is taken inside the namespace; clients there must use this address");
    }
    tracing::info!(namespace = %ns, %addr, "public listener open inside the network namespace");
    let config = tls.map(|t| t.config_for("public", None, &[])).transpose()?;
    spawn_serving(moat, listener, PUBLIC_ORIGIN, config)
}

async fn open(moat: &Arc<Moat>, e: &EndpointInfo, port: u16, tls: Option<&ListenerTls>, allow_plain: bool) -> std::io::Result<Running> {
    // Tokens must not cross a network in clear: without TLS, only loopback endpoints listen.
    if tls.is_none() && !e.ip.is_loopback() && !allow_plain {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "plain HTTP on {}, which is not a loopback address, is refused: turn on tls (or set allow_plain_http_on_network = true if the network is trusted)",
                e.ip
            ),
        ));
    }
    let namespace = match e.mode {
        BindingMode::Namespace => {
            let ns = e.namespace.clone().unwrap_or_default();
            let (n, ip) = (ns.clone(), e.ip);
            tokio::task::spawn_blocking(move || crate::netns::add_address(&n, ip)).await.map_err(std::io::Error::other)??;
            Some(ns)
        }
        _ => None,
    };
    let listener = bind(namespace.as_deref(), e.ip, port).await?;
    let addr = listener.local_addr()?;
    let names = moat.network().tls_names_of(&e.target_key);
    let config = tls.map(|t| t.config_for(&e.key, Some(e.ip), &names)).transpose()?;
    let scheme = if config.is_some() { "https" } else { "http" };
    let stop = spawn_serving(moat, listener, &e.key, config)?;
    moat.set_listener_url(&e.key, Some(Ok(format!("{scheme}://{addr}"))));
    tracing::info!(endpoint = %e.key, %addr, namespace = namespace.as_deref().unwrap_or("-"), "private endpoint listener open");
    Ok(Running { ip: e.ip, namespace, stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_renewed_when_a_third_of_their_life_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ListenerTls::new(moat_tls::LocalCa::load_or_create(dir.path()).unwrap(), vec![]);
        let sans = vec![moat_tls::SanEntry::from(IpAddr::from([10, 0, 0, 4])), moat_tls::SanEntry::dns("a.cr.moat.internal").unwrap()];
        tls.issue("pe", &sans).unwrap();
        let first = tls.store.get("pe").unwrap();
        let now = std::time::SystemTime::now();
        assert_eq!(tls.renew_due_at(now), 0, "a fresh certificate is not due");
        assert!(Arc::ptr_eq(&first, &tls.store.get("pe").unwrap()));
        let later = now + moat_tls::DEFAULT_LEAF_VALIDITY * 3 / 4;
        assert_eq!(tls.renew_due_at(later), 1);
        let renewed = tls.store.get("pe").unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed), "the listener now serves a new certificate");
        assert_eq!(tls.issued.lock().unwrap()["pe"].1, sans, "for the same names");
    }

    #[tokio::test]
    #[allow(clippy::disallowed_methods)] // the test's client connects to its own listener
    async fn accepted_connections_send_small_writes_at_once() {
        use axum::serve::Listener;
        let bound = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = bound.local_addr().unwrap();
        let mut listener = plain(bound);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await;
        assert!(tcp.nodelay().unwrap(), "a plain listener's connection has Nagle's algorithm off");

        // Over TLS: the handshake runs on the accepted connection, which is handed over after it.
        let dir = tempfile::tempdir().unwrap();
        let ca = moat_tls::LocalCa::load_or_create(dir.path()).unwrap();
        let ca_der = ca.ca_der().clone();
        let tls = ListenerTls::new(ca, vec![]);
        tls.issue("t", &[moat_tls::SanEntry::from(IpAddr::from([127, 0, 0, 1]))]).unwrap();
        let config = tls.store.server_config("t", moat_tls::HTTP1_ONLY).unwrap();
        let bound = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = bound.local_addr().unwrap();
        let mut listener = TlsListener::new(bound, config).unwrap();
        let mut roots = moat_tls::rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let client = moat_tls::rustls::ClientConfig::builder_with_provider(Arc::new(moat_tls::rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = moat_tls::rustls::pki_types::ServerName::from(IpAddr::from([127, 0, 0, 1]));
        let handshake = tokio::spawn(async move { connector.connect(name, tokio::net::TcpStream::connect(addr).await.unwrap()).await });
        let (tls_stream, _) = listener.accept().await;
        assert!(tls_stream.get_ref().0.nodelay().unwrap(), "a TLS listener's connection has Nagle's algorithm off");
        handshake.await.unwrap().unwrap();
    }

    #[test]
    fn endpoint_listeners_serve_data_planes_only() {
        let reg = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/registries/r";
        for served in [
            format!("{reg}/models/m/versions/1"),
            format!("{reg}/models"),
            format!("{reg}/datareferences/m/versions/1"),
            format!("/mferp/managementfrontend{reg}/models/m/versions/1"),
            format!("/mferp/managementfrontend{reg}/tempdatarefs/m/versions/1"),
            format!("/mferp/managementfrontend{reg}/datarefs/m/versions/1"),
            "/registrymanagement/v1.0/registries/r/discovery".to_string(),
            "/0123456789a/container/blob".to_string(),
            "/oauth2/v2.0/token".to_string(),
            "/healthz".to_string(),
        ] {
            assert!(endpoint_serves(&served), "{served}");
        }
        for refused in [
            reg.to_string(),
            format!("{reg}/privateEndpointConnections"),
            "/subscriptions/s/resourceGroups/g".to_string(),
            "/v1.0/users".to_string(),
            "/subscriptions/s/providers/Microsoft.Insights/eventtypes/management/values".to_string(),
        ] {
            assert!(!endpoint_serves(&refused), "{refused}");
        }
    }
}
