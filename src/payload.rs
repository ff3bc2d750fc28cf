//! The JSON body a receiver gets. The old plugin's keys keep their meaning
//! (`entity`, `address`, `webhook_id`, `ckan`, `topic`, `user_ref`); the rest are ours.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

/// A derived event as stored in the side schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id (the same for every subscription that receives it).
    pub id: String,
    /// `dataset/create`, `resource/update`, ...
    pub topic: String,
    /// The dataset the event is about (the resource's dataset for resource events).
    pub dataset_id: String,
    /// The dataset's organization, if it has one.
    pub organization_id: Option<String>,
    /// `package.type`: `dataset`, `harvest`, ...
    pub dataset_type: Option<String>,
    /// The row as CKAN stores it, after the change (before it, for deletes).
    pub entity: Value,
    /// For updates: changed field names, and child-table names for child changes.
    pub changes: Option<Value>,
    /// When the transaction's last change was captured.
    pub occurred_at: DateTime<Utc>,
}

/// The subscription a body is addressed to.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The hook's id.
    pub webhook_id: &'a str,
    /// The hook's address.
    pub address: &'a str,
    /// The hook owner's CKAN user id.
    pub user_ref: &'a str,
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    topic: &'a str,
    webhook_id: &'a str,
    address: &'a str,
    user_ref: &'a str,
    ckan: &'a str,
    occurred_at: String,
    dataset_id: &'a str,
    organization_id: Option<&'a str>,
    dataset_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<&'a Value>,
    entity: &'a Value,
}

/// Columns never sent to a receiver: internal to CKAN plugins or credentials.
pub const SECRET_COLUMNS: &[&str] = &["plugin_data", "apikey", "password", "reset_key"];

/// Removes secret columns from a captured row.
pub fn scrub(mut entity: Value) -> Value {
    if let Value::Object(map) = &mut entity {
        for column in SECRET_COLUMNS {
            map.remove(*column);
        }
    }
    entity
}

/// Serialises the body for one (event, subscription). Deterministic, so a retry sends
/// the same bytes.
pub fn render(event: &Event, to: Recipient<'_>, site_url: &str) -> Vec<u8> {
    let body = Body {
        id: &event.id,
        topic: &event.topic,
        webhook_id: to.webhook_id,
        address: to.address,
        user_ref: to.user_ref,
        ckan: site_url,
        occurred_at: event
            .occurred_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        dataset_id: &event.dataset_id,
        organization_id: event.organization_id.as_deref(),
        dataset_type: event.dataset_type.as_deref(),
        changes: event.changes.as_ref(),
        entity: &event.entity,
    };
    serde_json::to_vec(&body).expect("payload serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_keeps_old_keys_and_adds_ours() {
        let event = Event {
            id: "ev1".into(),
            topic: "dataset/update".into(),
            dataset_id: "p1".into(),
            organization_id: Some("o1".into()),
            dataset_type: Some("dataset".into()),
            entity: scrub(json!({"id": "p1", "title": "T", "plugin_data": {"x": 1}})),
            changes: Some(json!(["title"])),
            occurred_at: "2026-01-02T03:04:05.123456Z".parse().unwrap(),
        };
        let to = Recipient {
            webhook_id: "h1",
            address: "http://r/",
            user_ref: "u1",
        };
        let body: Value = serde_json::from_slice(&render(&event, to, "http://ckan")).unwrap();
        assert_eq!(
            body,
            json!({
                "id": "ev1", "topic": "dataset/update", "webhook_id": "h1",
                "address": "http://r/", "user_ref": "u1", "ckan": "http://ckan",
                "occurred_at": "2026-01-02T03:04:05.123456Z", "dataset_id": "p1",
                "organization_id": "o1", "dataset_type": "dataset", "changes": ["title"],
                "entity": {"id": "p1", "title": "T"}
            })
        );
    }
}
