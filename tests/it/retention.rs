//! Retention against a real database: what a pass removes (old finished deliveries, their
//! attempts, unreferenced events, long-gone subscriptions), what it keeps (anything
//! pending, anything recent, disabled hooks with pending deliveries), batching, the
//! one-instance lock, and the task started by the service.

use crate::support::db::TestDb;
use crate::support::service::{self, TestService};
use ckan_webhooks::retention::{self, Removed};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Inserts a subscription in `state`, last changed `age_days` ago.
async fn subscription(client: &tokio_postgres::Client, id: &str, state: &str, age_days: i32) {
    client
        .execute(
            "INSERT INTO ckan_webhooks.subscription
                 (id, owner_id, topic, address, secret, state, updated_at, disabled_at)
             VALUES ($1, 'u', '*', 'http://127.0.0.1:9/', 'whsec_AAAA', $2,
                     now() - make_interval(days => $3),
                     CASE WHEN $2 = 'disabled' THEN now() - make_interval(days => $3) END)",
            &[&id, &state, &age_days],
        )
        .await
        .unwrap();
}

/// Inserts an event and a delivery to `subscription_id` in `status`, created and last
/// attempted `age_days` ago, with `attempts` attempt rows.
async fn delivery(
    client: &tokio_postgres::Client,
    id: &str,
    subscription_id: &str,
    status: &str,
    age_days: i32,
    attempts: i32,
) {
    client
        .execute(
            "WITH e AS (
                 INSERT INTO ckan_webhooks.event (id, txid, topic, dataset_id, entity,
                     occurred_at, created_at)
                 VALUES ('ev-' || $1, pg_current_xact_id(), 'dataset/update', 'pkg', '{}',
                     now() - make_interval(days => $4), now() - make_interval(days => $4))
                 RETURNING id
             )
             INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id,
                 status, attempts, created_at, last_attempt_at)
             SELECT $1, e.id, $2, 'pkg', $3, $5, now() - make_interval(days => $4),
                    CASE WHEN $5 > 0 THEN now() - make_interval(days => $4) END
             FROM e",
            &[&id, &subscription_id, &status, &age_days, &attempts],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO ckan_webhooks.attempt (delivery_id, subscription_id, attempt,
                 attempted_at, status)
             SELECT $1, $2, n, now() - make_interval(days => $3), 500
             FROM generate_series(1, $4) n",
            &[&id, &subscription_id, &age_days, &attempts],
        )
        .await
        .unwrap();
}

async fn ids(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let sql = format!("SELECT id::text FROM ckan_webhooks.{table} ORDER BY id");
    client
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A database with one of each case; returns a client on it.
async fn populated(db: &TestDb) -> tokio_postgres::Client {
    let client = db.client().await;
    subscription(&client, "active", "active", 100).await;
    subscription(&client, "disabled-old", "disabled", 60).await;
    subscription(&client, "disabled-old-pending", "disabled", 60).await;
    subscription(&client, "disabled-new", "disabled", 5).await;
    subscription(&client, "deleted-old", "deleted", 60).await;
    subscription(&client, "deleted-old-pending", "deleted", 60).await;

    // Old and finished: removed with their attempts and events.
    delivery(&client, "old-delivered", "active", "delivered", 40, 1).await;
    delivery(&client, "old-dead", "active", "dead", 40, 12).await;
    delivery(&client, "old-cancelled", "active", "cancelled", 40, 0).await;
    delivery(&client, "old-disabled", "disabled-old", "dead", 40, 3).await;
    delivery(&client, "old-deleted", "deleted-old", "delivered", 40, 1).await;
    // Kept: recent, or pending however old.
    delivery(&client, "new-delivered", "active", "delivered", 2, 1).await;
    delivery(&client, "old-pending", "active", "pending", 40, 5).await;
    delivery(&client, "parked", "disabled-old-pending", "pending", 40, 2).await;
    // Pending for a hook deleted long ago: cancelled, then removed.
    delivery(&client, "orphan", "deleted-old-pending", "pending", 40, 2).await;
    client
}

#[tokio::test]
async fn a_pass_removes_what_is_old_and_finished_in_batches() {
    let db = TestDb::installed().await;
    let client = populated(&db).await;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(30);

    let removed = retention::pass(
        &client,
        cutoff,
        2,
        Duration::ZERO,
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(
        removed,
        Removed {
            cancelled: 1,
            attempts: 1 + 12 + 3 + 1 + 2,
            deliveries: 6,
            events: 6,
            subscriptions: 3,
        }
    );
    assert_eq!(
        ids(&client, "delivery").await,
        ["new-delivered", "old-pending", "parked"]
    );
    assert_eq!(
        ids(&client, "event").await,
        ["ev-new-delivered", "ev-old-pending", "ev-parked"]
    );
    assert_eq!(
        ids(&client, "subscription").await,
        ["active", "disabled-new", "disabled-old-pending"]
    );
    let attempts = count(&client, "SELECT count(*) FROM ckan_webhooks.attempt").await;
    assert_eq!(attempts, 1 + 5 + 2);

    // A second pass finds nothing more.
    let again = retention::pass(
        &client,
        cutoff,
        2,
        Duration::ZERO,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(again, Removed::default());
}

#[tokio::test]
async fn only_one_instance_runs_a_pass() {
    let db = TestDb::installed().await;
    let _client = populated(&db).await;
    let holder = db.client().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&retention::LOCK])
        .await
        .unwrap();
    let cutoff = chrono::Utc::now() - chrono::Duration::days(30);
    let never = CancellationToken::new();

    let blocked = retention::pass_alone(&db.url, cutoff, 1000, Duration::ZERO, &never)
        .await
        .unwrap();
    assert_eq!(blocked, None);

    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&retention::LOCK])
        .await
        .unwrap();
    let ran = retention::pass_alone(&db.url, cutoff, 1000, Duration::ZERO, &never)
        .await
        .unwrap();
    assert_eq!(ran.map(|r| r.deliveries), Some(6));
}

#[tokio::test]
async fn the_service_runs_retention_when_configured() {
    let db = TestDb::installed().await;
    let client = populated(&db).await;
    let mut config = service::config(&db);
    config.retention = Some(Duration::from_secs(30 * 86_400));
    let service = TestService::start_with(config).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = count(&client, "SELECT count(*) FROM ckan_webhooks.delivery").await;
        if left == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} deliveries left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pending ones stay (the worker may have settled the active hook's by now).
    assert_eq!(
        ids(&client, "delivery").await,
        ["new-delivered", "old-pending", "parked"]
    );
    service.stop().await;
}
