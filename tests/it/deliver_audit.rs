//! What delivery leaves behind and how it treats a subscription: the attempt log, both
//! signatures during a secret rotation, a subscription's own rate, and disabling (after a
//! `410 Gone`, or after failing for too long) with its pending deliveries kept.

use crate::support::db::TestDb;
use crate::support::receiver::{Receiver, Recorded, Reply};
use crate::support::service::{app_developer, TestService};
use crate::support::worker::{config, webhook_id, Harness, WAIT};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use ckan_webhooks::config::DeliveryConfig;
use ckan_webhooks::sign;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, Instant};

/// The Standard Webhooks verification algorithm as the specification publishes it,
/// written independently of `ckan_webhooks::sign`: the key is the base64 after `whsec_`,
/// the signed content `id.timestamp.body`, the header a space-separated list of
/// `version,signature` where only `v1` counts, the timestamp within five minutes.
fn verify(secret: &str, request: &Recorded) -> bool {
    let id = request.header("webhook-id").unwrap();
    let timestamp = request.header("webhook-timestamp").unwrap();
    let header = request.header("webhook-signature").unwrap();

    let now = Utc::now().timestamp();
    let ts: i64 = timestamp.parse().unwrap();
    if (now - ts).abs() > 300 {
        return false;
    }

    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(&request.body);
    mac.update(&content);
    let expected = mac.finalize().into_bytes();

    header.split(' ').any(|entry| {
        let Some((version, signature)) = entry.split_once(',') else {
            return false;
        };
        let Ok(given) = STANDARD.decode(signature) else {
            return false;
        };
        // Constant-time comparison, as the reference libraries do.
        version == "v1"
            && given.len() == expected.len()
            && given
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[tokio::test]
async fn every_attempt_is_logged_with_its_outcome() {
    let receiver = Receiver::start().await;
    receiver.respond_in_turn([Reply::status(500).body("try later")]);
    receiver.respond_with(Reply::ok().body("thanks"));
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    h.wait_status(&id, "delivered").await;
    let log = h.wait_attempts(&id, 2).await;
    assert_eq!(log.len(), 2);
    let numbers: Vec<i32> = log.iter().map(|r| r.get("attempt")).collect();
    assert_eq!(numbers, [1, 2]);
    for row in &log {
        assert_eq!(row.get::<_, String>("subscription_id"), hook);
        assert!(row.get::<_, Option<i32>>("latency_ms").is_some());
    }
    assert_eq!(log[0].get::<_, Option<i32>>("status"), Some(500));
    assert_eq!(
        log[0].get::<_, Option<String>>("response_head").as_deref(),
        Some("try later")
    );
    let error: String = log[0].get("error");
    assert!(error.contains("500"), "{error}");
    assert_eq!(log[1].get::<_, Option<i32>>("status"), Some(200));
    assert_eq!(log[1].get::<_, Option<String>>("error"), None);
    assert_eq!(
        log[1].get::<_, Option<String>>("response_head").as_deref(),
        Some("thanks")
    );
    let first: DateTime<Utc> = log[0].get("attempted_at");
    let second: DateTime<Utc> = log[1].get("attempted_at");
    assert!(first < second);

    // The success ended the failure streak the first attempt had started.
    let sub = h.subscription_row(&hook).await;
    assert_eq!(sub.get::<_, Option<DateTime<Utc>>>("failing_since"), None);
    h.stop().await;
}

#[tokio::test]
async fn failing_forever_ends_dead_and_visible() {
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::status(500).body("still broken"));
    let mut h = Harness::start(DeliveryConfig {
        max_attempts: 4,
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;
    let started = Utc::now();

    let id = h.delivery(&hook, "pkg-1").await;

    h.wait_status(&id, "dead").await;
    let log = h.wait_attempts(&id, 4).await;
    assert_eq!(log.len(), 4);
    assert!(log
        .iter()
        .all(|r| r.get::<_, Option<i32>>("status") == Some(500)));
    let last_error: String = log[3].get("error");
    assert!(
        last_error.contains("gave up after 4 attempts"),
        "{last_error}"
    );
    assert_eq!(receiver.recorded().len(), 4);

    // The subscription is failing since the first attempt, but far from disabled.
    let sub = h.subscription_row(&hook).await;
    let since: DateTime<Utc> = sub.get("failing_since");
    assert!(since >= started - chrono::Duration::seconds(1));
    assert_eq!(sub.get::<_, String>("state"), "active");
    h.stop().await;
}

#[tokio::test]
async fn both_signatures_during_a_rotation_then_only_the_new_one() {
    let receiver = Receiver::start().await;
    let mut h = Harness::start(config()).await;
    let (hook, new_secret) = h.subscription(&receiver.url()).await;
    let old_secret = sign::generate_secret();
    h.client
        .execute(
            "UPDATE ckan_webhooks.subscription
             SET previous_secret = $2, previous_secret_until = now() + interval '1 hour'
             WHERE id = $1",
            &[&hook, &old_secret],
        )
        .await
        .unwrap();

    let during = h.delivery(&hook, "pkg-1").await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(webhook_id(&got[0]), during);
    let header = got[0].header("webhook-signature").unwrap();
    assert_eq!(header.split(' ').count(), 2, "{header}");
    assert!(verify(&new_secret, &got[0]), "the new secret verifies");
    assert!(verify(&old_secret, &got[0]), "the old secret verifies");
    assert!(!verify(&sign::generate_secret(), &got[0]));
    h.wait_status(&during, "delivered").await;

    // After the overlap, only the new secret signs.
    h.client
        .execute(
            "UPDATE ckan_webhooks.subscription
             SET previous_secret_until = now() - interval '1 second' WHERE id = $1",
            &[&hook],
        )
        .await
        .unwrap();
    let after = h.delivery(&hook, "pkg-1").await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(webhook_id(&got[1]), after);
    let header = got[1].header("webhook-signature").unwrap();
    assert_eq!(header.split(' ').count(), 1, "{header}");
    assert!(verify(&new_secret, &got[1]));
    assert!(!verify(&old_secret, &got[1]));
    h.stop().await;
}

#[tokio::test]
async fn a_subscription_rate_overrides_the_destination_default() {
    let receiver = Receiver::start().await;
    let mut h = Harness::start(DeliveryConfig {
        rate_per_destination: 1000,
        per_destination_concurrency: 8,
        ..config()
    })
    .await;
    let (slow_hook, _) = h.subscription(&receiver.url()).await;
    let (fast_hook, _) = h.subscription(&receiver.url()).await;
    h.client
        .execute(
            "UPDATE ckan_webhooks.subscription SET rate_per_second = 2 WHERE id = $1",
            &[&slow_hook],
        )
        .await
        .unwrap();

    let mut slow = Vec::new();
    let mut fast = Vec::new();
    for n in 0..5 {
        slow.push(h.delivery(&slow_hook, &format!("pkg-{n}")).await);
        fast.push(h.delivery(&fast_hook, &format!("pkg-{n}")).await);
    }
    let got = receiver.wait_for(10, WAIT).await;

    let arrivals = |ids: &[String]| -> Vec<Instant> {
        got.iter()
            .filter(|r| ids.iter().any(|id| id == webhook_id(r)))
            .map(|r| r.at)
            .collect()
    };
    let slow_at = arrivals(&slow);
    let fast_at = arrivals(&fast);
    assert_eq!((slow_at.len(), fast_at.len()), (5, 5));
    // Two a second with a burst of two: the fifth comes at least 1.5 s after the first.
    let span = slow_at[4] - slow_at[0];
    assert!(span >= Duration::from_millis(1400), "{span:?}");
    // The other hook on the same origin is not held to that rate.
    assert!(fast_at.iter().all(|at| *at < slow_at[4]));
    h.stop().await;
}

#[tokio::test]
async fn failing_for_too_long_disables_and_keeps_pending_deliveries() {
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::status(500));
    let other = Receiver::start().await;
    let mut h = Harness::start(DeliveryConfig {
        disable_after: Duration::from_secs(72 * 3600),
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;
    let (other_hook, _) = h.subscription(&other.url()).await;
    // Seventy-three hours of failures already behind it: the injected past.
    h.client
        .execute(
            "UPDATE ckan_webhooks.subscription
             SET failing_since = now() - interval '73 hours' WHERE id = $1",
            &[&hook],
        )
        .await
        .unwrap();

    let first = h.delivery(&hook, "pkg-1").await;
    let second = h.delivery(&hook, "pkg-2").await;
    h.wait_attempts(&first, 1).await;
    let sub = h.subscription_row(&hook).await;
    assert_eq!(sub.get::<_, String>("state"), "disabled");
    assert!(sub.get::<_, Option<DateTime<Utc>>>("disabled_at").is_some());
    let reason: String = sub.get("disabled_reason");
    assert!(reason.contains("failed since"), "{reason}");

    // Once another hook's delivery has gone through, the worker has claimed since; the
    // disabled hook's deliveries are still pending, and nothing more was sent to it.
    let marker = h.delivery(&other_hook, "pkg-3").await;
    h.wait_status(&marker, "delivered").await;
    assert_eq!(h.row(&first).await.get::<_, String>("status"), "pending");
    assert_eq!(h.row(&second).await.get::<_, String>("status"), "pending");
    let sent = receiver.recorded().len();
    assert!(sent <= 2, "{sent} attempts after disabling");

    // Re-enabling resumes them.
    receiver.respond_with(Reply::ok());
    h.client
        .execute(
            "UPDATE ckan_webhooks.subscription
             SET state = 'active', disabled_at = NULL, disabled_reason = NULL,
                 failing_since = NULL, updated_at = now()
             WHERE id = $1",
            &[&hook],
        )
        .await
        .unwrap();
    h.wake.notify_one();
    h.wait_status(&first, "delivered").await;
    h.wait_status(&second, "delivered").await;
    h.stop().await;
}

#[tokio::test]
async fn a_recent_failure_streak_does_not_disable() {
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::status(503));
    let mut h = Harness::start(DeliveryConfig {
        max_attempts: 1,
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;
    h.client
        .execute(
            "UPDATE ckan_webhooks.subscription
             SET failing_since = now() - interval '71 hours' WHERE id = $1",
            &[&hook],
        )
        .await
        .unwrap();

    let id = h.delivery(&hook, "pkg-1").await;

    h.wait_status(&id, "dead").await;
    let sub = h.subscription_row(&hook).await;
    assert_eq!(sub.get::<_, String>("state"), "active");
    assert_eq!(sub.get::<_, Option<String>>("disabled_reason"), None);
    h.stop().await;
}

#[tokio::test]
async fn gone_records_when_and_why_the_subscription_was_disabled() {
    let receiver = Receiver::start().await;
    receiver.respond_with(Reply::status(410).body("unsubscribed"));
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    h.wait_status(&id, "dead").await;
    let sub = h.subscription_row(&hook).await;
    assert_eq!(sub.get::<_, String>("state"), "disabled");
    assert!(sub.get::<_, Option<DateTime<Utc>>>("disabled_at").is_some());
    let reason: String = sub.get("disabled_reason");
    assert!(reason.contains("410"), "{reason}");
    let log = h.attempts(&id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].get::<_, Option<i32>>("status"), Some(410));
    assert_eq!(
        log[0].get::<_, Option<String>>("response_head").as_deref(),
        Some("unsubscribed")
    );
    h.stop().await;
}

#[tokio::test]
async fn disabled_subscriptions_collect_no_new_deliveries() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    let service = TestService::start(&db).await;
    let dev = app_developer(&db).await;
    let (active, _) = service.subscribe(&dev, "*", &receiver.url()).await;
    let (disabled, _) = service
        .subscribe(&dev, "dataset/create", &receiver.url())
        .await;
    client
        .execute(
            "UPDATE ckan_webhooks.subscription
             SET state = 'disabled', disabled_at = now(), disabled_reason = 'test'
             WHERE id = $1",
            &[&disabled],
        )
        .await
        .unwrap();

    client
        .batch_execute(
            "INSERT INTO package (id, name, title, type, private, state, metadata_modified)
             VALUES ('p1', 'air', 'Air', 'dataset', false, 'active', now())",
        )
        .await
        .unwrap();

    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["webhook_id"], active.as_str());
    let count = |hook: String| {
        let client = &client;
        async move {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM ckan_webhooks.delivery WHERE subscription_id = $1",
                    &[&hook],
                )
                .await
                .unwrap()
                .get(0);
            n
        }
    };
    assert_eq!(count(active).await, 1);
    assert_eq!(count(disabled).await, 0);
    service.stop().await;
}
