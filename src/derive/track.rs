//! One entity's state across a transaction: the old image of its first change, the new
//! image of its last, their content hashes and the fields that changed in between.

use super::{Change, Op};
use serde_json::Value;
use std::collections::BTreeSet;

/// An entity's state before and after the transaction.
#[derive(Debug, Clone)]
pub(super) struct Track {
    /// The old image of the first change; None when the row did not exist.
    pub(super) before: Option<Value>,
    /// The new image of the last change; None when the row is gone.
    pub(super) after: Option<Value>,
    before_hash: Option<String>,
    after_hash: Option<String>,
    changed: BTreeSet<String>,
}

impl Track {
    pub(super) fn new(change: &Change) -> Track {
        let before = match change.op {
            Op::Insert => None,
            Op::Update | Op::Delete => change.old_row.clone(),
        };
        let before_hash = hidden(&change.old_row, "__old_hash");
        let mut track = Track {
            before,
            after: None,
            before_hash,
            after_hash: None,
            changed: BTreeSet::new(),
        };
        track.apply(change);
        track
    }

    pub(super) fn apply(&mut self, change: &Change) {
        match change.op {
            Op::Insert => {
                self.after = change.new_row.clone();
                self.after_hash = None;
            }
            Op::Update => {
                self.after = change.new_row.clone();
                self.after_hash = hidden(&change.old_row, "__new_hash");
                if let Some(Value::Array(keys)) = change.old_row.as_ref().map(|o| &o["__changed"]) {
                    self.changed
                        .extend(keys.iter().filter_map(|k| k.as_str().map(String::from)));
                }
            }
            Op::Delete => {
                self.after = None;
                self.after_hash = None;
            }
        }
    }

    /// Whether the content differs, `metadata_modified` aside. Without both hashes
    /// (a row deleted and inserted again) it is taken as changed.
    pub(super) fn content_changed(&self) -> bool {
        match (&self.before_hash, &self.after_hash) {
            (Some(before), Some(after)) => before != after,
            _ => true,
        }
    }

    /// Changed field names, without `metadata_modified`.
    pub(super) fn changed_fields(&self) -> Vec<String> {
        if !self.content_changed() {
            return Vec::new();
        }
        self.changed
            .iter()
            .filter(|k| *k != "metadata_modified")
            .cloned()
            .collect()
    }

    /// The row to show for a delete: the whole old row when captured, else the new one.
    pub(super) fn deleted_entity(&self) -> Option<&Value> {
        match &self.before {
            Some(before) if before.get("__head").is_none() => Some(before),
            _ => self.after.as_ref().or(self.before.as_ref()),
        }
    }
}

fn hidden(row: &Option<Value>, key: &str) -> Option<String> {
    row.as_ref()
        .and_then(|r| r.get(key))
        .and_then(|v| v.as_str())
        .map(String::from)
}
