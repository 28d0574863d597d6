//! Registry discovery: `GET /registrymanagement/v1.0/registries/{name}/discovery`.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_types::arm::RegistryDiscovery;

use crate::AppState;
use crate::error::AmlError;

#[utoipa::path(get, path = "/registrymanagement/v1.0/registries/{registryName}/discovery", tag = "discovery",
    params(("registryName" = String, Path)),
    responses((status = 200, body = RegistryDiscovery),
        (status = 403, description = "UnAuthorizedRegistryAccess: the registry does not exist or the caller may not read it")))]
pub async fn discover(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, AmlError> {
    let mut d = st.moat.discover_registry(&caller, &name).await?;
    // Asked by one of moat's names (the registry's, in a virtual network linked to its private
    // DNS zone, leads to its private endpoint): the data plane is at the same name, as Azure's
    // regional host resolves to the private endpoint inside such a network.
    if let Some(base) = crate::listeners::request_host(&uri, &headers).and_then(|h| st.moat.base_for_host(h)) {
        d.primary_region_resource_provider_uri = format!("{base}/");
    }
    Ok(axum::Json(d).into_response())
}
