//! Receivers on 127.0.0.1 that misbehave in the ways deliver.rs does not already cover:
//! a connection reset, a body that trickles (past the timeout, and within it), and
//! `Retry-After` as an HTTP date and on `503`.

use crate::support::raw::{Misbehaviour, RawReceiver};
use crate::support::receiver::{Receiver, Reply};
use crate::support::worker::{config, Harness, WAIT};
use chrono::{DateTime, Utc};
use ckan_webhooks::config::DeliveryConfig;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_reset_connection_is_a_logged_failure_and_retried() {
    let receiver = RawReceiver::start(Misbehaviour::Reset).await;
    let mut h = Harness::start(DeliveryConfig {
        max_attempts: 2,
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&id, "dead").await;
    assert_eq!(receiver.requests(), 2);
    assert_eq!(row.get::<_, Option<i32>>("last_status"), None);
    let log = h.wait_attempts(&id, 2).await;
    for attempt in &log {
        assert_eq!(attempt.get::<_, Option<i32>>("status"), None);
        let error: String = attempt.get("error");
        assert!(!error.is_empty());
    }
    let error: String = log[1].get("error");
    assert!(error.contains("gave up after 2 attempts"), "{error}");
    h.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_the_timeout_fails_the_attempt() {
    let receiver = RawReceiver::start(Misbehaviour::Trickle {
        length: 100,
        every: Duration::from_millis(200),
    })
    .await;
    let mut h = Harness::start(DeliveryConfig {
        max_attempts: 1,
        timeout: Duration::from_secs(1),
        ..config()
    })
    .await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&id, "dead").await;
    let error: String = row.get("last_error");
    assert!(
        error.contains("no complete response within 1000 ms"),
        "{error}"
    );
    let log = h.attempts(&id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].get::<_, Option<i32>>("status"), None);
    h.stop().await;
}

#[tokio::test]
async fn a_slow_body_within_the_timeout_is_read_and_kept() {
    let receiver = RawReceiver::start(Misbehaviour::Trickle {
        length: 5,
        every: Duration::from_millis(100),
    })
    .await;
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let row = h.wait_status(&id, "delivered").await;
    assert_eq!(
        row.get::<_, Option<String>>("last_response").as_deref(),
        Some("xxxxx")
    );
    let latency: i32 = row.get("last_latency_ms");
    assert!(latency >= 400, "{latency} ms");
    h.stop().await;
}

/// Sends one delivery to a receiver that first answers `first`, and returns when the
/// first attempt and the retry arrived (wall clock).
async fn retried_at(first: Reply) -> (DateTime<Utc>, DateTime<Utc>) {
    let receiver = Receiver::start().await;
    receiver.respond_in_turn([first]);
    let mut h = Harness::start(config()).await;
    let (hook, _) = h.subscription(&receiver.url()).await;

    let id = h.delivery(&hook, "pkg-1").await;

    let got = receiver.wait_for(2, WAIT).await;
    let (now, clock) = (Utc::now(), Instant::now());
    let wall = |at: Instant| now - chrono::Duration::from_std(clock - at).unwrap();
    h.wait_status(&id, "delivered").await;
    h.stop().await;
    (wall(got[0].at), wall(got[1].at))
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_respected() {
    // Four seconds ahead in IMF-fixdate, which has whole seconds.
    let at = Utc::now() + chrono::Duration::seconds(4);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let not_before: DateTime<Utc> = DateTime::parse_from_rfc2822(&date).unwrap().into();

    let (_, retry) = retried_at(Reply::status(429).header("retry-after", &date)).await;

    // The retry comes no earlier than the date the receiver named.
    let early = not_before - retry;
    assert!(
        early <= chrono::Duration::milliseconds(50),
        "retried {early:?} before {date}"
    );
}

#[tokio::test]
async fn retry_after_on_503_is_respected() {
    let (first, retry) = retried_at(Reply::status(503).header("retry-after", "2")).await;
    let gap = retry - first;
    assert!(
        gap >= chrono::Duration::milliseconds(1900),
        "retried after {gap:?}"
    );
}
