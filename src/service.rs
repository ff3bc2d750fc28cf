//! `run(config, shutdown)`: the whole service in-process — the action API, the watcher,
//! the deliverer and, when configured, retention — sharing one shutdown token.

use crate::api::{self, ApiState};
use crate::config::{Mode, RunConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::{deliver, install, poll, retention, state_db, store, watch};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A started service: where its API listens, and its tasks.
pub struct Service {
    /// The API's bound address (useful when `listen` asked for port 0).
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<Result<()>>>,
}

impl Service {
    /// Waits for every task to finish (after the shutdown token is cancelled).
    pub async fn wait(self) -> Result<()> {
        let mut first_error = None;
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "service task failed");
                    first_error.get_or_insert(err);
                }
                Err(err) => {
                    first_error.get_or_insert(Error::new(ErrorKind::Io, format!("task: {err}")));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Checks the side schema is installed, binds the API and starts every task.
pub async fn start(config: RunConfig, shutdown: CancellationToken) -> Result<Service> {
    let pool = store::pool(&config.database_url, config.pool_size)?;
    let client = pool.get().await.map_err(|err| {
        let target = config
            .database_url
            .parse()
            .map(|c| store::describe(&c))
            .unwrap_or_default();
        Error::new(
            ErrorKind::Database,
            format!("cannot connect to {target}: {}", Error::from(err)),
        )
    })?;
    check_installed(&client).await?;
    if state_db::is_state_database(&**client).await? {
        // CKAN's columns may have changed since the last import.
        let mut state = store::connect(&config.database_url).await?;
        state_db::reimport(&mut state).await?;
        tracing::info!("reading CKAN through postgres_fdw from the state database");
    }
    let mode = resolve_mode(&client, config.capture.mode).await?;
    drop(client);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| {
            Error::new(ErrorKind::Io, format!("cannot listen on {}", config.listen))
                .with_source(err)
        })?;
    let addr = listener.local_addr()?;

    let api_state = Arc::new(ApiState {
        pool: pool.clone(),
        site_url: config.site_url.clone(),
        token_secret: config.token_secret.clone(),
        minimum_auth: config.minimum_auth,
        allow_private_targets: config.delivery.allow_private_targets,
        accept_api_keys: config.accept_api_keys,
        allow_dataset_collaborators: config.allow_dataset_collaborators,
    });
    // The deliverer's writes (leases, outcomes) need no synchronous commit: losing one
    // in a server crash only means an attempt is made again, with the same webhook-id.
    // Events, deliveries and subscriptions are written through the durable pool.
    let deliver_pool = store::pool_with_options(
        &config.database_url,
        config.pool_size,
        Some("-c synchronous_commit=off"),
    )?;
    let deliver_wake = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    if let Some(retention) = config.retention {
        tasks.push(tokio::spawn(retention::run(
            config.database_url.clone(),
            retention,
            shutdown.clone(),
        )));
    }
    // Poll mode passes every cycle; trigger mode reconciles every interval, if at all.
    let derive_wake = Arc::new(Notify::new());
    let passes = match mode {
        Mode::Poll => Some((poll::Purpose::Poll, config.capture.poll_cycle)),
        _ => config
            .capture
            .reconcile_interval
            .map(|every| (poll::Purpose::Reconcile, every)),
    };
    if let Some((purpose, every)) = passes {
        tasks.push(tokio::spawn(poll::run(
            config.database_url.clone(),
            purpose,
            every,
            derive_wake.clone(),
            shutdown.clone(),
        )));
    }
    tracing::info!(?mode, "capture mode");
    tasks.extend([
        tokio::spawn(api::serve(listener, api_state, shutdown.clone())),
        tokio::spawn(watch::run(
            pool.clone(),
            config.database_url.clone(),
            config.poll_interval,
            watch::Options {
                allow_dataset_collaborators: config.allow_dataset_collaborators,
                refresh_shadow: mode == Mode::Trigger
                    && config.capture.reconcile_interval.is_some(),
                listen: mode == Mode::Trigger,
            },
            derive_wake,
            deliver_wake.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(deliver::run(
            deliver_pool,
            config.delivery.clone(),
            config.site_url.clone(),
            deliver_wake,
            shutdown,
        )),
    ]);
    Ok(Service { addr, tasks })
}

/// Refuses to start without the side schema; warns when nothing is being captured.
async fn check_installed(client: &tokio_postgres::Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT to_regclass('ckan_webhooks.migration')::text,
                    to_regclass('ckan_webhooks.change')::text",
            &[],
        )
        .await?;
    let (ledger, change): (Option<String>, Option<String>) = (row.get(0), row.get(1));
    if ledger.is_none() {
        return Err(Error::new(
            ErrorKind::Schema,
            "the side schema ckan_webhooks is not installed: run `ckan-webhooks install` first",
        ));
    }
    if change.is_none() {
        return Err(Error::new(
            ErrorKind::Schema,
            "the change log ckan_webhooks.change is missing: the side schema was damaged; \
             `ckan-webhooks uninstall --drop-data` then `install` recreates it (and drops \
             subscriptions)",
        ));
    }
    Ok(())
}

/// The mode to run in: `auto` is trigger mode when the capture triggers are on
/// `package`, else poll mode. Trigger mode asked for without triggers is refused.
async fn resolve_mode(client: &tokio_postgres::Client, asked: Mode) -> Result<Mode> {
    let captured = install::captured_tables(client).await?;
    let triggers = captured.iter().any(|t| t == "package");
    match (asked, triggers) {
        (Mode::Trigger, false) => Err(Error::new(
            ErrorKind::Schema,
            "--mode trigger, but there are no capture triggers on public.package: run \
             `ckan-webhooks install`, or use --mode poll",
        )),
        (Mode::Auto, false) => {
            tracing::info!("no capture triggers on public.package: polling");
            Ok(Mode::Poll)
        }
        (Mode::Auto, true) => Ok(Mode::Trigger),
        (Mode::Poll, true) => Err(Error::new(
            ErrorKind::Schema,
            "--mode poll, but capture triggers are installed on public.package: their \
             changes and the poll passes would deliver every change twice; run \
             `ckan-webhooks uninstall` (keeps subscriptions) for poll mode, or use --mode \
             trigger or auto",
        )),
        (mode, _) => Ok(mode),
    }
}

/// Runs the service until `shutdown` is cancelled.
pub async fn run(config: RunConfig, shutdown: CancellationToken) -> Result<()> {
    start(config, shutdown).await?.wait().await
}
