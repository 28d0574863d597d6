//! The activity log (`Microsoft.Insights/eventtypes/management/values`).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use moat_core::Caller;
use moat_core::audit::ActivityFilter;
use moat_types::arm::{ActivityEvent, ErrorResponse, Page};

use crate::AppState;
use crate::error::ArmError;
use crate::extract::CommonQuery;
use crate::management::page;

/// Parses `$filter`: terms `field op 'value'` joined by `and`, with `eventTimestamp ge`,
/// `resourceId eq` (that resource and everything below it), `principalId eq` and `result eq`.
fn parse_filter(raw: Option<&str>) -> Result<ActivityFilter, ArmError> {
    let mut f = ActivityFilter::default();
    let Some(raw) = raw else { return Ok(f) };
    let bad = |why: String| ArmError::http(StatusCode::BAD_REQUEST, "InvalidFilterInQueryString", Some("$filter".into()), why);
    for term in raw.split(" and ") {
        let term = term.trim();
        let mut parts = term.splitn(3, ' ');
        let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!("'{term}' is not of the form field op 'value'.")));
        };
        let value = value
            .trim()
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(|| bad(format!("the value in '{term}' must be quoted with '.")))?;
        match (field.to_ascii_lowercase().as_str(), op.to_ascii_lowercase().as_str()) {
            ("eventtimestamp", "ge") => f.since = Some(value.to_string()),
            ("resourceid", "eq") | ("resourceuri", "eq") => f.resource_id = Some(value.to_string()),
            ("principalid", "eq") => f.principal_id = Some(value.to_string()),
            ("result", "eq") => f.result = Some(value.to_ascii_lowercase()),
            _ => {
                return Err(bad(format!(
                    "'{field} {op}' is not supported; use eventTimestamp ge, resourceId eq, principalId eq or result eq."
                )));
            }
        }
    }
    Ok(f)
}

#[utoipa::path(get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Insights/eventtypes/management/values", tag = "monitor",
    params(("subscriptionId" = String, Path), ("api-version" = Option<String>, Query),
        ("$filter" = Option<String>, Query, description = "eventTimestamp ge '<time>' and resourceId eq '<id>' and principalId eq '<id>' and result eq 'denied'"),
        ("$skipToken" = Option<String>, Query), ("$top" = Option<i64>, Query)),
    responses((status = 200, body = Page<ActivityEvent>), (status = 400, body = ErrorResponse)))]
pub async fn list_activity(
    State(st): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sub): Path<String>,
    uri: Uri,
    q: CommonQuery,
) -> Result<Response, ArmError> {
    let filter = parse_filter(q.filter.as_deref())?;
    let listed = st.moat.activity_log(&caller, &sub, &filter, q.after()?.as_deref(), q.limit()).await?;
    let listed = moat_core::Listed {
        items: listed
            .items
            .into_iter()
            .map(|r| ActivityEvent {
                id: r.id,
                event_timestamp: r.time,
                caller: r.principal_name,
                principal_id: r.principal_id,
                client_address: r.client,
                origin: r.origin,
                operation_name: r.action,
                resource_id: r.resource_id,
                result: r.result,
                rule: r.rule,
            })
            .collect(),
        next_after: listed.next_after,
    };
    Ok(page(&st, &uri, &q, listed).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_filter;

    #[test]
    fn filters() {
        let f = parse_filter(Some("eventTimestamp ge '2026-01-01T00:00:00Z' and result eq 'Denied' and resourceId eq '/subscriptions/s'"))
            .unwrap();
        assert_eq!(f.since.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(f.result.as_deref(), Some("denied"));
        assert_eq!(f.resource_id.as_deref(), Some("/subscriptions/s"));
        assert!(parse_filter(Some("result ne 'denied'")).is_err());
        assert!(parse_filter(Some("result eq denied")).is_err());
        assert!(parse_filter(Some("nonsense")).is_err());
    }
}
