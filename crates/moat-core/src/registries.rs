//! Registries (`Microsoft.MachineLearningServices/registries`) and the managed resources each
//! one owns: a managed resource group holding one storage account per region and one container
//! registry replicated to every region. Also discovery.

use std::collections::BTreeMap;

use moat_policy::actions;
use moat_store::{PrincipalRow, StoreError, WriteTx};
use moat_types::arm::{
    self, AcrDetails, ArmResourceId, ContainerRegistry, ContainerRegistryProperties, ManagedServiceIdentity, Registry, RegistryDiscovery,
    RegistryFqdn, RegistryPatch, RegistryProperties, RegistryRegionArmDetails, Sku, StorageAccount, StorageAccountDetails,
    StorageAccountProperties, SystemCreatedAcrAccount, SystemCreatedStorageAccount, SystemData, Tags,
};
use moat_types::{PublicNetworkAccess, Region, RegistryName, ResourceGroupName, ResourceId, names};
use serde::{Deserialize, Serialize};

use crate::groups::{deny_managed, group_for_write, insert_managed_group, system_data};
use crate::{Caller, Error, Listed, Moat, OperationRef, Preconditions, Result, Versioned, decode, document, hex11, new_etag, now_rfc3339};

const NS: &str = "Microsoft.MachineLearningServices";
/// Namespaces of installation-wide unique names.
const NAMES_REGISTRY: &str = "registry";
pub(crate) const NAMES_STORAGE: &str = "storageAccount";
pub(crate) const NAMES_ACR: &str = "containerRegistry";

const STORAGE_TYPES: &[&str] =
    &["Standard_LRS", "Standard_GRS", "Standard_RAGRS", "Standard_ZRS", "Standard_GZRS", "Standard_RAGZRS", "Premium_LRS", "Premium_ZRS"];

/// The stored document of a registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RegistryDoc {
    pub guid: String,
    pub name: String,
    pub location: String,
    pub tags: Tags,
    pub public_network_access: PublicNetworkAccess,
    pub regions: Vec<RegionDoc>,
    pub managed_group: String,
    pub container_registry: String,
    pub identity_principal_id: String,
    pub sku: Option<Sku>,
    pub kind: Option<String>,
    pub intellectual_property_publisher: Option<String>,
    pub system_data: SystemData,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RegionDoc {
    pub location: String,
    pub storage_accounts: Vec<StorageSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StorageSpec {
    /// Empty until created.
    #[serde(default)]
    pub name: String,
    pub account_type: String,
    pub hns: bool,
    pub allow_blob_public_access: bool,
}

/// The stored document of a managed storage account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StorageAccountDoc {
    pub name: String,
    pub location: String,
    pub account_type: String,
    pub hns: bool,
    pub allow_blob_public_access: bool,
    /// `None` follows the registry's switch.
    pub public_network_access: Option<PublicNetworkAccess>,
    pub registry_id: String,
    pub created_at: String,
    /// The account key (base64, 256 bits) that signs its shared access signatures.
    #[serde(default)]
    pub key: String,
    /// The firewall for public traffic; `None` lets every public request through (subject to
    /// the public switch).
    #[serde(default)]
    pub network_acls: Option<crate::network::AclsDoc>,
}

impl StorageAccountDoc {
    /// The key that signs the account's shared access signatures.
    pub(crate) fn sas_key(&self) -> Result<Vec<u8>> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.key)
            .map_err(|_| Error::Internal(format!("storage account {} has no usable key", self.name)))
    }
}

/// The stored document of a managed container registry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerRegistryDoc {
    pub name: String,
    pub location: String,
    pub regions: Vec<String>,
    pub public_network_access: Option<PublicNetworkAccess>,
    pub registry_id: String,
    pub created_at: String,
}

/// A validated PUT body.
#[derive(Clone, Debug)]
struct RegistrySpec {
    location: Region,
    tags: Tags,
    public_network_access: Option<PublicNetworkAccess>,
    /// `None` when the body gave no regionDetails (keep / default).
    regions: Option<Vec<RegionDoc>>,
    sku: Option<Sku>,
    kind: Option<String>,
    intellectual_property_publisher: Option<String>,
}

fn registry_not_found(name: &str) -> Error {
    Error::not_found("ResourceNotFound", format!("The registry '{name}' could not be found."))
}

fn validate_identity(identity: Option<&ManagedServiceIdentity>) -> Result<()> {
    match identity {
        None => Ok(()),
        Some(i) if i.identity_type.eq_ignore_ascii_case("SystemAssigned") => Ok(()),
        Some(i) => Err(Error::invalid(
            "InvalidIdentityType",
            "identity.type",
            format!("identity type '{}' is not supported: a registry always has exactly a SystemAssigned identity.", i.identity_type),
        )),
    }
}

fn validate_sku(sku: Option<&Sku>) -> Result<()> {
    if let Some(s) = sku
        && s.name.trim().is_empty()
    {
        return Err(Error::invalid("InvalidSku", "sku.name", "sku.name must not be empty."));
    }
    Ok(())
}

fn storage_spec(target: &str, d: &StorageAccountDetails) -> Result<StorageSpec> {
    if d.user_created_storage_account.is_some() {
        return Err(Error::invalid(
            "UserCreatedStorageNotSupported",
            format!("{target}.userCreatedStorageAccount"),
            "Bringing your own storage account is not supported: moat creates and manages the registry's storage. Remove userCreatedStorageAccount.",
        ));
    }
    let s = d.system_created_storage_account.clone().unwrap_or_default();
    let account_type = match s.storage_account_type.as_deref() {
        None => "Standard_LRS".to_string(),
        Some(t) => STORAGE_TYPES.iter().find(|k| k.eq_ignore_ascii_case(t)).map(|k| k.to_string()).ok_or_else(|| {
            Error::invalid(
                "InvalidStorageAccountType",
                format!("{target}.systemCreatedStorageAccount.storageAccountType"),
                format!("'{t}' is not a storage account type; use one of {}.", STORAGE_TYPES.join(", ")),
            )
        })?,
    };
    Ok(StorageSpec {
        name: s.storage_account_name.unwrap_or_default(),
        account_type,
        hns: s.storage_account_hns_enabled.unwrap_or(false),
        allow_blob_public_access: s.allow_blob_public_access.unwrap_or(false),
    })
}

fn validate_acr(target: &str, acr: &[AcrDetails]) -> Result<()> {
    for (j, a) in acr.iter().enumerate() {
        let t = format!("{target}.acrDetails[{j}]");
        if a.user_created_acr_account.is_some() {
            return Err(Error::invalid(
                "UserCreatedAcrNotSupported",
                format!("{t}.userCreatedAcrAccount"),
                "Bringing your own container registry is not supported: moat creates and manages it. Remove userCreatedAcrAccount.",
            ));
        }
        if let Some(sku) = a.system_created_acr_account.as_ref().and_then(|s| s.acr_account_sku.as_deref())
            && !sku.eq_ignore_ascii_case("Premium")
        {
            return Err(Error::invalid(
                "InvalidAcrSku",
                format!("{t}.systemCreatedAcrAccount.acrAccountSku"),
                format!("acrAccountSku '{sku}' is not valid; only Premium is."),
            ));
        }
    }
    Ok(())
}

/// Validates a PUT body against the registry named in the URL.
fn validate_put(body: &Registry, name: &RegistryName) -> Result<RegistrySpec> {
    if let Some(n) = &body.name
        && !n.eq_ignore_ascii_case(name.as_str())
    {
        return Err(Error::invalid("InvalidRequestContent", "name", format!("The body names '{n}' but the URL names '{name}'.")));
    }
    if let Some(t) = &body.resource_type
        && !t.eq_ignore_ascii_case(arm::REGISTRY_TYPE)
    {
        return Err(Error::invalid("InvalidRequestContent", "type", format!("type must be '{}', not '{t}'.", arm::REGISTRY_TYPE)));
    }
    let location = body
        .location
        .as_deref()
        .ok_or_else(|| Error::invalid("LocationRequired", "location", "The location property (the primary region) is required."))?;
    let location = Region::parse("location", location)?;
    let tags = body.tags.clone().unwrap_or_default();
    names::validate_tags("tags", &tags)?;
    validate_identity(body.identity.as_ref())?;
    validate_sku(body.sku.as_ref())?;
    let props = body.properties.clone().unwrap_or_default();
    let public_network_access =
        props.public_network_access.as_deref().map(|p| PublicNetworkAccess::parse("properties.publicNetworkAccess", p)).transpose()?;
    let regions = match &props.region_details {
        None => None,
        Some(list) => {
            let mut out: Vec<RegionDoc> = Vec::new();
            for (i, r) in list.iter().enumerate() {
                let target = format!("properties.regionDetails[{i}]");
                let loc = r.location.as_deref().ok_or_else(|| {
                    Error::invalid("InvalidRequestContent", format!("{target}.location"), "Every regionDetails entry needs a location.")
                })?;
                let loc = Region::parse(&format!("{target}.location"), loc)?;
                if out.iter().any(|o| o.location == loc.as_str()) {
                    return Err(Error::invalid(
                        "InvalidRequestContent",
                        format!("{target}.location"),
                        format!("Region '{loc}' appears twice in regionDetails."),
                    ));
                }
                let storage = match r.storage_account_details.as_deref() {
                    None | Some([]) => vec![storage_spec(&target, &StorageAccountDetails::default())?],
                    Some(ds) => ds
                        .iter()
                        .enumerate()
                        .map(|(j, d)| storage_spec(&format!("{target}.storageAccountDetails[{j}]"), d))
                        .collect::<Result<_>>()?,
                };
                validate_acr(&target, r.acr_details.as_deref().unwrap_or_default())?;
                out.push(RegionDoc { location: loc.to_string(), storage_accounts: storage });
            }
            if out.is_empty() {
                None
            } else {
                let Some(primary) = out.iter().position(|r| r.location == location.as_str()) else {
                    return Err(Error::invalid(
                        "PrimaryRegionMissing",
                        "properties.regionDetails",
                        format!("regionDetails must include the primary location '{location}'."),
                    ));
                };
                let p = out.remove(primary);
                out.insert(0, p);
                Some(out)
            }
        }
    };
    Ok(RegistrySpec {
        location,
        tags,
        public_network_access,
        regions,
        sku: body.sku.clone(),
        kind: body.kind.clone(),
        intellectual_property_publisher: props.intellectual_property_publisher.clone(),
    })
}

impl Moat {
    fn registry_id(&self, group: &str, name: &str) -> ResourceId {
        ResourceId::provider(&self.subscription_id, group, NS, "registries", name)
    }

    pub(crate) fn storage_id(&self, managed_group: &str, account: &str) -> ResourceId {
        ResourceId::provider(&self.subscription_id, managed_group, "Microsoft.Storage", "storageAccounts", account)
    }

    fn acr_id(&self, managed_group: &str, acr: &str) -> ResourceId {
        ResourceId::provider(&self.subscription_id, managed_group, "Microsoft.ContainerRegistry", "registries", acr)
    }

    /// A storage account's blob endpoint by name, with the public URL's scheme and port.
    fn blob_endpoint(&self, account: &str) -> String {
        let (scheme, port) = scheme_and_port(&self.config.public_url);
        format!("{scheme}://{}.blob.{}{port}", account.to_ascii_lowercase(), self.config.dns_zone.to_ascii_lowercase())
    }

    /// A blob URI of this node's path-style form (`{public_url}/{account}/{container}/…`) in
    /// the host-style form Azure's data plane answers with (`{scheme}://{account}.blob.{zone}…/
    /// {container}/…`, which moat also serves); anything else as it is.
    pub fn host_style_uri(&self, uri: &str) -> String {
        host_style_of(&self.config.public_url, |account| self.blob_endpoint(account), uri)
    }

    /// `{scheme}://{host}` when `host` (a request's, port and all) is a name under moat's DNS
    /// zone: a client that reached moat by such a name resolves moat's names, and is answered
    /// in them (in a virtual network they lead to its private endpoints; outside, to the public
    /// listener). `None` for an address or any other name.
    pub fn base_for_host(&self, host: &str) -> Option<String> {
        let lower = host.to_ascii_lowercase();
        let name = without_port(&lower);
        let zone = format!(".{}", self.config.dns_zone.to_ascii_lowercase().trim_end_matches('.'));
        let under = name.trim_end_matches('.').ends_with(&zone) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        let (scheme, _) = scheme_and_port(&self.config.public_url);
        under.then(|| format!("{scheme}://{lower}"))
    }

    /// The reverse of [`Moat::host_style_uri`]: a host-style blob URI of one of this node's
    /// accounts in the path-style form versions record; anything else as it is.
    pub fn path_style_uri(&self, uri: &str) -> String {
        path_style_of(&self.config.public_url, &self.config.dns_zone, uri).unwrap_or_else(|| uri.to_string())
    }

    pub(crate) fn login_server(&self, acr: &str) -> String {
        format!("{acr}.cr.{}", self.config.dns_zone)
    }

    fn render_registry(&self, id: &str, doc: &RegistryDoc) -> Registry {
        let base = &self.config.public_url;
        let host = base.split_once("://").map(|(_, h)| h).unwrap_or(base);
        let acr = ArmResourceId { resource_id: Some(self.acr_id(&doc.managed_group, &doc.container_registry).to_string()) };
        let region_details = doc
            .regions
            .iter()
            .map(|r| RegistryRegionArmDetails {
                location: Some(r.location.clone()),
                storage_account_details: Some(
                    r.storage_accounts
                        .iter()
                        .map(|s| StorageAccountDetails {
                            system_created_storage_account: Some(SystemCreatedStorageAccount {
                                storage_account_name: Some(s.name.clone()),
                                storage_account_type: Some(s.account_type.clone()),
                                storage_account_hns_enabled: Some(s.hns),
                                allow_blob_public_access: Some(s.allow_blob_public_access),
                                arm_resource_id: Some(ArmResourceId {
                                    resource_id: Some(self.storage_id(&doc.managed_group, &s.name).to_string()),
                                }),
                            }),
                            user_created_storage_account: None,
                        })
                        .collect(),
                ),
                acr_details: Some(vec![AcrDetails {
                    system_created_acr_account: Some(SystemCreatedAcrAccount {
                        acr_account_name: Some(doc.container_registry.clone()),
                        acr_account_sku: Some("Premium".into()),
                        arm_resource_id: Some(acr.clone()),
                    }),
                    user_created_acr_account: None,
                }]),
            })
            .collect();
        Registry {
            id: Some(id.to_string()),
            name: Some(doc.name.clone()),
            resource_type: Some(arm::REGISTRY_TYPE.into()),
            location: Some(doc.location.clone()),
            tags: Some(doc.tags.clone()),
            identity: Some(ManagedServiceIdentity {
                identity_type: "SystemAssigned".into(),
                principal_id: Some(doc.identity_principal_id.clone()),
                tenant_id: Some(self.tenant_id.clone()),
                user_assigned_identities: None,
            }),
            kind: doc.kind.clone(),
            sku: doc.sku.clone(),
            properties: Some(RegistryProperties {
                discovery_url: Some(format!("{base}/registrymanagement/v1.0/registries/{}/discovery", doc.name)),
                intellectual_property_publisher: doc.intellectual_property_publisher.clone(),
                managed_resource_group: Some(ArmResourceId {
                    resource_id: Some(ResourceId::resource_group(&self.subscription_id, &doc.managed_group).to_string()),
                }),
                managed_resource_group_settings: None,
                ml_flow_registry_uri: Some(format!("azureml://{host}/mlflow/v1.0{id}")),
                public_network_access: Some(doc.public_network_access.as_str().into()),
                region_details: Some(region_details),
                registry_private_endpoint_connections: Some(self.registry_connections(id)),
                provisioning_state: Some("Succeeded".into()),
            }),
            system_data: Some(doc.system_data.clone()),
        }
    }

    pub async fn get_registry(&self, caller: &Caller, subscription_id: &str, group: &str, name: &str) -> Result<Versioned<Registry>> {
        self.check_subscription(subscription_id)?;
        let id = self.registry_id(group, name);
        let (doc, row) = self.read_visible::<RegistryDoc>(caller, actions::REGISTRY_READ, &id, || registry_not_found(name)).await?;
        Ok(Versioned { value: self.render_registry(&row.id, &doc), etag: row.etag })
    }

    /// Lists registries in a group, or in the whole subscription when `group` is `None`.
    pub async fn list_registries(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: Option<&str>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Listed<Registry>> {
        self.check_subscription(subscription_id)?;
        let scope = self.listed_scope(group);
        let all_visible = self.authorize_list(caller, actions::REGISTRY_READ, &scope).await?;
        let group_key = group.map(str::to_ascii_lowercase);
        if let Some(g) = group
            && self.store.get_resource(&scope.key()).await?.is_none()
        {
            return Err(Error::not_found("ResourceGroupNotFound", format!("Resource group '{g}' could not be found.")));
        }
        let kind = arm::REGISTRY_TYPE.to_ascii_lowercase();
        self.list_paged(&kind, group_key.as_deref(), None, after, limit, |row| {
            if all_visible || self.may_read(caller, actions::REGISTRY_READ, row)? {
                Ok(Some(self.render_registry(&row.id, &decode(row)?)))
            } else {
                Ok(None)
            }
        })
        .await
    }

    /// Creates or updates a registry (PUT). Returns the registry, whether it was created, and
    /// the operation to poll.
    pub async fn put_registry(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        name: &str,
        body: Registry,
        pre: &Preconditions,
    ) -> Result<(Versioned<Registry>, bool, OperationRef)> {
        self.check_subscription(subscription_id)?;
        ResourceGroupName::parse(group)?;
        let rname = RegistryName::parse(name)?;
        let id = self.registry_id(group, rname.as_str());
        self.authorize_visible(caller, actions::REGISTRY_WRITE, actions::REGISTRY_READ, &id, || registry_not_found(name)).await?;
        let spec = validate_put(&body, &rname)?;
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let gdoc = group_for_write(&mut tx, &self.subscription_id, group).await?;
        if gdoc.managed_by.is_some() {
            return Err(deny_managed(&gdoc, actions::REGISTRY_WRITE, &id));
        }
        let existing = tx.get_resource(&id.key()).await?;
        pre.check(existing.as_ref().map(|r| r.etag.as_str()))?;
        let etag = new_etag();
        let (doc, created) = match existing {
            None => (self.create_registry(&mut tx, caller, &id, &rname, spec, &etag, &now).await?, true),
            Some(row) => {
                let old: RegistryDoc = decode(&row)?;
                let doc = self.update_registry(&mut tx, caller, &id, old, spec, &now).await?;
                let stored = document(&id, &doc, etag.clone(), &row.created_at, &now)?;
                if !tx.update_resource(&stored, &row.etag).await? {
                    return Err(Error::PreconditionFailed {
                        message: "The registry changed concurrently; read it again and retry.".into(),
                    });
                }
                (doc, false)
            }
        };
        let op = self.record_operation(&mut tx, caller, "registries/write", &id, &doc.location).await?;
        tx.commit().await?;
        self.reload_network().await?;
        let stored_id = if created {
            id.to_string()
        } else {
            self.store.get_resource(&id.key()).await?.map(|r| r.id).unwrap_or_else(|| id.to_string())
        };
        Ok((Versioned { value: self.render_registry(&stored_id, &doc), etag }, created, op))
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_registry(
        &self,
        tx: &mut WriteTx,
        caller: &Caller,
        id: &ResourceId,
        name: &RegistryName,
        spec: RegistrySpec,
        etag: &str,
        now: &str,
    ) -> Result<RegistryDoc> {
        let owner = id.key();
        tx.claim_name(NAMES_REGISTRY, &name.key(), &owner).await.map_err(|e| match e {
            StoreError::Conflict(_) => Error::conflict(
                "RegistryNameNotAvailable",
                format!(
                    "The registry name '{name}' is already in use in this installation. Registry names are unique case-insensitively \
                     across all subscriptions and resource groups, because asset IDs and discovery name a registry alone. Choose another name."
                ),
            ),
            other => other.into(),
        })?;
        let guid = uuid::Uuid::new_v4().to_string();
        let managed_group = format!("azureml-rg-{name}_{guid}");
        let group_id = ResourceId::resource_group(&self.subscription_id, &managed_group);
        insert_managed_group(tx, &group_id, spec.location.as_str(), id, now).await?;
        let mut regions = spec.regions.clone().unwrap_or_else(|| {
            vec![RegionDoc {
                location: spec.location.to_string(),
                storage_accounts: vec![StorageSpec {
                    name: String::new(),
                    account_type: "Standard_LRS".into(),
                    hns: false,
                    allow_blob_public_access: false,
                }],
            }]
        });
        for r in &mut regions {
            for s in &mut r.storage_accounts {
                s.name = self.create_storage_account(tx, &managed_group, &r.location, s, id, now).await?;
            }
        }
        let acr = self.claim_hex_name(tx, NAMES_ACR, &owner).await?;
        let acr_doc = ContainerRegistryDoc {
            name: acr.clone(),
            location: spec.location.to_string(),
            regions: regions.iter().map(|r| r.location.clone()).collect(),
            public_network_access: None,
            registry_id: id.to_string(),
            created_at: now.to_string(),
        };
        tx.insert_resource(&document(&self.acr_id(&managed_group, &acr), &acr_doc, new_etag(), now, now)?).await?;
        // The registry's system-assigned identity is a principal of its own.
        let identity = uuid::Uuid::new_v4().to_string();
        tx.insert_principal(&PrincipalRow {
            object_id: identity.clone(),
            kind: "ManagedIdentity".into(),
            display_name: name.to_string(),
            app_id: None,
            secret_hash: None,
            created_at: now.to_string(),
            upn: None,
            issuer: None,
            subject: None,
        })
        .await?;
        let doc = RegistryDoc {
            guid,
            name: name.to_string(),
            location: spec.location.to_string(),
            tags: spec.tags,
            public_network_access: spec.public_network_access.unwrap_or(PublicNetworkAccess::Enabled),
            regions,
            managed_group,
            container_registry: acr,
            identity_principal_id: identity,
            sku: spec.sku,
            kind: spec.kind,
            intellectual_property_publisher: spec.intellectual_property_publisher,
            system_data: system_data(Some(caller), None, now),
        };
        tx.insert_resource(&document(id, &doc, etag.to_string(), now, now)?).await?;
        Ok(doc)
    }

    async fn claim_hex_name(&self, tx: &mut WriteTx, namespace: &str, owner: &str) -> Result<String> {
        for _ in 0..8 {
            let candidate = hex11();
            match tx.claim_name(namespace, &candidate, owner).await {
                Ok(()) => return Ok(candidate),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Internal(format!("could not find a free {namespace} name")))
    }

    async fn create_storage_account(
        &self,
        tx: &mut WriteTx,
        managed_group: &str,
        region: &str,
        spec: &StorageSpec,
        registry: &ResourceId,
        now: &str,
    ) -> Result<String> {
        let name = self.claim_hex_name(tx, NAMES_STORAGE, &registry.key()).await?;
        let doc = StorageAccountDoc {
            name: name.clone(),
            location: region.to_string(),
            account_type: spec.account_type.clone(),
            hns: spec.hns,
            allow_blob_public_access: spec.allow_blob_public_access,
            public_network_access: None,
            registry_id: registry.to_string(),
            created_at: now.to_string(),
            key: crate::identity::new_secret()?,
            network_acls: None,
        };
        tx.insert_resource(&document(&self.storage_id(managed_group, &name), &doc, new_etag(), now, now)?).await?;
        Ok(name)
    }

    async fn update_registry(
        &self,
        tx: &mut WriteTx,
        caller: &Caller,
        id: &ResourceId,
        old: RegistryDoc,
        spec: RegistrySpec,
        now: &str,
    ) -> Result<RegistryDoc> {
        if spec.location.as_str() != old.location {
            return Err(Error::invalid(
                "PropertyChangeNotAllowed",
                "location",
                format!("The primary location of registry '{}' is '{}' and cannot change.", old.name, old.location),
            ));
        }
        let mut regions = old.regions.clone();
        if let Some(wanted) = spec.regions {
            for (i, have) in old.regions.iter().enumerate() {
                let Some(w) = wanted.iter().find(|w| w.location == have.location) else {
                    return Err(Error::invalid(
                        "PropertyChangeNotAllowed",
                        "properties.regionDetails",
                        format!("Region '{}' is missing from regionDetails; regions cannot be removed by PUT.", have.location),
                    ));
                };
                let same = w.storage_accounts.len() == have.storage_accounts.len()
                    && w.storage_accounts.iter().zip(&have.storage_accounts).all(|(a, b)| {
                        a.account_type == b.account_type && a.hns == b.hns && a.allow_blob_public_access == b.allow_blob_public_access
                    });
                if !same {
                    return Err(Error::invalid(
                        "PropertyChangeNotAllowed",
                        format!("properties.regionDetails[{i}].storageAccountDetails"),
                        format!("The storage configuration of region '{}' cannot change after it is created.", have.location),
                    ));
                }
            }
            for w in wanted {
                if old.regions.iter().any(|h| h.location == w.location) {
                    continue;
                }
                let mut added = RegionDoc { location: w.location.clone(), storage_accounts: vec![] };
                for mut s in w.storage_accounts {
                    s.name = self.create_storage_account(tx, &old.managed_group, &w.location, &s, id, now).await?;
                    added.storage_accounts.push(s);
                }
                regions.push(added);
            }
            if regions.len() != old.regions.len() {
                self.replicate_container_registry(tx, &old, &regions, now).await?;
            }
        }
        Ok(RegistryDoc {
            tags: spec.tags,
            public_network_access: spec.public_network_access.unwrap_or(old.public_network_access),
            regions,
            sku: spec.sku.or(old.sku.clone()),
            kind: spec.kind.or(old.kind.clone()),
            intellectual_property_publisher: spec.intellectual_property_publisher.or(old.intellectual_property_publisher.clone()),
            system_data: system_data(Some(caller), Some(&old.system_data), now),
            ..old
        })
    }

    async fn replicate_container_registry(&self, tx: &mut WriteTx, reg: &RegistryDoc, regions: &[RegionDoc], now: &str) -> Result<()> {
        let acr_id = self.acr_id(&reg.managed_group, &reg.container_registry);
        let row = tx.get_resource(&acr_id.key()).await?.ok_or_else(|| Error::Internal(format!("container registry {acr_id} missing")))?;
        let mut doc: ContainerRegistryDoc = decode(&row)?;
        doc.regions = regions.iter().map(|r| r.location.clone()).collect();
        let stored = document(&acr_id, &doc, new_etag(), &row.created_at, now)?;
        if !tx.update_resource(&stored, &row.etag).await? {
            return Err(Error::Internal("container registry changed concurrently".into()));
        }
        Ok(())
    }

    /// PATCH: tags, identity and sku only.
    pub async fn patch_registry(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        name: &str,
        patch: RegistryPatch,
        pre: &Preconditions,
    ) -> Result<Versioned<Registry>> {
        self.check_subscription(subscription_id)?;
        let id = self.registry_id(group, name);
        self.authorize_visible(caller, actions::REGISTRY_WRITE, actions::REGISTRY_READ, &id, || registry_not_found(name)).await?;
        if let Some(t) = &patch.tags {
            names::validate_tags("tags", t)?;
        }
        validate_identity(patch.identity.as_ref())?;
        validate_sku(patch.sku.as_ref())?;
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let row = tx.get_resource(&id.key()).await?.ok_or_else(|| registry_not_found(name))?;
        pre.check(Some(&row.etag))?;
        let old: RegistryDoc = decode(&row)?;
        let doc = RegistryDoc {
            tags: patch.tags.unwrap_or(old.tags.clone()),
            sku: patch.sku.or(old.sku.clone()),
            system_data: system_data(Some(caller), Some(&old.system_data), &now),
            ..old
        };
        let etag = new_etag();
        let stored = document(&id, &doc, etag.clone(), &row.created_at, &now)?;
        if !tx.update_resource(&stored, &row.etag).await? {
            return Err(Error::PreconditionFailed { message: "The registry changed concurrently; retry.".into() });
        }
        tx.commit().await?;
        Ok(Versioned { value: self.render_registry(&row.id, &doc), etag })
    }

    /// Deletes a registry with its managed resource group and everything in it.
    /// Returns `None` when it did not exist.
    pub async fn delete_registry(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        name: &str,
        pre: &Preconditions,
    ) -> Result<Option<OperationRef>> {
        self.check_subscription(subscription_id)?;
        let id = self.registry_id(group, name);
        self.authorize_visible(caller, actions::REGISTRY_DELETE, actions::REGISTRY_READ, &id, || registry_not_found(name)).await?;
        let mut tx = self.store.write().await?;
        let Some(row) = tx.get_resource(&id.key()).await? else {
            pre.check(None)?;
            return Ok(None);
        };
        pre.check(Some(&row.etag))?;
        let doc: RegistryDoc = decode(&row)?;
        for r in &doc.regions {
            for s in &r.storage_accounts {
                tx.delete_resource(&self.storage_id(&doc.managed_group, &s.name).key()).await?;
                // Its blobs go too, so that their bytes can be garbage collected.
                tx.forget_account(&s.name).await?;
            }
        }
        tx.delete_resource(&self.acr_id(&doc.managed_group, &doc.container_registry).key()).await?;
        tx.delete_resource(&ResourceId::resource_group(&self.subscription_id, &doc.managed_group).key()).await?;
        tx.delete_principal(&doc.identity_principal_id).await?;
        tx.delete_resource(&id.key()).await?;
        // Its assets and pending uploads go with it, so that a registry created later under
        // the same name starts empty.
        tx.delete_resources_with_prefix(&format!("{}/", id.key())).await?;
        tx.oci_forget(&doc.container_registry.to_ascii_lowercase()).await?;
        tx.release_names(&id.key()).await?;
        let op = self.record_operation(&mut tx, caller, "registries/delete", &id, &doc.location).await?;
        tx.commit().await?;
        self.reload_network().await?;
        self.update_authz(|idx| idx.remove_principal(&doc.identity_principal_id)).await?;
        Ok(Some(op))
    }

    /// `GET .../providers/Microsoft.Storage/storageAccounts/{name}` (managed accounts only).
    pub async fn get_storage_account(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        name: &str,
    ) -> Result<Versioned<StorageAccount>> {
        self.check_subscription(subscription_id)?;
        let id = self.storage_id(group, name);
        let missing = || Error::not_found("ResourceNotFound", format!("The storage account '{name}' could not be found."));
        let (doc, row) = self.read_visible::<StorageAccountDoc>(caller, actions::STORAGE_READ, &id, missing).await?;
        let value = StorageAccount {
            id: row.id.clone(),
            name: doc.name.clone(),
            resource_type: arm::STORAGE_ACCOUNT_TYPE.into(),
            location: doc.location.clone(),
            tags: BTreeMap::new(),
            sku: Sku {
                name: doc.account_type.clone(),
                tier: Some(doc.account_type.split('_').next().unwrap_or("Standard").into()),
                ..Sku::default()
            },
            kind: "StorageV2".into(),
            properties: StorageAccountProperties {
                provisioning_state: "Succeeded".into(),
                public_network_access: doc.public_network_access.map(|p| p.as_str().to_string()),
                allow_blob_public_access: doc.allow_blob_public_access,
                is_hns_enabled: doc.hns,
                network_acls: crate::network::AclsDoc::render(doc.network_acls.as_ref()),
                creation_time: doc.created_at.clone(),
                primary_endpoints: arm::PrimaryEndpoints { blob: format!("{}/", self.blob_endpoint(&doc.name)) },
            },
        };
        Ok(Versioned { value, etag: row.etag })
    }

    /// `GET .../providers/Microsoft.ContainerRegistry/registries/{name}` (managed ones only).
    pub async fn get_container_registry(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        name: &str,
    ) -> Result<Versioned<ContainerRegistry>> {
        self.check_subscription(subscription_id)?;
        let id = self.acr_id(group, name);
        let missing = || Error::not_found("ResourceNotFound", format!("The container registry '{name}' could not be found."));
        let (doc, row) = self.read_visible::<ContainerRegistryDoc>(caller, actions::CONTAINER_REGISTRY_READ, &id, missing).await?;
        let value = ContainerRegistry {
            id: row.id.clone(),
            name: doc.name.clone(),
            resource_type: arm::CONTAINER_REGISTRY_TYPE.into(),
            location: doc.location.clone(),
            tags: BTreeMap::new(),
            sku: Sku { name: "Premium".into(), tier: Some("Premium".into()), ..Sku::default() },
            properties: ContainerRegistryProperties {
                login_server: self.login_server(&doc.name),
                provisioning_state: "Succeeded".into(),
                public_network_access: doc.public_network_access.map(|p| p.as_str().to_string()),
                admin_user_enabled: false,
                replication_locations: doc.regions.clone(),
                creation_date: doc.created_at.clone(),
            },
        };
        Ok(Versioned { value, etag: row.etag })
    }

    /// Discovery: a registry by name alone. Unknown and forbidden look the same (403
    /// `UnAuthorizedRegistryAccess`), so that names cannot be probed.
    pub async fn discover_registry(&self, caller: &Caller, name: &str) -> Result<RegistryDiscovery> {
        let denied = || Error::Forbidden {
            code: "UnAuthorizedRegistryAccess",
            action: actions::REGISTRY_READ.into(),
            scope: format!("registry '{name}'"),
            message: format!(
                "The caller '{}' may not access registry '{name}', or no registry of that name exists. \
                 Check the name; if it is right, ask the registry's owner to assign you a role with \
                 '{}' on it (Reader or AzureML Registry User).",
                caller.display_name,
                actions::REGISTRY_READ
            ),
        };
        let Ok(rname) = RegistryName::parse(name) else {
            return Err(denied());
        };
        self.admit(Some(caller), &caller.client, &caller.origin, crate::network::NetTarget::RegistryName(rname.as_str()), denied).await?;
        let Some(owner) = self.store.name_owner(NAMES_REGISTRY, &rname.key()).await? else {
            let rule = "no registry of this name exists (answered like a denial so that names cannot be probed)".to_string();
            self.audit.record(crate::audit::entry(caller, actions::REGISTRY_READ, &format!("registry:{name}"), "denied", rule)).await?;
            return Err(denied());
        };
        let Some(row) = self.store.get_resource(&owner).await? else {
            return Err(denied());
        };
        let id = ResourceId::parse(&row.id)?;
        let decision = self.decide(caller, actions::REGISTRY_READ, &id);
        let result = if decision.is_allowed() { "allowed" } else { "denied" };
        self.audit.record(crate::audit::entry(caller, actions::REGISTRY_READ, id.as_str(), result, decision.rule())).await?;
        if !decision.is_allowed() {
            return Err(denied());
        }
        let doc: RegistryDoc = decode(&row)?;
        let base = &self.config.public_url;
        let zone = self.config.dns_zone.to_ascii_lowercase();
        // Names carry the public URL's scheme and port, so they work wherever moat's DNS answers.
        let (scheme, port) = scheme_and_port(base);
        let url = |host: String| format!("{scheme}://{host}{port}");
        let acr = doc.container_registry.to_ascii_lowercase();
        let mut acr_hosts = vec![format!("{acr}.cr.{zone}{port}")];
        acr_hosts.extend(doc.regions.iter().map(|r| format!("{acr}.{}.data.cr.{zone}{port}", r.location.to_ascii_lowercase())));
        Ok(RegistryDiscovery {
            registry_name: doc.name.clone(),
            tenant_id: self.tenant_id.clone(),
            primary_region: doc.location.clone(),
            regions: doc.regions.iter().map(|r| r.location.clone()).collect(),
            subscription_id: id.subscription_id().to_string(),
            resource_group: id.resource_group_name().unwrap_or_default().to_string(),
            workspace_name: None,
            primary_region_resource_provider_uri: format!("{base}/"),
            registry_fqdns: doc
                .regions
                .iter()
                .map(|r| {
                    (
                        r.location.to_ascii_lowercase(),
                        RegistryFqdn { uri: url(crate::network::registry_fqdn(&doc.guid, &r.location, &zone)) },
                    )
                })
                .collect(),
            storage_account_fqdns: doc
                .regions
                .iter()
                .flat_map(|r| r.storage_accounts.iter())
                .filter(|s| !s.name.is_empty())
                .map(|s| (s.name.clone(), RegistryFqdn { uri: self.blob_endpoint(&s.name) }))
                .collect(),
            container_registry_fqdns: if acr.is_empty() { Vec::new() } else { acr_hosts },
        })
    }
}

/// A storage account name as moat makes them: 11 lowercase hex characters (what the blob plane's
/// first path segment must be).
pub fn is_account_name(s: &str) -> bool {
    s.len() == 11 && s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// `path_style` (`{public_url}/{account}/{rest}`) with `{public_url}/{account}` replaced by the
/// account's blob endpoint (`endpoint(account)`); anything else as it is.
fn host_style_of(public_url: &str, endpoint: impl Fn(&str) -> String, path_style: &str) -> String {
    let Some(rest) = path_style.strip_prefix(&format!("{}/", public_url.trim_end_matches('/'))) else { return path_style.to_string() };
    match rest.split_once('/') {
        Some((account, path)) if is_account_name(account) => format!("{}/{path}", endpoint(account)),
        _ => path_style.to_string(),
    }
}

/// A request's host (`name[:port]`) without its port.
fn without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The path-style form of host-style URI `uri` of an account under `zone`, with the scheme and
/// port of `public_url`; `None` for any other URI.
fn path_style_of(public_url: &str, zone: &str, uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let account = account_of_host(authority, zone)?;
    let (public_scheme, public_port) = scheme_and_port(public_url);
    let (_, port) = scheme_and_port(&format!("{scheme}://{authority}"));
    (scheme.eq_ignore_ascii_case(public_scheme) && port == public_port)
        .then(|| format!("{}/{account}/{path}", public_url.trim_end_matches('/')))
}

/// The storage account a request's `Host` names (`{account}.blob.{zone}`, any port), if it is a
/// host-style blob request.
pub fn account_of_host(host: &str, dns_zone: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let (account, zone) = without_port(&host).split_once(".blob.")?;
    (zone.trim_end_matches('.').eq_ignore_ascii_case(dns_zone) && is_account_name(account)).then(|| account.to_string())
}

/// The scheme of `url` and its port as a `:port` suffix (empty when it is the scheme's default
/// or absent).
fn scheme_and_port(url: &str) -> (&str, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split('/').next().unwrap_or_default();
    // The port follows the last ':' unless that ':' is inside an IPv6 literal.
    let port = match authority.rsplit_once(':') {
        Some((host, p)) if !p.contains(']') && !host.is_empty() => p,
        _ => "",
    };
    let default = matches!((scheme, port), ("http", "80") | ("https", "443"));
    (scheme, if port.is_empty() || default { String::new() } else { format!(":{port}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_public_urls_scheme_and_port() {
        assert_eq!(scheme_and_port("http://127.0.0.1:7700"), ("http", ":7700".to_string()));
        assert_eq!(scheme_and_port("https://moat.example.com"), ("https", String::new()));
        assert_eq!(scheme_and_port("https://moat.example.com:443/"), ("https", String::new()));
        assert_eq!(scheme_and_port("http://[::1]:8080"), ("http", ":8080".to_string()));
        assert_eq!(scheme_and_port("http://[::1]"), ("http", String::new()));
    }

    #[test]
    fn host_style_and_path_style_locations_round_trip() {
        for (public_url, host_style) in [
            ("https://127.0.0.1:7700", "https://0123456789a.blob.moat.internal:7700/upload-1/model/w.bin"),
            ("https://moat.example.com", "https://0123456789a.blob.moat.internal/upload-1/model/w.bin"),
            ("http://[::1]:8080", "http://0123456789a.blob.moat.internal:8080/upload-1/model/w.bin"),
        ] {
            let (scheme, port) = scheme_and_port(public_url);
            let endpoint = format!("{scheme}://0123456789a.blob.moat.internal{port}");
            let path_style = format!("{public_url}/0123456789a/upload-1/model/w.bin");
            assert_eq!(host_style_of(public_url, |_| endpoint.clone(), &path_style), host_style, "{public_url}");
            assert_eq!(path_style_of(public_url, "moat.internal", host_style).as_deref(), Some(path_style.as_str()), "{public_url}");
            let shouted = host_style.replace("0123456789a.blob.moat.internal", "0123456789A.BLOB.Moat.Internal");
            assert_eq!(path_style_of(public_url, "moat.internal", &shouted).as_deref(), Some(path_style.as_str()), "case");
        }
        let public = "https://127.0.0.1:7700";
        assert_eq!(path_style_of(public, "moat.internal", "https://0123456789a.blob.moat.internal:9999/c/b"), None, "another port");
        assert_eq!(path_style_of(public, "moat.internal", "http://0123456789a.blob.moat.internal:7700/c/b"), None, "another scheme");
        assert_eq!(path_style_of(public, "moat.internal", "https://example.com/c/b"), None, "not an account");
        let not_ours = "https://elsewhere/0123456789a/c/b";
        assert_eq!(host_style_of(public, |_| "https://0123456789a.blob.moat.internal:7700".to_string(), not_ours), not_ours);
    }

    #[test]
    fn a_host_names_an_account_only_under_the_zone() {
        let zone = "moat.internal";
        assert_eq!(account_of_host("0123456789a.blob.moat.internal:8443", zone).as_deref(), Some("0123456789a"));
        assert_eq!(account_of_host("0123456789A.BLOB.Moat.Internal", zone).as_deref(), Some("0123456789a"));
        assert_eq!(account_of_host("0123456789a.blob.other.zone", zone), None);
        assert_eq!(account_of_host("not-an-acct.blob.moat.internal", zone), None);
        assert_eq!(account_of_host("127.0.0.1:8443", zone), None);
    }

    fn body(json: serde_json::Value) -> Registry {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn primary_region_goes_first_and_defaults_apply() {
        let name = RegistryName::parse("r1").unwrap();
        let spec = validate_put(
            &body(serde_json::json!({"location": "East US", "properties": {"regionDetails": [
                {"location": "westus"}, {"location": "eastus", "storageAccountDetails": [{"systemCreatedStorageAccount": {"storageAccountType": "premium_lrs"}}]}
            ]}})),
            &name,
        )
        .unwrap();
        let regions = spec.regions.unwrap();
        assert_eq!(regions[0].location, "eastus");
        assert_eq!(regions[0].storage_accounts[0].account_type, "Premium_LRS");
        assert_eq!(regions[1].storage_accounts[0].account_type, "Standard_LRS");
    }

    #[test]
    fn refuses_bad_bodies_naming_the_field() {
        let name = RegistryName::parse("r1").unwrap();
        let cases = [
            (serde_json::json!({"properties": {}}), "location"),
            (serde_json::json!({"location": "eastus", "name": "other"}), "name"),
            (
                serde_json::json!({"location": "eastus", "properties": {"publicNetworkAccess": "sometimes"}}),
                "properties.publicNetworkAccess",
            ),
            (
                serde_json::json!({"location": "eastus", "properties": {"regionDetails": [{"location": "westus"}]}}),
                "properties.regionDetails",
            ),
            (
                serde_json::json!({"location": "eastus", "properties": {"regionDetails": [{"location": "eastus"}, {"location": "EastUS"}]}}),
                "properties.regionDetails[1].location",
            ),
            (
                serde_json::json!({"location": "eastus", "properties": {"regionDetails": [{"location": "eastus", "acrDetails": [{"systemCreatedAcrAccount": {"acrAccountSku": "Basic"}}]}]}}),
                "properties.regionDetails[0].acrDetails[0].systemCreatedAcrAccount.acrAccountSku",
            ),
            (serde_json::json!({"location": "eastus", "identity": {"type": "None"}}), "identity.type"),
        ];
        for (json, target) in cases {
            match validate_put(&body(json.clone()), &name) {
                Err(Error::Invalid { target: Some(t), .. }) => assert_eq!(t, target, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
