//! Wire shapes of registry assets: containers and versions of models, data, code, components
//! and environments (ARM JSON). One properties struct carries every type's fields; the domain
//! refuses, by name, a field that does not belong to the asset's type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::arm::{SystemData, Tags};

/// Most blocks a block blob is made of (Azure's limit): what the blob plane accepts in one
/// block list, and what the CLI cuts a file into at most.
pub const MAX_BLOCKS: usize = 50_000;

/// The asset types, as their path segments spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AssetType {
    #[serde(rename = "models")]
    Models,
    #[serde(rename = "data")]
    Data,
    #[serde(rename = "codes")]
    Codes,
    #[serde(rename = "components")]
    Components,
    #[serde(rename = "environments")]
    Environments,
}

impl AssetType {
    pub const ALL: [AssetType; 5] = [AssetType::Models, AssetType::Data, AssetType::Codes, AssetType::Components, AssetType::Environments];

    pub fn parse(s: &str) -> Option<AssetType> {
        AssetType::ALL.into_iter().find(|t| t.segment().eq_ignore_ascii_case(s))
    }

    /// The path segment: `models`, `data`, `codes`, `components`, `environments`.
    pub fn segment(self) -> &'static str {
        match self {
            AssetType::Models => "models",
            AssetType::Data => "data",
            AssetType::Codes => "codes",
            AssetType::Components => "components",
            AssetType::Environments => "environments",
        }
    }

    /// Whether versions of this type carry uploaded files.
    pub fn has_files(self) -> bool {
        matches!(self, AssetType::Models | AssetType::Data | AssetType::Codes)
    }

    /// Whether versions of this type can carry uploaded files: models, data and code always
    /// do; an environment does when it is built from an uploaded build context.
    pub fn takes_uploads(self) -> bool {
        self.has_files() || self == AssetType::Environments
    }
}

/// The path of an environment's Dockerfile in its build context as recorded: `given` without
/// leading `./`, or `Dockerfile` (Azure's default) when none is given.
pub fn dockerfile_path(given: Option<&str>) -> String {
    let mut path = given.unwrap_or("Dockerfile");
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    path.to_string()
}

/// A container: the named asset, holding versions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetContainer {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub properties: Option<AssetContainerProperties>,
    #[serde(default)]
    pub system_data: Option<SystemData>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetContainerProperties {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub properties: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub is_archived: Option<bool>,
    /// Read-only: the most recently created version that is not archived.
    #[serde(default)]
    pub latest_version: Option<String>,
    /// Read-only: one more than the largest numeric version.
    #[serde(default)]
    pub next_version: Option<String>,
    /// Data containers only: `uri_file`, `uri_folder` or `mltable`.
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
}

/// A version of an asset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetVersion {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub properties: Option<AssetVersionProperties>,
    #[serde(default)]
    pub system_data: Option<SystemData>,
}

/// Properties of every asset type; the domain refuses a field that does not belong to the type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetVersionProperties {
    // Common to every type; description, tags, properties, stage and isArchived can change.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Option<Tags>,
    #[serde(default)]
    pub properties: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub is_anonymous: Option<bool>,
    #[serde(default)]
    pub is_archived: Option<bool>,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub provisioning_state: Option<String>,
    // models
    /// `CustomModel`, `MLFlowModel` or `TritonModel` (the YAML's custom_model, mlflow_model, triton_model).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Where the files were uploaded (a pending upload's blobUri).
    #[serde(default)]
    pub model_uri: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub flavors: Option<serde_json::Value>,
    #[serde(default)]
    pub job_name: Option<String>,
    // data
    /// `uri_file`, `uri_folder` or `mltable`.
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub data_uri: Option<String>,
    #[serde(default)]
    pub referenced_uris: Option<Vec<String>>,
    // codes
    #[serde(default)]
    pub code_uri: Option<String>,
    // components
    /// The component YAML, as an object.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub component_spec: Option<serde_json::Value>,
    // environments
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub build: Option<serde_json::Value>,
    #[serde(default)]
    pub conda_file: Option<String>,
    /// `Linux` or `Windows`.
    #[serde(default)]
    pub os_type: Option<String>,
    #[serde(default)]
    pub auto_rebuild: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub inference_config: Option<serde_json::Value>,
    #[serde(default)]
    pub environment_type: Option<String>,
    /// Read-only (moat): the committed files, each with its path, size and sha256.
    #[serde(default)]
    pub files: Option<Vec<AssetFile>>,
}

/// A file of a committed version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssetFile {
    /// Relative to the version's root.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// Body of `startPendingUpload`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingUploadRequest {
    #[serde(default)]
    pub pending_upload_id: Option<String>,
    /// `None` or `TemporaryBlobReference`.
    #[serde(default)]
    pub pending_upload_type: Option<String>,
}

/// Answer of `startPendingUpload` and `datareferences`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobReferenceResponse {
    pub blob_reference_for_consumption: BlobReference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_upload_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_upload_type: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobReference {
    pub blob_uri: String,
    pub storage_account_arm_id: String,
    pub credential: SasCredential,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SasCredential {
    /// `SAS`.
    pub credential_type: String,
    pub sas_uri: String,
}

/// Body of `datareferences/{name}/versions/{version}` (getBlobReferenceSAS).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataReferenceRequest {
    /// `azureml://registries/<r>/<type>/<name>/versions/<v>`.
    pub asset_id: String,
    #[serde(default)]
    pub blob_uri: Option<String>,
}
