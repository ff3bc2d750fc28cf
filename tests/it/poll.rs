//! Poll mode and reconciliation beyond the trace replay (tests/it/capture.rs runs every
//! CKAN shape in both modes): the service in poll mode end to end, across a restart and
//! with two instances; reconciliation delivering what capture missed, once; CKAN 2.8's
//! revisions; and CKAN's schema changing under a running service.

use crate::support::db::{Schema, TestDb};
use crate::support::events::{self, ev, wait_for_baseline};
use crate::support::receiver::Receiver;
use crate::support::service::{self, app_developer, TestService};
use ckan_webhooks::audience::Class;
use ckan_webhooks::config::Mode;
use ckan_webhooks::poll::{self, Purpose};
use ckan_webhooks::{install, store, watch};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The events recorded since the last call, as (topic, entity id) for outsiders.
async fn take_events(client: &tokio_postgres::Client) -> Vec<(String, String)> {
    events::take_scoped(client)
        .await
        .into_iter()
        .filter(|(_, _, audience)| audience & Class::OUTSIDER.bit() != 0)
        .map(|(t, id, _)| (t, id))
        .collect()
}

/// A database installed without triggers, as a role that may not create them would.
async fn untriggered() -> TestDb {
    let db = TestDb::installed().await;
    let mut client = db.client().await;
    install::uninstall(&mut client, false).await.unwrap();
    assert!(install::captured_tables(&client).await.unwrap().is_empty());
    db
}

const NEW_DATASET: &str = "BEGIN;
    INSERT INTO package (id, name, type, private, state, metadata_modified)
    VALUES ('{id}', '{id}', 'dataset', false, 'active', clock_timestamp());
    INSERT INTO resource (id, package_id, url, position, state, metadata_modified)
    VALUES ('{id}-r', '{id}', 'http://x/{id}', 0, 'active', clock_timestamp());
    COMMIT;";

fn new_dataset(id: &str) -> String {
    NEW_DATASET.replace("{id}", id)
}

#[tokio::test]
async fn poll_mode_delivers_and_resumes_after_a_restart() {
    let db = untriggered().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    let mut config = service::config(&db);
    config.capture.mode = Mode::Auto;
    let first = TestService::start_with(config.clone()).await;
    let dev = app_developer(&db).await;
    first.subscribe(&dev, "dataset/*", &receiver.url()).await;

    // The first pass takes the baseline; wait for it before writing.
    wait_for_baseline(&client).await;
    client.batch_execute(&new_dataset("a")).await.unwrap();
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["topic"], "dataset/create");
    assert_eq!(got[0].json()["entity"]["id"], "a");
    first.stop().await;

    // Changes made while no instance runs arrive after the restart, once each.
    client
        .batch_execute(
            "UPDATE package SET title = 'A', metadata_modified = clock_timestamp() WHERE id = 'a';",
        )
        .await
        .unwrap();
    client.batch_execute(&new_dataset("b")).await.unwrap();
    let second = TestService::start_with(config).await;
    let got = receiver.wait_for(3, WAIT).await;
    let mut seen: Vec<(String, String)> = got[1..]
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["topic"].as_str().unwrap().to_string(),
                body["entity"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        ev(&[("dataset/create", "b"), ("dataset/update", "a")])
    );
    let update = got[1..]
        .iter()
        .map(|r| r.json())
        .find(|b| b["topic"] == "dataset/update")
        .unwrap();
    assert_eq!(update["changes"], serde_json::json!(["title"]));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.recorded().len(), 3, "nothing twice");

    // A soft delete shows the dataset as it was, as trigger mode does.
    client
        .batch_execute("UPDATE package SET state = 'deleted' WHERE id = 'b';")
        .await
        .unwrap();
    let got = receiver.wait_for(4, WAIT).await;
    assert_eq!(got[3].json()["topic"], "dataset/delete");
    assert_eq!(got[3].json()["entity"]["state"], "active");
    second.stop().await;
}

#[tokio::test]
async fn two_polling_instances_deliver_each_change_once() {
    let db = untriggered().await;
    let client = db.client().await;
    let receiver = Receiver::start().await;
    let mut config = service::config(&db);
    config.capture.mode = Mode::Poll;
    config.capture.poll_cycle = Duration::from_millis(50);
    let one = TestService::start_with(config.clone()).await;
    let two = TestService::start_with(config).await;
    let dev = app_developer(&db).await;
    one.subscribe(&dev, "dataset/create", &receiver.url()).await;
    wait_for_baseline(&client).await;

    for i in 0..40 {
        client
            .batch_execute(&new_dataset(&format!("d{i:02}")))
            .await
            .unwrap();
    }
    let got = receiver.wait_for(40, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in receiver.recorded() {
        *count
            .entry(r.json()["entity"]["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(got.len(), 40);
    assert_eq!(count.len(), 40);
    assert!(count.values().all(|n| *n == 1), "{count:?}");
    one.stop().await;
    two.stop().await;
}

/// Derives as trigger mode with reconciliation does: the shadow follows what capture
/// delivered.
async fn derive(db: &TestDb) {
    let pool = store::pool(&db.url, 2).unwrap();
    let options = watch::Options {
        refresh_shadow: true,
        ..Default::default()
    };
    watch::derive_pending(&pool, &options).await.unwrap();
    watch::refresh_shadow(&pool).await.unwrap();
}

#[tokio::test]
async fn reconciliation_delivers_what_capture_missed_and_nothing_twice() {
    let db = TestDb::installed().await;
    let mut client = db.client().await;
    let first = poll::pass(&mut client, Purpose::Reconcile).await.unwrap();
    assert!(first.baseline.is_some());

    // Captured and delivered: reconciliation must not repeat it.
    client.batch_execute(&new_dataset("a")).await.unwrap();
    derive(&db).await;
    assert_eq!(
        take_events(&client).await,
        ev(&[("dataset/create", "a"), ("resource/create", "a-r")])
    );
    let pass = poll::pass(&mut client, Purpose::Reconcile).await.unwrap();
    assert_eq!(pass.changes, 0, "{pass:?}");

    // Triggers dropped and re-installed: what happened in between was missed.
    install::uninstall(&mut client, false).await.unwrap();
    client
        .batch_execute(
            "UPDATE package SET title = 'missed', metadata_modified = clock_timestamp()
             WHERE id = 'a';",
        )
        .await
        .unwrap();
    client.batch_execute(&new_dataset("b")).await.unwrap();
    install::install(&mut client).await.unwrap();

    // A change captured but not derived yet is left to capture.
    client
        .batch_execute(
            "UPDATE package SET notes = 'captured', metadata_modified = clock_timestamp()
             WHERE id = 'a';",
        )
        .await
        .unwrap();
    let pass = poll::pass(&mut client, Purpose::Reconcile).await.unwrap();
    assert_eq!(pass.pending, 1, "{pass:?}");
    derive(&db).await;
    let mut events = take_events(&client).await;
    events.sort();
    assert_eq!(
        events,
        ev(&[
            ("dataset/create", "b"),
            ("dataset/update", "a"),
            ("resource/create", "b-r")
        ])
    );

    // Derived but not yet refreshed: the mark keeps reconciliation off it.
    client.batch_execute(&new_dataset("c")).await.unwrap();
    let pool = store::pool(&db.url, 2).unwrap();
    let options = watch::Options {
        refresh_shadow: true,
        ..Default::default()
    };
    watch::derive_pending(&pool, &options).await.unwrap();
    assert_eq!(take_events(&client).await.len(), 2);
    let pass = poll::pass(&mut client, Purpose::Reconcile).await.unwrap();
    assert_eq!((pass.changes, pass.pending), (0, 1), "{pass:?}");
    assert_eq!(watch::refresh_shadow(&pool).await.unwrap(), 1);

    // Now only the missed dataset b... which reconciliation already delivered, and a,
    // whose captured change carried the missed title along: nothing is left.
    let pass = poll::pass(&mut client, Purpose::Reconcile).await.unwrap();
    derive(&db).await;
    assert_eq!(pass.changes, 0, "{pass:?}");
    assert_eq!(take_events(&client).await, ev(&[]));
}

#[tokio::test]
async fn ckan_28_revisions_are_read_past_the_watermark() {
    let Some(db) = TestDb::create(Schema::Real("2.8.12"), true).await else {
        eprintln!("skipped: ../shared/ckan/schema-2.8.12.sql is absent");
        return;
    };
    let mut client = db.client().await;
    install::uninstall(&mut client, false).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO revision (id, timestamp, state) VALUES ('rev1', now(), 'active');
             INSERT INTO package (id, name, title, type, private, state, revision_id,
                                  metadata_modified)
             VALUES ('p', 'p', 'P', 'dataset', false, 'active', 'rev1', now());
             INSERT INTO package_revision (id, name, title, type, private, state, revision_id,
                                           continuity_id, metadata_modified)
             VALUES ('p', 'p', 'P', 'dataset', false, 'active', 'rev1', 'p', now());",
        )
        .await
        .unwrap();
    assert!(poll::pass(&mut client, Purpose::Poll)
        .await
        .unwrap()
        .baseline
        .is_some());

    // A revision that changed the title but, unlike package_update, not
    // metadata_modified: only the revision tables tell.
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO revision (id, timestamp, state) VALUES ('rev2', now(), 'active');
             UPDATE package SET title = 'P2', revision_id = 'rev2' WHERE id = 'p';
             INSERT INTO package_revision (id, name, title, type, private, state, revision_id,
                                           continuity_id, metadata_modified)
             SELECT 'p', name, title, type, private, state, 'rev2', 'p', metadata_modified
             FROM package WHERE id = 'p';
             COMMIT;",
        )
        .await
        .unwrap();
    let pass = poll::pass(&mut client, Purpose::Poll).await.unwrap();
    assert_eq!(pass.moved, 1, "{pass:?}");
    derive(&db).await;
    assert_eq!(take_events(&client).await, ev(&[("dataset/update", "p")]));
    let changes: serde_json::Value = client
        .query_one(
            "SELECT value FROM ckan_webhooks.poll_state WHERE name = 'revision_watermark'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(changes.is_string(), "{changes}");
}

#[tokio::test]
async fn schema_changes_break_no_write_and_lose_no_event_in_either_mode() {
    for mode in [Purpose::Reconcile, Purpose::Poll] {
        let db = TestDb::installed().await;
        let mut client = db.client().await;
        if mode == Purpose::Poll {
            install::uninstall(&mut client, false).await.unwrap();
        }
        poll::pass(&mut client, mode).await.unwrap();
        client.batch_execute(&new_dataset("s")).await.unwrap();
        poll::pass(&mut client, mode).await.unwrap();
        derive(&db).await;
        assert_eq!(
            take_events(&client).await,
            ev(&[("dataset/create", "s"), ("resource/create", "s-r")]),
            "{mode:?}"
        );

        // Added, renamed and dropped columns on both tables, then CKAN writes.
        client
            .batch_execute(
                "ALTER TABLE package ADD COLUMN extra_note text;
                 ALTER TABLE package RENAME COLUMN notes TO description;
                 ALTER TABLE resource DROP COLUMN mimetype;
                 ALTER TABLE resource ADD COLUMN checksum text;",
            )
            .await
            .unwrap();
        client
            .batch_execute(
                "UPDATE package SET title = 'after', extra_note = 'n',
                        metadata_modified = clock_timestamp() WHERE id = 's';
                 UPDATE resource SET checksum = 'c', metadata_modified = clock_timestamp()
                 WHERE id = 's-r';",
            )
            .await
            .unwrap();
        client.batch_execute(&new_dataset("t")).await.unwrap();
        poll::pass(&mut client, mode).await.unwrap();
        derive(&db).await;
        let mut events = take_events(&client).await;
        events.sort();
        // One transaction (a multi-statement query is one) changing s and its resource.
        let expected = ev(&[
            ("dataset/create", "t"),
            ("dataset/update", "s"),
            ("resource/create", "t-r"),
            ("resource/update", "s-r"),
        ]);
        assert_eq!(events, expected, "{mode:?}");
        let pass = poll::pass(&mut client, mode).await.unwrap();
        assert_eq!(pass.changes, 0, "{mode:?}: {pass:?}");
    }
}
