//! The side schema in a second database (`--state-database-url`), for a CKAN database the
//! service may only read. CKAN's tables are attached to the state database as
//! `postgres_fdw` foreign tables in its `public` schema, under their own names, so every
//! query of the service — polling, derivation, fan-out, authentication — runs unchanged
//! against the state database while CKAN's database is only ever read.

use crate::error::{Error, ErrorKind, Result};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};

/// The foreign server that stands for the CKAN database.
pub const SERVER: &str = "ckan_webhooks_ckan";

/// Quotes a string literal for SQL (options of CREATE SERVER and USER MAPPING cannot be
/// parameters).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The foreign server's and user mapping's options for `ckan_url`.
fn options(ckan_url: &str) -> Result<(String, String)> {
    let config: Config = ckan_url.parse().map_err(|err| {
        Error::config(format!(
            "invalid --database-url {:?}: {err}",
            crate::store::redact_password(ckan_url)
        ))
    })?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(String::from)
        .ok_or_else(|| Error::config("the CKAN --database-url names no user"))?;
    let dbname = config.get_dbname().unwrap_or(&user).to_string();
    let server = format!(
        "host {}, port {}, dbname {}",
        literal(&host),
        literal(&port.to_string()),
        literal(&dbname)
    );
    let mut mapping = format!("user {}", literal(&user));
    if let Some(password) = config.get_password() {
        let password = String::from_utf8_lossy(password);
        mapping.push_str(&format!(", password {}", literal(&password)));
    }
    Ok((server, mapping))
}

/// Points the state database at the CKAN database `ckan_url` (created or replaced) and
/// imports CKAN's tables. Needs a role that may create extensions in the state database.
pub async fn attach(state: &mut Client, ckan_url: &str) -> Result<()> {
    let (server, mapping) = options(ckan_url)?;
    let tx = state.transaction().await?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
        .await
        .map_err(|err| {
            Error::new(
                ErrorKind::Schema,
                format!(
                    "{}: the state database needs the postgres_fdw extension (PostgreSQL's \
                     contrib) and a role that may create it",
                    Error::from(err)
                ),
            )
        })?;
    // A state database follows one CKAN: its shadow describes that CKAN's rows, so
    // pointing it at another would turn every difference into events.
    let bound: Option<Vec<String>> = tx
        .query_opt(
            "SELECT srvoptions FROM pg_foreign_server WHERE srvname = $1",
            &[&SERVER],
        )
        .await?
        .map(|r| r.get::<_, Option<Vec<String>>>(0).unwrap_or_default());
    if let Some(bound) = bound {
        let now: Vec<String> = server
            .split(", ")
            .map(|o| o.replacen(' ', "=", 1).replace('\'', ""))
            .collect();
        let mut then = bound.clone();
        then.sort();
        let mut wanted = now.clone();
        wanted.sort();
        if then != wanted {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "this state database already follows another CKAN database ({}); \
                     give it that one, or start a new state database",
                    bound.join(" ")
                ),
            ));
        }
    }
    drop_foreign_tables(&tx).await?;
    tx.batch_execute(&format!(
        "DROP SERVER IF EXISTS {SERVER} CASCADE;
         CREATE SERVER {SERVER} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({server});
         CREATE USER MAPPING FOR CURRENT_USER SERVER {SERVER} OPTIONS ({mapping});"
    ))
    .await?;
    import(&tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Whether this database reads CKAN through [`SERVER`].
pub async fn is_state_database(client: &impl tokio_postgres::GenericClient) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = $1)",
            &[&SERVER],
        )
        .await?;
    Ok(row.get(0))
}

/// Imports CKAN's tables again, so columns added, renamed or dropped in CKAN since the
/// last import are seen as they are now.
pub async fn reimport(state: &mut Client) -> Result<()> {
    let tx = state.transaction().await?;
    drop_foreign_tables(&tx).await?;
    import(&tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn drop_foreign_tables(tx: &tokio_postgres::Transaction<'_>) -> Result<()> {
    tx.batch_execute(&format!(
        "DO $do$
         DECLARE t record;
         BEGIN
             FOR t IN SELECT c.relname FROM pg_foreign_table ft
                      JOIN pg_class c ON c.oid = ft.ftrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
                      JOIN pg_foreign_server s ON s.oid = ft.ftserver AND s.srvname = '{SERVER}'
             LOOP
                 EXECUTE format('DROP FOREIGN TABLE public.%I', t.relname);
             END LOOP;
         END
         $do$;"
    ))
    .await?;
    Ok(())
}

async fn import(tx: &tokio_postgres::Transaction<'_>) -> Result<()> {
    tx.batch_execute(&format!(
        "IMPORT FOREIGN SCHEMA public FROM SERVER {SERVER} INTO public"
    ))
    .await
    .map_err(|err| {
        Error::new(
            ErrorKind::Schema,
            format!(
                "{}: cannot read CKAN's tables through the CKAN --database-url",
                Error::from(err)
            ),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_quote_and_carry_the_password() {
        let (server, mapping) =
            options("postgres://ckan_ro:it's@db.internal:6543/ckan_default").unwrap();
        assert_eq!(
            server,
            "host 'db.internal', port '6543', dbname 'ckan_default'"
        );
        assert_eq!(mapping, "user 'ckan_ro', password 'it''s'");
        assert!(options("postgres://db.internal/ckan").is_err());
    }
}
