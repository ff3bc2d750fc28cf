//! The delivery worker against a real database and recording receivers: signatures,
//! retries, outcomes, ordering, isolation between destinations, and the address policy.
//! Rows are inserted directly; the worker runs in-process with a short retry schedule.

use crate::support::receiver::{Receiver, Reply};
use crate::support::worker::{config, webhook_id, Harness, SITE, WAIT};
use ckan_webhooks::config::DeliveryConfig;
use ckan_webhooks::{deliver, sign};
use std::time::Duration;

#[tokio::test]
async fn delivers_a_signed_webhook() {
    let receiver = Receiver::start().await;
    let mut h = Harness::start(config()).await;
    let (hook, secret) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let got = receiver.wait_for(1, WAIT).await;
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request
        .header("user-agent")
        .unwrap()
        .starts_with("ckan-webhooks/"));
    assert_eq!(webhook_id(request), id);

    let timestamp: i64 = request
        .header("webhook-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let expected = sign::signature(&secret, &id, timestamp, &request.body);
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));

    let row = h.wait_status(&id, "delivered").await;
    let body = request.json();
    assert_eq!(body["id"], row.get::<_, String>("event_id"));
    assert_eq!(body["webhook_id"], hook);
    assert_eq!(body["ckan"], SITE);
    assert_eq!(body["dataset_id"], "pkg-1");
    assert_eq!(row.get::<_, Option<i32>>("last_status"), Some(200));
    assert_eq!(row.get::<_, i32>("attempts"), 1);
    assert!(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>("delivered_at")
        .is_some());
    assert!(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>("lease_until")
        .is_none());
    assert!(row.get::<_, Option<i32>>("last_latency_ms").is_some());
    h.stop().await;
}

#[tokio::test]
async fn a_retry_keeps_the_webhook_id() {
    let receiver = Receiver::start().await;
    receiver.respond_in_turn([Reply::status(500).body("try later")]);
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(webhook_id(&got[0]), id);
    assert_eq!(webhook_id(&got[1]), id);
    assert_eq!(got[0].body, got[1].body, "a retry sends the same bytes");
    let row = h.wait_status(&id, "delivered").await;
    assert_eq!(row.get::<_, i32>("attempts"), 2);
    assert_eq!(row.get::<_, Option<String>>("last_error"), None);
    h.stop().await;
}

#[tokio::test]
async fn dead_after_max_attempts() {
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::status(500).body("broken"));
    let mut h = Harness::start(DeliveryConfig {
        max_attempts: 3,
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&id, "dead").await;
    assert_eq!(receiver.recorded().len(), 3);
    assert_eq!(row.get::<_, i32>("attempts"), 3);
    assert_eq!(row.get::<_, Option<i32>>("last_status"), Some(500));
    assert_eq!(
        row.get::<_, Option<String>>("last_response").as_deref(),
        Some("broken")
    );
    let error: String = row.get("last_error");
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert!(row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>("lease_until")
        .is_none());
    h.stop().await;
}

#[tokio::test]
async fn gone_disables_the_subscription() {
    let gone = Receiver::start().await;
    gone.respond_with(Reply::status(410));
    let other = Receiver::start().await;
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&gone.url()).await;
    let (other_hook, _) = h.subscription(&other.url()).await;

    let first = h.delivery(&hook, "pkg-1").await;
    let second = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&first, "dead").await;
    assert_eq!(row.get::<_, Option<i32>>("last_status"), Some(410));
    let error: String = row.get("last_error");
    assert!(error.contains("410"), "{error}");
    assert_eq!(h.subscription_state(&hook).await, "disabled");

    // Once another delivery has gone through, the worker has claimed again since the
    // 410; the disabled hook's next delivery must still be untouched.
    let marker = h.delivery(&other_hook, "pkg-2").await;
    h.wait_status(&marker, "delivered").await;
    let row = h.row(&second).await;
    assert_eq!(row.get::<_, String>("status"), "pending");
    assert_eq!(row.get::<_, i32>("attempts"), 0);
    assert_eq!(gone.recorded().len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let receiver = Receiver::start().await;
    let elsewhere = format!("http://{}/elsewhere", receiver.addr());
    receiver.respond_with(Reply::status(302).header("location", &elsewhere));
    let mut h = Harness::start(DeliveryConfig {
        max_attempts: 1,
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&id, "dead").await;
    let error: String = row.get("last_error");
    assert!(error.contains("redirect not followed"), "{error}");
    assert_eq!(row.get::<_, Option<i32>>("last_status"), Some(302));
    let got = receiver.recorded();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hook");
    h.stop().await;
}

#[tokio::test]
async fn retry_after_is_respected() {
    let receiver = Receiver::start().await;
    receiver.respond_in_turn([Reply::status(429).header("retry-after", "2")]);
    // The schedule alone would retry after at most 50 ms.
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    h.wait_status(&id, "delivered").await;
    h.stop().await;
}

#[tokio::test]
async fn one_dataset_goes_in_order_across_a_retry() {
    let receiver = Receiver::start().await;
    receiver.respond_in_turn([Reply::status(500)]);
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.delivery(&hook, "pkg-1").await);
    }

    let got = receiver.wait_for(4, WAIT).await;
    let order: Vec<&str> = got.iter().map(webhook_id).collect();
    assert_eq!(order, [&ids[0], &ids[0], &ids[1], &ids[2]]);
    for id in &ids {
        h.wait_status(id, "delivered").await;
    }
    h.stop().await;
}

#[tokio::test]
async fn a_hanging_receiver_does_not_hold_back_another_origin() {
    let hanging = Receiver::start().await;
    hanging.respond_with(Reply::ok().delay(Duration::from_secs(60)));
    let quick = Receiver::start().await;
    let h = Harness::start(DeliveryConfig {
        timeout: Duration::from_secs(30),
        concurrency: 4,
        per_destination_concurrency: 2,
        ..config()
    })
    .await;
    let (slow_hook, _) = h.subscription(&hanging.url()).await;
    let (quick_hook, _) = h.subscription(&quick.url()).await;

    // The hanging origin's rows come first and outnumber every cap.
    let mut slow = Vec::new();
    for n in 0..12 {
        slow.push(h.delivery(&slow_hook, &format!("slow-{n}")).await);
    }
    let mut fast = Vec::new();
    for n in 0..12 {
        fast.push(h.delivery(&quick_hook, &format!("fast-{n}")).await);
    }

    quick.wait_for(12, WAIT).await;
    for id in &fast {
        h.wait_status(id, "delivered").await;
    }
    // Meanwhile no hanging attempt has ended, and at most its cap were started.
    assert!(
        hanging.recorded().len() <= 2,
        "{}",
        hanging.recorded().len()
    );
    for id in &slow {
        let row = h.row(id).await;
        assert_eq!(row.get::<_, String>("status"), "pending");
        assert_eq!(row.get::<_, Option<String>>("last_error"), None);
    }
    // Attempts to the hanging receiver would take 30 s to end: abort, not stop.
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let receiver = Receiver::start().await;
    let mut h = Harness::start(DeliveryConfig {
        allow_private_targets: false,
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&id, "dead").await;
    let error: String = row.get("last_error");
    assert!(error.contains("loopback"), "{error}");
    assert_eq!(row.get::<_, Option<i32>>("last_status"), None);
    assert!(receiver.recorded().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_huge_response_is_not_read_past_the_cap() {
    const TEN_MB: usize = 10 * 1024 * 1024;
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::ok().filler(TEN_MB));
    let mut h = Harness::start(DeliveryConfig {
        response_keep_bytes: 1024,
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&id, "delivered").await;
    let kept: String = row.get("last_response");
    assert_eq!(kept.len(), 1024);
    // Socket buffers take a few megabytes before the client hangs up; not all ten.
    assert!(receiver.filler_written() < TEN_MB);
    eprintln!(
        "receiver handed {} of {TEN_MB} filler bytes to the socket",
        receiver.filler_written()
    );
    h.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_attempt_in_flight_finish() {
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::ok().delay(Duration::from_millis(500)));
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;
    receiver.wait_for(1, WAIT).await;
    assert_eq!(h.row(&id).await.get::<_, String>("status"), "pending");

    h.stop().await;

    let row = h.row(&id).await;
    assert_eq!(row.get::<_, String>("status"), "delivered");
}

#[tokio::test]
async fn two_workers_send_each_delivery_once_and_in_order() {
    let receiver = Receiver::start().await;
    receiver.respond_in_turn([Reply::status(500), Reply::status(503)]);
    let mut h = Harness::start(config()).await;
    let pool = ckan_webhooks::store::pool(&h.db.url, 4).unwrap();
    let second = tokio::spawn(deliver::run(
        pool,
        config(),
        SITE.to_string(),
        h.wake.clone(),
        h.shutdown.clone(),
    ));
    let (hook, _) = h.subscription(&receiver.url()).await;

    let mut per_dataset: Vec<Vec<String>> = vec![Vec::new(); 4];
    for _ in 0..10 {
        for (n, ids) in per_dataset.iter_mut().enumerate() {
            ids.push(h.delivery(&hook, &format!("pkg-{n}")).await);
        }
    }
    for ids in &per_dataset {
        for id in ids {
            h.wait_status(id, "delivered").await;
        }
    }

    // 40 deliveries plus the two failed first attempts, and no duplicate sends.
    let got = receiver.recorded();
    assert_eq!(got.len(), 42);
    for ids in &per_dataset {
        let mut sent: Vec<&str> = got
            .iter()
            .map(webhook_id)
            .filter(|id| ids.iter().any(|i| i == id))
            .collect();
        sent.dedup();
        assert_eq!(sent, *ids, "one dataset's deliveries in event order");
    }
    h.stop().await;
    tokio::time::timeout(WAIT, second)
        .await
        .expect("the second worker stops")
        .unwrap()
        .unwrap();
}
