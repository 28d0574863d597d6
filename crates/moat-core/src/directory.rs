//! The directory: users (password sign-in) and service principals (client secret).
//! Secrets are stored only as hashes; a service principal's secret is shown once.

use moat_policy::actions;
use moat_store::PrincipalRow;
use moat_types::ResourceId;
use moat_types::graph::{NewServicePrincipal, NewUser, ObjectIdentity, ServicePrincipal, ServicePrincipalCreated, User};

use crate::{Caller, Error, Listed, Moat, Result, identity, now_rfc3339};

pub const KIND_USER: &str = "User";
pub const KIND_SERVICE_PRINCIPAL: &str = "ServicePrincipal";
pub const KIND_MANAGED_IDENTITY: &str = "ManagedIdentity";

fn valid_upn(upn: &str) -> bool {
    let Some((local, domain)) = upn.split_once('@') else { return false };
    upn.len() <= 113
        && !local.is_empty()
        && local.chars().all(|c| c.is_ascii_alphanumeric() || "._-+'".contains(c))
        && domain.split('.').count() >= 2
        && domain.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

fn user_not_found(id: &str) -> Error {
    Error::not_found("Request_ResourceNotFound", format!("User '{id}' does not exist."))
}

fn sp_not_found(id: &str) -> Error {
    Error::not_found("Request_ResourceNotFound", format!("Service principal '{id}' does not exist."))
}

fn render_user(p: &PrincipalRow) -> User {
    let identities = match (&p.issuer, &p.subject) {
        (Some(issuer), Some(subject)) => {
            vec![ObjectIdentity { sign_in_type: "federated".into(), issuer: issuer.clone(), issuer_assigned_id: subject.clone() }]
        }
        _ => vec![],
    };
    User {
        id: p.object_id.clone(),
        display_name: p.display_name.clone(),
        user_principal_name: p.upn.clone().unwrap_or_default(),
        identities,
    }
}

fn render_sp(p: &PrincipalRow) -> ServicePrincipal {
    ServicePrincipal {
        id: p.object_id.clone(),
        app_id: p.app_id.clone().unwrap_or_default(),
        display_name: p.display_name.clone(),
        service_principal_type: if p.kind == KIND_MANAGED_IDENTITY { "ManagedIdentity" } else { "Application" }.into(),
    }
}

impl Moat {
    fn directory_scope(&self) -> ResourceId {
        ResourceId::subscription(&self.subscription_id)
    }

    pub async fn create_user(&self, caller: &Caller, body: NewUser) -> Result<User> {
        self.authorize(caller, actions::USER_WRITE, &self.directory_scope()).await?;
        let upn = body.user_principal_name.trim().to_ascii_lowercase();
        if !valid_upn(&upn) {
            return Err(Error::invalid(
                "Request_BadRequest",
                "userPrincipalName",
                format!("'{}' is not a user principal name of the form name@domain.example.", body.user_principal_name),
            ));
        }
        let display_name = body.display_name.trim();
        if display_name.is_empty() || display_name.len() > 256 {
            return Err(Error::invalid("Request_BadRequest", "displayName", "displayName is required (1 to 256 characters)."));
        }
        let (hash, external) = match (&body.password_profile, body.identities.as_slice()) {
            (Some(pp), []) => {
                let password = &pp.password;
                if password.chars().count() < 12 || password.len() > 256 {
                    return Err(Error::invalid(
                        "PasswordTooWeak",
                        "passwordProfile.password",
                        "The password must have 12 to 256 characters.",
                    ));
                }
                (Some(hash_off_thread(password.clone()).await?), None)
            }
            (None, [id]) => {
                if !id.sign_in_type.eq_ignore_ascii_case("federated") {
                    return Err(Error::invalid("Request_BadRequest", "identities[0].signInType", "signInType must be 'federated'."));
                }
                if !(id.issuer.starts_with("https://") || id.issuer.starts_with("http://")) || id.issuer_assigned_id.trim().is_empty() {
                    return Err(Error::invalid(
                        "Request_BadRequest",
                        "identities[0]",
                        "A federated identity needs the issuer's URL and the subject its tokens carry.",
                    ));
                }
                if self.store.principal_by_external(&id.issuer, &id.issuer_assigned_id).await?.is_some() {
                    return Err(Error::conflict(
                        "Request_MultipleObjectsWithSameKeyValue",
                        format!("The identity '{}' of '{}' is registered already.", id.issuer_assigned_id, id.issuer),
                    ));
                }
                (None, Some((id.issuer.clone(), id.issuer_assigned_id.clone())))
            }
            _ => {
                return Err(Error::invalid(
                    "Request_BadRequest",
                    "passwordProfile",
                    "A user signs in either with a password (passwordProfile) or through one external issuer (identities), not both or neither.",
                ));
            }
        };
        let row = PrincipalRow {
            object_id: uuid::Uuid::new_v4().to_string(),
            kind: KIND_USER.into(),
            display_name: display_name.to_string(),
            app_id: None,
            secret_hash: hash,
            created_at: now_rfc3339(),
            upn: Some(upn.clone()),
            issuer: external.as_ref().map(|e| e.0.clone()),
            subject: external.map(|e| e.1),
        };
        let mut tx = self.store.write().await?;
        tx.insert_principal(&row).await.map_err(|e| match e {
            moat_store::StoreError::Conflict(_) => {
                Error::conflict("Request_MultipleObjectsWithSameKeyValue", format!("A user '{upn}' exists already."))
            }
            other => other.into(),
        })?;
        tx.commit().await?;
        Ok(render_user(&row))
    }

    /// A user by object ID or user principal name.
    pub async fn get_user(&self, caller: &Caller, id: &str) -> Result<User> {
        self.authorize(caller, actions::USER_READ, &self.directory_scope()).await?;
        let p = match self.store.principal(id).await? {
            Some(p) => Some(p),
            None => self.store.principal_by_upn(id).await?,
        };
        p.filter(|p| p.kind == KIND_USER).map(|p| render_user(&p)).ok_or_else(|| user_not_found(id))
    }

    pub async fn list_users(&self, caller: &Caller, after: Option<&str>, limit: i64) -> Result<Listed<User>> {
        self.authorize(caller, actions::USER_READ, &self.directory_scope()).await?;
        let rows = self.store.list_principals(KIND_USER, after, limit + 1).await?;
        let next_after = if rows.len() as i64 > limit { rows.get(limit as usize - 1).map(|r| r.object_id.clone()) } else { None };
        Ok(Listed { items: rows.iter().take(limit as usize).map(render_user).collect(), next_after })
    }

    /// Deletes a principal of `kind` with its role assignments. `None` when it did not exist.
    async fn delete_principal_of_kind(&self, id: &str, kind: &str) -> Result<Option<PrincipalRow>> {
        let Some(p) = self.store.principal(id).await?.filter(|p| p.kind == kind) else { return Ok(None) };
        if p.object_id == self.admin_object_id {
            return Err(Error::conflict(
                "CannotDeleteBootstrapAdministrator",
                "The bootstrap administrator cannot be deleted; it is how an operator recovers access.",
            ));
        }
        let mut tx = self.store.write().await?;
        tx.delete_principal(&p.object_id).await?;
        tx.commit().await?;
        self.update_authz(|idx| idx.remove_principal(&p.object_id)).await?;
        Ok(Some(p))
    }

    pub async fn delete_user(&self, caller: &Caller, id: &str) -> Result<Option<User>> {
        self.authorize(caller, actions::USER_WRITE, &self.directory_scope()).await?;
        Ok(self.delete_principal_of_kind(id, KIND_USER).await?.map(|p| render_user(&p)))
    }

    pub async fn create_service_principal(&self, caller: &Caller, body: NewServicePrincipal) -> Result<ServicePrincipalCreated> {
        self.authorize(caller, actions::SP_WRITE, &self.directory_scope()).await?;
        let display_name = body.display_name.trim();
        if display_name.is_empty() || display_name.len() > 256 {
            return Err(Error::invalid("Request_BadRequest", "displayName", "displayName is required (1 to 256 characters)."));
        }
        let secret = identity::new_secret()?;
        let row = PrincipalRow {
            object_id: uuid::Uuid::new_v4().to_string(),
            kind: KIND_SERVICE_PRINCIPAL.into(),
            display_name: display_name.to_string(),
            app_id: Some(uuid::Uuid::new_v4().to_string()),
            secret_hash: Some(identity::hash_secret(&secret)?),
            created_at: now_rfc3339(),
            upn: None,
            issuer: None,
            subject: None,
        };
        let mut tx = self.store.write().await?;
        tx.insert_principal(&row).await?;
        tx.commit().await?;
        Ok(ServicePrincipalCreated {
            id: row.object_id,
            app_id: row.app_id.unwrap_or_default(),
            display_name: row.display_name,
            password: secret,
            tenant: self.tenant_id.clone(),
        })
    }

    /// A service principal (or managed identity) by object ID or application ID.
    pub async fn get_service_principal(&self, caller: &Caller, id: &str) -> Result<ServicePrincipal> {
        self.authorize(caller, actions::SP_READ, &self.directory_scope()).await?;
        let p = match self.store.principal(id).await? {
            Some(p) => Some(p),
            None => self.store.principal_by_app_id(id).await?,
        };
        p.filter(|p| p.kind == KIND_SERVICE_PRINCIPAL || p.kind == KIND_MANAGED_IDENTITY)
            .map(|p| render_sp(&p))
            .ok_or_else(|| sp_not_found(id))
    }

    pub async fn list_service_principals(&self, caller: &Caller, after: Option<&str>, limit: i64) -> Result<Listed<ServicePrincipal>> {
        self.authorize(caller, actions::SP_READ, &self.directory_scope()).await?;
        let rows = self.store.list_principals(KIND_SERVICE_PRINCIPAL, after, limit + 1).await?;
        let next_after = if rows.len() as i64 > limit { rows.get(limit as usize - 1).map(|r| r.object_id.clone()) } else { None };
        Ok(Listed { items: rows.iter().take(limit as usize).map(render_sp).collect(), next_after })
    }

    pub async fn delete_service_principal(&self, caller: &Caller, id: &str) -> Result<Option<ServicePrincipal>> {
        self.authorize(caller, actions::SP_WRITE, &self.directory_scope()).await?;
        let object_id = match self.store.principal(id).await? {
            Some(p) => p.object_id,
            None => match self.store.principal_by_app_id(id).await? {
                Some(p) => p.object_id,
                None => return Ok(None),
            },
        };
        Ok(self.delete_principal_of_kind(&object_id, KIND_SERVICE_PRINCIPAL).await?.map(|p| render_sp(&p)))
    }
}

async fn hash_off_thread(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || identity::hash_password(&password)).await.map_err(|e| Error::Internal(format!("hashing: {e}")))?
}

#[cfg(test)]
mod tests {
    #[test]
    fn upns() {
        for ok in ["a@b.c", "first.last+x@corp.example.com"] {
            assert!(super::valid_upn(ok), "{ok}");
        }
        for bad in ["", "a", "@b.c", "a@b", "a b@c.d", "a@b..c", "a@@b.c"] {
            assert!(!super::valid_upn(bad), "{bad}");
        }
    }
}
