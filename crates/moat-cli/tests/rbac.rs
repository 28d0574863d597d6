//! Role-based access control, specified as a table: every route of the management and
//! registry planes, for an anonymous caller and principals holding each built-in role and a
//! custom role at subscription, resource group and resource scope. The table is the
//! specification; a route in the OpenAPI document without a row fails the test.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Http, Server, assign, create_sp, registry_body, token_for};
use serde_json::{Value, json};

/// The principals, by one-letter code.
/// A anonymous · N no role · R Reader@subscription · G Reader@resource group `default` ·
/// U AzureML Registry User@`default` · D AzureML Data Scientist@subscription ·
/// C Contributor@subscription · O Owner@subscription · X custom "Registry asset reader"@registry `rbacreg`.
const PRINCIPALS: &str = "ANRGUDCOX";

/// (method, path, expected status per principal). Paths use `{s}` (subscription), `{p}` (the
/// principal's code, for creations that must not collide), `{mrg}`, `{sa}`, `{acr}` (the
/// managed resources of `rbacreg`), `{op}` (the operation that created it), `{user}`, `{sp}`,
/// `{guid-p}` (a fresh GUID) and `{ghost}` (a GUID that names nothing).
const TABLE: &[(&str, &str, &str)] = &[
    ("GET", "/subscriptions", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "/subscriptions/{s}", "A401 N404 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "/subscriptions/{s}/resourceGroups", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "/subscriptions/{s}/resourceGroups/default", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("PUT", "/subscriptions/{s}/resourceGroups/rg-{p}", "A401 N404 R403 G404 U404 D404 C201 O201 X404"),
    ("DELETE", "/subscriptions/{s}/resourceGroups/ghost", "A401 N404 R403 G404 U404 D404 C204 O204 X404"),
    ("GET", "/subscriptions/{s}/resourceGroups/default/resources", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("GET", "/subscriptions/{s}/providers/Microsoft.MachineLearningServices/registries", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    (
        "GET",
        "/subscriptions/{s}/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries",
        "A401 N200 R200 G200 U200 D200 C200 O200 X200",
    ),
    ("GET", "{reg}", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    (
        "PUT",
        "/subscriptions/{s}/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/rbac-{p}",
        "A401 N404 R403 G403 U403 D404 C201 O201 X404",
    ),
    ("PATCH", "{reg}", "A401 N404 R403 G403 U403 D404 C200 O200 X403"),
    (
        "DELETE",
        "/subscriptions/{s}/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/ghost",
        "A401 N404 R403 G403 U403 D404 C204 O204 X404",
    ),
    ("GET", "{sa}", "A401 N404 R200 G404 U404 D404 C200 O200 X404"),
    ("GET", "{acr}", "A401 N404 R200 G404 U404 D404 C200 O200 X404"),
    ("POST", "{sa}/ListServiceSas", "A401 N404 R403 G404 U404 D404 C200 O200 X404"),
    ("GET", "{reg}/models", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{reg}/models/m1", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("PUT", "{reg}/models/c-{p}", "A401 N404 R403 G403 U201 D404 C201 O201 X403"),
    ("DELETE", "{reg}/models/ghost", "A401 N404 R403 G403 U204 D404 C204 O204 X403"),
    ("GET", "{reg}/models/m1/versions", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{reg}/models/m1/versions/1", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("PUT", "{reg}/components/comp-{p}/versions/1", "A401 N404 R403 G403 U201 D404 C201 O201 X403"),
    ("DELETE", "{reg}/models/m1/versions/ghost", "A401 N404 R403 G403 U204 D404 C204 O204 X403"),
    ("POST", "{reg}/models/up-{p}/versions/1/startPendingUpload", "A401 N404 R403 G403 U200 D404 C200 O200 X403"),
    ("POST", "{reg}/datareferences/m1/versions/1", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    // The registry data plane (`{dp}`: the same operations under /mferp/managementfrontend, and
    // its own tempdatarefs and datarefs): the same decisions as the management plane's.
    ("GET", "{dp}/models", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{dp}/models/m1", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("PUT", "{dp}/models/dc-{p}", "A401 N404 R403 G403 U201 D404 C201 O201 X403"),
    ("DELETE", "{dp}/models/ghost", "A401 N404 R403 G403 U204 D404 C204 O204 X403"),
    ("GET", "{dp}/models/m1/versions", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    // A name never used lists no versions, to whoever may read the registry's assets only.
    ("GET", "{dp}/models/never-used/versions", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{dp}/models/m1/versions/1", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("PUT", "{dp}/components/dpcomp-{p}/versions/1", "A401 N404 R403 G403 U201 D404 C201 O201 X403"),
    ("DELETE", "{dp}/models/m1/versions/ghost", "A401 N404 R403 G403 U204 D404 C204 O204 X403"),
    ("PUT", "{dp}/tempdatarefs/dpup-{p}/versions/1", "A401 N404 R403 G403 U200 D404 C200 O200 X403"),
    ("POST", "{dp}/datarefs/m1/versions/1", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    (
        "GET",
        "/subscriptions/{s}/providers/Microsoft.MachineLearningServices/locations/eastus/operationsStatus/{op}",
        "A401 N404 R200 G200 U200 D404 C200 O200 X200",
    ),
    (
        "GET",
        "/subscriptions/{s}/providers/Microsoft.MachineLearningServices/locations/eastus/operationResults/{op}",
        "A401 N404 R204 G204 U204 D404 C204 O204 X204",
    ),
    ("GET", "/registrymanagement/v1.0/registries/rbacreg/discovery", "A401 N403 R200 G200 U200 D403 C200 O200 X200"),
    ("GET", "/subscriptions/{s}/providers/Microsoft.Insights/eventtypes/management/values", "A401 N403 R200 G403 U403 D403 C200 O200 X403"),
    ("POST", "/subscriptions/{s}/providers/Moat.Storage/garbageCollection", "A401 N403 R403 G403 U403 D403 C200 O200 X403"),
    ("GET", "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions", "A401 N403 R200 G403 U403 D403 C200 O200 X403"),
    (
        "GET",
        "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "A401 N403 R200 G403 U403 D403 C200 O200 X403",
    ),
    (
        "PUT",
        "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid-p}",
        "A401 N403 R403 G403 U403 D403 C403 O201 X403",
    ),
    (
        "DELETE",
        "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{ghost}",
        "A401 N403 R403 G403 U403 D403 C403 O204 X403",
    ),
    ("GET", "/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments", "A401 N403 R200 G403 U403 D403 C200 O200 X403"),
    ("GET", "/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments/{ghost}", "A401 N403 R404 G403 U403 D403 C404 O404 X403"),
    (
        "PUT",
        "/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments/{guid-p}",
        "A401 N403 R403 G403 U403 D403 C403 O201 X403",
    ),
    (
        "DELETE",
        "/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments/{ghost}",
        "A401 N403 R403 G403 U403 D403 C403 O204 X403",
    ),
    (
        "GET",
        "/subscriptions/{s}/resourceGroups/default/providers/Microsoft.Authorization/roleAssignments",
        "A401 N403 R200 G200 U403 D403 C200 O200 X403",
    ),
    (
        "GET",
        "/subscriptions/{s}/resourceGroups/default/providers/Microsoft.Authorization/roleAssignments/{ghost}",
        "A401 N403 R404 G404 U403 D403 C404 O404 X403",
    ),
    (
        "PUT",
        "/subscriptions/{s}/resourceGroups/default/providers/Microsoft.Authorization/roleAssignments/{guid-p}",
        "A401 N403 R403 G403 U403 D403 C403 O201 X403",
    ),
    (
        "DELETE",
        "/subscriptions/{s}/resourceGroups/default/providers/Microsoft.Authorization/roleAssignments/{ghost}",
        "A401 N403 R403 G403 U403 D403 C403 O204 X403",
    ),
    ("GET", "{reg}/providers/Microsoft.Authorization/roleAssignments", "A401 N403 R200 G200 U403 D403 C200 O200 X403"),
    ("GET", "{reg}/providers/Microsoft.Authorization/roleAssignments/{ghost}", "A401 N403 R404 G404 U403 D403 C404 O404 X403"),
    ("PUT", "{reg}/providers/Microsoft.Authorization/roleAssignments/{guid-p}", "A401 N403 R403 G403 U403 D403 C403 O201 X403"),
    ("DELETE", "{reg}/providers/Microsoft.Authorization/roleAssignments/{ghost}", "A401 N403 R403 G403 U403 D403 C403 O204 X403"),
    ("POST", "/v1.0/users", "A401 N403 R403 G403 U403 D403 C403 O201 X403"),
    ("GET", "/v1.0/users", "A401 N403 R200 G403 U403 D403 C200 O200 X403"),
    ("GET", "/v1.0/users/{user}", "A401 N403 R200 G403 U403 D403 C200 O200 X403"),
    ("DELETE", "/v1.0/users/{ghost}", "A401 N403 R403 G403 U403 D403 C403 O204 X403"),
    ("POST", "/v1.0/servicePrincipals", "A401 N403 R403 G403 U403 D403 C403 O201 X403"),
    ("GET", "/v1.0/servicePrincipals", "A401 N403 R200 G403 U403 D403 C200 O200 X403"),
    ("GET", "/v1.0/servicePrincipals/{sp}", "A401 N403 R200 G403 U403 D403 C200 O200 X403"),
    ("DELETE", "/v1.0/servicePrincipals/{ghost}", "A401 N403 R403 G403 U403 D403 C403 O204 X403"),
    ("GET", "/subscriptions/{s}/providers/Microsoft.Network/virtualNetworks", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "{net}/virtualNetworks", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "{net}/virtualNetworks/vnet1", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("PUT", "{net}/virtualNetworks/vnet-{p}", "A401 N404 R403 G403 U404 D404 C201 O201 X404"),
    ("DELETE", "{net}/virtualNetworks/ghost", "A401 N404 R403 G403 U404 D404 C204 O204 X404"),
    ("GET", "{net}/virtualNetworks/vnet1/subnets", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("GET", "{net}/virtualNetworks/vnet1/subnets/s1", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("PUT", "{net}/virtualNetworks/vnet1/subnets/sn-{p}", "A401 N404 R403 G403 U404 D404 C201 O201 X404"),
    ("DELETE", "{net}/virtualNetworks/vnet1/subnets/ghost", "A401 N404 R403 G403 U404 D404 C204 O204 X404"),
    ("GET", "/subscriptions/{s}/providers/Microsoft.Network/privateEndpoints", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "{net}/privateEndpoints", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "{net}/privateEndpoints/pe1", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("PUT", "{net}/privateEndpoints/pe-{p}", "A401 N404 R403 G403 U404 D404 C201 O201 X404"),
    ("DELETE", "{net}/privateEndpoints/ghost", "A401 N404 R403 G403 U404 D404 C204 O204 X404"),
    ("GET", "{reg}/privateEndpointConnections", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{reg}/privateEndpointConnections/pe1-conn", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("PUT", "{reg}/privateEndpointConnections/pending-conn", "A401 N404 R403 G403 U403 D404 C200 O200 X403"),
    ("DELETE", "{reg}/privateEndpointConnections/ghost", "A401 N404 R403 G403 U403 D404 C200 O200 X403"),
    ("GET", "{sa}/privateEndpointConnections", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{sa}/privateEndpointConnections/ghost", "A401 N404 R404 G404 U404 D404 C404 O404 X404"),
    ("PUT", "{sa}/privateEndpointConnections/ghost", "A401 N404 R403 G403 U403 D404 C404 O404 X403"),
    ("DELETE", "{sa}/privateEndpointConnections/ghost", "A401 N404 R403 G403 U403 D404 C200 O200 X403"),
    ("GET", "{acr}/privateEndpointConnections", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{acr}/privateEndpointConnections/ghost", "A401 N404 R404 G404 U404 D404 C404 O404 X404"),
    ("PUT", "{acr}/privateEndpointConnections/ghost", "A401 N404 R403 G403 U403 D404 C404 O404 X403"),
    ("DELETE", "{acr}/privateEndpointConnections/ghost", "A401 N404 R403 G403 U403 D404 C200 O200 X403"),
    ("PATCH", "{sa}", "A401 N404 R403 G403 U403 D404 C200 O200 X403"),
    ("POST", "{reg}/diagnoseNetwork", "A401 N404 R200 G200 U200 D404 C200 O200 X200"),
    ("GET", "{net}/privateDnsZones", "A401 N200 R200 G200 U200 D200 C200 O200 X200"),
    ("GET", "{net}/privateDnsZones/privatelink.api.moat.internal", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("PUT", "{net}/privateDnsZones/privatelink.blob.moat.internal", "A401 N404 R403 G403 U404 D404 C201 O200 X404"),
    ("DELETE", "{net}/privateDnsZones/privatelink.cr.moat.internal", "A401 N404 R403 G403 U404 D404 C204 O204 X404"),
    ("GET", "{net}/privateDnsZones/privatelink.api.moat.internal/ALL", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("GET", "{net}/privateDnsZones/privatelink.api.moat.internal/virtualNetworkLinks", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("GET", "{net}/privateDnsZones/privatelink.api.moat.internal/virtualNetworkLinks/l1", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    (
        "PUT",
        "{net}/privateDnsZones/privatelink.api.moat.internal/virtualNetworkLinks/l-{p}",
        "A401 N404 R403 G403 U404 D404 C201 O201 X404",
    ),
    (
        "DELETE",
        "{net}/privateDnsZones/privatelink.api.moat.internal/virtualNetworkLinks/ghost",
        "A401 N404 R403 G403 U404 D404 C204 O204 X404",
    ),
    ("GET", "{net}/privateEndpoints/pe1/privateDnsZoneGroups", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("GET", "{net}/privateEndpoints/pe1/privateDnsZoneGroups/default", "A401 N404 R200 G200 U404 D404 C200 O200 X404"),
    ("PUT", "{net}/privateEndpoints/pe1/privateDnsZoneGroups/g-{p}", "A401 N404 R403 G403 U404 D404 C201 O201 X404"),
    ("DELETE", "{net}/privateEndpoints/pe1/privateDnsZoneGroups/ghost", "A401 N404 R403 G403 U404 D404 C204 O204 X404"),
    ("PATCH", "{acr}", "A401 N404 R403 G403 U403 D404 C200 O200 X403"),
];

/// The first segment of a data plane row's path as its route names it: the data plane's own
/// words as they are, asset types as `{assetType}`.
fn dp_word(rest: &str) -> &str {
    match rest.split('/').next().unwrap_or_default() {
        w @ ("tempdatarefs" | "datarefs") => w,
        _ => "{assetType}",
    }
}

/// The route template (as in the OpenAPI document) a table path stands for.
fn template_of(path: &str) -> String {
    let reg_t = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}";
    if let Some(rest) = path.strip_prefix("{dp}/") {
        return format!("/mferp/managementfrontend{}", template_of(&format!("{{reg}}/{rest}")))
            .replace("{registryName}/{assetType}/", &format!("{{registryName}}/{}/", dp_word(rest)));
    }
    if let Some(rest) = path.strip_prefix("{reg}/")
        && !rest.starts_with("providers/")
        && !rest.starts_with("privateEndpointConnections")
        && rest != "diagnoseNetwork"
    {
        // Asset routes: {assetType}/{assetName}[/versions[/{version}[/startPendingUpload]]],
        // or datareferences/{assetName}/versions/{version}.
        let segs: Vec<&str> = rest.split('/').collect();
        let mapped: Vec<String> = segs
            .iter()
            .enumerate()
            .map(|(i, s)| match (i, *s) {
                (0, "datareferences") => "datareferences".into(),
                (0, _) => "{assetType}".into(),
                (1, _) => "{assetName}".into(),
                (3, _) => "{version}".into(),
                (_, s) => s.to_string(),
            })
            .collect();
        return format!("{reg_t}/{}", mapped.join("/"));
    }
    let reg = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}";
    let p = path.replace("{reg}/providers/Microsoft.Authorization", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{resourceProviderNamespace}/{resourceType}/{resourceName}/providers/Microsoft.Authorization");
    let p = p.replace("{net}", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network");
    let p = p.replace("{reg}", reg).replace(
        "{sa}",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}",
    );
    let p = p.replace("{acr}", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}");
    let segs: Vec<String> = p
        .split('/')
        .enumerate()
        .map(|(i, seg)| {
            let prev = p.split('/').nth(i.wrapping_sub(1)).unwrap_or("");
            match prev {
                "subscriptions" => "{subscriptionId}".to_string(),
                "resourceGroups" => "{resourceGroupName}".to_string(),
                "registries" => "{registryName}".to_string(),
                "operationsStatus" | "operationResults" => "{operationId}".to_string(),
                "locations" => "{location}".to_string(),
                "roleDefinitions" => "{roleDefinitionId}".to_string(),
                "roleAssignments" => "{roleAssignmentName}".to_string(),
                "users" => "{userId}".to_string(),
                "servicePrincipals" => "{servicePrincipalId}".to_string(),
                "virtualNetworks" => "{vnetName}".to_string(),
                "subnets" => "{subnetName}".to_string(),
                "privateEndpoints" => "{endpointName}".to_string(),
                "privateEndpointConnections" => "{connectionName}".to_string(),
                "privateDnsZones" => "{zoneName}".to_string(),
                "virtualNetworkLinks" => "{linkName}".to_string(),
                "privateDnsZoneGroups" => "{groupName}".to_string(),
                _ => seg.to_string(),
            }
        })
        .collect();
    segs.join("/")
}

fn expectations(spec: &str) -> BTreeMap<char, u16> {
    spec.split_whitespace().map(|cell| (cell.chars().next().unwrap(), cell[1..].parse().unwrap())).collect()
}

const GHOST: &str = "00000000-0000-4000-8000-00000000dead";

fn body_for(method: &str, path: &str, code: char, sub: &str, throwaway: &str, account: &str) -> Option<Value> {
    let c = code.to_ascii_lowercase();
    let net = format!("/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Network");
    match method {
        "PUT" if path.contains("/virtualNetworkLinks/") => Some(json!({"location": "global",
            "properties": {"virtualNetwork": {"id": format!("{net}/virtualNetworks/vnet1")}}})),
        "PUT" if path.contains("/privateDnsZoneGroups/") => Some(json!({"properties": {"privateDnsZoneConfigs": [{"name": "api",
            "properties": {"privateDnsZoneId": format!("{net}/privateDnsZones/privatelink.api.moat.internal")}}]}})),
        "PUT" if path.contains("/privateDnsZones/") => Some(json!({"location": "global"})),
        "PUT" if path.contains("/subnets/") => Some(json!({"properties": {"addressPrefix": format!("127.20.{}.0/24", c as u8)}})),
        "PUT" if path.contains("/virtualNetworks/") => {
            Some(json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["127.30.0.0/16"]}}}))
        }
        "PUT" if path.contains("/privateEndpoints/") => Some(json!({"properties": {
            "subnet": {"id": format!("{net}/virtualNetworks/vnet1/subnets/s1")},
            "manualPrivateLinkServiceConnections": [{"name": format!("conn-{c}"), "properties": {
                "privateLinkServiceId": format!("/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/registries/rbacreg"),
                "groupIds": ["amlregistry"], "requestMessage": "please"}}]}})),
        "PUT" if path.contains("/privateEndpointConnections/") => {
            Some(json!({"properties": {"privateLinkServiceConnectionState": {"status": "Approved", "description": "ok"}}}))
        }
        "POST" if path.ends_with("/diagnoseNetwork") => Some(json!({"sourceAddress": "127.20.0.9"})),
        "PATCH" if path == "{sa}" || path == "{acr}" => Some(json!({"properties": {"publicNetworkAccess": null}})),
        "POST" if path.ends_with("/startPendingUpload") => Some(json!({})),
        "POST" if path.contains("/datareferences/") || path.contains("/datarefs/") => {
            Some(json!({"assetId": "azureml://registries/rbacreg/models/m1/versions/1"}))
        }
        "PUT" if path.contains("/tempdatarefs/") => Some(json!({
            "assetId": format!("azureml://registries/rbacreg/models/dpup-{c}/versions/1"),
            "temporaryDataReferenceType": "TemporaryBlobReference"})),
        "PUT" if path.contains("/components/dpcomp-") => {
            Some(json!({"properties": {"componentSpec": {"name": format!("dpcomp-{c}"), "type": "command"}}}))
        }
        "PUT" if path.contains("/components/") => {
            Some(json!({"properties": {"componentSpec": {"name": format!("comp-{c}"), "type": "command"}}}))
        }
        "PUT" if path.contains("/models/c-") || path.contains("/models/dc-") => Some(json!({"properties": {"description": "a container"}})),
        "POST" if path.ends_with("/ListServiceSas") => Some(json!({
            "canonicalizedResource": format!("/blob/{account}/upload-{c}"),
            "signedResource": "c",
            "signedPermission": "r",
            "signedExpiry": (time::OffsetDateTime::now_utc() + time::Duration::hours(1)).format(&time::format_description::well_known::Rfc3339).unwrap()})),
        "PUT" if path.contains("/roleDefinitions/") => Some(json!({"properties": {
            "roleName": format!("role-{c}"),
            "permissions": [{"actions": ["Microsoft.MachineLearningServices/registries/read"]}],
            "assignableScopes": [format!("/subscriptions/{sub}")]}})),
        "PUT" if path.contains("/roleAssignments/") => {
            Some(json!({"properties": {"roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "principalId": throwaway}}))
        }
        "PUT" if path.contains("/registries/") => Some(registry_body("eastus")),
        "PUT" => Some(json!({"location": "eastus"})),
        "PATCH" => Some(json!({"tags": {"by": c.to_string()}})),
        "POST" if path.ends_with("/users") => Some(json!({
            "displayName": format!("user {c}"),
            "userPrincipalName": format!("user-{c}@example.com"),
            "passwordProfile": {"password": "a long enough password"}})),
        "POST" => Some(json!({"displayName": format!("sp-{c}")})),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role_at_every_scope() {
    let server = Server::start();
    let admin = server.http();
    let p = server.profile();
    let sub = p.subscription.clone();
    let sub_scope = format!("/subscriptions/{sub}");
    let rg_scope = format!("{sub_scope}/resourceGroups/default");
    let reg = server.registry_path("default", "rbacreg");

    // The resources the table talks about.
    let created = admin.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let op = created.header("azure-asyncoperation").unwrap().split('?').next().unwrap().rsplit('/').next().unwrap().to_string();
    let regions = &created.body["properties"]["regionDetails"][0];
    let sa =
        regions["storageAccountDetails"][0]["systemCreatedStorageAccount"]["armResourceId"]["resourceId"].as_str().unwrap().to_string();
    let acr = regions["acrDetails"][0]["systemCreatedAcrAccount"]["armResourceId"]["resourceId"].as_str().unwrap().to_string();
    let user = admin
        .call("POST", "/v1.0/users", Some(&json!({"displayName": "Bob", "userPrincipalName": "bob@example.com", "passwordProfile": {"password": "bob's long password"}})), &[])
        .await;
    assert_eq!(user.status, 201, "{}", user.text);
    let (throwaway, _, _) = create_sp(&admin, "throwaway").await;
    // A model with files, through the real upload protocol.
    let up = admin.call("POST", &format!("{reg}/models/m1/versions/1/startPendingUpload"), Some(&json!({})), &[]).await;
    assert_eq!(up.status, 200, "{}", up.text);
    let sas_uri = up.body["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap().to_string();
    let (base, sas) = sas_uri.split_once('?').unwrap();
    let put = admin
        .anonymous()
        .raw("PUT", &format!("{base}/model.bin?{sas}"), Some(b"weights".to_vec()), None, &[("x-ms-blob-type", "BlockBlob")])
        .await;
    assert_eq!(put.status, 201, "{}", put.text);
    let m1 = admin.call("PUT", &format!("{reg}/models/m1/versions/1"), Some(&json!({"properties": {"modelUri": base}})), &[]).await;
    assert_eq!(m1.status, 201, "{}", m1.text);
    // A network with an approved endpoint to the registry, and a request waiting for approval.
    let net = format!("{sub_scope}/resourceGroups/default/providers/Microsoft.Network");
    let vnet = admin
        .call(
            "PUT",
            &format!("{net}/virtualNetworks/vnet1"),
            Some(&json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["127.20.0.0/16"]},
                "subnets": [{"name": "s1", "properties": {"addressPrefix": "127.20.0.0/24"}}]}})),
            &[],
        )
        .await;
    assert_eq!(vnet.status, 201, "{}", vnet.text);
    for (pe, conn, list) in
        [("pe1", "pe1-conn", "privateLinkServiceConnections"), ("pe-pending", "pending-conn", "manualPrivateLinkServiceConnections")]
    {
        let r = admin
            .call(
                "PUT",
                &format!("{net}/privateEndpoints/{pe}"),
                Some(&json!({"properties": {"subnet": {"id": format!("{net}/virtualNetworks/vnet1/subnets/s1")},
                    list: [{"name": conn, "properties": {"privateLinkServiceId": reg, "groupIds": ["amlregistry"]}}]}})),
                &[],
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // Private DNS: the api zone, linked to vnet1 (l1), and pe1's zone group.
    let zone = format!("{net}/privateDnsZones/privatelink.api.moat.internal");
    assert_eq!(admin.call("PUT", &zone, Some(&json!({"location": "global"})), &[]).await.status, 201);
    let r = admin
        .call(
            "PUT",
            &format!("{zone}/virtualNetworkLinks/l1"),
            Some(&json!({"location": "global", "properties": {"virtualNetwork": {"id": format!("{net}/virtualNetworks/vnet1")}}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = admin
        .call(
            "PUT",
            &format!("{net}/privateEndpoints/pe1/privateDnsZoneGroups/default"),
            Some(&json!({"properties": {"privateDnsZoneConfigs": [{"name": "api", "properties": {"privateDnsZoneId": zone}}]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let custom_id = "11111111-2222-4333-8444-555555555555";
    let custom = admin
        .call(
            "PUT",
            &format!("{sub_scope}/providers/Microsoft.Authorization/roleDefinitions/{custom_id}"),
            Some(&json!({"properties": {"roleName": "Registry asset reader", "description": "Read registries and their assets",
                "permissions": [{"actions": ["Microsoft.MachineLearningServices/registries/read", "Microsoft.MachineLearningServices/registries/assets/read"]}],
                "assignableScopes": [sub_scope]}})),
            &[],
        )
        .await;
    assert_eq!(custom.status, 201, "{}", custom.text);

    // One service principal per role, assigned at the scope its code names.
    let roles: &[(char, &str, &str)] = &[
        ('N', "", ""),
        ('R', "acdd72a7-3385-48ef-bd42-f606fba81ae7", &sub_scope),
        ('G', "acdd72a7-3385-48ef-bd42-f606fba81ae7", &rg_scope),
        ('U', "1823dd4f-9b8c-4ab6-ab4e-7397a3684615", &rg_scope),
        ('D', "f6c7c914-8db3-469d-8ca1-694a8f32e121", &sub_scope),
        ('C', "b24988ac-6180-42a0-ab88-20f7382dd24c", &sub_scope),
        ('O', "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", &sub_scope),
        ('X', custom_id, &reg),
    ];
    let mut clients: BTreeMap<char, Http> = BTreeMap::new();
    let mut object_ids: BTreeMap<char, String> = BTreeMap::new();
    clients.insert('A', admin.anonymous());
    for (code, role, scope) in roles {
        let (oid, app, secret) = create_sp(&admin, &format!("principal-{code}")).await;
        if !role.is_empty() {
            assign(&admin, scope, &oid, role).await;
        }
        let token = token_for(&admin, &p.tenant, &app, &secret).await;
        clients.insert(*code, admin.with_token(&token));
        object_ids.insert(*code, oid);
    }

    // Every documented route has a row, and every row a documented route.
    let out = std::process::Command::new(common::BIN).arg("openapi").output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let public = [
        "/oauth2/v2.0/token",
        "/{tenantId}/oauth2/v2.0/token",
        "/{tenantId}/v2.0/.well-known/openid-configuration",
        "/{tenantId}/discovery/v2.0/keys",
        "/healthz",
    ];
    let mut documented = BTreeSet::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        if public.contains(&template.as_str()) {
            continue;
        }
        for m in ops.as_object().unwrap().keys() {
            documented.insert(format!("{} {template}", m.to_uppercase()));
        }
    }
    let covered: BTreeSet<String> = TABLE.iter().map(|(m, path, _)| format!("{m} {}", template_of(path))).collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(missing.is_empty(), "routes without a row in the RBAC table: {missing:#?}");
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(stale.is_empty(), "rows for routes that do not exist: {stale:#?}");

    // Walk the table.
    let mut failures = Vec::new();
    let mut denials: BTreeMap<char, usize> = BTreeMap::new();
    for (method, path, spec) in TABLE {
        let want = expectations(spec);
        assert_eq!(
            want.keys().collect::<String>(),
            PRINCIPALS.chars().collect::<BTreeSet<_>>().into_iter().collect::<String>(),
            "row {method} {path}"
        );
        for code in PRINCIPALS.chars() {
            let c = code.to_ascii_lowercase();
            let url = path
                .replace("{net}", &format!("/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Network"))
                .replace("{dp}", &format!("/mferp/managementfrontend{reg}"))
                .replace("{reg}", &reg)
                .replace("{sa}", &sa)
                .replace("{acr}", &acr)
                .replace("{s}", &sub)
                .replace("{op}", &op)
                .replace("{user}", user.body["id"].as_str().unwrap())
                .replace("{sp}", &throwaway)
                .replace("{guid-p}", &uuid::Uuid::new_v4().to_string())
                .replace("{ghost}", GHOST)
                .replace("{p}", &c.to_string());
            let body = body_for(method, path, code, &sub, &throwaway, sa.rsplit('/').next().unwrap());
            let r = clients[&code].call(method, &url, body.as_ref(), &[]).await;
            if r.status != want[&code] {
                failures.push(format!(
                    "{code} {method} {path}: got {} want {} — {}",
                    r.status,
                    want[&code],
                    r.text.chars().take(200).collect::<String>()
                ));
            }
            if r.status == 403 {
                *denials.entry(code).or_default() += 1;
                if r.code() == "AuthorizationFailed" {
                    let msg = r.body["error"]["message"].as_str().unwrap_or_default();
                    assert!(msg.contains("does not have authorization to perform action") && msg.contains("over scope"), "{msg}");
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ from the table:\n{}", failures.len(), failures.join("\n"));

    // Every denial is in the activity log, with the rule that decided it.
    for (code, n) in denials {
        if code == 'A' {
            continue;
        }
        let oid = &object_ids[&code];
        let log = admin
            .get(&format!(
                "{sub_scope}/providers/Microsoft.Insights/eventtypes/management/values?$top=1000&$filter=principalId eq '{oid}' and result eq 'denied'"
            ))
            .await;
        assert_eq!(log.status, 200, "{}", log.text);
        let entries = log.body["value"].as_array().unwrap();
        assert!(entries.len() >= n, "{code}: {n} denials answered 403, {} in the activity log", entries.len());
        assert!(
            entries
                .iter()
                .all(|e| !e["rule"].as_str().unwrap().is_empty() && e["clientAddress"].as_str().unwrap().starts_with("127.0.0.1:"))
        );
    }
    let unauth = admin
        .get(&format!(
            "{sub_scope}/providers/Microsoft.Insights/eventtypes/management/values?$top=1000&$filter=result eq 'unauthenticated'"
        ))
        .await;
    assert!(unauth.body["value"].as_array().unwrap().len() >= TABLE.len(), "every anonymous call is logged");
}

/// A Registry User can read the registry but not change it, its network settings or its
/// managed resources; a Reader can only read; a Contributor cannot assign roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_boundaries_and_the_cli() {
    let server = Server::start();
    let admin = server.http();
    let p = server.profile();
    let reg = server.registry_path("default", "bounded");
    assert_eq!(admin.call("PUT", &reg, Some(&registry_body("eastus")), &[]).await.status, 201);

    // Users through the CLI: create, assign, sign in with a password.
    let created = server.moat_json(&[
        "ad",
        "user",
        "create",
        "--display-name",
        "Ursula",
        "--user-principal-name",
        "ursula@example.com",
        "--password",
        "ursula's long password",
    ]);
    assert_eq!(created["userPrincipalName"], "ursula@example.com");
    let a = server.moat_json(&[
        "role",
        "assignment",
        "create",
        "--assignee",
        "ursula@example.com",
        "--role",
        "AzureML Registry User",
        "--scope",
        &reg,
    ]);
    assert_eq!(a["roleDefinitionName"], "AzureML Registry User");
    let tmp = tempfile::tempdir().unwrap();
    let ursula = tmp.path().join("ursula.json");
    let out = std::process::Command::new(common::BIN)
        .args([
            "--profile",
            ursula.to_str().unwrap(),
            "login",
            "-u",
            "ursula@example.com",
            "-p",
            "wrong password!!",
            "--endpoint",
            &server.url,
            "--tenant",
            &p.tenant,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_grant"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(common::BIN)
        .args([
            "--profile",
            ursula.to_str().unwrap(),
            "login",
            "-u",
            "ursula@example.com",
            "-p",
            "ursula's long password",
            "--endpoint",
            &server.url,
            "--tenant",
            &p.tenant,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved = std::fs::read_to_string(&ursula).unwrap();
    assert!(!saved.contains("ursula's long password"), "the password is never stored");
    let as_ursula = |args: &[&str]| std::process::Command::new(common::BIN).arg("--profile").arg(&ursula).args(args).output().unwrap();
    let shown = as_ursula(&["registry", "show", "--name", "bounded"]);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let refused = as_ursula(&["registry", "update", "--name", "bounded", "--set", "publicNetworkAccess=Disabled"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("AuthorizationFailed") && err.contains("registries/write") && err.contains("bounded"), "{err}");
    assert_eq!(admin.get(&reg).await.body["properties"]["publicNetworkAccess"], "Enabled");

    // A Contributor cannot assign roles; the CLI names the missing action.
    let sp = server.moat_json(&["ad", "sp", "create-for-rbac", "--name", "contrib", "--role", "Contributor"]);
    let ctok = token_for(&admin, &p.tenant, sp["appId"].as_str().unwrap(), sp["password"].as_str().unwrap()).await;
    let contributor = admin.with_token(&ctok);
    let path = format!("/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments/{}", p.subscription, uuid::Uuid::new_v4());
    let r = contributor
        .call(
            "PUT",
            &path,
            Some(&json!({"properties": {"roleDefinitionId": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "principalId": created["id"]}})),
            &[],
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "AuthorizationFailed"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("Microsoft.Authorization/roleAssignments/write"));

    // Custom roles: created from az-style JSON, assignable, not deletable while assigned.
    let role = server.moat_json(&[
        "role",
        "definition",
        "create",
        "--role-definition",
        &json!({"Name": "Registry reader only", "Actions": ["Microsoft.MachineLearningServices/registries/read"], "AssignableScopes": [format!("/subscriptions/{}", p.subscription)]}).to_string(),
    ]);
    assert_eq!(role["properties"]["type"], "CustomRole");
    server.moat_json(&["role", "assignment", "create", "--assignee", "ursula@example.com", "--role", "Registry reader only"]);
    let out = server.moat(&["role", "definition", "delete", "--name", "Registry reader only"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("RoleDefinitionHasAssignments"));
    let out = server.moat(&["role", "assignment", "delete", "--assignee", "ursula@example.com", "--role", "Registry reader only"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(server.moat(&["role", "definition", "delete", "--name", "Registry reader only"]).status.success());
    let listed = server.moat_json(&["role", "assignment", "list", "--assignee", "ursula@example.com"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["roleDefinitionName"], "AzureML Registry User");

    // Removing the assignment takes effect on the next request.
    let out = server.moat(&[
        "role",
        "assignment",
        "delete",
        "--assignee",
        "ursula@example.com",
        "--role",
        "AzureML Registry User",
        "--scope",
        &reg,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gone = as_ursula(&["registry", "show", "--name", "bounded"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("ResourceNotFound"));

    // The activity log shows the denials through the CLI, with their rule.
    let log = server.moat_json(&["monitor", "activity-log", "list", "--result", "denied", "--principal", "ursula@example.com"]);
    let entries = log.as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["operationName"] == "Microsoft.MachineLearningServices/registries/write"
            && e["resourceId"].as_str().unwrap().ends_with("/registries/bounded")
            && e["rule"].as_str().unwrap().contains("no role assignment")),
        "{log}"
    );
    let table = server.moat(&["monitor", "activity-log", "list", "--result", "denied", "--since", "1h", "--output", "table"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("Time") && text.contains("denied"), "{text}");

    // Deleting a principal removes its assignments; its token stops working.
    let out = server.moat(&["ad", "sp", "delete", "--id", sp["appId"].as_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(contributor.get(&format!("/subscriptions/{}", p.subscription)).await.status, 401);
    // The bootstrap administrator cannot be deleted.
    let admin_id = server.moat_json(&["ad", "sp", "show", "--id", &p.client_id])["id"].as_str().unwrap().to_string();
    let out = server.moat(&["ad", "sp", "delete", "--id", &admin_id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CannotDeleteBootstrapAdministrator"));
}
