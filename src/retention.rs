//! Retention: with `--retention-days N`, old delivery records and long-gone subscriptions
//! are removed, so the side schema stays bounded under a steady load.
//!
//! A pass removes, in batches of [`BATCH`] rows per statement with a [`PAUSE`] between
//! statements (so CKAN's own writes never queue behind a long delete):
//!
//! 1. pending deliveries of subscriptions deleted more than N days ago are `cancelled`
//!    (a deleted hook never sends again);
//! 2. attempts of finished deliveries (delivered, dead, cancelled) whose last attempt is
//!    older than N days, then those deliveries;
//! 3. events older than N days that no delivery refers to;
//! 4. subscriptions disabled or deleted more than N days ago that have no deliveries
//!    left. A disabled subscription's pending deliveries are kept (re-enabling it
//!    resumes them), so it stays until they are settled.
//!
//! A pending delivery is never deleted. One instance at a time runs a pass: the pass
//! holds a session advisory lock on a connection of its own, which PostgreSQL releases if
//! the instance dies.

use crate::error::Result;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::GenericClient;
use tokio_util::sync::CancellationToken;

/// Rows per delete statement.
pub const BATCH: i64 = 1000;

/// Pause between two statements of a pass.
pub const PAUSE: Duration = Duration::from_millis(100);

/// Time between passes.
pub const INTERVAL: Duration = Duration::from_secs(3600);

/// Advisory lock key held during a pass ("ckwhret1").
pub const LOCK: i64 = 0x636b_7768_7265_7431;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Pending deliveries of long-deleted subscriptions, now `cancelled`.
    pub cancelled: u64,
    /// Attempt rows.
    pub attempts: u64,
    /// Delivery rows.
    pub deliveries: u64,
    /// Event rows.
    pub events: u64,
    /// Subscription rows.
    pub subscriptions: u64,
}

/// Runs a pass at start and every [`INTERVAL`] until `shutdown`, removing what is older
/// than `retention`.
pub async fn run(
    database_url: String,
    retention: Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    tracing::info!(
        retention_days = retention.as_secs() / 86_400,
        "retention started"
    );
    loop {
        // A retention too long for the calendar removes nothing (never everything).
        let cutoff = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|keep| Utc::now().checked_sub_signed(keep));
        let Some(cutoff) = cutoff else {
            tracing::warn!("retention longer than the calendar: nothing will be removed");
            return Ok(());
        };
        match pass_alone(&database_url, cutoff, BATCH, PAUSE, &shutdown).await {
            Ok(Some(removed)) => tracing::info!(
                cancelled = removed.cancelled,
                attempts = removed.attempts,
                deliveries = removed.deliveries,
                events = removed.events,
                subscriptions = removed.subscriptions,
                "retention pass done"
            ),
            Ok(None) => tracing::debug!("another instance runs retention"),
            Err(err) => tracing::warn!(error = %err, "retention pass failed"),
        }

        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

/// Runs one pass unless another instance holds the retention lock (then None).
pub async fn pass_alone(
    database_url: &str,
    cutoff: DateTime<Utc>,
    batch: i64,
    pause: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<Removed>> {
    // A connection of its own: closing it releases the lock whatever happens.
    let client = crate::store::connect(database_url).await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(None);
    }
    pass(&client, cutoff, batch, pause, shutdown)
        .await
        .map(Some)
}

/// Statements of a pass, in order: what each counts, and its SQL (`$1` the cutoff, `$2`
/// the batch size).
const STEPS: &[(&str, &str)] = &[
    (
        "cancelled",
        "UPDATE ckan_webhooks.delivery SET status = 'cancelled', lease_until = NULL
         WHERE status = 'pending' AND id IN (
             SELECT d.id FROM ckan_webhooks.delivery d
             JOIN ckan_webhooks.subscription s ON s.id = d.subscription_id
             WHERE s.state = 'deleted' AND s.updated_at < $1 AND d.status = 'pending'
             LIMIT $2)",
    ),
    (
        "attempts",
        "DELETE FROM ckan_webhooks.attempt WHERE id IN (
             SELECT a.id FROM ckan_webhooks.delivery d
             JOIN ckan_webhooks.attempt a ON a.delivery_id = d.id
             WHERE d.status <> 'pending' AND coalesce(d.last_attempt_at, d.created_at) < $1
             LIMIT $2)",
    ),
    (
        "deliveries",
        "DELETE FROM ckan_webhooks.delivery
         WHERE status <> 'pending' AND id IN (
             SELECT id FROM ckan_webhooks.delivery
             WHERE status <> 'pending' AND coalesce(last_attempt_at, created_at) < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    ),
    (
        "events",
        "DELETE FROM ckan_webhooks.event WHERE id IN (
             SELECT e.id FROM ckan_webhooks.event e
             WHERE e.created_at < $1
               AND NOT EXISTS (SELECT 1 FROM ckan_webhooks.delivery d WHERE d.event_id = e.id)
             LIMIT $2)",
    ),
    (
        "subscriptions",
        "DELETE FROM ckan_webhooks.subscription WHERE id IN (
             SELECT s.id FROM ckan_webhooks.subscription s
             WHERE s.state IN ('disabled', 'deleted') AND s.updated_at < $1
               AND NOT EXISTS (
                   SELECT 1 FROM ckan_webhooks.delivery d WHERE d.subscription_id = s.id)
             LIMIT $2)",
    ),
];

/// One pass over everything older than `cutoff`, `batch` rows per statement. Stops
/// early, with what it removed so far, when `shutdown` is cancelled.
pub async fn pass(
    client: &impl GenericClient,
    cutoff: DateTime<Utc>,
    batch: i64,
    pause: Duration,
    shutdown: &CancellationToken,
) -> Result<Removed> {
    let mut removed = Removed::default();
    for (what, sql) in STEPS {
        let statement = client.prepare(sql).await?;
        loop {
            if shutdown.is_cancelled() {
                return Ok(removed);
            }
            let rows = client.execute(&statement, &[&cutoff, &batch]).await?;
            let counter = match *what {
                "cancelled" => &mut removed.cancelled,
                "attempts" => &mut removed.attempts,
                "deliveries" => &mut removed.deliveries,
                "events" => &mut removed.events,
                _ => &mut removed.subscriptions,
            };
            *counter += rows;
            if rows < batch.max(1) as u64 {
                break;
            }
            tokio::time::sleep(pause).await;
        }
    }
    Ok(removed)
}
