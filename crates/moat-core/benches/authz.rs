//! Cost of one authorization decision with 10,000 role assignments in the store.
//! Run: `cargo bench -p moat-core --bench authz`. Target (issue 3): under 2 µs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use moat_core::{Caller, CoreConfig, Moat, Store};
use moat_store::{AssignmentRow, PrincipalRow};
use moat_types::ResourceId;

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const REGISTRY_USER: &str = "1823dd4f-9b8c-4ab6-ab4e-7397a3684615";

fn caller(id: &str) -> Caller {
    Caller {
        object_id: id.into(),
        display_name: id.into(),
        kind: "ServicePrincipal".into(),
        client: "bench".into(),
        origin: "public".into(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/moat.db", dir.path().display());
    let config = CoreConfig {
        public_url: "http://127.0.0.1:1".into(),
        dns_zone: "moat.internal".into(),
        token_lifetime_secs: 3600,
        blob_dir: dir.path().join("blobs"),
        blob_url: None,
        audit_reads: Default::default(),
        gc_grace: std::time::Duration::from_secs(3600),
    };
    let (sub, moat) = rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let (moat, _) = Moat::start(store.clone(), config.clone(), None).await.unwrap();
        let sub = moat.subscription_id().to_string();
        // 10,000 assignments: 2,000 principals with 4 each over 500 groups and 2,000 registries,
        // plus one principal holding 2,004 on its own.
        let mut tx = store.write().await.unwrap();
        let mut n = 0;
        for p in 0..2000 {
            let pid = format!("p{p:05}");
            tx.insert_principal(&PrincipalRow {
                object_id: pid.clone(),
                kind: "ServicePrincipal".into(),
                display_name: pid.clone(),
                app_id: None,
                secret_hash: None,
                created_at: "t".into(),
                upn: None,
                issuer: None,
                subject: None,
            })
            .await
            .unwrap();
            let holdings = if p == 0 { 2004 } else { 4 };
            for k in 0..holdings {
                let g = (p * 7 + k) % 500;
                let scope = if k % 2 == 0 {
                    ResourceId::resource_group(&sub, &format!("g{g}"))
                } else {
                    ResourceId::provider(
                        &sub,
                        &format!("g{g}"),
                        "Microsoft.MachineLearningServices",
                        "registries",
                        &format!("r{}", (p * 13 + k) % 2000),
                    )
                };
                tx.insert_assignment(&AssignmentRow {
                    id: format!("a{n:06}"),
                    principal_id: pid.clone(),
                    role_definition_id: if k % 3 == 0 { READER.into() } else { REGISTRY_USER.into() },
                    scope: scope.to_string(),
                    created_at: "t".into(),
                })
                .await
                .unwrap();
                n += 1;
            }
        }
        tx.commit().await.unwrap();
        assert!(n >= 10_000, "{n} assignments");
        store.close().await;
        // A fresh start loads the index from the store, as a server does.
        let store = Store::open(&url).await.unwrap();
        let (moat, _) = Moat::start(store, config, None).await.unwrap();
        (sub, moat)
    });

    let p1 = caller("p00001");
    // p00001's first assignment: Reader at group g7.
    let target = ResourceId::provider(&sub, "g7", "Microsoft.MachineLearningServices", "registries", "any").child("models", "m");
    assert!(moat.decide(&p1, "Microsoft.MachineLearningServices/registries/read", &target).is_allowed());
    let elsewhere = ResourceId::provider(&sub, "g499", "Microsoft.MachineLearningServices", "registries", "x");
    assert!(!moat.decide(&p1, "Microsoft.MachineLearningServices/registries/read", &elsewhere).is_allowed());
    let heavy = caller("p00000");

    let mut g = c.benchmark_group("authorize decision, 10k assignments in the store");
    g.bench_function("allowed (inherited from group)", |b| {
        b.iter(|| moat.decide(black_box(&p1), black_box("Microsoft.MachineLearningServices/registries/read"), black_box(&target)))
    });
    g.bench_function("denied (no assignment on the path)", |b| {
        b.iter(|| moat.decide(black_box(&p1), black_box("Microsoft.MachineLearningServices/registries/read"), black_box(&elsewhere)))
    });
    g.bench_function("denied, principal holding 2,004 assignments", |b| {
        b.iter(|| moat.decide(black_box(&heavy), black_box("Microsoft.MachineLearningServices/registries/delete"), black_box(&target)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
