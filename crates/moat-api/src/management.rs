//! The management plane (ARM-shaped): subscriptions, resource groups, registries and the
//! managed resources they own, and operation status. Thin handlers: parse, call one domain
//! function, render.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use moat_core::{Caller, Listed, OperationRef, Versioned};
use moat_types::arm::{
    ContainerRegistry, ErrorResponse, GenericResource, OperationStatus, Page, Registry, RegistryPatch, ResourceGroup, ServiceSasRequest,
    ServiceSasResponse, StorageAccount, Subscription,
};
use serde::Serialize;

use crate::AppState;
use crate::error::ArmError;
use crate::extract::{ArmJson, CommonQuery, Conditions};

type ArmResult = Result<Response, ArmError>;

const DEFAULT_API_VERSION: &str = "2025-09-01";

pub(crate) fn with_etag<T: Serialize>(status: StatusCode, v: Versioned<T>) -> Response {
    let mut resp = (status, axum::Json(v.value)).into_response();
    if let Ok(h) = HeaderValue::from_str(&v.etag) {
        resp.headers_mut().insert(header::ETAG, h);
    }
    resp
}

/// A page of a list, with a `nextLink` when more remain. The link repeats every parameter of
/// the request (`listViewType`, `$filter`, `$top`, …) as it came, so that the next page is of
/// the same list, with the new `$skipToken` in place of the old one.
pub(crate) fn page<T: Serialize>(state: &AppState, uri: &Uri, q: &CommonQuery, listed: Listed<T>) -> Response {
    let next_link = listed.next_after.map(|after| {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.as_bytes());
        let api = q.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        let mut link = format!("{}{}?api-version={api}", state.moat.config().public_url, uri.path());
        let kept = uri.query().unwrap_or_default().split('&').filter(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            let key = moat_types::uri::percent_decode(key, true).unwrap_or_default();
            !pair.is_empty() && !key.eq_ignore_ascii_case("$skipToken") && !key.eq_ignore_ascii_case("api-version")
        });
        for pair in kept {
            link.push('&');
            link.push_str(pair);
        }
        link.push_str(&format!("&$skipToken={token}"));
        link
    });
    axum::Json(Page { value: listed.items, next_link }).into_response()
}

/// `Azure-AsyncOperation` and `Location` for an operation.
fn operation_headers(state: &AppState, q: &CommonQuery, op: &OperationRef, headers: &mut HeaderMap) {
    let base = format!(
        "{}/subscriptions/{}/providers/Microsoft.MachineLearningServices/locations/{}",
        state.moat.config().public_url,
        state.moat.subscription_id(),
        op.location
    );
    let api = q.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION);
    let status = format!("{base}/operationsStatus/{}?api-version={api}", op.id);
    let result = format!("{base}/operationResults/{}?api-version={api}", op.id);
    for (name, value) in [("azure-asyncoperation", status), ("location", result), ("retry-after", "1".to_string())] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

fn deleted(state: &AppState, q: &CommonQuery, op: Option<OperationRef>) -> Response {
    match op {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(op) => {
            let mut resp = StatusCode::ACCEPTED.into_response();
            operation_headers(state, q, &op, resp.headers_mut());
            resp
        }
    }
}

#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions",
    params(("api-version" = Option<String>, Query)),
    responses((status = 200, body = Page<Subscription>), (status = 401, body = ErrorResponse)))]
pub async fn list_subscriptions(State(st): State<AppState>, Extension(caller): Extension<Caller>, _q: CommonQuery) -> ArmResult {
    let value = st.moat.list_subscriptions(&caller).await?;
    Ok(axum::Json(Page { value, next_link: None }).into_response())
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}", tag = "subscriptions",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorResponse)))]
pub async fn get_subscription(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_subscription(&caller, &sub).await?).into_response())
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups", tag = "resourceGroups",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<ResourceGroup>)))]
pub async fn list_groups(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_groups(&caller, &sub, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", tag = "resourceGroups",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = ResourceGroup, headers(("ETag" = String))), (status = 404, body = ErrorResponse)))]
pub async fn get_group(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(with_etag(StatusCode::OK, st.moat.get_group(&caller, &sub, &rg).await?))
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", tag = "resourceGroups",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query),
        ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)),
    request_body = ResourceGroup,
    responses((status = 200, body = ResourceGroup), (status = 201, body = ResourceGroup), (status = 400, body = ErrorResponse), (status = 412, body = ErrorResponse)))]
pub async fn put_group(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    _q: CommonQuery,
    Conditions(pre): Conditions,
    ArmJson(body): ArmJson<ResourceGroup>,
) -> ArmResult {
    let (group, created) = st.moat.put_group(&caller, &sub, &rg, body, &pre).await?;
    Ok(with_etag(if created { StatusCode::CREATED } else { StatusCode::OK }, group))
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", tag = "resourceGroups",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query), ("If-Match" = Option<String>, Header)),
    responses((status = 202, description = "Deleted; poll Azure-AsyncOperation"), (status = 204, description = "Did not exist"), (status = 409, body = ErrorResponse)))]
pub async fn delete_group(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    q: CommonQuery,
    Conditions(pre): Conditions,
) -> ArmResult {
    let op = st.moat.delete_group(&caller, &sub, &rg, &pre).await?;
    Ok(deleted(&st, &q, op))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/resources", tag = "resourceGroups",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<GenericResource>)))]
pub async fn list_group_resources(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_group_resources(&caller, &sub, &rg, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.MachineLearningServices/registries", tag = "registries",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<Registry>)))]
pub async fn list_registries_in_subscription(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_registries(&caller, &sub, None, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("api-version" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<Registry>)))]
pub async fn list_registries_in_group(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg)): Path<(String, String)>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let listed = st.moat.list_registries(&caller, &sub, Some(&rg), q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = Registry, headers(("ETag" = String))), (status = 404, body = ErrorResponse)))]
pub async fn get_registry(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(with_etag(StatusCode::OK, st.moat.get_registry(&caller, &sub, &rg, &name).await?))
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = Option<String>, Query),
        ("If-Match" = Option<String>, Header), ("If-None-Match" = Option<String>, Header)),
    request_body = Registry,
    responses(
        (status = 200, body = Registry, description = "Updated", headers(("Azure-AsyncOperation" = String), ("ETag" = String))),
        (status = 201, body = Registry, description = "Created", headers(("Azure-AsyncOperation" = String), ("ETag" = String))),
        (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse), (status = 412, body = ErrorResponse)))]
pub async fn put_registry(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    q: CommonQuery,
    Conditions(pre): Conditions,
    ArmJson(body): ArmJson<Registry>,
) -> ArmResult {
    let (reg, created, op) = st.moat.put_registry(&caller, &sub, &rg, &name, body, &pre).await?;
    let mut resp = with_etag(if created { StatusCode::CREATED } else { StatusCode::OK }, reg);
    operation_headers(&st, &q, &op, resp.headers_mut());
    resp.headers_mut().remove(header::LOCATION);
    Ok(resp)
}

#[utoipa::path(patch, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = Option<String>, Query), ("If-Match" = Option<String>, Header)),
    request_body = RegistryPatch,
    responses((status = 200, body = Registry), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse)))]
pub async fn patch_registry(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    Conditions(pre): Conditions,
    ArmJson(body): ArmJson<RegistryPatch>,
) -> ArmResult {
    Ok(with_etag(StatusCode::OK, st.moat.patch_registry(&caller, &sub, &rg, &name, body, &pre).await?))
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}", tag = "registries",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = Option<String>, Query), ("If-Match" = Option<String>, Header)),
    responses((status = 202, description = "Deleted with its managed resource group; poll Azure-AsyncOperation or Location"), (status = 204, description = "Did not exist")))]
pub async fn delete_registry(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    q: CommonQuery,
    Conditions(pre): Conditions,
) -> ArmResult {
    let op = st.moat.delete_registry(&caller, &sub, &rg, &name, &pre).await?;
    Ok(deleted(&st, &q, op))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}", tag = "managed resources",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("accountName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = StorageAccount), (status = 404, body = ErrorResponse)))]
pub async fn get_storage_account(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(with_etag(StatusCode::OK, st.moat.get_storage_account(&caller, &sub, &rg, &name).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ContainerRegistry/registries/{registryName}", tag = "managed resources",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = ContainerRegistry), (status = 404, body = ErrorResponse)))]
pub async fn get_container_registry(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(with_etag(StatusCode::OK, st.moat.get_container_registry(&caller, &sub, &rg, &name).await?))
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.MachineLearningServices/locations/{location}/operationsStatus/{operationId}", tag = "operations",
    params(("subscriptionId" = String, Path), ("location" = String, Path), ("operationId" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = OperationStatus), (status = 404, body = ErrorResponse)))]
pub async fn get_operation_status(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, _location, id)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_operation(&caller, &sub, &id).await?).into_response())
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.MachineLearningServices/locations/{location}/operationResults/{operationId}", tag = "operations",
    params(("subscriptionId" = String, Path), ("location" = String, Path), ("operationId" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 202, description = "Still running"), (status = 204, description = "Finished"), (status = 404, body = ErrorResponse)))]
pub async fn get_operation_result(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, _location, id)): Path<(String, String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    let op = st.moat.get_operation(&caller, &sub, &id).await?;
    Ok(match (op.status.as_str(), op.error) {
        ("InProgress", _) => StatusCode::ACCEPTED.into_response(),
        (_, Some(err)) => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(ErrorResponse { error: err })).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/ListServiceSas", tag = "managed resources",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("accountName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = ServiceSasRequest,
    responses((status = 200, body = ServiceSasResponse), (status = 400, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn list_service_sas(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<ServiceSasRequest>,
) -> ArmResult {
    let token = st.moat.list_service_sas(&caller, &sub, &rg, &name, body).await?;
    Ok(axum::Json(ServiceSasResponse { service_sas_token: token }).into_response())
}
