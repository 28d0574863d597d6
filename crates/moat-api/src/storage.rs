//! The byte store's garbage collection, on demand (moat's own; it also runs on a schedule).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_types::arm::{ErrorResponse, GarbageCollection};

use crate::AppState;
use crate::error::ArmError;
use crate::extract::CommonQuery;

#[utoipa::path(post, path = "/subscriptions/{subscriptionId}/providers/Moat.Storage/garbageCollection", tag = "storage",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query),
        ("dryRun" = Option<bool>, Query, description = "true: count what a collection would remove, and remove nothing")),
    responses((status = 200, body = GarbageCollection), (status = 403, body = ErrorResponse),
        (status = 409, body = ErrorResponse, description = "a byte store paired with another database, or a collection already running")))]
pub async fn garbage_collection(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    uri: Uri,
    _q: CommonQuery,
) -> Result<Response, ArmError> {
    // Named case-insensitively, as ARM's query parameters are: a `dryrun=true` must not run a
    // real collection. The last one wins.
    let asked = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("dryRun"))
        .map(|(_, v)| v.to_ascii_lowercase())
        .last();
    let dry_run = match asked.as_deref() {
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
