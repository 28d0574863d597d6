//! Wire shapes of the management plane (ARM JSON, camelCase). One struct serves both directions:
//! read-only fields a client echoes back from a GET (as `az ... update` does) are accepted and
//! ignored; unknown fields are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub type Tags = BTreeMap<String, String>;

pub const REGISTRY_TYPE: &str = "Microsoft.MachineLearningServices/registries";
pub const RESOURCE_GROUP_TYPE: &str = "Microsoft.Resources/resourceGroups";
pub const STORAGE_ACCOUNT_TYPE: &str = "Microsoft.Storage/storageAccounts";
pub const CONTAINER_REGISTRY_TYPE: &str = "Microsoft.ContainerRegistry/registries";

/// `{ "resourceId": "..." }`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArmResourceId {
    pub resource_id: Option<String>,
}

/// ARM `systemData`: who created and last changed a resource, and when.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemData {
    pub created_by: Option<String>,
    pub created_by_type: Option<String>,
    pub created_at: Option<String>,
    pub last_modified_by: Option<String>,
    pub last_modified_by_type: Option<String>,
    pub last_modified_at: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sku {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<i32>,
}

/// Managed service identity. Registries always have a system-assigned one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedServiceIdentity {
    #[serde(rename = "type")]
    pub identity_type: String,
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub user_assigned_identities: Option<BTreeMap<String, serde_json::Value>>,
}

/// `Microsoft.MachineLearningServices/registries`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    /// Primary region; required on create, immutable afterwards.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub identity: Option<ManagedServiceIdentity>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub sku: Option<Sku>,
    #[serde(default)]
    pub properties: Option<RegistryProperties>,
    #[serde(default)]
    pub system_data: Option<SystemData>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryProperties {
    /// Read-only: where clients discover the registry's endpoints.
    #[serde(default)]
    pub discovery_url: Option<String>,
    #[serde(default)]
    pub intellectual_property_publisher: Option<String>,
    /// Read-only: `azureml-rg-<name>_<guid>`, holding the storage accounts and container registry.
    #[serde(default)]
    pub managed_resource_group: Option<ArmResourceId>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub managed_resource_group_settings: Option<serde_json::Value>,
    /// Read-only.
    #[serde(default)]
    pub ml_flow_registry_uri: Option<String>,
    /// `Enabled` (default) or `Disabled`. Disabled covers every plane of the registry: metadata,
    /// discovery, blob and OCI, unless a storage account or the container registry says otherwise.
    #[serde(default)]
    pub public_network_access: Option<String>,
    /// The first entry is the primary region.
    #[serde(default)]
    pub region_details: Option<Vec<RegistryRegionArmDetails>>,
    /// Read-only here; managed through private endpoint connections.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub registry_private_endpoint_connections: Option<Vec<serde_json::Value>>,
    /// Read-only.
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryRegionArmDetails {
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub storage_account_details: Option<Vec<StorageAccountDetails>>,
    #[serde(default)]
    pub acr_details: Option<Vec<AcrDetails>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageAccountDetails {
    #[serde(default)]
    pub system_created_storage_account: Option<SystemCreatedStorageAccount>,
    /// Not supported (as in Azure): moat always creates the registry's storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub user_created_storage_account: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemCreatedStorageAccount {
    /// Read-only: 11 lowercase hex characters.
    #[serde(default)]
    pub storage_account_name: Option<String>,
    /// Standard_LRS (default), Standard_GRS, Standard_RAGRS, Standard_ZRS, Standard_GZRS,
    /// Standard_RAGZRS, Premium_LRS or Premium_ZRS; case-insensitive.
    #[serde(default)]
    pub storage_account_type: Option<String>,
    #[serde(default)]
    pub storage_account_hns_enabled: Option<bool>,
    #[serde(default)]
    pub allow_blob_public_access: Option<bool>,
    /// Read-only; ignored when sent.
    #[serde(default)]
    pub arm_resource_id: Option<ArmResourceId>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcrDetails {
    #[serde(default)]
    pub system_created_acr_account: Option<SystemCreatedAcrAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub user_created_acr_account: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SystemCreatedAcrAccount {
    /// Read-only: 11 lowercase hex characters.
    #[serde(default)]
    pub acr_account_name: Option<String>,
    /// Only `Premium` is valid.
    #[serde(default)]
    pub acr_account_sku: Option<String>,
    #[serde(default)]
    pub arm_resource_id: Option<ArmResourceId>,
}

/// PATCH body of a registry: only tags, identity and sku can change this way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryPatch {
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub identity: Option<ManagedServiceIdentity>,
    #[serde(default)]
    pub sku: Option<Sku>,
}

/// `Microsoft.Resources/resourceGroups`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceGroup {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    /// Read-only: the resource that manages this group (a registry, for its managed group).
    #[serde(default)]
    pub managed_by: Option<String>,
    #[serde(default)]
    pub properties: Option<ResourceGroupProperties>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceGroupProperties {
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// `Microsoft.Resources/subscriptions`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub subscription_id: String,
    pub tenant_id: String,
    pub display_name: String,
    pub state: String,
}

/// `Microsoft.Storage/storageAccounts` (a registry's managed storage account).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccount {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    pub tags: Tags,
    pub sku: Sku,
    pub kind: String,
    pub properties: StorageAccountProperties,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccountProperties {
    pub provisioning_state: String,
    /// `null` follows the registry's switch; `Enabled` or `Disabled` overrides it.
    pub public_network_access: Option<String>,
    pub allow_blob_public_access: bool,
    pub is_hns_enabled: bool,
    pub network_acls: NetworkAcls,
    pub creation_time: String,
    /// The blob endpoint by name, `<scheme>://<account>.blob.<zone>[:port]/`, as Azure's
    /// `<account>.blob.core.windows.net`; moat's DNS answers it.
    pub primary_endpoints: PrimaryEndpoints,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrimaryEndpoints {
    pub blob: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAcls {
    pub default_action: String,
    pub bypass: String,
    #[schema(value_type = Vec<Object>)]
    pub ip_rules: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub virtual_network_rules: Vec<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub resource_access_rules: Vec<serde_json::Value>,
}

/// `Microsoft.ContainerRegistry/registries` (a registry's managed container registry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRegistry {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    pub tags: Tags,
    pub sku: Sku,
    pub properties: ContainerRegistryProperties,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRegistryProperties {
    pub login_server: String,
    pub provisioning_state: String,
    /// `null` follows the registry's switch; `Enabled` or `Disabled` overrides it.
    pub public_network_access: Option<String>,
    pub admin_user_enabled: bool,
    /// Regions the registry's images are replicated to.
    pub replication_locations: Vec<String>,
    pub creation_date: String,
}

/// An entry of `GET .../resourceGroups/{rg}/resources`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericResource {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// A page of a list, with the link to the next page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// Body of an `Azure-AsyncOperation` status URL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    pub id: String,
    pub name: String,
    /// `InProgress`, `Succeeded`, `Failed` or `Canceled`.
    pub status: String,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    pub percent_complete: f64,
    /// The resource the operation acts on.
    pub resource_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// What a garbage collection of the byte store did, or with `dryRun` would do (moat's own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GarbageCollection {
    pub dry_run: bool,
    /// Stored files nothing refers to go once nothing has stored them for this long.
    pub grace_seconds: u64,
    /// Stored files looked at.
    pub files: u64,
    /// Files removed (with `dryRun`: that would be), and their bytes.
    pub removed: u64,
    pub removed_bytes: u64,
    /// Files a write freshened while they were being judged, so kept.
    pub kept: u64,
}

/// The ARM error envelope: `{"error": {code, message, target, details}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    #[schema(no_recursion)]
    pub details: Vec<ErrorDetail>,
}

/// `GET /registrymanagement/v1.0/registries/{name}/discovery`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryDiscovery {
    pub registry_name: String,
    pub tenant_id: String,
    pub primary_region: String,
    pub regions: Vec<String>,
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace_name: Option<String>,
    pub primary_region_resource_provider_uri: String,
    /// Lower-case region → `{uri}`: the registry's name in that region,
    /// `https://<registry-guid>.registry.<region>.api.<zone>[:port]`, which moat's DNS resolves
    /// to a private endpoint inside linked networks and to the public listener elsewhere.
    pub registry_fqdns: BTreeMap<String, RegistryFqdn>,
    /// moat's addition: the registry's storage accounts' blob endpoints by account,
    /// `https://<account>.blob.<zone>[:port]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_account_fqdns: BTreeMap<String, RegistryFqdn>,
    /// moat's addition: the container registry's login server and regional data endpoints
    /// (host names, as `docker login` takes them, with the port when not the default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_registry_fqdns: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegistryFqdn {
    pub uri: String,
}

/// OAuth2 token response of the built-in issuer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub token_type: String,
    pub expires_in: i64,
    /// Unix time at which the token expires.
    pub expires_on: i64,
    pub access_token: String,
    pub resource: String,
}

pub const ROLE_DEFINITION_TYPE: &str = "Microsoft.Authorization/roleDefinitions";
pub const ROLE_ASSIGNMENT_TYPE: &str = "Microsoft.Authorization/roleAssignments";

/// `Microsoft.Authorization/roleDefinitions`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleDefinition {
    #[serde(default)]
    pub id: Option<String>,
    /// The role's GUID.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub properties: Option<RoleDefinitionProperties>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleDefinitionProperties {
    #[serde(default)]
    pub role_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// `BuiltInRole` or `CustomRole` (read-only).
    #[serde(rename = "type", default)]
    pub role_type: Option<String>,
    #[serde(default)]
    pub permissions: Option<Vec<Permission>>,
    #[serde(default)]
    pub assignable_scopes: Option<Vec<String>>,
}

/// What a role allows: `actions` minus `notActions`, `dataActions` minus `notDataActions`;
/// `*` is a wildcard; matching is case-insensitive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permission {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

/// `Microsoft.Authorization/roleAssignments`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignment {
    #[serde(default)]
    pub id: Option<String>,
    /// The assignment's GUID.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub properties: Option<RoleAssignmentProperties>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentProperties {
    /// `/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{id}` (or the bare GUID).
    #[serde(default)]
    pub role_definition_id: Option<String>,
    #[serde(default)]
    pub principal_id: Option<String>,
    /// `User`, `ServicePrincipal` or `ManagedIdentity` (read-only).
    #[serde(default)]
    pub principal_type: Option<String>,
    /// Read-only: the scope the assignment applies to (and below).
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub created_on: Option<String>,
}

/// One entry of the activity log: an authentication failure or an authorization decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityEvent {
    pub id: String,
    pub event_timestamp: String,
    /// Who: the user principal name or display name (absent when authentication failed).
    pub caller: Option<String>,
    pub principal_id: Option<String>,
    pub client_address: String,
    /// `public` or the private endpoint the request came through.
    pub origin: String,
    /// The action decided, e.g. `Microsoft.MachineLearningServices/registries/write`.
    pub operation_name: String,
    pub resource_id: String,
    /// `allowed`, `denied` or `unauthenticated`.
    pub result: String,
    /// The rule that decided: the role assignment that allowed, or why it was refused.
    pub rule: String,
}

/// Body of `POST .../storageAccounts/{name}/ListServiceSas`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSasRequest {
    /// `/blob/{account}/{container}` or `/blob/{account}/{container}/{blob}`.
    pub canonicalized_resource: String,
    /// `c` (container) or `b` (blob).
    pub signed_resource: String,
    /// Letters of `racwdl`.
    pub signed_permission: String,
    /// RFC 3339; at most 7 days ahead.
    pub signed_expiry: String,
    #[serde(default)]
    pub signed_start: Option<String>,
    #[serde(default)]
    pub signed_protocol: Option<String>,
}

/// Answer of `ListServiceSas`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSasResponse {
    /// The SAS query string, without the leading `?`.
    pub service_sas_token: String,
}
