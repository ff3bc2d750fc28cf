//! Turning a webhook's `dataset` and `organization` filters into ids when the webhook is
//! created or updated. A renamed dataset or organization then still matches, and two
//! hooks naming the same dataset once by id and once by name are the same hook.
//!
//! A value that resolves to nothing the owner may read is kept as given: it may name a
//! dataset that does not exist yet (a harvester's, a script's next one), and answering
//! differently for "no such dataset" and "a private dataset you may not read" would tell
//! a caller which private names exist. Fan-out matches a kept value against the id and
//! the current name, and checks the owner's rights on every event anyway.

use super::envelope::ApiError;
use crate::store::datasets;
use crate::store::users::CkanUser;
use serde_json::Value;
use tokio_postgres::GenericClient;

/// `filters` (already checked by `validate::filters`) with `dataset` and `organization`
/// replaced by ids where they resolve for `owner`.
pub async fn resolve<C: GenericClient>(
    client: &C,
    owner: &CkanUser,
    collaborators: bool,
    mut filters: Value,
) -> Result<Value, ApiError> {
    let Some(object) = filters.as_object_mut() else {
        return Ok(filters);
    };

    if let Some(Value::String(given)) = object.get("dataset") {
        let id = datasets::readable_dataset_id(client, given, owner, collaborators).await?;
        if let Some(id) = id {
            object.insert("dataset".into(), Value::String(id));
        }
    }
    if let Some(Value::String(given)) = object.get("organization") {
        if let Some(id) = datasets::organization_id(client, given).await? {
            object.insert("organization".into(), Value::String(id));
        }
    }
    Ok(filters)
}
