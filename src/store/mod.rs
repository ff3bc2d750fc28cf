//! Storage: connections to the CKAN database and one function per query on the side
//! schema. SQL that defines the schema lives in `sql/`; the queries live here.

pub mod changes;
pub mod deliveries;
pub mod metrics;
pub mod outcomes;
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
    pool_with_options(url, size, None)
}

/// A pool whose connections start with extra server options, e.g.
/// `-c synchronous_commit=off` for writes that may be lost in a server crash.
pub fn pool_with_options(url: &str, size: usize, options: Option<&str>) -> Result<Pool> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|err| {
        Error::config(format!(
            "invalid database URL {:?}: {err}",
            redact_password(url)
        ))
    })?;
    if let Some(options) = options {
        let existing = config.get_options().unwrap_or_default().to_string();
        config.options(format!("{existing} {options}").trim());
    }
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

/// The URL with any password replaced by `***`, for error messages.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact_password("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            super::redact_password("postgres://u@h/db"),
            "postgres://u@h/db"
        );
        assert_eq!(super::redact_password("nope"), "nope");
    }
}
