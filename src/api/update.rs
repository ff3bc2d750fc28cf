//! `webhook_update`: changes a webhook's address, topic or filters (checked as
//! `webhook_create` checks them), rotates its signing secret with an overlap during
//! which the old secret still signs, sets or clears its rate, and re-enables it after
//! the service disabled it. Only its owner or a sysadmin may; a deleted webhook is
//! NotFound.

use super::actions::{hook_dict, visible_hook, Action};
use super::envelope::ApiError;
use super::fields::{optional_bool, optional_int};
use super::filters;
use super::request::Params;
use super::validate::{self, Errors};
use super::ApiState;
use crate::sign;
use crate::store::subscriptions::{self, SubscriptionChange};
use crate::store::users::{self, CkanUser};
use serde_json::Value;

/// How long the old secret keeps signing after a rotation unless the caller says.
pub const DEFAULT_OVERLAP_HOURS: i64 = 24;

/// The longest overlap a caller may ask for: a week is time enough to roll out a new
/// secret, and an old secret should not sign for longer.
pub const MAX_OVERLAP_HOURS: i64 = 168;

/// The highest per-webhook rate a caller may set, in requests per second.
pub const MAX_RATE_PER_SECOND: i64 = 10_000;

const KNOWN: &[&str] = &[
    "id",
    "address",
    "topic",
    "filters",
    "rotate_secret",
    "secret",
    "overlap_hours",
    "state",
    "rate_per_second",
];

/// The checked parameters of `webhook_update`.
#[derive(Debug, Clone)]
pub struct UpdateParams {
    /// The webhook to change.
    pub id: String,
    /// What to change, with `secret` still empty when a secret is to be generated.
    pub change: SubscriptionChange,
    /// True when the secret rotates, to a given one or to a generated one.
    pub rotate: bool,
}

/// Checks `webhook_update`'s parameters. Absent fields stay as they are; `filters`
/// null clears the filters, `rate_per_second` null (or empty) clears the rate.
pub fn check(params: &Params, allow_private: bool) -> Result<UpdateParams, ApiError> {
    let mut errors = Errors::default();
    errors.unknown_keys(params, KNOWN, Action::Update.name());
    let id = validate::required_string(params, "id", &mut errors);

    // A field that is given is held to create's rules; one that is absent is kept.
    let mut change = SubscriptionChange::default();
    if params.contains_key("topic") {
        change.topic = validate::topic(params, &mut errors);
    }
    if params.contains_key("address") {
        change.address = validate::address(params, allow_private, &mut errors);
    }
    if params.contains_key("filters") {
        change.filters = Some(validate::filters(params.get("filters"), &mut errors));
    }

    // A new secret rotates by itself; rotate_secret alone asks for a generated one.
    change.secret = validate::secret(params, &mut errors);
    let rotate_flag = optional_bool(params, "rotate_secret", &mut errors);
    if rotate_flag == Some(false) && change.secret.is_some() {
        errors.add(
            "rotate_secret",
            "A new secret always rotates; leave rotate_secret out or set it to true",
        );
    }
    let rotate = change.secret.is_some() || rotate_flag == Some(true);
    let overlap = optional_int(params, "overlap_hours", 0..=MAX_OVERLAP_HOURS, &mut errors);
    if overlap.is_some() && !rotate {
        errors.add(
            "overlap_hours",
            "Only applies when the secret rotates (rotate_secret or secret)",
        );
    }
    change.overlap_hours = overlap.unwrap_or(DEFAULT_OVERLAP_HOURS);

    // Only re-enabling is a state change the API makes; deleting has its own action.
    match params.get("state") {
        None | Some(Value::Null) => {}
        Some(Value::String(state)) if state == "active" => change.reenable = true,
        Some(_) => errors.add(
            "state",
            "Only \"active\" may be set, to re-enable a disabled webhook",
        ),
    }

    change.rate_per_second = match params.get("rate_per_second") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) if text.trim().is_empty() => Some(None),
        Some(_) => optional_int(
            params,
            "rate_per_second",
            1..=MAX_RATE_PER_SECOND,
            &mut errors,
        )
        .map(|rate| Some(rate as i32)),
    };

    let checked = UpdateParams {
        id: id.unwrap_or_default(),
        change,
        rotate,
    };
    errors.finish(checked)
}

/// Runs `webhook_update` and answers the webhook as `webhook_show` would, so that its
/// owner sees a new secret at once.
pub async fn run(
    state: &ApiState,
    client: &mut deadpool_postgres::Object,
    caller: &CkanUser,
    params: &Params,
) -> Result<Value, ApiError> {
    let UpdateParams {
        id,
        mut change,
        rotate,
    } = check(params, state.allow_private_targets)?;
    let hook = visible_hook(client, caller, &id).await?;

    // Filters resolve with the owner's rights, not a sysadmin editor's, so that the
    // owner never sees the id of a dataset they may not read.
    if let Some(filters) = change.filters.take() {
        let owner = if hook.owner_id == caller.id {
            caller.clone()
        } else {
            users::user_by_id(&***client, &hook.owner_id)
                .await?
                .ok_or_else(|| ApiError::NotFound("webhook not found".into()))?
        };
        change.filters = Some(
            filters::resolve(
                &***client,
                &owner,
                state.allow_dataset_collaborators,
                filters,
            )
            .await?,
        );
    }
    if rotate && change.secret.is_none() {
        change.secret = Some(sign::generate_secret());
    }

    let tx = client.transaction().await?;

    // Topic, address and filters may not come to equal another of the owner's webhooks:
    // create answers one id for those, and update keeps that true.
    if change.topic.is_some() || change.address.is_some() || change.filters.is_some() {
        subscriptions::lock_owner(&*tx, &hook.owner_id).await?;
        let topic = change.topic.as_deref().unwrap_or(&hook.topic);
        let address = change.address.as_deref().unwrap_or(&hook.address);
        let filters = change.filters.as_ref().unwrap_or(&hook.filters);
        let twin =
            subscriptions::find_identical(&*tx, &hook.owner_id, topic, address, filters, Some(&id))
                .await?;
        if let Some(twin) = twin {
            let field = ["address", "topic", "filters"]
                .into_iter()
                .find(|field| params.contains_key(*field))
                .unwrap_or("address");
            return Err(ApiError::field(
                field,
                format!("The webhook {twin} already has this topic, address and filters"),
            ));
        }
    }

    let Some(updated) = subscriptions::update(&*tx, &id, &change).await? else {
        return Err(ApiError::NotFound("webhook not found".into()));
    };
    tx.commit().await?;

    tracing::info!(
        subscription_id = %id,
        user_id = %caller.id,
        rotated = rotate,
        reenabled = change.reenable && hook.state == "disabled",
        "webhook updated"
    );
    Ok(hook_dict(&updated, caller))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Params {
        value.as_object().unwrap().clone()
    }

    fn invalid(value: Value) -> Vec<String> {
        match check(&params(value), false) {
            Err(ApiError::Validation(fields)) => fields.into_keys().collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn absent_fields_stay_and_given_ones_are_checked() {
        let checked = check(&params(json!({"id": "x"})), false).unwrap();
        assert!(checked.change.topic.is_none() && checked.change.address.is_none());
        assert!(checked.change.filters.is_none() && checked.change.rate_per_second.is_none());
        assert!(!checked.rotate && !checked.change.reenable);

        let checked = check(
            &params(
                json!({"id": "x", "filters": null, "rate_per_second": "12", "state": "active"}),
            ),
            false,
        )
        .unwrap();
        assert_eq!(checked.change.filters, Some(json!({})));
        assert_eq!(checked.change.rate_per_second, Some(Some(12)));
        assert!(checked.change.reenable);

        assert_eq!(
            invalid(json!({"id": "x", "topic": "nope", "address": "ftp://a/", "colour": 1})),
            vec!["address", "colour", "topic"]
        );
        assert_eq!(invalid(json!({"address": null})), vec!["address", "id"]);
    }

    #[test]
    fn rotation_rules() {
        let checked = check(&params(json!({"id": "x", "rotate_secret": true})), false).unwrap();
        assert!(checked.rotate && checked.change.secret.is_none());
        assert_eq!(checked.change.overlap_hours, DEFAULT_OVERLAP_HOURS);

        let checked = check(
            &params(json!({"id": "x", "secret": "a-new-secret-of-mine", "overlap_hours": 0})),
            false,
        )
        .unwrap();
        assert!(checked.rotate);
        assert_eq!(checked.change.overlap_hours, 0);

        assert_eq!(
            invalid(json!({"id": "x", "secret": "a-new-secret-of-mine", "rotate_secret": false})),
            vec!["rotate_secret"]
        );
        assert_eq!(
            invalid(json!({"id": "x", "overlap_hours": 2})),
            vec!["overlap_hours"]
        );
        assert_eq!(
            invalid(json!({"id": "x", "rotate_secret": true, "overlap_hours": 169})),
            vec!["overlap_hours"]
        );
    }

    #[test]
    fn state_and_rate_bounds() {
        assert_eq!(
            invalid(json!({"id": "x", "state": "disabled"})),
            vec!["state"]
        );
        assert_eq!(
            invalid(json!({"id": "x", "rate_per_second": 0})),
            vec!["rate_per_second"]
        );
        assert_eq!(
            invalid(json!({"id": "x", "rate_per_second": 1.5})),
            vec!["rate_per_second"]
        );
        let checked = check(&params(json!({"id": "x", "rate_per_second": null})), false).unwrap();
        assert_eq!(checked.change.rate_per_second, Some(None));
    }
}
