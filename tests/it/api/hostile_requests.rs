//! Requests that play with methods, paths, headers and timing: every verb on every action,
//! path tricks around the action prefix, oversized headers, a flood of identical creates,
//! probes for other users' hooks, and what the log keeps of all that.

use super::{create, help, hook};
use crate::support::api::{ApiServer, Options};
use crate::support::ckan_users;
use crate::support::db::TestDb;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACTIONS: &[&str] = &[
    "webhook_create",
    "webhook_show",
    "webhook_delete",
    "webhook_list",
];

/// Sends raw bytes on a new connection and answers everything the server sends back
/// before it closes the connection (or 10 s pass).
async fn raw(api: &ApiServer, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the API answers and closes within 10 s");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn other_methods_are_400_and_change_nothing() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let id = create(&api, &alice.token, hook("*")).await;
    let headers = [
        ("authorization", alice.token.clone()),
        ("content-type", "application/json".to_string()),
    ];
    let body = json!({"id": id, "topic": "dataset/*", "address": "https://hooks.example.org/x"});

    for action in ACTIONS {
        for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"] {
            let path = format!("/api/3/action/{action}");
            let (status, response) = api.send(method, &path, &headers, body.to_string()).await;
            assert_eq!(status, 400, "{method} {action}: {response}");
            assert!(response.as_str().unwrap().starts_with("Bad request: "));
        }
    }

    // GET cannot create or delete, even with every parameter in the query string.
    for action in ["webhook_create", "webhook_delete"] {
        let path = format!(
            "/api/3/action/{action}?id={id}&topic=*&address=https%3A%2F%2Fhooks.example.org%2Fg"
        );
        let (status, response) = api.send("GET", &path, &headers, "").await;
        assert_eq!(status, 400, "{action}: {response}");
    }

    // HEAD answers a status and headers, and no body.
    let request = format!(
        "HEAD /api/3/action/webhook_list HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\
         connection: close\r\n\r\n",
        alice.token
    );
    let answer = raw(&api, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "{answer}");

    // Alice's hook is still the only one, unchanged.
    let (_, listed) = api
        .call("webhook_list", Some(&alice.token), json!({}))
        .await;
    assert_eq!(listed["result"].as_array().unwrap().len(), 1);
    assert_eq!(listed["result"][0]["topic"], json!("*"));
    api.stop().await;
}

#[tokio::test]
async fn path_tricks_reach_no_action() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let headers = [
        ("authorization", alice.token.clone()),
        ("content-type", "application/json".to_string()),
    ];
    let body = hook("*").to_string();

    for path in [
        "/api/3/action/webhook_create/extra",
        "/api/3/action/webhook_create/",
        "//api/3/action/webhook_create",
        "/api//3/action/webhook_create",
        "/api/3/action//webhook_create",
        "/api/4/action/webhook_create",
        "/api/2/action/webhook_create",
        "/API/3/action/webhook_create",
        "/api/3/action/../action/webhook_create",
        "/api/3/action/",
        "/api/action/",
        "/api/3/action",
        "/healthz/../api/3/action/webhook_create",
    ] {
        let (status, response) = api.send("POST", path, &headers, body.clone()).await;
        assert_eq!(status, 404, "{path}: {response}");
    }

    for path in [
        "/api/3/action/webhook%2Fcreate",
        "/api/3/action/webhook%5Fcreate",
        "/api/3/action/%77ebhook_create",
        "/api/3/action/WEBHOOK_CREATE",
        "/api/3/action/webhook_create%00",
        "/api/3/action/webhook_create;x=1",
        "/api/3/action/webhook_create%20",
    ] {
        let (status, response) = api.send("POST", path, &headers, body.clone()).await;
        assert_eq!(status, 400, "{path}: {response}");
        assert!(response
            .as_str()
            .unwrap()
            .starts_with("Bad request: Action name not known: "));
    }

    // None of them created anything.
    let row = client
        .query_one("SELECT count(*) FROM ckan_webhooks.subscription", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    api.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused_without_a_hang() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;

    // One enormous header, and very many small ones: hyper refuses both with 431.
    let huge = format!(
        "POST /api/3/action/webhook_list HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\
         x-filler: {}\r\n\r\n",
        alice.token,
        "a".repeat(1024 * 1024)
    );
    let answer = raw(&api, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{:.200}", answer);

    let mut many = String::from("POST /api/3/action/webhook_list HTTP/1.1\r\nhost: x\r\n");
    for n in 0..500 {
        many.push_str(&format!("x-filler-{n}: a\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(&api, many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{:.200}", answer);

    // A long but reasonable token header is just an unknown credential.
    let (status, _) = api
        .call("webhook_list", Some(&"k".repeat(16 * 1024)), json!({}))
        .await;
    assert_eq!(status, 403);
    api.stop().await;
}

#[tokio::test]
async fn concurrent_identical_creates_make_one_hook() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let body = json!({
        "topic": "dataset/update",
        "address": "https://hooks.example.org/race",
        "filters": {"organization": "org-1"},
    });

    let calls = (0..24).map(|_| api.call("webhook_create", Some(&alice.token), body.clone()));
    let answers = futures_util::future::join_all(calls).await;
    let mut ids: Vec<String> = answers
        .iter()
        .map(|(status, response)| {
            assert_eq!(*status, 200, "{response}");
            response["result"].as_str().unwrap().to_string()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");

    let row = client
        .query_one("SELECT count(*) FROM ckan_webhooks.subscription", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    api.stop().await;
}

#[tokio::test]
async fn other_users_hooks_look_exactly_like_unknown_ones() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let mallory = ckan_users::user(&client, "mallory", false).await;
    let api = ApiServer::start(&db).await;
    let live = create(&api, &alice.token, hook("*")).await;
    let gone = create(&api, &alice.token, hook("dataset/*")).await;
    let (status, _) = api
        .call("webhook_delete", Some(&alice.token), json!({"id": gone}))
        .await;
    assert_eq!(status, 200);

    for action in ["webhook_show", "webhook_delete"] {
        let unknown = "0123456789abcdef0123456789abcdef";
        let (status, reference) = api
            .call(action, Some(&mallory.token), json!({"id": unknown}))
            .await;
        assert_eq!(status, 404);
        assert_eq!(reference["help"], json!(help(action)));

        // Same status and the very same bytes, whether by JSON post or by GET.
        for id in [&live, &gone] {
            let (status, body) = api
                .call(action, Some(&mallory.token), json!({"id": id}))
                .await;
            assert_eq!((status, &body), (404, &reference), "{action} {id}");
        }
        if action == "webhook_show" {
            let key = [("authorization", mallory.token.clone())];
            for id in [unknown, live.as_str()] {
                let path = format!("/api/action/webhook_show?id={id}");
                let (status, body) = api.send("GET", &path, &key, "").await;
                assert_eq!((status, &body), (404, &reference));
            }
        }
    }

    // Alice's live hook survived Mallory's delete.
    let (status, _) = api
        .call("webhook_show", Some(&alice.token), json!({"id": live}))
        .await;
    assert_eq!(status, 200);
    api.stop().await;
}

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_log_keeps_no_token_secret_or_body() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runtime has one thread, so the server's tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let legacy_key = "legacy-key-that-must-not-be-logged";
    client
        .execute(
            "UPDATE public.\"user\" SET apikey = $2 WHERE id = $1",
            &[&alice.id, &legacy_key],
        )
        .await
        .unwrap();
    let options = Options {
        accept_api_keys: true,
        ..Options::default()
    };
    let api = ApiServer::start_with(&db, options).await;
    let secret = "body-secret-that-must-not-be-logged";
    let address = "https://hooks.example.org/path-that-must-not-be-logged";
    let marker = "filter-value-that-must-not-be-logged";

    let body = json!({"topic": "*", "address": address, "secret": secret,
                      "filters": {"dataset": marker}});
    let id = create(&api, &alice.token, body.clone()).await;
    create(&api, legacy_key, body.clone()).await;
    let (status, shown) = api
        .call("webhook_show", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(status, 200);
    let generated = create(&api, &alice.token, hook("*")).await;
    let (_, generated) = api
        .call("webhook_show", Some(&alice.token), json!({"id": generated}))
        .await;

    // Refused and broken requests carrying the same material.
    let forged = format!("{}x", alice.token);
    api.call("webhook_create", Some(&forged), body.clone())
        .await;
    api.call("webhook_create", None, body.clone()).await;
    let mut bad = body.clone();
    bad["address"] = json!(format!("{address}\u{0}"));
    bad["secret"] = json!(format!("{secret}\u{0}"));
    api.call("webhook_create", Some(&alice.token), bad).await;
    let headers = [
        ("authorization", alice.token.clone()),
        ("content-type", "application/json".to_string()),
    ];
    // Filters that resolve to ids take the lookup path, which logs no value either.
    let private_name = "private-dataset-name-that-must-not-be-logged";
    client
        .batch_execute(&format!(
            "INSERT INTO package (id, name, type, state, private, creator_user_id) \
             VALUES ('pid-logged-not', '{private_name}', 'dataset', 'active', true, '{}')",
            alice.id
        ))
        .await
        .unwrap();
    let resolving = json!({"topic": "*", "address": address,
                           "filters": {"dataset": private_name, "organization": marker}});
    create(&api, &alice.token, resolving.clone()).await;
    let resolved = create(&api, &alice.token, resolving).await;
    api.call(
        "webhook_update",
        Some(&alice.token),
        json!({"id": resolved, "filters": {"dataset": private_name}}),
    )
    .await;

    // Reading CKAN's ini logs neither its token secret nor the database password.
    let ini_secret = "ini-secret-that-must-not-be-logged";
    let password = "ini-password-that-must-not-be-logged";
    let ini = ckan_webhooks::ckan_ini::CkanIni::parse(
        std::path::Path::new("/etc/ckan/ckan.ini"),
        &format!(
            "[app:main]\nSECRET_KEY = {ini_secret}\n\
             sqlalchemy.url = postgresql://u:{password}@h/db\n\
             api_token.jwt.decode.secret = string:%(SECRET_KEY)s\n"
        ),
    )
    .unwrap();
    assert_eq!(ini.token_secret(None).unwrap(), ini_secret.as_bytes());
    assert!(ini.database_url().unwrap().contains(password));

    let broken = format!("{{\"secret\": \"{secret}\", \"filters\": {{\"dataset\": \"{marker}\"");
    api.send("POST", "/api/3/action/webhook_create", &headers, broken)
        .await;
    api.stop().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("api request"), "{log}");
    let generated_secret = generated["result"]["secret"].as_str().unwrap();
    for needle in [
        alice.token.as_str(),
        alice.token.split('.').nth(2).unwrap(),
        legacy_key,
        secret,
        generated_secret,
        address,
        marker,
        shown["result"]["secret"].as_str().unwrap(),
        private_name,
        ini_secret,
        password,
    ] {
        assert!(!log.contains(needle), "the log holds {needle:?}:\n{log}");
    }
    let _: Value = shown;
}
