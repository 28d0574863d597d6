//! The real servers on 127.0.0.1:0, queried with `dig` (when installed) and with hand-built
//! hickory-proto messages over UDP and TCP.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use moat_dns::{DnsServer, NameEntry, PrivateRecord, ServerOptions, ViewSelector, ZoneData, ZoneSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const VNET_A: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/a";
const VNET_B: &str = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/b";
const WAIT: Duration = Duration::from_secs(5);

fn spec() -> ZoneSpec {
    ZoneSpec {
        zone: "moat.internal".into(),
        public: vec!["203.0.113.10".parse().unwrap()],
        names: vec![
            NameEntry { name: "abc.blob.moat.internal".into() },
            NameEntry { name: "reg.registry.eastus.api.moat.internal".into() },
        ],
        private: vec![
            PrivateRecord {
                name: "abc.privatelink.blob.moat.internal".into(),
                view: VNET_A.into(),
                addrs: vec!["10.0.0.4".parse().unwrap()],
            },
            PrivateRecord {
                name: "abc.privatelink.blob.moat.internal".into(),
                view: VNET_B.into(),
                addrs: vec!["10.1.0.4".parse().unwrap()],
            },
        ],
    }
}

/// A server's UDP socket and TCP listener on the same 127.0.0.1 port (so dig can retry a truncated
/// answer over TCP), each served by its own task.
struct Running {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn start(server: &Arc<DnsServer>, view: ViewSelector) -> Running {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let Ok(tcp) = TcpListener::bind(addr).await else { continue };
        let tasks =
            vec![tokio::spawn(Arc::clone(server).serve_udp(udp, view.clone())), tokio::spawn(Arc::clone(server).serve_tcp(tcp, view))];
        return Running { addr, tasks };
    }
    panic!("no 127.0.0.1 port free for both UDP and TCP");
}

fn server(spec: &ZoneSpec, options: ServerOptions) -> Arc<DnsServer> {
    Arc::new(DnsServer::new(ZoneData::build(spec).unwrap(), options))
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

async fn udp_ask(addr: SocketAddr, request: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&request.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (len, from) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf)).await.expect("no UDP answer").unwrap();
    assert_eq!(from, addr);
    let response = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(response.metadata.id, request.metadata.id);
    response
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

async fn tcp_send(stream: &mut TcpStream, request: &Message) {
    let bytes = request.to_vec().unwrap();
    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.unwrap();
}

async fn tcp_receive(stream: &mut TcpStream) -> Message {
    let mut prefix = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut prefix)).await.expect("no TCP answer").unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut body).await.unwrap();
    Message::from_vec(&body).unwrap()
}

/// Whether the peer closed the connection (read returns EOF or an error) within `WAIT`.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(tokio::time::timeout(WAIT, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
}

fn addresses(response: &Message) -> Vec<String> {
    response.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_give_split_answers_to_hickory_clients() {
    let server = server(&spec(), ServerOptions::default());
    let public = start(&server, ViewSelector::Fixed(None)).await;
    let vnet_a = start(&server, ViewSelector::Fixed(Some(VNET_A.into()))).await;
    let vnet_b = start(&server, ViewSelector::BySource(vec![("127.0.0.1/32".parse().unwrap(), VNET_B.into())])).await;
    let request = query("abc.blob.moat.internal", RecordType::A);
    for (running, addr) in [(&public, "203.0.113.10"), (&vnet_a, "10.0.0.4"), (&vnet_b, "10.1.0.4")] {
        let udp = udp_ask(running.addr, &request).await;
        assert!(udp.metadata.authoritative);
        assert_eq!(addresses(&udp), ["abc.privatelink.blob.moat.internal.", addr]);

        // Several queries on one connection, answered in order.
        let mut stream = connect(running.addr).await;
        let second = query("nope.blob.moat.internal", RecordType::A);
        tcp_send(&mut stream, &request).await;
        tcp_send(&mut stream, &second).await;
        let first = tcp_receive(&mut stream).await;
        assert_eq!(
            (first.metadata.id, addresses(&first)),
            (request.metadata.id, vec!["abc.privatelink.blob.moat.internal.".into(), addr.into()])
        );
        let nx = tcp_receive(&mut stream).await;
        assert_eq!(nx.metadata.id, second.metadata.id);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(nx.authorities.first().map(|r| r.record_type()), Some(RecordType::SOA));
    }
    let refused = udp_ask(public.addr, &query("example.com", RecordType::A)).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_makes_records_appear_and_disappear() {
    let server = server(&spec(), ServerOptions::default());
    let vnet_a = start(&server, ViewSelector::Fixed(Some(VNET_A.into()))).await;
    let request = query("new.cr.moat.internal", RecordType::A);
    assert_eq!(udp_ask(vnet_a.addr, &request).await.metadata.response_code, ResponseCode::NXDomain);
    let mut stream = connect(vnet_a.addr).await;

    let mut with_endpoint = spec();
    with_endpoint.names.push(NameEntry { name: "new.cr.moat.internal".into() });
    with_endpoint.private.push(PrivateRecord {
        name: "new.privatelink.cr.moat.internal".into(),
        view: VNET_A.into(),
        addrs: vec!["10.0.0.7".parse().unwrap()],
    });
    server.replace(ZoneData::build(&with_endpoint).unwrap());
    assert_eq!(addresses(&udp_ask(vnet_a.addr, &request).await), ["new.privatelink.cr.moat.internal.", "10.0.0.7"]);
    // An open connection sees the new zone too.
    tcp_send(&mut stream, &request).await;
    assert_eq!(addresses(&tcp_receive(&mut stream).await), ["new.privatelink.cr.moat.internal.", "10.0.0.7"]);

    server.replace(ZoneData::build(&spec()).unwrap());
    assert_eq!(udp_ask(vnet_a.addr, &request).await.metadata.response_code, ResponseCode::NXDomain);
    tcp_send(&mut stream, &request).await;
    assert_eq!(tcp_receive(&mut stream).await.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_survived() {
    let options = ServerOptions { tcp_idle_timeout: Duration::from_millis(300), ..ServerOptions::default() };
    let server = server(&spec(), options);
    let running = start(&server, ViewSelector::Fixed(None)).await;
    let request = query("abc.blob.moat.internal", RecordType::A);

    // Garbage over UDP is dropped without an answer, and the server keeps answering.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&[0xde, 0xad, 0xbe, 0xef], running.addr).await.unwrap();
    let mut buf = [0u8; 512];
    assert!(tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await.is_err());
    assert_eq!(udp_ask(running.addr, &request).await.answers.len(), 2);

    // Over TCP, garbage, an oversized length prefix and idleness each close the connection.
    let mut garbage = connect(running.addr).await;
    garbage.write_all(&[0, 4, 0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    assert!(closed(&mut garbage).await);
    let mut oversized = connect(running.addr).await;
    oversized.write_all(&[0xff, 0xff]).await.unwrap();
    assert!(closed(&mut oversized).await);
    let mut idle = connect(running.addr).await;
    assert!(closed(&mut idle).await);

    let mut good = connect(running.addr).await;
    tcp_send(&mut good, &request).await;
    assert_eq!(tcp_receive(&mut good).await.answers.len(), 2);
    assert!(running.tasks.iter().all(|task| !task.is_finished()));
}

/// Runs dig against the server; `None` when dig is not installed.
async fn dig(addr: SocketAddr, args: &[&str]) -> Option<String> {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .await
        .ok()?;
    assert!(output.status.success(), "dig {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Some(String::from_utf8(output.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_the_split_answers_the_chain_and_nxdomain() {
    let mut spec = spec();
    // Enough addresses that the answer does not fit in a UDP response, so dig must retry over TCP.
    spec.private.push(PrivateRecord {
        name: "reg.registry.eastus.privatelink.api.moat.internal".into(),
        view: VNET_A.into(),
        addrs: (1..=80u16).map(|i| IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i))).collect(),
    });
    let server = server(&spec, ServerOptions::default());
    let public = start(&server, ViewSelector::Fixed(None)).await;
    let vnet_a = start(&server, ViewSelector::Fixed(Some(VNET_A.into()))).await;

    let Some(out) = dig(public.addr, &["abc.blob.moat.internal", "A", "+short"]).await else {
        println!("SKIP dig tests: `dig` is not installed (Debian: apt-get install bind9-dnsutils)");
        return;
    };
    assert_eq!(out, "abc.privatelink.blob.moat.internal.\n203.0.113.10\n");
    for transport in ["+notcp", "+tcp"] {
        let out = dig(vnet_a.addr, &["abc.blob.moat.internal", "A", "+short", transport]).await.unwrap();
        assert_eq!(out, "abc.privatelink.blob.moat.internal.\n10.0.0.4\n", "{transport}");
        let out = dig(public.addr, &["ABC.Blob.MOAT.internal", "A", "+short", transport]).await.unwrap();
        assert_eq!(out, "abc.privatelink.blob.moat.internal.\n203.0.113.10\n", "{transport}");
    }

    let nx = dig(public.addr, &["nope.blob.moat.internal", "A", "+noall", "+comments", "+authority"]).await.unwrap();
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains("flags: qr aa rd;"), "{nx}");
    assert!(nx.contains("moat.internal.\t\t5\tIN\tSOA\tns1.moat.internal. hostmaster.moat.internal."), "{nx}");
    let nodata = dig(vnet_a.addr, &["abc.blob.moat.internal", "AAAA", "+noall", "+comments", "+answer"]).await.unwrap();
    assert!(nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 1,"), "{nodata}");
    let refused = dig(public.addr, &["example.com", "A", "+noall", "+comments"]).await.unwrap();
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let ns = dig(public.addr, &["moat.internal", "NS", "+short"]).await.unwrap();
    assert_eq!(ns, "ns1.moat.internal.\n");

    // The 80-address answer is truncated over UDP; dig retries over TCP by itself and gets it all.
    let big = dig(vnet_a.addr, &["reg.registry.eastus.api.moat.internal", "AAAA", "+short"]).await.unwrap();
    assert_eq!(big.lines().count(), 81, "{big}");
    let truncated = dig(vnet_a.addr, &["reg.registry.eastus.api.moat.internal", "AAAA", "+ignore", "+noall", "+comments"]).await.unwrap();
    assert!(truncated.contains("flags: qr aa tc rd;"), "{truncated}");
}
