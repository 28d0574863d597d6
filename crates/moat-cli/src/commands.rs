//! The client commands: each turns its flags into one or two REST calls through moat-client
//! and prints the result.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use moat_client::{Client, ClientError, Method};
use serde_json::{Value, json};

use crate::output::{self, Column, Output};

pub type CmdResult = Result<(), CliError>;

/// What a command failure prints: one sentence, plus the server's code when there is one.
#[derive(Debug)]
pub enum CliError {
    Client(ClientError),
    Usage(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError::Client(e)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Client(e) => write!(f, "{e}"),
            CliError::Usage(m) => f.write_str(m),
        }
    }
}

const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

pub const REGISTRY_COLUMNS: &[Column] = &[
    ("Name", "/name"),
    ("ResourceGroup", "/resourceGroup"),
    ("Location", "/location"),
    ("PublicNetworkAccess", "/properties/publicNetworkAccess"),
    ("DiscoveryUrl", "/properties/discoveryUrl"),
];
pub const GROUP_COLUMNS: &[Column] = &[("Name", "/name"), ("Location", "/location"), ("ManagedBy", "/managedBy")];

pub(crate) fn group_path(c: &Client, group: &str) -> String {
    format!("/subscriptions/{}/resourceGroups/{group}", c.profile().subscription_id)
}

pub(crate) fn registry_path(c: &Client, group: &str, name: &str) -> String {
    format!("{}/providers/Microsoft.MachineLearningServices/registries/{name}", group_path(c, group))
}

/// Adds `resourceGroup` (as az does) so that tables can show it.
fn with_group(mut v: Value) -> Value {
    if let Some(id) = v["id"].as_str()
        && let Some(rg) = moat_types::ResourceId::parse(id).ok().and_then(|i| i.resource_group_name().map(str::to_string))
    {
        v["resourceGroup"] = Value::String(rg);
    }
    v
}

fn confirm(yes: bool, what: &str) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!("refusing to delete {what} without confirmation; pass --yes")));
    }
    eprint!("Delete {what}? (y/N) ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| CliError::Usage(e.to_string()))?;
    if answer.trim().eq_ignore_ascii_case("y") || answer.trim().eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        Err(CliError::Usage("not deleted".into()))
    }
}

pub async fn account_show(c: &Client, out: Output) -> CmdResult {
    let sub = c.get(&format!("/subscriptions/{}", c.profile().subscription_id)).await?.body;
    let v = json!({
        "id": sub["subscriptionId"],
        "name": sub["displayName"],
        "tenantId": sub["tenantId"],
        "state": sub["state"],
        "isDefault": true,
        "environmentName": "moat",
        "endpoint": c.profile().endpoint,
        "resourceGroup": c.profile().resource_group,
        "user": match &c.profile().user {
            Some(u) => json!({"name": u, "type": "user"}),
            None => json!({"name": c.profile().client_id, "type": "servicePrincipal"}),
        },
    });
    output::print(out, &v, &[("Name", "/name"), ("SubscriptionId", "/id"), ("TenantId", "/tenantId"), ("State", "/state")]);
    Ok(())
}

pub async fn account_get_access_token(c: &Client, resource: &str, out: Output) -> CmdResult {
    let audience = match resource {
        "ml" => moat_client::AUDIENCE_ML,
        _ => moat_client::AUDIENCE_MANAGEMENT,
    };
    let t = c.get_token(audience).await?;
    let expires = time::OffsetDateTime::from_unix_timestamp(t.expires_on).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]");
    let v = json!({
        "accessToken": t.access_token,
        "expiresOn": expires.format(&fmt).unwrap_or_default(),
        "expires_on": t.expires_on,
        "subscription": c.profile().subscription_id,
        "tenant": c.profile().tenant_id,
        "tokenType": t.token_type,
    });
    output::print(
        out,
        &v,
        &[("ExpiresOn", "/expiresOn"), ("Subscription", "/subscription"), ("Tenant", "/tenant"), ("TokenType", "/tokenType")],
    );
    Ok(())
}

pub async fn group_create(c: &Client, name: &str, location: &str, tags: &[String], out: Output) -> CmdResult {
    let mut t = serde_json::Map::new();
    for kv in tags {
        let (k, v) = kv.split_once('=').ok_or_else(|| CliError::Usage(format!("--tags takes key=value, not '{kv}'")))?;
        t.insert(k.to_string(), Value::String(v.to_string()));
    }
    let body = json!({"location": location, "tags": t});
    let v = c.send(Method::PUT, &group_path(c, name), Some(&body), &[]).await?.body;
    output::print(out, &v, GROUP_COLUMNS);
    Ok(())
}

pub async fn group_show(c: &Client, name: &str, out: Output) -> CmdResult {
    output::print(out, &c.get(&group_path(c, name)).await?.body, GROUP_COLUMNS);
    Ok(())
}

pub async fn group_list(c: &Client, out: Output) -> CmdResult {
    let items = c.list_all(&format!("/subscriptions/{}/resourceGroups", c.profile().subscription_id)).await?;
    output::print(out, &Value::Array(items), GROUP_COLUMNS);
    Ok(())
}

pub async fn group_delete(c: &Client, name: &str, yes: bool) -> CmdResult {
    confirm(yes, &format!("resource group '{name}'"))?;
    let r = c.send(Method::DELETE, &group_path(c, name), None, &[]).await?;
    if let Some(url) = r.async_operation {
        c.wait_for_operation(&url, OPERATION_TIMEOUT).await?;
    }
    Ok(())
}

pub async fn registry_create(c: &Client, file: &PathBuf, group: &str, out: Output) -> CmdResult {
    let text = std::fs::read_to_string(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let (name, body) = crate::yaml::registry_body(&text).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    let path = registry_path(c, group, &name);
    let r = c.send(Method::PUT, &path, Some(&body), &[("if-none-match", "*")]).await.map_err(|e| match e {
        ClientError::Api { status: 412, .. } => CliError::Usage(format!(
            "registry '{name}' already exists in resource group '{group}'; change it with `moat registry update --name {name}`"
        )),
        other => other.into(),
    })?;
    if let Some(url) = r.async_operation {
        c.wait_for_operation(&url, OPERATION_TIMEOUT).await?;
    }
    let v = c.get(&path).await?.body;
    output::print(out, &with_group(v), REGISTRY_COLUMNS);
    Ok(())
}

pub async fn registry_show(c: &Client, name: &str, group: &str, out: Output) -> CmdResult {
    let mut v = with_group(c.get(&registry_path(c, group, name)).await?.body);
    // The names the registry answers to, from discovery (which needs the registry plane: a
    // caller outside a closed registry's networks sees the resource without them).
    if let Ok(d) = c.get(&format!("/registrymanagement/v1.0/registries/{name}/discovery")).await
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert(
            "fqdns".into(),
            json!({
                "registry": d.body["registryFqdns"],
                "storageAccounts": d.body.get("storageAccountFqdns").cloned().unwrap_or_else(|| json!({})),
                "containerRegistry": d.body.get("containerRegistryFqdns").cloned().unwrap_or_else(|| json!([])),
            }),
        );
    }
    output::print(out, &v, REGISTRY_COLUMNS);
    Ok(())
}

pub async fn registry_list(c: &Client, group: Option<&str>, out: Output) -> CmdResult {
    let path = match group {
        Some(g) => format!("{}/providers/Microsoft.MachineLearningServices/registries", group_path(c, g)),
        None => format!("/subscriptions/{}/providers/Microsoft.MachineLearningServices/registries", c.profile().subscription_id),
    };
    let items: Vec<Value> = c.list_all(&path).await?.into_iter().map(with_group).collect();
    output::print(out, &Value::Array(items), REGISTRY_COLUMNS);
    Ok(())
}

pub async fn registry_delete(c: &Client, name: &str, group: &str, yes: bool) -> CmdResult {
    confirm(yes, &format!("registry '{name}' with its managed resource group"))?;
    let r = c.send(Method::DELETE, &registry_path(c, group, name), None, &[]).await?;
    if let Some(url) = r.async_operation {
        c.wait_for_operation(&url, OPERATION_TIMEOUT).await?;
    }
    Ok(())
}

pub async fn registry_update(c: &Client, name: &str, group: &str, set: &[String], remove: &[String], out: Output) -> CmdResult {
    if set.is_empty() && remove.is_empty() {
        return Err(CliError::Usage("nothing to change: give --set path=value or --remove path".into()));
    }
    let path = registry_path(c, group, name);
    let current = c.get(&path).await?;
    let mut body = current.body;
    for s in set {
        crate::generic::apply_set(&mut body, s).map_err(CliError::Usage)?;
    }
    for r in remove {
        crate::generic::apply_remove(&mut body, r).map_err(CliError::Usage)?;
    }
    let etag = current.etag.unwrap_or_default();
    let mut headers = Vec::new();
    if !etag.is_empty() {
        headers.push(("if-match", etag.as_str()));
    }
    let r = c.send(Method::PUT, &path, Some(&body), &headers).await?;
    if let Some(url) = r.async_operation {
        c.wait_for_operation(&url, OPERATION_TIMEOUT).await?;
    }
    let v = c.get(&path).await?.body;
    output::print(out, &with_group(v), REGISTRY_COLUMNS);
    Ok(())
}
