//! Identity commands: `moat login`, `moat ad user|sp …`, `moat role definition|assignment …`.

use std::path::Path;

use moat_client::{Client, ClientError, Method, Profile};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::commands::{CliError, CmdResult};
use crate::output::{self, Column, Output};

const USER_COLUMNS: &[Column] = &[("DisplayName", "/displayName"), ("UserPrincipalName", "/userPrincipalName"), ("ObjectId", "/id")];
const SP_COLUMNS: &[Column] = &[("DisplayName", "/displayName"), ("AppId", "/appId"), ("ObjectId", "/id")];
const ROLE_COLUMNS: &[Column] = &[("Name", "/properties/roleName"), ("Type", "/properties/type"), ("Id", "/name")];
const ASSIGNMENT_COLUMNS: &[Column] =
    &[("Principal", "/principalName"), ("Role", "/roleDefinitionName"), ("Scope", "/properties/scope"), ("Name", "/name")];

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

fn is_guid(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// `moat login`: checks the credentials, finds the subscription and writes a profile.
pub async fn login(
    profile_path: &Path,
    current: Option<Profile>,
    endpoint: Option<String>,
    tenant: Option<String>,
    username: &str,
    password: &str,
    service_principal: bool,
) -> CmdResult {
    let endpoint = endpoint
        .or_else(|| current.as_ref().map(|p| p.endpoint.clone()))
        .ok_or_else(|| usage("give --endpoint (no current profile to take it from)"))?;
    let tenant = tenant.or_else(|| current.as_ref().map(|p| p.tenant_id.clone())).ok_or_else(|| usage("give --tenant"))?;
    let mut profile = Profile {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        tenant_id: tenant.clone(),
        subscription_id: String::new(),
        resource_group: current.as_ref().map(|p| p.resource_group.clone()).unwrap_or_else(|| "default".into()),
        client_id: None,
        client_secret: None,
        user: None,
        access_token: None,
        expires_on: None,
        // A CA trusted for this endpoint before is trusted still.
        ca_certificate: current
            .as_ref()
            .filter(|p| p.endpoint.trim_end_matches('/') == endpoint.trim_end_matches('/'))
            .and_then(|p| p.ca_certificate.clone()),
    };
    if service_principal {
        moat_client::login_service_principal(&endpoint, &tenant, username, password, profile.ca_certificate.as_deref()).await?;
        profile.client_id = Some(username.to_string());
        profile.client_secret = Some(password.to_string());
    } else {
        let t = moat_client::login_user(&endpoint, &tenant, username, password, profile.ca_certificate.as_deref()).await?;
        profile.user = Some(username.to_string());
        profile.access_token = Some(t.access_token);
        profile.expires_on = Some(t.expires_on);
    }
    let client = Client::new(profile.clone())?;
    let subs = client.list_all("/subscriptions").await?;
    let sub = subs.first().and_then(|s| s["subscriptionId"].as_str()).unwrap_or_default().to_string();
    profile.subscription_id = sub.clone();
    if let Some(dir) = profile_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| usage(format!("cannot create {}: {e}", dir.display())))?;
    }
    let bytes = serde_json::to_vec_pretty(&profile).map_err(|e| usage(e.to_string()))?;
    crate::serve::write_private_file(profile_path, &bytes).map_err(|e| usage(format!("cannot write {}: {e}", profile_path.display())))?;
    let v = json!({
        "profile": profile_path.display().to_string(),
        "tenantId": tenant,
        "subscriptionId": if sub.is_empty() { Value::Null } else { Value::String(sub) },
        "user": {"name": username, "type": if service_principal { "servicePrincipal" } else { "user" }},
    });
    output::print(Output::Json, &v, &[]);
    if subs.is_empty() {
        eprintln!("warning: signed in, but no subscription is visible: ask an Owner for a role assignment");
    }
    Ok(())
}

pub async fn user_create(
    c: &Client,
    display_name: &str,
    upn: &str,
    password: Option<&str>,
    external: Option<(String, String)>,
    out: Output,
) -> CmdResult {
    let mut body = json!({"displayName": display_name, "userPrincipalName": upn});
    if let Some(p) = password {
        body["passwordProfile"] = json!({"password": p});
    }
    if let Some((issuer, subject)) = external {
        body["identities"] = json!([{"signInType": "federated", "issuer": issuer, "issuerAssignedId": subject}]);
    }
    let v = c.send(Method::POST, "/v1.0/users", Some(&body), &[]).await?.body;
    output::print(out, &v, USER_COLUMNS);
    Ok(())
}

pub async fn user_show(c: &Client, id: &str, out: Output) -> CmdResult {
    output::print(out, &c.get(&format!("/v1.0/users/{id}")).await?.body, USER_COLUMNS);
    Ok(())
}

pub async fn user_list(c: &Client, out: Output) -> CmdResult {
    output::print(out, &Value::Array(c.list_all("/v1.0/users").await?), USER_COLUMNS);
    Ok(())
}

pub async fn user_delete(c: &Client, id: &str) -> CmdResult {
    c.send(Method::DELETE, &format!("/v1.0/users/{id}"), None, &[]).await?;
    Ok(())
}

/// `moat ad sp create-for-rbac`: a service principal, and optionally a role for it.
pub async fn sp_create_for_rbac(c: &Client, name: &str, role: Option<&str>, scopes: &[String], out: Output) -> CmdResult {
    if role.is_none() && !scopes.is_empty() {
        return Err(usage("--scopes needs --role"));
    }
    let created = c.send(Method::POST, "/v1.0/servicePrincipals", Some(&json!({"displayName": name})), &[]).await?.body;
    if let Some(role) = role {
        let object_id = created["id"].as_str().unwrap_or_default();
        let default_scope = [format!("/subscriptions/{}", c.profile().subscription_id)];
        let scopes = if scopes.is_empty() { &default_scope[..] } else { scopes };
        for scope in scopes {
            create_assignment_for(c, object_id, role, scope).await?;
        }
    }
    let v = json!({
        "appId": created["appId"],
        "displayName": created["displayName"],
        "password": created["password"],
        "tenant": created["tenant"],
    });
    output::print(out, &v, &[("AppId", "/appId"), ("DisplayName", "/displayName"), ("Password", "/password"), ("Tenant", "/tenant")]);
    eprintln!("The output includes credentials that you must protect; the password cannot be shown again.");
    Ok(())
}

pub async fn sp_show(c: &Client, id: &str, out: Output) -> CmdResult {
    output::print(out, &c.get(&format!("/v1.0/servicePrincipals/{id}")).await?.body, SP_COLUMNS);
    Ok(())
}

pub async fn sp_list(c: &Client, out: Output) -> CmdResult {
    output::print(out, &Value::Array(c.list_all("/v1.0/servicePrincipals").await?), SP_COLUMNS);
    Ok(())
}

pub async fn sp_delete(c: &Client, id: &str) -> CmdResult {
    c.send(Method::DELETE, &format!("/v1.0/servicePrincipals/{id}"), None, &[]).await?;
    Ok(())
}

/// The role definition file of `az role definition create`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(alias = "Name", alias = "roleName", alias = "name")]
    name: String,
    #[serde(default, alias = "Id", alias = "id")]
    id: Option<String>,
    #[serde(default, alias = "IsCustom", alias = "isCustom")]
    _is_custom: Option<bool>,
    #[serde(default, alias = "Description", alias = "description")]
    description: Option<String>,
    #[serde(default, alias = "Actions", alias = "actions")]
    actions: Vec<String>,
    #[serde(default, alias = "NotActions", alias = "notActions")]
    not_actions: Vec<String>,
    #[serde(default, alias = "DataActions", alias = "dataActions")]
    data_actions: Vec<String>,
    #[serde(default, alias = "NotDataActions", alias = "notDataActions")]
    not_data_actions: Vec<String>,
    #[serde(alias = "AssignableScopes", alias = "assignableScopes")]
    assignable_scopes: Vec<String>,
}

async fn find_role(c: &Client, name_or_id: &str) -> Result<Value, CliError> {
    let base = format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions", c.profile().subscription_id);
    if is_guid(name_or_id) {
        return Ok(c.get(&format!("{base}/{name_or_id}")).await?.body);
    }
    let filter = format!("roleName eq '{}'", name_or_id.replace('\'', "''"));
    let found = c
        .send(Method::GET, &format!("{base}?api-version=2022-04-01&$filter={}", moat_types::uri::percent_encode(&filter)), None, &[])
        .await?
        .body;
    found["value"]
        .as_array()
        .and_then(|v| v.first().cloned())
        .ok_or_else(|| usage(format!("no role named '{name_or_id}' (see `moat role definition list`)")))
}

pub async fn role_definition_create(c: &Client, source: &str, out: Output) -> CmdResult {
    let text = if Path::new(source).exists() {
        std::fs::read_to_string(source).map_err(|e| usage(format!("cannot read {source}: {e}")))?
    } else {
        source.to_string()
    };
    let de = &mut serde_json::Deserializer::from_str(&text);
    let file: RoleFile = serde_path_to_error::deserialize(de).map_err(|e| usage(format!("the role definition is invalid: {e}")))?;
    // Creating a role that exists by name updates it, as az does.
    let id = match file.id {
        Some(id) => id,
        None => match find_role(c, &file.name).await {
            Ok(existing) => existing["name"].as_str().unwrap_or_default().to_string(),
            Err(_) => uuid::Uuid::new_v4().to_string(),
        },
    };
    let body = json!({"properties": {
        "roleName": file.name,
        "description": file.description.unwrap_or_default(),
        "permissions": [{"actions": file.actions, "notActions": file.not_actions, "dataActions": file.data_actions, "notDataActions": file.not_data_actions}],
        "assignableScopes": file.assignable_scopes,
    }});
    let path = format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{id}", c.profile().subscription_id);
    let v = c.send(Method::PUT, &path, Some(&body), &[]).await?.body;
    output::print(out, &v, ROLE_COLUMNS);
    Ok(())
}

pub async fn role_definition_list(c: &Client, name: Option<&str>, custom_only: bool, out: Output) -> CmdResult {
    let mut items = match name {
        Some(n) => vec![find_role(c, n).await?],
        None => {
            c.list_all(&format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions", c.profile().subscription_id)).await?
        }
    };
    if custom_only {
        items.retain(|r| r["properties"]["type"] == "CustomRole");
    }
    output::print(out, &Value::Array(items), ROLE_COLUMNS);
    Ok(())
}

pub async fn role_definition_delete(c: &Client, name: &str) -> CmdResult {
    let role = find_role(c, name).await?;
    let id = role["id"].as_str().unwrap_or_default();
    c.send(Method::DELETE, id, None, &[]).await?;
    Ok(())
}

/// The object ID of a user (by UPN or ID) or service principal (by app or object ID).
async fn resolve_assignee(c: &Client, assignee: &str) -> Result<(String, String), CliError> {
    if let Ok(r) = c.get(&format!("/v1.0/users/{assignee}")).await {
        return Ok((
            r.body["id"].as_str().unwrap_or_default().to_string(),
            r.body["userPrincipalName"].as_str().unwrap_or_default().to_string(),
        ));
    }
    match c.get(&format!("/v1.0/servicePrincipals/{assignee}")).await {
        Ok(r) => {
            Ok((r.body["id"].as_str().unwrap_or_default().to_string(), r.body["displayName"].as_str().unwrap_or_default().to_string()))
        }
        Err(ClientError::Api { status: 404, .. }) => Err(usage(format!("no user or service principal '{assignee}'"))),
        Err(e) => Err(e.into()),
    }
}

fn default_scope(c: &Client, scope: Option<&str>) -> String {
    scope.map(|s| s.trim_end_matches('/').to_string()).unwrap_or_else(|| format!("/subscriptions/{}", c.profile().subscription_id))
}

async fn create_assignment_for(c: &Client, object_id: &str, role: &str, scope: &str) -> Result<Value, CliError> {
    let role = find_role(c, role).await?;
    let body = json!({"properties": {"roleDefinitionId": role["id"], "principalId": object_id}});
    let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{}", uuid::Uuid::new_v4());
    let mut v = c.send(Method::PUT, &path, Some(&body), &[]).await?.body;
    v["roleDefinitionName"] = role["properties"]["roleName"].clone();
    Ok(v)
}

pub async fn role_assignment_create(c: &Client, assignee: &str, role: &str, scope: Option<&str>, out: Output) -> CmdResult {
    let (object_id, name) = resolve_assignee(c, assignee).await?;
    let mut v = create_assignment_for(c, &object_id, role, &default_scope(c, scope)).await?;
    v["principalName"] = Value::String(name);
    output::print(out, &v, ASSIGNMENT_COLUMNS);
    Ok(())
}

async fn assignments(c: &Client, assignee: Option<&str>, scope: Option<&str>) -> Result<Vec<Value>, CliError> {
    let scope = default_scope(c, scope);
    let mut path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01");
    let mut names = std::collections::HashMap::new();
    if let Some(a) = assignee {
        let (id, name) = resolve_assignee(c, a).await?;
        path.push_str(&format!("&$filter={}", moat_types::uri::percent_encode(&format!("principalId eq '{id}'"))));
        names.insert(id, name);
    }
    let roles =
        c.list_all(&format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions", c.profile().subscription_id)).await?;
    let mut items = c.list_all(&path).await?;
    for item in &mut items {
        let rid = item["properties"]["roleDefinitionId"].as_str().unwrap_or_default().to_ascii_lowercase();
        if let Some(r) = roles.iter().find(|r| r["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(&rid))) {
            item["roleDefinitionName"] = r["properties"]["roleName"].clone();
        }
        if let Some(pid) = item["properties"]["principalId"].as_str().map(str::to_string) {
            if !names.contains_key(&pid) {
                // Users show their UPN, service principals their display name.
                let name = match c.get(&format!("/v1.0/users/{pid}")).await {
                    Ok(u) => u.body["userPrincipalName"].as_str().map(str::to_string),
                    Err(_) => c
                        .get(&format!("/v1.0/servicePrincipals/{pid}"))
                        .await
                        .ok()
                        .and_then(|s| s.body["displayName"].as_str().map(str::to_string)),
                };
                names.insert(pid.clone(), name.unwrap_or_default());
            }
            item["principalName"] = Value::String(names[&pid].clone());
        }
    }
    Ok(items)
}

pub async fn role_assignment_list(c: &Client, assignee: Option<&str>, scope: Option<&str>, out: Output) -> CmdResult {
    output::print(out, &Value::Array(assignments(c, assignee, scope).await?), ASSIGNMENT_COLUMNS);
    Ok(())
}

pub async fn role_assignment_delete(
    c: &Client,
    ids: &[String],
    assignee: Option<&str>,
    role: Option<&str>,
    scope: Option<&str>,
) -> CmdResult {
    let mut targets: Vec<String> = ids.to_vec();
    if targets.is_empty() {
        let Some(assignee) = assignee else { return Err(usage("give --ids, or --assignee (with --role and --scope to narrow it)")) };
        let wanted_scope = default_scope(c, scope);
        let role_name = role.map(str::to_ascii_lowercase);
        for a in assignments(c, Some(assignee), Some(&wanted_scope)).await? {
            let same_scope = a["properties"]["scope"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(&wanted_scope));
            let same_role = role_name.as_deref().is_none_or(|r| {
                a["roleDefinitionName"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(r))
                    || a["properties"]["roleDefinitionId"].as_str().is_some_and(|id| id.to_ascii_lowercase().ends_with(r))
            });
            if same_scope && same_role {
                targets.push(a["id"].as_str().unwrap_or_default().to_string());
            }
        }
        if targets.is_empty() {
            return Err(usage("no matching role assignment"));
        }
    }
    for id in targets {
        c.send(Method::DELETE, &id, None, &[]).await?;
    }
    Ok(())
}

const ACTIVITY_COLUMNS: &[Column] = &[
    ("Time", "/eventTimestamp"),
    ("Result", "/result"),
    ("Caller", "/caller"),
    ("Client", "/clientAddress"),
    ("Origin", "/origin"),
    ("Operation", "/operationName"),
    ("Resource", "/resourceId"),
    ("Rule", "/rule"),
];

/// `30m`, `2h`, `1d` back from now, or an RFC 3339 time as given.
fn since_time(since: &str) -> Result<String, CliError> {
    let (num, unit) = since.split_at(since.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    if let (Ok(n), Some(secs)) = (
        num.parse::<i64>(),
        match unit {
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86400),
            _ => None,
        },
    ) {
        let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(n * secs);
        return t.format(&time::format_description::well_known::Rfc3339).map_err(|e| usage(e.to_string()));
    }
    time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        .map(|_| since.to_string())
        .map_err(|_| usage(format!("--since takes an RFC 3339 time or a duration such as 30m, 2h or 1d, not '{since}'")))
}

pub async fn activity_log_list(
    c: &Client,
    resource_id: Option<&str>,
    principal: Option<&str>,
    result: Option<&str>,
    since: Option<&str>,
    max_events: usize,
    out: Output,
) -> CmdResult {
    let mut terms = Vec::new();
    if let Some(s) = since {
        terms.push(format!("eventTimestamp ge '{}'", since_time(s)?));
    }
    if let Some(r) = resource_id {
        terms.push(format!("resourceId eq '{}'", r.trim_end_matches('/')));
    }
    if let Some(p) = principal {
        let id = if is_guid(p) && c.get(&format!("/v1.0/servicePrincipals/{p}")).await.is_err() {
            p.to_string()
        } else {
            resolve_assignee(c, p).await?.0
        };
        terms.push(format!("principalId eq '{id}'"));
    }
    if let Some(r) = result {
        terms.push(format!("result eq '{r}'"));
    }
    let mut path = format!(
        "/subscriptions/{}/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01",
        c.profile().subscription_id
    );
    if !terms.is_empty() {
        path.push_str(&format!("&$filter={}", moat_types::uri::percent_encode(&terms.join(" and "))));
    }
    let mut items = Vec::new();
    let mut next = Some(path);
    while let Some(p) = next {
        if items.len() >= max_events {
            break;
        }
        let page = c.get(&p).await?.body;
        items.extend(page["value"].as_array().cloned().unwrap_or_default());
        next = page["nextLink"].as_str().map(str::to_string);
    }
    items.truncate(max_events);
    output::print(out, &Value::Array(items), ACTIVITY_COLUMNS);
    Ok(())
}
