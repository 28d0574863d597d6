//! The OCI Distribution plane's vocabulary: digests (sha256 and sha512), repository names,
//! tags, and what moat needs to know of a manifest (the content it references, its subject,
//! its artifact type). Pure: no I/O.

use std::fmt;

use serde_json::Value;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Manifest media types moat stores.
pub const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
/// The largest manifest accepted (the spec asks registries to take at least 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;
/// The longest repository name, counted as the client writes it.
pub const MAX_NAME: usize = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest as OCI writes it: `sha256:<64 hex>` or `sha512:<128 hex>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciDigest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a usable digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a digest moat accepts: sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")]
pub struct BadDigest(pub String);

impl OciDigest {
    pub fn parse(s: &str) -> Result<Self, BadDigest> {
        let bad = || BadDigest(s.chars().take(200).collect());
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(bad()),
        };
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
            return Err(bad());
        }
        Ok(OciDigest { algorithm, hex: hex.to_string() })
    }

    /// The digest of `bytes` with `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let hex = match algorithm {
            Algorithm::Sha256 => hex(&sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => hex(&sha2::Sha512::digest(bytes)),
        };
        OciDigest { algorithm, hex }
    }

    pub fn from_sha256(d: &crate::Digest) -> Self {
        OciDigest { algorithm: Algorithm::Sha256, hex: d.hex() }
    }

    pub fn from_hex(algorithm: Algorithm, hex: String) -> Self {
        OciDigest { algorithm, hex }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The sha256 digest in the content store's type, when this is one.
    pub fn as_sha256(&self) -> Option<crate::Digest> {
        match self.algorithm {
            Algorithm::Sha256 => crate::Digest::parse(&self.to_string()).ok(),
            Algorithm::Sha512 => None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for OciDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// One path component of a repository name: lowercase alphanumeric runs joined by `.`, `_`,
/// `__` or any number of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Whether `name` is a repository name per the distribution spec.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.split('/').all(valid_component)
}

/// Whether `tag` is a tag per the distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(OciDigest),
}

impl Reference {
    /// A reference with a `:` is a digest; otherwise a tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            OciDigest::parse(s).map(Reference::Digest).map_err(ReferenceError::Digest)
        } else if valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(ReferenceError::Tag(s.chars().take(200).collect()))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Digest(BadDigest),
    #[error("'{0}' is not a valid tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
}

/// A content descriptor inside a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: OciDigest,
    pub size: u64,
    /// `urls`: where a layer that is not pushed to registries can be fetched from.
    pub urls: Vec<String>,
}

/// Layer types whose bytes a registry need not hold: Docker's foreign layers (Windows base
/// layers) and OCI's non-distributable ones, fetched by clients from their `urls`.
const EXTERNAL_LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

impl Descriptor {
    /// A foreign or non-distributable layer with `urls`: the registry does not need its bytes
    /// (distribution does not ask for them either).
    pub fn is_external(&self) -> bool {
        !self.urls.is_empty() && EXTERNAL_LAYER_TYPES.contains(&self.media_type.as_str())
    }
}

/// What moat keeps of a manifest it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
    pub media_type: String,
    /// Blobs it references (config and layers).
    pub blobs: Vec<Descriptor>,
    /// Manifests it references (an index's entries).
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    /// The `annotations` object, as JSON text.
    pub annotations: Option<String>,
}

/// Why a manifest body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadManifest(pub String);

fn descriptor(v: &Value, at: &str) -> Result<Descriptor, BadManifest> {
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| BadManifest(format!("{at}: a descriptor needs a 'digest' string")))
        .and_then(|d| OciDigest::parse(d).map_err(|e| BadManifest(format!("{at}: {e}"))))?;
    let size =
        v.get("size").and_then(Value::as_u64).ok_or_else(|| BadManifest(format!("{at}: a descriptor needs a non-negative 'size'")))?;
    let media_type = v
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| BadManifest(format!("{at}: a descriptor needs a 'mediaType' string")))?
        .to_string();
    // Checked where moat relies on them (layers it does not hold); elsewhere they are data.
    let external = EXTERNAL_LAYER_TYPES.contains(&media_type.as_str());
    let urls = match v.get("urls") {
        Some(_) if !external => Vec::new(),
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, u)| match u.as_str() {
                Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(u.to_string()),
                _ => Err(BadManifest(format!("{at}: urls[{i}] must be an http or https URL"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(BadManifest(format!("{at}: 'urls' must be an array of URLs"))),
    };
    Ok(Descriptor { media_type, digest, size, urls })
}

fn descriptors(body: &Value, field: &str) -> Result<Vec<Descriptor>, BadManifest> {
    match body.get(field) {
        Some(Value::Array(items)) => items.iter().enumerate().map(|(i, d)| descriptor(d, &format!("{field}[{i}]"))).collect(),
        Some(_) => Err(BadManifest(format!("'{field}' must be an array"))),
        None => Err(BadManifest(format!("the manifest has no '{field}' array"))),
    }
}

/// Parses a manifest body sent with `content_type`, checking that the two agree.
pub fn parse_manifest(content_type: &str, body: &[u8]) -> Result<ManifestInfo, BadManifest> {
    let content_type = content_type.split(';').next().unwrap_or_default().trim();
    if !MANIFEST_TYPES.contains(&content_type) {
        return Err(BadManifest(format!(
            "Content-Type '{content_type}' is not a manifest type moat stores ({})",
            MANIFEST_TYPES.join(", ")
        )));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| BadManifest(format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(BadManifest("the body is not a JSON object".into()));
    }
    if v.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(BadManifest("'schemaVersion' must be 2".into()));
    }
    match v.get("mediaType") {
        None if content_type == DOCKER_MANIFEST || content_type == DOCKER_LIST => {
            return Err(BadManifest(format!("a Docker manifest must name its mediaType '{content_type}'")));
        }
        None => {}
        Some(Value::String(m)) if m == content_type => {}
        Some(m) => return Err(BadManifest(format!("the body's mediaType {m} does not match Content-Type '{content_type}'"))),
    }
    let is_index = content_type == OCI_INDEX || content_type == DOCKER_LIST;
    let (blobs, manifests) = if is_index {
        if v.get("config").is_some() || v.get("layers").is_some() {
            return Err(BadManifest("an index has 'manifests', not 'config' or 'layers'".into()));
        }
        (Vec::new(), descriptors(&v, "manifests")?)
    } else {
        if v.get("manifests").is_some() {
            return Err(BadManifest("an image manifest has 'config' and 'layers', not 'manifests'".into()));
        }
        let config = descriptor(v.get("config").ok_or_else(|| BadManifest("the manifest has no 'config'".into()))?, "config")?;
        let mut blobs = vec![config];
        blobs.extend(descriptors(&v, "layers")?);
        (blobs, Vec::new())
    };
    let subject = v.get("subject").map(|s| descriptor(s, "subject")).transpose()?;
    let artifact_type = match v.get("artifactType") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(BadManifest("'artifactType' must be a string".into())),
        None if !is_index => blobs.first().map(|c| c.media_type.clone()),
        None => None,
    };
    let annotations = match v.get("annotations") {
        Some(a @ Value::Object(_)) => Some(a.to_string()),
        Some(_) => return Err(BadManifest("'annotations' must be an object".into())),
        None => None,
    };
    Ok(ManifestInfo { media_type: content_type.to_string(), blobs, manifests, subject, artifact_type, annotations })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_both_algorithms_round_trip() {
        let a = OciDigest::of(Algorithm::Sha256, b"");
        assert_eq!(a.to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(OciDigest::parse(&a.to_string()).unwrap(), a);
        let b = OciDigest::of(Algorithm::Sha512, b"");
        assert!(b.to_string().starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(OciDigest::parse(&b.to_string()).unwrap(), b);
        assert!(a.as_sha256().is_some() && b.as_sha256().is_none());
        for bad in ["", "sha256", "sha256:", "md5:abcd", "sha256:E3B0", &a.to_string()[..70], "sha512:00"] {
            assert!(OciDigest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repository_names_and_tags_follow_the_spec() {
        for ok in ["a", "library/ubuntu", "a.b_c__d---e/f0", "x/y/z", "9"] {
            assert!(valid_repository(ok), "{ok}");
        }
        for bad in ["", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a/.b", "a:b", &"a".repeat(256)] {
            assert!(!valid_repository(bad), "{bad}");
        }
        for ok in ["latest", "_x", "v1.2-rc_3", &"t".repeat(128)] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(matches!(Reference::parse(&OciDigest::of(Algorithm::Sha256, b"x").to_string()), Ok(Reference::Digest(_))));
        assert!(matches!(Reference::parse("sha256:zz"), Err(ReferenceError::Digest(_))));
        assert!(matches!(Reference::parse("bad/tag"), Err(ReferenceError::Tag(_))));
    }

    fn desc(d: &str) -> Value {
        serde_json::json!({"mediaType": "application/octet-stream", "digest": OciDigest::of(Algorithm::Sha256, d.as_bytes()).to_string(), "size": d.len()})
    }

    #[test]
    fn manifests_are_checked_against_their_content_type() {
        let image = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc("c"), "layers": [desc("l1"), desc("l2")],
            "subject": desc("s"), "annotations": {"k": "v"}});
        let info = parse_manifest(OCI_MANIFEST, image.to_string().as_bytes()).unwrap();
        assert_eq!(info.blobs.len(), 3);
        assert_eq!(info.artifact_type.as_deref(), Some("application/octet-stream"), "falls back to the config's media type");
        assert!(info.subject.is_some());
        assert_eq!(info.annotations.as_deref(), Some(r#"{"k":"v"}"#));
        // The same body declared as something else is refused.
        assert!(parse_manifest(DOCKER_MANIFEST, image.to_string().as_bytes()).is_err());
        assert!(parse_manifest(OCI_INDEX, image.to_string().as_bytes()).is_err());
        assert!(parse_manifest("application/json", image.to_string().as_bytes()).is_err());
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc("m")], "artifactType": "x/y"});
        let info = parse_manifest(OCI_INDEX, index.to_string().as_bytes()).unwrap();
        assert_eq!((info.manifests.len(), info.artifact_type.as_deref()), (1, Some("x/y")));
        // Docker types must name themselves.
        assert!(parse_manifest(DOCKER_LIST, index.to_string().as_bytes()).is_err());
        for bad in [
            serde_json::json!({"schemaVersion": 1, "config": desc("c"), "layers": []}),
            serde_json::json!({"schemaVersion": 2, "layers": []}),
            serde_json::json!({"schemaVersion": 2, "config": {"digest": "sha256:00", "size": 1, "mediaType": "a"}, "layers": []}),
            serde_json::json!({"schemaVersion": 2, "config": desc("c"), "layers": [{"digest": desc("x")["digest"], "size": -1, "mediaType": "a"}]}),
        ] {
            assert!(parse_manifest(OCI_MANIFEST, bad.to_string().as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_manifest(OCI_MANIFEST, b"not json").is_err());
    }
}
