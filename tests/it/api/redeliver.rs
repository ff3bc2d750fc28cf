//! `webhook_redeliver`: one delivery, a window, or a dataset; the ids stay, the rows go
//! back to pending and due with no attempts and no lease, pending rows already due are
//! left alone; wide windows and disabled hooks are refused; another user's hook and
//! delivery ids answer like unknown ones; and end to end, the receiver gets the same
//! `webhook-id` a second time.

use super::deliveries::seed_delivery;
use super::{create, hook};
use crate::support::api::ApiServer;
use crate::support::ckan_users;
use crate::support::db::TestDb;
use crate::support::receiver::Receiver;
use crate::support::service::{app_developer, TestService};
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use std::time::Duration as StdDuration;

/// Every delivery of `hook` as (id, status, attempts, leased, due now, delivered).
async fn rows(
    client: &tokio_postgres::Client,
    hook: &str,
) -> Vec<(String, String, i32, bool, bool, bool)> {
    client
        .query(
            "SELECT id, status, attempts, lease_until IS NOT NULL, next_attempt_at <= now(), \
             delivered_at IS NOT NULL \
             FROM ckan_webhooks.delivery WHERE subscription_id = $1 ORDER BY id",
            &[&hook],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

fn row(
    id: &str,
    status: &str,
    attempts: i32,
    leased: bool,
    due: bool,
    delivered: bool,
) -> (String, String, i32, bool, bool, bool) {
    (id.into(), status.into(), attempts, leased, due, delivered)
}

async fn redeliver(api: &ApiServer, token: &str, body: Value) -> (u16, Value) {
    api.call("webhook_redeliver", Some(token), body).await
}

#[tokio::test]
async fn one_delivery_goes_back_in_line_under_its_id() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;

    let now = Utc::now();
    seed_delivery(&client, &id, "delivered", "ds1", "delivered", now).await;
    seed_delivery(&client, &id, "dead", "ds2", "dead", now).await;
    seed_delivery(&client, &id, "due", "ds3", "pending", now).await;
    seed_delivery(&client, &id, "later", "ds4", "pending", now).await;
    // One pending row waits for its backoff; the due one is in flight under a lease.
    client
        .batch_execute(
            "UPDATE ckan_webhooks.delivery SET next_attempt_at = now() + interval '1 hour', \
             attempts = 4 WHERE id = 'later'; \
             UPDATE ckan_webhooks.delivery SET lease_until = now() + interval '30 seconds' \
             WHERE id = 'due';",
        )
        .await
        .unwrap();

    for (delivery, queued) in [("delivered", 1), ("dead", 1), ("due", 0), ("later", 1)] {
        let (status, body) = redeliver(&api, &alice.token, json!({"delivery_id": delivery})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["result"], json!(queued), "{delivery}");
    }
    assert_eq!(
        rows(&client, &id).await,
        vec![
            row("dead", "pending", 0, false, true, false),
            row("delivered", "pending", 0, false, true, false),
            // Left alone: already due, and its attempt in flight keeps its lease.
            row("due", "pending", 1, true, true, false),
            row("later", "pending", 0, false, true, false),
        ]
    );

    // Queued again at once is a no-op: they are pending and due.
    let (_, body) = redeliver(&api, &alice.token, json!({"delivery_id": "dead"})).await;
    assert_eq!(body["result"], json!(0));
    api.stop().await;
}

#[tokio::test]
async fn a_window_or_a_dataset_chooses_many() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    let other = create(&api, &alice.token, hook("dataset/*")).await;
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
        "w1",
        "pkg-1",
        "delivered",
        now - Duration::days(3),
    )
    .await;
    seed_delivery(&client, &id, "w2", "pkg-2", "dead", now - Duration::days(2)).await;
    seed_delivery(
        &client,
        &id,
        "w3",
        "pkg-1",
        "delivered",
        now - Duration::hours(1),
    )
    .await;
    seed_delivery(
        &client,
        &other,
        "x1",
        "pkg-1",
        "delivered",
        now - Duration::days(2),
    )
    .await;

    // Since is inclusive, until exclusive; another hook's deliveries are not touched.
    let since = (now - Duration::days(3)).to_rfc3339();
    let until = (now - Duration::days(1)).to_rfc3339();
    let (status, body) = redeliver(
        &api,
        &alice.token,
        json!({"id": id, "since": since, "until": until}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(2));
    let statuses: Vec<(String, String)> = rows(&client, &id)
        .await
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("w1".into(), "pending".into()),
            ("w2".into(), "pending".into()),
            ("w3".into(), "delivered".into()),
        ]
    );
    assert_eq!(rows(&client, &other).await[0].1, "delivered");

    // By dataset name: w1 is already pending and due, so only w3 is queued.
    let (status, body) = redeliver(
        &api,
        &alice.token,
        json!({"id": id, "dataset": "river-levels"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(1));
    let (_, body) = redeliver(&api, &alice.token, json!({"id": other, "dataset": "pkg-1"})).await;
    assert_eq!(body["result"], json!(1));
    let (_, body) = redeliver(&api, &alice.token, json!({"id": id, "dataset": "nothing"})).await;
    assert_eq!(body["result"], json!(0));
    api.stop().await;
}

#[tokio::test]
async fn bad_forms_wide_windows_and_disabled_hooks_are_refused() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    seed_delivery(&client, &id, "d1", "ds", "dead", Utc::now()).await;

    let since = "2026-01-01T00:00:00Z";
    for (body, field) in [
        (json!({}), "id"),
        (json!({"id": id}), "since"),
        (json!({"delivery_id": "d1", "id": id}), "id"),
        (json!({"delivery_id": "d1", "dataset": "ds"}), "dataset"),
        (
            json!({"id": id, "dataset": "ds", "since": since}),
            "dataset",
        ),
        (json!({"id": id, "since": since}), "until"),
        (json!({"id": id, "until": since}), "since"),
        (
            json!({"id": id, "since": since, "until": "2025-12-31T00:00:00Z"}),
            "until",
        ),
        (
            json!({"id": id, "since": since, "until": "2026-02-01T00:00:01Z"}),
            "until",
        ),
        (
            json!({"id": id, "since": "last week", "until": since}),
            "since",
        ),
        (json!({"delivery_id": "d1", "all": true}), "all"),
    ] {
        let (status, response) = redeliver(&api, &alice.token, body.clone()).await;
        assert_eq!(status, 409, "{body}: {response}");
        let error = response["error"].as_object().unwrap();
        assert_eq!(error["__type"], json!("Validation Error"));
        assert!(error.contains_key(field), "{body}: {response}");
    }
    // Exactly 31 days is allowed.
    let (status, _) = redeliver(
        &api,
        &alice.token,
        json!({"id": id, "since": since, "until": "2026-02-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 200);

    // A disabled hook must be re-enabled first, in either form.
    client
        .execute(
            "UPDATE ckan_webhooks.subscription SET state = 'disabled' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (status, response) = redeliver(&api, &alice.token, json!({"delivery_id": "d1"})).await;
    assert_eq!(status, 409);
    assert!(response["error"]["delivery_id"][0]
        .as_str()
        .unwrap()
        .contains("disabled"));
    let (status, response) =
        redeliver(&api, &alice.token, json!({"id": id, "dataset": "ds"})).await;
    assert_eq!(status, 409);
    assert!(response["error"]["id"].is_array());
    assert_eq!(rows(&client, &id).await[0].1, "dead");
    api.stop().await;
}

#[tokio::test]
async fn other_users_and_deleted_hooks_and_deliveries_are_not_found() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let mallory = ckan_users::user(&client, "mallory", false).await;
    let root = ckan_users::user(&client, "root", true).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    seed_delivery(&client, &id, "d1", "ds", "dead", Utc::now()).await;

    let (status, unknown_delivery) = redeliver(
        &api,
        &mallory.token,
        json!({"delivery_id": "no-such-delivery"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        unknown_delivery["error"],
        json!({"__type": "Not Found Error", "message": "Not found: delivery not found"})
    );
    let (status, alices_delivery) =
        redeliver(&api, &mallory.token, json!({"delivery_id": "d1"})).await;
    assert_eq!((status, &alices_delivery), (404, &unknown_delivery));

    let unknown = "0123456789abcdef0123456789abcdef";
    let (status, unknown_hook) = redeliver(
        &api,
        &mallory.token,
        json!({"id": unknown, "dataset": "ds"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, alices_hook) =
        redeliver(&api, &mallory.token, json!({"id": id, "dataset": "ds"})).await;
    assert_eq!((status, &alices_hook), (404, &unknown_hook));
    assert_eq!(rows(&client, &id).await[0].1, "dead");

    // A sysadmin may; once the hook is deleted, nobody may.
    let (status, body) = redeliver(&api, &root.token, json!({"delivery_id": "d1"})).await;
    assert_eq!((status, &body["result"]), (200, &json!(1)));
    api.call("webhook_delete", Some(&alice.token), json!({"id": id}))
        .await;
    for user in [&alice, &root] {
        let (status, body) = redeliver(&api, &user.token, json!({"delivery_id": "d1"})).await;
        assert_eq!((status, &body), (404, &unknown_delivery));
        let (status, body) = redeliver(&api, &user.token, json!({"id": id, "dataset": "ds"})).await;
        assert_eq!((status, &body), (404, &unknown_hook));
    }
    api.stop().await;
}

#[tokio::test]
async fn the_receiver_gets_the_same_webhook_id_again() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    let service = TestService::start(&db).await;
    let developer = app_developer(&db).await;
    let (hook_id, _) = service
        .subscribe(&developer, "dataset/create", &receiver.url())
        .await;

    client
        .batch_execute(
            "INSERT INTO package (id, name, type, private, state) \
             VALUES ('replayed', 'replayed', 'dataset', false, 'active')",
        )
        .await
        .unwrap();
    let first = receiver.wait_for(1, StdDuration::from_secs(20)).await;
    let webhook_id = first[0].header("webhook-id").unwrap().to_string();

    // The receiver has it; wait until the service has recorded that too.
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    loop {
        let (_, page) = service
            .call("webhook_deliveries", &developer, json!({"id": hook_id}))
            .await;
        let delivery = &page["result"]["results"][0];
        if delivery["status"] == json!("delivered") {
            assert_eq!(delivery["id"], json!(webhook_id));
            assert_eq!(delivery["dataset_id"], json!("replayed"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }

    let (status, body) = service
        .call(
            "webhook_redeliver",
            &developer,
            json!({"delivery_id": webhook_id}),
        )
        .await;
    assert_eq!((status, &body["result"]), (200, &json!(1)), "{body}");
    let got = receiver.wait_for(2, StdDuration::from_secs(20)).await;
    assert_eq!(got[1].header("webhook-id"), Some(webhook_id.as_str()));
    assert_eq!(got[1].json()["entity"]["id"], json!("replayed"));
    assert_eq!(got[0].json(), got[1].json());
    service.stop().await;
}
