//! The activity log's promises about reads, through the real binary: with the default
//! `audit_reads = "async"` an allowed read is logged after its answer and a clean stop writes
//! every queued entry; with `durable` every answered read is in the log even if moat is killed
//! right after. And reads served from memory never show a document older than its last write.

#![allow(clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Http, Server};
use serde_json::json;

const READS: usize = 240;

/// Creates resource group `name` and reads it `READS` times, 16 at a time; every read must be
/// answered 200.
async fn read_group_many_times(http: &Http, sub: &str, name: &str) -> String {
    let group = format!("{sub}/resourceGroups/{name}");
    let r = http.call("PUT", &group, Some(&json!({"location": "eastus"})), &[]).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    for _ in 0..READS / 16 {
        let batch: Vec<_> = (0..16)
            .map(|_| {
                let (http, group) = (http.anonymous().with_token(http.token.as_deref().unwrap()), group.clone());
                tokio::spawn(async move { http.get(&group).await.status })
            })
            .collect();
        for b in batch {
            assert_eq!(b.await.unwrap(), 200);
        }
    }
    group
}

/// How many allowed reads of `group` the activity log holds.
async fn logged_reads(http: &Http, sub: &str, group: &str) -> usize {
    let r = http
        .get(&format!(
            "{sub}/providers/Microsoft.Insights/eventtypes/management/values?$top=1000&$filter=resourceId eq '{group}' and result eq 'allowed'"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operationName"].as_str().is_some_and(|o| o.ends_with("resourceGroups/read")))
        .filter(|e| e["resourceId"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(group)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_logged_after_their_answer_are_all_written_by_a_clean_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[]);
    let sub = server.sub_path();
    let group = read_group_many_times(&server.http(), &sub, "audited").await;
    // Stopped at once: entries still queued must be written before moat exits.
    server.stop();
    let server = Server::start_in(&dir, &[]);
    assert_eq!(logged_reads(&server.http(), &sub, &group).await, READS, "every answered read is logged exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_durable_read_audit_every_answered_read_survives_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start_in(&dir, &[("MOAT_AUDIT_READS", "durable")]);
    let sub = server.sub_path();
    let group = read_group_many_times(&server.http(), &sub, "audited").await;
    // SIGKILL right after the last answer: no chance to write anything more.
    server.kill();
    let server = Server::start_in(&dir, &[]);
    assert_eq!(logged_reads(&server.http(), &sub, &group).await, READS);
}

#[test]
fn an_unknown_audit_reads_value_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls=false", "--data-dir"])
        .arg(tmp.path())
        .env("MOAT_AUDIT_READS", "sometimes")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit_reads") && err.contains("async or durable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_a_write_sees_the_write() {
    // Documents read by ID are served from memory; every write must be seen by the next read.
    let server = Server::start();
    let http = server.http();
    let reg = server.registry_path("default", "fresh");
    assert!(matches!(http.call("PUT", &reg, Some(&common::registry_body("eastus")), &[]).await.status, 200 | 201));
    let version = format!("{reg}/components/c/versions/1");
    let spec = json!({"name": "c", "type": "command", "command": "echo hi"});
    for i in 0..40 {
        let body = json!({"properties": {"componentSpec": spec, "description": format!("round {i}")}});
        let put = http.call("PUT", &version, Some(&body), &[]).await;
        assert!(put.status == 200 || put.status == 201, "{}", put.text);
        let got = http.get(&version).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body["properties"]["description"], format!("round {i}"), "round {i}: a stale document was served");
        let tags = http.get(&format!("{reg}/components/c")).await;
        assert_eq!(tags.body["properties"]["latestVersion"], "1");
    }
    // Archived, then deleted: the next reads say so.
    let body = json!({"properties": {"componentSpec": spec, "isArchived": true}});
    assert_eq!(http.call("PUT", &version, Some(&body), &[]).await.status, 200);
    assert_eq!(http.get(&version).await.body["properties"]["isArchived"], true);
    assert_eq!(http.call("DELETE", &version, None, &[]).await.status, 200);
    assert_eq!(http.get(&version).await.status, 404);
}

/// A list shows each caller what they may read, and is in the activity log as one read of the
/// listed scope whose rule says whether a role there showed everything or the list was filtered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_logged_at_their_scope_with_what_they_showed() {
    const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    let server = Server::start();
    let admin = server.http();
    let sub = server.sub_path();
    for g in ["listed-a", "listed-b"] {
        let r = admin.call("PUT", &format!("{sub}/resourceGroups/{g}"), Some(&json!({"location": "eastus"})), &[]).await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
        let r = admin.call("PUT", &server.registry_path(g, &format!("reg-{g}")), Some(&common::registry_body("eastus")), &[]).await;
        assert!(r.status == 200 || r.status == 201, "{}", r.text);
    }
    let (oid, app, secret) = common::create_sp(&admin, "lister").await;
    common::assign(&admin, &server.registry_path("listed-a", "reg-listed-a"), &oid, READER).await;
    let tenant = server.profile().tenant;
    let reader = admin.with_token(&common::token_for(&admin, &tenant, &app, &secret).await);

    let path = format!("{sub}/providers/Microsoft.MachineLearningServices/registries?api-version=2024-10-01");
    let seen = |r: &common::Reply| {
        let mut names: Vec<String> = r.body["value"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    let r = reader.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(seen(&r), ["reg-listed-a"], "the reader sees only the registry they may read");
    let r = admin.get(&path).await;
    assert_eq!(seen(&r), ["reg-listed-a", "reg-listed-b"]);

    let log =
        admin.get(&format!("{sub}/providers/Microsoft.Insights/eventtypes/management/values?$top=1000&$filter=result eq 'allowed'")).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let lists: Vec<&serde_json::Value> = log.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operationName"] == "Microsoft.MachineLearningServices/registries/read" && e["resourceId"] == sub.as_str())
        .collect();
    let by = |p: &str| lists.iter().filter(|e| e["principalId"] == p).map(|e| e["rule"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let reader_rules = by(&oid);
    assert_eq!(reader_rules.len(), 1, "one entry for the reader's list: {lists:#?}");
    assert!(reader_rules[0].contains("the list shows only the items below it that a role lets them read"), "{}", reader_rules[0]);
    let admin_rules: Vec<String> =
        lists.iter().filter(|e| e["principalId"] != oid.as_str()).map(|e| e["rule"].as_str().unwrap().to_string()).collect();
    assert_eq!(admin_rules.len(), 1, "{lists:#?}");
    assert!(admin_rules[0].starts_with("role 'Owner' assigned at"), "{}", admin_rules[0]);
}

/// `eventTimestamp ge` compares times, not text: an entry logged within the second a filter
/// names (whole seconds, or another offset) is found, and newer-first order is time order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_filters_compare_times_not_text() {
    let server = Server::start();
    let http = server.http();
    let sub = server.sub_path();
    let group = format!("{sub}/resourceGroups/timed");
    let r = http.call("PUT", &group, Some(&json!({"location": "eastus"})), &[]).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    for _ in 0..20 {
        assert_eq!(http.get(&group).await.status, 200);
    }
    async fn query(http: &Http, sub: &str, filter: String) -> Vec<serde_json::Value> {
        let r = http.get(&format!("{sub}/providers/Microsoft.Insights/eventtypes/management/values?$top=1000&$filter={filter}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["value"].as_array().unwrap().clone()
    }
    let all = query(&http, &sub, format!("resourceId eq '{group}'")).await;
    assert!(all.len() >= 21, "{}", all.len());
    let times: Vec<time::OffsetDateTime> = all
        .iter()
        .map(|e| {
            time::OffsetDateTime::parse(e["eventTimestamp"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first, by time: {times:?}");
    let oldest = *times.last().unwrap();
    // The oldest entry's second, written without fractions and in another offset.
    let second = oldest.replace_nanosecond(0).unwrap().to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
    let since = second.format(&time::format_description::well_known::Rfc3339).unwrap();
    let found = query(&http, &sub, format!("eventTimestamp ge '{}' and resourceId eq '{group}'", since.replace('+', "%2B"))).await;
    assert_eq!(found.len(), all.len(), "every entry from {since} on, including those within its first second");
    let later = (oldest + time::Duration::microseconds(1)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let after = query(&http, &sub, format!("eventTimestamp ge '{later}' and resourceId eq '{group}'")).await;
    assert!(after.len() < all.len(), "the oldest entry is before {later}");
}
