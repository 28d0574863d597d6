//! Cost of one network admission decision with 10,000 private endpoints in the snapshot and a
//! storage account holding 10,000 IP rules.
//! Run: `cargo bench -p moat-policy --bench admission`. Target (issue 5): well under 1 µs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use moat_policy::admission::{
    Admission, AdmissionIndex, ConnectionStatus, DefaultAction, NetEndpoint, NetResource, NetworkAcls, Origin, Plane, Request, Switch,
};
use moat_types::net::Cidr;

const GROUP: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg-bench/providers";

fn registry(i: usize) -> String {
    format!("{GROUP}/microsoft.machinelearningservices/registries/registry-{i:05}")
}

fn bench(c: &mut Criterion) {
    // 1,000 private registries, each with ten endpoints (10,000 in all), in 1,000 virtual networks.
    let mut resources: Vec<NetResource> = (0..1000)
        .map(|i| NetResource {
            key: registry(i),
            name: format!("registry-{i:05}"),
            plane: Plane::AmlRegistry,
            public_access: Some(Switch::Disabled),
            parent: None,
            acls: None,
        })
        .collect();
    let endpoints: Vec<NetEndpoint> = (0..10_000)
        .map(|j| NetEndpoint {
            key: format!("{GROUP}/microsoft.network/privateendpoints/pe-{j:05}"),
            name: format!("pe-{j:05}"),
            target: registry(j % 1000),
            plane: Plane::AmlRegistry,
            status: if j % 7 == 0 { ConnectionStatus::Pending } else { ConnectionStatus::Approved },
            vnet: format!("vnet-{:04}", j % 1000),
            address_space: vec![Cidr::new(IpAddr::V4(Ipv4Addr::new(127, (j % 250) as u8, 0, 0)), 16).unwrap()],
        })
        .collect();
    // A storage account with 10,000 scattered /32 and /28 rules across 100.64.0.0/10.
    let ip_rules: Vec<Cidr> = (0u32..10_000)
        .map(|k| {
            let base = 0x6440_0000u32 + k.wrapping_mul(2_654_435_761) % 0x0040_0000;
            if k % 2 == 0 {
                Cidr::new(IpAddr::V4(Ipv4Addr::from(base)), 32).unwrap()
            } else {
                Cidr::new(IpAddr::V4(Ipv4Addr::from(base & !0xf)), 28).unwrap()
            }
        })
        .collect();
    let sa_key = format!("{GROUP}/microsoft.storage/storageaccounts/stbench00001");
    let allowed_ip = match ip_rules[4_999].first() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) + 3)),
        v6 => v6,
    };
    resources.push(NetResource {
        key: sa_key.clone(),
        name: "stbench00001".into(),
        plane: Plane::Blob,
        public_access: Some(Switch::Enabled),
        parent: None,
        acls: Some(NetworkAcls { default_action: DefaultAction::Deny, ip_rules, resource_access_rules: vec![] }),
    });
    let idx = AdmissionIndex::build(resources, endpoints);

    let pe_key = format!("{GROUP}/microsoft.network/privateendpoints/pe-04243");
    let target = registry(243);
    let via_endpoint = Request {
        origin: Origin::Endpoint(&pe_key),
        peer: "127.243.7.9".parse().unwrap(),
        resource: &target,
        plane: Plane::AmlRegistry,
        caller_resource: None,
    };
    let from_public = Request { origin: Origin::Public, ..via_endpoint };
    let by_ip = Request { origin: Origin::Public, peer: allowed_ip, resource: &sa_key, plane: Plane::Blob, caller_resource: None };
    assert_eq!(idx.admit(&via_endpoint), Ok(Admission::PrivateEndpoint));
    assert!(idx.admit(&from_public).is_err());
    assert_eq!(idx.admit(&by_ip), Ok(Admission::IpRule));

    let mut g = c.benchmark_group("network admission, 10k endpoints, 10k ip rules");
    g.bench_function("allowed: approved private endpoint", |b| b.iter(|| idx.admit(black_box(&via_endpoint))));
    g.bench_function("denied: public network, access Disabled (builds the denial)", |b| b.iter(|| idx.admit(black_box(&from_public))));
    g.bench_function("allowed: public network, ip rule among 10k", |b| b.iter(|| idx.admit(black_box(&by_ip))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
