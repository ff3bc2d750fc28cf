//! The delivery worker: claims due deliveries from PostgreSQL, sends them as signed
//! webhooks, and records each attempt's outcome.
//!
//! The loop claims a batch under a lease ([`crate::store::deliveries::claim`]), hands
//! each row to a task of its own, and sleeps until woken by the watcher, until a task
//! finishes (which may free the next delivery of a dataset), until the next retry is
//! due, or for at most [`IDLE_MAX`] so rows of other instances are picked up. On
//! shutdown it stops claiming, hands back rows not yet sent, and waits for attempts in
//! flight.
//!
//! - [`destination`]: per-origin rate limits and caps, and the global cap.
//! - [`client`]: the HTTP client with the address policy, and one attempt.
//! - [`outcome`]: what an attempt's result means for the delivery.

pub mod client;
pub mod destination;
pub mod outcome;

use crate::config::DeliveryConfig;
use crate::error::Result;
use crate::store::deliveries::{self, Claimed};
use crate::store::outcomes::{self, AttemptRecord, Disable, Verdict};
use crate::target::{self, TargetError};
use client::{Sender, Sent};
use destination::Destinations;
use outcome::{FailureKind, Outcome};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The longest the loop sleeps without looking for due rows.
pub const IDLE_MAX: Duration = Duration::from_secs(1);

/// What every attempt task shares.
struct Worker {
    pool: deadpool_postgres::Pool,
    config: Arc<DeliveryConfig>,
    sender: Sender,
    destinations: Destinations,
    shutdown: CancellationToken,
}

/// Runs the delivery worker until `shutdown` is cancelled and in-flight attempts end.
///
/// Claimed rows may wait for their origin's rate limit without holding a sending slot,
/// so up to twice `concurrency` rows are held at once while at most `concurrency` send.
pub async fn run(
    pool: deadpool_postgres::Pool,
    config: DeliveryConfig,
    site_url: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let config = Arc::new(config);
    let worker = Arc::new(Worker {
        sender: Sender::new(config.clone(), &site_url)?,
        destinations: Destinations::new(&config),
        pool,
        config: config.clone(),
        shutdown: shutdown.clone(),
    });
    let max_held = config.concurrency.max(1) * 2;
    let mut tasks = JoinSet::new();
    tracing::info!(
        concurrency = config.concurrency,
        per_destination = config.per_destination_concurrency,
        "delivery worker started"
    );

    while !shutdown.is_cancelled() {
        // Claim as many rows as there is room for, skipping full destinations.
        let room = max_held.saturating_sub(tasks.len());
        let mut more_due = false;
        if room > 0 {
            match worker.claim(room).await {
                Ok(batch) => {
                    // A full batch may have left due rows behind, for example when some
                    // of it went back to a full destination: look again at once.
                    more_due = batch.len() == room;
                    for claimed in batch {
                        worker.dispatch(claimed, &mut tasks).await;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "claiming deliveries failed"),
            }
        }
        worker.destinations.forget_idle();

        // Sleep until something may have become claimable.
        let pause = if tasks.len() >= max_held {
            Duration::MAX
        } else if more_due {
            Duration::ZERO
        } else {
            worker.next_due().await
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(pause.min(Duration::from_secs(3600))) => {}
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => report_panic(joined),
        }
        while let Some(joined) = tasks.try_join_next() {
            report_panic(joined);
        }
    }

    tracing::info!(in_flight = tasks.len(), "delivery worker stopping");
    while let Some(joined) = tasks.join_next().await {
        report_panic(joined);
    }
    tracing::info!("delivery worker stopped");
    Ok(())
}

fn report_panic(joined: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined {
        tracing::error!(error = %err, "delivery task failed");
    }
}

impl Worker {
    /// Claims up to `room` due rows, leaving out subscriptions whose origin is full.
    async fn claim(&self, room: usize) -> Result<Vec<Claimed>> {
        let busy = self.destinations.busy_subscriptions();
        let client = self.pool.get().await?;
        let batch = deliveries::claim(&**client, room as i64, self.config.lease, &busy).await?;
        if !batch.is_empty() {
            tracing::debug!(
                claimed = batch.len(),
                skipped_subscriptions = busy.len(),
                "claimed"
            );
        }
        Ok(batch)
    }

    /// How long the loop may sleep: until the next row is due, at most [`IDLE_MAX`].
    async fn next_due(&self) -> Duration {
        let found = match self.pool.get().await {
            Ok(client) => deliveries::next_due_in(&**client).await,
            Err(err) => Err(err.into()),
        };
        match found {
            Ok(Some(due)) => due.min(IDLE_MAX),
            Ok(None) => IDLE_MAX,
            Err(err) => {
                tracing::warn!(error = %err, "reading the next due delivery failed");
                IDLE_MAX
            }
        }
    }

    /// Starts the attempt of one claimed row, or records why it cannot be made, or
    /// hands the row back when its origin is full.
    async fn dispatch(self: &Arc<Self>, claimed: Claimed, tasks: &mut JoinSet<()>) {
        let target =
            match target::check_address(&claimed.address, self.config.allow_private_targets) {
                Ok(target) => target,
                Err(err) => {
                    let kind = match err {
                        TargetError::Forbidden(_) => FailureKind::Refused,
                        TargetError::Invalid(_) => FailureKind::Invalid,
                    };
                    let sent = Sent::failed(chrono::Utc::now(), kind, err.to_string());
                    let worker = self.clone();
                    tasks.spawn(async move { worker.record(&claimed, sent).await });
                    return;
                }
            };

        let origin = target.origin();
        let Some(slot) = self
            .destinations
            .try_enter(&origin, &claimed.subscription_id)
        else {
            tracing::debug!(delivery_id = %claimed.id, origin = %origin, "destination full");
            self.release(&claimed).await;
            return;
        };

        let worker = self.clone();
        tasks.spawn(async move { worker.attempt(claimed, origin, slot).await });
    }

    /// Waits for the origin's rate and a global slot, sends, and records.
    async fn attempt(&self, claimed: Claimed, origin: String, slot: OwnedSemaphorePermit) {
        let ready = async {
            let subscription = &claimed.subscription_id;
            let rate = claimed.rate_per_second;
            self.destinations.pace(&origin, subscription, rate).await;
            self.destinations.send_slot().await
        };
        let sending = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            sending = ready => Some(sending),
        };
        let Some(sending) = sending else {
            self.release(&claimed).await;
            return;
        };

        let sent = self.sender.send(&claimed).await;
        drop((sending, slot));

        self.record(&claimed, sent).await;
    }

    /// Decides and stores the outcome of an attempt, and logs it.
    async fn record(&self, claimed: &Claimed, sent: Sent) {
        let now = chrono::Utc::now();
        let age = (now - claimed.created_at).to_std().unwrap_or_default();
        let outcome = outcome::decide(
            &sent.result,
            claimed.attempt,
            age,
            &self.config,
            rand::random(),
        );
        let status = match sent.result {
            outcome::AttemptResult::Response { status, .. } => Some(i32::from(status)),
            outcome::AttemptResult::Failed { .. } => None,
        };
        let latency_ms = sent
            .latency
            .map(|l| l.as_millis().min(i32::MAX as u128) as i32);
        let record = AttemptRecord {
            started_at: Some(sent.started_at),
            status,
            error: None,
            response: sent.response,
            latency_ms,
        };

        let span = tracing::info_span!(
            "delivery",
            delivery_id = %claimed.id,
            subscription_id = %claimed.subscription_id,
            event_id = %claimed.event.id,
            attempt = claimed.attempt,
        );
        let stored = self
            .store(claimed, &outcome, record, now)
            .instrument(span)
            .await;
        if let Err(err) = stored {
            // The lease will run out and the delivery be retried: at least once.
            tracing::error!(error = %err, "recording the outcome failed");
        }
    }

    /// Writes one outcome with its attempt row and logs it (inside the delivery's span).
    async fn store(
        &self,
        claimed: &Claimed,
        outcome: &Outcome,
        mut record: AttemptRecord,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        let (status, latency_ms) = (record.status, record.latency_ms);
        let (verdict, error) = match outcome {
            Outcome::Delivered => (Verdict::Delivered, None),
            Outcome::Retry { delay, error } => (Verdict::Retry(*delay), Some(error)),
            Outcome::Dead { error } => (Verdict::Dead, Some(error)),
            Outcome::Gone { error } => (Verdict::Gone, Some(error)),
        };
        record.error = error.cloned();

        // A failure after a long enough streak of failures disables the subscription.
        let disable = match (verdict, claimed.failing_since) {
            (Verdict::Retry(_) | Verdict::Dead, Some(since))
                if outcome::failing_too_long(since, now, self.config.disable_after) =>
            {
                Some(Disable {
                    reason: outcome::disabled_reason(since, error.map_or("", |e| e.as_str())),
                    failing_since: since,
                })
            }
            _ => None,
        };

        let client = self.pool.get().await?;
        let recorded = outcomes::record(
            &**client,
            &claimed.id,
            &claimed.subscription_id,
            claimed.attempt,
            &record,
            verdict,
            error.map(|e| e.as_str()),
            disable.as_ref(),
        )
        .await?;

        match outcome {
            Outcome::Delivered => tracing::info!(status, latency_ms, "delivered"),
            Outcome::Retry { delay, error } => {
                let retry_in_ms = delay.as_millis() as u64;
                tracing::info!(status, retry_in_ms, error = %error, "attempt failed, will retry");
            }
            Outcome::Dead { error } => tracing::warn!(status, error = %error, "delivery dead"),
            Outcome::Gone { .. } => {
                tracing::warn!(status, "receiver gone, subscription disabled")
            }
        }
        if !recorded.delivery_updated {
            tracing::info!("the delivery had moved on; only the attempt was logged");
        }
        if recorded.subscription_disabled && disable.is_some() {
            tracing::warn!("subscription disabled after failing for too long");
        }
        Ok(())
    }

    /// Hands a claimed row back unattempted.
    async fn release(&self, claimed: &Claimed) {
        let released = match self.pool.get().await {
            Ok(client) => deliveries::release(&**client, &claimed.id).await,
            Err(err) => Err(err.into()),
        };
        if let Err(err) = released {
            tracing::warn!(delivery_id = %claimed.id, error = %err, "handing back a claim failed");
        }
    }
}
