//! The container registry plane's metadata: which repository holds which blob, manifests,
//! tags, and upload sessions. Bytes live in the content-addressed store; rows name them by
//! sha256 whatever digest the client used.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, WriteTx};

/// A blob linked into a repository (pushed or mounted there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciBlobRow {
    pub acr: String,
    pub repo: String,
    /// The digest as the client named it (`sha256:…` or `sha512:…`).
    pub digest: String,
    /// The key of the bytes in the content-addressed store.
    pub sha256: String,
    pub size: i64,
    pub created_at: String,
}

/// A manifest of a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciManifestRow {
    pub acr: String,
    pub repo: String,
    pub digest: String,
    pub sha256: String,
    pub media_type: String,
    pub size: i64,
    pub subject: Option<String>,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
    pub created_at: String,
}

/// An upload session: its bytes so far are `length` long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciUploadRow {
    pub id: String,
    pub acr: String,
    pub repo: String,
    pub length: i64,
    pub created_at: String,
    pub updated_at: String,
}

const BLOB_COLS: &str = "acr, repo, digest, sha256, size, created_at";
const MANIFEST_COLS: &str = "acr, repo, digest, sha256, media_type, size, subject, artifact_type, annotations, created_at";
const UPLOAD_COLS: &str = "id, acr, repo, length, created_at, updated_at";

fn blob_from(r: &AnyRow) -> Result<OciBlobRow> {
    Ok(OciBlobRow {
        acr: r.try_get("acr")?,
        repo: r.try_get("repo")?,
        digest: r.try_get("digest")?,
        sha256: r.try_get("sha256")?,
        size: r.try_get("size")?,
        created_at: r.try_get("created_at")?,
    })
}

fn manifest_from(r: &AnyRow) -> Result<OciManifestRow> {
    Ok(OciManifestRow {
        acr: r.try_get("acr")?,
        repo: r.try_get("repo")?,
        digest: r.try_get("digest")?,
        sha256: r.try_get("sha256")?,
        media_type: r.try_get("media_type")?,
        size: r.try_get("size")?,
        subject: r.try_get("subject")?,
        artifact_type: r.try_get("artifact_type")?,
        annotations: r.try_get("annotations")?,
        created_at: r.try_get("created_at")?,
    })
}

fn upload_from(r: &AnyRow) -> Result<OciUploadRow> {
    Ok(OciUploadRow {
        id: r.try_get("id")?,
        acr: r.try_get("acr")?,
        repo: r.try_get("repo")?,
        length: r.try_get("length")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn oci_blob(&self, acr: &str, repo: &str, digest: &str) -> Result<Option<OciBlobRow>> {
        let row = sqlx::query(&format!("SELECT {BLOB_COLS} FROM oci_blobs WHERE acr = $1 AND repo = $2 AND digest = $3"))
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(blob_from).transpose()
    }

    /// A blob of that digest in any repository of the container registry.
    pub async fn oci_blob_anywhere(&self, acr: &str, digest: &str) -> Result<Option<OciBlobRow>> {
        let row = sqlx::query(&format!("SELECT {BLOB_COLS} FROM oci_blobs WHERE acr = $1 AND digest = $2 LIMIT 1"))
            .bind(acr)
            .bind(digest)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(blob_from).transpose()
    }

    pub async fn oci_manifest(&self, acr: &str, repo: &str, digest: &str) -> Result<Option<OciManifestRow>> {
        let row = sqlx::query(&format!("SELECT {MANIFEST_COLS} FROM oci_manifests WHERE acr = $1 AND repo = $2 AND digest = $3"))
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(manifest_from).transpose()
    }

    /// The digest a tag points at.
    pub async fn oci_tag(&self, acr: &str, repo: &str, tag: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT digest FROM oci_tags WHERE acr = $1 AND repo = $2 AND tag = $3")
            .bind(acr)
            .bind(repo)
            .bind(tag)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("digest")).transpose()?)
    }

    /// Tags of a repository in the spec's lexical order (case-insensitive; tags equal but for
    /// case in byte order) after `after`, at most `limit`.
    pub async fn oci_tags(&self, acr: &str, repo: &str, after: Option<&str>, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT tag FROM oci_tags WHERE acr = $1 AND repo = $2 \
             AND (lower(tag) > lower($3) OR (lower(tag) = lower($3) AND tag > $3)) \
             ORDER BY lower(tag), tag LIMIT $4",
        )
        .bind(acr)
        .bind(repo)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("tag")?)).collect()
    }

    /// Whether anything (a blob or a manifest) was pushed to the repository.
    pub async fn oci_repo_exists(&self, acr: &str, repo: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS x FROM oci_manifests WHERE acr = $1 AND repo = $2 \
             UNION ALL SELECT 1 AS x FROM oci_blobs WHERE acr = $1 AND repo = $2 LIMIT 1",
        )
        .bind(acr)
        .bind(repo)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// The manifests of a repository whose subject is `subject`, by digest.
    pub async fn oci_referrers(&self, acr: &str, repo: &str, subject: &str) -> Result<Vec<OciManifestRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {MANIFEST_COLS} FROM oci_manifests WHERE acr = $1 AND repo = $2 AND subject = $3 ORDER BY digest"
        ))
        .bind(acr)
        .bind(repo)
        .bind(subject)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(manifest_from).collect()
    }

    pub async fn oci_upload(&self, id: &str) -> Result<Option<OciUploadRow>> {
        let row = sqlx::query(&format!("SELECT {UPLOAD_COLS} FROM oci_uploads WHERE id = $1")).bind(id).fetch_optional(self.pool()).await?;
        row.as_ref().map(upload_from).transpose()
    }

    /// Upload sessions last written before `before` (RFC 3339), oldest first.
    pub async fn oci_uploads_idle_since(&self, before: &str, limit: i64) -> Result<Vec<OciUploadRow>> {
        let rows = sqlx::query(&format!("SELECT {UPLOAD_COLS} FROM oci_uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2"))
            .bind(before)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(upload_from).collect()
    }

    /// Whether any repository of any container registry still references these bytes.
    pub async fn oci_bytes_referenced(&self, sha256: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS x FROM oci_blobs WHERE sha256 = $1 UNION ALL SELECT 1 AS x FROM oci_manifests WHERE sha256 = $1 LIMIT 1",
        )
        .bind(sha256)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }
}

impl WriteTx {
    /// Links a blob into a repository (nothing happens if it is there).
    pub async fn oci_link_blob(&mut self, b: &OciBlobRow) -> Result<()> {
        let exists = sqlx::query("SELECT 1 AS x FROM oci_blobs WHERE acr = $1 AND repo = $2 AND digest = $3")
            .bind(&b.acr)
            .bind(&b.repo)
            .bind(&b.digest)
            .fetch_optional(&mut *self.tx)
            .await?;
        if exists.is_none() {
            sqlx::query(&format!("INSERT INTO oci_blobs ({BLOB_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"))
                .bind(&b.acr)
                .bind(&b.repo)
                .bind(&b.digest)
                .bind(&b.sha256)
                .bind(b.size)
                .bind(&b.created_at)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    pub async fn oci_blob(&mut self, acr: &str, repo: &str, digest: &str) -> Result<Option<OciBlobRow>> {
        let row = sqlx::query(&format!("SELECT {BLOB_COLS} FROM oci_blobs WHERE acr = $1 AND repo = $2 AND digest = $3"))
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(blob_from).transpose()
    }

    pub async fn oci_manifest(&mut self, acr: &str, repo: &str, digest: &str) -> Result<Option<OciManifestRow>> {
        let row = sqlx::query(&format!("SELECT {MANIFEST_COLS} FROM oci_manifests WHERE acr = $1 AND repo = $2 AND digest = $3"))
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(manifest_from).transpose()
    }

    pub async fn oci_unlink_blob(&mut self, acr: &str, repo: &str, digest: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM oci_blobs WHERE acr = $1 AND repo = $2 AND digest = $3")
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stores a manifest (replacing an equal one: the digest names the content).
    pub async fn oci_put_manifest(&mut self, m: &OciManifestRow) -> Result<()> {
        sqlx::query("DELETE FROM oci_manifests WHERE acr = $1 AND repo = $2 AND digest = $3")
            .bind(&m.acr)
            .bind(&m.repo)
            .bind(&m.digest)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(&format!("INSERT INTO oci_manifests ({MANIFEST_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&m.acr)
            .bind(&m.repo)
            .bind(&m.digest)
            .bind(&m.sha256)
            .bind(&m.media_type)
            .bind(m.size)
            .bind(&m.subject)
            .bind(&m.artifact_type)
            .bind(&m.annotations)
            .bind(&m.created_at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Removes a manifest and every tag pointing at it; false if it was not there.
    pub async fn oci_delete_manifest(&mut self, acr: &str, repo: &str, digest: &str) -> Result<bool> {
        sqlx::query("DELETE FROM oci_tags WHERE acr = $1 AND repo = $2 AND digest = $3")
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .execute(&mut *self.tx)
            .await?;
        let done = sqlx::query("DELETE FROM oci_manifests WHERE acr = $1 AND repo = $2 AND digest = $3")
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Points a tag at a manifest.
    pub async fn oci_put_tag(&mut self, acr: &str, repo: &str, tag: &str, digest: &str, now: &str) -> Result<()> {
        self.oci_delete_tag(acr, repo, tag).await?;
        sqlx::query("INSERT INTO oci_tags (acr, repo, tag, digest, updated_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(acr)
            .bind(repo)
            .bind(tag)
            .bind(digest)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn oci_delete_tag(&mut self, acr: &str, repo: &str, tag: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM oci_tags WHERE acr = $1 AND repo = $2 AND tag = $3")
            .bind(acr)
            .bind(repo)
            .bind(tag)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn oci_insert_upload(&mut self, u: &OciUploadRow) -> Result<()> {
        sqlx::query(&format!("INSERT INTO oci_uploads ({UPLOAD_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"))
            .bind(&u.id)
            .bind(&u.acr)
            .bind(&u.repo)
            .bind(u.length)
            .bind(&u.created_at)
            .bind(&u.updated_at)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Moves an upload from length `from` to `to`; false if its length was no longer `from`.
    pub async fn oci_advance_upload(&mut self, id: &str, from: i64, to: i64, now: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE oci_uploads SET length = $1, updated_at = $2 WHERE id = $3 AND length = $4")
            .bind(to)
            .bind(now)
            .bind(id)
            .bind(from)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that an asset version (by key) pins a manifest.
    pub async fn oci_pin(&mut self, acr: &str, repo: &str, digest: &str, asset_key: &str) -> Result<()> {
        sqlx::query("INSERT INTO oci_pins (acr, repo, digest, asset_key) VALUES ($1, $2, $3, $4)")
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .bind(asset_key)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Drops the pins of an asset version.
    pub async fn oci_unpin(&mut self, asset_key: &str) -> Result<()> {
        sqlx::query("DELETE FROM oci_pins WHERE asset_key = $1").bind(asset_key).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// An asset version pinning the manifest, if any.
    pub async fn oci_pinned_by(&mut self, acr: &str, repo: &str, digest: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT asset_key FROM oci_pins WHERE acr = $1 AND repo = $2 AND digest = $3 LIMIT 1")
            .bind(acr)
            .bind(repo)
            .bind(digest)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(row.map(|r| r.try_get("asset_key")).transpose()?)
    }

    /// The pinned manifests of a repository, with the asset version pinning each.
    pub async fn oci_pins_in(&mut self, acr: &str, repo: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT digest, asset_key FROM oci_pins WHERE acr = $1 AND repo = $2 ORDER BY digest")
            .bind(acr)
            .bind(repo)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("digest")?, r.try_get("asset_key")?))).collect()
    }

    /// Forgets everything of a container registry (deleted with its registry). Upload sessions
    /// go too; their files are removed when the server next starts.
    pub async fn oci_forget(&mut self, acr: &str) -> Result<()> {
        for table in ["oci_blobs", "oci_manifests", "oci_tags", "oci_uploads", "oci_pins"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE acr = $1")).bind(acr).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn oci_delete_upload(&mut self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM oci_uploads WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
        Ok(done.rows_affected() == 1)
    }
}
