//! The domain's one error type, independent of HTTP. Each surface maps it once (ARM JSON,
//! AzureML JSON, and later OCI and Azure Blob XML). Messages are safe to show the caller;
//! causes of internal errors go to the log only.

use moat_store::StoreError;
use moat_types::{IdError, InvalidField};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource does not exist, or the caller may not see it.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The request conflicts with the current state (name taken, group not empty, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request is malformed or invalid; `target` names the offending field.
    #[error("{message}")]
    Invalid { code: &'static str, target: Option<String>, message: String },
    /// An `If-Match` / `If-None-Match` precondition does not hold.
    #[error("{message}")]
    PreconditionFailed { message: String },
    /// No valid credential.
    #[error("{reason}")]
    Unauthenticated { reason: String },
    /// The caller is known but may not perform `action` at `scope`.
    #[error("{message}")]
    Forbidden { code: &'static str, action: String, scope: String, message: String },
    /// Too many failed attempts: try again after `retry_after_secs`.
    #[error("{message}")]
    Throttled { retry_after_secs: u64, message: String },
    /// Something broke inside moat; the cause is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(code: &'static str, target: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid { code, target: Some(target.into()), message: message.into() }
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Error::NotFound { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict { code, message: message.into() }
    }
}

impl From<InvalidField> for Error {
    fn from(f: InvalidField) -> Self {
        Error::Invalid { code: f.code, target: Some(f.target), message: f.message }
    }
}

impl From<IdError> for Error {
    fn from(e: IdError) -> Self {
        Error::Invalid { code: "InvalidResourceId", target: None, message: e.to_string() }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("stored document: {e}"))
    }
}
