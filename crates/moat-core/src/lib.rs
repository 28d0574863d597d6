//! The domain: one module per resource kind. Every operation takes the [`Caller`], authorises
//! first through [`Moat::authorize`] (the one hook), then reads and writes the store.
//! Depends on moat-types, moat-policy and moat-store; knows nothing of HTTP.

use std::sync::{Arc, RwLock};

use moat_policy::{Assignment, AuthzIndex, Decision};
use moat_store::{AssignmentRow, OperationRow, PrincipalRow, StoredResource, WriteTx};
use moat_types::ResourceId;
use serde::{Serialize, de::DeserializeOwned};

pub mod assets;
pub mod audit;
pub mod blobs;
pub mod changes;
mod context;
pub mod directory;
mod error;
pub mod groups;
pub mod identity;
pub mod network;
pub mod oci;
pub mod oidc;
pub mod operations;
mod prehash;
pub mod privatedns;
pub mod registries;
pub mod roles;
pub mod sas;
mod staging;

pub use context::Caller;
pub use error::{Error, Result};
pub use identity::{AUDIENCE_MANAGEMENT, AUDIENCE_ML, TokenIssuer};
pub use moat_blob::BlobReader;
pub use moat_store::Store;

/// Settings the domain needs; validated by the composition root.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Base URL under which this installation is reached publicly, without a trailing slash.
    pub public_url: String,
    /// DNS zone under which resources get names (e.g. container registry login servers).
    pub dns_zone: String,
    /// Lifetime of issued access tokens, in seconds.
    pub token_lifetime_secs: i64,
    /// Directory of the content-addressed byte store (with an object store: of its temporary
    /// files only).
    pub blob_dir: std::path::PathBuf,
    /// Where bytes live when not under `blob_dir`: `azure://CONTAINER[/PREFIX]`,
    /// `s3://BUCKET[/PREFIX]` or `file:///PATH` (see moat-blob).
    pub blob_url: Option<String>,
    /// Whether the answer to an allowed read waits for its activity log entry.
    pub audit_reads: audit::AuditReads,
    /// How long a stored file nothing refers to must have gone unstored before garbage
    /// collection removes it.
    pub gc_grace: std::time::Duration,
}

/// Credentials of the bootstrap administrator (a service principal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminCredentials {
    pub app_id: String,
    pub secret: String,
}

/// A value with the ETag of the stored document it came from.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    pub value: T,
    pub etag: String,
}

/// One page of a list, and the key after which the next page starts.
#[derive(Clone, Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

/// What a mutating operation returns: the operation record clients can poll.
#[derive(Clone, Debug)]
pub struct OperationRef {
    pub id: String,
    pub location: String,
}

/// Preconditions from `If-Match` / `If-None-Match`.
#[derive(Clone, Debug, Default)]
pub struct Preconditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

impl Preconditions {
    /// Checks the preconditions against the current ETag (`None`: the resource does not exist).
    pub fn check(&self, current: Option<&str>) -> Result<()> {
        let same = |want: &str, have: &str| want.trim() == "*" || want.trim().trim_matches('"') == have.trim_matches('"');
        if let Some(want) = &self.if_match {
            match current {
                Some(have) if want.split(',').any(|w| same(w, have)) => {}
                Some(have) => {
                    return Err(Error::PreconditionFailed {
                        message: format!("The resource has changed: its ETag is {have}, not {want}. Read it again and retry."),
                    });
                }
                None => {
                    return Err(Error::PreconditionFailed { message: "If-Match was given but the resource does not exist.".into() });
                }
            }
        }
        if let Some(want) = &self.if_none_match
            && let Some(have) = current
            && want.split(',').any(|w| same(w, have))
        {
            return Err(Error::PreconditionFailed {
                message: format!("If-None-Match: {want} given, but the resource exists (ETag {have})."),
            });
        }
        Ok(())
    }
}

/// Pairs the byte store with this database: each records the same ID (`blob_store_id` in the
/// database, `store-id` in the byte store, a file or an object), written on first use. A byte
/// store that records another database's ID — moat started on a new or another database with
/// an old data directory's bytes, or a second installation pointed at the same objects — keeps
/// its garbage collection off: everything there would look unreferenced. Returns why, when it
/// is off.
async fn pair_byte_store(store: &Store, blobs: &moat_blob::BlobStore) -> Result<Option<String>> {
    if !blobs.collects_garbage() {
        return Ok(None);
    }
    let mut tx = store.write().await?;
    let ours = match tx.get_meta("blob_store_id").await? {
        Some(id) => id,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            tx.put_meta("blob_store_id", &id).await?;
            id
        }
    };
    tx.commit().await?;
    let io = |e: moat_blob::BlobError| Error::Internal(format!("byte store: {e}"));
    match blobs.owner().await.map_err(io)? {
        None => {
            // A byte store from before the pairing has files and no ID: it is this database's
            // only if this database refers to some of them.
            if blobs.holds_any().await.map_err(io)? {
                let mut sample = Vec::new();
                store
                    .referenced_content(|d, _| {
                        if sample.len() < 1000
                            && let Ok(d) = moat_types::Digest::parse(d)
                        {
                            sample.push(d);
                        }
                    })
                    .await?;
                let mut ours_too = false;
                for d in &sample {
                    if blobs.holds(d).await.map_err(io)? {
                        ours_too = true;
                        break;
                    }
                }
                if !ours_too {
                    let how = if blobs.is_remote() {
                        format!("put an object named store-id holding {ours} at its prefix")
                    } else {
                        format!("echo {ours} > {}/store-id", blobs.describe())
                    };
                    return Ok(Some(format!(
                        "the byte store {} holds content but no store-id, and this database refers to none of it, so nothing in it is removed; if it is meant to serve this database, write this database's ID into it ({how}) and restart",
                        blobs.describe()
                    )));
                }
            }
            blobs.set_owner(&ours).await.map_err(io)?;
            Ok(None)
        }
        Some(theirs) if theirs == ours => Ok(None),
        Some(theirs) => Ok(Some(format!(
            "the byte store {} holds the bytes of another database (store-id {theirs}, this database's is {ours}), so nothing in it is removed; if it is meant to serve this database now, delete its store-id and restart",
            blobs.describe()
        ))),
    }
}

/// The moat domain service: shared by every request.
pub struct Moat {
    store: Store,
    issuer: TokenIssuer,
    config: CoreConfig,
    tenant_id: String,
    subscription_id: String,
    admin_object_id: String,
    /// Roles and assignments, indexed; every write to them updates it in the same step.
    authz: RwLock<AuthzIndex>,
    audit: audit::AuditLog,
    external: oidc::ExternalIssuers,
    sign_ins: identity::SignInThrottle,
    refusals: audit::RefusalLimiter,
    blobs: moat_blob::BlobStore,
    /// Running hashes of the block blobs being uploaded to this node.
    prehash: prehash::Prehash,
    /// Staging files of the block blobs whose blocks are written in place on this node.
    staging: staging::Staging,
    /// Why garbage collection must not run on this byte store, if it must not.
    gc_refused: Option<String>,
    /// Held by the garbage collection running, so that two (scheduled and on demand) never
    /// judge the same files at once.
    gc_running: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The network view admission reads; replaced whole after every network change.
    net: tokio::sync::watch::Sender<std::sync::Arc<network::NetView>>,
    /// Where each private endpoint's listener is (or why it could not open), as the
    /// composition root reports it.
    listener_urls: RwLock<std::collections::HashMap<String, Result<String, String>>>,
    /// The change marks this node last saw or wrote (see [`changes`]).
    seen_changes: std::sync::Mutex<std::collections::HashMap<&'static str, String>>,
    /// Held while views are rebuilt after other nodes' changes (see changes.rs).
    catching_up: tokio::sync::Mutex<()>,
    /// Principals that authenticated, by object ID (SQLite only: one process sees every change;
    /// emptied whenever the authorization index changes, which every principal deletion does).
    /// With the generation of the cache, bumped on every emptying, so that a lookup that raced
    /// a deletion does not put the deleted principal back.
    principals: std::sync::Mutex<(u64, std::collections::HashMap<String, Arc<PrincipalRow>>)>,
    /// JSON answers of reads, by stored document key, with the ETag they were rendered from.
    rendered: Rendered,
}

/// JSON answers rendered from stored documents. An answer is a function of its document, and a
/// document's ETag changes with every write, so an entry whose ETag matches the document just
/// read is the answer: nothing needs forgetting.
#[derive(Default)]
struct Rendered {
    /// Bytes kept, and the answers: document key → (ETag, JSON).
    inner: std::sync::Mutex<(usize, RenderedMap)>,
}

type RenderedMap = std::collections::HashMap<String, (String, bytes::Bytes)>;

/// The most bytes of rendered answers kept; past it the cache starts over.
const RENDERED_BYTES: usize = 16 << 20;

impl Rendered {
    fn get_or<T: Serialize>(&self, row: &StoredResource, render: impl FnOnce() -> Result<T>) -> Result<bytes::Bytes> {
        let key = row.id_key();
        if let Ok(m) = self.inner.lock()
            && let Some((etag, json)) = m.1.get(&key)
            && *etag == row.etag
        {
            return Ok(json.clone());
        }
        let json = bytes::Bytes::from(serde_json::to_vec(&render()?).map_err(|e| Error::Internal(format!("rendering {}: {e}", row.id)))?);
        if json.len() <= RENDERED_BYTES / 64
            && let Ok(mut m) = self.inner.lock()
        {
            if m.0 + json.len() > RENDERED_BYTES {
                m.1.clear();
                m.0 = 0;
            }
            m.0 += json.len();
            if let Some((_, old)) = m.1.insert(key, (row.etag.clone(), json.clone())) {
                m.0 -= old.len();
            }
        }
        Ok(json)
    }
}

impl std::fmt::Debug for Moat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moat").field("tenant_id", &self.tenant_id).finish_non_exhaustive()
    }
}

/// Current time in RFC 3339 with microseconds, UTC.
pub fn now_rfc3339() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4())
}

/// 11 lowercase hex characters, as Azure names a registry's storage account and container registry.
pub(crate) fn hex11() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..11].to_string()
}

pub(crate) fn decode<T: DeserializeOwned>(r: &StoredResource) -> Result<T> {
    serde_json::from_str(&r.body).map_err(|e| Error::Internal(format!("stored document {}: {e}", r.id)))
}

pub(crate) fn document<T: Serialize>(id: &ResourceId, body: &T, etag: String, created_at: &str, now: &str) -> Result<StoredResource> {
    Ok(StoredResource {
        id: id.as_str().to_string(),
        kind: id.resource_type().to_ascii_lowercase(),
        subscription_id: id.subscription_id().to_string(),
        group_key: id.resource_group_name().map(str::to_ascii_lowercase),
        name: id.name().to_string(),
        body: serde_json::to_string(body)?,
        etag,
        created_at: created_at.to_string(),
        updated_at: now.to_string(),
    })
}

impl Moat {
    /// Opens the domain on a store: bootstraps a tenant, a subscription, the `default` resource
    /// group and an administrator on first start. Returns the administrator's credentials:
    /// `known` is kept when it still verifies, otherwise a new secret is minted.
    pub async fn start(store: Store, config: CoreConfig, known: Option<&AdminCredentials>) -> Result<(Moat, AdminCredentials)> {
        let now = now_rfc3339();
        let mut tx = store.write().await?;
        let (tenant_id, subscription_id, admin_object_id) = match tx.get_meta("tenant_id").await? {
            Some(t) => {
                let sub = tx.get_meta("subscription_id").await?.ok_or_else(|| Error::Internal("meta: no subscription_id".into()))?;
                let admin = tx.get_meta("admin_object_id").await?.ok_or_else(|| Error::Internal("meta: no admin_object_id".into()))?;
                (t, sub, admin)
            }
            None => bootstrap(&mut tx, &now).await?,
        };
        tx.commit().await?;
        let admin = store.principal(&admin_object_id).await?.ok_or_else(|| Error::Internal("administrator principal missing".into()))?;
        let app_id = admin.app_id.clone().ok_or_else(|| Error::Internal("administrator has no app id".into()))?;
        let still_valid = known
            .is_some_and(|k| k.app_id == app_id && admin.secret_hash.as_deref().is_some_and(|h| identity::verify_secret(&k.secret, h)));
        let creds = match known {
            Some(k) if still_valid => k.clone(),
            _ => {
                let secret = identity::new_secret()?;
                let mut tx = store.write().await?;
                tx.set_principal_secret(&admin_object_id, &identity::hash_secret(&secret)?).await?;
                tx.commit().await?;
                tracing::info!(app_id = %app_id, "issued a new administrator secret");
                AdminCredentials { app_id, secret }
            }
        };
        let issuer = TokenIssuer::load_or_create(&store, format!("{}/{tenant_id}/v2.0", config.public_url), &now).await?;
        let authz = load_authz(&store, &subscription_id).await?;
        let audit = audit::AuditLog::start(store.clone(), config.audit_reads);
        let external = oidc::ExternalIssuers::new(vec![], None);
        let mut blobs = moat_blob::BlobStore::open_with(&config.blob_dir, config.blob_url.as_deref(), &[]).await.map_err(|e| {
            Error::Internal(format!("byte store {}: {e}", config.blob_url.as_deref().unwrap_or(&config.blob_dir.display().to_string())))
        })?;
        blobs.set_claimer(Arc::new(blobs::DbClaimer { store: store.clone() }));
        let gc_refused = pair_byte_store(&store, &blobs).await?;
        if let Some(why) = &gc_refused {
            tracing::warn!("garbage collection is off: {why}");
        }
        let moat = Moat {
            store,
            issuer,
            config,
            tenant_id,
            subscription_id,
            admin_object_id,
            authz: RwLock::new(authz),
            audit,
            external,
            sign_ins: Default::default(),
            refusals: Default::default(),
            blobs,
            prehash: Default::default(),
            staging: Default::default(),
            gc_refused,
            gc_running: Default::default(),
            net: tokio::sync::watch::Sender::new(Default::default()),
            listener_urls: Default::default(),
            seen_changes: Default::default(),
            catching_up: Default::default(),
            principals: Default::default(),
            rendered: Default::default(),
        };
        moat.rebuild_network().await?;
        moat.oci_recover().await?;
        Ok((moat, creds))
    }

    /// Why garbage collection is off for this byte store (see `pair_byte_store`), if it is.
    pub fn gc_refused(&self) -> Option<&str> {
        self.gc_refused.as_deref()
    }

    /// Trusts these external OpenID Connect issuers, fetching their keys with `fetch`.
    pub fn with_external_issuers(mut self, issuers: Vec<oidc::ExternalIssuer>, fetch: oidc::FetchJson) -> Self {
        self.external = oidc::ExternalIssuers::new(issuers, Some(fetch));
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }
    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }
    pub fn admin_object_id(&self) -> &str {
        &self.admin_object_id
    }
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// Rotates the token signing key when it is `rotate_after` seconds old; keys stay valid
    /// for verification until every token they signed has expired.
    pub async fn rotate_signing_keys(&self, rotate_after: i64) -> Result<bool> {
        let keep = self.config.token_lifetime_secs + 60;
        self.issuer.rotate_if_due(&self.store, time::OffsetDateTime::now_utc(), rotate_after, keep).await
    }

    /// Exchanges client credentials for an access token (`client_credentials` grant).
    pub async fn issue_token(&self, client_id: &str, client_secret: &str, audience: &str) -> Result<(String, i64)> {
        let bad = || Error::Unauthenticated { reason: "invalid client_id or client_secret".into() };
        let p = self.store.principal_by_app_id(client_id).await?.ok_or_else(bad)?;
        let ok = p.secret_hash.as_deref().is_some_and(|h| identity::verify_secret(client_secret, h));
        if !ok {
            return Err(bad());
        }
        self.sign_for(&p, "app", audience)
    }

    /// Exchanges a user's name and password for an access token (`password` grant).
    /// Failed attempts are throttled per user and client address, written to the activity log,
    /// and take the same time whether or not the user exists.
    pub async fn issue_user_token(&self, username: &str, password: &str, audience: &str, client: &str) -> Result<(String, i64)> {
        let client_ip = client.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(client).to_string();
        self.sign_ins.check(username, &client_ip)?;
        let p = self.store.principal_by_upn(username).await?.filter(|p| p.kind == directory::KIND_USER);
        let hash = p.as_ref().and_then(|p| p.secret_hash.clone());
        let password = password.to_string();
        // PBKDF2 is slow on purpose; keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || identity::verify_password_constant_time(&password, hash.as_deref()))
            .await
            .map_err(|e| Error::Internal(format!("verifying a password: {e}")))?;
        match p {
            Some(p) if ok => {
                self.sign_ins.succeeded(username, &client_ip);
                self.sign_for(&p, "user", audience)
            }
            _ => {
                // The attempt was counted when it began (SignInThrottle::check).
                let reason = format!("invalid username or password (user '{username}')");
                self.audit_unauthenticated(client, "public", "/oauth2/v2.0/token", &reason).await?;
                Err(Error::Unauthenticated { reason: "invalid username or password".into() })
            }
        }
    }

    fn sign_for(&self, p: &PrincipalRow, idtyp: &str, audience: &str) -> Result<(String, i64)> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let exp = now + self.config.token_lifetime_secs;
        let claims = identity::Claims {
            iss: self.issuer.issuer().to_string(),
            aud: audience.to_string(),
            sub: p.object_id.clone(),
            oid: p.object_id.clone(),
            tid: self.tenant_id.clone(),
            iat: now,
            nbf: now,
            exp,
            idtyp: idtyp.into(),
            appid: p.app_id.clone(),
            access: None,
        };
        Ok((self.issuer.sign(&claims)?, exp))
    }

    /// Authenticates a bearer token for `audience`: a valid signature is not enough, the
    /// principal must still exist.
    pub async fn authenticate(&self, token: &str, audiences: &[&str], client: &str, origin: &str) -> Result<Caller> {
        // The common case: a token this node verified before, still valid, for these audiences.
        if let Some(claims) = self.issuer.verified_before(token, audiences) {
            return self.caller_for(&claims, client, origin).await;
        }
        if let Some(iss) = oidc::peek_issuer(token)
            && iss != self.issuer.issuer()
        {
            // External tokens stand for moat's management audience (which discovery accepts
            // too); a surface that takes only data-plane tokens does not take them.
            if self.external.trusts(&iss) && audiences.contains(&AUDIENCE_MANAGEMENT) {
                return self.authenticate_external(token, &iss, client, origin).await;
            }
            return Err(Error::Unauthenticated {
                reason: format!(
                    "the token was not issued by {} nor by a trusted external issuer ('{iss}' is not trusted; see oidc_issuers in the configuration)",
                    self.issuer.issuer()
                ),
            });
        }
        // A key this node has not seen may have been created by another node's rotation.
        if !self.issuer.knows_kid_of(token) {
            self.issuer.reload(&self.store).await?;
        }
        let claims = self.issuer.verify(token, audiences)?;
        self.caller_for(&claims, client, origin).await
    }

    /// The caller a verified token of this issuer stands for.
    async fn caller_for(&self, claims: &identity::Claims, client: &str, origin: &str) -> Result<Caller> {
        if claims.tid != self.tenant_id {
            return Err(Error::Unauthenticated { reason: "the token belongs to another tenant".into() });
        }
        let p = self.principal_of(&claims.oid).await?;
        Ok(Caller::of(&p, client, origin))
    }

    async fn authenticate_external(&self, token: &str, iss: &str, client: &str, origin: &str) -> Result<Caller> {
        let who = self.external.verify(token, iss).await?;
        let p = self.store.principal_by_external(&who.issuer, &who.subject).await?.ok_or_else(|| Error::Unauthenticated {
            reason: format!(
                "the identity '{}' of issuer '{}' is not registered in moat; an administrator registers it with                  `moat ad user create --external-issuer {} --external-subject {}`",
                who.subject, who.issuer, who.issuer, who.subject
            ),
        })?;
        Ok(Caller::of(&p, client, origin))
    }

    /// Waits until every activity log entry queued so far is durable (at shutdown: allowed
    /// reads' entries may still be queued, see [`audit::AuditReads`]).
    pub async fn flush_audit(&self) -> Result<()> {
        self.audit.flush().await
    }

    /// The one authorization hook: may `caller` perform `action` on `target`?
    /// Denies with 403 `AuthorizationFailed` naming the action, the scope and the fix.
    pub async fn authorize(&self, caller: &Caller, action: &str, target: &ResourceId) -> Result<()> {
        self.fresh().await?;
        let decision = self.decide(caller, action, target);
        let result = if decision.is_allowed() { "allowed" } else { "denied" };
        self.audit.record(audit::entry(caller, action, target.as_str(), result, decision.rule())).await?;
        if decision.is_allowed() {
            return Ok(());
        }
        tracing::info!(principal = %caller.object_id, action, scope = %target, "authorization denied");
        Err(Error::Forbidden {
            code: "AuthorizationFailed",
            action: action.to_string(),
            scope: target.to_string(),
            message: format!(
                "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{target}'. \
                 Ask an Owner of the scope to assign you a role that grants this action at this scope or above.",
                caller.display_name, caller.object_id
            ),
        })
    }

    /// Like [`Moat::authorize`], but a caller who may not even read `target` learns nothing:
    /// they get `hidden()` (a not-found error) instead of a 403.
    pub async fn authorize_visible(
        &self,
        caller: &Caller,
        action: &str,
        read_action: &str,
        target: &ResourceId,
        hidden: impl FnOnce() -> Error,
    ) -> Result<()> {
        match self.authorize(caller, action, target).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if action != read_action && self.permits(caller, read_action, target).await? {
                    Err(e)
                } else {
                    Err(hidden())
                }
            }
        }
    }

    /// The decision for `caller`, `action`, `target`, with the rule that made it.
    pub fn decide(&self, caller: &Caller, action: &str, target: &ResourceId) -> Decision {
        match self.authz.read() {
            Ok(idx) => idx.decide(&caller.object_id, action, target),
            // A writer panicked mid-update: deny rather than trust a torn index.
            Err(_) => Decision::Denied,
        }
    }

    /// The scope a list covers: the resource group when one is named, else the subscription.
    pub(crate) fn listed_scope(&self, group: Option<&str>) -> ResourceId {
        match group {
            Some(g) => ResourceId::resource_group(&self.subscription_id, g),
            None => ResourceId::subscription(&self.subscription_id),
        }
    }

    /// A list that shows each caller what they may read: recorded in the activity log as one
    /// allowed read of the list's `scope` (the rule says whether a role there shows everything
    /// or the list is filtered item by item). True when everything at `scope` is readable.
    pub(crate) async fn authorize_list(&self, caller: &Caller, read_action: &str, scope: &ResourceId) -> Result<bool> {
        self.fresh().await?;
        let decision = self.decide(caller, read_action, scope);
        let rule = match &decision {
            Decision::Allowed { .. } => decision.rule(),
            Decision::Denied => {
                "no role at this scope grants the action to the principal: the list shows only the items below it that a role lets them read"
                    .to_string()
            }
        };
        self.audit.record(audit::entry(caller, read_action, scope.as_str(), "allowed", rule)).await?;
        Ok(decision.is_allowed())
    }

    async fn permits(&self, caller: &Caller, action: &str, target: &ResourceId) -> Result<bool> {
        Ok(self.decide(caller, action, target).is_allowed())
    }

    /// Applies a change to the authorization index (after the store committed it), and tells
    /// the other nodes sharing the database to reload theirs.
    pub(crate) async fn update_authz(&self, f: impl FnOnce(&mut AuthzIndex)) -> Result<()> {
        match self.authz.write() {
            Ok(mut idx) => f(&mut idx),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
        self.forget_principals();
        self.announce(changes::AUTHZ).await
    }

    /// The principal a token names, which must still exist.
    pub(crate) async fn principal_of(&self, object_id: &str) -> Result<Arc<PrincipalRow>> {
        let cache = self.store.backend() == "sqlite";
        let mut generation = 0;
        if cache && let Ok(m) = self.principals.lock() {
            if let Some(p) = m.1.get(object_id) {
                return Ok(p.clone());
            }
            generation = m.0;
        }
        let p = Arc::new(
            self.store
                .principal(object_id)
                .await?
                .ok_or_else(|| Error::Unauthenticated { reason: "the token's principal no longer exists".into() })?,
        );
        if cache
            && let Ok(mut m) = self.principals.lock()
            && m.0 == generation
        {
            if m.1.len() >= 10_000 {
                m.1.clear();
            }
            m.1.insert(object_id.to_string(), p.clone());
        }
        Ok(p)
    }

    fn forget_principals(&self) {
        if let Ok(mut m) = self.principals.lock() {
            m.0 += 1;
            m.1.clear();
        }
    }

    /// Replaces the authorization index with one loaded from the store.
    pub(crate) async fn rebuild_authz(&self) -> Result<()> {
        let fresh = load_authz(&self.store, &self.subscription_id).await?;
        match self.authz.write() {
            Ok(mut idx) => *idx = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        self.forget_principals();
        Ok(())
    }

    /// Reads one stored document that `caller` may see: authorises `read_action` on `id`
    /// (a caller who may not read gets `missing()`, as if it did not exist), loads and decodes.
    pub(crate) async fn read_visible<T: DeserializeOwned>(
        &self,
        caller: &Caller,
        read_action: &str,
        id: &ResourceId,
        missing: impl Fn() -> Error,
    ) -> Result<(T, StoredResource)> {
        let row = self.read_visible_row(caller, read_action, id, missing).await?;
        Ok((decode(&row)?, Arc::unwrap_or_clone(row)))
    }

    /// [`Moat::read_visible`] without decoding the document.
    pub(crate) async fn read_visible_row(
        &self,
        caller: &Caller,
        read_action: &str,
        id: &ResourceId,
        missing: impl Fn() -> Error,
    ) -> Result<Arc<StoredResource>> {
        self.authorize_visible(caller, read_action, read_action, id, &missing).await?;
        self.store.get_resource_shared(&id.key()).await?.ok_or_else(&missing)
    }

    /// Refuses unknown subscriptions with 404 `SubscriptionNotFound`.
    pub(crate) fn check_subscription(&self, subscription_id: &str) -> Result<()> {
        if subscription_id.eq_ignore_ascii_case(&self.subscription_id) {
            Ok(())
        } else {
            Err(Error::not_found("SubscriptionNotFound", format!("The subscription '{subscription_id}' could not be found.")))
        }
    }

    /// Records a finished operation so that clients polling `Azure-AsyncOperation` see it.
    pub(crate) async fn record_operation(
        &self,
        tx: &mut WriteTx,
        caller: &Caller,
        kind: &str,
        target: &ResourceId,
        location: &str,
    ) -> Result<OperationRef> {
        let now = now_rfc3339();
        let id = uuid::Uuid::new_v4().to_string();
        tx.insert_operation(&OperationRow {
            id: id.clone(),
            subscription_id: target.subscription_id().to_string(),
            location: location.to_string(),
            kind: kind.to_string(),
            resource_id: target.to_string(),
            status: "Succeeded".into(),
            error: None,
            started_at: now.clone(),
            ended_at: Some(now),
            principal_id: caller.object_id.clone(),
        })
        .await?;
        Ok(OperationRef { id, location: location.to_string() })
    }
}

/// Loads built-in and custom roles and every assignment into an index.
async fn load_authz(store: &Store, subscription_id: &str) -> Result<AuthzIndex> {
    let mut roles = moat_policy::builtin_roles();
    roles.extend(roles::load_custom_roles(store, subscription_id).await?);
    let mut assignments = Vec::new();
    for r in store.all_assignments().await? {
        match ResourceId::parse(&r.scope) {
            Ok(scope) => {
                assignments.push(Assignment { id: r.id, principal_id: r.principal_id, role_definition_id: r.role_definition_id, scope })
            }
            Err(e) => tracing::warn!(assignment = %r.id, error = %e, "ignoring a role assignment with an unreadable scope"),
        }
    }
    Ok(AuthzIndex::new(roles, assignments))
}

async fn bootstrap(tx: &mut WriteTx, now: &str) -> Result<(String, String, String)> {
    let tenant_id = uuid::Uuid::new_v4().to_string();
    let subscription_id = uuid::Uuid::new_v4().to_string();
    let admin_object_id = uuid::Uuid::new_v4().to_string();
    tx.put_meta("tenant_id", &tenant_id).await?;
    tx.put_meta("subscription_id", &subscription_id).await?;
    tx.put_meta("admin_object_id", &admin_object_id).await?;
    tx.insert_principal(&PrincipalRow {
        object_id: admin_object_id.clone(),
        kind: "ServicePrincipal".into(),
        display_name: "moat-admin".into(),
        app_id: Some(uuid::Uuid::new_v4().to_string()),
        secret_hash: None,
        created_at: now.to_string(),
        upn: None,
        issuer: None,
        subject: None,
    })
    .await?;
    tx.insert_assignment(&AssignmentRow {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: admin_object_id.clone(),
        role_definition_id: moat_policy::OWNER_ROLE_ID.into(),
        scope: ResourceId::subscription(&subscription_id).to_string(),
        created_at: now.to_string(),
    })
    .await?;
    groups::insert_default_group(tx, &subscription_id, now).await?;
    tracing::info!(tenant = %tenant_id, subscription = %subscription_id, "bootstrapped a new installation");
    Ok((tenant_id, subscription_id, admin_object_id))
}
