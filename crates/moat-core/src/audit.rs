//! The activity (audit) log: every authentication failure and every authorization decision.
//! Denials and decisions on anything but a read are durable before the request is answered;
//! allowed reads too when the operator asks for it (`audit_reads = "durable"`), otherwise they
//! are written by the same group commit without the request waiting for it (see [`AuditReads`]).
//! Writes are group-committed by one task, so concurrent requests share an fsync instead of
//! queueing for one each.

use moat_store::{ActivityQuery, ActivityRow, Store};
use moat_types::ResourceId;
use tokio::sync::{mpsc, oneshot};

use crate::{Caller, Error, Moat, Result};

/// Most entries one commit takes.
const BATCH: usize = 512;

/// How long a batch of entries nobody waits for lingers for more to join it (an entry that
/// someone waits for ends the wait at once).
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// Allowed reads written without waiting that may be queued at once; past it, reads wait for
/// their entry like any other decision, so a writer that falls behind slows readers down
/// instead of growing memory.
const MAX_UNAWAITED: usize = 16_384;

/// An entry to write (none: a flush marker), and whom to tell once it is durable.
struct Pending {
    row: Option<ActivityRow>,
    done: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

/// When the answer to an allowed read waits for its activity entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditReads {
    /// Written by the next group commit (within about 10 ms) while the answer goes
    /// out; a crash of the process can lose the entries of the reads answered in its last
    /// moments. Denials and every other decision are durable before the answer regardless.
    #[default]
    Async,
    /// Every entry is durable before the answer, reads included (about half the read
    /// throughput: every read waits for an fsync).
    Durable,
}

impl AuditReads {
    /// Parses the configuration value: `async` or `durable`.
    pub fn parse(s: &str) -> Option<AuditReads> {
        match s {
            "async" => Some(AuditReads::Async),
            "durable" => Some(AuditReads::Durable),
            _ => None,
        }
    }
}

/// Unauthenticated refusals logged per client address per minute; beyond this, refusals from
/// that address are counted and summarised in one entry, so that anonymous traffic cannot grow
/// the log (and its fsyncs) without bound.
pub const REFUSALS_PER_MINUTE: u32 = 120;

/// Rate limit for logging refusals of unauthenticated requests, by client address.
#[derive(Debug, Default)]
pub struct RefusalLimiter {
    windows: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32, u64)>>,
}

impl RefusalLimiter {
    /// Whether to log this refusal, and how many were suppressed in the window that just closed.
    pub fn admit(&self, client: &str) -> (bool, u64) {
        let ip = client.rsplit_once(':').map(|(ip, _)| ip).unwrap_or(client).to_string();
        let Ok(mut map) = self.windows.lock() else { return (true, 0) };
        let now = std::time::Instant::now();
        if map.len() > 100_000 {
            map.retain(|_, (start, _, _)| now.duration_since(*start).as_secs() < 60);
        }
        let (start, count, suppressed) = map.entry(ip).or_insert((now, 0, 0));
        let mut closed = 0;
        if now.duration_since(*start).as_secs() >= 60 {
            closed = *suppressed;
            *start = now;
            *count = 0;
            *suppressed = 0;
        }
        *count += 1;
        if *count > REFUSALS_PER_MINUTE {
            *suppressed += 1;
            return (false, closed);
        }
        (true, closed)
    }
}

/// Handle to the activity log writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Pending>,
    reads: AuditReads,
    /// Entries queued without a waiter and not yet written.
    unawaited: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer task on `store`.
    pub fn start(store: Store, reads: AuditReads) -> AuditLog {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let unawaited = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let written = unawaited.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let drain = |batch: &mut Vec<Pending>, rx: &mut mpsc::UnboundedReceiver<Pending>| {
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                };
                drain(&mut batch, &mut rx);
                // Nobody waits for these entries (allowed reads): let more join the commit, which
                // costs about the same for one entry as for hundreds, until the batch is full or
                // an entry arrives that someone waits for.
                if batch.len() < BATCH && batch.iter().all(|p| p.done.is_none()) {
                    let until = tokio::time::Instant::now() + LINGER;
                    while batch.len() < BATCH {
                        match tokio::time::timeout_at(until, rx.recv()).await {
                            Ok(Some(p)) => {
                                let waited_for = p.done.is_some();
                                batch.push(p);
                                if waited_for {
                                    break;
                                }
                            }
                            Ok(None) | Err(_) => break,
                        }
                    }
                    drain(&mut batch, &mut rx);
                }
                let outcome = write_batch(&store, &batch).await.map_err(|e| e.to_string());
                if let Err(e) = &outcome {
                    tracing::error!(error = %e, entries = batch.len(), "could not write the activity log");
                }
                for p in batch {
                    match p.done {
                        Some(done) => {
                            let _ = done.send(outcome.clone());
                        }
                        None => {
                            written.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        AuditLog { tx, reads, unawaited }
    }

    /// Records an entry: durable before this returns, except an allowed read's under
    /// [`AuditReads::Async`], which is queued for the next group commit.
    pub async fn record(&self, row: ActivityRow) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.reads == AuditReads::Async && row.result == "allowed" && row.action.ends_with("/read") {
            if self.unawaited.fetch_add(1, Ordering::Relaxed) < MAX_UNAWAITED {
                return self.send(Pending { row: Some(row), done: None });
            }
            self.unawaited.fetch_sub(1, Ordering::Relaxed);
        }
        self.wait_for(Some(row)).await
    }

    /// Waits until every entry queued before this call is durable (at shutdown).
    pub async fn flush(&self) -> Result<()> {
        self.wait_for(None).await
    }

    fn send(&self, p: Pending) -> Result<()> {
        self.tx.send(p).map_err(|_| Error::Internal("the activity log writer has stopped".into()))
    }

    async fn wait_for(&self, row: Option<ActivityRow>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Pending { row, done: Some(done) })?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Internal(format!("activity log: {e}"))),
            Err(_) => Err(Error::Internal("the activity log writer has stopped".into())),
        }
    }
}

async fn write_batch(store: &Store, batch: &[Pending]) -> moat_store::Result<()> {
    let rows: Vec<&ActivityRow> = batch.iter().filter_map(|p| p.row.as_ref()).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = store.write().await?;
    tx.insert_activities(&rows).await?;
    tx.commit().await
}

/// A time-ordered unique entry ID: the time, then 6 hex digits drawn once per process (nodes
/// sharing a database differ) and a 24-bit counter (no two entries of one process in the same
/// second share it unless 16 million are logged in that second).
fn entry_id(time: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PROCESS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let process = *PROCESS.get_or_init(|| uuid::Uuid::new_v4().as_u128() as u32 & 0xff_ffff);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("{time}-{process:06x}{n:06x}")
}

/// An activity entry's time: RFC 3339 in UTC with exactly six fractional digits, so that the
/// text order of times (and of entry IDs, which begin with them) is their time order.
fn entry_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year().clamp(0, 9999) as u32);
    put(5, 2, u8::from(t.month()) as u32);
    put(8, 2, t.day() as u32);
    put(11, 2, t.hour() as u32);
    put(14, 2, t.minute() as u32);
    put(17, 2, t.second() as u32);
    put(20, 6, t.microsecond());
    String::from_utf8_lossy(&b).into_owned()
}

/// An activity entry for the caller.
pub(crate) fn entry(caller: &Caller, action: &str, resource: &str, result: &str, rule: String) -> ActivityRow {
    let time = entry_time(time::OffsetDateTime::now_utc());
    ActivityRow {
        id: entry_id(&time),
        time,
        principal_id: Some(caller.object_id.clone()),
        principal_name: Some(caller.display_name.clone()),
        client: caller.client.clone(),
        origin: caller.origin.clone(),
        action: action.to_string(),
        resource_id: resource.to_string(),
        result: result.to_string(),
        rule,
    }
}

/// An activity entry for a request that carries no principal (failed sign-in, SAS).
pub(crate) fn anonymous_entry(
    who: Option<&str>,
    client: &str,
    origin: &str,
    action: &str,
    resource: &str,
    result: &str,
    rule: String,
) -> ActivityRow {
    let time = entry_time(time::OffsetDateTime::now_utc());
    ActivityRow {
        id: entry_id(&time),
        time,
        principal_id: None,
        principal_name: who.map(str::to_string),
        client: client.to_string(),
        origin: origin.to_string(),
        action: action.to_string(),
        resource_id: resource.to_string(),
        result: result.to_string(),
        rule,
    }
}

/// Filters of an activity log query.
#[derive(Clone, Debug, Default)]
pub struct ActivityFilter {
    pub resource_id: Option<String>,
    pub principal_id: Option<String>,
    pub result: Option<String>,
    pub since: Option<String>,
}

impl Moat {
    /// Records a request that failed authentication (rate-limited per client address).
    pub async fn audit_unauthenticated(&self, client: &str, origin: &str, path: &str, reason: &str) -> Result<()> {
        let (log, suppressed) = self.refusals.admit(client);
        if suppressed > 0 {
            let rule = format!("{suppressed} further refusals from this address in the previous minute were not logged one by one");
            self.audit.record(anonymous_entry(None, client, origin, "authenticate", path, "unauthenticated", rule)).await?;
        }
        if log {
            self.audit.record(anonymous_entry(None, client, origin, "authenticate", path, "unauthenticated", reason.to_string())).await?;
        }
        Ok(())
    }

    /// Entries newest first, `limit` at most, before the entry `before` (paging).
    pub async fn activity_log(
        &self,
        caller: &Caller,
        subscription_id: &str,
        filter: &ActivityFilter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<crate::Listed<ActivityRow>> {
        self.check_subscription(subscription_id)?;
        self.authorize(caller, moat_policy::actions::ACTIVITY_LOG_READ, &ResourceId::subscription(&self.subscription_id)).await?;
        if let Some(r) = &filter.result
            && !["allowed", "denied", "unauthenticated"].contains(&r.as_str())
        {
            return Err(Error::invalid(
                "InvalidFilter",
                "$filter",
                format!("result must be allowed, denied or unauthenticated, not '{r}'."),
            ));
        }
        if let Some(t) = &filter.since
            && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err()
        {
            return Err(Error::invalid(
                "InvalidFilter",
                "$filter",
                format!("eventTimestamp must be an RFC 3339 time such as 2026-01-31T12:00:00Z, not '{t}'."),
            ));
        }
        // Entries of allowed reads may still be queued: a query sees everything decided
        // before it.
        self.audit.flush().await?;
        // In the entries' own fixed-width form, so that text comparison is time comparison.
        let since = filter.since.as_deref().map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map(entry_time).unwrap_or_else(|_| t.to_string())
        });
        let rows = self
            .store
            .activity(&ActivityQuery {
                resource_prefix: filter.resource_id.as_deref(),
                principal_id: filter.principal_id.as_deref(),
                result: filter.result.as_deref(),
                since: since.as_deref(),
                before_id: before,
                limit: limit + 1,
            })
            .await?;
        let next_after = if rows.len() as i64 > limit { rows.get(limit as usize - 1).map(|r| r.id.clone()) } else { None };
        Ok(crate::Listed { items: rows.into_iter().take(limit as usize).collect(), next_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_times_sort_as_text_in_time_order() {
        use time::macros::datetime;
        assert_eq!(entry_time(datetime!(2026-01-02 03:04:05.1 UTC)), "2026-01-02T03:04:05.100000Z");
        assert_eq!(entry_time(datetime!(2026-01-02 03:04:05.123456789 +02:00)), "2026-01-02T01:04:05.123456Z");
        let times = [datetime!(2026-01-02 03:04:05 UTC), datetime!(2026-01-02 03:04:05.1 UTC), datetime!(2026-01-02 03:04:05.12 UTC)];
        let texts: Vec<String> = times.iter().map(|t| entry_time(*t)).collect();
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
        let rfc = time::OffsetDateTime::parse(&texts[2], &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(rfc, times[2], "the text is RFC 3339");
    }

    #[test]
    fn refusals_are_logged_up_to_the_limit_per_address() {
        let l = RefusalLimiter::default();
        for _ in 0..REFUSALS_PER_MINUTE {
            assert_eq!(l.admit("10.0.0.1:1234"), (true, 0));
        }
        assert_eq!(l.admit("10.0.0.1:999"), (false, 0), "the port does not make a new address");
        assert_eq!(l.admit("10.0.0.2:1"), (true, 0), "another address has its own budget");
    }
}
