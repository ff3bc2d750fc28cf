//! End to end: SQL written the way CKAN writes it → capture → derivation → delivery to
//! a recording receiver, with the payload and signature checked; restarts; filters.

use crate::support::db::TestDb;
use crate::support::receiver::{Receiver, Recorded};
use crate::support::service::{self, app_developer, TestService, SITE_URL};
use ckan_webhooks::sign;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Waits until `sql` (a count) answers `expected`, or panics after [`WAIT`]: the
/// receiver sees a request before the service records its outcome.
async fn wait_count(client: &tokio_postgres::Client, sql: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let have: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
        if have == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {have}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn topics(got: &[Recorded]) -> Vec<(String, String)> {
    got.iter()
        .map(|r| {
            let body = r.json();
            (
                body["topic"].as_str().unwrap().into(),
                body["entity"]["id"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Checks the Standard Webhooks headers against the hook's secret.
fn assert_signed(recorded: &Recorded, secret: &str) {
    let id = recorded.header("webhook-id").expect("webhook-id");
    let ts: i64 = recorded
        .header("webhook-timestamp")
        .expect("webhook-timestamp")
        .parse()
        .unwrap();
    let expected = sign::signature(secret, id, ts, &recorded.body);
    let given = recorded
        .header("webhook-signature")
        .expect("webhook-signature");
    assert!(
        given.split(' ').any(|s| s == expected),
        "signature {given} != {expected}"
    );
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
}

#[tokio::test]
async fn sql_change_becomes_a_signed_webhook_with_the_full_payload() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    let service = TestService::start(&db).await;
    let dev = app_developer(&db).await;
    let (hook, secret) = service.subscribe(&dev, "*", &receiver.url()).await;

    client
        .batch_execute(
            "INSERT INTO \"group\" (id, name, type, is_organization, state) VALUES ('org', 'org', 'organization', true, 'active');
             BEGIN;
             INSERT INTO package (id, name, title, type, owner_org, private, state, metadata_modified, plugin_data)
             VALUES ('p1', 'air', 'Air', 'harvest', 'org', false, 'active', now(), '{\"internal\": 1}');
             INSERT INTO resource (id, package_id, url, format, position, state) VALUES ('r1', 'p1', 'http://x/a.csv', 'CSV', 0, 'active');
             UPDATE package SET metadata_modified = now() WHERE id = 'p1';
             COMMIT;
             BEGIN;
             UPDATE package SET title = 'Air quality' WHERE id = 'p1';
             UPDATE package SET metadata_modified = now() WHERE id = 'p1';
             COMMIT;",
        )
        .await
        .unwrap();

    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(
        topics(&got),
        vec![
            ("dataset/create".into(), "p1".into()),
            ("resource/create".into(), "r1".into()),
            ("dataset/update".into(), "p1".into())
        ]
    );
    let ids: HashSet<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "one webhook-id per delivery");
    for recorded in &got {
        assert_eq!(recorded.method, "POST");
        assert_eq!(recorded.header("content-type"), Some("application/json"));
        assert_signed(recorded, &secret);
    }

    let create = got[0].json();
    assert_eq!(create["webhook_id"], hook.as_str());
    assert_eq!(create["user_ref"], dev.id.as_str());
    assert_eq!(create["address"], receiver.url().as_str());
    assert_eq!(create["ckan"], SITE_URL);
    assert_eq!(create["dataset_id"], "p1");
    assert_eq!(create["organization_id"], "org");
    assert_eq!(create["dataset_type"], "harvest");
    assert_eq!(create["entity"]["name"], "air");
    assert!(
        create["entity"].get("plugin_data").is_none(),
        "internal column leaked"
    );
    assert!(create.get("changes").is_none());
    assert_eq!(create["id"].as_str().unwrap().len(), 32);
    chrono::DateTime::parse_from_rfc3339(create["occurred_at"].as_str().unwrap()).unwrap();

    let resource = got[1].json();
    assert_eq!(resource["entity"]["format"], "CSV");
    assert_eq!(resource["dataset_id"], "p1");
    let update = got[2].json();
    assert_eq!(update["changes"], json!(["title"]));
    assert_eq!(update["entity"]["title"], "Air quality");

    wait_count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'delivered'",
        3,
    )
    .await;

    // /metrics reports the same state, in Prometheus text.
    let metrics = metrics_text(service.addr).await;
    assert!(
        metrics.contains("ckan_webhooks_deliveries{status=\"delivered\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ckan_webhooks_change_backlog 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ckan_webhooks_capture_triggers 12\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ckan_webhooks_subscriptions{state=\"active\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ckan_webhooks_delivery_latency_ms{quantile=\"0.5\"}"),
        "{metrics}"
    );
    service.stop().await;
}

/// GET /metrics as text.
async fn metrics_text(addr: std::net::SocketAddr) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get("/metrics")
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Case "huge text": 20 KB of notes and a 2 000-character title of four-byte
/// characters; CKAN's write succeeds and the body carries the full text.
#[tokio::test]
async fn huge_text_arrives_whole() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    let service = TestService::start(&db).await;
    let dev = app_developer(&db).await;
    service
        .subscribe(&dev, "dataset/create", &receiver.url())
        .await;

    let notes = "n".repeat(20 * 1024);
    let title = "𝔸".repeat(2000);
    client
        .execute(
            "INSERT INTO package (id, name, title, notes, type, private, state) VALUES ('big', 'big', $1, $2, 'dataset', false, 'active')",
            &[&title, &notes],
        )
        .await
        .unwrap();
    let got = receiver.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["entity"]["title"].as_str().unwrap(), title);
    assert_eq!(body["entity"]["notes"].as_str().unwrap().len(), 20 * 1024);
    service.stop().await;
}

/// A private dataset's webhooks reach a member of its organization, in order, and
/// nothing of it reaches an outsider.
#[tokio::test]
async fn private_datasets_reach_members_only() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let member_receiver = Receiver::start().await;
    let outsider_receiver = Receiver::start().await;
    let service = TestService::start(&db).await;
    let member = app_developer(&db).await;
    let outsider = app_developer(&db).await;
    client
        .execute(
            "INSERT INTO \"group\" (id, name, type, is_organization, state)
             VALUES ('org-e2e', 'org-e2e', 'organization', true, 'active');",
            &[],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO member (id, group_id, table_id, table_name, capacity, state)
             VALUES ('mem-e2e', 'org-e2e', $1, 'user', 'member', 'active')",
            &[&member.id],
        )
        .await
        .unwrap();
    service
        .subscribe(&member, "*", &member_receiver.url())
        .await;
    service
        .subscribe(&outsider, "*", &outsider_receiver.url())
        .await;

    // Each statement is its own transaction, as separate CKAN actions are.
    for sql in [
        "INSERT INTO package (id, name, type, owner_org, private, state) VALUES ('secret', 'secret', 'dataset', 'org-e2e', true, 'active')",
        "INSERT INTO resource (id, package_id, url, state) VALUES ('sr', 'secret', 'u', 'active')",
        "UPDATE package SET title = 'still secret' WHERE id = 'secret'",
        "UPDATE resource SET url = 'v' WHERE id = 'sr'",
        "UPDATE package SET state = 'deleted' WHERE id = 'secret'",
        "INSERT INTO package (id, name, type, private, state) VALUES ('marker', 'marker', 'dataset', false, 'active')",
    ] {
        client.batch_execute(sql).await.unwrap();
    }

    // The member hears everything, in order per dataset.
    let got = member_receiver.wait_for(9, WAIT).await;
    let secret: Vec<(String, String)> = topics(&got)
        .into_iter()
        .filter(|(_, id)| id != "marker")
        .collect();
    let expected: Vec<(String, String)> = [
        ("dataset/create", "secret"),
        ("resource/create", "sr"),
        ("dataset/update", "secret"),
        ("dataset/update", "secret"),
        ("resource/update", "sr"),
        ("dataset/update", "secret"),
        ("resource/delete", "sr"),
        ("dataset/delete", "secret"),
    ]
    .iter()
    .map(|(t, id)| (t.to_string(), id.to_string()))
    .collect();
    assert_eq!(secret, expected);
    assert!(got
        .iter()
        .all(|r| r.json()["user_ref"] == member.id.as_str()));

    // Transactions are derived in commit order: once the marker arrives, anything the
    // private dataset gave the outsider would have been recorded before it.
    let got = outsider_receiver.wait_for(1, WAIT).await;
    assert_eq!(
        topics(&got),
        vec![("dataset/create".into(), "marker".into())]
    );
    for (owner, expected) in [(&outsider, 1), (&member, 9)] {
        let deliveries: i64 = client
            .query_one(
                "SELECT count(*) FROM ckan_webhooks.delivery d
                 JOIN ckan_webhooks.subscription s ON s.id = d.subscription_id
                 WHERE s.owner_id = $1",
                &[&owner.id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(deliveries, expected, "deliveries to {}", owner.name);
    }
    service.stop().await;
}

/// Topics and filters decide who gets what; a deleted hook gets nothing more.
#[tokio::test]
async fn topics_and_filters_route_events() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let deletes = Receiver::start().await;
    let one_dataset = Receiver::start().await;
    let csv = Receiver::start().await;
    let removed = Receiver::start().await;
    let service = TestService::start(&db).await;
    let dev = app_developer(&db).await;

    service
        .subscribe(&dev, "dataset/delete", &deletes.url())
        .await;
    let (status, body) = service
        .call(
            "webhook_create",
            &dev,
            json!({"topic": "*", "address": one_dataset.url(), "filters": {"dataset": "b"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = service
        .call(
            "webhook_create",
            &dev,
            json!({"topic": "resource/*", "address": csv.url(), "filters": {"resource_format": "csv"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (gone, _) = service.subscribe(&dev, "*", &removed.url()).await;
    let (status, _) = service
        .call("webhook_delete", &dev, json!({"id": gone}))
        .await;
    assert_eq!(status, 200);

    for sql in [
        "INSERT INTO package (id, name, type, private, state) VALUES ('a', 'a', 'dataset', false, 'active'), ('b', 'b', 'dataset', false, 'active')",
        "INSERT INTO resource (id, package_id, url, format, state) VALUES ('ra', 'a', 'u', 'CSV', 'active'), ('rb', 'b', 'u', 'JSON', 'active')",
        "UPDATE package SET state = 'deleted' WHERE id IN ('a', 'b')",
    ] {
        client.batch_execute(sql).await.unwrap();
    }

    let got = deletes.wait_for(2, WAIT).await;
    let mut deleted = topics(&got);
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            ("dataset/delete".into(), "a".into()),
            ("dataset/delete".into(), "b".into())
        ]
    );
    let got = one_dataset.wait_for(5, WAIT).await;
    assert!(
        got.iter().all(|r| r.json()["dataset_id"] == "b"),
        "{:?}",
        topics(&got)
    );
    let got = csv.wait_for(2, WAIT).await;
    assert_eq!(
        topics(&got),
        vec![
            ("resource/create".into(), "ra".into()),
            ("resource/delete".into(), "ra".into())
        ]
    );
    // Everything is delivered by now; the deleted hook's receiver saw nothing.
    wait_count(
        &client,
        "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'pending'",
        0,
    )
    .await;
    assert!(removed.recorded().is_empty());
    assert_eq!(deletes.recorded().len(), 2);
    assert_eq!(one_dataset.recorded().len(), 5);
    service.stop().await;
}

/// The service is stopped while changes are being written, then started again: every
/// event is delivered, none twice.
#[tokio::test]
async fn restart_while_writing_loses_and_repeats_nothing() {
    let db = TestDb::installed().await;
    let receiver = Receiver::start().await;
    let first = TestService::start(&db).await;
    let dev = app_developer(&db).await;
    first
        .subscribe(&dev, "dataset/create", &receiver.url())
        .await;

    let writer_db_url = db.url.clone();
    let writer = tokio::spawn(async move {
        let (client, conn) = tokio_postgres::connect(&writer_db_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        for i in 0..100 {
            client
                .batch_execute(&format!(
                    "INSERT INTO package (id, name, type, private, state) VALUES ('w{i}', 'w{i}', 'dataset', false, 'active')"
                ))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    // Stop once some have arrived, while the writer is still going.
    receiver.wait_for(10, WAIT).await;
    first.stop().await;
    let at_stop = receiver.recorded().len();
    writer.await.unwrap();
    assert!(
        at_stop < 100,
        "the writer should still have been writing at the stop"
    );

    let second = TestService::start_with(service::config(&db)).await;
    let got = receiver.wait_for(100, Duration::from_secs(60)).await;
    let mut per_dataset: HashMap<String, usize> = HashMap::new();
    for recorded in &got {
        *per_dataset
            .entry(recorded.json()["dataset_id"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(per_dataset.len(), 100, "every dataset's webhook arrived");
    assert!(
        per_dataset.values().all(|n| *n == 1),
        "a webhook arrived twice: {per_dataset:?}"
    );
    second.stop().await;
}
