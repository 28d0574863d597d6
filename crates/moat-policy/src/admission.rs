//! Network admission: may a request that arrived from this origin (the public listener, or one
//! private endpoint's listener) reach this resource on this plane? Judged for every data-plane
//! request before authorization. Pure: the caller loads a snapshot of the networked resources
//! and private endpoints into an [`AdmissionIndex`]; deciding allocates nothing unless it denies.
//! Depends only on `moat-types`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub use moat_types::PublicNetworkAccess as Switch;
use moat_types::net::{Cidr, canonical_ip, ip_to_u128};

/// A data plane, named by its Private Link group ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plane {
    /// Discovery, asset metadata and the MLflow-compatible API of a registry.
    AmlRegistry,
    /// Asset bytes in a registry's storage account.
    Blob,
    /// OCI images in a registry's container registry.
    Registry,
}

impl Plane {
    pub const ALL: [Plane; 3] = [Plane::AmlRegistry, Plane::Blob, Plane::Registry];

    pub fn as_group_id(self) -> &'static str {
        match self {
            Plane::AmlRegistry => "amlregistry",
            Plane::Blob => "blob",
            Plane::Registry => "registry",
        }
    }

    /// The kind of resource that serves the plane, as a sentence names it.
    pub fn resource_kind(self) -> &'static str {
        match self {
            Plane::AmlRegistry => "registry",
            Plane::Blob => "storage account",
            Plane::Registry => "container registry",
        }
    }
}

impl fmt::Display for Plane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_group_id())
    }
}

/// A string that is not a Private Link group ID moat serves.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a private link group ID of a registry: use 'amlregistry', 'blob' or 'registry'.")]
pub struct UnknownPlane(pub String);

impl FromStr for Plane {
    type Err = UnknownPlane;

    fn from_str(s: &str) -> Result<Self, UnknownPlane> {
        Plane::ALL.into_iter().find(|p| p.as_group_id().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownPlane(s.to_string()))
    }
}

/// `networkAcls.defaultAction`: what happens to public traffic no rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    Allow,
    Deny,
}

/// The state of a private endpoint connection, as Azure's `EndpointServiceConnectionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionStatus {
    Approved,
    Pending,
    Rejected,
    Disconnected,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Approved => "Approved",
            ConnectionStatus::Pending => "Pending",
            ConnectionStatus::Rejected => "Rejected",
            ConnectionStatus::Disconnected => "Disconnected",
        }
    }
}

/// A resource's firewall for public traffic (`networkAcls` of a storage account or container
/// registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkAcls {
    pub default_action: DefaultAction,
    pub ip_rules: Vec<Cidr>,
    /// Lowercase ARM IDs of resources whose identity may pass (resource instance rules), e.g. a
    /// registry allowed into a workspace's storage account.
    pub resource_access_rules: Vec<String>,
}

/// A resource that serves one plane and has network settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetResource {
    /// Lowercase ARM ID.
    pub key: String,
    /// Display name.
    pub name: String,
    pub plane: Plane,
    /// `publicNetworkAccess`; `None` inherits the parent's.
    pub public_access: Option<Switch>,
    /// The owning registry's key, for storage accounts and container registries.
    pub parent: Option<String>,
    pub acls: Option<NetworkAcls>,
}

/// A private endpoint: a listener in a virtual network serving exactly one resource and plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetEndpoint {
    /// Lowercase ARM ID of the `Microsoft.Network/privateEndpoints` resource.
    pub key: String,
    pub name: String,
    /// Key of the resource it serves.
    pub target: String,
    pub plane: Plane,
    pub status: ConnectionStatus,
    /// Display name of its virtual network.
    pub vnet: String,
    /// The virtual network's address space.
    pub address_space: Vec<Cidr>,
}

/// Where a connection arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin<'a> {
    Public,
    /// The listener of this private endpoint (its lowercase key).
    Endpoint(&'a str),
}

/// One request to judge. Keys are expected lowercase; other casings are accepted at the cost of
/// an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub origin: Origin<'a>,
    /// The connection's peer address, as the socket reports it.
    pub peer: IpAddr,
    /// Key of the resource addressed.
    pub resource: &'a str,
    pub plane: Plane,
    /// Key of the resource whose managed identity makes the call, if any.
    pub caller_resource: Option<&'a str>,
}

/// Why a request was let through, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Public origin, public access Enabled and no firewall in the way.
    PublicNetwork,
    /// Public origin, firewall denies by default, an IP rule matched the peer.
    IpRule,
    /// Public origin, firewall denies by default, the caller's resource is allowed by identity.
    ResourceAccessRule,
    /// An approved private endpoint to this resource and plane, peer inside its network.
    PrivateEndpoint,
    /// The resource has no network settings (it does not exist, as far as admission knows):
    /// the caller's normal not-found path answers, so a denial cannot reveal anything.
    NotNetworked,
}

impl Admission {
    pub fn rule(self) -> &'static str {
        match self {
            Admission::PublicNetwork => "public network access is Enabled",
            Admission::IpRule => "an IP rule matches the caller's address",
            Admission::ResourceAccessRule => "a resource access rule admits the calling resource",
            Admission::PrivateEndpoint => "an approved private endpoint to this resource serves the caller's virtual network",
            Admission::NotNetworked => "the resource has no network settings",
        }
    }
}

/// The rule that refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyRule {
    /// Public origin, effective public network access Disabled; `inherited_from` names the
    /// registry the setting comes from when the resource does not set its own.
    PublicNetworkAccessDisabled {
        inherited_from: Option<String>,
    },
    /// Public origin, firewall denies by default and no IP or resource rule matched.
    IpNotAllowed,
    /// The private endpoint the request arrived through no longer exists.
    UnknownPrivateEndpoint,
    /// The private endpoint serves another resource.
    PrivateEndpointWrongTarget,
    /// The private endpoint serves this resource, but another plane.
    PrivateEndpointWrongPlane {
        endpoint_plane: Plane,
    },
    PrivateEndpointNotApproved {
        status: ConnectionStatus,
    },
    /// The peer address lies outside the endpoint's virtual network.
    PeerOutsideVirtualNetwork {
        address_space: Vec<Cidr>,
    },
}

/// A refused request, with what a message needs: the resource, the plane, the origin, the rule.
/// Names only the addressed resource, its registry and the endpoint used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub rule: DenyRule,
    pub resource_name: String,
    pub resource_key: String,
    /// "registry", "storage account" or "container registry".
    pub resource_kind: &'static str,
    pub plane: Plane,
    /// "the public network" or "private endpoint 'pe1' in virtual network 'vnet1'".
    pub origin: String,
    /// The private endpoint used, if any, and its virtual network.
    pub endpoint: Option<String>,
    pub vnet: Option<String>,
    /// The peer address, canonicalised.
    pub peer: IpAddr,
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

impl Denial {
    /// A stable code for clients and the audit log.
    pub fn code(&self) -> &'static str {
        match self.rule {
            DenyRule::PublicNetworkAccessDisabled { .. } => "PublicNetworkAccessDisabled",
            DenyRule::IpNotAllowed => "IpNotAllowed",
            DenyRule::UnknownPrivateEndpoint => "UnknownPrivateEndpoint",
            DenyRule::PrivateEndpointWrongTarget => "PrivateEndpointWrongTarget",
            DenyRule::PrivateEndpointWrongPlane { .. } => "PrivateEndpointWrongPlane",
            DenyRule::PrivateEndpointNotApproved { .. } => "PrivateEndpointNotApproved",
            DenyRule::PeerOutsideVirtualNetwork { .. } => "PeerOutsideVirtualNetwork",
        }
    }

    /// What refused the request: the resource, the plane, the origin and the rule.
    pub fn reason(&self) -> String {
        let head = format!(
            "{} '{}' does not accept {} requests from {}",
            capitalised(self.resource_kind),
            self.resource_name,
            self.plane.as_group_id(),
            self.origin
        );
        let why = match &self.rule {
            DenyRule::PublicNetworkAccessDisabled { inherited_from: Some(r) } => {
                format!("its public network access is Disabled (inherited from registry '{r}')")
            }
            DenyRule::PublicNetworkAccessDisabled { inherited_from: None } => "its public network access is Disabled".to_string(),
            DenyRule::IpNotAllowed => format!("its network rules deny by default and no IP rule allows the address {}", self.peer),
            DenyRule::UnknownPrivateEndpoint => "that private endpoint no longer exists".to_string(),
            DenyRule::PrivateEndpointWrongTarget => {
                "that private endpoint serves another resource, and an endpoint serves only the resource it was created for".to_string()
            }
            DenyRule::PrivateEndpointWrongPlane { endpoint_plane } => {
                format!("that private endpoint has group ID '{endpoint_plane}' and serves only {endpoint_plane} requests")
            }
            DenyRule::PrivateEndpointNotApproved { status } => format!("its connection is {}, not Approved", status.as_str()),
            DenyRule::PeerOutsideVirtualNetwork { address_space } => {
                format!("the calling address {} lies outside the virtual network's address space ({})", self.peer, join(address_space))
            }
        };
        format!("{head}: {why}.")
    }

    /// What the caller can do about it.
    pub fn fix(&self) -> String {
        let (kind, name, group) = (self.resource_kind, &self.resource_name, self.plane.as_group_id());
        let endpoint = self.endpoint.as_deref().unwrap_or_default();
        let create = format!("Create a private endpoint with group ID '{group}' to {kind} '{name}'");
        match &self.rule {
            DenyRule::PublicNetworkAccessDisabled { .. } => {
                format!("{create} and call from its virtual network, or enable its public network access.")
            }
            DenyRule::IpNotAllowed => {
                format!(
                    "Add an IP rule covering {} to {kind} '{name}', or {} and call from its virtual network.",
                    self.peer,
                    lower_first(&create)
                )
            }
            DenyRule::UnknownPrivateEndpoint | DenyRule::PrivateEndpointWrongTarget | DenyRule::PrivateEndpointWrongPlane { .. } => {
                format!("{create} and call through it from its virtual network.")
            }
            DenyRule::PrivateEndpointNotApproved { status: ConnectionStatus::Disconnected } => {
                format!("Delete private endpoint '{endpoint}' and create a new one with group ID '{group}' to {kind} '{name}'.")
            }
            DenyRule::PrivateEndpointNotApproved { status: ConnectionStatus::Rejected } => format!(
                "Ask an owner of {kind} '{name}' to approve the connection of private endpoint '{endpoint}', or create a new private \
                 endpoint and have it approved."
            ),
            DenyRule::PrivateEndpointNotApproved { .. } => {
                format!("Ask an owner of {kind} '{name}' to approve the connection of private endpoint '{endpoint}'.")
            }
            DenyRule::PeerOutsideVirtualNetwork { .. } => {
                format!("Call from a machine inside virtual network '{}'.", self.vnet.as_deref().unwrap_or_default())
            }
        }
    }

    /// The whole sentence a client sees: [`Denial::reason`] then [`Denial::fix`].
    pub fn message(&self) -> String {
        format!("{} {}", self.reason(), self.fix())
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

fn join(cidrs: &[Cidr]) -> String {
    if cidrs.is_empty() {
        return "empty".to_string();
    }
    cidrs.iter().map(Cidr::to_string).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Denial {}

/// Sorted, disjoint, non-adjacent inclusive ranges of one address family, searched by bisection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ranges(Vec<(u128, u128)>);

impl Ranges {
    fn new(mut r: Vec<(u128, u128)>) -> Self {
        r.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(r.len());
        for (lo, hi) in r {
            match merged.last_mut() {
                // Adjacent blocks merge too (saturating: nothing follows u128::MAX).
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged.shrink_to_fit();
        Ranges(merged)
    }

    fn contains(&self, n: u128) -> bool {
        let i = self.0.partition_point(|r| r.0 <= n);
        i > 0 && self.0[i - 1].1 >= n
    }
}

/// A set of CIDR blocks as two range lists, one per family.
#[derive(Clone, Debug, Default)]
struct AddressSet {
    v4: Ranges,
    v6: Ranges,
}

impl AddressSet {
    fn new(cidrs: &[Cidr]) -> Self {
        let of = |v4: bool| Ranges::new(cidrs.iter().filter(|c| c.is_ipv4() == v4).map(Cidr::bounds).collect());
        AddressSet { v4: of(true), v6: of(false) }
    }

    /// `ip` must be canonical (see [`canonical_ip`]).
    fn contains(&self, ip: IpAddr) -> bool {
        let n = ip_to_u128(ip);
        if ip.is_ipv4() { self.v4.contains(n) } else { self.v6.contains(n) }
    }
}

#[derive(Clone, Debug)]
struct ResourceEntry {
    name: String,
    plane: Plane,
    /// The effective switch, resolved against the parent when the index was built.
    public: Switch,
    inherited_from: Option<String>,
    /// Present only when the firewall denies by default: an Allow firewall admits everyone.
    firewall: Option<Firewall>,
}

#[derive(Clone, Debug)]
struct Firewall {
    ips: AddressSet,
    resources: HashSet<String>,
}

#[derive(Clone, Debug)]
struct EndpointEntry {
    name: String,
    vnet: String,
    target: String,
    /// Whether the target is in the snapshot: an endpoint to a vanished resource serves nothing.
    target_known: bool,
    plane: Plane,
    status: ConnectionStatus,
    address_space: Vec<Cidr>,
    addresses: AddressSet,
}

/// Resources and private endpoints indexed by lowercase key, with every inheritance resolved
/// and every address list turned into sorted ranges: a decision is two hash lookups and a
/// bisection, whatever the number of endpoints and rules.
#[derive(Clone, Debug, Default)]
pub struct AdmissionIndex {
    resources: HashMap<String, ResourceEntry>,
    endpoints: HashMap<String, EndpointEntry>,
}

/// Looks `key` up case-insensitively; allocates only for a key that is not lowercase already.
/// Stored keys are lowercase, so a key with an upper-case letter can only match once lowered:
/// the exact lookup goes first and the common case never scans for case.
fn lookup<'m, V>(map: &'m HashMap<String, V>, key: &str) -> Option<&'m V> {
    map.get(key).or_else(|| if has_upper(key) { map.get(&key.to_ascii_lowercase()) } else { None })
}

fn contains_key_caseless(set: &HashSet<String>, key: &str) -> bool {
    set.contains(key) || (has_upper(key) && set.contains(&key.to_ascii_lowercase()))
}

fn has_upper(key: &str) -> bool {
    key.bytes().any(|b| b.is_ascii_uppercase())
}

/// The last segment of an ARM ID: the name a denial may echo for a resource the caller named.
fn last_segment(key: &str) -> &str {
    key.rsplit('/').find(|s| !s.is_empty()).unwrap_or(key)
}

impl AdmissionIndex {
    /// Indexes a snapshot. A later entry with the same key replaces an earlier one.
    pub fn build(resources: impl IntoIterator<Item = NetResource>, endpoints: impl IntoIterator<Item = NetEndpoint>) -> Self {
        let raw: HashMap<String, NetResource> = resources.into_iter().map(|r| (r.key.to_ascii_lowercase(), r)).collect();
        let resources: HashMap<String, ResourceEntry> = raw
            .iter()
            .map(|(key, r)| {
                let (public, inherited_from) = match r.public_access {
                    Some(s) => (s, None),
                    None => match r.parent.as_deref().and_then(|p| lookup(&raw, p)).and_then(|p| Some((p.public_access?, &p.name))) {
                        Some((s, parent)) => (s, Some(parent.clone())),
                        None => (Switch::Enabled, None),
                    },
                };
                let firewall = r.acls.as_ref().filter(|a| a.default_action == DefaultAction::Deny).map(|a| Firewall {
                    ips: AddressSet::new(&a.ip_rules),
                    resources: a.resource_access_rules.iter().map(|k| k.to_ascii_lowercase()).collect(),
                });
                (key.clone(), ResourceEntry { name: r.name.clone(), plane: r.plane, public, inherited_from, firewall })
            })
            .collect();
        let endpoints = endpoints
            .into_iter()
            .map(|e| {
                let target = e.target.to_ascii_lowercase();
                let entry = EndpointEntry {
                    target_known: resources.contains_key(&target),
                    target,
                    addresses: AddressSet::new(&e.address_space),
                    address_space: e.address_space,
                    name: e.name,
                    vnet: e.vnet,
                    plane: e.plane,
                    status: e.status,
                };
                (e.key.to_ascii_lowercase(), entry)
            })
            .collect();
        AdmissionIndex { resources, endpoints }
    }

    /// Judges a request's origin (the denial is boxed: it is rare, and large). Public switches and firewalls govern public traffic only;
    /// private endpoint traffic answers to the endpoint's target, plane, approval and network.
    pub fn admit(&self, req: &Request<'_>) -> Result<Admission, Box<Denial>> {
        let peer = canonical_ip(req.peer);
        match req.origin {
            Origin::Public => {
                let Some(res) = lookup(&self.resources, req.resource) else { return Ok(Admission::NotNetworked) };
                let deny = |rule| Err(denial(req, peer, rule, Some(res), None));
                if res.public == Switch::Disabled {
                    return deny(DenyRule::PublicNetworkAccessDisabled { inherited_from: res.inherited_from.clone() });
                }
                let Some(fw) = &res.firewall else { return Ok(Admission::PublicNetwork) };
                if fw.ips.contains(peer) {
                    Ok(Admission::IpRule)
                } else if req.caller_resource.is_some_and(|c| contains_key_caseless(&fw.resources, c)) {
                    Ok(Admission::ResourceAccessRule)
                } else {
                    deny(DenyRule::IpNotAllowed)
                }
            }
            Origin::Endpoint(key) => {
                let Some(ep) = lookup(&self.endpoints, key) else {
                    return Err(denial(req, peer, DenyRule::UnknownPrivateEndpoint, None, Some((last_segment(key), None))));
                };
                let used = Some((ep.name.as_str(), Some(ep.vnet.as_str())));
                // `==` first: keys arrive lowercase, and memcmp beats a byte-wise caseless compare.
                let same_target = ep.target == req.resource || ep.target.eq_ignore_ascii_case(req.resource);
                if !ep.target_known || !same_target {
                    return Err(denial(req, peer, DenyRule::PrivateEndpointWrongTarget, None, used));
                }
                let res = lookup(&self.resources, req.resource);
                let rule = if ep.plane != req.plane {
                    DenyRule::PrivateEndpointWrongPlane { endpoint_plane: ep.plane }
                } else if ep.status != ConnectionStatus::Approved {
                    DenyRule::PrivateEndpointNotApproved { status: ep.status }
                } else if !ep.addresses.contains(peer) {
                    DenyRule::PeerOutsideVirtualNetwork { address_space: ep.address_space.clone() }
                } else {
                    return Ok(Admission::PrivateEndpoint);
                };
                Err(denial(req, peer, rule, res, used))
            }
        }
    }

    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }
}

/// Builds a denial. `res` is `None` when the message must not depend on whether the addressed
/// resource exists: it then echoes the name from the caller's own key.
fn denial(
    req: &Request<'_>,
    peer: IpAddr,
    rule: DenyRule,
    res: Option<&ResourceEntry>,
    endpoint: Option<(&str, Option<&str>)>,
) -> Box<Denial> {
    let (resource_name, resource_kind) = match res {
        Some(r) => (r.name.clone(), r.plane.resource_kind()),
        None => (last_segment(req.resource).to_string(), req.plane.resource_kind()),
    };
    let origin = match endpoint {
        None => "the public network".to_string(),
        Some((pe, Some(vnet))) => format!("private endpoint '{pe}' in virtual network '{vnet}'"),
        Some((pe, None)) => format!("private endpoint '{pe}'"),
    };
    Box::new(Denial {
        rule,
        resource_name,
        resource_key: req.resource.to_ascii_lowercase(),
        resource_kind,
        plane: req.plane,
        origin,
        endpoint: endpoint.map(|(pe, _)| pe.to_string()),
        vnet: endpoint.and_then(|(_, v)| v.map(str::to_string)),
        peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "/subscriptions/s/resourcegroups/g/providers";

    fn key(kind: &str, name: &str) -> String {
        format!("{SUB}/{kind}/{name}")
    }
    fn reg(name: &str) -> String {
        key("microsoft.machinelearningservices/registries", name)
    }
    fn sa(name: &str) -> String {
        key("microsoft.storage/storageaccounts", name)
    }
    fn acr(name: &str) -> String {
        key("microsoft.containerregistry/registries", name)
    }
    fn pe(name: &str) -> String {
        key("microsoft.network/privateendpoints", name)
    }
    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn res(k: String, name: &str, plane: Plane, public: Option<Switch>, parent: Option<String>, acls: Option<NetworkAcls>) -> NetResource {
        NetResource { key: k, name: name.into(), plane, public_access: public, parent, acls }
    }

    fn ep(name: &str, target: String, plane: Plane, status: ConnectionStatus) -> NetEndpoint {
        NetEndpoint {
            key: pe(name),
            name: name.into(),
            target,
            plane,
            status,
            vnet: "vnet1".into(),
            address_space: vec![c("127.10.0.0/16"), c("10.1.0.0/24")],
        }
    }

    fn firewall(ips: &[&str], rules: &[String]) -> Option<NetworkAcls> {
        Some(NetworkAcls {
            default_action: DefaultAction::Deny,
            ip_rules: ips.iter().map(|s| c(s)).collect(),
            resource_access_rules: rules.to_vec(),
        })
    }

    /// r1: a private registry with a storage account that inherits and a container registry
    /// that opts out; r2: a public registry whose storage account has a firewall.
    fn fixture() -> AdmissionIndex {
        use ConnectionStatus::*;
        use Plane::*;
        AdmissionIndex::build(
            [
                res(reg("r1"), "r1", AmlRegistry, Some(Switch::Disabled), None, None),
                res(sa("abc"), "abc", Blob, None, Some(reg("r1")), None),
                res(acr("cr1"), "cr1", Registry, Some(Switch::Enabled), Some(reg("r1")), None),
                res(reg("r2"), "R2", AmlRegistry, None, None, None),
                res(sa("sa2"), "sa2", Blob, None, Some(reg("r2")), firewall(&["203.0.113.0/24", "198.51.100.7"], &[reg("r1")])),
                res(
                    sa("open"),
                    "open",
                    Blob,
                    None,
                    None,
                    Some(NetworkAcls { default_action: DefaultAction::Allow, ip_rules: vec![], resource_access_rules: vec![] }),
                ),
                res(sa("shut"), "shut", Blob, Some(Switch::Disabled), None, firewall(&["0.0.0.0/0"], &[])),
            ],
            [
                ep("pe1", reg("r1"), AmlRegistry, Approved),
                ep("pe-blob", sa("abc"), Blob, Approved),
                ep("pe-pending", reg("r1"), AmlRegistry, Pending),
                ep("pe-rejected", reg("r1"), AmlRegistry, Rejected),
                ep("pe-disconnected", reg("r1"), AmlRegistry, Disconnected),
                ep("pe-gone", reg("deleted"), AmlRegistry, Approved),
            ],
        )
    }

    fn public<'a>(resource: &'a str, plane: Plane, peer: &str) -> Request<'a> {
        Request { origin: Origin::Public, peer: ip(peer), resource, plane, caller_resource: None }
    }

    fn via<'a>(endpoint: &'a str, resource: &'a str, plane: Plane, peer: &str) -> Request<'a> {
        Request { origin: Origin::Endpoint(endpoint), peer: ip(peer), resource, plane, caller_resource: None }
    }

    fn denied(idx: &AdmissionIndex, req: &Request<'_>) -> Denial {
        *idx.admit(req).unwrap_err()
    }

    #[test]
    fn planes_parse_case_insensitively() {
        for p in Plane::ALL {
            assert_eq!(p.as_group_id().parse::<Plane>(), Ok(p));
            assert_eq!(p.as_group_id().to_uppercase().parse::<Plane>(), Ok(p));
        }
        assert_eq!("AmlRegistry".parse::<Plane>(), Ok(Plane::AmlRegistry));
        let e = "file".parse::<Plane>().unwrap_err();
        assert_eq!(e.to_string(), "'file' is not a private link group ID of a registry: use 'amlregistry', 'blob' or 'registry'.");
    }

    #[test]
    fn public_switch_is_inherited_from_the_registry() {
        let idx = fixture();
        let d = denied(&idx, &public(&reg("r1"), Plane::AmlRegistry, "198.51.100.1"));
        assert_eq!(d.rule, DenyRule::PublicNetworkAccessDisabled { inherited_from: None });
        assert_eq!(d.code(), "PublicNetworkAccessDisabled");
        assert_eq!(
            d.message(),
            "Registry 'r1' does not accept amlregistry requests from the public network: its public network access is Disabled. \
             Create a private endpoint with group ID 'amlregistry' to registry 'r1' and call from its virtual network, or enable \
             its public network access."
        );
        let d = denied(&idx, &public(&sa("abc"), Plane::Blob, "198.51.100.1"));
        assert_eq!(d.rule, DenyRule::PublicNetworkAccessDisabled { inherited_from: Some("r1".into()) });
        assert_eq!(
            d.message(),
            "Storage account 'abc' does not accept blob requests from the public network: its public network access is Disabled \
             (inherited from registry 'r1'). Create a private endpoint with group ID 'blob' to storage account 'abc' and call \
             from its virtual network, or enable its public network access."
        );
        assert_eq!(d.to_string(), d.message());
        assert_eq!((d.resource_key.as_str(), d.resource_kind, d.plane), (sa("abc").as_str(), "storage account", Plane::Blob));
        // Explicitly Enabled beats the registry's Disabled; no switch anywhere means Enabled.
        assert_eq!(idx.admit(&public(&acr("cr1"), Plane::Registry, "198.51.100.1")), Ok(Admission::PublicNetwork));
        assert_eq!(idx.admit(&public(&reg("r2"), Plane::AmlRegistry, "198.51.100.1")), Ok(Admission::PublicNetwork));
        // A parent missing from the snapshot leaves the default.
        let lone = AdmissionIndex::build([res(sa("x"), "x", Plane::Blob, None, Some(reg("nowhere")), None)], []);
        assert_eq!(lone.admit(&public(&sa("x"), Plane::Blob, "1.2.3.4")), Ok(Admission::PublicNetwork));
    }

    #[test]
    fn firewall_admits_ip_rules_and_resource_rules_only() {
        let idx = fixture();
        let sa2 = sa("sa2");
        assert_eq!(idx.admit(&public(&sa2, Plane::Blob, "203.0.113.0")), Ok(Admission::IpRule));
        assert_eq!(idx.admit(&public(&sa2, Plane::Blob, "203.0.113.255")), Ok(Admission::IpRule));
        assert_eq!(idx.admit(&public(&sa2, Plane::Blob, "198.51.100.7")), Ok(Admission::IpRule));
        assert_eq!(idx.admit(&public(&sa2, Plane::Blob, "::ffff:198.51.100.7")), Ok(Admission::IpRule), "dual-stack peer");
        let d = denied(&idx, &public(&sa2, Plane::Blob, "198.51.100.8"));
        assert_eq!((d.rule.clone(), d.code()), (DenyRule::IpNotAllowed, "IpNotAllowed"));
        assert_eq!(
            d.message(),
            "Storage account 'sa2' does not accept blob requests from the public network: its network rules deny by default and \
             no IP rule allows the address 198.51.100.8. Add an IP rule covering 198.51.100.8 to storage account 'sa2', or create a \
             private endpoint with group ID 'blob' to storage account 'sa2' and call from its virtual network."
        );
        assert!(!d.message().contains("r1"), "the resource rules are not revealed");
        assert_eq!(denied(&idx, &public(&sa2, Plane::Blob, "::1")).rule, DenyRule::IpNotAllowed);
        let upper = reg("R1").to_uppercase();
        let by_identity = Request { caller_resource: Some(&upper), ..public(&sa2, Plane::Blob, "192.0.2.1") };
        assert_eq!(idx.admit(&by_identity), Ok(Admission::ResourceAccessRule));
        let other = reg("r2");
        let stranger = Request { caller_resource: Some(&other), ..public(&sa2, Plane::Blob, "192.0.2.1") };
        assert_eq!(denied(&idx, &stranger).rule, DenyRule::IpNotAllowed);
        assert_eq!(idx.admit(&public(&sa("open"), Plane::Blob, "192.0.2.1")), Ok(Admission::PublicNetwork));
        // The switch is judged before the firewall: an allow-all rule does not open a Disabled resource.
        assert_eq!(
            denied(&idx, &public(&sa("shut"), Plane::Blob, "192.0.2.1")).rule,
            DenyRule::PublicNetworkAccessDisabled { inherited_from: None }
        );
    }

    #[test]
    fn endpoints_serve_one_resource_and_plane_when_approved() {
        let idx = fixture();
        let (pe1, r1) = (pe("pe1"), reg("r1"));
        // Public switches do not apply to private endpoint traffic.
        assert_eq!(idx.admit(&via(&pe1, &r1, Plane::AmlRegistry, "127.10.3.4")), Ok(Admission::PrivateEndpoint));
        assert_eq!(idx.admit(&via(&pe1, &r1, Plane::AmlRegistry, "::ffff:127.10.0.5")), Ok(Admission::PrivateEndpoint));
        assert_eq!(idx.admit(&via(&pe1, &r1, Plane::AmlRegistry, "10.1.0.255")), Ok(Admission::PrivateEndpoint));
        assert_eq!(idx.admit(&via(&pe("pe-blob"), &sa("abc"), Plane::Blob, "127.10.0.1")), Ok(Admission::PrivateEndpoint));

        let d = denied(&idx, &via(&pe1, &reg("r2"), Plane::AmlRegistry, "127.10.3.4"));
        assert_eq!((d.rule.clone(), d.code()), (DenyRule::PrivateEndpointWrongTarget, "PrivateEndpointWrongTarget"));
        assert_eq!(
            d.message(),
            "Registry 'r2' does not accept amlregistry requests from private endpoint 'pe1' in virtual network 'vnet1': that \
             private endpoint serves another resource, and an endpoint serves only the resource it was created for. Create a \
             private endpoint with group ID 'amlregistry' to registry 'r2' and call through it from its virtual network."
        );
        assert!(!d.message().contains("r1"), "the endpoint's real target is not revealed: {d}");
        assert_eq!(denied(&idx, &via(&pe1, &sa("abc"), Plane::Blob, "127.10.3.4")).rule, DenyRule::PrivateEndpointWrongTarget);

        let d = denied(&idx, &via(&pe1, &r1, Plane::Blob, "127.10.3.4"));
        assert_eq!(d.rule, DenyRule::PrivateEndpointWrongPlane { endpoint_plane: Plane::AmlRegistry });
        assert!(d.message().contains("that private endpoint has group ID 'amlregistry' and serves only amlregistry requests"), "{d}");

        for (name, status) in [
            ("pe-pending", ConnectionStatus::Pending),
            ("pe-rejected", ConnectionStatus::Rejected),
            ("pe-disconnected", ConnectionStatus::Disconnected),
        ] {
            let d = denied(&idx, &via(&pe(name), &r1, Plane::AmlRegistry, "127.10.3.4"));
            assert_eq!(d.rule, DenyRule::PrivateEndpointNotApproved { status });
            assert_eq!(d.code(), "PrivateEndpointNotApproved");
            assert!(d.message().contains(&format!("its connection is {}, not Approved.", status.as_str())), "{d}");
            assert!(d.message().contains(&format!("'{name}'")), "{d}");
        }
        assert!(
            denied(&idx, &via(&pe("pe-pending"), &r1, Plane::AmlRegistry, "127.10.3.4")).fix().starts_with("Ask an owner of registry 'r1'")
        );
        assert!(
            denied(&idx, &via(&pe("pe-disconnected"), &r1, Plane::AmlRegistry, "127.10.3.4")).fix().starts_with("Delete private endpoint")
        );

        let d = denied(&idx, &via(&pe1, &r1, Plane::AmlRegistry, "127.11.0.1"));
        assert_eq!(d.rule, DenyRule::PeerOutsideVirtualNetwork { address_space: vec![c("127.10.0.0/16"), c("10.1.0.0/24")] });
        assert_eq!(
            d.message(),
            "Registry 'r1' does not accept amlregistry requests from private endpoint 'pe1' in virtual network 'vnet1': the \
             calling address 127.11.0.1 lies outside the virtual network's address space (127.10.0.0/16, 10.1.0.0/24). Call \
             from a machine inside virtual network 'vnet1'."
        );
        assert_eq!(d.code(), "PeerOutsideVirtualNetwork");
        let d = denied(&idx, &via(&pe1, &r1, Plane::AmlRegistry, "::1"));
        assert!(matches!(d.rule, DenyRule::PeerOutsideVirtualNetwork { .. }), "an IPv6 peer is never inside IPv4 space");
    }

    #[test]
    fn unknown_resources_and_endpoints() {
        let idx = fixture();
        let ghost = reg("ghost");
        assert_eq!(idx.admit(&public(&ghost, Plane::AmlRegistry, "1.2.3.4")), Ok(Admission::NotNetworked));
        // Through an endpoint, an unknown resource reads exactly like someone else's.
        let d = denied(&idx, &via(&pe("pe1"), &ghost, Plane::AmlRegistry, "127.10.0.9"));
        let known = denied(&idx, &via(&pe("pe1"), &reg("r2"), Plane::AmlRegistry, "127.10.0.9"));
        assert_eq!(d.rule, DenyRule::PrivateEndpointWrongTarget);
        assert_eq!(d.message().replace("ghost", "r2"), known.message());
        // An endpoint whose resource was deleted serves nothing, not even its own key.
        let deleted = reg("deleted");
        assert_eq!(
            denied(&idx, &via(&pe("pe-gone"), &deleted, Plane::AmlRegistry, "127.10.0.9")).rule,
            DenyRule::PrivateEndpointWrongTarget
        );
        let d = denied(&idx, &via(&pe("pe-nope"), &reg("r1"), Plane::AmlRegistry, "127.10.0.9"));
        assert_eq!((d.rule.clone(), d.code()), (DenyRule::UnknownPrivateEndpoint, "UnknownPrivateEndpoint"));
        assert_eq!(
            d.message(),
            "Registry 'r1' does not accept amlregistry requests from private endpoint 'pe-nope': that private endpoint no longer \
             exists. Create a private endpoint with group ID 'amlregistry' to registry 'r1' and call through it from its virtual \
             network."
        );
        assert_eq!((idx.resource_count(), idx.endpoint_count()), (7, 6));
    }

    #[test]
    fn keys_match_case_insensitively() {
        let idx = fixture();
        let (r1, pe1) = (reg("R1").to_uppercase(), pe("PE1").to_uppercase());
        assert_eq!(idx.admit(&via(&pe1, &r1, Plane::AmlRegistry, "127.10.0.9")), Ok(Admission::PrivateEndpoint));
        let d = denied(&idx, &public(&r1, Plane::AmlRegistry, "1.2.3.4"));
        assert_eq!((d.resource_name.as_str(), d.resource_key.as_str()), ("r1", reg("r1").as_str()));
        // Built from mixed-case keys too.
        let mixed =
            AdmissionIndex::build([res(reg("Mixed").to_uppercase(), "Mixed", Plane::AmlRegistry, Some(Switch::Disabled), None, None)], []);
        assert!(mixed.admit(&public(&reg("mixed"), Plane::AmlRegistry, "1.2.3.4")).is_err());
    }

    #[test]
    fn ranges_merge_and_bisect() {
        let r = Ranges::new(vec![(10, 20), (21, 30), (5, 7), (15, 18), (40, 40), (u128::MAX - 1, u128::MAX), (u128::MAX, u128::MAX)]);
        assert_eq!(r.0, vec![(5, 7), (10, 30), (40, 40), (u128::MAX - 1, u128::MAX)]);
        for (n, want) in [(4, false), (5, true), (7, true), (8, false), (10, true), (30, true), (31, false), (40, true), (41, false)] {
            assert_eq!(r.contains(n), want, "{n}");
        }
        assert!(r.contains(u128::MAX));
        assert!(!Ranges::default().contains(0));
        let set = AddressSet::new(&[c("10.0.0.0/8"), c("fd00::/8")]);
        assert!(set.contains(ip("10.1.2.3")) && set.contains(ip("fd12::1")));
        assert!(!set.contains(ip("::a01:203")), "an IPv6 address with the same integer as 10.1.2.3");
    }

    mod reference {
        //! A naive reading of the rules, kept as the oracle the index is checked against.
        use super::super::*;

        pub fn admit(resources: &[NetResource], endpoints: &[NetEndpoint], req: &Request<'_>) -> Result<Admission, DenyRule> {
            let find = |k: &str| resources.iter().find(|r| r.key.eq_ignore_ascii_case(k));
            let peer = canonical_ip(req.peer);
            match req.origin {
                Origin::Public => {
                    let Some(r) = find(req.resource) else { return Ok(Admission::NotNetworked) };
                    let parent = r.parent.as_deref().and_then(find);
                    let (switch, from) = match (r.public_access, parent.and_then(|p| p.public_access)) {
                        (Some(s), _) => (s, None),
                        (None, Some(s)) => (s, parent.map(|p| p.name.clone())),
                        (None, None) => (Switch::Enabled, None),
                    };
                    if switch == Switch::Disabled {
                        return Err(DenyRule::PublicNetworkAccessDisabled { inherited_from: from });
                    }
                    match &r.acls {
                        Some(a) if a.default_action == DefaultAction::Deny => {
                            if a.ip_rules.iter().any(|c| c.contains(peer)) {
                                Ok(Admission::IpRule)
                            } else if req.caller_resource.is_some_and(|c| a.resource_access_rules.iter().any(|k| k.eq_ignore_ascii_case(c)))
                            {
                                Ok(Admission::ResourceAccessRule)
                            } else {
                                Err(DenyRule::IpNotAllowed)
                            }
                        }
                        _ => Ok(Admission::PublicNetwork),
                    }
                }
                Origin::Endpoint(k) => {
                    let Some(e) = endpoints.iter().find(|e| e.key.eq_ignore_ascii_case(k)) else {
                        return Err(DenyRule::UnknownPrivateEndpoint);
                    };
                    if find(req.resource).is_none() || !e.target.eq_ignore_ascii_case(req.resource) {
                        Err(DenyRule::PrivateEndpointWrongTarget)
                    } else if e.plane != req.plane {
                        Err(DenyRule::PrivateEndpointWrongPlane { endpoint_plane: e.plane })
                    } else if e.status != ConnectionStatus::Approved {
                        Err(DenyRule::PrivateEndpointNotApproved { status: e.status })
                    } else if !e.address_space.iter().any(|c| c.contains(peer)) {
                        Err(DenyRule::PeerOutsideVirtualNetwork { address_space: e.address_space.clone() })
                    } else {
                        Ok(Admission::PrivateEndpoint)
                    }
                }
            }
        }
    }

    mod property {
        use std::net::{Ipv4Addr, Ipv6Addr};

        use proptest::prelude::*;

        use super::super::*;
        use super::{pe, reference, reg};

        /// Addresses are drawn from a small universe (first octet 10 or 127, a few /16s) so that
        /// random blocks and random peers meet often.
        fn v4_addr() -> impl Strategy<Value = u32> {
            (prop_oneof![Just(10u32), Just(127u32)], 0u32..3, 0u32..4, any::<u8>())
                .prop_map(|(a, b, c, d)| a << 24 | b << 16 | c << 8 | u32::from(d))
        }

        fn cidr() -> impl Strategy<Value = Cidr> {
            (v4_addr(), prop_oneof![8u8..=16, 17u8..=24, 25u8..=32]).prop_filter_map("never fails", |(a, p)| {
                let masked = if p == 0 { 0 } else { a & (u32::MAX << (32 - u32::from(p))) };
                Cidr::new(IpAddr::V4(Ipv4Addr::from(masked)), p).ok()
            })
        }

        fn peer() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                6 => v4_addr().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
                2 => v4_addr().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
                1 => v4_addr().prop_map(|a| IpAddr::V6(Ipv6Addr::from(u128::from(a)))),
            ]
        }

        fn plane() -> impl Strategy<Value = Plane> {
            prop_oneof![Just(Plane::AmlRegistry), Just(Plane::Blob), Just(Plane::Registry)]
        }

        fn switch() -> impl Strategy<Value = Option<Switch>> {
            prop_oneof![Just(None), Just(Some(Switch::Enabled)), Just(Some(Switch::Disabled))]
        }

        fn status() -> impl Strategy<Value = ConnectionStatus> {
            prop_oneof![
                3 => Just(ConnectionStatus::Approved),
                1 => Just(ConnectionStatus::Pending),
                1 => Just(ConnectionStatus::Rejected),
                1 => Just(ConnectionStatus::Disconnected),
            ]
        }

        /// Resource `i` of a network; index `N_RES` names a resource that is not in it.
        const N_RES: usize = 5;
        const N_EP: usize = 5;

        fn resource_key(i: usize) -> String {
            reg(&format!("res{i}"))
        }

        fn acls() -> impl Strategy<Value = Option<NetworkAcls>> {
            proptest::option::of(
                (
                    prop_oneof![Just(DefaultAction::Allow), Just(DefaultAction::Deny)],
                    proptest::collection::vec(cidr(), 0..5),
                    proptest::collection::vec(0..=N_RES, 0..3),
                )
                    .prop_map(|(default_action, ip_rules, rules)| NetworkAcls {
                        default_action,
                        ip_rules,
                        resource_access_rules: rules.into_iter().map(resource_key).collect(),
                    }),
            )
        }

        fn resources() -> impl Strategy<Value = Vec<NetResource>> {
            proptest::collection::vec((plane(), switch(), proptest::option::of(0..=N_RES), acls()), 0..=N_RES).prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (plane, public_access, parent, acls))| NetResource {
                        key: resource_key(i),
                        name: format!("Res{i}"),
                        plane,
                        public_access,
                        parent: parent.map(resource_key),
                        acls,
                    })
                    .collect()
            })
        }

        fn endpoints() -> impl Strategy<Value = Vec<NetEndpoint>> {
            proptest::collection::vec((0..=N_RES, plane(), status(), proptest::collection::vec(cidr(), 0..3)), 0..=N_EP).prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(j, (target, plane, status, address_space))| NetEndpoint {
                        key: pe(&format!("pe{j}")),
                        name: format!("pe{j}"),
                        target: resource_key(target),
                        plane,
                        status,
                        vnet: format!("vnet{j}"),
                        address_space,
                    })
                    .collect()
            })
        }

        /// (origin: None = public or endpoint index, peer, resource index, plane, caller index,
        /// upper-case the keys, aim). An aimed request goes where its endpoint leads (its target,
        /// its plane, an address of its network) or, from the public network, comes from an
        /// address of its resource's IP rules: random requests alone rarely get through.
        type RawRequest = (Option<usize>, IpAddr, usize, Plane, Option<usize>, bool, Option<u8>);

        fn requests() -> impl Strategy<Value = Vec<RawRequest>> {
            proptest::collection::vec(
                (
                    proptest::option::of(0..=N_EP),
                    peer(),
                    0..=N_RES,
                    plane(),
                    proptest::option::of(0..=N_RES),
                    any::<bool>(),
                    proptest::option::of(any::<u8>()),
                ),
                1..24,
            )
        }

        /// An address inside one of `blocks`, chosen by `pick`.
        fn inside(blocks: &[Cidr], pick: u8) -> Option<IpAddr> {
            let b = blocks.get(usize::from(pick) % blocks.len().max(1))?;
            let (lo, hi) = b.bounds();
            let n = lo + u128::from(pick) % (hi - lo + 1);
            Some(if b.is_ipv4() { IpAddr::V4(Ipv4Addr::from(n as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) })
        }

        fn case(s: String, upper: bool) -> String {
            if upper { s.to_uppercase() } else { s }
        }

        /// The index's and the reference's answers to one generated request.
        fn judge(
            idx: &AdmissionIndex,
            resources: &[NetResource],
            endpoints: &[NetEndpoint],
            raw: &RawRequest,
        ) -> (Result<Admission, Box<Denial>>, Result<Admission, DenyRule>) {
            let &(origin, mut peer, mut resource, mut plane, caller, upper, aim) = raw;
            if let Some(pick) = aim {
                match origin.and_then(|j| endpoints.get(j)) {
                    Some(e) => {
                        resource = (0..=N_RES).find(|&i| resource_key(i) == e.target).unwrap_or(N_RES);
                        plane = e.plane;
                        peer = inside(&e.address_space, pick).unwrap_or(peer);
                    }
                    None => {
                        let rules =
                            resources.get(resource).and_then(|r| r.acls.as_ref()).map(|a| a.ip_rules.as_slice()).unwrap_or_default();
                        peer = inside(rules, pick).unwrap_or(peer);
                    }
                }
            }
            let ep_key = origin.map(|j| case(pe(&format!("pe{j}")), upper));
            let resource = case(resource_key(resource), upper);
            let caller = caller.map(|i| case(resource_key(i), !upper));
            let req = Request {
                origin: ep_key.as_deref().map_or(Origin::Public, Origin::Endpoint),
                peer,
                resource: &resource,
                plane,
                caller_resource: caller.as_deref(),
            };
            (idx.admit(&req), reference::admit(resources, endpoints, &req))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn index_agrees_with_the_naive_rules(resources in resources(), endpoints in endpoints(), requests in requests()) {
                let idx = AdmissionIndex::build(resources.clone(), endpoints.clone());
                for raw in &requests {
                    let (got, want) = judge(&idx, &resources, &endpoints, raw);
                    prop_assert_eq!(got.as_ref().map_err(|d| &d.rule), want.as_ref(), "{:?}", raw);
                    if let Err(d) = got {
                        // Every denial names the addressed resource and plane, and ends with what to do.
                        let m = d.message();
                        prop_assert!(m.contains(&format!("'{}'", d.resource_name)) && m.contains(d.plane.as_group_id()), "{}", m);
                        prop_assert!(m.ends_with('.'), "{}", m);
                    }
                }
            }
        }

        /// The generators reach every outcome, so agreement above means something.
        #[test]
        fn generated_networks_reach_every_outcome() {
            use proptest::strategy::ValueTree;
            use proptest::test_runner::TestRunner;

            let mut runner = TestRunner::deterministic();
            let strategy = (resources(), endpoints(), requests());
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..512 {
                let (resources, endpoints, requests) = strategy.new_tree(&mut runner).unwrap().current();
                let idx = AdmissionIndex::build(resources.clone(), endpoints.clone());
                for raw in &requests {
                    seen.insert(match judge(&idx, &resources, &endpoints, raw).0 {
                        Ok(a) => format!("{a:?}"),
                        Err(d) => d.code().to_string(),
                    });
                }
            }
            let all = [
                "NotNetworked",
                "PublicNetwork",
                "IpRule",
                "ResourceAccessRule",
                "PrivateEndpoint",
                "PublicNetworkAccessDisabled",
                "IpNotAllowed",
                "UnknownPrivateEndpoint",
                "PrivateEndpointWrongTarget",
                "PrivateEndpointWrongPlane",
                "PrivateEndpointNotApproved",
                "PeerOutsideVirtualNetwork",
            ];
            let missing: Vec<_> = all.iter().filter(|o| !seen.contains(**o)).collect();
            assert!(missing.is_empty(), "never reached: {missing:?}");
        }
    }
}
