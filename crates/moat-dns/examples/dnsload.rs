//! A small DNS load generator: sends `--queries` A queries (at most `--max-seconds`) to a server on
//! the loopback interface from one UDP socket, keeping `--inflight` outstanding, and reports queries
//! per second. Names are `r<i>.blob.moat.internal` for i = 0, step, 2·step, … below `--names`,
//! matching the `dnsserve` example's zone (step 100 with `dnsserve --view 0`: every answer private).
//!
//! `cargo run --release -p moat-dns --example dnsload -- --server 127.0.0.1:5300 --queries 200000 --inflight 64`

#[path = "common/synthetic.rs"]
mod synthetic;

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

/// A query unanswered this long counts as lost (with everything else then in flight).
const LOSS_TIMEOUT: Duration = Duration::from_millis(250);

struct Options {
    server: SocketAddr,
    queries: u64,
    inflight: usize,
    names: usize,
    step: usize,
    max_seconds: u64,
}

fn parse() -> Result<Options, Box<dyn std::error::Error>> {
    let mut options =
        Options { server: "127.0.0.1:5300".parse()?, queries: 200_000, inflight: 64, names: 10_000, step: 100, max_seconds: 60 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => options.server = value.parse()?,
            "--queries" => options.queries = value.parse()?,
            "--inflight" => options.inflight = value.parse()?,
            "--names" => options.names = value.parse()?,
            "--step" => options.step = value.parse()?,
            "--max-seconds" => options.max_seconds = value.parse()?,
            _ => return Err(format!("unknown flag {flag}; see the example's doc comment").into()),
        }
    }
    // A load generator should only ever hit a server on this machine.
    if !options.server.ip().is_loopback() {
        return Err("--server must be a loopback address".into());
    }
    options.queries = options.queries.min(10_000_000);
    options.max_seconds = options.max_seconds.clamp(1, 60);
    options.inflight = options.inflight.clamp(1, 4096);
    options.step = options.step.max(1);
    Ok(options)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse()?;
    let names: Vec<usize> = (0..options.names.max(1)).step_by(options.step).collect();
    let templates: Vec<Vec<u8>> = names
        .iter()
        .map(|&i| {
            let mut message = Message::query();
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(Name::from_ascii(synthetic::name(i))?, RecordType::A));
            Ok(message.to_vec()?)
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;

    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(options.server)?;
    socket.set_read_timeout(Some(LOSS_TIMEOUT))?;

    // Check one answer properly before measuring.
    socket.send(&templates[0])?;
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf)?;
    let sample = Message::from_vec(&buf[..len])?;
    let rendered: Vec<String> = sample.answers.iter().map(|r| format!("{} {} {}", r.name, r.record_type(), r.data)).collect();
    println!("sample answer for {}: {:?} {rendered:?}", synthetic::name(names[0]), sample.metadata.response_code);

    let mut outstanding = vec![false; 1 << 16];
    let (mut sent, mut answered, mut errors, mut lost, mut inflight) = (0u64, 0u64, 0u64, 0u64, 0usize);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(options.max_seconds);
    while Instant::now() < deadline {
        while inflight < options.inflight && sent < options.queries {
            let id = (sent & 0xffff) as u16;
            let mut query = templates[(sent as usize) % templates.len()].clone();
            query[..2].copy_from_slice(&id.to_be_bytes());
            socket.send(&query)?;
            outstanding[usize::from(id)] = true;
            inflight += 1;
            sent += 1;
        }
        if inflight == 0 {
            break;
        }
        match socket.recv(&mut buf) {
            Ok(len) if len >= 12 => {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if std::mem::take(&mut outstanding[id]) {
                    inflight -= 1;
                    answered += 1;
                    let rcode = buf[3] & 0x0f;
                    let answers = u16::from_be_bytes([buf[6], buf[7]]);
                    if rcode != 0 || answers == 0 {
                        errors += 1;
                    }
                }
            }
            Ok(_) => errors += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                lost += inflight as u64;
                inflight = 0;
                outstanding.iter_mut().for_each(|slot| *slot = false);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "sent {sent}, answered {answered} ({errors} not NOERROR-with-answer), lost {lost}, in {elapsed:.2} s: {:.0} queries/s with {} in flight",
        answered as f64 / elapsed,
        options.inflight
    );
    Ok(())
}
