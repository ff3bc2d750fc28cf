//! `dataset` and `organization` filters resolved to ids at create and update time with
//! the owner's read rights, dedupe on the resolved filters, and `webhook_list`'s topic.

use super::create;
use crate::support::api::{ApiServer, Options};
use crate::support::ckan_users::{self, TestUser};
use crate::support::db::TestDb;
use serde_json::{json, Value};

async fn sql(client: &tokio_postgres::Client, statements: &str) {
    client.batch_execute(statements).await.expect("test SQL");
}

/// Organizations `org-a` (id `oid-a`) and `org-b`; a public dataset, private datasets
/// in each, a public draft and a deleted one.
async fn catalogue(client: &tokio_postgres::Client) {
    sql(
        client,
        "INSERT INTO \"group\" (id, name, state, type, is_organization) VALUES
           ('oid-a', 'org-a', 'active', 'organization', true),
           ('oid-b', 'org-b', 'active', 'organization', true),
           ('oid-gone', 'org-gone', 'deleted', 'organization', true);
         INSERT INTO package (id, name, type, state, private, owner_org) VALUES
           ('pid-public', 'river-levels', 'dataset', 'active', false, 'oid-a'),
           ('pid-private-a', 'secret-a', 'dataset', 'active', true, 'oid-a'),
           ('pid-private-b', 'secret-b', 'dataset', 'active', true, 'oid-b'),
           ('pid-draft', 'draft-one', 'dataset', 'draft', false, 'oid-a'),
           ('pid-deleted', 'old-one', 'dataset', 'deleted', false, 'oid-a');",
    )
    .await;
}

async fn member_of(client: &tokio_postgres::Client, user: &TestUser, org: &str) {
    client
        .execute(
            "INSERT INTO member (id, group_id, table_id, table_name, capacity, state) \
             VALUES ($1, $2, $3, 'user', 'member', 'active')",
            &[&format!("m-{}-{org}", user.id), &org, &user.id],
        )
        .await
        .unwrap();
}

/// The filters a new hook with `filters` ends up with, as webhook_show tells its owner.
async fn stored(api: &ApiServer, user: &TestUser, filters: Value) -> Value {
    let address = format!("https://hooks.example.org/{}", rand::random::<u32>());
    let id = create(
        api,
        &user.token,
        json!({"topic": "*", "address": address, "filters": filters}),
    )
    .await;
    let (_, shown) = api
        .call("webhook_show", Some(&user.token), json!({"id": id}))
        .await;
    shown["result"]["filters"].clone()
}

#[tokio::test]
async fn names_resolve_to_ids_only_where_the_owner_may_read() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    catalogue(&client).await;
    let plain = ckan_users::user(&client, "plain", false).await;
    let member = ckan_users::user(&client, "member", false).await;
    let collaborator = ckan_users::user(&client, "collaborator", false).await;
    let root = ckan_users::user(&client, "root", true).await;
    member_of(&client, &member, "oid-a").await;
    sql(
        &client,
        &format!(
            "INSERT INTO package_member (package_id, user_id, capacity, modified) \
             VALUES ('pid-private-b', '{}', 'member', now())",
            collaborator.id
        ),
    )
    .await;
    let api = ApiServer::start(&db).await;

    // (owner, filter value, stored value)
    let cases: [(&TestUser, &str, &str); 14] = [
        (&plain, "river-levels", "pid-public"),
        (&plain, "pid-public", "pid-public"),
        (&plain, "secret-a", "secret-a"),
        (&plain, "draft-one", "draft-one"),
        (&plain, "old-one", "old-one"),
        (&plain, "not-yet-created", "not-yet-created"),
        (&member, "secret-a", "pid-private-a"),
        (&member, "draft-one", "pid-draft"),
        (&member, "secret-b", "secret-b"),
        (&collaborator, "secret-b", "secret-b"),
        (&root, "secret-b", "pid-private-b"),
        (&root, "draft-one", "pid-draft"),
        (&root, "old-one", "old-one"),
        (&member, "pid-private-a", "pid-private-a"),
    ];
    for (user, given, expected) in cases {
        assert_eq!(
            stored(&api, user, json!({"dataset": given})).await,
            json!({"dataset": expected}),
            "{} giving {given}",
            user.name
        );
    }

    // Organizations are public: any active one resolves, by id or name.
    for (given, expected) in [
        ("org-a", "oid-a"),
        ("oid-b", "oid-b"),
        ("org-gone", "org-gone"),
        ("no-such-org", "no-such-org"),
    ] {
        assert_eq!(
            stored(
                &api,
                &plain,
                json!({"organization": given, "resource_format": "CSV"})
            )
            .await,
            json!({"organization": expected, "resource_format": "CSV"})
        );
    }
    api.stop().await;

    // With CKAN's collaborator setting on, collaborators read the private dataset.
    let options = Options {
        allow_dataset_collaborators: true,
        ..Options::default()
    };
    let api = ApiServer::start_with(&db, options).await;
    assert_eq!(
        stored(&api, &collaborator, json!({"dataset": "secret-b"})).await,
        json!({"dataset": "pid-private-b"})
    );
    assert_eq!(
        stored(&api, &plain, json!({"dataset": "secret-b"})).await,
        json!({"dataset": "secret-b"})
    );
    api.stop().await;
}

#[tokio::test]
async fn dedupe_compares_resolved_filters_and_renames_keep_matching() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    catalogue(&client).await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let body = |dataset: &str, org: &str| {
        json!({"topic": "dataset/*", "address": "https://hooks.example.org/in",
               "filters": {"dataset": dataset, "organization": org}})
    };

    let by_name = create(&api, &alice.token, body("river-levels", "org-a")).await;
    assert_eq!(
        create(&api, &alice.token, body("pid-public", "oid-a")).await,
        by_name
    );

    // Renamed in CKAN: the stored id still names it, by old id and new name alike.
    sql(
        &client,
        "UPDATE package SET name = 'river-levels-v2' WHERE id = 'pid-public'",
    )
    .await;
    assert_eq!(
        create(&api, &alice.token, body("river-levels-v2", "org-a")).await,
        by_name
    );
    // The old name now names nothing, so it is kept: a different hook.
    assert_ne!(
        create(&api, &alice.token, body("river-levels", "org-a")).await,
        by_name
    );

    // webhook_update resolves too, and may not make two hooks identical.
    let other = create(&api, &alice.token, body("not-yet", "org-b")).await;
    let (status, response) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": other, "filters": {"dataset": "river-levels-v2", "organization": "org-a"}}),
        )
        .await;
    assert_eq!(status, 409, "{response}");
    assert!(response["error"]["filters"][0]
        .as_str()
        .unwrap()
        .contains(&by_name));
    let (status, response) = api
        .call(
            "webhook_update",
            Some(&alice.token),
            json!({"id": other, "filters": {"dataset": "river-levels-v2"}}),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response["result"]["filters"],
        json!({"dataset": "pid-public"})
    );
    api.stop().await;
}

#[tokio::test]
async fn a_sysadmin_edit_resolves_with_the_owners_rights() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    catalogue(&client).await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let root = ckan_users::user(&client, "root", true).await;
    let api = ApiServer::start(&db).await;
    let id = create(
        &api,
        &alice.token,
        json!({"topic": "*", "address": "https://a.example/"}),
    )
    .await;
    let (status, response) = api
        .call(
            "webhook_update",
            Some(&root.token),
            json!({"id": id, "filters": {"dataset": "secret-b"}}),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    // Alice may not read secret-b, so its id must not reach her.
    assert_eq!(
        response["result"]["filters"],
        json!({"dataset": "secret-b"})
    );
    api.stop().await;
}

#[tokio::test]
async fn list_filters_by_topic() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let bob = ckan_users::user(&client, "bob", false).await;
    let root = ckan_users::user(&client, "root", true).await;
    let api = ApiServer::start(&db).await;
    let a1 = create(&api, &alice.token, super::hook("dataset/*")).await;
    let a2 = create(&api, &alice.token, super::hook("resource/create")).await;
    let b1 = create(&api, &bob.token, super::hook("dataset/*")).await;

    let ids = |listed: &Value| -> Vec<String> {
        listed["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hook| hook["id"].as_str().unwrap().to_string())
            .collect()
    };
    for (user, topic, expected) in [
        (&alice, json!("dataset/*"), vec![a1.clone()]),
        (&alice, json!("resource/create"), vec![a2.clone()]),
        (&alice, json!("*"), vec![]),
        (&alice, Value::Null, vec![a1.clone(), a2.clone()]),
        (&root, json!("dataset/*"), vec![a1.clone(), b1.clone()]),
        (&bob, json!("resource/create"), vec![]),
    ] {
        let (status, listed) = api
            .call("webhook_list", Some(&user.token), json!({"topic": topic}))
            .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(ids(&listed), expected, "{} {topic}", user.name);
    }

    let (status, listed) = api
        .call(
            "webhook_list",
            Some(&alice.token),
            json!({"topic": "package/create"}),
        )
        .await;
    assert_eq!(status, 409);
    assert!(listed["error"]["topic"].is_array());
    let (status, _) = api
        .call("webhook_list", Some(&alice.token), json!({"owner": "x"}))
        .await;
    assert_eq!(status, 409);

    // GET with a query string, as CKAN clients call side-effect-free actions.
    let headers = [("authorization", alice.token.clone())];
    let (status, listed) = api
        .send(
            "GET",
            "/api/3/action/webhook_list?topic=resource/create",
            &headers,
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&listed), vec![a2]);
    api.stop().await;
}
