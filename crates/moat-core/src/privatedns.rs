//! Private DNS, as Azure Private Link does it: `Microsoft.Network/privateDnsZones` (moat's own
//! privatelink zones), their `virtualNetworkLinks`, and private endpoints' `privateDnsZoneGroups`,
//! which put the endpoint's A records into the zones. A query from a virtual network linked to a
//! zone gets the zone's records; any other query gets the public listener's address.
//! The records are not stored: they are derived from the zone groups, so they appear and
//! disappear with the endpoints.

use std::collections::HashMap;
use std::net::IpAddr;

use moat_policy::actions;
use moat_store::StoredResource;
use moat_types::arm::Tags;
use moat_types::{ResourceGroupName, ResourceId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::groups::{deny_managed, group_for_write};
use crate::network::{EndpointDoc, not_found};
use crate::{Caller, Error, Moat, Result, decode, document, new_etag, now_rfc3339};

pub(crate) const ZONE_KIND: &str = "microsoft.network/privatednszones";
pub(crate) const LINK_KIND: &str = "microsoft.network/privatednszones/virtualnetworklinks";
pub const ZONE_TYPE: &str = "Microsoft.Network/privateDnsZones";
pub const LINK_TYPE: &str = "Microsoft.Network/privateDnsZones/virtualNetworkLinks";
pub const GROUP_TYPE: &str = "Microsoft.Network/privateEndpoints/privateDnsZoneGroups";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ZoneDoc {
    pub name: String,
    pub tags: Tags,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LinkDoc {
    pub name: String,
    pub vnet_id: String,
    pub registration_enabled: bool,
    pub tags: Tags,
}

/// A private endpoint's DNS zone group: the zones its records go into.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ZoneGroupDoc {
    pub name: String,
    /// (config name, zone ARM ID as given).
    pub configs: Vec<(String, String)>,
}

/// The privatelink form of a public name under `zone`: `privatelink` goes right before the
/// service label under the apex, as in Azure (`abc.blob.<zone>` → `abc.privatelink.blob.<zone>`).
pub fn privatelink_name(zone: &str, name: &str) -> Option<String> {
    let head = name.to_ascii_lowercase();
    let head = head.strip_suffix(&format!(".{}", zone.to_ascii_lowercase()))?;
    let (resource, service) = head.rsplit_once('.')?;
    Some(format!("{resource}.privatelink.{service}.{}", zone.to_ascii_lowercase()))
}

/// The privatelink zones moat serves under `zone` for `regions`.
pub fn serveable_zones(zone: &str, regions: &[String]) -> Vec<String> {
    let z = zone.to_ascii_lowercase();
    let mut v = vec![format!("privatelink.api.{z}"), format!("privatelink.blob.{z}"), format!("privatelink.cr.{z}")];
    v.extend(regions.iter().map(|r| format!("{}.data.privatelink.cr.{z}", r.to_ascii_lowercase())));
    v
}

impl Moat {
    fn zone_id(&self, group: &str, zone: &str) -> ResourceId {
        ResourceId::provider(&self.subscription_id, group, "Microsoft.Network", "privateDnsZones", zone)
    }

    fn render_zone(&self, row: &StoredResource, d: &ZoneDoc) -> Value {
        let view = self.network();
        json!({
            "id": row.id, "name": d.name, "type": ZONE_TYPE, "location": "global", "tags": d.tags, "etag": row.etag,
            "properties": {
                "numberOfRecordSets": view.zone_records(&row.id_key()).len(),
                "numberOfVirtualNetworkLinks": view.zone_links(&row.id_key()),
                "provisioningState": "Succeeded",
            }
        })
    }

    pub async fn put_dns_zone(&self, caller: &Caller, sub: &str, group: &str, name: &str, body: &Value) -> Result<(Value, bool)> {
        self.check_subscription(sub)?;
        ResourceGroupName::parse(group)?;
        let zone = name.to_ascii_lowercase();
        let id = self.zone_id(group, &zone);
        self.authorize_visible(caller, actions::DNS_ZONE_WRITE, actions::DNS_ZONE_READ, &id, || not_found("private DNS zone", name))
            .await?;
        let regions = self.network().regions();
        let allowed = serveable_zones(&self.config.dns_zone, &regions);
        if !allowed.contains(&zone) {
            return Err(Error::invalid(
                "UnsupportedPrivateDnsZone",
                "name",
                format!("moat answers for its own privatelink zones only: {}. '{name}' is not one of them.", allowed.join(", ")),
            ));
        }
        let tags: Tags = serde_json::from_value(body.get("tags").cloned().unwrap_or(json!({}))).unwrap_or_default();
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let gdoc = group_for_write(&mut tx, &self.subscription_id, group).await?;
        if gdoc.managed_by.is_some() {
            return Err(deny_managed(&gdoc, actions::DNS_ZONE_WRITE, &id));
        }
        let existing = tx.get_resource(&id.key()).await?;
        let doc = ZoneDoc { name: zone, tags };
        self.save_network_doc(tx, &id, existing.as_ref(), &doc, &now).await?;
        let row = self.store.get_resource(&id.key()).await?.ok_or_else(|| not_found("private DNS zone", name))?;
        Ok((self.render_zone(&row, &doc), existing.is_none()))
    }

    async fn zone_row(&self, caller: &Caller, sub: &str, group: &str, name: &str) -> Result<(ZoneDoc, StoredResource)> {
        self.check_subscription(sub)?;
        let id = self.zone_id(group, &name.to_ascii_lowercase());
        self.read_visible(caller, actions::DNS_ZONE_READ, &id, || not_found("private DNS zone", name)).await
    }

    pub async fn get_dns_zone(&self, caller: &Caller, sub: &str, group: &str, name: &str) -> Result<Value> {
        let (d, row) = self.zone_row(caller, sub, group, name).await?;
        Ok(self.render_zone(&row, &d))
    }

    pub async fn list_dns_zones(&self, caller: &Caller, sub: &str, group: &str) -> Result<Vec<Value>> {
        self.check_subscription(sub)?;
        let all_visible =
            self.authorize_list(caller, actions::DNS_ZONE_READ, &ResourceId::resource_group(&self.subscription_id, group)).await?;
        let listed = self
            .list_paged(ZONE_KIND, Some(&group.to_ascii_lowercase()), None, None, 1000, |row| {
                let id = ResourceId::parse(&row.id)?;
                if !all_visible && !self.decide(caller, actions::DNS_ZONE_READ, &id).is_allowed() {
                    return Ok(None);
                }
                Ok(Some(self.render_zone(row, &decode(row)?)))
            })
            .await?;
        Ok(listed.items)
    }

    pub async fn delete_dns_zone(&self, caller: &Caller, sub: &str, group: &str, name: &str) -> Result<bool> {
        self.check_subscription(sub)?;
        let id = self.zone_id(group, &name.to_ascii_lowercase());
        self.authorize_visible(caller, actions::DNS_ZONE_DELETE, actions::DNS_ZONE_READ, &id, || not_found("private DNS zone", name))
            .await?;
        if self.network().zone_links(&id.key()) > 0 {
            return Err(Error::conflict(
                "CannotDeleteZoneWithVirtualNetworkLinks",
                format!("Private DNS zone '{name}' still has virtual network links; delete them first."),
            ));
        }
        let mut tx = self.store.write().await?;
        let existed = tx.delete_resource(&id.key()).await?;
        tx.commit().await?;
        self.reload_network().await?;
        Ok(existed)
    }

    /// The record sets of a zone (A records from the endpoints' zone groups; read-only).
    pub async fn list_dns_records(&self, caller: &Caller, sub: &str, group: &str, name: &str) -> Result<Vec<Value>> {
        let (d, row) = self.zone_row(caller, sub, group, name).await?;
        let view = self.network();
        let mut by_name: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (fqdn, ip) in view.zone_records(&row.id_key()) {
            by_name.entry(fqdn.clone()).or_default().push(*ip);
        }
        let mut out: Vec<Value> = by_name
            .into_iter()
            .map(|(fqdn, ips)| {
                let rel = fqdn.strip_suffix(&format!(".{}", d.name)).unwrap_or(&fqdn).to_string();
                json!({"id": format!("{}/A/{rel}", row.id), "name": rel, "type": "Microsoft.Network/privateDnsZones/A",
                       "properties": {"fqdn": format!("{fqdn}."), "ttl": 30, "aRecords": ips.iter().map(|i| json!({"ipv4Address": i.to_string()})).collect::<Vec<_>>()}})
            })
            .collect();
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(out)
    }

    // ---- virtual network links ----

    fn render_link(&self, row: &StoredResource, d: &LinkDoc) -> Value {
        json!({
            "id": row.id, "name": d.name, "type": LINK_TYPE, "location": "global", "tags": d.tags, "etag": row.etag,
            "properties": {"virtualNetwork": {"id": d.vnet_id}, "registrationEnabled": d.registration_enabled,
                           "virtualNetworkLinkState": "Completed", "provisioningState": "Succeeded"}
        })
    }

    pub async fn put_dns_link(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        zone: &str,
        name: &str,
        body: &Value,
    ) -> Result<(Value, bool)> {
        let (_, zrow) = self.zone_row(caller, sub, group, zone).await?;
        let zid = ResourceId::parse(&zrow.id)?;
        self.authorize(caller, actions::DNS_ZONE_WRITE, &zid).await?;
        let id = zid.child("virtualNetworkLinks", name);
        let vnet = body["properties"]["virtualNetwork"]["id"].as_str().ok_or_else(|| {
            Error::invalid(
                "InvalidVirtualNetworkLink",
                "properties.virtualNetwork.id",
                "Give the virtual network to link: properties.virtualNetwork.id.",
            )
        })?;
        let vnet_id = ResourceId::parse(vnet)
            .map_err(|e| Error::invalid("InvalidVirtualNetworkLink", "properties.virtualNetwork.id", e.to_string()))?;
        self.authorize_visible(caller, actions::VNET_READ, actions::VNET_READ, &vnet_id, || not_found("virtual network", vnet_id.name()))
            .await?;
        let vrow = self.store.get_resource(&vnet_id.key()).await?.ok_or_else(|| not_found("virtual network", vnet_id.name()))?;
        if body["properties"]["registrationEnabled"].as_bool() == Some(true) {
            return Err(Error::invalid(
                "RegistrationNotSupported",
                "properties.registrationEnabled",
                "moat's private zones hold endpoint records only; auto-registration of virtual machines is not supported.",
            ));
        }
        let tags: Tags = serde_json::from_value(body.get("tags").cloned().unwrap_or(json!({}))).unwrap_or_default();
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let existing = tx.get_resource(&id.key()).await?;
        let doc = LinkDoc { name: name.to_string(), vnet_id: vrow.id.clone(), registration_enabled: false, tags };
        self.save_network_doc(tx, &id, existing.as_ref(), &doc, &now).await?;
        let row = self.store.get_resource(&id.key()).await?.ok_or_else(|| not_found("virtual network link", name))?;
        Ok((self.render_link(&row, &doc), existing.is_none()))
    }

    pub async fn get_dns_link(&self, caller: &Caller, sub: &str, group: &str, zone: &str, name: &str) -> Result<Value> {
        let (_, zrow) = self.zone_row(caller, sub, group, zone).await?;
        let id = ResourceId::parse(&zrow.id)?.child("virtualNetworkLinks", name);
        let row = self.store.get_resource(&id.key()).await?.ok_or_else(|| not_found("virtual network link", name))?;
        Ok(self.render_link(&row, &decode(&row)?))
    }

    pub async fn list_dns_links(&self, caller: &Caller, sub: &str, group: &str, zone: &str) -> Result<Vec<Value>> {
        let (_, zrow) = self.zone_row(caller, sub, group, zone).await?;
        let prefix = format!("{}/virtualnetworklinks/", zrow.id_key());
        let listed = self
            .list_paged(LINK_KIND, Some(&group.to_ascii_lowercase()), Some(&prefix), None, 1000, |row| {
                Ok(Some(self.render_link(row, &decode(row)?)))
            })
            .await?;
        Ok(listed.items)
    }

    pub async fn delete_dns_link(&self, caller: &Caller, sub: &str, group: &str, zone: &str, name: &str) -> Result<bool> {
        let (_, zrow) = self.zone_row(caller, sub, group, zone).await?;
        let zid = ResourceId::parse(&zrow.id)?;
        self.authorize(caller, actions::DNS_ZONE_WRITE, &zid).await?;
        let id = zid.child("virtualNetworkLinks", name);
        let mut tx = self.store.write().await?;
        let existed = tx.delete_resource(&id.key()).await?;
        tx.commit().await?;
        self.reload_network().await?;
        Ok(existed)
    }

    // ---- private DNS zone groups of an endpoint ----

    fn render_group(&self, endpoint_id: &str, g: &ZoneGroupDoc) -> Value {
        json!({
            "id": format!("{endpoint_id}/privateDnsZoneGroups/{}", g.name), "name": g.name, "type": GROUP_TYPE,
            "properties": {
                "provisioningState": "Succeeded",
                "privateDnsZoneConfigs": g.configs.iter().map(|(n, z)| json!({"name": n, "properties": {"privateDnsZoneId": z}})).collect::<Vec<_>>(),
            }
        })
    }

    async fn endpoint_for_groups(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        endpoint: &str,
        write: bool,
    ) -> Result<(EndpointDoc, StoredResource)> {
        self.check_subscription(sub)?;
        let id = ResourceId::provider(&self.subscription_id, group, "Microsoft.Network", "privateEndpoints", endpoint);
        let action = if write { actions::ENDPOINT_WRITE } else { actions::ENDPOINT_READ };
        self.authorize_visible(caller, action, actions::ENDPOINT_READ, &id, || not_found("private endpoint", endpoint)).await?;
        let row = self.store.get_resource(&id.key()).await?.ok_or_else(|| not_found("private endpoint", endpoint))?;
        Ok((decode(&row)?, row))
    }

    pub async fn put_zone_group(
        &self,
        caller: &Caller,
        sub: &str,
        group: &str,
        endpoint: &str,
        name: &str,
        body: &Value,
    ) -> Result<(Value, bool)> {
        let (mut doc, row) = self.endpoint_for_groups(caller, sub, group, endpoint, true).await?;
        let mut configs = Vec::new();
        for (i, c) in body["properties"]["privateDnsZoneConfigs"].as_array().into_iter().flatten().enumerate() {
            let field = format!("properties.privateDnsZoneConfigs[{i}].properties.privateDnsZoneId");
            let zid = c["properties"]["privateDnsZoneId"].as_str().unwrap_or_default();
            let parsed = ResourceId::parse(zid).map_err(|e| Error::invalid("InvalidPrivateDnsZoneId", field.clone(), e.to_string()))?;
            if self.store.get_resource(&parsed.key()).await?.is_none() || !parsed.resource_type().eq_ignore_ascii_case(ZONE_TYPE) {
                return Err(Error::invalid("InvalidPrivateDnsZoneId", field, format!("'{zid}' is not an existing private DNS zone.")));
            }
            let cname = c["name"].as_str().map(str::to_string).unwrap_or_else(|| parsed.name().replace('.', "-"));
            configs.push((cname, parsed.to_string()));
        }
        if configs.is_empty() {
            return Err(Error::invalid(
                "InvalidPrivateDnsZoneConfigs",
                "properties.privateDnsZoneConfigs",
                "Give at least one privateDnsZoneConfigs entry naming a private DNS zone.",
            ));
        }
        let created = !doc.dns_zone_groups.iter().any(|g| g.name.eq_ignore_ascii_case(name));
        doc.dns_zone_groups.retain(|g| !g.name.eq_ignore_ascii_case(name));
        let g = ZoneGroupDoc { name: name.to_string(), configs };
        doc.dns_zone_groups.push(g.clone());
        self.save_endpoint_doc(&row, &doc).await?;
        Ok((self.render_group(&row.id, &g), created))
    }

    /// Replaces a private endpoint's document unless it changed since `row` was read (a 412
    /// then), and refreshes the network view.
    pub(crate) async fn save_endpoint_doc(&self, row: &StoredResource, doc: &EndpointDoc) -> Result<()> {
        let mut tx = self.store.write().await?;
        let updated = document(&ResourceId::parse(&row.id)?, doc, new_etag(), &row.created_at, &now_rfc3339())?;
        if !tx.update_resource(&updated, &row.etag).await? {
            return Err(Error::PreconditionFailed { message: "The private endpoint changed concurrently; retry.".into() });
        }
        tx.commit().await?;
        self.reload_network().await
    }

    pub async fn get_zone_group(&self, caller: &Caller, sub: &str, group: &str, endpoint: &str, name: &str) -> Result<Value> {
        let (doc, row) = self.endpoint_for_groups(caller, sub, group, endpoint, false).await?;
        let g = doc
            .dns_zone_groups
            .iter()
            .find(|g| g.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| not_found("private DNS zone group", name))?;
        Ok(self.render_group(&row.id, g))
    }

    pub async fn list_zone_groups(&self, caller: &Caller, sub: &str, group: &str, endpoint: &str) -> Result<Vec<Value>> {
        let (doc, row) = self.endpoint_for_groups(caller, sub, group, endpoint, false).await?;
        Ok(doc.dns_zone_groups.iter().map(|g| self.render_group(&row.id, g)).collect())
    }

    pub async fn delete_zone_group(&self, caller: &Caller, sub: &str, group: &str, endpoint: &str, name: &str) -> Result<bool> {
        let (mut doc, row) = self.endpoint_for_groups(caller, sub, group, endpoint, true).await?;
        let before = doc.dns_zone_groups.len();
        doc.dns_zone_groups.retain(|g| !g.name.eq_ignore_ascii_case(name));
        if doc.dns_zone_groups.len() == before {
            return Ok(false);
        }
        self.save_endpoint_doc(&row, &doc).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privatelink_names_follow_azure() {
        assert_eq!(privatelink_name("moat.internal", "abc.blob.moat.internal").as_deref(), Some("abc.privatelink.blob.moat.internal"));
        assert_eq!(
            privatelink_name("moat.internal", "g1.registry.eastus.api.moat.internal").as_deref(),
            Some("g1.registry.eastus.privatelink.api.moat.internal")
        );
        assert_eq!(
            privatelink_name("moat.internal", "acr.eastus.data.cr.moat.internal").as_deref(),
            Some("acr.eastus.data.privatelink.cr.moat.internal")
        );
        assert_eq!(privatelink_name("moat.internal", "example.com"), None);
        assert_eq!(privatelink_name("moat.internal", "api.moat.internal"), None);
    }
}
