//! `webhook_deliveries`: a webhook's deliveries, newest first, each with the attempts
//! the delivery worker logged (time, HTTP status, latency, error, first bytes of the
//! response). Pages are cut by a cursor (stable while new deliveries arrive) or by an
//! offset; either way the order is total, so no delivery appears on two pages.

use super::actions::{ckan_time, ckan_time_or_null, visible_hook, Action};
use super::envelope::ApiError;
use super::fields::{optional_int, optional_string};
use super::request::Params;
use super::validate::{self, Errors, MAX_FILTER_CHARS};
use crate::store::history::{self, AttemptRecord, DeliveryQuery, DeliveryRecord};
use crate::store::users::CkanUser;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Deliveries per page unless the caller says.
pub const DEFAULT_LIMIT: i64 = 50;

/// The most deliveries one page may hold.
pub const MAX_LIMIT: i64 = 500;

/// The deepest offset; further back, the cursor pages without scanning what it skips.
pub const MAX_OFFSET: i64 = 100_000;

/// The attempts shown per delivery: the latest ones, since a delivery redelivered
/// many times keeps every attempt in the log.
pub const ATTEMPTS_PER_DELIVERY: i64 = 25;

/// The statuses a delivery can be in.
pub const STATUSES: &[&str] = &["pending", "delivered", "dead", "cancelled"];

const KNOWN: &[&str] = &["id", "limit", "offset", "cursor", "status", "dataset"];

/// The checked parameters of `webhook_deliveries`.
#[derive(Debug, Clone)]
pub struct DeliveriesParams {
    /// The webhook whose deliveries to list.
    pub id: String,
    /// The page: filters, position and size.
    pub query: DeliveryQuery,
}

/// A page boundary as callers see it: `<created_at in µs since 1970>.<seq>` of the last
/// delivery on the previous page.
pub fn encode_cursor(created_at: &DateTime<Utc>, seq: i64) -> String {
    format!("{}.{seq}", created_at.timestamp_micros())
}

/// The page boundary in `cursor`, if it is one [`encode_cursor`] wrote.
pub fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, i64)> {
    let (micros, seq) = cursor.split_once('.')?;
    let time = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((time, seq.parse().ok()?))
}

/// Checks `webhook_deliveries`' parameters.
pub fn check(params: &Params) -> Result<DeliveriesParams, ApiError> {
    let mut errors = Errors::default();
    errors.unknown_keys(params, KNOWN, Action::Deliveries.name());
    let id = validate::required_string(params, "id", &mut errors);
    let limit = optional_int(params, "limit", 1..=MAX_LIMIT, &mut errors);
    let offset = optional_int(params, "offset", 0..=MAX_OFFSET, &mut errors);

    let cursor = optional_string(params, "cursor", 64, &mut errors);
    let after = cursor.as_deref().and_then(|cursor| {
        let decoded = decode_cursor(cursor);
        if decoded.is_none() {
            errors.add("cursor", "Not a cursor that webhook_deliveries gave");
        }
        decoded
    });
    if cursor.is_some() && offset.is_some() {
        errors.add("cursor", "Give a cursor or an offset, not both");
    }

    let status = optional_string(params, "status", 20, &mut errors);
    if let Some(status) = &status {
        if !STATUSES.contains(&status.as_str()) {
            errors.add("status", format!("Must be one of {}", STATUSES.join(", ")));
        }
    }
    let dataset = optional_string(params, "dataset", MAX_FILTER_CHARS, &mut errors);

    let checked = DeliveriesParams {
        id: id.unwrap_or_default(),
        query: DeliveryQuery {
            status,
            dataset,
            after,
            offset: offset.unwrap_or(0),
            limit: limit.unwrap_or(DEFAULT_LIMIT),
        },
    };
    errors.finish(checked)
}

/// Runs `webhook_deliveries`: `{"results": [...], "next_cursor": ...}`, where
/// `next_cursor` is null on the last page.
pub async fn run(
    client: &deadpool_postgres::Object,
    caller: &CkanUser,
    params: &Params,
) -> Result<Value, ApiError> {
    let DeliveriesParams { id, mut query } = check(params)?;
    visible_hook(client, caller, &id).await?;

    // One row more than asked tells whether another page follows.
    let limit = query.limit;
    query.limit += 1;
    let mut deliveries = history::list_deliveries(&***client, &id, &query).await?;
    let more = deliveries.len() as i64 > limit;
    deliveries.truncate(limit as usize);

    let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    let attempts = history::recent_attempts(&***client, &ids, ATTEMPTS_PER_DELIVERY).await?;
    let mut by_delivery: HashMap<&str, Vec<Value>> = HashMap::new();
    for attempt in &attempts {
        by_delivery
            .entry(attempt.delivery_id.as_str())
            .or_default()
            .push(attempt_dict(attempt));
    }

    let next_cursor = match deliveries.last() {
        Some(last) if more => json!(encode_cursor(&last.created_at, last.seq)),
        _ => Value::Null,
    };
    let results: Vec<Value> = deliveries
        .iter()
        .map(|delivery| {
            let log = by_delivery.remove(delivery.id.as_str()).unwrap_or_default();
            delivery_dict(delivery, log)
        })
        .collect();
    Ok(json!({"results": results, "next_cursor": next_cursor}))
}

/// A delivery as the API shows it; `next_attempt_at` only while one is planned.
fn delivery_dict(delivery: &DeliveryRecord, attempt_log: Vec<Value>) -> Value {
    let next_attempt_at = if delivery.status == "pending" {
        json!(ckan_time(&delivery.next_attempt_at))
    } else {
        Value::Null
    };
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "topic": delivery.topic,
        "dataset_id": delivery.dataset_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "created": ckan_time(&delivery.created_at),
        "next_attempt_at": next_attempt_at,
        "delivered_at": ckan_time_or_null(delivery.delivered_at.as_ref()),
        "attempt_log": attempt_log,
    })
}

fn attempt_dict(attempt: &AttemptRecord) -> Value {
    json!({
        "attempt": attempt.attempt,
        "attempted_at": ckan_time(&attempt.attempted_at),
        "http_status": attempt.status,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
        "response_head": attempt.response_head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(value: Value) -> Params {
        value.as_object().unwrap().clone()
    }

    fn invalid(value: Value) -> Vec<String> {
        match check(&params(value)) {
            Err(ApiError::Validation(fields)) => fields.into_keys().collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn cursors_round_trip() {
        let time = DateTime::from_timestamp_micros(1_777_000_000_123_456).unwrap();
        let cursor = encode_cursor(&time, 42);
        assert_eq!(decode_cursor(&cursor), Some((time, 42)));
        for bad in ["", "1", "a.b", "1.", ".1", "99999999999999999999.1"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults_and_bounds() {
        let checked = check(&params(json!({"id": "x"}))).unwrap();
        assert_eq!(
            (checked.query.limit, checked.query.offset),
            (DEFAULT_LIMIT, 0)
        );
        let checked = check(&params(
            json!({"id": "x", "limit": "500", "status": "dead"}),
        ))
        .unwrap();
        assert_eq!(checked.query.limit, 500);
        assert_eq!(checked.query.status.as_deref(), Some("dead"));

        assert_eq!(invalid(json!({"id": "x", "limit": 501})), vec!["limit"]);
        assert_eq!(invalid(json!({"id": "x", "limit": 0})), vec!["limit"]);
        assert_eq!(invalid(json!({"id": "x", "offset": -1})), vec!["offset"]);
        assert_eq!(
            invalid(json!({"id": "x", "status": "sent"})),
            vec!["status"]
        );
        assert_eq!(
            invalid(json!({"id": "x", "cursor": "nope"})),
            vec!["cursor"]
        );
        assert_eq!(
            invalid(json!({"id": "x", "cursor": "1.2", "offset": 3})),
            vec!["cursor"]
        );
        assert_eq!(invalid(json!({"limit": 5, "page": 2})), vec!["id", "page"]);
    }
}
