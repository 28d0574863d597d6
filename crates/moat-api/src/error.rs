//! Maps the domain error onto HTTP, once per surface: the ARM envelope for the management
//! plane, the AzureML envelope for discovery. The log gets the cause of internal errors; the
//! client gets a reference to quote.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moat_core::Error;
use moat_types::arm::{ErrorDetail, ErrorResponse};

/// An error on the management plane (ARM JSON envelope).
#[derive(Debug)]
pub enum ArmError {
    Domain(Error),
    /// HTTP-level refusals that never reach the domain (body too large, wrong media type...).
    Http {
        status: StatusCode,
        code: &'static str,
        target: Option<String>,
        message: String,
    },
}

impl From<Error> for ArmError {
    fn from(e: Error) -> Self {
        ArmError::Domain(e)
    }
}

impl ArmError {
    pub fn http(status: StatusCode, code: &'static str, target: Option<String>, message: impl Into<String>) -> Self {
        ArmError::Http { status, code, target, message: message.into() }
    }
}

/// Status, code, target and safe message of a domain error.
pub fn describe(e: &Error) -> (StatusCode, String, Option<String>, String) {
    match e {
        Error::NotFound { code, message } => (StatusCode::NOT_FOUND, code.to_string(), None, message.clone()),
        Error::Conflict { code, message } => (StatusCode::CONFLICT, code.to_string(), None, message.clone()),
        Error::Invalid { code, target, message } => (StatusCode::BAD_REQUEST, code.to_string(), target.clone(), message.clone()),
        Error::PreconditionFailed { message } => (StatusCode::PRECONDITION_FAILED, "PreconditionFailed".into(), None, message.clone()),
        Error::Unauthenticated { reason } => {
            (StatusCode::UNAUTHORIZED, "AuthenticationFailed".into(), None, format!("Authentication failed: {reason}."))
        }
        Error::Forbidden { code, scope, message, .. } => (StatusCode::FORBIDDEN, code.to_string(), Some(scope.clone()), message.clone()),
        Error::Throttled { message, .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests".into(), None, message.clone()),
        Error::Internal(cause) => {
            let reference = uuid::Uuid::new_v4();
            tracing::error!(%reference, cause = %cause, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError".into(),
                None,
                format!(
                    "moat hit an internal error; nothing was changed by this request unless it reports otherwise. Reference: {reference}."
                ),
            )
        }
    }
}

pub(crate) fn www_authenticate(reason: &str) -> HeaderValue {
    let reason = reason.replace('"', "'");
    HeaderValue::from_str(&format!("Bearer error=\"invalid_token\", error_description=\"{reason}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""))
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let (status, code, target, message) = match &self {
            ArmError::Domain(e) => describe(e),
            ArmError::Http { status, code, target, message } => (*status, code.to_string(), target.clone(), message.clone()),
        };
        let body = ErrorResponse { error: ErrorDetail { code, message, target, details: vec![] } };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ArmError::Domain(Error::Unauthenticated { reason }) = &self {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, www_authenticate(reason));
        }
        resp
    }
}

/// An error on the AzureML data-plane surfaces (discovery): the AzureML envelope with an
/// `innerError` chain ending in the specific code.
#[derive(Debug)]
pub struct AmlError(pub Error);

impl From<Error> for AmlError {
    fn from(e: Error) -> Self {
        AmlError(e)
    }
}

impl IntoResponse for AmlError {
    fn into_response(self) -> Response {
        let (status, code, target, message) = describe(&self.0);
        let inner = if code == "UnAuthorizedRegistryAccess" {
            serde_json::json!({"code": "Auth", "innerError": {"code": "Authorization", "innerError": {"code": code, "innerError": null}}})
        } else {
            serde_json::json!({"code": code, "innerError": null})
        };
        let top = if status.is_server_error() { "SystemError" } else { "UserError" };
        let request = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({
            "error": {
                "code": top,
                "severity": null,
                "message": message,
                "messageFormat": null,
                "messageParameters": {},
                "referenceCode": null,
                "detailsUri": null,
                "target": target,
                "details": [],
                "innerError": inner,
                "debugInfo": null,
                "additionalInfo": null
            },
            "correlation": {"operation": request, "request": request}
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if let Error::Unauthenticated { reason } = &self.0 {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, www_authenticate(reason));
        }
        resp
    }
}
