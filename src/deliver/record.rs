//! Recording outcomes in batches. Attempt tasks decide what their result means
//! ([`settle`]) and hand it to one recorder task, which writes whatever has gathered
//! since its last write in one statement ([`crate::store::outcomes::record`]) and then
//! logs each outcome. A batch fills by itself while the previous one is written, so a
//! busy worker writes few large batches and an idle one writes each outcome at once.
//!
//! The channel to the recorder is bounded: when the database falls behind, attempt tasks
//! wait to hand over their outcome, hold their places, and the worker claims no more.
//! An outcome that cannot be written is lost only to the log: its lease runs out and the
//! delivery is attempted again, with the same `webhook-id`.

use super::client::Sent;
use super::outcome::{self, AttemptResult, Outcome};
use crate::config::DeliveryConfig;
use crate::store::deliveries::Claimed;
use crate::store::outcomes::{self, AttemptRecord, Disable, Verdict};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// The most outcomes written by one statement.
pub const MAX_BATCH: usize = 512;

/// How often a batch is tried again when the database refuses it for a transient reason
/// (a deadlock with another instance, a lost connection).
const WRITE_TRIES: u32 = 3;

/// One decided attempt, waiting to be written: what the store needs, and what the log
/// line says. The event and its payload are no longer held.
#[derive(Debug)]
pub struct Settled {
    /// What is written.
    pub outcome: outcomes::Outcome,
    /// What was decided, for the log.
    pub decision: Outcome,
    /// The event delivered, for the log.
    pub event_id: String,
}

/// Decides what the attempt `sent` of `claimed` means for the delivery and its
/// subscription.
pub fn settle(claimed: &Claimed, sent: Sent, config: &DeliveryConfig) -> Settled {
    let now = chrono::Utc::now();
    let age = (now - claimed.created_at).to_std().unwrap_or_default();
    let decision = outcome::decide(&sent.result, claimed.attempt, age, config, rand::random());
    let status = match sent.result {
        AttemptResult::Response { status, .. } => Some(i32::from(status)),
        AttemptResult::Failed { .. } => None,
    };
    let latency_ms = sent
        .latency
        .map(|l| l.as_millis().min(i32::MAX as u128) as i32);
    let (verdict, error) = match &decision {
        Outcome::Delivered => (Verdict::Delivered, None),
        Outcome::Retry { delay, error } => (Verdict::Retry(*delay), Some(error)),
        Outcome::Dead { error } => (Verdict::Dead, Some(error)),
        Outcome::Gone { error } => (Verdict::Gone, Some(error)),
    };

    // A failure after a long enough streak of failures disables the subscription.
    let disable = match (verdict, claimed.failing_since) {
        (Verdict::Retry(_) | Verdict::Dead, Some(since))
            if outcome::failing_too_long(since, now, config.disable_after) =>
        {
            Some(Disable {
                reason: outcome::disabled_reason(since, error.map_or("", |e| e.as_str())),
                failing_since: since,
            })
        }
        _ => None,
    };

    Settled {
        outcome: outcomes::Outcome {
            delivery_id: claimed.id.clone(),
            subscription_id: claimed.subscription_id.clone(),
            attempt: claimed.attempt,
            record: AttemptRecord {
                started_at: Some(sent.started_at),
                status,
                error: error.cloned(),
                response: sent.response,
                latency_ms,
            },
            verdict,
            disable,
        },
        decision,
        event_id: claimed.event.id.clone(),
    }
}

/// Starts the recorder; it ends once every sender is dropped and all is written. After
/// each write it wakes the worker, since a settled delivery may free the next one of its
/// dataset.
pub fn start(
    pool: deadpool_postgres::Pool,
    capacity: usize,
    wake: Arc<Notify>,
) -> (mpsc::Sender<Settled>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Settled>(capacity.max(1));
    let task = tokio::spawn(async move {
        let mut gathered = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut gathered, MAX_BATCH).await > 0 {
            // A delivery is named at most once per statement: a second outcome of the
            // same delivery (claimed again after its lease ran out) waits for the next.
            while !gathered.is_empty() {
                let batch = take_distinct(&mut gathered);
                write(&pool, &batch).await;
            }
            wake.notify_one();
        }
    });
    (tx, task)
}

/// Removes from `gathered` its longest prefix naming each delivery once.
fn take_distinct(gathered: &mut Vec<Settled>) -> Vec<Settled> {
    let mut seen = HashSet::with_capacity(gathered.len());
    let end = gathered
        .iter()
        .position(|s| !seen.insert(s.outcome.delivery_id.as_str()))
        .unwrap_or(gathered.len());
    let rest = gathered.split_off(end);
    std::mem::replace(gathered, rest)
}

/// Writes one batch, trying again a few times, and logs each outcome.
async fn write(pool: &deadpool_postgres::Pool, batch: &[Settled]) {
    let outcomes: Vec<outcomes::Outcome> = batch.iter().map(|s| s.outcome.clone()).collect();
    let started = std::time::Instant::now();
    let mut tries = 0;
    let recorded = loop {
        tries += 1;
        let result = match pool.get().await {
            Ok(client) => outcomes::record(&client, &outcomes).await,
            Err(err) => Err(err.into()),
        };
        match result {
            Ok(recorded) => break recorded,
            Err(err) if tries < WRITE_TRIES => {
                tracing::warn!(error = %err, outcomes = batch.len(), tries, "recording outcomes failed, trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(tries))).await;
            }
            Err(err) => {
                // The leases will run out and the deliveries be retried: at least once.
                tracing::error!(error = %err, outcomes = batch.len(), "recording outcomes failed");
                return;
            }
        }
    };
    tracing::debug!(
        outcomes = batch.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "outcomes recorded"
    );

    let mut disabled_logged = HashSet::new();
    for settled in batch {
        let o = &settled.outcome;
        let span = tracing::info_span!(
            "delivery",
            delivery_id = %o.delivery_id,
            subscription_id = %o.subscription_id,
            event_id = %settled.event_id,
            attempt = o.attempt,
        );
        let _entered = span.enter();
        let status = o.record.status;
        match &settled.decision {
            Outcome::Delivered => {
                tracing::info!(status, latency_ms = o.record.latency_ms, "delivered")
            }
            Outcome::Retry { delay, error } => {
                let retry_in_ms = delay.as_millis() as u64;
                tracing::info!(status, retry_in_ms, error = %error, "attempt failed, will retry");
            }
            Outcome::Dead { error } => tracing::warn!(status, error = %error, "delivery dead"),
            Outcome::Gone { .. } => {
                tracing::warn!(status, "receiver gone, subscription disabled")
            }
        }
        if !recorded.settled.contains(&o.delivery_id) {
            tracing::info!("the delivery had moved on; only the attempt was logged");
        }
        if o.disable.is_some()
            && recorded.disabled.contains(&o.subscription_id)
            && disabled_logged.insert(o.subscription_id.as_str())
        {
            tracing::warn!("subscription disabled after failing for too long");
        }
    }
}
