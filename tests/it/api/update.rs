//! `webhook_update`: fields checked as create checks them, the answer is what
//! `webhook_show` shows, secret rotation keeps the previous secret in the database for
//! the overlap only, re-enabling clears the disabling bookkeeping, rates are set and
//! cleared, and another user's or a deleted hook is NotFound.

use super::{create, help, hook};
use crate::support::api::ApiServer;
use crate::support::ckan_users;
use crate::support::db::TestDb;
use serde_json::{json, Value};

async fn show(api: &ApiServer, token: &str, id: &str) -> Value {
    let (status, shown) = api
        .call("webhook_show", Some(token), json!({"id": id}))
        .await;
    assert_eq!(status, 200, "{shown}");
    shown["result"].clone()
}

/// The secret columns as stored, with the overlap's remaining length in hours.
async fn secrets(
    client: &tokio_postgres::Client,
    id: &str,
) -> (String, Option<String>, Option<f64>) {
    let row = client
        .query_one(
            "SELECT secret, previous_secret, \
             extract(epoch FROM previous_secret_until - now())::float8 / 3600 \
             FROM ckan_webhooks.subscription WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn changes_fields_and_answers_the_show_dict() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("dataset/create")).await;
    let before = show(&api, &alice.token, &id).await;
    assert_eq!(before["rate_per_second"], Value::Null);
    assert_eq!(before["previous_secret_until"], Value::Null);
    assert_eq!(before["failing_since"], Value::Null);
    assert_eq!(before["disabled_at"], Value::Null);
    assert_eq!(before["disabled_reason"], Value::Null);

    let (status, updated) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({
                "id": id,
                "topic": "resource/*",
                "address": "https://hooks.example.org/other",
                "filters": {"resource_format": "CSV"},
                "rate_per_second": 7,
            }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["help"], json!(help("webhook_update")));
    let result = &updated["result"];
    assert_eq!(result, &show(&api, &alice.token, &id).await);
    assert_eq!(result["topic"], json!("resource/*"));
    assert_eq!(result["address"], json!("https://hooks.example.org/other"));
    assert_eq!(result["filters"], json!({"resource_format": "CSV"}));
    assert_eq!(result["rate_per_second"], json!(7));
    assert_eq!(result["secret"], before["secret"]);
    assert_eq!(result["created"], before["created"]);

    // Absent fields stay; null filters and rate clear them.
    let (status, updated) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "filters": null, "rate_per_second": null}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["result"]["filters"], json!({}));
    assert_eq!(updated["result"]["rate_per_second"], Value::Null);
    assert_eq!(updated["result"]["topic"], json!("resource/*"));

    // Only the id: nothing changes, and the hook comes back as it is.
    let (status, unchanged) = api
        .call("webhook_update", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(unchanged["result"], updated["result"]);
    api.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_previous_secret_until_the_overlap_ends() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let mut body = hook("*");
    body["secret"] = json!("the-first-secret-of-alice");
    let id = create(&api, &alice.token, body).await;

    // A generated secret; the old one signs for the default 24 hours.
    let (status, rotated) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "rotate_secret": true}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["result"]["secret"].as_str().unwrap().to_string();
    assert!(second.starts_with("whsec_"));
    assert!(rotated["result"]["previous_secret_until"].is_string());
    assert!(rotated["result"].get("previous_secret").is_none());
    assert!(!rotated.to_string().contains("the-first-secret-of-alice"));
    let (secret, previous, hours) = secrets(&client, &id).await;
    assert_eq!(secret, second);
    assert_eq!(previous.as_deref(), Some("the-first-secret-of-alice"));
    let hours = hours.unwrap();
    assert!((23.9..=24.0).contains(&hours), "{hours}");

    // A chosen secret with a two-hour overlap: the generated one becomes the previous.
    let (status, rotated) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "secret": "the-third-secret-of-alice", "overlap_hours": "2"}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(
        rotated["result"]["secret"],
        json!("the-third-secret-of-alice")
    );
    let (secret, previous, hours) = secrets(&client, &id).await;
    assert_eq!(secret, "the-third-secret-of-alice");
    assert_eq!(previous.as_deref(), Some(second.as_str()));
    assert!((1.9..=2.0).contains(&hours.unwrap()));

    // No overlap: the previous secret is forgotten at once.
    let (status, rotated) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "rotate_secret": "true", "overlap_hours": 0}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["result"]["previous_secret_until"], Value::Null);
    let (secret, previous, hours) = secrets(&client, &id).await;
    assert_ne!(secret, "the-third-secret-of-alice");
    assert_eq!((previous, hours), (None, None));

    // An update that does not rotate leaves the secrets alone.
    let before = secrets(&client, &id).await;
    let (status, _) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "rate_per_second": 3}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(secrets(&client, &id).await.0, before.0);
    api.stop().await;
}

#[tokio::test]
async fn state_active_re_enables_a_disabled_hook() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    client
        .execute(
            "UPDATE ckan_webhooks.subscription SET state = 'disabled', \
             failing_since = now() - interval '3 days', disabled_at = now(), \
             disabled_reason = 'the receiver answered 410 Gone' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();

    let shown = show(&api, &alice.token, &id).await;
    assert_eq!(shown["state"], json!("disabled"));
    assert!(shown["failing_since"].is_string() && shown["disabled_at"].is_string());
    assert_eq!(
        shown["disabled_reason"],
        json!("the receiver answered 410 Gone")
    );

    let (status, updated) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "state": "active"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let result = &updated["result"];
    assert_eq!(result["state"], json!("active"));
    for field in ["failing_since", "disabled_at", "disabled_reason"] {
        assert_eq!(result[field], Value::Null, "{field}");
    }

    // On an active hook, "active" changes nothing, not even the worker's failing_since.
    client
        .execute(
            "UPDATE ckan_webhooks.subscription SET failing_since = now() WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (_, again) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "state": "active"}),
        )
        .await;
    assert!(again["result"]["failing_since"].is_string());
    api.stop().await;
}

#[tokio::test]
async fn bad_parameters_name_their_fields() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    let other = create(&api, &alice.token, hook("dataset/*")).await;

    for (body, fields) in [
        (json!({"topic": "*"}), vec!["id"]),
        (json!({"id": id, "colour": "red"}), vec!["colour"]),
        (json!({"id": id, "topic": "package/create"}), vec!["topic"]),
        (json!({"id": id, "topic": null}), vec!["topic"]),
        (
            json!({"id": id, "address": "http://127.0.0.1/x"}),
            vec!["address"],
        ),
        (json!({"id": id, "address": ""}), vec!["address"]),
        (
            json!({"id": id, "filters": {"colour": "red"}}),
            vec!["filters"],
        ),
        (json!({"id": id, "secret": "short"}), vec!["secret"]),
        (
            json!({"id": id, "rotate_secret": "maybe"}),
            vec!["rotate_secret"],
        ),
        (
            json!({"id": id, "rotate_secret": false, "secret": "long-enough-secret"}),
            vec!["rotate_secret"],
        ),
        (json!({"id": id, "overlap_hours": 5}), vec!["overlap_hours"]),
        (
            json!({"id": id, "rotate_secret": true, "overlap_hours": 1000}),
            vec!["overlap_hours"],
        ),
        (json!({"id": id, "state": "disabled"}), vec!["state"]),
        (json!({"id": id, "state": "deleted"}), vec!["state"]),
        (
            json!({"id": id, "rate_per_second": 0}),
            vec!["rate_per_second"],
        ),
        (
            json!({"id": id, "rate_per_second": "fast"}),
            vec!["rate_per_second"],
        ),
        // Becoming identical to another of the owner's hooks is refused, as create
        // would have answered that hook's id.
        (json!({"id": id, "topic": "dataset/*"}), vec!["topic"]),
    ] {
        let (status, response) = api
            .call("webhook_update", Some(&alice.token), body.clone())
            .await;
        assert_eq!(status, 409, "{body}: {response}");
        let error = response["error"].as_object().unwrap();
        assert_eq!(error["__type"], json!("Validation Error"));
        let mut named: Vec<&str> = error.keys().map(String::as_str).collect();
        named.retain(|key| *key != "__type");
        assert_eq!(named, fields, "{body}: {response}");
    }
    let (_, twin_error) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": id, "topic": "dataset/*"}),
        )
        .await;
    assert!(twin_error.to_string().contains(&other));

    // Nothing above changed the hook.
    let shown = show(&api, &alice.token, &id).await;
    assert_eq!(shown["topic"], json!("*"));
    assert_eq!(shown["rate_per_second"], Value::Null);
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

    let unknown = "0123456789abcdef0123456789abcdef";
    let (status, for_unknown) = api
        .call(
            "webhook_update",
            Some(&mallory.token),
            json!({"id": unknown, "rotate_secret": true}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        for_unknown["error"],
        json!({"__type": "Not Found Error", "message": "Not found: webhook not found"})
    );
    let (status, for_alices) = api
        .call(
            "webhook_update",
            Some(&mallory.token),
            json!({"id": id, "rotate_secret": true}),
        )
        .await;
    assert_eq!((status, &for_alices), (404, &for_unknown));
    assert_eq!(
        show(&api, &alice.token, &id).await["previous_secret_until"],
        Value::Null
    );

    // A sysadmin may update anyone's hook, and sees the new secret.
    let (status, by_root) = api
        .call(
            "webhook_update",
            Some(&root.token),
            json!({"id": id, "rotate_secret": true}),
        )
        .await;
    assert_eq!(status, 200, "{by_root}");
    assert_eq!(by_root["result"]["user_id"], json!(alice.id));
    assert!(by_root["result"]["secret"].is_string());

    // Deleted: NotFound for everyone, including re-enabling.
    api.call("webhook_delete", Some(&alice.token), json!({"id": id}))
        .await;
    for user in [&alice, &root] {
        let (status, body) = api
            .call(
                "webhook_update",
                Some(&user.token),
                json!({"id": id, "state": "active"}),
            )
            .await;
        assert_eq!((status, &body), (404, &for_unknown));
    }
    let state: String = client
        .query_one(
            "SELECT state FROM ckan_webhooks.subscription WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "deleted");
    api.stop().await;
}
