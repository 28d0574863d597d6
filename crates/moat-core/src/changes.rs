//! Keeping every node's in-memory views in step when several moat nodes share one database.
//! A node that changes what a view is built from (the network, roles and assignments) writes a
//! fresh mark under the view's key in the store after committing; every node polls the marks
//! ([`Moat::follow_changes`]) and rebuilds a view whose mark moved, so a switch flipped or an
//! assignment removed on one node takes effect on the others within the poll interval.

use std::sync::Arc;
use std::time::Duration;

use crate::{Moat, Result};

/// The network view (networks, endpoints, switches, DNS).
pub const NETWORK: &str = "change.network";
/// The authorization index (roles, assignments, principals).
pub const AUTHZ: &str = "change.authz";

impl Moat {
    /// Records that this node changed what `view` is built from.
    pub(crate) async fn announce(&self, view: &'static str) -> Result<()> {
        // One process owns an SQLite database: there is no other node to tell.
        if self.store.backend() == "sqlite" {
            return Ok(());
        }
        let mark = uuid::Uuid::new_v4().simple().to_string();
        let mut tx = self.store.write().await?;
        tx.put_meta(view, &mark).await?;
        tx.commit().await?;
        if let Ok(mut seen) = self.seen_changes.lock() {
            seen.insert(view, mark);
        }
        Ok(())
    }

    /// Rebuilds the views whose marks another node moved; returns which.
    pub async fn catch_up(&self) -> Result<Vec<&'static str>> {
        let mut rebuilt = Vec::new();
        for view in [NETWORK, AUTHZ] {
            let Some(mark) = self.store.get_meta(view).await? else { continue };
            let known = self.seen_changes.lock().ok().and_then(|s| s.get(view).cloned());
            if known.as_deref() == Some(mark.as_str()) {
                continue;
            }
            // Note the mark first: a change landing during the rebuild moves it again.
            if let Ok(mut seen) = self.seen_changes.lock() {
                seen.insert(view, mark);
            }
            if view == NETWORK {
                self.rebuild_network().await?;
            } else {
                self.rebuild_authz().await?;
            }
            rebuilt.push(view);
        }
        Ok(rebuilt)
    }

    /// Polls for other nodes' changes every `every` until `stop` turns true.
    pub async fn follow_changes(self: Arc<Self>, every: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        // The views were built at start: what is marked now is already in them.
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, "cannot read the change marks");
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            match self.catch_up().await {
                Ok(views) if !views.is_empty() => tracing::info!(?views, "rebuilt after changes on another node"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot follow changes from other nodes"),
            }
        }
    }
}
