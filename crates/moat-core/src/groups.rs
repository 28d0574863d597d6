//! Subscriptions, resource groups and the generic views over what a group holds.

use moat_policy::actions;
use moat_store::{ListQuery, WriteTx};
use moat_types::arm::{self, GenericResource, ResourceGroup, ResourceGroupProperties, Subscription, SystemData, Tags};
use moat_types::{Region, ResourceGroupName, ResourceId, names};
use serde::{Deserialize, Serialize};

use crate::{Caller, Error, Listed, Moat, OperationRef, Preconditions, Result, Versioned, decode, document, new_etag, now_rfc3339};

/// The stored document of a resource group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GroupDoc {
    pub name: String,
    pub location: String,
    pub tags: Tags,
    /// The resource that manages this group; such a group carries a deny assignment.
    pub managed_by: Option<String>,
    pub system_data: SystemData,
}

pub const DEFAULT_GROUP: &str = "default";
pub const DEFAULT_LOCATION: &str = "local";

pub(crate) fn system_data(caller: Option<&Caller>, created: Option<&SystemData>, now: &str) -> SystemData {
    let (by, by_type) = match caller {
        Some(c) => (c.display_name.clone(), c.by_type().to_string()),
        None => ("moat".to_string(), "Application".to_string()),
    };
    SystemData {
        created_by: Some(created.and_then(|c| c.created_by.clone()).unwrap_or_else(|| by.clone())),
        created_by_type: Some(created.and_then(|c| c.created_by_type.clone()).unwrap_or_else(|| by_type.clone())),
        created_at: Some(created.and_then(|c| c.created_at.clone()).unwrap_or_else(|| now.to_string())),
        last_modified_by: Some(by),
        last_modified_by_type: Some(by_type),
        last_modified_at: Some(now.to_string()),
    }
}

pub(crate) async fn insert_default_group(tx: &mut WriteTx, subscription_id: &str, now: &str) -> Result<()> {
    let id = ResourceId::resource_group(subscription_id, DEFAULT_GROUP);
    let doc = GroupDoc {
        name: DEFAULT_GROUP.into(),
        location: DEFAULT_LOCATION.into(),
        tags: Tags::new(),
        managed_by: None,
        system_data: system_data(None, None, now),
    };
    tx.insert_resource(&document(&id, &doc, new_etag(), now, now)?).await?;
    Ok(())
}

/// Inserts a managed resource group (owned by `managed_by`), as moat itself.
pub(crate) async fn insert_managed_group(
    tx: &mut WriteTx,
    id: &ResourceId,
    location: &str,
    managed_by: &ResourceId,
    now: &str,
) -> Result<()> {
    let doc = GroupDoc {
        name: id.name().to_string(),
        location: location.to_string(),
        tags: Tags::new(),
        managed_by: Some(managed_by.to_string()),
        system_data: system_data(None, None, now),
    };
    tx.insert_resource(&document(id, &doc, new_etag(), now, now)?).await?;
    Ok(())
}

fn render_group(id: &str, doc: &GroupDoc) -> ResourceGroup {
    ResourceGroup {
        id: Some(id.to_string()),
        name: Some(doc.name.clone()),
        resource_type: Some(arm::RESOURCE_GROUP_TYPE.into()),
        location: Some(doc.location.clone()),
        tags: Some(doc.tags.clone()),
        managed_by: doc.managed_by.clone(),
        properties: Some(ResourceGroupProperties { provisioning_state: Some("Succeeded".into()) }),
    }
}

fn group_not_found(name: &str) -> Error {
    Error::not_found("ResourceGroupNotFound", format!("Resource group '{name}' could not be found."))
}

/// The deny assignment of a managed resource group: nobody but moat changes it.
pub(crate) fn deny_managed(doc: &GroupDoc, action: &str, id: &ResourceId) -> Error {
    let owner = doc.managed_by.clone().unwrap_or_default();
    Error::Forbidden {
        code: "DenyAssignmentAuthorizationFailed",
        action: action.to_string(),
        scope: id.to_string(),
        message: format!(
            "'{}' is the managed resource group of '{owner}' and carries a deny assignment: only moat may change it or create resources in it. \
             Change the owning resource instead.",
            doc.name
        ),
    }
}

/// Loads a resource group inside a write transaction, for a write that targets it.
pub(crate) async fn group_for_write(tx: &mut WriteTx, subscription_id: &str, group: &str) -> Result<GroupDoc> {
    let id = ResourceId::resource_group(subscription_id, group);
    let row = tx.get_resource(&id.key()).await?.ok_or_else(|| group_not_found(group))?;
    decode(&row)
}

impl Moat {
    pub async fn get_subscription(&self, caller: &Caller, subscription_id: &str) -> Result<Subscription> {
        self.check_subscription(subscription_id)?;
        let id = ResourceId::subscription(&self.subscription_id);
        // Like Azure, a principal with a role anywhere in the subscription may see it.
        let holds_a_role = self.authz.read().is_ok_and(|idx| idx.has_any_assignment(&caller.object_id));
        if !holds_a_role {
            self.authorize_visible(caller, actions::SUBSCRIPTION_READ, actions::SUBSCRIPTION_READ, &id, || {
                Error::not_found("SubscriptionNotFound", format!("The subscription '{subscription_id}' could not be found."))
            })
            .await?;
        }
        Ok(Subscription {
            id: id.to_string(),
            subscription_id: self.subscription_id.clone(),
            tenant_id: self.tenant_id.clone(),
            display_name: "moat".into(),
            state: "Enabled".into(),
        })
    }

    pub async fn list_subscriptions(&self, caller: &Caller) -> Result<Vec<Subscription>> {
        match self.get_subscription(caller, &self.subscription_id.clone()).await {
            Ok(s) => Ok(vec![s]),
            Err(Error::NotFound { .. }) => Ok(vec![]),
            Err(e) => Err(e),
        }
    }

    pub async fn get_group(&self, caller: &Caller, subscription_id: &str, group: &str) -> Result<Versioned<ResourceGroup>> {
        self.check_subscription(subscription_id)?;
        let id = ResourceId::resource_group(&self.subscription_id, group);
        let (doc, row) = self.read_visible::<GroupDoc>(caller, actions::GROUP_READ, &id, || group_not_found(group)).await?;
        Ok(Versioned { value: render_group(&row.id, &doc), etag: row.etag })
    }

    pub async fn list_groups(
        &self,
        caller: &Caller,
        subscription_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Listed<ResourceGroup>> {
        self.check_subscription(subscription_id)?;
        let sub = ResourceId::subscription(&self.subscription_id);
        let all_visible = self.authorize_list(caller, actions::GROUP_READ, &sub).await?;
        let kind = arm::RESOURCE_GROUP_TYPE.to_ascii_lowercase();
        self.list_paged(&kind, None, None, after, limit, |row| {
            if all_visible || self.may_read(caller, actions::GROUP_READ, row)? {
                Ok(Some(render_group(&row.id, &decode(row)?)))
            } else {
                Ok(None)
            }
        })
        .await
    }

    /// Creates or updates a resource group. Returns the group and whether it was created.
    pub async fn put_group(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        body: ResourceGroup,
        pre: &Preconditions,
    ) -> Result<(Versioned<ResourceGroup>, bool)> {
        self.check_subscription(subscription_id)?;
        let name = ResourceGroupName::parse(group)?;
        let id = ResourceId::resource_group(&self.subscription_id, name.as_str());
        self.authorize_visible(caller, actions::GROUP_WRITE, actions::GROUP_READ, &id, || group_not_found(group)).await?;
        if let Some(n) = &body.name
            && !n.eq_ignore_ascii_case(group)
        {
            return Err(Error::invalid("InvalidRequestContent", "name", format!("The body names '{n}' but the URL names '{group}'.")));
        }
        if body.managed_by.is_some() {
            return Err(Error::invalid("InvalidRequestContent", "managedBy", "managedBy is set by moat and cannot be given."));
        }
        let location = body
            .location
            .as_deref()
            .ok_or_else(|| Error::invalid("LocationRequired", "location", "The location property is required for a resource group."))?;
        let location = Region::parse("location", location)?;
        let tags = body.tags.unwrap_or_default();
        names::validate_tags("tags", &tags)?;
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let existing = tx.get_resource(&id.key()).await?;
        pre.check(existing.as_ref().map(|r| r.etag.as_str()))?;
        let created = existing.is_none();
        let etag = new_etag();
        let doc = match existing {
            None => {
                let doc = GroupDoc {
                    name: name.to_string(),
                    location: location.to_string(),
                    tags,
                    managed_by: None,
                    system_data: system_data(Some(caller), None, &now),
                };
                tx.insert_resource(&document(&id, &doc, etag.clone(), &now, &now)?).await?;
                doc
            }
            Some(row) => {
                let old: GroupDoc = decode(&row)?;
                if old.managed_by.is_some() {
                    return Err(deny_managed(&old, actions::GROUP_WRITE, &id));
                }
                if old.location != location.as_str() {
                    return Err(Error::invalid(
                        "InvalidResourceGroupLocation",
                        "location",
                        format!(
                            "Resource group '{}' already exists in location '{}'; a group's location cannot change.",
                            old.name, old.location
                        ),
                    ));
                }
                let doc = GroupDoc { tags, system_data: system_data(Some(caller), Some(&old.system_data), &now), ..old };
                let stored = document(&id, &doc, etag.clone(), &row.created_at, &now)?;
                if !tx.update_resource(&stored, &row.etag).await? {
                    return Err(Error::PreconditionFailed { message: "The resource group changed concurrently; retry.".into() });
                }
                doc
            }
        };
        tx.commit().await?;
        Ok((Versioned { value: render_group(id.as_str(), &doc), etag }, created))
    }

    /// Deletes an empty resource group. Returns `None` when it did not exist.
    pub async fn delete_group(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        pre: &Preconditions,
    ) -> Result<Option<OperationRef>> {
        self.check_subscription(subscription_id)?;
        let id = ResourceId::resource_group(&self.subscription_id, group);
        self.authorize_visible(caller, actions::GROUP_DELETE, actions::GROUP_READ, &id, || group_not_found(group)).await?;
        let mut tx = self.store.write().await?;
        let Some(row) = tx.get_resource(&id.key()).await? else {
            pre.check(None)?;
            return Ok(None);
        };
        pre.check(Some(&row.etag))?;
        let doc: GroupDoc = decode(&row)?;
        if doc.managed_by.is_some() {
            return Err(deny_managed(&doc, actions::GROUP_DELETE, &id));
        }
        // The group's own row counts as one.
        let held = tx.count_in_group(&self.subscription_id, &id.name().to_ascii_lowercase()).await? - 1;
        if held > 0 {
            return Err(Error::conflict(
                "ResourceGroupNotEmpty",
                format!(
                    "Resource group '{}' still holds {held} resource(s); delete them first (moat lists them at GET {id}/resources).",
                    doc.name
                ),
            ));
        }
        tx.delete_resource(&id.key()).await?;
        let op = self.record_operation(&mut tx, caller, "resourceGroups/delete", &id, &doc.location).await?;
        tx.commit().await?;
        Ok(Some(op))
    }

    /// What a resource group holds (`GET .../resourceGroups/{rg}/resources`).
    pub async fn list_group_resources(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Listed<GenericResource>> {
        self.check_subscription(subscription_id)?;
        let gid = ResourceId::resource_group(&self.subscription_id, group);
        self.authorize_visible(caller, actions::GROUP_RESOURCES_READ, actions::GROUP_READ, &gid, || group_not_found(group)).await?;
        if self.store.get_resource(&gid.key()).await?.is_none() {
            return Err(group_not_found(group));
        }
        let group_key = group.to_ascii_lowercase();
        let rows = self
            .store
            .list_resources(&ListQuery {
                kind: None,
                subscription_id: &self.subscription_id,
                group_key: Some(&group_key),
                id_prefix: None,
                after_key: after,
                limit: limit + 1,
            })
            .await?;
        let mut items = Vec::new();
        let mut last = None;
        for row in rows.iter().take(limit as usize) {
            last = Some(row.id_key());
            if row.id_key() == gid.key() {
                continue;
            }
            let rid = ResourceId::parse(&row.id)?;
            // Top-level resources only, as ARM lists them (not assets inside a registry).
            if rid.resource_type().matches('/').count() != 1 {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&row.body)?;
            items.push(GenericResource {
                id: row.id.clone(),
                name: row.name.clone(),
                resource_type: rid.resource_type(),
                location: v.get("location").and_then(|l| l.as_str()).unwrap_or_default().to_string(),
                managed_by: None,
            });
        }
        let next_after = if rows.len() as i64 > limit { last } else { None };
        Ok(Listed { items, next_after })
    }

    /// Keyset-paged listing of one kind of resource (in a group, or under an ID prefix):
    /// `keep` renders a row or drops it (not visible to the caller, not in the list view), and
    /// the page ends after `limit` kept items. Correct while resources are being added.
    pub(crate) async fn list_paged<T>(
        &self,
        kind: &str,
        group_key: Option<&str>,
        id_prefix: Option<&str>,
        after: Option<&str>,
        limit: i64,
        keep: impl Fn(&moat_store::StoredResource) -> Result<Option<T>>,
    ) -> Result<Listed<T>> {
        let mut items = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let rows = self
                .store
                .list_resources(&ListQuery {
                    kind: Some(kind),
                    subscription_id: &self.subscription_id,
                    group_key,
                    id_prefix,
                    after_key: cursor.as_deref(),
                    limit: limit + 1,
                })
                .await?;
            let more = rows.len() as i64 > limit;
            for row in rows.iter().take(limit as usize) {
                cursor = Some(row.id_key());
                if let Some(item) = keep(row)? {
                    items.push(item);
                }
                if items.len() as i64 == limit {
                    let next_after = if more || rows.last().map(|r| r.id_key()) != cursor { cursor } else { None };
                    return Ok(Listed { items, next_after });
                }
            }
            if !more {
                return Ok(Listed { items, next_after: None });
            }
        }
    }

    /// Whether the caller may read the resource a row holds (for filtering a list whose
    /// listing was itself authorised; not written to the activity log).
    pub(crate) fn may_read(&self, caller: &Caller, read_action: &str, row: &moat_store::StoredResource) -> Result<bool> {
        Ok(self.decide(caller, read_action, &ResourceId::parse(&row.id)?).is_allowed())
    }
}
