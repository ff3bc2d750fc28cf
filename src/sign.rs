//! Standard Webhooks signatures: `v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>`,
//! with secrets written `whsec_<base64>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of every signing secret, as Standard Webhooks writes them.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new random signing secret: 32 random bytes, base64, prefixed.
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a secret: the base64 after `whsec_`, or the raw text of a secret
/// given in another form by a caller.
pub fn secret_key(secret: &str) -> Vec<u8> {
    match secret
        .strip_prefix(SECRET_PREFIX)
        .map(|b64| STANDARD.decode(b64))
    {
        Some(Ok(key)) => key,
        _ => secret.as_bytes().to_vec(),
    }
}

/// The `webhook-signature` header value for one attempt.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret_key(secret))
        .expect("hmac accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header value signed with every secret in `secrets`, in order,
/// separated by spaces, as Standard Webhooks sends several signatures during a key
/// rotation: a receiver that knows any one of the secrets accepts the request.
pub fn signatures<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .map(|secret| signature(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_published_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(secret, id, 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_sends_one_signature_per_secret() {
        let body = b"{}";
        let both = signatures(
            ["whsec_bmV3LXNlY3JldA==", "old-secret-text"],
            "msg_1",
            7,
            body,
        );
        let expected = format!(
            "{} {}",
            signature("whsec_bmV3LXNlY3JldA==", "msg_1", 7, body),
            signature("old-secret-text", "msg_1", 7, body)
        );
        assert_eq!(both, expected);
        assert_eq!(
            signatures(["s1-long-enough"], "m", 1, body),
            signature("s1-long-enough", "m", 1, body)
        );
    }

    #[test]
    fn generated_secrets_are_random_and_prefixed() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with(SECRET_PREFIX));
        assert_ne!(a, b);
        assert_eq!(secret_key(&a).len(), 32);
    }
}
