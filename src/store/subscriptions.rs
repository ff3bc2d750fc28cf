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

const COLUMNS: &str = "id, owner_id, topic, address, filters, secret, state, created_at";

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
pub async fn find_identical<C: GenericClient>(
    client: &C,
    owner_id: &str,
    topic: &str,
    address: &str,
    filters: &serde_json::Value,
) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT id FROM ckan_webhooks.subscription \
             WHERE owner_id = $1 AND topic = $2 AND address = $3 AND filters = $4 \
               AND state <> 'deleted' \
             ORDER BY created_at LIMIT 1",
            &[&owner_id, &topic, &address, filters],
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

/// The owner's webhooks that are not deleted, oldest first.
pub async fn list_live_by_owner<C: GenericClient>(
    client: &C,
    owner_id: &str,
) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ckan_webhooks.subscription \
         WHERE owner_id = $1 AND state <> 'deleted' ORDER BY created_at, id"
    );
    let rows = client.query(&sql, &[&owner_id]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Every webhook that is not deleted, oldest first (for sysadmins).
pub async fn list_live<C: GenericClient>(client: &C) -> Result<Vec<Subscription>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM ckan_webhooks.subscription \
         WHERE state <> 'deleted' ORDER BY created_at, id"
    );
    let rows = client.query(&sql, &[]).await?;
    Ok(rows.iter().map(from_row).collect())
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
