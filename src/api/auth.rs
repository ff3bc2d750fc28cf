//! Who is calling: CKAN API tokens (HS256 JWTs whose `jti` is an `api_token` row) and
//! legacy API keys (`user.apikey`, CKAN 2.9 and older), read from the `Authorization`
//! or `X-CKAN-API-Key` header. Anonymous callers are always refused, and so are users
//! who are not active. Tokens never reach the log.

use super::envelope::ApiError;
use super::ApiState;
use crate::config::MinimumAuth;
use crate::store::users::{self, Capacity, CkanUser};
use hyper::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio_postgres::GenericClient;

/// One message for every unusable credential, so callers learn nothing about which
/// part of it failed.
const INVALID: &str = "the API token is not valid";

/// The claims the API reads from a CKAN token; others are ignored.
#[derive(Debug, serde::Deserialize)]
struct Claims {
    /// The `api_token.id` the token stands for.
    jti: String,
    /// The time claims, kept only to check that they are numbers when present:
    /// the JWT library skips a time claim it cannot parse, CKAN's refuses the token.
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<serde_json::Value>,
}

impl Claims {
    fn times_are_numbers(&self) -> bool {
        [&self.exp, &self.nbf, &self.iat]
            .iter()
            .all(|claim| matches!(claim, None | Some(serde_json::Value::Number(_))))
    }
}

/// The credential sent with a request: `Authorization` (raw, or after `Bearer `),
/// else `X-CKAN-API-Key`.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    let authorization = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            let value = value.trim();
            match value.get(..7) {
                Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => value[7..].trim(),
                _ => value,
            }
        })
        .filter(|value| !value.is_empty());
    let api_key = || {
        headers
            .get("x-ckan-api-key")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    authorization.or_else(api_key).map(str::to_string)
}

/// The `jti` of a CKAN API token signed with `secret`. `exp` and `nbf` claims are
/// honoured when present but not required, as CKAN's own decoding does: its tokens do
/// not expire unless a plugin says so.
fn token_id(token: &str, secret: &[u8]) -> Option<String> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.leeway = 0;
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)
        .ok()
        .filter(|data| data.claims.times_are_numbers())
        .map(|data| data.claims.jti)
}

/// The active CKAN user behind `credential`, or an Authorization Error.
pub async fn authenticate<C: GenericClient>(
    state: &ApiState,
    client: &C,
    credential: Option<&str>,
) -> Result<CkanUser, ApiError> {
    let Some(credential) = credential else {
        return Err(ApiError::NotAuthorized(
            "webhook actions need a CKAN API token in the Authorization header".into(),
        ));
    };

    // Three dot-separated parts make a JWT; anything else can only be a legacy key.
    let user = if credential.split('.').count() == 3 {
        let Some(jti) = token_id(credential, &state.token_secret) else {
            tracing::info!(reason = "undecodable token", "api caller refused");
            return Err(ApiError::NotAuthorized(INVALID.into()));
        };
        users::user_by_token_id(client, &jti).await?
    } else if state.accept_api_keys {
        users::user_by_api_key(client, credential).await?
    } else {
        tracing::info!(
            reason = "legacy api keys not accepted",
            "api caller refused"
        );
        return Err(ApiError::NotAuthorized(INVALID.into()));
    };

    match user {
        Some(user) if user.state == "active" => Ok(user),
        Some(user) => {
            tracing::info!(user_id = %user.id, user_state = %user.state, "api caller refused");
            Err(ApiError::NotAuthorized(INVALID.into()))
        }
        None => {
            tracing::info!(reason = "unknown token", "api caller refused");
            Err(ApiError::NotAuthorized(INVALID.into()))
        }
    }
}

/// Checks the operator's `minimum_auth` against the user's CKAN rights.
pub async fn authorize<C: GenericClient>(
    minimum: MinimumAuth,
    client: &C,
    user: &CkanUser,
) -> Result<(), ApiError> {
    if user.sysadmin || minimum == MinimumAuth::None {
        return Ok(());
    }

    let needed = match minimum {
        MinimumAuth::None => return Ok(()),
        MinimumAuth::Editor => Capacity::Editor,
        MinimumAuth::Admin => Capacity::Admin,
        MinimumAuth::Sysadmin => {
            return Err(ApiError::NotAuthorized(
                "webhooks on this site are for sysadmins only".into(),
            ))
        }
    };

    let held = users::organization_capacity(client, &user.id).await?;
    if held >= needed {
        return Ok(());
    }
    let role = if needed == Capacity::Admin {
        "an organization admin"
    } else {
        "an organization editor or admin"
    };
    tracing::info!(user_id = %user.id, "api caller below minimum auth");
    Err(ApiError::NotAuthorized(format!(
        "webhooks on this site are for users who are {role}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderValue, AUTHORIZATION};

    #[test]
    fn reads_either_header_and_tolerates_bearer() {
        let mut headers = HeaderMap::new();
        assert_eq!(credential(&headers), None);
        headers.insert("x-ckan-api-key", HeaderValue::from_static("key-1"));
        assert_eq!(credential(&headers).as_deref(), Some("key-1"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok.en.x"));
        assert_eq!(credential(&headers).as_deref(), Some("tok.en.x"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("tok.en.y"));
        assert_eq!(credential(&headers).as_deref(), Some("tok.en.y"));
    }

    #[test]
    fn decodes_ckan_tokens_and_honours_exp() {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let key = EncodingKey::from_secret(b"s3cret");
        let plain = encode(
            &Header::default(),
            &serde_json::json!({"jti": "t1", "iat": 1_700_000_000}),
            &key,
        )
        .unwrap();
        assert_eq!(token_id(&plain, b"s3cret").as_deref(), Some("t1"));
        assert_eq!(token_id(&plain, b"other"), None);

        let expired = encode(
            &Header::default(),
            &serde_json::json!({"jti": "t2", "iat": 1, "exp": 2}),
            &key,
        )
        .unwrap();
        assert_eq!(token_id(&expired, b"s3cret"), None);

        let now = chrono::Utc::now().timestamp();
        for claims in [
            serde_json::json!({"jti": "t4", "nbf": now + 600}),
            serde_json::json!({"jti": "t5", "exp": "never"}),
            serde_json::json!({"jti": "t6", "nbf": "now"}),
            serde_json::json!({"jti": "t7", "iat": [1]}),
        ] {
            let token = encode(&Header::default(), &claims, &key).unwrap();
            assert_eq!(token_id(&token, b"s3cret"), None, "{claims}");
        }
        let current = encode(
            &Header::default(),
            &serde_json::json!({"jti": "t8", "nbf": now - 5, "exp": now + 600}),
            &key,
        )
        .unwrap();
        assert_eq!(token_id(&current, b"s3cret").as_deref(), Some("t8"));

        let none_alg = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJqdGkiOiJ0MyJ9"
        );
        assert_eq!(token_id(&none_alg, b"s3cret"), None);
    }
}
