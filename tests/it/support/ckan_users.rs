//! CKAN identities for tests: users with API tokens (rows in `user` and `api_token` and
//! the HS256 JWT that CKAN would hand out for them), and organization memberships.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

/// The token secret every test API server is started with.
pub const TOKEN_SECRET: &[u8] = b"test-token-secret-not-for-production";

/// A CKAN user and one of their API tokens.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// `user.id`.
    pub id: String,
    /// `user.name`.
    pub name: String,
    /// `api_token.id`, the JWT's `jti`.
    pub token_id: String,
    /// The JWT the user sends.
    pub token: String,
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A CKAN API token JWT for `jti`, signed with `secret`, with optional extra claims.
pub fn jwt(jti: &str, secret: &[u8], extra: serde_json::Value) -> String {
    let mut claims = json!({"jti": jti, "iat": chrono::Utc::now().timestamp()});
    if let serde_json::Value::Object(extra) = extra {
        for (key, value) in extra {
            claims[key] = value;
        }
    }
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode a test JWT")
}

/// Creates an active user (a sysadmin when asked) with one API token.
pub async fn user(client: &tokio_postgres::Client, name: &str, sysadmin: bool) -> TestUser {
    let id = format!("user-{}", random_hex());
    client
        .execute(
            "INSERT INTO public.\"user\" (id, name, sysadmin, state, created) \
             VALUES ($1, $2, $3, 'active', now())",
            &[&id, &name, &sysadmin],
        )
        .await
        .expect("insert user");
    let token_id = format!("tok-{}", random_hex());
    client
        .execute(
            "INSERT INTO public.api_token (id, name, user_id) VALUES ($1, 'test', $2)",
            &[&token_id, &id],
        )
        .await
        .expect("insert api token");
    TestUser {
        token: jwt(&token_id, TOKEN_SECRET, json!({})),
        id,
        name: name.to_string(),
        token_id,
    }
}

/// Sets a user's `state` (`active`, `pending`, `deleted`).
pub async fn set_state(client: &tokio_postgres::Client, user: &TestUser, state: &str) {
    client
        .execute(
            "UPDATE public.\"user\" SET state = $2 WHERE id = $1",
            &[&user.id, &state],
        )
        .await
        .expect("update user state");
}

/// Revokes the user's token as CKAN's `api_token_revoke` does: the row goes away.
pub async fn revoke(client: &tokio_postgres::Client, user: &TestUser) {
    client
        .execute(
            "DELETE FROM public.api_token WHERE id = $1",
            &[&user.token_id],
        )
        .await
        .expect("delete api token");
}

/// Creates an organization in `org_state` and makes the user a member with `capacity`.
pub async fn join_organization(
    client: &tokio_postgres::Client,
    user: &TestUser,
    capacity: &str,
    org_state: &str,
) {
    let org_id = format!("org-{}", random_hex());
    client
        .execute(
            "INSERT INTO public.\"group\" (id, name, title, state, type, is_organization) \
             VALUES ($1, $1, 'Test organization', $2, 'organization', true)",
            &[&org_id, &org_state],
        )
        .await
        .expect("insert organization");
    client
        .execute(
            "INSERT INTO public.member (id, group_id, table_id, table_name, capacity, state) \
             VALUES ($1, $2, $3, 'user', $4, 'active')",
            &[
                &format!("mem-{}", random_hex()),
                &org_id,
                &user.id,
                &capacity,
            ],
        )
        .await
        .expect("insert membership");
}
