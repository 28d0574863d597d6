//! Server configuration, layered: built-in defaults, then a TOML file, then `MOAT_*`
//! environment variables, then command-line flags. Unknown keys are errors at every layer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use moat_core::audit::AuditReads;
use serde::Deserialize;

/// The TOML file (and the shape every layer fills in). Every field is optional; see
/// `examples/moat.toml` for a documented example.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Directory holding the metadata database, the bytes and the administrator profile.
    pub data_dir: Option<PathBuf>,
    /// Address of the public listener, e.g. `127.0.0.1:7700` (`:0` picks a free port).
    pub listen: Option<String>,
    /// Where metadata lives: `sqlite://PATH` (default: `<data_dir>/moat.db`) or
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB` (a database with the C collation).
    pub database_url: Option<String>,
    /// Where bytes live: `file:///PATH` (default: `<data_dir>/blobs`), `azure://CONTAINER[/PREFIX]`
    /// (Azure Blob Storage or Azurite) or `s3://BUCKET[/PREFIX]` (any S3-compatible store).
    /// Credentials and endpoints come from the `AZURE_STORAGE_*` / `AWS_*` environment
    /// variables, never from this file. The container or bucket must exist.
    pub blob_url: Option<String>,
    /// Base URL clients use to reach this installation (default: `http://<listen address>`).
    pub public_url: Option<String>,
    /// DNS zone under which resources are named (container registry login servers...).
    pub dns_zone: Option<String>,
    /// Address on which moat's DNS server answers for the zone (UDP and TCP), e.g.
    /// `127.0.0.1:5353`. Unset: no DNS server (inside namespace-mode networks moat answers on
    /// 127.0.0.1:53 regardless).
    pub dns_listen: Option<String>,
    /// Lifetime of access tokens issued by the built-in issuer, in seconds (60 to 86400).
    pub token_lifetime_secs: Option<i64>,
    /// Seconds after which the token signing key is replaced by a new one (1 to 31536000).
    /// Superseded keys keep verifying until the tokens they signed have expired.
    pub signing_key_rotation_secs: Option<i64>,
    /// Seconds after which an upload left unfinished is discarded: OCI upload sessions, and
    /// blob blocks staged but never committed (1 to 2592000; default 86400).
    pub upload_ttl_secs: Option<i64>,
    /// Seconds between garbage collections of the local store: stored files that no blob,
    /// block, image blob or manifest refers to any more are removed (0 turns it off; default 3600).
    pub gc_interval_secs: Option<i64>,
    /// Seconds a stored file must have gone unused before a garbage collection may remove it
    /// (1 to 2592000; default 3600): longer than any write takes to commit what it stored.
    pub gc_grace_secs: Option<i64>,
    /// Log filter, e.g. `info` or `moat_api=debug,info`.
    pub log: Option<String>,
    /// When the answer to an allowed read waits for its activity log entry: `async` (default:
    /// the entry is written by the next group commit, normally within milliseconds, while the
    /// answer goes out) or `durable` (every read waits for an fsync, about half the read
    /// throughput). Denials and every other decision are durable before the answer regardless.
    pub audit_reads: Option<String>,
    /// Serve HTTPS on every listener with certificates from moat's local certificate authority
    /// (created on first start under `<data_dir>/tls`; clients trust it through their profile).
    /// On by default; `false` serves plain HTTP, which moat allows on loopback addresses only
    /// (for development) unless `allow_plain_http_on_network` forces it.
    pub tls: Option<bool>,
    /// Serve plain HTTP on a non-loopback address. Off by default: without TLS, tokens would
    /// cross the network in clear.
    pub allow_plain_http_on_network: Option<bool>,
    /// The operator's own certificate for the public listener instead of one from moat's local
    /// CA: a PEM chain (server certificate first), its unencrypted private key, and the CA
    /// certificate(s) clients should trust for it (added to the CA bundle in the profile).
    /// All three or none. moat does not renew it: replace the files and restart.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    /// External OpenID Connect issuers whose tokens moat accepts (file only).
    pub oidc_issuers: Option<Vec<OidcIssuer>>,
}

/// A trusted external OpenID Connect issuer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// The `iss` its tokens carry, exactly (e.g. `https://login.microsoftonline.com/<tenant>/v2.0`).
    pub issuer: String,
    /// The `aud` its tokens must carry for moat.
    pub audience: String,
    /// Its JWKS; discovered from `<issuer>/.well-known/openid-configuration` when unset.
    pub jwks_uri: Option<String>,
}

/// Environment variables the server reads, and the file key each one sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("MOAT_DATA_DIR", "data_dir"),
    ("MOAT_LISTEN", "listen"),
    ("MOAT_DATABASE_URL", "database_url"),
    ("MOAT_BLOB_URL", "blob_url"),
    ("MOAT_PUBLIC_URL", "public_url"),
    ("MOAT_DNS_ZONE", "dns_zone"),
    ("MOAT_DNS_LISTEN", "dns_listen"),
    ("MOAT_TOKEN_LIFETIME_SECS", "token_lifetime_secs"),
    ("MOAT_SIGNING_KEY_ROTATION_SECS", "signing_key_rotation_secs"),
    ("MOAT_UPLOAD_TTL_SECS", "upload_ttl_secs"),
    ("MOAT_GC_INTERVAL_SECS", "gc_interval_secs"),
    ("MOAT_GC_GRACE_SECS", "gc_grace_secs"),
    ("MOAT_LOG", "log"),
    ("MOAT_AUDIT_READS", "audit_reads"),
    ("MOAT_TLS", "tls"),
    ("MOAT_ALLOW_PLAIN_HTTP_ON_NETWORK", "allow_plain_http_on_network"),
    ("MOAT_TLS_CERT_FILE", "tls_cert_file"),
    ("MOAT_TLS_KEY_FILE", "tls_key_file"),
    ("MOAT_TLS_CA_FILE", "tls_ca_file"),
];
/// Variables that belong to the client or the test suite, not to the server.
/// Variables of the client side, which the server ignores.
const ENV_OTHER: &[&str] = &["MOAT_CONFIG", "MOAT_PROFILE", "MOAT_STATE_DIR", "MOAT_SOURCE_ADDRESS"];

/// A validated server configuration; it cannot be invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub blob_url: Option<String>,
    pub public_url: Option<String>,
    pub dns_zone: String,
    pub dns_listen: Option<SocketAddr>,
    pub token_lifetime_secs: i64,
    pub signing_key_rotation_secs: i64,
    pub upload_ttl_secs: i64,
    pub gc_interval_secs: i64,
    pub gc_grace_secs: i64,
    pub log: String,
    pub audit_reads: AuditReads,
    pub tls: bool,
    /// Plain HTTP on non-loopback addresses (the public listener, endpoint listeners) allowed.
    pub allow_plain_http_on_network: bool,
    /// The operator's certificate for the public listener: chain, key, and the CA(s) to trust.
    pub operator_tls: Option<OperatorTls>,
    pub oidc_issuers: Vec<OidcIssuer>,
}

/// An operator-supplied certificate (see [`FileConfig::tls_cert_file`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

/// The data directory used when none is configured: `$XDG_DATA_HOME/moat`, else
/// `~/.local/share/moat`, else `./moat-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MOAT_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("moat");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".local/share/moat");
    }
    PathBuf::from("moat-data")
}

impl FileConfig {
    pub fn from_toml(text: &str, origin: &Path) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| format!("{}: {}", origin.display(), e.message()))
    }

    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
        Self::from_toml(&text, path)
    }

    /// Reads `MOAT_*` variables from `vars`; an unknown `MOAT_*` name is an error (a typo
    /// would otherwise be silently ignored).
    pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> Result<FileConfig, String> {
        let mut c = FileConfig::default();
        for (k, v) in vars {
            if !k.starts_with("MOAT_") || ENV_OTHER.contains(&k.as_str()) || k.starts_with("MOAT_TEST_") {
                continue;
            }
            match k.as_str() {
                "MOAT_DATA_DIR" => c.data_dir = Some(PathBuf::from(v)),
                "MOAT_LISTEN" => c.listen = Some(v),
                "MOAT_DATABASE_URL" => c.database_url = Some(v),
                "MOAT_BLOB_URL" => c.blob_url = Some(v),
                "MOAT_PUBLIC_URL" => c.public_url = Some(v),
                "MOAT_DNS_ZONE" => c.dns_zone = Some(v),
                "MOAT_DNS_LISTEN" => c.dns_listen = Some(v),
                "MOAT_TOKEN_LIFETIME_SECS" => {
                    c.token_lifetime_secs =
                        Some(v.parse().map_err(|_| format!("MOAT_TOKEN_LIFETIME_SECS must be a number of seconds, not '{v}'"))?)
                }
                "MOAT_SIGNING_KEY_ROTATION_SECS" => {
                    c.signing_key_rotation_secs =
                        Some(v.parse().map_err(|_| format!("MOAT_SIGNING_KEY_ROTATION_SECS must be a number of seconds, not '{v}'"))?)
                }
                "MOAT_UPLOAD_TTL_SECS" => {
                    c.upload_ttl_secs = Some(v.parse().map_err(|_| format!("MOAT_UPLOAD_TTL_SECS must be a number of seconds, not '{v}'"))?)
                }
                "MOAT_GC_INTERVAL_SECS" => {
                    c.gc_interval_secs =
                        Some(v.parse().map_err(|_| format!("MOAT_GC_INTERVAL_SECS must be a number of seconds, not '{v}'"))?)
                }
                "MOAT_GC_GRACE_SECS" => {
                    c.gc_grace_secs = Some(v.parse().map_err(|_| format!("MOAT_GC_GRACE_SECS must be a number of seconds, not '{v}'"))?)
                }
                "MOAT_LOG" => c.log = Some(v),
                "MOAT_AUDIT_READS" => c.audit_reads = Some(v),
                "MOAT_TLS" => c.tls = Some(v.parse().map_err(|_| format!("MOAT_TLS must be true or false, not '{v}'"))?),
                "MOAT_ALLOW_PLAIN_HTTP_ON_NETWORK" => {
                    c.allow_plain_http_on_network =
                        Some(v.parse().map_err(|_| format!("MOAT_ALLOW_PLAIN_HTTP_ON_NETWORK must be true or false, not '{v}'"))?)
                }
                "MOAT_TLS_CERT_FILE" => c.tls_cert_file = Some(PathBuf::from(v)),
                "MOAT_TLS_KEY_FILE" => c.tls_key_file = Some(PathBuf::from(v)),
                "MOAT_TLS_CA_FILE" => c.tls_ca_file = Some(PathBuf::from(v)),
                other => {
                    let known: Vec<&str> = ENV_KEYS.iter().map(|(k, _)| *k).chain(ENV_OTHER.iter().copied()).collect();
                    return Err(format!("unknown environment variable {other}; moat knows {}", known.join(", ")));
                }
            }
        }
        Ok(c)
    }

    /// Overlays `top` on `self`: every field `top` sets wins.
    pub fn overlay(self, top: FileConfig) -> FileConfig {
        FileConfig {
            data_dir: top.data_dir.or(self.data_dir),
            listen: top.listen.or(self.listen),
            database_url: top.database_url.or(self.database_url),
            blob_url: top.blob_url.or(self.blob_url),
            public_url: top.public_url.or(self.public_url),
            dns_zone: top.dns_zone.or(self.dns_zone),
            dns_listen: top.dns_listen.or(self.dns_listen),
            token_lifetime_secs: top.token_lifetime_secs.or(self.token_lifetime_secs),
            signing_key_rotation_secs: top.signing_key_rotation_secs.or(self.signing_key_rotation_secs),
            upload_ttl_secs: top.upload_ttl_secs.or(self.upload_ttl_secs),
            gc_interval_secs: top.gc_interval_secs.or(self.gc_interval_secs),
            gc_grace_secs: top.gc_grace_secs.or(self.gc_grace_secs),
            log: top.log.or(self.log),
            audit_reads: top.audit_reads.or(self.audit_reads),
            tls: top.tls.or(self.tls),
            allow_plain_http_on_network: top.allow_plain_http_on_network.or(self.allow_plain_http_on_network),
            tls_cert_file: top.tls_cert_file.or(self.tls_cert_file),
            tls_key_file: top.tls_key_file.or(self.tls_key_file),
            tls_ca_file: top.tls_ca_file.or(self.tls_ca_file),
            oidc_issuers: top.oidc_issuers.or(self.oidc_issuers),
        }
    }

    /// Validates the merged layers into a [`ServeConfig`].
    pub fn validate(self) -> Result<ServeConfig, String> {
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr =
            listen_text.parse().map_err(|_| format!("listen: '{listen_text}' is not an address like 127.0.0.1:7700"))?;
        let tls = self.tls.unwrap_or(true);
        if !listen.ip().is_loopback() && !tls && !self.allow_plain_http_on_network.unwrap_or(false) {
            return Err(format!(
                "listen: {listen} is not a loopback address, and moat would serve plain HTTP there, sending tokens in clear. \
                 Listen on 127.0.0.1, leave tls on (the default), or set allow_plain_http_on_network = true if a TLS proxy fronts moat."
            ));
        }
        if let Some(u) = &self.public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!("public_url: '{u}' must start with http:// or https://"));
        }
        let dns_zone = self.dns_zone.unwrap_or_else(|| "moat.internal".to_string());
        let zone_ok = !dns_zone.is_empty()
            && dns_zone.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !zone_ok {
            return Err(format!("dns_zone: '{dns_zone}' is not a DNS name"));
        }
        let dns_listen = match &self.dns_listen {
            None => None,
            Some(t) => Some(t.parse::<SocketAddr>().map_err(|_| format!("dns_listen: '{t}' is not an address like 127.0.0.1:5353"))?),
        };
        let token_lifetime_secs = self.token_lifetime_secs.unwrap_or(3600);
        if !(60..=86400).contains(&token_lifetime_secs) {
            return Err(format!("token_lifetime_secs: {token_lifetime_secs} is outside 60..=86400"));
        }
        let signing_key_rotation_secs = self.signing_key_rotation_secs.unwrap_or(7 * 86400);
        if !(1..=31_536_000).contains(&signing_key_rotation_secs) {
            return Err(format!("signing_key_rotation_secs: {signing_key_rotation_secs} is outside 1..=31536000"));
        }
        let upload_ttl_secs = self.upload_ttl_secs.unwrap_or(86400);
        if !(1..=2_592_000).contains(&upload_ttl_secs) {
            return Err(format!("upload_ttl_secs: {upload_ttl_secs} is outside 1..=2592000"));
        }
        let gc_interval_secs = self.gc_interval_secs.unwrap_or(3600);
        if !(0..=31_536_000).contains(&gc_interval_secs) {
            return Err(format!("gc_interval_secs: {gc_interval_secs} is outside 0..=31536000 (0 turns garbage collection off)"));
        }
        let gc_grace_secs = self.gc_grace_secs.unwrap_or(3600);
        if !(1..=2_592_000).contains(&gc_grace_secs) {
            return Err(format!("gc_grace_secs: {gc_grace_secs} is outside 1..=2592000"));
        }
        let audit_reads = match self.audit_reads.as_deref() {
            None => AuditReads::default(),
            Some(v) => AuditReads::parse(v).ok_or_else(|| format!("audit_reads: '{v}' must be async or durable"))?,
        };
        let oidc_issuers = self.oidc_issuers.unwrap_or_default();
        for (i, o) in oidc_issuers.iter().enumerate() {
            let url_ok = |u: &str| u.starts_with("https://") || u.starts_with("http://");
            if !url_ok(&o.issuer) {
                return Err(format!("oidc_issuers[{i}].issuer: '{}' must be an http(s) URL", o.issuer));
            }
            if o.audience.trim().is_empty() {
                return Err(format!("oidc_issuers[{i}].audience must not be empty"));
            }
            if let Some(j) = &o.jwks_uri
                && !url_ok(j)
            {
                return Err(format!("oidc_issuers[{i}].jwks_uri: '{j}' must be an http(s) URL"));
            }
        }
        Ok(ServeConfig {
            data_dir: self.data_dir.unwrap_or_else(default_data_dir),
            listen,
            database_url: match self.database_url {
                Some(u) if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                    return Err("database_url must be sqlite://PATH or postgres://USER@HOST:PORT/DB".into());
                }
                other => other,
            },
            blob_url: match self.blob_url {
                Some(u) if !(u.starts_with("file:///") || u.starts_with("azure://") || u.starts_with("s3://")) => {
                    return Err(format!("blob_url: '{u}' must be file:///PATH, azure://CONTAINER[/PREFIX] or s3://BUCKET[/PREFIX]"));
                }
                other => other,
            },
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_string()),
            dns_zone,
            dns_listen,
            token_lifetime_secs,
            signing_key_rotation_secs,
            upload_ttl_secs,
            gc_interval_secs,
            gc_grace_secs,
            log: self.log.unwrap_or_else(|| "info".to_string()),
            audit_reads,
            tls,
            allow_plain_http_on_network: self.allow_plain_http_on_network.unwrap_or(false),
            operator_tls: match (self.tls_cert_file, self.tls_key_file, self.tls_ca_file) {
                (None, None, None) => None,
                (Some(cert), Some(key), Some(ca)) if tls => Some(OperatorTls { cert, key, ca }),
                (Some(_), Some(_), Some(_)) => {
                    return Err("tls_cert_file is set but tls is false: an operator certificate is for HTTPS".into());
                }
                _ => {
                    return Err("tls_cert_file, tls_key_file and tls_ca_file go together: the certificate chain, its private key, \
                                and the CA certificate(s) clients trust for it"
                        .into());
                }
            },
            oidc_issuers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/moat.toml");
        let c = FileConfig::load(&path).unwrap();
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:7700"));
        let v = c.validate().unwrap();
        assert_eq!(v.dns_zone, "moat.internal");
        assert_eq!(v.oidc_issuers.len(), 1);
        assert_eq!(v.oidc_issuers[0].audience, "api://moat");
        let bad = FileConfig::from_toml("[[oidc_issuers]]\nissuer = 'x'\naudience = 'a'\n", Path::new("x")).unwrap();
        assert!(bad.validate().unwrap_err().contains("oidc_issuers[0].issuer"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = FileConfig::from_toml("listen = '127.0.0.1:1'\nlisten_port = 3\n", Path::new("x.toml")).unwrap_err();
        assert!(e.contains("listen_port"), "{e}");
        let e = FileConfig::from_env([("MOAT_LISTNE".to_string(), "x".to_string())].into_iter()).unwrap_err();
        assert!(e.contains("MOAT_LISTNE"), "{e}");
    }

    #[test]
    fn layers_override_in_order() {
        let file = FileConfig::from_toml("listen = '127.0.0.1:1'\ndns_zone = 'a.test'\n", Path::new("x")).unwrap();
        let env = FileConfig::from_env([("MOAT_LISTEN".to_string(), "127.0.0.1:2".to_string())].into_iter()).unwrap();
        let flags = FileConfig { dns_zone: Some("b.test".into()), ..Default::default() };
        let v = file.overlay(env).overlay(flags).validate().unwrap();
        assert_eq!(v.listen.port(), 2);
        assert_eq!(v.dns_zone, "b.test");
    }

    #[test]
    fn refuses_plain_http_on_the_network() {
        // TLS is the default: any address will do.
        let default = FileConfig { listen: Some("0.0.0.0:7700".into()), ..Default::default() };
        assert!(default.clone().validate().unwrap().tls);
        let c = FileConfig { tls: Some(false), ..default };
        assert!(c.clone().validate().unwrap_err().contains("not a loopback"));
        let forced = FileConfig { allow_plain_http_on_network: Some(true), ..c };
        assert!(forced.validate().is_ok());
    }
}
