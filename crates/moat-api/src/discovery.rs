//! Registry discovery: `GET /registrymanagement/v1.0/registries/{name}/discovery`.

use axum::Extension;
use axum::extract::{Path, State};
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
) -> Result<Response, AmlError> {
    Ok(axum::Json(st.moat.discover_registry(&caller, &name).await?).into_response())
}
