//! The delivery worker in-process against a test database: a harness that inserts
//! subscriptions, events and deliveries directly, as the watcher would, and waits for
//! their outcomes.

use super::db::TestDb;
use super::receiver::Recorded;
use ckan_webhooks::config::DeliveryConfig;
use ckan_webhooks::{deliver, sign};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(15);
pub const SITE: &str = "http://ckan.test";

/// A short schedule that lets the worker call 127.0.0.1.
pub fn config() -> DeliveryConfig {
    DeliveryConfig {
        allow_private_targets: true,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_attempts: 5,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(500),
        rate_per_destination: 100,
        concurrency: 8,
        per_destination_concurrency: 4,
        lease: Duration::from_secs(30),
        response_keep_bytes: 64,
        ..DeliveryConfig::default()
    }
}

/// A database, a client on it, and the worker running against it.
pub struct Harness {
    pub client: tokio_postgres::Client,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
    worker: Option<tokio::task::JoinHandle<ckan_webhooks::error::Result<()>>>,
    pub db: TestDb,
}

impl Harness {
    pub async fn start(config: DeliveryConfig) -> Harness {
        let db = TestDb::installed().await;
        let client = db.client().await;
        let pool = ckan_webhooks::store::pool(&db.url, 8).unwrap();
        let wake = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(deliver::run(
            pool,
            config,
            SITE.to_string(),
            wake.clone(),
            shutdown.clone(),
        ));
        Harness {
            client,
            wake,
            shutdown,
            worker: Some(worker),
            db,
        }
    }

    /// Adds an active subscription to `address`; returns its id and secret.
    pub async fn subscription(&self, address: &str) -> (String, String) {
        let id = format!("hook-{:08x}", rand::random::<u32>());
        let secret = sign::generate_secret();
        self.client
            .execute(
                "INSERT INTO ckan_webhooks.subscription (id, owner_id, topic, address, secret)
                 VALUES ($1, 'user-1', 'dataset/*', $2, $3)",
                &[&id, &address, &secret],
            )
            .await
            .unwrap();
        (id, secret)
    }

    /// Adds an event on `dataset_id` and its delivery to `subscription_id`, as the
    /// watcher would, and wakes the worker. Returns the delivery id.
    pub async fn delivery(&self, subscription_id: &str, dataset_id: &str) -> String {
        let event_id = format!("event-{:08x}", rand::random::<u32>());
        let delivery_id = format!("msg-{:08x}", rand::random::<u32>());
        let entity = json!({"id": dataset_id, "name": dataset_id, "title": "A dataset"});
        self.client
            .execute(
                "INSERT INTO ckan_webhooks.event (id, txid, topic, dataset_id, organization_id,
                     dataset_type, entity, occurred_at)
                 VALUES ($1, pg_current_xact_id(), 'dataset/update', $2, 'org-1', 'dataset',
                     $3, now())",
                &[&event_id, &dataset_id, &entity],
            )
            .await
            .unwrap();
        self.client
            .execute(
                "INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id)
                 VALUES ($1, $2, $3, $4)",
                &[&delivery_id, &event_id, &subscription_id, &dataset_id],
            )
            .await
            .unwrap();
        self.wake.notify_one();
        delivery_id
    }

    pub async fn row(&self, delivery_id: &str) -> Row {
        self.client
            .query_one(
                "SELECT d.*, e.id AS event_id FROM ckan_webhooks.delivery d
                 JOIN ckan_webhooks.event e ON e.id = d.event_id WHERE d.id = $1",
                &[&delivery_id],
            )
            .await
            .unwrap()
    }

    /// Waits until the delivery has `status`, and returns its row.
    pub async fn wait_status(&self, delivery_id: &str, status: &str) -> Row {
        let deadline = Instant::now() + WAIT;
        loop {
            let row = self.row(delivery_id).await;
            if row.get::<_, String>("status") == status {
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "delivery {delivery_id} stayed {:?} (error {:?}), expected {status}",
                row.get::<_, String>("status"),
                row.get::<_, Option<String>>("last_error"),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn subscription_state(&self, id: &str) -> String {
        self.client
            .query_one(
                "SELECT state FROM ckan_webhooks.subscription WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The subscription's row.
    pub async fn subscription_row(&self, id: &str) -> Row {
        self.client
            .query_one(
                "SELECT * FROM ckan_webhooks.subscription WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
    }

    /// The delivery's attempt log, oldest first.
    pub async fn attempts(&self, delivery_id: &str) -> Vec<Row> {
        self.client
            .query(
                "SELECT * FROM ckan_webhooks.attempt WHERE delivery_id = $1 ORDER BY id",
                &[&delivery_id],
            )
            .await
            .unwrap()
    }

    /// Waits until the delivery's attempt log has `n` rows, and returns them.
    pub async fn wait_attempts(&self, delivery_id: &str, n: usize) -> Vec<Row> {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = self.attempts(delivery_id).await;
            if rows.len() >= n {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "delivery {delivery_id} has {} attempt rows, expected {n}",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the worker and waits for its in-flight attempts.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        let worker = self.worker.take().unwrap();
        tokio::time::timeout(WAIT, worker)
            .await
            .expect("the worker stops")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.abort();
        }
    }
}

pub fn webhook_id(request: &Recorded) -> &str {
    request.header("webhook-id").expect("webhook-id header")
}
