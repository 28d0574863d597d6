//! Addresses of virtual networks: IPv4 and IPv6 CIDR blocks, the validation of a network's
//! address space and subnets, and the allocation of private endpoint addresses with Azure's
//! reserved addresses left out. Pure arithmetic: no sockets, no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a CIDR block, an address space or a subnet layout is refused. Every message names the
/// offending prefixes and says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    #[error("'{input}' is not a CIDR block: {reason}. Write an address and a prefix length, e.g. 10.0.0.0/16 or fd00::/64.")]
    InvalidCidr { input: String, reason: String },
    #[error("'{input}' has bits set after its /{prefix} prefix: did you mean {canonical}?")]
    HostBitsSet { input: String, prefix: u8, canonical: Cidr },
    #[error("'{input}' is an IPv4-mapped IPv6 address: write it as IPv4, {suggestion}.")]
    MappedAddress { input: String, suggestion: String },
    #[error("The virtual network has no address space: give it at least one CIDR block, e.g. 10.0.0.0/16.")]
    NoAddressSpace,
    #[error("Address spaces {first} and {second} overlap: remove one of them or choose blocks that do not overlap.")]
    AddressSpacesOverlap { first: Cidr, second: Cidr },
    #[error(
        "Subnet '{subnet}' ({prefix}) is not inside any address space of the virtual network ({spaces}): \
         choose a prefix inside one of them or add an address space that contains it."
    )]
    SubnetOutsideAddressSpace { subnet: String, prefix: Cidr, spaces: String },
    #[error("Subnets '{first}' ({first_prefix}) and '{second}' ({second_prefix}) overlap: give them prefixes that do not overlap.")]
    SubnetsOverlap { first: String, first_prefix: Cidr, second: String, second_prefix: Cidr },
    #[error(
        "Subnet '{subnet}' ({prefix}) is too small: the smallest subnet is /{smallest}, since {reserved} of its addresses \
         are reserved. Use a prefix of /{smallest} or shorter."
    )]
    SubnetTooSmall { subnet: String, prefix: Cidr, smallest: u8, reserved: u8 },
}

/// An IPv4 or IPv6 CIDR block whose host bits are zero. Parsed from `10.0.0.0/16`, `fd00::/64`
/// or a bare address (a /32 or /128, as Azure IP rules accept); displayed canonically; carried
/// in JSON as that string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    base: IpAddr,
    prefix: u8,
}

/// Bit width of an address family.
fn width(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// An address as an integer in its own family (an IPv4 address fits in the low 32 bits).
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of the given family at integer `n` (truncated to 32 bits for IPv4).
fn u128_to_ip(v4: bool, n: u128) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from(n as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

/// The mask of the host bits of a /`prefix` in a `width`-bit family.
fn host_mask(width: u8, prefix: u8) -> u128 {
    let host = u32::from(width - prefix);
    // A shift by 128 would overflow: ::/0 is all host bits.
    if host >= 128 { u128::MAX } else { (1u128 << host) - 1 }
}

/// The address sockets should be judged by: IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a
/// dual-stack listener reports IPv4 peers) become the IPv4 address; others are unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Cidr {
    /// The block `base/prefix`; refuses a prefix longer than the family's width and set host bits.
    pub fn new(base: IpAddr, prefix: u8) -> Result<Self, NetError> {
        let input = format!("{base}/{prefix}");
        Self::checked(&input, base, prefix)
    }

    fn checked(input: &str, base: IpAddr, prefix: u8) -> Result<Self, NetError> {
        let w = width(base);
        if prefix > w {
            return Err(NetError::InvalidCidr {
                input: input.to_string(),
                reason: format!("the prefix length /{prefix} is longer than the {w} bits of an {} address", family(base)),
            });
        }
        let n = ip_to_u128(base);
        let mask = host_mask(w, prefix);
        if n & mask != 0 {
            let canonical = Cidr { base: u128_to_ip(base.is_ipv4(), n & !mask), prefix };
            return Err(NetError::HostBitsSet { input: input.to_string(), prefix, canonical });
        }
        Ok(Cidr { base, prefix })
    }

    /// The single address `ip` as a /32 or /128 (an IPv4-mapped address becomes IPv4).
    pub fn host(ip: IpAddr) -> Self {
        let base = canonical_ip(ip);
        Cidr { base, prefix: width(base) }
    }

    /// The network address (the first address of the block).
    pub fn addr(&self) -> IpAddr {
        self.base
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.base.is_ipv4()
    }

    /// The block as an inclusive range of integers in its family (see [`ip_to_u128`]).
    pub fn bounds(&self) -> (u128, u128) {
        let first = ip_to_u128(self.base);
        (first, first | host_mask(width(self.base), self.prefix))
    }

    pub fn first(&self) -> IpAddr {
        self.base
    }

    pub fn last(&self) -> IpAddr {
        u128_to_ip(self.is_ipv4(), self.bounds().1)
    }

    /// The number of addresses in the block. `::/0` holds 2^128, one more than a `u128` can
    /// count: it reports `u128::MAX`.
    #[allow(clippy::len_without_is_empty, reason = "a CIDR block always holds at least one address")]
    pub fn len(&self) -> u128 {
        let (first, last) = self.bounds();
        (last - first).saturating_add(1)
    }

    /// Whether the block holds `ip`. The peer is canonicalised first, so an IPv4-mapped IPv6
    /// peer matches IPv4 blocks; otherwise an IPv4 block never holds an IPv6 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        if ip.is_ipv4() != self.is_ipv4() {
            return false;
        }
        let (first, last) = self.bounds();
        (first..=last).contains(&ip_to_u128(ip))
    }

    /// Whether the two blocks share an address (never across families).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        if self.is_ipv4() != other.is_ipv4() {
            return false;
        }
        let (a, b) = (self.bounds(), other.bounds());
        a.0 <= b.1 && b.0 <= a.1
    }

    /// Whether every address of `other` lies in this block.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        if self.is_ipv4() != other.is_ipv4() {
            return false;
        }
        let (a, b) = (self.bounds(), other.bounds());
        a.0 <= b.0 && b.1 <= a.1
    }
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

impl FromStr for Cidr {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = |reason: &str| NetError::InvalidCidr { input: s.to_string(), reason: reason.to_string() };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let base: IpAddr = addr.parse().map_err(|_| bad(&format!("'{addr}' is not an IPv4 or IPv6 address")))?;
        if let IpAddr::V6(v6) = base
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            // Peers in this range are judged as IPv4 (see `canonical_ip`), so a block written
            // here could never match: ask for the IPv4 form instead.
            let suggestion = match prefix.and_then(|p| p.parse::<u8>().ok()) {
                Some(p) if (96..=128).contains(&p) => format!("{v4}/{}", p - 96),
                _ => v4.to_string(),
            };
            return Err(NetError::MappedAddress { input: s.to_string(), suggestion });
        }
        let prefix = match prefix {
            None => width(base),
            Some(p) => {
                // u8::from_str takes a leading '+'; a prefix is plain digits.
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad(&format!("the prefix length '{p}' is not a number from 0 to {}", width(base))));
                }
                p.parse::<u8>().map_err(|_| bad(&format!("the prefix length '{p}' is not a number from 0 to {}", width(base))))?
            }
        };
        Self::checked(s, base, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Cidr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CIDR block such as 10.0.0.0/16 or fd00::/64")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cidr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl utoipa::PartialSchema for Cidr {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("An IPv4 or IPv6 CIDR block, or a single address."))
            .examples(["10.0.0.0/16"])
            .into()
    }
}

impl utoipa::ToSchema for Cidr {}

/// Azure's smallest IPv4 subnet.
const SMALLEST_V4_SUBNET: u8 = 29;
/// The smallest IPv6 subnet with an address left after the four reserved ones.
const SMALLEST_V6_SUBNET: u8 = 125;

/// Checks a virtual network's layout: at least one address space; spaces disjoint; each subnet
/// inside one space; subnets disjoint; each subnet large enough to hold an address after the
/// reserved ones (IPv4 at most /29, as Azure; IPv6 at most /125).
pub fn validate_address_space(spaces: &[Cidr], subnets: &[(&str, Cidr)]) -> Result<(), NetError> {
    if spaces.is_empty() {
        return Err(NetError::NoAddressSpace);
    }
    // Networks hold a handful of spaces and subnets: pairwise checks are cheap and keep the
    // first offending pair in input order, which makes the message predictable.
    for (i, a) in spaces.iter().enumerate() {
        if let Some(b) = spaces[i + 1..].iter().find(|b| a.overlaps(b)) {
            return Err(NetError::AddressSpacesOverlap { first: *a, second: *b });
        }
    }
    for (name, subnet) in subnets {
        let (smallest, reserved) = if subnet.is_ipv4() { (SMALLEST_V4_SUBNET, 5) } else { (SMALLEST_V6_SUBNET, 4) };
        if subnet.prefix() > smallest {
            return Err(NetError::SubnetTooSmall { subnet: name.to_string(), prefix: *subnet, smallest, reserved });
        }
        if !spaces.iter().any(|s| s.contains_cidr(subnet)) {
            let spaces = spaces.iter().map(Cidr::to_string).collect::<Vec<_>>().join(", ");
            return Err(NetError::SubnetOutsideAddressSpace { subnet: name.to_string(), prefix: *subnet, spaces });
        }
    }
    for (i, (a_name, a)) in subnets.iter().enumerate() {
        if let Some((b_name, b)) = subnets[i + 1..].iter().find(|(_, b)| a.overlaps(b)) {
            return Err(NetError::SubnetsOverlap {
                first: a_name.to_string(),
                first_prefix: *a,
                second: b_name.to_string(),
                second_prefix: *b,
            });
        }
    }
    Ok(())
}

/// Whether `ip` is one of the subnet's addresses Azure keeps for itself: the first four (network,
/// gateway, two DNS) and, in IPv4, the last (broadcast). An address outside the subnet is not
/// reserved by it.
pub fn is_reserved(subnet: &Cidr, ip: IpAddr) -> bool {
    if !subnet.contains(ip) {
        return false;
    }
    let n = ip_to_u128(canonical_ip(ip));
    let (first, last) = subnet.bounds();
    n - first < 4 || (subnet.is_ipv4() && n == last)
}

/// The lowest address of `subnet` that is neither reserved (see [`is_reserved`]) nor `taken`;
/// `None` when the subnet is full.
pub fn allocate_ip(subnet: &Cidr, taken: &dyn Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let (first, last) = subnet.bounds();
    let end = if subnet.is_ipv4() { last.checked_sub(1)? } else { last };
    let start = first.checked_add(4)?;
    // Stops at the first free address: the walk is as long as the run of taken ones.
    (start..=end).map(|n| u128_to_ip(subnet.is_ipv4(), n)).find(|ip| !taken(*ip))
}

/// Whether the block lies inside the loopback range (127.0.0.0/8 or ::1/128): a virtual network
/// in loopback mode must live there, since its endpoint listeners bind these addresses.
pub fn is_loopback_space(c: &Cidr) -> bool {
    const V4_LOOPBACK: Cidr = Cidr { base: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), prefix: 8 };
    const V6_LOOPBACK: Cidr = Cidr { base: IpAddr::V6(Ipv6Addr::LOCALHOST), prefix: 128 };
    V4_LOOPBACK.contains_cidr(c) || V6_LOOPBACK.contains_cidr(c)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays_canonically() {
        for (input, shown) in [
            ("10.0.0.0/16", "10.0.0.0/16"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("fd00::/64", "fd00::/64"),
            ("FD00:0:0:0::/64", "fd00::/64"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("127.0.0.1/32", "127.0.0.1/32"),
        ] {
            assert_eq!(c(input).to_string(), shown, "{input}");
            assert_eq!(c(shown), c(input));
        }
        assert_eq!(c("10.1.2.3").prefix(), 32);
        assert_eq!(c("fd00::1").prefix(), 128);
    }

    #[test]
    fn refuses_bad_forms_with_specific_messages() {
        for bad in
            ["", "10.0.0.0/", "10.0.0.0/33", "fd00::/129", "10.0.0/8", "10.0.0.0/+8", "10.0.0.0/a", "x/8", " 10.0.0.0/8", "10.0.0.0/8/8"]
        {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(matches!(e, NetError::InvalidCidr { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
        assert_eq!(c("10.0.0.0/032"), c("10.0.0.0/32"), "a zero-padded prefix length is still a number");
        let e = "10.0.0.1/16".parse::<Cidr>().unwrap_err();
        assert_eq!(e.to_string(), "'10.0.0.1/16' has bits set after its /16 prefix: did you mean 10.0.0.0/16?");
        let e = "fd00::1/64".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("did you mean fd00::/64?"), "{e}");
        let e = "0.0.0.1/0".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("did you mean 0.0.0.0/0?"), "{e}");
        let e = "::ffff:10.0.0.0/104".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("write it as IPv4, 10.0.0.0/8"), "{e}");
        let e = "::ffff:10.0.0.1".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("write it as IPv4, 10.0.0.1"), "{e}");
        assert!(Cidr::new(ip("10.0.0.0"), 33).is_err());
        assert_eq!(Cidr::new(ip("10.0.0.0"), 8).unwrap(), c("10.0.0.0/8"));
    }

    #[test]
    fn serde_is_the_string_form() {
        let v: Vec<Cidr> = serde_json::from_str(r#"["10.0.0.0/8","fd00::/64","1.2.3.4"]"#).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"["10.0.0.0/8","fd00::/64","1.2.3.4/32"]"#);
        let e = serde_json::from_str::<Cidr>(r#""10.0.0.1/8""#).unwrap_err();
        assert!(e.to_string().contains("did you mean 10.0.0.0/8?"), "{e}");
        assert!(serde_json::from_str::<Cidr>("8").is_err());
    }

    #[test]
    fn contains_across_families_and_mapped_peers() {
        let net = c("10.0.0.0/16");
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.0.255.255")));
        assert!(!net.contains(ip("10.1.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        assert!(net.contains(ip("::ffff:10.0.3.4")), "mapped peers are judged as IPv4");
        assert!(!net.contains(ip("::a00:304")), "IPv4-compatible addresses are IPv6");
        assert!(!c("0.0.0.0/0").contains(ip("::1")));
        assert!(c("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(c("::/0").contains(ip("::1")));
        assert!(!c("::/0").contains(ip("1.2.3.4")));
        assert!(!c("::/0").contains(ip("::ffff:1.2.3.4")), "a mapped peer is IPv4, outside IPv6 blocks");
        let host = c("1.2.3.4/32");
        assert!(host.contains(ip("1.2.3.4")) && !host.contains(ip("1.2.3.5")));
        assert!(c("fd00::/64").contains(ip("fd00::ffff:ffff:ffff:ffff")));
        assert!(!c("fd00::/64").contains(ip("fd00:0:0:1::")));
        assert_eq!(canonical_ip(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(canonical_ip(ip("::1")), ip("::1"));
        assert_eq!(canonical_ip(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(Cidr::host(ip("::ffff:1.2.3.4")), c("1.2.3.4/32"));
    }

    #[test]
    fn overlaps_and_contains_cidr() {
        let a = c("10.0.0.0/16");
        assert!(a.overlaps(&c("10.0.255.0/24")) && c("10.0.255.0/24").overlaps(&a));
        assert!(a.overlaps(&c("0.0.0.0/0")));
        assert!(!a.overlaps(&c("10.1.0.0/16")));
        assert!(!a.overlaps(&c("::/0")), "families never overlap");
        assert!(a.contains_cidr(&a));
        assert!(a.contains_cidr(&c("10.0.7.8/32")));
        assert!(!a.contains_cidr(&c("10.0.0.0/15")));
        assert!(!c("10.0.0.0/15").overlaps(&c("10.2.0.0/15")));
        assert!(c("::/0").contains_cidr(&c("fd00::/64")));
        assert!(!c("::/0").contains_cidr(&c("10.0.0.0/8")));
    }

    #[test]
    fn first_last_and_len() {
        let a = c("10.0.0.0/30");
        assert_eq!((a.first(), a.last(), a.len()), (ip("10.0.0.0"), ip("10.0.0.3"), 4));
        assert_eq!(c("1.2.3.4/32").len(), 1);
        assert_eq!(c("1.2.3.4/32").last(), ip("1.2.3.4"));
        assert_eq!(c("0.0.0.0/0").len(), 1 << 32);
        assert_eq!(c("0.0.0.0/0").last(), ip("255.255.255.255"));
        assert_eq!(c("fd00::/64").len(), 1 << 64);
        assert_eq!(c("fd00::/64").last(), ip("fd00::ffff:ffff:ffff:ffff"));
        assert_eq!(c("::/1").len(), 1 << 127);
        assert_eq!(c("::/0").len(), u128::MAX);
        assert_eq!(c("::/0").last(), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(c("::1").len(), 1);
    }

    #[test]
    fn address_space_validation() {
        let s = [c("10.0.0.0/16"), c("fd00::/48")];
        assert_eq!(validate_address_space(&s, &[("a", c("10.0.0.0/24")), ("b", c("10.0.1.0/29")), ("v6", c("fd00::/64"))]), Ok(()));
        assert_eq!(validate_address_space(&s, &[]), Ok(()));
        assert_eq!(validate_address_space(&[], &[]), Err(NetError::NoAddressSpace));

        let e = validate_address_space(&[c("10.0.0.0/16"), c("192.168.0.0/16"), c("10.0.128.0/17")], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Address spaces 10.0.0.0/16 and 10.0.128.0/17 overlap: remove one of them or choose blocks that do not overlap."
        );
        let e = validate_address_space(&s, &[("a", c("10.1.0.0/24"))]).unwrap_err();
        assert!(
            e.to_string().contains("'a' (10.1.0.0/24) is not inside any address space of the virtual network (10.0.0.0/16, fd00::/48)")
        );
        // Inside the union of two adjacent spaces but not inside either one.
        let e = validate_address_space(&[c("10.0.0.0/24"), c("10.0.1.0/24")], &[("a", c("10.0.0.0/23"))]).unwrap_err();
        assert!(matches!(e, NetError::SubnetOutsideAddressSpace { .. }), "{e}");
        let e = validate_address_space(&s, &[("a", c("10.0.0.0/24")), ("b", c("10.0.0.128/25"))]).unwrap_err();
        assert_eq!(e.to_string(), "Subnets 'a' (10.0.0.0/24) and 'b' (10.0.0.128/25) overlap: give them prefixes that do not overlap.");
        let e = validate_address_space(&s, &[("tiny", c("10.0.0.0/30"))]).unwrap_err();
        assert!(e.to_string().contains("Subnet 'tiny' (10.0.0.0/30) is too small: the smallest subnet is /29"), "{e}");
        let e = validate_address_space(&s, &[("one", c("10.0.0.1/32"))]).unwrap_err();
        assert!(matches!(e, NetError::SubnetTooSmall { smallest: 29, .. }), "{e}");
        let e = validate_address_space(&s, &[("v6", c("fd00::/126"))]).unwrap_err();
        assert!(matches!(e, NetError::SubnetTooSmall { smallest: 125, .. }), "{e}");
        assert_eq!(validate_address_space(&[c("0.0.0.0/0")], &[("all", c("0.0.0.0/0"))]), Ok(()));
        assert_eq!(validate_address_space(&[c("0.0.0.0/0"), c("::/0")], &[]), Ok(()), "families never overlap");
    }

    #[test]
    fn reserved_addresses() {
        let v4 = c("10.0.0.0/24");
        for r in ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.255", "::ffff:10.0.0.3"] {
            assert!(is_reserved(&v4, ip(r)), "{r}");
        }
        for free in ["10.0.0.4", "10.0.0.254", "10.0.1.0", "fd00::"] {
            assert!(!is_reserved(&v4, ip(free)), "{free}");
        }
        let v6 = c("fd00::/64");
        assert!(is_reserved(&v6, ip("fd00::3")));
        assert!(!is_reserved(&v6, ip("fd00::4")));
        assert!(!is_reserved(&v6, ip("fd00::ffff:ffff:ffff:ffff")), "IPv6 has no broadcast address");
    }

    #[test]
    fn allocation_skips_reserved_and_taken() {
        let none = |_: IpAddr| false;
        assert_eq!(allocate_ip(&c("10.0.0.0/24"), &none), Some(ip("10.0.0.4")));
        assert_eq!(allocate_ip(&c("fd00::/64"), &none), Some(ip("fd00::4")));
        let taken: HashSet<IpAddr> = [ip("10.0.0.4"), ip("10.0.0.5")].into_iter().collect();
        assert_eq!(allocate_ip(&c("10.0.0.0/24"), &|a| taken.contains(&a)), Some(ip("10.0.0.6")));
        // A /29 has three usable addresses: .4, .5 and .6 (.7 is the broadcast).
        let s = c("10.0.0.8/29");
        let mut used = HashSet::new();
        while let Some(a) = allocate_ip(&s, &|a| used.contains(&a)) {
            assert!(!is_reserved(&s, a) && s.contains(a));
            used.insert(a);
        }
        assert_eq!(used, [ip("10.0.0.12"), ip("10.0.0.13"), ip("10.0.0.14")].into_iter().collect());
        assert_eq!(allocate_ip(&c("10.0.0.0/30"), &none), None);
        assert_eq!(allocate_ip(&c("10.0.0.7/32"), &none), None);
        assert_eq!(allocate_ip(&c("::1/128"), &none), None);
        assert_eq!(allocate_ip(&c("fd00::/126"), &none), None);
        assert_eq!(allocate_ip(&c("fd00::/125"), &none), Some(ip("fd00::4")));
        assert_eq!(allocate_ip(&c("0.0.0.0/0"), &none), Some(ip("0.0.0.4")));
        assert_eq!(allocate_ip(&c("255.255.255.248/29"), &|a| a != ip("255.255.255.254")), Some(ip("255.255.255.254")));
        assert_eq!(allocate_ip(&c("255.255.255.248/29"), &|_| true), None);
    }

    #[test]
    fn loopback_spaces() {
        assert!(is_loopback_space(&c("127.0.0.0/8")));
        assert!(is_loopback_space(&c("127.10.0.0/16")));
        assert!(is_loopback_space(&c("127.255.255.255/32")));
        assert!(is_loopback_space(&c("::1/128")));
        assert!(!is_loopback_space(&c("126.0.0.0/7")));
        assert!(!is_loopback_space(&c("10.0.0.0/8")));
        assert!(!is_loopback_space(&c("::/127")));
        assert!(!is_loopback_space(&c("::/0")));
    }
}
