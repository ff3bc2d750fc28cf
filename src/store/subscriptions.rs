//! Queries on `ckan_webhooks.subscription`, the webhooks that the action API creates,
//! shows, lists and deletes. One function per query; callers pass a client or a
//! transaction so that a multi-step change commits as one.

use crate::error::Result;
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// A webhook as stored, whatever its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// 32 lowercase hex characters from 128 random bits.
    pub id: String,
    /// CKAN user id of the owner; the payload's `user_ref`.
    pub owner_id: String,
    /// A CKAN topic such as `dataset/create`, or a wildcard.
    pub topic: String,
    /// The receiver's URL.
    pub address: String,
    /// Extra conditions beyond the topic, as a JSON object.
    pub filters: serde_json::Value,
    /// The Standard Webhooks signing secret.
    pub secret: String,
    /// `active`, `disabled` or `deleted`.
    pub state: String,
    /// When the webhook was created.
    pub created_at: DateTime<Utc>,
    /// Until when the secret before the last rotation still signs; the secret itself
    /// never leaves the store through the API.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Requests per second to the destination; None means the service default.
    pub rate_per_second: Option<i32>,
    /// Since when every attempt has failed; None after a success.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the service disabled the webhook, if it did.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled (410 Gone, failing too long).
    pub disabled_reason: Option<String>,
}

/// What `webhook_update` changes; None leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionChange {
    /// A new topic.
    pub topic: Option<String>,
    /// A new receiver URL.
    pub address: Option<String>,
    /// New filters, replacing the old ones as a whole.
    pub filters: Option<serde_json::Value>,
    /// A new signing secret; the current one becomes the previous secret.
    pub secret: Option<String>,
    /// How long the previous secret keeps signing after a rotation, in hours; zero
    /// forgets it at once.
    pub overlap_hours: i64,
    /// Some(None) clears the per-webhook rate, Some(Some(n)) sets it.
    pub rate_per_second: Option<Option<i32>>,
    /// Re-enables a disabled webhook and forgets why it was disabled.
    pub reenable: bool,
}

/// What a caller supplies to create a webhook; the database fills in the rest.
#[derive(Debug, Clone)]
pub struct NewSubscription<'a> {
    /// The new webhook's id.
    pub id: &'a str,
    /// CKAN user id of the owner.
    pub owner_id: &'a str,
    /// The topic listened to.
    pub topic: &'a str,
    /// The receiver's URL.
    pub address: &'a str,
    /// Extra conditions, a JSON object.
    pub filters: &'a serde_json::Value,
    /// The signing secret.
    pub secret: &'a str,
}

const COLUMNS: &str = "id, owner_id, topic, address, filters, secret, state, created_at, \
     previous_secret_until, rate_per_second, failing_since, disabled_at, disabled_reason";

fn from_row(row: &tokio_postgres::Row) -> Subscription {
    Subscription {
        id: row.get("id"),
        owner_id: row.get("owner_id"),
        topic: row.get("topic"),
        address: row.get("address"),
        filters: row.get("filters"),
        secret: row.get("secret"),
        state: row.get("state"),
        created_at: row.get("created_at"),
        previous_secret_until: row.get("previous_secret_until"),
        rate_per_second: row.get("rate_per_second"),
        failing_since: row.get("failing_since"),
        disabled_at: row.get("disabled_at"),
        disabled_reason: row.get("disabled_reason"),
    }
}

/// Serialises webhook creation per owner until the transaction ends, so that two
/// identical concurrent creates cannot both miss each other's row.
pub async fn lock_owner<C: GenericClient>(client: &C, owner_id: &str) -> Result<()> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('ckan_webhooks.subscription'), \
             hashtext($1))",
            &[&owner_id],
        )
        .await?;
    Ok(())
}

/// The id of the owner's not-deleted webhook with the same topic, address and filters.
/// `except` leaves one webhook out (the one being updated).
pub async fn find_identical<C: GenericClient>(
    client: &C,
    owner_id: &str,
    topic: &str,
    address: &str,
    filters: &serde_json::Value,
    except: Option<&str>,
) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT id FROM ckan_webhooks.subscription \
             WHERE owner_id = $1 AND topic = $2 AND address = $3 AND filters = $4 \
               AND state <> 'deleted' AND id IS DISTINCT FROM $5 \
             ORDER BY created_at LIMIT 1",
            &[&owner_id, &topic, &address, filters, &except],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Stores a new webhook in state `active`.
pub async fn insert<C: GenericClient>(client: &C, new: &NewSubscription<'_>) -> Result<()> {
    client
        .execute(
            "INSERT INTO ckan_webhooks.subscription \
               (id, owner_id, topic, address, filters, secret) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &new.id,
                &new.owner_id,
                &new.topic,
                &new.address,
                new.filters,
                &new.secret,
            ],
        )
        .await?;
    Ok(())
}

/// A webhook that is not deleted, by id.
pub async fn get_live<C: GenericClient>(client: &C, id: &str) -> Result<Option<Subscription>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ckan_webhooks.subscription WHERE id = $1 AND state <> 'deleted'"
    );
    let row = client.query_opt(&sql, &[&id]).await?;
    Ok(row.as_ref().map(from_row))
}

/// Webhooks that are not deleted, oldest first: only `owner`'s when given (None is every
/// owner's, for sysadmins), and only those with `topic` exactly when given.
pub async fn list_live<C: GenericClient>(
    client: &C,
    owner: Option<&str>,
    topic: Option<&str>,
) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ckan_webhooks.subscription \
         WHERE state <> 'deleted' AND ($1::text IS NULL OR owner_id = $1) \
           AND ($2::text IS NULL OR topic = $2) \
         ORDER BY created_at, id"
    );
    let rows = client.query(&sql, &[&owner, &topic]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Applies `change` to a webhook that is not deleted and answers it as it now is; None
/// when it is deleted or unknown. One statement, so a concurrent delete either wins
/// outright or comes after.
///
/// Every `SET` expression reads the row as it was, so the rotated-out `secret` is the
/// old one. Re-enabling touches only a disabled webhook: an active one's
/// `failing_since` belongs to the delivery worker.
pub async fn update<C: GenericClient>(
    client: &C,
    id: &str,
    change: &SubscriptionChange,
) -> Result<Option<Subscription>> {
    let overlap_hours = change.overlap_hours as f64;
    let set_rate = change.rate_per_second.is_some();
    let rate = change.rate_per_second.flatten();
    let sql = format!(
        "UPDATE ckan_webhooks.subscription SET
             topic = coalesce($2, topic),
             address = coalesce($3, address),
             filters = coalesce($4, filters),
             previous_secret = CASE WHEN $5::text IS NULL THEN previous_secret
                                    WHEN $6::float8 > 0 THEN secret END,
             previous_secret_until = CASE WHEN $5::text IS NULL THEN previous_secret_until
                                          WHEN $6::float8 > 0
                                          THEN now() + $6::float8 * interval '1 hour' END,
             secret = coalesce($5, secret),
             rate_per_second = CASE WHEN $7 THEN $8 ELSE rate_per_second END,
             failing_since = CASE WHEN $9 AND state = 'disabled' THEN NULL
                                  ELSE failing_since END,
             disabled_at = CASE WHEN $9 AND state = 'disabled' THEN NULL ELSE disabled_at END,
             disabled_reason = CASE WHEN $9 AND state = 'disabled' THEN NULL
                                    ELSE disabled_reason END,
             state = CASE WHEN $9 AND state = 'disabled' THEN 'active' ELSE state END,
             updated_at = now()
         WHERE id = $1 AND state <> 'deleted'
         RETURNING {COLUMNS}"
    );
    let row = client
        .query_opt(
            &sql,
            &[
                &id,
                &change.topic,
                &change.address,
                &change.filters,
                &change.secret,
                &overlap_hours,
                &set_rate,
                &rate,
                &change.reenable,
            ],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Marks a webhook deleted, keeping the row for its delivery records. False when it
/// was already deleted or never existed.
pub async fn mark_deleted<C: GenericClient>(client: &C, id: &str) -> Result<bool> {
    let updated = client
        .execute(
            "UPDATE ckan_webhooks.subscription SET state = 'deleted', updated_at = now() \
             WHERE id = $1 AND state <> 'deleted'",
            &[&id],
        )
        .await?;
    Ok(updated == 1)
}

/// Cancels the webhook's deliveries that have not gone out yet; returns how many.
pub async fn cancel_pending_deliveries<C: GenericClient>(client: &C, id: &str) -> Result<u64> {
    let cancelled = client
        .execute(
            "UPDATE ckan_webhooks.delivery SET status = 'cancelled', lease_until = NULL \
             WHERE subscription_id = $1 AND status = 'pending'",
            &[&id],
        )
        .await?;
    Ok(cancelled)
}
