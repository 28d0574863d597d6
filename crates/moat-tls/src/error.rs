//! The one error type of this crate. Every message names the file or value involved and, where
//! the operator can do something about it, says what.

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

/// Why a CA, certificate or TLS configuration could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file or directory could not be read, created or synced.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "create", "sync", ...).
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The CA key may be read by other users; moat will not use a key that may have leaked.
    #[error("{path} is readable by other users (mode {mode:03o}); run `chmod 600 {path}` and start again")]
    KeyPermissions { path: PathBuf, mode: u32 },

    /// `ca.crt` exists without `ca.key`: a new CA would silently invalidate every client's trust.
    #[error(
        "found {cert_path} but not {key_path}; restore the key from a backup, or move {cert_path} away to create a \
         new local CA (every client must then trust the new ca.crt)"
    )]
    CaKeyMissing { cert_path: PathBuf, key_path: PathBuf },

    /// `ca.crt` and `ca.key` exist but do not form a usable CA together.
    #[error(
        "the local CA in {dir} is unusable: {problem}; restore both ca.crt and ca.key from the same backup, or move \
         the directory away to create a new CA (every client must then trust the new ca.crt)"
    )]
    CaUnusable { dir: PathBuf, problem: String },

    /// The local CA is past its expiry date, so it can no longer issue certificates clients accept.
    #[error(
        "the local CA at {path} expired ({not_after:?}); move its directory away to create a new CA and have every \
         client trust the new ca.crt"
    )]
    CaExpired { path: PathBuf, not_after: SystemTime },

    /// A PEM file could not be decoded.
    #[error("{path} is not valid PEM: {problem}")]
    InvalidPem { path: PathBuf, problem: String },

    /// A certificate file holds no `CERTIFICATE` section.
    #[error("{path} contains no PEM `CERTIFICATE` section; expected the server certificate followed by any intermediates")]
    NoCertificate { path: PathBuf },

    /// A key file holds no private key section.
    #[error("{path} contains no private key; expected a PEM `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` or `RSA PRIVATE KEY` section")]
    NoPrivateKey { path: PathBuf },

    /// A key was found but is not one rustls can sign with (or is malformed, or encrypted).
    #[error(
        "{path} holds a private key that cannot be used ({problem}); supported keys are unencrypted ECDSA P-256/P-384, \
         Ed25519 and RSA ≥ 2048 bits"
    )]
    UnsupportedKey { path: PathBuf, problem: String },

    /// The private key does not belong to the certificate.
    #[error(
        "the private key in {key_path} does not match the certificate in {cert_path}; check that both files come from the same issuance"
    )]
    KeyMismatch { cert_path: PathBuf, key_path: PathBuf },

    /// The certificate in a file could not be parsed as X.509.
    #[error("{path} holds a certificate that cannot be parsed: {problem}")]
    InvalidCertificate { path: PathBuf, problem: String },

    /// A subject alternative name is neither a valid DNS name nor an IP address.
    #[error("{name:?} cannot be used in a certificate: {problem}")]
    InvalidName { name: String, problem: &'static str },

    /// A certificate was requested for no names at all.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoNames,

    /// A certificate was requested with a zero validity period.
    #[error("a certificate's validity period must be longer than zero")]
    ZeroValidity,

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed; keys and serial numbers cannot be generated without it")]
    Randomness,

    /// rcgen refused to build or sign a certificate.
    #[error("could not generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),

    /// rustls refused a configuration or a certificate/key pair.
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}
