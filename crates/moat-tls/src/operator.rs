//! Certificates supplied by the operator instead of the local CA: a PEM certificate chain and its
//! private key, checked once at start-up so that a wrong file fails loudly there rather than in
//! every client's handshake.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};

use crate::TlsError;

/// Loads an operator's certificate chain (server certificate first, then intermediates) and its
/// private key (PKCS#8, SEC1 or PKCS#1 RSA; unencrypted). Both may be the same file. Refuses a
/// key that does not belong to the certificate.
pub fn load_pem_pair(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = fs::read(cert_path).map_err(|err| TlsError::io("read", cert_path, err))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::InvalidPem { path: cert_path.to_owned(), problem: err.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned() });
    }

    let key_pem = fs::read(key_path).map_err(|err| TlsError::io("read", key_path, err))?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) if contains(&key_pem, b"ENCRYPTED") => {
            return Err(TlsError::UnsupportedKey {
                path: key_path.to_owned(),
                problem: format!("it is encrypted; decrypt it first, e.g. `openssl pkey -in {0} -out {0}.plain`", key_path.display()),
            });
        }
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoPrivateKey { path: key_path.to_owned() }),
        Err(err) => return Err(TlsError::InvalidPem { path: key_path.to_owned(), problem: err.to_string() }),
    };
    let signing_key = provider::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|err| TlsError::UnsupportedKey { path: key_path.to_owned(), problem: err.to_string() })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key cannot state its public half; rustls itself accepts such keys.
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(Arc::new(certified)),
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { cert_path: cert_path.to_owned(), key_path: key_path.to_owned() })
        }
        Err(err) => Err(TlsError::InvalidCertificate { path: cert_path.to_owned(), problem: err.to_string() }),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::Duration;

    use super::*;
    use crate::{LocalCa, SanEntry};

    struct Files {
        _dir: tempfile::TempDir,
        cert: PathBuf,
        key: PathBuf,
        other_key: PathBuf,
    }

    /// Two certificates from the local CA written out as an operator would supply them.
    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let names = ["registry.example.com".parse::<SanEntry>().unwrap()];
        let first = ca.issue(&names, Duration::from_secs(3600)).unwrap();
        let second = ca.issue(&names, Duration::from_secs(3600)).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            path
        };
        let cert = write("server.crt", &first.cert_chain_pem);
        let key = write("server.key", &first.key_pem);
        let other_key = write("other.key", &second.key_pem);
        Files { cert, key, other_key, _dir: dir }
    }

    #[test]
    fn loads_a_matching_pair_and_a_combined_file() {
        let files = files();
        let certified = load_pem_pair(&files.cert, &files.key).unwrap();
        assert_eq!(certified.cert.len(), 2);
        let combined = files.cert.with_file_name("combined.pem");
        let text = format!("{}{}", fs::read_to_string(&files.key).unwrap(), fs::read_to_string(&files.cert).unwrap());
        fs::write(&combined, text).unwrap();
        assert_eq!(load_pem_pair(&combined, &combined).unwrap().cert, certified.cert);
    }

    #[test]
    fn refuses_a_key_that_does_not_match_the_certificate() {
        let files = files();
        let err = load_pem_pair(&files.cert, &files.other_key).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("other.key") && message.contains("server.crt"), "{message}");
    }

    #[test]
    fn names_the_file_and_the_problem() {
        let files = files();
        let dir = files.cert.parent().unwrap();
        let missing = dir.join("missing.pem");
        let err = load_pem_pair(&missing, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::Io { .. }) && err.to_string().contains("missing.pem"), "{err}");

        // The key file has no certificate in it, the certificate file no key.
        assert!(matches!(load_pem_pair(&files.key, &files.key), Err(TlsError::NoCertificate { .. })));
        let err = load_pem_pair(&files.cert, &files.cert).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }) && err.to_string().contains("server.crt"), "{err}");

        let encrypted = dir.join("encrypted.key");
        fs::write(&encrypted, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n").unwrap();
        let err = load_pem_pair(&files.cert, &encrypted).unwrap_err();
        assert!(matches!(err, TlsError::UnsupportedKey { .. }) && err.to_string().contains("encrypted"), "{err}");

        let garbage = dir.join("garbage.key");
        fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let err = load_pem_pair(&files.cert, &garbage).unwrap_err();
        assert!(matches!(err, TlsError::UnsupportedKey { .. }) && err.to_string().contains("garbage.key"), "{err}");

        let broken = dir.join("broken.crt");
        fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        assert!(matches!(load_pem_pair(&broken, &files.key), Err(TlsError::InvalidPem { .. })));
    }

    /// SEC1 (`EC PRIVATE KEY`) and PKCS#1 (`RSA PRIVATE KEY`) keys as OpenSSL writes them; rcgen
    /// only writes PKCS#8, so these need the `openssl` tool and are skipped without it.
    #[test]
    fn loads_sec1_and_pkcs1_keys_written_by_openssl() {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("openssl not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
            assert!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
        };
        let cases: [(&str, &[&str], &[&str], &str); 2] = [
            ("ec", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], &["ec"], "EC PRIVATE KEY"),
            ("rsa", &["-newkey", "rsa:2048"], &["rsa", "-traditional"], "RSA PRIVATE KEY"),
        ];
        for (kind, newkey, convert, header) in cases {
            let (pkcs8, traditional, crt) = (format!("{kind}.p8"), format!("{kind}.key"), format!("{kind}.crt"));
            let mut req = vec!["req", "-x509", "-nodes", "-subj", "/CN=operator.example", "-days", "1"];
            req.extend(newkey);
            req.extend(["-keyout", &pkcs8, "-out", &crt]);
            openssl(&req);
            let mut to_traditional = convert.to_vec();
            to_traditional.extend(["-in", &pkcs8, "-out", &traditional]);
            openssl(&to_traditional);

            let key = dir.path().join(&traditional);
            assert!(fs::read_to_string(&key).unwrap().contains(&format!("BEGIN {header}")));
            load_pem_pair(&dir.path().join(&crt), &key).unwrap();
            load_pem_pair(&dir.path().join(&crt), &dir.path().join(&pkcs8)).unwrap();
        }
    }
}
