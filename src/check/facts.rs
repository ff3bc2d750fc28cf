//! The catalog queries behind `check`. They name our schema's objects through
//! `pg_class`/`pg_namespace`, never `to_regclass('ckan_webhooks.…')`, because a role
//! without USAGE on the schema gets an error from the latter, and a report from us.

use super::drift::Column;
use super::version::Migrations;
use super::{TableTriggers, TriggerState, TRIGGER_OPS};
use crate::error::Result;
use crate::install::{self, SCHEMA, SNAPSHOT_TABLES};
use std::collections::BTreeSet;
use tokio_postgres::Client;

/// The CKAN tables that get capture triggers where they exist.
pub const CAPTURABLE: [&str; 5] = [
    "package",
    "resource",
    "package_extra",
    "package_tag",
    "member",
];

/// CKAN tables the service reads (the capturable ones, users, tokens, collaborators).
const READ: [&str; 9] = [
    "package",
    "resource",
    "package_extra",
    "package_tag",
    "member",
    "user",
    "api_token",
    "package_member",
    "group",
];

/// The functions `sql/0002_capture.sql` creates.
pub const CAPTURE_FUNCTIONS: [&str; 5] = [
    "capture_ready",
    "wake",
    "capture_package",
    "capture_resource",
    "capture_child",
];

/// What the catalogs say, before any judgement.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `host:port/database`.
    pub target: String,
    /// The connected role and whether it is a superuser.
    pub role: (String, bool),
    /// Every table in `public`.
    pub tables: BTreeSet<String>,
    /// CKAN's migration bookkeeping.
    pub migrations: Migrations,
    /// The current columns of `package` and `resource`.
    pub columns: Vec<Column>,
    /// Whether the side schema exists.
    pub side_schema: bool,
    /// The ledger, when readable.
    pub applied: Option<Vec<String>>,
    /// Capture functions present in the side schema.
    pub functions: BTreeSet<String>,
    /// Capture triggers of each capturable table present.
    pub triggers: Vec<TableTriggers>,
    /// The install-time column snapshot, when recorded and readable.
    pub snapshot: Option<Vec<Column>>,
    /// Capturable tables on which the role may not create triggers.
    pub no_trigger_right: Vec<String>,
    /// Whether the role may create a schema in this database.
    pub can_create_schema: bool,
    /// CKAN tables the service reads that the role may not.
    pub unreadable: Vec<String>,
    /// Side-schema objects the role may not use fully (None when there is no schema).
    pub side_unwritable: Option<Vec<String>>,
}

/// Runs every catalog query on `client`.
pub async fn gather(client: &Client, database_url: &str) -> Result<Facts> {
    let config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|err| crate::error::Error::config(format!("invalid database URL: {err}")))?;
    let row = client
        .query_one(
            "SELECT current_user::text, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let role = (row.get(0), row.get(1));

    let tables: BTreeSet<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             WHERE c.relkind IN ('r', 'p')",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let migrations = migrations(client, &tables).await?;
    let columns = current_columns(client).await?;

    // Our side schema: present, usable, what it holds.
    let side_schema: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&SCHEMA],
        )
        .await?
        .get(0);
    let applied = if readable(client, "migration").await? {
        let rows = client
            .query(
                &format!("SELECT name FROM {SCHEMA}.migration ORDER BY name"),
                &[],
            )
            .await?;
        Some(rows.iter().map(|r| r.get(0)).collect())
    } else {
        None
    };
    let functions = client
        .query(
            "SELECT p.proname::text FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = $1",
            &[&SCHEMA],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let triggers = triggers(client, &tables).await?;
    let snapshot = if readable(client, "column_snapshot").await? {
        let rows = client
            .query(
                &format!("SELECT table_name, column_name, data_type FROM {SCHEMA}.column_snapshot"),
                &[],
            )
            .await?;
        let columns: Vec<Column> = rows
            .iter()
            .map(|r| Column {
                table: r.get(0),
                name: r.get(1),
                data_type: r.get(2),
            })
            .collect();
        (!columns.is_empty()).then_some(columns)
    } else {
        None
    };

    // Rights, each from the privilege functions (which answer for owners and superusers).
    let present = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|t| tables.contains(**t))
            .map(|t| t.to_string())
            .collect()
    };
    let no_trigger_right = lacking(client, &present(&CAPTURABLE), "TRIGGER").await?;
    let unreadable = lacking(client, &present(&READ), "SELECT").await?;
    let can_create_schema: bool = client
        .query_one(
            "SELECT has_database_privilege(current_database(), 'CREATE')",
            &[],
        )
        .await?
        .get(0);
    let side_unwritable = if side_schema {
        Some(side_unwritable(client).await?)
    } else {
        None
    };

    Ok(Facts {
        target: crate::store::describe(&config),
        role,
        tables,
        migrations,
        columns,
        side_schema,
        applied,
        functions,
        triggers,
        snapshot,
        no_trigger_right,
        can_create_schema,
        unreadable,
        side_unwritable,
    })
}

/// Whether a side-schema table exists and the role may read it (schema USAGE included).
async fn readable(client: &Client, table: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT coalesce(bool_and(has_schema_privilege(n.oid, 'USAGE')
                                      AND has_table_privilege(c.oid, 'SELECT')), false)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&SCHEMA, &table],
        )
        .await?;
    Ok(row.get(0))
}

/// CKAN's migration tables, read only when the role may read them.
async fn migrations(client: &Client, tables: &BTreeSet<String>) -> Result<Migrations> {
    let may_read = |table: &'static str| async move {
        let row = client
            .query_one(
                "SELECT has_table_privilege(format('public.%I', $1::text), 'SELECT')",
                &[&table],
            )
            .await?;
        Result::<bool>::Ok(row.get(0))
    };
    if tables.contains("alembic_version") {
        if !may_read("alembic_version").await? {
            return Ok(Migrations::Alembic(Vec::new()));
        }
        let rows = client
            .query("SELECT version_num::text FROM public.alembic_version", &[])
            .await?;
        return Ok(Migrations::Alembic(rows.iter().map(|r| r.get(0)).collect()));
    }
    if tables.contains("migrate_version") {
        if !may_read("migrate_version").await? {
            return Ok(Migrations::Migrate(None));
        }
        let row = client
            .query_opt("SELECT version FROM public.migrate_version LIMIT 1", &[])
            .await?;
        return Ok(Migrations::Migrate(row.and_then(|r| r.get(0))));
    }
    Ok(Migrations::None)
}

/// The columns of `package` and `resource` as they are now.
pub async fn current_columns(client: &impl tokio_postgres::GenericClient) -> Result<Vec<Column>> {
    let tables: Vec<&str> = SNAPSHOT_TABLES.to_vec();
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             WHERE c.relname = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname, a.attnum",
            &[&tables],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Column {
            table: r.get(0),
            name: r.get(1),
            data_type: r.get(2),
        })
        .collect())
}

/// The capture triggers of each capturable table present.
async fn triggers(client: &Client, tables: &BTreeSet<String>) -> Result<Vec<TableTriggers>> {
    let rows = client
        .query(
            "SELECT c.relname::text, t.tgname::text, t.tgenabled::text
             FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             WHERE t.tgname IN ('ckan_webhooks_insert', 'ckan_webhooks_update',
                                'ckan_webhooks_delete')",
            &[],
        )
        .await?;
    let mut out = Vec::new();
    for table in CAPTURABLE.iter().filter(|t| tables.contains(**t)) {
        let mut states = [TriggerState::Missing; 3];
        for (slot, op) in states.iter_mut().zip(TRIGGER_OPS) {
            let name = format!("ckan_webhooks_{op}");
            let found = rows
                .iter()
                .find(|r| r.get::<_, String>(0) == *table && r.get::<_, String>(1) == name);
            if let Some(row) = found {
                *slot = match row.get::<_, String>(2).as_str() {
                    "D" => TriggerState::Disabled,
                    "R" => TriggerState::ReplicaOnly,
                    _ => TriggerState::Enabled,
                };
            }
        }
        out.push(TableTriggers {
            table: table.to_string(),
            states,
        });
    }
    Ok(out)
}

/// The public tables among `tables` on which the role lacks `privilege`.
async fn lacking(client: &Client, tables: &[String], privilege: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT t FROM unnest($1::text[]) AS t
             WHERE NOT has_table_privilege(format('public.%I', t), $2)
             ORDER BY t",
            &[&tables, &privilege],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Side-schema objects the role cannot fully use: the schema itself (USAGE), tables
/// (SELECT, INSERT, UPDATE, DELETE) and sequences (USAGE).
async fn side_unwritable(client: &Client) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT n.nspname::text FROM pg_namespace n
             WHERE n.nspname = $1 AND NOT has_schema_privilege(n.oid, 'USAGE')
             UNION ALL
             SELECT format('%s.%s', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = $1
             WHERE (c.relkind = 'r' AND NOT (has_table_privilege(c.oid, 'SELECT')
                                             AND has_table_privilege(c.oid, 'INSERT')
                                             AND has_table_privilege(c.oid, 'UPDATE')
                                             AND has_table_privilege(c.oid, 'DELETE')))
                OR (c.relkind = 'S' AND NOT has_sequence_privilege(c.oid, 'USAGE'))
             ORDER BY 1",
            &[&SCHEMA],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The ledger entries this binary carries that `applied` lacks.
pub fn pending(applied: &[String]) -> Vec<String> {
    install::migration_names()
        .into_iter()
        .filter(|name| !applied.iter().any(|a| a == name))
        .map(str::to_string)
        .collect()
}
