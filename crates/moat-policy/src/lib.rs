//! Pure authorization decisions: role definitions, assignments, and an index that answers
//! "may principal P perform action A on resource R?" in time independent of how many
//! assignments exist. No I/O: the caller loads roles and assignments into an [`AuthzIndex`].

use std::collections::HashMap;
use std::sync::Arc;

use moat_types::ResourceId;

pub mod admission;
mod builtin;
pub use builtin::{
    CONTRIBUTOR_ROLE_ID, DATA_SCIENTIST_ROLE_ID, NETWORK_APPROVER_ROLE_ID, OWNER_ROLE_ID, READER_ROLE_ID, REGISTRY_USER_ROLE_ID,
    builtin_roles,
};

/// Action strings, as Azure spells them. Every operation names exactly one.
pub mod actions {
    pub const SUBSCRIPTION_READ: &str = "Microsoft.Resources/subscriptions/read";
    pub const GROUP_READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";
    pub const GROUP_WRITE: &str = "Microsoft.Resources/subscriptions/resourceGroups/write";
    pub const GROUP_DELETE: &str = "Microsoft.Resources/subscriptions/resourceGroups/delete";
    pub const GROUP_RESOURCES_READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/resources/read";
    pub const REGISTRY_READ: &str = "Microsoft.MachineLearningServices/registries/read";
    pub const REGISTRY_WRITE: &str = "Microsoft.MachineLearningServices/registries/write";
    pub const REGISTRY_DELETE: &str = "Microsoft.MachineLearningServices/registries/delete";
    pub const REGISTRY_ASSETS_READ: &str = "Microsoft.MachineLearningServices/registries/assets/read";
    pub const REGISTRY_ASSETS_WRITE: &str = "Microsoft.MachineLearningServices/registries/assets/write";
    pub const REGISTRY_ASSETS_DELETE: &str = "Microsoft.MachineLearningServices/registries/assets/delete";
    pub const STORAGE_READ: &str = "Microsoft.Storage/storageAccounts/read";
    pub const CONTAINER_REGISTRY_READ: &str = "Microsoft.ContainerRegistry/registries/read";
    /// Deleting images of a registry's container registry (ACR's AcrDelete action), checked on
    /// the ML registry: asset rights are not enough.
    pub const CONTAINER_REGISTRY_ARTIFACTS_DELETE: &str = "Microsoft.ContainerRegistry/registries/artifacts/delete";
    pub const ROLE_DEFINITION_READ: &str = "Microsoft.Authorization/roleDefinitions/read";
    pub const ROLE_DEFINITION_WRITE: &str = "Microsoft.Authorization/roleDefinitions/write";
    pub const ROLE_DEFINITION_DELETE: &str = "Microsoft.Authorization/roleDefinitions/delete";
    pub const ROLE_ASSIGNMENT_READ: &str = "Microsoft.Authorization/roleAssignments/read";
    pub const ROLE_ASSIGNMENT_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
    pub const ROLE_ASSIGNMENT_DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
    pub const USER_READ: &str = "Microsoft.Directory/users/read";
    pub const USER_WRITE: &str = "Microsoft.Directory/users/write";
    pub const SP_READ: &str = "Microsoft.Directory/servicePrincipals/read";
    pub const SP_WRITE: &str = "Microsoft.Directory/servicePrincipals/write";
    pub const ACTIVITY_LOG_READ: &str = "Microsoft.Insights/eventtypes/values/read";
    /// moat's own: collecting the byte store's garbage now (it also runs on a schedule).
    pub const STORAGE_GC: &str = "Moat.Storage/garbageCollection/action";
    pub const VNET_READ: &str = "Microsoft.Network/virtualNetworks/read";
    pub const VNET_WRITE: &str = "Microsoft.Network/virtualNetworks/write";
    pub const VNET_DELETE: &str = "Microsoft.Network/virtualNetworks/delete";
    pub const SUBNET_JOIN: &str = "Microsoft.Network/virtualNetworks/subnets/join/action";
    pub const DNS_ZONE_READ: &str = "Microsoft.Network/privateDnsZones/read";
    pub const DNS_ZONE_WRITE: &str = "Microsoft.Network/privateDnsZones/write";
    pub const DNS_ZONE_DELETE: &str = "Microsoft.Network/privateDnsZones/delete";
    pub const ENDPOINT_READ: &str = "Microsoft.Network/privateEndpoints/read";
    pub const ENDPOINT_WRITE: &str = "Microsoft.Network/privateEndpoints/write";
    pub const ENDPOINT_DELETE: &str = "Microsoft.Network/privateEndpoints/delete";
    /// Deciding private endpoint connections to a registry and to its storage accounts and
    /// container registry (which live in its managed resource group, closed to users).
    pub const REGISTRY_PE_APPROVE: &str = "Microsoft.MachineLearningServices/registries/privateEndpointConnectionsApproval/action";
}

/// An Azure-shaped role definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleDefinition {
    /// The role's GUID (built-ins use Azure's).
    pub id: String,
    pub name: String,
    pub description: String,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
    /// Scopes (IDs) at or below which the role may be assigned.
    pub assignable_scopes: Vec<String>,
    pub builtin: bool,
}

/// A principal holding a role at a scope (and everything below it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    pub scope: ResourceId,
}

/// Case-insensitive match of an action against a pattern where `*` matches any run of characters.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob_lower(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// [`action_matches`] on already lower-cased inputs.
fn glob_lower(p: &str, a: &str) -> bool {
    let mut parts = p.split('*');
    let Some(first) = parts.next() else { return p == a };
    let Some(mut rest) = a.strip_prefix(first) else { return false };
    let mut parts = parts.peekable();
    if parts.peek().is_none() {
        return rest.is_empty();
    }
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(pos) => rest = &rest[pos + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether an action belongs to the data plane (`dataActions`) rather than `actions`.
/// moat's data actions are the storage blob and container registry content actions.
pub fn is_data_action(action: &str) -> bool {
    is_data_action_lower(&action.to_ascii_lowercase())
}

fn is_data_action_lower(a: &str) -> bool {
    a.starts_with("microsoft.storage/storageaccounts/blobservices/containers/blobs/")
        || a.starts_with("microsoft.containerregistry/registries/repositories/")
}

/// A role with lower-cased patterns, ready for matching.
#[derive(Clone, Debug)]
struct CompiledRole {
    def: RoleDefinition,
    name: Arc<str>,
    actions: Vec<String>,
    not_actions: Vec<String>,
    data_actions: Vec<String>,
    not_data_actions: Vec<String>,
}

fn lower(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.to_ascii_lowercase()).collect()
}

impl CompiledRole {
    fn new(def: RoleDefinition) -> Self {
        CompiledRole {
            name: Arc::from(def.name.as_str()),
            actions: lower(&def.actions),
            not_actions: lower(&def.not_actions),
            data_actions: lower(&def.data_actions),
            not_data_actions: lower(&def.not_data_actions),
            def,
        }
    }

    fn permits_lower(&self, action: &str, data: bool) -> bool {
        // Called with lower-cased actions only.
        let (allow, deny) = if data { (&self.data_actions, &self.not_data_actions) } else { (&self.actions, &self.not_actions) };
        allow.iter().any(|p| glob_lower(p, action)) && !deny.iter().any(|p| glob_lower(p, action))
    }
}

/// Whether `role` permits `action` (actions minus notActions, or the data equivalents).
pub fn role_permits(role: &RoleDefinition, action: &str) -> bool {
    CompiledRole::new(role.clone()).permits_lower(&action.to_ascii_lowercase(), is_data_action(action))
}

/// The outcome of a decision, with the rule that decided it (for the audit log and denials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed { role: Arc<str>, scope: Arc<str>, assignment_id: Arc<str> },
    Denied,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// A sentence naming the rule that decided.
    pub fn rule(&self) -> String {
        match self {
            Decision::Allowed { role, scope, assignment_id } => format!("role '{role}' assigned at '{scope}' (assignment {assignment_id})"),
            Decision::Denied => "no role assignment of the principal at this scope or above grants the action".into(),
        }
    }
}

/// Roles and assignments indexed by principal and scope. A decision walks the target's
/// ancestor scopes (a handful) and the principal's roles there: its cost does not grow with
/// the number of assignments in the installation.
#[derive(Clone, Debug, Default)]
pub struct AuthzIndex {
    roles: HashMap<String, CompiledRole>,
    /// principal id (lower) → scope key → assignments there.
    by_principal: HashMap<String, HashMap<String, Vec<Indexed>>>,
}

/// An assignment as the index keeps it: ready to answer without allocating.
#[derive(Clone, Debug)]
struct Indexed {
    id: Arc<str>,
    role_key: String,
    scope: Arc<str>,
}

impl AuthzIndex {
    pub fn new(roles: impl IntoIterator<Item = RoleDefinition>, assignments: impl IntoIterator<Item = Assignment>) -> Self {
        let mut idx = AuthzIndex::default();
        for r in roles {
            idx.put_role(r);
        }
        for a in assignments {
            idx.add_assignment(a);
        }
        idx
    }

    pub fn put_role(&mut self, role: RoleDefinition) {
        self.roles.insert(role.id.to_ascii_lowercase(), CompiledRole::new(role));
    }

    pub fn remove_role(&mut self, id: &str) {
        self.roles.remove(&id.to_ascii_lowercase());
    }

    pub fn role(&self, id: &str) -> Option<&RoleDefinition> {
        self.roles.get(&id.to_ascii_lowercase()).map(|r| &r.def)
    }

    pub fn roles(&self) -> impl Iterator<Item = &RoleDefinition> {
        self.roles.values().map(|r| &r.def)
    }

    pub fn add_assignment(&mut self, a: Assignment) {
        let scopes = self.by_principal.entry(a.principal_id.to_ascii_lowercase()).or_default();
        let list = scopes.entry(a.scope.key()).or_default();
        list.retain(|x| *x.id != *a.id);
        list.push(Indexed {
            id: Arc::from(a.id.as_str()),
            role_key: a.role_definition_id.to_ascii_lowercase(),
            scope: Arc::from(a.scope.as_str()),
        });
    }

    pub fn remove_assignment(&mut self, principal_id: &str, assignment_id: &str) {
        if let Some(scopes) = self.by_principal.get_mut(&principal_id.to_ascii_lowercase()) {
            for list in scopes.values_mut() {
                list.retain(|x| !x.id.eq_ignore_ascii_case(assignment_id));
            }
            scopes.retain(|_, l| !l.is_empty());
        }
    }

    /// Removes every assignment of a principal (the principal was deleted).
    pub fn remove_principal(&mut self, principal_id: &str) {
        self.by_principal.remove(&principal_id.to_ascii_lowercase());
    }

    /// Whether the principal holds any role anywhere (Azure shows such a principal the
    /// subscription, whatever the scope of its roles).
    pub fn has_any_assignment(&self, principal_id: &str) -> bool {
        self.by_principal.get(&principal_id.to_ascii_lowercase()).is_some_and(|s| !s.is_empty())
    }

    /// Whether any assignment uses the role.
    pub fn role_in_use(&self, role_id: &str) -> bool {
        let key = role_id.to_ascii_lowercase();
        self.by_principal.values().flat_map(|s| s.values()).flatten().any(|a| a.role_key == key)
    }

    /// May `principal` perform `action` on `target`?
    pub fn decide(&self, principal: &str, action: &str, target: &ResourceId) -> Decision {
        let principal: std::borrow::Cow<str> =
            if principal.bytes().any(|b| b.is_ascii_uppercase()) { principal.to_ascii_lowercase().into() } else { principal.into() };
        let Some(scopes) = self.by_principal.get(principal.as_ref()) else {
            return Decision::Denied;
        };
        let action_l = action.to_ascii_lowercase();
        let data = is_data_action_lower(&action_l);
        let key = target.key();
        for end in target.scope_ends() {
            let Some(list) = scopes.get(&key[..end]) else { continue };
            for a in list {
                if let Some(role) = self.roles.get(&a.role_key)
                    && role.permits_lower(&action_l, data)
                {
                    return Decision::Allowed { role: role.name.clone(), scope: a.scope.clone(), assignment_id: a.id.clone() };
                }
            }
        }
        Decision::Denied
    }
}

/// The pre-index evaluation, kept as the reference the index is tested against.
pub fn evaluate(principal: &str, action: &str, target: &ResourceId, assignments: &[Assignment], roles: &[RoleDefinition]) -> bool {
    assignments
        .iter()
        .filter(|a| a.principal_id.eq_ignore_ascii_case(principal) && target.is_within(&a.scope))
        .filter_map(|a| roles.iter().find(|r| r.id.eq_ignore_ascii_case(&a.role_definition_id)))
        .any(|r| role_permits(r, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(action_matches("*", "Microsoft.X/y/write"));
        assert!(action_matches("*/read", "microsoft.x/Y/READ"));
        assert!(!action_matches("*/read", "Microsoft.X/y/write"));
        assert!(action_matches("Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/write"));
        assert!(!action_matches("Microsoft.Authorization/*/Write", "Microsoft.Storage/roleAssignments/write"));
        assert!(action_matches("a*b*c", "aXXbYYc"));
        assert!(!action_matches("a*b*c", "aXXbYYd"));
        assert!(!action_matches("abc", "abcd"));
        assert!(action_matches("abc", "ABC"));
        assert!(action_matches("a**", "abc"));
        assert!(!action_matches("", "a"));
        assert!(action_matches("", ""));
    }

    fn fixture() -> (Vec<Assignment>, ResourceId, ResourceId, ResourceId, ResourceId) {
        let sub = ResourceId::subscription("s");
        let rg = ResourceId::resource_group("s", "rg");
        let reg = ResourceId::provider("s", "rg", "Microsoft.MachineLearningServices", "registries", "r");
        let other = ResourceId::provider("s", "rg2", "Microsoft.MachineLearningServices", "registries", "r");
        let a = |id: &str, p: &str, role: &str, scope: &ResourceId| Assignment {
            id: id.into(),
            principal_id: p.into(),
            role_definition_id: role.into(),
            scope: scope.clone(),
        };
        let asg = vec![
            a("1", "owner", OWNER_ROLE_ID, &sub),
            a("2", "reader", READER_ROLE_ID, &rg),
            a("3", "contrib", CONTRIBUTOR_ROLE_ID, &reg),
            a("4", "user", REGISTRY_USER_ROLE_ID, &reg),
            a("5", "ds", DATA_SCIENTIST_ROLE_ID, &sub),
        ];
        (asg, sub, rg, reg, other)
    }

    #[test]
    fn builtins_inheritance_and_index_agree_with_reference() {
        let (asg, sub, rg, reg, other) = fixture();
        let roles = builtin_roles();
        let idx = AuthzIndex::new(roles.clone(), asg.clone());
        let models = reg.child("models", "m");
        let cases: &[(&str, &str, &ResourceId, bool)] = &[
            ("owner", actions::REGISTRY_DELETE, &reg, true),
            ("owner", actions::ROLE_ASSIGNMENT_WRITE, &sub, true),
            ("reader", actions::REGISTRY_READ, &reg, true),
            ("reader", actions::REGISTRY_WRITE, &reg, false),
            ("reader", actions::REGISTRY_READ, &other, false),
            ("contrib", actions::REGISTRY_WRITE, &reg, true),
            ("contrib", actions::ROLE_ASSIGNMENT_WRITE, &reg, false),
            ("contrib", actions::REGISTRY_READ, &rg, false),
            ("user", actions::REGISTRY_READ, &reg, true),
            ("user", actions::REGISTRY_ASSETS_WRITE, &models, true),
            ("user", actions::REGISTRY_ASSETS_DELETE, &models, true),
            ("user", actions::REGISTRY_WRITE, &reg, false),
            ("user", actions::STORAGE_READ, &reg, false),
            ("ds", actions::REGISTRY_READ, &reg, false),
            ("ds", "Microsoft.MachineLearningServices/workspaces/jobs/read", &ResourceId::resource_group("s", "x"), true),
            ("nobody", actions::REGISTRY_READ, &reg, false),
        ];
        for (p, action, target, want) in cases {
            let d = idx.decide(p, action, target);
            assert_eq!(d.is_allowed(), *want, "{p} {action} {target}: {d:?}");
            assert_eq!(evaluate(p, action, target, &asg, &roles), *want, "reference: {p} {action} {target}");
        }
        match idx.decide("reader", actions::REGISTRY_READ, &reg) {
            Decision::Allowed { role, scope, assignment_id } => {
                assert_eq!(&*role, "Reader");
                assert_eq!(&*scope, rg.as_str());
                assert_eq!(&*assignment_id, "2");
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn index_updates() {
        let (asg, _, _, reg, _) = fixture();
        let mut idx = AuthzIndex::new(builtin_roles(), asg);
        assert!(idx.decide("user", actions::REGISTRY_READ, &reg).is_allowed());
        idx.remove_assignment("user", "4");
        assert!(!idx.decide("user", actions::REGISTRY_READ, &reg).is_allowed());
        assert!(idx.role_in_use(OWNER_ROLE_ID));
        idx.remove_principal("owner");
        assert!(!idx.role_in_use(OWNER_ROLE_ID));
        let custom = RoleDefinition {
            id: "c1".into(),
            name: "Asset reader".into(),
            description: String::new(),
            actions: vec![actions::REGISTRY_READ.into(), actions::REGISTRY_ASSETS_READ.into()],
            not_actions: vec![],
            data_actions: vec![],
            not_data_actions: vec![],
            assignable_scopes: vec!["/subscriptions/s".into()],
            builtin: false,
        };
        idx.put_role(custom);
        idx.add_assignment(Assignment { id: "9".into(), principal_id: "u2".into(), role_definition_id: "C1".into(), scope: reg.clone() });
        assert!(idx.decide("U2", actions::REGISTRY_ASSETS_READ, &reg.child("models", "m")).is_allowed());
        assert!(!idx.decide("u2", actions::REGISTRY_ASSETS_WRITE, &reg.child("models", "m")).is_allowed());
        idx.remove_role("c1");
        assert!(!idx.decide("u2", actions::REGISTRY_READ, &reg).is_allowed());
    }

    #[test]
    fn data_actions_need_data_grants() {
        let blob = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
        let owner = builtin_roles().into_iter().find(|r| r.id == OWNER_ROLE_ID).unwrap();
        assert!(!role_permits(&owner, blob), "Owner has no dataActions, as in Azure");
        let reader = RoleDefinition { data_actions: vec!["Microsoft.Storage/*/read".into()], ..owner };
        assert!(role_permits(&reader, blob));
    }
}
