//! Pure authorization decisions: role definitions, assignments and their evaluation.
//! No I/O: the caller loads the assignments and roles and asks [`evaluate`].

use moat_types::ResourceId;

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
    pub const STORAGE_READ: &str = "Microsoft.Storage/storageAccounts/read";
    pub const CONTAINER_REGISTRY_READ: &str = "Microsoft.ContainerRegistry/registries/read";
}

/// An Azure-shaped role definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleDefinition {
    /// The role's GUID (built-ins use Azure's).
    pub id: String,
    pub name: String,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
}

/// A principal holding a role at a scope (and everything below it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub principal_id: String,
    pub role_definition_id: String,
    pub scope: ResourceId,
}

pub const OWNER_ROLE_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR_ROLE_ID: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER_ROLE_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The built-in roles (more arrive with the identity issue).
pub fn builtin_roles() -> Vec<RoleDefinition> {
    vec![
        RoleDefinition { id: OWNER_ROLE_ID.into(), name: "Owner".into(), actions: strings(&["*"]), not_actions: vec![] },
        RoleDefinition {
            id: CONTRIBUTOR_ROLE_ID.into(),
            name: "Contributor".into(),
            actions: strings(&["*"]),
            not_actions: strings(&[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
            ]),
        },
        RoleDefinition { id: READER_ROLE_ID.into(), name: "Reader".into(), actions: strings(&["*/read"]), not_actions: vec![] },
    ]
}

/// Case-insensitive match of an action against a pattern where `*` matches any run of characters.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let a = action.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == a;
    }
    let mut rest = a.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether `role` permits `action` (actions minus notActions).
pub fn role_permits(role: &RoleDefinition, action: &str) -> bool {
    role.actions.iter().any(|p| action_matches(p, action)) && !role.not_actions.iter().any(|p| action_matches(p, action))
}

/// Whether `principal` may perform `action` on the resource `target`: some assignment of the
/// principal at `target` or one of its ancestors carries a role that permits the action.
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
    }

    #[test]
    fn inheritance_and_roles() {
        let roles = builtin_roles();
        let sub = ResourceId::subscription("s");
        let rg = ResourceId::resource_group("s", "rg");
        let reg = ResourceId::provider("s", "rg", "Microsoft.MachineLearningServices", "registries", "r");
        let other_rg_reg = ResourceId::provider("s", "rg2", "Microsoft.MachineLearningServices", "registries", "r");
        let a = |p: &str, role: &str, scope: &ResourceId| Assignment {
            principal_id: p.into(),
            role_definition_id: role.into(),
            scope: scope.clone(),
        };
        let asg = vec![a("owner", OWNER_ROLE_ID, &sub), a("reader", READER_ROLE_ID, &rg), a("contrib", CONTRIBUTOR_ROLE_ID, &reg)];
        assert!(evaluate("owner", actions::REGISTRY_DELETE, &reg, &asg, &roles));
        assert!(evaluate("reader", actions::REGISTRY_READ, &reg, &asg, &roles));
        assert!(!evaluate("reader", actions::REGISTRY_WRITE, &reg, &asg, &roles));
        assert!(!evaluate("reader", actions::REGISTRY_READ, &other_rg_reg, &asg, &roles));
        assert!(evaluate("contrib", actions::REGISTRY_WRITE, &reg, &asg, &roles));
        assert!(!evaluate("contrib", "Microsoft.Authorization/roleAssignments/write", &reg, &asg, &roles));
        assert!(!evaluate("contrib", actions::REGISTRY_READ, &rg, &asg, &roles));
        assert!(!evaluate("nobody", actions::REGISTRY_READ, &reg, &asg, &roles));
    }
}
