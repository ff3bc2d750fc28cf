//! Request bodies built to break parsing or storage: other JSON types, deep nesting,
//! oversized and slow bodies, odd content types, duplicate keys, every JSON type in every
//! field, huge strings, control characters and SQL text. Each must end in CKAN's 400 or
//! 409 (or a plain success), never a 500, a hang or stored garbage.

use super::{expect_invalid, help};
use crate::support::api::ApiServer;
use crate::support::ckan_users;
use crate::support::db::TestDb;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADDRESS: &str = "https://hooks.example.org/in";

/// Asserts CKAN's answer to a request it cannot read: 400 and a bare JSON string.
fn assert_bad_request(status: u16, body: &Value) {
    assert_eq!(status, 400, "{body}");
    assert!(
        body.as_str().unwrap().starts_with("Bad request: "),
        "{body}"
    );
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_400() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let json_type = [
        ("authorization", alice.token.clone()),
        ("content-type", "application/json".to_string()),
    ];

    let deep_array = "[".repeat(100_000);
    let deep_object = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    for body in [
        "null",
        "1",
        "-0.5e400",
        "\"topic\"",
        "true",
        "[]",
        "[{\"topic\": \"*\"}]",
        "{\"topic\": \"*\"",
        "{\"topic\": \"\\ud800\"}",
        "{\"topic\": \"*\"} {}",
        "\u{feff}{}",
        deep_array.as_str(),
        deep_object.as_str(),
    ] {
        let (status, response) = api
            .send(
                "POST",
                "/api/3/action/webhook_create",
                &json_type,
                body.to_string(),
            )
            .await;
        assert_bad_request(status, &response);
    }

    // Bytes that are not UTF-8 at all.
    let (status, response) = api
        .send(
            "POST",
            "/api/3/action/webhook_create",
            &json_type,
            &b"{\"topic\": \"\xff\xfe\"}"[..],
        )
        .await;
    assert_bad_request(status, &response);

    // A body the form quirk reads as JSON must also be an object.
    let form = [
        ("authorization", alice.token.clone()),
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    let (status, response) = api
        .send("POST", "/api/3/action/webhook_create", &form, "[1]")
        .await;
    assert_bad_request(status, &response);
    api.stop().await;
}

#[tokio::test]
async fn other_content_types_are_read_as_json_or_refused() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let body = json!({"topic": "*", "address": ADDRESS}).to_string();

    // CKAN reads any non-form body as JSON; so does this API.
    for content_type in ["text/plain", "application/octet-stream", "", "*/*; q=0"] {
        let headers = [
            ("authorization", alice.token.clone()),
            ("content-type", content_type.to_string()),
        ];
        let (status, response) = api
            .send(
                "POST",
                "/api/3/action/webhook_create",
                &headers,
                body.clone(),
            )
            .await;
        assert_eq!(status, 200, "{content_type}: {response}");
    }

    let multipart = [
        ("authorization", alice.token.clone()),
        (
            "content-type",
            "multipart/form-data; boundary=x".to_string(),
        ),
    ];
    let (status, response) = api
        .send(
            "POST",
            "/api/3/action/webhook_create",
            &multipart,
            "--x\r\nContent-Disposition: form-data; name=\"topic\"\r\n\r\n*\r\n--x--\r\n",
        )
        .await;
    assert_bad_request(status, &response);
    api.stop().await;
}

#[tokio::test]
async fn duplicate_keys_keep_the_last_value() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let headers = [
        ("authorization", alice.token.clone()),
        ("content-type", "application/json".to_string()),
    ];

    let body =
        format!(r#"{{"topic": "*", "address": "{ADDRESS}", "address": "http://127.0.0.1/"}}"#);
    let (status, response) = api
        .send("POST", "/api/3/action/webhook_create", &headers, body)
        .await;
    assert_eq!(status, 409, "{response}");
    assert!(response["error"]["address"].is_array());

    let body =
        format!(r#"{{"topic": "*", "address": "http://127.0.0.1/", "address": "{ADDRESS}"}}"#);
    let (status, response) = api
        .send("POST", "/api/3/action/webhook_create", &headers, body)
        .await;
    assert_eq!(status, 200, "{response}");
    let id = response["result"].as_str().unwrap().to_string();
    let (_, shown) = api
        .call("webhook_show", Some(&alice.token), json!({"id": id}))
        .await;
    assert_eq!(shown["result"]["address"], json!(ADDRESS));
    api.stop().await;
}

#[tokio::test]
async fn every_json_type_in_every_field_is_a_validation_error() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let t = &alice.token;
    let valid = json!({"topic": "*", "address": ADDRESS});

    let wrong_types = [
        json!(0),
        json!(-1.5),
        json!(true),
        json!(false),
        json!([]),
        json!(["*"]),
        json!({}),
        json!({"topic": "*"}),
    ];
    for field in ["topic", "address", "secret", "filters"] {
        for value in wrong_types.iter().chain([&json!(""), &json!("   ")]) {
            // An empty filters object is no filter at all, so that one is valid.
            if field == "filters" && *value == json!({}) {
                continue;
            }
            let mut body = valid.clone();
            body[field] = value.clone();
            expect_invalid(&api, t, body, &[field]).await;
        }
    }
    for value in wrong_types.iter().chain([&json!(null)]) {
        let mut body = valid.clone();
        body["filters"] = json!({"dataset": value});
        expect_invalid(&api, t, body, &["filters"]).await;
    }

    // null is "not given": required fields are missing, optional ones absent.
    for field in ["topic", "address"] {
        let mut body = valid.clone();
        body[field] = Value::Null;
        let error = expect_invalid(&api, t, body, &[field]).await;
        assert_eq!(error[field], json!(["Missing value"]));
    }

    // The id of show and delete, and list's (absent) parameters.
    for action in ["webhook_show", "webhook_delete"] {
        for value in &wrong_types {
            let (status, response) = api.call(action, Some(t), json!({"id": value})).await;
            assert_eq!(status, 409, "{action} {value}: {response}");
            assert_eq!(response["help"], json!(help(action)));
            assert!(response["error"]["id"].is_array(), "{response}");
        }
    }
    let (status, response) = api
        .call("webhook_list", Some(t), json!({"all": true}))
        .await;
    assert_eq!(status, 409, "{response}");
    api.stop().await;
}

#[tokio::test]
async fn huge_strings_are_validation_errors() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let t = &alice.token;
    let huge = "a".repeat(60_000);

    let cases = [
        ("topic", json!({"topic": huge, "address": ADDRESS})),
        (
            "address",
            json!({"topic": "*", "address": format!("{ADDRESS}/{huge}")}),
        ),
        (
            "address",
            json!({"topic": "*", "address": format!("https://{}.example/", "a".repeat(300))}),
        ),
        (
            "secret",
            json!({"topic": "*", "address": ADDRESS, "secret": huge}),
        ),
        (
            "filters",
            json!({"topic": "*", "address": ADDRESS, "filters": {"dataset": huge}}),
        ),
        ("id", json!({"id": huge})),
    ];
    for (field, body) in cases {
        let action = if field == "id" {
            "webhook_show"
        } else {
            "webhook_create"
        };
        let (status, response) = api.call(action, Some(t), body).await;
        assert_eq!(status, if field == "id" { 404 } else { 409 }, "{field}");
        if field != "id" {
            assert!(response["error"][field].is_array(), "{field}: {response}");
            // The answer names the problem without echoing 60 kB back.
            assert!(response.to_string().len() < 2_000, "{field}");
        }
    }

    // A body over the limit is refused before it is parsed.
    let big = json!({"topic": "*", "address": ADDRESS, "secret": "s".repeat(70 * 1024)});
    let (status, response) = api.call("webhook_create", Some(t), big).await;
    assert_bad_request(status, &response);
    api.stop().await;
}

#[tokio::test]
async fn control_characters_never_reach_the_database() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let t = &alice.token;
    let secret = "0123456789abcdef";

    for (field, body) in [
        ("topic", json!({"topic": "*\u{0}", "address": ADDRESS})),
        (
            "address",
            json!({"topic": "*", "address": format!("{ADDRESS}\u{0}")}),
        ),
        (
            "secret",
            json!({"topic": "*", "address": ADDRESS, "secret": format!("{secret}\u{0}")}),
        ),
        (
            "secret",
            json!({"topic": "*", "address": ADDRESS, "secret": format!("{secret}\r\n")}),
        ),
        (
            "filters",
            json!({"topic": "*", "address": ADDRESS, "filters": {"dataset": "a\u{0}b"}}),
        ),
        (
            "filters",
            json!({"topic": "*", "address": ADDRESS, "filters": "{\"dataset\": \"a\\u0000\"}"}),
        ),
        (
            "filters",
            json!({"topic": "*", "address": ADDRESS, "filters": {"organization": "a\u{1b}[31m"}}),
        ),
    ] {
        expect_invalid(&api, t, body, &[field]).await;
    }

    // The same through a form post, where NUL arrives percent-encoded.
    let form = [
        ("authorization", alice.token.clone()),
        (
            "content-type",
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    let (status, response) = api
        .send(
            "POST",
            "/api/3/action/webhook_create",
            &form,
            "topic=*&address=https%3A%2F%2Fhooks.example.org%2F&secret=0123456789abcdef%00",
        )
        .await;
    assert_eq!(status, 409, "{response}");
    assert!(response["error"]["secret"].is_array());

    // Printable unicode is fine, in secrets and filters alike.
    let (status, response) = api
        .call(
            "webhook_create",
            Some(t),
            json!({
                "topic": "*",
                "address": ADDRESS,
                "secret": "ünïcødé-sêcret-🔑-long-enough",
                "filters": {"organization": "données-ouvertes", "dataset": "'; DROP TABLE x; --"},
            }),
        )
        .await;
    assert_eq!(status, 200, "{response}");
    api.stop().await;
}

#[tokio::test]
async fn sql_text_and_odd_ids_are_not_found() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;
    let t = &alice.token;
    let id = super::create(&api, t, super::hook("*")).await;

    let (_, reference) = api
        .call(
            "webhook_show",
            Some(t),
            json!({"id": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    for odd in [
        "' OR '1'='1".to_string(),
        "' OR 1=1 --".to_string(),
        format!("{id}' OR '1'='1"),
        "%".to_string(),
        "_".repeat(32),
        id[..31].to_string(),
        format!("{id}0"),
        id.to_uppercase(),
        format!(" {id}"),
        format!("{id}\u{0}"),
        "\u{0}".repeat(32),
        "é".repeat(16),
    ] {
        for action in ["webhook_show", "webhook_delete"] {
            let (status, response) = api.call(action, Some(t), json!({"id": odd})).await;
            assert_eq!(status, 404, "{odd:?}: {response}");
            if action == "webhook_show" {
                assert_eq!(response, reference, "{odd:?}");
            }
        }
    }

    // The real hook is untouched.
    let (status, _) = api.call("webhook_show", Some(t), json!({"id": id})).await;
    assert_eq!(status, 200);
    api.stop().await;
}

#[tokio::test]
async fn oversized_and_slow_bodies_do_not_hold_the_server() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let api = ApiServer::start(&db).await;

    // A declared length far over the limit is answered without reading the body.
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let head = format!(
        "POST /api/3/action/webhook_create HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\
         content-type: application/json\r\ncontent-length: 1000000000\r\n\r\n{{",
        alice.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // A body that never arrives ends in a 400 too, instead of holding the connection.
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let head = format!(
        "POST /api/3/action/webhook_create HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"topic\"",
        alice.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Bad request: "), "{answer}");

    // The server still answers everyone else.
    let (status, _) = api
        .call("webhook_list", Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, 200);
    api.stop().await;
}

/// Reads from `stream` until the server closes it or a whole response head and some
/// body arrived; fails the test after 20 s.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut received = Vec::new();
    let read = async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
            let text = String::from_utf8_lossy(&received);
            if let Some(end) = text.find("\r\n\r\n") {
                if text.len() > end + 4 {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the API answers within 20 s");
    String::from_utf8_lossy(&received).into_owned()
}
