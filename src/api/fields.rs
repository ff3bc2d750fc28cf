//! Typed optional parameters: strings, whole numbers, booleans and times, read from
//! JSON bodies and from form or query strings (where every value is text), with
//! problems recorded under the field's name.

use super::request::Params;
use super::validate::{has_control, Errors};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;
use std::ops::RangeInclusive;

/// An optional string of 1 to `max_chars` printable characters; absent or null is None.
pub fn optional_string(
    params: &Params,
    field: &str,
    max_chars: usize,
    errors: &mut Errors,
) -> Option<String> {
    match params.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(text))
            if !text.trim().is_empty()
                && text.chars().count() <= max_chars
                && !has_control(text) =>
        {
            Some(text.clone())
        }
        Some(_) => {
            errors.add(
                field,
                format!("Must be a string of 1 to {max_chars} printable characters"),
            );
            None
        }
    }
}

/// An optional whole number within `range`: a JSON number, or digits in a string as
/// forms and query strings send them. Absent or null is None.
pub fn optional_int(
    params: &Params,
    field: &str,
    range: RangeInclusive<i64>,
    errors: &mut Errors,
) -> Option<i64> {
    let number = match params.get(field) {
        None | Some(Value::Null) => return None,
        Some(Value::Number(number)) => number.as_i64(),
        Some(Value::String(text)) => text.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match number {
        Some(number) if range.contains(&number) => Some(number),
        _ => {
            errors.add(
                field,
                format!(
                    "Must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

/// An optional boolean: JSON `true`/`false`, or the words CKAN's `asbool` reads from
/// forms (`true`, `yes`, `on`, `1` and their opposites). Absent or null is None.
pub fn optional_bool(params: &Params, field: &str, errors: &mut Errors) -> Option<bool> {
    match params.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(flag)) => Some(*flag),
        Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" | "t" | "1" => Some(true),
            "false" | "no" | "off" | "n" | "f" | "0" => Some(false),
            _ => {
                errors.add(field, "Must be true or false");
                None
            }
        },
        Some(_) => {
            errors.add(field, "Must be true or false");
            None
        }
    }
}

/// An optional ISO 8601 time: with an offset (`2026-05-01T12:00:00Z`, `…+02:00`) or
/// without one, which means UTC as in CKAN's own timestamps. Absent or null is None.
pub fn optional_time(params: &Params, field: &str, errors: &mut Errors) -> Option<DateTime<Utc>> {
    let text = match params.get(field) {
        None | Some(Value::Null) => return None,
        Some(Value::String(text)) => text.trim(),
        Some(_) => "",
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|time| time.and_utc());
    }
    errors.add(
        field,
        "Must be an ISO 8601 time, such as 2026-05-01T12:00:00Z",
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Params {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn numbers_booleans_and_times_arrive_as_json_or_text() {
        let input = params(json!({
            "n": 5, "s": "7", "big": 9_000, "word": "x",
            "yes": "on", "no": false, "bad": "perhaps",
            "zulu": "2026-05-01T12:00:00Z", "offset": "2026-05-01T14:00:00+02:00",
            "naive": "2026-05-01T12:00:00.5", "day": "2026-05-01", "junk": "May 1st",
        }));
        let mut errors = Errors::default();
        assert_eq!(optional_int(&input, "n", 1..=10, &mut errors), Some(5));
        assert_eq!(optional_int(&input, "s", 1..=10, &mut errors), Some(7));
        assert_eq!(optional_int(&input, "absent", 1..=10, &mut errors), None);
        assert_eq!(optional_bool(&input, "yes", &mut errors), Some(true));
        assert_eq!(optional_bool(&input, "no", &mut errors), Some(false));
        let noon = DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z").unwrap();
        assert_eq!(
            optional_time(&input, "zulu", &mut errors),
            Some(noon.into())
        );
        assert_eq!(
            optional_time(&input, "offset", &mut errors),
            Some(noon.into())
        );
        let naive = optional_time(&input, "naive", &mut errors).unwrap();
        assert_eq!(naive.timestamp_millis(), noon.timestamp_millis() + 500);
        assert!(optional_time(&input, "day", &mut errors).is_some());
        assert!(errors.is_empty());

        assert_eq!(optional_int(&input, "big", 1..=10, &mut errors), None);
        assert_eq!(optional_int(&input, "word", 1..=10, &mut errors), None);
        assert_eq!(optional_bool(&input, "bad", &mut errors), None);
        assert_eq!(optional_time(&input, "junk", &mut errors), None);
        let named: Vec<String> = errors.fields();
        assert_eq!(named, vec!["bad", "big", "junk", "word"]);
    }
}
