//! What an attempt's result means for its delivery: delivered, retried later, given up,
//! or the subscription disabled. Pure, so every rule is unit-tested without a network;
//! [`is_retryable`] is the one place that says which failures are worth another try.

use crate::config::DeliveryConfig;
use crate::retry;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Why an attempt produced no usable response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The address is, or resolves only to, a refused network range.
    Refused,
    /// The address cannot be called at all (not an http(s) URL).
    Invalid,
    /// No connection could be made.
    Connect,
    /// Connecting or the whole attempt took longer than allowed.
    Timeout,
    /// The connection broke mid-request or the response was malformed.
    Other,
}

/// The result of one attempt, as far as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered with a status.
    Response {
        /// The HTTP status code.
        status: u16,
        /// The receiver's `Retry-After`, already parsed (not yet clamped).
        retry_after: Option<Duration>,
    },
    /// No response.
    Failed {
        /// What kind of failure.
        kind: FailureKind,
        /// A short description for the delivery record and the log.
        message: String,
    },
}

/// What to do with the delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver accepted it.
    Delivered,
    /// Try again after `delay`.
    Retry {
        /// How long to wait before the next attempt.
        delay: Duration,
        /// Why this attempt failed.
        error: String,
    },
    /// Give up: the delivery is dead.
    Dead {
        /// Why, including why no more attempts are made.
        error: String,
    },
    /// The receiver answered `410 Gone`: give up and disable the subscription.
    Gone {
        /// Why, for the delivery record.
        error: String,
    },
}

/// True when another attempt could succeed where this one failed. Refused or invalid
/// addresses and `410 Gone` will not change by waiting; everything else might.
pub fn is_retryable(result: &AttemptResult) -> bool {
    match result {
        AttemptResult::Response { status, .. } => *status != 410,
        AttemptResult::Failed { kind, .. } => {
            !matches!(kind, FailureKind::Refused | FailureKind::Invalid)
        }
    }
}

/// A sentence describing a failed attempt, kept as the delivery's `last_error`.
pub fn describe(result: &AttemptResult) -> String {
    match result {
        AttemptResult::Response { status, .. } if (300..400).contains(status) => {
            format!("redirect not followed (status {status})")
        }
        AttemptResult::Response { status: 410, .. } => {
            "the receiver answered 410 gone; the subscription is disabled".to_string()
        }
        AttemptResult::Response { status, .. } => format!("the receiver answered {status}"),
        AttemptResult::Failed { message, .. } => message.clone(),
    }
}

/// Decides the delivery's fate after its `attempt`-th attempt (1-based), made when the
/// delivery was `age` old. `jitter` is a random number in `[0, 1)` for the backoff.
pub fn decide(
    result: &AttemptResult,
    attempt: u32,
    age: Duration,
    config: &DeliveryConfig,
    jitter: f64,
) -> Outcome {
    if let AttemptResult::Response { status, .. } = result {
        if (200..300).contains(status) {
            return Outcome::Delivered;
        }
    }

    let error = describe(result);
    if matches!(result, AttemptResult::Response { status: 410, .. }) {
        return Outcome::Gone { error };
    }
    if !is_retryable(result) {
        return Outcome::Dead { error };
    }

    if attempt >= config.max_attempts {
        let error = format!("{error}; gave up after {attempt} attempts");
        return Outcome::Dead { error };
    }
    if age >= config.max_age {
        let error = format!("{error}; gave up after {} s", age.as_secs());
        return Outcome::Dead { error };
    }

    let delay = match result {
        AttemptResult::Response {
            status: 429 | 503,
            retry_after: Some(asked),
        } => retry::clamp_retry_after(*asked),
        _ => retry::backoff(attempt, config.retry_base, config.retry_max, jitter),
    };
    Outcome::Retry { delay, error }
}

/// True when a subscription failing since `since` has failed for at least
/// `disable_after` at `now`, so its next failure disables it. The clock is a parameter so
/// that the rule is tested without waiting three days.
pub fn failing_too_long(since: DateTime<Utc>, now: DateTime<Utc>, disable_after: Duration) -> bool {
    (now - since)
        .to_std()
        .is_ok_and(|failing| failing >= disable_after)
}

/// The `disabled_reason` of a subscription disabled for failing since `since`.
pub fn disabled_reason(since: DateTime<Utc>, last_error: &str) -> String {
    format!(
        "every attempt has failed since {}; the last: {last_error}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeliveryConfig {
        DeliveryConfig {
            max_attempts: 5,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            max_age: Duration::from_secs(86_400),
            ..DeliveryConfig::default()
        }
    }

    fn status(status: u16) -> AttemptResult {
        AttemptResult::Response {
            status,
            retry_after: None,
        }
    }

    fn failed(kind: FailureKind) -> AttemptResult {
        AttemptResult::Failed {
            kind,
            message: "it broke".into(),
        }
    }

    const YOUNG: Duration = Duration::from_secs(1);

    #[test]
    fn success_is_any_2xx() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(
                decide(&status(code), 1, YOUNG, &config(), 0.5),
                Outcome::Delivered
            );
        }
    }

    #[test]
    fn redirects_fail_and_say_so() {
        match decide(&status(302), 1, YOUNG, &config(), 0.0) {
            Outcome::Retry { error, delay } => {
                assert!(error.contains("redirect not followed"), "{error}");
                assert_eq!(delay, Duration::from_secs(5));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gone_disables_and_is_never_retried() {
        let outcome = decide(&status(410), 1, YOUNG, &config(), 0.0);
        assert!(matches!(outcome, Outcome::Gone { .. }));
        assert!(!is_retryable(&status(410)));
    }

    #[test]
    fn failures_back_off_until_max_attempts() {
        let config = config();
        for (attempt, expected) in [(1, 10), (2, 20), (3, 40), (4, 80)] {
            let outcome = decide(&status(500), attempt, YOUNG, &config, 0.999_999_9);
            match outcome {
                Outcome::Retry { delay, .. } => {
                    assert_eq!(delay.as_secs(), expected - 1, "attempt {attempt}");
                }
                other => panic!("attempt {attempt}: {other:?}"),
            }
        }
        match decide(&status(500), 5, YOUNG, &config, 0.5) {
            Outcome::Dead { error } => assert!(error.contains("after 5 attempts"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn old_deliveries_die_even_with_attempts_left() {
        let age = Duration::from_secs(90_000);
        assert!(matches!(
            decide(&failed(FailureKind::Timeout), 2, age, &config(), 0.5),
            Outcome::Dead { .. }
        ));
    }

    #[test]
    fn retry_after_is_honoured_for_429_and_503_only() {
        let asked = |status, secs| AttemptResult::Response {
            status,
            retry_after: Some(Duration::from_secs(secs)),
        };
        let delay = |result| match decide(&result, 1, YOUNG, &config(), 0.0) {
            Outcome::Retry { delay, .. } => delay,
            other => panic!("{other:?}"),
        };
        assert_eq!(delay(asked(429, 30)), Duration::from_secs(30));
        assert_eq!(delay(asked(503, 0)), Duration::from_secs(1));
        assert_eq!(delay(asked(429, 999_999)), Duration::from_secs(3600));
        // Other statuses follow the schedule whatever they ask.
        assert_eq!(delay(asked(500, 300)), Duration::from_secs(5));
    }

    #[test]
    fn refused_and_invalid_targets_are_final() {
        for kind in [FailureKind::Refused, FailureKind::Invalid] {
            assert!(matches!(
                decide(&failed(kind), 1, YOUNG, &config(), 0.0),
                Outcome::Dead { .. }
            ));
        }
        for kind in [
            FailureKind::Connect,
            FailureKind::Timeout,
            FailureKind::Other,
        ] {
            assert!(matches!(
                decide(&failed(kind), 1, YOUNG, &config(), 0.0),
                Outcome::Retry { .. }
            ));
        }
    }

    #[test]
    fn disabled_only_after_failing_for_the_whole_period() {
        let since: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let after = Duration::from_secs(72 * 3600);
        let at = |hours: i64| since + chrono::Duration::hours(hours);
        assert!(!failing_too_long(since, at(0), after));
        assert!(!failing_too_long(since, at(71), after));
        assert!(failing_too_long(since, at(72), after));
        assert!(failing_too_long(since, at(500), after));
        // A clock behind the streak's start (another instance's) never disables.
        assert!(!failing_too_long(since, at(-1), after));

        let reason = disabled_reason(since, "the receiver answered 500");
        assert!(reason.contains("2026-01-01T00:00:00Z"), "{reason}");
        assert!(reason.contains("answered 500"), "{reason}");
    }
}
