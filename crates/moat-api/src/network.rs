//! `Microsoft.Network`: virtual networks, subnets and private endpoints, and the provider side of
//! private links (`…/privateEndpointConnections` of registries, storage accounts and container
//! registries), plus the network settings of a registry's storage accounts and container
//! registry. Thin handlers.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_types::ResourceId;
use moat_types::arm::{ErrorResponse, Page};
use moat_types::network::{PrivateEndpoint, PrivateEndpointConnection, Subnet, VirtualNetwork};

use crate::AppState;
use crate::error::ArmError;
use crate::extract::{ArmJson, CommonQuery, Conditions};
use crate::management::{page, with_etag};

type ArmResult = Result<Response, ArmError>;

pub const VNETS: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks";
pub const ENDPOINTS: &str =
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints";
pub const REGISTRY: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}";
pub const STORAGE: &str =
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}";
pub const ACR: &str =
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}";

fn created(c: bool) -> StatusCode {
    if c { StatusCode::CREATED } else { StatusCode::OK }
}

fn deleted(existed: bool) -> Response {
    if existed { StatusCode::OK.into_response() } else { StatusCode::NO_CONTENT.into_response() }
}

// ---- virtual networks ----

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Network/virtualNetworks", tag = "network",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<VirtualNetwork>)))]
pub async fn list_vnets_in_subscription(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_vnets(&caller, &sub, None, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<VirtualNetwork>)))]
pub async fn list_vnets(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_vnets(&caller, &sub, Some(&rg), q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{vnetName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("vnetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = VirtualNetwork), (status = 404, body = ErrorResponse)))]
pub async fn get_vnet(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(with_etag(StatusCode::OK, st.moat.get_vnet(&caller, &sub, &rg, &name).await?))
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{vnetName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("vnetName" = String, Path), ("api-version" = Option<String>, Query),
        ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)),
    request_body = VirtualNetwork,
    responses((status = 200, body = VirtualNetwork), (status = 201, body = VirtualNetwork), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn put_vnet(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    Conditions(pre): Conditions,
    ArmJson(body): ArmJson<VirtualNetwork>,
) -> ArmResult {
    let (v, c) = st.moat.put_vnet(&caller, &sub, &rg, &name, body, &pre).await?;
    Ok(with_etag(created(c), v))
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{vnetName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("vnetName" = String, Path), ("api-version" = Option<String>, Query), ("If-Match" = Option<String>, Header)),
    responses((status = 200, description = "Deleted"), (status = 204, description = "Did not exist"), (status = 409, body = ErrorResponse)))]
pub async fn delete_vnet(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    Conditions(pre): Conditions,
) -> ArmResult {
    Ok(deleted(st.moat.delete_vnet(&caller, &sub, &rg, &name, &pre).await?))
}

// ---- subnets ----

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{vnetName}/subnets", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("vnetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Page<Subnet>)))]
pub async fn list_subnets(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, vnet)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    let value = st.moat.list_subnets(&caller, &sub, &rg, &vnet).await?;
    Ok(axum::Json(Page { value, next_link: None }).into_response())
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{vnetName}/subnets/{subnetName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("vnetName" = String, Path), ("subnetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Subnet), (status = 404, body = ErrorResponse)))]
pub async fn get_subnet(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, vnet, name)): Path<(String, String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_subnet(&caller, &sub, &rg, &vnet, &name).await?).into_response())
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{vnetName}/subnets/{subnetName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("vnetName" = String, Path), ("subnetName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = Subnet,
    responses((status = 200, body = Subnet), (status = 201, body = Subnet), (status = 400, body = ErrorResponse)))]
pub async fn put_subnet(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, vnet, name)): Path<(String, String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<Subnet>,
) -> ArmResult {
    let (s, c) = st.moat.put_subnet(&caller, &sub, &rg, &vnet, &name, body).await?;
    Ok((created(c), axum::Json(s)).into_response())
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/virtualNetworks/{vnetName}/subnets/{subnetName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("vnetName" = String, Path), ("subnetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "Deleted"), (status = 204, description = "Did not exist"), (status = 409, body = ErrorResponse)))]
pub async fn delete_subnet(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, vnet, name)): Path<(String, String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(deleted(st.moat.delete_subnet(&caller, &sub, &rg, &vnet, &name).await?))
}

// ---- private endpoints ----

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Network/privateEndpoints", tag = "network",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<PrivateEndpoint>)))]
pub async fn list_endpoints_in_subscription(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_endpoints(&caller, &sub, None, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<PrivateEndpoint>)))]
pub async fn list_endpoints(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_endpoints(&caller, &sub, Some(&rg), q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints/{endpointName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("endpointName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = PrivateEndpoint), (status = 404, body = ErrorResponse)))]
pub async fn get_endpoint(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(with_etag(StatusCode::OK, st.moat.get_endpoint(&caller, &sub, &rg, &name).await?))
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints/{endpointName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("endpointName" = String, Path), ("api-version" = Option<String>, Query),
        ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)),
    request_body = PrivateEndpoint,
    responses((status = 200, body = PrivateEndpoint), (status = 201, body = PrivateEndpoint), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn put_endpoint(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    Conditions(pre): Conditions,
    ArmJson(body): ArmJson<PrivateEndpoint>,
) -> ArmResult {
    let (v, c) = st.moat.put_endpoint(&caller, &sub, &rg, &name, body, &pre).await?;
    Ok(with_etag(created(c), v))
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints/{endpointName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("endpointName" = String, Path), ("api-version" = Option<String>, Query), ("If-Match" = Option<String>, Header)),
    responses((status = 200, description = "Deleted"), (status = 204, description = "Did not exist")))]
pub async fn delete_endpoint(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    Conditions(pre): Conditions,
) -> ArmResult {
    Ok(deleted(st.moat.delete_endpoint(&caller, &sub, &rg, &name, &pre).await?))
}

// ---- the provider side ----

fn target(namespace: &str, rtype: &str, sub: &str, rg: &str, name: &str) -> ResourceId {
    ResourceId::provider(sub, rg, namespace, rtype, name)
}

async fn list_connections(st: &AppState, caller: &Caller, t: ResourceId) -> ArmResult {
    let value = st.moat.list_connections(caller, &t).await?;
    Ok(axum::Json(Page { value, next_link: None }).into_response())
}

async fn get_connection(st: &AppState, caller: &Caller, t: ResourceId, name: &str) -> ArmResult {
    Ok(axum::Json(st.moat.get_connection(caller, &t, name).await?).into_response())
}

async fn put_connection(st: &AppState, caller: &Caller, t: ResourceId, name: &str, body: PrivateEndpointConnection) -> ArmResult {
    let c = st.moat.decide_connection(caller, &t, name, Some(body.properties.private_link_service_connection_state)).await?;
    Ok(axum::Json(c).into_response())
}

async fn delete_connection(st: &AppState, caller: &Caller, t: ResourceId, name: &str) -> ArmResult {
    st.moat.decide_connection(caller, &t, name, None).await?;
    Ok(StatusCode::OK.into_response())
}

/// The provider-side routes of one target type: list, get, put (approve/reject), delete.
macro_rules! connection_routes {
    ($base:literal, $ns:literal, $rtype:literal, $param:literal, $tag:literal, $list:ident, $get:ident, $put:ident, $delete:ident) => {
        #[utoipa::path(get, path = concat!($base, "/privateEndpointConnections"), tag = $tag,
            params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ($param = String, Path), ("api-version" = Option<String>, Query)),
            responses((status = 200, body = Page<PrivateEndpointConnection>), (status = 404, body = ErrorResponse)))]
        pub async fn $list(
            State(st): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path((sub, rg, name)): Path<(String, String, String)>,
            _q: CommonQuery,
        ) -> ArmResult {
            list_connections(&st, &caller, target($ns, $rtype, &sub, &rg, &name)).await
        }

        #[utoipa::path(get, path = concat!($base, "/privateEndpointConnections/{connectionName}"), tag = $tag,
            params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ($param = String, Path), ("connectionName" = String, Path), ("api-version" = Option<String>, Query)),
            responses((status = 200, body = PrivateEndpointConnection), (status = 404, body = ErrorResponse)))]
        pub async fn $get(
            State(st): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path((sub, rg, name, conn)): Path<(String, String, String, String)>,
            _q: CommonQuery,
        ) -> ArmResult {
            get_connection(&st, &caller, target($ns, $rtype, &sub, &rg, &name), &conn).await
        }

        #[utoipa::path(put, path = concat!($base, "/privateEndpointConnections/{connectionName}"), tag = $tag,
            params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ($param = String, Path), ("connectionName" = String, Path), ("api-version" = Option<String>, Query)),
            request_body = PrivateEndpointConnection,
            responses((status = 200, body = PrivateEndpointConnection), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
        pub async fn $put(
            State(st): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path((sub, rg, name, conn)): Path<(String, String, String, String)>,
            _q: CommonQuery,
            ArmJson(body): ArmJson<PrivateEndpointConnection>,
        ) -> ArmResult {
            put_connection(&st, &caller, target($ns, $rtype, &sub, &rg, &name), &conn, body).await
        }

        #[utoipa::path(delete, path = concat!($base, "/privateEndpointConnections/{connectionName}"), tag = $tag,
            params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ($param = String, Path), ("connectionName" = String, Path), ("api-version" = Option<String>, Query)),
            responses((status = 200, description = "Disconnected: the endpoint's connection state becomes Disconnected")))]
        pub async fn $delete(
            State(st): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path((sub, rg, name, conn)): Path<(String, String, String, String)>,
            _q: CommonQuery,
        ) -> ArmResult {
            delete_connection(&st, &caller, target($ns, $rtype, &sub, &rg, &name), &conn).await
        }
    };
}

connection_routes!(
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}",
    "Microsoft.MachineLearningServices",
    "registries",
    "registryName",
    "registries",
    list_registry_connections,
    get_registry_connection,
    put_registry_connection,
    delete_registry_connection
);
connection_routes!(
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}",
    "Microsoft.Storage",
    "storageAccounts",
    "accountName",
    "storage",
    list_storage_connections,
    get_storage_connection,
    put_storage_connection,
    delete_storage_connection
);
connection_routes!(
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}",
    "Microsoft.ContainerRegistry",
    "registries",
    "registryName",
    "containerRegistries",
    list_acr_connections,
    get_acr_connection,
    put_acr_connection,
    delete_acr_connection
);

#[utoipa::path(patch, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}", tag = "storage",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("accountName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body(content = Object, description = "properties.publicNetworkAccess (Enabled, Disabled, or null to follow the registry) and properties.networkAcls"),
    responses((status = 200, body = moat_types::arm::StorageAccount), (status = 400, body = ErrorResponse)))]
pub async fn patch_storage_account(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<serde_json::Value>,
) -> ArmResult {
    st.moat.patch_network_settings(&caller, &target("Microsoft.Storage", "storageAccounts", &sub, &rg, &name), &body).await?;
    Ok(with_etag(StatusCode::OK, st.moat.get_storage_account(&caller, &sub, &rg, &name).await?))
}

#[utoipa::path(patch, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}", tag = "containerRegistries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body(content = Object, description = "properties.publicNetworkAccess (Enabled, Disabled, or null to follow the registry)"),
    responses((status = 200, body = moat_types::arm::ContainerRegistry), (status = 400, body = ErrorResponse)))]
pub async fn patch_container_registry(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<serde_json::Value>,
) -> ArmResult {
    st.moat.patch_network_settings(&caller, &target("Microsoft.ContainerRegistry", "registries", &sub, &rg, &name), &body).await?;
    Ok(with_etag(StatusCode::OK, st.moat.get_container_registry(&caller, &sub, &rg, &name).await?))
}

/// Body of `diagnoseNetwork`: where the client is (neither: the public network).
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiagnoseRequest {
    /// The client's address (in loopback mode, its source address).
    #[serde(default)]
    pub source_address: Option<String>,
    /// Or the virtual network it is in.
    #[serde(default)]
    pub virtual_network_id: Option<String>,
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/diagnoseNetwork", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = DiagnoseRequest,
    responses((status = 200, description = "For each plane: reachable or not, through which endpoint or the public network, and what is missing", body = Object),
        (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn diagnose_network(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<DiagnoseRequest>,
) -> ArmResult {
    let source = match body.source_address.as_deref() {
        None => None,
        Some(a) => Some(
            a.parse::<std::net::IpAddr>()
                .map_err(|_| moat_core::Error::invalid("InvalidSourceAddress", "sourceAddress", format!("'{a}' is not an IP address.")))?,
        ),
    };
    let d = st.moat.diagnose_network(&caller, &sub, &rg, &name, source, body.virtual_network_id.as_deref()).await?;
    Ok(axum::Json(d).into_response())
}

// ---- private DNS zones, their virtual network links, and endpoints' zone groups ----

pub const DNS_ZONES: &str =
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones";

fn list(value: Vec<serde_json::Value>) -> Response {
    axum::Json(Page { value, next_link: None }).into_response()
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "The group's private DNS zones", body = Object)))]
pub async fn list_dns_zones(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(list(st.moat.list_dns_zones(&caller, &sub, &rg).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorResponse)))]
pub async fn get_dns_zone(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_dns_zone(&caller, &sub, &rg, &zone).await?).into_response())
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body(content = Object, description = "{\"location\": \"global\", \"tags\": {…}}; the name is one of moat's privatelink zones"),
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 400, body = ErrorResponse)))]
pub async fn put_dns_zone(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone)): Path<(String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<serde_json::Value>,
) -> ArmResult {
    let (v, c) = st.moat.put_dns_zone(&caller, &sub, &rg, &zone, &body).await?;
    Ok((created(c), axum::Json(v)).into_response())
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "Deleted"), (status = 204, description = "Did not exist"), (status = 409, body = ErrorResponse)))]
pub async fn delete_dns_zone(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(deleted(st.moat.delete_dns_zone(&caller, &sub, &rg, &zone).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}/ALL", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "The zone's record sets (A records of the endpoints' zone groups)", body = Object)))]
pub async fn list_dns_records(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(list(st.moat.list_dns_records(&caller, &sub, &rg, &zone).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}/virtualNetworkLinks", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Object)))]
pub async fn list_dns_links(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(list(st.moat.list_dns_links(&caller, &sub, &rg, &zone).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}/virtualNetworkLinks/{linkName}", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("linkName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorResponse)))]
pub async fn get_dns_link(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone, link)): Path<(String, String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_dns_link(&caller, &sub, &rg, &zone, &link).await?).into_response())
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}/virtualNetworkLinks/{linkName}", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("linkName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body(content = Object, description = "{\"location\": \"global\", \"properties\": {\"virtualNetwork\": {\"id\": …}, \"registrationEnabled\": false}}"),
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 400, body = ErrorResponse)))]
pub async fn put_dns_link(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone, link)): Path<(String, String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<serde_json::Value>,
) -> ArmResult {
    let (v, c) = st.moat.put_dns_link(&caller, &sub, &rg, &zone, &link, &body).await?;
    Ok((created(c), axum::Json(v)).into_response())
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateDnsZones/{zoneName}/virtualNetworkLinks/{linkName}", tag = "privateDns",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("zoneName" = String, Path), ("linkName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "Deleted"), (status = 204, description = "Did not exist")))]
pub async fn delete_dns_link(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, zone, link)): Path<(String, String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(deleted(st.moat.delete_dns_link(&caller, &sub, &rg, &zone, &link).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints/{endpointName}/privateDnsZoneGroups", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("endpointName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Object)))]
pub async fn list_zone_groups(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, pe)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(list(st.moat.list_zone_groups(&caller, &sub, &rg, &pe).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints/{endpointName}/privateDnsZoneGroups/{groupName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("endpointName" = String, Path), ("groupName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 404, body = ErrorResponse)))]
pub async fn get_zone_group(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, pe, g)): Path<(String, String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_zone_group(&caller, &sub, &rg, &pe, &g).await?).into_response())
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints/{endpointName}/privateDnsZoneGroups/{groupName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("endpointName" = String, Path), ("groupName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body(content = Object, description = "{\"properties\": {\"privateDnsZoneConfigs\": [{\"name\": …, \"properties\": {\"privateDnsZoneId\": …}}]}}"),
    responses((status = 200, body = Object), (status = 201, body = Object), (status = 400, body = ErrorResponse)))]
pub async fn put_zone_group(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, pe, g)): Path<(String, String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<serde_json::Value>,
) -> ArmResult {
    let (v, c) = st.moat.put_zone_group(&caller, &sub, &rg, &pe, &g, &body).await?;
    Ok((created(c), axum::Json(v)).into_response())
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/privateEndpoints/{endpointName}/privateDnsZoneGroups/{groupName}", tag = "network",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("endpointName" = String, Path), ("groupName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, description = "Deleted: the endpoint's records leave the zones"), (status = 204, description = "Did not exist")))]
pub async fn delete_zone_group(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, pe, g)): Path<(String, String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(deleted(st.moat.delete_zone_group(&caller, &sub, &rg, &pe, &g).await?))
}
