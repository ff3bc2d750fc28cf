//! Unit tests for every row and bullet of DESIGN.md §3. Changes are built the way the
//! capture triggers build them (see `sql/0010_capture_lean.sql`): whole new images and,
//! for updates and deletes, whole old images. `Tx::legacy` builds them as
//! `sql/0002_capture.sql` did, which may still be in the change log after an upgrade:
//! for updates either the whole old image (when a visibility column changed) or its
//! visibility columns, plus both content hashes and the changed keys.

use super::*;
use serde_json::json;
use sha2::{Digest, Sha256};

fn hash(row: &Value) -> String {
    let mut row = row.clone();
    row.as_object_mut().unwrap().remove("metadata_modified");
    format!("{:x}", Sha256::digest(row.to_string().as_bytes()))
}

pub(super) struct Tx {
    changes: Vec<Change>,
    /// Updates in the format of sql/0002_capture.sql.
    legacy: bool,
}

impl Tx {
    pub(super) fn new() -> Tx {
        Tx {
            changes: Vec::new(),
            legacy: false,
        }
    }

    fn legacy() -> Tx {
        Tx {
            changes: Vec::new(),
            legacy: true,
        }
    }

    fn push(&mut self, table: Table, op: Op, old: Option<Value>, new: Option<Value>) -> &mut Tx {
        let row = new.as_ref().or(old.as_ref()).unwrap().clone();
        let package_id = match table {
            Table::Package => row["id"].as_str().map(String::from),
            Table::Member => row["table_id"].as_str().map(String::from),
            _ => row["package_id"].as_str().map(String::from),
        };
        let old_row = match (op, &old, &new) {
            (Op::Update, Some(o), Some(n)) if self.legacy => {
                let visibility: &[&str] = match table {
                    Table::Package => &["state", "private", "owner_org"],
                    Table::Resource => &["state", "package_id"],
                    _ => &[],
                };
                let whole = visibility.iter().any(|k| o[*k] != n[*k])
                    || !matches!(table, Table::Package | Table::Resource);
                let mut head = if whole {
                    o.clone()
                } else {
                    let keep: &[&str] = match table {
                        Table::Package => &["id", "state", "private", "owner_org", "type", "name"],
                        _ => &["id", "state", "package_id", "format"],
                    };
                    let mut head: serde_json::Map<String, Value> = keep
                        .iter()
                        .map(|k| (k.to_string(), o[*k].clone()))
                        .collect();
                    head.insert("__head".into(), json!(true));
                    Value::Object(head)
                };
                if matches!(table, Table::Package | Table::Resource) {
                    let changed: Vec<&String> = n
                        .as_object()
                        .unwrap()
                        .iter()
                        .filter(|(k, v)| o.get(k.as_str()) != Some(v))
                        .map(|(k, _)| k)
                        .collect();
                    let extra =
                        json!({"__old_hash": hash(o), "__new_hash": hash(n), "__changed": changed});
                    head.as_object_mut()
                        .unwrap()
                        .extend(extra.as_object().unwrap().clone());
                }
                Some(head)
            }
            _ => old.clone(),
        };
        let id = self.changes.len() as i64 + 1;
        self.changes.push(Change {
            id,
            table,
            op,
            row_id: row["id"].as_str().unwrap().to_string(),
            package_id,
            old_row,
            new_row: if op == Op::Delete { None } else { new },
            captured_at: "2026-12-04T10:00:00Z".parse().unwrap(),
        });
        self
    }

    pub(super) fn ins(&mut self, table: Table, row: Value) -> &mut Tx {
        self.push(table, Op::Insert, None, Some(row))
    }

    pub(super) fn upd(&mut self, table: Table, old: &Value, new: &Value) -> &mut Tx {
        self.push(table, Op::Update, Some(old.clone()), Some(new.clone()))
    }

    pub(super) fn del(&mut self, table: Table, row: Value) -> &mut Tx {
        self.push(table, Op::Delete, Some(row), None)
    }

    pub(super) fn derive(&self, lookups: &Lookups) -> Vec<(String, String)> {
        let tx = Transaction {
            txid: 1,
            changes: self.changes.clone(),
        };
        derive(&tx, lookups)
            .into_iter()
            .map(|e| (e.topic, e.entity["id"].as_str().unwrap_or("?").to_string()))
            .collect()
    }

    pub(super) fn transaction(&self) -> Transaction {
        Transaction {
            txid: 1,
            changes: self.changes.clone(),
        }
    }

    pub(super) fn scoped(&self, lookups: &Lookups) -> Vec<ScopedEvent> {
        derive_scoped(&self.transaction(), lookups)
    }

    pub(super) fn events(&self, lookups: &Lookups) -> Vec<Event> {
        derive(
            &Transaction {
                txid: 1,
                changes: self.changes.clone(),
            },
            lookups,
        )
    }
}

pub(super) fn pkg(id: &str) -> Value {
    json!({"id": id, "name": id, "title": "T", "state": "active", "private": false,
           "owner_org": "org1", "type": "dataset", "metadata_modified": "2026-01-01T00:00:00",
           "plugin_data": {"secret": 1}})
}

pub(super) fn res(id: &str, package: &str) -> Value {
    json!({"id": id, "package_id": package, "url": "http://x/a.csv", "format": "CSV",
           "state": "active", "position": 0, "metadata_modified": "2026-01-01T00:00:00"})
}

pub(super) fn with(row: &Value, key: &str, value: Value) -> Value {
    let mut row = row.clone();
    row[key] = value;
    row
}

pub(super) fn ev(topic: &str, id: &str) -> (String, String) {
    (topic.to_string(), id.to_string())
}

pub(super) fn no_lookups() -> Lookups {
    Lookups::default()
}

// Table row: not visible → visible is a create.
#[test]
fn insert_of_active_public_dataset_is_create_then_resources() {
    let mut tx = Tx::new();
    tx.ins(Table::Package, pkg("p1"))
        .ins(Table::Resource, res("r1", "p1"))
        .ins(Table::Resource, res("r2", "p1"))
        .upd(
            Table::Package,
            &pkg("p1"),
            &with(&pkg("p1"), "metadata_modified", json!("x")),
        );
    assert_eq!(
        tx.derive(&no_lookups()),
        vec![
            ev("dataset/create", "p1"),
            ev("resource/create", "r1"),
            ev("resource/create", "r2")
        ]
    );
}

// Table row: visible → visible with changed content is an update, naming the fields.
#[test]
fn field_change_is_one_update_per_transaction() {
    let p = pkg("p1");
    let p2 = with(&p, "title", json!("New"));
    let p3 = with(&p2, "metadata_modified", json!("2026-02-02T00:00:00"));
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &p2)
        .upd(Table::Package, &p2, &p3);
    let events = tx.events(&no_lookups());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].topic, "dataset/update");
    assert_eq!(events[0].changes, Some(json!(["title"])));
    assert_eq!(events[0].entity["title"], "New");
    assert!(
        events[0].entity.get("plugin_data").is_none(),
        "secret columns are scrubbed"
    );
}

// Table row: visible → not visible is a delete; package_delete is state only.
#[test]
fn soft_delete_is_resource_deletes_then_dataset_delete() {
    let p = pkg("p1");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &with(&p, "state", json!("deleted")));
    let lookups = Lookups {
        resources: HashMap::from([(
            "p1".to_string(),
            vec![
                res("r1", "p1"),
                with(&res("r0", "p1"), "state", json!("deleted")),
            ],
        )]),
        ..Lookups::default()
    };
    let events = tx.events(&lookups);
    let topics: Vec<_> = events
        .iter()
        .map(|e| (e.topic.as_str(), e.entity["id"].clone()))
        .collect();
    assert_eq!(
        topics,
        vec![
            ("resource/delete", json!("r1")),
            ("dataset/delete", json!("p1"))
        ]
    );
    assert_eq!(
        events[1].entity["state"], "active",
        "a delete carries the row before it"
    );
}

// Table row: not visible → not visible is nothing (edits to drafts).
#[test]
fn edits_to_a_draft_emit_nothing() {
    let d = with(&pkg("d1"), "state", json!("draft"));
    let mut tx = Tx::new();
    tx.upd(Table::Package, &d, &with(&d, "title", json!("Draft 2")));
    assert!(tx.derive(&no_lookups()).is_empty());
    let mut tx = Tx::new();
    tx.ins(Table::Package, d.clone());
    assert!(tx.derive(&no_lookups()).is_empty());
}

// Bullet: the web UI's draft → resources → active flow.
#[test]
fn draft_resources_then_active_is_create_with_resources_at_activation() {
    let d = with(&pkg("d1"), "state", json!("draft"));
    let mut add_resource = Tx::new();
    add_resource.ins(Table::Resource, res("r1", "d1")).upd(
        Table::Package,
        &d,
        &with(&d, "metadata_modified", json!("x")),
    );
    assert!(add_resource.derive(&no_lookups()).is_empty());

    let d2 = with(&d, "metadata_modified", json!("x"));
    let active = with(&d2, "state", json!("active"));
    let mut activate = Tx::new();
    activate.upd(Table::Package, &d2, &active).upd(
        Table::Package,
        &active,
        &with(&active, "metadata_modified", json!("y")),
    );
    let lookups = Lookups {
        resources: HashMap::from([("d1".to_string(), vec![res("r1", "d1")])]),
        ..Lookups::default()
    };
    let tx = Transaction {
        txid: 1,
        changes: activate.changes.clone(),
    };
    assert_eq!(tx.visibility_changed_datasets(), vec!["d1".to_string()]);
    assert_eq!(
        activate.derive(&lookups),
        vec![ev("dataset/create", "d1"), ev("resource/create", "r1")]
    );
}

// Bullet: dataset_purge deletes resources then the dataset row.
#[test]
fn purge_of_active_dataset_is_resource_delete_then_dataset_delete() {
    let mut tx = Tx::new();
    tx.del(
        Table::Member,
        json!({"id": "m1", "table_id": "p1", "table_name": "package",
                                 "capacity": "organization", "state": "active"}),
    )
    .del(Table::Resource, res("r1", "p1"))
    .del(
        Table::Resource,
        with(&res("r0", "p1"), "state", json!("deleted")),
    )
    .del(
        Table::PackageTag,
        json!({"id": "t1", "package_id": "p1", "state": "active"}),
    )
    .del(Table::Package, pkg("p1"));
    assert_eq!(
        tx.derive(&no_lookups()),
        vec![ev("resource/delete", "r1"), ev("dataset/delete", "p1")]
    );
}

// Bullet: purging an already deleted dataset emits nothing.
#[test]
fn purge_of_deleted_dataset_emits_nothing() {
    let mut tx = Tx::new();
    tx.del(Table::Resource, res("r1", "p1"))
        .del(Table::Package, with(&pkg("p1"), "state", json!("deleted")));
    assert!(tx.derive(&no_lookups()).is_empty());
}

// Bullet: resource_delete is resource/delete and a dataset update; the later hard
// delete of the soft-deleted row emits nothing.
#[test]
fn resource_delete_then_hard_delete() {
    let p = pkg("p1");
    let r = res("r1", "p1");
    let mut tx = Tx::new();
    tx.upd(
        Table::Package,
        &p,
        &with(&p, "metadata_modified", json!("x")),
    )
    .upd(Table::Resource, &r, &with(&r, "state", json!("deleted")));
    let events = tx.events(&no_lookups());
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].topic.as_str(), events[1].topic.as_str()),
        ("resource/delete", "dataset/update")
    );
    assert_eq!(events[1].changes, Some(json!(["resources"])));

    let mut later = Tx::new();
    later
        .ins(Table::Resource, res("r2", "p1"))
        .del(Table::Resource, with(&r, "state", json!("deleted")))
        .upd(
            Table::Package,
            &p,
            &with(&p, "metadata_modified", json!("y")),
        );
    assert_eq!(
        later.derive(&no_lookups()),
        vec![ev("resource/create", "r2"), ev("dataset/update", "p1")]
    );
}

// Bullet: public → private is a delete for the public; private → public a create.
#[test]
fn private_flips_are_delete_and_create_for_the_public() {
    let p = pkg("p1");
    let private = with(&p, "private", json!(true));
    let lookups = Lookups {
        resources: HashMap::from([("p1".to_string(), vec![res("r1", "p1")])]),
        ..Lookups::default()
    };
    let mut hide = Tx::new();
    hide.upd(Table::Package, &p, &private);
    assert_eq!(
        hide.derive(&lookups),
        vec![ev("resource/delete", "r1"), ev("dataset/delete", "p1")]
    );
    let mut show = Tx::new();
    show.upd(Table::Package, &private, &p);
    assert_eq!(
        show.derive(&lookups),
        vec![ev("dataset/create", "p1"), ev("resource/create", "r1")]
    );
}

// Private datasets produce nothing for those who cannot read them (see
// derive_access_tests.rs for those who can).
#[test]
fn private_datasets_produce_nothing_for_outsiders() {
    let private = with(&pkg("p1"), "private", json!(true));
    let mut tx = Tx::new();
    tx.ins(Table::Package, private.clone())
        .ins(Table::Resource, res("r1", "p1"));
    assert!(tx.derive(&no_lookups()).is_empty());
    let mut tx = Tx::new();
    tx.upd(
        Table::Package,
        &private,
        &with(&private, "title", json!("secret")),
    );
    assert!(tx.derive(&no_lookups()).is_empty());
}

// Bullet: a resource change in a visible dataset is the resource event and one
// dataset/update after it.
#[test]
fn resource_update_is_resource_event_then_dataset_update() {
    let p = pkg("p1");
    let r = res("r1", "p1");
    let mut tx = Tx::new();
    tx.upd(
        Table::Package,
        &p,
        &with(&p, "metadata_modified", json!("x")),
    )
    .upd(
        Table::Resource,
        &r,
        &with(
            &with(&r, "url", json!("http://y")),
            "metadata_modified",
            json!("x"),
        ),
    );
    let events = tx.events(&no_lookups());
    assert_eq!(
        events.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>(),
        ["resource/update", "dataset/update"]
    );
    assert_eq!(events[0].changes, Some(json!(["url"])));
    assert_eq!(events[0].dataset_id, "p1");
}

// Bullet: a resource change with no own package change uses the current dataset row.
#[test]
fn resource_change_in_untouched_dataset_uses_lookup() {
    let r = res("r1", "p1");
    let mut tx = Tx::new();
    tx.upd(Table::Resource, &r, &with(&r, "name", json!("renamed")));
    let t = Transaction {
        txid: 1,
        changes: tx.changes.clone(),
    };
    assert_eq!(t.untouched_datasets(), vec!["p1".to_string()]);
    assert!(
        tx.derive(&no_lookups()).is_empty(),
        "an unknown dataset is not visible"
    );
    let lookups = Lookups {
        packages: HashMap::from([("p1".to_string(), pkg("p1"))]),
        ..Lookups::default()
    };
    assert_eq!(
        tx.derive(&lookups),
        vec![ev("resource/update", "r1"), ev("dataset/update", "p1")]
    );
}

// Bullet: child tables alone (tags, extras, groups) are a dataset/update.
#[test]
fn tags_extras_and_groups_alone_are_dataset_updates() {
    let p = pkg("p1");
    let bump = with(&p, "metadata_modified", json!("x"));
    let mut tags = Tx::new();
    tags.del(
        Table::PackageTag,
        json!({"id": "t1", "package_id": "p1", "tag_id": "a", "state": "active"}),
    )
    .ins(
        Table::PackageTag,
        json!({"id": "t2", "package_id": "p1", "tag_id": "b", "state": "active"}),
    )
    .upd(Table::Package, &p, &bump);
    let events = tags.events(&no_lookups());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changes, Some(json!(["tags"])));

    let mut extras = Tx::new();
    extras
        .ins(
            Table::PackageExtra,
            json!({"id": "e1", "package_id": "p1", "key": "k", "value": "v"}),
        )
        .upd(Table::Package, &p, &bump);
    assert_eq!(
        extras.events(&no_lookups())[0].changes,
        Some(json!(["extras"]))
    );

    let mut group = Tx::new();
    group.ins(
        Table::Member,
        json!({"id": "m1", "table_id": "p1", "table_name": "package",
                                    "capacity": "public", "group_id": "g1", "state": "active"}),
    );
    let lookups = Lookups {
        packages: HashMap::from([("p1".to_string(), p.clone())]),
        ..Lookups::default()
    };
    let events = group.events(&lookups);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changes, Some(json!(["groups"])));

    // 2.12 keeps extras in a package column: an ordinary field change.
    let mut extras212 = Tx::new();
    extras212.upd(Table::Package, &p, &with(&p, "extras", json!({"k": "v"})));
    assert_eq!(
        extras212.events(&no_lookups())[0].changes,
        Some(json!(["extras"]))
    );
}

// Bullet: metadata_modified alone is not a change.
#[test]
fn metadata_modified_alone_emits_nothing() {
    let p = pkg("p1");
    let mut tx = Tx::new();
    tx.upd(
        Table::Package,
        &p,
        &with(&p, "metadata_modified", json!("2030-01-01T00:00:00")),
    );
    assert!(tx.derive(&no_lookups()).is_empty());
}

// A value changed and changed back in one transaction is no change.
#[test]
fn change_and_revert_in_one_transaction_emits_nothing() {
    let p = pkg("p1");
    let p2 = with(&p, "title", json!("tmp"));
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &p2).upd(Table::Package, &p2, &p);
    assert!(tx.derive(&no_lookups()).is_empty());
}

// Bullet: dataset_type is carried on every event, with the organization.
#[test]
fn dataset_type_and_organization_on_every_event() {
    let h = with(&pkg("h1"), "type", json!("harvest"));
    let mut tx = Tx::new();
    tx.ins(Table::Package, h)
        .ins(Table::Resource, res("r1", "h1"));
    for event in tx.events(&no_lookups()) {
        assert_eq!(event.dataset_type.as_deref(), Some("harvest"));
        assert_eq!(event.organization_id.as_deref(), Some("org1"));
        assert_eq!(event.dataset_id, "h1");
    }
}

// CKAN's name reuse: the deleted dataset is renamed to its id and the new one created.
#[test]
fn name_reuse_creates_only_the_new_dataset() {
    let old = with(&pkg("old"), "state", json!("deleted"));
    let mut tx = Tx::new();
    tx.upd(Table::Package, &old, &with(&old, "name", json!("old-id")))
        .ins(Table::Package, with(&pkg("new"), "name", json!("old")));
    assert_eq!(tx.derive(&no_lookups()), vec![ev("dataset/create", "new")]);
}

// Undelete: deleted → active is a create.
#[test]
fn undelete_is_create() {
    let deleted = with(&pkg("p1"), "state", json!("deleted"));
    let mut tx = Tx::new();
    tx.upd(Table::Package, &deleted, &pkg("p1"));
    assert_eq!(tx.derive(&no_lookups()), vec![ev("dataset/create", "p1")]);
}

// Datasets of one transaction come out in the order of their first change, each with
// its own events grouped (bulk updates).
#[test]
fn several_datasets_in_one_transaction_keep_their_order() {
    let a = pkg("a");
    let b = pkg("b");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &b, &with(&b, "private", json!(true)))
        .upd(Table::Package, &a, &with(&a, "private", json!(true)));
    assert_eq!(
        tx.derive(&no_lookups()),
        vec![ev("dataset/delete", "b"), ev("dataset/delete", "a")]
    );
}

// The owner organization's member row changes with owner_org; it is not a group change.
#[test]
fn owner_org_move_is_one_update() {
    let p = pkg("p1");
    let mut tx = Tx::new();
    tx.upd(Table::Package, &p, &with(&p, "owner_org", json!("org2")))
        .upd(
            Table::Member,
            &json!({"id": "m1", "table_id": "p1", "table_name": "package", "capacity": "organization", "state": "active"}),
            &json!({"id": "m1", "table_id": "p1", "table_name": "package", "capacity": "organization", "state": "deleted"}),
        );
    let events = tx.events(&no_lookups());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changes, Some(json!(["owner_org"])));
    assert_eq!(events[0].organization_id.as_deref(), Some("org2"));
}

// Event ids are 128 random bits.
#[test]
fn ids_are_128_bit_hex() {
    let a = new_id();
    assert_eq!(a.len(), 32);
    assert_ne!(a, new_id());
}

// Changes captured by sql/0002_capture.sql, still in the log after an upgrade, derive
// as before: metadata_modified alone and a reverted change are nothing, a content
// change is an update with its changed fields.
#[test]
fn changes_in_the_format_of_0002_still_derive() {
    let p = pkg("p1");
    let mut tx = Tx::legacy();
    tx.upd(
        Table::Package,
        &p,
        &with(&p, "metadata_modified", json!("2030-01-01T00:00:00")),
    );
    assert!(tx.derive(&no_lookups()).is_empty());

    let p2 = with(&p, "title", json!("tmp"));
    let mut tx = Tx::legacy();
    tx.upd(Table::Package, &p, &p2).upd(Table::Package, &p2, &p);
    assert!(tx.derive(&no_lookups()).is_empty());

    let r = res("r1", "p1");
    let mut tx = Tx::legacy();
    tx.upd(
        Table::Package,
        &p,
        &with(&p, "metadata_modified", json!("x")),
    )
    .upd(Table::Resource, &r, &with(&r, "url", json!("http://y")));
    let events = tx.events(&no_lookups());
    assert_eq!(
        events.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>(),
        ["resource/update", "dataset/update"]
    );
    assert_eq!(events[0].changes, Some(json!(["url"])));
}

// A transaction captured across the upgrade (first change in the old format, last in
// the new) cannot compare contents and is taken as changed: one update, never a loss.
#[test]
fn a_transaction_across_the_upgrade_is_an_update() {
    let p = pkg("p1");
    let p2 = with(&p, "title", json!("new"));
    let mut old = Tx::legacy();
    old.upd(Table::Package, &p, &p2);
    let mut new = Tx::new();
    new.upd(
        Table::Package,
        &p2,
        &with(&p2, "metadata_modified", json!("x")),
    );
    let mut tx = Tx::new();
    tx.changes = old.changes.clone();
    let mut later = new.changes[0].clone();
    later.id = 2;
    tx.changes.push(later);
    assert_eq!(
        tx.derive(&no_lookups()),
        [("dataset/update".to_string(), "p1".to_string())]
    );
}
