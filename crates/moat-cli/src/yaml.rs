//! The `az ml` registry YAML, converted client-side into the ARM body, as the Azure CLI does.
//! Unknown keys are errors naming the key and its line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryYaml {
    #[serde(rename = "$schema", default)]
    _schema: Option<String>,
    name: String,
    location: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Option<BTreeMap<String, serde_yaml_ng::Value>>,
    #[serde(default)]
    public_network_access: Option<String>,
    #[serde(default)]
    replication_locations: Option<Vec<ReplicationLocation>>,
    #[serde(default)]
    container_registry: Option<ContainerRegistryYaml>,
    #[serde(default)]
    intellectual_property: Option<IntellectualProperty>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicationLocation {
    location: String,
    #[serde(default)]
    storage_config: Option<StorageConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageConfig {
    #[serde(default)]
    storage_account_hns: Option<bool>,
    #[serde(default)]
    storage_account_type: Option<String>,
    #[serde(default)]
    replication_count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerRegistryYaml {
    #[serde(default)]
    acr_account_sku: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntellectualProperty {
    publisher: String,
}

fn scalar(key: &str, v: &serde_yaml_ng::Value) -> Result<String, String> {
    match v {
        serde_yaml_ng::Value::String(s) => Ok(s.clone()),
        serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("tags.{key}: a tag value must be a string, number or boolean")),
    }
}

/// Parses registry YAML into the ARM PUT body; returns the registry name and the body.
pub fn registry_body(text: &str) -> Result<(String, Value), String> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let y: RegistryYaml = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { e.into_inner().to_string() } else { format!("{path}: {}", e.into_inner()) }
    })?;
    let mut tags = serde_json::Map::new();
    for (k, v) in y.tags.iter().flatten() {
        tags.insert(k.clone(), Value::String(scalar(k, v)?));
    }
    // As the Azure SDK does, the description travels as a tag.
    if let Some(d) = &y.description {
        tags.insert("description".into(), Value::String(d.clone()));
    }
    let acr_sku = y.container_registry.and_then(|c| c.acr_account_sku).unwrap_or_else(|| "Premium".into());
    let acr = json!([{"systemCreatedAcrAccount": {"acrAccountSku": acr_sku}}]);
    let locations =
        y.replication_locations.unwrap_or_else(|| vec![ReplicationLocation { location: y.location.clone(), storage_config: None }]);
    let mut regions = Vec::new();
    for (i, r) in locations.into_iter().enumerate() {
        let sc = r.storage_config;
        let count = sc.as_ref().and_then(|s| s.replication_count).unwrap_or(1);
        if count == 0 {
            return Err(format!("replication_locations[{i}].storage_config.replication_count: must be at least 1"));
        }
        let account = json!({"systemCreatedStorageAccount": {
            "storageAccountType": sc.as_ref().and_then(|s| s.storage_account_type.clone()).unwrap_or_else(|| "Standard_LRS".into()),
            "storageAccountHnsEnabled": sc.as_ref().and_then(|s| s.storage_account_hns).unwrap_or(false),
        }});
        regions.push(json!({
            "location": r.location,
            "storageAccountDetails": vec![account; count as usize],
            "acrDetails": acr,
        }));
    }
    let mut properties = json!({ "regionDetails": regions });
    if let Some(p) = &y.public_network_access {
        properties["publicNetworkAccess"] = Value::String(p.clone());
    }
    if let Some(ip) = &y.intellectual_property {
        properties["intellectualPropertyPublisher"] = Value::String(ip.publisher.clone());
    }
    let body = json!({
        "location": y.location,
        "tags": tags,
        "identity": {"type": "SystemAssigned"},
        "properties": properties,
    });
    Ok((y.name, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_example() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/registry.yml")).unwrap();
        let (name, body) = registry_body(&text).unwrap();
        assert_eq!(name, "demo-registry");
        assert_eq!(body["location"], "eastus");
        assert_eq!(body["properties"]["publicNetworkAccess"], "enabled");
        assert_eq!(body["tags"]["description"], "Shared models and environments");
        let regions = body["properties"]["regionDetails"].as_array().unwrap();
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[1]["location"], "westus");
        assert_eq!(regions[1]["storageAccountDetails"].as_array().unwrap().len(), 2);
        assert_eq!(regions[0]["acrDetails"][0]["systemCreatedAcrAccount"]["acrAccountSku"], "Premium");
    }

    #[test]
    fn unknown_keys_name_the_path() {
        let e =
            registry_body("name: a1\nlocation: eastus\nreplication_locations:\n  - location: eastus\n    storage_confg: {}\n").unwrap_err();
        assert!(e.contains("replication_locations[0]") && e.contains("storage_confg"), "{e}");
        let e = registry_body("name: a1\n").unwrap_err();
        assert!(e.contains("location"), "{e}");
        let e = registry_body("name: [1\n").unwrap_err();
        assert!(!e.is_empty());
    }
}
