//! moat's TLS: the local certificate authority, the server certificates it issues for each
//! listener, operator-supplied certificates, and the rustls server configuration that presents
//! them.
//!
//! - [`ca`] owns the CA directory (`ca.crt`, `ca.key`), issuing server certificates and
//!   deciding when one needs renewal.
//! - [`store`] owns which certificate each listener presents, replaceable while serving, and the
//!   per-listener `rustls::ServerConfig`.
//! - [`operator`] owns loading and checking an operator's own certificate and key.
//! - [`names`] owns the subject alternative names (DNS names and IP addresses).
//!
//! Depends on rustls (ring provider) and rcgen only: no sockets, no tokio. Which names a listener
//! serves, and when to check for renewal, are the caller's business (`moat serve`); this crate
//! issues, stores and serves.

pub mod ca;
mod der;
mod durable;
mod error;
pub mod names;
pub mod operator;
pub mod store;

pub use ca::{CA_CERT_FILE, CA_KEY_FILE, DEFAULT_LEAF_VALIDITY, IssuedCert, LocalCa, needs_renewal};
pub use error::TlsError;
pub use names::{DnsSan, SanEntry};
pub use operator::load_pem_pair;
pub use store::{AlpnProtocol, CertStore, HTTP1_ONLY, ListenerCertResolver};

/// Re-exported so callers name the same rustls types this crate uses.
pub use rustls;
