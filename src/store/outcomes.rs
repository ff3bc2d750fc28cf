//! Recording an attempt: one statement that appends the attempt to
//! `ckan_webhooks.attempt`, settles the delivery (delivered, retried later or dead), and
//! keeps the subscription's failure bookkeeping (`failing_since`, and disabling it after
//! a `410 Gone` or after failing too long). One statement, so the audit log never
//! disagrees with the delivery it describes.
//!
//! A late outcome cannot undo a newer one: a failure is applied to the delivery only
//! while it is still pending at the same attempt number (another instance may have
//! claimed it again after this lease ran out), and a success only while it is pending.
//! The attempt row is written either way, because the request was sent.

use crate::error::Result;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::GenericClient;

/// What one attempt produced, as kept in the attempt log and on the delivery.
#[derive(Debug, Clone, Default)]
pub struct AttemptRecord {
    /// When the attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// The HTTP status, when a response arrived.
    pub status: Option<i32>,
    /// Why the attempt failed, for operators.
    pub error: Option<String>,
    /// The first bytes of the response body.
    pub response: Option<String>,
    /// Milliseconds until the kept part of the response had arrived.
    pub latency_ms: Option<i32>,
}

/// What happens to the delivery after the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver accepted it.
    Delivered,
    /// It stays pending and is tried again after the delay.
    Retry(Duration),
    /// It is given up.
    Dead,
    /// The receiver answered `410 Gone`: dead, and the subscription is disabled.
    Gone,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry(_) => "retry",
            Self::Dead => "dead",
            Self::Gone => "gone",
        }
    }
}

/// Disabling a subscription that has failed for too long.
#[derive(Debug, Clone)]
pub struct Disable {
    /// The `disabled_reason` to store.
    pub reason: String,
    /// The `failing_since` the decision was based on: the subscription is disabled only
    /// if it has not succeeded since (a success clears the column, and a new failure
    /// streak starts later).
    pub failing_since: DateTime<Utc>,
}

/// What [`record`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// False when the delivery had moved on (a newer claim, or already settled).
    pub delivery_updated: bool,
    /// True when this attempt disabled the subscription.
    pub subscription_disabled: bool,
}

/// True when the subscription should be disabled (whether it will be is decided by the
/// condition shared by the SET clauses below).
const DISABLE: &str = "(s.state = 'active' AND $11::text IS NOT NULL
     AND ($9 = 'gone' OR s.failing_since <= $12))";

/// Records attempt number `attempt` of delivery `delivery_id` to `subscription_id`.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    client: &impl GenericClient,
    delivery_id: &str,
    subscription_id: &str,
    attempt: u32,
    record: &AttemptRecord,
    verdict: Verdict,
    gone_reason: Option<&str>,
    disable: Option<&Disable>,
) -> Result<Recorded> {
    let delay_ms = match verdict {
        Verdict::Retry(delay) => delay.as_millis() as f64,
        _ => 0.0,
    };
    let reason = match verdict {
        Verdict::Gone => gone_reason.map(str::to_string),
        _ => disable.map(|d| d.reason.clone()),
    };
    let seen = disable.map(|d| d.failing_since);
    let attempt = attempt.min(i32::MAX as u32) as i32;

    let sql = format!(
        "WITH logged AS (
             INSERT INTO ckan_webhooks.attempt (delivery_id, subscription_id, attempt,
                 attempted_at, status, latency_ms, error, response_head)
             VALUES ($1, $2, $3, coalesce($4, now()), $5, $6, $7, $8)
         ),
         sub AS (
             UPDATE ckan_webhooks.subscription s
             SET failing_since = CASE WHEN $9 = 'delivered' THEN NULL
                                      ELSE coalesce(s.failing_since, $4, now()) END,
                 state = CASE WHEN {DISABLE} THEN 'disabled' ELSE s.state END,
                 disabled_at = CASE WHEN {DISABLE} THEN now() ELSE s.disabled_at END,
                 disabled_reason = CASE WHEN {DISABLE} THEN $11 ELSE s.disabled_reason END,
                 updated_at = CASE WHEN {DISABLE} THEN now() ELSE s.updated_at END
             WHERE s.id = $2
               AND CASE WHEN $9 = 'delivered' THEN s.failing_since IS NOT NULL
                        ELSE s.failing_since IS NULL OR {DISABLE} END
             RETURNING s.state = 'disabled' AND s.disabled_at = now() AS disabled
         ),
         settled AS (
             UPDATE ckan_webhooks.delivery d
             SET status = CASE $9 WHEN 'delivered' THEN 'delivered'
                                  WHEN 'retry' THEN 'pending' ELSE 'dead' END,
                 delivered_at = CASE WHEN $9 = 'delivered' THEN now() ELSE d.delivered_at END,
                 next_attempt_at = CASE WHEN $9 = 'retry'
                     THEN now() + $10::float8 * interval '1 millisecond'
                     ELSE d.next_attempt_at END,
                 lease_until = NULL,
                 last_attempt_at = coalesce($4, now()), last_status = $5, last_error = $7,
                 last_response = $8, last_latency_ms = $6
             WHERE d.id = $1 AND d.status = 'pending'
               AND ($9 = 'delivered' OR d.attempts = $3)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM settled) > 0,
                coalesce((SELECT bool_or(disabled) FROM sub), false)"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &delivery_id,
                &subscription_id,
                &attempt,
                &record.started_at,
                &record.status,
                &record.latency_ms,
                &record.error,
                &record.response,
                &verdict.name(),
                &delay_ms,
                &reason,
                &seen,
            ],
        )
        .await?;
    Ok(Recorded {
        delivery_updated: row.get(0),
        subscription_disabled: row.get(1),
    })
}
