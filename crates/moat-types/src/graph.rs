//! Wire shapes of the directory (Microsoft Graph-like): users and service principals.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user, as returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The object ID (what role assignments name).
    pub id: String,
    pub display_name: String,
    pub user_principal_name: String,
}

/// `POST /v1.0/users`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub display_name: String,
    /// `name@domain`; unique case-insensitively.
    pub user_principal_name: String,
    pub password_profile: PasswordProfile,
    #[serde(default)]
    pub account_enabled: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordProfile {
    /// At least 12 characters.
    pub password: String,
    #[serde(default)]
    pub force_change_password_next_sign_in: Option<bool>,
}

/// A service principal, as returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    /// The object ID (what role assignments name).
    pub id: String,
    /// The application (client) ID used to sign in.
    pub app_id: String,
    pub display_name: String,
    /// `Application` or `ManagedIdentity`.
    pub service_principal_type: String,
}

/// `POST /v1.0/servicePrincipals`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewServicePrincipal {
    pub display_name: String,
}

/// A new service principal with its secret: shown once, stored only as a hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalCreated {
    pub id: String,
    pub app_id: String,
    pub display_name: String,
    pub password: String,
    pub tenant: String,
}
