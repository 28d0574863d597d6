//! Serves the synthetic zone (see `common/synthetic.rs`) on one UDP socket and one TCP listener, as
//! the target of `dnsload`. Every query is answered in one view, so names of that view get their
//! private address and the others the public one.
//!
//! `cargo run --release -p moat-dns --example dnsserve -- --listen 127.0.0.1:5300 --names 10000 --views 100 --view 0`

#[path = "common/synthetic.rs"]
mod synthetic;

use std::net::SocketAddr;
use std::sync::Arc;

use moat_dns::{DnsServer, ServerOptions, ViewSelector, ZoneData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:5300".parse()?;
    let (mut names, mut views, mut view) = (10_000usize, 100usize, 0usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse()?,
            "--names" => names = value.parse()?,
            "--views" => views = value.parse()?,
            "--view" => view = value.parse()?,
            _ => return Err(format!("unknown flag {flag}; see the example's doc comment").into()),
        }
    }
    let zone = ZoneData::build(&synthetic::spec(names, views))?;
    let server = Arc::new(DnsServer::new(zone, ServerOptions::default()));
    let selector = ViewSelector::Fixed(Some(synthetic::view(view)));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let udp = tokio::net::UdpSocket::bind(listen).await?;
        let tcp = tokio::net::TcpListener::bind(udp.local_addr()?).await?;
        println!("serving {names} names in {views} views on {} (udp+tcp), answering in view {view}", udp.local_addr()?);
        let udp_task = tokio::spawn(Arc::clone(&server).serve_udp(udp, selector.clone()));
        let tcp_task = tokio::spawn(server.serve_tcp(tcp, selector));
        tokio::select! {
            result = udp_task => result??,
            result = tcp_task => result??,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
