//! Subject alternative names: the DNS names and IP addresses a server certificate is valid for.
//! Strings are parsed here once, so the CA and the renewal check never see an invalid or
//! non-canonical name.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rustls::pki_types::DnsName;

use crate::TlsError;

/// One name a server certificate covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SanEntry {
    /// A DNS name such as `localhost` or `abc.blob.moat.internal`.
    Dns(DnsSan),
    /// An IP address, for clients that connect by address (no SNI).
    Ip(IpAddr),
}

impl SanEntry {
    /// A DNS name entry; see [`DnsSan::parse`].
    pub fn dns(name: &str) -> Result<Self, TlsError> {
        DnsSan::parse(name).map(Self::Dns)
    }
}

impl From<IpAddr> for SanEntry {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl FromStr for SanEntry {
    type Err = TlsError;

    /// An IP address literal becomes [`SanEntry::Ip`]; anything else must be a DNS name.
    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Self::Ip(ip)),
            Err(_) => Self::dns(s),
        }
    }
}

impl fmt::Display for SanEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => name.fmt(f),
            Self::Ip(ip) => ip.fmt(f),
        }
    }
}

/// A DNS name valid in a certificate: ASCII, lower case, without a trailing dot, optionally
/// with a single leading `*.` wildcard label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsSan(String);

impl DnsSan {
    /// Parses and normalises a DNS name. Case is folded and one trailing dot dropped because
    /// certificate name matching ignores both; IP literals are refused so that an address always
    /// becomes an IP SAN (clients do not match an address against a DNS SAN).
    pub fn parse(name: &str) -> Result<Self, TlsError> {
        let invalid = |problem| TlsError::InvalidName { name: name.to_owned(), problem };
        let normalised = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if normalised.parse::<IpAddr>().is_ok() {
            return Err(invalid("an IP address must be given as an IP entry, not a DNS name"));
        }
        let base = normalised.strip_prefix("*.").unwrap_or(&normalised);
        if base.contains('*') {
            return Err(invalid("a wildcard is only allowed as the whole leftmost label (`*.example`)"));
        }
        if base.is_empty() || DnsName::try_from(base).is_err() {
            return Err(invalid("not a valid DNS name (letters, digits, hyphens and dots; labels of 1 to 63 characters)"));
        }
        Ok(Self(normalised))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsSan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_addresses() {
        assert_eq!("127.0.0.1".parse::<SanEntry>().unwrap(), SanEntry::Ip([127, 0, 0, 1].into()));
        assert_eq!("::1".parse::<SanEntry>().unwrap(), SanEntry::Ip("::1".parse().unwrap()));
        let SanEntry::Dns(name) = "ABC.Blob.moat.internal.".parse::<SanEntry>().unwrap() else { panic!("not DNS") };
        assert_eq!(name.as_str(), "abc.blob.moat.internal");
        assert_eq!(SanEntry::dns("*.blob.moat.internal").unwrap().to_string(), "*.blob.moat.internal");
        assert_eq!(SanEntry::dns("localhost").unwrap().to_string(), "localhost");
    }

    #[test]
    fn refuses_invalid_names() {
        for bad in ["", ".", "a..b", "bad name", "ünïcode.example", "a.*.example", "*", "-lead.example", "10.0.0.1."] {
            assert!(SanEntry::dns(bad).is_err(), "{bad:?} was accepted");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(SanEntry::dns(&long_label).is_err());
    }
}
