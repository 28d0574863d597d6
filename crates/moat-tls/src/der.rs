//! Reads the validity period out of a DER certificate.
//!
//! This is the only X.509 field moat needs that neither rustls nor rcgen exposes (the reloaded
//! CA's expiry), and walking five TLVs is cheaper than a full X.509 parser in the dependency tree.
//! Anything unexpected yields `None`; callers turn that into an error naming the file.

use std::time::SystemTime;

use time::{Date, Month};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0; // [0] EXPLICIT, constructed
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// `(not_before, not_after)` of a DER-encoded X.509 certificate.
pub(crate) fn certificate_validity(cert: &[u8]) -> Option<(SystemTime, SystemTime)> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    let (certificate, _) = expect(SEQUENCE, cert)?;
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serial, signature, issuer, validity, ... }
    let (tbs, _) = expect(SEQUENCE, certificate)?;
    let mut rest = tbs;
    let (tag, _, after_version) = read_tlv(rest)?;
    if tag == VERSION {
        rest = after_version;
    }
    let (_, rest) = expect(INTEGER, rest)?;
    let (_, rest) = expect(SEQUENCE, rest)?; // signature algorithm
    let (_, rest) = expect(SEQUENCE, rest)?; // issuer
    let (validity, _) = expect(SEQUENCE, rest)?;
    let (not_before, rest) = read_time(validity)?;
    let (not_after, rest) = read_time(rest)?;
    rest.is_empty().then_some((not_before, not_after))
}

/// Splits one tag-length-value off the front of `input`: `(tag, value, rest)`. Only the forms
/// DER allows are accepted (single-byte tags here, definite minimal-length lengths).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = input.split_at_checked(count)?;
        input = rest;
        let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 || bytes.first() == Some(&0) {
            return None;
        }
        len
    };
    let (value, rest) = input.split_at_checked(len)?;
    Some((tag, value, rest))
}

fn expect(tag: u8, input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (found, value, rest) = read_tlv(input)?;
    (found == tag).then_some((value, rest))
}

/// RFC 5280 §4.1.2.5: UTCTime `YYMMDDHHMMSSZ` (years 1950–2049) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, always in UTC with whole seconds.
fn read_time(input: &[u8]) -> Option<(SystemTime, &[u8])> {
    let (tag, value, rest) = read_tlv(input)?;
    let digits = value.strip_suffix(b"Z")?;
    let (year, digits) = match tag {
        UTC_TIME if digits.len() == 12 => {
            let yy = number(&digits[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        GENERALIZED_TIME if digits.len() == 14 => (number(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| digits.get(i..i + 2).and_then(number);
    let month = Month::try_from(u8::try_from(field(0)?).ok()?).ok()?;
    let date = Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(field(2)?).ok()?).ok()?;
    let time = date.with_hms(u8::try_from(field(4)?).ok()?, u8::try_from(field(6)?).ok()?, u8::try_from(field(8)?).ok()?).ok()?;
    Some((SystemTime::from(time.assume_utc()), rest))
}

fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use rcgen::{CertificateParams, KeyPair, date_time_ymd};
    use time::OffsetDateTime;

    use super::*;

    fn cert_valid(from: OffsetDateTime, to: OffsetDateTime) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = from;
        params.not_after = to;
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        // rcgen switches from UTCTime to GeneralizedTime from 2050 on, so this covers both forms.
        let from = date_time_ymd(2024, 2, 29).replace_time(time::macros::time!(23:59:58));
        let to = date_time_ymd(2061, 12, 31).replace_time(time::macros::time!(01:02:03));
        let (not_before, not_after) = certificate_validity(&cert_valid(from, to)).unwrap();
        assert_eq!(not_before, UNIX_EPOCH + Duration::from_secs(from.unix_timestamp().try_into().unwrap()));
        assert_eq!(not_after, UNIX_EPOCH + Duration::from_secs(to.unix_timestamp().try_into().unwrap()));

        let der = cert_valid(from, to);
        let parsed = x509_parser::parse_x509_certificate(&der).unwrap().1;
        assert_eq!(parsed.validity().not_after.timestamp(), to.unix_timestamp());
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert_eq!(certificate_validity(b""), None);
        assert_eq!(certificate_validity(b"\x30\x82\x00\x05hello"), None); // non-minimal length
        let der = cert_valid(date_time_ymd(2020, 1, 1), date_time_ymd(2030, 1, 1));
        for len in [1, 4, 40, der.len() / 2] {
            assert_eq!(certificate_validity(&der[..len]), None, "truncated to {len}");
        }
    }
}
