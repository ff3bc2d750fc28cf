//! The statement shapes of each CKAN action in ../shared/ckan/trace.md (CKAN 2.12, and
//! the ≤ 2.11 shapes on the real 2.11 schema) replayed through the capture triggers and
//! the deriver, with the exact events each must produce; and the same again in poll
//! mode, where a pass against the shadow replaces the triggers.

use crate::support::db::{Schema, TestDb};
use crate::support::events::{self, ev};
use ckan_webhooks::audience::Class;
use ckan_webhooks::{install, poll, store, watch};

/// How the lab database captures CKAN's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// The capture triggers.
    Trigger,
    /// No triggers: one poll pass after each step.
    Poll,
}

/// A database with CKAN's schema, capturing one way.
struct Lab {
    db: TestDb,
    capture: Capture,
}

impl Lab {
    /// Takes `db` (installed with triggers); for poll mode drops the triggers and takes
    /// the baseline of what is there now.
    async fn new(db: TestDb, capture: Capture) -> Lab {
        if capture == Capture::Poll {
            let mut client = db.client().await;
            install::uninstall(&mut client, false).await.unwrap();
            let pass = poll::pass(&mut client, poll::Purpose::Poll).await.unwrap();
            assert!(pass.baseline.is_some(), "the first pass takes the baseline");
        }
        Lab { db, capture }
    }
}

/// Runs `sql` (one CKAN transaction or several), derives, and returns the new events
/// as (topic, entity id, audience) in order.
async fn step_scoped(lab: &Lab, sql: &str) -> Vec<(String, String, i16)> {
    let db = &lab.db;
    let mut client = db.client().await;
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    if lab.capture == Capture::Poll {
        poll::pass(&mut client, poll::Purpose::Poll).await.unwrap();
    }
    let pool = store::pool(&db.url, 2).unwrap();
    watch::derive_pending(&pool, &watch::Options::default())
        .await
        .unwrap();
    events::take_scoped(&client).await
}

/// Runs `sql` and returns the new events that someone who reads no private dataset
/// receives, as (topic, entity id) in order.
async fn step(lab: &Lab, sql: &str) -> Vec<(String, String)> {
    step_scoped(lab, sql)
        .await
        .into_iter()
        .filter(|(_, _, audience)| audience & Class::OUTSIDER.bit() != 0)
        .map(|(t, id, _)| (t, id))
        .collect()
}

const NEW_PUBLIC: &str = "BEGIN;
INSERT INTO package (id, name, type, owner_org, private, state, metadata_created, metadata_modified, extras)
VALUES ('pub', 'lab-public', 'dataset', 'org', false, 'active', now(), now(), '{\"k1\": \"v1\"}');
INSERT INTO resource (id, package_id, url, position, name, state, created, metadata_modified)
VALUES ('r1', 'pub', 'http://x/1', 0, 'r1', 'active', now(), now()),
       ('r2', 'pub', 'http://x/2', 1, 'r2', 'active', now(), now());
INSERT INTO tag (id, name) VALUES ('t1', 'air'), ('t2', 'water');
INSERT INTO package_tag (id, package_id, tag_id, state) VALUES ('pt1', 'pub', 't1', 'active'), ('pt2', 'pub', 't2', 'active');
UPDATE package SET metadata_modified = now() WHERE id = 'pub';
INSERT INTO member (id, table_name, table_id, capacity, group_id, state) VALUES ('m1', 'package', 'pub', 'organization', 'org', 'active');
COMMIT;";

async fn ckan_212_db() -> TestDb {
    let db = TestDb::installed().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO \"group\" (id, name, type, is_organization, state) VALUES
               ('org', 'lab-org', 'organization', true, 'active'),
               ('org2', 'lab-org-2', 'organization', true, 'active'),
               ('grp', 'lab-group', 'group', false, 'active');",
        )
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn ckan_212_actions_give_the_exact_events() {
    ckan_212_actions(Lab::new(ckan_212_db().await, Capture::Trigger).await).await;
}

#[tokio::test]
async fn ckan_212_actions_in_poll_mode_give_the_same_events() {
    ckan_212_actions(Lab::new(ckan_212_db().await, Capture::Poll).await).await;
}

async fn ckan_212_actions(lab: Lab) {
    // 11. package_create (public, 2 resources, tags, extras)
    assert_eq!(
        step(&lab, NEW_PUBLIC).await,
        ev(&[
            ("dataset/create", "pub"),
            ("resource/create", "r1"),
            ("resource/create", "r2")
        ])
    );

    // 12. package_create (private=True, in org): nothing for outsiders; for those who
    // read it after (members of org, sysadmins), create then resource create.
    let private = "BEGIN;
        INSERT INTO package (id, name, type, owner_org, private, state, metadata_modified)
        VALUES ('priv', 'lab-private', 'dataset', 'org', true, 'active', now());
        INSERT INTO resource (id, package_id, url, position, state) VALUES ('p1', 'priv', 'u', 0, 'active');
        UPDATE package SET metadata_modified = now() WHERE id = 'priv';
        COMMIT;";
    let readers = Class::new(false, true).bit() | Class::READER.bit();
    assert_eq!(
        step_scoped(&lab, private).await,
        vec![
            ("dataset/create".to_string(), "priv".to_string(), readers),
            ("resource/create".to_string(), "p1".to_string(), readers)
        ]
    );

    // 14-16. UI draft flow: nothing until it goes active, then create + resources.
    let draft = "BEGIN;
        INSERT INTO package (id, name, type, owner_org, private, state, metadata_modified)
        VALUES ('draft', 'lab-draft', 'dataset', 'org', false, 'draft', now());
        UPDATE package SET metadata_modified = now() WHERE id = 'draft';
        COMMIT;";
    assert_eq!(step(&lab, draft).await, ev(&[]));
    let draft_resource = "BEGIN;
        INSERT INTO resource (id, package_id, url, position, name, state) VALUES ('d1', 'draft', 'u', 0, 'd1', 'active');
        UPDATE package SET metadata_modified = now() WHERE id = 'draft';
        COMMIT;";
    assert_eq!(step(&lab, draft_resource).await, ev(&[]));
    let activate = "BEGIN;
        UPDATE package SET state = 'active' WHERE id = 'draft';
        UPDATE package SET metadata_modified = now() WHERE id = 'draft';
        COMMIT;";
    assert_eq!(
        step(&lab, activate).await,
        ev(&[("dataset/create", "draft"), ("resource/create", "d1")])
    );

    // 17. resource_create
    let resource_create = "BEGIN;
        INSERT INTO resource (id, package_id, url, position, name, state) VALUES ('r3', 'pub', 'u', 2, 'r3', 'active');
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        COMMIT;";
    assert_eq!(
        step(&lab, resource_create).await,
        ev(&[("resource/create", "r3"), ("dataset/update", "pub")])
    );

    // 18. resource_update (url + description)
    let resource_update = "BEGIN;
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        UPDATE resource SET url = 'http://y', description = 'd', metadata_modified = now() WHERE id = 'r1';
        COMMIT;";
    assert_eq!(
        step(&lab, resource_update).await,
        ev(&[("resource/update", "r1"), ("dataset/update", "pub")])
    );

    // 20. package_resource_reorder: three position updates.
    let reorder = "BEGIN;
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        UPDATE resource SET position = 2 WHERE id = 'r1';
        UPDATE resource SET position = 0 WHERE id = 'r2';
        UPDATE resource SET position = 1 WHERE id = 'r3';
        COMMIT;";
    assert_eq!(
        step(&lab, reorder).await,
        ev(&[
            ("resource/update", "r1"),
            ("resource/update", "r2"),
            ("resource/update", "r3"),
            ("dataset/update", "pub")
        ])
    );

    // 21. package_update (title + notes): fields first, then metadata_modified.
    let update = "BEGIN;
        UPDATE package SET title = 'T', notes = 'N' WHERE id = 'pub';
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        COMMIT;";
    assert_eq!(step(&lab, update).await, ev(&[("dataset/update", "pub")]));

    // 22. package_patch (tags only): package_tag rows and a metadata_modified bump.
    let tags = "BEGIN;
        INSERT INTO tag (id, name) VALUES ('t3', 'soil');
        INSERT INTO package_tag (id, package_id, tag_id, state) VALUES ('pt3', 'pub', 't3', 'active');
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        COMMIT;";
    assert_eq!(step(&lab, tags).await, ev(&[("dataset/update", "pub")]));

    // 23. package_patch (extras only, 2.12: the extras column)
    let extras = "BEGIN;
        UPDATE package SET extras = '{\"k1\": \"v2\"}' WHERE id = 'pub';
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        COMMIT;";
    assert_eq!(step(&lab, extras).await, ev(&[("dataset/update", "pub")]));

    // A harvester re-saving an identical dataset: metadata_modified alone.
    let resave = "UPDATE package SET metadata_modified = now() WHERE id = 'pub';";
    assert_eq!(step(&lab, resave).await, ev(&[]));

    // 26. package_patch (private True -> False)
    let publish = "BEGIN;
        UPDATE package SET private = false WHERE id = 'priv';
        UPDATE package SET metadata_modified = now() WHERE id = 'priv';
        COMMIT;";
    assert_eq!(
        step(&lab, publish).await,
        ev(&[("dataset/create", "priv"), ("resource/create", "p1")])
    );

    // 27. package_patch resources=[] on the draft-born dataset.
    let drop_all = "BEGIN;
        UPDATE package SET metadata_modified = now() WHERE id = 'draft';
        UPDATE resource SET state = 'deleted' WHERE id = 'd1';
        COMMIT;";
    assert_eq!(
        step(&lab, drop_all).await,
        ev(&[("resource/delete", "d1"), ("dataset/update", "draft")])
    );

    // 28. bulk_update_private (2.12: one package_patch per dataset, one transaction each).
    // CKAN stamps each dataset in Python as it goes (poll mode orders by the stamp).
    let bulk_private = "BEGIN;
        UPDATE package SET private = true WHERE id = 'priv';
        UPDATE package SET metadata_modified = clock_timestamp() WHERE id = 'priv';
        COMMIT;
        BEGIN;
        UPDATE package SET private = true WHERE id = 'draft';
        UPDATE package SET metadata_modified = clock_timestamp() WHERE id = 'draft';
        COMMIT;";
    assert_eq!(
        step(&lab, bulk_private).await,
        ev(&[
            ("resource/delete", "p1"),
            ("dataset/delete", "priv"),
            ("dataset/delete", "draft")
        ])
    );

    // 30. member_create (dataset into group): only a member row.
    let group = "INSERT INTO member (id, table_name, table_id, capacity, group_id, state)
                 VALUES ('m2', 'package', 'pub', 'public', 'grp', 'active');";
    assert_eq!(step(&lab, group).await, ev(&[("dataset/update", "pub")]));

    // 31. package_collaborator_create: not captured, no event.
    let collaborator = "INSERT INTO \"user\" (id, name) VALUES ('u1', 'lab_orgadmin');
        INSERT INTO package_member (package_id, user_id, capacity, modified) VALUES ('pub', 'u1', 'editor', now());";
    assert_eq!(step(&lab, collaborator).await, ev(&[]));

    // 32. package_owner_org_update: owner_org and the organization member rows.
    let move_org = "BEGIN;
        UPDATE package SET owner_org = 'org2' WHERE id = 'pub';
        UPDATE member SET state = 'deleted' WHERE id = 'm1';
        INSERT INTO member (id, table_name, table_id, capacity, group_id, state) VALUES ('m3', 'package', 'pub', 'organization', 'org2', 'active');
        COMMIT;";
    assert_eq!(step(&lab, move_org).await, ev(&[("dataset/update", "pub")]));

    // 34. resource_delete
    let resource_delete = "BEGIN;
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        UPDATE resource SET state = 'deleted' WHERE id = 'r2';
        COMMIT;";
    assert_eq!(
        step(&lab, resource_delete).await,
        ev(&[("resource/delete", "r2"), ("dataset/update", "pub")])
    );

    // 35. resource_create that hard-deletes the soft-deleted one.
    let replace = "BEGIN;
        INSERT INTO resource (id, package_id, url, position, state) VALUES ('r4', 'pub', 'u', 3, 'active');
        DELETE FROM resource WHERE id = 'r2';
        UPDATE package SET metadata_modified = now() WHERE id = 'pub';
        COMMIT;";
    assert_eq!(
        step(&lab, replace).await,
        ev(&[("resource/create", "r4"), ("dataset/update", "pub")])
    );

    // 36-38. package_delete, undelete, delete again (on a public dataset).
    let new_other = "BEGIN;
        INSERT INTO package (id, name, type, owner_org, private, state) VALUES ('oth', 'other', 'dataset', 'org', false, 'active');
        INSERT INTO resource (id, package_id, url, position, state) VALUES ('o1', 'oth', 'u', 0, 'active');
        COMMIT;";
    assert_eq!(
        step(&lab, new_other).await,
        ev(&[("dataset/create", "oth"), ("resource/create", "o1")])
    );
    let delete = "UPDATE package SET state = 'deleted' WHERE id = 'oth';";
    assert_eq!(
        step(&lab, delete).await,
        ev(&[("resource/delete", "o1"), ("dataset/delete", "oth")])
    );
    let undelete = "BEGIN;
        UPDATE package SET state = 'active' WHERE id = 'oth';
        UPDATE package SET metadata_modified = now() WHERE id = 'oth';
        COMMIT;";
    assert_eq!(
        step(&lab, undelete).await,
        ev(&[("dataset/create", "oth"), ("resource/create", "o1")])
    );
    assert_eq!(
        step(&lab, delete).await,
        ev(&[("resource/delete", "o1"), ("dataset/delete", "oth")])
    );

    // 39. dataset_purge of the soft-deleted dataset: nothing more.
    let purge_deleted = "BEGIN;
        DELETE FROM resource WHERE package_id = 'oth';
        DELETE FROM package WHERE id = 'oth';
        COMMIT;";
    assert_eq!(step(&lab, purge_deleted).await, ev(&[]));

    // 41-43. Name reuse: the deleted one is renamed to its id, the new one created.
    let reuse = "BEGIN;
        INSERT INTO package (id, name, type, owner_org, private, state) VALUES ('re1', 'lab-reuse', 'dataset', 'org', false, 'active');
        COMMIT;";
    assert_eq!(step(&lab, reuse).await, ev(&[("dataset/create", "re1")]));
    let reuse_delete = "UPDATE package SET state = 'deleted' WHERE id = 're1';";
    assert_eq!(
        step(&lab, reuse_delete).await,
        ev(&[("dataset/delete", "re1")])
    );
    let reuse2 = "BEGIN;
        UPDATE package SET name = 're1' WHERE id = 're1';
        INSERT INTO package (id, name, type, owner_org, private, state) VALUES ('re2', 'lab-reuse', 'dataset', 'org', false, 'active');
        UPDATE package SET metadata_modified = now() WHERE id = 're2';
        COMMIT;";
    assert_eq!(step(&lab, reuse2).await, ev(&[("dataset/create", "re2")]));

    // 47. dataset_purge of an active dataset with tags, groups and resources.
    let purge = "BEGIN;
        DELETE FROM package_member WHERE package_id = 'pub';
        DELETE FROM member WHERE table_id = 'pub';
        DELETE FROM resource WHERE package_id = 'pub';
        DELETE FROM package_tag WHERE package_id = 'pub';
        DELETE FROM package WHERE id = 'pub';
        COMMIT;";
    // The resources' deletes come first, in the order one DELETE met them (trigger
    // mode) or by position (poll mode): compared as a set.
    let mut events = step(&lab, purge).await;
    assert_eq!(events.pop(), Some(("dataset/delete".into(), "pub".into())));
    events.sort();
    assert_eq!(
        events,
        ev(&[
            ("resource/delete", "r1"),
            ("resource/delete", "r3"),
            ("resource/delete", "r4"),
        ])
    );
}

/// The ≤ 2.11 shapes that differ: extras as rows, set-based bulk updates without a
/// metadata_modified bump. On the real 2.11 schema.
#[tokio::test]
async fn ckan_211_shapes_give_the_exact_events() {
    ckan_211_shapes(Capture::Trigger).await;
}

#[tokio::test]
async fn ckan_211_shapes_in_poll_mode_give_the_same_events() {
    ckan_211_shapes(Capture::Poll).await;
}

async fn ckan_211_shapes(capture: Capture) {
    let Some(db) = TestDb::create(Schema::Real("2.11.6"), true).await else {
        eprintln!("skipped: ../shared/ckan/schema-2.11.6.sql is absent");
        return;
    };
    let lab = Lab::new(db, capture).await;
    let create = "BEGIN;
        INSERT INTO \"group\" (id, name, type, is_organization, state) VALUES ('org', 'org', 'organization', true, 'active');
        INSERT INTO package (id, name, type, owner_org, private, state, metadata_modified) VALUES
          ('a', 'a', 'dataset', 'org', false, 'active', now()), ('b', 'b', 'dataset', 'org', false, 'active', now());
        INSERT INTO package_extra (id, package_id, key, value, state) VALUES ('e1', 'a', 'k', 'v', 'active');
        COMMIT;";
    assert_eq!(
        step(&lab, create).await,
        ev(&[("dataset/create", "a"), ("dataset/create", "b")])
    );

    let extras = "BEGIN;
        UPDATE package SET metadata_modified = now() WHERE id = 'a';
        UPDATE package_extra SET value = 'v2' WHERE id = 'e1';
        COMMIT;";
    assert_eq!(step(&lab, extras).await, ev(&[("dataset/update", "a")]));

    let bulk_private =
        "UPDATE package SET private = true WHERE id IN ('a', 'b') AND owner_org = 'org';";
    let events = step(&lab, bulk_private).await;
    let mut sorted = events.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ev(&[("dataset/delete", "a"), ("dataset/delete", "b")])
    );

    let no_op_patch = "UPDATE package SET metadata_modified = now() WHERE id = 'a';";
    assert_eq!(step(&lab, no_op_patch).await, ev(&[]));
}

/// Rows a transaction did not write are read as they stood right after it, even when
/// later transactions, not yet derived, changed them: a resource added without touching
/// its dataset, then the dataset deleted and a resource inserted, all derived at once.
#[tokio::test]
async fn untouched_rows_are_read_as_of_their_transaction() {
    let lab = Lab::new(ckan_212_db().await, Capture::Trigger).await;
    let create = "INSERT INTO package (id, name, type, private, state) VALUES ('d', 'd', 'dataset', false, 'active');
                  INSERT INTO resource (id, package_id, url, position, state) VALUES ('r0', 'd', 'u', 0, 'active');";
    assert_eq!(
        step(&lab, create).await,
        ev(&[("dataset/create", "d"), ("resource/create", "r0")])
    );

    let later = "BEGIN;
        INSERT INTO resource (id, package_id, url, position, state) VALUES ('r1', 'd', 'u', 1, 'active');
        COMMIT;
        BEGIN;
        UPDATE package SET state = 'deleted' WHERE id = 'd';
        COMMIT;
        BEGIN;
        INSERT INTO resource (id, package_id, url, position, state) VALUES ('r2', 'd', 'u', 2, 'active');
        UPDATE resource SET state = 'deleted' WHERE id = 'r0';
        COMMIT;";
    assert_eq!(
        step(&lab, later).await,
        ev(&[
            // r1 was added while d was still active.
            ("resource/create", "r1"),
            ("dataset/update", "d"),
            // d's delete takes down r0 and r1 as they stood (r0 still active then),
            // and not r2, which did not exist yet.
            ("resource/delete", "r0"),
            ("resource/delete", "r1"),
            ("dataset/delete", "d"),
        ])
    );
}
