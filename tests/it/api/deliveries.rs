//! `webhook_deliveries`: newest first, each delivery with its attempt log; cursor and
//! offset pages that together hold every delivery exactly once; status and dataset
//! filters; GET with a query string; another user's or a deleted hook is NotFound.

use super::{create, help, hook};
use crate::support::api::ApiServer;
use crate::support::ckan_users;
use crate::support::db::TestDb;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// Stores an event and one delivery of it to `hook`, as the watcher would.
pub(super) async fn seed_delivery(
    client: &tokio_postgres::Client,
    hook: &str,
    id: &str,
    dataset: &str,
    status: &str,
    created_at: DateTime<Utc>,
) {
    let event = format!("ev-{id}");
    client
        .execute(
            "INSERT INTO ckan_webhooks.event (id, txid, topic, dataset_id, entity, occurred_at) \
             VALUES ($1, pg_current_xact_id(), 'dataset/update', $2, '{}', $3)",
            &[&event, &dataset, &created_at],
        )
        .await
        .unwrap();
    let delivered_at = (status == "delivered").then_some(created_at);
    client
        .execute(
            "INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id, \
             status, attempts, created_at, next_attempt_at, delivered_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7)",
            &[
                &id,
                &event,
                &hook,
                &dataset,
                &status,
                &created_at,
                &delivered_at,
            ],
        )
        .await
        .unwrap();
}

/// Logs one attempt of `delivery`, as the delivery worker would.
pub(super) async fn seed_attempt(
    client: &tokio_postgres::Client,
    hook: &str,
    delivery: &str,
    attempt: i32,
    status: Option<i32>,
    error: Option<&str>,
) {
    client
        .execute(
            "INSERT INTO ckan_webhooks.attempt (delivery_id, subscription_id, attempt, \
             attempted_at, status, latency_ms, error, response_head) \
             VALUES ($1, $2, $3::int4, now() + $3::int4 * interval '1 second', $4, 12, $5, 'head')",
            &[&delivery, &hook, &attempt, &status, &error],
        )
        .await
        .unwrap();
}

fn ids(page: &Value) -> Vec<String> {
    page["result"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|delivery| delivery["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn lists_newest_first_with_each_attempt_log() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;

    let now = Utc::now();
    seed_delivery(&client, &id, "old", "ds1", "dead", now - Duration::hours(2)).await;
    seed_delivery(
        &client,
        &id,
        "mid",
        "ds1",
        "delivered",
        now - Duration::hours(1),
    )
    .await;
    seed_delivery(&client, &id, "new", "ds2", "pending", now).await;
    seed_attempt(&client, &id, "old", 1, Some(500), Some("HTTP 500")).await;
    seed_attempt(&client, &id, "old", 2, None, Some("connect timeout")).await;
    seed_attempt(&client, &id, "mid", 1, Some(204), None).await;

    let (status, page) = api
        .call("webhook_deliveries", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["help"], json!(help("webhook_deliveries")));
    assert_eq!(ids(&page), vec!["new", "mid", "old"]);
    assert_eq!(page["result"]["next_cursor"], Value::Null);

    let results = page["result"]["results"].as_array().unwrap();
    let new = &results[0];
    assert_eq!(new["event_id"], json!("ev-new"));
    assert_eq!(new["topic"], json!("dataset/update"));
    assert_eq!(new["dataset_id"], json!("ds2"));
    assert_eq!(new["status"], json!("pending"));
    assert_eq!(new["attempts"], json!(1));
    assert!(new["next_attempt_at"].is_string());
    assert_eq!(new["delivered_at"], Value::Null);
    assert_eq!(new["attempt_log"], json!([]));

    let mid = &results[1];
    assert_eq!(mid["next_attempt_at"], Value::Null);
    assert!(mid["delivered_at"].is_string());
    assert!(chrono::NaiveDateTime::parse_from_str(
        mid["created"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S%.6f"
    )
    .is_ok());

    // Attempts oldest first, each with its outcome and the response's first bytes.
    let log = results[2]["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["attempt"], json!(1));
    assert_eq!(log[0]["http_status"], json!(500));
    assert_eq!(log[0]["error"], json!("HTTP 500"));
    assert_eq!(log[0]["latency_ms"], json!(12));
    assert_eq!(log[0]["response_head"], json!("head"));
    assert!(log[0]["attempted_at"].is_string());
    assert_eq!(log[1]["attempt"], json!(2));
    assert_eq!(log[1]["http_status"], Value::Null);
    assert_eq!(log[1]["error"], json!("connect timeout"));

    // Side-effect free, so GET with a query string works too, as in CKAN.
    let path = format!("/api/3/action/webhook_deliveries?id={id}&limit=1");
    let (status, page) = api
        .send("GET", &path, &[("authorization", alice.token.clone())], "")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), vec!["new"]);
    assert!(page["result"]["next_cursor"].is_string());
    api.stop().await;
}

#[tokio::test]
async fn cursor_and_offset_pages_hold_every_delivery_exactly_once() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;

    // 23 deliveries in four batches that share a creation time, as one derivation
    // transaction's deliveries do: the order must still be total.
    let base = Utc::now();
    let mut expected = Vec::new();
    for n in 0..23 {
        let created = base - Duration::minutes(10 - (n / 6) as i64);
        let delivery = format!("d{n:02}");
        seed_delivery(&client, &id, &delivery, "ds", "delivered", created).await;
        expected.push(delivery);
    }
    // Newest batch first; within a batch, last created first.
    expected.reverse();

    let mut by_cursor = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..10 {
        let mut body = json!({"id": id, "limit": 5});
        if !cursor.is_null() {
            body["cursor"] = cursor.clone();
        }
        let (status, page) = api
            .call("webhook_deliveries", Some(&alice.token), body)
            .await;
        assert_eq!(status, 200, "{page}");
        by_cursor.extend(ids(&page));
        cursor = page["result"]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(by_cursor, expected);

    // A delivery created while paging does not shift the pages already cut.
    let (_, first) = api
        .call(
            "webhook_deliveries",
            Some(&alice.token),
            json!({"id": id, "limit": 10}),
        )
        .await;
    seed_delivery(&client, &id, "late", "ds", "pending", Utc::now()).await;
    let (_, second) = api
        .call(
            "webhook_deliveries",
            Some(&alice.token),
            json!({"id": id, "limit": 10, "cursor": first["result"]["next_cursor"]}),
        )
        .await;
    assert_eq!(ids(&second), expected[10..20].to_vec());

    let mut by_offset = Vec::new();
    for offset in (0..30).step_by(7) {
        let (_, page) = api
            .call(
                "webhook_deliveries",
                Some(&alice.token),
                json!({"id": id, "limit": 7, "offset": offset}),
            )
            .await;
        by_offset.extend(ids(&page));
    }
    let mut with_late = vec!["late".to_string()];
    with_late.extend(expected);
    assert_eq!(by_offset, with_late);
    api.stop().await;
}

#[tokio::test]
async fn filters_by_status_and_by_dataset_id_or_name() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    client
        .batch_execute(
            "INSERT INTO package (id, name, type, private, state) \
             VALUES ('pkg-1', 'river-levels', 'dataset', false, 'active')",
        )
        .await
        .unwrap();

    let now = Utc::now();
    seed_delivery(
        &client,
        &id,
        "a",
        "pkg-1",
        "dead",
        now - Duration::seconds(3),
    )
    .await;
    seed_delivery(
        &client,
        &id,
        "b",
        "pkg-1",
        "delivered",
        now - Duration::seconds(2),
    )
    .await;
    seed_delivery(
        &client,
        &id,
        "c",
        "pkg-2",
        "dead",
        now - Duration::seconds(1),
    )
    .await;

    for (filter, expected) in [
        (json!({"status": "dead"}), vec!["c", "a"]),
        (json!({"status": "cancelled"}), vec![]),
        (json!({"dataset": "pkg-1"}), vec!["b", "a"]),
        (json!({"dataset": "river-levels"}), vec!["b", "a"]),
        (
            json!({"dataset": "river-levels", "status": "dead"}),
            vec!["a"],
        ),
        (json!({"dataset": "no-such-dataset"}), vec![]),
    ] {
        let mut body = filter.clone();
        body["id"] = json!(id);
        let (status, page) = api
            .call("webhook_deliveries", Some(&alice.token), body)
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(ids(&page), expected, "{filter}");
    }
    api.stop().await;
}

#[tokio::test]
async fn bad_parameters_name_their_fields() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;

    for (body, field) in [
        (json!({}), "id"),
        (json!({"id": id, "limit": 501}), "limit"),
        (json!({"id": id, "limit": "ten"}), "limit"),
        (json!({"id": id, "offset": -1}), "offset"),
        (json!({"id": id, "status": "sent"}), "status"),
        (json!({"id": id, "cursor": "not-a-cursor"}), "cursor"),
        (json!({"id": id, "cursor": "1.1", "offset": 5}), "cursor"),
        (json!({"id": id, "page": 2}), "page"),
    ] {
        let (status, response) = api
            .call("webhook_deliveries", Some(&alice.token), body.clone())
            .await;
        assert_eq!(status, 409, "{body}: {response}");
        assert_eq!(response["error"]["__type"], json!("Validation Error"));
        let error = response["error"].as_object().unwrap();
        assert_eq!(error.len(), 2, "{body}: {response}");
        assert!(error.contains_key(field), "{body}: {response}");
    }
    api.stop().await;
}

#[tokio::test]
async fn other_users_and_deleted_hooks_are_not_found() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let mallory = ckan_users::user(&client, "mallory", false).await;
    let root = ckan_users::user(&client, "root", true).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    seed_delivery(&client, &id, "d1", "ds", "delivered", Utc::now()).await;

    let unknown = "0123456789abcdef0123456789abcdef";
    let (status, for_unknown) = api
        .call(
            "webhook_deliveries",
            Some(&mallory.token),
            json!({"id": unknown}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, for_alices) = api
        .call(
            "webhook_deliveries",
            Some(&mallory.token),
            json!({"id": id}),
        )
        .await;
    assert_eq!((status, &for_alices), (404, &for_unknown));

    // A sysadmin sees them; after deletion nobody does.
    let (status, page) = api
        .call("webhook_deliveries", Some(&root.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), vec!["d1"]);
    let (status, _) = api
        .call("webhook_delete", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    for user in [&alice, &root] {
        let (status, body) = api
            .call("webhook_deliveries", Some(&user.token), json!({"id": id}))
            .await;
        assert_eq!((status, &body), (404, &for_unknown));
    }
    api.stop().await;
}
