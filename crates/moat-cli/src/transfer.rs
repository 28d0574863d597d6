//! What the CLI adds to moat-client's transfers: a progress bar on a terminal (coarse progress
//! lines elsewhere), and the record of an upload in progress, so that running the same
//! `create` again after an interruption reuses its upload location and sends only what is missing.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moat_client::blobs::Progress;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// A progress display for `total` bytes; finish it with [`Meter::finish`].
pub struct Meter {
    bar: Option<indicatif::ProgressBar>,
}

impl Meter {
    pub fn new(verb: &'static str, total: u64) -> (Meter, Progress) {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(verb);
            let b = bar.clone();
            return (Meter { bar: Some(bar) }, Arc::new(move |n| b.inc(n)));
        }
        // Not a terminal: a line at every tenth, for logs and for whoever watches them.
        let done = Arc::new(AtomicU64::new(0));
        let tenth = Arc::new(AtomicU64::new(0));
        let progress: Progress = Arc::new(move |n| {
            let now = done.fetch_add(n, Ordering::Relaxed) + n;
            let t = now.saturating_mul(10).checked_div(total).unwrap_or(10);
            if t > tenth.fetch_max(t, Ordering::Relaxed) {
                eprintln!("{verb}: {}% ({now} of {total} bytes)", t * 10);
            }
        });
        (Meter { bar: None }, progress)
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// An upload started by `create` and not yet committed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingUpload {
    pub version_path: String,
    pub source: String,
    pub blob_uri: String,
    pub sas_uri: String,
}

/// Where upload records live: $MOAT_STATE_DIR, else $XDG_STATE_HOME/moat, else ~/.local/state/moat.
fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MOAT_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("moat");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/moat")
}

fn record_path(endpoint: &str, version_path: &str, source: &Path) -> PathBuf {
    let abs = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
    let key = sha2::Sha256::digest(format!("{endpoint}\n{}\n{}", version_path.to_lowercase(), abs.display()).as_bytes());
    let name: String = key[..8].iter().map(|b| format!("{b:02x}")).collect();
    state_dir().join("uploads").join(format!("{name}.json"))
}

/// Seconds since the epoch at which a SAS URL's `se` expiry falls, if it has one.
fn sas_expiry(sas_uri: &str) -> Option<i64> {
    let query = sas_uri.split_once('?')?.1;
    let se = query.split('&').find_map(|p| p.strip_prefix("se="))?;
    let se = moat_types::uri::percent_decode(se, true)?;
    time::OffsetDateTime::parse(&se, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

impl PendingUpload {
    /// The record of an unfinished upload of `source` into this version, if one is still usable
    /// (its SAS has at least ten minutes left).
    pub fn load(endpoint: &str, version_path: &str, source: &Path) -> Option<PendingUpload> {
        let path = record_path(endpoint, version_path, source);
        let rec: PendingUpload = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
        let fresh = sas_expiry(&rec.sas_uri).is_some_and(|e| e > time::OffsetDateTime::now_utc().unix_timestamp() + 600);
        if !fresh || !rec.version_path.eq_ignore_ascii_case(version_path) {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(rec)
    }

    /// Writes the record (best effort: without it the upload still works, it just cannot resume).
    pub fn save(&self, endpoint: &str, source: &Path) {
        let path = record_path(endpoint, &self.version_path, source);
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            eprintln!("warning: cannot record the upload in {} ({e}); an interrupted upload will start over", path.display());
        }
    }

    pub fn forget(endpoint: &str, version_path: &str, source: &Path) {
        let _ = std::fs::remove_file(record_path(endpoint, version_path, source));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_expiry_of_a_sas() {
        assert_eq!(sas_expiry("http://h/a/c?sv=2025-01-05&se=2026-01-01T00%3A00%3A00Z&sig=x"), Some(1767225600));
        assert_eq!(sas_expiry("http://h/a/c?sv=1&sig=x"), None);
        assert_eq!(sas_expiry("http://h/a/c"), None);
    }
}
