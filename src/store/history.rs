//! Queries behind `webhook_deliveries` and `webhook_redeliver`: a webhook's delivery
//! records with the attempts the delivery worker logged for them, and putting chosen
//! deliveries back in line under the ids they already have. One function per query.

use crate::error::Result;
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// One delivery record as `webhook_deliveries` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// The delivery id, sent as `webhook-id` on every attempt.
    pub id: String,
    /// Creation order; with `created_at`, the key pages are cut on.
    pub seq: i64,
    /// The event delivered.
    pub event_id: String,
    /// The event's topic, e.g. `dataset/update`.
    pub topic: String,
    /// The dataset the event is about.
    pub dataset_id: String,
    /// `pending`, `delivered`, `dead` or `cancelled`.
    pub status: String,
    /// Attempts since the delivery was created or last redelivered.
    pub attempts: i32,
    /// When the delivery was created.
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt_at: DateTime<Utc>,
    /// When a receiver last accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt as the delivery worker logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// The delivery the attempt belongs to.
    pub delivery_id: String,
    /// Its number within the delivery (counting again from 1 after a redelivery).
    pub attempt: i32,
    /// When the request was sent.
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status, when a response came.
    pub status: Option<i32>,
    /// Milliseconds until the kept part of the response arrived.
    pub latency_ms: Option<i32>,
    /// Why the attempt failed.
    pub error: Option<String>,
    /// The first bytes of the response body.
    pub response_head: Option<String>,
}

/// Which of a webhook's deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Only deliveries in this status.
    pub status: Option<String>,
    /// Only deliveries for this dataset, by id or current name.
    pub dataset: Option<String>,
    /// Only deliveries strictly after this (created_at, seq) in the listing order,
    /// i.e. older ones: the last row of the previous page.
    pub after: Option<(DateTime<Utc>, i64)>,
    /// Rows to skip, for callers that page by offset instead.
    pub offset: i64,
    /// At most this many rows.
    pub limit: i64,
}

/// Which of a webhook's deliveries to send again.
#[derive(Debug, Clone, PartialEq)]
pub enum Redelivery {
    /// One delivery by id.
    One(String),
    /// Those created at or after the first time and before the second.
    Window(DateTime<Utc>, DateTime<Utc>),
    /// Those for one dataset, by id or current name.
    Dataset(String),
}

/// The webhook's deliveries, newest first: ordered by (created_at, seq) descending,
/// which is total, so pages cut on it neither repeat nor skip a row.
pub async fn list_deliveries<C: GenericClient>(
    client: &C,
    subscription_id: &str,
    query: &DeliveryQuery,
) -> Result<Vec<DeliveryRecord>> {
    let (after_time, after_seq) = match query.after {
        Some((time, seq)) => (Some(time), Some(seq)),
        None => (None, None),
    };
    let rows = client
        .query(
            "SELECT d.id, d.seq, d.event_id, e.topic, d.dataset_id, d.status, d.attempts,
                    d.created_at, d.next_attempt_at, d.delivered_at
             FROM ckan_webhooks.delivery d
             JOIN ckan_webhooks.event e ON e.id = d.event_id
             WHERE d.subscription_id = $1
               AND ($2::text IS NULL OR d.status = $2)
               AND ($3::text IS NULL OR d.dataset_id = $3
                    OR d.dataset_id IN (SELECT p.id FROM public.package p WHERE p.name = $3))
               AND ($4::timestamptz IS NULL OR (d.created_at, d.seq) < ($4, $5::int8))
             ORDER BY d.created_at DESC, d.seq DESC
             LIMIT $6 OFFSET $7",
            &[
                &subscription_id,
                &query.status,
                &query.dataset,
                &after_time,
                &after_seq,
                &query.limit,
                &query.offset,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| DeliveryRecord {
            id: row.get("id"),
            seq: row.get("seq"),
            event_id: row.get("event_id"),
            topic: row.get("topic"),
            dataset_id: row.get("dataset_id"),
            status: row.get("status"),
            attempts: row.get("attempts"),
            created_at: row.get("created_at"),
            next_attempt_at: row.get("next_attempt_at"),
            delivered_at: row.get("delivered_at"),
        })
        .collect())
}

/// The latest `per_delivery` attempts of each of `delivery_ids`, oldest first within a
/// delivery.
pub async fn recent_attempts<C: GenericClient>(
    client: &C,
    delivery_ids: &[String],
    per_delivery: i64,
) -> Result<Vec<AttemptRecord>> {
    let rows = client
        .query(
            "SELECT delivery_id, attempt, attempted_at, status, latency_ms, error,
                    response_head
             FROM (SELECT a.*, row_number() OVER (PARTITION BY a.delivery_id
                                                  ORDER BY a.id DESC) AS recency
                   FROM ckan_webhooks.attempt a
                   WHERE a.delivery_id = ANY($1)) a
             WHERE recency <= $2
             ORDER BY delivery_id, id",
            &[&delivery_ids, &per_delivery],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| AttemptRecord {
            delivery_id: row.get("delivery_id"),
            attempt: row.get("attempt"),
            attempted_at: row.get("attempted_at"),
            status: row.get("status"),
            latency_ms: row.get("latency_ms"),
            error: row.get("error"),
            response_head: row.get("response_head"),
        })
        .collect())
}

/// The webhook a delivery belongs to, if the delivery exists.
pub async fn delivery_subscription<C: GenericClient>(
    client: &C,
    delivery_id: &str,
) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT subscription_id FROM ckan_webhooks.delivery WHERE id = $1",
            &[&delivery_id],
        )
        .await?;
    Ok(row.map(|row| row.get(0)))
}

/// Puts the webhook's deliveries chosen by `which` back in line: pending, due now, no
/// attempts, no lease, keeping their ids. Pending deliveries already due are left
/// alone, which also leaves any attempt in flight (it holds a due row's lease) to
/// finish. Answers how many were queued.
pub async fn redeliver<C: GenericClient>(
    client: &C,
    subscription_id: &str,
    which: &Redelivery,
) -> Result<u64> {
    let (one, since, until, dataset) = match which {
        Redelivery::One(id) => (Some(id.as_str()), None, None, None),
        Redelivery::Window(since, until) => (None, Some(*since), Some(*until), None),
        Redelivery::Dataset(dataset) => (None, None, None, Some(dataset.as_str())),
    };
    let queued = client
        .execute(
            "UPDATE ckan_webhooks.delivery d
             SET status = 'pending', attempts = 0, next_attempt_at = now(),
                 lease_until = NULL, delivered_at = NULL, requeued_at = now()
             WHERE d.subscription_id = $1
               AND NOT (d.status = 'pending' AND d.next_attempt_at <= now())
               AND ($2::text IS NULL OR d.id = $2)
               AND ($3::timestamptz IS NULL OR d.created_at >= $3)
               AND ($4::timestamptz IS NULL OR d.created_at < $4)
               AND ($5::text IS NULL OR d.dataset_id = $5
                    OR d.dataset_id IN (SELECT p.id FROM public.package p WHERE p.name = $5))",
            &[&subscription_id, &one, &since, &until, &dataset],
        )
        .await?;
    Ok(queued)
}
