//! The registry data plane as Azure's SDKs call it: the asset operations under
//! `/mferp/managementfrontend` (the base a registry's discovery names), with the data plane's
//! own two routes, `tempdatarefs` (a write location, what `startPendingUpload` is on the
//! management plane) and `datarefs` (a read SAS, what `datareferences` is). The `azure-ai-ml`
//! SDK's `MLClient(registry_name=…)` uses exactly these.
//!
//! The operations are the management plane's, through the same domain functions, with the data
//! plane's rendering: a version's `id` is its asset ID (`azureml://registries/…`), a model's
//! `flavors` is an object even when empty, and uploaded locations are host-style URIs
//! (`https://{account}.blob.{zone}/{container}/…`, served by moat too), which is what the SDK
//! parses to find a version's files. Locations come back in either form and mean the same.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::{Caller, Error, Moat};
use moat_types::arm::{ErrorResponse, Page};
use moat_types::assets::{AssetContainer, AssetVersion, BlobReferenceResponse, DataReferenceRequest, PendingUploadRequest};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::assets::{self as arm, ViewQuery};
use crate::error::ArmError;
use crate::extract::{ArmJson, CommonQuery};

/// Where the data plane's routes start: what a client appends to the discovery's
/// `primaryRegionResourceProviderUri`.
pub const BASE: &str = "/mferp/managementfrontend";

type ArmResult = Result<Response, ArmError>;
type RegPath = (String, String, String, String);
type NamePath = (String, String, String, String, String);
type VersionPath = (String, String, String, String, String, String);

/// Body of `tempdatarefs`: which version the upload is for.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemporaryDataReferenceRequest {
    /// `azureml://registries/<r>/<type>/<name>/versions/<v>`.
    pub asset_id: String,
    /// `TemporaryBlobReference` (the only kind).
    #[serde(default)]
    pub temporary_data_reference_type: Option<String>,
    #[serde(default)]
    pub temporary_data_reference_id: Option<String>,
}

/// A response of the management plane's handler, rendered for the data plane (see the module
/// documentation). Errors pass as they are.
async fn rendered(moat: &Moat, r: ArmResult) -> ArmResult {
    let resp = r?;
    if !resp.status().is_success() {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.map_err(|e| Error::Internal(format!("a response body: {e}")))?;
    if bytes.is_empty() {
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let json = |e: serde_json::Error| Error::Internal(format!("a response body: {e}"));
    let mut doc: Value = serde_json::from_slice(&bytes).map_err(json)?;
    match doc.get_mut("value").and_then(Value::as_array_mut) {
        Some(items) => items.iter_mut().for_each(|i| render(moat, i)),
        None => render(moat, &mut doc),
    }
    let mut resp = Response::from_parts(parts, Body::from(serde_json::to_vec(&doc).map_err(json)?));
    resp.headers_mut().remove(axum::http::header::CONTENT_LENGTH);
    Ok(resp)
}

/// One container or version as the data plane shows it.
fn render(moat: &Moat, item: &mut Value) {
    let asset = item.get("id").and_then(Value::as_str).and_then(asset_id_of);
    let is_model_version = asset.as_ref().is_some_and(|a| a.segment == "models" && a.version);
    if let Some(a) = asset {
        item["id"] = Value::String(a.id);
    }
    let Some(props) = item.get_mut("properties").and_then(Value::as_object_mut) else { return };
    for field in ["modelUri", "dataUri", "codeUri"] {
        if let Some(Value::String(u)) = props.get_mut(field) {
            *u = moat.host_style_uri(u);
        }
    }
    if let Some(Value::String(u)) = props.get_mut("build").and_then(|b| b.get_mut("contextUri")) {
        *u = moat.host_style_uri(u);
    }
    if is_model_version && props.get("flavors").is_none_or(Value::is_null) {
        props.insert("flavors".into(), Value::Object(Default::default()));
    }
}

/// A SAS URI (path-style, on moat's public URL) in the addressing the client used: host-style,
/// by the storage account's name, when it reached moat by one of moat's names (in a virtual
/// network linked to the blob privatelink zone, the name leads to the account's private
/// endpoint, as Azure's does); path-style otherwise, which needs no DNS of moat's.
fn sas_in_clients_addressing(moat: &Moat, uri: &Uri, headers: &HeaderMap, sas_uri: &mut String) {
    if crate::listeners::request_host(uri, headers).and_then(|h| moat.base_for_host(h)).is_some() {
        *sas_uri = moat.host_style_uri(sas_uri);
    }
}

/// A registry asset's ID on the data plane.
struct AssetRef {
    /// `azureml://registries/{r}/{type}/{name}[/versions/{v}]`.
    id: String,
    /// Its type's path segment (`models`, `data`, …).
    segment: String,
    /// A version, not a container.
    version: bool,
}

/// The data plane's ID of a registry asset's ARM ID.
fn asset_id_of(arm_id: &str) -> Option<AssetRef> {
    let segs: Vec<&str> = arm_id.trim_start_matches('/').split('/').collect();
    let at = segs.windows(2).position(|w| w[0].eq_ignore_ascii_case("Microsoft.MachineLearningServices") && w[1] == "registries")?;
    let (id, t, version) = match &segs[at + 2..] {
        [r, t, n] => (format!("azureml://registries/{r}/{t}/{n}"), t, false),
        [r, t, n, "versions", v] => (format!("azureml://registries/{r}/{t}/{n}/versions/{v}"), t, true),
        _ => return None,
    };
    Some(AssetRef { id, segment: t.to_string(), version })
}

#[utoipa::path(get, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path),
        ("assetType" = String, Path, description = "models, data, codes, components or environments"),
        ("api-version" = Option<String>, Query), ("listViewType" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<AssetContainer>), (status = 404, body = ErrorResponse)))]
pub async fn list_containers(
    State(st): State<AppState>,
    caller: Extension<Caller>,
    path: Path<RegPath>,
    view: Query<ViewQuery>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let moat = st.moat.clone();
    rendered(&moat, arm::list_containers(State(st), caller, path, view, uri, q).await).await
}

#[utoipa::path(get, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = AssetContainer), (status = 404, body = ErrorResponse)))]
pub async fn get_container(State(st): State<AppState>, caller: Extension<Caller>, path: Path<NamePath>, q: CommonQuery) -> ArmResult {
    let moat = st.moat.clone();
    rendered(&moat, arm::get_container(State(st), caller, path, q).await).await
}

#[utoipa::path(put, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = AssetContainer,
    responses((status = 200, body = AssetContainer), (status = 201, body = AssetContainer), (status = 400, body = ErrorResponse)))]
pub async fn put_container(
    State(st): State<AppState>,
    caller: Extension<Caller>,
    path: Path<NamePath>,
    q: CommonQuery,
    body: ArmJson<AssetContainer>,
) -> ArmResult {
    let moat = st.moat.clone();
    rendered(&moat, arm::put_container(State(st), caller, path, q, body).await).await
}

#[utoipa::path(delete, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200), (status = 204), (status = 409, body = ErrorResponse)))]
pub async fn delete_container(State(st): State<AppState>, caller: Extension<Caller>, path: Path<NamePath>, q: CommonQuery) -> ArmResult {
    arm::delete_container(State(st), caller, path, q).await
}

#[utoipa::path(get, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path),
        ("api-version" = Option<String>, Query), ("listViewType" = Option<String>, Query), ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query),
        ("$orderBy" = Option<String>, Query, description = "createdtime, createdtime asc or createdtime desc: versions by creation time")),
    responses((status = 200, body = Page<AssetVersion>), (status = 404, body = ErrorResponse)))]
pub async fn list_versions(
    State(st): State<AppState>,
    caller: Extension<Caller>,
    path: Path<NamePath>,
    view: Query<ViewQuery>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    let moat = st.moat.clone();
    let order = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("$orderBy"))
        .map(|(_, v)| v.split_whitespace().map(str::to_ascii_lowercase).collect::<Vec<_>>());
    let newest_first = match order.as_deref() {
        None => return rendered(&moat, arm::versions_page(State(st), caller, path, view, uri, q, true).await).await,
        Some([field]) if field == "createdtime" => false,
        Some([field, dir]) if field == "createdtime" && (dir == "asc" || dir == "desc") => dir == "desc",
        Some(_) => {
            return Err(Error::invalid(
                "InvalidOrderBy",
                "$orderBy",
                "$orderBy must be 'createdtime', 'createdtime asc' or 'createdtime desc'.",
            )
            .into());
        }
    };
    // Paged by position in that order: the cursor is where the next page starts.
    let offset = match q.after()? {
        None => 0,
        Some(a) => a
            .strip_prefix("created:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::invalid("InvalidSkipToken", "$skipToken", "The $skipToken is not one moat issued for this order."))?,
    };
    let (Extension(caller), Path((sub, rg, reg, t, name)), Query(view)) = (caller, path, view);
    let view = moat_core::assets::ListViewType::parse(view.list_view_type.as_deref())?;
    let (items, next) =
        st.moat.list_asset_versions_by_creation(&caller, &sub, &rg, &reg, &t, &name, view, newest_first, offset, q.limit()).await?;
    let listed = moat_core::Listed { items, next_after: next.map(|n| format!("created:{n}")) };
    rendered(&moat, Ok(crate::management::page(&st, &uri, &q, listed))).await
}

#[utoipa::path(get, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions/{version}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = AssetVersion), (status = 404, body = ErrorResponse)))]
pub async fn get_version(
    State(st): State<AppState>,
    caller: Extension<Caller>,
    Path((sub, rg, reg, t, name, v)): Path<VersionPath>,
    q: CommonQuery,
) -> ArmResult {
    let moat = st.moat.clone();
    // `azureml_default`: what azure-ai-ml asks for a component named without a version or a
    // label, the name's default version; Azure's service answers its latest.
    let v = if v == DEFAULT_VERSION {
        let c = moat.get_asset_container(&caller, &sub, &rg, &reg, &t, &name).await?;
        c.properties
            .and_then(|p| p.latest_version)
            .ok_or_else(|| Error::not_found("ResourceNotFound", format!("The {t} '{name}' has no version to be its default.")))?
    } else {
        v
    };
    rendered(&moat, arm::get_version(State(st), caller, Path((sub, rg, reg, t, name, v)), q).await).await
}

/// The version name that stands for a name's default version (its latest).
const DEFAULT_VERSION: &str = "azureml_default";

#[utoipa::path(put, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions/{version}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = AssetVersion,
    responses((status = 200, body = AssetVersion), (status = 201, body = AssetVersion), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn put_version(
    State(st): State<AppState>,
    caller: Extension<Caller>,
    path: Path<VersionPath>,
    q: CommonQuery,
    ArmJson(mut body): ArmJson<Value>,
) -> ArmResult {
    if let Some(p) = body.get_mut("properties").and_then(Value::as_object_mut) {
        // The SDK sends `system_metadata` (null unless set) with every model version; moat
        // keeps none, so an empty one is dropped and a set one refused by name.
        if p.get("system_metadata").is_some_and(|m| m.is_null() || m.as_object().is_some_and(|o| o.is_empty())) {
            p.remove("system_metadata");
        }
        // It also writes numbers into the string map `properties` (a code asset's
        // `hash_version: 202208`); they are kept as the strings they spell.
        if let Some(map) = p.get_mut("properties").and_then(Value::as_object_mut) {
            for v in map.values_mut() {
                if v.is_number() || v.is_boolean() {
                    *v = Value::String(v.to_string());
                }
            }
        }
    }
    let body: AssetVersion = serde_path_to_error::deserialize(body)
        .map_err(|e| Error::invalid("InvalidRequestContent", e.path().to_string(), format!("The version is not valid: {}", e.inner())))?;
    let moat = st.moat.clone();
    rendered(&moat, arm::put_version(State(st), caller, path, q, ArmJson(body)).await).await
}

#[utoipa::path(delete, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/{assetType}/{assetName}/versions/{version}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetType" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200), (status = 204)))]
pub async fn delete_version(State(st): State<AppState>, caller: Extension<Caller>, path: Path<VersionPath>, q: CommonQuery) -> ArmResult {
    arm::delete_version(State(st), caller, path, q).await
}

#[utoipa::path(put, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/tempdatarefs/{assetName}/versions/{version}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = TemporaryDataReferenceRequest,
    responses((status = 200, body = BlobReferenceResponse, description = "A fresh upload location and its write SAS, as startPendingUpload"),
        (status = 409, body = ErrorResponse, description = "The version exists already")))]
pub async fn temporary_data_reference(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, name, v)): Path<NamePath>,
    _q: CommonQuery,
    uri: Uri,
    headers: HeaderMap,
    ArmJson(body): ArmJson<TemporaryDataReferenceRequest>,
) -> ArmResult {
    let t = moat_core::assets::asset_named(&body.asset_id, &reg, &name, &v)?.segment();
    if let Some(kind) = body.temporary_data_reference_type.as_deref()
        && kind != "TemporaryBlobReference"
    {
        return Err(Error::invalid(
            "InvalidRequestContent",
            "temporaryDataReferenceType",
            format!("temporaryDataReferenceType must be TemporaryBlobReference, not '{kind}'."),
        )
        .into());
    }
    let request = PendingUploadRequest {
        pending_upload_id: body.temporary_data_reference_id,
        pending_upload_type: Some("TemporaryBlobReference".into()),
    };
    let mut r = st.moat.start_pending_upload(&caller, &sub, &rg, &reg, t, &name, &v, request).await?;
    // The location as the data plane names locations; the SAS URI in the client's addressing.
    r.blob_reference_for_consumption.blob_uri = st.moat.host_style_uri(&r.blob_reference_for_consumption.blob_uri);
    sas_in_clients_addressing(&st.moat, &uri, &headers, &mut r.blob_reference_for_consumption.credential.sas_uri);
    Ok(axum::Json(serde_json::json!({
        "blobReferenceForConsumption": r.blob_reference_for_consumption,
        "temporaryDataReferenceId": r.pending_upload_id,
        "temporaryDataReferenceType": "TemporaryBlobReference",
    }))
    .into_response())
}

#[utoipa::path(post, path = "/mferp/managementfrontend/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.MachineLearningServices/registries/{registryName}/datarefs/{assetName}/versions/{version}", tag = "registry data plane",
    params(("subscriptionId" = String, Path), ("resourceGroupName" = String, Path), ("registryName" = String, Path), ("assetName" = String, Path), ("version" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = DataReferenceRequest,
    responses((status = 200, body = BlobReferenceResponse, description = "A read SAS for the version's files, as datareferences"), (status = 404, body = ErrorResponse)))]
pub async fn data_reference(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, rg, reg, name, v)): Path<NamePath>,
    _q: CommonQuery,
    uri: Uri,
    headers: HeaderMap,
    ArmJson(body): ArmJson<DataReferenceRequest>,
) -> ArmResult {
    let mut r = st.moat.data_reference(&caller, &sub, &rg, &reg, &name, &v, body).await?;
    // The SDK opens the SAS URI as a container and finds the files by the version's location:
    // the SAS URI names the container (the management plane's, the version's folder in it).
    let c = &mut r.blob_reference_for_consumption;
    let public = format!("{}/", st.moat.config().public_url.trim_end_matches('/'));
    if let Some((url, sas)) = c.credential.sas_uri.split_once('?')
        && let Some(rest) = url.strip_prefix(&public)
    {
        let account_and_container: Vec<&str> = rest.splitn(3, '/').take(2).collect();
        c.credential.sas_uri = format!("{public}{}?{sas}", account_and_container.join("/"));
    }
    c.blob_uri = st.moat.host_style_uri(&c.blob_uri);
    sas_in_clients_addressing(&st.moat, &uri, &headers, &mut c.credential.sas_uri);
    Ok(axum::Json(r).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_ids_become_asset_ids() {
        let reg = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/registries/r1";
        let v = asset_id_of(&format!("{reg}/models/m/versions/1")).unwrap();
        assert_eq!((v.id.as_str(), v.segment.as_str(), v.version), ("azureml://registries/r1/models/m/versions/1", "models", true));
        let c = asset_id_of(&format!("{reg}/data/models")).unwrap();
        assert_eq!((c.id.as_str(), c.segment.as_str(), c.version), ("azureml://registries/r1/data/models", "data", false));
        let named_models = asset_id_of(&format!("{reg}/data/models/versions/1")).unwrap();
        assert_eq!(named_models.segment, "data", "data named 'models' is no model");
        assert!(asset_id_of(reg).is_none(), "a registry is no asset");
        assert!(asset_id_of("/subscriptions/s").is_none());
    }
}
