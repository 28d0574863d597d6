//! `moat serve`: the composition root. Binds the listener, opens the store, starts the domain,
//! writes the administrator's profile and serves until SIGINT or SIGTERM.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use moat_client::Profile;
use moat_core::oidc::{ExternalIssuer, FetchJson};
use moat_core::{AdminCredentials, CoreConfig, Moat, Store};

use crate::config::ServeConfig;

/// Writes `bytes` to `path` crash-safely: temp file (mode 0600), fsync, rename, fsync dir.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
}

pub async fn run(cfg: ServeConfig) -> Result<(), String> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| format!("cannot create the data directory {}: {e}", cfg.data_dir.display()))?;
    std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot restrict the data directory {}: {e}", cfg.data_dir.display()))?;
    // One server per data directory: a second one would contend for the database and
    // rewrite the profile under the first.
    let lock_path = cfg.data_dir.join("moat.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.try_lock().map_err(|_| {
        format!("another moat serve is already using the data directory {}; stop it or use --data-dir", cfg.data_dir.display())
    })?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let local = listener.local_addr().map_err(|e| format!("listener address: {e}"))?;
    let scheme = if cfg.tls { "https" } else { "http" };
    let public_url = cfg.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
    // TLS from moat's local CA: the public listener's certificate names this host's addresses,
    // localhost, the public URL's host and the zone's services.
    let tls = if cfg.tls {
        let ca = moat_tls::LocalCa::load_or_create(&cfg.data_dir.join("tls")).map_err(|e| format!("the local CA: {e}"))?;
        let mut names = vec![moat_tls::SanEntry::from(local.ip()), moat_tls::SanEntry::from(std::net::IpAddr::from([127, 0, 0, 1]))];
        let zone = cfg.dns_zone.to_ascii_lowercase();
        let host = public_url.split("://").nth(1).unwrap_or_default().split(['/', ':']).next().unwrap_or_default().to_string();
        for n in ["localhost".to_string(), host, format!("*.api.{zone}"), format!("*.blob.{zone}"), format!("*.cr.{zone}")] {
            match n.parse::<std::net::IpAddr>() {
                Ok(ip) => names.push(moat_tls::SanEntry::from(ip)),
                Err(_) => names.push(moat_tls::SanEntry::dns(&n).map_err(|e| format!("certificate name {n}: {e}"))?),
            }
        }
        names.dedup();
        names.sort();
        let mut path = ca.ca_path().to_path_buf();
        let mut listener_tls = moat_api::listeners::ListenerTls::new(ca, names.clone());
        match &cfg.operator_tls {
            // The operator's certificate on the public listener (endpoint listeners keep moat's
            // CA); clients trust both through one bundle in the profile.
            Some(op) => {
                let key = moat_tls::load_pem_pair(&op.cert, &op.key).map_err(|e| format!("tls_cert_file: {e}"))?;
                listener_tls.use_operator_public(key);
                let mut bundle = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let theirs = std::fs::read_to_string(&op.ca).map_err(|e| format!("tls_ca_file {}: {e}", op.ca.display()))?;
                if !theirs.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(format!("tls_ca_file {}: no PEM certificate in it", op.ca.display()));
                }
                bundle.push_str(&theirs);
                let bundle_path = cfg.data_dir.join("tls").join("trust.pem");
                std::fs::write(&bundle_path, bundle).map_err(|e| format!("{}: {e}", bundle_path.display()))?;
                path = bundle_path;
            }
            None => listener_tls.issue("public", &names).map_err(|e| format!("the server certificate: {e}"))?,
        }
        let config = listener_tls.store.server_config("public", moat_tls::HTTP1_ONLY).map_err(|e| format!("TLS: {e}"))?;
        Some((path, config, listener_tls))
    } else {
        None
    };

    let db_url = cfg.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", cfg.data_dir.join("moat.db").display()));
    let store = Store::open(&db_url).await.map_err(|e| format!("cannot open the metadata store: {e}"))?;

    let profile_path = cfg.data_dir.join("profile.json");
    let previous = Profile::load(&profile_path).ok();
    let known = previous.as_ref().and_then(|p| match (&p.client_id, &p.client_secret) {
        (Some(app_id), Some(secret)) => Some(AdminCredentials { app_id: app_id.clone(), secret: secret.clone() }),
        _ => None,
    });
    let core = CoreConfig {
        public_url: public_url.clone(),
        dns_zone: cfg.dns_zone.clone(),
        token_lifetime_secs: cfg.token_lifetime_secs,
        blob_dir: cfg.data_dir.join("blobs"),
        blob_url: cfg.blob_url.clone(),
        audit_reads: cfg.audit_reads,
        gc_grace: std::time::Duration::from_secs(cfg.gc_grace_secs as u64),
    };
    let (moat, creds) = Moat::start(store.clone(), core, known.as_ref()).await.map_err(|e| format!("cannot start: {e}"))?;
    let issuers: Vec<ExternalIssuer> = cfg
        .oidc_issuers
        .iter()
        .map(|o| ExternalIssuer { issuer: o.issuer.clone(), audience: o.audience.clone(), jwks_uri: o.jwks_uri.clone() })
        .collect();
    let fetch: FetchJson = Arc::new(|url: String| Box::pin(async move { moat_client::fetch_json(&url).await.map_err(|e| e.to_string()) }));
    let moat = moat.with_external_issuers(issuers, fetch);
    let profile = Profile {
        endpoint: public_url.clone(),
        tenant_id: moat.tenant_id().to_string(),
        subscription_id: moat.subscription_id().to_string(),
        resource_group: moat_core::groups::DEFAULT_GROUP.to_string(),
        client_id: Some(creds.app_id),
        client_secret: Some(creds.secret),
        user: None,
        access_token: None,
        expires_on: None,
        ca_certificate: tls.as_ref().map(|(path, _, _)| path.display().to_string()),
    };
    if previous.as_ref() != Some(&profile) {
        let json = serde_json::to_vec_pretty(&profile).map_err(|e| format!("profile: {e}"))?;
        write_private_file(&profile_path, &json).map_err(|e| format!("cannot write the profile {}: {e}", profile_path.display()))?;
    }
    let moat = Arc::new(moat);
    // Key rotation: checked at half the period (at most every five minutes).
    let rotation = cfg.signing_key_rotation_secs;
    let rotator = Arc::clone(&moat);
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs((rotation as u64 / 2).clamp(1, 300));
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = rotator.rotate_signing_keys(rotation).await {
                tracing::error!(error = %e, "signing key rotation failed");
            }
        }
    });
    // Unfinished uploads are discarded once idle longer than upload_ttl_secs.
    let ttl = std::time::Duration::from_secs(cfg.upload_ttl_secs as u64);
    let expirer = Arc::clone(&moat);
    tokio::spawn(async move {
        let every = (ttl / 4).clamp(std::time::Duration::from_millis(500), std::time::Duration::from_secs(600));
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = expirer.expire_uploads(ttl).await {
                tracing::error!(error = %e, "expiring idle uploads failed");
            }
        }
    });
    // Garbage collection of stored files nothing refers to any more, every gc_interval_secs.
    // (Off, logged once at start, when the byte store holds another database's bytes.)
    if cfg.gc_interval_secs > 0 && moat.gc_refused().is_none() {
        let every = std::time::Duration::from_secs(cfg.gc_interval_secs as u64);
        let grace = std::time::Duration::from_secs(cfg.gc_grace_secs as u64);
        let collector = Arc::clone(&moat);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = collector.scheduled_garbage_collection(grace, every).await {
                    tracing::error!(error = %e, "garbage collection failed");
                }
            }
        });
    }
    // DNS for the zone: split answers, following the network view.
    let public_ip = if local.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { local.ip() };
    let dns = Arc::new(moat_api::dns::Dns::new(&moat, vec![public_ip]).map_err(|e| format!("DNS zone: {e}"))?);
    tokio::spawn(Arc::clone(&dns).follow(Arc::clone(&moat)));
    let mut dns_line = None;
    if let Some(addr) = cfg.dns_listen {
        let bound = dns.serve_public(addr).await.map_err(|e| format!("cannot serve DNS on {addr}: {e}"))?;
        dns_line = Some(format!("  dns: {bound} (udp and tcp), zone {}", cfg.dns_zone));
    }
    println!("moat listening on {public_url}");
    if cfg.public_url.is_some() {
        // Behind a load balancer the public URL names the balancer; say where this node is.
        println!("  bound to: {local}");
    }
    println!("  data directory: {}", cfg.data_dir.display());
    println!("  metadata: {}", store.backend());
    println!("  client profile: {} (used by `moat` commands by default)", profile_path.display());
    if let Some(line) = dns_line {
        println!("{line}");
    }
    if let Some(ca) = &profile.ca_certificate {
        match &cfg.operator_tls {
            Some(op) => println!(
                "  tls: your certificate {} on the public listener, moat's local CA on endpoints; trust {ca} (the profile does)",
                op.cert.display()
            ),
            None => println!("  tls: certificates from moat's local CA; trust {ca} (the profile does)"),
        }
    }
    println!("  ready in {} ms", started.elapsed().as_millis());
    let _ = std::io::stdout().flush();
    tracing::info!(%local, "serving");
    // Private endpoint listeners follow the network view until shutdown.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listener_tls = tls.as_ref().map(|(_, _, t)| t.clone());
    // Nodes sharing a PostgreSQL database follow each other's changes to the network view and
    // the authorization index (checked every 250 ms).
    if store.backend() == "postgres" {
        tokio::spawn(Arc::clone(&moat).follow_changes(std::time::Duration::from_millis(250), stop_rx.clone()));
    }
    let endpoints = tokio::spawn(moat_api::listeners::run_endpoint_listeners(
        Arc::clone(&moat),
        local.port(),
        Arc::clone(&dns),
        listener_tls,
        cfg.allow_plain_http_on_network,
        stop_rx,
    ));
    let flusher = Arc::clone(&moat);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    let result = match tls {
        Some((_, config, _)) => {
            let listener = moat_api::listeners::TlsListener::new(listener, config).map_err(|e| format!("TLS listener: {e}"))?;
            moat_api::listeners::serve_origin_tls(listener, moat, Arc::from(moat_api::listeners::PUBLIC_ORIGIN), shutdown).await
        }
        None => moat_api::serve(listener, moat, shutdown).await,
    };
    let _ = endpoints.await;
    if let Err(e) = flusher.flush_audit().await {
        tracing::error!(error = %e, "the activity log's last entries could not be written");
    }
    store.close().await;
    drop(lock);
    println!("moat stopped");
    result.map_err(|e| format!("server error: {e}"))
}
