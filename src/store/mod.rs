//! Storage: connections to the CKAN database and one function per query on the side
//! schema. SQL that defines the schema lives in `sql/`; the queries live here.

pub mod changes;
pub mod datasets;
pub mod deliveries;
pub mod history;
pub mod metrics;
pub mod outcomes;
pub mod shadow;
pub mod subscriptions;
pub mod users;

use crate::error::{Error, ErrorKind, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

/// Opens one connection outside the pool (LISTEN, install), driving it on a task.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url.parse().map_err(|err| {
        Error::config(format!(
            "invalid database URL {:?}: {err}",
            redact_password(url)
        ))
    })?;
    let (client, connection) = config.connect(NoTls).await.map_err(|err| {
        Error::new(
            ErrorKind::Database,
            format!("cannot connect to {}", describe(&config)),
        )
        .with_source(err)
    })?;
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

/// Where a connection goes, for messages: `host:port/database`, never credentials.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// The URL or key=value string with any password replaced by `***`, for messages.
pub fn redact_password(url: &str) -> String {
    let mut out = url.to_string();

    // postgres://user:password@host
    if let Some((scheme, rest)) = out.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                out = format!("{scheme}://{user}:***@{host}");
            }
        }
    }

    // ?password=... and password=... (key=value form), up to '&' or whitespace.
    let mut redacted = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.to_ascii_lowercase().find("password=") {
        let value_start = at + "password=".len();
        redacted.push_str(&rest[..value_start]);
        redacted.push_str("***");
        let tail = &rest[value_start..];
        let end = tail
            .find(|c: char| c == '&' || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    redacted.push_str(rest);
    redacted
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
            super::redact_password("postgres://u@h:9/db?password=Pw0&sslmode=x"),
            "postgres://u@h:9/db?password=***&sslmode=x"
        );
        assert_eq!(
            super::redact_password("host=h port=9 PASSWORD=Pw0 dbname=d"),
            "host=h port=9 PASSWORD=*** dbname=d"
        );
        assert_eq!(
            super::redact_password("postgres://u@h/db"),
            "postgres://u@h/db"
        );
        assert_eq!(super::redact_password("nope"), "nope");
    }
}
