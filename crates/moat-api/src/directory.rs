//! The directory (Microsoft Graph-like paths under `/v1.0`): users and service principals.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_types::arm::{ErrorResponse, Page};
use moat_types::graph::{NewServicePrincipal, NewUser, ServicePrincipal, ServicePrincipalCreated, User};

use crate::AppState;
use crate::error::ArmError;
use crate::extract::{ArmJson, CommonQuery};
use crate::management::page;

type ArmResult = Result<Response, ArmError>;

#[utoipa::path(post, path = "/v1.0/users", tag = "directory", request_body = NewUser,
    responses((status = 201, body = User), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn create_user(State(st): State<AppState>, Extension(caller): Extension<Caller>, ArmJson(body): ArmJson<NewUser>) -> ArmResult {
    Ok((StatusCode::CREATED, axum::Json(st.moat.create_user(&caller, body).await?)).into_response())
}

#[utoipa::path(get, path = "/v1.0/users", tag = "directory",
    params(("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<User>)))]
pub async fn list_users(State(st): State<AppState>, Extension(caller): Extension<Caller>, uri: Uri, q: CommonQuery) -> ArmResult {
    let listed = st.moat.list_users(&caller, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/v1.0/users/{userId}", tag = "directory",
    params(("userId" = String, Path, description = "object ID or user principal name")),
    responses((status = 200, body = User), (status = 404, body = ErrorResponse)))]
pub async fn get_user(State(st): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ArmResult {
    Ok(axum::Json(st.moat.get_user(&caller, &id).await?).into_response())
}

#[utoipa::path(delete, path = "/v1.0/users/{userId}", tag = "directory",
    params(("userId" = String, Path)), responses((status = 204)))]
pub async fn delete_user(State(st): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ArmResult {
    st.moat.delete_user(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1.0/servicePrincipals", tag = "directory", request_body = NewServicePrincipal,
    responses((status = 201, body = ServicePrincipalCreated, description = "The password is shown once"), (status = 400, body = ErrorResponse)))]
pub async fn create_service_principal(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    ArmJson(body): ArmJson<NewServicePrincipal>,
) -> ArmResult {
    Ok((StatusCode::CREATED, axum::Json(st.moat.create_service_principal(&caller, body).await?)).into_response())
}

#[utoipa::path(get, path = "/v1.0/servicePrincipals", tag = "directory",
    params(("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query), ("$filter" = Option<String>, Query, description = "appId eq '<app id>'")),
    responses((status = 200, body = Page<ServicePrincipal>)))]
pub async fn list_service_principals(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    q: CommonQuery,
) -> ArmResult {
    if let Some((_, app_id)) = q.filter_eq(&["appId"])?.into_iter().next() {
        let value = match st.moat.get_service_principal(&caller, &app_id).await {
            Ok(sp) if sp.app_id.eq_ignore_ascii_case(&app_id) => vec![sp],
            Ok(_) | Err(moat_core::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(e.into()),
        };
        return Ok(axum::Json(Page { value, next_link: None }).into_response());
    }
    let listed = st.moat.list_service_principals(&caller, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

#[utoipa::path(get, path = "/v1.0/servicePrincipals/{servicePrincipalId}", tag = "directory",
    params(("servicePrincipalId" = String, Path, description = "object ID or application ID")),
    responses((status = 200, body = ServicePrincipal), (status = 404, body = ErrorResponse)))]
pub async fn get_service_principal(State(st): State<AppState>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> ArmResult {
    Ok(axum::Json(st.moat.get_service_principal(&caller, &id).await?).into_response())
}

#[utoipa::path(delete, path = "/v1.0/servicePrincipals/{servicePrincipalId}", tag = "directory",
    params(("servicePrincipalId" = String, Path)), responses((status = 204)))]
pub async fn delete_service_principal(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ArmResult {
    st.moat.delete_service_principal(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
