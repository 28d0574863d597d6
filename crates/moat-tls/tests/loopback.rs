//! Real TLS on loopback: a tokio-rustls server using the per-listener resolver, verified by rustls
//! clients (and curl, when installed) that trust only the local CA's `ca.crt`.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use moat_tls::rustls::client::ClientConfig;
use moat_tls::rustls::pki_types::pem::PemObject;
use moat_tls::rustls::pki_types::{CertificateDer, ServerName};
use moat_tls::rustls::{self, CertificateError, RootCertStore, ServerConfig};
use moat_tls::{AlpnProtocol, CertStore, DEFAULT_LEAF_VALIDITY, HTTP1_ONLY, IssuedCert, LocalCa, SanEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const PUBLIC: &str = "public";

fn names(list: &[&str]) -> Vec<SanEntry> {
    list.iter().map(|name| name.parse().unwrap()).collect()
}

/// Serves a fixed HTTP/1.1 response to every TLS connection until the test ends.
async fn serve(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Failed handshakes are the point of several tests; the client reports them.
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

fn client_trusting(ca_pem_file: &Path, protocols: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(protocols)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Offer h2 first, as curl and browsers do: the server must still pick http/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

fn client(ca_pem_file: &Path) -> Arc<ClientConfig> {
    client_trusting(ca_pem_file, rustls::DEFAULT_VERSIONS)
}

struct Response {
    text: String,
    leaf: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
}

/// Connects to `addr` (always loopback) presenting `server_name` as SNI and verification name.
/// A failed handshake is returned as the rustls error behind it, when there is one.
async fn get(addr: SocketAddr, config: Arc<ClientConfig>, server_name: &str) -> Result<Response, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await.map_err(|err| match rustls_error(&err) {
        Some(tls) => format!("{tls:?}"),
        None => format!("not a TLS error: {err}"),
    })?;
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].clone();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(format!("GET / HTTP/1.1\r\nhost: {server_name}\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    tls.read_to_string(&mut text).await.unwrap();
    Ok(Response { text, leaf, alpn })
}

fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn leaf_of(issued: &IssuedCert) -> CertificateDer<'static> {
    issued.certified_key().cert[0].clone()
}

#[tokio::test]
async fn a_client_trusting_only_the_ca_verifies_by_name_and_by_ip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let store = CertStore::new();
    let issued =
        ca.issue(&names(&["localhost", "127.0.0.1", "eastus.api.moat.internal", "abc.blob.moat.internal"]), DEFAULT_LEAF_VALIDITY).unwrap();
    store.set(PUBLIC, issued.certified_key());
    let addr = serve(store.server_config(PUBLIC, HTTP1_ONLY).unwrap()).await;

    for name in ["localhost", "abc.blob.moat.internal", "eastus.api.moat.internal", "127.0.0.1"] {
        let response = get(addr, client(ca.ca_path()), name).await.unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(response.text.starts_with("HTTP/1.1 200 OK\r\n"), "{name}: {}", response.text);
        assert!(response.text.ends_with("\r\n\r\nok\n"));
        assert_eq!(response.leaf, leaf_of(&issued));
        assert_eq!(response.alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
    // TLS 1.2 is still offered for older clients.
    let tls12 = client_trusting(ca.ca_path(), &[&rustls::version::TLS12]);
    assert!(get(addr, tls12, "localhost").await.unwrap().text.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn verification_fails_for_another_root_or_an_uncovered_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = LocalCa::load_or_create(other_dir.path()).unwrap();
    let store = CertStore::new();
    store.set(PUBLIC, ca.issue(&names(&["localhost", "127.0.0.1"]), DEFAULT_LEAF_VALIDITY).unwrap().certified_key());
    let addr = serve(store.server_config(PUBLIC, HTTP1_ONLY).unwrap()).await;

    for name in ["localhost", "127.0.0.1"] {
        let err = get(addr, client(other_ca.ca_path()), name).await.err().unwrap();
        assert_eq!(err, format!("{:?}", rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)), "{name}");
    }
    let err = get(addr, client(ca.ca_path()), "abc.blob.moat.internal").await.err().unwrap();
    assert!(err.starts_with("InvalidCertificate(NotValidForName"), "{err}");
}

#[tokio::test]
async fn a_replaced_certificate_takes_effect_on_the_next_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let store = CertStore::new();
    let addr = serve(store.server_config(PUBLIC, HTTP1_ONLY).unwrap()).await;

    // No certificate yet: the handshake is refused rather than served with something random.
    assert!(get(addr, client(ca.ca_path()), "localhost").await.is_err());

    let first = ca.issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY).unwrap();
    store.set(PUBLIC, first.certified_key());
    assert_eq!(get(addr, client(ca.ca_path()), "localhost").await.unwrap().leaf, leaf_of(&first));
    assert!(get(addr, client(ca.ca_path()), "new.blob.moat.internal").await.is_err());

    // A new storage account appeared: reissue with its name and swap while serving.
    let wanted = names(&["localhost", "new.blob.moat.internal"]);
    assert!(moat_tls::needs_renewal(&first, &wanted, std::time::SystemTime::now()));
    let second = ca.issue(&wanted, DEFAULT_LEAF_VALIDITY).unwrap();
    store.set(PUBLIC, second.certified_key());
    let response = get(addr, client(ca.ca_path()), "new.blob.moat.internal").await.unwrap();
    assert_eq!(response.leaf, leaf_of(&second));
    assert_eq!(get(addr, client(ca.ca_path()), "localhost").await.unwrap().leaf, leaf_of(&second));
}

#[tokio::test]
async fn each_listener_presents_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let store = CertStore::new();
    let endpoint = "pe/abc";
    store.set(PUBLIC, ca.issue(&names(&["localhost"]), DEFAULT_LEAF_VALIDITY).unwrap().certified_key());
    store.set(
        endpoint,
        ca.issue(&names(&["abc.privatelink.blob.moat.internal", "127.0.0.1"]), DEFAULT_LEAF_VALIDITY).unwrap().certified_key(),
    );
    let public = serve(store.server_config(PUBLIC, HTTP1_ONLY).unwrap()).await;
    let private = serve(store.server_config(endpoint, &[AlpnProtocol::Http11, AlpnProtocol::H2]).unwrap()).await;

    assert!(get(public, client(ca.ca_path()), "localhost").await.is_ok());
    assert!(get(public, client(ca.ca_path()), "abc.privatelink.blob.moat.internal").await.is_err());
    // Clients connecting by address send no SNI; the listener's certificate is presented anyway.
    assert!(get(private, client(ca.ca_path()), "127.0.0.1").await.is_ok());
    let response = get(private, client(ca.ca_path()), "abc.privatelink.blob.moat.internal").await.unwrap();
    // The server's preference (http/1.1 first) wins over the client's (h2 first).
    assert_eq!(response.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(get(private, client(ca.ca_path()), "localhost").await.is_err());
}

/// Runs curl against the loopback server; `None` when curl is not installed.
async fn curl(port: u16, cacert: Option<&Path>) -> Option<std::process::Output> {
    let host = "abc.blob.moat.internal";
    let mut command = tokio::process::Command::new("curl");
    command.args(["-sS", "--noproxy", "*", "--max-time", "20", "--resolve", &format!("{host}:{port}:127.0.0.1")]);
    if let Some(cacert) = cacert {
        command.arg("--cacert").arg(cacert);
    }
    command.arg(format!("https://{host}:{port}/"));
    // Only --cacert may decide what curl trusts.
    for var in ["CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        command.env_remove(var);
    }
    match command.output().await {
        Ok(output) => Some(output),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => panic!("running curl: {err}"),
    }
}

#[tokio::test]
async fn curl_trusts_the_server_only_with_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let store = CertStore::new();
    store.set(
        PUBLIC,
        ca.issue(&names(&["localhost", "127.0.0.1", "abc.blob.moat.internal"]), DEFAULT_LEAF_VALIDITY).unwrap().certified_key(),
    );
    let addr = serve(store.server_config(PUBLIC, HTTP1_ONLY).unwrap()).await;

    let Some(trusted) = curl(addr.port(), Some(ca.ca_path())).await else {
        eprintln!("curl not installed; skipping");
        return;
    };
    assert!(trusted.status.success(), "curl --cacert failed: {}", String::from_utf8_lossy(&trusted.stderr));
    assert_eq!(trusted.stdout, b"ok\n");

    let untrusted = curl(addr.port(), None).await.unwrap();
    // 60: "peer certificate cannot be authenticated with known CA certificates".
    assert_eq!(untrusted.status.code(), Some(60), "curl without --cacert: {}", String::from_utf8_lossy(&untrusted.stderr));
}

#[tokio::test]
async fn an_operator_supplied_certificate_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
    let issued = ca.issue(&names(&["registry.example.com"]), DEFAULT_LEAF_VALIDITY).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, &issued.cert_chain_pem).unwrap();
    std::fs::write(&key_path, &issued.key_pem).unwrap();

    let store = CertStore::new();
    store.set(PUBLIC, moat_tls::load_pem_pair(&cert_path, &key_path).unwrap());
    let addr = serve(store.server_config(PUBLIC, HTTP1_ONLY).unwrap()).await;
    assert_eq!(get(addr, client(ca.ca_path()), "registry.example.com").await.unwrap().leaf, leaf_of(&issued));
}
