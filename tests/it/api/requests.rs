//! The request shapes CKAN accepts: both URL prefixes, GET for side-effect-free actions,
//! form-encoded posts, and 400 for what cannot be read.

use super::help;
use crate::support::api::ApiServer;
use crate::support::ckan_users;
use crate::support::db::TestDb;
use serde_json::json;

#[tokio::test]
async fn requests_ckan_cannot_read_are_400() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let auth = [
        ("authorization", alice.token.clone()),
        ("content-type", "application/json".to_string()),
    ];

    let (status, body) = api
        .send("POST", "/api/3/action/package_show", &auth, "{}")
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!("Bad request: Action name not known: package_show")
    );

    let (status, body) = api
        .send("POST", "/api/3/action/webhook_create", &auth, "{not json")
        .await;
    assert_eq!(status, 400);
    assert!(body
        .as_str()
        .unwrap()
        .starts_with("Bad request: JSON Error: "));

    let (status, _) = api
        .send("POST", "/api/3/action/webhook_create", &auth, "[1, 2]")
        .await;
    assert_eq!(status, 400);

    // Actions that change data refuse GET, as CKAN does for actions with side effects.
    let (status, _) = api
        .send("GET", "/api/3/action/webhook_create?topic=*", &auth, "")
        .await;
    assert_eq!(status, 400);
    api.stop().await;
}

#[tokio::test]
async fn both_prefixes_get_and_form_posts_work() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let key = [("x-ckan-api-key", alice.token.clone())];

    // A form-encoded post, as an HTML form or `curl --data-urlencode` sends it.
    let form = [
        key[0].clone(),
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    let (status, created) = api
        .send(
            "POST",
            "/api/action/webhook_create",
            &form,
            "topic=dataset%2Fupdate&address=https%3A%2F%2Fhooks.example.org%2Fform",
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["result"].as_str().unwrap().to_string();

    // `curl -d '{...}'`: JSON sent as the single key of a form.
    let (status, created) = api
        .send(
            "POST",
            "/api/action/webhook_create",
            &form,
            r#"{"topic": "*", "address": "https://hooks.example.org/curl"}"#,
        )
        .await;
    assert_eq!(status, 200, "{created}");

    let (status, shown) = api
        .send(
            "GET",
            &format!("/api/action/webhook_show?id={id}"),
            &key,
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["result"]["topic"], json!("dataset/update"));
    assert_eq!(shown["help"], json!(help("webhook_show")));

    let (status, listed) = api
        .send("GET", "/api/3/action/webhook_list", &key, "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["result"].as_array().unwrap().len(), 2);

    // JSONP callers are anonymous in CKAN, so they are refused here.
    let (status, _) = api
        .send("GET", "/api/3/action/webhook_list?callback=f", &key, "")
        .await;
    assert_eq!(status, 403);
    api.stop().await;
}
