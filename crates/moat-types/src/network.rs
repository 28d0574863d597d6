//! Wire shapes of `Microsoft.Network`: virtual networks with subnets, private endpoints, and
//! the provider side of a private link (private endpoint connections), as ARM returns them.
//! moat's additions are marked: a virtual network's `binding` (which real network it is) and a
//! private endpoint's `serviceUrl` (where its listener is).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::arm::Tags;

/// `Microsoft.Network/virtualNetworks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetwork {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub etag: Option<String>,
    pub properties: VirtualNetworkProperties,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualNetworkProperties {
    pub address_space: AddressSpace,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// moat: which real network this is. Default: loopback.
    #[serde(default)]
    pub binding: Option<NetworkBinding>,
    /// Read-only.
    #[serde(default)]
    pub provisioning_state: Option<String>,
    /// Read-only.
    #[serde(default)]
    pub resource_guid: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddressSpace {
    /// CIDR prefixes, e.g. `127.10.0.0/16`.
    pub address_prefixes: Vec<String>,
}

/// moat: the real network behind a virtual network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkBinding {
    /// `Loopback` (address spaces inside 127.0.0.0/8; no privileges), `Namespace` (a Linux
    /// network namespace; needs root) or `Host` (addresses on this host's interfaces).
    pub mode: String,
    /// The network namespace, for `Namespace` (default: the network's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `Microsoft.Network/virtualNetworks/subnets`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subnet {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub etag: Option<String>,
    pub properties: SubnetProperties,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetProperties {
    pub address_prefix: String,
    /// Read-only: the private endpoints in this subnet.
    #[serde(default)]
    pub private_endpoints: Option<Vec<SubResource>>,
    /// Read-only.
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// A reference to another resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubResource {
    pub id: String,
}

/// `Microsoft.Network/privateEndpoints`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpoint {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub etag: Option<String>,
    pub properties: PrivateEndpointProperties,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivateEndpointProperties {
    pub subnet: SubResource,
    /// Connections approved automatically (the creator may approve them).
    #[serde(default)]
    pub private_link_service_connections: Vec<PrivateLinkServiceConnection>,
    /// Connections that wait for the target's owner.
    #[serde(default)]
    pub manual_private_link_service_connections: Vec<PrivateLinkServiceConnection>,
    /// Read-only: the endpoint's address.
    #[serde(default)]
    pub custom_dns_configs: Option<Vec<CustomDnsConfig>>,
    /// Read-only: the interface moat created for the endpoint.
    #[serde(default)]
    pub network_interfaces: Option<Vec<SubResource>>,
    /// Read-only moat extension: the URL of the endpoint's listener.
    #[serde(default)]
    pub service_url: Option<String>,
    /// Read-only moat extension: why the listener could not open (then `provisioningState`
    /// is `Failed`), e.g. a host-mode address that is on no interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_error: Option<String>,
    /// Read-only.
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateLinkServiceConnection {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub properties: PrivateLinkServiceConnectionProperties,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivateLinkServiceConnectionProperties {
    /// The ARM ID of the registry, storage account or container registry.
    pub private_link_service_id: String,
    /// Exactly one of `amlregistry`, `blob`, `registry`.
    pub group_ids: Vec<String>,
    #[serde(default)]
    pub request_message: Option<String>,
    /// Read-only.
    #[serde(default)]
    pub private_link_service_connection_state: Option<ConnectionState>,
    /// Read-only.
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionState {
    /// `Approved`, `Pending`, `Rejected` or `Disconnected`.
    pub status: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub actions_required: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomDnsConfig {
    pub fqdn: String,
    pub ip_addresses: Vec<String>,
}

/// The provider side: `…/privateEndpointConnections/{name}` of a registry, storage account or
/// container registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpointConnection {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub resource_type: Option<String>,
    pub properties: PrivateEndpointConnectionProperties,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpointConnectionProperties {
    /// Read-only.
    #[serde(default)]
    pub group_ids: Option<Vec<String>>,
    /// Read-only.
    #[serde(default)]
    pub private_endpoint: Option<PrivateEndpointRef>,
    /// Set `status` to `Approved` or `Rejected` (with a `description`) to decide a request.
    pub private_link_service_connection_state: ConnectionState,
    /// Read-only.
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateEndpointRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_arm_id: Option<String>,
}
