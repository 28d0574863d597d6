//! The store's contract, written once as `contract` and run against every backend. SQLite runs
//! here; the PostgreSQL backend (scale-out issue) adds one test that calls the same function.

#![allow(clippy::unwrap_used)]

use moat_store::{ActivityQuery, ActivityRow, ListQuery, OperationRow, PrincipalRow, Store, StoreError, StoredResource};

fn resource(id: &str, kind: &str, group: Option<&str>, body: &str, etag: &str) -> StoredResource {
    StoredResource {
        id: id.to_string(),
        kind: kind.to_string(),
        subscription_id: "s".to_string(),
        group_key: group.map(str::to_string),
        name: id.rsplit('/').next().unwrap().to_string(),
        body: body.to_string(),
        etag: etag.to_string(),
        created_at: "t0".to_string(),
        updated_at: "t0".to_string(),
    }
}

/// The suite every backend must pass.
async fn contract(store: Store) {
    // Insert and read back; IDs are keyed case-insensitively.
    let a = resource("/subscriptions/s/resourceGroups/G/providers/X/things/A", "x/things", Some("g"), "{\"v\":1}", "e1");
    let mut tx = store.write().await.unwrap();
    tx.insert_resource(&a).await.unwrap();
    tx.commit().await.unwrap();
    let got = store.get_resource(&a.id.to_ascii_lowercase()).await.unwrap().unwrap();
    assert_eq!(got, a);

    // A duplicate insert is a conflict and leaves the row alone.
    let mut tx = store.write().await.unwrap();
    let dup = resource("/subscriptions/s/resourcegroups/g/providers/X/things/a", "x/things", Some("g"), "{}", "e9");
    assert!(matches!(tx.insert_resource(&dup).await, Err(StoreError::Conflict(_))));
    drop(tx);
    assert_eq!(store.get_resource(&a.id_key()).await.unwrap().unwrap().etag, "e1");

    // Compare-and-swap on the ETag.
    let mut tx = store.write().await.unwrap();
    let mut a2 = a.clone();
    a2.body = "{\"v\":2}".into();
    a2.etag = "e2".into();
    assert!(!tx.update_resource(&a2, "wrong").await.unwrap());
    assert!(tx.update_resource(&a2, "e1").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.get_resource(&a.id_key()).await.unwrap().unwrap().body, "{\"v\":2}");

    // A transaction dropped without commit leaves nothing behind.
    let b = resource("/subscriptions/s/resourceGroups/g/providers/X/things/b", "x/things", Some("g"), "{}", "e1");
    {
        let mut tx = store.write().await.unwrap();
        tx.insert_resource(&b).await.unwrap();
        tx.claim_name("thing", "b", &b.id_key()).await.unwrap();
    }
    assert!(store.get_resource(&b.id_key()).await.unwrap().is_none());
    assert!(store.name_owner("thing", "b").await.unwrap().is_none());

    // Keyset paging in key order, filtered by kind and group.
    let mut tx = store.write().await.unwrap();
    for n in ["c", "d", "e"] {
        tx.insert_resource(&resource(
            &format!("/subscriptions/s/resourceGroups/g/providers/X/things/{n}"),
            "x/things",
            Some("g"),
            "{}",
            "e",
        ))
        .await
        .unwrap();
    }
    tx.insert_resource(&resource("/subscriptions/s/resourceGroups/h/providers/X/things/z", "x/things", Some("h"), "{}", "e"))
        .await
        .unwrap();
    tx.insert_resource(&resource("/subscriptions/s/resourceGroups/g/providers/X/others/y", "x/others", Some("g"), "{}", "e"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let page1 = store
        .list_resources(&ListQuery {
            kind: Some("x/things"),
            subscription_id: "s",
            group_key: Some("g"),
            id_prefix: None,
            after_key: None,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(page1.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["A", "c"]);
    let after = page1.last().unwrap().id_key();
    let page2 = store
        .list_resources(&ListQuery {
            kind: Some("x/things"),
            subscription_id: "s",
            group_key: Some("g"),
            id_prefix: None,
            after_key: Some(&after),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(page2.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["d", "e"]);
    let all_kinds = store
        .list_resources(&ListQuery { kind: None, subscription_id: "s", group_key: None, id_prefix: None, after_key: None, limit: 100 })
        .await
        .unwrap();
    assert_eq!(all_kinds.len(), 6);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.count_in_group("s", "g").await.unwrap(), 5);
    assert!(tx.delete_resource(&after).await.unwrap());
    assert!(!tx.delete_resource(&after).await.unwrap());
    tx.commit().await.unwrap();

    // Installation-wide names: one owner each, idempotent for the owner, released together.
    let mut tx = store.write().await.unwrap();
    tx.claim_name("registry", "shared", "owner1").await.unwrap();
    tx.claim_name("registry", "shared", "owner1").await.unwrap();
    tx.claim_name("storage", "shared", "owner2").await.unwrap();
    assert!(matches!(tx.claim_name("registry", "shared", "owner2").await, Err(StoreError::Conflict(_))));
    tx.commit().await.unwrap();
    assert_eq!(store.name_owner("registry", "shared").await.unwrap().as_deref(), Some("owner1"));
    let mut tx = store.write().await.unwrap();
    tx.release_names("owner1").await.unwrap();
    tx.commit().await.unwrap();
    assert!(store.name_owner("registry", "shared").await.unwrap().is_none());
    assert_eq!(store.name_owner("storage", "shared").await.unwrap().as_deref(), Some("owner2"));

    // Meta, principals, operations.
    let mut tx = store.write().await.unwrap();
    tx.put_meta("k", "v1").await.unwrap();
    tx.put_meta("k", "v2").await.unwrap();
    let p = PrincipalRow {
        object_id: "o1".into(),
        kind: "ServicePrincipal".into(),
        display_name: "sp".into(),
        app_id: Some("app1".into()),
        secret_hash: None,
        created_at: "t".into(),
        upn: None,
        issuer: None,
        subject: None,
    };
    tx.insert_principal(&p).await.unwrap();
    assert!(matches!(tx.insert_principal(&PrincipalRow { object_id: "o2".into(), ..p.clone() }).await, Err(StoreError::Conflict(_))));
    assert!(tx.set_principal_secret("o1", "h").await.unwrap());
    let op = OperationRow {
        id: "op1".into(),
        subscription_id: "s".into(),
        location: "eastus".into(),
        kind: "k".into(),
        resource_id: "/subscriptions/s".into(),
        status: "Succeeded".into(),
        error: None,
        started_at: "t".into(),
        ended_at: Some("t".into()),
        principal_id: "o1".into(),
    };
    tx.insert_operation(&op).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.principal_by_app_id("app1").await.unwrap().unwrap().secret_hash.as_deref(), Some("h"));
    assert_eq!(store.operation("op1").await.unwrap().unwrap(), op);
    assert!(store.operation("nope").await.unwrap().is_none());

    // Blob listings match prefixes by characters, not bytes (non-ASCII names).
    let mut tx = store.write().await.unwrap();
    for name in ["modèle/a.bin", "modèle/b.bin", "model/c.bin"] {
        tx.put_blob(&moat_store::BlobRow {
            account: "acct".into(),
            container: "c1".into(),
            name: name.into(),
            digest: "sha256:00".into(),
            size: 1,
            etag: "e".into(),
            content_type: None,
            created_at: "t".into(),
            updated_at: "t".into(),
            parts: None,
            metadata: None,
        })
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let listed: Vec<String> = store.list_blobs("acct", "c1", "modèle/", None, 10).await.unwrap().into_iter().map(|b| b.name).collect();
    assert_eq!(listed, ["modèle/a.bin", "modèle/b.bin"]);
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.list_all_blobs("acct", "c1", "modèle/").await.unwrap().len(), 2);
    drop(tx);

    // A blob written over takes the new content and keeps its creation time.
    let mut tx = store.write().await.unwrap();
    let over = moat_store::BlobRow {
        account: "acct".into(),
        container: "c1".into(),
        name: "model/c.bin".into(),
        // The same content (later checks count references), another size, tag and type.
        digest: "sha256:00".into(),
        size: 2,
        etag: "e2".into(),
        content_type: Some("text/plain".into()),
        created_at: "later".into(),
        updated_at: "later".into(),
        parts: None,
        metadata: Some(r#"{"upload_status":"completed"}"#.into()),
    };
    assert_eq!(tx.put_blob(&over).await.unwrap(), "t", "the first write's creation time");
    tx.commit().await.unwrap();
    let got = store.blob("acct", "c1", "model/c.bin").await.unwrap().unwrap();
    assert_eq!(got, moat_store::BlobRow { created_at: "t".into(), ..over.clone() });
    // Metadata replaced on its own: a new etag and modification time, the content as it was.
    let mut tx = store.write().await.unwrap();
    assert!(tx.set_blob_metadata(("acct", "c1", "model/c.bin"), Some(r#"{"a":"1"}"#), "e3", "later2").await.unwrap());
    assert!(!tx.set_blob_metadata(("acct", "c1", "no-such"), None, "e4", "later2").await.unwrap(), "no such blob");
    tx.commit().await.unwrap();
    let got = store.blob("acct", "c1", "model/c.bin").await.unwrap().unwrap();
    let want = moat_store::BlobRow {
        created_at: "t".into(),
        etag: "e3".into(),
        updated_at: "later2".into(),
        metadata: Some(r#"{"a":"1"}"#.into()),
        ..over
    };
    assert_eq!(got, want);

    // Clearing a blob's staged blocks says where their bytes were, and only theirs.
    let mut tx = store.write().await.unwrap();
    for (name, id, digest) in [("b", "id1", "staged:f1:0:t1"), ("b", "id2", "sha256:01"), ("other", "id1", "staged:f2:0:t2")] {
        tx.put_block(&moat_store::BlockRow {
            account: "acct".into(),
            container: "c1".into(),
            name: name.into(),
            block_id: id.into(),
            digest: digest.into(),
            size: 1,
            staged_at: "t".into(),
        })
        .await
        .unwrap();
    }
    let mut cleared = tx.clear_blocks("acct", "c1", "b").await.unwrap();
    tx.commit().await.unwrap();
    cleared.sort();
    assert_eq!(cleared, ["sha256:01", "staged:f1:0:t1"]);
    assert!(store.blocks("acct", "c1", "b").await.unwrap().is_empty());
    assert_eq!(store.staged_block_places().await.unwrap(), ["staged:f2:0:t2"]);

    // Every reference to stored content, for garbage collection: blobs (with a part list),
    // blocks, image blobs and manifests, in one statement.
    let mut tx = store.write().await.unwrap();
    tx.put_blob(&moat_store::BlobRow {
        account: "acct".into(),
        container: "c2".into(),
        name: "parted".into(),
        digest: "sha256:0a".into(),
        size: 2,
        etag: "e".into(),
        content_type: None,
        created_at: "t".into(),
        updated_at: "t".into(),
        parts: Some(r#"[["sha256:0b",1],["sha256:0c",1]]"#.into()),
        metadata: None,
    })
    .await
    .unwrap();
    tx.oci_link_blob(&moat_store::OciBlobRow {
        acr: "acr".into(),
        repo: "r".into(),
        digest: "sha512:0d".into(),
        sha256: "sha256:0d".into(),
        size: 1,
        created_at: "t".into(),
    })
    .await
    .unwrap();
    tx.oci_put_manifest(&moat_store::OciManifestRow {
        acr: "acr".into(),
        repo: "r".into(),
        digest: "sha256:0e".into(),
        sha256: "sha256:0e".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 1,
        subject: None,
        artifact_type: None,
        annotations: None,
        created_at: "t".into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut seen = Vec::new();
    store
        .referenced_content(|d, parts| {
            seen.push(d.to_string());
            seen.extend(parts.map(str::to_string));
        })
        .await
        .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [
            r#"[["sha256:0b",1],["sha256:0c",1]]"#,
            "sha256:00",
            "sha256:00",
            "sha256:00",
            "sha256:0a",
            "sha256:0d",
            "sha256:0e",
            "staged:f2:0:t2"
        ]
    );

    // A batch of activity entries of an awkward size is stored whole, each entry once, and
    // read back newest first, bounded by time.
    let rows: Vec<ActivityRow> = (0..343)
        .map(|i| ActivityRow {
            id: format!("2026-01-01T00:{:02}:{:02}Z-{i:012}", i / 60, i % 60),
            time: format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
            principal_id: (i % 2 == 0).then(|| "p".to_string()),
            principal_name: None,
            client: "127.0.0.1:1".into(),
            origin: "public".into(),
            action: "a/read".into(),
            resource_id: "/subscriptions/s".into(),
            result: "allowed".into(),
            rule: format!("rule {i}"),
        })
        .collect();
    let mut tx = store.write().await.unwrap();
    tx.insert_activities(&rows.iter().collect::<Vec<_>>()).await.unwrap();
    tx.commit().await.unwrap();
    let all = store.activity(&ActivityQuery { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 343);
    assert_eq!(all[0], rows[342]);
    assert_eq!(all[342], rows[0]);
    let since = store.activity(&ActivityQuery { since: Some("2026-01-01T00:05:00Z"), limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(since.len(), 343 - 300);
    let theirs = store.activity(&ActivityQuery { principal_id: Some("p"), limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(theirs.len(), 172);
    // Each distinct text is stored once: 343 rules, and p, public, a/read, the resource and
    // allowed (the client address is kept in the entry).
    assert_eq!(store.activity_counts().await.unwrap(), (343, 343 + 5));
    let below =
        store.activity(&ActivityQuery { resource_prefix: Some("/SUBSCRIPTIONS/S"), limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(below.len(), 343);
    let elsewhere =
        store.activity(&ActivityQuery { resource_prefix: Some("/subscriptions/t"), limit: 1000, ..Default::default() }).await.unwrap();
    assert!(elsewhere.is_empty());

    // A text numbered by a transaction that rolled back is not remembered by its number: the
    // next text may take that number, and an entry naming the first one must still show it.
    let entry = |n: u32, rule: &str| ActivityRow {
        id: format!("2026-01-02T00:00:00.00000{n}Z-{n:012}"),
        time: format!("2026-01-02T00:00:00.00000{n}Z"),
        principal_id: None,
        principal_name: Some("someone".into()),
        client: "127.0.0.1:2".into(),
        origin: "public".into(),
        action: "a/write".into(),
        resource_id: "/subscriptions/s/x".into(),
        result: "denied".into(),
        rule: rule.into(),
    };
    let mut tx = store.write().await.unwrap();
    tx.insert_activities(&[&entry(1, "rolled back")]).await.unwrap();
    drop(tx);
    let (taken, again) = (entry(2, "taken"), entry(3, "rolled back"));
    let mut tx = store.write().await.unwrap();
    tx.insert_activities(&[&taken, &again]).await.unwrap();
    tx.commit().await.unwrap();
    let got = store.activity(&ActivityQuery { since: Some("2026-01-02T00:00:00.000000Z"), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(got, [again, taken]);

    // A text too long to index whole (here a path of 9,000 bytes, the cut falling inside a
    // two-byte character) is stored cut, with its length noted, and the entry is not lost.
    let long_path = format!("/{}é{}", "a".repeat(1022), "b".repeat(7_975));
    let long = ActivityRow { resource_id: long_path.clone(), ..entry(4, "long") };
    let mut tx = store.write().await.unwrap();
    tx.insert_activities(&[&long]).await.unwrap();
    tx.commit().await.unwrap();
    let got = store.activity(&ActivityQuery { since: Some("2026-01-02T00:00:00.000004Z"), limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(got[0].resource_id, format!("/{}… (9000 bytes in all)", "a".repeat(1022)));
    assert_eq!(long_path.len(), 9000);

    // Concurrent writers are serialised: no lost update.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = s.write().await.unwrap();
            let n: i64 = tx.get_meta("counter").await.unwrap().map(|v| v.parse().unwrap()).unwrap_or(0);
            tokio::task::yield_now().await;
            tx.put_meta("counter", &(n + 1).to_string()).await.unwrap();
            tx.commit().await.unwrap();
            i
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get_meta("counter").await.unwrap().as_deref(), Some("16"));

    // Content claims and collectors' marks (object store garbage collection).
    let tx_do = |f: fn(&mut moat_store::WriteTx) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>| {
        let store = store.clone();
        async move {
            let mut tx = store.write().await.unwrap();
            let got = f(&mut tx).await;
            tx.commit().await.unwrap();
            got
        }
    };
    assert!(tx_do(|tx| Box::pin(async { tx.claim_content("sha256:aa", 1_000, 0).await.unwrap() })).await);
    assert!(tx_do(|tx| Box::pin(async { tx.claim_content("sha256:aa", 3_000, 0).await.unwrap() })).await, "a later claim renews it");
    assert!(store.claimed_since("sha256:aa", 3_000).await.unwrap());
    assert!(!store.claimed_since("sha256:aa", 3_001).await.unwrap());
    assert!(!store.claimed_since("sha256:cc", 0).await.unwrap(), "never claimed");
    // A collector whose cutoff is after the claim may mark it; one before may not.
    assert!(!tx_do(|tx| Box::pin(async { tx.mark_deleting("sha256:aa", 5_000, 3_000, 0).await.unwrap() })).await, "claimed at its cutoff");
    assert!(tx_do(|tx| Box::pin(async { tx.mark_deleting("sha256:aa", 5_000, 3_001, 0).await.unwrap() })).await);
    assert!(!store.claimed_since("sha256:aa", 0).await.unwrap(), "marked content is not claimed");
    // While it is marked, a writer's claim fails, and so does another collector's mark; a
    // mark older than `abandoned` gives way to both.
    assert!(!tx_do(|tx| Box::pin(async { tx.claim_content("sha256:aa", 6_000, 4_000).await.unwrap() })).await, "being deleted");
    assert!(!tx_do(|tx| Box::pin(async { tx.mark_deleting("sha256:aa", 6_000, 9_000, 4_000).await.unwrap() })).await);
    assert!(
        tx_do(|tx| Box::pin(async { tx.mark_deleting("sha256:aa", 6_000, 9_000, 5_001).await.unwrap() })).await,
        "abandoned mark taken over"
    );
    assert!(tx_do(|tx| Box::pin(async { tx.claim_content("sha256:aa", 7_000, 6_001).await.unwrap() })).await, "abandoned mark given up");
    assert!(store.claimed_since("sha256:aa", 7_000).await.unwrap());
    // Content never claimed can be marked; the mark ends with its stamp only.
    assert!(tx_do(|tx| Box::pin(async { tx.mark_deleting("sha256:bb", 8_000, 1, 0).await.unwrap() })).await);
    tx_do(|tx| {
        Box::pin(async {
            tx.unmark_deleting("sha256:bb", 7_999).await.unwrap();
            true
        })
    })
    .await;
    assert!(!tx_do(|tx| Box::pin(async { tx.claim_content("sha256:bb", 9_000, 0).await.unwrap() })).await, "another stamp: still marked");
    tx_do(|tx| {
        Box::pin(async {
            tx.unmark_deleting("sha256:bb", 8_000).await.unwrap();
            true
        })
    })
    .await;
    assert!(tx_do(|tx| Box::pin(async { tx.claim_content("sha256:bb", 9_000, 0).await.unwrap() })).await, "unmarked");
    // Pruning forgets claims before a time, not marks.
    assert!(tx_do(|tx| Box::pin(async { tx.claim_content("sha256:dd", 500, 0).await.unwrap() })).await);
    assert!(tx_do(|tx| Box::pin(async { tx.mark_deleting("sha256:ee", 600, 1, 0).await.unwrap() })).await);
    assert!(tx_do(|tx| Box::pin(async { tx.prune_claims(8_000).await.unwrap() == 2 })).await, "dd's and aa's claims (ee is a mark)");
    assert!(store.claimed_since("sha256:bb", 9_000).await.unwrap());
    assert!(!tx_do(|tx| Box::pin(async { tx.claim_content("sha256:ee", 9_500, 0).await.unwrap() })).await, "ee is still marked");
}

/// A database that an older moat (schema 8) left with activity entries in one wide table is
/// brought to the numbered texts without losing or changing an entry.
async fn activity_log_migration(url: &str) {
    use sqlx::{Connection, Executor};
    Store::open_upto(url, 8).await.unwrap().close().await;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let old = [
        (
            "2026-01-01T00:00:00.000001Z-0000000000a1",
            Some("p1"),
            Some("alice"),
            "10.0.0.1:1",
            "public",
            "x/read",
            "/subscriptions/s/a",
            "allowed",
            "role",
        ),
        (
            "2026-01-01T00:00:00.000002Z-0000000000a2",
            None,
            None,
            "10.0.0.2:2",
            "public",
            "authenticate",
            "/subscriptions/s/a",
            "unauthenticated",
            "no token",
        ),
        (
            "2026-01-01T00:00:00.000003Z-0000000000a3",
            Some("p1"),
            Some("alice"),
            "10.0.0.1:1",
            "private endpoint pe1",
            "x/write",
            "/subscriptions/s/b",
            "denied",
            "role",
        ),
    ];
    // An old text too long to index on PostgreSQL (8,000 characters that do not compress).
    let mut x: u64 = 7;
    let long: String = (0..8000)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x >> 58) as usize % 36])
        })
        .collect();
    let long_resource = format!("/subscriptions/s/{long}");
    let old = [
        old[0],
        old[1],
        old[2],
        (
            "2026-01-01T00:00:00.000004Z-0000000000a4",
            None,
            None,
            "10.0.0.3:3",
            "public",
            "authenticate",
            long_resource.as_str(),
            "unauthenticated",
            "no token",
        ),
    ];
    for (id, pid, pname, client, origin, action, resource, result, rule) in old {
        conn.execute(
            sqlx::query(
                "INSERT INTO activity_log (id, time, principal_id, principal_name, client, origin, action, resource_id, result, rule) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id)
            .bind(&id[..27])
            .bind(pid)
            .bind(pname)
            .bind(client)
            .bind(origin)
            .bind(action)
            .bind(resource)
            .bind(result)
            .bind(rule),
        )
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
    let store = Store::open(url).await.unwrap();
    let got = store.activity(&ActivityQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(got[0].resource_id, format!("{}… (8017 bytes in all)", &long_resource[..600]));
    let want: Vec<ActivityRow> = old[..3]
        .iter()
        .rev()
        .map(|(id, pid, pname, client, origin, action, resource, result, rule)| ActivityRow {
            id: id.to_string(),
            time: id[..27].to_string(),
            principal_id: pid.map(str::to_string),
            principal_name: pname.map(str::to_string),
            client: client.to_string(),
            origin: origin.to_string(),
            action: action.to_string(),
            resource_id: resource.to_string(),
            result: result.to_string(),
            rule: rule.to_string(),
        })
        .collect();
    assert_eq!(got[1..], want);
    // p1; alice; public, private endpoint pe1; x/read, authenticate, x/write; three resources;
    // allowed, unauthenticated, denied; role, no token.
    assert_eq!(store.activity_counts().await.unwrap(), (4, 15));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_activity_log_migration() {
    let dir = tempfile::tempdir().unwrap();
    activity_log_migration(&format!("sqlite://{}/moat.db?mode=rwc", dir.path().display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backend() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/moat.db", dir.path().display());
    contract(Store::open(&url).await.unwrap()).await;
    // Reopening keeps everything and does not re-run migrations.
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.get_meta("counter").await.unwrap().as_deref(), Some("16"));
}

/// The same contract on PostgreSQL, in a fresh database of the server that
/// `MOAT_TEST_POSTGRES_URL` names (scripts/test.sh starts one on loopback and sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backend() {
    use sqlx::{Connection, Executor};
    let Ok(admin) = std::env::var("MOAT_TEST_POSTGRES_URL") else {
        eprintln!("SKIP postgres_backend: MOAT_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL on loopback and sets it)");
        return;
    };
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("moat_suite_{}_{nanos}", std::process::id());
    let (base, _) = admin.rsplit_once('/').unwrap();
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").as_str()).await.unwrap();
    let url = format!("{base}/{name}");
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    contract(store.clone()).await;
    store.close().await;
    // Reopening keeps everything and does not re-run migrations.
    let again = Store::open(&url).await.unwrap();
    assert_eq!(again.get_meta("counter").await.unwrap().as_deref(), Some("16"));
    again.close().await;

    // A database whose collation would order names differently from SQLite is refused, with the fix.
    let other = format!("{name}_collated");
    let made = conn.execute(format!("CREATE DATABASE {other} TEMPLATE template0 LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'").as_str()).await;
    if made.is_ok() {
        // C.UTF-8 sorts by code point, like C: accepted.
        let s = Store::open(&format!("{base}/{other}")).await.unwrap();
        s.close().await;
        conn.execute(format!("DROP DATABASE {other} WITH (FORCE)").as_str()).await.unwrap();
    }
    conn.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str()).await.unwrap();

    let migrated = format!("{name}_migrated");
    conn.execute(format!("CREATE DATABASE {migrated} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").as_str()).await.unwrap();
    activity_log_migration(&format!("{base}/{migrated}")).await;
    conn.execute(format!("DROP DATABASE {migrated} WITH (FORCE)").as_str()).await.unwrap();
}

#[tokio::test]
async fn unknown_database_urls_are_refused_without_echoing_passwords() {
    let err = Store::open("mysql://moat:s3cret@127.0.0.1/db").await.unwrap_err().to_string();
    assert!(err.contains("sqlite://") && err.contains("postgres://"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}
