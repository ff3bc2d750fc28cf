//! From facts to a verdict: each problem names what is wrong and what to do about it, and
//! the mode line says what `run` will do with this database as it is.

use super::facts::{self, Facts, CAPTURE_FUNCTIONS};
use super::notify::RoundTrip;
use super::{drift, version, Report, Right, TriggerState, CKAN_TABLES, TRIGGER_OPS};

/// Judges the facts and the NOTIFY round trip.
pub fn diagnose(facts: Facts, notify: Result<RoundTrip, String>) -> Report {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    // CKAN itself.
    let package_columns = facts
        .columns
        .iter()
        .filter(|c| c.table == "package")
        .map(|c| c.name.clone())
        .collect();
    let ckan = version::ckan_version(&facts.migrations, &facts.tables, &package_columns);
    if !facts.tables.contains("package") {
        problems.push(
            "no table public.package: this is not a CKAN database (or CKAN's tables live in \
             another schema); point --database-url at the database CKAN's sqlalchemy.url names"
                .to_string(),
        );
    } else if ckan.line.is_none() {
        warnings.push(format!("CKAN version not recognised: {}", ckan.description));
    }

    // The side schema and its ledger.
    let applied = facts.applied.clone().unwrap_or_default();
    // Installed without triggers (`install --no-triggers`): no capture file applied and
    // no trigger anywhere. That is poll mode, not damage.
    let capture_files = crate::install::capture_migration_names();
    let poll_install = facts.side_schema
        && facts.applied.is_some()
        && !applied.iter().any(|a| capture_files.contains(&a.as_str()))
        && facts
            .triggers
            .iter()
            .all(|t| t.states.iter().all(|s| *s == TriggerState::Missing));
    let mut pending = if facts.side_schema {
        facts::pending(&applied)
    } else {
        Vec::new()
    };
    if poll_install {
        pending.retain(|p| !capture_files.contains(&p.as_str()));
    }
    if !facts.side_schema {
        problems.push(
            "the side schema ckan_webhooks is not installed: run `ckan-webhooks install`".into(),
        );
    } else if facts.applied.is_none() {
        problems.push(
            "the ledger ckan_webhooks.migration is missing or unreadable by this role: connect \
             as the role that ran install, or `uninstall --drop-data` and `install` again"
                .into(),
        );
    } else if !pending.is_empty() {
        problems.push(format!(
            "the side schema lacks {}: run `ckan-webhooks install` to apply it",
            pending.join(", ")
        ));
    }

    // Capture: functions and triggers, only judged once installed.
    let functions: Vec<(String, bool)> = CAPTURE_FUNCTIONS
        .iter()
        .map(|f| (f.to_string(), facts.functions.contains(*f)))
        .collect();
    if facts.side_schema && !poll_install && functions.iter().any(|(_, there)| !there) {
        let missing: Vec<&str> = functions
            .iter()
            .filter(|(_, t)| !t)
            .map(|(f, _)| f.as_str())
            .collect();
        problems.push(format!(
            "capture functions missing: {}; run `ckan-webhooks uninstall` then `install` \
             (subscriptions and deliveries are kept)",
            missing.join(", ")
        ));
    }
    for table in &facts.triggers {
        for (op, state) in TRIGGER_OPS.iter().zip(table.states) {
            let name = format!("ckan_webhooks_{op}");
            let fix = match state {
                TriggerState::Enabled => continue,
                TriggerState::Missing if !facts.side_schema || poll_install => continue,
                TriggerState::Missing => "run `ckan-webhooks uninstall` then `install` \
                                          (subscriptions and deliveries are kept)"
                    .to_string(),
                _ => format!(
                    "run `ALTER TABLE public.{} ENABLE TRIGGER {name}`",
                    table.table
                ),
            };
            problems.push(format!(
                "trigger {name} on {} is {}: {} changes are not captured; {fix}",
                table.table,
                state.word().to_lowercase(),
                op.to_uppercase()
            ));
        }
    }

    // Column drift since install.
    let drift = facts
        .snapshot
        .as_ref()
        .map(|then| drift::compare(then, &facts.columns));
    if let Some(d) = &drift {
        let lost = d.lost_needed();
        if !lost.is_empty() {
            let names: Vec<String> = lost
                .iter()
                .map(|c| format!("{}.{}", c.table, c.name))
                .collect();
            problems.push(format!(
                "CKAN columns the service reads are gone or renamed since install: {}; events \
                 for these tables will be wrong until ckan-webhooks supports this CKAN schema",
                names.join(", ")
            ));
        }
        if !d.is_empty() {
            warnings.push(
                "package/resource columns changed since install (listed above); capture stores \
                 whole rows and keeps working; after a CKAN upgrade, `uninstall` then \
                 `install` records the new columns"
                    .into(),
            );
        }
    } else if facts.side_schema && pending.iter().all(|p| p != "0004_column_snapshot") {
        warnings
            .push("no column snapshot was recorded: `uninstall` then `install` records one".into());
    }

    // Rights of the connected role.
    let mut rights = Vec::new();
    let right = |what, lacking: &[String]| Right {
        what,
        held: lacking.is_empty(),
        detail: if lacking.is_empty() {
            String::new()
        } else {
            format!("lacks it on {}", lacking.join(", "))
        },
    };
    rights.push(right(
        "create triggers on CKAN's tables",
        &facts.no_trigger_right,
    ));
    rights.push(Right {
        what: "create a schema",
        held: facts.can_create_schema || facts.side_schema,
        detail: match (facts.can_create_schema, facts.side_schema) {
            (true, _) => String::new(),
            (false, true) => "not needed: ckan_webhooks exists".into(),
            (false, false) => "no CREATE on this database".into(),
        },
    });
    rights.push(right("read CKAN's tables", &facts.unreadable));
    match &facts.side_unwritable {
        Some(lacking) => rights.push(right("write the side schema", lacking)),
        None => rights.push(Right {
            what: "write the side schema",
            held: true,
            detail: "not installed yet".into(),
        }),
    }
    let installed_ok = facts
        .triggers
        .iter()
        .any(|t| t.table == "package" && t.states.iter().any(|s| *s != TriggerState::Missing));
    if !facts.no_trigger_right.is_empty() && !installed_ok && !poll_install {
        problems.push(format!(
            "role {} may not create triggers on {}: run install as the tables' owner (CKAN's \
             role) or a superuser, or GRANT TRIGGER on them",
            facts.role.0,
            facts.no_trigger_right.join(", ")
        ));
    }
    if !facts.can_create_schema && !facts.side_schema {
        problems.push(format!(
            "role {} may not create the ckan_webhooks schema: GRANT CREATE ON DATABASE to it, \
             or run install as CKAN's role",
            facts.role.0
        ));
    }
    if !facts.unreadable.is_empty() {
        problems.push(format!(
            "role {} may not read {}: GRANT SELECT on them, or connect as CKAN's role",
            facts.role.0,
            facts.unreadable.join(", ")
        ));
    }
    if let Some(lacking) = facts.side_unwritable.as_ref().filter(|l| !l.is_empty()) {
        problems.push(format!(
            "role {} may not use {}: connect as the role that ran install, or grant it USAGE \
             on the schema and SELECT, INSERT, UPDATE, DELETE on its tables and sequences",
            facts.role.0,
            lacking.join(", ")
        ));
    }

    // NOTIFY.
    match &notify {
        Ok(trip) => notify_findings(trip, &mut problems, &mut warnings),
        Err(err) => problems.push(format!("the NOTIFY round trip could not be tried: {err}")),
    }

    // The mode run will use.
    let package_enabled = facts
        .triggers
        .iter()
        .find(|t| t.table == "package")
        .is_some_and(|t| t.states.iter().all(|s| *s == TriggerState::Enabled));
    let mode = if !facts.side_schema {
        "none: run refuses to start without the side schema; run `ckan-webhooks install`".into()
    } else if package_enabled {
        "trigger mode: capture triggers are installed and enabled".to_string()
    } else if installed_ok {
        "trigger mode, degraded: some capture triggers on package are not enabled (see the \
         problems)"
            .into()
    } else {
        "poll mode: no capture triggers on package, so run compares CKAN's rows with its \
         shadow every cycle (--poll-cycle-secs); install the triggers for instant events"
            .into()
    };

    let tables = CKAN_TABLES
        .iter()
        .map(|t| (t.to_string(), facts.tables.contains(*t)))
        .collect();
    Report {
        target: facts.target,
        role: facts.role,
        ckan,
        tables,
        side_schema: facts.side_schema,
        applied,
        pending,
        functions,
        triggers: facts.triggers,
        drift,
        rights,
        notify,
        mode,
        problems,
        warnings,
    }
}

fn notify_findings(trip: &RoundTrip, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
    let wait = super::notify::WAIT.as_secs();
    let pooler = trip
        .pooler_version
        .clone()
        .unwrap_or_else(|| "a connection pooler".to_string());
    if trip.shared_backend {
        let heard = match trip.received_after {
            None => format!("a NOTIFY did not reach a LISTEN within {wait} s, as expected"),
            Some(_) => "the NOTIFY happened to arrive this time, by luck of the pool".into(),
        };
        problems.push(format!(
            "two client connections were served by one PostgreSQL backend: {pooler} in \
             transaction mode is in between; it accepts LISTEN but gives the server \
             connection to other clients, so notifications never reach the service ({heard}); \
             install's advisory lock and the service's prepared statements need real sessions \
             too: point --database-url at PostgreSQL itself, or at a session-mode pool"
        ));
    } else if trip.received_after.is_none() {
        problems.push(format!(
            "a NOTIFY sent on one connection did not reach a LISTEN on another within {wait} s \
             (a proxy in between, or a full NOTIFY queue?); webhooks will wait for the poll \
             timer: point --database-url at PostgreSQL itself"
        ));
    } else if trip.pooler_version.is_some() {
        warnings.push(format!(
            "the connection goes through {pooler}; the round trip worked, so it keeps \
             sessions, but a direct connection is simpler"
        ));
    }
    if let Some((connected, server)) = &trip.port_mismatch {
        warnings.push(format!(
            "connected to port {connected} but PostgreSQL listens on {server}: something sits \
             in between (a pooler such as PgBouncer, or a port mapping)"
        ));
    }
}
