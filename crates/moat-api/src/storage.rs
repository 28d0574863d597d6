//! The byte store's garbage collection, on demand (moat's own; it also runs on a schedule).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_types::arm::{ErrorResponse, GarbageCollection};
use serde::Deserialize;

use crate::AppState;
use crate::error::ArmError;
use crate::extract::CommonQuery;

#[derive(Debug, Deserialize)]
pub struct GcQuery {
    #[serde(rename = "dryRun")]
    dry_run: Option<String>,
}

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/providers/Moat.Storage/garbageCollection", tag = "storage",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query),
        ("dryRun" = Option<bool>, Query, description = "true: count what a collection would remove, and remove nothing")),
    responses((status = 200, body = GarbageCollection), (status = 403, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "an object store, or a byte store paired with another database")))]
pub async fn garbage_collection(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    Query(g): Query<GcQuery>,
    _q: CommonQuery,
) -> Result<Response, ArmError> {
    let dry_run = match g.dry_run.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ArmError::http(
                StatusCode::BAD_REQUEST,
                "InvalidQueryParameterValue",
                Some("dryRun".into()),
                format!("dryRun is true or false, not '{other}'."),
            ));
        }
    };
    let report = st.moat.garbage_collection(&caller, &sub, dry_run).await?;
    Ok((StatusCode::OK, axum::Json(report)).into_response())
}
