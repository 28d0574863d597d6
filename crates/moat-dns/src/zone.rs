//! The zone moat is authoritative for, as immutable data: every name, the `privatelink` alias each
//! public name points to, and which addresses each privatelink name has in each view. Pure: no I/O,
//! no clock. [`ZoneData::build`] validates a [`ZoneSpec`] once; [`ZoneData::answer`] then decides a
//! query with one hash lookup, borrowing the records it returns from the zone (nothing is cloned).

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// TTL of every positive answer: short, so that records follow endpoints within seconds.
pub const TTL: u32 = 30;
/// TTL of negative answers (the SOA in NXDOMAIN/NODATA authority sections): shorter still, so a
/// name queried just before its endpoint exists does not stay "missing" in caches.
pub const NEGATIVE_TTL: u32 = 5;

/// The label inserted before a public name's service label to form its private-link alias, like
/// Azure's `<account>.blob.core.windows.net` → `<account>.privatelink.blob.core.windows.net`; see
/// [`privatelink_name`].
pub const PRIVATELINK_LABEL: &str = "privatelink";
/// The zone's name server host, `ns1.<zone>`, answered with the public addresses.
pub const NAMESERVER_LABEL: &str = "ns1";

/// Longest name in wire form (RFC 1035 §3.1), the size of the stack buffer lookups lowercase into.
const MAX_WIRE_NAME: usize = 255;

/// What moat wants served: everything [`ZoneData::build`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ZoneSpec {
    /// The zone apex, e.g. `moat.internal` (a trailing dot is accepted; case is ignored).
    pub zone: String,
    /// The public listener's addresses (IPv4 and IPv6): what privatelink names resolve to outside
    /// any view that has a private record for them, and the address of `ns1.<zone>`.
    pub public: Vec<IpAddr>,
    /// The public names, each answered with a CNAME to its privatelink form.
    pub names: Vec<NameEntry>,
    /// Per-view addresses of privatelink names (private DNS zone records of linked networks).
    pub private: Vec<PrivateRecord>,
}

/// A public name inside the zone, `<resource>.<service>.<zone>`, e.g. `abc.blob.moat.internal`. It
/// is answered with a CNAME to its [`privatelink_name`], `abc.privatelink.blob.moat.internal`, which resolves to [`ZoneSpec::public`] unless the querier's
/// view has a [`PrivateRecord`] for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NameEntry {
    /// The full name, strictly below the apex.
    pub name: String,
}

/// The addresses a privatelink name has in one view (a network linked to the private zone).
/// Several records for the same name and view add up. A privatelink name that no [`NameEntry`]
/// points to exists only in the views that have records for it (NXDOMAIN elsewhere).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrivateRecord {
    /// The privatelink name, e.g. `abc.privatelink.blob.moat.internal`.
    pub name: String,
    /// The view key, compared exactly (moat uses the network's lowercase ARM id).
    pub view: String,
    /// The private endpoint addresses; empty means the name exists in the view without addresses.
    pub addrs: Vec<IpAddr>,
}

/// Why a [`ZoneSpec`] cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ZoneError {
    /// Not a usable DNS name (empty label, label over 63 bytes, name over 255 bytes, or a character
    /// outside letters, digits, `-` and `_`).
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The name is not strictly below the zone apex.
    #[error("{name:?} is not a name below the zone {zone:?}")]
    OutsideZone {
        /// The name as given.
        name: String,
        /// The zone apex.
        zone: String,
    },
    /// Two kinds of data claim the same name (a CNAME cannot share its name with other data).
    #[error("{name:?} cannot be both {existing} and {new}")]
    Conflict {
        /// The lowercase name.
        name: String,
        /// What the name already is.
        existing: &'static str,
        /// What the spec also wants it to be.
        new: &'static str,
    },
}

/// Address records of one owner name, split by type so A and AAAA queries are slices.
struct Addrs {
    v4: Box<[Record]>,
    v6: Box<[Record]>,
}

impl Addrs {
    fn new(owner: &Name, addrs: &[IpAddr]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            // Keep the caller's order but drop repeats: duplicate RRs are invalid in an RRset.
            if addrs[..i].contains(addr) {
                continue;
            }
            match addr {
                IpAddr::V4(ip) => v4.push(Record::from_rdata(owner.clone(), TTL, RData::A(A(*ip)))),
                IpAddr::V6(ip) => v6.push(Record::from_rdata(owner.clone(), TTL, RData::AAAA(AAAA(*ip)))),
            }
        }
        Self { v4: v4.into_boxed_slice(), v6: v6.into_boxed_slice() }
    }

    fn of_type(&self, qtype: RecordType) -> &[Record] {
        match qtype {
            RecordType::A => &self.v4,
            RecordType::AAAA => &self.v6,
            _ => &[],
        }
    }
}

/// A name that owns addresses: a privatelink name or `ns1.<zone>`.
struct Host {
    /// The answer outside the views below; `None` when no public name points here.
    public: Option<Addrs>,
    /// Per-view answers, sorted by interned view id for a binary search.
    private: Box<[(u32, Addrs)]>,
}

/// What a name in the zone is.
enum Node {
    Apex,
    /// A public name: its CNAME record (index into `ZoneData::cnames`) and the host (index into
    /// `ZoneData::hosts`) it points to. Indices keep the hash table's entries small.
    Alias {
        cname: usize,
        host: usize,
    },
    Host(usize),
    /// An empty non-terminal, e.g. `blob.moat.internal`: it exists (NODATA, not NXDOMAIN) because
    /// names exist below it; resolvers that minimise query names ask for it first (RFC 8020).
    Empty,
}

/// The zone, ready to answer. Built by [`ZoneData::build`]; replaced as a whole, never mutated.
pub struct ZoneData {
    apex: Name,
    /// The apex in lowercase wire form (length-prefixed labels, no root byte): the suffix every
    /// in-zone key ends with.
    apex_key: Box<[u8]>,
    /// Every name in the zone, keyed like `apex_key`: lowercase, so lookups are case-insensitive.
    nodes: HashMap<Box<[u8]>, Node>,
    hosts: Vec<Host>,
    cnames: Vec<Record>,
    /// Interned view keys, so hosts store small integers rather than ARM ids.
    views: HashMap<Box<str>, u32>,
    soa: [Record; 1],
    /// The SOA for authority sections of negative answers, with the negative TTL (RFC 2308 §3).
    soa_negative: [Record; 1],
    ns: [Record; 1],
    /// Addresses of `ns1.<zone>`, sent as additional data with the apex NS.
    ns_glue: Box<[Record]>,
}

impl std::fmt::Debug for ZoneData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneData")
            .field("zone", &self.apex.to_ascii())
            .field("names", &self.nodes.len())
            .field("views", &self.views.len())
            .finish_non_exhaustive()
    }
}

/// A decided response: the rcode, the AA flag and the records of each section, borrowed from the
/// zone. [`crate::wire::respond`] encodes it.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'z> {
    rcode: ResponseCode,
    authoritative: bool,
    outside_zone: bool,
    cname: &'z [Record],
    records: &'z [Record],
    authority: &'z [Record],
    additional: &'z [Record],
}

impl<'z> Answer<'z> {
    fn empty(rcode: ResponseCode, authoritative: bool) -> Self {
        Self { rcode, authoritative, outside_zone: false, cname: &[], records: &[], authority: &[], additional: &[] }
    }

    /// An answer carrying only an error rcode, for requests the zone is never asked about.
    pub(crate) fn error(rcode: ResponseCode) -> Answer<'static> {
        Answer::empty(rcode, false)
    }

    /// The response code.
    pub fn rcode(&self) -> ResponseCode {
        self.rcode
    }

    /// Whether the AA flag is set (every answer about a name inside the zone).
    pub fn is_authoritative(&self) -> bool {
        self.authoritative
    }

    /// Whether the name is outside the zone (answered REFUSED under [`crate::OutsideZone::Refuse`]).
    pub fn is_outside_zone(&self) -> bool {
        self.outside_zone
    }

    /// The answer section: the CNAME first, if any, then the records of the queried type.
    pub fn answers(&self) -> impl Iterator<Item = &'z Record> + Clone + use<'z> {
        self.cname.iter().chain(self.records)
    }

    /// The authority section (the zone's SOA on negative answers).
    pub fn authorities(&self) -> &'z [Record] {
        self.authority
    }

    /// The additional section (glue addresses for the apex NS).
    pub fn additionals(&self) -> &'z [Record] {
        self.additional
    }
}

impl ZoneData {
    /// Validates `spec` and builds the zone: the apex (SOA, NS), `ns1.<zone>`, every name's CNAME
    /// and privatelink host, the private records per view, and the empty non-terminals between.
    pub fn build(spec: &ZoneSpec) -> Result<Self, ZoneError> {
        let apex_text = canonical_text(&spec.zone)?;
        let apex = to_name(&spec.zone, &apex_text)?;
        let apex_key = wire_key_of(&apex_text);
        let mut builder = Builder { apex_text: &apex_text, nodes: HashMap::new(), hosts: Vec::new(), views: HashMap::new() };
        builder.nodes.insert(apex_key.clone(), PendingNode::Apex);

        let ns_text = format!("{NAMESERVER_LABEL}.{apex_text}");
        let ns_name = to_name(&ns_text, &ns_text)?;
        builder.public_host(&ns_text, ns_name.clone())?;

        for entry in &spec.names {
            let text = builder.below_apex(&entry.name)?;
            let target_text = privatelink_text(&entry.name, &text, &apex_text)?;
            let target = to_name(&entry.name, &target_text)?;
            let host = builder.public_host(&target_text, target.clone())?;
            let owner = to_name(&entry.name, &text)?;
            match builder.nodes.entry(wire_key_of(&text)) {
                Entry::Vacant(slot) => {
                    slot.insert(PendingNode::Alias { owner, target, host });
                }
                Entry::Occupied(slot) => match slot.get() {
                    PendingNode::Alias { host: existing, .. } if *existing == host => {}
                    other => return Err(ZoneError::Conflict { name: text, existing: other.kind(), new: "a public name (CNAME)" }),
                },
            }
        }

        for record in &spec.private {
            let text = builder.below_apex(&record.name)?;
            let owner = to_name(&record.name, &text)?;
            let next_view = u32::try_from(builder.views.len()).unwrap_or(u32::MAX);
            let view = *builder.views.entry(record.view.as_str().into()).or_insert(next_view);
            let host = match builder.nodes.entry(wire_key_of(&text)) {
                Entry::Occupied(slot) => match slot.get() {
                    PendingNode::Host(host) => *host,
                    other => return Err(ZoneError::Conflict { name: text, existing: other.kind(), new: "a private record" }),
                },
                Entry::Vacant(slot) => {
                    builder.hosts.push(PendingHost { owner, public: false, private: BTreeMap::new() });
                    let host = builder.hosts.len() - 1;
                    slot.insert(PendingNode::Host(host));
                    host
                }
            };
            if let Some(pending) = builder.hosts.get_mut(host) {
                pending.private.entry(view).or_default().extend_from_slice(&record.addrs);
            }
        }

        // Every ancestor between a name and the apex exists, possibly empty.
        let mut ancestors = Vec::new();
        for key in builder.nodes.keys() {
            let mut rest: &[u8] = key;
            while let Some(parent) = parent_key(rest) {
                if parent.len() <= apex_key.len() {
                    break;
                }
                ancestors.push(Box::<[u8]>::from(parent));
                rest = parent;
            }
        }
        for key in ancestors {
            builder.nodes.entry(key).or_insert(PendingNode::Empty);
        }

        let hostmaster_text = format!("hostmaster.{apex_text}");
        let hostmaster = to_name(&hostmaster_text, &hostmaster_text)?;
        Ok(builder.finish(spec, Apex { name: apex, key: apex_key, ns: ns_name, hostmaster }))
    }

    /// The zone apex, lowercase and fully qualified.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// Decides the response to `query` from a client in `view` (`None`: no view, the public answer).
    /// Names are matched case-insensitively; an unknown view is the public view.
    pub fn answer(&self, query: &Query, view: Option<&str>) -> Answer<'_> {
        let mut buf = [0u8; MAX_WIRE_NAME];
        let Some(key) = wire_key(&query.name, &mut buf) else {
            return Answer::empty(ResponseCode::FormErr, false);
        };
        if query.query_class != DNSClass::IN {
            // moat serves Internet-class data only; CHAOS/HESIOD queries get no information.
            return Answer::empty(ResponseCode::Refused, false);
        }
        let qtype = query.query_type;
        let Some(node) = self.nodes.get(key) else {
            if self.contains(key) {
                return self.negative(ResponseCode::NXDomain);
            }
            return Answer { outside_zone: true, ..Answer::empty(ResponseCode::Refused, false) };
        };
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // The zone lives only in this process; there are no secondaries to transfer it to.
            return Answer::empty(ResponseCode::Refused, false);
        }
        match node {
            Node::Apex => match qtype {
                RecordType::SOA => self.positive(&[], &self.soa, &[]),
                RecordType::NS => self.positive(&[], &self.ns, &self.ns_glue),
                _ => self.negative(ResponseCode::NoError),
            },
            Node::Alias { cname, host } => {
                // The CNAME answers every type (RFC 1034 §3.6.2); for A/AAAA the target's addresses follow
                // in the same response, as stub resolvers expect from a server authoritative for both.
                let target = match qtype {
                    RecordType::A | RecordType::AAAA => self.host_addrs(*host, view),
                    _ => None,
                };
                let records = target.map_or(&[][..], |addrs| addrs.of_type(qtype));
                let cname = self.cnames.get(*cname).map_or(&[][..], std::slice::from_ref);
                let mut answer = self.positive(cname, records, &[]);
                if records.is_empty() {
                    answer.authority = &self.soa_negative;
                }
                answer
            }
            Node::Host(host) => match self.host_addrs(*host, view) {
                None => self.negative(ResponseCode::NXDomain),
                Some(addrs) => {
                    let records = addrs.of_type(qtype);
                    if records.is_empty() { self.negative(ResponseCode::NoError) } else { self.positive(&[], records, &[]) }
                }
            },
            Node::Empty => self.negative(ResponseCode::NoError),
        }
    }

    /// The addresses `host` has in `view`: the view's private records if it has any, else the
    /// public ones; `None` when the host does not exist for this view.
    fn host_addrs(&self, host: usize, view: Option<&str>) -> Option<&Addrs> {
        let host = self.hosts.get(host)?;
        if !host.private.is_empty()
            && let Some(id) = view.and_then(|v| self.views.get(v))
            && let Ok(i) = host.private.binary_search_by_key(id, |(v, _)| *v)
        {
            return host.private.get(i).map(|(_, addrs)| addrs);
        }
        host.public.as_ref()
    }

    fn positive<'z>(&'z self, cname: &'z [Record], records: &'z [Record], additional: &'z [Record]) -> Answer<'z> {
        Answer { cname, records, additional, ..Answer::empty(ResponseCode::NoError, true) }
    }

    /// NXDOMAIN, or NODATA (`NoError` with no records), with the SOA so resolvers can cache it.
    fn negative(&self, rcode: ResponseCode) -> Answer<'_> {
        Answer { authority: &self.soa_negative, ..Answer::empty(rcode, true) }
    }

    /// Whether `key` is the apex or below it.
    fn contains(&self, key: &[u8]) -> bool {
        let mut rest = key;
        while rest.len() >= self.apex_key.len() {
            if rest == &*self.apex_key {
                return true;
            }
            match parent_key(rest) {
                Some(parent) => rest = parent,
                None => return false,
            }
        }
        false
    }
}

/// Build-time state; names are interned and checked here, records are made in [`Builder::finish`].
struct Builder<'a> {
    apex_text: &'a str,
    nodes: HashMap<Box<[u8]>, PendingNode>,
    hosts: Vec<PendingHost>,
    views: HashMap<Box<str>, u32>,
}

enum PendingNode {
    Apex,
    Alias { owner: Name, target: Name, host: usize },
    Host(usize),
    Empty,
}

impl PendingNode {
    fn kind(&self) -> &'static str {
        match self {
            Self::Apex => "the zone apex",
            Self::Alias { .. } => "a public name (CNAME)",
            Self::Host(_) => "a privatelink name",
            Self::Empty => "an empty non-terminal",
        }
    }
}

/// The apex's names, made once in [`ZoneData::build`].
struct Apex {
    name: Name,
    key: Box<[u8]>,
    ns: Name,
    hostmaster: Name,
}

struct PendingHost {
    owner: Name,
    public: bool,
    private: BTreeMap<u32, Vec<IpAddr>>,
}

impl Builder<'_> {
    /// The canonical text of `name`, checked to be strictly below the apex.
    fn below_apex(&self, name: &str) -> Result<String, ZoneError> {
        let text = canonical_text(name)?;
        let inside = text.strip_suffix(self.apex_text).is_some_and(|head| head.len() > 1 && head.ends_with('.'));
        if inside { Ok(text) } else { Err(ZoneError::OutsideZone { name: name.to_owned(), zone: self.apex_text.to_owned() }) }
    }

    /// The host at `text`, created if absent, marked as answered publicly.
    fn public_host(&mut self, text: &str, owner: Name) -> Result<usize, ZoneError> {
        let host = match self.nodes.entry(wire_key_of(text)) {
            Entry::Occupied(slot) => match slot.get() {
                PendingNode::Host(host) => *host,
                other => return Err(ZoneError::Conflict { name: text.to_owned(), existing: other.kind(), new: "a privatelink name" }),
            },
            Entry::Vacant(slot) => {
                self.hosts.push(PendingHost { owner, public: false, private: BTreeMap::new() });
                let host = self.hosts.len() - 1;
                slot.insert(PendingNode::Host(host));
                host
            }
        };
        if let Some(pending) = self.hosts.get_mut(host) {
            pending.public = true;
        }
        Ok(host)
    }

    fn finish(self, spec: &ZoneSpec, apex: Apex) -> ZoneData {
        let hosts: Vec<Host> = self
            .hosts
            .iter()
            .map(|pending| Host {
                public: pending.public.then(|| Addrs::new(&pending.owner, &spec.public)),
                private: pending.private.iter().map(|(view, addrs)| (*view, Addrs::new(&pending.owner, addrs))).collect(),
            })
            .collect();
        let mut cnames = Vec::new();
        let nodes = self
            .nodes
            .into_iter()
            .map(|(key, node)| {
                let node = match node {
                    PendingNode::Apex => Node::Apex,
                    PendingNode::Alias { owner, target, host } => {
                        cnames.push(Record::from_rdata(owner, TTL, RData::CNAME(CNAME(target))));
                        Node::Alias { cname: cnames.len() - 1, host }
                    }
                    PendingNode::Host(host) => Node::Host(host),
                    PendingNode::Empty => Node::Empty,
                };
                (key, node)
            })
            .collect();

        // The serial only has to change when the content does; nothing transfers this zone.
        let mut hasher = DefaultHasher::new();
        spec.hash(&mut hasher);
        let serial = (hasher.finish() as u32).max(1);
        let soa = |ttl| {
            let data = SOA::new(apex.ns.clone(), apex.hostmaster.clone(), serial, 300, 60, 86_400, NEGATIVE_TTL);
            [Record::from_rdata(apex.name.clone(), ttl, RData::SOA(data))]
        };
        let glue = Addrs::new(&apex.ns, &spec.public);
        ZoneData {
            soa: soa(TTL),
            soa_negative: soa(NEGATIVE_TTL),
            ns: [Record::from_rdata(apex.name.clone(), TTL, RData::NS(NS(apex.ns.clone())))],
            ns_glue: glue.v4.iter().chain(glue.v6.iter()).cloned().collect(),
            apex: apex.name,
            apex_key: apex.key,
            nodes,
            hosts,
            cnames,
            views: self.views,
        }
    }
}

/// The privatelink form of the public `name` in `zone`, lowercase and without a trailing dot: the
/// `privatelink` label goes right before the service label under the apex, as in Azure
/// (`<guid>.registry.<region>.api.<zone>` → `<guid>.registry.<region>.privatelink.api.<zone>`,
/// `<account>.blob.<zone>` → `<account>.privatelink.blob.<zone>`). moat uses it to name private DNS
/// records; [`ZoneData::build`] uses it for every [`NameEntry`]'s CNAME.
pub fn privatelink_name(zone: &str, name: &str) -> Result<String, ZoneError> {
    let apex = canonical_text(zone)?;
    let text = canonical_text(name)?;
    privatelink_text(name, &text, &apex)
}

fn privatelink_text(original: &str, text: &str, apex: &str) -> Result<String, ZoneError> {
    let outside = || ZoneError::OutsideZone { name: original.to_owned(), zone: apex.to_owned() };
    let head = text.strip_suffix(apex).and_then(|head| head.strip_suffix('.')).filter(|head| !head.is_empty()).ok_or_else(outside)?;
    let Some((resource, service)) = head.rsplit_once('.') else {
        return Err(ZoneError::InvalidName { name: original.to_owned(), reason: "a public name is <resource>.<service>.<zone>" });
    };
    if resource.rsplit('.').next() == Some(PRIVATELINK_LABEL) {
        return Err(ZoneError::InvalidName { name: original.to_owned(), reason: "already a privatelink name" });
    }
    let target = format!("{resource}.{PRIVATELINK_LABEL}.{service}.{apex}");
    if target.len() + 2 > MAX_WIRE_NAME {
        return Err(ZoneError::InvalidName { name: original.to_owned(), reason: "its privatelink form is longer than 255 bytes" });
    }
    Ok(target)
}

/// `name` lowercased, without a trailing dot, checked label by label.
fn canonical_text(name: &str) -> Result<String, ZoneError> {
    let invalid = |reason| ZoneError::InvalidName { name: name.to_owned(), reason };
    let text = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if text.is_empty() {
        return Err(invalid("empty name"));
    }
    // Wire length: one length byte per label plus its bytes, plus the root byte.
    if text.len() + 2 > MAX_WIRE_NAME {
        return Err(invalid("longer than 255 bytes"));
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err(invalid("empty label"));
        }
        if label.len() > 63 {
            return Err(invalid("label longer than 63 bytes"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(invalid("only letters, digits, '-' and '_' are allowed"));
        }
    }
    Ok(text)
}

fn to_name(original: &str, text: &str) -> Result<Name, ZoneError> {
    let invalid = |reason| ZoneError::InvalidName { name: original.to_owned(), reason };
    if text.len() + 2 > MAX_WIRE_NAME {
        return Err(invalid("longer than 255 bytes"));
    }
    let mut name = Name::from_ascii(text).map_err(|_| invalid("not a DNS name"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The lookup key of a checked, lowercase name text.
fn wire_key_of(text: &str) -> Box<[u8]> {
    let mut key = Vec::with_capacity(text.len() + 1);
    for label in text.split('.') {
        key.push(label.len() as u8);
        key.extend_from_slice(label.as_bytes());
    }
    key.into_boxed_slice()
}

/// The lookup key of a queried name, lowercased into `buf` so that no lookup allocates.
fn wire_key<'b>(name: &Name, buf: &'b mut [u8; MAX_WIRE_NAME]) -> Option<&'b [u8]> {
    let mut len = 0;
    for label in name.iter() {
        let end = len + 1 + label.len();
        let (size, bytes) = buf.get_mut(len..end)?.split_first_mut()?;
        *size = u8::try_from(label.len()).ok()?;
        for (dst, src) in bytes.iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        len = end;
    }
    buf.get(..len)
}

/// The key of the parent name (the key without its first label); `None` for the root.
fn parent_key(key: &[u8]) -> Option<&[u8]> {
    let (&len, _) = key.split_first()?;
    key.get(usize::from(len) + 1..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const VNET_A: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/a";
    const VNET_B: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/b";
    const PUBLIC_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    const PUBLIC_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10));

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec() -> ZoneSpec {
        ZoneSpec {
            zone: "moat.internal".into(),
            public: vec![PUBLIC_V4, PUBLIC_V6],
            names: ["abc.blob.moat.internal", "0d8e.registry.eastus.api.moat.internal", "eastus.api.moat.internal"]
                .into_iter()
                .map(|name| NameEntry { name: name.into() })
                .collect(),
            private: vec![
                PrivateRecord { name: "abc.privatelink.blob.moat.internal".into(), view: VNET_A.into(), addrs: vec![ip("10.0.0.4")] },
                PrivateRecord { name: "abc.privatelink.blob.moat.internal".into(), view: VNET_B.into(), addrs: vec![ip("10.1.0.4")] },
                PrivateRecord {
                    name: "0d8e.registry.eastus.privatelink.api.moat.internal".into(),
                    view: VNET_A.into(),
                    addrs: vec![ip("10.0.0.5"), ip("fd00::5")],
                },
                PrivateRecord { name: "only.privatelink.cr.moat.internal".into(), view: VNET_A.into(), addrs: vec![ip("10.0.0.6")] },
            ],
        }
    }

    fn zone() -> ZoneData {
        ZoneData::build(&spec()).unwrap()
    }

    fn query(name: &str, qtype: RecordType) -> Query {
        Query::query(Name::from_ascii(name).unwrap(), qtype)
    }

    /// The answer section as `(owner, type, data)` strings, for readable assertions.
    fn rows(answer: &Answer<'_>) -> Vec<String> {
        answer.answers().map(|r| format!("{} {} {}", r.name, r.record_type(), r.data)).collect()
    }

    fn is_soa(records: &[Record]) -> bool {
        matches!(records, [r] if r.record_type() == RecordType::SOA && r.name.to_ascii() == "moat.internal.")
    }

    #[test]
    fn split_horizon_gives_each_view_its_private_address_and_everyone_else_the_public_one() {
        let zone = zone();
        let q = query("abc.blob.moat.internal", RecordType::A);
        let cname = "abc.blob.moat.internal. CNAME abc.privatelink.blob.moat.internal.";
        for (view, addr) in
            [(Some(VNET_A), "10.0.0.4"), (Some(VNET_B), "10.1.0.4"), (None, "203.0.113.10"), (Some("unlinked"), "203.0.113.10")]
        {
            let answer = zone.answer(&q, view);
            assert_eq!(answer.rcode(), ResponseCode::NoError);
            assert!(answer.is_authoritative());
            assert_eq!(rows(&answer), [cname.to_owned(), format!("abc.privatelink.blob.moat.internal. A {addr}")], "view {view:?}");
            assert!(answer.authorities().is_empty());
        }
    }

    #[test]
    fn cname_chain_carries_the_targets_addresses_and_the_privatelink_name_answers_directly() {
        let zone = zone();
        let answer = zone.answer(&query("0d8e.registry.eastus.api.moat.internal", RecordType::AAAA), Some(VNET_A));
        assert_eq!(
            rows(&answer),
            [
                "0d8e.registry.eastus.api.moat.internal. CNAME 0d8e.registry.eastus.privatelink.api.moat.internal.",
                "0d8e.registry.eastus.privatelink.api.moat.internal. AAAA fd00::5",
            ]
        );
        let direct = zone.answer(&query("abc.privatelink.blob.moat.internal", RecordType::A), Some(VNET_B));
        assert_eq!(rows(&direct), ["abc.privatelink.blob.moat.internal. A 10.1.0.4"]);
        let cname_only = zone.answer(&query("abc.blob.moat.internal", RecordType::CNAME), None);
        assert_eq!(rows(&cname_only), ["abc.blob.moat.internal. CNAME abc.privatelink.blob.moat.internal."]);
        let regional = zone.answer(&query("eastus.api.moat.internal", RecordType::AAAA), None);
        assert_eq!(rows(&regional)[1], "eastus.privatelink.api.moat.internal. AAAA 2001:db8::a");
    }

    #[test]
    fn unknown_names_in_the_zone_are_nxdomain_with_the_soa() {
        let zone = zone();
        for name in ["nope.blob.moat.internal", "x.abc.blob.moat.internal", "nope.moat.internal"] {
            let answer = zone.answer(&query(name, RecordType::A), None);
            assert_eq!(answer.rcode(), ResponseCode::NXDomain, "{name}");
            assert!(answer.is_authoritative());
            assert_eq!(answer.answers().count(), 0);
            assert!(is_soa(answer.authorities()), "{name}");
            assert_eq!(answer.authorities()[0].ttl, NEGATIVE_TTL);
        }
    }

    #[test]
    fn names_outside_the_zone_are_refused_without_authority() {
        let zone = zone();
        for name in ["example.com", "internal", "moat.internal.example.com", "xmoat.internal"] {
            let answer = zone.answer(&query(name, RecordType::A), None);
            assert_eq!(answer.rcode(), ResponseCode::Refused, "{name}");
            assert!(answer.is_outside_zone());
            assert!(!answer.is_authoritative());
            assert_eq!(answer.answers().count() + answer.authorities().len(), 0);
        }
    }

    #[test]
    fn aaaa_without_v6_data_is_nodata_not_nxdomain() {
        let zone = zone();
        let direct = zone.answer(&query("abc.privatelink.blob.moat.internal", RecordType::AAAA), Some(VNET_A));
        assert_eq!(direct.rcode(), ResponseCode::NoError);
        assert_eq!(direct.answers().count(), 0);
        assert!(is_soa(direct.authorities()));
        // Through the alias: the CNAME, then nothing, still NOERROR.
        let alias = zone.answer(&query("abc.blob.moat.internal", RecordType::AAAA), Some(VNET_A));
        assert_eq!(alias.rcode(), ResponseCode::NoError);
        assert_eq!(rows(&alias), ["abc.blob.moat.internal. CNAME abc.privatelink.blob.moat.internal."]);
        assert!(is_soa(alias.authorities()));
    }

    #[test]
    fn other_types_on_known_names_are_nodata() {
        let zone = zone();
        for (name, qtype) in [
            ("abc.privatelink.blob.moat.internal", RecordType::ANY),
            ("abc.privatelink.blob.moat.internal", RecordType::TXT),
            ("abc.privatelink.blob.moat.internal", RecordType::MX),
            ("moat.internal", RecordType::A),
            ("moat.internal", RecordType::ANY),
        ] {
            let answer = zone.answer(&query(name, qtype), None);
            assert_eq!((answer.rcode(), answer.answers().count()), (ResponseCode::NoError, 0), "{name} {qtype}");
            assert!(is_soa(answer.authorities()));
        }
        // On a public name the CNAME itself is the answer to any type, as RFC 1034 §3.6.2 requires.
        let txt = zone.answer(&query("abc.blob.moat.internal", RecordType::TXT), None);
        assert_eq!(rows(&txt), ["abc.blob.moat.internal. CNAME abc.privatelink.blob.moat.internal."]);
    }

    #[test]
    fn empty_non_terminals_exist() {
        let zone = zone();
        for name in
            ["blob.moat.internal", "privatelink.blob.moat.internal", "registry.eastus.privatelink.api.moat.internal", "api.moat.internal"]
        {
            let answer = zone.answer(&query(name, RecordType::A), None);
            assert_eq!((answer.rcode(), answer.answers().count()), (ResponseCode::NoError, 0), "{name}");
        }
    }

    #[test]
    fn names_match_case_insensitively() {
        let zone = zone();
        let answer = zone.answer(&query("AbC.BLOB.Moat.Internal", RecordType::A), Some(VNET_A));
        assert_eq!(rows(&answer)[1], "abc.privatelink.blob.moat.internal. A 10.0.0.4");
        let apex = zone.answer(&query("MOAT.INTERNAL.", RecordType::SOA), None);
        assert!(is_soa(&apex.answers().cloned().collect::<Vec<_>>()));
    }

    #[test]
    fn apex_has_soa_and_ns_with_glue() {
        let zone = zone();
        let soa = zone.answer(&query("moat.internal", RecordType::SOA), None);
        assert!(soa.is_authoritative());
        let soa_record = soa.answers().next().unwrap();
        assert_eq!(soa_record.ttl, TTL);
        let RData::SOA(data) = &soa_record.data else { panic!("not an SOA") };
        assert_eq!(data.mname.to_ascii(), "ns1.moat.internal.");
        assert_eq!(data.rname.to_ascii(), "hostmaster.moat.internal.");
        assert_eq!(data.minimum, NEGATIVE_TTL);

        let ns = zone.answer(&query("moat.internal", RecordType::NS), None);
        assert_eq!(rows(&ns), ["moat.internal. NS ns1.moat.internal."]);
        let glue: Vec<_> = ns.additionals().iter().map(|r| r.data.to_string()).collect();
        assert_eq!(glue, ["203.0.113.10", "2001:db8::a"]);
        let host = zone.answer(&query("ns1.moat.internal", RecordType::A), Some(VNET_A));
        assert_eq!(rows(&host), ["ns1.moat.internal. A 203.0.113.10"]);
    }

    #[test]
    fn a_privatelink_name_without_a_public_name_exists_only_in_its_views() {
        let zone = zone();
        let inside = zone.answer(&query("only.privatelink.cr.moat.internal", RecordType::A), Some(VNET_A));
        assert_eq!(rows(&inside), ["only.privatelink.cr.moat.internal. A 10.0.0.6"]);
        for view in [None, Some(VNET_B)] {
            let outside = zone.answer(&query("only.privatelink.cr.moat.internal", RecordType::A), view);
            assert_eq!(outside.rcode(), ResponseCode::NXDomain);
        }
    }

    #[test]
    fn records_for_the_same_view_add_up_without_duplicates() {
        let mut spec = spec();
        spec.private.push(PrivateRecord {
            name: "abc.privatelink.blob.moat.internal".into(),
            view: VNET_A.into(),
            addrs: vec![ip("10.0.0.4"), ip("10.0.0.9")],
        });
        let zone = ZoneData::build(&spec).unwrap();
        let answer = zone.answer(&query("abc.privatelink.blob.moat.internal", RecordType::A), Some(VNET_A));
        assert_eq!(rows(&answer), ["abc.privatelink.blob.moat.internal. A 10.0.0.4", "abc.privatelink.blob.moat.internal. A 10.0.0.9"]);
    }

    #[test]
    fn non_internet_classes_and_zone_transfers_are_refused() {
        let zone = zone();
        let mut chaos = query("moat.internal", RecordType::TXT);
        chaos.query_class = DNSClass::CH;
        assert_eq!(zone.answer(&chaos, None).rcode(), ResponseCode::Refused);
        assert_eq!(zone.answer(&query("moat.internal", RecordType::AXFR), None).rcode(), ResponseCode::Refused);
    }

    #[test]
    fn privatelink_names_follow_azure() {
        let zone = "moat.internal";
        for (name, expected) in [
            ("abc.blob.moat.internal", "abc.privatelink.blob.moat.internal"),
            ("0D8E.registry.eastus.api.moat.internal.", "0d8e.registry.eastus.privatelink.api.moat.internal"),
            ("eastus.api.moat.internal", "eastus.privatelink.api.moat.internal"),
            ("myacr.cr.moat.internal", "myacr.privatelink.cr.moat.internal"),
            ("myacr.eastus.data.cr.moat.internal", "myacr.eastus.data.privatelink.cr.moat.internal"),
        ] {
            assert_eq!(privatelink_name(zone, name).unwrap(), expected);
        }
        assert!(privatelink_name(zone, "abc.example.com").is_err());
        assert!(privatelink_name(zone, "abc.moat.internal").is_err());
        assert!(privatelink_name(zone, "abc.privatelink.blob.moat.internal").is_err());
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let build = |edit: &dyn Fn(&mut ZoneSpec)| {
            let mut spec = spec();
            edit(&mut spec);
            ZoneData::build(&spec)
        };
        let err = build(&|s| s.names.push(NameEntry { name: "abc.example.com".into() })).unwrap_err();
        assert!(matches!(err, ZoneError::OutsideZone { .. }), "{err}");
        let err = build(&|s| s.names.push(NameEntry { name: "moat.internal".into() })).unwrap_err();
        assert!(matches!(err, ZoneError::OutsideZone { .. }), "{err}");
        let err = build(&|s| s.names.push(NameEntry { name: "a..moat.internal".into() })).unwrap_err();
        assert!(matches!(err, ZoneError::InvalidName { .. }), "{err}");
        let err = build(&|s| s.names.push(NameEntry { name: "bad name.moat.internal".into() })).unwrap_err();
        assert!(matches!(err, ZoneError::InvalidName { .. }), "{err}");
        let err = build(&|s| s.names.push(NameEntry { name: format!("{}.moat.internal", "a".repeat(64)) })).unwrap_err();
        assert!(matches!(err, ZoneError::InvalidName { .. }), "{err}");
        let err = build(&|s| s.names.push(NameEntry { name: "x.privatelink.blob.moat.internal".into() })).unwrap_err();
        assert!(matches!(err, ZoneError::InvalidName { .. }), "{err}");
        // A private record on a public name would put data next to its CNAME.
        let err = build(&|s| s.private.push(PrivateRecord { name: "abc.blob.moat.internal".into(), view: VNET_A.into(), addrs: vec![] }))
            .unwrap_err();
        assert!(matches!(err, ZoneError::Conflict { .. }), "{err}");
        // A public name needs a service label between the resource and the apex.
        let err = build(&|s| s.names.push(NameEntry { name: "ns1.moat.internal".into() })).unwrap_err();
        assert!(matches!(err, ZoneError::InvalidName { .. }), "{err}");
        // Repeating a name is harmless.
        build(&|s| s.names.push(NameEntry { name: "ABC.blob.moat.internal.".into() })).unwrap();
    }
}
