//! Which certificate each listener presents, replaceable while serving, and the rustls server
//! configuration that presents it.
//!
//! A listener's `ServerConfig` is built once; it asks the store for the listener's certificate on
//! every handshake, so renewing or reissuing a certificate is one [`CertStore::set`] and never
//! needs the listener restarted. The certificate does not depend on SNI: private endpoint
//! clients often connect by IP address and send none.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, crypto::ring as provider, version};

use crate::TlsError;

/// An application protocol offered in TLS ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlpnProtocol {
    /// `http/1.1`.
    Http11,
    /// `h2`. Offer it only on listeners whose server really speaks HTTP/2: a client that
    /// negotiates h2 will not fall back.
    H2,
}

impl AlpnProtocol {
    /// The protocol's ALPN identifier.
    pub fn id(self) -> &'static [u8] {
        match self {
            Self::Http11 => b"http/1.1",
            Self::H2 => b"h2",
        }
    }
}

/// What moat's HTTP listeners speak today.
pub const HTTP1_ONLY: &[AlpnProtocol] = &[AlpnProtocol::Http11];

/// The current certificate of every TLS listener, keyed by a listener key chosen by the caller
/// (for example `public` or the private endpoint's resource id).
#[derive(Default)]
pub struct CertStore {
    certs: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let certs = self.certs.read().unwrap_or_else(PoisonError::into_inner);
        let mut listeners: Vec<&String> = certs.keys().collect();
        listeners.sort();
        f.debug_struct("CertStore").field("listeners", &listeners).finish()
    }
}

impl CertStore {
    /// An empty store, shared between the listeners and whoever renews certificates.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes `cert` the certificate `listener` presents from its next handshake on; connections
    /// already established keep theirs.
    pub fn set(&self, listener: &str, cert: Arc<CertifiedKey>) {
        // No code panics while holding the lock, so a poisoned map is still consistent.
        self.certs.write().unwrap_or_else(PoisonError::into_inner).insert(listener.to_owned(), cert);
    }

    /// The certificate `listener` currently presents.
    pub fn get(&self, listener: &str) -> Option<Arc<CertifiedKey>> {
        self.certs.read().unwrap_or_else(PoisonError::into_inner).get(listener).cloned()
    }

    /// Forgets `listener`'s certificate: its handshakes fail until a new one is set.
    pub fn remove(&self, listener: &str) -> Option<Arc<CertifiedKey>> {
        self.certs.write().unwrap_or_else(PoisonError::into_inner).remove(listener)
    }

    /// A rustls certificate resolver that always answers with `listener`'s current certificate.
    pub fn resolver(self: &Arc<Self>, listener: &str) -> Arc<ListenerCertResolver> {
        Arc::new(ListenerCertResolver { store: Arc::clone(self), listener: listener.to_owned() })
    }

    /// A server configuration for `listener`: TLS 1.3 and 1.2, the ring crypto provider, no
    /// client certificates, and `alpn` offered in order of preference (the server's order wins).
    /// Until a certificate is [`set`](Self::set) for the listener, handshakes fail.
    pub fn server_config(self: &Arc<Self>, listener: &str, alpn: &[AlpnProtocol]) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(self.resolver(listener));
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.id().to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Resolves every handshake on one listener to that listener's current certificate.
#[derive(Debug)]
pub struct ListenerCertResolver {
    store: Arc<CertStore>,
    listener: String,
}

impl ResolvesServerCert for ListenerCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.store.get(&self.listener)
    }
}
