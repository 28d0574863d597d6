//! A synthetic zone shared by the benchmark and the load-test examples: `count` public names
//! `r<i>.blob.<zone>`, each with a private record for its privatelink name in view `i % views`.

// Each includer uses a different part of this file.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use moat_dns::{NameEntry, PrivateRecord, ZoneSpec};

pub const ZONE: &str = "moat.internal";
pub const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));

pub fn name(i: usize) -> String {
    format!("r{i:05}.blob.{ZONE}")
}

/// The view key of network `v`, shaped like the lowercase ARM id moat uses.
pub fn view(v: usize) -> String {
    format!("/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg/providers/microsoft.network/virtualnetworks/vnet{v}")
}

pub fn spec(count: usize, views: usize) -> ZoneSpec {
    let views = views.max(1);
    ZoneSpec {
        zone: ZONE.into(),
        public: vec![PUBLIC],
        names: (0..count).map(|i| NameEntry { name: name(i) }).collect(),
        private: (0..count)
            .map(|i| PrivateRecord {
                name: format!("r{i:05}.privatelink.blob.{ZONE}"),
                view: view(i % views),
                // 10.0.0.1 onwards, one address per name.
                addrs: vec![IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0001 + i as u32))],
            })
            .collect(),
    }
}
