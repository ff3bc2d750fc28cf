//! The NOTIFY round trip, and signs of a connection pooler between us and PostgreSQL.
//!
//! `run` wakes on NOTIFY. Through PgBouncer in transaction (or statement) mode, LISTEN is
//! accepted but registered on whichever server connection ran it, which goes back to the
//! pool at once, so the listener never hears anything. The round trip shows that; two
//! further probes say why:
//! - backend sharing: a query on one client connection, then a transaction opened on a
//!   second one. Directly connected, each client has its own backend; a transaction pool
//!   hands the second client the backend the first has just released.
//! - the port: the port we connected to against the server's own `port` setting. A
//!   difference means something sits in between (a pooler, or a port mapping).

use crate::error::{Error, ErrorKind, Result};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// How long the listener waits for its own notification.
pub const WAIT: Duration = Duration::from_secs(2);

/// What the round trip and the probes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundTrip {
    /// Time from NOTIFY's commit to the listener receiving it; None when it never came.
    pub received_after: Option<Duration>,
    /// Two client connections were served by one backend: a transaction-mode pool.
    pub shared_backend: bool,
    /// (port connected to, port the server listens on) when they differ.
    pub port_mismatch: Option<(u16, String)>,
    /// The pooler's own answer to `SHOW VERSION` on its admin console, when it gave one.
    pub pooler_version: Option<String>,
}

/// Opens two fresh connections, probes for pooling, and sends a notification from one to
/// the other on a channel of its own, so a running service is not woken.
pub async fn round_trip(url: &str) -> Result<RoundTrip> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|err| Error::config(format!("invalid database URL: {err}")))?;
    let (listener, mut notes) = connect_listening(&config).await?;
    let (sender, _) = connect_listening(&config).await?;

    // Backend sharing: only the simple protocol, which a transaction pool passes through.
    let first = backend_pid(&listener).await?;
    sender.batch_execute("BEGIN").await?;
    let second = backend_pid(&sender).await?;
    let third = backend_pid(&listener).await?;
    sender.batch_execute("COMMIT").await?;
    let shared_backend = first == second || first != third;

    let port_mismatch = port_mismatch(&config, &listener).await?;
    let pooler_version = if shared_backend || port_mismatch.is_some() {
        pooler_version(&config).await
    } else {
        None
    };

    // The round trip itself.
    let channel = format!("ckan_webhooks_check_{:08x}", rand::random::<u32>());
    listener.batch_execute(&format!("LISTEN {channel}")).await?;
    let sent = Instant::now();
    sender
        .batch_execute(&format!("NOTIFY {channel}, 'check'"))
        .await?;
    let received_after = tokio::time::timeout(WAIT, async {
        while let Some(got) = notes.recv().await {
            if got == channel {
                return Some(sent.elapsed());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let _ = listener.batch_execute(&format!("UNLISTEN {channel}")).await;

    Ok(RoundTrip {
        received_after,
        shared_backend,
        port_mismatch,
        pooler_version,
    })
}

/// A connection whose notifications (their channel names) arrive on the receiver.
async fn connect_listening(
    config: &tokio_postgres::Config,
) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>)> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|err| {
        Error::new(
            ErrorKind::Database,
            format!("cannot connect to {}", crate::store::describe(config)),
        )
        .with_source(err)
    })?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(note) = message {
                let _ = tx.send(note.channel().to_string());
            }
        }
    });
    Ok((client, rx))
}

/// The first column of the first row of a simple query, as text.
async fn first_value(client: &Client, sql: &str) -> Result<Option<String>> {
    let messages = client.simple_query(sql).await?;
    Ok(messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    }))
}

async fn backend_pid(client: &Client) -> Result<String> {
    Ok(first_value(client, "SELECT pg_backend_pid()")
        .await?
        .unwrap_or_default())
}

/// The port we connected to and the server's own, when they differ.
async fn port_mismatch(
    config: &tokio_postgres::Config,
    client: &Client,
) -> Result<Option<(u16, String)>> {
    let connected = config.get_ports().first().copied().unwrap_or(5432);
    let server = first_value(client, "SELECT current_setting('port')")
        .await?
        .unwrap_or_default();
    Ok((server != connected.to_string()).then_some((connected, server)))
}

/// PgBouncer answers `SHOW VERSION` on its admin database `pgbouncer`; PostgreSQL has no
/// such setting. Only tried when pooling is suspected, and only with the same user.
async fn pooler_version(config: &tokio_postgres::Config) -> Option<String> {
    let mut admin = config.clone();
    admin.dbname("pgbouncer");
    admin.connect_timeout(Duration::from_secs(2));
    let (client, connection) = admin.connect(NoTls).await.ok()?;
    let driver = tokio::spawn(connection);
    let version = first_value(&client, "SHOW VERSION").await.ok().flatten();
    drop(client);
    let _ = driver.await;
    version
}
