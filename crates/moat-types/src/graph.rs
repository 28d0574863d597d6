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
    /// How the user signs in when not by password: an external issuer and the subject its
    /// tokens carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<ObjectIdentity>,
}

/// A sign-in identity of a user (Graph's `objectIdentity`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectIdentity {
    /// `federated`.
    pub sign_in_type: String,
    /// The external issuer's `iss`.
    pub issuer: String,
    /// The `oid` (or, without one, the `sub`) the issuer's tokens carry for this user.
    pub issuer_assigned_id: String,
}

/// `POST /v1.0/users`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub display_name: String,
    /// `name@domain`; unique case-insensitively.
    pub user_principal_name: String,
    /// For password sign-in.
    #[serde(default)]
    pub password_profile: Option<PasswordProfile>,
    /// For sign-in through a trusted external issuer (exactly one, instead of a password).
    #[serde(default)]
    pub identities: Vec<ObjectIdentity>,
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
