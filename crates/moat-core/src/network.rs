//! Virtual networks and their subnets, private endpoints, the provider side of private links
//! (private endpoint connections on registries, storage accounts and container registries),
//! and the in-memory network view that network admission and the endpoint listeners read.
//!
//! The state of a private link lives in one place, the endpoint's document; the provider's
//! views (a registry's `registryPrivateEndpointConnections`, `…/privateEndpointConnections`)
//! are rendered from the network view, so the two sides cannot disagree.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use moat_policy::actions;
use moat_policy::admission::{
    self, AdmissionIndex, ConnectionStatus, DefaultAction, Denial, NetEndpoint, NetResource, NetworkAcls, Origin, Plane,
};
use moat_store::{ListQuery, StoredResource, WriteTx};
use moat_types::arm::Tags;
use moat_types::net::{Cidr, allocate_ip, canonical_ip, is_loopback_space, validate_address_space};
use moat_types::network::*;
use moat_types::{ResourceGroupName, ResourceId};
use serde::{Deserialize, Serialize};

use crate::groups::{deny_managed, group_for_write};
use crate::registries::{ContainerRegistryDoc, RegistryDoc, StorageAccountDoc};
use crate::{Caller, Error, Listed, Moat, Preconditions, Result, Versioned, audit, decode, document, new_etag, now_rfc3339};

pub const VNET_TYPE: &str = "Microsoft.Network/virtualNetworks";
pub const SUBNET_TYPE: &str = "Microsoft.Network/virtualNetworks/subnets";
pub const ENDPOINT_TYPE: &str = "Microsoft.Network/privateEndpoints";
const VNET_KIND: &str = "microsoft.network/virtualnetworks";
const ENDPOINT_KIND: &str = "microsoft.network/privateendpoints";
const REGISTRY_KIND: &str = "microsoft.machinelearningservices/registries";
const STORAGE_KIND: &str = "microsoft.storage/storageaccounts";
const ACR_KIND: &str = "microsoft.containerregistry/registries";

/// Which real network a virtual network is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindingMode {
    /// Address spaces inside 127.0.0.0/8; listeners bind their 127.x address. No privileges.
    Loopback,
    /// A Linux network namespace; listeners open inside it. Needs root.
    Namespace,
    /// Addresses routed to this host; the operator puts them on interfaces.
    Host,
}

impl BindingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingMode::Loopback => "Loopback",
            BindingMode::Namespace => "Namespace",
            BindingMode::Host => "Host",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "loopback" => Ok(BindingMode::Loopback),
            "namespace" => Ok(BindingMode::Namespace),
            "host" => Ok(BindingMode::Host),
            _ => Err(Error::invalid(
                "InvalidNetworkBinding",
                "properties.binding.mode",
                format!("'{s}' is not a network binding: use Loopback, Namespace or Host."),
            )),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct VnetDoc {
    pub name: String,
    pub location: String,
    pub tags: Tags,
    pub address_space: Vec<Cidr>,
    pub subnets: Vec<SubnetDoc>,
    pub mode: BindingMode,
    pub namespace: Option<String>,
    pub guid: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SubnetDoc {
    pub name: String,
    pub prefix: Cidr,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EndpointDoc {
    pub name: String,
    pub location: String,
    pub tags: Tags,
    /// Display ARM IDs.
    pub vnet_id: String,
    pub subnet: String,
    pub ip: IpAddr,
    pub target_id: String,
    pub group_id: String,
    pub connection_name: String,
    pub request_message: Option<String>,
    pub status: String,
    pub description: String,
    /// Asked for manual approval (listed under `manualPrivateLinkServiceConnections`).
    pub manual: bool,
    /// Its DNS zone groups: the private DNS zones its A records go into.
    #[serde(default)]
    pub dns_zone_groups: Vec<crate::privatedns::ZoneGroupDoc>,
}

impl EndpointDoc {
    fn status(&self) -> ConnectionStatus {
        match self.status.as_str() {
            "Approved" => ConnectionStatus::Approved,
            "Rejected" => ConnectionStatus::Rejected,
            "Disconnected" => ConnectionStatus::Disconnected,
            _ => ConnectionStatus::Pending,
        }
    }
}

/// One private endpoint as the listeners and the provider views need it.
#[derive(Clone, Debug)]
pub struct EndpointInfo {
    /// Lowercase ARM ID.
    pub key: String,
    pub id: String,
    pub name: String,
    pub vnet_id: String,
    pub vnet_name: String,
    pub mode: BindingMode,
    /// The network namespace, in namespace mode.
    pub namespace: Option<String>,
    pub ip: IpAddr,
    pub target_key: String,
    pub plane: Plane,
    pub status: ConnectionStatus,
    pub(crate) doc: EndpointDoc,
}

/// The DNS data of the network view: every public name, and per virtual network (the view,
/// named by the network's lowercase ARM ID) the records of the private DNS zones linked to it.
#[derive(Clone, Debug, Default)]
pub struct DnsRecords {
    pub zone: String,
    /// `<region>.api.<zone>`, `<registry-guid>.registry.<region>.api.<zone>`,
    /// `<account>.blob.<zone>`, `<acr>.cr.<zone>`, `<acr>.<region>.data.cr.<zone>`.
    pub names: Vec<String>,
    /// (privatelink name, view, private endpoint address): the records of the private DNS zones
    /// linked to each network.
    pub private: Vec<(String, String, IpAddr)>,
    /// Loopback- and host-mode networks: a querier whose source address is in the range is in the view.
    pub source_views: Vec<(Cidr, String)>,
    /// Namespace-mode networks: a querier inside the namespace is in the view.
    pub namespace_views: Vec<(String, String)>,
}

/// A registry's name in one region.
pub fn registry_fqdn(guid: &str, region: &str, zone: &str) -> String {
    format!("{}.registry.{}.api.{zone}", guid.to_ascii_lowercase(), region.to_ascii_lowercase())
}

/// A virtual network as the view keeps it.
#[derive(Clone, Debug)]
struct VnetInfo {
    id: String,
    name: String,
    address_space: Vec<Cidr>,
}

/// The network state every request is judged against: rebuilt from the store after each change.
#[derive(Default)]
pub struct NetView {
    endpoints: Vec<EndpointInfo>,
    by_target: HashMap<String, Vec<usize>>,
    admission: AdmissionIndex,
    /// Registry names and storage account names (lowercase) to their keys.
    registries: HashMap<String, String>,
    accounts: HashMap<String, String>,
    /// Container registries by lowercase name, and the host names (login servers and regional
    /// data endpoints) that name them.
    pub(crate) acrs: HashMap<String, AcrEntry>,
    pub(crate) acr_hosts: HashMap<String, String>,
    /// The network namespaces of namespace-mode networks.
    namespaces: Vec<String>,
    /// Every virtual network.
    vnets: Vec<VnetInfo>,
    /// What moat's DNS server answers.
    pub dns: DnsRecords,
    /// Each networked resource's public DNS names, by its key.
    names: HashMap<String, Vec<String>>,
    /// Private DNS zones (by key): their records, and how many networks link them.
    zone_records: HashMap<String, Vec<(String, IpAddr)>>,
    zone_link_counts: HashMap<String, usize>,
    /// The regions registries are in.
    regions: Vec<String>,
    /// Bumped by every rebuild, so watchers can tell views apart.
    pub generation: u64,
}

impl std::fmt::Debug for NetView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetView").field("endpoints", &self.endpoints.len()).field("generation", &self.generation).finish()
    }
}

impl NetView {
    pub fn endpoints(&self) -> &[EndpointInfo] {
        &self.endpoints
    }

    /// The records of a private DNS zone (privatelink names and addresses).
    pub fn zone_records(&self, zone_key: &str) -> &[(String, IpAddr)] {
        self.zone_records.get(zone_key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// How many virtual networks link a private DNS zone.
    pub fn zone_links(&self, zone_key: &str) -> usize {
        self.zone_link_counts.get(zone_key).copied().unwrap_or(0)
    }

    /// The regions registries are in.
    pub fn regions(&self) -> Vec<String> {
        self.regions.clone()
    }

    /// The DNS names of a networked resource (by key), each with its privatelink form: what a
    /// private endpoint's certificate must name besides its address.
    pub fn tls_names_of(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for n in self.names.get(key).into_iter().flatten() {
            out.push(n.clone());
            if let Some(pl) = crate::privatedns::privatelink_name(&self.dns.zone, n) {
                out.push(pl);
            }
        }
        out
    }

    /// The network namespaces of namespace-mode networks, where moat also serves its public
    /// surface (the management plane is reachable from every network, like ARM).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    fn to_target(&self, key: &str) -> impl Iterator<Item = &EndpointInfo> {
        self.by_target.get(key).into_iter().flatten().filter_map(|&i| self.endpoints.get(i))
    }
}

/// A container registry, as the OCI plane resolves it.
#[derive(Clone, Debug)]
pub(crate) struct AcrEntry {
    pub key: String,
    /// The ML registry that owns it (where rights are checked).
    pub registry_id: String,
}

/// What a request addresses, for admission.
#[derive(Clone, Copy, Debug)]
pub enum NetTarget<'a> {
    /// A registry by its ARM ID (asset operations) .
    Registry(&'a ResourceId),
    /// A registry by name (discovery).
    RegistryName(&'a str),
    /// A storage account by name (the blob plane).
    StorageAccount(&'a str),
    /// A container registry by name (the OCI plane).
    ContainerRegistry(&'a str),
}

pub(crate) fn not_found(what: &str, name: &str) -> Error {
    Error::not_found("ResourceNotFound", format!("The {what} '{name}' could not be found."))
}

/// Azure's rule for network resource names: 1-80 characters, letters, digits, `_ . -`,
/// starting with a letter or digit and ending with a letter, digit or `_`.
fn network_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "InvalidResourceName",
            field,
            format!(
                "'{name}' is not a valid name: use 1 to 80 letters, digits, '_', '.' or '-', starting with a letter or digit and ending with a letter, digit or '_'."
            ),
        ))
    }
}

fn cidr(field: &str, s: &str) -> Result<Cidr> {
    s.parse::<Cidr>().map_err(|e| Error::invalid("InvalidAddressPrefixFormat", field, e.to_string()))
}

fn endpoint_plane_kind(plane: Plane) -> &'static str {
    match plane {
        Plane::AmlRegistry => REGISTRY_KIND,
        Plane::Blob => STORAGE_KIND,
        Plane::Registry => ACR_KIND,
    }
}

fn status_description(status: ConnectionStatus) -> &'static str {
    match status {
        ConnectionStatus::Approved => "Auto-Approved",
        ConnectionStatus::Pending => "Awaiting approval",
        ConnectionStatus::Rejected => "Rejected",
        ConnectionStatus::Disconnected => "Disconnected by the resource owner",
    }
}

impl Moat {
    fn vnet_id(&self, group: &str, name: &str) -> ResourceId {
        ResourceId::provider(&self.subscription_id, group, "Microsoft.Network", "virtualNetworks", name)
    }

    fn endpoint_id(&self, group: &str, name: &str) -> ResourceId {
        ResourceId::provider(&self.subscription_id, group, "Microsoft.Network", "privateEndpoints", name)
    }

    /// The current network view.
    pub fn network(&self) -> Arc<NetView> {
        self.net.borrow().clone()
    }

    /// Changes to the network view, for the listeners.
    pub fn network_changes(&self) -> tokio::sync::watch::Receiver<Arc<NetView>> {
        self.net.subscribe()
    }

    async fn all_of(&self, kind: &str) -> Result<Vec<StoredResource>> {
        Ok(self
            .store
            .list_resources(&ListQuery {
                kind: Some(kind),
                subscription_id: &self.subscription_id,
                group_key: None,
                id_prefix: None,
                after_key: None,
                limit: i64::MAX,
            })
            .await?)
    }

    /// After a change to networks, endpoints or a resource's network settings: rebuilds this
    /// node's network view and tells the other nodes sharing the database to rebuild theirs.
    pub(crate) async fn reload_network(&self) -> Result<()> {
        self.rebuild_network().await?;
        self.announce(crate::changes::NETWORK).await
    }

    /// Rebuilds the network view from the store and tells the listeners.
    pub(crate) async fn rebuild_network(&self) -> Result<()> {
        let mut resources = Vec::new();
        let mut registries = HashMap::new();
        let mut accounts = HashMap::new();
        let mut acrs = HashMap::new();
        let mut acr_hosts = HashMap::new();
        let zone = self.config.dns_zone.to_ascii_lowercase();
        // Each networked resource's public DNS names, by its key.
        let mut names: HashMap<String, Vec<String>> = HashMap::new();
        let mut regions = std::collections::BTreeSet::new();
        for row in self.all_of(REGISTRY_KIND).await? {
            let d: RegistryDoc = decode(&row)?;
            registries.insert(d.name.to_ascii_lowercase(), row.id_key());
            let fqdns = d.regions.iter().map(|r| registry_fqdn(&d.guid, &r.location, &zone)).collect();
            regions.extend(d.regions.iter().map(|r| r.location.to_ascii_lowercase()));
            names.insert(row.id_key(), fqdns);
            resources.push(NetResource {
                key: row.id_key(),
                name: d.name,
                plane: Plane::AmlRegistry,
                public_access: Some(d.public_network_access),
                parent: None,
                acls: None,
            });
        }
        for row in self.all_of(STORAGE_KIND).await? {
            let d: StorageAccountDoc = decode(&row)?;
            accounts.insert(d.name.to_ascii_lowercase(), row.id_key());
            names.insert(row.id_key(), vec![format!("{}.blob.{zone}", d.name.to_ascii_lowercase())]);
            resources.push(NetResource {
                key: row.id_key(),
                name: d.name,
                plane: Plane::Blob,
                public_access: d.public_network_access,
                parent: Some(d.registry_id.to_ascii_lowercase()),
                acls: d.network_acls.as_ref().map(|a| NetworkAcls {
                    default_action: if a.default_action_deny { DefaultAction::Deny } else { DefaultAction::Allow },
                    ip_rules: a.ip_rules.clone(),
                    resource_access_rules: a.resource_access_rules.iter().map(|r| r.to_ascii_lowercase()).collect(),
                }),
            });
        }
        for row in self.all_of(ACR_KIND).await? {
            let d: ContainerRegistryDoc = decode(&row)?;
            let acr = d.name.to_ascii_lowercase();
            let mut fqdns = vec![format!("{acr}.cr.{zone}")];
            fqdns.extend(d.regions.iter().map(|r| format!("{acr}.{}.data.cr.{zone}", r.to_ascii_lowercase())));
            acr_hosts.extend(fqdns.iter().map(|f| (f.clone(), acr.clone())));
            acrs.insert(acr.clone(), AcrEntry { key: row.id_key(), registry_id: d.registry_id.clone() });
            names.insert(row.id_key(), fqdns);
            resources.push(NetResource {
                key: row.id_key(),
                name: d.name,
                plane: Plane::Registry,
                public_access: d.public_network_access,
                parent: Some(d.registry_id.to_ascii_lowercase()),
                acls: None,
            });
        }
        let mut vnets = HashMap::new();
        for row in self.all_of(VNET_KIND).await? {
            let d: VnetDoc = decode(&row)?;
            vnets.insert(row.id_key(), (row.id.clone(), d));
        }
        let mut endpoints = Vec::new();
        let mut net_endpoints = Vec::new();
        for row in self.all_of(ENDPOINT_KIND).await? {
            let d: EndpointDoc = decode(&row)?;
            let Some((_, vnet)) = vnets.get(&d.vnet_id.to_ascii_lowercase()) else { continue };
            let plane = d.group_id.parse::<Plane>().unwrap_or(Plane::AmlRegistry);
            let info = EndpointInfo {
                key: row.id_key(),
                id: row.id.clone(),
                name: d.name.clone(),
                vnet_id: d.vnet_id.clone(),
                vnet_name: vnet.name.clone(),
                mode: vnet.mode,
                namespace: vnet.namespace.clone(),
                ip: d.ip,
                target_key: d.target_id.to_ascii_lowercase(),
                plane,
                status: d.status(),
                doc: d,
            };
            net_endpoints.push(NetEndpoint {
                key: info.key.clone(),
                name: info.name.clone(),
                target: info.target_key.clone(),
                plane,
                status: info.status,
                vnet: vnet.name.clone(),
                address_space: vnet.address_space.clone(),
            });
            endpoints.push(info);
        }
        let mut by_target: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in endpoints.iter().enumerate() {
            by_target.entry(e.target_key.clone()).or_default().push(i);
        }
        let mut dns = DnsRecords { zone: zone.clone(), ..Default::default() };
        dns.names.extend(regions.iter().map(|r| format!("{r}.api.{zone}")));
        dns.names.extend(names.values().flatten().cloned());
        dns.names.sort();
        // Private DNS: zones, their links, and the records the endpoints' zone groups put in them.
        let mut zones: HashMap<String, String> = HashMap::new();
        for row in self.all_of(crate::privatedns::ZONE_KIND).await? {
            let z: crate::privatedns::ZoneDoc = decode(&row)?;
            zones.insert(row.id_key(), z.name);
        }
        let mut zone_links: HashMap<String, Vec<String>> = HashMap::new();
        for row in self.all_of(crate::privatedns::LINK_KIND).await? {
            let l: crate::privatedns::LinkDoc = decode(&row)?;
            if let Some((zone_key, _)) = row.id_key().split_once("/virtualnetworklinks/") {
                zone_links.entry(zone_key.to_string()).or_default().push(l.vnet_id.to_ascii_lowercase());
            }
        }
        let mut zone_records: HashMap<String, Vec<(String, IpAddr)>> = HashMap::new();
        for e in &endpoints {
            for g in &e.doc.dns_zone_groups {
                for (_, zid) in &g.configs {
                    let zkey = zid.to_ascii_lowercase();
                    let Some(zname) = zones.get(&zkey) else { continue };
                    for name in names.get(&e.target_key).into_iter().flatten() {
                        if let Some(pl) = crate::privatedns::privatelink_name(&zone, name)
                            && pl.ends_with(&format!(".{zname}"))
                        {
                            zone_records.entry(zkey.clone()).or_default().push((pl, e.ip));
                        }
                    }
                }
            }
        }
        for (zkey, vnet_keys) in &zone_links {
            for vnet_key in vnet_keys {
                for (pl, ip) in zone_records.get(zkey).into_iter().flatten() {
                    dns.private.push((pl.clone(), vnet_key.clone(), *ip));
                }
            }
        }
        for (key, (_, v)) in &vnets {
            match (v.mode, &v.namespace) {
                (BindingMode::Namespace, Some(ns)) => dns.namespace_views.push((ns.clone(), key.clone())),
                _ => dns.source_views.extend(v.address_space.iter().map(|c| (*c, key.clone()))),
            }
        }
        let vnet_list: Vec<VnetInfo> = vnets
            .values()
            .map(|(id, v)| VnetInfo { id: id.clone(), name: v.name.clone(), address_space: v.address_space.clone() })
            .collect();
        let mut namespaces: Vec<String> = vnets.values().filter_map(|(_, v)| v.namespace.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        let generation = self.net.borrow().generation + 1;
        let view = NetView {
            endpoints,
            by_target,
            admission: AdmissionIndex::build(resources, net_endpoints),
            registries,
            accounts,
            acrs,
            acr_hosts,
            namespaces,
            vnets: vnet_list,
            dns,
            names,
            zone_link_counts: zone_links.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
            zone_records,
            regions: regions.into_iter().collect(),
            generation,
        };
        self.net.send_replace(Arc::new(view));
        Ok(())
    }

    /// Network admission, the one place it is decided: may a request from `origin` (the
    /// public listener, or a private endpoint's key) and peer `client` reach `target`? Denials
    /// go to the activity log and name the resource, the origin, the rule and the fix — but only
    /// to a caller who may read the resource; anyone else gets `hidden()`, as if it did not exist.
    pub(crate) async fn admit(
        &self,
        caller: Option<&Caller>,
        client: &str,
        origin: &str,
        target: NetTarget<'_>,
        hidden: impl FnOnce() -> Error,
    ) -> Result<()> {
        self.fresh().await?;
        let view = self.network();
        let (key, plane) = match target {
            NetTarget::Registry(id) => (Some(id.key()), Plane::AmlRegistry),
            NetTarget::RegistryName(n) => (view.registries.get(&n.to_ascii_lowercase()).cloned(), Plane::AmlRegistry),
            NetTarget::StorageAccount(n) => (view.accounts.get(&n.to_ascii_lowercase()).cloned(), Plane::Blob),
            NetTarget::ContainerRegistry(n) => (view.acrs.get(&n.to_ascii_lowercase()).map(|a| a.key.clone()), Plane::Registry),
        };
        let peer = peer_ip(client);
        let origin_ref = if origin == "public" { Origin::Public } else { Origin::Endpoint(origin) };
        let key = key.unwrap_or_default();
        let req = admission::Request { origin: origin_ref, peer, resource: &key, plane, caller_resource: None };
        let denial = match view.admission.admit(&req) {
            Ok(_) => return Ok(()),
            Err(d) => d,
        };
        let action = "Microsoft.Network/admission";
        let resource = if denial.resource_key.is_empty() { key.clone() } else { denial.resource_key.clone() };
        let rule = format!("{}: {}", denial.code(), denial.reason());
        let entry = match caller {
            Some(c) => audit::entry(c, action, &resource, "denied", rule),
            None => audit::anonymous_entry(Some("shared access signature"), client, origin, action, &resource, "denied", rule),
        };
        self.audit.record(entry).await?;
        tracing::info!(origin, client, resource = %resource, code = denial.code(), "network admission denied");
        if let Some(c) = caller
            && !self.may_see_network_target(c, &denial, plane)
        {
            return Err(hidden());
        }
        Err(denied(&denial))
    }

    fn may_see_network_target(&self, caller: &Caller, denial: &Denial, plane: Plane) -> bool {
        // Asset callers see a registry they may read; there is nothing else to hide for SAS
        // callers, whose signature already proved they hold the account's key.
        match (plane, ResourceId::parse(&denial.resource_key)) {
            (Plane::AmlRegistry, Ok(id)) => self.decide(caller, actions::REGISTRY_READ, &id).is_allowed(),
            _ => true,
        }
    }

    /// Writes `doc` as resource `id` — created, or replacing `existing` unless it changed
    /// meanwhile — commits, and refreshes the network view. Returns the stored ID and ETag.
    pub(crate) async fn save_network_doc<T: Serialize>(
        &self,
        mut tx: WriteTx,
        id: &ResourceId,
        existing: Option<&StoredResource>,
        doc: &T,
        now: &str,
    ) -> Result<(String, String)> {
        let etag = new_etag();
        let stored_id = existing.map(|r| r.id.clone()).unwrap_or_else(|| id.to_string());
        let row = document(&ResourceId::parse(&stored_id)?, doc, etag.clone(), existing.map_or(now, |r| &r.created_at), now)?;
        match existing {
            None => tx.insert_resource(&row).await?,
            Some(r) => {
                if !tx.update_resource(&row, &r.etag).await? {
                    return Err(Error::PreconditionFailed {
                        message: format!("'{}' changed concurrently; read it again and retry.", id.name()),
                    });
                }
            }
        }
        tx.commit().await?;
        self.reload_network().await?;
        Ok((stored_id, etag))
    }

    // ---- virtual networks ----

    fn render_vnet(&self, id: &str, d: &VnetDoc, etag: &str, view: &NetView) -> VirtualNetwork {
        let key = id.to_ascii_lowercase();
        VirtualNetwork {
            id: Some(id.to_string()),
            name: Some(d.name.clone()),
            resource_type: Some(VNET_TYPE.into()),
            location: Some(d.location.clone()),
            tags: Some(d.tags.clone()),
            etag: Some(etag.to_string()),
            properties: VirtualNetworkProperties {
                address_space: AddressSpace { address_prefixes: d.address_space.iter().map(|c| c.to_string()).collect() },
                subnets: d.subnets.iter().map(|s| self.render_subnet(id, &key, s, view)).collect(),
                binding: Some(NetworkBinding { mode: d.mode.as_str().into(), namespace: d.namespace.clone() }),
                provisioning_state: Some("Succeeded".into()),
                resource_guid: Some(d.guid.clone()),
            },
        }
    }

    fn render_subnet(&self, vnet_id: &str, vnet_key: &str, s: &SubnetDoc, view: &NetView) -> Subnet {
        let endpoints = view
            .endpoints
            .iter()
            .filter(|e| e.vnet_id.eq_ignore_ascii_case(vnet_key) && e.doc.subnet.eq_ignore_ascii_case(&s.name))
            .map(|e| SubResource { id: e.id.clone() })
            .collect();
        Subnet {
            id: Some(format!("{vnet_id}/subnets/{}", s.name)),
            name: Some(s.name.clone()),
            resource_type: Some(SUBNET_TYPE.into()),
            etag: None,
            properties: SubnetProperties {
                address_prefix: s.prefix.to_string(),
                private_endpoints: Some(endpoints),
                provisioning_state: Some("Succeeded".into()),
            },
        }
    }

    fn endpoints_in(&self, view: &NetView, vnet_key: &str, subnet: Option<&str>) -> Vec<String> {
        view.endpoints
            .iter()
            .filter(|e| e.vnet_id.eq_ignore_ascii_case(vnet_key) && subnet.is_none_or(|s| e.doc.subnet.eq_ignore_ascii_case(s)))
            .map(|e| e.name.clone())
            .collect()
    }

    /// Validates a virtual network body into a document (keeping `old`'s identity on update).
    fn vnet_doc(&self, name: &str, body: &VirtualNetwork, old: Option<&VnetDoc>) -> Result<VnetDoc> {
        let p = &body.properties;
        let spaces: Vec<Cidr> = p
            .address_space
            .address_prefixes
            .iter()
            .enumerate()
            .map(|(i, s)| cidr(&format!("properties.addressSpace.addressPrefixes[{i}]"), s))
            .collect::<Result<_>>()?;
        let mut subnets = Vec::new();
        for (i, s) in p.subnets.iter().enumerate() {
            let sname = s.name.clone().unwrap_or_default();
            network_name(&format!("properties.subnets[{i}].name"), &sname)?;
            if subnets.iter().any(|x: &SubnetDoc| x.name.eq_ignore_ascii_case(&sname)) {
                return Err(Error::invalid(
                    "DuplicateResourceName",
                    format!("properties.subnets[{i}].name"),
                    format!("The subnet name '{sname}' appears twice."),
                ));
            }
            subnets.push(SubnetDoc {
                name: sname,
                prefix: cidr(&format!("properties.subnets[{i}].properties.addressPrefix"), &s.properties.address_prefix)?,
            });
        }
        let named: Vec<(&str, Cidr)> = subnets.iter().map(|s| (s.name.as_str(), s.prefix)).collect();
        validate_address_space(&spaces, &named)
            .map_err(|e| Error::invalid("InvalidAddressSpace", "properties.addressSpace.addressPrefixes", e.to_string()))?;
        let binding = p.binding.clone().unwrap_or(NetworkBinding { mode: "Loopback".into(), namespace: None });
        let mode = BindingMode::parse(&binding.mode)?;
        let namespace = match mode {
            BindingMode::Namespace => {
                let ns = binding.namespace.clone().unwrap_or_else(|| name.to_string());
                let ok = !ns.is_empty() && ns.len() <= 64 && ns.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !ok {
                    return Err(Error::invalid(
                        "InvalidNetworkBinding",
                        "properties.binding.namespace",
                        format!("'{ns}' is not a usable network namespace name: 1 to 64 letters, digits, '_', '.' or '-'."),
                    ));
                }
                Some(ns)
            }
            _ => None,
        };
        if mode == BindingMode::Loopback
            && let Some(bad) = spaces.iter().find(|c| !is_loopback_space(c))
        {
            return Err(Error::invalid(
                "InvalidAddressSpace",
                "properties.addressSpace.addressPrefixes",
                format!(
                    "A Loopback network's address space must lie inside 127.0.0.0/8, and {bad} does not. Use e.g. 127.10.0.0/16, or bind the network to a namespace or the host (properties.binding.mode)."
                ),
            ));
        }
        let location = body.location.clone().unwrap_or_else(|| old.map(|o| o.location.clone()).unwrap_or_else(|| "local".into()));
        if let Some(o) = old {
            if !o.location.eq_ignore_ascii_case(&location) {
                return Err(Error::invalid(
                    "LocationCannotBeChanged",
                    "location",
                    format!("A virtual network's location cannot change (it is {}).", o.location),
                ));
            }
            if o.mode != mode || o.namespace != namespace {
                return Err(Error::invalid(
                    "NetworkBindingCannotBeChanged",
                    "properties.binding",
                    "A virtual network's binding cannot change; create another network instead.",
                ));
            }
        }
        Ok(VnetDoc {
            name: name.to_string(),
            location,
            tags: body.tags.clone().unwrap_or_default(),
            address_space: spaces,
            subnets,
            mode,
            namespace,
            guid: old.map(|o| o.guid.clone()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        })
    }

    /// Refuses a change that would strand an endpoint: its subnet removed or its address
    /// outside the new prefix.
    fn check_endpoints_kept(&self, vnet_key: &str, doc: &VnetDoc) -> Result<()> {
        let view = self.network();
        for e in view.endpoints.iter().filter(|e| e.vnet_id.eq_ignore_ascii_case(vnet_key)) {
            let kept = doc.subnets.iter().any(|s| s.name.eq_ignore_ascii_case(&e.doc.subnet) && s.prefix.contains(e.ip));
            if !kept {
                return Err(Error::conflict(
                    "InUseSubnetCannotBeDeleted",
                    format!(
                        "Subnet '{}' holds private endpoint '{}' ({}); delete the endpoint before removing or shrinking the subnet.",
                        e.doc.subnet, e.name, e.ip
                    ),
                ));
            }
        }
        Ok(())
    }

    pub async fn put_vnet(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        name: &str,
        body: VirtualNetwork,
        pre: &Preconditions,
    ) -> Result<(Versioned<VirtualNetwork>, bool)> {
        self.check_subscription(sub)?;
        ResourceGroupName::parse(group)?;
        network_name("name", name)?;
        let id = self.vnet_id(group, name);
        self.authorize_visible(caller, actions::VNET_WRITE, actions::VNET_READ, &id, || not_found("virtual network", name)).await?;
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let gdoc = group_for_write(&mut tx, &self.subscription_id, group).await?;
        if gdoc.managed_by.is_some() {
            return Err(deny_managed(&gdoc, actions::VNET_WRITE, &id));
        }
        let existing = tx.get_resource(&id.key()).await?;
        pre.check(existing.as_ref().map(|r| r.etag.as_str()))?;
        let old: Option<VnetDoc> = existing.as_ref().map(decode).transpose()?;
        let doc = self.vnet_doc(name, &body, old.as_ref())?;
        self.check_endpoints_kept(&id.key(), &doc)?;
        let created = existing.is_none();
        let (stored_id, etag) = self.save_network_doc(tx, &id, existing.as_ref(), &doc, &now).await?;
        let view = self.network();
        Ok((Versioned { value: self.render_vnet(&stored_id, &doc, &etag, &view), etag }, created))
    }

    async fn vnet_row(&self, caller: &Caller, sub: &str, group: &str, name: &str) -> Result<(VnetDoc, StoredResource)> {
        self.check_subscription(sub)?;
        let id = self.vnet_id(group, name);
        self.read_visible(caller, actions::VNET_READ, &id, || not_found("virtual network", name)).await
    }

    pub async fn get_vnet(&self, caller: &Caller, sub: &str, group: &str, name: &str) -> Result<Versioned<VirtualNetwork>> {
        let (doc, row) = self.vnet_row(caller, sub, group, name).await?;
        Ok(Versioned { value: self.render_vnet(&row.id, &doc, &row.etag, &self.network()), etag: row.etag })
    }

    pub async fn list_vnets(
        &self,
        caller: &Caller,
        sub: &str,
        group: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Listed<VirtualNetwork>> {
        self.check_subscription(sub)?;
        let view = self.network();
        let group_key = group.map(str::to_ascii_lowercase);
        let scope = self.listed_scope(group);
        let all_visible = self.authorize_list(caller, actions::VNET_READ, &scope).await?;
        self.list_paged(VNET_KIND, group_key.as_deref(), None, after, limit, |row| {
            let id = ResourceId::parse(&row.id)?;
            if !all_visible && !self.decide(caller, actions::VNET_READ, &id).is_allowed() {
                return Ok(None);
            }
            let doc: VnetDoc = decode(row)?;
            Ok(Some(self.render_vnet(&row.id, &doc, &row.etag, &view)))
        })
        .await
    }

    pub async fn delete_vnet(&self, caller: &Caller, sub: &str, group: &str, name: &str, pre: &Preconditions) -> Result<bool> {
        self.check_subscription(sub)?;
        let id = self.vnet_id(group, name);
        self.authorize_visible(caller, actions::VNET_DELETE, actions::VNET_READ, &id, || not_found("virtual network", name)).await?;
        let mut tx = self.store.write().await?;
        let Some(row) = tx.get_resource(&id.key()).await? else {
            pre.check(None)?;
            return Ok(false);
        };
        pre.check(Some(&row.etag))?;
        let users = self.endpoints_in(&self.network(), &id.key(), None);
        if !users.is_empty() {
            return Err(Error::conflict(
                "InUseSubnetCannotBeDeleted",
                format!("Virtual network '{name}' holds private endpoints ({}); delete them first.", users.join(", ")),
            ));
        }
        tx.delete_resource(&id.key()).await?;
        tx.commit().await?;
        self.reload_network().await?;
        Ok(true)
    }

    // ---- subnets (children of the network's document) ----

    /// Subnets are part of their network: changing one is writing the network.
    async fn authorize_subnet_write(&self, caller: &Caller, sub: &str, group: &str, vnet: &str) -> Result<()> {
        self.check_subscription(sub)?;
        let id = self.vnet_id(group, vnet);
        self.authorize_visible(caller, actions::VNET_WRITE, actions::VNET_READ, &id, || not_found("virtual network", vnet)).await
    }

    pub async fn put_subnet(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        vnet: &str,
        name: &str,
        body: Subnet,
    ) -> Result<(Subnet, bool)> {
        self.authorize_subnet_write(caller, sub, group, vnet).await?;
        let (doc, row) = self.vnet_row(caller, sub, group, vnet).await?;
        let mut as_body = self.render_vnet(&row.id, &doc, &row.etag, &self.network());
        let created = !as_body.properties.subnets.iter().any(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        as_body.properties.subnets.retain(|s| !s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        as_body.properties.subnets.push(Subnet { name: Some(name.to_string()), ..body });
        let (v, _) =
            self.put_vnet(caller, sub, group, vnet, as_body, &Preconditions { if_match: Some(row.etag), if_none_match: None }).await?;
        let s =
            v.value.properties.subnets.into_iter().find(|s| s.name.as_deref() == Some(name)).ok_or_else(|| not_found("subnet", name))?;
        Ok((s, created))
    }

    pub async fn get_subnet(&self, caller: &Caller, sub: &str, group: &str, vnet: &str, name: &str) -> Result<Subnet> {
        let v = self.get_vnet(caller, sub, group, vnet).await?.value;
        v.properties
            .subnets
            .into_iter()
            .find(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .ok_or_else(|| not_found("subnet", name))
    }

    pub async fn list_subnets(&self, caller: &Caller, sub: &str, group: &str, vnet: &str) -> Result<Vec<Subnet>> {
        Ok(self.get_vnet(caller, sub, group, vnet).await?.value.properties.subnets)
    }

    pub async fn delete_subnet(&self, caller: &Caller, sub: &str, group: &str, vnet: &str, name: &str) -> Result<bool> {
        self.authorize_subnet_write(caller, sub, group, vnet).await?;
        let (doc, row) = self.vnet_row(caller, sub, group, vnet).await?;
        let mut as_body = self.render_vnet(&row.id, &doc, &row.etag, &self.network());
        let before = as_body.properties.subnets.len();
        as_body.properties.subnets.retain(|s| !s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        if as_body.properties.subnets.len() == before {
            return Ok(false);
        }
        self.put_vnet(caller, sub, group, vnet, as_body, &Preconditions { if_match: Some(row.etag), if_none_match: None }).await?;
        Ok(true)
    }

    // ---- private endpoints ----

    fn render_endpoint(&self, id: &str, d: &EndpointDoc, etag: &str) -> PrivateEndpoint {
        let listener = self.listener_urls.read().ok().and_then(|m| m.get(&id.to_ascii_lowercase()).cloned());
        let (service_url, listener_error) = match listener {
            Some(Ok(u)) => (Some(u), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let status = d.status();
        let conn = PrivateLinkServiceConnection {
            id: Some(format!("{id}/privateLinkServiceConnections/{}", d.connection_name)),
            name: d.connection_name.clone(),
            properties: PrivateLinkServiceConnectionProperties {
                private_link_service_id: d.target_id.clone(),
                group_ids: vec![d.group_id.clone()],
                request_message: d.request_message.clone(),
                private_link_service_connection_state: Some(ConnectionState {
                    status: status.as_str().into(),
                    description: d.description.clone(),
                    actions_required: "None".into(),
                }),
                provisioning_state: Some("Succeeded".into()),
            },
        };
        let (auto, manual) = if d.manual { (vec![], vec![conn]) } else { (vec![conn], vec![]) };
        PrivateEndpoint {
            id: Some(id.to_string()),
            name: Some(d.name.clone()),
            resource_type: Some(ENDPOINT_TYPE.into()),
            location: Some(d.location.clone()),
            tags: Some(d.tags.clone()),
            etag: Some(etag.to_string()),
            properties: PrivateEndpointProperties {
                subnet: SubResource { id: format!("{}/subnets/{}", d.vnet_id, d.subnet) },
                private_link_service_connections: auto,
                manual_private_link_service_connections: manual,
                custom_dns_configs: Some(
                    self.network()
                        .names
                        .get(&d.target_id.to_ascii_lowercase())
                        .into_iter()
                        .flatten()
                        .map(|fqdn| CustomDnsConfig { fqdn: fqdn.clone(), ip_addresses: vec![d.ip.to_string()] })
                        .collect(),
                ),
                network_interfaces: None,
                service_url,
                provisioning_state: Some(if listener_error.is_some() { "Failed" } else { "Succeeded" }.into()),
                listener_error,
            },
        }
    }

    /// The listener URL of an endpoint, if it is open (set by the composition root).
    fn service_url(&self, key: &str) -> Option<String> {
        self.listener_urls.read().ok().and_then(|m| m.get(key).cloned()).and_then(|r| r.ok())
    }

    /// Records where an endpoint's listener is (`Ok(url)`), why it could not open (`Err`), or
    /// that it is closed (`None`).
    pub fn set_listener_url(&self, endpoint_key: &str, state: Option<Result<String, String>>) {
        if let Ok(mut m) = self.listener_urls.write() {
            match state {
                Some(st) => m.insert(endpoint_key.to_string(), st),
                None => m.remove(endpoint_key),
            };
        }
    }

    /// The registry that decides connections to `target` (itself, or the owner of a storage
    /// account or container registry), with the target's display ID.
    async fn link_target(&self, target_id: &str, plane: Plane) -> Result<Option<(ResourceId, ResourceId)>> {
        let Ok(id) = ResourceId::parse(target_id) else { return Ok(None) };
        if !id.resource_type().eq_ignore_ascii_case(endpoint_plane_kind(plane)) {
            return Ok(None);
        }
        let Some(row) = self.store.get_resource(&id.key()).await? else { return Ok(None) };
        let target = ResourceId::parse(&row.id)?;
        let registry = match plane {
            Plane::AmlRegistry => target.clone(),
            Plane::Blob => ResourceId::parse(&decode::<StorageAccountDoc>(&row)?.registry_id)?,
            Plane::Registry => ResourceId::parse(&decode::<ContainerRegistryDoc>(&row)?.registry_id)?,
        };
        Ok(Some((target, registry)))
    }

    pub async fn put_endpoint(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        name: &str,
        body: PrivateEndpoint,
        pre: &Preconditions,
    ) -> Result<(Versioned<PrivateEndpoint>, bool)> {
        self.check_subscription(sub)?;
        ResourceGroupName::parse(group)?;
        network_name("name", name)?;
        let id = self.endpoint_id(group, name);
        self.authorize_visible(caller, actions::ENDPOINT_WRITE, actions::ENDPOINT_READ, &id, || not_found("private endpoint", name))
            .await?;
        let p = &body.properties;
        let (conn, manual) = match (p.private_link_service_connections.as_slice(), p.manual_private_link_service_connections.as_slice()) {
            ([c], []) => (c, false),
            ([], [c]) => (c, true),
            _ => {
                return Err(Error::invalid(
                    "InvalidPrivateLinkServiceConnections",
                    "properties.privateLinkServiceConnections",
                    "A private endpoint has exactly one connection, in privateLinkServiceConnections (approved at once if you may approve it) or in manualPrivateLinkServiceConnections (waits for the owner's approval).",
                ));
            }
        };
        let field =
            if manual { "properties.manualPrivateLinkServiceConnections[0]" } else { "properties.privateLinkServiceConnections[0]" };
        network_name(&format!("{field}.name"), &conn.name)?;
        let plane = match conn.properties.group_ids.as_slice() {
            [g] => {
                g.parse::<Plane>().map_err(|e| Error::invalid("InvalidGroupId", format!("{field}.properties.groupIds"), e.to_string()))?
            }
            _ => {
                return Err(Error::invalid(
                    "InvalidGroupId",
                    format!("{field}.properties.groupIds"),
                    "Give exactly one group ID: amlregistry (a registry), blob (one of its storage accounts) or registry (its container registry).",
                ));
            }
        };
        let target_id = &conn.properties.private_link_service_id;
        let (target, registry) = self.link_target(target_id, plane).await?.ok_or_else(|| {
            Error::invalid(
                "PrivateLinkServiceNotFound",
                format!("{field}.properties.privateLinkServiceId"),
                format!(
                    "'{target_id}' is not an existing {} (group ID '{}' connects to a {}).",
                    plane.resource_kind(),
                    plane.as_group_id(),
                    plane.resource_kind()
                ),
            )
        })?;
        let subnet_id =
            ResourceId::parse(&p.subnet.id).map_err(|e| Error::invalid("InvalidSubnetId", "properties.subnet.id", e.to_string()))?;
        let (vnet_group, vnet_name, subnet_name) = match subnet_id.as_str().rsplit_once("/subnets/") {
            Some((v, s)) => {
                let vid = ResourceId::parse(v).map_err(|e| Error::invalid("InvalidSubnetId", "properties.subnet.id", e.to_string()))?;
                (vid.resource_group_name().unwrap_or_default().to_string(), vid.name().to_string(), s.to_string())
            }
            None => {
                return Err(Error::invalid(
                    "InvalidSubnetId",
                    "properties.subnet.id",
                    "Give a subnet ID: …/virtualNetworks/{vnet}/subnets/{subnet}.",
                ));
            }
        };
        let vnet_id = self.vnet_id(&vnet_group, &vnet_name);
        self.authorize_visible(caller, actions::SUBNET_JOIN, actions::VNET_READ, &vnet_id, || not_found("virtual network", &vnet_name))
            .await?;
        let may_approve = self.decide(caller, actions::REGISTRY_PE_APPROVE, &registry).is_allowed();
        if !manual && !may_approve {
            return Err(Error::Forbidden {
                code: "LinkedAuthorizationFailed",
                action: actions::REGISTRY_PE_APPROVE.into(),
                scope: registry.to_string(),
                message: format!(
                    "The client '{}' may not approve connections to {} '{}', so the connection cannot be approved at once. \
                     Ask for approval instead (manualPrivateLinkServiceConnections; `--manual-request` in the CLI): the registry's owner then approves it.",
                    caller.display_name,
                    plane.resource_kind(),
                    target.name()
                ),
            });
        }
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let gdoc = group_for_write(&mut tx, &self.subscription_id, group).await?;
        if gdoc.managed_by.is_some() {
            return Err(Error::Forbidden {
                code: "PrivateEndpointInManagedResourceGroup",
                action: actions::ENDPOINT_WRITE.into(),
                scope: id.to_string(),
                message: format!(
                    "'{}' is a registry's managed resource group; provisioning private endpoints in it is not permitted. Create the endpoint in the resource group of your virtual network.",
                    gdoc.name
                ),
            });
        }
        let existing = tx.get_resource(&id.key()).await?;
        pre.check(existing.as_ref().map(|r| r.etag.as_str()))?;
        let vrow = tx.get_resource(&vnet_id.key()).await?.ok_or_else(|| not_found("virtual network", &vnet_name))?;
        let vnet: VnetDoc = decode(&vrow)?;
        let subnet = vnet.subnets.iter().find(|s| s.name.eq_ignore_ascii_case(&subnet_name)).ok_or_else(|| {
            Error::invalid(
                "InvalidSubnetId",
                "properties.subnet.id",
                format!("Virtual network '{vnet_name}' has no subnet '{subnet_name}'."),
            )
        })?;
        let doc = match &existing {
            Some(row) => {
                let old: EndpointDoc = decode(row)?;
                let same = old.vnet_id.eq_ignore_ascii_case(vrow.id.as_str())
                    && old.subnet.eq_ignore_ascii_case(&subnet.name)
                    && old.target_id.eq_ignore_ascii_case(target.as_str())
                    && old.group_id == plane.as_group_id();
                if !same {
                    return Err(Error::conflict(
                        "PrivateEndpointImmutable",
                        format!(
                            "Private endpoint '{name}' already connects another subnet or resource; only its tags can change. Delete it and create it again."
                        ),
                    ));
                }
                EndpointDoc { tags: body.tags.clone().unwrap_or(old.tags.clone()), ..old }
            }
            None => {
                let view = self.network();
                let taken: Vec<IpAddr> = view.endpoints.iter().filter(|e| e.vnet_id.eq_ignore_ascii_case(&vrow.id)).map(|e| e.ip).collect();
                let ip = allocate_ip(&subnet.prefix, &|ip| taken.contains(&ip)).ok_or_else(|| {
                    Error::conflict("SubnetIsFull", format!("Subnet '{}' ({}) has no free address left.", subnet.name, subnet.prefix))
                })?;
                let status = if manual { ConnectionStatus::Pending } else { ConnectionStatus::Approved };
                EndpointDoc {
                    name: name.to_string(),
                    location: body.location.clone().unwrap_or_else(|| vnet.location.clone()),
                    tags: body.tags.clone().unwrap_or_default(),
                    vnet_id: vrow.id.clone(),
                    subnet: subnet.name.clone(),
                    ip,
                    target_id: target.to_string(),
                    group_id: plane.as_group_id().into(),
                    connection_name: conn.name.clone(),
                    request_message: conn.properties.request_message.clone(),
                    status: status.as_str().into(),
                    description: if manual {
                        conn.properties.request_message.clone().unwrap_or_else(|| status_description(status).into())
                    } else {
                        status_description(status).into()
                    },
                    manual,
                    dns_zone_groups: vec![],
                }
            }
        };
        let (stored_id, etag) = self.save_network_doc(tx, &id, existing.as_ref(), &doc, &now).await?;
        Ok((Versioned { value: self.render_endpoint(&stored_id, &doc, &etag), etag }, existing.is_none()))
    }

    pub async fn get_endpoint(&self, caller: &Caller, sub: &str, group: &str, name: &str) -> Result<Versioned<PrivateEndpoint>> {
        self.check_subscription(sub)?;
        let id = self.endpoint_id(group, name);
        let (doc, row): (EndpointDoc, _) =
            self.read_visible(caller, actions::ENDPOINT_READ, &id, || not_found("private endpoint", name)).await?;
        Ok(Versioned { value: self.render_endpoint(&row.id, &doc, &row.etag), etag: row.etag })
    }

    pub async fn list_endpoints(
        &self,
        caller: &Caller,
        sub: &str,
        group: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Listed<PrivateEndpoint>> {
        self.check_subscription(sub)?;
        let group_key = group.map(str::to_ascii_lowercase);
        let scope = self.listed_scope(group);
        let all_visible = self.authorize_list(caller, actions::ENDPOINT_READ, &scope).await?;
        self.list_paged(ENDPOINT_KIND, group_key.as_deref(), None, after, limit, |row| {
            let id = ResourceId::parse(&row.id)?;
            if !all_visible && !self.decide(caller, actions::ENDPOINT_READ, &id).is_allowed() {
                return Ok(None);
            }
            let doc: EndpointDoc = decode(row)?;
            Ok(Some(self.render_endpoint(&row.id, &doc, &row.etag)))
        })
        .await
    }

    pub async fn delete_endpoint(&self, caller: &Caller, sub: &str, group: &str, name: &str, pre: &Preconditions) -> Result<bool> {
        self.check_subscription(sub)?;
        let id = self.endpoint_id(group, name);
        self.authorize_visible(caller, actions::ENDPOINT_DELETE, actions::ENDPOINT_READ, &id, || not_found("private endpoint", name))
            .await?;
        let mut tx = self.store.write().await?;
        let Some(row) = tx.get_resource(&id.key()).await? else {
            pre.check(None)?;
            return Ok(false);
        };
        pre.check(Some(&row.etag))?;
        tx.delete_resource(&id.key()).await?;
        tx.commit().await?;
        self.reload_network().await?;
        Ok(true)
    }

    // ---- the provider side: private endpoint connections ----

    fn render_connection(&self, target_id: &str, e: &EndpointInfo) -> PrivateEndpointConnection {
        PrivateEndpointConnection {
            id: Some(format!("{target_id}/privateEndpointConnections/{}", e.doc.connection_name)),
            name: Some(e.doc.connection_name.clone()),
            resource_type: Some(format!(
                "{}/privateEndpointConnections",
                ResourceId::parse(target_id).map(|t| t.resource_type()).unwrap_or_default()
            )),
            properties: PrivateEndpointConnectionProperties {
                group_ids: Some(vec![e.doc.group_id.clone()]),
                private_endpoint: Some(PrivateEndpointRef {
                    id: e.id.clone(),
                    subnet_arm_id: Some(format!("{}/subnets/{}", e.doc.vnet_id, e.doc.subnet)),
                }),
                private_link_service_connection_state: ConnectionState {
                    status: e.status.as_str().into(),
                    description: e.doc.description.clone(),
                    actions_required: "None".into(),
                },
                provisioning_state: (e.status == ConnectionStatus::Approved).then(|| "Succeeded".into()),
            },
        }
    }

    /// A registry's `registryPrivateEndpointConnections`, from the network view.
    pub(crate) fn registry_connections(&self, registry_id: &str) -> Vec<serde_json::Value> {
        let view = self.network();
        view.to_target(&registry_id.to_ascii_lowercase())
            .filter(|e| e.status != ConnectionStatus::Disconnected)
            .map(|e| {
                let c = self.render_connection(registry_id, e);
                serde_json::json!({
                    "id": c.id,
                    "location": e.doc.location,
                    "properties": {
                        "groupIds": c.properties.group_ids,
                        "privateEndpoint": c.properties.private_endpoint,
                        "registryPrivateLinkServiceConnectionState": c.properties.private_link_service_connection_state,
                        "provisioningState": c.properties.provisioning_state,
                    }
                })
            })
            .collect()
    }

    /// Resolves a provider-side target (registry, storage account or container registry) the
    /// caller may read: its display ID and the registry that owns it.
    async fn provider_target(&self, caller: &Caller, target: &ResourceId) -> Result<(ResourceId, ResourceId, Plane)> {
        self.check_subscription(target.subscription_id())?;
        let kind = target.resource_type().to_ascii_lowercase();
        let plane = [Plane::AmlRegistry, Plane::Blob, Plane::Registry]
            .into_iter()
            .find(|p| endpoint_plane_kind(*p) == kind)
            .ok_or_else(|| not_found("resource", target.name()))?;
        let (display, registry) =
            self.link_target(target.as_str(), plane).await?.ok_or_else(|| not_found(plane.resource_kind(), target.name()))?;
        self.authorize_visible(caller, actions::REGISTRY_READ, actions::REGISTRY_READ, &registry, || {
            not_found(plane.resource_kind(), target.name())
        })
        .await?;
        Ok((display, registry, plane))
    }

    pub async fn list_connections(&self, caller: &Caller, target: &ResourceId) -> Result<Vec<PrivateEndpointConnection>> {
        let (display, _, _) = self.provider_target(caller, target).await?;
        let view = self.network();
        Ok(view
            .to_target(&display.key())
            .filter(|e| e.status != ConnectionStatus::Disconnected)
            .map(|e| self.render_connection(display.as_str(), e))
            .collect())
    }

    fn find_connection<'v>(view: &'v NetView, target_key: &str, name: &str) -> Option<&'v EndpointInfo> {
        view.to_target(target_key).find(|e| e.doc.connection_name.eq_ignore_ascii_case(name) && e.status != ConnectionStatus::Disconnected)
    }

    pub async fn get_connection(&self, caller: &Caller, target: &ResourceId, name: &str) -> Result<PrivateEndpointConnection> {
        let (display, _, _) = self.provider_target(caller, target).await?;
        let view = self.network();
        let e = Self::find_connection(&view, &display.key(), name).ok_or_else(|| not_found("private endpoint connection", name))?;
        Ok(self.render_connection(display.as_str(), e))
    }

    /// Approves or rejects a connection (the provider's decision); `None` deletes it, which
    /// leaves the endpoint `Disconnected`.
    pub async fn decide_connection(
        &self,
        caller: &Caller,
        target: &ResourceId,
        name: &str,
        state: Option<ConnectionState>,
    ) -> Result<Option<PrivateEndpointConnection>> {
        let (display, registry, _) = self.provider_target(caller, target).await?;
        self.authorize(caller, actions::REGISTRY_PE_APPROVE, &registry).await?;
        let new_status = match &state {
            None => ConnectionStatus::Disconnected,
            Some(s) => match s.status.to_ascii_lowercase().as_str() {
                "approved" => ConnectionStatus::Approved,
                "rejected" => ConnectionStatus::Rejected,
                _ => {
                    return Err(Error::invalid(
                        "InvalidConnectionStatus",
                        "properties.privateLinkServiceConnectionState.status",
                        format!("'{}' is not a decision: set Approved or Rejected (delete the connection to disconnect it).", s.status),
                    ));
                }
            },
        };
        let view = self.network();
        let Some(e) = Self::find_connection(&view, &display.key(), name) else {
            if state.is_none() {
                return Ok(None);
            }
            return Err(not_found("private endpoint connection", name));
        };
        if e.status == ConnectionStatus::Rejected && new_status == ConnectionStatus::Approved {
            return Err(Error::conflict(
                "RejectedConnectionCannotBeApproved",
                format!("Connection '{name}' was rejected; its endpoint's owner must delete the endpoint and ask again."),
            ));
        }
        let row = self.store.get_resource(&e.key).await?.ok_or_else(|| not_found("private endpoint connection", name))?;
        let mut doc: EndpointDoc = decode(&row)?;
        doc.status = new_status.as_str().into();
        doc.description = match &state {
            Some(s) if !s.description.is_empty() => s.description.clone(),
            _ => status_description(new_status).into(),
        };
        self.save_endpoint_doc(&row, &doc).await?;
        if state.is_none() {
            return Ok(None);
        }
        let view = self.network();
        let e = view.endpoints.iter().find(|x| x.key == e.key).ok_or_else(|| not_found("private endpoint connection", name))?;
        Ok(Some(self.render_connection(display.as_str(), e)))
    }
}

/// What `diagnoseNetwork` finds for one plane of a registry.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaneDiagnosis {
    /// `amlregistry`, `blob` or `registry`.
    pub group_id: String,
    pub resource_id: String,
    pub reachable: bool,
    /// `privateEndpoint`, `public`, or `none`.
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_endpoint_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
    /// Why each way in is closed, each with its fix (empty when reachable).
    pub findings: Vec<String>,
    /// What moat's DNS answers for the resource's names to a client in the caller's network.
    pub dns: Vec<NameDiagnosis>,
    /// DNS that does not match the path: a name resolving to the public listener although the
    /// way in is a private endpoint, with the fix.
    pub dns_findings: Vec<String>,
}

/// One name of a resource, as moat's DNS answers it from the caller's network.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NameDiagnosis {
    pub name: String,
    /// The privatelink name the public one is a CNAME to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privatelink_name: Option<String>,
    /// A private endpoint's address, or `public` (the public listener's).
    pub answer: String,
    /// Where the answer comes from.
    pub source: String,
}

/// The privatelink zone holding a privatelink name: `privatelink.<service>.<zone>`, or for a
/// container registry's data endpoint `<region>.data.privatelink.cr.<zone>`.
fn privatelink_zone_of(pl: &str) -> String {
    match pl.find("privatelink.") {
        Some(i) => {
            let head = &pl[..i];
            match head.strip_suffix("data.").and_then(|h| h.trim_end_matches('.').rsplit_once('.').map(|(_, region)| region)) {
                Some(region) => format!("{region}.data.{}", &pl[i..]),
                None => pl[i..].to_string(),
            }
        }
        None => pl.to_string(),
    }
}

/// The answer of `diagnoseNetwork`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkDiagnosis {
    /// Where the caller was taken to be.
    pub source_address: String,
    pub virtual_networks: Vec<String>,
    pub planes: Vec<PlaneDiagnosis>,
}

impl Moat {
    /// For a client at `source` (or inside virtual network `vnet_id`, or on the public network),
    /// says for each plane of a registry whether it can reach it, by which way, and if not,
    /// exactly which setting or endpoint is missing — judged by the same admission index that
    /// judges real requests.
    pub async fn diagnose_network(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        source: Option<IpAddr>,
        vnet_id: Option<&str>,
    ) -> Result<NetworkDiagnosis> {
        self.check_subscription(sub)?;
        let reg_id = ResourceId::provider(&self.subscription_id, group, "Microsoft.MachineLearningServices", "registries", registry);
        let (doc, row): (RegistryDoc, _) =
            self.read_visible(caller, actions::REGISTRY_READ, &reg_id, || not_found("registry", registry)).await?;
        let view = self.network();
        let (peer, vnets): (IpAddr, Vec<&VnetInfo>) = match (vnet_id, source) {
            (Some(v), _) => {
                let found = view.vnets.iter().find(|n| n.id.eq_ignore_ascii_case(v)).ok_or_else(|| not_found("virtual network", v))?;
                let peer =
                    found.address_space.first().and_then(|c| allocate_ip(c, &|_| false)).ok_or_else(|| not_found("address in", v))?;
                (peer, vec![found])
            }
            (None, Some(ip)) => (canonical_ip(ip), view.vnets.iter().filter(|n| n.address_space.iter().any(|c| c.contains(ip))).collect()),
            (None, None) => (IpAddr::from([0, 0, 0, 0]), vec![]),
        };
        let in_client_net = |e: &EndpointInfo| vnets.iter().any(|n| n.id.eq_ignore_ascii_case(&e.vnet_id));
        let mut targets = vec![(row.id.clone(), Plane::AmlRegistry)];
        for r in &doc.regions {
            for s in &r.storage_accounts {
                targets.push((self.storage_id(&doc.managed_group, &s.name).to_string(), Plane::Blob));
            }
        }
        targets.push((
            ResourceId::provider(
                &self.subscription_id,
                &doc.managed_group,
                "Microsoft.ContainerRegistry",
                "registries",
                &doc.container_registry,
            )
            .to_string(),
            Plane::Registry,
        ));
        let mut planes = Vec::new();
        for (id, plane) in targets {
            let key = id.to_ascii_lowercase();
            let mut d = PlaneDiagnosis {
                group_id: plane.as_group_id().into(),
                resource_id: id.clone(),
                reachable: false,
                path: "none".into(),
                private_endpoint_id: None,
                service_url: None,
                findings: vec![],
                dns: vec![],
                dns_findings: vec![],
            };
            let mine: Vec<&EndpointInfo> = view.to_target(&key).filter(|e| e.plane == plane && in_client_net(e)).collect();
            for e in &mine {
                let req = admission::Request { origin: Origin::Endpoint(&e.key), peer, resource: &key, plane, caller_resource: None };
                match view.admission.admit(&req) {
                    Ok(_) if !d.reachable => {
                        d.reachable = true;
                        d.path = "privateEndpoint".into();
                        d.private_endpoint_id = Some(e.id.clone());
                        d.service_url = self.service_url(&e.key);
                    }
                    Ok(_) => {}
                    Err(denial) => d.findings.push(denial.message()),
                }
            }
            if !d.reachable {
                let req = admission::Request { origin: Origin::Public, peer, resource: &key, plane, caller_resource: None };
                match view.admission.admit(&req) {
                    Ok(_) => {
                        d.reachable = true;
                        d.path = "public".into();
                        d.findings.clear();
                    }
                    Err(denial) => {
                        d.findings.push(denial.message());
                        if mine.is_empty() {
                            let name = id.rsplit('/').next().unwrap_or_default();
                            d.findings.push(match vnets.first().map(|n| &n.name) {
                                Some(vnet) => format!(
                                    "Virtual network '{vnet}' has no private endpoint with group ID '{}' to {} '{name}': create one with `moat network private-endpoint create --vnet-name {vnet} --group-id {} --private-connection-resource-id {id} …`.",
                                    plane.as_group_id(),
                                    plane.resource_kind(),
                                    plane.as_group_id()
                                ),
                                None => format!(
                                    "The caller is in no virtual network moat knows: give the source address of a client in one (--source-address) or the network (--from-vnet), and create a private endpoint with group ID '{}' to {} '{name}' there.",
                                    plane.as_group_id(),
                                    plane.resource_kind()
                                ),
                            });
                        }
                    }
                }
            }
            for name in view.names.get(&key).into_iter().flatten() {
                let pl = crate::privatedns::privatelink_name(&view.dns.zone, name);
                let private = pl
                    .as_ref()
                    .and_then(|pl| view.dns.private.iter().find(|(n, v, _)| n == pl && vnets.iter().any(|x| x.id.eq_ignore_ascii_case(v))));
                let (answer, source) = match private {
                    Some((_, v, ip)) => {
                        let vnet = vnets.iter().find(|x| x.id.eq_ignore_ascii_case(v)).map_or(v.as_str(), |x| x.name.as_str());
                        (ip.to_string(), format!("a private DNS zone linked to '{vnet}'"))
                    }
                    None => ("public".to_string(), "moat's public answer (the public listener)".to_string()),
                };
                if private.is_none()
                    && d.path == "privateEndpoint"
                    && let (Some(pl), Some(vnet)) = (&pl, vnets.first())
                {
                    let pe = d.private_endpoint_id.as_deref().and_then(|id| id.rsplit('/').next()).unwrap_or("the endpoint");
                    let zone = privatelink_zone_of(pl);
                    d.dns_findings.push(format!(
                        "From '{}', '{name}' resolves to the public listener, not to private endpoint '{pe}': clients using names miss the endpoint. \
                         Create zone '{zone}' (`moat network private-dns zone create --name {zone}`), link it to '{}' \
                         (`moat network private-dns link vnet create --zone-name {zone} --virtual-network {} --name …`) and give '{pe}' a DNS zone group \
                         (`moat network private-endpoint dns-zone-group create --endpoint-name {pe} --private-dns-zone {zone} --name default`).",
                        vnet.name, vnet.name, vnet.name
                    ));
                }
                d.dns.push(NameDiagnosis { name: name.clone(), privatelink_name: pl, answer, source });
            }
            planes.push(d);
        }
        Ok(NetworkDiagnosis { source_address: peer.to_string(), virtual_networks: vnets.iter().map(|n| n.id.clone()).collect(), planes })
    }

    /// PATCH of a managed storage account's or container registry's network settings:
    /// `properties.publicNetworkAccess` (`Enabled`, `Disabled`, or `null` to follow the
    /// registry) and, for storage accounts, `properties.networkAcls` (`defaultAction`,
    /// `ipRules[].value`, `resourceAccessRules[].resourceId`). They live in the registry's
    /// managed resource group, closed to users, so the registry's write permission decides.
    pub async fn patch_network_settings(&self, caller: &Caller, target: &ResourceId, body: &serde_json::Value) -> Result<()> {
        let plane = match target.resource_type().to_ascii_lowercase().as_str() {
            STORAGE_KIND => Plane::Blob,
            ACR_KIND => Plane::Registry,
            _ => return Err(not_found("resource", target.name())),
        };
        let (display, registry) =
            self.link_target(target.as_str(), plane).await?.ok_or_else(|| not_found(plane.resource_kind(), target.name()))?;
        self.authorize_visible(caller, actions::REGISTRY_WRITE, actions::REGISTRY_READ, &registry, || {
            not_found(plane.resource_kind(), target.name())
        })
        .await?;
        let props = body.get("properties").and_then(|p| p.as_object()).ok_or_else(|| {
            Error::invalid("InvalidRequestContent", "properties", "Give properties.publicNetworkAccess and/or properties.networkAcls.")
        })?;
        for k in props.keys() {
            if k != "publicNetworkAccess" && !(k == "networkAcls" && plane == Plane::Blob) {
                return Err(Error::invalid(
                    "PropertyNotPatchable",
                    format!("properties.{k}"),
                    format!("'{k}' cannot be changed here; only the network settings of a managed {} can.", plane.resource_kind()),
                ));
            }
        }
        let switch = match props.get("publicNetworkAccess") {
            None => None,
            Some(serde_json::Value::Null) => Some(None),
            Some(serde_json::Value::String(v)) => Some(Some(moat_types::PublicNetworkAccess::parse("properties.publicNetworkAccess", v)?)),
            Some(_) => {
                return Err(Error::invalid(
                    "InvalidPublicNetworkAccess",
                    "properties.publicNetworkAccess",
                    "Use Enabled, Disabled or null.",
                ));
            }
        };
        let acls = props.get("networkAcls").map(parse_acls).transpose()?;
        let mut tx = self.store.write().await?;
        let row = tx.get_resource(&display.key()).await?.ok_or_else(|| not_found(plane.resource_kind(), target.name()))?;
        let body = if plane == Plane::Blob {
            let mut d: StorageAccountDoc = decode(&row)?;
            if let Some(s) = switch {
                d.public_network_access = s;
            }
            if let Some(a) = acls {
                d.network_acls = a;
            }
            serde_json::to_string(&d)?
        } else {
            let mut d: ContainerRegistryDoc = decode(&row)?;
            if let Some(s) = switch {
                d.public_network_access = s;
            }
            serde_json::to_string(&d)?
        };
        let updated = StoredResource { body, etag: new_etag(), updated_at: now_rfc3339(), ..row.clone() };
        if !tx.update_resource(&updated, &row.etag).await? {
            return Err(Error::PreconditionFailed { message: "The resource changed concurrently; retry.".into() });
        }
        tx.commit().await?;
        self.reload_network().await
    }
}

/// `networkAcls` of a PATCH; `null` removes the firewall.
fn parse_acls(v: &serde_json::Value) -> Result<Option<AclsDoc>> {
    if v.is_null() {
        return Ok(None);
    }
    let field = "properties.networkAcls";
    let deny = match v.get("defaultAction").and_then(|d| d.as_str()) {
        Some(d) if d.eq_ignore_ascii_case("deny") => true,
        Some(d) if d.eq_ignore_ascii_case("allow") => false,
        _ => return Err(Error::invalid("InvalidNetworkAcls", format!("{field}.defaultAction"), "defaultAction is Allow or Deny.")),
    };
    let mut ip_rules = Vec::new();
    for (i, r) in v.get("ipRules").and_then(|r| r.as_array()).into_iter().flatten().enumerate() {
        let value = r.get("value").and_then(|x| x.as_str()).unwrap_or_default();
        ip_rules.push(cidr(&format!("{field}.ipRules[{i}].value"), value)?);
    }
    let mut resource_access_rules = Vec::new();
    for (i, r) in v.get("resourceAccessRules").and_then(|r| r.as_array()).into_iter().flatten().enumerate() {
        let id = r.get("resourceId").and_then(|x| x.as_str()).unwrap_or_default();
        let parsed = ResourceId::parse(id)
            .map_err(|e| Error::invalid("InvalidNetworkAcls", format!("{field}.resourceAccessRules[{i}].resourceId"), e.to_string()))?;
        resource_access_rules.push(parsed.to_string());
    }
    Ok(Some(AclsDoc { default_action_deny: deny, ip_rules, resource_access_rules }))
}

impl AclsDoc {
    /// The ARM rendering.
    pub(crate) fn render(acls: Option<&AclsDoc>) -> moat_types::arm::NetworkAcls {
        let a = acls.cloned().unwrap_or_default();
        moat_types::arm::NetworkAcls {
            default_action: if a.default_action_deny { "Deny" } else { "Allow" }.into(),
            bypass: "AzureServices".into(),
            ip_rules: a.ip_rules.iter().map(|c| serde_json::json!({"value": c.to_string(), "action": "Allow"})).collect(),
            virtual_network_rules: vec![],
            resource_access_rules: a
                .resource_access_rules
                .iter()
                .map(|r| serde_json::json!({"tenantId": serde_json::Value::Null, "resourceId": r}))
                .collect(),
        }
    }
}

fn denied(d: &Denial) -> Error {
    Error::Forbidden { code: d.code(), action: "Microsoft.Network/admission".into(), scope: d.resource_key.clone(), message: d.message() }
}

/// The IP of a `host:port` client address (IPv6 in brackets or not); unspecified if unreadable.
pub fn peer_ip(client: &str) -> IpAddr {
    let host = match client.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => client,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().map(canonical_ip).unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
}

/// A storage account's firewall, as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct AclsDoc {
    pub default_action_deny: bool,
    pub ip_rules: Vec<Cidr>,
    pub resource_access_rules: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privatelink_zones_of_names() {
        assert_eq!(privatelink_zone_of("abc.privatelink.blob.moat.internal"), "privatelink.blob.moat.internal");
        assert_eq!(privatelink_zone_of("g.registry.eastus.privatelink.api.moat.internal"), "privatelink.api.moat.internal");
        assert_eq!(privatelink_zone_of("acr.eastus.data.privatelink.cr.moat.internal"), "eastus.data.privatelink.cr.moat.internal");
    }

    #[test]
    fn peer_addresses() {
        assert_eq!(peer_ip("127.10.0.4:5000"), "127.10.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(peer_ip("[::1]:80"), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(peer_ip("[::ffff:127.0.0.1]:80"), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(peer_ip("10.0.0.1"), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn names() {
        assert!(network_name("n", "vnet-1").is_ok());
        assert!(network_name("n", "a_").is_ok());
        assert!(network_name("n", "-a").is_err());
        assert!(network_name("n", "a.").is_err());
        assert!(network_name("n", "").is_err());
        assert!(network_name("n", &"a".repeat(81)).is_err());
    }
}
