//! Role definitions (built-in and custom) and role assignments: the data behind the one
//! authorization hook. Every change is committed to the store and then applied to the
//! in-memory index.

use moat_policy::{Assignment, RoleDefinition, actions};
use moat_store::{AssignmentRow, ListQuery, Store, WriteTx};
use moat_types::ResourceId;
use moat_types::arm::{self, Permission, RoleAssignment, RoleAssignmentProperties, RoleDefinitionProperties};
use serde::{Deserialize, Serialize};

use crate::groups::GroupDoc;
use crate::{Caller, Error, Listed, Moat, Result, decode, document, new_etag, now_rfc3339};

const AUTH_NS: &str = "Microsoft.Authorization";

/// The stored document of a custom role.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RoleDoc {
    id: String,
    name: String,
    description: String,
    actions: Vec<String>,
    not_actions: Vec<String>,
    data_actions: Vec<String>,
    not_data_actions: Vec<String>,
    assignable_scopes: Vec<String>,
}

impl From<RoleDoc> for RoleDefinition {
    fn from(d: RoleDoc) -> Self {
        RoleDefinition {
            id: d.id,
            name: d.name,
            description: d.description,
            actions: d.actions,
            not_actions: d.not_actions,
            data_actions: d.data_actions,
            not_data_actions: d.not_data_actions,
            assignable_scopes: d.assignable_scopes,
            builtin: false,
        }
    }
}

pub(crate) async fn load_custom_roles(store: &Store, subscription_id: &str) -> Result<Vec<RoleDefinition>> {
    let kind = arm::ROLE_DEFINITION_TYPE.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let rows = store
            .list_resources(&ListQuery {
                kind: Some(&kind),
                subscription_id,
                group_key: None,
                id_prefix: None,
                after_key: after.as_deref(),
                limit: 500,
            })
            .await?;
        for r in &rows {
            out.push(decode::<RoleDoc>(r)?.into());
        }
        match rows.last() {
            Some(last) if rows.len() == 500 => after = Some(last.id_key()),
            _ => return Ok(out),
        }
    }
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

fn role_not_found(id: &str) -> Error {
    Error::not_found("RoleDefinitionDoesNotExist", format!("The role definition '{id}' does not exist."))
}

fn assignment_not_found(name: &str) -> Error {
    Error::not_found("RoleAssignmentNotFound", format!("The role assignment '{name}' could not be found."))
}

/// The GUID of a role from `roleDefinitionId` (a full ID or the bare GUID).
fn role_guid(raw: &str) -> &str {
    raw.rsplit('/').next().unwrap_or(raw)
}

impl Moat {
    fn role_definition_id(&self, role: &str) -> ResourceId {
        ResourceId::subscription_provider(&self.subscription_id, AUTH_NS, "roleDefinitions", role)
    }

    fn render_role(&self, r: &RoleDefinition) -> arm::RoleDefinition {
        arm::RoleDefinition {
            id: Some(self.role_definition_id(&r.id).to_string()),
            name: Some(r.id.clone()),
            resource_type: Some(arm::ROLE_DEFINITION_TYPE.into()),
            properties: Some(RoleDefinitionProperties {
                role_name: Some(r.name.clone()),
                description: Some(r.description.clone()),
                role_type: Some(if r.builtin { "BuiltInRole" } else { "CustomRole" }.into()),
                permissions: Some(vec![Permission {
                    actions: r.actions.clone(),
                    not_actions: r.not_actions.clone(),
                    data_actions: r.data_actions.clone(),
                    not_data_actions: r.not_data_actions.clone(),
                }]),
                assignable_scopes: Some(r.assignable_scopes.clone()),
            }),
        }
    }

    fn role(&self, id: &str) -> Option<RoleDefinition> {
        self.authz.read().ok().and_then(|idx| idx.role(id).cloned())
    }

    /// Built-in and custom roles, optionally only the one named `role_name` (case-insensitive).
    pub async fn list_role_definitions(
        &self,
        caller: &Caller,
        subscription_id: &str,
        role_name: Option<&str>,
    ) -> Result<Vec<arm::RoleDefinition>> {
        self.check_subscription(subscription_id)?;
        self.authorize(caller, actions::ROLE_DEFINITION_READ, &ResourceId::subscription(&self.subscription_id)).await?;
        let mut roles: Vec<RoleDefinition> = match self.authz.read() {
            Ok(idx) => idx.roles().filter(|r| role_name.is_none_or(|n| r.name.eq_ignore_ascii_case(n))).cloned().collect(),
            Err(_) => return Err(Error::Internal("authorization index unavailable".into())),
        };
        roles.sort_by(|a, b| (!a.builtin, &a.name).cmp(&(!b.builtin, &b.name)));
        Ok(roles.iter().map(|r| self.render_role(r)).collect())
    }

    pub async fn get_role_definition(&self, caller: &Caller, subscription_id: &str, id: &str) -> Result<arm::RoleDefinition> {
        self.check_subscription(subscription_id)?;
        self.authorize(caller, actions::ROLE_DEFINITION_READ, &ResourceId::subscription(&self.subscription_id)).await?;
        self.role(id).map(|r| self.render_role(&r)).ok_or_else(|| role_not_found(id))
    }

    /// Creates or updates a custom role. Returns the role and whether it was created.
    pub async fn put_role_definition(
        &self,
        caller: &Caller,
        subscription_id: &str,
        id: &str,
        body: arm::RoleDefinition,
    ) -> Result<(arm::RoleDefinition, bool)> {
        self.check_subscription(subscription_id)?;
        self.authorize(caller, actions::ROLE_DEFINITION_WRITE, &ResourceId::subscription(&self.subscription_id)).await?;
        if !is_guid(id) {
            return Err(Error::invalid("InvalidRoleDefinitionId", "name", format!("A role definition is named by a GUID, not '{id}'.")));
        }
        if self.role(id).is_some_and(|r| r.builtin) {
            return Err(Error::invalid(
                "BuiltInRoleCannotBeChanged",
                "name",
                format!("'{id}' is a built-in role; built-in roles cannot change."),
            ));
        }
        let props = body.properties.unwrap_or_default();
        let name = props.role_name.as_deref().map(str::trim).unwrap_or_default().to_string();
        if name.is_empty() || name.len() > 128 {
            return Err(Error::invalid("InvalidRoleDefinitionName", "properties.roleName", "roleName is required (1 to 128 characters)."));
        }
        let taken = self
            .authz
            .read()
            .ok()
            .is_some_and(|idx| idx.roles().any(|r| r.name.eq_ignore_ascii_case(&name) && !r.id.eq_ignore_ascii_case(id)));
        if taken {
            return Err(Error::conflict(
                "RoleDefinitionWithSameNameExists",
                format!("A role named '{name}' exists already; role names are unique."),
            ));
        }
        let perms = props.permissions.unwrap_or_default();
        let [perm] = perms.as_slice() else {
            return Err(Error::invalid("InvalidPermissions", "properties.permissions", "permissions must hold exactly one entry."));
        };
        if perm.actions.is_empty() && perm.data_actions.is_empty() {
            return Err(Error::invalid(
                "InvalidPermissions",
                "properties.permissions[0].actions",
                "A role must allow at least one action or data action.",
            ));
        }
        for (field, list) in [
            ("actions", &perm.actions),
            ("notActions", &perm.not_actions),
            ("dataActions", &perm.data_actions),
            ("notDataActions", &perm.not_data_actions),
        ] {
            if let Some(bad) = list.iter().find(|a| a.trim().is_empty() || a.chars().any(|c| c.is_whitespace())) {
                return Err(Error::invalid(
                    "InvalidActionOrNotAction",
                    format!("properties.permissions[0].{field}"),
                    format!("'{bad}' is not an action string such as Microsoft.MachineLearningServices/registries/read."),
                ));
            }
        }
        let scopes = props.assignable_scopes.unwrap_or_default();
        if scopes.is_empty() {
            return Err(Error::invalid(
                "InvalidAssignableScopes",
                "properties.assignableScopes",
                "assignableScopes needs at least one scope.",
            ));
        }
        for (i, s) in scopes.iter().enumerate() {
            let parsed = ResourceId::parse(s)
                .map_err(|e| Error::invalid("InvalidAssignableScopes", format!("properties.assignableScopes[{i}]"), e.to_string()))?;
            if !parsed.subscription_id().eq_ignore_ascii_case(&self.subscription_id) {
                return Err(Error::invalid(
                    "InvalidAssignableScopes",
                    format!("properties.assignableScopes[{i}]"),
                    format!("'{s}' is outside this installation's subscription."),
                ));
            }
        }
        let doc = RoleDoc {
            id: id.to_ascii_lowercase(),
            name,
            description: props.description.unwrap_or_default(),
            actions: perm.actions.clone(),
            not_actions: perm.not_actions.clone(),
            data_actions: perm.data_actions.clone(),
            not_data_actions: perm.not_data_actions.clone(),
            assignable_scopes: scopes,
        };
        let rid = self.role_definition_id(&doc.id);
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let created = match tx.get_resource(&rid.key()).await? {
            None => {
                tx.insert_resource(&document(&rid, &doc, new_etag(), &now, &now)?).await?;
                true
            }
            Some(row) => {
                if !tx.update_resource(&document(&rid, &doc, new_etag(), &row.created_at, &now)?, &row.etag).await? {
                    return Err(Error::PreconditionFailed { message: "The role definition changed concurrently; retry.".into() });
                }
                false
            }
        };
        tx.commit().await?;
        let role: RoleDefinition = doc.into();
        let rendered = self.render_role(&role);
        self.update_authz(|idx| idx.put_role(role)).await?;
        Ok((rendered, created))
    }

    /// Deletes a custom role that no assignment uses. `None` when it did not exist.
    pub async fn delete_role_definition(&self, caller: &Caller, subscription_id: &str, id: &str) -> Result<Option<arm::RoleDefinition>> {
        self.check_subscription(subscription_id)?;
        self.authorize(caller, actions::ROLE_DEFINITION_DELETE, &ResourceId::subscription(&self.subscription_id)).await?;
        let Some(role) = self.role(id) else { return Ok(None) };
        if role.builtin {
            return Err(Error::invalid(
                "BuiltInRoleCannotBeChanged",
                "name",
                format!("'{}' is a built-in role and cannot be deleted.", role.name),
            ));
        }
        let mut tx = self.store.write().await?;
        if self.authz.read().ok().is_none_or(|idx| idx.role_in_use(id)) {
            return Err(Error::conflict(
                "RoleDefinitionHasAssignments",
                format!("The role '{}' is still assigned; delete its role assignments first.", role.name),
            ));
        }
        tx.delete_resource(&self.role_definition_id(&role.id).key()).await?;
        tx.commit().await?;
        self.update_authz(|idx| idx.remove_role(&role.id)).await?;
        Ok(Some(self.render_role(&role)))
    }

    /// Checks that `scope` names something that exists (an assignment to nothing is an error).
    async fn scope_exists(&self, tx: &mut WriteTx, scope: &ResourceId) -> Result<()> {
        if !scope.subscription_id().eq_ignore_ascii_case(&self.subscription_id) {
            return Err(Error::not_found(
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", scope.subscription_id()),
            ));
        }
        if scope.resource_group_name().is_none() {
            return Ok(());
        }
        if tx.get_resource(&scope.key()).await?.is_none() {
            return Err(Error::not_found("ScopeNotFound", format!("The scope '{scope}' does not exist.")));
        }
        Ok(())
    }

    fn render_assignment(&self, row: &AssignmentRow, principal_type: Option<String>) -> RoleAssignment {
        RoleAssignment {
            id: Some(format!("{}/providers/{AUTH_NS}/roleAssignments/{}", row.scope, row.id)),
            name: Some(row.id.clone()),
            resource_type: Some(arm::ROLE_ASSIGNMENT_TYPE.into()),
            properties: Some(RoleAssignmentProperties {
                role_definition_id: Some(self.role_definition_id(&row.role_definition_id).to_string()),
                principal_id: Some(row.principal_id.clone()),
                principal_type,
                scope: Some(row.scope.clone()),
                created_on: Some(row.created_at.clone()),
            }),
        }
    }

    async fn principal_type(&self, object_id: &str) -> Result<Option<String>> {
        Ok(self.store.principal(object_id).await?.map(|p| p.kind))
    }

    /// Creates a role assignment at `scope` (PUT `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`).
    pub async fn create_role_assignment(
        &self,
        caller: &Caller,
        scope: &ResourceId,
        name: &str,
        body: RoleAssignment,
    ) -> Result<RoleAssignment> {
        self.authorize(caller, actions::ROLE_ASSIGNMENT_WRITE, scope).await?;
        if !is_guid(name) {
            return Err(Error::invalid("InvalidRoleAssignmentId", "name", format!("A role assignment is named by a GUID, not '{name}'.")));
        }
        let props = body.properties.unwrap_or_default();
        let role_raw = props.role_definition_id.ok_or_else(|| {
            Error::invalid("InvalidRequestContent", "properties.roleDefinitionId", "properties.roleDefinitionId is required.")
        })?;
        let role = self.role(role_guid(&role_raw)).ok_or_else(|| {
            Error::invalid(
                "RoleDefinitionDoesNotExist",
                "properties.roleDefinitionId",
                format!("The role definition '{role_raw}' does not exist."),
            )
        })?;
        let principal_id = props
            .principal_id
            .ok_or_else(|| Error::invalid("InvalidRequestContent", "properties.principalId", "properties.principalId is required."))?;
        let principal = self.store.principal(&principal_id).await?.ok_or_else(|| {
            Error::invalid(
                "PrincipalNotFound",
                "properties.principalId",
                format!("Principal '{principal_id}' does not exist in tenant {}.", self.tenant_id),
            )
        })?;
        let assignable = role.assignable_scopes.iter().any(|s| s == "/" || ResourceId::parse(s).is_ok_and(|s| scope.is_within(&s)));
        if !assignable {
            return Err(Error::invalid(
                "InvalidRoleAssignmentScope",
                "properties.roleDefinitionId",
                format!("The role '{}' may be assigned only within {:?}, not at '{scope}'.", role.name, role.assignable_scopes),
            ));
        }
        let mut tx = self.store.write().await?;
        // The role may have been deleted while we waited for the write lock.
        if self.role(&role.id).is_none() {
            return Err(Error::invalid(
                "RoleDefinitionDoesNotExist",
                "properties.roleDefinitionId",
                format!("The role definition '{role_raw}' does not exist."),
            ));
        }
        self.scope_exists(&mut tx, scope).await?;
        if let Some(g) = scope.resource_group_name() {
            let gid = ResourceId::resource_group(&self.subscription_id, g);
            if let Some(row) = tx.get_resource(&gid.key()).await? {
                let gdoc: GroupDoc = decode(&row)?;
                if gdoc.managed_by.is_some() {
                    return Err(crate::groups::deny_managed(&gdoc, actions::ROLE_ASSIGNMENT_WRITE, scope));
                }
            }
        }
        if tx.find_assignment(&principal.object_id, &role.id, &scope.key()).await?.is_some() {
            return Err(Error::conflict(
                "RoleAssignmentExists",
                format!("'{}' already holds role '{}' at '{scope}'.", principal.display_name, role.name),
            ));
        }
        if self.store.assignment(&name.to_ascii_lowercase()).await?.is_some() {
            return Err(Error::conflict("RoleAssignmentExists", format!("A role assignment named '{name}' exists already.")));
        }
        let row = AssignmentRow {
            id: name.to_ascii_lowercase(),
            principal_id: principal.object_id.clone(),
            role_definition_id: role.id.clone(),
            scope: scope.to_string(),
            created_at: now_rfc3339(),
        };
        tx.insert_assignment(&row).await?;
        tx.commit().await?;
        self.update_authz(|idx| {
            idx.add_assignment(Assignment {
                id: row.id.clone(),
                principal_id: row.principal_id.clone(),
                role_definition_id: row.role_definition_id.clone(),
                scope: scope.clone(),
            })
        })
        .await?;
        Ok(self.render_assignment(&row, Some(principal.kind)))
    }

    async fn assignment_at(&self, scope: &ResourceId, name: &str) -> Result<AssignmentRow> {
        let row = self.store.assignment(&name.to_ascii_lowercase()).await?.ok_or_else(|| assignment_not_found(name))?;
        if !row.scope.eq_ignore_ascii_case(scope.as_str()) {
            return Err(assignment_not_found(name));
        }
        Ok(row)
    }

    pub async fn get_role_assignment(&self, caller: &Caller, scope: &ResourceId, name: &str) -> Result<RoleAssignment> {
        self.authorize(caller, actions::ROLE_ASSIGNMENT_READ, scope).await?;
        let row = self.assignment_at(scope, name).await?;
        let kind = self.principal_type(&row.principal_id).await?;
        Ok(self.render_assignment(&row, kind))
    }

    /// Deletes an assignment; `None` when it did not exist.
    pub async fn delete_role_assignment(&self, caller: &Caller, scope: &ResourceId, name: &str) -> Result<Option<RoleAssignment>> {
        self.authorize(caller, actions::ROLE_ASSIGNMENT_DELETE, scope).await?;
        let row = match self.assignment_at(scope, name).await {
            Ok(r) => r,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut tx = self.store.write().await?;
        tx.delete_assignment(&row.id).await?;
        tx.commit().await?;
        self.update_authz(|idx| idx.remove_assignment(&row.principal_id, &row.id)).await?;
        let kind = self.principal_type(&row.principal_id).await?;
        Ok(Some(self.render_assignment(&row, kind)))
    }

    /// Assignments at `scope` and below, optionally of one principal.
    pub async fn list_role_assignments(
        &self,
        caller: &Caller,
        scope: &ResourceId,
        principal: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Listed<RoleAssignment>> {
        self.authorize(caller, actions::ROLE_ASSIGNMENT_READ, scope).await?;
        let mut items = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let rows = self.store.assignments_within(&scope.key(), cursor.as_deref(), limit + 1).await?;
            let more = rows.len() as i64 > limit;
            for row in rows.iter().take(limit as usize) {
                cursor = Some(row.id.clone());
                if principal.is_some_and(|p| !p.eq_ignore_ascii_case(&row.principal_id)) {
                    continue;
                }
                let kind = self.principal_type(&row.principal_id).await?;
                items.push(self.render_assignment(row, kind));
                if items.len() as i64 == limit {
                    let next_after = if more || rows.last().map(|r| &r.id) != cursor.as_ref() { cursor } else { None };
                    return Ok(Listed { items, next_after });
                }
            }
            if !more {
                return Ok(Listed { items, next_after: None });
            }
        }
    }
}
