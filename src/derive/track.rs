//! One entity's state across a transaction: the old image of its first change, the new
//! image of its last, and the fields that changed in between.
//!
//! Two formats of update are read. Since sql/0010_capture_lean.sql the old image is the
//! whole old row, and the content comparison and changed fields are worked out here, so
//! the trigger computes nothing per row. Changes captured before it carry a head of the
//! old row with `__head`, `__old_hash`, `__new_hash` and `__changed`; those may still be
//! in the change log when the new file is installed.

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
                match (&change.old_row, &change.new_row) {
                    (Some(old), _) if old.get("__changed").is_some() => {
                        if let Value::Array(keys) = &old["__changed"] {
                            self.changed
                                .extend(keys.iter().filter_map(|k| k.as_str().map(String::from)));
                        }
                    }
                    (Some(Value::Object(old)), Some(Value::Object(new))) => {
                        self.changed.extend(
                            new.iter()
                                .filter(|(k, v)| old.get(k.as_str()) != Some(v))
                                .map(|(k, _)| k.clone()),
                        );
                    }
                    _ => {}
                }
            }
            Op::Delete => {
                self.after = None;
                self.after_hash = None;
            }
        }
    }

    /// Whether the content differs, `metadata_modified` aside: the two hashes of the
    /// old format, else the whole old image against the new one. Without either (a row
    /// deleted and inserted again, or a transaction captured across the upgrade) it is
    /// taken as changed.
    pub(super) fn content_changed(&self) -> bool {
        if let (Some(before), Some(after)) = (&self.before_hash, &self.after_hash) {
            return before != after;
        }
        match (&self.before, &self.after) {
            (Some(Value::Object(before)), Some(Value::Object(after)))
                if self.before_hash.is_none() && !before.contains_key("__head") =>
            {
                let content = |(k, _): &(&String, &Value)| k.as_str() != "metadata_modified";
                before.len() != after.len()
                    || before
                        .iter()
                        .filter(content)
                        .any(|(k, v)| after.get(k.as_str()) != Some(v))
            }
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
