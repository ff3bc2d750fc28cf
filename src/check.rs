//! `check`: what an admin needs to know before (and while) running the service on a CKAN
//! database. It reads only catalogs and our own tables, writes nothing but one NOTIFY,
//! and turns what it finds into a [`Report`] whose problems say what to do.
//!
//! - [`facts`]: the catalog queries.
//! - [`version`]: the CKAN version from its migration tables and table shapes.
//! - [`drift`]: `package` and `resource` columns now against the install-time snapshot.
//! - [`notify`]: the NOTIFY round trip and PgBouncer detection.
//! - [`diagnose`]: facts to problems and warnings, and the mode `run` will use.

pub mod diagnose;
pub mod drift;
pub mod facts;
pub mod notify;
pub mod version;

use crate::error::Result;
use std::fmt;

/// The CKAN tables the report lists, present or absent, in this order.
pub const CKAN_TABLES: [&str; 10] = [
    "package",
    "resource",
    "package_extra",
    "package_tag",
    "member",
    "revision",
    "package_revision",
    "resource_revision",
    "api_token",
    "package_member",
];

/// How one capture trigger stands, from `pg_trigger.tgenabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerState {
    /// Fires on CKAN's writes (`O` or `A`).
    Enabled,
    /// `ALTER TABLE … DISABLE TRIGGER`: never fires.
    Disabled,
    /// Fires only with `session_replication_role = replica`, so not on CKAN's writes.
    ReplicaOnly,
    /// Not there at all.
    Missing,
}

/// The three capture triggers of one CKAN table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTriggers {
    /// The CKAN table.
    pub table: String,
    /// Insert, update and delete, in that order.
    pub states: [TriggerState; 3],
}

/// The operations in the order of [`TableTriggers::states`].
pub const TRIGGER_OPS: [&str; 3] = ["insert", "update", "delete"];

/// One right of the connected role, with the objects it is missing on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Right {
    /// What the right is for, e.g. "create triggers on CKAN's tables".
    pub what: &'static str,
    /// True when the role holds it (or it is not needed).
    pub held: bool,
    /// The objects it lacks it on, or a note on why it is not needed.
    pub detail: String,
}

/// Everything `check` found, and what it makes of it.
#[derive(Debug, Clone)]
pub struct Report {
    /// `host:port/database` of the connection, never credentials.
    pub target: String,
    /// The connected role, and whether it is a superuser.
    pub role: (String, bool),
    /// The CKAN version as told by the database.
    pub ckan: version::CkanVersion,
    /// Each of [`CKAN_TABLES`] and whether it exists.
    pub tables: Vec<(String, bool)>,
    /// Whether the side schema `ckan_webhooks` exists.
    pub side_schema: bool,
    /// Ledger entries applied, in order (empty when the ledger is missing or unreadable).
    pub applied: Vec<String>,
    /// Files this binary carries that the ledger does not list.
    pub pending: Vec<String>,
    /// Each capture function and whether it exists.
    pub functions: Vec<(String, bool)>,
    /// The capture triggers of each capturable CKAN table present.
    pub triggers: Vec<TableTriggers>,
    /// Column changes since install; None when no snapshot was recorded.
    pub drift: Option<drift::Drift>,
    /// The connected role's rights.
    pub rights: Vec<Right>,
    /// The NOTIFY round trip; Err holds why it could not even be tried.
    pub notify: std::result::Result<notify::RoundTrip, String>,
    /// The mode `run` will use, and why.
    pub mode: String,
    /// What keeps the service from working as it should; each says what to do.
    pub problems: Vec<String>,
    /// What is worth knowing but does not stop anything.
    pub warnings: Vec<String>,
}

impl Report {
    /// True when nothing needs fixing.
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Connects to `database_url`, gathers the facts and diagnoses them.
pub async fn check(database_url: &str) -> Result<Report> {
    let client = crate::store::connect(database_url).await?;
    let facts = facts::gather(&client, database_url).await?;
    let notify = notify::round_trip(database_url)
        .await
        .map_err(|err| err.to_string());
    Ok(diagnose::diagnose(facts, notify))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: Vec<&str>| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        let present = |yes: bool| {
            list(
                self.tables
                    .iter()
                    .filter(|(_, p)| *p == yes)
                    .map(|(t, _)| t.as_str())
                    .collect(),
            )
        };
        writeln!(f, "database     {}", self.target)?;
        writeln!(
            f,
            "role         {}{}",
            self.role.0,
            if self.role.1 { " (superuser)" } else { "" }
        )?;
        writeln!(f, "CKAN         {}", self.ckan.description)?;
        writeln!(f, "  tables     {}", present(true))?;
        writeln!(f, "  absent     {}", present(false))?;

        if self.side_schema {
            writeln!(f, "side schema  ckan_webhooks installed")?;
            writeln!(
                f,
                "  ledger     {}",
                list(self.applied.iter().map(String::as_str).collect())
            )?;
            if !self.pending.is_empty() {
                writeln!(f, "  pending    {}", self.pending.join(", "))?;
            }
        } else {
            writeln!(f, "side schema  ckan_webhooks not installed")?;
        }
        if self.side_schema {
            let missing: Vec<&str> = self
                .functions
                .iter()
                .filter(|(_, there)| !there)
                .map(|(name, _)| name.as_str())
                .collect();
            if missing.is_empty() {
                writeln!(
                    f,
                    "  functions  all {} capture functions present",
                    self.functions.len()
                )?;
            } else {
                writeln!(f, "  functions  missing: {}", missing.join(", "))?;
            }
            for table in &self.triggers {
                let states: Vec<String> = TRIGGER_OPS
                    .iter()
                    .zip(table.states)
                    .map(|(op, state)| format!("{op} {}", state.word()))
                    .collect();
                writeln!(f, "  triggers   {:<14} {}", table.table, states.join(", "))?;
            }
        }
        match &self.drift {
            None => writeln!(f, "  columns    no install-time snapshot to compare with")?,
            Some(d) if d.is_empty() => writeln!(
                f,
                "  columns    package and resource as recorded at install"
            )?,
            Some(d) => {
                for c in &d.added {
                    writeln!(
                        f,
                        "  columns    added   {}.{} ({})",
                        c.table, c.name, c.data_type
                    )?;
                }
                for c in &d.dropped {
                    writeln!(
                        f,
                        "  columns    dropped {}.{} ({})",
                        c.table, c.name, c.data_type
                    )?;
                }
                for (old, new) in &d.renamed {
                    writeln!(
                        f,
                        "  columns    renamed? {}.{} -> {}",
                        old.table, old.name, new.name
                    )?;
                }
                for (old, now) in &d.retyped {
                    writeln!(
                        f,
                        "  columns    retyped {}.{}: {} -> {now}",
                        old.table, old.name, old.data_type
                    )?;
                }
            }
        }

        writeln!(f, "rights")?;
        for right in &self.rights {
            let mark = if right.held { "yes" } else { "NO " };
            writeln!(f, "  {mark}  {}{}", right.what, detail(&right.detail))?;
        }

        match &self.notify {
            Ok(trip) => match trip.received_after {
                Some(after) => writeln!(
                    f,
                    "NOTIFY       round trip in {:.1} ms",
                    after.as_secs_f64() * 1000.0
                )?,
                None => writeln!(
                    f,
                    "NOTIFY       not received within {} s",
                    notify::WAIT.as_secs()
                )?,
            },
            Err(err) => writeln!(f, "NOTIFY       could not be tried: {err}")?,
        }
        writeln!(f, "mode         {}", self.mode)?;

        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        for problem in &self.problems {
            writeln!(f, "problem: {problem}")?;
        }
        if self.healthy() {
            writeln!(f, "healthy")?;
        } else {
            writeln!(f, "NOT healthy: {} problem(s)", self.problems.len())?;
        }
        Ok(())
    }
}

fn detail(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

impl TriggerState {
    /// One word for the report.
    pub fn word(self) -> &'static str {
        match self {
            TriggerState::Enabled => "enabled",
            TriggerState::Disabled => "DISABLED",
            TriggerState::ReplicaOnly => "REPLICA-ONLY",
            TriggerState::Missing => "MISSING",
        }
    }
}
