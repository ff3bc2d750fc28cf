//! The retry schedule: when a failed delivery is tried again. Delays grow exponentially
//! from a base, are capped, and carry jitter so that a receiver coming back after an
//! outage is not hit by every queued retry in the same second. A receiver's own
//! `Retry-After` is honoured within bounds. Everything here is pure: the caller passes
//! the randomness and the clock, so the maths is tested without sleeping.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// The shortest pause a `Retry-After` header can ask for.
pub const RETRY_AFTER_MIN: Duration = Duration::from_secs(1);

/// The longest pause a `Retry-After` header can ask for; beyond it the receiver is
/// likely misconfigured and the normal schedule resumes.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// The delay after the `attempt`-th failed attempt (1-based), before jitter:
/// `base * 2^(attempt - 1)`, never more than `max`.
pub fn exponential(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let factor = 1u64 << exponent;
    let millis = (base.as_millis() as u64).saturating_mul(factor);
    Duration::from_millis(millis).min(max)
}

/// The delay after the `attempt`-th failed attempt, with "equal jitter": half of the
/// exponential delay is fixed, the other half scaled by `unit` (expected in `[0, 1)`).
/// Retries therefore never come sooner than half the schedule, yet spread out.
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let full = exponential(attempt, base, max);
    let half = full / 2;
    let unit = unit.clamp(0.0, 1.0);
    half + half.mul_f64(unit)
}

/// [`backoff`] with jitter from the thread's random generator.
pub fn backoff_jittered(attempt: u32, base: Duration, max: Duration) -> Duration {
    backoff(attempt, base, max, rand::random::<f64>())
}

/// Reads a `Retry-After` value, either delay-seconds or an HTTP date (IMF-fixdate, as
/// RFC 9110 requires senders to use), relative to `now`. None when unreadable.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();

    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }

    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Bounds a receiver's requested pause to [`RETRY_AFTER_MIN`, `RETRY_AFTER_MAX`].
pub fn clamp_retry_after(delay: Duration) -> Duration {
    delay.clamp(RETRY_AFTER_MIN, RETRY_AFTER_MAX)
}

#[cfg(test)]
mod tests {
    use crate::config::DeliveryConfig;

    /// The default schedule retries for about three days: even with the shortest
    /// jitter the attempts span more than two days, so the 72-hour age limit, not the
    /// attempt count, is what normally ends it.
    #[test]
    fn defaults_cover_about_three_days() {
        let config = DeliveryConfig::default();
        let span = |unit: f64| -> Duration {
            (1..config.max_attempts)
                .map(|n| backoff(n, config.retry_base, config.retry_max, unit))
                .sum()
        };
        assert!(
            span(0.0) > Duration::from_secs(48 * 3600),
            "{:?}",
            span(0.0)
        );
        assert!(span(1.0) > config.max_age, "{:?}", span(1.0));
        assert_eq!(config.max_age, Duration::from_secs(72 * 3600));
    }

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_from_the_base_and_caps() {
        assert_eq!(exponential(1, S(5), S(3600)), S(5));
        assert_eq!(exponential(2, S(5), S(3600)), S(10));
        assert_eq!(exponential(5, S(5), S(3600)), S(80));
        assert_eq!(exponential(20, S(5), S(3600)), S(3600));
        // Huge attempt numbers saturate instead of overflowing.
        assert_eq!(exponential(u32::MAX, S(5), S(3600)), S(3600));
        // Attempt 0 is treated like the first.
        assert_eq!(exponential(0, S(5), S(3600)), S(5));
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for attempt in 1..15 {
            let full = exponential(attempt, S(2), S(600));
            let low = backoff(attempt, S(2), S(600), 0.0);
            let high = backoff(attempt, S(2), S(600), 0.999_999);
            assert_eq!(low, full / 2);
            assert!(
                high <= full && high > full.mul_f64(0.99),
                "{high:?} vs {full:?}"
            );
        }
        // Out-of-range randomness is clamped, never exceeding the schedule.
        assert_eq!(backoff(3, S(1), S(60), 7.0), S(4));
        assert_eq!(backoff(3, S(1), S(60), -1.0), S(2));
    }

    #[test]
    fn jittered_delays_differ_but_stay_bounded() {
        let delays: Vec<_> = (0..50)
            .map(|_| backoff_jittered(4, Duration::from_millis(100), S(60)))
            .collect();
        assert!(delays
            .iter()
            .all(|d| *d >= Duration::from_millis(400) && *d <= Duration::from_millis(800)));
        assert!(delays.iter().any(|d| *d != delays[0]));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now: DateTime<Utc> = "2015-10-21T07:28:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("120", now), Some(S(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(S(0)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(S(30))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn retry_after_is_clamped() {
        assert_eq!(clamp_retry_after(Duration::ZERO), S(1));
        assert_eq!(clamp_retry_after(S(30)), S(30));
        assert_eq!(clamp_retry_after(S(86_400)), S(3600));
    }
}
