//! Asynchronous operation records, polled through `Azure-AsyncOperation` and `Location`.

use moat_types::ResourceId;
use moat_types::arm::{ErrorDetail, OperationStatus};

use crate::{Caller, Error, Moat, Result};

fn read_action_for(resource_type: &str) -> String {
    if resource_type.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups") {
        moat_policy::actions::GROUP_READ.to_string()
    } else {
        format!("{resource_type}/read")
    }
}

impl Moat {
    /// The status of an operation. Visible to the principal that started it and to whoever may
    /// read the resource it acted on.
    pub async fn get_operation(&self, caller: &Caller, subscription_id: &str, id: &str) -> Result<OperationStatus> {
        self.check_subscription(subscription_id)?;
        let missing = || Error::not_found("OperationNotFound", format!("The operation '{id}' could not be found."));
        let op = self.store.operation(id).await?.ok_or_else(missing)?;
        if !op.subscription_id.eq_ignore_ascii_case(subscription_id) {
            return Err(missing());
        }
        let target = ResourceId::parse(&op.resource_id)?;
        if op.principal_id != caller.object_id && !self.permits(caller, &read_action_for(&target.resource_type()), &target).await? {
            return Err(missing());
        }
        let error: Option<ErrorDetail> = op.error.as_deref().map(serde_json::from_str).transpose()?;
        Ok(OperationStatus {
            id: format!(
                "/subscriptions/{}/providers/Microsoft.MachineLearningServices/locations/{}/operationsStatus/{}",
                op.subscription_id, op.location, op.id
            ),
            name: op.id,
            status: op.status.clone(),
            start_time: op.started_at,
            end_time: op.ended_at,
            percent_complete: if op.status == "InProgress" { 0.0 } else { 100.0 },
            resource_id: op.resource_id,
            error,
        })
    }
}
