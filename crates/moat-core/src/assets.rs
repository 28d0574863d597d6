//! Registry assets: containers and versions of models, data, code, components and
//! environments, and the upload protocol. `startPendingUpload` hands out a write SAS for a fresh
//! container of the registry's storage; `PUT …/versions/{v}` commits what was uploaded there —
//! it records each file's path, size and sha256 and seals the container, so the version's bytes
//! can never change; `datareferences` hands out a read SAS for a committed version.

use std::collections::BTreeMap;

use moat_policy::actions;
use moat_store::{ListQuery, StoredResource};
use moat_types::ResourceId;
use moat_types::arm::{SystemData, Tags};
use moat_types::assets::{
    AssetContainer, AssetContainerProperties, AssetFile, AssetType, AssetVersion, AssetVersionProperties, BlobReference,
    BlobReferenceResponse, DataReferenceRequest, PendingUploadRequest, SasCredential,
};
use moat_types::names;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::groups::system_data;
use crate::registries::{RegistryDoc, StorageAccountDoc};
use crate::sas::{self, Grant, Permissions};
use crate::{Caller, Error, Listed, Moat, Result, decode, document, new_etag, now_rfc3339};

/// How long an upload SAS lasts.
const UPLOAD_SAS_SECS: i64 = 24 * 3600;
/// How long a download SAS lasts.
const READ_SAS_SECS: i64 = 3600;

/// `ActiveOnly` (default), `ArchivedOnly` or `All`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListViewType {
    ActiveOnly,
    ArchivedOnly,
    All,
}

impl ListViewType {
    /// `ActiveOnly`, `ArchivedOnly` or `All`, in any case; also as azure-ai-ml 1.35.2 sends
    /// them when listing a registry's containers (`ListViewType.ACTIVE_ONLY`: its enum's name,
    /// not its value).
    pub fn parse(s: Option<&str>) -> Result<ListViewType> {
        let word = |s: &str| {
            let s = s.strip_prefix("ListViewType.").unwrap_or(s);
            if s.contains('_') && s.chars().all(|c| c.is_ascii_uppercase() || c == '_') { s.replace('_', "") } else { s.to_string() }
        };
        match s.map(word).map(|w| w.to_ascii_lowercase()).as_deref() {
            None | Some("activeonly") => Ok(ListViewType::ActiveOnly),
            Some("archivedonly") => Ok(ListViewType::ArchivedOnly),
            Some("all") => Ok(ListViewType::All),
            Some(other) => Err(Error::invalid(
                "InvalidListViewType",
                "listViewType",
                format!("listViewType must be ActiveOnly, ArchivedOnly or All, not '{other}'."),
            )),
        }
    }

    fn shows(self, archived: bool) -> bool {
        match self {
            ListViewType::ActiveOnly => !archived,
            ListViewType::ArchivedOnly => archived,
            ListViewType::All => true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ContainerDoc {
    asset_type: AssetType,
    name: String,
    description: Option<String>,
    tags: Tags,
    properties: BTreeMap<String, String>,
    is_archived: bool,
    data_type: Option<String>,
    latest_version: Option<String>,
    next_version: String,
    /// How many versions were ever created (orders "latest").
    created: i64,
    system_data: SystemData,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct VersionDoc {
    asset_type: AssetType,
    name: String,
    version: String,
    /// The properties as given, with the mutable fields kept current.
    props: AssetVersionProperties,
    files: Vec<AssetFile>,
    /// Where the files are: storage account, container and the path prefix under it.
    storage: Option<(String, String, String)>,
    /// Creation order within the container.
    seq: i64,
    system_data: SystemData,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PendingDoc {
    asset_type: AssetType,
    name: String,
    version: String,
    account: String,
    container: String,
    expires: String,
}

/// Asset names: 1–255 letters, digits, `-`, `_`, `.`, starting with a letter or digit.
pub fn valid_asset_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s != "."
        && s != ".."
}

/// Versions: 1–64 of the same characters (so never a path separator or `..`).
pub fn valid_version(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn asset_type(segment: &str) -> Result<AssetType> {
    AssetType::parse(segment).ok_or_else(|| {
        Error::not_found(
            "NoRegisteredProviderFound",
            format!("'{segment}' is not an asset type; use models, data, codes, components or environments."),
        )
    })
}

/// The type of the version asset ID `asset_id` (`azureml://registries/<r>/<type>/<name>/versions/<v>`)
/// names, which must be version `version` of `name` in `registry` (a request path's); 400
/// `InvalidAssetId` otherwise.
pub fn asset_named(asset_id: &str, registry: &str, name: &str, version: &str) -> Result<AssetType> {
    let bad = |m: String| Error::invalid("InvalidAssetId", "assetId", m);
    let shape = || bad(format!("'{asset_id}' is not azureml://registries/<r>/<type>/<name>/versions/<v>."));
    let rest = asset_id.strip_prefix("azureml://registries/").ok_or_else(shape)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [r, ty, n, "versions", v] = parts.as_slice() else { return Err(shape()) };
    if !r.eq_ignore_ascii_case(registry) || *n != name || *v != version {
        return Err(bad(format!("'{asset_id}' names another asset than the request path.")));
    }
    asset_type(ty)
}

fn not_found(t: AssetType, name: &str, version: Option<&str>) -> Error {
    match version {
        Some(v) => Error::not_found("ResourceNotFound", format!("The {} '{name}' has no version '{v}'.", t.segment())),
        None => Error::not_found("ResourceNotFound", format!("The {} '{name}' could not be found.", t.segment())),
    }
}

/// The fields of `p` that belong to no asset of type `t`.
fn foreign_fields(t: AssetType, p: &AssetVersionProperties) -> Vec<&'static str> {
    let mut bad = Vec::new();
    let mut check = |present: bool, field: &'static str, types: &[AssetType]| {
        if present && !types.contains(&t) {
            bad.push(field);
        }
    };
    use AssetType::*;
    check(p.model_type.is_some(), "modelType", &[Models]);
    check(p.model_uri.is_some(), "modelUri", &[Models]);
    check(p.flavors.is_some(), "flavors", &[Models]);
    check(p.job_name.is_some(), "jobName", &[Models]);
    check(p.data_type.is_some(), "dataType", &[Data]);
    check(p.data_uri.is_some(), "dataUri", &[Data]);
    check(p.referenced_uris.is_some(), "referencedUris", &[Data]);
    check(p.code_uri.is_some(), "codeUri", &[Codes]);
    check(p.component_spec.is_some(), "componentSpec", &[Components]);
    check(p.image.is_some(), "image", &[Environments]);
    check(p.build.is_some(), "build", &[Environments]);
    check(p.conda_file.is_some(), "condaFile", &[Environments]);
    check(p.os_type.is_some(), "osType", &[Environments]);
    check(p.auto_rebuild.is_some(), "autoRebuild", &[Environments]);
    check(p.inference_config.is_some(), "inferenceConfig", &[Environments]);
    bad
}

/// The uploaded location a version names, if it has files: an environment's is its build
/// context.
fn content_uri(t: AssetType, p: &AssetVersionProperties) -> Option<&str> {
    match t {
        AssetType::Models => p.model_uri.as_deref(),
        AssetType::Data => p.data_uri.as_deref(),
        AssetType::Codes => p.code_uri.as_deref(),
        AssetType::Environments => p.build.as_ref().and_then(|b| b.get("contextUri")).and_then(|u| u.as_str()),
        AssetType::Components => None,
    }
}

/// The field that names a version's uploaded location, for error targets.
fn content_field(t: AssetType) -> &'static str {
    match t {
        AssetType::Models => "properties.modelUri",
        AssetType::Data => "properties.dataUri",
        AssetType::Environments => "properties.build.contextUri",
        _ => "properties.codeUri",
    }
}

/// Checks an environment's `build` (`{contextUri, dockerfilePath}`, nothing else) and fills in
/// the default Dockerfile path, so that the same context given with and without it is the same
/// content.
fn normalise_build(build: &mut serde_json::Value) -> Result<()> {
    let bad = |target: &str, m: String| Error::invalid("InvalidRequestContent", target, m);
    let Some(b) = build.as_object_mut() else {
        return Err(bad("properties.build", "build must be an object: {\"contextUri\": …, \"dockerfilePath\": …}.".into()));
    };
    if let Some(k) = b.keys().find(|k| !["contextUri", "dockerfilePath"].contains(&k.as_str())) {
        return Err(bad(&format!("properties.build.{k}"), format!("'{k}' is not a field of build: contextUri and dockerfilePath are.")));
    }
    if b.get("contextUri").and_then(|u| u.as_str()).is_none_or(|u| u.is_empty()) {
        return Err(bad(
            "properties.build.contextUri",
            "build needs contextUri: the blobUri that startPendingUpload returned, with the build context uploaded under it.".into(),
        ));
    }
    let path = match b.get("dockerfilePath") {
        None | Some(serde_json::Value::Null) => moat_types::assets::dockerfile_path(None),
        Some(serde_json::Value::String(p)) => moat_types::assets::dockerfile_path(Some(p)),
        Some(_) => return Err(bad("properties.build.dockerfilePath", "dockerfilePath must be a string.".into())),
    };
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(bad(
            "properties.build.dockerfilePath",
            format!("'{path}' is not a path inside the build context: no leading '/', no empty, '.' or '..' segments."),
        ));
    }
    b.insert("dockerfilePath".into(), serde_json::Value::String(path));
    Ok(())
}

/// The fields that make up a version's content: they can never change.
fn content_of(t: AssetType, p: &AssetVersionProperties) -> serde_json::Value {
    let canonical = |s: &Option<String>| s.as_ref().map(|v| v.trim_end_matches('/').to_string());
    serde_json::json!({
        "type": t.segment(),
        "modelType": p.model_type, "modelUri": canonical(&p.model_uri),
        // The data plane answers `{}` for a model without flavors; given back, it is the same.
        "flavors": p.flavors.as_ref().filter(|f| f.as_object().is_none_or(|o| !o.is_empty())),
        "dataType": p.data_type, "dataUri": canonical(&p.data_uri), "referencedUris": p.referenced_uris,
        "codeUri": canonical(&p.code_uri), "componentSpec": p.component_spec,
        "image": p.image, "build": p.build.as_ref().map(|b| {
            // As normalise_build records it (a version stored before it did has no default).
            let mut b = b.clone();
            if let Some(u) = b.get_mut("contextUri") {
                *u = serde_json::json!(u.as_str().map(|s| s.trim_end_matches('/')));
            }
            if let Some(o) = b.as_object_mut() {
                let path = o.get("dockerfilePath").and_then(|d| d.as_str()).map(|d| moat_types::assets::dockerfile_path(Some(d)));
                o.insert("dockerfilePath".into(), serde_json::json!(path.unwrap_or_else(|| moat_types::assets::dockerfile_path(None))));
            }
            b
        }),
        "condaFile": p.conda_file, "osType": p.os_type, "inferenceConfig": p.inference_config,
    })
}

fn validate_version_body(t: AssetType, p: &AssetVersionProperties) -> Result<()> {
    if let Some(f) = foreign_fields(t, p).first() {
        return Err(Error::invalid(
            "InvalidRequestContent",
            format!("properties.{f}"),
            format!("'{f}' does not belong to {}.", t.segment()),
        ));
    }
    if let Some(tags) = &p.tags {
        names::validate_tags("properties.tags", tags)?;
    }
    match t {
        AssetType::Models => {
            if let Some(mt) = &p.model_type {
                let known = ["CustomModel", "MLFlowModel", "TritonModel", "custom_model", "mlflow_model", "triton_model"];
                if !known.iter().any(|k| k.eq_ignore_ascii_case(mt)) {
                    return Err(Error::invalid(
                        "InvalidRequestContent",
                        "properties.modelType",
                        format!("modelType '{mt}' is not CustomModel, MLFlowModel or TritonModel."),
                    ));
                }
            }
        }
        AssetType::Data => {
            let dt = p.data_type.as_deref().ok_or_else(|| {
                Error::invalid(
                    "InvalidRequestContent",
                    "properties.dataType",
                    "A data version needs dataType: uri_file, uri_folder or mltable.",
                )
            })?;
            if !["uri_file", "uri_folder", "mltable"].iter().any(|k| k.eq_ignore_ascii_case(dt)) {
                return Err(Error::invalid(
                    "InvalidRequestContent",
                    "properties.dataType",
                    format!("dataType '{dt}' is not uri_file, uri_folder or mltable."),
                ));
            }
        }
        AssetType::Components => {
            if !p.component_spec.as_ref().is_some_and(|s| s.is_object()) {
                return Err(Error::invalid(
                    "InvalidRequestContent",
                    "properties.componentSpec",
                    "A component version needs componentSpec, the component's specification as an object.",
                ));
            }
        }
        AssetType::Environments => {
            if p.image.is_none() && p.build.is_none() {
                return Err(Error::invalid(
                    "InvalidRequestContent",
                    "properties.image",
                    "An environment version needs an image or a build context.",
                ));
            }
            if p.image.is_some() && p.build.is_some() {
                return Err(Error::invalid(
                    "InvalidRequestContent",
                    "properties.build",
                    "An environment version has an image or a build context, not both.",
                ));
            }
            if let Some(os) = &p.os_type
                && !["Linux", "Windows"].iter().any(|k| k.eq_ignore_ascii_case(os))
            {
                return Err(Error::invalid(
                    "InvalidRequestContent",
                    "properties.osType",
                    format!("osType '{os}' is not Linux or Windows."),
                ));
            }
        }
        AssetType::Codes => {}
    }
    if t.has_files() && content_uri(t, p).is_none() {
        let field = content_field(t);
        return Err(Error::invalid(
            "InvalidRequestContent",
            field,
            format!(
                "A {} version needs {}: the blobUri that startPendingUpload returned, with the files uploaded under it.",
                t.segment(),
                field.trim_start_matches("properties.")
            ),
        ));
    }
    Ok(())
}

fn summary(versions: &[VersionDoc]) -> (Option<String>, String) {
    let latest = versions.iter().filter(|v| !v.props.is_archived.unwrap_or(false)).max_by_key(|v| v.seq).map(|v| v.version.clone());
    let next = versions.iter().filter_map(|v| v.version.parse::<u64>().ok()).max().map(|n| n + 1).unwrap_or(1);
    (latest, next.to_string())
}

/// [`summary`] after `created` joins versions whose summary was `latest` and `next`: the new
/// version has the highest sequence number, so it is the latest unless archived, and the next
/// number is past it if it is a number.
fn summary_after_create(latest: Option<String>, next: &str, created: &VersionDoc) -> (Option<String>, String) {
    let latest = if created.props.is_archived.unwrap_or(false) { latest } else { Some(created.version.clone()) };
    let next = next.parse::<u64>().unwrap_or(1).max(created.version.parse::<u64>().map(|n| n + 1).unwrap_or(1));
    (latest, next.to_string())
}

impl Moat {
    fn asset_ids(&self, group: &str, registry: &str, t: AssetType, name: &str) -> (ResourceId, ResourceId) {
        let reg = ResourceId::provider(&self.subscription_id, group, "Microsoft.MachineLearningServices", "registries", registry);
        let container = reg.child(t.segment(), name);
        (reg, container)
    }

    /// What every asset operation starts with: the subscription checked, the type parsed, and
    /// the IDs of the registry and of the asset's container.
    /// Asset operations are the registry's `amlregistry` plane: network admission comes first.
    async fn resolve(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
    ) -> Result<(AssetType, ResourceId, ResourceId)> {
        self.check_subscription(sub)?;
        let t = asset_type(t)?;
        let (reg, container) = self.asset_ids(group, registry, t, name);
        self.admit_registry(caller, &reg).await?;
        Ok((t, reg, container))
    }

    async fn admit_registry(&self, caller: &Caller, reg: &ResourceId) -> Result<()> {
        let hidden = || Error::not_found("ResourceNotFound", format!("The registry '{}' could not be found.", reg.name()));
        self.admit(Some(caller), &caller.client, &caller.origin, crate::network::NetTarget::Registry(reg), hidden).await
    }

    async fn registry_for_assets(&self, reg: &ResourceId) -> Result<(RegistryDoc, StoredResource)> {
        let row = self
            .store
            .get_resource(&reg.key())
            .await?
            .ok_or_else(|| Error::not_found("ResourceNotFound", format!("The registry '{}' could not be found.", reg.name())))?;
        Ok((decode(&row)?, row))
    }

    fn render_container(&self, id: &str, d: &ContainerDoc) -> AssetContainer {
        AssetContainer {
            id: Some(id.to_string()),
            name: Some(d.name.clone()),
            resource_type: Some(format!("Microsoft.MachineLearningServices/registries/{}", d.asset_type.segment())),
            properties: Some(AssetContainerProperties {
                description: d.description.clone(),
                tags: Some(d.tags.clone()),
                properties: Some(d.properties.clone()),
                is_archived: Some(d.is_archived),
                latest_version: d.latest_version.clone(),
                next_version: Some(d.next_version.clone()),
                data_type: d.data_type.clone(),
                provisioning_state: Some("Succeeded".into()),
            }),
            system_data: Some(d.system_data.clone()),
        }
    }

    fn render_version(&self, id: &str, d: &VersionDoc) -> AssetVersion {
        let mut props = d.props.clone();
        props.files = if d.asset_type.has_files() || d.storage.is_some() { Some(d.files.clone()) } else { None };
        props.provisioning_state = Some("Succeeded".into());
        props.is_archived = Some(props.is_archived.unwrap_or(false));
        props.is_anonymous = Some(false);
        AssetVersion {
            id: Some(id.to_string()),
            name: Some(d.version.clone()),
            resource_type: Some(format!("Microsoft.MachineLearningServices/registries/{}/versions", d.asset_type.segment())),
            properties: Some(props),
            system_data: Some(d.system_data.clone()),
        }
    }

    async fn versions_of(&self, container: &ResourceId) -> Result<Vec<VersionDoc>> {
        let kind = format!("{}/versions", container.resource_type()).to_ascii_lowercase();
        let prefix = format!("{}/versions/", container.key());
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let rows = self
                .store
                .list_resources(&ListQuery {
                    kind: Some(&kind),
                    subscription_id: &self.subscription_id,
                    group_key: None,
                    id_prefix: Some(&prefix),
                    after_key: after.as_deref(),
                    limit: 500,
                })
                .await?;
            for r in &rows {
                out.push(decode::<VersionDoc>(r)?);
            }
            match rows.last() {
                Some(l) if rows.len() == 500 => after = Some(l.id_key()),
                _ => return Ok(out),
            }
        }
    }

    /// Lists asset containers of one type.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_asset_containers(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        view: ListViewType,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Listed<AssetContainer>> {
        let (t, reg, _) = self.resolve(caller, sub, group, registry, t, "x").await?;
        self.authorize_visible(caller, actions::REGISTRY_ASSETS_READ, actions::REGISTRY_ASSETS_READ, &reg, || {
            Error::not_found("ResourceNotFound", format!("The registry '{registry}' could not be found."))
        })
        .await?;
        self.registry_for_assets(&reg).await?;
        let kind = format!("Microsoft.MachineLearningServices/registries/{}", t.segment()).to_ascii_lowercase();
        let prefix = format!("{}/{}/", reg.key(), t.segment());
        self.list_paged(&kind, None, Some(&prefix), after, limit, |row| {
            let d: ContainerDoc = decode(row)?;
            Ok(view.shows(d.is_archived).then(|| self.render_container(&row.id, &d)))
        })
        .await
    }

    pub async fn get_asset_container(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
    ) -> Result<AssetContainer> {
        let (t, _, id) = self.resolve(caller, sub, group, registry, t, name).await?;
        let (d, row) = self.read_visible::<ContainerDoc>(caller, actions::REGISTRY_ASSETS_READ, &id, || not_found(t, name, None)).await?;
        Ok(self.render_container(&row.id, &d))
    }

    /// Creates or updates a container (description, tags, properties, isArchived).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_asset_container(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
        body: AssetContainer,
    ) -> Result<(AssetContainer, bool)> {
        let (t, reg, id) = self.resolve(caller, sub, group, registry, t, name).await?;
        self.authorize_visible(caller, actions::REGISTRY_ASSETS_WRITE, actions::REGISTRY_ASSETS_READ, &id, || not_found(t, name, None))
            .await?;
        if !valid_asset_name(name) {
            return Err(Error::invalid(
                "InvalidAssetName",
                "name",
                format!("'{name}' is not an asset name: 1 to 255 letters, digits, '-', '_' or '.', starting with a letter or digit."),
            ));
        }
        self.registry_for_assets(&reg).await?;
        let p = body.properties.unwrap_or_default();
        if let Some(tags) = &p.tags {
            names::validate_tags("properties.tags", tags)?;
        }
        if p.data_type.is_some() && t != AssetType::Data {
            return Err(Error::invalid(
                "InvalidRequestContent",
                "properties.dataType",
                format!("'dataType' does not belong to {}.", t.segment()),
            ));
        }
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let existing = tx.get_resource(&id.key()).await?;
        let created = existing.is_none();
        let doc = match &existing {
            Some(row) => {
                let old: ContainerDoc = decode(row)?;
                ContainerDoc {
                    description: p.description.or(old.description.clone()),
                    tags: p.tags.unwrap_or(old.tags.clone()),
                    properties: p.properties.unwrap_or(old.properties.clone()),
                    is_archived: p.is_archived.unwrap_or(old.is_archived),
                    system_data: system_data(Some(caller), Some(&old.system_data), &now),
                    ..old
                }
            }
            None => ContainerDoc {
                asset_type: t,
                name: name.to_string(),
                description: p.description,
                tags: p.tags.unwrap_or_default(),
                properties: p.properties.unwrap_or_default(),
                is_archived: p.is_archived.unwrap_or(false),
                data_type: p.data_type,
                latest_version: None,
                next_version: "1".into(),
                created: 0,
                system_data: system_data(Some(caller), None, &now),
            },
        };
        match existing {
            Some(row) => {
                if !tx.update_resource(&document(&id, &doc, new_etag(), &row.created_at, &now)?, &row.etag).await? {
                    return Err(Error::PreconditionFailed { message: "The container changed concurrently; retry.".into() });
                }
            }
            None => tx.insert_resource(&document(&id, &doc, new_etag(), &now, &now)?).await?,
        }
        tx.commit().await?;
        Ok((self.render_container(id.as_str(), &doc), created))
    }

    /// Deletes a container that has no versions left.
    pub async fn delete_asset_container(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
    ) -> Result<bool> {
        let (t, _, id) = self.resolve(caller, sub, group, registry, t, name).await?;
        self.authorize_visible(caller, actions::REGISTRY_ASSETS_DELETE, actions::REGISTRY_ASSETS_READ, &id, || not_found(t, name, None))
            .await?;
        if !self.versions_of(&id).await?.is_empty() {
            return Err(Error::conflict(
                "ContainerHasVersions",
                format!("The {} '{name}' still has versions; delete them first.", t.segment()),
            ));
        }
        let mut tx = self.store.write().await?;
        let existed = tx.delete_resource(&id.key()).await?;
        tx.commit().await?;
        Ok(existed)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn list_asset_versions(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
        view: ListViewType,
        after: Option<&str>,
        limit: i64,
        missing_is_empty: bool,
    ) -> Result<Listed<AssetVersion>> {
        let (t, reg, id) = self.resolve(caller, sub, group, registry, t, name).await?;
        // The registry data plane lists no versions of a name never used (what Azure's SDK asks
        // before a first create); the management plane says there is no such container.
        if missing_is_empty {
            self.authorize_visible(caller, actions::REGISTRY_ASSETS_READ, actions::REGISTRY_ASSETS_READ, &id, || not_found(t, name, None))
                .await?;
            if self.store.get_resource(&id.key()).await?.is_none() {
                // Of a registry that exists: a registry that does not is a 404 still.
                self.registry_for_assets(&reg).await?;
                return Ok(Listed { items: Vec::new(), next_after: None });
            }
        } else {
            self.read_visible::<ContainerDoc>(caller, actions::REGISTRY_ASSETS_READ, &id, || not_found(t, name, None)).await?;
        }
        let kind = format!("{}/versions", id.resource_type()).to_ascii_lowercase();
        let prefix = format!("{}/versions/", id.key());
        self.list_paged(&kind, None, Some(&prefix), after, limit, |row| {
            let d: VersionDoc = decode(row)?;
            Ok(view.shows(d.props.is_archived.unwrap_or(false)).then(|| self.render_version(&row.id, &d)))
        })
        .await
    }

    /// The versions of `name` by creation time, newest first when `newest_first`, a page of
    /// `limit` from position `offset`, and where the next page starts: the data plane's
    /// `$orderBy=createdtime desc|asc`, which azure-ai-ml asks (with `$top=1`) to find a name's
    /// latest version. Reads every version of the name to sort them.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_asset_versions_by_creation(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
        view: ListViewType,
        newest_first: bool,
        offset: usize,
        limit: i64,
    ) -> Result<(Vec<AssetVersion>, Option<usize>)> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_asset_versions(caller, sub, group, registry, t, name, view, after.as_deref(), 1000, true).await?;
            all.extend(page.items);
            match page.next_after {
                Some(a) => after = Some(a),
                None => break,
            }
        }
        let created = |v: &AssetVersion| v.system_data.as_ref().and_then(|s| s.created_at.clone()).unwrap_or_default();
        all.sort_by(|a, b| created(a).cmp(&created(b)).then_with(|| a.name.cmp(&b.name)));
        if newest_first {
            all.reverse();
        }
        let total = all.len();
        let page: Vec<AssetVersion> = all.into_iter().skip(offset).take(limit.max(1) as usize).collect();
        let next = offset + page.len();
        Ok((page, (next < total).then_some(next)))
    }

    /// One version, as its JSON answer (rendered once per stored document).
    #[allow(clippy::too_many_arguments)]
    pub async fn get_asset_version_json(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
        version: &str,
    ) -> Result<bytes::Bytes> {
        let (t, _, cid) = self.resolve(caller, sub, group, registry, t, name).await?;
        let id = cid.child("versions", version);
        let row = self.read_visible_row(caller, actions::REGISTRY_ASSETS_READ, &id, || not_found(t, name, Some(version))).await?;
        self.rendered.get_or(&row, || Ok(self.render_version(&row.id, &decode::<VersionDoc>(&row)?)))
    }

    /// Creates a version (committing uploaded files) or updates its mutable fields.
    /// Returns the version and whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_asset_version(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
        version: &str,
        body: AssetVersion,
    ) -> Result<(AssetVersion, bool)> {
        let (t, reg, cid) = self.resolve(caller, sub, group, registry, t, name).await?;
        let id = cid.child("versions", version);
        self.authorize_visible(caller, actions::REGISTRY_ASSETS_WRITE, actions::REGISTRY_ASSETS_READ, &id, || {
            not_found(t, name, Some(version))
        })
        .await?;
        if !valid_asset_name(name) {
            return Err(Error::invalid(
                "InvalidAssetName",
                "name",
                format!("'{name}' is not an asset name: 1 to 255 letters, digits, '-', '_' or '.', starting with a letter or digit."),
            ));
        }
        if !valid_version(version) {
            return Err(Error::invalid(
                "InvalidAssetVersion",
                "version",
                format!("'{version}' is not a version: 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit."),
            ));
        }
        let (regdoc, _) = self.registry_for_assets(&reg).await?;
        let mut p = body.properties.unwrap_or_default();
        // A location given in the host-style form the data plane answers with is the same
        // location as its path-style form, which versions record.
        for uri in [&mut p.model_uri, &mut p.data_uri, &mut p.code_uri].into_iter().flatten() {
            *uri = self.path_style_uri(uri);
        }
        if let Some(u) = p.build.as_mut().and_then(|b| b.get_mut("contextUri"))
            && let Some(s) = u.as_str()
        {
            *u = serde_json::Value::String(self.path_style_uri(s));
        }
        p.files = None;
        p.provisioning_state = None;
        p.is_anonymous = None;
        p.environment_type = None;
        validate_version_body(t, &p)?;
        if let Some(b) = p.build.as_mut() {
            normalise_build(b)?;
        }
        // An image in the registry's own container registry is pinned to its digest.
        let pin = match (t, p.image.clone()) {
            (AssetType::Environments, Some(image)) => self.resolve_environment_image(caller, &regdoc.container_registry, &image).await?,
            _ => None,
        };
        if let Some(pin) = &pin {
            p.image = Some(pin.image.clone());
        }
        if let Some(existing) = self.store.get_resource(&id.key()).await? {
            let old: VersionDoc = decode(&existing)?;
            if content_of(t, &old.props) != content_of(t, &p) {
                return Err(Error::conflict(
                    "AssetContentImmutable",
                    format!(
                        "Asset paths cannot be updated. Version '{version}' of {} '{name}' exists with other content, and a version's content never changes: create a new version.",
                        t.segment()
                    ),
                ));
            }
            return self.update_version_fields(caller, &id, &cid, existing, old, p).await.map(|v| (v, false));
        }
        // A new version: check where its files were uploaded.
        let mut storage = match content_uri(t, &p) {
            Some(uri) => Some(self.pending_location(&regdoc, &reg, t, name, version, uri).await?),
            None => None,
        };
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        if tx.get_resource(&id.key()).await?.is_some() {
            return Err(Error::conflict(
                "AssetContentImmutable",
                format!("Version '{version}' of {} '{name}' was created concurrently.", t.segment()),
            ));
        }
        if let Some(pin) = &pin {
            // Checked again inside the transaction that pins it: a delete cannot slip in between.
            if tx.oci_manifest(&pin.acr, &pin.repo, &pin.digest).await?.is_none() {
                return Err(Error::conflict("ImageNotFound", format!("image '{}' was deleted meanwhile; push it again", pin.image)));
            }
            tx.oci_pin(&pin.acr, &pin.repo, &pin.digest, &id.key()).await?;
        }
        // Seal, then list, in one transaction: no upload can slip in between what is recorded
        // and what is served.
        let mut files = Vec::new();
        if let Some((account, container, prefix)) = storage.as_mut() {
            if tx.container_sealed(account, container).await? == Some(true) {
                return Err(Error::conflict(
                    "UploadAlreadyCommitted",
                    "These uploaded files belong to another version already, or their upload location expired unused; start a new pending upload.",
                ));
            }
            tx.seal_container(account, container).await?;
            let dir = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
            let file = |path: &str, b: &moat_store::BlobRow| AssetFile {
                path: path.to_string(),
                size: b.size as u64,
                sha256: b.digest.strip_prefix("sha256:").unwrap_or(&b.digest).to_string(),
            };
            for b in tx.list_all_blobs(account, container, &dir).await? {
                files.push(file(&b.name[dir.len()..], &b));
            }
            // A URI may name one uploaded file rather than a folder, as Azure's do for uri_file
            // data and single-file models: the version is that file, in the folder it was
            // uploaded to (which is what datareferences and downloads then look in).
            // Not for a build context, which is a folder.
            if files.is_empty()
                && !prefix.is_empty()
                && t != AssetType::Environments
                && let Some(b) = tx.blob(account, container, prefix).await?
            {
                let (folder, name) = prefix.rsplit_once('/').unwrap_or(("", prefix.as_str()));
                files.push(file(name, &b));
                *prefix = folder.to_string();
            }
            if files.is_empty() {
                return Err(Error::invalid(
                    "InvalidAssetUri",
                    content_field(t),
                    format!("Nothing was uploaded under '{}'.", content_uri(t, &p).unwrap_or_default()),
                ));
            }
            // A build context without its Dockerfile could never be built.
            if let Some(dockerfile) = p.build.as_ref().and_then(|b| b.get("dockerfilePath")).and_then(|d| d.as_str())
                && !files.iter().any(|f| f.path == dockerfile)
            {
                return Err(Error::invalid(
                    "DockerfileNotFound",
                    "properties.build.dockerfilePath",
                    format!(
                        "The build context uploaded under '{}' has no file '{dockerfile}'; upload it, or name the Dockerfile with build.dockerfilePath.",
                        content_uri(t, &p).unwrap_or_default()
                    ),
                ));
            }
        }
        let container_row = tx.get_resource(&cid.key()).await?;
        let mut cdoc: ContainerDoc = match &container_row {
            Some(r) => decode(r)?,
            None => ContainerDoc {
                asset_type: t,
                name: name.to_string(),
                description: None,
                tags: Tags::new(),
                properties: BTreeMap::new(),
                is_archived: false,
                data_type: p.data_type.clone(),
                latest_version: None,
                next_version: "1".into(),
                created: 0,
                system_data: system_data(Some(caller), None, &now),
            },
        };
        cdoc.created += 1;
        let doc = VersionDoc {
            asset_type: t,
            name: name.to_string(),
            version: version.to_string(),
            props: p,
            files,
            storage,
            seq: cdoc.created,
            system_data: system_data(Some(caller), None, &now),
        };
        // A new version changes the summary incrementally, without reading every other version.
        (cdoc.latest_version, cdoc.next_version) = summary_after_create(cdoc.latest_version.take(), &cdoc.next_version, &doc);
        tx.insert_resource(&document(&id, &doc, new_etag(), &now, &now)?).await?;
        match container_row {
            Some(r) => {
                if !tx.update_resource(&document(&cid, &cdoc, new_etag(), &r.created_at, &now)?, &r.etag).await? {
                    return Err(Error::PreconditionFailed { message: "The container changed concurrently; retry.".into() });
                }
            }
            None => tx.insert_resource(&document(&cid, &cdoc, new_etag(), &now, &now)?).await?,
        }
        tx.commit().await?;
        Ok((self.render_version(id.as_str(), &doc), true))
    }

    async fn update_version_fields(
        &self,
        caller: &Caller,
        id: &ResourceId,
        cid: &ResourceId,
        row: StoredResource,
        old: VersionDoc,
        p: AssetVersionProperties,
    ) -> Result<AssetVersion> {
        let now = now_rfc3339();
        let mut props = old.props.clone();
        props.description = p.description.or(props.description);
        props.tags = p.tags.or(props.tags);
        props.properties = p.properties.or(props.properties);
        props.stage = p.stage.or(props.stage);
        props.is_archived = p.is_archived.or(props.is_archived);
        if props == old.props {
            // The same PUT again (a retry, or `create` run twice): nothing to write.
            return Ok(self.render_version(id.as_str(), &old));
        }
        let archived_changed = props.is_archived.unwrap_or(false) != old.props.is_archived.unwrap_or(false);
        let doc = VersionDoc { props, system_data: system_data(Some(caller), Some(&old.system_data), &now), ..old };
        let mut tx = self.store.write().await?;
        if !tx.update_resource(&document(id, &doc, new_etag(), &row.created_at, &now)?, &row.etag).await? {
            return Err(Error::PreconditionFailed { message: "The version changed concurrently; retry.".into() });
        }
        // Only archiving or restoring moves latestVersion (nextVersion follows version names).
        if archived_changed {
            self.refresh_container(&mut tx, cid, Some(&doc), None, &now).await?;
        }
        tx.commit().await?;
        Ok(self.render_version(id.as_str(), &doc))
    }

    /// Recomputes latestVersion and nextVersion with `changed` replacing, or `removed` taken
    /// out of, what the store holds.
    async fn refresh_container(
        &self,
        tx: &mut moat_store::WriteTx,
        cid: &ResourceId,
        changed: Option<&VersionDoc>,
        removed: Option<&str>,
        now: &str,
    ) -> Result<()> {
        let Some(row) = tx.get_resource(&cid.key()).await? else { return Ok(()) };
        let mut cdoc: ContainerDoc = decode(&row)?;
        let mut versions: Vec<VersionDoc> =
            self.versions_of(cid).await?.into_iter().filter(|v| Some(v.version.as_str()) != removed).collect();
        if let Some(c) = changed {
            versions.retain(|v| v.version != c.version);
            versions.push(c.clone());
        }
        (cdoc.latest_version, cdoc.next_version) = summary(&versions);
        if !tx.update_resource(&document(cid, &cdoc, new_etag(), &row.created_at, now)?, &row.etag).await? {
            return Err(Error::PreconditionFailed { message: "The container changed concurrently; retry.".into() });
        }
        Ok(())
    }

    /// The pending upload location a version names: checked to be one that startPendingUpload
    /// handed out for this very registry, asset and version, and not expired.
    async fn pending_location(
        &self,
        reg: &RegistryDoc,
        reg_id: &ResourceId,
        t: AssetType,
        name: &str,
        version: &str,
        uri: &str,
    ) -> Result<(String, String, String)> {
        let bad = |msg: String| Error::invalid("InvalidAssetUri", content_field(t), msg);
        let base = format!("{}/", self.config.public_url);
        let rest = uri.strip_prefix(&base).ok_or_else(|| {
            bad(format!("'{uri}' is not a location of this registry's storage; upload through startPendingUpload first."))
        })?;
        let rest = moat_types::uri::percent_decode(rest, false).ok_or_else(|| bad(format!("'{uri}' is not valid percent-encoding.")))?;
        let mut parts = rest.splitn(3, '/');
        let account = parts.next().unwrap_or_default().to_string();
        let container = parts.next().unwrap_or_default().to_string();
        let prefix = parts.next().unwrap_or_default().trim_end_matches('/').to_string();
        let owns = reg.regions.iter().flat_map(|r| &r.storage_accounts).any(|s| s.name == account);
        if !owns {
            return Err(bad(format!("'{uri}' is not in a storage account of registry '{}'.", reg.name)));
        }
        let pending_id = reg_id.child("pendingUploads", &container);
        let pending: PendingDoc = match self.store.get_resource(&pending_id.key()).await? {
            Some(r) => decode(&r)?,
            None if self.store.container_sealed(&account, &container).await? == Some(true) => {
                return Err(bad(format!(
                    "'{uri}' is no longer an upload location: a version was committed from it, or it expired unused. Start a new pending upload."
                )));
            }
            None => return Err(bad(format!("'{uri}' was not handed out by startPendingUpload."))),
        };
        if pending.account != account || pending.asset_type != t || pending.name != name || pending.version != version {
            return Err(bad(format!(
                "'{uri}' was handed out for {} '{}' version '{}', not this version.",
                pending.asset_type.segment(),
                pending.name,
                pending.version
            )));
        }
        let expired = OffsetDateTime::parse(&pending.expires, &time::format_description::well_known::Rfc3339)
            .map(|e| e < OffsetDateTime::now_utc())
            .unwrap_or(true);
        if expired {
            return Err(bad(format!("The upload location '{uri}' expired at {}; start a new pending upload.", pending.expires)));
        }
        Ok((account, container, prefix))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn delete_asset_version(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
        version: &str,
    ) -> Result<bool> {
        let (t, reg, cid) = self.resolve(caller, sub, group, registry, t, name).await?;
        let id = cid.child("versions", version);
        self.authorize_visible(caller, actions::REGISTRY_ASSETS_DELETE, actions::REGISTRY_ASSETS_READ, &id, || {
            not_found(t, name, Some(version))
        })
        .await?;
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        // Where its files were uploaded (a document that does not decode keeps them).
        let doc = tx.get_resource(&id.key()).await?.and_then(|row| decode::<VersionDoc>(&row).ok());
        let existed = tx.delete_resource(&id.key()).await?;
        if existed {
            tx.oci_unpin(&id.key()).await?;
            // Its upload location is emptied with it (sealed, it served this version only); the bytes
            // go at the next garbage collection unless another blob or image has equal ones.
            if let Some((account, container, _)) = doc.and_then(|d| d.storage) {
                tx.empty_container(&account, &container).await?;
                tx.delete_resource(&reg.child("pendingUploads", &container).key()).await?;
            }
            self.refresh_container(&mut tx, &cid, None, Some(version), &now).await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    /// Upload locations handed out by `startPendingUpload` and never committed, with nothing
    /// written to them since `cutoff` (RFC 3339, the upload TTL ago): emptied and sealed (a
    /// write SAS still valid for one cannot fill it again), and forgotten, so that their bytes
    /// can be garbage collected. Returns how many.
    pub(crate) async fn expire_pending_uploads(&self, cutoff: &str) -> Result<usize> {
        let kind = "microsoft.machinelearningservices/registries/pendinguploads";
        let mut after: Option<String> = None;
        let mut expired = 0;
        loop {
            let page = self
                .store
                .list_resources(&moat_store::ListQuery {
                    kind: Some(kind),
                    subscription_id: &self.subscription_id,
                    group_key: None,
                    id_prefix: None,
                    after_key: after.as_deref(),
                    limit: 500,
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id_key());
            for row in page.iter().filter(|r| r.created_at.as_str() < cutoff) {
                let Ok(p) = decode::<PendingDoc>(row) else { continue };
                if self.store.container_sealed(&p.account, &p.container).await? == Some(true) {
                    // Committed: the record is needed no more (a sealed container answers for
                    // itself), and keeping it would make every round longer.
                    let mut tx = self.store.write().await?;
                    tx.delete_resource(&row.id_key()).await?;
                    tx.commit().await?;
                    continue;
                }
                let mut tx = self.store.write().await?;
                // Checked again under the lock: a commit or a write may have come meanwhile.
                if tx.container_sealed(&p.account, &p.container).await? == Some(true)
                    || tx.container_last_write(&p.account, &p.container).await?.is_some_and(|t| t.as_str() >= cutoff)
                {
                    continue;
                }
                let now = now_rfc3339();
                tx.empty_container(&p.account, &p.container).await?;
                tx.ensure_container(&p.account, &p.container, &now).await?;
                tx.seal_container(&p.account, &p.container).await?;
                tx.delete_resource(&row.id_key()).await?;
                tx.commit().await?;
                expired += 1;
            }
        }
        if expired > 0 {
            tracing::info!(expired, "expired upload locations never committed");
        }
        Ok(expired)
    }

    /// `startPendingUpload`: a fresh upload location in the registry's primary storage account,
    /// with a write SAS for it.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_pending_upload(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        t: &str,
        name: &str,
        version: &str,
        body: PendingUploadRequest,
    ) -> Result<BlobReferenceResponse> {
        let (t, reg, cid) = self.resolve(caller, sub, group, registry, t, name).await?;
        let id = cid.child("versions", version);
        self.authorize_visible(caller, actions::REGISTRY_ASSETS_WRITE, actions::REGISTRY_ASSETS_READ, &id, || {
            not_found(t, name, Some(version))
        })
        .await?;
        if !t.takes_uploads() {
            return Err(Error::invalid("InvalidRequestContent", "assetType", format!("{} versions have no files to upload.", t.segment())));
        }
        if !valid_asset_name(name) || !valid_version(version) {
            return Err(Error::invalid(
                "InvalidAssetName",
                "name",
                format!("'{name}' version '{version}' is not a valid asset name and version."),
            ));
        }
        if let Some(kind) = body.pending_upload_type.as_deref()
            && !["None", "TemporaryBlobReference"].contains(&kind)
        {
            return Err(Error::invalid(
                "InvalidRequestContent",
                "pendingUploadType",
                format!("pendingUploadType must be None or TemporaryBlobReference, not '{kind}'."),
            ));
        }
        if self.store.get_resource(&id.key()).await?.is_some() {
            return Err(Error::conflict("AssetAlreadyExists", format!("Version '{version}' of {} '{name}' exists already.", t.segment())));
        }
        let (regdoc, _) = self.registry_for_assets(&reg).await?;
        let account = regdoc
            .regions
            .first()
            .and_then(|r| r.storage_accounts.first())
            .map(|s| s.name.clone())
            .ok_or_else(|| Error::Internal("registry without storage".into()))?;
        let container = format!("upload-{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        let now = OffsetDateTime::now_utc();
        let expiry = now + time::Duration::seconds(UPLOAD_SAS_SECS);
        let pending = PendingDoc {
            asset_type: t,
            name: name.to_string(),
            version: version.to_string(),
            account: account.clone(),
            container: container.clone(),
            expires: expiry.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        };
        let stamp = now_rfc3339();
        let mut tx = self.store.write().await?;
        // Under the lock: the registry (and its account) may have been deleted meanwhile.
        crate::blobs::still_there(&mut tx, &account).await?;
        tx.insert_resource(&document(&reg.child("pendingUploads", &container), &pending, new_etag(), &stamp, &stamp)?).await?;
        tx.ensure_container(&account, &container, &stamp).await?;
        tx.commit().await?;
        let blob_reference_for_consumption = self.blob_reference(&regdoc, &account, &container, "", "racwl", expiry).await?;
        Ok(BlobReferenceResponse {
            blob_reference_for_consumption,
            pending_upload_id: Some(body.pending_upload_id.unwrap_or(container)),
            pending_upload_type: Some("TemporaryBlobReference".into()),
        })
    }

    /// A blob URI of a registry's storage (a container, or a folder in it) with a SAS for the
    /// container: what startPendingUpload and datareferences hand out.
    async fn blob_reference(
        &self,
        reg: &RegistryDoc,
        account: &str,
        container: &str,
        prefix: &str,
        permissions: &str,
        expiry: OffsetDateTime,
    ) -> Result<BlobReference> {
        let sa_id = self.storage_id(&reg.managed_group, account);
        let row =
            self.store.get_resource(&sa_id.key()).await?.ok_or_else(|| Error::Internal(format!("storage account {account} missing")))?;
        let sa: StorageAccountDoc = decode(&row)?;
        let grant = Grant {
            account: account.to_string(),
            container: container.to_string(),
            blob: None,
            permissions: Permissions::parse(permissions).unwrap_or_default(),
            start: None,
            expiry,
        };
        let mut blob_uri = format!("{}/{account}/{container}", self.config.public_url);
        if !prefix.is_empty() {
            blob_uri.push('/');
            blob_uri.push_str(prefix);
        }
        Ok(BlobReference {
            blob_uri: blob_uri.clone(),
            storage_account_arm_id: sa_id.to_string(),
            credential: SasCredential {
                credential_type: "SAS".into(),
                sas_uri: format!("{blob_uri}?{}", sas::sign(&sa.sas_key()?, &grant)),
            },
        })
    }

    /// `datareferences` (getBlobReferenceSAS): a read SAS for a committed version's files.
    #[allow(clippy::too_many_arguments)]
    pub async fn data_reference(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        registry: &str,
        name: &str,
        version: &str,
        body: DataReferenceRequest,
    ) -> Result<BlobReferenceResponse> {
        self.check_subscription(sub)?;
        let t = asset_named(&body.asset_id, registry, name, version)?;
        let (reg, cid) = self.asset_ids(group, registry, t, name);
        self.admit_registry(caller, &reg).await?;
        let id = cid.child("versions", version);
        let (d, _) =
            self.read_visible::<VersionDoc>(caller, actions::REGISTRY_ASSETS_READ, &id, || not_found(t, name, Some(version))).await?;
        let (account, container, prefix) = d.storage.clone().ok_or_else(|| {
            let why = match t {
                AssetType::Environments => "it names an image, not an uploaded build context",
                _ => "versions of this type have none",
            };
            Error::invalid("NoFiles", "assetId", format!("{} '{name}' version '{version}' has no files: {why}.", t.segment()))
        })?;
        let (regdoc, _) = self
            .registry_for_assets(&ResourceId::provider(
                &self.subscription_id,
                group,
                "Microsoft.MachineLearningServices",
                "registries",
                registry,
            ))
            .await?;
        let expiry = OffsetDateTime::now_utc() + time::Duration::seconds(READ_SAS_SECS);
        let blob_reference_for_consumption = self.blob_reference(&regdoc, &account, &container, &prefix, "rl", expiry).await?;
        Ok(BlobReferenceResponse { blob_reference_for_consumption, pending_upload_id: None, pending_upload_type: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_views_read_as_clients_send_them() {
        for (sent, view) in [
            (None, ListViewType::ActiveOnly),
            (Some("ActiveOnly"), ListViewType::ActiveOnly),
            (Some("archivedonly"), ListViewType::ArchivedOnly),
            (Some("All"), ListViewType::All),
            (Some("ListViewType.ACTIVE_ONLY"), ListViewType::ActiveOnly),
            (Some("ListViewType.ARCHIVED_ONLY"), ListViewType::ArchivedOnly),
            (Some("ListViewType.ALL"), ListViewType::All),
        ] {
            assert_eq!(ListViewType::parse(sent).unwrap(), view, "{sent:?}");
        }
        for wrong in ["Everything", "ListViewType.EVERYTHING", "active_only"] {
            assert!(ListViewType::parse(Some(wrong)).is_err(), "{wrong}");
        }
    }
}
