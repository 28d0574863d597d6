//! `Microsoft.Authorization`: role definitions and role assignments at subscription, resource
//! group and resource scope.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_types::ResourceId;
use moat_types::arm::{ErrorResponse, Page, RoleAssignment, RoleDefinition};

use crate::AppState;
use crate::error::ArmError;
use crate::extract::{ArmJson, CommonQuery};
use crate::management::page;

type ArmResult = Result<Response, ArmError>;

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions", tag = "authorization",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query), ("$filter" = Option<String>, Query, description = "roleName eq '<name>'")),
    responses((status = 200, body = Page<RoleDefinition>)))]
pub async fn list_role_definitions(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    q: CommonQuery,
) -> ArmResult {
    let filter = q.filter_eq(&["roleName"])?;
    let name = filter.first().map(|(_, v)| v.as_str());
    let value = st.moat.list_role_definitions(&caller, &sub, name).await?;
    Ok(axum::Json(Page { value, next_link: None }).into_response())
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}", tag = "authorization",
    params(("subscriptionId" = String, Path), ("roleDefinitionId" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = RoleDefinition), (status = 404, body = ErrorResponse)))]
pub async fn get_role_definition(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, id)): Path<(String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(axum::Json(st.moat.get_role_definition(&caller, &sub, &id).await?).into_response())
}

#[utoipa::path(put, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}", tag = "authorization",
    params(("subscriptionId" = String, Path), ("roleDefinitionId" = String, Path), ("api-version" = Option<String>, Query)),
    request_body = RoleDefinition,
    responses((status = 200, body = RoleDefinition), (status = 201, body = RoleDefinition), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
pub async fn put_role_definition(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, id)): Path<(String, String)>,
    _q: CommonQuery,
    ArmJson(body): ArmJson<RoleDefinition>,
) -> ArmResult {
    let (role, created) = st.moat.put_role_definition(&caller, &sub, &id, body).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(role)).into_response())
}

#[utoipa::path(delete, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}", tag = "authorization",
    params(("subscriptionId" = String, Path), ("roleDefinitionId" = String, Path), ("api-version" = Option<String>, Query)),
    responses((status = 200, body = RoleDefinition), (status = 204), (status = 409, body = ErrorResponse)))]
pub async fn delete_role_definition(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sub, id)): Path<(String, String)>,
    _q: CommonQuery,
) -> ArmResult {
    Ok(match st.moat.delete_role_definition(&caller, &sub, &id).await? {
        Some(role) => axum::Json(role).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn list(st: AppState, caller: Caller, scope: ResourceId, uri: Uri, q: CommonQuery) -> ArmResult {
    let filter = q.filter_eq(&["principalId"])?;
    let principal = filter.first().map(|(_, v)| v.as_str());
    let listed = st.moat.list_role_assignments(&caller, &scope, principal, q.after()?.as_deref(), q.limit()).await?;
    Ok(page(&st, &uri, &q, listed))
}

async fn get_one(st: AppState, caller: Caller, scope: ResourceId, name: String) -> ArmResult {
    Ok(axum::Json(st.moat.get_role_assignment(&caller, &scope, &name).await?).into_response())
}

async fn put_one(st: AppState, caller: Caller, scope: ResourceId, name: String, body: RoleAssignment) -> ArmResult {
    Ok((StatusCode::CREATED, axum::Json(st.moat.create_role_assignment(&caller, &scope, &name, body).await?)).into_response())
}

async fn delete_one(st: AppState, caller: Caller, scope: ResourceId, name: String) -> ArmResult {
    Ok(match st.moat.delete_role_assignment(&caller, &scope, &name).await? {
        Some(a) => axum::Json(a).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Role assignment routes for one scope level: list at the collection path; GET, PUT and
/// DELETE on the item path. Paths and parameter names are given as plain tokens so that the
/// OpenAPI attribute sees literals.
macro_rules! assignment_routes {
    ($collection:tt, $item:tt, ($($p:ident = $pname:tt),+), $scope:expr, $list:ident, $get:ident, $put:ident, $delete:ident) => {
        #[utoipa::path(get, path = $collection, tag = "authorization",
            params($(($pname = String, Path),)+ ("api-version" = Option<String>, Query), ("$filter" = Option<String>, Query, description = "principalId eq '<object id>'"),
                ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
            responses((status = 200, body = Page<RoleAssignment>), (status = 403, body = ErrorResponse)))]
        #[allow(non_snake_case)]
        pub async fn $list(State(st): State<AppState>, Extension(caller): Extension<Caller>, Path(($($p),+,)): Path<($(assignment_routes!(@ty $p)),+,)>, uri: Uri, q: CommonQuery) -> ArmResult {
            let scope: ResourceId = $scope;
            list(st, caller, scope, uri, q).await
        }

        #[utoipa::path(get, path = $item, tag = "authorization",
            params($(($pname = String, Path),)+ ("roleAssignmentName" = String, Path), ("api-version" = Option<String>, Query)),
            responses((status = 200, body = RoleAssignment), (status = 404, body = ErrorResponse)))]
        #[allow(non_snake_case)]
        pub async fn $get(State(st): State<AppState>, Extension(caller): Extension<Caller>, Path(($($p),+, name)): Path<($(assignment_routes!(@ty $p)),+, String)>, _q: CommonQuery) -> ArmResult {
            let scope: ResourceId = $scope;
            get_one(st, caller, scope, name).await
        }

        #[utoipa::path(put, path = $item, tag = "authorization",
            params($(($pname = String, Path),)+ ("roleAssignmentName" = String, Path), ("api-version" = Option<String>, Query)),
            request_body = RoleAssignment,
            responses((status = 201, body = RoleAssignment), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
        #[allow(non_snake_case)]
        pub async fn $put(State(st): State<AppState>, Extension(caller): Extension<Caller>, Path(($($p),+, name)): Path<($(assignment_routes!(@ty $p)),+, String)>, _q: CommonQuery, ArmJson(body): ArmJson<RoleAssignment>) -> ArmResult {
            let scope: ResourceId = $scope;
            put_one(st, caller, scope, name, body).await
        }

        #[utoipa::path(delete, path = $item, tag = "authorization",
            params($(($pname = String, Path),)+ ("roleAssignmentName" = String, Path), ("api-version" = Option<String>, Query)),
            responses((status = 200, body = RoleAssignment), (status = 204)))]
        #[allow(non_snake_case)]
        pub async fn $delete(State(st): State<AppState>, Extension(caller): Extension<Caller>, Path(($($p),+, name)): Path<($(assignment_routes!(@ty $p)),+, String)>, _q: CommonQuery) -> ArmResult {
            let scope: ResourceId = $scope;
            delete_one(st, caller, scope, name).await
        }
    };
    (@ty $p:ident) => { String };
}

/// Subscription-scope assignments.
pub const SUB_ASSIGNMENTS: &str = "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleAssignments";
/// Resource-group-scope assignments.
pub const GROUP_ASSIGNMENTS: &str =
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/roleAssignments";
/// Resource-scope assignments.
pub const RESOURCE_ASSIGNMENTS: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{resourceProviderNamespace}/{resourceType}/{resourceName}/providers/Microsoft.Authorization/roleAssignments";

assignment_routes!(
    "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleAssignments",
    "/subscriptions/{subscriptionId}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}",
    (subscriptionId = "subscriptionId"),
    ResourceId::subscription(&subscriptionId),
    list_at_subscription,
    get_at_subscription,
    put_at_subscription,
    delete_at_subscription
);

assignment_routes!(
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/roleAssignments",
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}",
    (subscriptionId = "subscriptionId", resourceGroupName = "resourceGroupName"),
    ResourceId::resource_group(&subscriptionId, &resourceGroupName),
    list_at_group,
    get_at_group,
    put_at_group,
    delete_at_group
);

assignment_routes!(
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{resourceProviderNamespace}/{resourceType}/{resourceName}/providers/Microsoft.Authorization/roleAssignments",
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/{resourceProviderNamespace}/{resourceType}/{resourceName}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}",
    (
        subscriptionId = "subscriptionId",
        resourceGroupName = "resourceGroupName",
        resourceProviderNamespace = "resourceProviderNamespace",
        resourceType = "resourceType",
        resourceName = "resourceName"
    ),
    ResourceId::provider(&subscriptionId, &resourceGroupName, &resourceProviderNamespace, &resourceType, &resourceName),
    list_at_resource,
    get_at_resource,
    put_at_resource,
    delete_at_resource
);
