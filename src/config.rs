//! Configuration of the running service, and parsing of the values CKAN admins copy from
//! their CKAN config (the token secret in `string:`, `file:` or bare form). Reading the
//! CKAN config file itself is [`crate::ckan_ini`]'s.

use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::time::Duration;

/// Who may create webhooks at all, as in the old ckanext-webhooks plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MinimumAuth {
    /// Any active user with a valid token.
    None,
    /// Editors or admins of at least one organization, and sysadmins.
    Editor,
    /// Admins of at least one organization, and sysadmins.
    Admin,
    /// Sysadmins only.
    Sysadmin,
}

impl std::str::FromStr for MinimumAuth {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "none" => Ok(Self::None),
            "editor" => Ok(Self::Editor),
            "admin" => Ok(Self::Admin),
            "sysadmin" => Ok(Self::Sysadmin),
            other => Err(Error::config(format!(
                "invalid minimum auth {other:?}: expected none, editor, admin or sysadmin"
            ))),
        }
    }
}

/// How webhooks are sent: timeouts, retries and rate limits.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Whether receivers on loopback, private and link-local addresses are allowed.
    pub allow_private_targets: bool,
    /// Time allowed to open a connection to a receiver.
    pub connect_timeout: Duration,
    /// Time allowed for a whole attempt, connect to last response byte.
    pub timeout: Duration,
    /// Attempts before a delivery is declared dead.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles with every further attempt.
    pub retry_base: Duration,
    /// The longest delay between two attempts.
    pub retry_max: Duration,
    /// Requests per second allowed to one destination (scheme, host, port).
    pub rate_per_destination: u32,
    /// Attempts in flight at once across all destinations.
    pub concurrency: usize,
    /// Attempts in flight at once to one destination, so a hanging receiver can hold
    /// only this many of the global slots.
    pub per_destination_concurrency: usize,
    /// Age after which a failing delivery is declared dead whatever its attempt count.
    pub max_age: Duration,
    /// How long a claimed delivery stays reserved for the instance that claimed it. It
    /// must cover the wait for the destination's rate limit (at most
    /// `per_destination_concurrency / rate_per_destination` seconds) plus `timeout`,
    /// or another instance may send the same attempt again (receivers drop duplicates by
    /// `webhook-id`, but it is waste).
    pub lease: Duration,
    /// Bytes of a receiver's response kept in the delivery record.
    pub response_keep_bytes: usize,
    /// How long every attempt to a subscription must have failed before it is disabled.
    pub disable_after: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_attempts: 30,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(6 * 3600),
            rate_per_destination: 50,
            concurrency: 64,
            per_destination_concurrency: 8,
            max_age: Duration::from_secs(3 * 24 * 3600),
            lease: Duration::from_secs(30),
            response_keep_bytes: 1024,
            disable_after: Duration::from_secs(72 * 3600),
        }
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The CKAN database, which also holds the side schema.
    pub database_url: String,
    /// Where the action API listens.
    pub listen: SocketAddr,
    /// The CKAN site URL, sent as the payload's `ckan` key.
    pub site_url: String,
    /// The key CKAN signs its API tokens with (HS256).
    pub token_secret: Vec<u8>,
    /// Who may create webhooks.
    pub minimum_auth: MinimumAuth,
    /// Whether legacy API keys (`user.apikey`, CKAN ≤ 2.9) are accepted.
    pub accept_api_keys: bool,
    /// CKAN's `ckan.auth.allow_dataset_collaborators`: whether a dataset's collaborators
    /// may read it while it is private, and so receive its events.
    pub allow_dataset_collaborators: bool,
    /// How often the change log is read when no NOTIFY arrives.
    pub poll_interval: Duration,
    /// Connections in the service's pool.
    pub pool_size: usize,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// Age after which finished deliveries, their attempts, unreferenced events and
    /// long-disabled or deleted subscriptions are removed; None keeps everything.
    pub retention: Option<Duration>,
    /// How changes are captured: triggers, polling, and reconciliation.
    pub capture: CaptureConfig,
}

/// How `run` learns of CKAN's changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Trigger mode when the capture triggers are installed on `package`, else poll mode.
    #[default]
    Auto,
    /// The capture triggers write the change log; periodic reconciliation heals misses.
    Trigger,
    /// No triggers: passes compare CKAN's rows with the shadow.
    Poll,
}

impl std::str::FromStr for Mode {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "auto" => Ok(Mode::Auto),
            "trigger" => Ok(Mode::Trigger),
            "poll" => Ok(Mode::Poll),
            other => Err(Error::config(format!(
                "invalid --mode {other:?}: expected auto, trigger or poll"
            ))),
        }
    }
}

/// Capture settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Trigger, poll, or chosen from what is installed.
    pub mode: Mode,
    /// Poll mode: time between passes.
    pub poll_cycle: Duration,
    /// Trigger mode: time between reconciliation passes; None turns them off.
    pub reconcile_interval: Option<Duration>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            mode: Mode::Auto,
            poll_cycle: Duration::from_secs(10),
            reconcile_interval: Some(Duration::from_secs(600)),
        }
    }
}

/// Resolves a token secret written as CKAN's config accepts it: `string:VALUE`,
/// `file:PATH` (the file's bytes, as CKAN reads them) or a bare value. Values CKAN's ini
/// resolves itself (`%(SECRET_KEY)s`, `config:beaker.session.secret`) must be resolved
/// by the admin first; they are refused with a message saying so.
pub fn parse_token_secret(value: &str) -> Result<Vec<u8>> {
    if value.contains("%(") {
        return Err(Error::config(
            "the token secret is an unexpanded ini reference such as %(SECRET_KEY)s: \
             pass the value it refers to, e.g. string:<your SECRET_KEY>",
        ));
    }
    if let Some(key) = value.strip_prefix("config:") {
        return Err(Error::config(format!(
            "the token secret refers to another setting (config:{key}): pass that \
             setting's value instead, e.g. string:<value of {key}>"
        )));
    }
    let secret = if let Some(rest) = value.strip_prefix("string:") {
        rest.as_bytes().to_vec()
    } else if let Some(path) = value.strip_prefix("file:") {
        std::fs::read(path).map_err(|err| {
            Error::config(format!("cannot read token secret file {path:?}: {err}"))
        })?
    } else {
        value.as_bytes().to_vec()
    };
    if secret.is_empty() {
        return Err(Error::config("the token secret is empty"));
    }
    Ok(secret)
}

/// Checks a CKAN site URL and returns it without a trailing slash.
pub fn parse_site_url(value: &str) -> Result<String> {
    let trimmed = value.trim_end_matches('/');
    let ok = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && trimmed.len() > "https://".len() - 1;
    if !ok {
        return Err(Error::config(format!(
            "invalid site URL {value:?}: expected http://host or https://host"
        )));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secret_forms() {
        assert_eq!(parse_token_secret("string:abc").unwrap(), b"abc");
        assert_eq!(parse_token_secret("abc").unwrap(), b"abc");
        let dir = std::env::temp_dir().join(format!("ckwh-secret-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let value = format!("file:{}", dir.display());
        // As CKAN reads it: the whole file, newline included.
        assert_eq!(parse_token_secret(&value).unwrap(), b"from-file\n");
        std::fs::remove_file(&dir).unwrap();
        assert!(parse_token_secret("string:").is_err());
        assert!(parse_token_secret("string:%(SECRET_KEY)s")
            .unwrap_err()
            .to_string()
            .contains("SECRET_KEY"));
        assert!(parse_token_secret("config:beaker.session.secret").is_err());
        let err = parse_token_secret("file:/nonexistent/secret").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/secret"));
    }

    #[test]
    fn minimum_auth_parses_and_rejects() {
        assert_eq!(
            "editor".parse::<MinimumAuth>().unwrap(),
            MinimumAuth::Editor
        );
        assert!("root"
            .parse::<MinimumAuth>()
            .unwrap_err()
            .to_string()
            .contains("root"));
        assert!(MinimumAuth::Sysadmin > MinimumAuth::Admin);
    }

    #[test]
    fn site_url_checked() {
        assert_eq!(
            parse_site_url("http://ckan.example/").unwrap(),
            "http://ckan.example"
        );
        assert!(parse_site_url("ckan.example").is_err());
    }
}
