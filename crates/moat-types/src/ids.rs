//! ARM resource IDs and scopes. IDs compare case-insensitively, as in Azure Resource Manager;
//! the casing a resource was created with is kept for display.

use std::fmt;

/// Why a string is not a resource ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{id}' is not a valid resource ID: {reason}")]
pub struct IdError {
    pub id: String,
    pub reason: &'static str,
}

/// A parsed ARM resource ID: `/subscriptions/{s}[/resourceGroups/{rg}[/providers/{ns}/{type}/{name}[/{type}/{name}]*]]`.
#[derive(Clone, Debug)]
pub struct ResourceId {
    raw: String,
    subscription: String,
    resource_group: Option<String>,
    /// `Microsoft.X` and alternating (type, name) pairs after `providers`.
    namespace: Option<String>,
    pairs: Vec<(String, String)>,
}

impl ResourceId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let err = |reason| IdError { id: s.to_string(), reason };
        let rest = s.strip_prefix('/').ok_or_else(|| err("it must start with '/'"))?;
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|p| p.is_empty()) {
            return Err(err("it has an empty segment"));
        }
        if segs.len() < 2 || !segs[0].eq_ignore_ascii_case("subscriptions") {
            return Err(err("it must start with /subscriptions/{subscriptionId}"));
        }
        let subscription = segs[1];
        let mut i = 2;
        let mut resource_group = None;
        if segs.len() > i && segs[i].eq_ignore_ascii_case("resourceGroups") {
            let rg = segs.get(i + 1).ok_or_else(|| err("resourceGroups needs a name"))?;
            resource_group = Some(*rg);
            i += 2;
        }
        let mut namespace = None;
        let mut pairs = Vec::new();
        if segs.len() > i {
            if !segs[i].eq_ignore_ascii_case("providers") {
                return Err(err("expected 'providers' after the scope"));
            }
            let ns = segs.get(i + 1).ok_or_else(|| err("providers needs a namespace"))?;
            namespace = Some(*ns);
            let tail = &segs[i + 2..];
            if tail.is_empty() || !tail.len().is_multiple_of(2) {
                return Err(err("a provider resource needs type/name pairs"));
            }
            for pair in tail.chunks(2) {
                pairs.push((pair[0].to_string(), pair[1].to_string()));
            }
        }
        let mut id = Self::subscription(subscription);
        if let Some(rg) = resource_group {
            id = Self::resource_group(subscription, rg);
        }
        id.namespace = namespace.map(str::to_string);
        id.pairs = pairs;
        id.raw = id.render();
        Ok(id)
    }

    pub fn subscription(subscription: &str) -> Self {
        let mut id = ResourceId {
            raw: String::new(),
            subscription: subscription.to_string(),
            resource_group: None,
            namespace: None,
            pairs: Vec::new(),
        };
        id.raw = id.render();
        id
    }

    pub fn resource_group(subscription: &str, group: &str) -> Self {
        let mut id = Self::subscription(subscription);
        id.resource_group = Some(group.to_string());
        id.raw = id.render();
        id
    }

    /// A provider resource, e.g. `(sub, rg, "Microsoft.Storage", "storageAccounts", "abc")`.
    pub fn provider(subscription: &str, group: &str, namespace: &str, rtype: &str, name: &str) -> Self {
        let mut id = Self::resource_group(subscription, group);
        id.namespace = Some(namespace.to_string());
        id.pairs = vec![(rtype.to_string(), name.to_string())];
        id.raw = id.render();
        id
    }

    /// A provider resource directly under a subscription
    /// (`/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{id}`).
    pub fn subscription_provider(subscription: &str, namespace: &str, rtype: &str, name: &str) -> Self {
        let mut id = Self::subscription(subscription);
        id.namespace = Some(namespace.to_string());
        id.pairs = vec![(rtype.to_string(), name.to_string())];
        id.raw = id.render();
        id
    }

    /// A child of a provider resource (`.../registries/r/models/m`).
    pub fn child(&self, rtype: &str, name: &str) -> Self {
        let mut id = self.clone();
        id.pairs.push((rtype.to_string(), name.to_string()));
        id.raw = id.render();
        id
    }

    fn render(&self) -> String {
        let mut s = format!("/subscriptions/{}", self.subscription);
        if let Some(rg) = &self.resource_group {
            s.push_str("/resourceGroups/");
            s.push_str(rg);
        }
        if let Some(ns) = &self.namespace {
            s.push_str("/providers/");
            s.push_str(ns);
            for (t, n) in &self.pairs {
                s.push('/');
                s.push_str(t);
                s.push('/');
                s.push_str(n);
            }
        }
        s
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The case-insensitive key under which the resource is stored and compared.
    pub fn key(&self) -> String {
        self.raw.to_ascii_lowercase()
    }

    pub fn subscription_id(&self) -> &str {
        &self.subscription
    }

    pub fn resource_group_name(&self) -> Option<&str> {
        self.resource_group.as_deref()
    }

    /// The ARM type, e.g. `Microsoft.MachineLearningServices/registries`,
    /// `Microsoft.Resources/resourceGroups`, `Microsoft.Resources/subscriptions`.
    pub fn resource_type(&self) -> String {
        match &self.namespace {
            Some(ns) => {
                let mut t = ns.clone();
                for (ty, _) in &self.pairs {
                    t.push('/');
                    t.push_str(ty);
                }
                t
            }
            None if self.resource_group.is_some() => "Microsoft.Resources/resourceGroups".into(),
            None => "Microsoft.Resources/subscriptions".into(),
        }
    }

    /// The last name in the ID.
    pub fn name(&self) -> &str {
        if let Some((_, n)) = self.pairs.last() {
            n
        } else if let Some(rg) = &self.resource_group {
            rg
        } else {
            &self.subscription
        }
    }

    /// The keys of every scope that contains this resource, broadest first: the subscription,
    /// the resource group, then each provider resource on the path, ending with `self`.
    pub fn scope_keys(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(2 + self.pairs.len());
        let mut s = format!("/subscriptions/{}", self.subscription.to_ascii_lowercase());
        out.push(s.clone());
        if let Some(rg) = &self.resource_group {
            s.push_str("/resourcegroups/");
            s.push_str(&rg.to_ascii_lowercase());
            out.push(s.clone());
        }
        if let Some(ns) = &self.namespace {
            s.push_str("/providers/");
            s.push_str(&ns.to_ascii_lowercase());
            for (t, n) in &self.pairs {
                s.push('/');
                s.push_str(&t.to_ascii_lowercase());
                s.push('/');
                s.push_str(&n.to_ascii_lowercase());
                out.push(s.clone());
            }
        }
        out
    }

    /// True when `self` lies at or below `scope` (segment-aligned, case-insensitive).
    pub fn is_within(&self, scope: &ResourceId) -> bool {
        let me = self.key();
        let sc = scope.key();
        me == sc || (me.starts_with(&sc) && me.as_bytes().get(sc.len()) == Some(&b'/'))
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.raw.eq_ignore_ascii_case(&other.raw)
    }
}
impl Eq for ResourceId {}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Words that ARM matches case-insensitively in request paths, with their canonical casing.
const KEYWORDS: &[&str] = &[
    "subscriptions",
    "resourceGroups",
    "providers",
    "resources",
    "Microsoft.MachineLearningServices",
    "registries",
    "locations",
    "operationsStatus",
    "operationResults",
    "Microsoft.Storage",
    "storageAccounts",
    "Microsoft.ContainerRegistry",
    "Microsoft.Authorization",
    "roleAssignments",
    "roleDefinitions",
    "Microsoft.Insights",
    "eventtypes",
    "management",
    "values",
    "Microsoft.Network",
    "virtualNetworks",
    "subnets",
    "privateEndpoints",
    "privateEndpointConnections",
    "privateDnsZones",
    "virtualNetworkLinks",
    "privateDnsZoneGroups",
];

/// Rewrites the fixed words of an ARM request path to their canonical casing, so that
/// `/subscriptions/s/resourcegroups/rg` and `/subscriptions/s/resourceGroups/rg` route alike.
/// Only keyword positions are touched: a resource *named* `registries` keeps its casing.
pub fn canonicalize_arm_path(path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split('/').collect();
    // segs[0] is "" for an absolute path.
    if segs.len() < 2 || !segs[1].eq_ignore_ascii_case("subscriptions") {
        return None;
    }
    let canon = |s: &str| KEYWORDS.iter().find(|k| k.eq_ignore_ascii_case(s)).copied();
    let mut out: Vec<String> = Vec::with_capacity(segs.len());
    // Odd indexes (1, 3, 5, ...) are keyword positions up to "providers"; after the
    // namespace, type positions alternate with names.
    let mut after_providers: Option<usize> = None;
    for (i, s) in segs.iter().enumerate() {
        let keyword_slot = match after_providers {
            None => !i.is_multiple_of(2),
            Some(p) => i == p + 1 || (i > p + 1 && !(i - (p + 1)).is_multiple_of(2)),
        };
        let word = if keyword_slot { canon(s).unwrap_or(s) } else { s };
        // Extension resources (`{resource}/providers/Microsoft.Authorization/...`) start a
        // new namespace/type/name run after each `providers`.
        if keyword_slot && word == "providers" {
            after_providers = Some(i);
        }
        out.push(word.to_string());
    }
    Some(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_registry_ids() {
        let id =
            ResourceId::parse("/subscriptions/s1/resourcegroups/RG/providers/Microsoft.MachineLearningServices/registries/Reg1").unwrap();
        assert_eq!(id.as_str(), "/subscriptions/s1/resourceGroups/RG/providers/Microsoft.MachineLearningServices/registries/Reg1");
        assert_eq!(id.resource_type(), "Microsoft.MachineLearningServices/registries");
        assert_eq!(id.name(), "Reg1");
        assert_eq!(id.resource_group_name(), Some("RG"));
        let child = id.child("models", "m");
        assert_eq!(child.resource_type(), "Microsoft.MachineLearningServices/registries/models");
        assert!(child.is_within(&id));
        assert_eq!(
            child.scope_keys(),
            [
                "/subscriptions/s1",
                "/subscriptions/s1/resourcegroups/rg",
                "/subscriptions/s1/resourcegroups/rg/providers/microsoft.machinelearningservices/registries/reg1",
                "/subscriptions/s1/resourcegroups/rg/providers/microsoft.machinelearningservices/registries/reg1/models/m",
            ]
        );
        assert_eq!(child.scope_keys().last().unwrap(), &child.key());
        assert!(child.is_within(&ResourceId::resource_group("S1", "rg")));
        assert!(!ResourceId::resource_group("s1", "rg2").is_within(&ResourceId::resource_group("s1", "rg")));
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "subscriptions/x",
            "/subscriptions",
            "/subscriptions//resourceGroups/x",
            "/subscriptions/s/foo/x",
            "/subscriptions/s/resourceGroups/r/providers/Ns/type",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scope_types() {
        assert_eq!(ResourceId::subscription("s").resource_type(), "Microsoft.Resources/subscriptions");
        assert_eq!(ResourceId::resource_group("s", "g").resource_type(), "Microsoft.Resources/resourceGroups");
    }

    #[test]
    fn canonicalizes_keywords_only() {
        assert_eq!(
            canonicalize_arm_path(
                "/SUBSCRIPTIONS/s/resourcegroups/registries/PROVIDERS/microsoft.machinelearningservices/REGISTRIES/registries"
            )
            .unwrap(),
            "/subscriptions/s/resourceGroups/registries/providers/Microsoft.MachineLearningServices/registries/registries"
        );
        assert_eq!(canonicalize_arm_path("/registrymanagement/v1.0"), None);
        assert_eq!(
            canonicalize_arm_path("/subscriptions/s/resourcegroups/g/providers/microsoft.machinelearningservices/registries/r/PROVIDERS/microsoft.authorization/roleassignments/x").unwrap(),
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/registries/r/providers/Microsoft.Authorization/roleAssignments/x"
        );
        assert_eq!(canonicalize_arm_path("/subscriptions/s/resourcegroups").unwrap(), "/subscriptions/s/resourceGroups");
    }
}
