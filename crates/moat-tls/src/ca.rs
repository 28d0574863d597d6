//! The local certificate authority: its two files on disk and the server certificates it issues.
//!
//! The CA's subject is derived from its key (`moat local CA (<key fingerprint>)`), so the issuer
//! can be rebuilt from `ca.key` alone, without an X.509 parser; a probe certificate verified
//! against `ca.crt` on every load proves that the rebuilt issuer and the file agree.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, crypto::ring as provider};
use time::OffsetDateTime;

use crate::durable::{Created, create_durably, hex};
use crate::{SanEntry, TlsError, der};

/// File name of the CA certificate inside the CA directory; clients trust this file.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// Validity of a newly created CA: long, because every client has to be told to trust it again
/// when it changes.
pub const CA_VALIDITY: Duration = Duration::from_secs(3652 * 24 * 60 * 60);
/// A sensible validity for server certificates; moat renews them after two thirds of it.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Certificates start this long before they are issued, so a client whose clock is a little
/// behind moat's does not reject a brand-new certificate as not yet valid.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// RFC 5280's upper bound for a common name.
const MAX_COMMON_NAME: usize = 64;

/// moat's own certificate authority, kept in one directory as `ca.crt` and `ca.key`.
pub struct LocalCa {
    cert_path: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The issuer's own Debug elides the key; say so explicitly rather than rely on it.
        f.debug_struct("LocalCa").field("cert_path", &self.cert_path).field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA from `dir`, creating the directory, key and certificate on first use.
    ///
    /// The key is written before the certificate, so a crash in between leaves a key without a
    /// certificate, which the next call completes. A certificate without its key is an error:
    /// creating a new CA then would silently break every client that trusts the old one.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        fs::create_dir_all(dir).map_err(|err| TlsError::io("create directory", dir, err))?;
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);

        let key = match read_key(&key_path)? {
            Some(key) => key,
            None if cert_path.exists() => return Err(TlsError::CaKeyMissing { cert_path, key_path }),
            None => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                match create_durably(dir, CA_KEY_FILE, key.serialize_pem().as_bytes(), 0o600)? {
                    Created::New => key,
                    // A concurrent start won the race; use its key so both agree.
                    Created::AlreadyExisted => read_key(&key_path)?.ok_or_else(|| unusable(dir, "ca.key vanished while loading"))?,
                }
            }
        };

        let params = ca_params(&key);
        let cert_pem = match read_optional(&cert_path)? {
            Some(pem) => pem,
            None => {
                let now = whole_seconds(SystemTime::now());
                let mut self_signed = params.clone();
                self_signed.not_before = OffsetDateTime::from(now - BACKDATE);
                self_signed.not_after = OffsetDateTime::from(now + CA_VALIDITY);
                self_signed.serial_number = Some(random_serial()?);
                let pem = self_signed.self_signed(&key)?.pem();
                match create_durably(dir, CA_CERT_FILE, pem.as_bytes(), 0o644)? {
                    Created::New => pem,
                    Created::AlreadyExisted => read_optional(&cert_path)?.ok_or_else(|| unusable(dir, "ca.crt vanished while loading"))?,
                }
            }
        };

        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|err| unusable(dir, &format!("ca.crt holds no PEM certificate ({err})")))?;
        let (_, not_after) = der::certificate_validity(&cert_der).ok_or_else(|| unusable(dir, "the validity of ca.crt cannot be read"))?;
        if not_after <= SystemTime::now() {
            return Err(TlsError::CaExpired { path: cert_path, not_after });
        }
        let ca = Self { cert_path, cert_pem, cert_der, not_after, issuer: Issuer::new(params, key) };
        ca.check_key_matches_certificate(dir)?;
        Ok(ca)
    }

    /// The CA certificate in PEM form, as clients should trust it.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Where the CA certificate lives (`<dir>/ca.crt`), for `moat serve` to print and profiles to
    /// reference.
    pub fn ca_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate in DER form, e.g. for a [`RootCertStore`].
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// When the CA itself expires; no certificate it issues outlives this.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a server certificate with a fresh ECDSA P-256 key for exactly `names`, valid from a
    /// few minutes ago for `valid_for` (cut short at the CA's own expiry).
    pub fn issue(&self, names: &[SanEntry], valid_for: Duration) -> Result<IssuedCert, TlsError> {
        self.issue_at(names, valid_for, SystemTime::now())
    }

    fn issue_at(&self, names: &[SanEntry], valid_for: Duration, now: SystemTime) -> Result<IssuedCert, TlsError> {
        let names = dedup(names);
        let Some(first) = names.first() else { return Err(TlsError::NoNames) };
        if valid_for.is_zero() {
            return Err(TlsError::ZeroValidity);
        }
        let now = whole_seconds(now);
        if self.not_after <= now {
            return Err(TlsError::CaExpired { path: self.cert_path.clone(), not_after: self.not_after });
        }
        let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
        let not_after = now.checked_add(valid_for).map_or(self.not_after, |end| whole_seconds(end.min(self.not_after)));

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // Clients match on the SANs; the CN only makes the certificate recognisable in tools.
        let common_name = first.to_string();
        params
            .distinguished_name
            .push(DnType::CommonName, if common_name.len() <= MAX_COMMON_NAME { common_name } else { "moat server".to_owned() });
        params.subject_alt_names = names
            .iter()
            .map(|name| match name {
                SanEntry::Dns(dns) => dns.as_str().to_owned().try_into().map(SanType::DnsName),
                SanEntry::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            })
            .collect::<Result<_, _>>()?;
        params.not_before = OffsetDateTime::from(not_before);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // OpenSSL-based clients (curl, Python) pick the issuer by this identifier.
        params.use_authority_key_identifier_extension = true;

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let leaf = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = provider::default_provider().key_provider.load_private_key(key_der)?;
        let certified = Arc::new(CertifiedKey::new(vec![leaf.der().clone(), self.cert_der.clone()], signing_key));

        Ok(IssuedCert {
            cert_chain_pem: format!("{}{}", leaf.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
            names,
            certified,
        })
    }

    /// Issues a throwaway certificate and verifies it against `ca.crt` alone, exactly as a client
    /// would: this catches a key from one CA next to the certificate of another, and an issuer
    /// name that no longer matches the certificate's subject.
    fn check_key_matches_certificate(&self, dir: &Path) -> Result<(), TlsError> {
        let probe_ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let probe = self.issue(&[SanEntry::Ip(probe_ip)], Duration::from_secs(60))?;
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone()).map_err(|err| unusable(dir, &format!("ca.crt is not a usable trust anchor ({err})")))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider::default_provider()))
            .build()
            .map_err(|err| unusable(dir, &format!("ca.crt cannot be used to verify ({err})")))?;
        let leaf = probe.certified.end_entity_cert()?;
        verifier
            .verify_server_cert(leaf, &[], &ServerName::from(probe_ip), &[], UnixTime::now())
            .map_err(|err| unusable(dir, &format!("ca.key does not belong to ca.crt ({err})")))?;
        Ok(())
    }
}

/// A server certificate issued by the [`LocalCa`], with its private key.
#[derive(Clone)]
pub struct IssuedCert {
    /// The server certificate followed by the CA certificate, in PEM.
    pub cert_chain_pem: String,
    /// The server's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Start of validity (backdated a few minutes for clock skew).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// The names the certificate covers, without duplicates, in the order first requested.
    pub names: Vec<SanEntry>,
    certified: Arc<CertifiedKey>,
}

impl IssuedCert {
    /// The certificate and key in the form rustls serves, for [`crate::CertStore::set`].
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.certified)
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key, not even into a debug log.
        f.debug_struct("IssuedCert")
            .field("names", &self.names)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Whether a certificate should be replaced now: less than a third of its lifetime is left (or
/// it has expired), or it does not cover exactly the `wanted` names (order and duplicates aside).
pub fn needs_renewal(cert: &IssuedCert, wanted: &[SanEntry], now: SystemTime) -> bool {
    let lifetime = cert.not_after.duration_since(cert.not_before).unwrap_or_default();
    let remaining = cert.not_after.duration_since(now).unwrap_or_default();
    let mut have: Vec<&SanEntry> = cert.names.iter().collect();
    let mut want: Vec<&SanEntry> = wanted.iter().collect();
    for names in [&mut have, &mut want] {
        names.sort_unstable();
        names.dedup();
    }
    remaining.saturating_mul(3) < lifetime || have != want
}

/// The CA's parameters, all derived from its key so that they can be rebuilt on every start.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, key.public_key_raw());
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("moat local CA ({})", hex(&fingerprint.as_ref()[..8])));
    // pathlen 0: this CA signs server certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Reads and parses `ca.key`, refusing one that other users could have read.
fn read_key(path: &Path) -> Result<Option<KeyPair>, TlsError> {
    let Some(pem) = read_optional(path)? else { return Ok(None) };
    let mode = fs::metadata(path).map_err(|err| TlsError::io("inspect", path, err))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions { path: path.to_owned(), mode: mode & 0o777 });
    }
    KeyPair::from_pem(&pem)
        .map(Some)
        .map_err(|err| TlsError::UnsupportedKey { path: path.to_owned(), problem: format!("expected a PKCS#8 PEM key: {err}") })
}

fn read_optional(path: &Path) -> Result<Option<String>, TlsError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(TlsError::io("read", path, err)),
    }
}

fn unusable(dir: &Path, problem: &str) -> TlsError {
    TlsError::CaUnusable { dir: dir.to_owned(), problem: problem.to_owned() }
}

fn dedup(names: &[SanEntry]) -> Vec<SanEntry> {
    let mut unique: Vec<SanEntry> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(name) {
            unique.push(name.clone());
        }
    }
    unique
}

/// 16 random bytes, top bit clear: unique per certificate and a positive DER integer as RFC 5280
/// requires.
fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| TlsError::Randomness)?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Certificates carry whole seconds; rounding first keeps `IssuedCert`'s times equal to the
/// certificate's.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(since) => UNIX_EPOCH + Duration::from_secs(since.as_secs()),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{GeneralName, ParsedExtension};

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn names(list: &[&str]) -> Vec<SanEntry> {
        list.iter().map(|name| name.parse().unwrap()).collect()
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der).unwrap().1
    }

    fn subject_key_id(cert: &X509Certificate<'_>) -> Vec<u8> {
        cert.iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .unwrap()
    }

    fn authority_key_id(cert: &X509Certificate<'_>) -> Vec<u8> {
        cert.iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|id| id.0.to_vec()),
                _ => None,
            })
            .unwrap()
    }

    /// Verifies the way a client trusting only `ca` would.
    fn verify(ca: &CertificateDer<'static>, issued: &IssuedCert, name: &str) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider::default_provider())).build().unwrap();
        let chain = &issued.certified_key().cert;
        verifier.verify_server_cert(&chain[0], &chain[1..], &ServerName::try_from(name.to_owned()).unwrap(), &[], UnixTime::now()).map(drop)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_the_ca_once_and_reloads_it_identically() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("state/tls");
        let first = LocalCa::load_or_create(&tls_dir).unwrap();
        let second = LocalCa::load_or_create(&tls_dir).unwrap();
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(first.ca_path(), tls_dir.join("ca.crt"));
        assert_eq!(fs::read_to_string(first.ca_path()).unwrap(), first.ca_pem());
        assert_eq!(mode(&tls_dir.join("ca.key")), 0o600);
        assert_eq!(mode(&tls_dir.join("ca.crt")), 0o644);

        let ca = parse(first.ca_der());
        let common_name = ca.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned();
        assert!(common_name.starts_with("moat local CA (") && common_name.len() == "moat local CA ()".len() + 16, "{common_name}");
        assert_eq!(ca.subject(), ca.issuer());
        let constraints = ca.basic_constraints().unwrap().unwrap();
        assert!(constraints.critical && constraints.value.ca);
        assert_eq!(constraints.value.path_len_constraint, Some(0));
        let usage = ca.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign() && usage.crl_sign() && !usage.digital_signature());
        let lifetime = ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp();
        assert!((3650 * 86_400..3660 * 86_400).contains(&lifetime), "{lifetime}");
        assert_eq!(SystemTime::from(OffsetDateTime::from_unix_timestamp(ca.validity().not_after.timestamp()).unwrap()), first.not_after());
    }

    #[test]
    fn issues_leaves_with_the_requested_names_and_server_auth_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let wanted = names(&["localhost", "127.0.0.1", "eastus.api.moat.internal", "abc.blob.moat.internal", "::1", "LOCALHOST"]);
        let before = SystemTime::now();
        let issued = ca.issue(&wanted, DEFAULT_LEAF_VALIDITY).unwrap();
        assert_eq!(issued.names, wanted[..5]);
        assert!(issued.not_before < before - Duration::from_secs(60));
        let lifetime = issued.not_after.duration_since(before).unwrap();
        assert!(lifetime <= DEFAULT_LEAF_VALIDITY && lifetime > DEFAULT_LEAF_VALIDITY - Duration::from_secs(5));

        let chain = &issued.certified_key().cert;
        assert_eq!(chain.len(), 2);
        assert_eq!(&chain[1], ca.ca_der());
        let leaf = parse(&chain[0]);
        let sans: Vec<String> = leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => (*dns).to_owned(),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                    _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                },
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        assert_eq!(sans, ["localhost", "127.0.0.1", "eastus.api.moat.internal", "abc.blob.moat.internal", "::1"]);
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth && !eku.any && eku.other.is_empty());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), parse(ca.ca_der()).subject());
        assert_eq!(authority_key_id(&leaf), subject_key_id(&parse(ca.ca_der())));
        assert_eq!(leaf.validity().not_after.timestamp(), OffsetDateTime::from(issued.not_after).unix_timestamp());

        for name in ["localhost", "127.0.0.1", "abc.blob.moat.internal", "::1"] {
            verify(ca.ca_der(), &issued, name).unwrap();
        }
        assert!(verify(ca.ca_der(), &issued, "other.blob.moat.internal").is_err());
        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = LocalCa::load_or_create(other_dir.path()).unwrap();
        assert!(verify(other_ca.ca_der(), &issued, "localhost").is_err());
    }

    #[test]
    fn a_reloaded_ca_issues_certificates_the_original_certificate_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let original = LocalCa::load_or_create(dir.path()).unwrap();
        let reloaded = LocalCa::load_or_create(dir.path()).unwrap();
        let issued = reloaded.issue(&names(&["localhost"]), DAY).unwrap();
        verify(original.ca_der(), &issued, "localhost").unwrap();
        assert_eq!(authority_key_id(&parse(&issued.certified_key().cert[0])), subject_key_id(&parse(original.ca_der())));
    }

    #[test]
    fn a_lost_certificate_is_rebuilt_from_the_key_and_still_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let original = LocalCa::load_or_create(dir.path()).unwrap();
        fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
        let rebuilt = LocalCa::load_or_create(dir.path()).unwrap();
        assert_ne!(rebuilt.ca_pem(), original.ca_pem());
        assert_eq!(parse(rebuilt.ca_der()).subject(), parse(original.ca_der()).subject());
        verify(original.ca_der(), &rebuilt.issue(&names(&["localhost"]), DAY).unwrap(), "localhost").unwrap();
    }

    #[test]
    fn refuses_a_certificate_without_its_key_or_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(other.path()).unwrap();

        fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::CaUnusable { .. }), "{err}");
        assert!(err.to_string().contains("ca.key does not belong to ca.crt"), "{err}");

        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::CaKeyMissing { .. }), "{err}");
        assert!(dir.path().join(CA_CERT_FILE).exists(), "the old certificate must not be replaced");
    }

    #[test]
    fn refuses_a_key_other_users_can_read() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(dir.path()).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        let err = LocalCa::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::KeyPermissions { mode: 0o640, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn refuses_bad_issue_requests_and_never_outlives_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        assert!(matches!(ca.issue(&[], DAY), Err(TlsError::NoNames)));
        assert!(matches!(ca.issue(&names(&["localhost"]), Duration::ZERO), Err(TlsError::ZeroValidity)));
        let long = ca.issue(&names(&["localhost"]), CA_VALIDITY * 2).unwrap();
        assert_eq!(long.not_after, ca.not_after());
        let after_expiry = ca.not_after() + DAY;
        assert!(matches!(ca.issue_at(&names(&["localhost"]), DAY, after_expiry), Err(TlsError::CaExpired { .. })));
    }

    #[test]
    fn long_names_do_not_break_the_common_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let long = format!("{}.{}.registry.eastus.api.moat.internal", "a".repeat(36), "b".repeat(20));
        let issued = ca.issue(&names(&[&long]), DAY).unwrap();
        let certified = issued.certified_key();
        let leaf = parse(&certified.cert[0]);
        assert_eq!(leaf.subject().iter_common_name().next().unwrap().as_str().unwrap(), "moat server");
        verify(ca.ca_der(), &issued, &long).unwrap();
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime_or_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(dir.path()).unwrap();
        let wanted = names(&["localhost", "127.0.0.1"]);
        let issued = ca.issue(&wanted, Duration::from_secs(30 * 86_400)).unwrap();
        let lifetime = issued.not_after.duration_since(issued.not_before).unwrap();
        let third_left = issued.not_after - lifetime / 3;

        assert!(!needs_renewal(&issued, &wanted, SystemTime::now()));
        assert!(!needs_renewal(&issued, &wanted, third_left - Duration::from_secs(1)));
        assert!(needs_renewal(&issued, &wanted, third_left + Duration::from_secs(1)));
        assert!(needs_renewal(&issued, &wanted, issued.not_after + DAY));

        assert!(!needs_renewal(&issued, &names(&["127.0.0.1", "localhost", "localhost"]), SystemTime::now()));
        assert!(needs_renewal(&issued, &names(&["localhost", "127.0.0.1", "abc.blob.moat.internal"]), SystemTime::now()));
        assert!(needs_renewal(&issued, &names(&["localhost"]), SystemTime::now()));
    }
}
