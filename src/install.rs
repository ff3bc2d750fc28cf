//! Install and uninstall: the side schema and capture triggers, from the numbered SQL
//! files under `sql/`, applied in one transaction under an advisory lock and recorded in
//! a ledger with each file's sha2 checksum.

use crate::error::{Error, ErrorKind, Result};
use sha2::{Digest, Sha256};

/// The side schema everything of ours lives in.
pub const SCHEMA: &str = "ckan_webhooks";

/// Advisory lock key serialising installs and uninstalls ("ckanwhk1").
const INSTALL_LOCK: i64 = 0x636b_616e_7768_6b31;

/// One embedded SQL file.
struct Migration {
    name: &'static str,
    sql: &'static str,
    /// Capture files are forgotten by uninstall, so a later install re-applies them.
    capture: bool,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_side_schema",
        sql: include_str!("../sql/0001_side_schema.sql"),
        capture: false,
    },
    Migration {
        name: "0002_capture",
        sql: include_str!("../sql/0002_capture.sql"),
        capture: true,
    },
    Migration {
        name: "0003_delivery_log",
        sql: include_str!("../sql/0003_delivery_log.sql"),
        capture: false,
    },
    Migration {
        name: "0004_column_snapshot",
        sql: include_str!("../sql/0004_column_snapshot.sql"),
        capture: false,
    },
    Migration {
        name: "0005_delivery_indexes",
        sql: include_str!("../sql/0005_delivery_indexes.sql"),
        capture: false,
    },
    Migration {
        name: "0006_requeue",
        sql: include_str!("../sql/0006_requeue.sql"),
        capture: false,
    },
    Migration {
        name: "0007_audience",
        sql: include_str!("../sql/0007_audience.sql"),
        capture: false,
    },
    Migration {
        name: "0008_shadow",
        sql: include_str!("../sql/0008_shadow.sql"),
        capture: false,
    },
    Migration {
        name: "0009_delivery_perf",
        sql: include_str!("../sql/0009_delivery_perf.sql"),
        capture: false,
    },
    Migration {
        name: "0010_capture_lean",
        sql: include_str!("../sql/0010_capture_lean.sql"),
        capture: true,
    },
];

/// The names of every embedded SQL file, in the order install applies them.
pub fn migration_names() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|m| m.name).collect()
}

/// The names of the capture files (the triggers and their functions), which an install
/// with `--no-triggers` skips and uninstall forgets.
pub fn capture_migration_names() -> Vec<&'static str> {
    MIGRATIONS
        .iter()
        .filter(|m| m.capture)
        .map(|m| m.name)
        .collect()
}

/// The CKAN tables whose columns are recorded at install and compared by `check`.
pub const SNAPSHOT_TABLES: [&str; 2] = ["package", "resource"];

/// The checksums of every embedded file, in order: changes whenever any file does
/// (the tests key their template databases on it).
pub fn fingerprint() -> String {
    MIGRATIONS
        .iter()
        .map(|m| checksum(m.sql))
        .collect::<Vec<_>>()
        .join(",")
}

const UNINSTALL: &str = include_str!("../sql/uninstall.sql");

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// Files applied by this run, in order.
    pub applied: Vec<String>,
    /// CKAN tables that now carry capture triggers.
    pub captured_tables: Vec<String>,
}

/// The sha2 checksum of a file's text, hex.
fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the side schema and triggers, or does nothing when they are current.
/// A file whose checksum differs from the ledger's is an error: it was changed after
/// being applied, and silently re-running it could lose data.
pub async fn install(client: &mut tokio_postgres::Client) -> Result<InstallReport> {
    install_with(client, true).await
}

/// As [`install`]; without `triggers`, the capture files are skipped (poll mode, for a
/// role that may not create triggers on CKAN's tables).
pub async fn install_with(
    client: &mut tokio_postgres::Client,
    triggers: bool,
) -> Result<InstallReport> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;

    let package: Option<String> = tx
        .query_one("SELECT to_regclass('public.package')::text", &[])
        .await?
        .get(0);
    if package.is_none() {
        return Err(Error::new(
            ErrorKind::Schema,
            "no CKAN table public.package in this database: is this the CKAN database?",
        ));
    }

    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {SCHEMA};
         CREATE TABLE IF NOT EXISTS {SCHEMA}.migration (
             name text PRIMARY KEY,
             checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await?;

    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        if migration.capture && !triggers {
            continue;
        }
        let sum = checksum(migration.sql);
        let row = tx
            .query_opt(
                &format!("SELECT checksum FROM {SCHEMA}.migration WHERE name = $1"),
                &[&migration.name],
            )
            .await?;
        match row {
            Some(row) if row.get::<_, String>(0) == sum => continue,
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "{} was changed after it was applied (checksum differs); \
                         refusing to install over it",
                        migration.name
                    ),
                ))
            }
            None => {}
        }
        if let Err(err) = tx.batch_execute(migration.sql).await {
            let err = Error::from(err);
            if migration.capture && err.to_string().contains("42501") {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "{err}: this role may not create triggers on CKAN's tables; \
                         install with --no-triggers and run in poll mode, or install as \
                         the tables' owner"
                    ),
                ));
            }
            return Err(err);
        }
        tx.execute(
            &format!("INSERT INTO {SCHEMA}.migration (name, checksum) VALUES ($1, $2)"),
            &[&migration.name, &sum],
        )
        .await?;
        applied.push(migration.name.to_string());
    }

    let change: Option<String> = tx
        .query_one("SELECT to_regclass('ckan_webhooks.change')::text", &[])
        .await?
        .get(0);
    if change.is_none() {
        return Err(Error::new(
            ErrorKind::Schema,
            "the ledger says ckan_webhooks is installed but its change log is missing: \
             `uninstall --drop-data` then `install` recreates it (and drops subscriptions)",
        ));
    }

    // The column snapshot describes the tables as the triggers first saw them, so it is
    // taken again whenever the capture is (re)installed.
    let snapshot_due = applied
        .iter()
        .any(|name| name == "0002_capture" || name == "0004_column_snapshot");
    if snapshot_due {
        record_columns(&tx).await?;
    }

    let captured_tables = captured_tables(&tx).await?;
    tx.commit().await?;
    Ok(InstallReport {
        applied,
        captured_tables,
    })
}

/// Replaces the column snapshot with the current columns of [`SNAPSHOT_TABLES`].
async fn record_columns(tx: &tokio_postgres::Transaction<'_>) -> Result<()> {
    let tables: Vec<&str> = SNAPSHOT_TABLES.to_vec();
    tx.execute(&format!("DELETE FROM {SCHEMA}.column_snapshot"), &[])
        .await?;
    tx.execute(
        &format!(
            "INSERT INTO {SCHEMA}.column_snapshot (table_name, column_name, data_type)
             SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             WHERE c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        &[&tables],
    )
    .await?;
    Ok(())
}

/// What an uninstall removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UninstallReport {
    /// Whether the side schema was there at all.
    pub schema_existed: bool,
    /// Capture triggers dropped.
    pub triggers: usize,
}

/// Removes triggers and capture functions; with `drop_data`, the whole side schema.
pub async fn uninstall(
    client: &mut tokio_postgres::Client,
    drop_data: bool,
) -> Result<UninstallReport> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    let triggers = captured_tables(&tx).await?.len() * 3;

    let schema: Option<String> = tx
        .query_one("SELECT to_regnamespace($1)::text", &[&SCHEMA])
        .await?
        .get(0);
    let schema_existed = schema.is_some();
    if schema_existed {
        tx.batch_execute(UNINSTALL).await?;
        if drop_data {
            tx.batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
                .await?;
        } else {
            let capture: Vec<&str> = MIGRATIONS
                .iter()
                .filter(|m| m.capture)
                .map(|m| m.name)
                .collect();
            tx.execute(
                &format!("DELETE FROM {SCHEMA}.migration WHERE name = ANY($1)"),
                &[&capture],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(UninstallReport {
        schema_existed,
        triggers,
    })
}

/// CKAN tables that carry all three of our capture triggers.
pub async fn captured_tables(client: &impl tokio_postgres::GenericClient) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT c.relname::text
             FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             WHERE t.tgname IN ('ckan_webhooks_insert', 'ckan_webhooks_update',
                                'ckan_webhooks_delete')
             GROUP BY c.relname
             HAVING count(*) = 3
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_numbered_in_order_and_checksummed() {
        let names: Vec<_> = MIGRATIONS.iter().map(|m| m.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(checksum("a").len(), 64);
        assert_ne!(checksum("a"), checksum("b"));
    }
}
