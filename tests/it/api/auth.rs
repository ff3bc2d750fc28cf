//! Authentication and `minimum_auth`: CKAN API tokens, legacy API keys, and the
//! organization rights the operator may require.

use super::help;
use crate::support::api::{ApiServer, Options};
use crate::support::ckan_users::{self, jwt, TOKEN_SECRET};
use crate::support::db::TestDb;
use ckan_webhooks::config::MinimumAuth;
use serde_json::json;

#[tokio::test]
async fn unusable_credentials_are_403() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let bob = ckan_users::user(&client, "bob", false).await;
    let carol = ckan_users::user(&client, "carol", false).await;
    let dave = ckan_users::user(&client, "dave", false).await;
    let api = ApiServer::start(&db).await;

    let (status, body) = api.call("webhook_list", None, json!({})).await;
    assert_eq!(status, 403);
    assert_eq!(body["help"], json!(help("webhook_list")));
    assert_eq!(body["success"], json!(false));
    assert_eq!(body["error"]["__type"], json!("Authorization Error"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Access denied"));

    let forged = jwt(&alice.token_id, b"some-other-secret", json!({}));
    let unknown = jwt("no-such-token", TOKEN_SECRET, json!({}));
    let expired = jwt(&alice.token_id, TOKEN_SECRET, json!({"exp": 1_000_000_000}));
    ckan_users::revoke(&client, &bob).await;
    ckan_users::set_state(&client, &carol, "deleted").await;
    ckan_users::set_state(&client, &dave, "pending").await;
    for token in [
        "garbage",
        "a.b.c",
        forged.as_str(),
        unknown.as_str(),
        expired.as_str(),
        bob.token.as_str(),
        carol.token.as_str(),
        dave.token.as_str(),
    ] {
        let (status, body) = api.call("webhook_list", Some(token), json!({})).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["__type"], json!("Authorization Error"));
    }

    // A future exp is fine, and a Bearer prefix is tolerated.
    let later = chrono::Utc::now().timestamp() + 3600;
    let expiring = jwt(&alice.token_id, TOKEN_SECRET, json!({"exp": later}));
    let (status, _) = api.call("webhook_list", Some(&expiring), json!({})).await;
    assert_eq!(status, 200);
    let bearer = format!("Bearer {}", alice.token);
    let (status, _) = api.call("webhook_list", Some(&bearer), json!({})).await;
    assert_eq!(status, 200);
    api.stop().await;
}

#[tokio::test]
async fn legacy_api_keys_identify_users() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let key = "3a9c2f1e-6d1b-4a55-9c0e-7f1d2b3c4d5e";
    client
        .execute(
            "UPDATE public.\"user\" SET apikey = $2 WHERE id = $1",
            &[&alice.id, &key],
        )
        .await
        .unwrap();

    // Off by default: CKAN 2.10+ no longer accepts them.
    let api = ApiServer::start(&db).await;
    let (status, _) = api.call("webhook_list", Some(key), json!({})).await;
    assert_eq!(status, 403);
    api.stop().await;

    let options = Options {
        accept_api_keys: true,
        ..Options::default()
    };
    let api = ApiServer::start_with(&db, options).await;
    let (status, _) = api.call("webhook_list", Some(key), json!({})).await;
    assert_eq!(status, 200);
    api.stop().await;
}

async fn allowed(api: &ApiServer, token: &str) -> bool {
    let (status, body) = api.call("webhook_list", Some(token), json!({})).await;
    match status {
        200 => true,
        403 => false,
        other => panic!("unexpected status {other}: {body}"),
    }
}

#[tokio::test]
async fn minimum_auth_levels() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let plain = ckan_users::user(&client, "plain", false).await;
    let member = ckan_users::user(&client, "member", false).await;
    let editor = ckan_users::user(&client, "editor", false).await;
    let lapsed = ckan_users::user(&client, "lapsed", false).await;
    let admin = ckan_users::user(&client, "admin", false).await;
    let sysadmin = ckan_users::user(&client, "sysadmin", true).await;
    ckan_users::join_organization(&client, &member, "member", "active").await;
    ckan_users::join_organization(&client, &editor, "editor", "active").await;
    ckan_users::join_organization(&client, &lapsed, "admin", "deleted").await;
    ckan_users::join_organization(&client, &admin, "admin", "active").await;

    let users = [&plain, &member, &editor, &lapsed, &admin, &sysadmin];
    let expected = [
        (MinimumAuth::None, [true, true, true, true, true, true]),
        (MinimumAuth::Editor, [false, false, true, false, true, true]),
        (MinimumAuth::Admin, [false, false, false, false, true, true]),
        (
            MinimumAuth::Sysadmin,
            [false, false, false, false, false, true],
        ),
    ];
    for (minimum_auth, outcomes) in expected {
        let options = Options {
            minimum_auth,
            ..Options::default()
        };
        let api = ApiServer::start_with(&db, options).await;
        for (user, outcome) in users.iter().zip(outcomes) {
            assert_eq!(
                allowed(&api, &user.token).await,
                outcome,
                "{} at {minimum_auth:?}",
                user.name
            );
        }
        api.stop().await;
    }
}
