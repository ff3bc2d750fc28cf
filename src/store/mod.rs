//! Storage: connections to the CKAN database and one function per query on the side
//! schema. SQL that defines the schema lives in `sql/`; the queries live here.

pub mod changes;
pub mod deliveries;
pub mod subscriptions;
pub mod users;

use crate::error::{Error, ErrorKind, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Opens one connection outside the pool (LISTEN, install), driving it on a task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "database connection closed");
        }
    });
    Ok(client)
}

/// A bounded pool of connections to the database that holds the side schema.
pub fn pool(url: &str, size: usize) -> Result<Pool> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|err| Error::config(format!("invalid database URL: {err}")))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|err| Error::new(ErrorKind::Database, "database pool").with_source(err))
}
