//! Unit tests for private datasets: the events each reader class sees on creates,
//! updates, deletes, private flips and organization moves, and the audience marks that
//! let one event row serve every class that sees the same thing.

use super::tests::{ev, no_lookups, pkg, res, with, Tx};
use super::*;
use serde_json::json;

const OUTSIDER: Class = Class::OUTSIDER;
const READER: Class = Class::READER;
/// Reads it under its old organization only (a member of the organization it left).
const LEAVER: Class = Class::new(true, false);
/// Reads it under its new organization only (a member of the organization it joined).
const JOINER: Class = Class::new(false, true);

/// The (topic, entity id) a subscriber of `class` receives, in order.
fn seen(events: &[ScopedEvent], class: Class) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.audience.contains(class))
        .map(|e| {
            let id = e.event.entity["id"].as_str().unwrap_or("?").to_string();
            (e.event.topic.clone(), id)
        })
        .collect()
}

/// The audience bits of each event, in order.
fn audiences(events: &[ScopedEvent]) -> Vec<i16> {
    events.iter().map(|e| e.audience.bits()).collect()
}

fn private(id: &str) -> Value {
    with(&pkg(id), "private", json!(true))
}

fn resources_of(id: &str) -> Lookups {
    Lookups {
        resources: HashMap::from([(id.to_string(), vec![res("r1", id)])]),
        ..Lookups::default()
    }
}

// A public dataset's events are one row each, for everyone, as before.
#[test]
fn public_datasets_are_for_everyone() {
    let p = pkg("p1");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &with(&p, "title", json!("New")));
    let events = tx.scoped(&no_lookups());
    assert_eq!(audiences(&events), [15]);

    let mut moved = Tx::new();
    moved.upd(Table::Package, &p, &with(&p, "owner_org", json!("org2")));
    let events = moved.scoped(&no_lookups());
    assert_eq!(
        audiences(&events),
        [15],
        "a public dataset's move is one update"
    );
    assert_eq!(events[0].organization_before.as_deref(), Some("org1"));
    assert_eq!(events[0].organization_after.as_deref(), Some("org2"));
}

// A private dataset created with resources: nothing for outsiders, create then
// resource creates for whoever reads it afterwards.
#[test]
fn private_create_reaches_its_readers_only() {
    let mut tx = Tx::new();
    tx.ins(Table::Package, private("p1"))
        .ins(Table::Resource, res("r1", "p1"));
    let events = tx.scoped(&no_lookups());
    let created = vec![ev("dataset/create", "p1"), ev("resource/create", "r1")];
    assert!(seen(&events, OUTSIDER).is_empty());
    assert!(seen(&events, LEAVER).is_empty());
    assert_eq!(seen(&events, JOINER), created);
    assert_eq!(seen(&events, READER), created);
    assert_eq!(
        audiences(&events),
        [12, 12],
        "one row per event for both classes"
    );
    assert_eq!(events[0].organization_before, None);
    assert_eq!(events[0].organization_after.as_deref(), Some("org1"));
}

// Updates, resource changes and deletes of a private dataset that stays in its
// organization reach its readers, as one event row each, and nobody else.
#[test]
fn private_dataset_changes_reach_readers_only() {
    let p = private("p1");
    let mut update = Tx::new();
    update.upd(Table::Package, &p, &with(&p, "title", json!("secret")));
    let events = update.scoped(&no_lookups());
    assert_eq!(audiences(&events), [READER.bit()]);
    assert_eq!(seen(&events, READER), vec![ev("dataset/update", "p1")]);
    assert!(seen(&events, OUTSIDER).is_empty());

    let r = res("r1", "p1");
    let mut resource = Tx::new();
    resource.upd(Table::Resource, &r, &with(&r, "url", json!("http://y")));
    let lookups = Lookups {
        packages: HashMap::from([("p1".to_string(), p.clone())]),
        ..Lookups::default()
    };
    let events = resource.scoped(&lookups);
    assert_eq!(
        seen(&events, READER),
        vec![ev("resource/update", "r1"), ev("dataset/update", "p1")]
    );
    assert!(seen(&events, OUTSIDER).is_empty());

    let mut delete = Tx::new();
    delete.upd(Table::Package, &p, &with(&p, "state", json!("deleted")));
    let events = delete.scoped(&resources_of("p1"));
    assert_eq!(
        seen(&events, READER),
        vec![ev("resource/delete", "r1"), ev("dataset/delete", "p1")]
    );
    assert!(seen(&events, OUTSIDER).is_empty());

    let mut purge = Tx::new();
    purge
        .del(Table::Resource, res("r1", "p1"))
        .del(Table::Package, p.clone());
    let events = purge.scoped(&no_lookups());
    assert_eq!(
        seen(&events, READER),
        vec![ev("resource/delete", "r1"), ev("dataset/delete", "p1")]
    );
    assert!(seen(&events, OUTSIDER).is_empty());
}

// Drafts and deleted datasets stay invisible to every class, private or not.
#[test]
fn drafts_and_deleted_datasets_are_invisible_to_readers_too() {
    let draft = with(&private("d1"), "state", json!("draft"));
    let mut tx = Tx::new();
    tx.ins(Table::Package, draft.clone()).upd(
        Table::Package,
        &draft,
        &with(&draft, "title", json!("x")),
    );
    assert!(tx.scoped(&no_lookups()).is_empty());

    let deleted = with(&private("p1"), "state", json!("deleted"));
    let mut purge = Tx::new();
    purge
        .del(Table::Resource, res("r1", "p1"))
        .del(Table::Package, deleted);
    assert!(purge.scoped(&no_lookups()).is_empty());
}

// Public → private: delete (resources first) for outsiders, update for readers.
#[test]
fn making_a_dataset_private_is_delete_for_outsiders_update_for_readers() {
    let p = pkg("p1");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &with(&p, "private", json!(true)));
    let events = tx.scoped(&resources_of("p1"));
    assert_eq!(
        seen(&events, OUTSIDER),
        vec![ev("resource/delete", "r1"), ev("dataset/delete", "p1")]
    );
    assert_eq!(seen(&events, READER), vec![ev("dataset/update", "p1")]);
    let update = events.iter().find(|e| e.audience.contains(READER)).unwrap();
    assert_eq!(update.event.changes, Some(json!(["private"])));
    assert_eq!(
        audiences(&events),
        [OUTSIDER.bit(), OUTSIDER.bit(), READER.bit()]
    );
}

// Private → public: create (then resources) for outsiders, update for readers.
#[test]
fn making_a_dataset_public_is_create_for_outsiders_update_for_readers() {
    let p = private("p1");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &with(&p, "private", json!(false)));
    let events = tx.scoped(&resources_of("p1"));
    assert_eq!(
        seen(&events, OUTSIDER),
        vec![ev("dataset/create", "p1"), ev("resource/create", "r1")]
    );
    assert_eq!(seen(&events, READER), vec![ev("dataset/update", "p1")]);
}

// A private dataset moved from org1 to org2: delete for members of org1 only, create
// for members of org2 only, update for those who read it on both sides, nothing for
// outsiders. Each class's events stay together and in order.
#[test]
fn moving_a_private_dataset_is_delete_create_or_update_by_class() {
    let p = private("p1");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &with(&p, "owner_org", json!("org2")));
    assert_eq!(
        tx.transaction().visibility_changed_datasets(),
        vec!["p1".to_string()]
    );

    let events = tx.scoped(&resources_of("p1"));
    assert!(seen(&events, OUTSIDER).is_empty());
    assert_eq!(
        seen(&events, LEAVER),
        vec![ev("resource/delete", "r1"), ev("dataset/delete", "p1")]
    );
    assert_eq!(
        seen(&events, JOINER),
        vec![ev("dataset/create", "p1"), ev("resource/create", "r1")]
    );
    assert_eq!(seen(&events, READER), vec![ev("dataset/update", "p1")]);
    assert_eq!(audiences(&events), [2, 2, 4, 4, 8]);
    for event in &events {
        assert_eq!(event.organization_before.as_deref(), Some("org1"));
        assert_eq!(event.organization_after.as_deref(), Some("org2"));
    }
}

// Moved and made public at once: members of the old organization and sysadmins read it
// throughout (update), everyone else now sees it appear (create).
#[test]
fn moving_and_publishing_at_once() {
    let p = private("p1");
    let moved = with(
        &with(&p, "owner_org", json!("org2")),
        "private",
        json!(false),
    );
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &moved);
    let events = tx.scoped(&resources_of("p1"));
    let created = vec![ev("dataset/create", "p1"), ev("resource/create", "r1")];
    assert_eq!(seen(&events, OUTSIDER), created);
    assert_eq!(seen(&events, JOINER), created);
    assert_eq!(seen(&events, LEAVER), vec![ev("dataset/update", "p1")]);
    assert_eq!(seen(&events, READER), vec![ev("dataset/update", "p1")]);
    assert_eq!(audiences(&events), [5, 5, 10]);
}

// Several datasets in one transaction keep their order for every class.
#[test]
fn bulk_private_keeps_dataset_order_per_class() {
    let a = pkg("a");
    let b = pkg("b");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &b, &with(&b, "private", json!(true)))
        .upd(Table::Package, &a, &with(&a, "private", json!(true)));
    let events = tx.scoped(&no_lookups());
    assert_eq!(
        seen(&events, OUTSIDER),
        vec![ev("dataset/delete", "b"), ev("dataset/delete", "a")]
    );
    assert_eq!(
        seen(&events, READER),
        vec![ev("dataset/update", "b"), ev("dataset/update", "a")]
    );
}
