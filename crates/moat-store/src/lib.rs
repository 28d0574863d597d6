//! Metadata store: the only crate with SQL in it. One code path over sqlx's `Any` driver, with
//! portable SQL (`$n` placeholders, TEXT and BIGINT columns) so that PostgreSQL slots in beside
//! the embedded SQLite default.
//!
//! Resources are stored as documents keyed by their lower-cased ARM ID; the domain owns the
//! document shape. Writes go through [`WriteTx`]; on SQLite they are serialised in-process so
//! that a read-then-write transaction never meets `SQLITE_BUSY`.

use std::sync::Arc;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::{Mutex, OwnedMutexGuard};

mod cache;
mod durable;
mod oci;
mod schema;

pub use oci::{OciBlobRow, OciManifestRow, OciUploadRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated (the row exists already).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("bad database URL: {0}")]
    BadUrl(String),
    /// A commit could not be made durable (its fsync failed): it may or may not survive.
    #[error("durability: {0}")]
    Durability(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One stored resource document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResource {
    /// The ARM ID as created (display casing).
    pub id: String,
    /// Lower-cased ARM type, e.g. `microsoft.machinelearningservices/registries`.
    pub kind: String,
    pub subscription_id: String,
    /// Lower-cased resource group name, `None` for subscription-level resources.
    pub group_key: Option<String>,
    pub name: String,
    /// The domain's JSON document.
    pub body: String,
    pub etag: String,
    pub created_at: String,
    pub updated_at: String,
}

impl StoredResource {
    pub fn id_key(&self) -> String {
        self.id.to_ascii_lowercase()
    }
}

/// Which resources a list returns: one kind, within a subscription and optionally a group,
/// in key order, after a key (keyset paging stays correct while rows are added).
#[derive(Clone, Debug)]
pub struct ListQuery<'a> {
    pub kind: Option<&'a str>,
    pub subscription_id: &'a str,
    pub group_key: Option<&'a str>,
    /// Only IDs starting with this lower-cased prefix (children of a resource).
    pub id_prefix: Option<&'a str>,
    pub after_key: Option<&'a str>,
    pub limit: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalRow {
    pub object_id: String,
    /// `User`, `ServicePrincipal` or `ManagedIdentity`.
    pub kind: String,
    pub display_name: String,
    pub app_id: Option<String>,
    pub secret_hash: Option<String>,
    pub created_at: String,
    /// User principal name (users only), lower-cased.
    pub upn: Option<String>,
    /// For users of an external OpenID Connect issuer: the issuer and the subject (`oid` or
    /// `sub`) its tokens carry.
    pub issuer: Option<String>,
    pub subject: Option<String>,
}

/// One entry of the activity (audit) log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityRow {
    /// Time-ordered: the timestamp, then `-` and 12 hex digits.
    pub id: String,
    /// The start of `id` (not stored apart from it).
    pub time: String,
    pub principal_id: Option<String>,
    pub principal_name: Option<String>,
    pub client: String,
    pub origin: String,
    pub action: String,
    pub resource_id: String,
    /// `allowed`, `denied` or `unauthenticated`.
    pub result: String,
    pub rule: String,
}

/// Which activity entries to return, newest first.
#[derive(Clone, Debug, Default)]
pub struct ActivityQuery<'a> {
    /// Entries on this resource or below it (lower-cased prefix match).
    pub resource_prefix: Option<&'a str>,
    pub principal_id: Option<&'a str>,
    pub result: Option<&'a str>,
    pub since: Option<&'a str>,
    /// Entries with an id before this one (paging).
    pub before_id: Option<&'a str>,
    pub limit: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignmentRow {
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    pub scope: String,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationRow {
    pub id: String,
    pub subscription_id: String,
    pub location: String,
    pub kind: String,
    pub resource_id: String,
    pub status: String,
    /// JSON of the error detail when failed.
    pub error: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub principal_id: String,
}

/// A committed blob of the blob plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRow {
    pub account: String,
    pub container: String,
    pub name: String,
    /// `sha256:<hex>` of the content in the content-addressed store.
    pub digest: String,
    pub size: i64,
    pub etag: String,
    pub content_type: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// For a blob committed from blocks: its parts in order, as JSON `[[digest, size], ...]`.
    pub parts: Option<String>,
    /// Its user-defined metadata (`x-ms-meta-*`), as a JSON object of name to value.
    pub metadata: Option<String>,
}

/// A block staged by Put Block, waiting for a block list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRow {
    pub account: String,
    pub container: String,
    pub name: String,
    pub block_id: String,
    pub digest: String,
    pub size: i64,
    pub staged_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub pkcs8_b64: String,
    pub created_at: String,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Serialises this process's writers before they take a connection. On SQLite it is the
    /// only lock (one process owns the file); on PostgreSQL a transaction-scoped advisory lock
    /// also serialises writers across nodes, and this one keeps waiting writers from holding
    /// pooled connections: a writer that reads through the pool while its transaction is open
    /// would otherwise find every connection held by writers queued behind it.
    write_lock: Option<Arc<Mutex<()>>>,
    postgres: bool,
    /// Resource documents read by ID, remembered (SQLite only; see cache.rs).
    cache: Option<Arc<cache::ResourceCache>>,
    /// SQLite's group commit (see durable.rs); PostgreSQL's commits are durable themselves.
    wal: Option<Arc<durable::WalSync>>,
    /// The activity log's texts and their numbers, as committed (see [`TextIds`]).
    texts: Arc<TextIds>,
}

/// The numbers of the activity log's texts (`activity_text`), remembered so that logging an
/// entry costs no lookup. A text's number never changes once committed (texts are never
/// deleted), so this is valid on every node; it only ever holds committed numbers.
#[derive(Default)]
struct TextIds(std::sync::Mutex<std::collections::HashMap<Box<str>, i64>>);

/// Texts remembered at most; past it, the memory starts afresh.
const TEXT_IDS: usize = 65_536;

/// The longest activity text stored whole, in bytes: texts are indexed, and PostgreSQL refuses
/// an index entry over ~2.7 kB, so an unbounded text (a refused request's path, a bad token's
/// `alg`) would make the whole batch of entries fail.
pub const MAX_ACTIVITY_TEXT: usize = 1024;

/// `INSERT INTO activity … VALUES (…), …` for `rows` rows. SQLite gets anonymous `?`
/// placeholders: sqlx asks SQLite for each parameter's name, which walks the list of named
/// ones, quadratic in a statement with thousands of `$n`.
fn insert_activities_sql(rows: usize, postgres: bool) -> String {
    use std::fmt::Write;
    const COLS: usize = 9;
    let mut sql =
        String::from("INSERT INTO activity (id, principal_id, principal_name, client, origin, action, resource_id, result, rule) VALUES ");
    for i in 0..rows {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 1..=COLS {
            if c > 1 {
                sql.push_str(", ");
            }
            if postgres {
                let _ = write!(sql, "${}", i * COLS + c);
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

/// The file of a `sqlite:` URL, if it names one (not `:memory:`).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// A database URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite://PATH` uses WAL mode with a group commit: every commit is on disk before
    /// [`WriteTx::commit`] returns, and concurrent commits share an fsync (see durable.rs). `postgres://…` needs a database
    /// with the C collation (so that keyset paging orders names by bytes on every backend, as
    /// SQLite does): `CREATE DATABASE moat TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'`.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_upto(url, i64::MAX).await
    }

    /// [`Store::open`], applying schema migrations up to `version` only: for tests of a
    /// migration, which fill a database as an older moat left it and then open it.
    #[doc(hidden)]
    pub async fn open_upto(url: &str, version: i64) -> Result<Self> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = if url.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                // A file cannot drop the connection: no liveness query before every use.
                .test_before_acquire(false)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        // The fsync moat does after each commit (durable.rs) makes NORMAL as
                        // durable as FULL, without holding the write lock across the fsync.
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?;
            let store = Store {
                pool,
                write_lock: Some(Arc::new(Mutex::new(()))),
                postgres: false,
                cache: Some(Arc::new(cache::ResourceCache::default())),
                wal: sqlite_path(&url).map(|p| Arc::new(durable::WalSync::new(p))),
                texts: Default::default(),
            };
            schema::migrate(&store, version).await?;
            return Ok(store);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = AnyPoolOptions::new().max_connections(16).connect(url).await?;
            let collation: String = sqlx::query("SELECT datcollate::text AS c FROM pg_database WHERE datname = current_database()")
                .fetch_one(&pool)
                .await?
                .try_get("c")?;
            if !(collation == "C" || collation == "POSIX" || collation.starts_with("C.")) {
                return Err(StoreError::BadUrl(format!(
                    "the database's collation is '{collation}'; moat needs C (byte order) so that paging is the same on every backend: \
                     CREATE DATABASE <name> TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
                )));
            }
            // Other nodes write too: nothing is remembered (a node learns of their changes through
            // moat-core's change marks, which cover its views, not every document).
            let store = Store {
                pool,
                write_lock: Some(Arc::new(Mutex::new(()))),
                postgres: true,
                cache: None,
                wal: None,
                texts: Default::default(),
            };
            schema::migrate(&store, version).await?;
            return Ok(store);
        }
        Err(StoreError::BadUrl(format!("'{}': moat stores metadata in sqlite://PATH or postgres://USER@HOST:PORT/DB", redact(url))))
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        if self.postgres { "postgres" } else { "sqlite" }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction.
    pub async fn write(&self) -> Result<WriteTx> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            // Writers are serialised across every node sharing the database, as SQLite's are in
            // one process: read-then-write transactions see no interleaving, so no lost update
            // and no duplicate version.
            sqlx::query("SELECT pg_advisory_xact_lock(7700770077)").execute(&mut *tx).await?;
        }
        Ok(WriteTx {
            tx,
            _guard: guard,
            postgres: self.postgres,
            cache: self.cache.clone(),
            touched: Default::default(),
            wal: self.wal.clone(),
            texts: self.texts.clone(),
            new_texts: Vec::new(),
        })
    }

    pub async fn get_resource(&self, id_key: &str) -> Result<Option<StoredResource>> {
        Ok(self.get_resource_shared(id_key).await?.map(std::sync::Arc::unwrap_or_clone))
    }

    /// [`Store::get_resource`] without copying a remembered document.
    pub async fn get_resource_shared(&self, id_key: &str) -> Result<Option<std::sync::Arc<StoredResource>>> {
        let generation = match self.cache.as_ref().map(|c| c.get(id_key)) {
            Some(Ok(hit)) => return Ok(Some(hit)),
            Some(Err(generation)) => Some(generation),
            None => None,
        };
        let row = sqlx::query(&format!("SELECT {RESOURCE_COLS} FROM resources WHERE id_key = $1"))
            .bind(id_key)
            .fetch_optional(&self.pool)
            .await?;
        let found = row.map(|r| resource_from_row(&r).map(std::sync::Arc::new)).transpose()?;
        if let (Some(cache), Some(generation), Some(r)) = (&self.cache, generation, &found) {
            cache.remember(generation, id_key, r);
        }
        Ok(found)
    }

    pub async fn list_resources(&self, q: &ListQuery<'_>) -> Result<Vec<StoredResource>> {
        let mut sql = format!("SELECT {RESOURCE_COLS} FROM resources WHERE subscription_id = $1");
        let mut n = 1;
        let mut binds: Vec<&str> = vec![q.subscription_id];
        if let Some(kind) = q.kind {
            n += 1;
            sql.push_str(&format!(" AND kind = ${n}"));
            binds.push(kind);
        }
        if let Some(g) = q.group_key {
            n += 1;
            sql.push_str(&format!(" AND group_key = ${n}"));
            binds.push(g);
        }
        if let Some(prefix) = q.id_prefix {
            n += 1;
            // substr counts characters, so compare with the prefix's length in characters.
            sql.push_str(&format!(" AND substr(id_key, 1, length(${n})) = ${n}"));
            binds.push(prefix);
        }
        if let Some(after) = q.after_key {
            n += 1;
            sql.push_str(&format!(" AND id_key > ${n}"));
            binds.push(after);
        }
        n += 1;
        sql.push_str(&format!(" ORDER BY id_key LIMIT ${n}"));
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(q.limit).fetch_all(&self.pool).await?;
        rows.iter().map(resource_from_row).collect()
    }

    /// The owner of an installation-wide unique name, if claimed.
    pub async fn name_owner(&self, namespace: &str, name_key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT owner_key FROM global_names WHERE namespace = $1 AND name_key = $2")
            .bind(namespace)
            .bind(name_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("owner_key")).transpose()?)
    }

    pub async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get::<String, _>("value")).transpose()?)
    }

    /// The values of the meta `keys` that are set, in one query.
    pub async fn get_metas(&self, keys: &[&str]) -> Result<Vec<(String, String)>> {
        let marks: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT key, value FROM meta WHERE key IN ({})", marks.join(", "));
        let mut q = sqlx::query(&sql);
        for k in keys {
            q = q.bind(*k);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get::<String, _>("key")?, r.try_get::<String, _>("value")?))).collect()
    }

    pub async fn principal_by_app_id(&self, app_id: &str) -> Result<Option<PrincipalRow>> {
        let row = sqlx::query(&format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE app_id = $1"))
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| principal_from_row(&r)).transpose()
    }

    /// The principal an external issuer's subject maps to.
    pub async fn principal_by_external(&self, issuer: &str, subject: &str) -> Result<Option<PrincipalRow>> {
        let row = sqlx::query(&format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE issuer = $1 AND subject = $2"))
            .bind(issuer)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| principal_from_row(&r)).transpose()
    }

    pub async fn principal_by_upn(&self, upn: &str) -> Result<Option<PrincipalRow>> {
        let row = sqlx::query(&format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE upn = $1"))
            .bind(upn.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| principal_from_row(&r)).transpose()
    }

    /// Principals of one kind, in object-id order after `after`.
    pub async fn list_principals(&self, kind: &str, after: Option<&str>, limit: i64) -> Result<Vec<PrincipalRow>> {
        let rows =
            sqlx::query(&format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE kind = $1 AND object_id > $2 ORDER BY object_id LIMIT $3"))
                .bind(kind)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(principal_from_row).collect()
    }

    /// How many activity entries there are, and how many distinct texts they name (each
    /// stored once).
    pub async fn activity_counts(&self) -> Result<(i64, i64)> {
        let r = sqlx::query("SELECT (SELECT COUNT(*) FROM activity) AS entries, (SELECT COUNT(*) FROM activity_text) AS texts")
            .fetch_one(&self.pool)
            .await?;
        Ok((r.try_get("entries")?, r.try_get("texts")?))
    }

    /// Activity entries matching `q`, newest first.
    pub async fn activity(&self, q: &ActivityQuery<'_>) -> Result<Vec<ActivityRow>> {
        let mut sql = String::from(
            "SELECT a.id AS id, p.text AS principal_id, n.text AS principal_name, a.client AS client, o.text AS origin, \
             c.text AS action, r.text AS resource_id, s.text AS result, u.text AS rule \
             FROM activity a \
             LEFT JOIN activity_text p ON p.id = a.principal_id \
             LEFT JOIN activity_text n ON n.id = a.principal_name \
             JOIN activity_text o ON o.id = a.origin \
             JOIN activity_text c ON c.id = a.action \
             JOIN activity_text r ON r.id = a.resource_id \
             JOIN activity_text s ON s.id = a.result \
             JOIN activity_text u ON u.id = a.rule \
             WHERE 1 = 1",
        );
        let mut binds: Vec<String> = Vec::new();
        let mut push = |sql: &mut String, clause: &str, v: String| {
            binds.push(v);
            sql.push_str(&clause.replace("$?", &format!("${}", binds.len())));
        };
        if let Some(p) = q.resource_prefix {
            let p = p.to_ascii_lowercase();
            let below = format!("{p}/");
            // The texts that match, then the entries that name one of them.
            push(&mut sql, " AND a.resource_id IN (SELECT x.id FROM activity_text x WHERE lower(x.text) = $?", p);
            // substr counts characters: compare with the prefix's length in characters.
            push(&mut sql, " OR substr(lower(x.text), 1, length($?)) = $?)", below);
        }
        if let Some(p) = q.principal_id {
            push(&mut sql, " AND p.text = $?", p.to_string());
        }
        if let Some(r) = q.result {
            push(&mut sql, " AND s.text = $?", r.to_string());
        }
        if let Some(t) = q.since {
            // An ID is its entry's time (fixed width) and a suffix: it orders and bounds entries by
            // time through the primary key.
            push(&mut sql, " AND a.id >= $?", t.to_string());
        }
        if let Some(b) = q.before_id {
            push(&mut sql, " AND a.id < $?", b.to_string());
        }
        sql.push_str(&format!(" ORDER BY a.id DESC LIMIT {}", q.limit.max(0)));
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                Ok(ActivityRow {
                    time: entry_time_of(&id).to_string(),
                    id,
                    principal_id: r.try_get("principal_id")?,
                    principal_name: r.try_get("principal_name")?,
                    client: r.try_get("client")?,
                    origin: r.try_get("origin")?,
                    action: r.try_get("action")?,
                    resource_id: r.try_get("resource_id")?,
                    result: r.try_get("result")?,
                    rule: r.try_get("rule")?,
                })
            })
            .collect()
    }

    pub async fn principal(&self, object_id: &str) -> Result<Option<PrincipalRow>> {
        let row = sqlx::query(&format!("SELECT {PRINCIPAL_COLS} FROM principals WHERE object_id = $1"))
            .bind(object_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| principal_from_row(&r)).transpose()
    }

    pub async fn assignments_of(&self, principal_id: &str) -> Result<Vec<AssignmentRow>> {
        let rows = sqlx::query(&format!("SELECT {ASSIGNMENT_COLS} FROM role_assignments WHERE principal_id = $1 ORDER BY id"))
            .bind(principal_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    /// Every role assignment (loaded into the authorization index at start).
    pub async fn all_assignments(&self) -> Result<Vec<AssignmentRow>> {
        let rows = sqlx::query(&format!("SELECT {ASSIGNMENT_COLS} FROM role_assignments ORDER BY id")).fetch_all(&self.pool).await?;
        rows.iter().map(assignment_from_row).collect()
    }

    pub async fn assignment(&self, id: &str) -> Result<Option<AssignmentRow>> {
        let row = sqlx::query(&format!("SELECT {ASSIGNMENT_COLS} FROM role_assignments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| assignment_from_row(&r)).transpose()
    }

    /// Assignments at `scope_key` or below it, in ID order after `after`.
    pub async fn assignments_within(&self, scope_key: &str, after: Option<&str>, limit: i64) -> Result<Vec<AssignmentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {ASSIGNMENT_COLS} FROM role_assignments WHERE (scope_key = $1 OR substr(scope_key, 1, length($2)) = $2) AND id > $3 ORDER BY id LIMIT $4"
        ))
        .bind(scope_key)
        .bind(format!("{scope_key}/"))
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    pub async fn operation(&self, id: &str) -> Result<Option<OperationRow>> {
        let row = sqlx::query(
            "SELECT id, subscription_id, location, kind, resource_id, status, error, started_at, ended_at, principal_id FROM operations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(OperationRow {
                id: r.try_get("id")?,
                subscription_id: r.try_get("subscription_id")?,
                location: r.try_get("location")?,
                kind: r.try_get("kind")?,
                resource_id: r.try_get("resource_id")?,
                status: r.try_get("status")?,
                error: r.try_get("error")?,
                started_at: r.try_get("started_at")?,
                ended_at: r.try_get("ended_at")?,
                principal_id: r.try_get("principal_id")?,
            })
        })
        .transpose()
    }

    pub async fn blob(&self, account: &str, container: &str, name: &str) -> Result<Option<BlobRow>> {
        blob_in(&self.pool, account, container, name).await
    }

    /// Blobs of a container whose names start with `prefix`, in name order after `after`.
    pub async fn list_blobs(&self, account: &str, container: &str, prefix: &str, after: Option<&str>, limit: i64) -> Result<Vec<BlobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {BLOB_COLS} FROM blobs WHERE account = $1 AND container = $2 AND substr(name, 1, length($3)) = $3 AND name > $4 ORDER BY name LIMIT $5"
        ))
        .bind(account)
        .bind(container)
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(blob_from_row).collect()
    }

    /// Every reference to stored content, for garbage collection: `each` is called with each
    /// digest a row names (`sha256:...`; a block row's may be a `staged:` place instead) and,
    /// for a blob committed from blocks, with its JSON part list too. One statement, so one
    /// snapshot: a reference moved from one table to another by a commit meanwhile (blocks into
    /// a blob's parts) is seen once, never missed. Rows stream; memory stays flat.
    pub async fn referenced_content(&self, mut each: impl FnMut(&str, Option<&str>)) -> Result<()> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(
            "SELECT digest AS d, parts AS p FROM blobs
             UNION ALL SELECT digest, NULL FROM blob_blocks
             UNION ALL SELECT sha256, NULL FROM oci_blobs
             UNION ALL SELECT sha256, NULL FROM oci_manifests",
        )
        .fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            let d: String = r.try_get(0)?;
            let p: Option<String> = r.try_get(1)?;
            each(&d, p.as_deref());
        }
        Ok(())
    }

    /// Whether `digest` was claimed ([`WriteTx::claim_content`]) at or after `since` (ms since
    /// the epoch).
    pub async fn claimed_since(&self, digest: &str, since: i64) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM content_claims WHERE digest = $1 AND claimed_at >= $2 AND deleting_since IS NULL")
            .bind(digest)
            .bind(since)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Where the staged blocks written in place are (their `digest` column, `staged:...`).
    pub async fn staged_block_places(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT digest FROM blob_blocks WHERE digest LIKE 'staged:%'").fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    pub async fn blocks(&self, account: &str, container: &str, name: &str) -> Result<Vec<BlockRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {BLOCK_COLS} FROM blob_blocks WHERE account = $1 AND container = $2 AND name = $3 ORDER BY block_id"
        ))
        .bind(account)
        .bind(container)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(block_from_row).collect()
    }

    /// Whether a container is sealed (its blobs can no longer change); `None` if it does not exist.
    pub async fn container_sealed(&self, account: &str, container: &str) -> Result<Option<bool>> {
        let row = sqlx::query("SELECT sealed FROM blob_containers WHERE account = $1 AND container = $2")
            .bind(account)
            .bind(container)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>("sealed")).transpose()?.map(|v| v != 0))
    }

    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        let rows = sqlx::query("SELECT kid, pkcs8, created_at FROM signing_keys ORDER BY created_at, kid").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(SigningKeyRow { kid: r.try_get("kid")?, pkcs8_b64: r.try_get("pkcs8")?, created_at: r.try_get("created_at")? }))
            .collect()
    }
}

const RESOURCE_COLS: &str = "id, kind, subscription_id, group_key, name, body, etag, created_at, updated_at";
const BLOB_COLS: &str = "account, container, name, digest, size, etag, content_type, created_at, updated_at, parts, metadata";

/// A blob's row, through the pool or inside a transaction.
async fn blob_in<'e>(
    e: impl sqlx::Executor<'e, Database = sqlx::Any>,
    account: &str,
    container: &str,
    name: &str,
) -> Result<Option<BlobRow>> {
    let row = sqlx::query(&format!("SELECT {BLOB_COLS} FROM blobs WHERE account = $1 AND container = $2 AND name = $3"))
        .bind(account)
        .bind(container)
        .bind(name)
        .fetch_optional(e)
        .await?;
    row.map(|r| blob_from_row(&r)).transpose()
}
const BLOCK_COLS: &str = "account, container, name, block_id, digest, size, staged_at";
const ASSIGNMENT_COLS: &str = "id, principal_id, role_definition_id, scope, created_at";
const PRINCIPAL_COLS: &str = "object_id, kind, display_name, app_id, secret_hash, created_at, upn, issuer, subject";

/// An activity entry's time: its ID up to the suffix moat adds (`{time}-{12 hex digits}`).
fn entry_time_of(id: &str) -> &str {
    id.rsplit_once('-').map_or(id, |(time, _)| time)
}

fn resource_from_row(r: &AnyRow) -> Result<StoredResource> {
    Ok(StoredResource {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        subscription_id: r.try_get("subscription_id")?,
        group_key: r.try_get("group_key")?,
        name: r.try_get("name")?,
        body: r.try_get("body")?,
        etag: r.try_get("etag")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn blob_from_row(r: &AnyRow) -> Result<BlobRow> {
    Ok(BlobRow {
        account: r.try_get("account")?,
        container: r.try_get("container")?,
        name: r.try_get("name")?,
        digest: r.try_get("digest")?,
        size: r.try_get("size")?,
        etag: r.try_get("etag")?,
        content_type: r.try_get("content_type")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        parts: r.try_get("parts")?,
        metadata: r.try_get("metadata")?,
    })
}

fn block_from_row(r: &AnyRow) -> Result<BlockRow> {
    Ok(BlockRow {
        account: r.try_get("account")?,
        container: r.try_get("container")?,
        name: r.try_get("name")?,
        block_id: r.try_get("block_id")?,
        digest: r.try_get("digest")?,
        size: r.try_get("size")?,
        staged_at: r.try_get("staged_at")?,
    })
}

fn assignment_from_row(r: &AnyRow) -> Result<AssignmentRow> {
    Ok(AssignmentRow {
        id: r.try_get("id")?,
        principal_id: r.try_get("principal_id")?,
        role_definition_id: r.try_get("role_definition_id")?,
        scope: r.try_get("scope")?,
        created_at: r.try_get("created_at")?,
    })
}

fn principal_from_row(r: &AnyRow) -> Result<PrincipalRow> {
    Ok(PrincipalRow {
        object_id: r.try_get("object_id")?,
        kind: r.try_get("kind")?,
        display_name: r.try_get("display_name")?,
        app_id: r.try_get("app_id")?,
        secret_hash: r.try_get("secret_hash")?,
        created_at: r.try_get("created_at")?,
        upn: r.try_get("upn")?,
        issuer: r.try_get("issuer")?,
        subject: r.try_get("subject")?,
    })
}

fn map_unique(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => StoreError::Conflict(what.to_string()),
        _ => StoreError::Db(e),
    }
}

/// A write transaction. Dropped without [`WriteTx::commit`], it rolls back.
pub struct WriteTx {
    pub(crate) tx: sqlx::Transaction<'static, sqlx::Any>,
    postgres: bool,
    _guard: Option<OwnedMutexGuard<()>>,
    cache: Option<Arc<cache::ResourceCache>>,
    /// Resource keys this transaction wrote, forgotten by the cache at commit.
    touched: cache::Touched,
    wal: Option<Arc<durable::WalSync>>,
    texts: Arc<TextIds>,
    /// Activity texts this transaction numbered, remembered once it commits.
    new_texts: Vec<(Box<str>, i64)>,
}

impl WriteTx {
    /// Runs an insert that may break a uniqueness rule. On PostgreSQL a failed statement aborts
    /// the whole transaction, so there it runs under a savepoint that is rolled back on failure:
    /// the transaction stays usable after a conflict, as on SQLite.
    async fn insert_guarded<'q>(&mut self, q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, what: &str) -> Result<()> {
        if !self.postgres {
            return q.execute(&mut *self.tx).await.map(|_| ()).map_err(|e| map_unique(e, what));
        }
        sqlx::query("SAVEPOINT moat_insert").execute(&mut *self.tx).await?;
        match q.execute(&mut *self.tx).await {
            Ok(_) => {
                sqlx::query("RELEASE SAVEPOINT moat_insert").execute(&mut *self.tx).await?;
                Ok(())
            }
            Err(e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT moat_insert").execute(&mut *self.tx).await?;
                Err(map_unique(e, what))
            }
        }
    }

    /// Commits; returns once the transaction is durable.
    pub async fn commit(self) -> Result<()> {
        let WriteTx { tx, _guard, cache, touched, wal, texts, new_texts, .. } = self;
        let done = tx.commit().await;
        if let Some(cache) = &cache {
            cache.forget(&touched);
        }
        if done.is_ok() && !new_texts.is_empty() {
            let mut known = texts.0.lock().unwrap_or_else(|e| e.into_inner());
            if known.len() + new_texts.len() > TEXT_IDS {
                known.clear();
            }
            known.extend(new_texts);
        }
        // The next writer may go on while this one waits for the disk (SQLite: durable.rs).
        drop(_guard);
        done?;
        match wal {
            Some(wal) => wal.durable().await,
            None => Ok(()),
        }
    }

    pub async fn get_resource(&mut self, id_key: &str) -> Result<Option<StoredResource>> {
        let row = sqlx::query(&format!("SELECT {RESOURCE_COLS} FROM resources WHERE id_key = $1"))
            .bind(id_key)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| resource_from_row(&r)).transpose()
    }

    /// Inserts a new resource; [`StoreError::Conflict`] if its ID exists.
    pub async fn insert_resource(&mut self, r: &StoredResource) -> Result<()> {
        let q = sqlx::query(
            "INSERT INTO resources (id_key, id, kind, subscription_id, group_key, name, body, etag, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(r.id_key())
        .bind(&r.id)
        .bind(&r.kind)
        .bind(&r.subscription_id)
        .bind(&r.group_key)
        .bind(&r.name)
        .bind(&r.body)
        .bind(&r.etag)
        .bind(&r.created_at)
        .bind(&r.updated_at);
        self.touched.key(&r.id_key());
        self.insert_guarded(q, &r.id).await?;
        Ok(())
    }

    /// Replaces a resource's document if its ETag is still `expected_etag`; false otherwise.
    pub async fn update_resource(&mut self, r: &StoredResource, expected_etag: &str) -> Result<bool> {
        self.touched.key(&r.id_key());
        let done = sqlx::query("UPDATE resources SET body = $1, etag = $2, updated_at = $3 WHERE id_key = $4 AND etag = $5")
            .bind(&r.body)
            .bind(&r.etag)
            .bind(&r.updated_at)
            .bind(r.id_key())
            .bind(expected_etag)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_resource(&mut self, id_key: &str) -> Result<bool> {
        self.touched.key(id_key);
        let done = sqlx::query("DELETE FROM resources WHERE id_key = $1").bind(id_key).execute(&mut *self.tx).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes every resource whose ID starts with `prefix` (the children of a resource).
    pub async fn delete_resources_with_prefix(&mut self, prefix: &str) -> Result<u64> {
        self.touched.prefix(prefix);
        let done =
            sqlx::query("DELETE FROM resources WHERE substr(id_key, 1, length($1)) = $1").bind(prefix).execute(&mut *self.tx).await?;
        Ok(done.rows_affected())
    }

    /// How many resources live in a resource group.
    pub async fn count_in_group(&mut self, subscription_id: &str, group_key: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM resources WHERE subscription_id = $1 AND group_key = $2")
            .bind(subscription_id)
            .bind(group_key)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// [`Store::name_owner`], under the write lock.
    pub async fn name_owner(&mut self, namespace: &str, name_key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT owner_key FROM global_names WHERE namespace = $1 AND name_key = $2")
            .bind(namespace)
            .bind(name_key)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| r.try_get::<String, _>("owner_key")).transpose()?)
    }

    /// Claims a name that must be unique across the installation within `namespace`
    /// (e.g. registry names, storage account names). [`StoreError::Conflict`] if taken.
    pub async fn claim_name(&mut self, namespace: &str, name_key: &str, owner_key: &str) -> Result<()> {
        let taken = sqlx::query("SELECT owner_key FROM global_names WHERE namespace = $1 AND name_key = $2")
            .bind(namespace)
            .bind(name_key)
            .fetch_optional(&mut *self.tx)
            .await?;
        if let Some(row) = taken {
            let owner: String = row.try_get("owner_key")?;
            if owner == owner_key {
                return Ok(());
            }
            return Err(StoreError::Conflict(format!("{namespace} name '{name_key}' is taken")));
        }
        let q = sqlx::query("INSERT INTO global_names (namespace, name_key, owner_key) VALUES ($1, $2, $3)")
            .bind(namespace)
            .bind(name_key)
            .bind(owner_key);
        self.insert_guarded(q, name_key).await?;
        Ok(())
    }

    /// Releases every name claimed by `owner_key`.
    pub async fn release_names(&mut self, owner_key: &str) -> Result<()> {
        sqlx::query("DELETE FROM global_names WHERE owner_key = $1").bind(owner_key).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Claims `digest` for a writer about to look for it, or put it, in an object store, at `at`
    /// (ms since the epoch): no collection whose cutoff is at or before `at` deletes it. False while
    /// a collector is deleting it (marked by [`WriteTx::mark_deleting`] at or after
    /// `abandoned`): the writer must wait, then put its own copy. A mark older than that was
    /// left by a collector that stopped, and the claim replaces it.
    pub async fn claim_content(&mut self, digest: &str, at: i64, abandoned: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO content_claims (digest, claimed_at, deleting_since) VALUES ($1, $2, NULL)
             ON CONFLICT (digest) DO UPDATE SET claimed_at = excluded.claimed_at, deleting_since = NULL
             WHERE content_claims.deleting_since IS NULL OR content_claims.deleting_since < $3",
        )
        .bind(digest)
        .bind(at)
        .bind(abandoned)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks `digest` as being deleted by a collector, from `stamp` (ms since the epoch), unless
    /// a writer claimed it at or after `cutoff`, or another collector's mark from `abandoned` on
    /// is there. True if it is marked: the collector may delete it, then
    /// [`WriteTx::unmark_deleting`].
    pub async fn mark_deleting(&mut self, digest: &str, stamp: i64, cutoff: i64, abandoned: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO content_claims (digest, claimed_at, deleting_since) VALUES ($1, 0, $2)
             ON CONFLICT (digest) DO UPDATE SET deleting_since = excluded.deleting_since
             WHERE content_claims.claimed_at < $3
             AND (content_claims.deleting_since IS NULL OR content_claims.deleting_since < $4)",
        )
        .bind(digest)
        .bind(stamp)
        .bind(cutoff)
        .bind(abandoned)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a collector's mark on `digest` (its `stamp`): deleted, or failed to be.
    pub async fn unmark_deleting(&mut self, digest: &str, stamp: i64) -> Result<()> {
        sqlx::query("DELETE FROM content_claims WHERE digest = $1 AND deleting_since = $2")
            .bind(digest)
            .bind(stamp)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Forgets the claims made before `before` (not the marks); returns how many.
    pub async fn prune_claims(&mut self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM content_claims WHERE claimed_at < $1 AND deleting_since IS NULL")
            .bind(before)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn put_meta(&mut self, key: &str, value: &str) -> Result<()> {
        sqlx::query("DELETE FROM meta WHERE key = $1").bind(key).execute(&mut *self.tx).await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)").bind(key).bind(value).execute(&mut *self.tx).await?;
        Ok(())
    }

    pub async fn get_meta(&mut self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&mut *self.tx).await?;
        Ok(row.map(|r| r.try_get::<String, _>("value")).transpose()?)
    }

    pub async fn insert_principal(&mut self, p: &PrincipalRow) -> Result<()> {
        let sql = format!("INSERT INTO principals ({PRINCIPAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
        let q = sqlx::query(&sql)
            .bind(&p.object_id)
            .bind(&p.kind)
            .bind(&p.display_name)
            .bind(&p.app_id)
            .bind(&p.secret_hash)
            .bind(&p.created_at)
            .bind(&p.upn)
            .bind(&p.issuer)
            .bind(&p.subject);
        self.insert_guarded(q, &p.object_id).await?;
        Ok(())
    }

    pub async fn set_principal_secret(&mut self, object_id: &str, secret_hash: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE principals SET secret_hash = $1 WHERE object_id = $2")
            .bind(secret_hash)
            .bind(object_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_principal(&mut self, object_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM role_assignments WHERE principal_id = $1").bind(object_id).execute(&mut *self.tx).await?;
        sqlx::query("DELETE FROM principals WHERE object_id = $1").bind(object_id).execute(&mut *self.tx).await?;
        Ok(())
    }

    pub async fn insert_assignment(&mut self, a: &AssignmentRow) -> Result<()> {
        let q = sqlx::query("INSERT INTO role_assignments (id, principal_id, role_definition_id, scope, scope_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&a.id)
            .bind(&a.principal_id)
            .bind(&a.role_definition_id)
            .bind(&a.scope)
            .bind(a.scope.to_ascii_lowercase())
            .bind(&a.created_at)
            ;
        self.insert_guarded(q, &a.id).await?;
        Ok(())
    }

    pub async fn delete_assignment(&mut self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM role_assignments WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
        Ok(done.rows_affected() == 1)
    }

    /// An assignment of the same principal, role and scope, if one exists.
    pub async fn find_assignment(
        &mut self,
        principal_id: &str,
        role_definition_id: &str,
        scope_key: &str,
    ) -> Result<Option<AssignmentRow>> {
        let row = sqlx::query(&format!(
            "SELECT {ASSIGNMENT_COLS} FROM role_assignments WHERE principal_id = $1 AND role_definition_id = $2 AND scope_key = $3"
        ))
        .bind(principal_id)
        .bind(role_definition_id)
        .bind(scope_key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| assignment_from_row(&r)).transpose()
    }

    pub async fn insert_operation(&mut self, o: &OperationRow) -> Result<()> {
        let q = sqlx::query(
            "INSERT INTO operations (id, subscription_id, location, kind, resource_id, status, error, started_at, ended_at, principal_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&o.id)
        .bind(&o.subscription_id)
        .bind(&o.location)
        .bind(&o.kind)
        .bind(&o.resource_id)
        .bind(&o.status)
        .bind(&o.error)
        .bind(&o.started_at)
        .bind(&o.ended_at)
        .bind(&o.principal_id);
        self.insert_guarded(q, &o.id).await?;
        Ok(())
    }

    /// Inserts entries, up to 256 rows per statement: a group commit of the activity log costs
    /// a few statements (on PostgreSQL round trips), not one per entry. Statements come in five
    /// sizes (256, 64, 16, 4 and 1 rows), so that each connection prepares and keeps five of
    /// them rather than one per batch size. Texts are numbered first (see [`TextIds`]): a
    /// text met before costs a hash lookup, or nothing when the entry before had it too. A text
    /// longer than [`MAX_ACTIVITY_TEXT`] bytes (an unauthenticated request's path, say) is
    /// stored cut there, with its full length noted.
    pub async fn insert_activities(&mut self, rows: &[&ActivityRow]) -> Result<()> {
        const TEXTS: usize = 7;
        fn capped(t: &str) -> std::borrow::Cow<'_, str> {
            if t.len() <= MAX_ACTIVITY_TEXT {
                return t.into();
            }
            let mut cut = MAX_ACTIVITY_TEXT;
            while !t.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… ({} bytes in all)", &t[..cut], t.len()).into()
        }
        fn texts(a: &ActivityRow) -> [Option<&str>; TEXTS] {
            [
                a.principal_id.as_deref(),
                a.principal_name.as_deref(),
                Some(&a.origin),
                Some(&a.action),
                Some(&a.resource_id),
                Some(&a.result),
                Some(&a.rule),
            ]
        }
        let all: Vec<[Option<std::borrow::Cow<'_, str>>; TEXTS]> = rows.iter().map(|a| texts(a).map(|t| t.map(capped))).collect();
        let mut numbered: Vec<[Option<i64>; TEXTS]> = Vec::with_capacity(rows.len());
        let mut unknown: Vec<&str> = Vec::new();
        {
            let known = self.texts.0.lock().unwrap_or_else(|e| e.into_inner());
            let mut prev: [Option<(&str, i64)>; TEXTS] = [None; TEXTS];
            for a in &all {
                let mut ids = [None; TEXTS];
                for (i, t) in a.iter().enumerate() {
                    let Some(t) = t.as_deref() else { continue };
                    ids[i] = match prev[i] {
                        Some((p, id)) if p == t => Some(id),
                        _ => match known.get(t) {
                            Some(id) => {
                                prev[i] = Some((t, *id));
                                Some(*id)
                            }
                            None => {
                                unknown.push(t);
                                None
                            }
                        },
                    };
                }
                numbered.push(ids);
            }
        }
        if !unknown.is_empty() {
            unknown.sort_unstable();
            unknown.dedup();
            let mut found = std::collections::HashMap::with_capacity(unknown.len());
            for t in unknown {
                // The update changes nothing; it makes RETURNING give the number of a text that
                // is already there.
                let id: i64 = sqlx::query(
                    "INSERT INTO activity_text (text) VALUES ($1) ON CONFLICT (text) DO UPDATE SET text = excluded.text RETURNING id",
                )
                .bind(t)
                .fetch_one(&mut *self.tx)
                .await?
                .try_get("id")?;
                found.insert(t, id);
                self.new_texts.push((t.into(), id));
            }
            for (a, ids) in all.iter().zip(numbered.iter_mut()) {
                for (i, t) in a.iter().enumerate() {
                    if let (Some(t), None) = (t.as_deref(), ids[i]) {
                        ids[i] = found.get(t).copied();
                    }
                }
            }
        }
        let mut rest: &[&ActivityRow] = rows;
        let mut rest_ids: &[[Option<i64>; TEXTS]] = &numbered;
        while !rest.is_empty() {
            let n = [256, 64, 16, 4, 1].into_iter().find(|n| *n <= rest.len()).unwrap_or(1);
            let (chunk, after) = rest.split_at(n);
            let (chunk_ids, after_ids) = rest_ids.split_at(n);
            rest = after;
            rest_ids = after_ids;
            let sql = insert_activities_sql(chunk.len(), self.postgres);
            let mut q = sqlx::query(&sql);
            for (a, [principal_id, principal_name, origin, action, resource_id, result, rule]) in chunk.iter().zip(chunk_ids) {
                q = q
                    // Borrowed, not `&String`: sqlx copies a String it is given by reference.
                    .bind(a.id.as_str())
                    .bind(*principal_id)
                    .bind(*principal_name)
                    .bind(a.client.as_str())
                    .bind(*origin)
                    .bind(*action)
                    .bind(*resource_id)
                    .bind(*result)
                    .bind(*rule);
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Creates the container if it does not exist.
    pub async fn ensure_container(&mut self, account: &str, container: &str, now: &str) -> Result<()> {
        let exists = sqlx::query("SELECT sealed FROM blob_containers WHERE account = $1 AND container = $2")
            .bind(account)
            .bind(container)
            .fetch_optional(&mut *self.tx)
            .await?;
        if exists.is_none() {
            sqlx::query("INSERT INTO blob_containers (account, container, sealed, created_at) VALUES ($1, $2, 0, $3)")
                .bind(account)
                .bind(container)
                .bind(now)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Empties a container of its blobs and staged blocks (a deleted asset version's upload
    /// location), keeping the container itself, sealed: a write SAS still valid for it cannot
    /// fill it again. Returns the blobs removed. Their bytes go at the next garbage collection
    /// unless something else refers to them.
    pub async fn empty_container(&mut self, account: &str, container: &str) -> Result<u64> {
        let blobs = sqlx::query("DELETE FROM blobs WHERE account = $1 AND container = $2")
            .bind(account)
            .bind(container)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM blob_blocks WHERE account = $1 AND container = $2")
            .bind(account)
            .bind(container)
            .execute(&mut *self.tx)
            .await?;
        Ok(blobs)
    }

    /// When a blob of the container was last written or a block staged in it, if ever.
    pub async fn container_last_write(&mut self, account: &str, container: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT MAX(t) AS t FROM (
                SELECT MAX(updated_at) AS t FROM blobs WHERE account = $1 AND container = $2
                UNION ALL SELECT MAX(staged_at) FROM blob_blocks WHERE account = $1 AND container = $2) w",
        )
        .bind(account)
        .bind(container)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get::<Option<String>, _>("t")?)
    }

    /// Forgets a storage account's containers, blobs and staged blocks (its registry was
    /// deleted).
    pub async fn forget_account(&mut self, account: &str) -> Result<()> {
        for table in ["blobs", "blob_blocks", "blob_containers"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account = $1")).bind(account).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn seal_container(&mut self, account: &str, container: &str) -> Result<()> {
        sqlx::query("UPDATE blob_containers SET sealed = 1 WHERE account = $1 AND container = $2")
            .bind(account)
            .bind(container)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn container_sealed(&mut self, account: &str, container: &str) -> Result<Option<bool>> {
        let row = sqlx::query("SELECT sealed FROM blob_containers WHERE account = $1 AND container = $2")
            .bind(account)
            .bind(container)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| r.try_get::<i64, _>("sealed")).transpose()?.map(|v| v != 0))
    }

    /// A blob's row, read inside the transaction.
    pub async fn blob(&mut self, account: &str, container: &str, name: &str) -> Result<Option<BlobRow>> {
        blob_in(&mut *self.tx, account, container, name).await
    }

    /// All blobs of a container under `prefix`, read inside the transaction.
    pub async fn list_all_blobs(&mut self, account: &str, container: &str, prefix: &str) -> Result<Vec<BlobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {BLOB_COLS} FROM blobs WHERE account = $1 AND container = $2 AND substr(name, 1, length($3)) = $3 ORDER BY name"
        ))
        .bind(account)
        .bind(container)
        .bind(prefix)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(blob_from_row).collect()
    }

    /// Writes blob `b`, or replaces the blob of its name keeping that one's `created_at`; returns
    /// the `created_at` the row has now. One statement.
    pub async fn put_blob(&mut self, b: &BlobRow) -> Result<String> {
        let (created_at,): (String,) = sqlx::query_as(&format!(
            "INSERT INTO blobs ({BLOB_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (account, container, name) DO UPDATE SET digest = excluded.digest, size = excluded.size,
             etag = excluded.etag, content_type = excluded.content_type, updated_at = excluded.updated_at, parts = excluded.parts,
             metadata = excluded.metadata
             RETURNING created_at"
        ))
        .bind(&b.account)
        .bind(&b.container)
        .bind(&b.name)
        .bind(&b.digest)
        .bind(b.size)
        .bind(&b.etag)
        .bind(&b.content_type)
        .bind(&b.created_at)
        .bind(&b.updated_at)
        .bind(&b.parts)
        .bind(&b.metadata)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(created_at)
    }

    /// Replaces blob `name`'s metadata, giving it a new `etag` and `updated_at`; false when
    /// there is no such blob.
    pub async fn set_blob_metadata(
        &mut self,
        (account, container, name): (&str, &str, &str),
        metadata: Option<&str>,
        etag: &str,
        updated_at: &str,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE blobs SET metadata = $1, etag = $2, updated_at = $3 WHERE account = $4 AND container = $5 AND name = $6")
                .bind(metadata)
                .bind(etag)
                .bind(updated_at)
                .bind(account)
                .bind(container)
                .bind(name)
                .execute(&mut *self.tx)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_blob(&mut self, account: &str, container: &str, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM blobs WHERE account = $1 AND container = $2 AND name = $3")
            .bind(account)
            .bind(container)
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stages (or restages) a block.
    pub async fn put_block(&mut self, b: &BlockRow) -> Result<()> {
        sqlx::query("DELETE FROM blob_blocks WHERE account = $1 AND container = $2 AND name = $3 AND block_id = $4")
            .bind(&b.account)
            .bind(&b.container)
            .bind(&b.name)
            .bind(&b.block_id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(&format!("INSERT INTO blob_blocks ({BLOCK_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&b.account)
            .bind(&b.container)
            .bind(&b.name)
            .bind(&b.block_id)
            .bind(&b.digest)
            .bind(b.size)
            .bind(&b.staged_at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// One of the block IDs staged for the blob, if any: the first in the primary key's order,
    /// found without reading the others (Azure wants all the block IDs of a blob to have one
    /// length, so one tells the length of all).
    pub async fn a_staged_block_id(&mut self, account: &str, container: &str, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT block_id FROM blob_blocks WHERE account = $1 AND container = $2 AND name = $3 ORDER BY block_id LIMIT 1",
        )
        .bind(account)
        .bind(container)
        .bind(name)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// Drops the staged blocks of a blob (its block list committed, or it was put whole or
    /// deleted); returns where the dropped blocks' bytes were (their `digest` column).
    pub async fn clear_blocks(&mut self, account: &str, container: &str, name: &str) -> Result<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("DELETE FROM blob_blocks WHERE account = $1 AND container = $2 AND name = $3 RETURNING digest")
                .bind(account)
                .bind(container)
                .bind(name)
                .fetch_all(&mut *self.tx)
                .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Discards blocks staged before `before` (RFC 3339) and never committed; returns how many.
    pub async fn discard_blocks_staged_before(&mut self, before: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM blob_blocks WHERE staged_at < $1").bind(before).execute(&mut *self.tx).await?;
        Ok(done.rows_affected())
    }

    pub async fn delete_signing_key(&mut self, kid: &str) -> Result<()> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1").bind(kid).execute(&mut *self.tx).await?;
        Ok(())
    }

    pub async fn insert_signing_key(&mut self, k: &SigningKeyRow) -> Result<()> {
        let q = sqlx::query("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES ($1, $2, $3)")
            .bind(&k.kid)
            .bind(&k.pkcs8_b64)
            .bind(&k.created_at);
        self.insert_guarded(q, &k.kid).await?;
        Ok(())
    }
}
