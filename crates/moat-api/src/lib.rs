//! moat's HTTP surfaces. Handlers are thin: they parse inputs into typed values, call one
//! domain function in moat-core, and render the result. Authentication is one middleware per
//! surface; authorization is the domain's one hook. Every route is listed in [`ApiDoc`], and a
//! test drives every documented route through the real server.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use moat_core::Moat;
use utoipa::OpenApi;

pub mod assets;
pub mod auth;
pub mod authorization;
pub mod blob;
pub mod directory;
pub mod discovery;
pub mod dns;
pub mod error;
pub mod extract;
pub mod listeners;
pub mod management;
pub mod mfe;
pub mod monitor;
pub mod netns;
pub mod network;
pub mod oci;
pub mod public;
pub mod storage;

use error::ArmError;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub moat: Arc<Moat>,
}

/// The OpenAPI document of every route moat serves.
#[derive(OpenApi)]
#[openapi(
    info(title = "moat", description = "A self-hosted registry for machine-learning assets with Azure ML registry semantics and real network isolation."),
    paths(
        public::token,
        public::tenant_token,
        public::openid_configuration,
        public::jwks,
        public::healthz,
        management::list_subscriptions,
        management::get_subscription,
        management::list_groups,
        management::get_group,
        management::put_group,
        management::delete_group,
        management::list_group_resources,
        management::list_registries_in_subscription,
        management::list_registries_in_group,
        management::get_registry,
        management::put_registry,
        management::patch_registry,
        management::delete_registry,
        management::get_storage_account,
        management::get_container_registry,
        management::list_service_sas,
        management::get_operation_status,
        management::get_operation_result,
        discovery::discover,
        mfe::list_containers,
        mfe::get_container,
        mfe::put_container,
        mfe::delete_container,
        mfe::list_versions,
        mfe::get_version,
        mfe::put_version,
        mfe::delete_version,
        mfe::temporary_data_reference,
        mfe::data_reference,
        directory::create_user,
        directory::list_users,
        directory::get_user,
        directory::delete_user,
        directory::create_service_principal,
        directory::list_service_principals,
        directory::get_service_principal,
        directory::delete_service_principal,
        monitor::list_activity,
        storage::garbage_collection,
        assets::list_containers,
        assets::get_container,
        assets::put_container,
        assets::delete_container,
        assets::list_versions,
        assets::get_version,
        assets::put_version,
        assets::delete_version,
        assets::start_pending_upload,
        assets::data_reference,
        authorization::list_role_definitions,
        authorization::get_role_definition,
        authorization::put_role_definition,
        authorization::delete_role_definition,
        authorization::list_at_subscription,
        authorization::get_at_subscription,
        authorization::put_at_subscription,
        authorization::delete_at_subscription,
        authorization::list_at_group,
        authorization::get_at_group,
        authorization::put_at_group,
        authorization::delete_at_group,
        authorization::list_at_resource,
        authorization::get_at_resource,
        authorization::put_at_resource,
        authorization::delete_at_resource,
        network::list_vnets_in_subscription,
        network::list_vnets,
        network::get_vnet,
        network::put_vnet,
        network::delete_vnet,
        network::list_subnets,
        network::get_subnet,
        network::put_subnet,
        network::delete_subnet,
        network::list_endpoints_in_subscription,
        network::list_endpoints,
        network::get_endpoint,
        network::put_endpoint,
        network::delete_endpoint,
        network::list_registry_connections,
        network::get_registry_connection,
        network::put_registry_connection,
        network::delete_registry_connection,
        network::list_storage_connections,
        network::get_storage_connection,
        network::put_storage_connection,
        network::delete_storage_connection,
        network::list_acr_connections,
        network::get_acr_connection,
        network::put_acr_connection,
        network::delete_acr_connection,
        network::patch_storage_account,
        network::patch_container_registry,
        network::diagnose_network,
        network::list_dns_zones,
        network::get_dns_zone,
        network::put_dns_zone,
        network::delete_dns_zone,
        network::list_dns_records,
        network::list_dns_links,
        network::get_dns_link,
        network::put_dns_link,
        network::delete_dns_link,
        network::list_zone_groups,
        network::get_zone_group,
        network::put_zone_group,
        network::delete_zone_group,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// Routes that need no credential (documented with an empty security requirement in tests).
pub const PUBLIC_ROUTES: &[&str] = &[
    "/oauth2/v2.0/token",
    "/{tenantId}/oauth2/v2.0/token",
    "/{tenantId}/v2.0/.well-known/openid-configuration",
    "/{tenantId}/discovery/v2.0/keys",
    "/healthz",
];

/// The OpenAPI document, pretty-printed (committed as docs/openapi.json).
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default() + "\n"
}

async fn not_found(uri: Uri) -> ArmError {
    ArmError::http(StatusCode::NOT_FOUND, "NotFound", None, format!("No route serves '{}'. See docs/openapi.json for the API.", uri.path()))
}

/// Requests no route claims: the blob plane's (`/{account}/…`), else 404.
async fn dispatch_unrouted(axum::extract::State(st): axum::extract::State<AppState>, req: Request) -> Response {
    if blob::is_blob_path(req.uri().path()) {
        let client = auth::client_of(&req);
        let origin = auth::origin_of(&req);
        return blob::handle(&st.moat, req, &client, &origin).await;
    }
    not_found(req.uri().clone()).await.into_response()
}

async fn method_not_allowed(req: Request) -> ArmError {
    ArmError::http(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        None,
        format!("{} is not supported on '{}'.", req.method(), req.uri().path()),
    )
}

/// In front of every route: private endpoint listeners serve only data planes
/// ([`listeners::endpoint_gate`]), and each request is logged (at `info`) with its outcome.
async fn front(req: Request, next: Next) -> Response {
    if let Some(refused) = listeners::endpoint_gate(&req) {
        return refused;
    }
    if !tracing::enabled!(tracing::Level::INFO) {
        return next.run(req).await;
    }
    let method = req.method().clone();
    // The path only: query strings will carry SAS signatures.
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    tracing::info!(%method, %path, status = resp.status().as_u16(), micros = start.elapsed().as_micros() as u64, "request");
    resp
}

/// The router, without path canonicalisation.
pub fn router(moat: Arc<Moat>) -> Router {
    use authorization as authz;
    use management as m;
    let state = AppState { moat };
    let reg = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries";
    let mgmt = Router::new()
        .route("/subscriptions", get(m::list_subscriptions))
        .route("/subscriptions/{subscriptionId}", get(m::get_subscription))
        .route("/subscriptions/{subscriptionId}/resourceGroups", get(m::list_groups))
        .route("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", get(m::get_group).put(m::put_group).delete(m::delete_group))
        .route("/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/resources", get(m::list_group_resources))
        .route("/subscriptions/{subscriptionId}/providers/Microsoft.MachineLearningServices/registries", get(m::list_registries_in_subscription))
        .route(reg, get(m::list_registries_in_group))
        .route(&format!("{reg}/{{registryName}}"), get(m::get_registry).put(m::put_registry).patch(m::patch_registry).delete(m::delete_registry))
        .route(&format!("{reg}/{{registryName}}/{{assetType}}"), get(assets::list_containers))
        .route(
            &format!("{reg}/{{registryName}}/{{assetType}}/{{assetName}}"),
            get(assets::get_container).put(assets::put_container).delete(assets::delete_container),
        )
        .route(&format!("{reg}/{{registryName}}/{{assetType}}/{{assetName}}/versions"), get(assets::list_versions))
        .route(
            &format!("{reg}/{{registryName}}/{{assetType}}/{{assetName}}/versions/{{version}}"),
            get(assets::get_version).put(assets::put_version).delete(assets::delete_version),
        )
        .route(&format!("{reg}/{{registryName}}/{{assetType}}/{{assetName}}/versions/{{version}}/startPendingUpload"), post(assets::start_pending_upload))
        .route(&format!("{reg}/{{registryName}}/datareferences/{{assetName}}/versions/{{version}}"), post(assets::data_reference))
        .route(
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}",
            get(m::get_storage_account).patch(network::patch_storage_account),
        )
        .route(
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}",
            get(m::get_container_registry).patch(network::patch_container_registry),
        )
        .route(
            "/subscriptions/{subscriptionId}/providers/Microsoft.MachineLearningServices/locations/{location}/operationsStatus/{operationId}",
            get(m::get_operation_status),
        )
        .route(
            "/subscriptions/{subscriptionId}/providers/Microsoft.MachineLearningServices/locations/{location}/operationResults/{operationId}",
            get(m::get_operation_result),
        )
        .route("/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions", get(authz::list_role_definitions))
        .route(
            "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}",
            get(authz::get_role_definition).put(authz::put_role_definition).delete(authz::delete_role_definition),
        )
        .route(authz::SUB_ASSIGNMENTS, get(authz::list_at_subscription))
        .route(
            &format!("{}/{{roleAssignmentName}}", authz::SUB_ASSIGNMENTS),
            get(authz::get_at_subscription).put(authz::put_at_subscription).delete(authz::delete_at_subscription),
        )
        .route(authz::GROUP_ASSIGNMENTS, get(authz::list_at_group))
        .route(
            &format!("{}/{{roleAssignmentName}}", authz::GROUP_ASSIGNMENTS),
            get(authz::get_at_group).put(authz::put_at_group).delete(authz::delete_at_group),
        )
        .route(authz::RESOURCE_ASSIGNMENTS, get(authz::list_at_resource))
        .route(
            &format!("{}/{{roleAssignmentName}}", authz::RESOURCE_ASSIGNMENTS),
            get(authz::get_at_resource).put(authz::put_at_resource).delete(authz::delete_at_resource),
        )
        .route("/subscriptions/{subscriptionId}/providers/Microsoft.Insights/eventtypes/management/values", get(monitor::list_activity))
        .route("/subscriptions/{subscriptionId}/providers/Moat.Storage/garbageCollection", post(storage::garbage_collection))
        .route("/v1.0/users", get(directory::list_users).post(directory::create_user))
        .route("/v1.0/users/{userId}", get(directory::get_user).delete(directory::delete_user))
        .route("/v1.0/servicePrincipals", get(directory::list_service_principals).post(directory::create_service_principal))
        .route("/v1.0/servicePrincipals/{servicePrincipalId}", get(directory::get_service_principal).delete(directory::delete_service_principal))
        .route(
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/ListServiceSas",
            post(m::list_service_sas),
        )
        .route("/subscriptions/{subscriptionId}/providers/Microsoft.Network/virtualNetworks", get(network::list_vnets_in_subscription))
        .route(network::VNETS, get(network::list_vnets))
        .route(&format!("{}/{{vnetName}}", network::VNETS), get(network::get_vnet).put(network::put_vnet).delete(network::delete_vnet))
        .route(&format!("{}/{{vnetName}}/subnets", network::VNETS), get(network::list_subnets))
        .route(
            &format!("{}/{{vnetName}}/subnets/{{subnetName}}", network::VNETS),
            get(network::get_subnet).put(network::put_subnet).delete(network::delete_subnet),
        )
        .route("/subscriptions/{subscriptionId}/providers/Microsoft.Network/privateEndpoints", get(network::list_endpoints_in_subscription))
        .route(network::ENDPOINTS, get(network::list_endpoints))
        .route(
            &format!("{}/{{endpointName}}", network::ENDPOINTS),
            get(network::get_endpoint).put(network::put_endpoint).delete(network::delete_endpoint),
        )
        .route(&format!("{}/privateEndpointConnections", network::REGISTRY), get(network::list_registry_connections))
        .route(
            &format!("{}/privateEndpointConnections/{{connectionName}}", network::REGISTRY),
            get(network::get_registry_connection).put(network::put_registry_connection).delete(network::delete_registry_connection),
        )
        .route(&format!("{}/diagnoseNetwork", network::REGISTRY), post(network::diagnose_network))
        .route(network::DNS_ZONES, get(network::list_dns_zones))
        .route(
            &format!("{}/{{zoneName}}", network::DNS_ZONES),
            get(network::get_dns_zone).put(network::put_dns_zone).delete(network::delete_dns_zone),
        )
        .route(&format!("{}/{{zoneName}}/ALL", network::DNS_ZONES), get(network::list_dns_records))
        .route(&format!("{}/{{zoneName}}/virtualNetworkLinks", network::DNS_ZONES), get(network::list_dns_links))
        .route(
            &format!("{}/{{zoneName}}/virtualNetworkLinks/{{linkName}}", network::DNS_ZONES),
            get(network::get_dns_link).put(network::put_dns_link).delete(network::delete_dns_link),
        )
        .route(&format!("{}/{{endpointName}}/privateDnsZoneGroups", network::ENDPOINTS), get(network::list_zone_groups))
        .route(
            &format!("{}/{{endpointName}}/privateDnsZoneGroups/{{groupName}}", network::ENDPOINTS),
            get(network::get_zone_group).put(network::put_zone_group).delete(network::delete_zone_group),
        )
        .route(&format!("{}/privateEndpointConnections", network::STORAGE), get(network::list_storage_connections))
        .route(
            &format!("{}/privateEndpointConnections/{{connectionName}}", network::STORAGE),
            get(network::get_storage_connection).put(network::put_storage_connection).delete(network::delete_storage_connection),
        )
        .route(&format!("{}/privateEndpointConnections", network::ACR), get(network::list_acr_connections))
        .route(
            &format!("{}/privateEndpointConnections/{{connectionName}}", network::ACR),
            get(network::get_acr_connection).put(network::put_acr_connection).delete(network::delete_acr_connection),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_management));
    let dp = format!("{}{reg}/{{registryName}}", mfe::BASE);
    let registry_plane = Router::new()
        .route("/registrymanagement/v1.0/registries/{registryName}/discovery", get(discovery::discover))
        .route(&format!("{dp}/{{assetType}}"), get(mfe::list_containers))
        .route(&format!("{dp}/{{assetType}}/{{assetName}}"), get(mfe::get_container).put(mfe::put_container).delete(mfe::delete_container))
        .route(&format!("{dp}/{{assetType}}/{{assetName}}/versions"), get(mfe::list_versions))
        .route(
            &format!("{dp}/{{assetType}}/{{assetName}}/versions/{{version}}"),
            get(mfe::get_version).put(mfe::put_version).delete(mfe::delete_version),
        )
        .route(&format!("{dp}/tempdatarefs/{{assetName}}/versions/{{version}}"), put(mfe::temporary_data_reference))
        .route(&format!("{dp}/datarefs/{{assetName}}/versions/{{version}}"), post(mfe::data_reference))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_registry));
    let public = Router::new()
        .route("/oauth2/v2.0/token", post(public::token))
        .route("/{tenantId}/oauth2/v2.0/token", post(public::tenant_token))
        .route("/{tenantId}/v2.0/.well-known/openid-configuration", get(public::openid_configuration))
        .route("/{tenantId}/discovery/v2.0/keys", get(public::jwks))
        .route("/healthz", get(public::healthz))
        .method_not_allowed_fallback(method_not_allowed);
    // The container registry plane authenticates itself (Bearer challenge and token exchange).
    let oci_plane = Router::new()
        .route("/v2", get(oci::base))
        .route("/v2/", get(oci::base))
        .route("/v2/{*rest}", axum::routing::any(oci::dispatch))
        .route("/oauth2/token", get(oci::token).post(oci::token))
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .merge(public)
        .merge(oci_plane)
        .merge(registry_plane)
        .merge(mgmt)
        .fallback(dispatch_unrouted)
        .layer(middleware::from_fn(front))
        .with_state(state)
}

pub(crate) fn canonicalize(mut req: Request) -> Request {
    // The data plane's routes are ARM paths under a base of their own.
    let path = req.uri().path();
    let canonical = match path.strip_prefix(mfe::BASE) {
        Some(arm) => moat_types::ids::canonicalize_arm_path(arm).map(|p| format!("{}{p}", mfe::BASE)),
        None => moat_types::ids::canonicalize_arm_path(path),
    };
    if let Some(path) = canonical {
        set_path(&mut req, &path);
    }
    req
}

/// Gives `req` path `path`, its query as it was (a path that is not one leaves it unchanged).
pub(crate) fn set_path(req: &mut Request, path: &str) {
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

/// Serves the API on the public `listener` until `shutdown` resolves, then drains in-flight
/// requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    moat: Arc<Moat>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listeners::serve_origin(listener, moat, Arc::from(listeners::PUBLIC_ORIGIN), shutdown).await
}

#[cfg(test)]
mod tests {
    /// The committed OpenAPI document matches the code. Regenerate with
    /// `MOAT_TEST_UPDATE_OPENAPI=1 cargo test -p moat-api openapi`.
    #[test]
    fn openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let fresh = super::openapi_json();
        if std::env::var_os("MOAT_TEST_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == fresh,
            "docs/openapi.json is stale; regenerate it with MOAT_TEST_UPDATE_OPENAPI=1 cargo test -p moat-api openapi"
        );
    }
}
