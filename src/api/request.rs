//! Reading an action's parameters the ways CKAN accepts them: a JSON object body, a
//! form-encoded body (including CKAN's quirk of a single form key that is itself JSON,
//! which is what `curl -d '{...}'` sends), or the query string of a GET for actions
//! that change nothing.

use super::envelope::ApiError;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{header, HeaderMap, Method, Request};
use serde_json::{Map, Value};
use std::time::Duration;

/// An action's parameters: CKAN's `data_dict`.
pub type Params = Map<String, Value>;

/// The largest request body read; webhook parameters are a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long a client may take to send its body once the headers are in; without a
/// bound, a client that declares a length and sends nothing holds its task for ever.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the parameters of `request`. `allow_get` is true for actions that change
/// nothing; other actions refuse GET, as CKAN does.
pub async fn read_params(request: Request<Incoming>, allow_get: bool) -> Result<Params, ApiError> {
    let (parts, body) = request.into_parts();

    if parts.method == Method::GET {
        if !allow_get {
            return Err(bad_json("this action changes data, use POST"));
        }
        return Ok(from_pairs(parts.uri.query().unwrap_or("").as_bytes()));
    }

    // A declared length over the limit is refused before waiting for any of it.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }

    let bytes = read_body(body).await?;
    if is_form(&parts.headers) {
        return from_form(&bytes);
    }
    from_json(&bytes)
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect());
    match read.await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(bad_json("the request body could not be read")),
        Err(_) => Err(bad_json(&format!(
            "the request body did not arrive within {} seconds",
            BODY_TIMEOUT.as_secs()
        ))),
    }
}

fn too_large() -> ApiError {
    bad_json(&format!(
        "the request body is larger than {MAX_BODY_BYTES} bytes"
    ))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

fn bad_json(why: &str) -> ApiError {
    ApiError::BadRequest(format!("JSON Error: {why}"))
}

/// A JSON body: empty means no parameters; anything but an object is refused.
fn from_json(bytes: &[u8]) -> Result<Params, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Params::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(params)) => Ok(params),
        Ok(_) => Err(bad_json("the request body must be a JSON object")),
        Err(err) => Err(bad_json(&format!(
            "the request body is not valid JSON ({err})"
        ))),
    }
}

/// A form body. One key whose value is empty or `1` is a JSON document sent with the
/// wrong content type; CKAN decodes it as JSON and so do we.
fn from_form(bytes: &[u8]) -> Result<Params, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(bytes).into_owned().collect();
    if let [(key, value)] = pairs.as_slice() {
        if value.is_empty() || value == "1" {
            let trimmed = key.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                return from_json(key.as_bytes());
            }
        }
    }
    Ok(from_pairs(bytes))
}

/// Form or query pairs as parameters: one value is a string, repeated keys a list.
fn from_pairs(bytes: &[u8]) -> Params {
    let mut params = Params::new();
    for (key, value) in form_urlencoded::parse(bytes).into_owned() {
        match params.get_mut(&key) {
            None => {
                params.insert(key, Value::String(value));
            }
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => {
                let first = first.take();
                params.insert(key, Value::Array(vec![first, Value::String(value)]));
            }
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_bodies() {
        assert_eq!(from_json(b"").unwrap(), Params::new());
        assert_eq!(from_json(br#"{"id": "x"}"#).unwrap()["id"], json!("x"));
        assert!(matches!(from_json(b"[1]"), Err(ApiError::BadRequest(_))));
        assert!(matches!(from_json(b"{nope"), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn form_bodies_and_the_json_key_quirk() {
        let params =
            from_form(b"topic=dataset%2Fcreate&address=https%3A%2F%2Fa.example%2F").unwrap();
        assert_eq!(params["topic"], json!("dataset/create"));
        assert_eq!(params["address"], json!("https://a.example/"));

        let params = from_form(br#"{"topic": "dataset/create"}"#).unwrap();
        assert_eq!(params["topic"], json!("dataset/create"));

        let params = from_pairs(b"a=1&a=2&b=3");
        assert_eq!(params["a"], json!(["1", "2"]));
        assert_eq!(params["b"], json!("3"));
    }
}
