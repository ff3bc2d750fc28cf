//! The webhook actions: `webhook_create`, `webhook_show`, `webhook_delete` and
//! `webhook_list` here, `webhook_update` in [`super::update`], `webhook_deliveries` in
//! [`super::deliveries`] and `webhook_redeliver` in [`super::redeliver`]. A webhook
//! belongs to the user who created it; another user's hook is answered exactly like one
//! that does not exist, unless the caller is a sysadmin.

use super::envelope::ApiError;
use super::request::Params;
use super::{deliveries, filters, redeliver, update, validate, ApiState};
use crate::sign;
use crate::store::subscriptions::{self, NewSubscription, Subscription};
use crate::store::users::CkanUser;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::{json, Value};

/// The actions this API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Creates a webhook and answers its id.
    Create,
    /// Shows one webhook.
    Show,
    /// Soft-deletes a webhook and cancels its pending deliveries.
    Delete,
    /// Lists the caller's webhooks (every webhook, for sysadmins), optionally only
    /// those with one topic.
    List,
    /// Changes a webhook: address, topic, filters, secret, rate, re-enabling.
    Update,
    /// Lists a webhook's deliveries with their attempts.
    Deliveries,
    /// Queues chosen deliveries again under their ids.
    Redeliver,
}

/// Every action, for tests and listings.
pub const ACTIONS: &[Action] = &[
    Action::Create,
    Action::Show,
    Action::Delete,
    Action::List,
    Action::Update,
    Action::Deliveries,
    Action::Redeliver,
];

impl Action {
    /// The action called `name` in the URL, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "webhook_create" => Some(Action::Create),
            "webhook_show" => Some(Action::Show),
            "webhook_delete" => Some(Action::Delete),
            "webhook_list" => Some(Action::List),
            "webhook_update" => Some(Action::Update),
            "webhook_deliveries" => Some(Action::Deliveries),
            "webhook_redeliver" => Some(Action::Redeliver),
            _ => None,
        }
    }

    /// The action's name, as CKAN's help link and the log spell it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "webhook_create",
            Action::Show => "webhook_show",
            Action::Delete => "webhook_delete",
            Action::List => "webhook_list",
            Action::Update => "webhook_update",
            Action::Deliveries => "webhook_deliveries",
            Action::Redeliver => "webhook_redeliver",
        }
    }

    /// Whether the action changes nothing, and so may be called with GET (CKAN's
    /// `side_effect_free`).
    pub fn side_effect_free(self) -> bool {
        matches!(self, Action::Show | Action::List | Action::Deliveries)
    }
}

/// Runs `action` for the authenticated `caller` and returns its result.
pub async fn run(
    state: &ApiState,
    client: &mut deadpool_postgres::Object,
    caller: &CkanUser,
    action: Action,
    params: &Params,
) -> Result<Value, ApiError> {
    match action {
        Action::Create => create(state, client, caller, params).await,
        Action::Show => show(client, caller, params).await,
        Action::Delete => delete(client, caller, params).await,
        Action::List => list(client, caller, params).await,
        Action::Update => update::run(state, client, caller, params).await,
        Action::Deliveries => deliveries::run(client, caller, params).await,
        Action::Redeliver => redeliver::run(client, caller, params).await,
    }
}

/// A new webhook id: 128 random bits as 32 lowercase hex characters.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A time as CKAN writes timestamps: naive UTC ISO 8601 with microseconds.
pub fn ckan_time(time: &DateTime<Utc>) -> String {
    time.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// An optional time as CKAN writes it, or null.
pub fn ckan_time_or_null(time: Option<&DateTime<Utc>>) -> Value {
    time.map_or(Value::Null, |time| json!(ckan_time(time)))
}

/// A webhook as the API shows it. The secret is only for its owner and sysadmins; the
/// secret before a rotation is never shown, only until when it still signs.
pub fn hook_dict(hook: &Subscription, caller: &CkanUser) -> Value {
    let mut dict = json!({
        "id": hook.id,
        "topic": hook.topic,
        "address": hook.address,
        "filters": hook.filters,
        "state": hook.state,
        "user_id": hook.owner_id,
        "created": ckan_time(&hook.created_at),
        "rate_per_second": hook.rate_per_second,
        "previous_secret_until": ckan_time_or_null(hook.previous_secret_until.as_ref()),
        "failing_since": ckan_time_or_null(hook.failing_since.as_ref()),
        "disabled_at": ckan_time_or_null(hook.disabled_at.as_ref()),
        "disabled_reason": hook.disabled_reason,
    });
    if caller.sysadmin || caller.id == hook.owner_id {
        dict["secret"] = json!(hook.secret);
    }
    dict
}

/// Creates a webhook owned by the caller. The same topic, address and filters again
/// (while the first is not deleted) answers the existing id and keeps its secret.
async fn create(
    state: &ApiState,
    client: &mut deadpool_postgres::Object,
    caller: &CkanUser,
    params: &Params,
) -> Result<Value, ApiError> {
    let mut checked = validate::create(params, state.allow_private_targets)?;
    checked.filters = filters::resolve(
        &***client,
        caller,
        state.allow_dataset_collaborators,
        checked.filters,
    )
    .await?;
    let tx = client.transaction().await?;

    // The same topic, address and resolved filters twice for one owner is one webhook.
    subscriptions::lock_owner(&*tx, &caller.id).await?;
    let existing = subscriptions::find_identical(
        &*tx,
        &caller.id,
        &checked.topic,
        &checked.address,
        &checked.filters,
        None,
    )
    .await?;
    if let Some(id) = existing {
        tx.commit().await?;
        tracing::info!(subscription_id = %id, user_id = %caller.id, "webhook already exists");
        return Ok(json!(id));
    }

    let id = new_id();
    let secret = checked.secret.unwrap_or_else(sign::generate_secret);
    let new = NewSubscription {
        id: &id,
        owner_id: &caller.id,
        topic: &checked.topic,
        address: &checked.address,
        filters: &checked.filters,
        secret: &secret,
    };
    subscriptions::insert(&*tx, &new).await?;
    tx.commit().await?;

    tracing::info!(
        subscription_id = %id,
        user_id = %caller.id,
        topic = %checked.topic,
        "webhook created"
    );
    Ok(json!(id))
}

/// The webhook `id` if the caller may see it; otherwise NotFound, whether it exists or not.
pub async fn visible_hook(
    client: &deadpool_postgres::Object,
    caller: &CkanUser,
    id: &str,
) -> Result<Subscription, ApiError> {
    let not_found = || ApiError::NotFound("webhook not found".into());
    let is_hook_id = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !is_hook_id {
        return Err(not_found());
    }
    match subscriptions::get_live(&***client, id).await? {
        Some(hook) if caller.sysadmin || hook.owner_id == caller.id => Ok(hook),
        _ => Err(not_found()),
    }
}

async fn show(
    client: &deadpool_postgres::Object,
    caller: &CkanUser,
    params: &Params,
) -> Result<Value, ApiError> {
    let id = validate::id_only(params, Action::Show.name())?;
    let hook = visible_hook(client, caller, &id).await?;
    Ok(hook_dict(&hook, caller))
}

async fn delete(
    client: &mut deadpool_postgres::Object,
    caller: &CkanUser,
    params: &Params,
) -> Result<Value, ApiError> {
    let id = validate::id_only(params, Action::Delete.name())?;
    visible_hook(client, caller, &id).await?;

    // The row stays so that its delivery records keep their subscription.
    let tx = client.transaction().await?;
    if !subscriptions::mark_deleted(&*tx, &id).await? {
        return Err(ApiError::NotFound("webhook not found".into()));
    }
    let cancelled = subscriptions::cancel_pending_deliveries(&*tx, &id).await?;
    tx.commit().await?;

    tracing::info!(
        subscription_id = %id,
        user_id = %caller.id,
        cancelled,
        "webhook deleted"
    );
    Ok(Value::Null)
}

async fn list(
    client: &deadpool_postgres::Object,
    caller: &CkanUser,
    params: &Params,
) -> Result<Value, ApiError> {
    let topic = validate::list(params)?;
    let owner = (!caller.sysadmin).then_some(caller.id.as_str());
    let hooks = subscriptions::list_live(&***client, owner, topic.as_deref()).await?;
    Ok(Value::Array(
        hooks.iter().map(|hook| hook_dict(hook, caller)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, new_id());
    }

    #[test]
    fn ids_carry_128_random_bits() {
        // Every one of the 128 bit positions takes both values across a few hundred ids
        // (a fixed bit would halve the id space), and no id repeats.
        let ids: Vec<u128> = (0..512)
            .map(|_| u128::from_str_radix(&new_id(), 16).unwrap())
            .collect();
        let ones = ids.iter().fold(0u128, |acc, id| acc | id);
        let zeros = ids.iter().fold(0u128, |acc, id| acc | !id);
        assert_eq!((ones, zeros), (u128::MAX, u128::MAX));
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn names_round_trip() {
        for action in ACTIONS {
            assert_eq!(Action::from_name(action.name()), Some(*action));
        }
        assert_eq!(Action::from_name("package_show"), None);
    }
}
