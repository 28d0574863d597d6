//! Unauthenticated routes: the token endpoint of the built-in issuer, its OpenID metadata and
//! keys, and the health probe.

use axum::Form;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use moat_core::{AUDIENCE_MANAGEMENT, AUDIENCE_ML, Error};
use moat_types::arm::TokenResponse;
use serde::Deserialize;

use crate::AppState;

/// Form body of the OAuth2 token endpoint (`client_credentials` grant).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `password` grant: the user principal name.
    pub username: Option<String>,
    /// `password` grant: the user's password.
    pub password: Option<String>,
    /// v2 style: `api://moat/management/.default` or `api://moat/ml/.default`.
    pub scope: Option<String>,
    /// v1 style: `api://moat/management` or `api://moat/ml`.
    pub resource: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": error, "error_description": description}))).into_response()
}

fn audience(req: &TokenRequest) -> Result<&'static str, String> {
    let wanted = req.scope.as_deref().or(req.resource.as_deref()).unwrap_or(AUDIENCE_MANAGEMENT);
    let wanted = wanted.trim().trim_end_matches("/.default").trim_end_matches('/');
    [AUDIENCE_MANAGEMENT, AUDIENCE_ML]
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| format!("unknown scope or resource '{wanted}'; use {AUDIENCE_MANAGEMENT} or {AUDIENCE_ML}"))
}

async fn issue(st: &AppState, req: TokenRequest, client: &str) -> Response {
    let aud = match audience(&req) {
        Ok(a) => a,
        Err(msg) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &msg),
    };
    let issued = match req.grant_type.as_deref() {
        Some("client_credentials") => {
            let (Some(id), Some(secret)) = (req.client_id.as_deref(), req.client_secret.as_deref()) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "client_id and client_secret are required");
            };
            st.moat.issue_token(id, secret, aud).await
        }
        Some("password") => {
            let (Some(user), Some(password)) = (req.username.as_deref(), req.password.as_deref()) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "username and password are required");
            };
            st.moat.issue_user_token(user, password, aud, client).await
        }
        _ => return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be client_credentials or password"),
    };
    match issued {
        Ok((token, exp)) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            axum::Json(TokenResponse {
                token_type: "Bearer".into(),
                expires_in: exp - now,
                expires_on: exp,
                access_token: token,
                resource: aud.to_string(),
            })
            .into_response()
        }
        Err(Error::Throttled { retry_after_secs, message }) => {
            let mut resp = oauth_error(StatusCode::TOO_MANY_REQUESTS, "temporarily_locked", &message);
            if let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            resp
        }
        Err(Error::Unauthenticated { reason }) => {
            let code = if req.grant_type.as_deref() == Some("password") { "invalid_grant" } else { "invalid_client" };
            oauth_error(StatusCode::UNAUTHORIZED, code, &reason)
        }
        Err(e) => crate::error::ArmError::from(e).into_response(),
    }
}

#[utoipa::path(post, path = "/oauth2/v2.0/token", tag = "identity",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400), (status = 401), (status = 429, description = "Locked after repeated failed sign-ins")))]
pub async fn token(State(st): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Form(req): Form<TokenRequest>) -> Response {
    issue(&st, req, &peer.to_string()).await
}

#[utoipa::path(post, path = "/{tenantId}/oauth2/v2.0/token", tag = "identity",
    params(("tenantId" = String, Path)),
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400), (status = 401), (status = 404), (status = 429, description = "Locked after repeated failed sign-ins")))]
pub async fn tenant_token(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(tenant): Path<String>,
    Form(req): Form<TokenRequest>,
) -> Response {
    if !tenant.eq_ignore_ascii_case(st.moat.tenant_id()) {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_tenant", &format!("tenant '{tenant}' is not served here"));
    }
    issue(&st, req, &peer.to_string()).await
}

#[utoipa::path(get, path = "/{tenantId}/v2.0/.well-known/openid-configuration", tag = "identity",
    params(("tenantId" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn openid_configuration(State(st): State<AppState>, Path(tenant): Path<String>) -> Response {
    if !tenant.eq_ignore_ascii_case(st.moat.tenant_id()) {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_tenant", &format!("tenant '{tenant}' is not served here"));
    }
    let base = &st.moat.config().public_url;
    let t = st.moat.tenant_id();
    axum::Json(serde_json::json!({
        "issuer": st.moat.issuer().issuer(),
        "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
        "grant_types_supported": ["client_credentials", "password"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }))
    .into_response()
}

#[utoipa::path(get, path = "/{tenantId}/discovery/v2.0/keys", tag = "identity",
    params(("tenantId" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn jwks(State(st): State<AppState>, Path(tenant): Path<String>) -> Response {
    if !tenant.eq_ignore_ascii_case(st.moat.tenant_id()) {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_tenant", &format!("tenant '{tenant}' is not served here"));
    }
    axum::Json(st.moat.issuer().jwks()).into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "moat is serving")))]
pub async fn healthz() -> &'static str {
    "ok"
}
