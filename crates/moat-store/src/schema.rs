//! Schema migrations: an ordered list of portable SQL statements, applied once each and
//! recorded in `schema_migrations`. Never edit a released step; append a new one. A statement
//! that starts with `sqlite:` or `postgres:` runs on that backend only (where their dialects
//! differ).

use sqlx::Row;

use crate::{Result, Store};

/// Migration 9's activity table, the same on both backends but for SQLite's `WITHOUT ROWID`.
macro_rules! activity_table {
    ($backend:literal, $options:literal) => {
        concat!(
            $backend,
            "CREATE TABLE activity (
            id TEXT PRIMARY KEY,
            principal_id BIGINT,
            principal_name BIGINT,
            client TEXT NOT NULL,
            origin BIGINT NOT NULL,
            action BIGINT NOT NULL,
            resource_id BIGINT NOT NULL,
            result BIGINT NOT NULL,
            rule BIGINT NOT NULL)",
            $options
        )
    };
}

/// Migration 9's cut of an old activity text over 1,024 bytes in column `$c`.
macro_rules! cut_long_text {
    ($c:literal) => {
        concat!(
            "UPDATE activity_log SET ",
            $c,
            " = substr(",
            $c,
            ", 1, 600) || '… (' || octet_length(",
            $c,
            ") || ' bytes in all)' WHERE octet_length(",
            $c,
            ") > 1024"
        )
    };
}

const STEPS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE resources (
            id_key TEXT PRIMARY KEY,
            id TEXT NOT NULL,
            kind TEXT NOT NULL,
            subscription_id TEXT NOT NULL,
            group_key TEXT,
            name TEXT NOT NULL,
            body TEXT NOT NULL,
            etag TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)",
            "CREATE INDEX resources_by_scope ON resources (subscription_id, kind, group_key, id_key)",
            "CREATE TABLE global_names (
            namespace TEXT NOT NULL,
            name_key TEXT NOT NULL,
            owner_key TEXT NOT NULL,
            PRIMARY KEY (namespace, name_key))",
            "CREATE INDEX global_names_by_owner ON global_names (owner_key)",
            "CREATE TABLE principals (
            object_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            display_name TEXT NOT NULL,
            app_id TEXT UNIQUE,
            secret_hash TEXT,
            created_at TEXT NOT NULL)",
            "CREATE TABLE role_assignments (
            id TEXT PRIMARY KEY,
            principal_id TEXT NOT NULL,
            role_definition_id TEXT NOT NULL,
            scope TEXT NOT NULL,
            scope_key TEXT NOT NULL,
            created_at TEXT NOT NULL)",
            "CREATE INDEX role_assignments_by_principal ON role_assignments (principal_id)",
            "CREATE TABLE operations (
            id TEXT PRIMARY KEY,
            subscription_id TEXT NOT NULL,
            location TEXT NOT NULL,
            kind TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            principal_id TEXT NOT NULL)",
            "CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, pkcs8 TEXT NOT NULL, created_at TEXT NOT NULL)",
        ],
    ),
    (
        2,
        &[
            // Users sign in by user principal name (stored lower-cased).
            "ALTER TABLE principals ADD COLUMN upn TEXT",
            "CREATE UNIQUE INDEX principals_by_upn ON principals (upn)",
            "CREATE INDEX role_assignments_by_scope ON role_assignments (scope_key)",
            "CREATE TABLE activity_log (
            id TEXT PRIMARY KEY,
            time TEXT NOT NULL,
            principal_id TEXT,
            principal_name TEXT,
            client TEXT NOT NULL,
            origin TEXT NOT NULL,
            action TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            result TEXT NOT NULL,
            rule TEXT NOT NULL)",
            "CREATE INDEX activity_log_by_time ON activity_log (time)",
        ],
    ),
    (
        3,
        &[
            // Users who sign in through a trusted external OpenID Connect issuer.
            "ALTER TABLE principals ADD COLUMN issuer TEXT",
            "ALTER TABLE principals ADD COLUMN subject TEXT",
            "CREATE UNIQUE INDEX principals_by_external_identity ON principals (issuer, subject)",
        ],
    ),
    (
        4,
        &[
            // The blob plane: named blobs of the managed storage accounts, pointing into the
            // content-addressed store, and blocks staged for a later block list.
            "CREATE TABLE blob_containers (
            account TEXT NOT NULL,
            container TEXT NOT NULL,
            sealed BIGINT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (account, container))",
            "CREATE TABLE blobs (
            account TEXT NOT NULL,
            container TEXT NOT NULL,
            name TEXT NOT NULL,
            digest TEXT NOT NULL,
            size BIGINT NOT NULL,
            etag TEXT NOT NULL,
            content_type TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (account, container, name))",
            "CREATE TABLE blob_blocks (
            account TEXT NOT NULL,
            container TEXT NOT NULL,
            name TEXT NOT NULL,
            block_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            size BIGINT NOT NULL,
            staged_at TEXT NOT NULL,
            PRIMARY KEY (account, container, name, block_id))",
        ],
    ),
    (
        5,
        &[
            // A blob committed from blocks is the list of its parts (JSON [[digest, size], ...]);
            // its own digest is that of the whole, computed without writing it again.
            "ALTER TABLE blobs ADD COLUMN parts TEXT",
        ],
    ),
    (
        6,
        &[
            // The container registry plane (OCI Distribution): blobs linked into repositories,
            // manifests, tags, upload sessions. `sha256` keys the content-addressed store.
            "CREATE TABLE oci_blobs (
            acr TEXT NOT NULL,
            repo TEXT NOT NULL,
            digest TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size BIGINT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (acr, repo, digest))",
            "CREATE INDEX oci_blobs_by_digest ON oci_blobs (acr, digest)",
            "CREATE INDEX oci_blobs_by_bytes ON oci_blobs (sha256)",
            "CREATE TABLE oci_manifests (
            acr TEXT NOT NULL,
            repo TEXT NOT NULL,
            digest TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            media_type TEXT NOT NULL,
            size BIGINT NOT NULL,
            subject TEXT,
            artifact_type TEXT,
            annotations TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (acr, repo, digest))",
            "CREATE INDEX oci_manifests_by_subject ON oci_manifests (acr, repo, subject)",
            "CREATE INDEX oci_manifests_by_bytes ON oci_manifests (sha256)",
            "CREATE TABLE oci_tags (
            acr TEXT NOT NULL,
            repo TEXT NOT NULL,
            tag TEXT NOT NULL,
            digest TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (acr, repo, tag))",
            "CREATE INDEX oci_tags_by_digest ON oci_tags (acr, repo, digest)",
            "CREATE TABLE oci_uploads (
            id TEXT PRIMARY KEY,
            acr TEXT NOT NULL,
            repo TEXT NOT NULL,
            length BIGINT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)",
        ],
    ),
    (
        7,
        &[
            // Manifests that committed environment versions pin: they cannot be deleted.
            "CREATE TABLE oci_pins (
            acr TEXT NOT NULL,
            repo TEXT NOT NULL,
            digest TEXT NOT NULL,
            asset_key TEXT NOT NULL,
            PRIMARY KEY (acr, repo, digest, asset_key))",
            "CREATE INDEX oci_pins_by_asset ON oci_pins (asset_key)",
        ],
    ),
    (
        8,
        &[
            // Activity IDs begin with their time, so the primary key orders and bounds entries by
            // time; a second index cost every logged decision one more insert.
            "DROP INDEX activity_log_by_time",
        ],
    ),
    (
        9,
        &[
            // The activity log keeps each distinct text (principal, action, resource, rule …)
            // once, in `activity_text`, and an entry refers to its texts by number: an entry
            // takes ~70 bytes instead of ~570, and the log grows, writes and fsyncs that much
            // less. An entry's time is the start of its ID, no longer stored twice. SQLite keeps
            // entries in their primary key's tree (WITHOUT ROWID), not in a second one beside it.
            "sqlite: CREATE TABLE activity_text (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)",
            "postgres: CREATE TABLE activity_text (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, text TEXT NOT NULL UNIQUE)",
            activity_table!("sqlite: ", " WITHOUT ROWID"),
            activity_table!("postgres: ", ""),
            // Texts are indexed now, and PostgreSQL refuses an index entry over ~2.7 kB: an old
            // text over 1,024 bytes is cut (to 600 characters, at most 2,400 bytes) before the
            // copy, as moat cuts new ones (see MAX_ACTIVITY_TEXT).
            cut_long_text!("principal_id"),
            cut_long_text!("principal_name"),
            cut_long_text!("origin"),
            cut_long_text!("action"),
            cut_long_text!("resource_id"),
            cut_long_text!("result"),
            cut_long_text!("rule"),
            "INSERT INTO activity_text (text) SELECT t FROM (
            SELECT principal_id AS t FROM activity_log UNION SELECT principal_name FROM activity_log
            UNION SELECT origin FROM activity_log UNION SELECT action FROM activity_log
            UNION SELECT resource_id FROM activity_log UNION SELECT result FROM activity_log
            UNION SELECT rule FROM activity_log) AS texts WHERE t IS NOT NULL ORDER BY t",
            "INSERT INTO activity (id, principal_id, principal_name, client, origin, action, resource_id, result, rule)
            SELECT l.id,
            (SELECT x.id FROM activity_text x WHERE x.text = l.principal_id),
            (SELECT x.id FROM activity_text x WHERE x.text = l.principal_name),
            l.client,
            (SELECT x.id FROM activity_text x WHERE x.text = l.origin),
            (SELECT x.id FROM activity_text x WHERE x.text = l.action),
            (SELECT x.id FROM activity_text x WHERE x.text = l.resource_id),
            (SELECT x.id FROM activity_text x WHERE x.text = l.result),
            (SELECT x.id FROM activity_text x WHERE x.text = l.rule)
            FROM activity_log l",
            "DROP TABLE activity_log",
        ],
    ),
    (
        10,
        &[
            // Garbage collection of an object store (see moat-core's blobs.rs): a writer claims
            // the content it is about to look for, or put, in the store, and a collector marks
            // what it is deleting, so that neither acts on the other's content meanwhile. Times
            // are milliseconds since the epoch; `deleting_since` is set while a collector
            // deletes the content.
            "CREATE TABLE content_claims (digest TEXT PRIMARY KEY, claimed_at BIGINT NOT NULL, deleting_since BIGINT)",
        ],
    ),
    (
        11,
        &[
            // Tags list in the OCI spec's case-insensitive order: with this index a page starts
            // where the last one ended and reads only its own rows, instead of sorting all of a
            // repository's tags for every page.
            "CREATE INDEX oci_tags_in_order ON oci_tags (acr, repo, lower(tag), tag)",
        ],
    ),
    (
        12,
        &[
            // A blob's user-defined metadata (x-ms-meta-*), as a JSON object of name to value.
            "ALTER TABLE blobs ADD COLUMN metadata TEXT",
        ],
    ),
];

pub(crate) async fn migrate(store: &Store, upto: i64) -> Result<()> {
    // Inside the write transaction: on PostgreSQL its lock keeps two starting nodes from
    // migrating at once.
    let mut tx = store.write().await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
        .execute(&mut *tx.tx)
        .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx.tx)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>("version"))
        .collect::<Result<_, _>>()?;
    for (version, statements) in STEPS {
        if applied.contains(version) || *version > upto {
            continue;
        }
        for stmt in *statements {
            let stmt = match (stmt.strip_prefix("sqlite: "), stmt.strip_prefix("postgres: ")) {
                (Some(_), _) if store.postgres => continue,
                (_, Some(_)) if !store.postgres => continue,
                (Some(s), _) | (_, Some(s)) => s,
                (None, None) => stmt,
            };
            sqlx::query(stmt).execute(&mut *tx.tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(format!("{version}"))
            .execute(&mut *tx.tx)
            .await?;
        tracing::info!(version, "applied schema migration");
    }
    tx.commit().await
}
