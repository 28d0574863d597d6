//! `moat model|data|component|environment …`: assets in a registry, shaped like `az ml`.
//! Files go up through the SAS of `startPendingUpload` and come down through the SAS of
//! `datareferences`; the asset ID `azureml://registries/<r>/<type>/<name>/versions/<v>` is
//! printed, and accepted wherever a name and version are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use moat_client::{Client, Method};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::commands::{CliError, CmdResult};
use crate::output::{self, Column, Output};
use crate::transfer::{Meter, PendingUpload};

fn usage(m: impl Into<String>) -> CliError {
    CliError::Usage(m.into())
}

/// The asset types the CLI handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Model,
    Data,
    Code,
    Component,
    Environment,
}

impl Kind {
    fn segment(self) -> &'static str {
        match self {
            Kind::Model => "models",
            Kind::Data => "data",
            Kind::Code => "codes",
            Kind::Component => "components",
            Kind::Environment => "environments",
        }
    }
    /// What the CLI calls one, in messages.
    fn noun(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Data => "data asset",
            Kind::Code => "code asset",
            Kind::Component => "component",
            Kind::Environment => "environment",
        }
    }
    /// Whether its versions can have files: an environment's are its build context.
    fn has_files(self) -> bool {
        self != Kind::Component
    }
}

const VERSION_COLUMNS: &[Column] = &[
    ("Name", "/assetName"),
    ("Version", "/name"),
    ("Archived", "/properties/isArchived"),
    ("Stage", "/properties/stage"),
    ("AssetId", "/assetId"),
];
const CONTAINER_COLUMNS: &[Column] =
    &[("Name", "/name"), ("LatestVersion", "/properties/latestVersion"), ("Archived", "/properties/isArchived")];

/// Where an asset is: registry (and its group), name, version.
pub struct Target {
    pub registry: String,
    pub group: String,
    pub name: String,
    pub version: Option<String>,
    /// Named by its `labels/latest` asset ID: the latest version, never the asset itself.
    pub latest: bool,
}

impl Target {
    /// From flags, or from an asset ID given as the name.
    pub fn new(
        c: &Client,
        kind: Kind,
        name: &str,
        version: Option<&str>,
        registry: Option<&str>,
        group: Option<&str>,
    ) -> Result<Target, CliError> {
        let group = group.map(str::to_string).unwrap_or_else(|| c.profile().resource_group.clone());
        if let Some(rest) = name.strip_prefix("azureml://registries/") {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                [r, t, n, "versions", v] if *t == kind.segment() => {
                    Ok(Target { registry: r.to_string(), group, name: n.to_string(), version: Some(v.to_string()), latest: false })
                }
                [r, t, n, "labels", "latest"] if *t == kind.segment() => {
                    Ok(Target { registry: r.to_string(), group, name: n.to_string(), version: None, latest: true })
                }
                // The asset itself (its container): --version, if given, picks a version.
                [r, t, n] if *t == kind.segment() && !n.is_empty() => {
                    Ok(Target { registry: r.to_string(), group, name: n.to_string(), version: version.map(str::to_string), latest: false })
                }
                _ => Err(usage(format!(
                    "'{name}' is not an asset ID of the form azureml://registries/<registry>/{0}/<name>[/versions/<version>]",
                    kind.segment()
                ))),
            };
        }
        let registry = registry.ok_or_else(|| usage("give --registry-name (or an asset ID as --name)"))?.to_string();
        Ok(Target { registry, group, name: name.to_string(), version: version.map(str::to_string), latest: false })
    }

    fn base(&self, c: &Client, kind: Kind) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/registries/{}/{}/{}",
            c.profile().subscription_id,
            self.group,
            self.registry,
            kind.segment(),
            self.name
        )
    }

    fn asset_id(&self, kind: Kind, version: &str) -> String {
        format!("azureml://registries/{}/{}/{}/versions/{version}", self.registry, kind.segment(), self.name)
    }
}

/// Adds the asset ID and name to a version's JSON, for printing.
fn decorate(mut v: Value, t: &Target, kind: Kind) -> Value {
    let version = v["name"].as_str().unwrap_or_default().to_string();
    v["assetId"] = Value::String(t.asset_id(kind, &version));
    v["assetName"] = Value::String(t.name.clone());
    v
}

/// The version to act on: the given one, or the container's latest.
async fn resolve_version(c: &Client, kind: Kind, t: &Target) -> Result<String, CliError> {
    if let Some(v) = &t.version {
        return Ok(v.clone());
    }
    let container = c.get(&t.base(c, kind)).await?.body;
    container["properties"]["latestVersion"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| usage(format!("'{}' has no active version; give --version", t.name)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetYaml {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    name: String,
    version: serde_yaml_ng::Value,
    #[serde(default)]
    path: Option<String>,
    #[serde(rename = "type", default)]
    asset_type: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
    #[serde(default)]
    stage: Option<String>,
    // models
    #[serde(default)]
    flavors: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    job_name: Option<String>,
    // environments
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    build: Option<BuildYaml>,
    #[serde(default)]
    conda_file: Option<String>,
    #[serde(default)]
    os_type: Option<String>,
    #[serde(default)]
    inference_config: Option<serde_yaml_ng::Value>,
}

/// An environment's `build:`: a local folder holding a Docker build context.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildYaml {
    path: String,
    #[serde(default)]
    dockerfile_path: Option<String>,
}

/// The Dockerfile's path inside the build context, as the registry records it.
fn dockerfile_path(b: &BuildYaml) -> String {
    moat_types::assets::dockerfile_path(b.dockerfile_path.as_deref())
}

fn model_type(t: &str) -> Result<&'static str, CliError> {
    match t.to_ascii_lowercase().as_str() {
        "custom_model" | "custommodel" => Ok("CustomModel"),
        "mlflow_model" | "mlflowmodel" => Ok("MLFlowModel"),
        "triton_model" | "tritonmodel" => Ok("TritonModel"),
        other => Err(usage(format!("type '{other}' is not custom_model, mlflow_model or triton_model"))),
    }
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Every file under `root` (or `root` itself), with its path relative to the upload root.
fn local_files(root: &Path) -> Result<Vec<(PathBuf, String)>, CliError> {
    let meta = std::fs::metadata(root).map_err(|e| usage(format!("cannot read {}: {e}", root.display())))?;
    if meta.is_file() {
        let name = root.file_name().and_then(|n| n.to_str()).ok_or_else(|| usage(format!("{} has no file name", root.display())))?;
        return Ok(vec![(root.to_path_buf(), name.to_string())]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| usage(format!("cannot read {}: {e}", dir.display())))? {
            let e = e.map_err(|e| usage(e.to_string()))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).map_err(|e| usage(e.to_string()))?;
                let rel = rel.components().map(|c| c.as_os_str().to_string_lossy().to_string()).collect::<Vec<_>>().join("/");
                out.push((p, rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Uploads `files` for the version at `vpath`, into the location of an earlier interrupted
/// attempt when there is one (sending only what it lacks), else into a fresh pending upload.
/// Returns the blob URI to commit.
async fn upload_files(c: &Client, vpath: &str, local: &Path, files: &[(PathBuf, String)]) -> Result<String, CliError> {
    let endpoint = c.profile().endpoint.clone();
    let items: Vec<moat_client::blobs::UploadItem> = files
        .iter()
        .map(|(p, rel)| moat_client::blobs::UploadItem {
            local: p.clone(),
            path: rel.clone(),
            size: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
        })
        .collect();
    let total: u64 = items.iter().map(|f| f.size).sum();
    let mut resumed = PendingUpload::load(&endpoint, vpath, local);
    loop {
        let from_record = resumed.is_some();
        let rec = match resumed.take() {
            Some(r) => {
                eprintln!("resuming the upload started earlier for this version");
                r
            }
            None => {
                let up = c
                    .send(
                        Method::POST,
                        &format!("{vpath}/startPendingUpload"),
                        Some(&json!({"pendingUploadType": "TemporaryBlobReference"})),
                        &[],
                    )
                    .await?
                    .body;
                let rec = PendingUpload {
                    version_path: vpath.to_string(),
                    source: local.display().to_string(),
                    blob_uri: up["blobReferenceForConsumption"]["blobUri"].as_str().unwrap_or_default().to_string(),
                    sas_uri: up["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap_or_default().to_string(),
                };
                rec.save(&endpoint, local);
                rec
            }
        };
        let sas_uri = c.blob_url(&rec.sas_uri).await?;
        // Leaves the earlier location for a new one, saying why.
        let abandon = |why: String| {
            PendingUpload::forget(&endpoint, vpath, local);
            eprintln!("the earlier upload location {why}; starting a new upload");
        };
        if from_record {
            // The commit records every file in the location, and the upload SAS cannot delete:
            // a location holding a file this folder no longer has (removed or renamed since the
            // interrupted run) is left for a new one, or the version would have it.
            let extra = match moat_client::blobs::list_blobs(c.http(), &sas_uri, "").await {
                Ok(names) => {
                    let wanted: std::collections::HashSet<&str> = items.iter().map(|i| i.path.as_str()).collect();
                    names
                        .into_iter()
                        .find(|n| !wanted.contains(n.as_str()))
                        .map(|n| format!("holds {n}, which {} no longer has", local.display()))
                }
                Err(moat_client::ClientError::Api { status: 403 | 404 | 409, code, .. }) => Some(format!("cannot be used ({code})")),
                Err(e) => return Err(e.into()),
            };
            if let Some(why) = extra {
                abandon(why);
                continue;
            }
        }
        let (meter, progress) = Meter::new("upload", total);
        let outcome = moat_client::blobs::upload_files(c.http(), &sas_uri, &items, progress).await;
        meter.finish();
        match outcome {
            Ok(sent) => {
                eprintln!(
                    "uploaded {} file(s), {total} bytes ({sent} sent, {} already on the server), sha256 verified",
                    files.len(),
                    total - sent.min(total)
                );
                return Ok(rec.blob_uri);
            }
            // The earlier location is gone, sealed, or its SAS no longer works: start afresh, once.
            Err(moat_client::ClientError::Api { status: 403 | 404 | 409, code, .. }) if from_record => {
                abandon(format!("cannot be used ({code})"));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The version at `vpath`, if it exists.
async fn existing_version(c: &Client, vpath: &str) -> Result<Option<Value>, CliError> {
    match c.get(vpath).await {
        Ok(r) => Ok(Some(r.body)),
        Err(moat_client::ClientError::Api { status: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Where version `v`'s files were uploaded: its modelUri, dataUri, codeUri or build context.
fn content_uri(v: &Value) -> Option<String> {
    let p = &v["properties"];
    [&p["modelUri"], &p["dataUri"], &p["codeUri"], &p["build"]["contextUri"]].into_iter().find_map(|u| u.as_str()).map(str::to_string)
}

/// Checks that version `existing` holds exactly `files` (paths, sizes and sha256); a 409-like
/// refusal naming the first difference otherwise.
async fn same_files(existing: &Value, files: &[(PathBuf, String)], t: &Target, kind: Kind) -> Result<(), CliError> {
    let recorded: BTreeMap<&str, (u64, &str)> = existing["properties"]["files"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| Some((f["path"].as_str()?, (f["size"].as_u64()?, f["sha256"].as_str()?)))).collect())
        .unwrap_or_default();
    let refuse = |why: String| {
        CliError::Client(moat_client::ClientError::Api {
            status: 409,
            code: "AssetAlreadyExists".into(),
            message: format!(
                "{} {} version {} exists with other files ({why}); a version's files never change: create a new version",
                kind.noun(),
                t.name,
                t.version.as_deref().unwrap_or_default()
            ),
            target: None,
        })
    };
    let mut local_paths = std::collections::BTreeSet::new();
    for (p, rel) in files {
        local_paths.insert(rel.as_str());
        let Some((size, sha)) = recorded.get(rel.as_str()) else { return Err(refuse(format!("it has no {rel}"))) };
        let here = std::fs::metadata(p).map_err(|e| usage(format!("cannot read {}: {e}", p.display())))?.len();
        if here != *size || moat_client::blobs::sha256_file(p).await? != *sha {
            return Err(refuse(format!("its {rel} differs")));
        }
    }
    if let Some(extra) = recorded.keys().find(|k| !local_paths.contains(*k)) {
        return Err(refuse(format!("it has {extra}, which the folder has not")));
    }
    Ok(())
}

pub async fn create(c: &Client, kind: Kind, file: &Path, registry: &str, group: Option<&str>, out: Output) -> CmdResult {
    let text = std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {}: {e}", file.display())))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let spec_json: Value = serde_yaml_ng::from_str(&text).map_err(|e| usage(format!("{}: {e}", file.display())))?;
    let y: AssetYaml = if kind == Kind::Component {
        // A component's YAML is its specification; only name and version matter here.
        let v: BTreeMap<String, serde_yaml_ng::Value> =
            serde_yaml_ng::from_str(&text).map_err(|e| usage(format!("{}: {e}", file.display())))?;
        AssetYaml {
            _schema: None,
            name: v.get("name").and_then(scalar).ok_or_else(|| usage(format!("{}: name is required", file.display())))?,
            version: v.get("version").cloned().ok_or_else(|| usage(format!("{}: version is required", file.display())))?,
            path: None,
            asset_type: None,
            description: v.get("description").and_then(scalar),
            tags: BTreeMap::new(),
            properties: BTreeMap::new(),
            stage: None,
            flavors: None,
            job_name: None,
            image: None,
            build: None,
            conda_file: None,
            os_type: None,
            inference_config: None,
        }
    } else {
        serde_path_to_error::deserialize(de).map_err(|e| usage(format!("{}: {}: {}", file.display(), e.path(), e.inner())))?
    };
    let version = scalar(&y.version)
        .ok_or_else(|| usage(format!("{}: version must be a string or number (registries need an explicit version)", file.display())))?;
    let t = Target {
        registry: registry.to_string(),
        group: group.map(str::to_string).unwrap_or_else(|| c.profile().resource_group.clone()),
        name: y.name.clone(),
        version: Some(version.clone()),
        latest: false,
    };
    let vpath = format!("{}/versions/{version}", t.base(c, kind));
    let mut props = json!({"description": y.description, "tags": y.tags, "properties": y.properties});
    if let Some(s) = &y.stage {
        props["stage"] = json!(s);
    }
    // The folder to upload: the asset's path, or an environment's build context.
    let upload_root = match kind {
        Kind::Model | Kind::Data | Kind::Code => {
            let path = y.path.as_deref().ok_or_else(|| usage(format!("{}: path (the files to upload) is required", file.display())))?;
            Some(dir.join(path))
        }
        Kind::Environment => {
            if y.image.is_some() == y.build.is_some() {
                return Err(usage(format!(
                    "{}: an environment has an image or a build context (build: {{path: <folder>}}), one of the two",
                    file.display()
                )));
            }
            match &y.build {
                Some(b) if b.path.contains("://") => {
                    return Err(usage(format!(
                        "{}: build.path '{}' is not a local folder; a registry holds its environments' build contexts itself",
                        file.display(),
                        b.path
                    )));
                }
                Some(b) => Some(dir.join(&b.path)),
                None => None,
            }
        }
        Kind::Component => None,
    };
    let mut blob_uri = String::new();
    let mut existing = None;
    if let Some(local) = &upload_root {
        let files = local_files(local)?;
        if let Some(b) = &y.build {
            if std::fs::metadata(local).map(|m| m.is_file()).unwrap_or(false) {
                return Err(usage(format!("{}: build.path must be a folder (the build context), not a file", file.display())));
            }
            let dockerfile = dockerfile_path(b);
            if !files.iter().any(|(_, rel)| *rel == dockerfile) {
                return Err(usage(format!("{}: the build context {} has no {dockerfile}", file.display(), local.display())));
            }
        }
        // Creating is idempotent: a version that exists with exactly these files is the
        // answer, without uploading; with other files it is refused, since versions never
        // change their files (Azure's SDK returns the existing version without looking). The
        // rest of its content (a model's type, an environment's Dockerfile path …) is left to
        // the server to compare, below.
        if let Some(found) = existing_version(c, &vpath).await? {
            same_files(&found, &files, &t, kind).await?;
            eprintln!("{} {} version {version} exists with these files already; nothing was uploaded", kind.noun(), t.name);
            blob_uri = content_uri(&found).unwrap_or_default();
            existing = Some(found);
        } else {
            blob_uri = upload_files(c, &vpath, local, &files).await?;
        }
    }
    match kind {
        Kind::Model | Kind::Data | Kind::Code => {
            if kind == Kind::Model {
                props["modelType"] = json!(model_type(y.asset_type.as_deref().unwrap_or("custom_model"))?);
                props["modelUri"] = json!(blob_uri);
                if let Some(f) = &y.flavors {
                    props["flavors"] = serde_json::to_value(f).map_err(|e| usage(e.to_string()))?;
                }
                if let Some(j) = &y.job_name {
                    props["jobName"] = json!(j);
                }
            } else if kind == Kind::Data {
                props["dataType"] = json!(y.asset_type.as_deref().unwrap_or("uri_folder"));
                props["dataUri"] = json!(blob_uri);
            } else {
                props["codeUri"] = json!(blob_uri);
            }
        }
        Kind::Component => props["componentSpec"] = spec_json,
        Kind::Environment => {
            match &y.build {
                Some(b) => props["build"] = json!({"contextUri": blob_uri, "dockerfilePath": dockerfile_path(b)}),
                None => props["image"] = json!(y.image),
            }
            if let Some(cf) = &y.conda_file {
                props["condaFile"] = json!(std::fs::read_to_string(dir.join(cf)).map_err(|e| usage(format!("cannot read {cf}: {e}")))?);
            }
            props["osType"] = json!(y.os_type.as_deref().unwrap_or("Linux"));
            if let Some(ic) = &y.inference_config {
                props["inferenceConfig"] = serde_json::to_value(ic).map_err(|e| usage(e.to_string()))?;
            }
        }
    }
    if let Some(found) = &existing {
        // The version as it is, but for the content this file describes: the server answers it
        // unchanged if that content is the version's, and refuses it (409) otherwise. Its
        // description, tags and stage are not this command's to change.
        for field in ["description", "tags", "properties", "stage"] {
            props[field] = found["properties"][field].clone();
        }
    }
    let v = c.send(Method::PUT, &vpath, Some(&json!({"properties": props})), &[]).await?.body;
    if let Some(local) = &upload_root {
        PendingUpload::forget(&c.profile().endpoint, &vpath, local);
    }
    output::print(out, &decorate(v, &t, kind), VERSION_COLUMNS);
    Ok(())
}

pub async fn show(c: &Client, kind: Kind, t: &Target, out: Output) -> CmdResult {
    let version = resolve_version(c, kind, t).await?;
    let v = c.get(&format!("{}/versions/{version}", t.base(c, kind))).await?.body;
    output::print(out, &decorate(v, t, kind), VERSION_COLUMNS);
    Ok(())
}

pub async fn list(c: &Client, kind: Kind, t: &Target, archived: bool, out: Output) -> CmdResult {
    let view = if archived { "ArchivedOnly" } else { "ActiveOnly" };
    if t.name.is_empty() {
        let base = t.base(c, kind);
        let path = format!("{}?api-version=2025-09-01&listViewType={view}", base.trim_end_matches('/'));
        output::print(out, &Value::Array(c.list_all(&path).await?), CONTAINER_COLUMNS);
    } else {
        let path = format!("{}/versions?api-version=2025-09-01&listViewType={view}", t.base(c, kind));
        let items = c.list_all(&path).await?.into_iter().map(|v| decorate(v, t, kind)).collect();
        output::print(out, &Value::Array(items), VERSION_COLUMNS);
    }
    Ok(())
}

/// Changes mutable fields: archive/restore (`isArchived`), description, tags, stage.
pub async fn update(c: &Client, kind: Kind, t: &Target, set: &[String], out: Output) -> CmdResult {
    let version = resolve_version(c, kind, t).await?;
    let path = format!("{}/versions/{version}", t.base(c, kind));
    let mut current = c.get(&path).await?.body;
    for s in set {
        // An asset version keeps its tags among its properties.
        let s = if s.starts_with("tags.") || s.starts_with("tags=") { format!("properties.{s}") } else { s.clone() };
        crate::generic::apply_set(&mut current, &s).map_err(usage)?;
    }
    let mut props = current["properties"].clone();
    if let Some(o) = props.as_object_mut() {
        for ro in ["files", "provisioningState", "isAnonymous", "environmentType"] {
            o.remove(ro);
        }
    }
    let v = c.send(Method::PUT, &path, Some(&json!({"properties": props})), &[]).await?.body;
    output::print(out, &decorate(v, t, kind), VERSION_COLUMNS);
    Ok(())
}

/// Archives (or restores) a version; without a version, the asset itself (its container), as
/// `az ml <type> archive --name` does: an archived asset leaves the asset list (`list
/// --archived-only` shows it), and its versions keep their own state.
pub async fn archive(c: &Client, kind: Kind, t: &Target, archived: bool, out: Output) -> CmdResult {
    if t.version.is_some() || t.latest {
        return update(c, kind, t, &[format!("isArchived={archived}")], out).await;
    }
    let path = t.base(c, kind);
    let current = c.get(&path).await?;
    let p = &current.body["properties"];
    let body =
        json!({"properties": {"description": p["description"], "tags": p["tags"], "properties": p["properties"], "isArchived": archived}});
    // Only over what was read: a change made meanwhile (tags, description) is not written over.
    let if_match: Vec<(&str, &str)> = current.etag.as_deref().map(|e| ("if-match", e)).into_iter().collect();
    let v = c.send(Method::PUT, &path, Some(&body), &if_match).await?.body;
    output::print(out, &v, CONTAINER_COLUMNS);
    Ok(())
}

pub async fn delete(c: &Client, kind: Kind, t: &Target) -> CmdResult {
    let version = t.version.clone().ok_or_else(|| usage("give --version: deleting takes one version at a time"))?;
    c.send(Method::DELETE, &format!("{}/versions/{version}", t.base(c, kind)), None, &[]).await?;
    Ok(())
}

pub async fn download(c: &Client, kind: Kind, t: &Target, dest: &Path) -> CmdResult {
    if !kind.has_files() {
        return Err(usage(format!("{} versions have no files to download", kind.segment())));
    }
    let version = resolve_version(c, kind, t).await?;
    let reg = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/registries/{}",
        c.profile().subscription_id,
        t.group,
        t.registry
    );
    let r = c
        .send(
            Method::POST,
            &format!("{reg}/datareferences/{}/versions/{version}", t.name),
            Some(&json!({"assetId": t.asset_id(kind, &version)})),
            &[],
        )
        .await?
        .body;
    let sas_uri = c.blob_url(r["blobReferenceForConsumption"]["credential"]["sasUri"].as_str().unwrap_or_default()).await?;
    let (folder, sas) = sas_uri.split_once('?').unwrap_or((&sas_uri, ""));
    let mut parts = folder.splitn(6, '/').collect::<Vec<_>>();
    // scheme, "", host, account, container, [prefix]
    let prefix = if parts.len() == 6 { format!("{}/", parts.pop().unwrap_or_default()) } else { String::new() };
    let container_url = format!("{}?{sas}", parts.join("/"));
    let v = c.get(&format!("{}/versions/{version}", t.base(c, kind))).await?.body;
    let files: Vec<moat_types::assets::AssetFile> = serde_json::from_value(v["properties"]["files"].clone())
        .map_err(|e| usage(format!("the version's file list is not readable: {e}")))?;
    let root = dest.join(&t.name);
    let total: u64 = files.iter().map(|f| f.size).sum();
    // Every path is checked before anything is written.
    if let Some(f) = files.iter().find(|f| f.path.split('/').any(|s| s == ".." || s == "." || s.is_empty()) || f.path.starts_with('/')) {
        return Err(usage(format!("refusing the unsafe path '{}'", f.path)));
    }
    let items: Vec<moat_client::blobs::DownloadItem> = files
        .iter()
        .map(|f| moat_client::blobs::DownloadItem {
            url: moat_client::blobs::blob_url(&container_url, &format!("{prefix}{}", f.path)),
            dest: root.join(&f.path),
            size: f.size,
            sha256: f.sha256.clone(),
        })
        .collect();
    let (meter, progress) = Meter::new("download", total);
    let fetched = moat_client::blobs::download_files(c.http(), &items, progress).await;
    meter.finish();
    let fetched = fetched?;
    eprintln!(
        "downloaded {} file(s), {total} bytes ({fetched} fetched, {} already here), to {}; sha256 verified",
        files.len(),
        total - fetched.min(total),
        root.display()
    );
    Ok(())
}
