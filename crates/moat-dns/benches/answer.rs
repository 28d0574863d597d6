//! Cost of deciding one query in a zone of 10,000 names, each with a private record in one of 100
//! views: the split-horizon private answer, the public answer, and the whole wire path (decode,
//! answer, encode). Run: `cargo bench -p moat-dns --bench answer`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/common/synthetic.rs"]
mod synthetic;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use moat_dns::{Transport, ZoneData, respond};

const NAMES: usize = 10_000;
const VIEWS: usize = 100;

fn bench(c: &mut Criterion) {
    let zone = ZoneData::build(&synthetic::spec(NAMES, VIEWS)).unwrap();
    let queries: Vec<Query> = (0..NAMES).map(|i| Query::query(Name::from_ascii(synthetic::name(i)).unwrap(), RecordType::A)).collect();
    let views: Vec<String> = (0..NAMES).map(|i| synthetic::view(i % VIEWS)).collect();

    let mut i = 0;
    c.bench_function("answer/private (split-horizon, 10k names, 100 views)", |b| {
        b.iter(|| {
            i = (i + 1) % NAMES;
            let answer = zone.answer(black_box(&queries[i]), Some(views[i].as_str()));
            black_box(answer.answers().count())
        })
    });
    c.bench_function("answer/public (10k names)", |b| {
        b.iter(|| {
            i = (i + 1) % NAMES;
            let answer = zone.answer(black_box(&queries[i]), None);
            black_box(answer.answers().count())
        })
    });

    let wire: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| {
            let mut message = Message::query();
            message.add_query(q.clone());
            message.to_vec().unwrap()
        })
        .collect();
    let mut out = Vec::with_capacity(512);
    c.bench_function("respond/private (decode + answer + encode, UDP)", |b| {
        b.iter(|| {
            i = (i + 1) % NAMES;
            black_box(respond(&zone, black_box(&wire[i]), Some(views[i].as_str()), Transport::Udp, &mut out))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
