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

/// Most (type, name) pairs after `providers` an ID may have (moat's own go three deep).
const MAX_PAIRS: usize = 8;

/// A byte range of [`ResourceId::raw`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span(u32, u32);

impl Span {
    fn of<'a>(&self, raw: &'a str) -> &'a str {
        &raw[self.0 as usize..self.1 as usize]
    }
}

/// A parsed ARM resource ID: `/subscriptions/{s}[/resourceGroups/{rg}[/providers/{ns}/{type}/{name}[/{type}/{name}]*]]`.
/// Held as its canonical text with the positions of its parts, so that building, extending
/// and reading one costs a single string.
#[derive(Clone)]
pub struct ResourceId {
    raw: String,
    subscription: Span,
    resource_group: Option<Span>,
    /// `Microsoft.X`, then alternating (type, name) pairs.
    namespace: Option<Span>,
    pairs: [(Span, Span); MAX_PAIRS],
    npairs: u8,
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResourceId").field(&self.raw).finish()
    }
}

/// Appends `/word` to `raw` and returns where `word` lies.
fn push_segment(raw: &mut String, word: &str) -> Span {
    raw.push('/');
    let start = raw.len() as u32;
    raw.push_str(word);
    Span(start, raw.len() as u32)
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
        if s.len() > u32::MAX as usize / 2 {
            return Err(err("it is too long"));
        }
        let mut id = Self::subscription(segs[1]);
        let mut i = 2;
        if segs.len() > i && segs[i].eq_ignore_ascii_case("resourceGroups") {
            let rg = segs.get(i + 1).ok_or_else(|| err("resourceGroups needs a name"))?;
            id.push_group(rg);
            i += 2;
        }
        if segs.len() > i {
            if !segs[i].eq_ignore_ascii_case("providers") {
                return Err(err("expected 'providers' after the scope"));
            }
            let ns = segs.get(i + 1).ok_or_else(|| err("providers needs a namespace"))?;
            let tail = &segs[i + 2..];
            if tail.is_empty() || !tail.len().is_multiple_of(2) {
                return Err(err("a provider resource needs type/name pairs"));
            }
            if tail.len() / 2 > MAX_PAIRS {
                return Err(err("it is nested too deeply"));
            }
            id.push_namespace(ns);
            for pair in tail.chunks(2) {
                id.push_pair(pair[0], pair[1]);
            }
        }
        Ok(id)
    }

    fn with_capacity(subscription: &str, extra: usize) -> Self {
        let mut raw = String::with_capacity(15 + subscription.len() + extra);
        raw.push_str("/subscriptions");
        let subscription = push_segment(&mut raw, subscription);
        ResourceId { raw, subscription, resource_group: None, namespace: None, pairs: Default::default(), npairs: 0 }
    }

    fn push_group(&mut self, group: &str) {
        self.raw.push_str("/resourceGroups");
        self.resource_group = Some(push_segment(&mut self.raw, group));
    }

    fn push_namespace(&mut self, namespace: &str) {
        self.raw.push_str("/providers");
        self.namespace = Some(push_segment(&mut self.raw, namespace));
    }

    fn push_pair(&mut self, rtype: &str, name: &str) {
        assert!((self.npairs as usize) < MAX_PAIRS, "a resource ID nested deeper than {MAX_PAIRS} levels");
        let t = push_segment(&mut self.raw, rtype);
        let n = push_segment(&mut self.raw, name);
        self.pairs[self.npairs as usize] = (t, n);
        self.npairs += 1;
    }

    fn pairs(&self) -> &[(Span, Span)] {
        &self.pairs[..self.npairs as usize]
    }

    pub fn subscription(subscription: &str) -> Self {
        Self::with_capacity(subscription, 0)
    }

    pub fn resource_group(subscription: &str, group: &str) -> Self {
        let mut id = Self::with_capacity(subscription, 16 + group.len());
        id.push_group(group);
        id
    }

    /// A provider resource, e.g. `(sub, rg, "Microsoft.Storage", "storageAccounts", "abc")`.
    pub fn provider(subscription: &str, group: &str, namespace: &str, rtype: &str, name: &str) -> Self {
        let mut id = Self::with_capacity(subscription, 32 + group.len() + namespace.len() + rtype.len() + name.len() + 64);
        id.push_group(group);
        id.push_namespace(namespace);
        id.push_pair(rtype, name);
        id
    }

    /// A provider resource directly under a subscription
    /// (`/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{id}`).
    pub fn subscription_provider(subscription: &str, namespace: &str, rtype: &str, name: &str) -> Self {
        let mut id = Self::with_capacity(subscription, 16 + namespace.len() + rtype.len() + name.len());
        id.push_namespace(namespace);
        id.push_pair(rtype, name);
        id
    }

    /// A child of a provider resource (`.../registries/r/models/m`).
    pub fn child(&self, rtype: &str, name: &str) -> Self {
        assert!(self.namespace.is_some(), "only a provider resource has children: {}", self.raw);
        let mut raw = String::with_capacity(self.raw.len() + rtype.len() + name.len() + 2);
        raw.push_str(&self.raw);
        let mut id = ResourceId { raw, ..*self };
        id.push_pair(rtype, name);
        id
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The case-insensitive key under which the resource is stored and compared.
    pub fn key(&self) -> String {
        self.raw.to_ascii_lowercase()
    }

    pub fn subscription_id(&self) -> &str {
        self.subscription.of(&self.raw)
    }

    pub fn resource_group_name(&self) -> Option<&str> {
        self.resource_group.map(|s| s.of(&self.raw))
    }

    /// The ARM type, e.g. `Microsoft.MachineLearningServices/registries`,
    /// `Microsoft.Resources/resourceGroups`, `Microsoft.Resources/subscriptions`.
    pub fn resource_type(&self) -> String {
        match &self.namespace {
            Some(ns) => {
                let mut t = ns.of(&self.raw).to_string();
                for (ty, _) in self.pairs() {
                    t.push('/');
                    t.push_str(ty.of(&self.raw));
                }
                t
            }
            None if self.resource_group.is_some() => "Microsoft.Resources/resourceGroups".into(),
            None => "Microsoft.Resources/subscriptions".into(),
        }
    }

    /// The last name in the ID.
    pub fn name(&self) -> &str {
        let span = self.pairs().last().map(|(_, n)| *n).or(self.resource_group).unwrap_or(self.subscription);
        span.of(&self.raw)
    }

    /// Where each scope that contains this resource ends in [`ResourceId::as_str`] (and in
    /// [`ResourceId::key`]), broadest first: the subscription, the resource group, then each
    /// provider resource on the path, ending with `self`.
    pub fn scope_ends(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.subscription.1 as usize)
            .chain(self.resource_group.map(|s| s.1 as usize))
            .chain(self.pairs().iter().map(|(_, n)| n.1 as usize))
    }

    /// The keys of every scope that contains this resource, broadest first: the subscription,
    /// the resource group, then each provider resource on the path, ending with `self`.
    pub fn scope_keys(&self) -> Vec<String> {
        let key = self.key();
        self.scope_ends().map(|end| key[..end].to_string()).collect()
    }

    /// True when `self` lies at or below `scope` (segment-aligned, case-insensitive).
    pub fn is_within(&self, scope: &ResourceId) -> bool {
        let (me, sc) = (self.raw.as_bytes(), scope.raw.as_bytes());
        me.len() >= sc.len() && me[..sc.len()].eq_ignore_ascii_case(sc) && (me.len() == sc.len() || me[sc.len()] == b'/')
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
/// None when the path is not an ARM path or is canonical already (the common case, which
/// allocates nothing).
pub fn canonicalize_arm_path(path: &str) -> Option<String> {
    let mut segs = path.split('/');
    // The first segment is "" for an absolute path.
    if segs.next() != Some("") || !segs.next().is_some_and(|s| s.eq_ignore_ascii_case("subscriptions")) {
        return None;
    }
    let canon = |s: &str| KEYWORDS.iter().find(|k| k.len() == s.len() && k.eq_ignore_ascii_case(s)).copied();
    let mut out: Option<String> = None;
    // Odd indexes (1, 3, 5, ...) are keyword positions up to "providers"; after the
    // namespace, type positions alternate with names.
    let mut after_providers: Option<usize> = None;
    let mut done = 0; // bytes of `path` already accounted for in `out`
    for (i, s) in path.split('/').enumerate() {
        let keyword_slot = match after_providers {
            None => !i.is_multiple_of(2),
            Some(p) => i == p + 1 || (i > p + 1 && !(i - (p + 1)).is_multiple_of(2)),
        };
        let at = done;
        done += s.len() + 1;
        let word = if keyword_slot { canon(s).unwrap_or(s) } else { s };
        // Extension resources (`{resource}/providers/Microsoft.Authorization/...`) start a
        // new namespace/type/name run after each `providers`.
        if keyword_slot && word == "providers" {
            after_providers = Some(i);
        }
        match &mut out {
            Some(o) => {
                o.push('/');
                o.push_str(word);
            }
            None if word != s => {
                let mut o = String::with_capacity(path.len());
                o.push_str(&path[..at]);
                o.push_str(word);
                out = Some(o);
            }
            None => {}
        }
    }
    out
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
    fn scope_keys_of_every_shape() {
        let role = ResourceId::subscription_provider("S", "Microsoft.Authorization", "roleDefinitions", "X");
        assert_eq!(role.as_str(), "/subscriptions/S/providers/Microsoft.Authorization/roleDefinitions/X");
        assert_eq!(role.scope_keys(), ["/subscriptions/s", "/subscriptions/s/providers/microsoft.authorization/roledefinitions/x"]);
        assert_eq!(role.name(), "X");
        assert_eq!(role.resource_group_name(), None);
        // A resource group may be named like a keyword.
        let odd = ResourceId::parse("/subscriptions/s/resourceGroups/providers").unwrap();
        assert_eq!(odd.scope_keys(), ["/subscriptions/s", "/subscriptions/s/resourcegroups/providers"]);
        assert_eq!(odd.resource_type(), "Microsoft.Resources/resourceGroups");
        let ext = ResourceId::parse(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/registries/r/providers/Microsoft.Authorization/roleAssignments/a",
        )
        .unwrap();
        assert_eq!(ext.scope_keys().len(), 5, "{:?}", ext.scope_keys());
        assert_eq!(ext.name(), "a");
        assert_eq!(ResourceId::subscription("s").scope_keys(), ["/subscriptions/s"]);
        assert_eq!(ResourceId::subscription("s").name(), "s");
        let deep = format!("/subscriptions/s/providers/N{}", "/t/n".repeat(9));
        assert!(ResourceId::parse(&deep).is_err(), "nine levels are refused, not a panic");
        let reg = ResourceId::provider("s", "g", "N", "registries", "r");
        assert!(reg.child("models", "m").is_within(&reg) && !reg.is_within(&reg.child("models", "m")));
        assert!(!ResourceId::provider("s", "g", "N", "registries", "r2").is_within(&reg), "segment-aligned");
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
        assert_eq!(canonicalize_arm_path("/SUBSCRIPTIONS/s/resourceGroups/g").unwrap(), "/subscriptions/s/resourceGroups/g");
        assert_eq!(
            canonicalize_arm_path("/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v"),
            None,
            "already canonical"
        );
        assert_eq!(canonicalize_arm_path("/subscriptions/s/resourceGroups/g/"), None, "a trailing slash is kept");
        assert_eq!(canonicalize_arm_path("/subscriptions/s/resourcegroups/g/").unwrap(), "/subscriptions/s/resourceGroups/g/");
    }
}
