//! Authentication of every non-public route: a bearer token from the built-in issuer, verified
//! for the surface's audiences. The authenticated [`Caller`] travels as a request extension.

use axum::extract::{Request, State};
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

async fn authenticate(state: &AppState, req: &mut Request, audiences: &[&str]) -> Result<(), Error> {
    let token = bearer(req)?;
    let caller = state.moat.authenticate(token, audiences).await?;
    req.extensions_mut().insert(caller);
    Ok(())
}

/// Management plane: tokens for the management audience.
pub async fn require_management(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match authenticate(&state, &mut req, &[AUDIENCE_MANAGEMENT]).await {
        Ok(()) => next.run(req).await,
        Err(e) => ArmError::from(e).into_response(),
    }
}

/// Registry data plane (discovery): management or ML audience, as Azure accepts both.
pub async fn require_registry(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match authenticate(&state, &mut req, &[AUDIENCE_MANAGEMENT, AUDIENCE_ML]).await {
        Ok(()) => next.run(req).await,
        Err(e) => AmlError(e).into_response(),
    }
}
