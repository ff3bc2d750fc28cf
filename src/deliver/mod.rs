//! The delivery worker: claims due deliveries from PostgreSQL, sends them as signed
//! webhooks, and records each attempt's outcome.
//!
//! The loop claims a batch under a lease ([`crate::store::deliveries::claim`]), hands
//! each row to a task of its own (or parks it until its origin has a free slot), and
//! sleeps until woken by the watcher or the recorder (a written outcome may free the
//! next delivery of a dataset), until a task finishes, until the next retry is due, or
//! for at most [`IDLE_MAX`] so rows of other instances are picked up. Outcomes are
//! written in batches by [`record`]. On shutdown it stops claiming, hands back rows not
//! yet sent, waits for attempts in flight, and writes their outcomes.
//!
//! - [`destination`]: per-origin rate limits and caps, and the global cap.
//! - [`client`]: the HTTP client with the address policy, and one attempt.
//! - [`outcome`]: what an attempt's result means for the delivery.
//! - [`record`]: outcomes written in batches, one statement each.

pub mod client;
pub mod destination;
pub mod outcome;
pub mod record;

use crate::config::DeliveryConfig;
use crate::error::Result;
use crate::store::deliveries::{self, Claimed};
use crate::target::{self, TargetError};
use client::{Sender, Sent};
use destination::Destinations;
use outcome::FailureKind;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest the loop sleeps without looking for due rows.
pub const IDLE_MAX: Duration = Duration::from_secs(1);

/// What every attempt task shares.
struct Worker {
    pool: deadpool_postgres::Pool,
    config: Arc<DeliveryConfig>,
    sender: Sender,
    destinations: Destinations,
    shutdown: CancellationToken,
    /// Where attempts hand their outcomes to the recorder.
    outcomes: mpsc::Sender<record::Settled>,
}

/// A claimed row waiting for a free slot at its origin.
struct Parked {
    claimed: Claimed,
    since: Instant,
}

/// Claimed rows waiting for their origin, oldest first, by origin.
type ParkedRows = HashMap<String, VecDeque<Parked>>;

/// Runs the delivery worker until `shutdown` is cancelled, in-flight attempts end and
/// their outcomes are written.
///
/// Up to twice `concurrency` rows are held at once while at most `concurrency` send:
/// rows may wait for their origin's rate limit without holding a sending slot, and up to
/// `per_destination_concurrency` rows per origin wait in memory for a slot at a full
/// origin (for less than the lease allows, see [`Worker::max_park`]).
pub async fn run(
    pool: deadpool_postgres::Pool,
    config: DeliveryConfig,
    site_url: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let config = Arc::new(config);
    let max_held = config.concurrency.max(1) * 2;
    let (outcomes, recorder) = record::start(pool.clone(), max_held, wake.clone());
    let worker = Arc::new(Worker {
        sender: Sender::new(config.clone(), &site_url)?,
        destinations: Destinations::new(&config),
        pool,
        config: config.clone(),
        shutdown: shutdown.clone(),
        outcomes,
    });
    // While the backlog fills every claim, claim only once this much room has opened,
    // so that a busy worker claims in batches rather than a row per finished attempt.
    let batch_min = (max_held / 4).max(1);
    let mut tasks = JoinSet::new();
    let mut parked = ParkedRows::new();
    let mut want_claim = true;
    let mut backlog = false;
    let mut deadline = Instant::now();
    // Where a claim during a backlog starts, and since when claims have started there
    // (a claim from the beginning, at least every IDLE_MAX, finds rows passed over).
    let mut from: Option<(deliveries::Position, Instant)> = None;
    tracing::info!(
        concurrency = config.concurrency,
        per_destination = config.per_destination_concurrency,
        "delivery worker started"
    );

    while !shutdown.is_cancelled() {
        // Rows waiting at an origin go first when its slots free up.
        worker.start_parked(&mut parked, &mut tasks);
        worker.release_stale(&mut parked).await;

        // Claim as many rows as there is room for, skipping saturated destinations.
        let room = max_held.saturating_sub(tasks.len() + parked_len(&parked));
        if want_claim && room > 0 && (!backlog || room >= batch_min) {
            let start = match from {
                Some((position, since)) if since.elapsed() < IDLE_MAX => position,
                _ => deliveries::first_position(),
            };
            match worker.claim(room, &parked, start).await {
                Ok(batch) => {
                    // A full batch may have left due rows behind: keep claiming, from
                    // where this batch began.
                    backlog = batch.len() == room;
                    from = match (backlog, batch.iter().map(|c| c.position).min()) {
                        (true, Some(first)) => match from {
                            Some((_, since)) if start != deliveries::first_position() => {
                                Some((first, since))
                            }
                            _ => Some((first, Instant::now())),
                        },
                        _ => None,
                    };
                    let mut handed_back = Vec::new();
                    for claimed in batch {
                        worker
                            .dispatch(claimed, &mut tasks, &mut parked, &mut handed_back)
                            .await;
                    }
                    let ids: Vec<&str> = handed_back.iter().map(|c| c.id.as_str()).collect();
                    worker.release(&ids).await;
                    if !backlog {
                        deadline = Instant::now() + worker.next_due().await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "claiming deliveries failed");
                    backlog = false;
                    from = None;
                    deadline = Instant::now() + IDLE_MAX;
                }
            }
            want_claim = backlog;
        }
        worker.destinations.forget_idle();

        // Sleep until something may have become claimable: a wake-up (new deliveries,
        // written outcomes), the next due row, or a finished attempt.
        let room = max_held.saturating_sub(tasks.len() + parked_len(&parked));
        if backlog && room >= batch_min {
            continue;
        }
        let timer = !backlog && room > 0;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = wake.notified() => want_claim = true,
            _ = tokio::time::sleep_until(deadline), if timer => want_claim = true,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => report_panic(joined),
        }
        while let Some(joined) = tasks.try_join_next() {
            report_panic(joined);
        }
    }

    let waiting: Vec<&str> = parked
        .values()
        .flatten()
        .map(|p| p.claimed.id.as_str())
        .collect();
    tracing::info!(
        in_flight = tasks.len(),
        handed_back = waiting.len(),
        "delivery worker stopping"
    );
    worker.release(&waiting).await;
    while let Some(joined) = tasks.join_next().await {
        report_panic(joined);
    }
    // The last sender goes with the worker; the recorder then writes what is left.
    drop(worker);
    if let Err(err) = recorder.await {
        tracing::error!(error = %err, "outcome recorder failed");
    }
    tracing::info!("delivery worker stopped");
    Ok(())
}

fn parked_len(parked: &ParkedRows) -> usize {
    parked.values().map(VecDeque::len).sum()
}

fn report_panic(joined: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined {
        tracing::error!(error = %err, "delivery task failed");
    }
}

impl Worker {
    /// How long a claimed row may wait for a slot at its origin and still finish its
    /// attempt within the lease: the lease less the attempt timeout, the longest wait
    /// for the origin's rate, and a second of margin. Zero disables waiting: rows at a
    /// full origin are handed back at once.
    fn max_park(&self) -> Duration {
        let config = &self.config;
        let pacing = Duration::from_secs_f64(
            config.per_destination_concurrency as f64
                / f64::from(config.rate_per_destination.max(1)),
        );
        config
            .lease
            .saturating_sub(config.timeout + pacing + Duration::from_secs(1))
    }

    /// Claims up to `room` due rows, leaving out subscriptions whose origin is full and
    /// already has a full queue of rows waiting.
    async fn claim(
        &self,
        room: usize,
        parked: &ParkedRows,
        from: deliveries::Position,
    ) -> Result<Vec<Claimed>> {
        let can_park = !self.max_park().is_zero();
        let cap = self.config.per_destination_concurrency.max(1);
        let busy = self.destinations.busy_subscriptions(|origin| {
            !can_park || parked.get(origin).map_or(0, VecDeque::len) >= cap
        });
        let started = std::time::Instant::now();
        let client = self.pool.get().await?;
        let lease = self.config.lease;
        let batch = deliveries::claim(&client, room as i64, lease, &busy, from).await?;
        if !batch.is_empty() {
            tracing::debug!(
                claimed = batch.len(),
                skipped_subscriptions = busy.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "claimed"
            );
        }
        Ok(batch)
    }

    /// How long the loop may sleep: until the next row is due, at most [`IDLE_MAX`].
    async fn next_due(&self) -> Duration {
        let found = match self.pool.get().await {
            Ok(client) => deliveries::next_due_in(&client).await,
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
    /// parks it when its origin is full, or hands it back when that origin's queue is
    /// full too.
    async fn dispatch(
        self: &Arc<Self>,
        claimed: Claimed,
        tasks: &mut JoinSet<()>,
        parked: &mut ParkedRows,
        handed_back: &mut Vec<Claimed>,
    ) {
        let target =
            match target::check_address(&claimed.address, self.config.allow_private_targets) {
                Ok(target) => target,
                Err(err) => {
                    let kind = match err {
                        TargetError::Forbidden(_) => FailureKind::Refused,
                        TargetError::Invalid(_) => FailureKind::Invalid,
                    };
                    let sent = Sent::failed(chrono::Utc::now(), kind, err.to_string());
                    self.hand_over(&claimed, sent).await;
                    return;
                }
            };

        let origin = target.origin();
        if let Some(slot) = self
            .destinations
            .try_enter(&origin, &claimed.subscription_id)
        {
            let worker = self.clone();
            tasks.spawn(async move { worker.attempt(claimed, origin, slot).await });
            return;
        }

        let cap = self.config.per_destination_concurrency.max(1);
        let queue = parked.entry(origin).or_default();
        if self.max_park().is_zero() || queue.len() >= cap {
            tracing::debug!(delivery_id = %claimed.id, "destination full");
            handed_back.push(claimed);
        } else {
            let since = Instant::now();
            queue.push_back(Parked { claimed, since });
        }
    }

    /// Starts waiting rows at origins with free slots.
    fn start_parked(self: &Arc<Self>, parked: &mut ParkedRows, tasks: &mut JoinSet<()>) {
        parked.retain(|origin, queue| {
            while let Some(next) = queue.front() {
                let subscription = &next.claimed.subscription_id;
                let Some(slot) = self.destinations.try_enter(origin, subscription) else {
                    break;
                };
                let Some(Parked { claimed, .. }) = queue.pop_front() else {
                    break;
                };
                let (worker, origin) = (self.clone(), origin.clone());
                tasks.spawn(async move { worker.attempt(claimed, origin, slot).await });
            }
            !queue.is_empty()
        });
    }

    /// Hands back rows that have waited so long that their attempt might outlive the
    /// lease.
    async fn release_stale(&self, parked: &mut ParkedRows) {
        let max_park = self.max_park();
        let mut stale = Vec::new();
        parked.retain(|_, queue| {
            while queue.front().is_some_and(|p| p.since.elapsed() >= max_park) {
                stale.extend(queue.pop_front().map(|p| p.claimed.id));
            }
            !queue.is_empty()
        });
        if !stale.is_empty() {
            tracing::debug!(handed_back = stale.len(), "destination busy too long");
            let ids: Vec<&str> = stale.iter().map(String::as_str).collect();
            self.release(&ids).await;
        }
    }

    /// Waits for the origin's rate and a global slot, sends, and hands the outcome to
    /// the recorder.
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
            self.release(&[claimed.id.as_str()]).await;
            return;
        };

        let sent = self.sender.send(&claimed).await;
        drop((sending, slot));

        self.hand_over(&claimed, sent).await;
    }

    /// Decides what an attempt means and queues it for the recorder.
    async fn hand_over(&self, claimed: &Claimed, sent: Sent) {
        let settled = record::settle(claimed, sent, &self.config);
        if self.outcomes.send(settled).await.is_err() {
            // Only when the recorder has died: the lease will run out and the
            // delivery be retried.
            tracing::error!(delivery_id = %claimed.id, "the outcome recorder has stopped");
        }
    }

    /// Hands claimed rows back unattempted.
    async fn release(&self, ids: &[&str]) {
        if ids.is_empty() {
            return;
        }
        let released = match self.pool.get().await {
            Ok(client) => deliveries::release(&client, ids).await,
            Err(err) => Err(err.into()),
        };
        if let Err(err) = released {
            tracing::warn!(deliveries = ids.len(), error = %err, "handing back claims failed");
        }
    }
}
