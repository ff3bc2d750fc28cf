//! The side schema in a second database: CKAN's database is only read, by a role with
//! SELECT alone, through postgres_fdw; webhooks still arrive, and CKAN's columns moving
//! under a running service break nothing.

use crate::support::ckan_users;
use crate::support::db::{Schema, TestDb};
use crate::support::events::wait_for_baseline;
use crate::support::receiver::Receiver;
use crate::support::service::{self, TestService};
use ckan_webhooks::{install, state_db, store};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_read_only_ckan_database_gets_webhooks_through_a_state_database() {
    let ckan = TestDb::create(Schema::Core, false).await.unwrap();
    let state = TestDb::create(Schema::Empty, false).await.unwrap();
    let admin = ckan.client().await;

    // A role that may only read CKAN's tables.
    let reader = format!("ckwh_ro_{:08x}", rand::random::<u32>());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {reader} LOGIN;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};"
        ))
        .await
        .unwrap();
    let (base, name) = ckan.url.rsplit_once('/').unwrap();
    let (scheme, rest) = base.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let reader_url = format!("{scheme}://{reader}@{host}/{name}");

    let mut state_client = state.client().await;
    state_db::attach(&mut state_client, &reader_url)
        .await
        .unwrap();
    install::install_with(&mut state_client, false)
        .await
        .unwrap();
    assert!(state_db::is_state_database(&state_client).await.unwrap());
    // The CKAN release is told through the foreign tables as from CKAN's database.
    assert_eq!(
        ckan_webhooks::store::users::ckan_release_line(&state_client)
            .await
            .unwrap(),
        Some("2.12")
    );

    // Attaching again to the same CKAN is fine; to another one is refused.
    state_db::attach(&mut state_client, &reader_url)
        .await
        .unwrap();
    let other = reader_url.replace(&format!("/{name}"), "/postgres");
    let refused = state_db::attach(&mut state_client, &other)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("already follows"), "{refused}");

    // Nothing of ours in CKAN's database, and the reader cannot write there.
    let ours: Option<String> = admin
        .query_one("SELECT to_regnamespace('ckan_webhooks')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ours, None);
    let as_reader = store::connect(&reader_url).await.unwrap();
    let refused = as_reader
        .batch_execute("INSERT INTO package (id, name) VALUES ('x', 'x')")
        .await;
    assert!(refused.is_err());

    // The user and token live in CKAN's database; the hook in the state database.
    let dev = ckan_users::user(&admin, "statedev", false).await;
    let receiver = Receiver::start().await;
    let mut config = service::config(&state);
    config.capture.poll_cycle = Duration::from_millis(100);
    let running = TestService::start_with(config).await;
    running.subscribe(&dev, "dataset/*", &receiver.url()).await;
    wait_for_baseline(&state_client).await;

    admin
        .batch_execute(
            "INSERT INTO package (id, name, title, type, private, state, metadata_modified)
             VALUES ('s1', 'state-one', 'One', 'dataset', false, 'active', now());",
        )
        .await
        .unwrap();
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["topic"], "dataset/create");
    assert_eq!(got[0].json()["entity"]["name"], "state-one");

    // CKAN's schema moves under the service: a renamed column is re-imported.
    admin
        .batch_execute(
            "ALTER TABLE package RENAME COLUMN notes TO description;
             UPDATE package SET title = 'Two', metadata_modified = now() WHERE id = 's1';",
        )
        .await
        .unwrap();
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["topic"], "dataset/update");
    assert_eq!(got[1].json()["changes"], serde_json::json!(["title"]));
    running.stop().await;
    admin
        .batch_execute(&format!("DROP OWNED BY {reader}; DROP ROLE {reader};"))
        .await
        .ok();
}
