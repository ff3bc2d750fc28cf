//! The action API over real HTTP against a fresh database: CKAN's envelopes and status
//! codes, token authentication, `minimum_auth`, ownership, soft deletion, and the real
//! `ckanapi.RemoteCKAN` client.

mod auth;
mod ckanapi_client;
mod deliveries;
mod filters;
mod hostile_addresses;
mod hostile_bodies;
mod hostile_requests;
mod hostile_tokens;
mod redeliver;
mod requests;
mod shutdown;
mod update;

use crate::support::api::{ApiServer, Options, SITE_URL};
use crate::support::ckan_users;
use crate::support::db::TestDb;
use serde_json::{json, Value};

fn help(action: &str) -> String {
    format!("{SITE_URL}/api/3/action/help_show?name={action}")
}

fn hook(topic: &str) -> Value {
    json!({"topic": topic, "address": "https://hooks.example.org/in"})
}

async fn create(api: &ApiServer, token: &str, body: Value) -> String {
    let (status, response) = api.call("webhook_create", Some(token), body).await;
    assert_eq!(status, 200, "{response}");
    response["result"].as_str().expect("an id").to_string()
}

/// Asserts a Validation Error naming exactly `fields`; answers the error object.
async fn expect_invalid(api: &ApiServer, token: &str, body: Value, fields: &[&str]) -> Value {
    let (status, response) = api.call("webhook_create", Some(token), body).await;
    assert_eq!(status, 409, "{response}");
    assert_eq!(response["help"], json!(help("webhook_create")));
    assert_eq!(response["success"], json!(false));
    let error = response["error"].as_object().unwrap().clone();
    assert_eq!(error["__type"], json!("Validation Error"));
    let mut named: Vec<&str> = error.keys().map(String::as_str).collect();
    named.retain(|key| *key != "__type");
    named.sort();
    let mut expected = fields.to_vec();
    expected.sort();
    assert_eq!(named, expected, "{response}");
    Value::Object(error)
}

#[tokio::test]
async fn healthz_answers_ok() {
    let db = TestDb::installed().await;
    let api = ApiServer::start(&db).await;
    let (status, body) = api.send("GET", "/healthz", &[], "").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    api.stop().await;
}

#[tokio::test]
async fn create_show_list_delete_round_trip() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;

    let (status, created) = api
        .call("webhook_create", Some(&alice.token), hook("dataset/create"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(created["help"], json!(help("webhook_create")));
    assert_eq!(created["success"], json!(true));
    let id = created["result"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));

    let (status, shown) = api
        .call("webhook_show", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["help"], json!(help("webhook_show")));
    let result = &shown["result"];
    assert_eq!(result["id"], json!(id));
    assert_eq!(result["topic"], json!("dataset/create"));
    assert_eq!(result["address"], json!("https://hooks.example.org/in"));
    assert_eq!(result["filters"], json!({}));
    assert_eq!(result["state"], json!("active"));
    assert_eq!(result["user_id"], json!(alice.id));
    assert!(result["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(chrono::NaiveDateTime::parse_from_str(
        result["created"].as_str().unwrap(),
        "%Y-%m-%dT%H:%M:%S%.f"
    )
    .is_ok());

    let (status, listed) = api
        .call("webhook_list", Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["result"], json!([result]));

    let (status, deleted) = api
        .call("webhook_delete", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        deleted,
        json!({"help": help("webhook_delete"), "success": true, "result": null})
    );

    let (status, _) = api
        .call("webhook_show", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 404);
    let (_, listed) = api
        .call("webhook_list", Some(&alice.token), json!({}))
        .await;
    assert_eq!(listed["result"], json!([]));

    // Deleted, not removed: delivery records keep their subscription.
    let row = client
        .query_one(
            "SELECT state FROM ckan_webhooks.subscription WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "deleted");
    api.stop().await;
}

#[tokio::test]
async fn create_keeps_chosen_secret_and_filters_and_dedupes() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;

    let body = json!({
        "topic": "resource/*",
        "address": "https://hooks.example.org/res",
        "filters": {"organization": "org-a", "resource_format": "CSV"},
        "secret": "a-secret-of-my-own-choosing",
    });
    let id = create(&api, &alice.token, body.clone()).await;
    let (_, shown) = api
        .call("webhook_show", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(
        shown["result"]["secret"],
        json!("a-secret-of-my-own-choosing")
    );
    assert_eq!(
        shown["result"]["filters"],
        json!({"organization": "org-a", "resource_format": "CSV"})
    );

    // The same topic, address and filters again is the same webhook.
    assert_eq!(create(&api, &alice.token, body).await, id);
    let other = create(&api, &alice.token, hook("resource/*")).await;
    assert_ne!(other, id);
    api.stop().await;
}

#[tokio::test]
async fn validation_errors_name_their_fields() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let address = "https://hooks.example.org/in";
    let t = &alice.token;

    let error = expect_invalid(&api, t, json!({"address": address}), &["topic"]).await;
    assert_eq!(
        error,
        json!({"__type": "Validation Error", "topic": ["Missing value"]})
    );
    let error = expect_invalid(&api, t, json!({"topic": "dataset/create"}), &["address"]).await;
    assert_eq!(error["address"], json!(["Missing value"]));
    expect_invalid(&api, t, json!({}), &["address", "topic"]).await;

    let error = expect_invalid(
        &api,
        t,
        json!({"topic": "package/create", "address": address}),
        &["topic"],
    )
    .await;
    assert!(error["topic"][0]
        .as_str()
        .unwrap()
        .contains("package/create"));

    for bad in [
        "ftp://hooks.example.org/",
        "hooks.example.org/in",
        "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest",
        "http://localhost/",
    ] {
        expect_invalid(&api, t, json!({"topic": "*", "address": bad}), &["address"]).await;
    }

    let error = expect_invalid(
        &api,
        t,
        json!({"topic": "*", "address": address, "colour": "red", "owner": "x"}),
        &["colour", "owner"],
    )
    .await;
    assert_eq!(error["colour"].as_array().unwrap().len(), 1);

    expect_invalid(
        &api,
        t,
        json!({"topic": "*", "address": address, "filters": ["dataset"]}),
        &["filters"],
    )
    .await;
    expect_invalid(
        &api,
        t,
        json!({"topic": "*", "address": address, "filters": {"colour": "red"}}),
        &["filters"],
    )
    .await;
    expect_invalid(
        &api,
        t,
        json!({"topic": "*", "address": address, "secret": 42}),
        &["secret"],
    )
    .await;

    let (status, response) = api.call("webhook_show", Some(t), json!({})).await;
    assert_eq!(status, 409);
    assert_eq!(response["error"]["id"], json!(["Missing value"]));
    api.stop().await;
}

#[tokio::test]
async fn private_addresses_pass_when_the_operator_allows_them() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let options = Options {
        allow_private_targets: true,
        ..Options::default()
    };
    let api = ApiServer::start_with(&db, options).await;
    create(
        &api,
        &alice.token,
        json!({"topic": "*", "address": "http://127.0.0.1:8080/hook"}),
    )
    .await;
    api.stop().await;
}

#[tokio::test]
async fn another_users_hook_is_not_found() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let mallory = ckan_users::user(&client, "mallory", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;

    let unknown = "0123456789abcdef0123456789abcdef";
    let (status, for_unknown) = api
        .call("webhook_show", Some(&mallory.token), json!({"id": unknown}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        for_unknown,
        json!({
            "help": help("webhook_show"),
            "success": false,
            "error": {"__type": "Not Found Error", "message": "Not found: webhook not found"},
        })
    );
    for action in ["webhook_show", "webhook_delete"] {
        let (status, body) = api
            .call(action, Some(&mallory.token), json!({"id": id}))
            .await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], for_unknown["error"]);
    }
    let (_, listed) = api
        .call("webhook_list", Some(&mallory.token), json!({}))
        .await;
    assert_eq!(listed["result"], json!([]));

    // Mallory's failed delete changed nothing.
    let (status, _) = api
        .call("webhook_show", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    api.stop().await;
}

#[tokio::test]
async fn sysadmins_see_and_delete_every_hook() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let bob = ckan_users::user(&client, "bob", false).await;
    let root = ckan_users::user(&client, "root", true).await;
    let api = ApiServer::start(&db).await;
    let a = create(&api, &alice.token, hook("dataset/*")).await;
    let b = create(&api, &bob.token, hook("resource/*")).await;

    let (_, listed) = api.call("webhook_list", Some(&root.token), json!({})).await;
    let ids: Vec<&str> = listed["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hook| hook["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.as_str(), b.as_str()]);
    assert!(listed["result"][0]["secret"].is_string());

    let (_, listed) = api
        .call("webhook_list", Some(&alice.token), json!({}))
        .await;
    assert_eq!(listed["result"].as_array().unwrap().len(), 1);

    let (status, _) = api
        .call("webhook_delete", Some(&root.token), json!({"id": b}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .call("webhook_show", Some(&bob.token), json!({"id": b}))
        .await;
    assert_eq!(status, 404);
    api.stop().await;
}

#[tokio::test]
async fn delete_cancels_pending_deliveries_and_keeps_the_rest() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;

    client
        .batch_execute(
            "INSERT INTO ckan_webhooks.event (id, txid, topic, dataset_id, entity, occurred_at) \
             VALUES ('ev1', pg_current_xact_id(), 'dataset/create', 'ds1', '{}', now())",
        )
        .await
        .unwrap();
    for (delivery, status) in [("d1", "pending"), ("d2", "delivered"), ("d3", "dead")] {
        client
            .execute(
                "INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id, \
                 status) VALUES ($1, 'ev1', $2, 'ds1', $3)",
                &[&delivery, &id, &status],
            )
            .await
            .unwrap();
    }

    let (status, _) = api
        .call("webhook_delete", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    let rows = client
        .query(
            "SELECT id, status FROM ckan_webhooks.delivery ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let statuses: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        statuses,
        vec![
            ("d1".to_string(), "cancelled".to_string()),
            ("d2".to_string(), "delivered".to_string()),
            ("d3".to_string(), "dead".to_string()),
        ]
    );

    // Deleting again is NotFound: the hook is gone for the API, not for the records.
    let (status, _) = api
        .call("webhook_delete", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 404);
    api.stop().await;
}
