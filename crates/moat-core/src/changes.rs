//! Keeping every node's in-memory views in step when several moat nodes share one database.
//! A node that changes what a view is built from (the network, roles and assignments) writes a
//! fresh mark under the view's key in the store after committing, before it answers. Every
//! node reads the marks (one query) before it judges a request ([`Moat::fresh`]) and rebuilds a
//! view whose mark moved, so a switch flipped or an assignment removed on one node applies to
//! the very next request on any other; between requests, nodes also poll the marks
//! ([`Moat::follow_changes`]) so that what a view drives by itself (endpoint listeners, DNS
//! answers) follows within the poll interval.

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

    /// Brings the views up to date with changes other nodes committed, before a request is
    /// judged. Free on SQLite (one process owns the database).
    pub(crate) async fn fresh(&self) -> Result<()> {
        if self.store.backend() == "sqlite" {
            return Ok(());
        }
        self.catch_up().await.map(|_| ())
    }

    /// Rebuilds the views whose marks another node moved; returns which. Concurrent callers
    /// that see a moved mark wait for the one rebuilding, so none judges with the old view.
    pub async fn catch_up(&self) -> Result<Vec<&'static str>> {
        let marks = self.store.get_metas(&[NETWORK, AUTHZ]).await?;
        let moved = |marks: &[(String, String)]| -> Vec<(&'static str, String)> {
            let seen = self.seen_changes.lock().map(|s| s.clone()).unwrap_or_default();
            [NETWORK, AUTHZ]
                .into_iter()
                .filter_map(|view| {
                    let mark = marks.iter().find(|(k, _)| k == view)?.1.clone();
                    (seen.get(view) != Some(&mark)).then_some((view, mark))
                })
                .collect()
        };
        if moved(&marks).is_empty() {
            return Ok(Vec::new());
        }
        let _one_at_a_time = self.catching_up.lock().await;
        // Another caller may have rebuilt while this one waited.
        let mut rebuilt = Vec::new();
        for (view, mark) in moved(&marks) {
            if view == NETWORK {
                self.rebuild_network().await?;
            } else {
                self.rebuild_authz().await?;
            }
            // Noted after the rebuild, as the mark read before it: a change landing meanwhile
            // moves the mark again and is picked up by the next check.
            if let Ok(mut seen) = self.seen_changes.lock() {
                seen.insert(view, mark);
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
