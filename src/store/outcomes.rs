//! Recording attempts, a batch at a time: one statement appends every attempt of the
//! batch to `ckan_webhooks.attempt`, settles each delivery (delivered, retried later or
//! dead), and keeps the subscriptions' failure bookkeeping (`failing_since`, and
//! disabling after a `410 Gone` or after failing too long). One statement, so the audit
//! log never disagrees with the deliveries it describes, and one round trip and one
//! (prepared) plan for a whole batch instead of one per attempt.
//!
//! A late outcome cannot undo a newer one: a failure is applied to the delivery only
//! while it is still pending at the same attempt number (another instance may have
//! claimed it again after this lease ran out), and a success only while it is pending.
//! The attempt row is written either way, because the request was sent.
//!
//! A subscription is updated at most once per statement, so what the batch means for
//! each subscription is worked out first by [`SubscriptionChange::fold`], with the same
//! result as applying the attempts one after another in the order given.

use crate::error::Result;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

/// What one attempt produced, as kept in the attempt log and on the delivery.
#[derive(Debug, Clone, Default)]
pub struct AttemptRecord {
    /// When the attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// The HTTP status, when a response arrived.
    pub status: Option<i32>,
    /// Why the attempt failed, for operators.
    pub error: Option<String>,
    /// The first bytes of the response body.
    pub response: Option<String>,
    /// Milliseconds until the kept part of the response had arrived.
    pub latency_ms: Option<i32>,
}

/// What happens to the delivery after the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver accepted it.
    Delivered,
    /// It stays pending and is tried again after the delay.
    Retry(Duration),
    /// It is given up.
    Dead,
    /// The receiver answered `410 Gone`: dead, and the subscription is disabled.
    Gone,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry(_) => "retry",
            Self::Dead => "dead",
            Self::Gone => "gone",
        }
    }
}

/// Disabling a subscription that has failed for too long.
#[derive(Debug, Clone)]
pub struct Disable {
    /// The `disabled_reason` to store.
    pub reason: String,
    /// The `failing_since` the decision was based on: the subscription is disabled only
    /// if it has not succeeded since (a success clears the column, and a new failure
    /// streak starts later).
    pub failing_since: DateTime<Utc>,
}

/// One attempt to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The delivery attempted.
    pub delivery_id: String,
    /// The subscription it went to.
    pub subscription_id: String,
    /// The attempt's number, as counted by the claim.
    pub attempt: u32,
    /// What the attempt produced.
    pub record: AttemptRecord,
    /// What happens to the delivery.
    pub verdict: Verdict,
    /// Set when this failure disables the subscription for failing too long.
    pub disable: Option<Disable>,
}

/// What [`record`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Deliveries settled by their outcome; the others had moved on (a newer claim, or
    /// already settled) and only their attempt was logged.
    pub settled: HashSet<String>,
    /// Subscriptions this batch disabled.
    pub disabled: HashSet<String>,
}

/// What a batch does to one subscription's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChange {
    /// The subscription.
    pub id: String,
    /// The batch's last attempt succeeded: `failing_since` is cleared.
    pub ends_delivered: bool,
    /// Some attempt of the batch succeeded, so an earlier streak no longer counts.
    pub had_success: bool,
    /// When the failures after the batch's last success began (the new streak's start).
    pub failing_from: Option<DateTime<Utc>>,
    /// Why the subscription is disabled, if the batch disables it.
    pub disable_reason: Option<String>,
    /// The disabling is a `410 Gone`, which disables whatever the streak.
    pub gone: bool,
    /// For a disabling after a streak: the `failing_since` it was decided on.
    pub seen: Option<DateTime<Utc>>,
}

impl SubscriptionChange {
    /// What `outcomes`, applied in order, do to each subscription they name.
    ///
    /// A `410 Gone` anywhere disables. A streak-based disabling counts only before the
    /// batch's first success: after it, the streak restarted later than the one the
    /// decision was based on, so applying the attempts one by one would not disable.
    pub fn fold(outcomes: &[Outcome]) -> Vec<SubscriptionChange> {
        let mut changes: Vec<SubscriptionChange> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for outcome in outcomes {
            let at = *index
                .entry(outcome.subscription_id.as_str())
                .or_insert_with(|| {
                    changes.push(SubscriptionChange {
                        id: outcome.subscription_id.clone(),
                        ends_delivered: false,
                        had_success: false,
                        failing_from: None,
                        disable_reason: None,
                        gone: false,
                        seen: None,
                    });
                    changes.len() - 1
                });
            let change = &mut changes[at];

            if outcome.verdict == Verdict::Delivered {
                change.ends_delivered = true;
                change.had_success = true;
                change.failing_from = None;
                continue;
            }
            change.ends_delivered = false;
            let started = outcome.record.started_at.unwrap_or_else(Utc::now);
            change.failing_from.get_or_insert(started);

            if change.gone {
                continue;
            }
            if outcome.verdict == Verdict::Gone {
                change.gone = true;
                change.disable_reason = outcome.record.error.clone();
                change.seen = None;
            } else if let (Some(disable), false, None) =
                (&outcome.disable, change.had_success, &change.disable_reason)
            {
                change.disable_reason = Some(disable.reason.clone());
                change.seen = Some(disable.failing_since);
            }
        }
        changes
    }
}

/// The condition under which a subscription row is disabled, shared by the SET clauses.
const DISABLE: &str = "(s.state = 'active' AND c.disable_reason IS NOT NULL
     AND (c.gone OR s.failing_since <= c.seen))";

/// The failure streak's start after the batch.
const FAILING_SINCE: &str = "CASE WHEN c.ends_delivered THEN NULL
     WHEN c.had_success THEN c.failing_from
     ELSE coalesce(s.failing_since, c.failing_from) END";

/// Records a batch of attempts in one statement (prepared once per connection). The
/// batch must name each delivery at most once.
pub async fn record(
    client: &deadpool_postgres::ClientWrapper,
    outcomes: &[Outcome],
) -> Result<Recorded> {
    if outcomes.is_empty() {
        return Ok(Recorded::default());
    }
    let n = outcomes.len();
    let mut ids = Vec::with_capacity(n);
    let mut subscriptions = Vec::with_capacity(n);
    let mut attempts = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let mut errors = Vec::with_capacity(n);
    let mut responses = Vec::with_capacity(n);
    let mut verdicts = Vec::with_capacity(n);
    let mut delays = Vec::with_capacity(n);
    for o in outcomes {
        ids.push(o.delivery_id.as_str());
        subscriptions.push(o.subscription_id.as_str());
        attempts.push(o.attempt.min(i32::MAX as u32) as i32);
        started.push(o.record.started_at);
        statuses.push(o.record.status);
        latencies.push(o.record.latency_ms);
        errors.push(o.record.error.as_deref());
        responses.push(o.record.response.as_deref());
        verdicts.push(o.verdict.name());
        delays.push(match o.verdict {
            Verdict::Retry(delay) => delay.as_millis() as f64,
            _ => 0.0,
        });
    }

    // The statement leaves alone a subscription whose row the batch does not change
    // (typically: successes to a subscription that is not failing).
    let changes = SubscriptionChange::fold(outcomes);
    let sub_ids: Vec<&str> = changes.iter().map(|c| c.id.as_str()).collect();
    let ends_delivered: Vec<bool> = changes.iter().map(|c| c.ends_delivered).collect();
    let had_success: Vec<bool> = changes.iter().map(|c| c.had_success).collect();
    let failing_from: Vec<Option<DateTime<Utc>>> = changes.iter().map(|c| c.failing_from).collect();
    let reasons: Vec<Option<&str>> = changes
        .iter()
        .map(|c| c.disable_reason.as_deref())
        .collect();
    let gone: Vec<bool> = changes.iter().map(|c| c.gone).collect();
    let seen: Vec<Option<DateTime<Utc>>> = changes.iter().map(|c| c.seen).collect();

    let statement = client.prepare_cached(statement_text()).await?;
    let rows = client
        .query(
            &statement,
            &[
                &ids,
                &subscriptions,
                &attempts,
                &started,
                &statuses,
                &latencies,
                &errors,
                &responses,
                &verdicts,
                &delays,
                &sub_ids,
                &ends_delivered,
                &had_success,
                &failing_from,
                &reasons,
                &gone,
                &seen,
            ],
        )
        .await?;

    let mut recorded = Recorded::default();
    for row in rows {
        let (is_subscription, id): (bool, String) = (row.get(0), row.get(1));
        if is_subscription {
            recorded.disabled.insert(id);
        } else {
            recorded.settled.insert(id);
        }
    }
    Ok(recorded)
}

/// The batch statement's text, built once.
fn statement_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[],
                                  $5::int4[], $6::int4[], $7::text[], $8::text[],
                                  $9::text[], $10::float8[])
                 AS i(delivery_id, subscription_id, attempt, started_at, status,
                      latency_ms, error, response, verdict, delay_ms)
         ),
         logged AS (
             INSERT INTO ckan_webhooks.attempt (delivery_id, subscription_id, attempt,
                 attempted_at, status, latency_ms, error, response_head)
             SELECT delivery_id, subscription_id, attempt, coalesce(started_at, now()),
                    status, latency_ms, error, response
             FROM input
         ),
         sub AS (
             UPDATE ckan_webhooks.subscription s
             SET failing_since = {FAILING_SINCE},
                 state = CASE WHEN {DISABLE} THEN 'disabled' ELSE s.state END,
                 disabled_at = CASE WHEN {DISABLE} THEN now() ELSE s.disabled_at END,
                 disabled_reason = CASE WHEN {DISABLE} THEN c.disable_reason
                                        ELSE s.disabled_reason END,
                 updated_at = CASE WHEN {DISABLE} THEN now() ELSE s.updated_at END
             FROM unnest($11::text[], $12::bool[], $13::bool[], $14::timestamptz[],
                         $15::text[], $16::bool[], $17::timestamptz[])
                 AS c(id, ends_delivered, had_success, failing_from, disable_reason,
                      gone, seen)
             WHERE s.id = c.id
               AND (s.failing_since IS DISTINCT FROM {FAILING_SINCE} OR {DISABLE})
             RETURNING s.id, s.state = 'disabled' AND s.disabled_at = now() AS disabled
         ),
         settled AS (
             UPDATE ckan_webhooks.delivery d
             SET status = CASE i.verdict WHEN 'delivered' THEN 'delivered'
                                         WHEN 'retry' THEN 'pending' ELSE 'dead' END,
                 delivered_at = CASE WHEN i.verdict = 'delivered' THEN now()
                                     ELSE d.delivered_at END,
                 next_attempt_at = CASE WHEN i.verdict = 'retry'
                     THEN now() + i.delay_ms * interval '1 millisecond'
                     ELSE d.next_attempt_at END,
                 lease_until = NULL,
                 last_attempt_at = coalesce(i.started_at, now()), last_status = i.status,
                 last_error = i.error, last_response = i.response,
                 last_latency_ms = i.latency_ms
             FROM input i
             WHERE d.id = i.delivery_id AND d.status = 'pending'
               AND (i.verdict = 'delivered' OR d.attempts = i.attempt)
             RETURNING d.id
         )
         SELECT false, id FROM settled
         UNION ALL
         SELECT true, id FROM sub WHERE disabled"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        format!("2026-01-01T00:00:{second:02}Z").parse().unwrap()
    }

    fn attempt(subscription: &str, second: u32, verdict: Verdict) -> Outcome {
        Outcome {
            delivery_id: format!("d{second}"),
            subscription_id: subscription.into(),
            attempt: 1,
            record: AttemptRecord {
                started_at: Some(at(second)),
                error: (verdict != Verdict::Delivered).then(|| format!("error {second}")),
                ..AttemptRecord::default()
            },
            verdict,
            disable: None,
        }
    }

    fn streak_over(mut outcome: Outcome, since: u32) -> Outcome {
        outcome.disable = Some(Disable {
            reason: format!("failing since {since}"),
            failing_since: at(since),
        });
        outcome
    }

    const RETRY: Verdict = Verdict::Retry(Duration::from_secs(5));

    #[test]
    fn successes_alone_end_delivered_and_disable_nothing() {
        let changes = SubscriptionChange::fold(&[
            attempt("a", 1, Verdict::Delivered),
            attempt("a", 2, Verdict::Delivered),
        ]);
        assert_eq!(changes.len(), 1);
        let a = &changes[0];
        assert!(a.ends_delivered && a.had_success);
        assert_eq!((a.failing_from, a.disable_reason.as_deref()), (None, None));
    }

    #[test]
    fn the_streak_starts_at_the_first_failure_after_the_last_success() {
        let changes = SubscriptionChange::fold(&[
            attempt("a", 1, RETRY),
            attempt("a", 2, Verdict::Delivered),
            attempt("a", 3, RETRY),
            attempt("a", 4, Verdict::Dead),
            attempt("b", 5, RETRY),
        ]);
        let a = &changes[0];
        assert!(!a.ends_delivered && a.had_success);
        assert_eq!(a.failing_from, Some(at(3)));
        let b = &changes[1];
        assert_eq!(b.id, "b");
        assert!(!b.ends_delivered && !b.had_success);
        assert_eq!(b.failing_from, Some(at(5)));
    }

    #[test]
    fn gone_disables_even_before_a_success() {
        let changes = SubscriptionChange::fold(&[
            attempt("a", 1, Verdict::Gone),
            attempt("a", 2, Verdict::Delivered),
        ]);
        let a = &changes[0];
        assert!(a.gone && a.ends_delivered);
        assert_eq!(a.disable_reason.as_deref(), Some("error 1"));
    }

    #[test]
    fn a_streak_disables_only_before_the_batch_succeeds() {
        let before = SubscriptionChange::fold(&[
            streak_over(attempt("a", 1, RETRY), 0),
            attempt("a", 2, Verdict::Delivered),
        ]);
        assert_eq!(before[0].disable_reason.as_deref(), Some("failing since 0"));
        assert_eq!(before[0].seen, Some(at(0)));

        let after = SubscriptionChange::fold(&[
            attempt("a", 1, Verdict::Delivered),
            streak_over(attempt("a", 2, RETRY), 0),
        ]);
        assert_eq!(after[0].disable_reason, None);
    }
}
