//! `webhook_redeliver`: sends deliveries again under the ids they already have (a
//! receiver that dropped duplicates by `webhook-id` sees the same id again): one
//! delivery, a webhook's deliveries created within a window of at most
//! [`MAX_WINDOW_DAYS`], or a webhook's deliveries for one dataset. Pending deliveries
//! already due are left as they are. A disabled webhook must be re-enabled first.

use super::actions::{visible_hook, Action};
use super::envelope::ApiError;
use super::fields::{optional_string, optional_time};
use super::request::Params;
use super::validate::{Errors, MAX_FILTER_CHARS};
use crate::store::history::{self, Redelivery};
use crate::store::subscriptions::Subscription;
use crate::store::users::CkanUser;
use serde_json::{json, Value};

/// The widest window one call may redeliver.
pub const MAX_WINDOW_DAYS: i64 = 31;

/// The longest delivery id looked up; ours are 32 characters.
const MAX_DELIVERY_ID_CHARS: usize = 100;

const KNOWN: &[&str] = &["delivery_id", "id", "since", "until", "dataset"];

const FORMS: &str = "Give delivery_id alone, or id with since and until, or id with dataset";

/// The checked parameters of `webhook_redeliver`: the webhook (None when a delivery id
/// names it) and which of its deliveries.
#[derive(Debug, Clone, PartialEq)]
pub struct RedeliverParams {
    /// The webhook, in the window and dataset forms.
    pub id: Option<String>,
    /// Which deliveries.
    pub which: Redelivery,
}

/// Checks `webhook_redeliver`'s parameters: exactly one of the three forms.
pub fn check(params: &Params) -> Result<RedeliverParams, ApiError> {
    let mut errors = Errors::default();
    errors.unknown_keys(params, KNOWN, Action::Redeliver.name());
    let given = |field: &str| !matches!(params.get(field), None | Some(Value::Null));

    // One delivery: its id says which webhook, so nothing else may come with it.
    if given("delivery_id") {
        let delivery_id =
            optional_string(params, "delivery_id", MAX_DELIVERY_ID_CHARS, &mut errors);
        for field in ["id", "since", "until", "dataset"] {
            if given(field) {
                errors.add(field, FORMS);
            }
        }
        let which = Redelivery::One(delivery_id.unwrap_or_default());
        return errors.finish(RedeliverParams { id: None, which });
    }

    let id = optional_string(params, "id", MAX_DELIVERY_ID_CHARS, &mut errors);
    if !given("id") {
        errors.add("id", "Missing value");
    }
    let since = optional_time(params, "since", &mut errors);
    let until = optional_time(params, "until", &mut errors);
    let dataset = optional_string(params, "dataset", MAX_FILTER_CHARS, &mut errors);

    let which = match (given("since") || given("until"), given("dataset")) {
        (true, true) => {
            errors.add("dataset", FORMS);
            None
        }
        (false, false) => {
            errors.add("since", FORMS);
            None
        }
        (false, true) => dataset.map(Redelivery::Dataset),
        (true, false) => window(params, since, until, &mut errors),
    };
    let which = which.unwrap_or(Redelivery::One(String::new()));
    errors.finish(RedeliverParams { id, which })
}

/// A window from `since` to `until`: both given, in order, and at most
/// [`MAX_WINDOW_DAYS`] wide.
fn window(
    params: &Params,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    errors: &mut Errors,
) -> Option<Redelivery> {
    for field in ["since", "until"] {
        if matches!(params.get(field), None | Some(Value::Null)) {
            errors.add(field, "Missing value");
        }
    }
    let (since, until) = (since?, until?);
    if until <= since {
        errors.add("until", "Must be later than since");
        return None;
    }
    if until - since > chrono::Duration::days(MAX_WINDOW_DAYS) {
        errors.add(
            "until",
            format!("The window may span at most {MAX_WINDOW_DAYS} days"),
        );
        return None;
    }
    Some(Redelivery::Window(since, until))
}

/// Runs `webhook_redeliver` and answers how many deliveries were queued.
pub async fn run(
    client: &deadpool_postgres::Object,
    caller: &CkanUser,
    params: &Params,
) -> Result<Value, ApiError> {
    let RedeliverParams { id, which } = check(params)?;

    // The webhook, found so that another user's delivery answers like an unknown one.
    let (hook, field) = match (&id, &which) {
        (Some(id), _) => (visible_hook(client, caller, id).await?, "id"),
        (None, Redelivery::One(delivery_id)) => (
            delivery_hook(client, caller, delivery_id).await?,
            "delivery_id",
        ),
        // check() never answers this; refuse it rather than trust that.
        (None, _) => return Err(ApiError::field("id", "Missing value")),
    };
    if hook.state != "active" {
        return Err(ApiError::field(
            field,
            "The webhook is disabled; re-enable it with webhook_update (state \"active\") first",
        ));
    }

    let queued = history::redeliver(&***client, &hook.id, &which).await?;
    tracing::info!(
        subscription_id = %hook.id,
        user_id = %caller.id,
        queued,
        "deliveries queued again"
    );
    Ok(json!(queued))
}

/// The webhook of a delivery the caller may see; NotFound for any other delivery.
async fn delivery_hook(
    client: &deadpool_postgres::Object,
    caller: &CkanUser,
    delivery_id: &str,
) -> Result<Subscription, ApiError> {
    let not_found = || ApiError::NotFound("delivery not found".into());
    let Some(hook_id) = history::delivery_subscription(&***client, delivery_id).await? else {
        return Err(not_found());
    };
    match visible_hook(client, caller, &hook_id).await {
        Err(ApiError::NotFound(_)) => Err(not_found()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Value) -> Params {
        value.as_object().unwrap().clone()
    }

    fn invalid(value: Value) -> Vec<String> {
        match check(&params(value)) {
            Err(ApiError::Validation(fields)) => fields.into_keys().collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_three_forms() {
        let one = check(&params(json!({"delivery_id": "d1"}))).unwrap();
        assert_eq!(one.which, Redelivery::One("d1".into()));
        assert_eq!(one.id, None);

        let window = check(&params(json!({
            "id": "h", "since": "2026-05-01T00:00:00Z", "until": "2026-05-31T00:00:00Z",
        })))
        .unwrap();
        assert!(matches!(window.which, Redelivery::Window(_, _)));
        assert_eq!(window.id.as_deref(), Some("h"));

        let dataset = check(&params(json!({"id": "h", "dataset": "my-data"}))).unwrap();
        assert_eq!(dataset.which, Redelivery::Dataset("my-data".into()));
    }

    #[test]
    fn mixed_incomplete_and_wide_requests_are_refused() {
        assert_eq!(invalid(json!({"delivery_id": "d1", "id": "h"})), vec!["id"]);
        assert_eq!(
            invalid(json!({"id": "h", "dataset": "x", "since": "2026-05-01"})),
            vec!["dataset"]
        );
        assert_eq!(invalid(json!({"id": "h"})), vec!["since"]);
        assert_eq!(invalid(json!({})), vec!["id", "since"]);
        assert_eq!(
            invalid(json!({"id": "h", "since": "2026-05-01"})),
            vec!["until"]
        );
        assert_eq!(
            invalid(json!({"id": "h", "since": "2026-05-02", "until": "2026-05-01"})),
            vec!["until"]
        );
        assert_eq!(
            invalid(json!({"id": "h", "since": "2026-04-01", "until": "2026-05-02T00:00:01"})),
            vec!["until"]
        );
        assert_eq!(
            invalid(json!({"id": "h", "since": "yesterday", "until": "2026-05-02"})),
            vec!["since"]
        );
        assert_eq!(
            invalid(json!({"delivery_id": "d1", "colour": 1})),
            vec!["colour"]
        );
    }
}
