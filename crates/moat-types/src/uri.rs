//! Percent-encoding, as URLs and SAS query strings need it (RFC 3986 unreserved characters
//! pass through, every other byte becomes `%XX`).

/// Encodes every byte but the unreserved `A-Z a-z 0-9 - _ . ~`.
pub fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` (exactly two hex digits) and, in query strings, `+` as a space. `None` for a
/// malformed escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in ["plain", "a b/c?d=e&f", "modèle/ü", "x+y", ""] {
            assert_eq!(percent_decode(&percent_encode(s), false).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        for bad in ["%", "%4", "%zz", "%+1", "%ff"] {
            assert_eq!(percent_decode(bad, false), None, "{bad}");
        }
    }
}
