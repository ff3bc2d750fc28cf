//! The watcher on a real database: NOTIFY wakes it, a killed LISTEN connection loses
//! nothing, and two watchers never derive one transaction twice.

use crate::support::db::TestDb;
use ckan_webhooks::{store, watch};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

async fn count_events(client: &tokio_postgres::Client, topic: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM ckan_webhooks.event WHERE topic = $1",
            &[&topic],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits until `topic` has `n` events, or panics after `limit`.
async fn wait_events(client: &tokio_postgres::Client, topic: &str, n: i64, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let have = count_events(client, topic).await;
        if have >= n {
            assert_eq!(have, n, "more {topic} events than expected");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {have} of {n} {topic} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start_watch(
    db: &TestDb,
    poll: Duration,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let pool = store::pool(&db.url, 3).unwrap();
    let url = db.url.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        watch::run(
            pool,
            url,
            poll,
            watch::Options {
                listen: true,
                ..Default::default()
            },
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            shutdown,
        )
        .await
        .unwrap();
    })
}

async fn listen_pid(client: &tokio_postgres::Client, db: &str) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
            &[&db],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

async fn wait_listening(client: &tokio_postgres::Client, db: &str) -> i32 {
    for _ in 0..200 {
        if let Some(pid) = listen_pid(client, db).await {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the watcher never listened");
}

async fn seed(client: &tokio_postgres::Client, n: usize) {
    let mut sql = String::from("BEGIN;");
    for i in 0..n {
        sql.push_str(&format!(
            "INSERT INTO package (id, name, state, private, type) VALUES ('p{i}', 'p{i}', 'active', false, 'dataset');"
        ));
    }
    sql.push_str("COMMIT;");
    client.batch_execute(&sql).await.unwrap();
}

/// With a one-hour timer, only NOTIFY can wake the watcher: a change is derived quickly.
#[tokio::test]
async fn notify_wakes_the_watcher() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let shutdown = CancellationToken::new();
    let task = start_watch(&db, Duration::from_secs(3600), &shutdown);
    wait_listening(&client, &db.name).await;

    seed(&client, 3).await;
    wait_events(&client, "dataset/create", 3, Duration::from_secs(10)).await;
    shutdown.cancel();
    task.await.unwrap();
}

/// Case "listener reconnect": the LISTEN connection is terminated, 50 datasets are
/// updated (two of them twice in one transaction) before it reconnects; every change
/// is derived once.
#[tokio::test]
async fn killed_listen_connection_loses_nothing() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    seed(&client, 50).await;
    let shutdown = CancellationToken::new();
    let task = start_watch(&db, Duration::from_secs(3600), &shutdown);
    wait_events(&client, "dataset/create", 50, Duration::from_secs(10)).await;

    let pid = wait_listening(&client, &db.name).await;
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    for i in 0..48 {
        client
            .batch_execute(&format!("UPDATE package SET title = 'a' WHERE id = 'p{i}'"))
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "BEGIN;
             UPDATE package SET title = 'b' WHERE id = 'p48';
             UPDATE package SET title = 'c' WHERE id = 'p48';
             UPDATE package SET title = 'b' WHERE id = 'p49';
             UPDATE package SET notes = 'c' WHERE id = 'p49';
             COMMIT;",
        )
        .await
        .unwrap();

    wait_events(&client, "dataset/update", 50, Duration::from_secs(20)).await;
    let left: i64 = client
        .query_one("SELECT count(*) FROM ckan_webhooks.change", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the change log is consumed");
    shutdown.cancel();
    task.await.unwrap();
}

/// Two watchers on one database: every transaction becomes events exactly once.
#[tokio::test]
async fn two_watchers_derive_each_transaction_once() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let shutdown = CancellationToken::new();
    let a = start_watch(&db, Duration::from_millis(20), &shutdown);
    let b = start_watch(&db, Duration::from_millis(20), &shutdown);

    for i in 0..40 {
        client
            .batch_execute(&format!(
                "INSERT INTO package (id, name, state, private, type) VALUES ('q{i}', 'q{i}', 'active', false, 'dataset')"
            ))
            .await
            .unwrap();
    }
    wait_events(&client, "dataset/create", 40, Duration::from_secs(20)).await;
    // A little longer: a duplicate would show up now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count_events(&client, "dataset/create").await, 40);
    shutdown.cancel();
    a.await.unwrap();
    b.await.unwrap();
}
