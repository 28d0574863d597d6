//! moat's DNS surface: the network view's names and private endpoint addresses become the zone
//! that `moat-dns` serves, kept current as resources and endpoints change. Answers are split by
//! view: a querier in a virtual network (by its source address for loopback- and host-mode
//! networks, by the listener inside the namespace for namespace-mode ones) gets the private
//! endpoint addresses of its network; anyone else gets the public listener's address.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use moat_core::Moat;
use moat_core::network::DnsRecords;
use moat_dns::{DnsServer, NameEntry, PrivateRecord, ServerOptions, ViewSelector, ZoneData, ZoneSpec};
use moat_types::net::Cidr;

/// The zone for `records`, with `public` as the public listener's addresses.
pub fn zone_spec(records: &DnsRecords, public: &[IpAddr]) -> ZoneSpec {
    let mut private: BTreeMap<(String, String), Vec<IpAddr>> = BTreeMap::new();
    for (pl, view, ip) in &records.private {
        let addrs = private.entry((pl.clone(), view.clone())).or_default();
        if !addrs.contains(ip) {
            addrs.push(*ip);
        }
    }
    ZoneSpec {
        zone: records.zone.clone(),
        public: public.to_vec(),
        names: records.names.iter().map(|n| NameEntry { name: n.clone() }).collect(),
        private: private.into_iter().map(|((name, view), addrs)| PrivateRecord { name, view, addrs }).collect(),
    }
}

/// The DNS server and what keeps it current.
pub struct Dns {
    pub server: Arc<DnsServer>,
    /// Loopback- and host-mode networks' address spaces, for the public listener's views.
    pub source_views: Arc<RwLock<Vec<(Cidr, String)>>>,
    public: Vec<IpAddr>,
    /// Keeps the public listeners serving for as long as this lives.
    public_listeners: std::sync::Mutex<Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl Dns {
    /// A server for the current network view.
    pub fn new(moat: &Moat, public: Vec<IpAddr>) -> std::io::Result<Dns> {
        let view = moat.network();
        let zone = ZoneData::build(&zone_spec(&view.dns, &public)).map_err(std::io::Error::other)?;
        Ok(Dns {
            server: Arc::new(DnsServer::new(zone, ServerOptions::default())),
            source_views: Arc::new(RwLock::new(view.dns.source_views.clone())),
            public,
            public_listeners: Default::default(),
        })
    }

    /// Rebuilds the zone after every network change, until the view's channel closes.
    pub async fn follow(self: Arc<Self>, moat: Arc<Moat>) {
        let mut changes = moat.network_changes();
        while changes.changed().await.is_ok() {
            let view = changes.borrow_and_update().clone();
            match ZoneData::build(&zone_spec(&view.dns, &self.public)) {
                Ok(zone) => self.server.replace(zone),
                Err(e) => tracing::error!(error = %e, "cannot build the DNS zone; the previous one stays"),
            }
            if let Ok(mut t) = self.source_views.write() {
                *t = view.dns.source_views.clone();
            }
        }
    }

    /// Serves UDP and TCP on `addr` in the background (views by source address); returns the
    /// bound address.
    pub async fn serve_public(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let (udp, tcp) = bind_udp_and_tcp(addr).await?;
        let bound = udp.local_addr()?;
        let stop = self.spawn(udp, tcp, ViewSelector::Shared(Arc::clone(&self.source_views)));
        if let Ok(mut l) = self.public_listeners.lock() {
            l.push(stop);
        }
        Ok(bound)
    }

    /// Serves UDP and TCP on sockets bound elsewhere (inside a namespace) with a fixed view;
    /// stops when the returned sender fires or drops.
    pub fn spawn(&self, udp: tokio::net::UdpSocket, tcp: tokio::net::TcpListener, view: ViewSelector) -> tokio::sync::oneshot::Sender<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (s1, s2) = (Arc::clone(&self.server), Arc::clone(&self.server));
        let v2 = view.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = s1.serve_udp(udp, view) => if let Err(e) = r { tracing::error!(error = %e, "DNS over UDP stopped") },
                r = s2.serve_tcp(tcp, v2) => if let Err(e) = r { tracing::error!(error = %e, "DNS over TCP stopped") },
                _ = rx => {}
            }
        });
        tx
    }
}

/// A UDP socket and a TCP listener on the same port, so a truncated UDP answer can be retried
/// over TCP. With port 0 the kernel picks the UDP port, and the same TCP port may already be
/// taken (another listener, or any client's ephemeral port); then another port is tried.
async fn bind_udp_and_tcp(addr: SocketAddr) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut attempts = 0;
    loop {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        match tokio::net::TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && attempts < 64 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}
