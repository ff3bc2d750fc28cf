//! Crash safety with the real binary: SIGKILL with 100 deliveries in flight, two `run`
//! instances on one database, and the duplicate a receiver may see when an instance dies
//! between the receiver's 200 and the record of it (same `webhook-id`).

use crate::support::db::TestDb;
use crate::support::process::RunProcess;
use crate::support::receiver::{Receiver, Reply};
use crate::support::service::{self, TestService};
use crate::support::worker::webhook_id;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// Flags that let one instance hold many attempts to one receiver at once, with a lease
/// just longer than the attempt timeout (long enough that no attempt times out before
/// the kill, even on a loaded machine).
const MANY_IN_FLIGHT: &[&str] = &[
    "--lease-secs",
    "11",
    "--delivery-timeout-secs",
    "10",
    "--concurrency",
    "100",
    "--per-destination-concurrency",
    "100",
    "--rate-per-destination",
    "1000",
];

/// Inserts an active subscription to `address` and `n` pending deliveries to it, one
/// per dataset (so order never holds one back); returns the delivery ids.
async fn pending(client: &tokio_postgres::Client, address: &str, n: i32) -> BTreeSet<String> {
    client
        .execute(
            "INSERT INTO ckan_webhooks.subscription (id, owner_id, topic, address, secret)
             VALUES ('hook', 'user-1', '*', $1, 'whsec_Y3Jhc2gtdGVzdC1zZWNyZXQ=')",
            &[&address],
        )
        .await
        .unwrap();
    client
        .execute(
            "WITH e AS (
                 INSERT INTO ckan_webhooks.event (id, txid, topic, dataset_id, entity,
                     occurred_at)
                 SELECT 'ev-' || n, pg_current_xact_id(), 'dataset/update', 'pkg-' || n,
                        jsonb_build_object('id', 'pkg-' || n), now()
                 FROM generate_series(1, $1) n
                 RETURNING id, dataset_id
             )
             INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id)
             SELECT 'dl-' || e.dataset_id, e.id, 'hook', e.dataset_id FROM e",
            &[&n],
        )
        .await
        .unwrap();
    client
        .query("SELECT id FROM ckan_webhooks.delivery", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Waits until `sql` (a count) answers `expected`.
async fn wait_count(client: &tokio_postgres::Client, sql: &str, expected: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let have = count(client, sql).await;
        if have == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {have}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn kill_9_with_100_in_flight_then_another_instance_delivers_them_all() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::ok().delay(Duration::from_secs(600)));
    let ids = pending(&client, &receiver.url(), 100).await;

    // The first instance sends all 100 and waits on a receiver that never answers.
    let mut first = RunProcess::start(&db, MANY_IN_FLIGHT);
    receiver.wait_for(100, WAIT).await;
    let leased = count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery
         WHERE status = 'pending' AND lease_until > now()",
    )
    .await;
    assert_eq!(leased, 100, "all 100 are claimed");
    let earliest_expiry: f64 = client
        .query_one(
            "SELECT extract(epoch FROM min(lease_until) - now())::float8
             FROM ckan_webhooks.delivery",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let expires = Instant::now() + Duration::from_secs_f64(earliest_expiry.max(0.0));

    first.kill9().await;
    receiver.respond_with(Reply::ok());
    let second = TestService::start(&db).await;

    let got = receiver.wait_for(200, WAIT).await;
    let again = &got[100..];
    let resent: BTreeSet<String> = again.iter().map(|r| webhook_id(r).to_string()).collect();
    assert_eq!(resent, ids, "each delivery again, under its own id");
    assert_eq!(again.len(), 100, "and once each");
    for request in again {
        assert!(
            request.at + Duration::from_millis(100) >= expires,
            "sent again before the dead instance's lease ran out"
        );
        let body = request.json();
        assert_eq!(
            format!("dl-{}", body["dataset_id"].as_str().unwrap()),
            webhook_id(request)
        );
    }

    wait_count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'delivered'",
        100,
    )
    .await;
    let held = count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery WHERE lease_until IS NOT NULL",
    )
    .await;
    assert_eq!(held, 0, "nothing stays claimed");
    // The killed attempts left no outcome; the claims counted them.
    let attempts = count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery WHERE attempts = 2",
    )
    .await;
    assert_eq!(attempts, 100);
    second.stop().await;
}

#[tokio::test]
async fn two_instances_share_200_deliveries_without_sending_one_twice() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    let ids = pending(&client, &receiver.url(), 200).await;

    let flags = ["--rate-per-destination", "1000"];
    let mut a = RunProcess::start(&db, &flags);
    let mut b = RunProcess::start(&db, &flags);

    wait_count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'delivered'",
        200,
    )
    .await;
    let got = receiver.recorded();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for request in &got {
        *per_id.entry(webhook_id(request).to_string()).or_default() += 1;
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(per_id.keys().cloned().collect::<BTreeSet<_>>(), ids);
    let logged = count(&client, "SELECT count(*) FROM ckan_webhooks.attempt").await;
    assert_eq!(logged, 200, "one attempt each");
    assert!(a.is_running() && b.is_running());
    a.kill9().await;
    b.kill9().await;
}

#[tokio::test]
async fn killed_before_recording_a_success_the_same_webhook_id_comes_again() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    // The first answer is a 200 that takes a moment, so the test can block its record.
    receiver.respond_in_turn([Reply::ok().delay(Duration::from_millis(500))]);
    let ids = pending(&client, &receiver.url(), 1).await;
    let id = ids.first().unwrap().clone();

    let mut first = RunProcess::start(&db, &["--lease-secs", "3", "--delivery-timeout-secs", "2"]);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(webhook_id(&got[0]), id);

    // Hold the delivery row so the instance cannot record the 200 it is about to get.
    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM ckan_webhooks.delivery WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await
    .unwrap();
    wait_count(
        &client,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
        1,
    )
    .await;

    // Kill it there, and end its blocked statement as the server would on noticing.
    first.kill9().await;
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap();
    wait_count(
        &client,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
        0,
    )
    .await;
    tx.rollback().await.unwrap();
    let row = client
        .query_one(
            "SELECT status, attempts FROM ckan_webhooks.delivery WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "pending",
        "the success was never recorded"
    );

    // After a restart the receiver gets it again, with the same id and body.
    let mut config = service::config(&db);
    config.delivery.lease = Duration::from_secs(3);
    let restarted = TestService::start_with(config).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(webhook_id(&got[1]), id);
    assert_eq!(got[1].body, got[0].body);
    wait_count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'delivered'",
        1,
    )
    .await;
    assert_eq!(receiver.recorded().len(), 2);
    restarted.stop().await;
}
