//! Serving a zone on sockets the caller bound (moat binds some inside network namespaces): UDP and
//! TCP loops, the view each query is answered in, and replacing the zone while serving.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use moat_types::net::{Cidr, canonical_ip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{debug, trace, warn};

use crate::wire::{Transport, respond};
use crate::zone::ZoneData;

/// Largest query read from UDP; longer datagrams arrive cut and fail to decode.
const MAX_UDP_QUERY: usize = 4096;
/// Largest query accepted on TCP: real queries are a few hundred bytes, so a bigger length prefix
/// means a confused or hostile client, and its connection is closed.
const MAX_TCP_QUERY: usize = 4096;
/// Pause after an accept error such as running out of file descriptors, instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What to do with queries for names outside the zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutsideZone {
    /// Answer REFUSED: moat is not a resolver for other names.
    #[default]
    Refuse,
}

/// Limits and policies of a [`DnsServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// Policy for names outside the zone.
    pub outside_zone: OutsideZone,
    /// A TCP connection with no complete query for this long is closed (RFC 7766 §6.2.3
    /// recommends seconds, not minutes).
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections per listener; connections over the limit are closed at once.
    pub max_tcp_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { outside_zone: OutsideZone::Refuse, tcp_idle_timeout: Duration::from_secs(10), max_tcp_connections: 256 }
    }
}

/// Which view a query is answered in, decided by the listener and the query's source address.
#[derive(Clone, Debug)]
pub enum ViewSelector {
    /// Every query gets this view: a listener inside one network's namespace (`Some`), or the
    /// public listener (`None`).
    Fixed(Option<String>),
    /// The view of the network whose address space holds the source address (loopback-mode
    /// networks share one listener); the most specific range wins; no match is the public view.
    BySource(Vec<(Cidr, String)>),
    /// Like `BySource`, over a table the caller keeps current (networks come and go while the
    /// listener serves).
    Shared(Arc<RwLock<Vec<(Cidr, String)>>>),
}

fn pick(ranges: &[(Cidr, String)], source: IpAddr) -> Option<&str> {
    let source = canonical_ip(source);
    ranges.iter().filter(|(range, _)| range.contains(source)).max_by_key(|(range, _)| range.prefix()).map(|(_, view)| view.as_str())
}

impl ViewSelector {
    /// The view for a query from `source` (not for `Shared`, whose table may change: use
    /// [`ViewSelector::with_view`]).
    pub fn view_for(&self, source: IpAddr) -> Option<&str> {
        match self {
            Self::Fixed(view) => view.as_deref(),
            Self::BySource(ranges) => pick(ranges, source),
            Self::Shared(_) => None,
        }
    }

    /// Runs `f` with the view for a query from `source`.
    pub fn with_view<R>(&self, source: IpAddr, f: impl FnOnce(Option<&str>) -> R) -> R {
        match self {
            Self::Shared(table) => {
                let ranges = table.read().unwrap_or_else(PoisonError::into_inner);
                f(pick(&ranges, source))
            }
            other => f(other.view_for(source)),
        }
    }
}

/// moat's DNS server: one zone, served on any number of sockets, replaceable at any time.
pub struct DnsServer {
    zone: RwLock<Arc<ZoneData>>,
    /// Bumped by every [`DnsServer::replace`], so serving loops re-read the zone only when it
    /// changed instead of taking the lock for every query.
    generation: AtomicU64,
    options: ServerOptions,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").field("zone", &self.zone()).field("options", &self.options).finish()
    }
}

/// A serving loop's copy of the current zone.
struct ZoneCache {
    generation: u64,
    zone: Arc<ZoneData>,
}

impl ZoneCache {
    fn new(server: &DnsServer) -> Self {
        let generation = server.generation.load(Ordering::Acquire);
        Self { generation, zone: server.zone() }
    }

    fn current(&mut self, server: &DnsServer) -> &ZoneData {
        let generation = server.generation.load(Ordering::Acquire);
        if generation != self.generation {
            // `replace` stores the zone before bumping the generation, so this zone is at least as new.
            self.zone = server.zone();
            self.generation = generation;
        }
        &self.zone
    }
}

impl DnsServer {
    /// A server for `zone`.
    pub fn new(zone: ZoneData, options: ServerOptions) -> Self {
        Self { zone: RwLock::new(Arc::new(zone)), generation: AtomicU64::new(0), options }
    }

    /// The zone being served.
    pub fn zone(&self) -> Arc<ZoneData> {
        Arc::clone(&self.zone.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serves `zone` from now on, on every socket; queries being answered finish with the old one.
    pub fn replace(&self, zone: ZoneData) {
        *self.zone.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(zone);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The server's options.
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// Answers queries on `socket` until it fails or the task is aborted. Undecodable datagrams are
    /// dropped; a failed send concerns one client and is only logged.
    pub async fn serve_udp(self: Arc<Self>, socket: UdpSocket, view: ViewSelector) -> io::Result<()> {
        let mut zone = ZoneCache::new(&self);
        let mut query = vec![0u8; MAX_UDP_QUERY];
        let mut response = Vec::with_capacity(usize::from(crate::wire::EDNS_UDP_PAYLOAD));
        loop {
            let (len, source) = match socket.recv_from(&mut query).await {
                Ok(received) => received,
                Err(e) if is_per_peer(&e) => continue,
                Err(e) => return Err(e),
            };
            let Some(packet) = query.get(..len) else { continue };
            let answered = view.with_view(source.ip(), |v| respond(zone.current(&self), packet, v, Transport::Udp, &mut response));
            if !answered {
                trace!(%source, len, "dropped an undecodable UDP datagram");
                continue;
            }
            if let Err(e) = socket.send_to(&response, source).await {
                debug!(%source, error = %e, "could not send a DNS response");
            }
        }
    }

    /// Accepts connections on `listener` until it fails or the task is aborted (which also closes
    /// the connections). Each connection may carry several length-prefixed queries, answered in
    /// order; it is closed when idle, on a malformed query, or on an oversized length prefix.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener, view: ViewSelector) -> io::Result<()> {
        // Owning the connection tasks here ties their lifetime to this future's.
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= self.options.max_tcp_connections {
                            debug!(%peer, "too many DNS connections; closing a new one");
                            continue;
                        }
                        let view = view.with_view(peer.ip(), |v| v.map(str::to_owned));
                        connections.spawn(Arc::clone(&self).serve_connection(stream, peer, view));
                    }
                    Err(e) if is_per_peer(&e) => {}
                    Err(e) if is_resource_exhaustion(&e) => {
                        warn!(error = %e, "DNS listener cannot accept connections; backing off");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    Err(e) => return Err(e),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }

    async fn serve_connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr, view: Option<String>) {
        let idle = self.options.tcp_idle_timeout;
        let mut zone = ZoneCache::new(&self);
        let mut query = Vec::new();
        let mut response = Vec::with_capacity(512);
        let mut framed = Vec::with_capacity(514);
        loop {
            let mut prefix = [0u8; 2];
            if !matches!(timeout(idle, stream.read_exact(&mut prefix)).await, Ok(Ok(_))) {
                return; // closed, failed or idle
            }
            let len = usize::from(u16::from_be_bytes(prefix));
            if len == 0 || len > MAX_TCP_QUERY {
                debug!(%peer, len, "closing a DNS connection: bad length prefix");
                return;
            }
            query.resize(len, 0);
            if !matches!(timeout(idle, stream.read_exact(&mut query)).await, Ok(Ok(_))) {
                return;
            }
            if !respond(zone.current(&self), &query, view.as_deref(), Transport::Tcp, &mut response) {
                debug!(%peer, "closing a DNS connection: undecodable query");
                return;
            }
            let Ok(response_len) = u16::try_from(response.len()) else { return };
            // One buffer, one write: the prefix and message leave in the same segment.
            framed.clear();
            framed.extend_from_slice(&response_len.to_be_bytes());
            framed.extend_from_slice(&response);
            if !matches!(timeout(idle, stream.write_all(&framed)).await, Ok(Ok(()))) {
                return;
            }
        }
    }
}

/// Errors that concern one peer (an ICMP error reported on the socket, an aborted handshake), not
/// the socket itself.
fn is_per_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
    )
}

/// Out of file descriptors or memory: transient, worth retrying after a pause.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM)) || e.kind() == io::ErrorKind::OutOfMemory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_source_picks_the_most_specific_range_and_falls_back_to_public() {
        let selector = ViewSelector::BySource(vec![
            ("127.1.0.0/16".parse().unwrap(), "wide".into()),
            ("127.1.2.0/24".parse().unwrap(), "narrow".into()),
            ("fd00::/8".parse().unwrap(), "v6".into()),
        ]);
        assert_eq!(selector.view_for("127.1.2.3".parse().unwrap()), Some("narrow"));
        assert_eq!(selector.view_for("127.1.9.3".parse().unwrap()), Some("wide"));
        assert_eq!(selector.view_for("::ffff:127.1.2.3".parse().unwrap()), Some("narrow"));
        assert_eq!(selector.view_for("fd00::1".parse().unwrap()), Some("v6"));
        assert_eq!(selector.view_for("127.0.0.1".parse().unwrap()), None);
        assert_eq!(ViewSelector::Fixed(Some("x".into())).view_for("127.0.0.1".parse().unwrap()), Some("x"));
        assert_eq!(ViewSelector::Fixed(None).view_for("127.1.2.3".parse().unwrap()), None);
    }
}
