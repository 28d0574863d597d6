//! The blob plane of the registries' storage accounts: the subset of the Azure Blob REST API
//! that the azure-storage-blob SDK uses to upload and download, authorised by shared access
//! signatures that moat signs. Bytes go to the content-addressed store (equal bytes once);
//! a blob is a name pointing at a digest, visible only once its bytes are durable.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use moat_blob::BlobError;
use moat_store::{BlobRow, BlockRow};
use moat_types::Digest;
use moat_types::arm::ServiceSasRequest;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncRead;

use crate::registries::{NAMES_STORAGE, RegistryDoc, StorageAccountDoc};
use crate::sas::{self, Grant, Need, Permissions, SasError};
use crate::staging::BlockAt;
use crate::{Caller, Error, Moat, Result, audit, decode, now_rfc3339, prehash};
use sha2::Digest as _;

/// Largest single Put Blob or Put Block body (Azure allows 5000 MiB per block).
pub const MAX_PUT_BYTES: u64 = 5000 * 1024 * 1024;
/// Most blocks in one block list (Azure's limit).
pub use moat_types::assets::MAX_BLOCKS;
/// Longest lifetime of a SAS moat signs.
pub const MAX_SAS_SECS: i64 = 7 * 86400;

/// A request on the blob plane, after parsing: the target and its SAS.
#[derive(Clone, Debug)]
pub struct BlobTarget<'a> {
    pub account: &'a str,
    pub container: &'a str,
    pub blob: Option<&'a str>,
    /// Decoded query parameters (the SAS among them).
    pub query: &'a [(String, String)],
    pub client: &'a str,
    pub origin: &'a str,
    /// The request's conditional headers.
    pub conditions: &'a BlobConditions,
}

/// What a write sets besides the bytes, each replaced whole (as Azure's Put Blob and Put
/// Block List do): the content type, and the user-defined metadata (`x-ms-meta-*`) as a JSON
/// object of name to value.
#[derive(Clone, Debug, Default)]
pub struct BlobProps {
    pub content_type: Option<String>,
    pub metadata: Option<String>,
}

/// Azure Blob's conditional headers (`If-Match`, `If-None-Match`, `If-Modified-Since`,
/// `If-Unmodified-Since`). A write or delete is checked against the blob as it is when the
/// change commits, under the database's write lock; a read, against the blob it serves.
#[derive(Clone, Debug, Default)]
pub struct BlobConditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<OffsetDateTime>,
    pub if_unmodified_since: Option<OffsetDateTime>,
}

/// What a read's conditions decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadCondition {
    Serve,
    /// `304 Not Modified`: the client's copy is current.
    NotModified,
}

impl BlobConditions {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none() && self.if_modified_since.is_none() && self.if_unmodified_since.is_none()
    }

    /// Whether the ETag list `want` (`*`, or ETags with or without quotes, comma-separated)
    /// names `etag`. `If-Match` compares strongly (a weak `W/` tag never matches), `If-None-Match`
    /// weakly (RFC 9110, 13.1).
    fn names(want: &str, etag: &str, weak: bool) -> bool {
        want.split(',').map(str::trim).any(|w| {
            let w = if weak { w.trim_start_matches("W/") } else { w };
            w == "*" || w.trim_matches('"') == etag.trim_matches('"') && !w.starts_with("W/")
        })
    }

    /// `If-Modified-Since`, unless `If-None-Match` is there (which then decides alone, as
    /// RFC 9110 has it: the date has whole seconds only) or the date is still to come.
    fn modified_since(&self) -> Option<OffsetDateTime> {
        self.if_modified_since.filter(|since| self.if_none_match.is_none() && *since <= OffsetDateTime::now_utc())
    }

    /// `If-Unmodified-Since`, unless `If-Match` is there.
    fn unmodified_since(&self) -> Option<OffsetDateTime> {
        self.if_unmodified_since.filter(|_| self.if_match.is_none())
    }

    /// The blob's last modification, to the second (HTTP dates have no finer resolution).
    fn modified(b: &BlobRow) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&b.updated_at, &Rfc3339).ok().and_then(|t| t.replace_nanosecond(0).ok())
    }

    fn not_met() -> Error {
        Error::PreconditionFailed { message: "The condition specified using HTTP conditional header(s) is not met.".into() }
    }

    /// Each condition's outcome against the blob that is `current` (`None`: there is none).
    fn outcome(&self, current: Option<&BlobRow>) -> Outcome {
        let modified = current.and_then(Self::modified);
        Outcome {
            match_fails: self.if_match.as_deref().is_some_and(|want| !current.is_some_and(|b| Self::names(want, &b.etag, false))),
            none_match_names: self.if_none_match.as_deref().is_some_and(|want| current.is_some_and(|b| Self::names(want, &b.etag, true))),
            not_modified_since: self.modified_since().is_some_and(|since| modified.is_some_and(|m| m <= since)),
            modified_since_unmodified: self.unmodified_since().is_some_and(|since| modified.is_some_and(|m| m > since)),
        }
    }

    /// For a write or a delete of a blob that is `current` (`None`: there is none). `creates`:
    /// the request writes the blob, where `If-None-Match: *` on an existing one is Azure's
    /// `409 BlobAlreadyExists` (what the SDKs send for an upload that must not overwrite).
    pub fn check_write(&self, current: Option<&BlobRow>, creates: bool) -> Result<()> {
        let o = self.outcome(current);
        if o.match_fails {
            return Err(Self::not_met());
        }
        if o.none_match_names {
            let star = self.if_none_match.as_deref().is_some_and(|w| w.trim() == "*");
            return Err(if creates && star {
                Error::conflict("BlobAlreadyExists", "The specified blob already exists.")
            } else {
                Self::not_met()
            });
        }
        if o.not_modified_since || o.modified_since_unmodified {
            return Err(Self::not_met());
        }
        Ok(())
    }

    /// For a read of blob `b`: `If-Match` and `If-Unmodified-Since` that fail are `412`;
    /// `If-None-Match` naming it, or `If-Modified-Since` it was not modified after, `304`.
    pub fn check_read(&self, b: &BlobRow) -> Result<ReadCondition> {
        let o = self.outcome(Some(b));
        if o.match_fails || o.modified_since_unmodified {
            return Err(Self::not_met());
        }
        if o.none_match_names || o.not_modified_since {
            return Ok(ReadCondition::NotModified);
        }
        Ok(ReadCondition::Serve)
    }
}

/// How each of a request's conditions fared (see [`BlobConditions::check_write`] and
/// [`BlobConditions::check_read`], which weigh them for writes and reads).
struct Outcome {
    /// `If-Match` names another ETag, or there is no blob.
    match_fails: bool,
    /// `If-None-Match` names the blob's ETag (or is `*` and there is a blob).
    none_match_names: bool,
    /// `If-Modified-Since` (where it counts) is not before the last change.
    not_modified_since: bool,
    /// `If-Unmodified-Since` (where it counts) is before the last change.
    modified_since_unmodified: bool,
}

/// What a list returns.
#[derive(Clone, Debug)]
pub struct BlobListing {
    pub blobs: Vec<BlobRow>,
    pub prefixes: Vec<String>,
    pub next_marker: Option<String>,
}

/// Azure container naming: 3–63 of lowercase letters, digits and single hyphens, starting and
/// ending with a letter or digit.
pub fn valid_container_name(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--")
}

/// Blob names: 1–1024 characters, no empty, `.` or `..` path segment, no control characters.
pub fn valid_blob_name(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 1024
        && !b.chars().any(|c| c.is_control() || c == '\\')
        && b.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// How long a collector's mark on content it is deleting from an object store stands. Past it,
/// the collector is taken to have stopped, and writers and collectors go on: a collector starts
/// no delete past half of it, and one started before is over by then (the object store client
/// gives up within three and a half minutes).
const MARK_ABANDONED_MS: i64 = 10 * 60 * 1000;
/// Objects an object store's collection marks in one transaction, and deletes at once: a
/// delete is a round trip or two to the store (~3 ms on Azurite), a transaction a round trip and
/// an fsync.
const GC_BATCH: usize = 256;
const GC_CONCURRENCY: usize = 16;
/// A writer's wait between claims of content a collector is deleting.
const CLAIM_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Claims each content in the database before an object store is asked for it (see
/// [`Moat::collect_remote_garbage`]).
pub(crate) struct DbClaimer {
    pub store: moat_store::Store,
}

impl moat_blob::Claimer for DbClaimer {
    fn claim<'a>(
        &'a self,
        d: &'a Digest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<(), BlobError>> + Send + 'a>> {
        Box::pin(async move {
            let key = d.to_string();
            let started = std::time::Instant::now();
            loop {
                let now = unix_ms(std::time::SystemTime::now());
                let claimed = async {
                    let mut tx = self.store.write().await?;
                    let claimed = tx.claim_content(&key, now, now - MARK_ABANDONED_MS).await?;
                    tx.commit().await?;
                    Ok::<_, moat_store::StoreError>(claimed)
                }
                .await
                .map_err(|e| BlobError::Store(format!("claiming {key} in the database: {e}")))?;
                if claimed {
                    return Ok(());
                }
                // A collector is deleting it; past MARK_ABANDONED the claim takes its place, so
                // this ends. Anything longer is a database that went wrong.
                if started.elapsed().as_millis() as i64 > 2 * MARK_ABANDONED_MS {
                    return Err(BlobError::Store(format!("{key} stayed marked for deletion by a garbage collection for too long")));
                }
                tokio::time::sleep(CLAIM_RETRY).await;
            }
        })
    }
}

/// A request body that must hash to the MD5 its `Content-MD5` header announced (what Azure's
/// SDKs send with `validate_content=True`). The check runs when the announced length has been
/// read, or at the end of a body of unknown length, and a mismatch fails that read: the body
/// never counts as complete, so nothing of it is stored or recorded.
pub struct Md5Checked<R> {
    inner: R,
    md5: md5::Md5,
    /// The announced MD5; without one, the body passes through unhashed.
    want: Option<[u8; 16]>,
    /// `Content-Length`, when the request has one.
    len: Option<u64>,
    seen: u64,
    checked: bool,
}

/// The error a mismatched [`Md5Checked`] body fails with (inside an `io::Error`).
#[derive(Debug)]
pub struct ContentMd5Mismatch {
    pub announced: String,
    pub actual: String,
}

impl std::fmt::Display for ContentMd5Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the body's MD5 is {}, but Content-MD5 announced {}", self.actual, self.announced)
    }
}

impl std::error::Error for ContentMd5Mismatch {}

impl<R> Md5Checked<R> {
    pub fn new(inner: R, want: Option<[u8; 16]>, len: Option<u64>) -> Self {
        use md5::Digest as _;
        Md5Checked { inner, md5: md5::Md5::new(), want, len, seen: 0, checked: false }
    }
}

/// The base64 MD5 of `bytes`, as `Content-MD5` carries it.
pub fn content_md5(bytes: &[u8]) -> String {
    use md5::Digest as _;
    STANDARD.encode(md5::Md5::digest(bytes))
}

impl<R: AsyncRead + Unpin> AsyncRead for Md5Checked<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use md5::Digest as _;
        let before = buf.filled().len();
        // A read with no room says nothing about the body's end.
        let room = buf.remaining() > 0;
        let this = &mut *self;
        std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(want) = this.want else { return std::task::Poll::Ready(Ok(())) };
        let new = &buf.filled()[before..];
        this.md5.update(new);
        this.seen += new.len() as u64;
        if !this.checked && room && (new.is_empty() || this.len == Some(this.seen)) {
            this.checked = true;
            let got: [u8; 16] = this.md5.finalize_reset().into();
            if got != want {
                let e = ContentMd5Mismatch { announced: STANDARD.encode(want), actual: STANDARD.encode(got) };
                return std::task::Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
            }
        }
        std::task::Poll::Ready(Ok(()))
    }
}

fn blob_error(e: BlobError) -> Error {
    match e {
        BlobError::Source(e) if e.get_ref().is_some_and(|i| i.is::<ContentMd5Mismatch>()) => Error::invalid(
            "Md5Mismatch",
            "Content-MD5",
            format!(
                "The MD5 value specified in the request did not match the MD5 value calculated by the server: {e}. Nothing was stored."
            ),
        ),
        BlobError::TooLarge { limit } => Error::invalid("RequestBodyTooLarge", "body", format!("The body is larger than {limit} bytes.")),
        BlobError::DigestMismatch { expected, actual } => {
            Error::invalid("Md5Mismatch", "body", format!("The content's digest is {actual}, not the announced {expected}."))
        }
        BlobError::UnknownUpload(id) => Error::not_found("UploadNotFound", format!("No upload {id} is in progress.")),
        BlobError::Source(e) => {
            Error::invalid("InvalidInput", "body", format!("Reading the request body failed: {e}. Nothing was stored."))
        }
        other => Error::Internal(format!("byte store: {other}")),
    }
}

/// Records a staged block, unless its container was sealed or its account deleted meanwhile.
async fn record_block(store: &moat_store::Store, row: &BlockRow) -> Result<()> {
    let mut tx = store.write().await?;
    // Checked again under the lock: a commit may have sealed the container meanwhile.
    let state = tx.container_sealed(&row.account, &row.container).await?;
    if state == Some(true) {
        return Err(sealed(&row.container));
    }
    still_there(&mut tx, &row.account).await?;
    if state.is_none() {
        tx.ensure_container(&row.account, &row.container, &now_rfc3339()).await?;
    }
    // Checked under the lock, so that two blocks staged at once cannot both slip by.
    if let Some(other) =
        tx.a_staged_block_id(&row.account, &row.container, &row.name).await?.filter(|other| other.len() != row.block_id.len())
    {
        return Err(Error::invalid(
            "InvalidBlobOrBlock",
            "blockid",
            format!(
                "All the block IDs of a blob have one length: '{}' has {} characters, but '{other}', staged before, has {}. Use IDs of one length, or commit or delete the blob first.",
                row.block_id,
                row.block_id.len(),
                other.len()
            ),
        ));
    }
    tx.put_block(row).await?;
    tx.commit().await?;
    Ok(())
}

/// The 404 for a container that does not exist (Azure's ContainerNotFound). Containers come into
/// being with their first write (an upload location is one, made by startPendingUpload).
fn container_missing(t: &BlobTarget<'_>) -> Error {
    Error::not_found("ContainerNotFound", format!("The container '{}' does not exist in storage account '{}'.", t.container, t.account))
}

/// The staging files (see staging.rs) that blocks at `places` (their `digest` column) are in.
fn staged_in(places: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut files: Vec<String> = places
        .into_iter()
        .filter_map(|p| match BlockAt::parse(&p) {
            Some(BlockAt::Staged { file, .. }) => Some(file),
            _ => None,
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// Refuses a write whose storage account was deleted (with its registry) since the request's
/// SAS was checked: its rows would outlive the account, and their bytes never be collected.
pub(crate) async fn still_there(tx: &mut moat_store::WriteTx, account: &str) -> Result<()> {
    if tx.name_owner(NAMES_STORAGE, account).await?.is_none() {
        return Err(Error::not_found("ResourceNotFound", format!("The storage account '{account}' does not exist.")));
    }
    Ok(())
}

/// The container of a change to a blob in it, as the write transaction sees it: there, and not
/// sealed by a commit.
async fn container_open(tx: &mut moat_store::WriteTx, t: &BlobTarget<'_>) -> Result<()> {
    match tx.container_sealed(t.account, t.container).await? {
        Some(true) => Err(sealed(t.container)),
        Some(false) => Ok(()),
        None => Err(container_missing(t)),
    }
}

fn sealed(container: &str) -> Error {
    Error::conflict(
        "BlobImmutableDueToPolicy",
        format!("Container '{container}' belongs to a committed asset version; its blobs cannot change."),
    )
}

fn data_action(need: Need) -> &'static str {
    match need {
        Need::Read => "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        Need::Write => "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        Need::Delete => "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
        Need::List => "Microsoft.Storage/storageAccounts/blobServices/containers/read",
    }
}

fn new_blob_etag() -> String {
    format!("\"0x{}\"", &uuid::Uuid::new_v4().simple().to_string()[..15].to_ascii_uppercase())
}

impl Moat {
    /// The storage account document (and its registry) behind an account name.
    async fn storage_account(&self, account: &str) -> Result<Option<(StorageAccountDoc, RegistryDoc)>> {
        let Some(owner) = self.store.name_owner(NAMES_STORAGE, account).await? else { return Ok(None) };
        let Some(reg_row) = self.store.get_resource(&owner).await? else { return Ok(None) };
        let reg: RegistryDoc = decode(&reg_row)?;
        let id = self.storage_id(&reg.managed_group, account);
        let Some(row) = self.store.get_resource(&id.key()).await? else { return Ok(None) };
        Ok(Some((decode(&row)?, reg)))
    }

    /// Verifies the SAS of a blob-plane request and writes the decision to the activity log.
    async fn blob_grant(&self, t: &BlobTarget<'_>, need: Need) -> Result<Grant> {
        let missing = || Error::not_found("ResourceNotFound", format!("The storage account '{}' does not exist.", t.account));
        let (sa, _reg) = self.storage_account(t.account).await?.ok_or_else(missing)?;
        let key = sa.sas_key()?;
        let resource = match t.blob {
            Some(b) => format!("/blob/{}/{}/{b}", t.account, t.container),
            None => format!("/blob/{}/{}", t.account, t.container),
        };
        let outcome = sas::verify(&key, t.query, t.account, t.container, t.blob, need, OffsetDateTime::now_utc());
        let refused = |e: SasError, resource: String| {
            let code = match e {
                SasError::Permission(_) => "AuthorizationPermissionMismatch",
                SasError::WrongResource { .. } => "AuthorizationResourceTypeMismatch",
                _ => "AuthenticationFailed",
            };
            Error::Forbidden {
                code,
                action: data_action(need).into(),
                scope: resource,
                message: format!("Server failed to authenticate the request: {e}."),
            }
        };
        // Refusals of anonymous requests are rate-limited in the log, like failed sign-ins.
        if outcome.is_err() && !self.refusals.admit(t.client).0 {
            return outcome.map_err(|e| refused(e, resource));
        }
        let (result, rule) = match &outcome {
            Ok(g) => (
                "allowed",
                format!("shared access signature for {resource} with permissions {} until {}", g.permissions.letters(), g.expiry),
            ),
            Err(e) => ("denied", e.to_string()),
        };
        let who = Some("shared access signature");
        self.audit.record(audit::anonymous_entry(who, t.client, t.origin, data_action(need), &resource, result, rule)).await?;
        let grant = outcome.map_err(|e| refused(e, resource))?;
        // The signature proved the caller holds the account's key; now the network decides.
        self.admit(None, t.client, t.origin, crate::network::NetTarget::StorageAccount(t.account), missing).await?;
        Ok(grant)
    }

    fn check_names(t: &BlobTarget<'_>) -> Result<()> {
        if !valid_container_name(t.container) {
            return Err(Error::invalid("InvalidResourceName", "container", format!("'{}' is not a valid container name.", t.container)));
        }
        if let Some(b) = t.blob
            && !valid_blob_name(b)
        {
            return Err(Error::invalid(
                "InvalidResourceName",
                "blob",
                format!("'{b}' is not a valid blob name: no empty, '.' or '..' segments, at most 1024 characters."),
            ));
        }
        Ok(())
    }

    /// The request's conditions against the blob as it is now, before its body is read, so
    /// that an upload bound to fail is refused at once (checked again when it commits).
    async fn conditions_hold(&self, t: &BlobTarget<'_>) -> Result<()> {
        if t.conditions.is_empty() {
            return Ok(());
        }
        let current = self.store.blob(t.account, t.container, t.blob.unwrap_or_default()).await?;
        t.conditions.check_write(current.as_ref(), true)
    }

    async fn writable(&self, t: &BlobTarget<'_>) -> Result<()> {
        if self.store.container_sealed(t.account, t.container).await? == Some(true) {
            return Err(Error::conflict(
                "BlobImmutableDueToPolicy",
                format!("Container '{}' belongs to a committed asset version; its blobs cannot change.", t.container),
            ));
        }
        Ok(())
    }

    async fn commit_blob(
        &self,
        t: &BlobTarget<'_>,
        digest: Digest,
        size: u64,
        parts: Option<Vec<(String, u64)>>,
        props: BlobProps,
    ) -> Result<BlobRow> {
        let blob = t.blob.unwrap_or_default();
        let now = now_rfc3339();
        let mut tx = self.store.write().await?;
        let state = tx.container_sealed(t.account, t.container).await?;
        if state == Some(true) {
            return Err(sealed(t.container));
        }
        still_there(&mut tx, t.account).await?;
        if state.is_none() {
            tx.ensure_container(t.account, t.container, &now).await?;
        }
        if !t.conditions.is_empty() {
            let current = tx.blob(t.account, t.container, blob).await?;
            t.conditions.check_write(current.as_ref(), true)?;
        }
        let mut row = BlobRow {
            account: t.account.into(),
            container: t.container.into(),
            name: blob.into(),
            digest: digest.to_string(),
            size: size as i64,
            etag: new_blob_etag(),
            content_type: props.content_type,
            created_at: now.clone(),
            updated_at: now,
            parts: parts.as_ref().map(serde_json::to_string).transpose()?,
            metadata: props.metadata,
        };
        // A blob written over keeps its creation time.
        row.created_at = tx.put_blob(&row).await?;
        // The blob's staged blocks are dropped with it (as Azure discards them), and so are
        // their staging files.
        let cleared = tx.clear_blocks(t.account, t.container, blob).await?;
        // A blob made of stored blocks refers to their files through their rows until now: if
        // any of those rows went meanwhile (the blocks expired, or another commit or a delete
        // took them), its file may be garbage collected, so nothing is committed.
        if let Some(parts) = &parts {
            let held: std::collections::HashSet<&str> = cleared.iter().map(String::as_str).collect();
            if let Some((gone, _)) = parts.iter().find(|(d, _)| !held.contains(d.as_str())) {
                return Err(Error::invalid(
                    "InvalidBlockList",
                    "body",
                    format!("A block of the list ({gone}) was committed, deleted or expired by another request meanwhile; stage it again."),
                ));
            }
        }
        tx.commit().await?;
        self.drop_staging((t.account, t.container, blob), &staged_in(cleared)).await;
        Ok(row)
    }

    /// Put Blob: the whole content in one request.
    pub async fn put_blob<R: AsyncRead + Unpin>(&self, t: &BlobTarget<'_>, body: R, props: BlobProps) -> Result<BlobRow> {
        Self::check_names(t)?;
        self.blob_grant(t, Need::Write).await?;
        self.writable(t).await?;
        self.conditions_hold(t).await?;
        let stored = self.blobs.put(body, None, MAX_PUT_BYTES).await.map_err(blob_error)?;
        self.commit_blob(t, stored.digest, stored.size, None, props).await
    }

    /// Put Block: stages one block of a blob. `offset`, moat's extension (`x-moat-block-offset`),
    /// is where the client will put the block in the blob: with it (and the body's `length`),
    /// the block is written in place on the local disk (see staging.rs) and the blob's sha256
    /// is computed as blocks arrive instead of at commit (see prehash.rs).
    pub async fn put_block<R: AsyncRead + Unpin>(
        &self,
        t: &BlobTarget<'_>,
        block_id: &str,
        offset: Option<u64>,
        length: Option<u64>,
        body: R,
    ) -> Result<()> {
        Self::check_names(t)?;
        self.blob_grant(t, Need::Write).await?;
        let raw = STANDARD
            .decode(block_id)
            .map_err(|_| Error::invalid("InvalidQueryParameterValue", "blockid", "The block ID is not valid base64."))?;
        if raw.is_empty() || raw.len() > 64 {
            return Err(Error::invalid("InvalidQueryParameterValue", "blockid", "A block ID decodes to 1 to 64 bytes."));
        }
        if length.is_some_and(|n| n > MAX_PUT_BYTES) {
            return Err(blob_error(BlobError::TooLarge { limit: MAX_PUT_BYTES }));
        }
        self.writable(t).await?;
        let blob = (t.account, t.container, t.blob.unwrap_or_default());
        let ticket = match (offset, length) {
            (Some(o), Some(n)) if n > 0 && self.blobs.stages_in_place() => self.staging.begin(blob, o, n),
            _ => None,
        };
        let written = match &ticket {
            Some(tk) => {
                let n = length.unwrap_or_default();
                // The writer thread holds the reservation too, until its last write.
                // Kept in memory (and written around the page cache) when the running hash will
                // reach the block soon (see prehash.rs).
                let keep = offset.is_some_and(|o| self.prehash.wants(blob, o, n));
                match self.blobs.stage_at(&tk.file, tk.offset, body, n, Box::new(tk.clone()), keep).await {
                    Ok((w, kept)) if w == n => {
                        Ok((BlockAt::Staged { file: tk.file.clone(), offset: tk.offset, token: tk.token.clone() }, w, kept))
                    }
                    Ok((w, _)) => {
                        Err(BlobError::Source(std::io::Error::other(format!("the body ended after {w} of the {n} bytes announced"))))
                    }
                    Err(e) => Err(e),
                }
            }
            None => self.blobs.put(body, None, MAX_PUT_BYTES).await.map(|s| (BlockAt::Stored(s.digest), s.size, None)),
        };
        // On any return from here, dropping `ticket` ends the request's hold on the range: it is
        // kept if the block was recorded, freed otherwise (once the writer has let go too).
        let (at, size, kept) = written.map_err(blob_error)?;
        let row = BlockRow {
            account: t.account.into(),
            container: t.container.into(),
            name: blob.2.into(),
            block_id: block_id.into(),
            digest: at.to_string(),
            size: size as i64,
            staged_at: now_rfc3339(),
        };
        // Recorded in a task of its own, which holds the range until the row is settled: a
        // request cancelled meanwhile cannot free the range of a row that then becomes visible.
        // The range stays reserved whatever the outcome (a commit that reports an error may
        // still have made the row visible); a failed block's range goes with its file.
        let (store, held) = (self.store.clone(), ticket.clone());
        tokio::spawn(async move {
            let recorded = record_block(&store, &row).await;
            if let Some(tk) = held {
                tk.recorded();
            }
            recorded
        })
        .await
        .map_err(|e| Error::Internal(format!("recording a block: {e}")))??;
        if let Some(offset) = offset {
            self.prehash.staged(blob, offset, (block_id.to_string(), at, size), kept, &self.blobs);
        }
        Ok(())
    }

    /// Put Block List: the blob becomes the concatenation of the named staged blocks.
    ///
    /// Blocks stored content-addressed stay where they are, as the blob's parts; blocks written
    /// in place that make up their staging file exactly, in order, become the blob by a link;
    /// anything else (a mix, another order) is written out whole. Either way, the bytes are
    /// hashed once here at most — usually most of them were hashed as they arrived.
    pub async fn put_block_list(&self, t: &BlobTarget<'_>, block_ids: &[String], props: BlobProps) -> Result<BlobRow> {
        Self::check_names(t)?;
        self.blob_grant(t, Need::Write).await?;
        if block_ids.len() > MAX_BLOCKS {
            return Err(Error::invalid("InvalidBlockList", "body", format!("A block list holds at most {MAX_BLOCKS} blocks.")));
        }
        self.writable(t).await?;
        self.conditions_hold(t).await?;
        let blob = (t.account, t.container, t.blob.unwrap_or_default());
        let staged: std::collections::HashMap<String, BlockRow> =
            self.store.blocks(blob.0, blob.1, blob.2).await?.into_iter().map(|b| (b.block_id.clone(), b)).collect();
        let mut places = Vec::with_capacity(block_ids.len());
        let mut sizes = Vec::with_capacity(block_ids.len());
        for id in block_ids {
            let b = staged.get(id).ok_or_else(|| {
                Error::invalid(
                    "InvalidBlockList",
                    "body",
                    format!("The block list names block '{id}', which was not staged for this blob."),
                )
            })?;
            places.push(BlockAt::parse(&b.digest).ok_or_else(|| Error::Internal(format!("stored block place {}", b.digest)))?);
            sizes.push(b.size as u64);
        }
        let ahead = self.prehash.take(blob.0, blob.1, blob.2).await;
        let pieces = |from: usize| -> Vec<(moat_blob::Piece, u64)> {
            places[from..].iter().zip(&sizes[from..]).map(|(p, n)| (p.piece(), *n)).collect()
        };
        // The running hash over the list's first blocks, continued over the rest.
        let hash = |ahead: Option<prehash::Prefix>| async {
            let ahead_len = ahead.as_ref().map_or(0, |p| p.blocks.len());
            let usable = ahead.and_then(|p| prehash::covered(&p, block_ids, &places).map(|n| (p, n)));
            tracing::debug!(blocks = places.len(), hashed_ahead = ahead_len, used = usable.as_ref().map_or(0, |u| u.1), "block list");
            let (hasher, done, n) = match usable {
                Some((p, n)) => (p.hasher, p.size, n),
                None => (sha2::Sha256::new(), 0, 0),
            };
            let (h, more) = self.blobs.hash_pieces(&pieces(n), hasher).await.map_err(blob_error)?;
            Ok::<_, Error>((Digest::from_bytes(h.finalize().into()), done + more))
        };
        let committed = async {
            let row = if places.iter().all(|p| matches!(p, BlockAt::Stored(_))) {
                let (digest, size) = hash(ahead).await?;
                let sized: Vec<(String, u64)> = places.iter().zip(&sizes).map(|(p, n)| (p.to_string(), *n)).collect();
                self.commit_blob(t, digest, size, Some(sized), props).await?
            } else if let Some(file) = self.linkable(&places, &sizes).await? {
                let (digest, size) = hash(ahead).await?;
                self.blobs.install_staged(&file, &digest, size).await.map_err(blob_error)?;
                self.commit_blob(t, digest, size, None, props).await?
            } else {
                let mut w = self.blobs.writer(u64::MAX).await.map_err(blob_error)?;
                let mut reader = self.blobs.pieces_reader(pieces(0), 0);
                while w.read_from(&mut reader).await.map_err(|e| match e {
                    // The source here is the store itself.
                    BlobError::Source(e) => blob_error(BlobError::Io(e)),
                    e => blob_error(e),
                })? > 0
                {}
                let stored = w.finish(None).await.map_err(blob_error)?;
                self.commit_blob(t, stored.digest, stored.size, None, props).await?
            };
            Ok::<_, Error>(row)
        }
        .await;
        let row = match committed {
            Ok(row) => row,
            Err(Error::Internal(e)) => {
                // Another commit of the blob (or its deletion) may have taken the blocks
                // meanwhile, with their staging file: that is the client's race, not a fault.
                let now: std::collections::HashSet<String> =
                    self.store.blocks(blob.0, blob.1, blob.2).await?.into_iter().map(|b| b.block_id).collect();
                if block_ids.iter().any(|id| !now.contains(id)) {
                    return Err(Error::invalid(
                        "InvalidBlockList",
                        "body",
                        "The blocks of this list were committed or deleted by another request meanwhile; stage them again.",
                    ));
                }
                return Err(Error::Internal(e));
            }
            Err(e) => return Err(e),
        };
        Ok(row)
    }

    /// The staging file that the listed blocks make up exactly, in order from its first byte,
    /// once claimed for linking (no write into it is in flight, none will start).
    async fn linkable(&self, places: &[BlockAt], sizes: &[u64]) -> Result<Option<String>> {
        let Some(BlockAt::Staged { file, .. }) = places.first() else { return Ok(None) };
        let mut end = 0u64;
        for (p, n) in places.iter().zip(sizes) {
            match p {
                BlockAt::Staged { file: f, offset, .. } if f == file && *offset == end => end += n,
                _ => return Ok(None),
            }
        }
        if !self.staging.retire(file) {
            return Ok(None);
        }
        // Claimed, the file no longer changes. Bytes past the list's end (blocks staged but not
        // listed) would be in the blob: it is written out instead.
        Ok((self.blobs.staged_len(file).await.map_err(blob_error)? == Some(end)).then(|| file.clone()))
    }

    /// The staging files the blob's staged blocks are in.
    async fn staging_files(&self, account: &str, container: &str, blob: &str) -> Result<Vec<String>> {
        Ok(staged_in(self.store.blocks(account, container, blob).await?.into_iter().map(|b| b.digest)))
    }

    /// After the blob's staged blocks were dropped (committed, deleted, replaced): forgets its
    /// staging state and removes `files`, those the dropped blocks were in — but not one a write
    /// is still going into, nor one a block recorded meanwhile is in (left to the sweep).
    async fn drop_staging(&self, blob: (&str, &str, &str), files: &[String]) {
        self.staging.forget(blob);
        if files.is_empty() {
            return;
        }
        // In this order: a write not in flight now either recorded its block already (seen
        // below) or never will (a forgotten file takes no new write).
        let idle: Vec<&String> = files.iter().filter(|f| !self.staging.writing(f)).collect();
        let still = match self.staging_files(blob.0, blob.1, blob.2).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "listing staged blocks failed; the sweep will remove their staging files");
                return;
            }
        };
        for f in idle.into_iter().filter(|f| !still.contains(f)) {
            if let Err(e) = self.blobs.remove_staged(f).await {
                tracing::warn!(file = %f, error = %e, "removing a staging file failed; the sweep will");
            }
        }
    }

    /// Removes staging files that no staged block is in and this node is not writing, last
    /// written more than `age` ago (left by a crash, a failed removal, or a blob whose blocks
    /// expired); returns how many.
    pub async fn sweep_staging(&self, age: std::time::Duration) -> Result<usize> {
        let now = std::time::SystemTime::now();
        // In this order: a file not live now takes no new write, so a block in it was recorded
        // before, and the query below sees it.
        let candidates: Vec<String> = self
            .blobs
            .staged_files()
            .await
            .map_err(blob_error)?
            .into_iter()
            .filter(|(file, written)| now.duration_since(*written).is_ok_and(|d| d >= age) && !self.staging.live(file))
            .map(|(file, _)| file)
            .collect();
        if candidates.is_empty() {
            return Ok(0);
        }
        let referenced: std::collections::HashSet<String> = self
            .store
            .staged_block_places()
            .await?
            .iter()
            .filter_map(|d| match BlockAt::parse(d) {
                Some(BlockAt::Staged { file, .. }) => Some(file),
                _ => None,
            })
            .collect();
        let mut removed = 0;
        for file in candidates.into_iter().filter(|f| !referenced.contains(f)) {
            match self.blobs.remove_staged(&file).await {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(file = %file, error = %e, "removing a staging file failed"),
            }
        }
        Ok(removed)
    }

    /// `POST …/providers/Moat.Storage/garbageCollection`: a garbage collection now, or with
    /// `dry_run` a count of what one would remove, for an operator (subscription-level
    /// `Moat.Storage/garbageCollection/action`: Owner, Contributor).
    pub async fn garbage_collection(
        &self,
        caller: &Caller,
        subscription_id: &str,
        dry_run: bool,
    ) -> Result<moat_types::arm::GarbageCollection> {
        self.check_subscription(subscription_id)?;
        self.authorize(caller, moat_policy::actions::STORAGE_GC, &moat_types::ids::ResourceId::subscription(&self.subscription_id)).await?;
        if let Some(why) = &self.gc_refused {
            return Err(Error::conflict("GarbageCollectionOff", format!("Garbage collection is off: {why}.")));
        }
        let grace = self.config.gc_grace;
        let Ok(hold) = self.gc_running.clone().try_lock_owned() else {
            return Err(Error::conflict("GarbageCollectionRunning", "A garbage collection is running; try again when it has ended."));
        };
        let swept = self.collect_garbage_holding(grace, dry_run, hold).await?.unwrap_or_default();
        tracing::info!(
            caller = %caller.object_id,
            dry_run,
            files = swept.files,
            removed = swept.removed,
            removed_bytes = swept.removed_bytes,
            "garbage collection on demand"
        );
        Ok(moat_types::arm::GarbageCollection {
            dry_run,
            grace_seconds: grace.as_secs(),
            files: swept.files,
            removed: swept.removed,
            removed_bytes: swept.removed_bytes,
            kept: swept.kept,
        })
    }

    /// Garbage collection: removes stored files (or objects) that no committed row refers to
    /// (blobs and their parts, staged blocks, image blobs and manifests) and that nothing has
    /// stored for `grace`, after any collection running. Memory grows with the number of
    /// distinct stored contents (about 50 bytes each), not their size.
    pub async fn collect_garbage(&self, grace: std::time::Duration) -> Result<Option<moat_blob::Swept>> {
        if let Some(why) = &self.gc_refused {
            return Err(Error::Internal(format!("garbage collection is off: {why}")));
        }
        let one_at_a_time = self.gc_running.clone().lock_owned().await;
        self.collect_garbage_holding(grace, false, one_at_a_time).await
    }

    /// A collection on the schedule (every `every`). The nodes sharing an object store share its
    /// schedule: the first node whose timer fires in a period takes it in the database, and the
    /// others skip theirs (each would list the whole store), so one collection runs per
    /// period while any node is up. A local store is its own node's to collect. `None` when
    /// another node took the period.
    pub async fn scheduled_garbage_collection(
        &self,
        grace: std::time::Duration,
        every: std::time::Duration,
    ) -> Result<Option<moat_blob::Swept>> {
        if self.blobs.is_remote() {
            let now = unix_ms(std::time::SystemTime::now());
            let mut tx = self.store.write().await?;
            let last = tx.get_meta("gc_scheduled_at").await?.and_then(|v| v.parse::<i64>().ok());
            // Nine tenths of a period: timers that drift a little still take their turn.
            if last.is_some_and(|last| now - last < every.as_millis() as i64 * 9 / 10) {
                tracing::debug!("scheduled garbage collection: another node ran this period's");
                return Ok(None);
            }
            tx.put_meta("gc_scheduled_at", &now.to_string()).await?;
            tx.commit().await?;
        }
        let swept = self.collect_garbage(grace).await?;
        if let Some(s) = &swept {
            tracing::info!(files = s.files, removed = s.removed, kept = s.kept, "scheduled garbage collection ran");
        }
        Ok(swept)
    }

    /// A collection while `hold` keeps others out; the guard goes with the sweep, so that a
    /// caller that stops waiting (a dropped request) does not let another start meanwhile.
    async fn collect_garbage_holding(
        &self,
        grace: std::time::Duration,
        dry_run: bool,
        hold: tokio::sync::OwnedMutexGuard<()>,
    ) -> Result<Option<moat_blob::Swept>> {
        // The cutoff before the snapshot of references: a write that freshened its file before
        // the cutoff and committed its row after the snapshot took longer than `grace`.
        let cutoff = std::time::SystemTime::now() - grace;
        let mut referenced = std::collections::HashSet::new();
        let mut bad = None;
        self.store
            .referenced_content(|digest, parts| {
                if let Ok(d) = Digest::parse(digest) {
                    referenced.insert(d);
                }
                if let Some(json) = parts {
                    match serde_json::from_str::<Vec<(String, u64)>>(json) {
                        Ok(list) => referenced.extend(list.iter().filter_map(|(d, _)| Digest::parse(d).ok())),
                        Err(e) => bad = Some(e),
                    }
                }
            })
            .await?;
        if let Some(e) = bad {
            // A part list that cannot be read may name anything: collect nothing.
            return Err(Error::Internal(format!("a blob's part list does not parse ({e}); no garbage collected")));
        }
        let swept = if self.blobs.is_remote() {
            let _one_at_a_time = hold;
            Some(self.collect_remote_garbage(cutoff, &referenced, dry_run).await?)
        } else {
            self.blobs.collect_garbage(cutoff, std::sync::Arc::new(referenced), dry_run, hold).await.map_err(blob_error)?
        };
        if let Some(s) = &swept
            && (s.removed > 0 || s.kept > 0)
            && !dry_run
        {
            tracing::info!(
                files = s.files,
                removed = s.removed,
                removed_bytes = s.removed_bytes,
                kept = s.kept,
                "garbage collected unreferenced stored files"
            );
        }
        Ok(swept)
    }

    /// An object store's collection (the local store's is in moat-blob's gc.rs). An object
    /// cannot be freshened or set aside as a file can, so the database keeps writers and
    /// collectors apart instead, content by content (`content_claims`):
    ///
    /// - a writer claims a content (in its own committed transaction) before it asks the store
    ///   whether it holds it ([`DbClaimer`]); while a collector's mark is on it, the claim waits
    ///   until the collector has deleted it, and the writer then puts its own copy;
    /// - the collector deletes an object only if the snapshot of references taken after
    ///   `cutoff` does not name it, the store last wrote it before `cutoff`, and no writer has
    ///   claimed it since `cutoff`: that last check and its mark are one statement, so a writer
    ///   claims either before it (and the object is kept) or after (and waits).
    ///
    /// A writer that claimed longer than the grace period ago and has still not committed its
    /// row (one that found the bytes stored, which takes milliseconds) is the one case not
    /// covered, as for the local store. Several nodes may collect at once: each object is
    /// marked by one of them at a time.
    async fn collect_remote_garbage(
        &self,
        cutoff: std::time::SystemTime,
        referenced: &std::collections::HashSet<Digest>,
        dry_run: bool,
    ) -> Result<moat_blob::Swept> {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        let cutoff_ms = unix_ms(cutoff);
        let mut swept = moat_blob::Swept::default();
        let mut listing = self.blobs.stored();
        let mut listed_all = false;
        while !listed_all {
            // The next batch of old, unreferenced objects.
            let mut batch = Vec::new();
            while batch.len() < GC_BATCH {
                let Some(o) = listing.try_next().await.map_err(blob_error)? else {
                    listed_all = true;
                    break;
                };
                swept.files += 1;
                if !referenced.contains(&o.digest) && o.modified < cutoff {
                    batch.push(o);
                }
            }
            if dry_run {
                for o in batch {
                    if self.store.claimed_since(&o.digest.to_string(), cutoff_ms).await? {
                        swept.kept += 1;
                    } else {
                        swept.removed += 1;
                        swept.removed_bytes += o.size;
                    }
                }
                continue;
            }
            // Marked in one transaction (those claimed since the cutoff are not: a writer found
            // them, or is about to), deleted several at a time, unmarked in one transaction
            // whatever became of the deletes: a writer waiting for one puts its own copy.
            let stamp = unix_ms(std::time::SystemTime::now());
            let mut marked = Vec::with_capacity(batch.len());
            let mut tx = self.store.write().await?;
            for o in batch {
                if tx.mark_deleting(&o.digest.to_string(), stamp, cutoff_ms, stamp - MARK_ABANDONED_MS).await? {
                    marked.push(o);
                } else {
                    swept.kept += 1;
                }
            }
            tx.commit().await?;
            // No delete starts once the marks are half as old as MARK_ABANDONED, past which
            // writers take them for a stopped collector's and store their own copies: one
            // started before ends (the object store client gives up within three and a half
            // minutes) before any writer may pass the mark. A store that slow leaves the rest
            // for the next collection.
            let last_start = stamp + MARK_ABANDONED_MS / 2;
            let blobs = &self.blobs;
            let digests: Vec<Digest> = marked.iter().map(|o| o.digest).collect();
            let deleted: Vec<_> = futures_util::stream::iter(digests)
                .map(|d| async move {
                    if unix_ms(std::time::SystemTime::now()) > last_start {
                        return Ok(None);
                    }
                    blobs.delete_listed(&d).await.map(Some)
                })
                .buffered(GC_CONCURRENCY)
                .collect()
                .await;
            let mut tx = self.store.write().await?;
            for o in &marked {
                tx.unmark_deleting(&o.digest.to_string(), stamp).await?;
            }
            tx.commit().await?;
            for (o, d) in marked.iter().zip(deleted) {
                match d.map_err(blob_error)? {
                    Some(true) => {
                        swept.removed += 1;
                        swept.removed_bytes += o.size;
                    }
                    // Not there any more (another collector's, told apart on Azure only).
                    Some(false) => {}
                    None => swept.kept += 1,
                }
            }
            if unix_ms(std::time::SystemTime::now()) > last_start {
                tracing::warn!(
                    "the object store's deletes are too slow for a garbage collection to go on safely; the rest waits for the next one"
                );
                break;
            }
        }
        if !dry_run {
            let mut tx = self.store.write().await?;
            tx.prune_claims(cutoff_ms).await?;
            tx.commit().await?;
        }
        Ok(swept)
    }

    /// Get Block List: the blob (if committed) and the blocks staged for it, in block ID order.
    /// moat keeps no committed block lists (a committed blob's blocks become its parts), so the
    /// committed list is always empty; what a resuming client needs is the uncommitted one.
    pub async fn get_block_list(&self, t: &BlobTarget<'_>) -> Result<Vec<BlockRow>> {
        Self::check_names(t)?;
        self.blob_grant(t, Need::Read).await?;
        let blob = t.blob.unwrap_or_default();
        let blocks = self.store.blocks(t.account, t.container, blob).await?;
        if blocks.is_empty() && self.store.blob(t.account, t.container, blob).await?.is_none() {
            return Err(self.blob_missing(t, blob).await?);
        }
        Ok(blocks)
    }

    /// The 404 for `blob`, which does not exist: ContainerNotFound when its container does not
    /// either, as in Azure.
    async fn blob_missing(&self, t: &BlobTarget<'_>, blob: &str) -> Result<Error> {
        Ok(match self.store.container_sealed(t.account, t.container).await? {
            None => container_missing(t),
            Some(_) => Error::not_found("BlobNotFound", format!("The blob '{blob}' does not exist in container '{}'.", t.container)),
        })
    }

    /// Get Blob / Get Blob Properties: the blob's record and its parts (one for a blob put
    /// whole), to read with [`Moat::blob_reader`].
    pub async fn get_blob(&self, t: &BlobTarget<'_>) -> Result<(BlobRow, Vec<(Digest, u64)>)> {
        // A folder's name (`folder/`, which azure-ai-ml asks for to tell a folder from a file)
        // names no blob, since no write can take it: 404, as in Azure, rather than 400. Any
        // other name no write can take is refused as before.
        let blob = t.blob.unwrap_or_default();
        let folder = blob.ends_with('/') && valid_blob_name(blob.trim_end_matches('/'));
        if !folder {
            Self::check_names(t)?;
        } else if !valid_container_name(t.container) {
            Self::check_names(&BlobTarget { blob: None, ..*t })?;
        }
        self.blob_grant(t, Need::Read).await?;
        let found = if folder { None } else { self.store.blob(t.account, t.container, blob).await? };
        let row = match found {
            Some(row) => row,
            None => return Err(self.blob_missing(t, blob).await?),
        };
        let parse = |d: &str| Digest::parse(d).map_err(|_| Error::Internal(format!("stored digest {d}")));
        let parts = match &row.parts {
            None => vec![(parse(&row.digest)?, row.size as u64)],
            Some(json) => {
                let list: Vec<(String, u64)> = serde_json::from_str(json)?;
                list.iter().map(|(d, n)| Ok((parse(d)?, *n))).collect::<Result<_>>()?
            }
        };
        Ok((row, parts))
    }

    /// Reads a blob's parts as one stream, from byte `start`.
    pub fn blob_reader(&self, parts: Vec<(Digest, u64)>, start: u64) -> moat_blob::BlobReader {
        self.blobs.parts_reader(parts, start)
    }

    /// Set Blob Metadata: replaces the blob's user-defined metadata (JSON, see [`BlobProps`]);
    /// its bytes stay, its ETag and modification time change, as in Azure.
    pub async fn set_blob_metadata(&self, t: &BlobTarget<'_>, metadata: Option<String>) -> Result<BlobRow> {
        Self::check_names(t)?;
        self.blob_grant(t, Need::Write).await?;
        self.writable(t).await?;
        let blob = t.blob.unwrap_or_default();
        let mut tx = self.store.write().await?;
        // Checked again under the lock: a commit may have sealed the container meanwhile.
        container_open(&mut tx, t).await?;
        let Some(current) = tx.blob(t.account, t.container, blob).await? else {
            return Err(Error::not_found("BlobNotFound", format!("The blob '{blob}' does not exist.")));
        };
        t.conditions.check_write(Some(&current), false)?;
        let (etag, now) = (new_blob_etag(), now_rfc3339());
        tx.set_blob_metadata((t.account, t.container, blob), metadata.as_deref(), &etag, &now).await?;
        tx.commit().await?;
        Ok(BlobRow { etag, updated_at: now, metadata, ..current })
    }

    /// Delete Blob. Deleting what does not exist is 404, as in Azure.
    pub async fn delete_blob(&self, t: &BlobTarget<'_>) -> Result<()> {
        Self::check_names(t)?;
        self.blob_grant(t, Need::Delete).await?;
        self.writable(t).await?;
        let blob = t.blob.unwrap_or_default();
        let mut tx = self.store.write().await?;
        // Checked again under the lock: a commit may have sealed the container meanwhile.
        container_open(&mut tx, t).await?;
        if !t.conditions.is_empty() {
            let current = tx.blob(t.account, t.container, blob).await?;
            match current {
                Some(b) => t.conditions.check_write(Some(&b), false)?,
                None => return Err(Error::not_found("BlobNotFound", format!("The blob '{blob}' does not exist."))),
            }
        }
        let existed = tx.delete_blob(t.account, t.container, blob).await?;
        let cleared = tx.clear_blocks(t.account, t.container, blob).await?;
        tx.commit().await?;
        self.drop_staging((t.account, t.container, blob), &staged_in(cleared)).await;
        if existed { Ok(()) } else { Err(Error::not_found("BlobNotFound", format!("The blob '{blob}' does not exist."))) }
    }

    /// List Blobs, with prefix, delimiter and marker paging.
    pub async fn list_blobs(
        &self,
        t: &BlobTarget<'_>,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<&str>,
        max: i64,
    ) -> Result<BlobListing> {
        Self::check_names(t)?;
        self.blob_grant(t, Need::List).await?;
        // Entries (blobs and prefixes) count towards `max`, not rows: a folder of many files
        // is one prefix, listed once, and the next page resumes after all of it.
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let (mut blobs, mut prefixes) = (Vec::new(), Vec::<String>::new());
        let mut cursor = marker.map(str::to_string);
        let mut next_marker = None;
        'pages: loop {
            let rows = self.store.list_blobs(t.account, t.container, prefix, cursor.as_deref(), 1000).await?;
            let exhausted = rows.len() < 1000;
            let mut skip_past: Option<String> = None;
            for r in rows {
                if let Some(p) = &skip_past
                    && r.name.starts_with(p.as_str())
                {
                    continue;
                }
                if (blobs.len() + prefixes.len()) as i64 == max {
                    next_marker = cursor.clone();
                    break 'pages;
                }
                match delimiter.and_then(|d| r.name[prefix.len()..].find(d).map(|i| prefix.len() + i + d.len())) {
                    Some(end) => {
                        let p = r.name[..end].to_string();
                        // Resume after every name under this prefix.
                        cursor = Some(format!("{p}\u{10FFFF}"));
                        skip_past = Some(p.clone());
                        prefixes.push(p);
                    }
                    None => {
                        cursor = Some(r.name.clone());
                        blobs.push(r);
                    }
                }
            }
            if exhausted && skip_past.is_none() {
                break;
            }
            if exhausted && skip_past.is_some() {
                // Rows after the skipped prefix may remain: look once more from the cursor.
                let more = self.store.list_blobs(t.account, t.container, prefix, cursor.as_deref(), 1).await?;
                if more.is_empty() {
                    break;
                }
            }
        }
        if blobs.is_empty() && prefixes.is_empty() && self.store.container_sealed(t.account, t.container).await?.is_none() {
            return Err(container_missing(t));
        }
        Ok(BlobListing { blobs, prefixes, next_marker })
    }

    /// `POST .../storageAccounts/{name}/ListServiceSas`: a SAS for a container or blob of a
    /// managed storage account, for operators (assets get theirs from their own operations).
    pub async fn list_service_sas(
        &self,
        caller: &Caller,
        subscription_id: &str,
        group: &str,
        account: &str,
        req: ServiceSasRequest,
    ) -> Result<String> {
        self.check_subscription(subscription_id)?;
        let id = self.storage_id(group, account);
        let missing = || Error::not_found("ResourceNotFound", format!("The storage account '{account}' could not be found."));
        self.authorize_visible(
            caller,
            "Microsoft.Storage/storageAccounts/ListServiceSas/action",
            moat_policy::actions::STORAGE_READ,
            &id,
            missing,
        )
        .await?;
        let row = self.store.get_resource(&id.key()).await?.ok_or_else(missing)?;
        let sa: StorageAccountDoc = decode(&row)?;
        let bad = |target: &str, msg: String| Error::invalid("InvalidValuesForRequestParameters", target, msg);
        let rest = req
            .canonicalized_resource
            .strip_prefix(&format!("/blob/{account}/"))
            .ok_or_else(|| bad("canonicalizedResource", format!("canonicalizedResource must start with /blob/{account}/.")))?;
        let (container, blob) = match rest.split_once('/') {
            Some((c, b)) => (c, Some(b)),
            None => (rest, None),
        };
        if !valid_container_name(container) {
            return Err(bad("canonicalizedResource", format!("'{container}' is not a valid container name.")));
        }
        match (req.signed_resource.as_str(), blob) {
            ("c", None) => {}
            ("b", Some(b)) if valid_blob_name(b) => {}
            _ => {
                return Err(bad(
                    "signedResource",
                    "signedResource must be 'c' for a container or 'b' for a blob, matching canonicalizedResource.".into(),
                ));
            }
        }
        let permissions = Permissions::parse(&req.signed_permission)
            .filter(|p| *p != Permissions::default())
            .ok_or_else(|| bad("signedPermission", format!("'{}' is not a set of the letters racwdl.", req.signed_permission)))?;
        let expiry = OffsetDateTime::parse(&req.signed_expiry, &Rfc3339)
            .map_err(|_| bad("signedExpiry", "signedExpiry must be an RFC 3339 time.".into()))?;
        let now = OffsetDateTime::now_utc();
        if expiry <= now || (expiry - now).whole_seconds() > MAX_SAS_SECS {
            return Err(bad("signedExpiry", "signedExpiry must lie in the future, at most 7 days ahead.".into()));
        }
        let start = req
            .signed_start
            .as_deref()
            .map(|s| OffsetDateTime::parse(s, &Rfc3339))
            .transpose()
            .map_err(|_| bad("signedStart", "signedStart must be an RFC 3339 time.".into()))?;
        let key = sa.sas_key()?;
        let grant =
            Grant { account: account.into(), container: container.into(), blob: blob.map(str::to_string), permissions, start, expiry };
        Ok(sas::sign(&key, &grant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_rfc_9110() {
        let row = |etag: &str, updated: &str| BlobRow {
            account: "a".into(),
            container: "c".into(),
            name: "b".into(),
            digest: String::new(),
            size: 0,
            etag: etag.into(),
            content_type: None,
            created_at: updated.into(),
            updated_at: updated.into(),
            parts: None,
            metadata: None,
        };
        let b = row("\"0xNEW\"", "2026-11-27T10:00:00.500Z");
        let at = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        let c = |m: Option<&str>, n: Option<&str>, ms: Option<&str>, us: Option<&str>| BlobConditions {
            if_match: m.map(str::to_string),
            if_none_match: n.map(str::to_string),
            if_modified_since: ms.map(at),
            if_unmodified_since: us.map(at),
        };
        // Rewritten within the second the client's copy was: the ETag, not the date, decides.
        let stale = c(None, Some("\"0xOLD\""), Some("2026-11-27T10:00:00Z"), None);
        assert_eq!(stale.check_read(&b).unwrap(), ReadCondition::Serve);
        assert_eq!(c(None, None, Some("2026-11-27T10:00:00Z"), None).check_read(&b).unwrap(), ReadCondition::NotModified);
        // A date still to come is ignored.
        assert_eq!(c(None, None, Some("2999-01-01T00:00:00Z"), None).check_read(&b).unwrap(), ReadCondition::Serve);
        // If-Match compares strongly, If-None-Match weakly.
        assert!(c(Some("W/\"0xNEW\""), None, None, None).check_read(&b).is_err());
        assert!(c(Some("\"0xOTHER\", \"0xNEW\""), None, None, None).check_read(&b).is_ok());
        assert_eq!(c(None, Some("W/\"0xNEW\""), None, None).check_read(&b).unwrap(), ReadCondition::NotModified);
        // With If-Match there, If-Unmodified-Since is ignored.
        assert!(c(Some("\"0xNEW\""), None, None, Some("2020-01-01T00:00:00Z")).check_write(Some(&b), true).is_ok());
        assert!(c(None, None, None, Some("2020-01-01T00:00:00Z")).check_write(Some(&b), true).is_err());
        // If-None-Match: * on an existing blob: 409 for a write, 412 for a delete.
        assert!(matches!(c(None, Some("*"), None, None).check_write(Some(&b), true), Err(Error::Conflict { .. })));
        assert!(matches!(c(None, Some("*"), None, None).check_write(Some(&b), false), Err(Error::PreconditionFailed { .. })));
        assert!(c(None, Some("*"), None, None).check_write(None, true).is_ok());
        assert!(c(Some("*"), None, None, None).check_write(None, true).is_err(), "If-Match needs a blob");
    }

    #[test]
    fn names() {
        for ok in ["abc", "upload-1", &"a".repeat(63)] {
            assert!(valid_container_name(ok), "{ok}");
        }
        for bad in ["ab", "-abc", "abc-", "a--b", "ABC", "a_b", &"a".repeat(64)] {
            assert!(!valid_container_name(bad), "{bad}");
        }
        for ok in ["model.bin", "dir/sub/file.txt", "ünïcode name"] {
            assert!(valid_blob_name(ok), "{ok}");
        }
        for bad in ["", "a//b", "../x", "a/./b", "a/..", "x\\y", "a\nb", &"a".repeat(1025)] {
            assert!(!valid_blob_name(bad), "{bad}");
        }
    }
}
