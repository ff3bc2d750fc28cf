//! Checking action parameters, with errors keyed by field as CKAN's validators report
//! them: every problem in one answer, each under the name of the field it concerns.

use super::envelope::ApiError;
use super::request::Params;
use crate::target::check_address;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The topics a webhook may listen to: CKAN's dataset and resource events and wildcards.
pub const TOPICS: &[&str] = &[
    "dataset/create",
    "dataset/update",
    "dataset/delete",
    "resource/create",
    "resource/update",
    "resource/delete",
    "dataset/*",
    "resource/*",
    "*",
];

/// The filter keys a webhook may carry; each value is one string to match.
pub const FILTER_KEYS: &[&str] = &["dataset", "organization", "dataset_type", "resource_format"];

/// The shortest signing secret a caller may choose.
pub const MIN_SECRET_CHARS: usize = 16;

/// The longest signing secret a caller may choose; `whsec_` secrets are far shorter.
pub const MAX_SECRET_CHARS: usize = 256;

/// The longest filter value; CKAN's names and ids are at most 100 characters.
pub const MAX_FILTER_CHARS: usize = 200;

const MISSING: &str = "Missing value";

/// The checked parameters of `webhook_create`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateParams {
    /// One of [`TOPICS`].
    pub topic: String,
    /// An http(s) URL that [`check_address`] accepts.
    pub address: String,
    /// A JSON object with keys from [`FILTER_KEYS`] and string values.
    pub filters: Value,
    /// The caller's own signing secret, if they chose one.
    pub secret: Option<String>,
}

/// Errors gathered field by field, turned into one `ValidationError` at the end.
#[derive(Default)]
pub struct Errors(BTreeMap<String, Vec<String>>);

impl Errors {
    /// Records one problem with `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    /// Records every parameter that `action` does not take.
    pub fn unknown_keys(&mut self, params: &Params, known: &[&str], action: &str) {
        for key in params.keys().filter(|key| !known.contains(&key.as_str())) {
            self.add(key, format!("{action} does not take this field"));
        }
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields with problems, in order.
    pub fn fields(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// The checked `value`, or every recorded problem as one `ValidationError`.
    pub fn finish<T>(self, value: T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// A required string field; empty or absent is "Missing value", like CKAN's
/// `not_empty`.
pub fn required_string(params: &Params, field: &str, errors: &mut Errors) -> Option<String> {
    match params.get(field) {
        None | Some(Value::Null) => errors.add(field, MISSING),
        Some(Value::String(text)) if text.trim().is_empty() => errors.add(field, MISSING),
        Some(Value::String(text)) => return Some(text.clone()),
        Some(_) => errors.add(field, "Must be a string"),
    }
    None
}

/// True when `text` holds a control character (NUL, newline, escape…), which no topic,
/// secret or CKAN name needs and PostgreSQL cannot always store.
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// At most the first 100 characters of a caller's text, for an error message.
pub fn shortened(text: &str) -> String {
    match text.char_indices().nth(100) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Checks `webhook_create`'s parameters. `allow_private` lets loopback and private
/// receiver addresses through, for operators who allow them.
pub fn create(params: &Params, allow_private: bool) -> Result<CreateParams, ApiError> {
    let mut errors = Errors::default();
    errors.unknown_keys(
        params,
        &["topic", "address", "filters", "secret"],
        "webhook_create",
    );

    let topic = topic(params, &mut errors);
    let address = address(params, allow_private, &mut errors);
    let filters = filters(params.get("filters"), &mut errors);
    let secret = secret(params, &mut errors);

    let checked = CreateParams {
        topic: topic.unwrap_or_default(),
        address: address.unwrap_or_default(),
        filters,
        secret,
    };
    errors.finish(checked)
}

/// The required `topic`: one CKAN emits, or one of the wildcards.
pub fn topic(params: &Params, errors: &mut Errors) -> Option<String> {
    let topic = required_string(params, "topic", errors)?;
    if !TOPICS.contains(&topic.as_str()) {
        errors.add(
            "topic",
            format!(
                "Unknown topic {:?}; expected one of {}",
                shortened(&topic),
                TOPICS.join(", ")
            ),
        );
        return None;
    }
    Some(topic)
}

/// The required `address`: http(s), and public unless the operator allows otherwise.
pub fn address(params: &Params, allow_private: bool, errors: &mut Errors) -> Option<String> {
    let address = required_string(params, "address", errors)?;
    if let Err(err) = check_address(&address, allow_private) {
        errors.add("address", err.to_string());
        return None;
    }
    Some(address)
}

/// The optional `secret` a caller chooses: long enough to be worth signing with, and
/// printable.
pub fn secret(params: &Params, errors: &mut Errors) -> Option<String> {
    match params.get("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(secret)) => {
            let chars = secret.chars().count();
            if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&chars) {
                errors.add(
                    "secret",
                    format!(
                        "The secret must have {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters"
                    ),
                );
                None
            } else if has_control(secret) {
                errors.add("secret", "The secret must not contain control characters");
                None
            } else {
                Some(secret.clone())
            }
        }
        Some(_) => {
            errors.add("secret", "Must be a string");
            None
        }
    }
}

/// Checks the `filters` object. A string is accepted when it holds a JSON object, since
/// form-encoded posts cannot nest.
pub fn filters(value: Option<&Value>, errors: &mut Errors) -> Value {
    let parsed;
    let object: &Map<String, Value> = match value {
        None | Some(Value::Null) => return Value::Object(Map::new()),
        Some(Value::Object(object)) => object,
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => {
                parsed = object;
                &parsed
            }
            _ => {
                errors.add("filters", "Must be a JSON object");
                return Value::Object(Map::new());
            }
        },
        Some(_) => {
            errors.add("filters", "Must be a JSON object");
            return Value::Object(Map::new());
        }
    };

    for (key, value) in object {
        if !FILTER_KEYS.contains(&key.as_str()) {
            errors.add(
                "filters",
                format!(
                    "Unknown filter {:?}; expected one of {}",
                    shortened(key),
                    FILTER_KEYS.join(", ")
                ),
            );
            continue;
        }
        let acceptable = match value {
            Value::String(text) => {
                !text.trim().is_empty()
                    && text.chars().count() <= MAX_FILTER_CHARS
                    && !has_control(text)
            }
            _ => false,
        };
        if !acceptable {
            errors.add(
                "filters",
                format!(
                    "The filter {key:?} must be a string of 1 to {MAX_FILTER_CHARS} printable \
                     characters"
                ),
            );
        }
    }
    Value::Object(object.clone())
}

/// Checks the parameters of an action that takes only a webhook `id`.
pub fn id_only(params: &Params, action: &str) -> Result<String, ApiError> {
    let mut errors = Errors::default();
    errors.unknown_keys(params, &["id"], action);
    let id = required_string(params, "id", &mut errors);
    errors.finish(id.unwrap_or_default())
}

/// Checks `webhook_list`'s parameters: an optional `topic`, one of [`TOPICS`], which
/// keeps only the webhooks with exactly that topic.
pub fn list(params: &Params) -> Result<Option<String>, ApiError> {
    let mut errors = Errors::default();
    errors.unknown_keys(params, &["topic"], "webhook_list");
    let topic = match params.get("topic") {
        None | Some(Value::Null) => None,
        Some(_) => topic(params, &mut errors),
    };
    errors.finish(topic)
}

/// Checks the parameters of an action that takes none.
pub fn nothing(params: &Params, action: &str) -> Result<(), ApiError> {
    let mut errors = Errors::default();
    errors.unknown_keys(params, &[], action);
    errors.finish(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Params {
        value.as_object().unwrap().clone()
    }

    fn fields(result: Result<CreateParams, ApiError>) -> BTreeMap<String, Vec<String>> {
        match result {
            Err(ApiError::Validation(fields)) => fields,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_complete_create() {
        let checked = create(
            &params(json!({
                "topic": "dataset/*",
                "address": "https://hooks.example.org/in",
                "filters": {"organization": "org-1"},
                "secret": "0123456789abcdef",
            })),
            false,
        )
        .unwrap();
        assert_eq!(checked.topic, "dataset/*");
        assert_eq!(checked.filters, json!({"organization": "org-1"}));
        assert_eq!(checked.secret.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn reports_every_field_at_once() {
        let errors = fields(create(&params(json!({"colour": "red", "extra": 1})), false));
        assert_eq!(errors["topic"], vec![MISSING]);
        assert_eq!(errors["address"], vec![MISSING]);
        assert!(errors.contains_key("colour"));
        assert!(errors.contains_key("extra"));
    }

    #[test]
    fn refuses_bad_topics_addresses_filters_and_secrets() {
        let errors = fields(create(
            &params(json!({
                "topic": "package/create",
                "address": "ftp://example.org/",
                "filters": {"colour": "red", "dataset": 3},
                "secret": "short",
            })),
            false,
        ));
        assert!(errors["topic"][0].contains("package/create"));
        assert!(errors["address"][0].contains("http://"));
        assert_eq!(errors["filters"].len(), 2);
        assert!(errors["secret"][0].contains("16"));
    }

    #[test]
    fn refuses_control_characters_and_oversized_values() {
        let huge = "x".repeat(10_000);
        let errors = fields(create(
            &params(json!({
                "topic": huge,
                "address": "https://a.example/",
                "filters": {"dataset": "a\u{0}b", "organization": huge},
                "secret": format!("{}\n", "s".repeat(20)),
            })),
            false,
        ));
        assert!(errors["topic"][0].len() < 500);
        assert_eq!(errors["filters"].len(), 2);
        assert!(errors["secret"][0].contains("control"));

        let errors = fields(create(
            &params(json!({"topic": "*", "address": "https://a.example/", "secret": huge})),
            false,
        ));
        assert!(errors["secret"][0].contains("256"));
    }

    #[test]
    fn private_addresses_only_when_allowed() {
        let input = params(json!({"topic": "*", "address": "http://127.0.0.1:9/x"}));
        assert!(fields(create(&input, false)).contains_key("address"));
        assert!(create(&input, true).is_ok());
    }

    #[test]
    fn filters_may_arrive_as_a_json_string() {
        let input = params(json!({
            "topic": "*",
            "address": "https://a.example/",
            "filters": "{\"dataset_type\": \"harvest\"}",
        }));
        assert_eq!(
            create(&input, false).unwrap().filters,
            json!({"dataset_type": "harvest"})
        );
    }

    #[test]
    fn id_is_required() {
        assert!(id_only(&params(json!({})), "webhook_show").is_err());
        assert_eq!(
            id_only(&params(json!({"id": "abc"})), "webhook_show").unwrap(),
            "abc"
        );
        assert!(nothing(&params(json!({"x": 1})), "webhook_list").is_err());
    }

    #[test]
    fn list_takes_an_optional_known_topic() {
        assert_eq!(list(&params(json!({}))).unwrap(), None);
        assert_eq!(list(&params(json!({"topic": null}))).unwrap(), None);
        assert_eq!(
            list(&params(json!({"topic": "dataset/*"})))
                .unwrap()
                .as_deref(),
            Some("dataset/*")
        );
        for bad in [
            json!({"topic": "package/new"}),
            json!({"topic": ""}),
            json!({"x": 1}),
        ] {
            assert!(list(&params(bad)).is_err());
        }
    }
}
