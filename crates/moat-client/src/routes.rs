//! The way in from a virtual network. A client given a source address inside a network learns,
//! from the management plane (reachable from everywhere, like ARM), the approved private
//! endpoints of that network, and sends each data-plane request through the endpoint that
//! serves its resource: asset operations and discovery through a registry's `amlregistry`
//! endpoint, blob transfers through the storage account's `blob` endpoint. Without such an
//! endpoint a request goes to the public listener, where admission decides.

use std::net::IpAddr;

use moat_types::net::Cidr;

/// One approved private endpoint the client can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Lowercase ARM ID of the resource it serves.
    pub target: String,
    /// `amlregistry`, `blob` or `registry`.
    pub group: String,
    /// The endpoint listener's URL.
    pub url: String,
}

/// The endpoints usable from one source address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    pub routes: Vec<Route>,
}

fn last_segment_after<'a>(id: &'a str, marker: &str) -> Option<&'a str> {
    let lower = id.to_ascii_lowercase();
    let at = lower.rfind(marker)?;
    let rest = &id[at + marker.len()..];
    Some(rest.split('/').next().unwrap_or(rest))
}

/// The registry and asset kind a data-plane path addresses: `(registry prefix, kind)`, or
/// `(name, "discovery")`.
fn data_plane_target(lower: &str) -> Option<(&str, &str)> {
    if let Some(name) = lower.strip_prefix("/registrymanagement/v1.0/registries/").and_then(|r| r.split('/').next()) {
        return Some((name, "discovery"));
    }
    let marker = "/providers/microsoft.machinelearningservices/registries/";
    let at = lower.find(marker)?;
    let rest = &lower[at + marker.len()..];
    let mut segs = rest.split('/');
    let name = segs.next()?;
    let kind = segs.next()?.split('?').next().unwrap_or_default();
    matches!(kind, "models" | "data" | "codes" | "components" | "environments" | "datareferences")
        .then_some((&lower[..at + marker.len() + name.len()], kind))
}

/// Whether a request path belongs to a registry's `amlregistry` plane.
pub fn is_data_plane_path(path: &str) -> bool {
    path.starts_with('/') && data_plane_target(&path.to_ascii_lowercase()).is_some()
}

impl Routes {
    /// From the `value` arrays of a virtual network list and a private endpoint list: the
    /// approved endpoints with a listener in the caller's network. With a `source` address,
    /// that is the network whose address space holds it; without, a namespace- or host-mode
    /// network one of whose endpoint addresses is local here (`is_local`) — a process inside a
    /// namespace sees its endpoints' addresses on its own loopback.
    pub fn from_lists(
        source: Option<IpAddr>,
        is_local: &dyn Fn(IpAddr) -> bool,
        vnets: &[serde_json::Value],
        endpoints: &[serde_json::Value],
    ) -> Routes {
        let subnet_of = |e: &serde_json::Value| e["properties"]["subnet"]["id"].as_str().unwrap_or_default().to_ascii_lowercase();
        let address_of = |e: &serde_json::Value| {
            e["properties"]["customDnsConfigs"][0]["ipAddresses"][0].as_str().and_then(|a| a.parse::<IpAddr>().ok())
        };
        let inside: Vec<String> = vnets
            .iter()
            .filter(|v| {
                let prefix = format!("{}/subnets/", v["id"].as_str().unwrap_or_default().to_ascii_lowercase());
                match source {
                    Some(source) => v["properties"]["addressSpace"]["addressPrefixes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.as_str()?.parse::<Cidr>().ok())
                        .any(|c| c.contains(source)),
                    None => {
                        v["properties"]["binding"]["mode"].as_str().is_some_and(|m| !m.eq_ignore_ascii_case("loopback"))
                            && endpoints.iter().any(|e| subnet_of(e).starts_with(&prefix) && address_of(e).is_some_and(is_local))
                    }
                }
            })
            .filter_map(|v| v["id"].as_str().map(|id| format!("{}/subnets/", id.to_ascii_lowercase())))
            .collect();
        let mut routes = Vec::new();
        for e in endpoints {
            let p = &e["properties"];
            let subnet = subnet_of(e);
            let Some(url) = p["serviceUrl"].as_str() else { continue };
            if !inside.iter().any(|v| subnet.starts_with(v.as_str())) {
                continue;
            }
            for list in ["privateLinkServiceConnections", "manualPrivateLinkServiceConnections"] {
                for c in p[list].as_array().into_iter().flatten() {
                    let cp = &c["properties"];
                    if cp["privateLinkServiceConnectionState"]["status"] != "Approved" {
                        continue;
                    }
                    let Some(target) = cp["privateLinkServiceId"].as_str() else { continue };
                    let group = cp["groupIds"][0].as_str().unwrap_or_default().to_string();
                    routes.push(Route { target: target.to_ascii_lowercase(), group, url: url.trim_end_matches('/').to_string() });
                }
            }
        }
        Routes { routes }
    }

    fn find(&self, group: &str, matches: impl Fn(&str) -> bool) -> Option<&str> {
        self.routes.iter().find(|r| r.group == group && matches(&r.target)).map(|r| r.url.as_str())
    }

    /// The endpoint for a request path of the registry data plane (asset operations under
    /// `…/registries/{r}/…` or discovery of `{r}`), if there is one.
    pub fn for_path(&self, path: &str) -> Option<&str> {
        let lower = path.to_ascii_lowercase();
        match data_plane_target(&lower)? {
            (name, "discovery") => {
                let suffix = format!("/microsoft.machinelearningservices/registries/{name}");
                self.find("amlregistry", |t| t.ends_with(&suffix))
            }
            (registry, _) => self.find("amlregistry", |t| t == registry),
        }
    }

    /// A blob-plane URL (`{base}/{account}/…?{sas}`) re-aimed at the account's endpoint, if
    /// there is one.
    pub fn for_blob_url(&self, url: &str) -> Option<String> {
        let after_scheme = url.split_once("://")?.1;
        let (_, path) = after_scheme.split_once('/')?;
        let account = path.split(['/', '?']).next()?.to_ascii_lowercase();
        let base = self.find("blob", |t| last_segment_after(t, "/storageaccounts/") == Some(account.as_str()))?;
        Some(format!("{base}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_follow_the_source_network_and_the_approval() {
        let vnets = vec![
            json!({"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v1", "properties": {"addressSpace": {"addressPrefixes": ["127.50.0.0/16"]}}}),
            json!({"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v2", "properties": {"addressSpace": {"addressPrefixes": ["127.60.0.0/16"]}}}),
        ];
        let reg = "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/registries/R1";
        let sa = "/subscriptions/s/resourceGroups/m/providers/Microsoft.Storage/storageAccounts/0123456789a";
        let pe = |vnet: &str, target: &str, group: &str, status: &str, url: &str| {
            json!({"properties": {"subnet": {"id": format!("/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/s1")},
                "serviceUrl": url,
                "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": target, "groupIds": [group],
                    "privateLinkServiceConnectionState": {"status": status}}}]}})
        };
        let endpoints = vec![
            pe("v1", reg, "amlregistry", "Approved", "http://127.50.1.4:9"),
            pe("v1", sa, "blob", "Approved", "http://127.50.1.5:9"),
            pe("v2", reg, "amlregistry", "Approved", "http://127.60.1.4:9"),
            pe("v1", reg, "amlregistry", "Pending", "http://127.50.1.6:9"),
        ];
        let never = |_: IpAddr| false;
        let r = Routes::from_lists(Some("127.50.3.3".parse().unwrap()), &never, &vnets, &endpoints);
        assert_eq!(r.routes.len(), 2);
        assert_eq!(r.for_path(&format!("{reg}/models/m/versions/1")), Some("http://127.50.1.4:9"));
        assert_eq!(r.for_path(&format!("{}/models", reg.to_lowercase())), Some("http://127.50.1.4:9"));
        assert_eq!(r.for_path("/registrymanagement/v1.0/registries/r1/discovery"), Some("http://127.50.1.4:9"));
        assert_eq!(r.for_path(reg), None, "management requests stay public");
        assert_eq!(r.for_path(&format!("{}2/models", reg)), None);
        assert_eq!(r.for_blob_url("http://127.0.0.1:7/0123456789a/c/x?sv=1").as_deref(), Some("http://127.50.1.5:9/0123456789a/c/x?sv=1"));
        assert_eq!(r.for_blob_url("http://127.0.0.1:7/fffffffffff/c/x?sv=1"), None);
        assert!(Routes::from_lists(Some("127.0.0.1".parse().unwrap()), &never, &vnets, &endpoints).routes.is_empty());
        // Without a source address, loopback networks are never guessed.
        let always = |_: IpAddr| true;
        assert!(Routes::from_lists(None, &always, &vnets, &endpoints).routes.is_empty());
    }

    #[test]
    fn a_process_in_a_namespace_finds_its_network_by_its_local_addresses() {
        let vnets = vec![
            json!({"id": "/s/vn/virtualNetworks/a", "properties": {"binding": {"mode": "Namespace"}, "addressSpace": {"addressPrefixes": ["10.251.0.0/16"]}}}),
            json!({"id": "/s/vn/virtualNetworks/b", "properties": {"binding": {"mode": "Namespace"}, "addressSpace": {"addressPrefixes": ["10.252.0.0/16"]}}}),
        ];
        let pe = |vnet: &str, ip: &str| {
            json!({"properties": {"subnet": {"id": format!("/s/vn/virtualNetworks/{vnet}/subnets/s1")}, "serviceUrl": format!("http://{ip}:1"),
                "customDnsConfigs": [{"fqdn": "x", "ipAddresses": [ip]}],
                "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": "/r/x", "groupIds": ["amlregistry"],
                    "privateLinkServiceConnectionState": {"status": "Approved"}}}]}})
        };
        let endpoints = vec![pe("a", "10.251.1.4"), pe("b", "10.252.1.4")];
        let in_a = |ip: IpAddr| ip.to_string() == "10.251.1.4";
        let r = Routes::from_lists(None, &in_a, &vnets, &endpoints);
        assert_eq!(r.routes.iter().map(|r| r.url.as_str()).collect::<Vec<_>>(), vec!["http://10.251.1.4:1"]);
    }
}
