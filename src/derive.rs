//! The rules of DESIGN.md §3: one committed transaction's row changes become CKAN events.
//!
//! Each entity touched in the transaction is compared in its state before the
//! transaction (the old image of its first change) and after it (the new image of its
//! last change). Visibility decides the topic: not visible → visible is a create,
//! visible → visible with changed content an update, visible → not visible a delete.
//! Pure: the rows the transaction did not touch but the rules need (the dataset of a
//! changed resource, the resources of a dataset whose visibility changed) are fetched by
//! the caller and passed in as [`Lookups`].
//!
//! Visibility depends on who looks: a private dataset is visible to those who may read
//! it. The rules run once per reader [`Class`], and each event carries the
//! [`Audience`] of classes that see it (see [`crate::audience`]).

use crate::audience::{Audience, Class};
mod track;

use crate::payload::{scrub, Event};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use track::Track;

/// A CKAN table the capture triggers watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Datasets.
    Package,
    /// Resources (data files and links) of datasets.
    Resource,
    /// Extras as key/value rows (CKAN ≤ 2.11).
    PackageExtra,
    /// Tags of datasets.
    PackageTag,
    /// Group and organization membership of datasets.
    Member,
}

impl Table {
    /// The table for a captured table name.
    pub fn from_name(name: &str) -> Option<Table> {
        match name {
            "package" => Some(Table::Package),
            "resource" => Some(Table::Resource),
            "package_extra" => Some(Table::PackageExtra),
            "package_tag" => Some(Table::PackageTag),
            "member" => Some(Table::Member),
            _ => None,
        }
    }
}

/// The kind of row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A row was inserted.
    Insert,
    /// A row was updated.
    Update,
    /// A row was deleted.
    Delete,
}

/// One captured row change, as stored in the change log.
#[derive(Debug, Clone)]
pub struct Change {
    /// Change-log id: capture order within the transaction.
    pub id: i64,
    /// The table changed.
    pub table: Table,
    /// What happened to the row.
    pub op: Op,
    /// The row's id.
    pub row_id: String,
    /// The dataset the row belongs to.
    pub package_id: Option<String>,
    /// The old image, whole. Changes captured before sql/0010_capture_lean.sql hold,
    /// for updates where no visibility column changed, only the visibility columns
    /// marked `__head`, and for every update `__old_hash`, `__new_hash` and `__changed`.
    pub old_row: Option<Value>,
    /// The new image, whole.
    pub new_row: Option<Value>,
    /// When the change was captured.
    pub captured_at: DateTime<Utc>,
}

/// Rows the transaction did not touch, as they are now.
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    /// Datasets whose resources or child rows changed but whose own row did not.
    pub packages: HashMap<String, Value>,
    /// Resources of datasets whose visibility changed, by dataset id.
    pub resources: HashMap<String, Vec<Value>>,
}

fn field<'a>(row: &'a Value, key: &str) -> Option<&'a str> {
    row.get(key).and_then(|v| v.as_str())
}

/// A dataset row is visible to a subscriber when it exists, is active, and is public
/// or the subscriber `reads` it. Drafts and deleted datasets are visible to nobody.
fn dataset_visible(row: Option<&Value>, reads: bool) -> bool {
    row.is_some_and(|r| {
        field(r, "state") == Some("active")
            && (reads || r.get("private").and_then(|p| p.as_bool()) != Some(true))
    })
}

/// What subscribers of `class` see of a dataset: whether it is visible to them before
/// and after the transaction.
fn seen_by(class: Class, before: Option<&Value>, after: Option<&Value>) -> (bool, bool) {
    (
        dataset_visible(before, class.reads_before),
        dataset_visible(after, class.reads_after),
    )
}

/// A resource row is visible when it is active and its dataset is visible.
fn resource_visible(row: Option<&Value>, dataset_visible: bool) -> bool {
    dataset_visible && row.is_some_and(|r| field(r, "state") == Some("active"))
}

/// What a transaction's derivation needs fetched, in order of first change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Datasets referenced by resource or child changes whose own row did not change:
    /// fetched into [`Lookups::packages`].
    pub untouched: Vec<String>,
    /// Datasets whose visibility changed for any reader class: their resources are
    /// fetched into [`Lookups::resources`].
    pub visibility_changed: Vec<String>,
}

/// One committed transaction's changes, in capture order.
#[derive(Debug, Clone)]
pub struct Transaction {
    /// PostgreSQL transaction id.
    pub txid: i64,
    /// Its captured changes, ordered by change-log id.
    pub changes: Vec<Change>,
}

/// What happened to the datasets of one transaction, entity by entity.
struct Summary {
    /// Datasets in order of their first change.
    datasets: Vec<String>,
    packages: HashMap<String, Track>,
    resources: Vec<(String, Track)>,
    children: HashMap<String, BTreeSet<&'static str>>,
}

impl Transaction {
    fn summarise(&self) -> Summary {
        let mut datasets: Vec<(i64, String)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut packages: HashMap<String, Track> = HashMap::new();
        let mut resources: Vec<(String, Track)> = Vec::new();
        let mut resource_index: HashMap<String, usize> = HashMap::new();
        let mut children: HashMap<String, BTreeSet<&'static str>> = HashMap::new();

        for change in &self.changes {
            let Some(dataset) = change.package_id.clone() else {
                continue;
            };
            if seen.insert(dataset.clone()) {
                datasets.push((change.id, dataset.clone()));
            }
            match change.table {
                Table::Package => {
                    packages
                        .entry(change.row_id.clone())
                        .and_modify(|t| t.apply(change))
                        .or_insert_with(|| Track::new(change));
                }
                Table::Resource => match resource_index.get(&change.row_id) {
                    Some(i) => resources[*i].1.apply(change),
                    None => {
                        resource_index.insert(change.row_id.clone(), resources.len());
                        resources.push((change.row_id.clone(), Track::new(change)));
                    }
                },
                Table::PackageTag => {
                    children.entry(dataset).or_default().insert("tags");
                }
                Table::PackageExtra => {
                    children.entry(dataset).or_default().insert("extras");
                }
                Table::Member => {
                    // The owner organization's row mirrors package.owner_org; only groups count.
                    let row = change.new_row.as_ref().or(change.old_row.as_ref());
                    if row.and_then(|r| field(r, "capacity")) != Some("organization") {
                        children.entry(dataset).or_default().insert("groups");
                    }
                }
            }
        }
        datasets.sort();
        Summary {
            datasets: datasets.into_iter().map(|(_, d)| d).collect(),
            packages,
            resources,
            children,
        }
    }

    /// The rows the rules need that the transaction did not write, worked out from one
    /// pass over its changes: the caller fetches them into [`Lookups`].
    pub fn needs(&self) -> Needs {
        let summary = self.summarise();
        let mut needs = Needs::default();
        for dataset in summary.datasets {
            match summary.packages.get(&dataset) {
                None => needs.untouched.push(dataset),
                Some(track) => {
                    let flipped = Class::ALL.iter().any(|class| {
                        let (before, after) =
                            seen_by(*class, track.before.as_ref(), track.after.as_ref());
                        before != after
                    });
                    if flipped {
                        needs.visibility_changed.push(dataset);
                    }
                }
            }
        }
        needs
    }

    /// Datasets referenced by resource or child changes whose own row did not change.
    pub fn untouched_datasets(&self) -> Vec<String> {
        self.needs().untouched
    }

    /// Datasets whose visibility changed for any reader class.
    pub fn visibility_changed_datasets(&self) -> Vec<String> {
        self.needs().visibility_changed
    }

    /// When the transaction's last change was captured.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.changes
            .iter()
            .map(|c| c.captured_at)
            .max()
            .unwrap_or_else(Utc::now)
    }
}

/// An event and who it is for.
#[derive(Debug, Clone)]
pub struct ScopedEvent {
    /// The event.
    pub event: Event,
    /// The reader classes that receive it.
    pub audience: Audience,
    /// The dataset's organization before the transaction: reading it then is
    /// membership of this one.
    pub organization_before: Option<String>,
    /// The dataset's organization after the transaction.
    pub organization_after: Option<String>,
}

/// Derives the transaction's events for every reader class, in the order receivers
/// should see them: per dataset (in order of first change), creates parent first,
/// deletes children first, and a dataset update after its resources' events. Classes
/// that see the same thing share events, so a dataset public before and after gives
/// each event once, for [`Audience::EVERYONE`]; each class's events of one dataset stay
/// together and in order.
pub fn derive_scoped(tx: &Transaction, lookups: &Lookups) -> Vec<ScopedEvent> {
    let summary = tx.summarise();
    let occurred_at = tx.occurred_at();
    let mut events = Vec::new();

    for dataset in &summary.datasets {
        let (before, after, own) = match summary.packages.get(dataset) {
            Some(track) => (track.before.as_ref(), track.after.as_ref(), Some(track)),
            None => {
                let current = lookups.packages.get(dataset);
                (current, current, None)
            }
        };
        let meta_row = after.or(before);
        let meta = Meta {
            dataset_id: dataset,
            organization_id: meta_row
                .and_then(|r| field(r, "owner_org"))
                .map(String::from),
            dataset_type: meta_row.and_then(|r| field(r, "type")).map(String::from),
            occurred_at,
        };
        let view = DatasetView {
            summary: &summary,
            lookups,
            dataset,
            before,
            after,
            own,
            meta: &meta,
        };

        // Classes that see the same visibility before and after see the same events.
        // Rights come from the organization, so while it stays the same nobody reads
        // the dataset on one side only, and those two classes need no events.
        let organization_before = before.and_then(|r| field(r, "owner_org"));
        let organization_after = after.and_then(|r| field(r, "owner_org"));
        let moved = organization_before != organization_after;
        let mut groups: Vec<((bool, bool), Audience)> = Vec::new();
        for class in Class::ALL {
            if !moved && class.reads_before != class.reads_after {
                continue;
            }
            let seen = seen_by(class, before, after);
            match groups.iter_mut().find(|(s, _)| *s == seen) {
                Some((_, audience)) => *audience = audience.with(class),
                None => groups.push((seen, Audience::NOBODY.with(class))),
            }
        }
        if let [(_, audience)] = groups.as_mut_slice() {
            *audience = Audience::EVERYONE;
        }
        for ((was_visible, is_visible), audience) in groups {
            for event in view.events(was_visible, is_visible) {
                events.push(ScopedEvent {
                    event,
                    audience,
                    organization_before: organization_before.map(String::from),
                    organization_after: organization_after.map(String::from),
                });
            }
        }
    }
    events
}

/// Derives the transaction's events as someone who reads no private dataset sees them
/// (the [`Class::OUTSIDER`] class), in order.
pub fn derive(tx: &Transaction, lookups: &Lookups) -> Vec<Event> {
    derive_scoped(tx, lookups)
        .into_iter()
        .filter(|e| e.audience.contains(Class::OUTSIDER))
        .map(|e| e.event)
        .collect()
}

/// One dataset of a transaction, with what its events are made of.
struct DatasetView<'a> {
    summary: &'a Summary,
    lookups: &'a Lookups,
    dataset: &'a String,
    before: Option<&'a Value>,
    after: Option<&'a Value>,
    own: Option<&'a Track>,
    meta: &'a Meta<'a>,
}

impl DatasetView<'_> {
    /// The dataset's events for subscribers to whom it was and is visible as given.
    fn events(&self, was_visible: bool, is_visible: bool) -> Vec<Event> {
        let (summary, lookups, dataset, meta) =
            (self.summary, self.lookups, self.dataset, self.meta);
        let (before, after, own) = (self.before, self.after, self.own);
        let mut events = Vec::new();

        // Resource transitions: tracked ones first, then untouched ones of a dataset
        // whose visibility changed.
        let tracked: Vec<&(String, Track)> = summary
            .resources
            .iter()
            .filter(|(_, t)| resource_dataset(t).as_deref() == Some(dataset.as_str()))
            .collect();
        let mut resource_events = Vec::new();
        for (_, track) in &tracked {
            let rv_before = resource_visible(track.before.as_ref(), was_visible);
            let rv_after = resource_visible(track.after.as_ref(), is_visible);
            match (rv_before, rv_after) {
                (false, true) => resource_events.push(meta.event(
                    "resource/create",
                    track.after.clone().unwrap_or(Value::Null),
                    None,
                )),
                (true, false) => resource_events.push(meta.event(
                    "resource/delete",
                    track.deleted_entity().cloned().unwrap_or(Value::Null),
                    None,
                )),
                (true, true) if track.content_changed() => resource_events.push(meta.event(
                    "resource/update",
                    track.after.clone().unwrap_or(Value::Null),
                    Some(json!(track.changed_fields())),
                )),
                _ => {}
            }
        }
        if was_visible != is_visible {
            let tracked_ids: HashSet<&str> = tracked.iter().map(|(id, _)| id.as_str()).collect();
            for row in lookups.resources.get(dataset).into_iter().flatten() {
                let id = field(row, "id").unwrap_or_default();
                if tracked_ids.contains(id) || field(row, "state") != Some("active") {
                    continue;
                }
                let topic = if is_visible {
                    "resource/create"
                } else {
                    "resource/delete"
                };
                resource_events.push(meta.event(topic, row.clone(), None));
            }
        }

        match (was_visible, is_visible) {
            (false, true) => {
                let entity = after.cloned().unwrap_or(Value::Null);
                events.push(meta.event("dataset/create", entity, None));
                events.extend(resource_events);
            }
            (true, false) => {
                events.extend(resource_events);
                let entity = own
                    .and_then(|t| t.deleted_entity())
                    .or(before)
                    .cloned()
                    .unwrap_or(Value::Null);
                events.push(meta.event("dataset/delete", entity, None));
            }
            (true, true) => {
                let mut changes: Vec<String> = own.map(|t| t.changed_fields()).unwrap_or_default();
                if !resource_events.is_empty() {
                    changes.push("resources".into());
                }
                if let Some(kinds) = summary.children.get(dataset) {
                    changes.extend(kinds.iter().map(|k| k.to_string()));
                }
                let has_events = !resource_events.is_empty();
                events.extend(resource_events);
                if !changes.is_empty() || has_events {
                    let entity = after.cloned().unwrap_or(Value::Null);
                    events.push(meta.event("dataset/update", entity, Some(json!(changes))));
                }
            }
            (false, false) => {}
        }
        events
    }
}

/// The dataset a resource belongs to after the transaction (before it, if deleted).
fn resource_dataset(track: &Track) -> Option<String> {
    track
        .after
        .as_ref()
        .or(track.before.as_ref())
        .and_then(|r| field(r, "package_id"))
        .map(String::from)
}

/// What every event of one dataset carries.
struct Meta<'a> {
    dataset_id: &'a str,
    organization_id: Option<String>,
    dataset_type: Option<String>,
    occurred_at: DateTime<Utc>,
}

impl Meta<'_> {
    fn event(&self, topic: &str, entity: Value, changes: Option<Value>) -> Event {
        Event {
            id: new_id(),
            topic: topic.to_string(),
            dataset_id: self.dataset_id.to_string(),
            organization_id: self.organization_id.clone(),
            dataset_type: self.dataset_type.clone(),
            entity: scrub(strip_hidden(entity)),
            changes,
            occurred_at: self.occurred_at,
        }
    }
}

/// Removes the capture's bookkeeping keys from an image.
fn strip_hidden(mut row: Value) -> Value {
    if let Value::Object(map) = &mut row {
        map.retain(|k, _| !k.starts_with("__"));
    }
    row
}

/// A new random id: 128 bits, hex.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
#[path = "derive_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "derive_access_tests.rs"]
mod access_tests;
