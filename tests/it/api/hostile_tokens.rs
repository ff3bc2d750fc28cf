//! Forged and abused credentials: unsigned and wrongly signed JWTs, tokens not yet valid
//! or with odd claims, other users' revoked tokens, and legacy API keys made of SQL.
//! Every one of them is CKAN's 403 with the same message, and none is a 500.

use crate::support::api::{ApiServer, Options};
use crate::support::ckan_users::{self, jwt, TOKEN_SECRET};
use crate::support::db::TestDb;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A JWT with any header and claims, signed HS256 with `secret` (or unsigned when None).
fn raw_jwt(header: Value, claims: Value, secret: Option<&[u8]>) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match secret {
        None => String::new(),
        Some(secret) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
    };
    format!("{signing_input}.{signature}")
}

/// Asserts that `credential` is refused exactly like an unknown token.
async fn assert_refused(api: &ApiServer, credential: &str, reference: &Value) {
    for (name, header) in [
        ("authorization", credential.to_string()),
        ("x-ckan-api-key", credential.to_string()),
    ] {
        let headers = [
            (name, header),
            ("content-type", "application/json".to_string()),
        ];
        let (status, body) = api
            .send("POST", "/api/3/action/webhook_list", &headers, "{}")
            .await;
        assert_eq!(status, 403, "{credential:?}: {body}");
        assert_eq!(&body, reference, "{credential:?}");
    }
}

#[tokio::test]
async fn forged_and_odd_tokens_are_refused_alike() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let bob = ckan_users::user(&client, "bob", false).await;
    let api = ApiServer::start(&db).await;
    let jti = alice.token_id.as_str();
    let now = chrono::Utc::now().timestamp();
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});

    let (status, reference) = api
        .call("webhook_list", Some("no-such-key"), json!({}))
        .await;
    assert_eq!(status, 403);

    let mut forged = vec![
        // Unsigned, in the spellings libraries have accepted.
        raw_jwt(json!({"alg": "none"}), json!({"jti": jti}), None),
        raw_jwt(json!({"alg": "None"}), json!({"jti": jti}), None),
        raw_jwt(
            json!({"alg": "NONE", "typ": "JWT"}),
            json!({"jti": jti}),
            None,
        ),
        raw_jwt(hs256.clone(), json!({"jti": jti}), None),
        // Signed with an empty key, or with the right key under another algorithm's name.
        raw_jwt(hs256.clone(), json!({"jti": jti}), Some(b"")),
        raw_jwt(
            json!({"alg": "RS256"}),
            json!({"jti": jti}),
            Some(TOKEN_SECRET),
        ),
        raw_jwt(
            json!({"alg": "HS512"}),
            json!({"jti": jti}),
            Some(TOKEN_SECRET),
        ),
        raw_jwt(
            json!({"alg": "ES256"}),
            json!({"jti": jti}),
            Some(TOKEN_SECRET),
        ),
        // Right key, claims that must not pass.
        jwt(jti, TOKEN_SECRET, json!({"exp": now - 1})),
        jwt(jti, TOKEN_SECRET, json!({"exp": "never"})),
        jwt(jti, TOKEN_SECRET, json!({"nbf": now + 3600})),
        raw_jwt(hs256.clone(), json!({"iat": now}), Some(TOKEN_SECRET)),
        raw_jwt(hs256.clone(), json!({"jti": null}), Some(TOKEN_SECRET)),
        raw_jwt(hs256.clone(), json!({"jti": 42}), Some(TOKEN_SECRET)),
        raw_jwt(hs256.clone(), json!({"jti": [jti]}), Some(TOKEN_SECRET)),
        raw_jwt(hs256.clone(), json!([jti]), Some(TOKEN_SECRET)),
        raw_jwt(hs256.clone(), json!("claims"), Some(TOKEN_SECRET)),
        jwt("", TOKEN_SECRET, json!({})),
        jwt("' OR '1'='1", TOKEN_SECRET, json!({})),
        jwt(&format!("{jti}' OR '1'='1"), TOKEN_SECRET, json!({})),
        jwt(&format!("{jti}\u{0}"), TOKEN_SECRET, json!({})),
        jwt(&"x".repeat(10_000), TOKEN_SECRET, json!({})),
        // The right token, damaged.
        format!("{}x", alice.token),
        alice.token.replace('.', ".."),
        format!("{}.", alice.token),
        alice.token.to_uppercase(),
        // Legacy API keys made of SQL, with and without JWT-like dots.
        "' OR '1'='1".to_string(),
        "' OR 1=1 --".to_string(),
        "x' UNION SELECT id, name, true, 'active' FROM public.\"user\" --".to_string(),
        "a.b.c".to_string(),
        "%".to_string(),
        "\\".to_string(),
    ];

    // Bob's token after CKAN revokes it: its row is gone, the signature still valid.
    ckan_users::revoke(&client, &bob).await;
    forged.push(bob.token.clone());

    for credential in &forged {
        assert_refused(&api, credential, &reference).await;
    }

    // After all that, Alice's real token still works.
    let (status, _) = api
        .call("webhook_list", Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, 200);
    api.stop().await;
}

#[tokio::test]
async fn users_who_are_not_active_are_refused_alike() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let deleted = ckan_users::user(&client, "deleted", false).await;
    let pending = ckan_users::user(&client, "pending", false).await;
    let root = ckan_users::user(&client, "root", true).await;
    ckan_users::set_state(&client, &deleted, "deleted").await;
    ckan_users::set_state(&client, &pending, "pending").await;
    ckan_users::set_state(&client, &root, "deleted").await;
    let api = ApiServer::start(&db).await;

    let (_, reference) = api
        .call("webhook_list", Some("no-such-key"), json!({}))
        .await;
    for user in [&deleted, &pending, &root] {
        assert_refused(&api, &user.token, &reference).await;
    }
    api.stop().await;
}

#[tokio::test]
async fn a_legacy_key_shared_by_two_users_identifies_nobody() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let alice = ckan_users::user(&client, "alice", false).await;
    let bob = ckan_users::user(&client, "bob", false).await;
    let key = "shared-legacy-key-0123456789";
    for user in [&alice, &bob] {
        client
            .execute(
                "UPDATE public.\"user\" SET apikey = $2 WHERE id = $1",
                &[&user.id, &key],
            )
            .await
            .unwrap();
    }
    let options = Options {
        accept_api_keys: true,
        ..Options::default()
    };
    let api = ApiServer::start_with(&db, options).await;

    let (_, reference) = api
        .call("webhook_list", Some("no-such-key"), json!({}))
        .await;
    assert_refused(&api, key, &reference).await;
    api.stop().await;
}
