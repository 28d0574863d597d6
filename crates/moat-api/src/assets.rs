//! Registry assets on the management plane: containers and versions of every asset type,
//! `startPendingUpload` and `datareferences`.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_core::assets::ListViewType;
use moat_types::arm::{ErrorResponse, Page};
use moat_types::assets::{AssetContainer, AssetVersion, BlobReferenceResponse, DataReferenceRequest, PendingUploadRequest};
use serde::Deserialize;

use crate::AppState;
use crate::error::ArmError;
use crate::extract::{ArmJson, CommonQuery};
use crate::management::page;

type ArmResult = Result<Response, ArmError>;

#[derive(Debug, Deserialize)]
pub struct ViewQuery {
    #[serde(rename = "listViewType")]
    pub(crate) list_view_type: Option<String>,
}

type RegPath = (String, String, String, String);
type NamePath = (String, String, String, String, String);
type VersionPath = (String, String, String, String, String, String);

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path),
        ("assetType" = String, Path, description = "models, data, codes, components or environments"),
        ("api-version" = Option<String>, Query), ("listViewType" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<AssetContainer>), (status = 404, body = ErrorResponse)))]
pub async fn list_containers(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t)): Path<RegPath>,
    Query(view): Query<ViewQuery>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let view = ListViewType::parse(view.list_view_type.as_deref())?;
    let listed = st.moat.list_asset_containers(&caller, &sub, &rg, &reg, &t, view, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = AssetContainer), (status = 404, body = ErrorResponse)))]
pub async fn get_container(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name)): Path<NamePath>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_asset_container(&caller, &sub, &rg, &reg, &t, &name).await?).into_response())
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = AssetContainer,
    responses((status = 200, body = AssetContainer), (status = 201, body = AssetContainer), (status = 400, body = ErrorResponse)))]
pub async fn put_container(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name)): Path<NamePath>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<AssetContainer>,
) -> ArmResult {
    let (c, created) = st.moat.put_asset_container(&caller, &sub, &rg, &reg, &t, &name, body).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(c)).into_response())
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200), (status = 204), (status = 409, body = ErrorResponse)))]
pub async fn delete_container(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name)): Path<NamePath>,
    _q: CommonQuery,
) -> ArmResult {
    let existed = st.moat.delete_asset_container(&caller, &sub, &rg, &reg, &t, &name).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path),
        ("api-version" = Option<String>, Query), ("listViewType" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<AssetVersion>), (status = 404, body = ErrorResponse)))]
pub async fn list_versions(
    st: State<AppState>,
    caller: Extension<Caller>,
    path: Path<NamePath>,
    view: Query<ViewQuery>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    versions_page(st, caller, path, view, uri, q, false).await
}

/// A page of a container's versions; `missing_is_empty`: the data plane's answer for a name
/// never used (see [`moat_core::Moat::list_asset_versions`]).
pub(crate) async fn versions_page(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name)): Path<NamePath>,
    Query(view): Query<ViewQuery>,
    uri: Uri,
    q: CommonQuery,
    missing_is_empty: bool,
) -> ArmResult {
    let view = ListViewType::parse(view.list_view_type.as_deref())?;
    let after = q.after()?;
    let listed =
        st.moat.list_asset_versions(&caller, &sub, &rg, &reg, &t, &name, view, after.as_deref(), q.limit(), missing_is_empty).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions/{version}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = AssetVersion), (status = 404, body = ErrorResponse)))]
pub async fn get_version(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name, v)): Path<VersionPath>,
    _q: CommonQuery,
) -> ArmResult {
    let json = st.moat.get_asset_version_json(&caller, &sub, &rg, &reg, &t, &name, &v).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], json).into_response())
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions/{version}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = AssetVersion,
    responses((status = 200, body = AssetVersion), (status = 201, body = AssetVersion), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn put_version(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name, v)): Path<VersionPath>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<AssetVersion>,
) -> ArmResult {
    let (version, created) = st.moat.put_asset_version(&caller, &sub, &rg, &reg, &t, &name, &v, body).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(version)).into_response())
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions/{version}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200), (status = 204)))]
pub async fn delete_version(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name, v)): Path<VersionPath>,
    _q: CommonQuery,
) -> ArmResult {
    let existed = st.moat.delete_asset_version(&caller, &sub, &rg, &reg, &t, &name, &v).await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::NO_CONTENT }.into_response())
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions/{version}/startPendingUpload", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = PendingUploadRequest,
    responses((status = 200, body = BlobReferenceResponse), (status = 409, body = ErrorResponse, description = "The version exists already")))]
pub async fn start_pending_upload(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, t, name, v)): Path<VersionPath>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<PendingUploadRequest>,
) -> ArmResult {
    Ok(axum::Json(st.moat.start_pending_upload(&caller, &sub, &rg, &reg, &t, &name, &v, body).await?).into_response())
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/datareferences/{assetName}/versions/{version}", tag = "assets",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = DataReferenceRequest,
    responses((status = 200, body = BlobReferenceResponse), (status = 404, body = ErrorResponse)))]
pub async fn data_reference(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, name, v)): Path<NamePath>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<DataReferenceRequest>,
) -> ArmResult {
    Ok(axum::Json(st.moat.data_reference(&caller, &sub, &rg, &reg, &name, &v, body).await?).into_response())
}
