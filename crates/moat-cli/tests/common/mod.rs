//! Test harness: runs the real `moat` binary on a loopback port 0 in a temporary data
//! directory, and talks to it with the real CLI and a plain HTTP client.

#![allow(dead_code, clippy::disallowed_methods, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_moat");

pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    pub profile: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stdout: mpsc::Receiver<String>,
    /// What `moat serve` printed up to and including its "ready in" line.
    pub banner: Vec<String>,
}

pub struct Profile {
    pub subscription: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
}

impl Server {
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut s = Server::start_in(&dir, &[]);
        s._tmp = Some(tmp);
        s
    }

    /// Starts `moat serve` on `dir` (which may hold an earlier run's state). Plain HTTP on
    /// loopback (`MOAT_TLS=false`) unless `envs` says otherwise, so that the tests' plain
    /// clients can talk to it; [`Server::start_default`] keeps moat's own default (HTTPS).
    pub fn start_in(dir: &Path, envs: &[(&str, &str)]) -> Server {
        let mut with_plain = vec![("MOAT_TLS", "false")];
        with_plain.extend_from_slice(envs);
        Server::launch(dir, &with_plain)
    }

    /// Starts `moat serve` on `dir` with nothing but `envs` set: moat's defaults.
    pub fn start_default(dir: &Path, envs: &[(&str, &str)]) -> Server {
        Server::launch(dir, envs)
    }

    fn launch(dir: &Path, envs: &[(&str, &str)]) -> Server {
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let mut cmd = Command::new(BIN);
        let listen = envs.iter().find(|(k, _)| *k == "MOAT_LISTEN").map_or("127.0.0.1:0", |(_, v)| *v);
        cmd.args(["serve", "--listen", listen, "--data-dir"]).arg(dir);
        cmd.env_remove("MOAT_PROFILE").env_remove("MOAT_TLS").env("MOAT_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = None;
        let mut banner = Vec::new();
        while !banner.last().is_some_and(|l: &String| l.starts_with("  ready in ")) {
            let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
                let err = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
                panic!("moat did not report readiness; its log:\n{err}")
            });
            url = url.or_else(|| line.strip_prefix("moat listening on ").map(str::to_string));
            banner.push(line);
        }
        let url = url.unwrap_or_else(|| panic!("no 'moat listening on' line before 'ready in': {banner:?}"));
        Server { child: Some(child), dir: dir.to_path_buf(), url, profile: dir.join("profile.json"), _tmp: None, stdout: rx, banner }
    }

    pub fn profile(&self) -> Profile {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&self.profile).unwrap()).unwrap();
        Profile {
            subscription: v["subscriptionId"].as_str().unwrap().to_string(),
            tenant: v["tenantId"].as_str().unwrap().to_string(),
            client_id: v["clientId"].as_str().unwrap().to_string(),
            client_secret: v["clientSecret"].as_str().unwrap().to_string(),
        }
    }

    /// Runs the CLI against this server.
    pub fn moat(&self, args: &[&str]) -> Output {
        self.moat_command(args).output().unwrap()
    }

    /// The CLI command against this server, to run as the caller likes; its records of
    /// unfinished uploads stay beside the data directory.
    pub fn moat_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--profile")
            .arg(&self.profile)
            .args(args)
            .env_remove("MOAT_PROFILE")
            .env("MOAT_STATE_DIR", self.dir.with_extension("state"));
        cmd
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// Runs the CLI inside network namespace `ns` (`ip netns exec`), as a process there would.
    pub fn moat_in(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, BIN, "--profile"])
            .arg(&self.profile)
            .args(args)
            .env_remove("MOAT_PROFILE")
            .env("MOAT_STATE_DIR", self.dir.with_extension(format!("state-{ns}")))
            .output()
            .unwrap()
    }

    /// Runs the CLI, asserts success and parses its JSON output.
    pub fn moat_json(&self, args: &[&str]) -> Value {
        let out = self.moat(args);
        assert!(out.status.success(), "moat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("moat {args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A management token for the administrator, through the CLI.
    pub fn token(&self) -> String {
        self.moat_json(&["account", "get-access-token"])["accessToken"].as_str().unwrap().to_string()
    }

    pub fn sub_path(&self) -> String {
        format!("/subscriptions/{}", self.profile().subscription)
    }

    pub fn registry_path(&self, group: &str, name: &str) -> String {
        format!("{}/resourceGroups/{group}/providers/Microsoft.MachineLearningServices/registries/{name}", self.sub_path())
    }

    pub fn http(&self) -> Http {
        moat_client::install_crypto_provider();
        Http { base: self.url.clone(), token: Some(self.token()), client: reqwest::Client::new() }
    }

    /// An HTTP client for a TLS server, trusting the CA certificate at `ca` (and nothing else).
    pub fn http_trusting(&self, ca: &str) -> Http {
        moat_client::install_crypto_provider();
        let pem = std::fs::read(ca).unwrap();
        let client = reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]).build().unwrap();
        Http { base: self.url.clone(), token: Some(self.token()), client }
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap()
    }

    /// Kills the server with SIGKILL: no chance to clean up, as in a crash or power loss.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let _ = child.wait();
    }

    /// Stops the server with SIGTERM and checks it shut down cleanly.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "moat exited with {exit}");
        let mut saw_stop = false;
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            saw_stop |= line == "moat stopped";
        }
        assert!(saw_stop, "moat did not report a clean stop");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP client speaking raw requests to the server.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub token: Option<String>,
    pub client: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
    pub fn code(&self) -> String {
        self.body["error"]["code"].as_str().unwrap_or_default().to_string()
    }

    /// The specific code of an error in any envelope: AzureML's `innerError.code`, ARM's
    /// `error.code`, or the blob plane's `x-ms-error-code`.
    pub fn specific_code(&self) -> String {
        self.body["error"]["innerError"]["code"]
            .as_str()
            .map(str::to_string)
            .or_else(|| self.header("x-ms-error-code"))
            .unwrap_or_else(|| self.code())
    }
}

impl Http {
    pub fn anonymous(&self) -> Http {
        Http { base: self.base.clone(), token: None, client: self.client.clone() }
    }

    /// The same caller, talking to `base` from source address `source` (a client "inside" a
    /// loopback virtual network binds an address of its range).
    pub fn at(&self, base: &str, source: Option<std::net::IpAddr>) -> Http {
        moat_client::install_crypto_provider();
        let client = reqwest::Client::builder().local_address(source).build().unwrap();
        Http { base: base.trim_end_matches('/').to_string(), token: self.token.clone(), client }
    }

    pub fn with_token(&self, t: &str) -> Http {
        Http { base: self.base.clone(), token: Some(t.to_string()), client: self.client.clone() }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
        let raw = body.map(|b| b.to_string());
        let ct = if raw.is_some() { Some("application/json") } else { None };
        self.raw(method, path, raw.map(String::into_bytes), ct, headers).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) };
        let mut req = self.client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, &[]).await
    }
}

/// A minimal registry body.
pub fn registry_body(location: &str) -> Value {
    serde_json::json!({"location": location, "properties": {}})
}

/// A new service principal: (object ID, app ID, secret).
pub async fn create_sp(admin: &Http, name: &str) -> (String, String, String) {
    let r = admin.call("POST", "/v1.0/servicePrincipals", Some(&serde_json::json!({"displayName": name})), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (
        r.body["id"].as_str().unwrap().to_string(),
        r.body["appId"].as_str().unwrap().to_string(),
        r.body["password"].as_str().unwrap().to_string(),
    )
}

/// Assigns `role_id` (a GUID) to `principal` at `scope`; returns the assignment's path.
pub async fn assign(admin: &Http, scope: &str, principal: &str, role_id: &str) -> String {
    let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{}", uuid::Uuid::new_v4());
    let r = admin
        .call("PUT", &path, Some(&serde_json::json!({"properties": {"roleDefinitionId": role_id, "principalId": principal}})), &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    path
}

/// A management token for a service principal.
pub async fn token_for(http: &Http, tenant: &str, app_id: &str, secret: &str) -> String {
    let form = format!("grant_type=client_credentials&client_id={app_id}&client_secret={secret}");
    let r = http
        .anonymous()
        .raw("POST", &format!("/{tenant}/oauth2/v2.0/token"), Some(form.into_bytes()), Some("application/x-www-form-urlencoded"), &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["access_token"].as_str().unwrap().to_string()
}

/// A network namespace made for one test, deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Netns {
        let out = Command::new("ip").args(["netns", "add", &name]).output().unwrap();
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        Netns(name)
    }

    /// A name for a namespace moat is to create; the guard still removes it if the test fails.
    pub fn expected(name: String) -> Netns {
        Netns(name)
    }

    pub fn exists(&self) -> bool {
        std::path::Path::new(&format!("/run/netns/{}", self.0)).exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Why a namespace test cannot run here, if it cannot.
pub fn skip_reason_netns() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not root: namespace-mode isolation needs CAP_SYS_ADMIN and CAP_NET_ADMIN (CI runs as root)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 (`ip`) is not installed".into());
    }
    None
}

/// Creates a namespace-mode virtual network `name` bound to namespace `ns`, with subnet `s1`.
pub async fn namespace_vnet(http: &Http, net: &str, name: &str, ns: &str, space: &str, subnet: &str) {
    let r = http
        .call(
            "PUT",
            &format!("{net}/virtualNetworks/{name}"),
            Some(&serde_json::json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": [space]},
                "binding": {"mode": "Namespace", "namespace": ns},
                "subnets": [{"name": "s1", "properties": {"addressPrefix": subnet}}]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Creates private endpoint `name` in `vnet`/s1 to `target` with `group` (approved at once, as
/// the caller may approve), waits for its listener and returns its service URL.
pub async fn private_endpoint(server: &Server, http: &Http, net: &str, name: &str, vnet: &str, target: &str, group: &str) -> String {
    let r = http
        .call(
            "PUT",
            &format!("{net}/privateEndpoints/{name}"),
            Some(&serde_json::json!({"properties": {"subnet": {"id": format!("{net}/virtualNetworks/{vnet}/subnets/s1")},
                "privateLinkServiceConnections": [{"name": name, "properties": {"privateLinkServiceId": target, "groupIds": [group]}}]}})),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for _ in 0..100 {
        let got = http.get(&format!("{net}/privateEndpoints/{name}")).await;
        if let Some(url) = got.body["properties"]["serviceUrl"].as_str() {
            return url.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} has no listener; the server log:\n{}", server.log())
}

/// A fresh PostgreSQL database (C collation) on the server `MOAT_TEST_POSTGRES_URL` names, for
/// one test; `None` (after printing why) when the variable is not set. Dropped with the value.
pub struct TestDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn create(test: &str) -> Option<TestDatabase> {
        let Ok(admin) = std::env::var("MOAT_TEST_POSTGRES_URL") else {
            eprintln!("SKIP {test}: MOAT_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL on loopback and sets it)");
            return None;
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("moat_{}_{nanos}", std::process::id());
        let db = TestDatabase { url: format!("{}/{name}", admin.rsplit_once('/').unwrap().0), admin, name };
        db.psql(&format!("CREATE DATABASE {} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'", db.name));
        Some(db)
    }

    pub fn psql(&self, sql: &str) {
        let out = Command::new("psql").args([self.admin.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql]).output().expect("psql runs");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([self.admin.as_str(), "-q", "-c", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)])
            .output();
    }
}

/// Whether `path` is gone within 25 s (a garbage collection's work), looking every 100 ms.
pub async fn gone_within(path: &Path) -> bool {
    for _ in 0..250 {
        if !path.exists() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}
