//! The figures `/metrics` exports, read from the side schema so that every instance
//! reports the same state.

use crate::error::Result;
use tokio_postgres::GenericClient;

/// One snapshot of the service's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Change-log rows not yet derived.
    pub change_backlog: i64,
    /// Age of the oldest change not yet derived, in seconds.
    pub change_lag_seconds: f64,
    /// Deliveries by status.
    pub deliveries: Vec<(String, i64)>,
    /// Pending deliveries whose next attempt is due now.
    pub deliveries_due: i64,
    /// Median and 99th percentile latency of attempts in the last five minutes, ms.
    pub latency_ms: Option<(f64, f64)>,
    /// Subscriptions by state.
    pub subscriptions: Vec<(String, i64)>,
    /// `pg_notification_queue_usage()`: 0 to 1.
    pub notify_queue_usage: f64,
    /// Capture triggers present on CKAN's tables (0 means capture is broken).
    pub capture_triggers: i64,
}

/// Reads a snapshot.
// TODO: the per-status counts scan the delivery table; they need a retention policy
// (issue 3) or counters once delivery records grow into the millions.
pub async fn snapshot(client: &impl GenericClient) -> Result<Snapshot> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM ckan_webhooks.change),
                    coalesce((SELECT extract(epoch FROM now() - min(captured_at))::float8
                              FROM ckan_webhooks.change), 0),
                    (SELECT count(*) FROM ckan_webhooks.delivery
                     WHERE status = 'pending' AND next_attempt_at <= now()),
                    pg_notification_queue_usage(),
                    (SELECT count(*) FROM pg_trigger
                     WHERE tgname IN ('ckan_webhooks_insert', 'ckan_webhooks_update',
                                      'ckan_webhooks_delete'))",
            &[],
        )
        .await?;
    let mut snapshot = Snapshot {
        change_backlog: row.get(0),
        change_lag_seconds: row.get(1),
        deliveries_due: row.get(2),
        notify_queue_usage: row.get(3),
        capture_triggers: row.get(4),
        ..Snapshot::default()
    };

    let rows = client
        .query(
            "SELECT status, count(*) FROM ckan_webhooks.delivery GROUP BY status ORDER BY status",
            &[],
        )
        .await?;
    snapshot.deliveries = rows.iter().map(|r| (r.get(0), r.get(1))).collect();

    let rows = client
        .query(
            "SELECT state, count(*) FROM ckan_webhooks.subscription GROUP BY state ORDER BY state",
            &[],
        )
        .await?;
    snapshot.subscriptions = rows.iter().map(|r| (r.get(0), r.get(1))).collect();

    let row = client
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY last_latency_ms),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY last_latency_ms)
             FROM ckan_webhooks.delivery
             WHERE last_attempt_at > now() - interval '5 minutes'
               AND last_latency_ms IS NOT NULL",
            &[],
        )
        .await?;
    let (p50, p99): (Option<f64>, Option<f64>) = (row.get(0), row.get(1));
    snapshot.latency_ms = p50.zip(p99);
    Ok(snapshot)
}
