//! Crash safety with the real binary: SIGKILL with 100 deliveries in flight, two `run`
//! instances on one database, and the duplicate a receiver may see when an instance dies
//! between the receiver's 200 and the record of it (same `webhook-id`); and, on the
//! store alone, claims never acknowledged, and one batch of mixed outcomes.

use crate::support::db::TestDb;
use crate::support::process::RunProcess;
use crate::support::receiver::{Receiver, Reply};
use crate::support::service::{self, TestService};
use crate::support::worker::webhook_id;
use ckan_webhooks::store::deliveries::{self, Claimed};
use ckan_webhooks::store::outcomes::{self, AttemptRecord, Disable, Outcome, Verdict};
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

/// Waits until a claim with `lease` returns rows, and returns them.
async fn claim_when_due(
    pool: &deadpool_postgres::Pool,
    lease: Duration,
) -> Vec<ckan_webhooks::store::deliveries::Claimed> {
    let deadline = Instant::now() + WAIT;
    loop {
        let client = pool.get().await.unwrap();
        let claimed = deliveries::claim(&client, 10, lease, &[], deliveries::first_position())
            .await
            .unwrap();
        if !claimed.is_empty() {
            return claimed;
        }
        assert!(Instant::now() < deadline, "the claims never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn outcome(claimed: &Claimed, verdict: Verdict) -> Outcome {
    Outcome {
        delivery_id: claimed.id.clone(),
        subscription_id: claimed.subscription_id.clone(),
        attempt: claimed.attempt,
        record: AttemptRecord {
            started_at: Some(chrono::Utc::now()),
            status: Some(if verdict == Verdict::Delivered {
                200
            } else {
                500
            }),
            ..AttemptRecord::default()
        },
        verdict,
        disable: None,
    }
}

#[tokio::test]
async fn claimed_and_never_acknowledged_comes_again_under_the_same_id() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let ids = pending(&client, "http://127.0.0.1:9/hook", 3).await;
    let pool = ckan_webhooks::store::pool(&db.url, 2).unwrap();
    let lease = Duration::from_millis(300);

    // An instance claims the rows and dies before acknowledging anything.
    let first = claim_when_due(&pool, lease).await;
    assert_eq!(
        first.iter().map(|c| c.id.clone()).collect::<BTreeSet<_>>(),
        ids
    );
    assert!(first.iter().all(|c| c.attempt == 1));
    let client_2 = pool.get().await.unwrap();
    let start = deliveries::first_position();
    let again = deliveries::claim(&client_2, 10, lease, &[], start)
        .await
        .unwrap();
    drop(client_2);
    assert!(again.is_empty(), "leased rows were claimed twice");

    // Once the lease has run out, they are claimed again, same ids, next attempt.
    let second = claim_when_due(&pool, Duration::from_secs(30)).await;
    assert_eq!(
        second.iter().map(|c| c.id.clone()).collect::<BTreeSet<_>>(),
        ids
    );
    assert!(second.iter().all(|c| c.attempt == 2));

    // The first instance's late failure cannot undo the second's success.
    let late: Vec<Outcome> = first.iter().map(|c| outcome(c, RETRY)).collect();
    let now: Vec<Outcome> = second
        .iter()
        .map(|c| outcome(c, Verdict::Delivered))
        .collect();
    let recorded = outcomes::record(&pool.get().await.unwrap(), &now)
        .await
        .unwrap();
    assert_eq!(recorded.settled.into_iter().collect::<BTreeSet<_>>(), ids);
    let recorded = outcomes::record(&pool.get().await.unwrap(), &late)
        .await
        .unwrap();
    assert!(recorded.settled.is_empty());
    let delivered = "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'delivered'";
    assert_eq!(count(&client, delivered).await, 3);
    let logged = "SELECT count(*) FROM ckan_webhooks.attempt";
    assert_eq!(count(&client, logged).await, 6);
}

const RETRY: Verdict = Verdict::Retry(Duration::from_secs(60));

/// A delivery's id, status, attempts, whether unleased, last status, last error, and
/// whether its next attempt is a minute away.
type DeliveryState = (String, String, i32, bool, Option<i32>, Option<String>, bool);

#[tokio::test]
async fn one_batch_of_mixed_outcomes_records_each_as_one_at_a_time_would() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    pending(&client, "http://127.0.0.1:9/hook", 4).await;
    // A second hook, failing for 100 hours, with one delivery.
    client
        .batch_execute(
            "INSERT INTO ckan_webhooks.subscription (id, owner_id, topic, address, secret,
                 failing_since)
             VALUES ('old', 'user-1', '*', 'http://127.0.0.1:9/old', 'whsec_b2xk',
                 now() - interval '100 hours');
             INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id)
             VALUES ('dl-old', 'ev-1', 'old', 'pkg-old')",
        )
        .await
        .unwrap();
    let pool = ckan_webhooks::store::pool(&db.url, 2).unwrap();
    let claimed = claim_when_due(&pool, Duration::from_secs(30)).await;
    let by_id: BTreeMap<String, Claimed> = claimed.into_iter().map(|c| (c.id.clone(), c)).collect();
    // pkg-4 is claimed again elsewhere meanwhile: this instance's outcome is stale.
    client
        .batch_execute("UPDATE ckan_webhooks.delivery SET attempts = 2 WHERE id = 'dl-pkg-4'")
        .await
        .unwrap();

    let since: chrono::DateTime<chrono::Utc> = client
        .query_one(
            "SELECT failing_since FROM ckan_webhooks.subscription WHERE id = 'old'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let mut old = outcome(&by_id["dl-old"], RETRY);
    old.disable = Some(Disable {
        reason: "failing for 100 hours".into(),
        failing_since: since,
    });
    let failed_at = chrono::Utc::now();
    let mut retried = outcome(&by_id["dl-pkg-2"], RETRY);
    retried.record.started_at = Some(failed_at);
    retried.record.error = Some("the receiver answered 500".into());
    let batch = [
        outcome(&by_id["dl-pkg-1"], Verdict::Delivered),
        retried,
        outcome(&by_id["dl-pkg-3"], Verdict::Dead),
        outcome(&by_id["dl-pkg-4"], RETRY),
        old,
    ];
    let recorded = outcomes::record(&pool.get().await.unwrap(), &batch)
        .await
        .unwrap();

    let settled: BTreeSet<String> = recorded.settled.into_iter().collect();
    let expected: BTreeSet<String> = ["dl-pkg-1", "dl-pkg-2", "dl-pkg-3", "dl-old"]
        .map(String::from)
        .into();
    assert_eq!(settled, expected);
    assert_eq!(recorded.disabled.into_iter().collect::<Vec<_>>(), ["old"]);

    let rows = client
        .query(
            "SELECT id, status, attempts, lease_until IS NULL, last_status, last_error,
                    next_attempt_at > now() + interval '50 seconds'
             FROM ckan_webhooks.delivery ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<DeliveryState> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect();
    let error = Some("the receiver answered 500".to_string());
    assert_eq!(
        got,
        [
            (
                "dl-old".into(),
                "pending".into(),
                1,
                true,
                Some(500),
                None,
                true
            ),
            (
                "dl-pkg-1".into(),
                "delivered".into(),
                1,
                true,
                Some(200),
                None,
                false
            ),
            (
                "dl-pkg-2".into(),
                "pending".into(),
                1,
                true,
                Some(500),
                error,
                true
            ),
            (
                "dl-pkg-3".into(),
                "dead".into(),
                1,
                true,
                Some(500),
                None,
                false
            ),
            // Untouched: the newer claim holds it.
            (
                "dl-pkg-4".into(),
                "pending".into(),
                2,
                false,
                None,
                None,
                false
            ),
        ]
    );
    let logged = "SELECT count(*) FROM ckan_webhooks.attempt";
    assert_eq!(count(&client, logged).await, 5);

    // The hook's streak starts at the failure after its success; the old hook is off.
    let hooks = client
        .query(
            "SELECT id, state, failing_since, disabled_reason FROM ckan_webhooks.subscription
             ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let hook = &hooks[0];
    assert_eq!(hook.get::<_, String>("state"), "active");
    let streak: chrono::DateTime<chrono::Utc> = hook.get("failing_since");
    assert_eq!(streak.timestamp_micros(), failed_at.timestamp_micros());
    let old = &hooks[1];
    assert_eq!(old.get::<_, String>("state"), "disabled");
    assert_eq!(
        old.get::<_, Option<String>>("disabled_reason").as_deref(),
        Some("failing for 100 hours")
    );
}
