//! Queries on `ckan_webhooks.delivery` for the delivery worker: claiming due rows under
//! a lease, and handing back claims it cannot serve. Outcomes are recorded by
//! [`super::outcomes`]; every outcome clears the lease, so a row is leased only while an
//! attempt is running or waiting for its destination. The worker runs these on every
//! wake-up, so each is prepared once per connection (`prepare_cached`).
//!
//! PostgreSQL still plans the claim for each call's values: the generic plan of a
//! prepared claim sorts every pending row (1.7 s with 200 000 pending when forced,
//! against milliseconds), so its estimated cost stays above the custom plans' and the
//! server keeps making custom ones (`pg_prepared_statements` showed 0 generic and 9
//! custom plans with 500 and with 200 000 pending rows). Should that ever change,
//! `plan_cache_mode = force_custom_plan` on the deliverer's connections restores it.

use crate::error::Result;
use crate::payload::Event;
use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper;
use std::time::Duration;
use tokio_postgres::Row;

/// A delivery claimed for one attempt, with what is needed to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery id, sent as `webhook-id` on every attempt.
    pub id: String,
    /// Attempts so far, this one included (incremented by the claim).
    pub attempt: u32,
    /// When the delivery was created or last redelivered: the age limit counts from it.
    pub created_at: DateTime<Utc>,
    /// The subscription (webhook) it goes to.
    pub subscription_id: String,
    /// The subscription's target URL.
    pub address: String,
    /// The subscription's signing secret.
    pub secret: String,
    /// The secret before the last rotation, while its overlap lasts: attempts are then
    /// signed with both.
    pub previous_secret: Option<String>,
    /// The subscription's own requests per second, overriding the destination default.
    pub rate_per_second: Option<u32>,
    /// Since when every attempt to the subscription has failed, as seen by the claim.
    pub failing_since: Option<DateTime<Utc>>,
    /// The hook owner's CKAN user id (the payload's `user_ref`).
    pub owner_id: String,
    /// The event being delivered.
    pub event: Event,
    /// Where the row stood in the claim order: its next attempt time and sequence number.
    pub position: Position,
}

/// A place in the claim order (next attempt time, then sequence number).
pub type Position = (DateTime<Utc>, i64);

/// The start of the claim order (1900, before any delivery's next attempt).
pub fn first_position() -> Position {
    let start = DateTime::from_timestamp(-2_208_988_800, 0).expect("1900 is a valid time");
    (start, i64::MIN)
}

/// Claims up to `limit` due deliveries for one attempt each, looking only at rows from
/// `from` on in the claim order.
///
/// `from` lets a worker draining a backlog start where its last claim started instead
/// of walking again over the index entries of rows settled since (they stay in the index
/// until vacuumed, and a scan from the start would grow slower with every row settled).
/// Rows it passes over this way are found again by the next claim from
/// [`first_position`].
///
/// A row is due when it is pending, its next attempt time has come, no live lease holds
/// it, its subscription is active and not in `skip_subscriptions` (those whose
/// destination this instance cannot serve right now), and it is the head of its line:
/// no earlier pending delivery exists for the same (subscription, dataset). Rows locked
/// by another claim are skipped, not waited for.
pub async fn claim(
    client: &ClientWrapper,
    limit: i64,
    lease: Duration,
    skip_subscriptions: &[String],
    from: Position,
) -> Result<Vec<Claimed>> {
    let statement = client
        .prepare_cached(
            "WITH due AS (
                 SELECT d.id
                 FROM ckan_webhooks.delivery d
                 JOIN ckan_webhooks.subscription s ON s.id = d.subscription_id
                 WHERE d.status = 'pending'
                   AND d.next_attempt_at <= now()
                   AND (d.lease_until IS NULL OR d.lease_until < now())
                   AND s.state = 'active'
                   AND NOT (d.subscription_id = ANY($3))
                   AND (d.next_attempt_at, d.seq) >= ($4::timestamptz, $5::int8)
                   AND NOT EXISTS (
                       SELECT 1 FROM ckan_webhooks.delivery earlier
                       WHERE earlier.subscription_id = d.subscription_id
                         AND earlier.dataset_id = d.dataset_id
                         AND earlier.status = 'pending'
                         AND earlier.seq < d.seq)
                 ORDER BY d.next_attempt_at, d.seq
                 LIMIT $1
                 FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE ckan_webhooks.delivery d
             SET lease_until = now() + $2::float8 * interval '1 millisecond',
                 attempts = d.attempts + 1
             FROM due, ckan_webhooks.event e, ckan_webhooks.subscription s
             WHERE d.id = due.id AND e.id = d.event_id AND s.id = d.subscription_id
             RETURNING d.id, d.attempts, coalesce(d.requeued_at, d.created_at) AS created_at, d.subscription_id, s.address,
                       s.secret, s.owner_id, s.rate_per_second, s.failing_since,
                       CASE WHEN s.previous_secret_until > now() THEN s.previous_secret
                       END AS previous_secret,
                       e.id AS event_id, e.topic, e.dataset_id,
                       e.organization_id, e.dataset_type, e.entity, e.changes,
                       e.occurred_at, d.seq, d.next_attempt_at",
        )
        .await?;
    let lease_ms = lease.as_millis() as f64;
    let rows = client
        .query(
            &statement,
            &[&limit, &lease_ms, &skip_subscriptions, &from.0, &from.1],
        )
        .await?;

    let mut claimed: Vec<Claimed> = rows.iter().map(claimed_from_row).collect();
    claimed.sort_by_key(|c| c.position.1);
    Ok(claimed)
}

fn claimed_from_row(row: &Row) -> Claimed {
    let attempts: i32 = row.get("attempts");
    Claimed {
        id: row.get("id"),
        attempt: attempts.max(0) as u32,
        created_at: row.get("created_at"),
        subscription_id: row.get("subscription_id"),
        address: row.get("address"),
        secret: row.get("secret"),
        previous_secret: row.get("previous_secret"),
        rate_per_second: row
            .get::<_, Option<i32>>("rate_per_second")
            .map(|r| r.max(1) as u32),
        failing_since: row.get("failing_since"),
        owner_id: row.get("owner_id"),
        event: Event {
            id: row.get("event_id"),
            topic: row.get("topic"),
            dataset_id: row.get("dataset_id"),
            organization_id: row.get("organization_id"),
            dataset_type: row.get("dataset_type"),
            entity: row.get("entity"),
            changes: row.get("changes"),
            occurred_at: row.get("occurred_at"),
        },
        position: (row.get("next_attempt_at"), row.get("seq")),
    }
}

/// How long until the next delivery becomes claimable, if any is waiting: the later of
/// its next attempt time and its lease's end, among heads of line of active
/// subscriptions. Rows already due are not counted (they are claimed, or waiting for a
/// busy destination).
pub async fn next_due_in(client: &ClientWrapper) -> Result<Option<Duration>> {
    let statement = client
        .prepare_cached(
            "SELECT extract(epoch FROM min(greatest(d.next_attempt_at,
                        coalesce(d.lease_until, d.next_attempt_at))) - now())::float8
             FROM ckan_webhooks.delivery d
             JOIN ckan_webhooks.subscription s ON s.id = d.subscription_id
             WHERE d.status = 'pending'
               AND s.state = 'active'
               AND greatest(d.next_attempt_at, coalesce(d.lease_until, d.next_attempt_at))
                   > now()
               AND NOT EXISTS (
                   SELECT 1 FROM ckan_webhooks.delivery earlier
                   WHERE earlier.subscription_id = d.subscription_id
                     AND earlier.dataset_id = d.dataset_id
                     AND earlier.status = 'pending'
                     AND earlier.seq < d.seq)",
        )
        .await?;
    let row = client.query_one(&statement, &[]).await?;
    let seconds: Option<f64> = row.get(0);
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Hands back claims whose attempts never started (their destination was busy too
/// long, or the worker is stopping): the leases are cleared and the attempts not counted.
pub async fn release(client: &ClientWrapper, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(
            "UPDATE ckan_webhooks.delivery
             SET lease_until = NULL, attempts = greatest(attempts - 1, 0)
             WHERE id = ANY($1::text[]) AND status = 'pending'",
        )
        .await?;
    client.execute(&statement, &[&ids]).await?;
    Ok(())
}
