//! The watcher: wakes on NOTIFY (a hint) or on a timer (the guarantee), and derives
//! every committed transaction waiting in the change log into events and deliveries.
//! A lost notification or a dropped LISTEN connection delays events, never loses them:
//! the change log is the truth and is re-read on every wake and every tick.

use crate::derive;
use crate::error::Result;
use crate::store::{changes, shadow};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// The NOTIFY channel the capture triggers signal.
pub const CHANNEL: &str = "ckan_webhooks";

/// Transactions derived per database transaction of ours.
const BATCH: i64 = 100;

/// CKAN settings the watcher applies when it fans events out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// CKAN's `ckan.auth.allow_dataset_collaborators`: collaborators of a private
    /// dataset may read it, so their hooks receive its events. Off in CKAN by default.
    pub allow_dataset_collaborators: bool,
    /// Trigger mode with reconciliation: keep the shadow of every derived dataset
    /// current (marked in the derive transaction, refreshed by [`refresh_shadow`] after
    /// it), so that reconciliation knows capture delivered it.
    pub refresh_shadow: bool,
    /// Listen for the triggers' NOTIFY (trigger mode); poll mode wakes the watcher itself.
    pub listen: bool,
}

/// What one derive pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Derived {
    /// CKAN transactions consumed from the change log.
    pub transactions: usize,
    /// Events recorded.
    pub events: usize,
    /// Deliveries created.
    pub deliveries: u64,
}

/// Derives waiting transactions in batches until the change log is empty or another
/// instance holds the derive lock.
pub async fn derive_pending(pool: &Pool, options: &Options) -> Result<Derived> {
    let mut total = Derived::default();
    loop {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        if !changes::try_derive_lock(&*tx).await? {
            tracing::debug!("another instance is deriving");
            return Ok(total);
        }

        let transactions = changes::pending_transactions(&*tx, BATCH).await?;
        if transactions.is_empty() {
            return Ok(total);
        }
        let collaborators =
            options.allow_dataset_collaborators && changes::has_collaborators(&*tx).await?;
        let mut ids = Vec::new();
        let mut datasets: Vec<String> = Vec::new();
        let mut derived = Vec::new();
        for transaction in &transactions {
            derived.push(transaction.txid.to_string());
            let lookups = changes::lookups(&*tx, transaction, &derived).await?;
            for scoped in derive::derive_scoped(transaction, &lookups) {
                total.deliveries +=
                    changes::record_event(&*tx, transaction.txid, &scoped, collaborators).await?;
                total.events += 1;
                tracing::debug!(
                    event_id = %scoped.event.id,
                    topic = %scoped.event.topic,
                    audience = scoped.audience.bits(),
                    "event derived"
                );
            }
            ids.extend(transaction.changes.iter().map(|c| c.id));
            if options.refresh_shadow {
                datasets.extend(
                    transaction
                        .changes
                        .iter()
                        .filter_map(|c| c.package_id.clone()),
                );
            }
        }
        changes::delete_changes(&*tx, &ids).await?;
        if options.refresh_shadow {
            shadow::mark_dirty(&*tx, &datasets).await?;
        }
        tx.commit().await?;
        total.transactions += transactions.len();
    }
}

/// Brings the shadow of the datasets derivation marked up to date, off the latency path.
pub async fn refresh_shadow(pool: &Pool) -> Result<usize> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let refreshed = shadow::refresh_dirty(&*tx).await?;
    tx.commit().await?;
    Ok(refreshed)
}

/// Runs until `shutdown`: listens for NOTIFY on its own connection (when
/// `options.listen`), wakes on `wake` and every `poll_interval`, derives, and wakes the
/// deliverer when deliveries were created.
pub async fn run(
    pool: Pool,
    database_url: String,
    poll_interval: Duration,
    options: Options,
    wake: Arc<Notify>,
    deliver_wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = options
        .listen
        .then(|| tokio::spawn(listen(database_url, wake.clone(), shutdown.clone())));

    let mut last_refresh = std::time::Instant::now();
    loop {
        match derive_pending(&pool, &options).await {
            Ok(done) if done.transactions > 0 => {
                tracing::info!(
                    transactions = done.transactions,
                    events = done.events,
                    deliveries = done.deliveries,
                    "changes derived"
                );
                if done.deliveries > 0 {
                    deliver_wake.notify_one();
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "derive failed, will retry"),
        }
        // At most once per interval, batched, and never between a commit and its
        // delivery: the mark already keeps reconciliation off these datasets.
        if options.refresh_shadow && last_refresh.elapsed() >= poll_interval {
            last_refresh = std::time::Instant::now();
            if let Err(err) = refresh_shadow(&pool).await {
                tracing::warn!(error = %err, "shadow refresh failed, will retry");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
    }
    if let Some(listener) = listener {
        let _ = listener.await;
    }
    Ok(())
}

/// Keeps a LISTEN connection open, reconnecting with backoff, and turns each
/// notification (and each reconnect, which may have missed some) into a wake-up.
async fn listen(database_url: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match tokio_postgres::connect(&database_url, NoTls).await {
            Ok((client, mut connection)) => {
                // The connection task forwards notifications until the connection ends.
                let forward = wake.clone();
                let mut driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => forward.notify_one(),
                            Ok(_) => {}
                            Err(err) => {
                                tracing::warn!(error = %err, "listen connection failed");
                                return;
                            }
                        }
                    }
                    tracing::warn!("listen connection closed");
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        tracing::info!("listening for changes");
                        backoff = Duration::from_millis(200);
                        // Whatever was committed while we were not listening is read now.
                        wake.notify_one();
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "listen failed");
                        driver.abort();
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        driver.abort();
                        return;
                    }
                    _ = &mut driver => {}
                }
                drop(client);
            }
            Err(err) => tracing::warn!(error = %err, "cannot open listen connection"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
