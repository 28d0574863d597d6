//! Who is calling. Every domain operation takes a [`Caller`]; the origin of the request
//! (public listener or a private endpoint) joins it with the network-isolation work.

/// An authenticated principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub object_id: String,
    pub display_name: String,
    /// `User`, `ServicePrincipal` or `ManagedIdentity`.
    pub kind: String,
    /// The client's address, as the listener saw it.
    pub client: String,
    /// The network origin: `public` (the public listener) or the private endpoint it came through.
    pub origin: String,
}

impl Caller {
    /// The caller a stored principal stands for, from `client` through `origin`.
    pub(crate) fn of(p: &moat_store::PrincipalRow, client: &str, origin: &str) -> Caller {
        Caller {
            object_id: p.object_id.clone(),
            display_name: p.upn.as_ref().unwrap_or(&p.display_name).clone(),
            kind: p.kind.clone(),
            client: client.to_string(),
            origin: origin.to_string(),
        }
    }

    /// ARM `systemData` `createdByType`.
    pub fn by_type(&self) -> &'static str {
        match self.kind.as_str() {
            "User" => "User",
            "ManagedIdentity" => "ManagedIdentity",
            _ => "Application",
        }
    }
}
