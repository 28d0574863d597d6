//! The built-in roles, with Azure's GUIDs and (where Azure's definitions name registries)
//! Azure's action lists.

use crate::RoleDefinition;

pub const OWNER_ROLE_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR_ROLE_ID: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER_ROLE_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
pub const REGISTRY_USER_ROLE_ID: &str = "1823dd4f-9b8c-4ab6-ab4e-7397a3684615";
pub const DATA_SCIENTIST_ROLE_ID: &str = "f6c7c914-8db3-469d-8ca1-694a8f32e121";
pub const NETWORK_APPROVER_ROLE_ID: &str = "b556d68e-0be0-4f35-a333-ad7ee1ce17ea";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn role(id: &str, name: &str, description: &str, actions: &[&str], not_actions: &[&str]) -> RoleDefinition {
    RoleDefinition {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        actions: strings(actions),
        not_actions: strings(not_actions),
        data_actions: vec![],
        not_data_actions: vec![],
        assignable_scopes: vec!["/".into()],
        builtin: true,
    }
}

/// Owner, Contributor, Reader, AzureML Registry User, AzureML Data Scientist and the network
/// connection approver.
pub fn builtin_roles() -> Vec<RoleDefinition> {
    vec![
        role(OWNER_ROLE_ID, "Owner", "Grants full access to manage all resources, including assigning roles.", &["*"], &[]),
        role(
            CONTRIBUTOR_ROLE_ID,
            "Contributor",
            "Grants full access to manage all resources, but does not allow assigning roles.",
            &["*"],
            // moat keeps its directory (users, service principals) to Owners too: Azure's
            // directory lives outside ARM, where Contributor grants nothing.
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Directory/*/write",
                "Microsoft.Directory/*/delete",
            ],
        ),
        role(READER_ROLE_ID, "Reader", "View all resources, but does not allow you to make any changes.", &["*/read"], &[]),
        role(
            REGISTRY_USER_ROLE_ID,
            "AzureML Registry User",
            "Can perform all actions on Machine Learning Services Registry assets as well as get Registry resources.",
            &["Microsoft.MachineLearningServices/registries/read", "Microsoft.MachineLearningServices/registries/assets/*"],
            &[],
        ),
        role(
            DATA_SCIENTIST_ROLE_ID,
            "AzureML Data Scientist",
            "Can perform all actions within an Azure Machine Learning workspace, except for creating or deleting compute resources and modifying the workspace itself.",
            &[
                "Microsoft.MachineLearningServices/workspaces/*/read",
                "Microsoft.MachineLearningServices/workspaces/*/action",
                "Microsoft.MachineLearningServices/workspaces/*/delete",
                "Microsoft.MachineLearningServices/workspaces/*/write",
            ],
            &[
                "Microsoft.MachineLearningServices/workspaces/delete",
                "Microsoft.MachineLearningServices/workspaces/write",
                "Microsoft.MachineLearningServices/workspaces/computes/*/write",
                "Microsoft.MachineLearningServices/workspaces/computes/*/delete",
                "Microsoft.Authorization/*",
                "Microsoft.MachineLearningServices/workspaces/listKeys/action",
                "Microsoft.MachineLearningServices/workspaces/hubs/write",
                "Microsoft.MachineLearningServices/workspaces/hubs/delete",
                "Microsoft.MachineLearningServices/workspaces/featurestores/write",
                "Microsoft.MachineLearningServices/workspaces/featurestores/delete",
            ],
        ),
        // Azure's definition covers workspaces, storage and container registries but not
        // registries; moat adds the registry's own connections so one role approves them all.
        role(
            NETWORK_APPROVER_ROLE_ID,
            "Azure AI Enterprise Network Connection Approver",
            "Can approve private endpoint connections to registries, their storage accounts and container registries, and workspaces.",
            &[
                "Microsoft.MachineLearningServices/registries/read",
                "Microsoft.MachineLearningServices/registries/privateEndpointConnections/*",
                "Microsoft.MachineLearningServices/registries/privateEndpointConnectionsApproval/action",
                "Microsoft.MachineLearningServices/workspaces/read",
                "Microsoft.MachineLearningServices/workspaces/privateEndpointConnections/*",
                "Microsoft.MachineLearningServices/workspaces/privateEndpointConnectionsApproval/action",
                "Microsoft.Storage/storageAccounts/read",
                "Microsoft.Storage/storageAccounts/privateEndpointConnections/*",
                "Microsoft.Storage/storageAccounts/privateEndpointConnectionsApproval/action",
                "Microsoft.ContainerRegistry/registries/read",
                "Microsoft.ContainerRegistry/registries/privateEndpointConnections/*",
                "Microsoft.ContainerRegistry/registries/privateEndpointConnectionsApproval/action",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
            ],
            &[],
        ),
    ]
}
