//! Poll mode and reconciliation: a pass compares the shadow (what the service last saw)
//! with CKAN's rows, writes what moved into the change log as the row changes a trigger
//! would have captured, and brings the shadow up to date, in one transaction per chunk of
//! datasets. Derivation then turns those changes into events exactly as in trigger mode.
//!
//! - Poll mode (no triggers): the pass is the only capture. It runs every cycle.
//! - Trigger mode: the pass is reconciliation. It leaves alone every dataset with changes
//!   still in the change log (capture has them), and derivation keeps the shadow current
//!   for what capture delivered, so only what capture missed comes out of it.
//!
//! One instance at a time is the leader: it holds a session advisory lock on its own
//! connection, so a dead leader's lock goes with its connection and another instance
//! takes over at its next cycle. Nothing is lost when a pass stops half way: every chunk
//! commits its changes together with its shadow rows, and the next pass compares again.

mod compare;

use crate::error::Result;
use crate::state_db;
use crate::store::{self, shadow};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_postgres::{Client, IsolationLevel};
use tokio_util::sync::CancellationToken;

/// Session advisory lock held by the poll or reconciliation leader ("ckanwhk3").
pub const POLL_LOCK: i64 = 0x636b_616e_7768_6b33;

/// Datasets compared per transaction.
const CHUNK: usize = 500;

/// Attempts of one chunk that lost a serialization conflict to derivation.
const ATTEMPTS: usize = 5;

/// What a pass is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Poll mode: the pass is the capture.
    Poll,
    /// Trigger mode: the pass heals what capture missed.
    Reconcile,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// A baseline was taken (first pass): datasets and resources recorded, no changes.
    pub baseline: Option<(u64, u64)>,
    /// Datasets whose cheap columns moved.
    pub moved: usize,
    /// Of those, datasets left to capture because the change log still has changes.
    pub pending: usize,
    /// Row changes written to the change log.
    pub changes: u64,
    /// Wall time of the pass.
    pub elapsed: Duration,
}

/// Runs one pass on `client` (which should hold [`POLL_LOCK`]).
pub async fn pass(client: &mut Client, purpose: Purpose) -> Result<Pass> {
    let started = Instant::now();
    let mut done = Pass::default();

    // The moved datasets, read in one snapshot; each chunk reads again for itself.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await?;
    // The snapshot's time: every change committed before it is in this pass.
    let snapshot_at: chrono::DateTime<chrono::Utc> =
        tx.query_one("SELECT now()", &[]).await?.get(0);
    let layout = shadow::layout(&tx).await?;
    if !shadow::has_baseline(&tx).await? {
        done.baseline = Some(shadow::take_baseline(&tx, &layout).await?);
        tx.commit().await?;
        done.elapsed = started.elapsed();
        return Ok(done);
    }
    let moved = shadow::moved_datasets(&tx, &layout).await?;
    tx.commit().await?;
    done.moved = moved.len();

    for chunk in moved.chunks(CHUNK) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match chunk_pass(client, &layout, chunk, purpose).await {
                Ok((pending, changes)) => {
                    done.pending += pending;
                    done.changes += changes;
                    break;
                }
                Err(err) if attempt < ATTEMPTS && err.is_conflict() => {
                    tracing::debug!(error = %err, attempt, "poll chunk conflicted, retrying");
                }
                Err(err) => return Err(err),
            }
        }
    }

    if layout.revisions {
        shadow::advance_watermark(&*client).await?;
    }
    done.elapsed = started.elapsed();
    shadow::record_pass(
        &*client,
        "last_pass",
        &json!({
            "purpose": format!("{purpose:?}").to_lowercase(),
            "moved": done.moved,
            "pending": done.pending,
            "changes": done.changes,
            "elapsed_ms": done.elapsed.as_secs_f64() * 1000.0,
            "snapshot_at": snapshot_at,
        }),
    )
    .await?;
    Ok(done)
}

/// Compares and records one chunk of datasets in one repeatable-read transaction.
/// Returns the datasets left to capture and the changes written.
async fn chunk_pass(
    client: &mut Client,
    layout: &shadow::Layout,
    chunk: &[String],
    purpose: Purpose,
) -> Result<(usize, u64)> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let mut ids: Vec<String> = chunk.to_vec();
    let mut pending = 0;
    if purpose == Purpose::Reconcile {
        let waiting = shadow::pending_datasets(&tx, &ids).await?;
        pending = waiting.len();
        ids.retain(|id| !waiting.contains(id));
    }
    let snapshot = shadow::snapshot(&tx, layout, &ids).await?;
    let changes = compare::changes(&snapshot);
    let written = shadow::record_changes(&tx, &changes).await?;
    shadow::store(&tx, &snapshot, &ids).await?;
    tx.commit().await?;
    if purpose == Purpose::Reconcile && written > 0 {
        tracing::warn!(
            changes = written,
            "reconciliation found changes capture missed; they are delivered now"
        );
    }
    Ok((pending, written))
}

/// Runs passes every `interval` until `shutdown`, as leader when it can be; wakes the
/// watcher (`derive_wake`) after a pass that wrote changes.
pub async fn run(
    database_url: String,
    purpose: Purpose,
    interval: Duration,
    derive_wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut leader: Option<Client> = None;
    loop {
        if leader.is_none() {
            leader = match lead(&database_url).await {
                Ok(client) => client,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot open the poll connection");
                    None
                }
            };
        }
        if let Some(client) = leader.as_mut() {
            match pass(client, purpose).await {
                Ok(done) => {
                    if let Some((datasets, resources)) = done.baseline {
                        tracing::info!(datasets, resources, "poll baseline taken");
                    } else if done.changes > 0 || done.moved > 0 {
                        tracing::info!(
                            moved = done.moved,
                            pending = done.pending,
                            changes = done.changes,
                            elapsed_ms = done.elapsed.as_millis() as u64,
                            "poll pass"
                        );
                    }
                    if done.changes > 0 {
                        derive_wake.notify_one();
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "poll pass failed, will retry");
                    if client.is_closed() {
                        leader = None;
                    } else if state_db::is_state_database(&*client).await.unwrap_or(false) {
                        // CKAN's columns may have moved under the foreign tables.
                        if let Err(err) = state_db::reimport(client).await {
                            tracing::warn!(error = %err, "cannot re-import CKAN's tables");
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Opens a connection and takes the leader lock on it; None when another instance leads.
async fn lead(database_url: &str) -> Result<Option<Client>> {
    let client = store::connect(database_url).await?;
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&POLL_LOCK])
        .await?;
    if row.get(0) {
        tracing::info!("leading poll passes");
        Ok(Some(client))
    } else {
        tracing::debug!("another instance leads poll passes");
        Ok(None)
    }
}
