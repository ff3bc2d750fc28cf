//! The shadow against the rows as they are: the row changes a capture trigger would have
//! written had it seen them, one per entity that moved, shaped like the trigger's so that
//! derivation cannot tell them apart. Pure; the caller reads and writes.
//!
//! What a pass can know is less than a trigger sees: the "before" image is the row as it
//! is with the shadow's visibility columns and metadata_modified put back (a dataset's
//! name, type, state, private, owner_org; a resource's package_id, state, format,
//! position), the changed fields come from per-column hashes, and every change to one
//! entity since the last pass is one change.

use crate::store::shadow::{hex, Current, Seen, Snapshot};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The child tables whose content the shadow keeps as hashes, in `children` order, with
/// the row a trigger would have written (derivation only reads its table and, for
/// `member`, its capacity).
const CHILDREN: [(&str, &str); 3] = [
    ("package_extra", "extras"),
    ("package_tag", "tags"),
    ("member", "groups"),
];

/// One entity as the shadow saw it and as it is; either side may be missing.
type Pair<'a> = (Option<&'a Seen>, Option<&'a Current>);

/// The row changes that turn the shadow of `snapshot`'s datasets into their rows as
/// they are: per dataset in order of `metadata_modified` (then id), the dataset's own
/// change, then its child tables', then its resources'.
pub fn changes(snapshot: &Snapshot) -> Vec<Value> {
    let seen_packages: HashMap<&str, &Seen> = snapshot
        .seen_packages
        .iter()
        .map(|s| (s.id.as_str(), s))
        .collect();
    let packages: HashMap<&str, &Current> = snapshot
        .packages
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();

    // Resources by dataset, both sides; a resource that moved between datasets counts
    // under the dataset it is in now.
    let mut resources: BTreeMap<&str, Vec<Pair>> = BTreeMap::new();
    let current_by_id: HashMap<&str, &Current> = snapshot
        .resources
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    for seen in &snapshot.seen_resources {
        let current = current_by_id.get(seen.id.as_str()).copied();
        let dataset = current.map_or(seen.package_id.as_str(), |c| c.package_id.as_str());
        resources
            .entry(dataset)
            .or_default()
            .push((Some(seen), current));
    }
    let seen_ids: HashSet<&str> = snapshot
        .seen_resources
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    for current in &snapshot.resources {
        if !seen_ids.contains(current.id.as_str()) {
            resources
                .entry(current.package_id.as_str())
                .or_default()
                .push((None, Some(current)));
        }
    }

    let mut datasets: Vec<&str> = seen_packages
        .keys()
        .chain(packages.keys())
        .chain(resources.keys())
        .copied()
        .collect();
    datasets.sort_unstable();
    datasets.dedup();
    // Commit order is lost; CKAN's metadata_modified is the best guess of it (purged
    // datasets, which have none, first).
    datasets.sort_by_cached_key(|dataset| {
        let modified = packages
            .get(dataset)
            .and_then(|c| c.row.get("metadata_modified"))
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        (modified, dataset.to_string())
    });

    let mut out = Vec::new();
    for dataset in datasets {
        let seen = seen_packages.get(dataset).copied();
        let current = packages.get(dataset).copied();
        if let Some(change) = entity_change("package", dataset, seen, current, snapshot) {
            out.push(change);
        }
        if let (Some(seen), Some(current)) = (seen, current) {
            for (i, (table, _)) in CHILDREN.iter().enumerate() {
                if seen.children[i] != current.children[i] {
                    out.push(child_change(table, dataset));
                }
            }
        }
        for (seen, current) in resources.get(dataset).into_iter().flatten() {
            let id = seen.map_or_else(|| current.map(|c| c.id.as_str()), |s| Some(&s.id));
            if let Some(change) = entity_change(
                "resource",
                id.unwrap_or_default(),
                *seen,
                *current,
                snapshot,
            ) {
                out.push(change);
            }
        }
    }
    out
}

/// The change of one dataset or resource, or None when its content is the same.
fn entity_change(
    table: &str,
    id: &str,
    seen: Option<&Seen>,
    current: Option<&Current>,
    snapshot: &Snapshot,
) -> Option<Value> {
    let mut change = Map::new();
    change.insert("table_name".into(), json!(table));
    change.insert("row_id".into(), json!(id));
    match (seen, current) {
        (None, None) => return None,
        (None, Some(current)) => {
            change.insert("op".into(), json!("I"));
            change.insert("package_id".into(), json!(current.package_id));
            change.insert("new_row".into(), current.row.clone());
        }
        (Some(seen), None) => {
            change.insert("op".into(), json!("D"));
            change.insert("package_id".into(), json!(seen.package_id));
            change.insert("old_row".into(), seen.head.clone());
        }
        (Some(seen), Some(current)) => {
            let moved = table == "resource" && seen.package_id != current.package_id;
            if seen.content == current.content && !moved {
                return None;
            }
            // The old image: the row as it is, with what the shadow kept of it before (its
            // visibility columns and metadata_modified) put back, so that a delete shows
            // the entity as it was, as in trigger mode.
            let mut old = match &current.row {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            };
            if let Value::Object(head) = &seen.head {
                old.extend(head.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            old.insert("__old_hash".into(), json!(hex(&seen.content)));
            old.insert("__new_hash".into(), json!(hex(&current.content)));
            old.insert(
                "__changed".into(),
                json!(changed_fields(seen, current, snapshot)),
            );
            change.insert("op".into(), json!("U"));
            change.insert("package_id".into(), json!(current.package_id));
            change.insert("old_row".into(), Value::Object(old));
            change.insert("new_row".into(), current.row.clone());
        }
    }
    Some(Value::Object(change))
}

/// A child table's change, as derivation reads it: which table, which dataset, and for
/// `member` a capacity other than the owner organization's.
fn child_change(table: &str, dataset: &str) -> Value {
    let row = if table == "member" {
        json!({"table_name": "package", "capacity": "public"})
    } else {
        json!({})
    };
    json!({
        "table_name": table,
        "op": "U",
        "row_id": dataset,
        "package_id": dataset,
        "old_row": row,
        "new_row": row,
    })
}

/// Names of the columns whose hash differs, a column absent on one side counting as null.
fn changed_fields(seen: &Seen, current: &Current, snapshot: &Snapshot) -> Vec<String> {
    let before: HashMap<&str, i32> = match snapshot.layouts.get(&seen.layout) {
        Some(columns) => columns
            .iter()
            .map(String::as_str)
            .zip(seen.fields.iter().copied())
            .collect(),
        None => HashMap::new(),
    };
    let after: HashMap<&str, i32> = current
        .columns
        .iter()
        .map(String::as_str)
        .zip(current.fields.iter().copied())
        .collect();
    let mut names: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| {
            before.get(*k).copied().unwrap_or(snapshot.null_hash)
                != after.get(*k).copied().unwrap_or(snapshot.null_hash)
        })
        .map(|k| k.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, package: &str, state: &str, content: u8, fields: Vec<i32>) -> Seen {
        Seen {
            id: id.into(),
            package_id: package.into(),
            head: json!({"id": id, "state": state, "package_id": package}),
            content: vec![content],
            fields,
            layout: 1,
            children: [None, None, None],
        }
    }

    fn current(id: &str, package: &str, state: &str, content: u8, fields: Vec<i32>) -> Current {
        Current {
            id: id.into(),
            package_id: package.into(),
            row: json!({"id": id, "state": state, "package_id": package}),
            content: vec![content],
            fields,
            columns: vec!["id".into(), "state".into(), "title".into()],
            layout: 1,
            children: [None, None, None],
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            layouts: HashMap::from([(1, vec!["id".into(), "state".into(), "title".into()])]),
            null_hash: 0,
            ..Snapshot::default()
        }
    }

    #[test]
    fn unchanged_content_gives_nothing() {
        let mut s = snapshot();
        s.seen_packages = vec![seen("p", "p", "active", 1, vec![1, 2, 3])];
        s.packages = vec![current("p", "p", "active", 1, vec![1, 2, 3])];
        assert!(changes(&s).is_empty());
    }

    #[test]
    fn an_update_names_the_changed_columns_and_carries_both_hashes() {
        let mut s = snapshot();
        s.seen_packages = vec![seen("p", "p", "active", 1, vec![1, 2, 3])];
        s.packages = vec![current("p", "p", "active", 2, vec![1, 2, 4])];
        let out = changes(&s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["op"], "U");
        assert_eq!(out[0]["old_row"]["__changed"], json!(["title"]));
        assert_eq!(out[0]["old_row"]["__old_hash"], "01");
        assert_eq!(out[0]["old_row"]["__new_hash"], "02");
        assert!(out[0]["old_row"].get("__head").is_none());
    }

    #[test]
    fn a_column_added_as_null_is_not_a_changed_field() {
        let mut s = snapshot();
        s.seen_packages = vec![seen("p", "p", "active", 1, vec![1, 2, 3])];
        let mut now = current("p", "p", "active", 2, vec![1, 2, 3, 0]);
        now.columns.push("zz_new".into());
        now.fields[2] = 9;
        s.packages = vec![now];
        let out = changes(&s);
        assert_eq!(out[0]["old_row"]["__changed"], json!(["title"]));
    }

    #[test]
    fn purge_and_create_and_resources_in_dataset_order() {
        let mut s = snapshot();
        s.seen_packages = vec![seen("a", "a", "active", 1, vec![])];
        s.seen_resources = vec![seen("ra", "a", "active", 1, vec![])];
        s.packages = vec![current("b", "b", "active", 1, vec![])];
        s.resources = vec![current("rb", "b", "active", 1, vec![])];
        let out = changes(&s);
        let shape: Vec<(String, String, String)> = out
            .iter()
            .map(|c| {
                (
                    c["table_name"].as_str().unwrap().to_string(),
                    c["op"].as_str().unwrap().to_string(),
                    c["row_id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("package".into(), "D".into(), "a".into()),
                ("resource".into(), "D".into(), "ra".into()),
                ("package".into(), "I".into(), "b".into()),
                ("resource".into(), "I".into(), "rb".into()),
            ]
        );
        assert!(out[0].get("new_row").is_none());
        assert_eq!(out[0]["old_row"]["state"], "active");
    }

    #[test]
    fn tag_changes_become_a_child_change() {
        let mut s = snapshot();
        let mut before = seen("p", "p", "active", 1, vec![1, 2, 3]);
        before.children[1] = Some(vec![1]);
        let mut now = current("p", "p", "active", 1, vec![1, 2, 3]);
        now.children[1] = Some(vec![2]);
        s.seen_packages = vec![before];
        s.packages = vec![now];
        let out = changes(&s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["table_name"], "package_tag");
        assert_eq!(out[0]["package_id"], "p");
    }
}
