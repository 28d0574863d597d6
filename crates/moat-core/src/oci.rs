//! The container registry plane: OCI Distribution v1.1 for each registry's container registry.
//! Requests are authenticated (a registry token from [`Moat::oci_token`], or a moat access
//! token), authorised through the one hook against the owning ML registry, admitted on the
//! `registry` plane, and only then touch content. Blob bytes share the content-addressed store
//! with asset files; a write is digest-verified and durable before its metadata commits.

use std::sync::LazyLock;

use moat_blob::BlobError;
use moat_policy::actions;
use moat_store::{OciBlobRow, OciManifestRow, OciUploadRow};
use moat_types::ResourceId;
use moat_types::oci::{self, Algorithm, OciDigest, Reference, ReferenceError};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::identity::Claims;
use crate::network::NetTarget;
use crate::{Caller, Error, Moat, Result, now_rfc3339};

/// The audience of registry tokens.
pub const AUDIENCE_OCI: &str = "api://moat/oci";
/// How long a registry token lives (never longer than the credential it was exchanged for).
pub const TOKEN_SECS: i64 = 3600;
/// The largest blob moat accepts.
pub const MAX_BLOB_BYTES: u64 = 1 << 40;

/// What a request does to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OciAction {
    Pull,
    Push,
    Delete,
}

impl OciAction {
    pub fn as_str(self) -> &'static str {
        match self {
            OciAction::Pull => "pull",
            OciAction::Push => "push",
            OciAction::Delete => "delete",
        }
    }

    /// The action checked on the ML registry (docs/OCI.md, "Rights").
    pub fn rbac_action(self) -> &'static str {
        match self {
            OciAction::Pull => actions::REGISTRY_ASSETS_READ,
            OciAction::Push => actions::REGISTRY_ASSETS_WRITE,
            OciAction::Delete => actions::CONTAINER_REGISTRY_ARTIFACTS_DELETE,
        }
    }

    const ALL: [OciAction; 3] = [OciAction::Pull, OciAction::Push, OciAction::Delete];
}

/// What a registry token grants on one repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAccess {
    pub acr: String,
    pub repo: String,
    pub actions: Vec<OciAction>,
}

/// A repository a request names, resolved to its container registry.
#[derive(Clone, Debug)]
pub struct Repo {
    /// The container registry (lowercase name).
    pub acr: String,
    /// The repository inside it.
    pub name: String,
    /// The repository as the client names it (with the container registry prefix in path form).
    pub shown: String,
    registry_id: ResourceId,
}

/// A credential on the OCI plane.
#[derive(Clone, Copy, Debug)]
pub enum OciCredential<'a> {
    /// `Authorization: Bearer …`: a registry token or a moat access token.
    Bearer(&'a str),
    /// The password of `Authorization: Basic …`: a moat access token.
    Password(&'a str),
}

/// An authenticated caller of the OCI plane, with the grant of its registry token if it used one.
#[derive(Clone, Debug)]
pub struct OciCaller {
    pub caller: Caller,
    grant: Option<Vec<TokenAccess>>,
}

/// A manifest, ready to serve.
#[derive(Clone, Debug)]
pub struct ManifestOut {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<String>,
    /// Absent for HEAD.
    pub body: Option<Vec<u8>>,
}

/// The outcome of a PATCH that does not continue where the upload is: the client should resume
/// from `length`.
pub const RANGE_CODE: &str = "BLOB_UPLOAD_INVALID";

/// A chunk that does not start where its upload session ends (`length` bytes so far).
fn out_of_order(start: u64, length: i64) -> Error {
    Error::Conflict {
        code: RANGE_CODE,
        message: format!("the chunk starts at byte {start}, but the upload has {length} bytes; send the next chunk from there"),
    }
}

/// Refuses a write whose container registry was deleted (with its registry) since the request
/// was admitted: its rows would outlive the registry, and their bytes never be collected.
async fn acr_still_there(tx: &mut moat_store::WriteTx, repo: &Repo) -> Result<()> {
    if tx.name_owner(crate::registries::NAMES_ACR, &repo.acr).await?.is_none() {
        return Err(name_unknown(&repo.shown));
    }
    Ok(())
}

fn name_unknown(shown: &str) -> Error {
    Error::not_found("NAME_UNKNOWN", format!("repository name not known to registry: '{shown}'"))
}

/// Refusal to delete what a committed environment version uses.
fn pinned(manifest: &str, asset_key: &str) -> Error {
    let asset = asset_key.split("/registries/").nth(1).unwrap_or(asset_key);
    Error::conflict(
        "DENIED",
        format!(
            "manifest {manifest} is pinned by environment version '{asset}': an environment's image never changes. \
             Delete that environment version first if the image must go."
        ),
    )
}

/// An environment's image in its registry's own container registry, pinned to a digest.
#[derive(Clone, Debug)]
pub(crate) struct PinnedImage {
    pub acr: String,
    pub repo: String,
    pub digest: String,
    /// `<login server>/<repo>@<digest>`.
    pub image: String,
}

/// A manifest reference, parsed. A malformed tag cannot name any manifest: on reads and deletes
/// that is `MANIFEST_UNKNOWN`; on a push (`writing`) the manifest is refused (`MANIFEST_INVALID`,
/// the spec having no tag code).
fn reference_of(s: &str, writing: bool) -> Result<Reference> {
    match Reference::parse(s) {
        Ok(r) => Ok(r),
        Err(ReferenceError::Digest(e)) => Err(Error::invalid("DIGEST_INVALID", "reference", e.to_string())),
        Err(e @ ReferenceError::Tag(_)) if writing => Err(Error::invalid("MANIFEST_INVALID", "reference", format!("tag invalid: {e}"))),
        Err(e @ ReferenceError::Tag(_)) => {
            Err(Error::not_found("MANIFEST_UNKNOWN", format!("manifest unknown: {e}, so no manifest has it")))
        }
    }
}

fn digest_of(s: &str) -> Result<OciDigest> {
    OciDigest::parse(s).map_err(|e| Error::invalid("DIGEST_INVALID", "digest", e.to_string()))
}

fn blob_error(e: BlobError) -> Error {
    match e {
        BlobError::DigestMismatch { expected, actual } => {
            Error::invalid("DIGEST_INVALID", "digest", format!("the content's digest is {actual}, not the {expected} the client named"))
        }
        BlobError::TooLarge { limit } => {
            Error::invalid("SIZE_INVALID", "body", format!("the content exceeds moat's limit of {limit} bytes"))
        }
        BlobError::UnknownUpload(id) => Error::not_found("BLOB_UPLOAD_UNKNOWN", format!("blob upload unknown to registry: {id}")),
        BlobError::Source(e) => Error::invalid("BLOB_UPLOAD_INVALID", "body", format!("reading the body failed: {e}")),
        other => Error::Internal(format!("byte store: {other}")),
    }
}

/// One lock per upload session (hashed into a fixed set), so that two requests on the same
/// session never append at once.
static UPLOAD_LOCKS: LazyLock<Vec<tokio::sync::Mutex<()>>> = LazyLock::new(|| (0..64).map(|_| tokio::sync::Mutex::new(())).collect());

fn upload_lock(id: &str) -> &'static tokio::sync::Mutex<()> {
    let h = id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    &UPLOAD_LOCKS[h % UPLOAD_LOCKS.len()]
}

fn peek_audience(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["aud"].as_str().map(str::to_string)
}

/// A `scope` parameter of the token endpoint: `repository:<name>:<action>[,<action>…]`.
fn parse_scope(scope: &str) -> Option<(&str, Vec<OciAction>)> {
    let rest = scope.strip_prefix("repository:")?;
    let (name, acts) = rest.rsplit_once(':')?;
    let mut out = Vec::new();
    for a in acts.split(',') {
        match a.trim() {
            "pull" => out.push(OciAction::Pull),
            "push" => out.push(OciAction::Push),
            "delete" => out.push(OciAction::Delete),
            "*" => out.extend(OciAction::ALL),
            _ => {}
        }
    }
    out.sort_by_key(|a| a.as_str());
    out.dedup();
    Some((name, out))
}

impl Moat {
    /// Authenticates an OCI credential.
    pub async fn oci_authenticate(&self, credential: OciCredential<'_>, client: &str, origin: &str) -> Result<OciCaller> {
        let token = match credential {
            OciCredential::Bearer(t) if peek_audience(t).as_deref() == Some(AUDIENCE_OCI) => {
                let claims = self.issuer.verify(t, &[AUDIENCE_OCI])?;
                let p = self.principal_of(&claims.oid).await?;
                let caller = Caller::of(&p, client, origin);
                return Ok(OciCaller { caller, grant: Some(claims.access.unwrap_or_default()) });
            }
            OciCredential::Bearer(t) | OciCredential::Password(t) => t,
        };
        let caller = self.authenticate(token, &[crate::AUDIENCE_MANAGEMENT, crate::AUDIENCE_ML], client, origin).await?;
        Ok(OciCaller { caller, grant: None })
    }

    /// Resolves the repository `name` of a request to `host` (without port): by the host when it
    /// is a container registry's login server or data endpoint, else by the name's first segment.
    pub fn oci_resolve(&self, host: Option<&str>, name: &str) -> Result<Repo> {
        let view = self.network();
        if !oci::valid_repository(name) {
            return Err(Error::invalid(
                "NAME_INVALID",
                "name",
                format!(
                    "invalid repository name '{}': lowercase letters and digits, separated by '.', '_', '__', '-' or '/', at most 255 characters",
                    name.chars().take(300).collect::<String>()
                ),
            ));
        }
        let by_host = host.map(|h| h.to_ascii_lowercase()).and_then(|h| view.acr_hosts.get(&h).cloned());
        let (acr, repo) = match by_host {
            Some(acr) => (acr, name.to_string()),
            None => match name.split_once('/') {
                Some((acr, rest)) => (acr.to_string(), rest.to_string()),
                None => {
                    return Err(Error::not_found(
                        "NAME_UNKNOWN",
                        format!(
                            "repository name not known to registry: '{name}'. On this host a repository starts with its container registry's name: <acr>/{name}"
                        ),
                    ));
                }
            },
        };
        let entry = view.acrs.get(&acr).ok_or_else(|| name_unknown(name))?;
        Ok(Repo { acr, name: repo, shown: name.to_string(), registry_id: ResourceId::parse(&entry.registry_id)? })
    }

    /// Decides whether `who` may do `action` on `repo`: the token's grant (if any), the roles as
    /// they are now (through the one hook), then network admission on the `registry` plane.
    pub async fn oci_check(&self, who: &OciCaller, repo: &Repo, action: OciAction) -> Result<()> {
        let hidden = || name_unknown(&repo.shown);
        let pull = OciAction::Pull.rbac_action();
        self.authorize_visible(&who.caller, action.rbac_action(), pull, &repo.registry_id, hidden).await.map_err(|e| match e {
            Error::Forbidden { action, scope, message, .. } => Error::Forbidden { code: "DENIED", action, scope, message },
            e => e,
        })?;
        if let Some(grant) = &who.grant
            && !grant.iter().any(|g| g.acr == repo.acr && g.repo == repo.name && g.actions.contains(&action))
        {
            return Err(Error::Unauthenticated {
                reason: format!(
                    "the registry token does not grant '{}' on '{}'; request a token with scope repository:{}:{}",
                    action.as_str(),
                    repo.shown,
                    repo.shown,
                    action.as_str()
                ),
            });
        }
        self.admit(Some(&who.caller), &who.caller.client, &who.caller.origin, NetTarget::ContainerRegistry(&repo.acr), hidden).await
    }

    /// The token endpoint: exchanges a moat access token for a registry token granting, of the
    /// `scopes` asked, what the caller's roles allow now. Returns the token and its lifetime.
    pub async fn oci_token(
        &self,
        credential: &str,
        client: &str,
        origin: &str,
        host: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, i64)> {
        let who = self.oci_authenticate(OciCredential::Password(credential), client, origin).await?;
        let mut access: Vec<TokenAccess> = Vec::new();
        for scope in scopes {
            for one in scope.split(' ') {
                let Some((name, wanted)) = parse_scope(one) else { continue };
                let Ok(repo) = self.oci_resolve(host, name) else { continue };
                let granted: Vec<OciAction> =
                    wanted.into_iter().filter(|a| self.decide(&who.caller, a.rbac_action(), &repo.registry_id).is_allowed()).collect();
                if let Some(e) = access.iter_mut().find(|e| e.acr == repo.acr && e.repo == repo.name) {
                    e.actions.extend(granted);
                    e.actions.sort_by_key(|a| a.as_str());
                    e.actions.dedup();
                } else {
                    access.push(TokenAccess { acr: repo.acr, repo: repo.name, actions: granted });
                }
            }
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // Never outlive the credential it was exchanged for (moat's own tokens say when).
        let source_exp = self.issuer.verify(credential, &[crate::AUDIENCE_MANAGEMENT, crate::AUDIENCE_ML]).map(|c| c.exp).ok();
        let exp = source_exp.map_or(now + TOKEN_SECS, |e| e.min(now + TOKEN_SECS));
        let claims = Claims {
            iss: self.issuer.issuer().to_string(),
            aud: AUDIENCE_OCI.into(),
            sub: who.caller.object_id.clone(),
            oid: who.caller.object_id.clone(),
            tid: self.tenant_id.clone(),
            iat: now,
            nbf: now,
            exp,
            idtyp: if who.caller.kind == "User" { "user".into() } else { "app".into() },
            appid: None,
            access: Some(access),
        };
        Ok((self.issuer.sign(&claims)?, exp - now))
    }

    async fn manifest_digest(&self, repo: &Repo, reference: &str) -> Result<String> {
        match reference_of(reference, false)? {
            Reference::Digest(d) => Ok(d.to_string()),
            Reference::Tag(t) => match self.store.oci_tag(&repo.acr, &repo.name, &t).await? {
                Some(d) => Ok(d),
                None => Err(self.missing(repo, "MANIFEST_UNKNOWN", format!("manifest unknown: no tag '{t}' in '{}'", repo.shown)).await?),
            },
        }
    }

    /// The error for something missing: `NAME_UNKNOWN` if the repository holds nothing at all.
    async fn missing(&self, repo: &Repo, code: &'static str, message: String) -> Result<Error> {
        if self.store.oci_repo_exists(&repo.acr, &repo.name).await? {
            Ok(Error::not_found(code, message))
        } else {
            Ok(name_unknown(&repo.shown))
        }
    }

    /// A manifest by tag or digest (with its body unless `head`).
    pub async fn oci_get_manifest(&self, repo: &Repo, reference: &str, head: bool) -> Result<ManifestOut> {
        let digest = self.manifest_digest(repo, reference).await?;
        let Some(row) = self.store.oci_manifest(&repo.acr, &repo.name, &digest).await? else {
            return Err(self.missing(repo, "MANIFEST_UNKNOWN", format!("manifest unknown: {digest} in '{}'", repo.shown)).await?);
        };
        let body = if head { None } else { Some(self.read_small(&row.sha256).await?) };
        Ok(ManifestOut { digest: row.digest, media_type: row.media_type, size: row.size as u64, subject: row.subject, body })
    }

    /// Opens stored bytes that metadata says exist.
    async fn open_bytes(&self, sha256: &str, start: u64) -> Result<moat_blob::BlobReader> {
        let d = moat_types::Digest::parse(sha256)?;
        let (f, _) = self
            .blobs
            .get_at(&d, start)
            .await
            .map_err(blob_error)?
            .ok_or_else(|| Error::Internal(format!("stored bytes {sha256} are missing")))?;
        Ok(f)
    }

    async fn read_small(&self, sha256: &str) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut f = self.open_bytes(sha256, 0).await?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).await.map_err(|e| Error::Internal(format!("reading {sha256}: {e}")))?;
        Ok(out)
    }

    /// Stores a manifest under a tag or its digest. Returns its digest and subject.
    pub async fn oci_put_manifest(
        &self,
        repo: &Repo,
        reference: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(String, Option<String>)> {
        if body.len() > oci::MAX_MANIFEST_BYTES {
            return Err(Error::invalid("SIZE_INVALID", "body", format!("a manifest may be at most {} bytes", oci::MAX_MANIFEST_BYTES)));
        }
        let info = oci::parse_manifest(content_type, body)
            .map_err(|e| Error::invalid("MANIFEST_INVALID", "body", format!("manifest invalid: {e}")))?;
        let (digest, tag) = match reference_of(reference, true)? {
            Reference::Digest(want) => {
                let got = OciDigest::of(want.algorithm(), body);
                if got != want {
                    return Err(Error::invalid("DIGEST_INVALID", "reference", format!("the manifest's digest is {got}, not {want}")));
                }
                (want, None)
            }
            Reference::Tag(t) => (OciDigest::of(Algorithm::Sha256, body), Some(t)),
        };
        // Every blob must be in the repository, but for foreign and non-distributable layers
        // with URLs, which clients fetch from there (Windows base layers).
        for d in info.blobs.iter().filter(|d| !d.is_external()) {
            if self.store.oci_blob(&repo.acr, &repo.name, &d.digest.to_string()).await?.is_none() {
                return Err(Error::invalid(
                    "MANIFEST_BLOB_UNKNOWN",
                    "body",
                    format!(
                        "blob unknown to registry: the manifest references {} which is not in '{}'; push it first",
                        d.digest, repo.shown
                    ),
                ));
            }
        }
        for d in &info.manifests {
            if self.store.oci_manifest(&repo.acr, &repo.name, &d.digest.to_string()).await?.is_none() {
                return Err(Error::invalid(
                    "MANIFEST_BLOB_UNKNOWN",
                    "body",
                    format!(
                        "manifest unknown to registry: the index references {} which is not in '{}'; push it first",
                        d.digest, repo.shown
                    ),
                ));
            }
        }
        let stored = self.blobs.put(body, None, oci::MAX_MANIFEST_BYTES as u64).await.map_err(blob_error)?;
        let now = now_rfc3339();
        let row = OciManifestRow {
            acr: repo.acr.clone(),
            repo: repo.name.clone(),
            digest: digest.to_string(),
            sha256: stored.digest.to_string(),
            media_type: info.media_type,
            size: body.len() as i64,
            subject: info.subject.as_ref().map(|s| s.digest.to_string()),
            artifact_type: info.artifact_type,
            annotations: info.annotations,
            created_at: now.clone(),
        };
        let mut tx = self.store.write().await?;
        acr_still_there(&mut tx, repo).await?;
        tx.oci_put_manifest(&row).await?;
        if let Some(t) = &tag {
            tx.oci_put_tag(&repo.acr, &repo.name, t, &row.digest, &now).await?;
        }
        tx.commit().await?;
        Ok((row.digest, row.subject))
    }

    /// Deletes a tag (the manifest stays), or a manifest by digest with every tag on it.
    pub async fn oci_delete_manifest(&self, repo: &Repo, reference: &str) -> Result<()> {
        let parsed = reference_of(reference, false)?;
        let mut tx = self.store.write().await?;
        let found = match parsed {
            Reference::Tag(t) => tx.oci_delete_tag(&repo.acr, &repo.name, &t).await?,
            Reference::Digest(d) => {
                if let Some(asset) = tx.oci_pinned_by(&repo.acr, &repo.name, &d.to_string()).await? {
                    return Err(pinned(&d.to_string(), &asset));
                }
                tx.oci_delete_manifest(&repo.acr, &repo.name, &d.to_string()).await?
            }
        };
        if !found {
            drop(tx);
            return Err(self.missing(repo, "MANIFEST_UNKNOWN", format!("manifest unknown: '{reference}' in '{}'", repo.shown)).await?);
        }
        tx.commit().await?;
        Ok(())
    }

    /// A blob of the repository (404 `BLOB_UNKNOWN` unless it was pushed or mounted there).
    pub async fn oci_blob(&self, repo: &Repo, digest: &str) -> Result<OciBlobRow> {
        let d = digest_of(digest)?;
        match self.store.oci_blob(&repo.acr, &repo.name, &d.to_string()).await? {
            Some(b) => Ok(b),
            None => Err(self.missing(repo, "BLOB_UNKNOWN", format!("blob unknown to registry: {d} in '{}'", repo.shown)).await?),
        }
    }

    /// Opens a blob's bytes at `start`.
    pub async fn oci_open_blob(&self, blob: &OciBlobRow, start: u64) -> Result<moat_blob::BlobReader> {
        self.open_bytes(&blob.sha256, start).await
    }

    /// Unlinks a blob from the repository.
    pub async fn oci_delete_blob(&self, repo: &Repo, digest: &str) -> Result<()> {
        let d = digest_of(digest)?;
        let mut tx = self.store.write().await?;
        // A layer of an image an environment pins stays: deleting it would break the image.
        for (manifest, asset) in tx.oci_pins_in(&repo.acr, &repo.name).await? {
            let Some(row) = tx.oci_manifest(&repo.acr, &repo.name, &manifest).await? else { continue };
            let body = self.read_small(&row.sha256).await?;
            if let Ok(info) = oci::parse_manifest(&row.media_type, &body)
                && info.blobs.iter().any(|b| b.digest == d)
            {
                return Err(pinned(&manifest, &asset));
            }
        }
        if !tx.oci_unlink_blob(&repo.acr, &repo.name, &d.to_string()).await? {
            drop(tx);
            return Err(self.missing(repo, "BLOB_UNKNOWN", format!("blob unknown to registry: {d} in '{}'", repo.shown)).await?);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Links stored bytes into the repository under the client's digest.
    async fn link(&self, repo: &Repo, digest: &OciDigest, stored: moat_blob::Stored, upload: Option<&str>) -> Result<()> {
        let mut tx = self.store.write().await?;
        acr_still_there(&mut tx, repo).await?;
        tx.oci_link_blob(&OciBlobRow {
            acr: repo.acr.clone(),
            repo: repo.name.clone(),
            digest: digest.to_string(),
            sha256: stored.digest.to_string(),
            size: stored.size as i64,
            created_at: now_rfc3339(),
        })
        .await?;
        if let Some(id) = upload {
            tx.oci_delete_upload(id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A whole blob in one request (`POST …/uploads/?digest=`, or `PUT` of an empty session):
    /// streamed into the store, verified, linked.
    pub async fn oci_put_blob<R: AsyncRead + Unpin>(&self, repo: &Repo, digest: &str, mut body: R, upload: Option<&str>) -> Result<String> {
        let d = digest_of(digest)?;
        let mut w = self.blobs.writer_for(d.algorithm(), MAX_BLOB_BYTES).await.map_err(blob_error)?;
        while w.read_from(&mut body).await.map_err(blob_error)? > 0 {}
        let stored = w.finish_checked(Some(&d)).await.map_err(blob_error)?;
        self.link(repo, &d, stored, upload).await?;
        if let Some(id) = upload {
            self.blobs.upload_discard(id).await.map_err(blob_error)?;
        }
        Ok(d.to_string())
    }

    /// Opens an upload session in the repository; returns its ID.
    pub async fn oci_start_upload(&self, repo: &Repo) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.blobs.upload_start(&id).await.map_err(blob_error)?;
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        if let Err(e) = acr_still_there(&mut tx, repo).await {
            drop(tx);
            let _ = self.blobs.upload_discard(&id).await;
            return Err(e);
        }
        tx.oci_insert_upload(&OciUploadRow {
            id: id.clone(),
            acr: repo.acr.clone(),
            repo: repo.name.clone(),
            length: 0,
            created_at: now.clone(),
            updated_at: now,
        })
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// An upload session of the repository.
    pub async fn oci_upload(&self, repo: &Repo, id: &str) -> Result<OciUploadRow> {
        match self.store.oci_upload(id).await? {
            Some(u) if u.acr == repo.acr && u.repo == repo.name => Ok(u),
            _ => Err(Error::not_found("BLOB_UPLOAD_UNKNOWN", format!("blob upload unknown to registry: {id} in '{}'", repo.shown))),
        }
    }

    /// Appends a chunk. `start` (from `Content-Range`) must be where the session ends; if not,
    /// the error is `RANGE_CODE` and the session's length is in the message's
    /// [`Moat::oci_upload`]. Returns the new length.
    pub async fn oci_patch_upload<R: AsyncRead + Unpin>(&self, repo: &Repo, id: &str, start: Option<u64>, body: R) -> Result<u64> {
        let _guard = upload_lock(id).lock().await;
        self.patch_locked(repo, id, start, body).await
    }

    /// [`Moat::oci_patch_upload`] with the session's lock already held.
    async fn patch_locked<R: AsyncRead + Unpin>(&self, repo: &Repo, id: &str, start: Option<u64>, body: R) -> Result<u64> {
        let u = self.oci_upload(repo, id).await?;
        if let Some(s) = start
            && s != u.length as u64
        {
            return Err(out_of_order(s, u.length));
        }
        let length = self.blobs.upload_append(id, u.length as u64, body, MAX_BLOB_BYTES).await.map_err(blob_error)?;
        let mut tx = self.store.write().await?;
        if !tx.oci_advance_upload(id, u.length, length as i64, &now_rfc3339()).await? {
            return Err(Error::Conflict {
                code: RANGE_CODE,
                message: "the upload changed meanwhile; ask for its status and resume".into(),
            });
        }
        tx.commit().await?;
        Ok(length)
    }

    /// Completes an upload (with an optional last chunk, which starts at `start` if its
    /// `Content-Range` says so), verifying `digest`. A last chunk that does not start where the
    /// session ends is refused as [`Moat::oci_patch_upload`] refuses it, and the session stays;
    /// a digest mismatch ends the session and stores nothing.
    pub async fn oci_finish_upload<R: AsyncRead + Unpin>(
        &self,
        repo: &Repo,
        id: &str,
        digest: &str,
        last: Option<R>,
        start: Option<u64>,
    ) -> Result<String> {
        let d = digest_of(digest)?;
        // One lock for the whole completion: no chunk can land between the last one and the end.
        let _guard = upload_lock(id).lock().await;
        let u = self.oci_upload(repo, id).await?;
        if last.is_some()
            && let Some(s) = start
            && s != u.length as u64
        {
            return Err(out_of_order(s, u.length));
        }
        if u.length == 0
            && let Some(body) = last
        {
            // Nothing staged: the body is the whole blob, hashed as it streams.
            return match self.oci_put_blob(repo, digest, body, Some(id)).await {
                Err(e) => {
                    self.end_upload(id).await?;
                    Err(e)
                }
                ok => ok,
            };
        }
        let length = match last {
            Some(body) => self.patch_locked(repo, id, None, body).await?,
            None => u.length as u64,
        };
        let stored = match self.blobs.upload_finish(id, length, &d).await {
            Ok(s) => s,
            Err(e) => {
                self.end_upload(id).await?;
                return Err(blob_error(e));
            }
        };
        self.link(repo, &d, stored, Some(id)).await?;
        Ok(d.to_string())
    }

    async fn end_upload(&self, id: &str) -> Result<()> {
        let mut tx = self.store.write().await?;
        tx.oci_delete_upload(id).await?;
        tx.commit().await?;
        self.blobs.upload_discard(id).await.map_err(blob_error)?;
        Ok(())
    }

    /// Cancels an upload session.
    pub async fn oci_cancel_upload(&self, repo: &Repo, id: &str) -> Result<()> {
        let _guard = upload_lock(id).lock().await;
        self.oci_upload(repo, id).await?;
        self.end_upload(id).await
    }

    /// Cross-repository mount: links `digest` from `from` (or, without it, from any repository
    /// of the same container registry) if the caller may pull there. False when there is
    /// nothing to mount (the client then uploads), also for a `mount` that is not a digest:
    /// the spec has the registry fall back to an upload session whenever it cannot mount.
    pub async fn oci_mount(&self, who: &OciCaller, repo: &Repo, host: Option<&str>, digest: &str, from: Option<&str>) -> Result<bool> {
        let Ok(d) = digest_of(digest) else { return Ok(false) };
        let source = match from {
            Some(f) => {
                let Ok(src) = self.oci_resolve(host, f) else { return Ok(false) };
                if src.acr != repo.acr || !self.decide(&who.caller, OciAction::Pull.rbac_action(), &src.registry_id).is_allowed() {
                    return Ok(false);
                }
                self.store.oci_blob(&src.acr, &src.name, &d.to_string()).await?
            }
            None => self.store.oci_blob_anywhere(&repo.acr, &d.to_string()).await?,
        };
        let Some(b) = source else { return Ok(false) };
        let mut tx = self.store.write().await?;
        acr_still_there(&mut tx, repo).await?;
        // Still there, under the lock: a delete meanwhile would leave the new link to bytes
        // that nothing else refers to, and a garbage collection could take them.
        if tx.oci_blob(&b.acr, &b.repo, &b.digest).await?.is_none() {
            return Ok(false);
        }
        tx.oci_link_blob(&OciBlobRow { repo: repo.name.clone(), created_at: now_rfc3339(), ..b }).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Tags in lexical order after `last`, at most `n`; and whether more follow.
    pub async fn oci_tags(&self, repo: &Repo, n: Option<usize>, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        if !self.store.oci_repo_exists(&repo.acr, &repo.name).await? {
            return Err(name_unknown(&repo.shown));
        }
        let n = n.unwrap_or(100_000).min(100_000);
        let mut tags = self.store.oci_tags(&repo.acr, &repo.name, last, n as i64 + 1).await?;
        let more = tags.len() > n;
        tags.truncate(n);
        Ok((tags, more))
    }

    /// The manifests whose subject is `digest`, optionally of one artifact type.
    pub async fn oci_referrers(&self, repo: &Repo, digest: &str, artifact_type: Option<&str>) -> Result<Vec<OciManifestRow>> {
        let d = digest_of(digest)?;
        let mut rows = self.store.oci_referrers(&repo.acr, &repo.name, &d.to_string()).await?;
        if let Some(t) = artifact_type {
            rows.retain(|r| r.artifact_type.as_deref() == Some(t));
        }
        Ok(rows)
    }

    /// Resolves an environment's `image`. One that names a container registry of this moat (by
    /// its login server, or as `<host>/<acr>/<repo>`) must be in the registry's own (`own_acr`)
    /// and exist; it is pinned to its manifest digest. Anything else (a public image) is kept as
    /// given.
    pub(crate) async fn resolve_environment_image(&self, caller: &Caller, own_acr: &str, image: &str) -> Result<Option<PinnedImage>> {
        let view = self.network();
        let Some((host, rest)) = image.split_once('/') else { return Ok(None) };
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Ok(None);
        }
        let bare = match host.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        }
        .to_ascii_lowercase();
        let (acr, reference) = match view.acr_hosts.get(&bare) {
            Some(acr) => (acr.clone(), rest),
            None => match rest.split_once('/') {
                Some((first, more)) if view.acrs.contains_key(&first.to_ascii_lowercase()) => (first.to_ascii_lowercase(), more),
                _ => return Ok(None),
            },
        };
        let bad = |code: &'static str, message: String| Error::invalid(code, "properties.image", message);
        if acr != own_acr.to_ascii_lowercase() {
            return Err(bad(
                "ImageNotInRegistry",
                format!(
                    "image '{image}' is in container registry '{acr}', not in this registry's ('{own_acr}'); copy it there first \
                     (e.g. skopeo copy) so that the environment cannot lose it"
                ),
            ));
        }
        self.admit_for_pin(caller, &acr).await?;
        let (repo, tag_or_digest) = match reference.split_once('@') {
            Some((r, d)) => (r, d.to_string()),
            None => match reference.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, t.to_string()),
                _ => (reference, "latest".to_string()),
            },
        };
        if !oci::valid_repository(repo) {
            return Err(bad("InvalidImage", format!("'{repo}' in image '{image}' is not a repository name")));
        }
        let digest = match Reference::parse(&tag_or_digest) {
            Ok(Reference::Digest(d)) => d.to_string(),
            Ok(Reference::Tag(t)) => self
                .store
                .oci_tag(&acr, repo, &t)
                .await?
                .ok_or_else(|| bad("ImageNotFound", format!("image '{image}': no tag '{t}' in repository '{repo}'; push it first")))?,
            Err(e) => return Err(bad("InvalidImage", format!("image '{image}': {e}"))),
        };
        if self.store.oci_manifest(&acr, repo, &digest).await?.is_none() {
            return Err(bad("ImageNotFound", format!("image '{image}': no manifest {digest} in repository '{repo}'; push it first")));
        }
        let image = format!("{}/{repo}@{digest}", self.login_server(&acr));
        Ok(Some(PinnedImage { acr, repo: repo.to_string(), digest, image }))
    }

    /// Pinning reads the container registry on the caller's behalf, so the caller must be one
    /// that could reach it: from the public network only if its public access allows; through
    /// a private endpoint only if that endpoint's network also has an approved endpoint to the
    /// container registry (group `registry`). Otherwise a closed container registry's tags
    /// could be probed from outside.
    async fn admit_for_pin(&self, caller: &Caller, acr: &str) -> Result<()> {
        let view = self.network();
        let acr_key = view.acrs.get(acr).map(|a| a.key.clone()).unwrap_or_default();
        let origin = match view.endpoints().iter().find(|e| e.key == caller.origin) {
            None => caller.origin.clone(),
            Some(via) => view
                .endpoints()
                .iter()
                .find(|e| {
                    e.vnet_id.eq_ignore_ascii_case(&via.vnet_id)
                        && e.target_key == acr_key
                        && e.plane == moat_policy::admission::Plane::Registry
                })
                .map_or_else(|| caller.origin.clone(), |e| e.key.clone()),
        };
        self.admit(Some(caller), &caller.client, &origin, NetTarget::ContainerRegistry(acr), || {
            Error::invalid("ImageNotFound", "properties.image", format!("container registry '{acr}' is not reachable"))
        })
        .await
    }

    /// Ends upload sessions idle for longer than `ttl` (OCI upload sessions, and blocks staged
    /// on the blob plane but never committed, as Azure discards those after 7 days). Returns
    /// (sessions, blocks) removed.
    pub async fn expire_uploads(&self, ttl: std::time::Duration) -> Result<(usize, u64)> {
        let cutoff = time::OffsetDateTime::now_utc() - ttl;
        let cutoff = cutoff.format(&time::format_description::well_known::Rfc3339).map_err(|e| Error::Internal(e.to_string()))?;
        let mut sessions = 0;
        loop {
            let idle = self.store.oci_uploads_idle_since(&cutoff, 500).await?;
            if idle.is_empty() {
                break;
            }
            for u in idle {
                let _guard = upload_lock(&u.id).lock().await;
                self.end_upload(&u.id).await?;
                sessions += 1;
            }
        }
        let mut tx = self.store.write().await?;
        let blocks = tx.discard_blocks_staged_before(&cutoff).await?;
        tx.commit().await?;
        // Staging files no block is in any more (those of the blocks just discarded, or left
        // by a failed removal) go once nothing has written them for an hour; the staging state
        // of blobs whose blocks expired goes with them.
        self.staging.forget_idle(ttl);
        if let Err(e) = self.expire_pending_uploads(&cutoff).await {
            tracing::warn!(error = %e, "expiring upload locations never committed failed; the next round retries");
        }
        let files = self.sweep_staging(std::time::Duration::from_secs(3600)).await?;
        if files > 0 {
            tracing::info!(files, "removed staging files no staged block is in");
        }
        if sessions > 0 || blocks > 0 {
            tracing::info!(sessions, blocks, "expired idle uploads");
        }
        Ok((sessions, blocks))
    }

    /// After a restart: removes upload files that no session row acknowledges (a crash between
    /// creating one and committing its row).
    pub(crate) async fn oci_recover(&self) -> Result<()> {
        for id in self.blobs.upload_ids().await.map_err(blob_error)? {
            if self.store.oci_upload(&id).await?.is_none() {
                self.blobs.upload_discard(&id).await.map_err(blob_error)?;
            }
        }
        // Staging files no staged block is in (a crash before a block was recorded, or after
        // its blob was committed): nothing writes them before this node serves.
        let files = self.sweep_staging(std::time::Duration::ZERO).await?;
        if files > 0 {
            tracing::info!(files, "removed staging files left by an interrupted upload");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_like_the_token_spec() {
        assert_eq!(parse_scope("repository:a/b:pull,push"), Some(("a/b", vec![OciAction::Pull, OciAction::Push])));
        assert_eq!(parse_scope("repository:a:*").map(|s| s.1.len()), Some(3));
        assert_eq!(parse_scope("repository:a:frobnicate"), Some(("a", vec![])));
        assert_eq!(parse_scope("registry:catalog:*"), None);
    }
}
