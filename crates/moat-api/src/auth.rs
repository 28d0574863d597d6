//! Authentication of every non-public route: a bearer token from the built-in issuer, verified
//! for the surface's audiences. The authenticated [`Caller`] travels as a request extension.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use moat_core::{AUDIENCE_MANAGEMENT, AUDIENCE_ML, Error};

use crate::AppState;
use crate::error::{AmlError, ArmError};

fn bearer(req: &Request) -> Result<&str, Error> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| Error::Unauthenticated {
        reason: "the request has no Authorization header; send 'Authorization: Bearer <token>' (moat account get-access-token prints one)"
            .into(),
    })?;
    let value = value.to_str().map_err(|_| Error::Unauthenticated { reason: "the Authorization header is not valid text".into() })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::Unauthenticated { reason: "the Authorization header must use the Bearer scheme".into() });
    }
    Ok(token.trim())
}

/// The client address of a request, as the listener saw it.
pub fn client_of(req: &Request) -> String {
    client_in(req.extensions())
}

/// [`client_of`], from a request's extensions (for handlers that split the request).
pub fn client_in(ext: &axum::http::Extensions) -> String {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string()).unwrap_or_else(|| "unknown".into())
}

/// The network origin of a request: `public`, or the key of the private endpoint whose
/// listener it came in on.
pub fn origin_of(req: &Request) -> std::sync::Arc<str> {
    origin_in(req.extensions())
}

/// [`origin_of`], from a request's extensions.
pub fn origin_in(ext: &axum::http::Extensions) -> std::sync::Arc<str> {
    ext.get::<crate::listeners::ListenerOrigin>()
        .map(|o| o.0.clone())
        .unwrap_or_else(|| std::sync::Arc::from(crate::listeners::PUBLIC_ORIGIN))
}

async fn authenticate(state: &AppState, req: &mut Request, audiences: &[&str]) -> Result<(), Error> {
    let client = client_of(req);
    let origin = origin_of(req);
    let outcome = match bearer(req) {
        Ok(token) => state.moat.authenticate(token, audiences, &client, &origin).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(())
        }
        Err(Error::Unauthenticated { reason }) => {
            state.moat.audit_unauthenticated(&client, &origin, req.uri().path(), &reason).await?;
            Err(Error::Unauthenticated { reason })
        }
        Err(e) => Err(e),
    }
}

/// Management plane: tokens for the management audience.
pub async fn require_management(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match authenticate(&state, &mut req, &[AUDIENCE_MANAGEMENT]).await {
        Ok(()) => next.run(req).await,
        Err(e) => ArmError::from(e).into_response(),
    }
}

/// Registry data plane (discovery, and the asset operations under /mferp/managementfrontend,
/// writes included): management or ML audience, as Azure accepts both. Authorization is the
/// management plane's, role by role.
pub async fn require_registry(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match authenticate(&state, &mut req, &[AUDIENCE_MANAGEMENT, AUDIENCE_ML]).await {
        Ok(()) => next.run(req).await,
        Err(e) => AmlError(e).into_response(),
    }
}
