//! CKAN's response envelopes: `{"help", "success", "result"}` on success and
//! `{"help", "success": false, "error": {"__type", ...}}` on failure, with the status
//! codes CKAN's action view answers (403, 404, 409; 400 for requests it cannot read,
//! whose body is a bare JSON string, as in CKAN).

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The response type of every API handler.
pub type ApiResponse = Response<Full<Bytes>>;

/// Why an action call failed, in CKAN's categories.
#[derive(Debug)]
pub enum ApiError {
    /// The request could not be read (unknown action, bad JSON); status 400.
    BadRequest(String),
    /// Field name to messages, as CKAN's `ValidationError`; status 409.
    Validation(BTreeMap<String, Vec<String>>),
    /// The object does not exist or the caller may not know it does; status 404.
    NotFound(String),
    /// The caller is anonymous or lacks the rights; status 403.
    NotAuthorized(String),
    /// Something broke on our side; the caller gets a generic 500, the log the details.
    Internal(crate::error::Error),
}

impl ApiError {
    /// A validation error on one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(name.to_string(), vec![message.into()]);
        ApiError::Validation(errors)
    }

    /// The HTTP status CKAN answers for this kind of error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotAuthorized(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::error::Error> for ApiError {
    fn from(err: crate::error::Error) -> Self {
        ApiError::Internal(err)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

/// The `help` link CKAN puts in every action response.
pub fn help_url(site_url: &str, action: &str) -> String {
    format!("{site_url}/api/3/action/help_show?name={action}")
}

/// A JSON response with CKAN's content type.
pub fn json(status: StatusCode, body: &Value) -> ApiResponse {
    let bytes = serde_json::to_vec(body).expect("a JSON value always serialises");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json;charset=utf-8")
        .body(Full::new(Bytes::from(bytes)))
        .expect("static status and header are valid")
}

/// The success envelope around an action's result.
pub fn success(site_url: &str, action: &str, result: Value) -> ApiResponse {
    let body = json!({
        "help": help_url(site_url, action),
        "success": true,
        "result": result,
    });
    json(StatusCode::OK, &body)
}

/// The failure response for `err`. `action` is None when the action is unknown, where
/// CKAN answers a bare string rather than an envelope.
pub fn failure(site_url: &str, action: Option<&str>, err: &ApiError) -> ApiResponse {
    let error = match err {
        ApiError::BadRequest(message) => {
            return json(
                err.status(),
                &Value::String(format!("Bad request: {message}")),
            );
        }
        ApiError::Validation(fields) => {
            let mut error = serde_json::Map::new();
            for (field, messages) in fields {
                error.insert(field.clone(), json!(messages));
            }
            error.insert("__type".into(), json!("Validation Error"));
            Value::Object(error)
        }
        ApiError::NotFound(message) => json!({
            "__type": "Not Found Error",
            "message": format!("Not found: {message}"),
        }),
        ApiError::NotAuthorized(message) => json!({
            "__type": "Authorization Error",
            "message": format!("Access denied: {message}"),
        }),
        ApiError::Internal(_) => json!({
            "__type": "Internal Server Error",
            "message": "Internal Server Error",
        }),
    };

    let mut body = serde_json::Map::new();
    if let Some(action) = action {
        body.insert("help".into(), json!(help_url(site_url, action)));
    }
    body.insert("success".into(), json!(false));
    body.insert("error".into(), error);
    json(err.status(), &Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: ApiResponse) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn validation_errors_name_their_fields() {
        let err = ApiError::field("topic", "Missing value");
        let response = failure("http://ckan.example", Some("webhook_create"), &err);
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            body_of(response).await,
            json!({
                "help": "http://ckan.example/api/3/action/help_show?name=webhook_create",
                "success": false,
                "error": {"__type": "Validation Error", "topic": ["Missing value"]},
            })
        );
    }

    #[tokio::test]
    async fn bad_requests_are_bare_strings() {
        let err = ApiError::BadRequest("Action name not known: nope".into());
        let response = failure("http://ckan.example", None, &err);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_of(response).await,
            json!("Bad request: Action name not known: nope")
        );
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_more() {
        let err = ApiError::Internal(crate::error::Error::config("secret detail"));
        let response = failure("http://ckan.example", Some("webhook_show"), &err);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(response).await.to_string();
        assert!(!body.contains("secret detail"));
    }
}
