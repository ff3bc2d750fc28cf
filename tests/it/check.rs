//! `check` on healthy and broken databases: every real CKAN schema's version and tables,
//! missing install, a disabled trigger, column drift, a role without rights, the NOTIFY
//! round trip, and the binary's exit codes.

use crate::support::db::{Schema, TestDb};
use ckan_webhooks::check::{self, TriggerState};

fn present(report: &check::Report) -> Vec<&str> {
    report
        .tables
        .iter()
        .filter(|(_, p)| *p)
        .map(|(t, _)| t.as_str())
        .collect()
}

#[tokio::test]
async fn installed_core_schema_is_healthy() {
    let db = TestDb::installed().await;
    let report = check::check(&db.url).await.unwrap();
    assert!(report.healthy(), "{report}");
    assert!(report.warnings.is_empty(), "{report}");
    assert_eq!(report.ckan.line, Some("2.12"));
    assert!(report.side_schema && report.pending.is_empty(), "{report}");
    assert!(report
        .triggers
        .iter()
        .all(|t| t.states == [TriggerState::Enabled; 3]));
    assert_eq!(report.drift.as_ref().map(|d| d.is_empty()), Some(true));
    assert!(report.rights.iter().all(|r| r.held), "{report}");
    assert!(report.mode.starts_with("trigger mode"), "{}", report.mode);
    let text = report.to_string();
    assert!(text.ends_with("healthy\n"), "{text}");
}

/// Each real schema: the version its tables (and then its alembic head) tell, and which
/// CKAN tables it has.
#[tokio::test]
async fn real_schemas_give_their_version_and_tables() {
    let revision = "revision, package_revision, resource_revision";
    let cases = [
        (
            "2.8.12",
            "2.8",
            None,
            "package, resource, package_extra, package_tag, member, REV",
        ),
        ("2.9.11", "2.9", Some("ccd38ad5fced"), "ALL"),
        ("2.10.11", "2.10", Some("9f33a0280c51"), "ALL"),
        ("2.11.6", "2.11", Some("4a5e3465beb6"), "ALL"),
        (
            "2.12.0",
            "2.12",
            Some("9445ce34fc23"),
            "package, resource, package_tag, member, api_token, package_member",
        ),
    ];
    for (version, line, head, tables) in cases {
        let Some(db) = TestDb::create(Schema::Real(version), false).await else {
            eprintln!("skipped: the schema file for {version} is absent (../shared/ckan)");
            return;
        };
        let expected = match tables {
            "ALL" => format!("package, resource, package_extra, package_tag, member, {revision}, api_token, package_member"),
            t => t.replace("REV", revision),
        };
        let report = check::check(&db.url).await.unwrap();
        assert_eq!(report.ckan.line, Some(line), "{version}: {report}");
        assert_eq!(present(&report).join(", "), expected, "{version}");
        assert!(!report.healthy(), "not installed yet");

        // CKAN's own bookkeeping, as `ckan db init` leaves it, names the release.
        if let Some(head) = head {
            let client = db.client().await;
            client
                .execute("INSERT INTO alembic_version VALUES ($1)", &[&head])
                .await
                .unwrap();
            let report = check::check(&db.url).await.unwrap();
            assert_eq!(
                report.ckan.description,
                format!("{line} (alembic revision {head})"),
                "{version}"
            );
        }
    }
}

/// `install --no-triggers` is a healthy poll-mode install, not a damaged one; dropping
/// the triggers of a trigger install is damage.
#[tokio::test]
async fn an_install_without_triggers_is_healthy_poll_mode() {
    let db = TestDb::create(Schema::Core, false).await.unwrap();
    let mut client = db.client().await;
    ckan_webhooks::install::install_with(&mut client, false)
        .await
        .unwrap();
    let report = check::check(&db.url).await.unwrap();
    assert!(report.healthy(), "{report}");
    assert!(report.mode.starts_with("poll mode"), "{report}");
    assert!(report.pending.is_empty(), "{report}");

    let db = TestDb::installed().await;
    let client = db.client().await;
    client
        .batch_execute("DROP TRIGGER ckan_webhooks_update ON package")
        .await
        .unwrap();
    let report = check::check(&db.url).await.unwrap();
    assert!(!report.healthy(), "{report}");
    assert!(report.mode.contains("degraded"), "{report}");
}

#[tokio::test]
async fn not_installed_is_unhealthy_and_says_install() {
    let db = TestDb::create(Schema::Core, false).await.unwrap();
    let report = check::check(&db.url).await.unwrap();
    assert!(!report.healthy());
    assert!(!report.side_schema);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("run `ckan-webhooks install`")),
        "{report}"
    );
    assert!(
        report.mode.contains("run refuses to start"),
        "{}",
        report.mode
    );
}

#[tokio::test]
async fn a_disabled_trigger_is_a_problem() {
    let db = TestDb::installed().await;
    db.client()
        .await
        .batch_execute("ALTER TABLE package DISABLE TRIGGER ckan_webhooks_update")
        .await
        .unwrap();
    let report = check::check(&db.url).await.unwrap();
    assert!(!report.healthy());
    let package = report
        .triggers
        .iter()
        .find(|t| t.table == "package")
        .unwrap();
    assert_eq!(
        package.states,
        [
            TriggerState::Enabled,
            TriggerState::Disabled,
            TriggerState::Enabled
        ]
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("ALTER TABLE public.package ENABLE TRIGGER ckan_webhooks_update")),
        "{report}"
    );
    assert!(report.mode.contains("degraded"), "{}", report.mode);
}

#[tokio::test]
async fn columns_changed_after_install_are_reported() {
    let db = TestDb::installed().await;
    let client = db.client().await;

    // An added column is reported but harmless: capture stores whole rows.
    client
        .batch_execute("ALTER TABLE package ADD COLUMN harvest_source text")
        .await
        .unwrap();
    let report = check::check(&db.url).await.unwrap();
    let drift = report.drift.clone().unwrap();
    assert_eq!(drift.added.len(), 1);
    assert_eq!(
        (drift.added[0].table.as_str(), drift.added[0].name.as_str()),
        ("package", "harvest_source")
    );
    assert!(report.healthy(), "{report}");
    assert!(!report.warnings.is_empty());
    assert!(report
        .to_string()
        .contains("added   package.harvest_source (text)"));

    // A renamed column the deriver reads is a problem.
    client
        .batch_execute("ALTER TABLE resource RENAME COLUMN format TO file_format")
        .await
        .unwrap();
    let report = check::check(&db.url).await.unwrap();
    let drift = report.drift.clone().unwrap();
    assert_eq!(drift.renamed.len(), 1, "{report}");
    assert_eq!(drift.renamed[0].1.name, "file_format");
    assert!(!report.healthy());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("resource.format")),
        "{report}"
    );
}

#[tokio::test]
async fn a_role_without_rights_is_told_what_it_lacks() {
    let db = TestDb::installed().await;
    let client = db.client().await;
    let role = format!("ckwh_norights_{}", &db.name[7..]);
    client
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);

    let report = check::check(&url).await.unwrap();
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .unwrap();

    assert!(!report.healthy());
    assert_eq!(report.role, (role.clone(), false));
    let held: Vec<(&str, bool)> = report.rights.iter().map(|r| (r.what, r.held)).collect();
    assert_eq!(
        held,
        vec![
            ("create triggers on CKAN's tables", false),
            ("create a schema", true),
            ("read CKAN's tables", false),
            ("write the side schema", false),
        ],
        "{report}"
    );
    for needle in ["may not read", "may not use ckan_webhooks"] {
        assert!(
            report.problems.iter().any(|p| p.contains(needle)),
            "{needle}: {report}"
        );
    }
    // What it can still see from the catalogs is right.
    assert!(report.side_schema);
    assert_eq!(report.ckan.line, Some("2.12"));
}

#[tokio::test]
async fn notify_round_trip_on_a_direct_connection() {
    let db = TestDb::installed().await;
    let trip = check::notify::round_trip(&db.url).await.unwrap();
    assert!(trip.received_after.is_some(), "{trip:?}");
    assert!(!trip.shared_backend);
    assert_eq!(trip.port_mismatch, None);
    assert_eq!(trip.pooler_version, None);
}

/// The binary prints the report and exits 0 when healthy, 1 when not.
#[tokio::test]
async fn binary_exit_codes() {
    let healthy = TestDb::installed().await;
    let bare = TestDb::create(Schema::Core, false).await.unwrap();
    for (db, code, last) in [
        (&healthy, 0, "healthy"),
        (&bare, 1, "NOT healthy: 1 problem(s)"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ckan-webhooks"))
            .arg("check")
            .env("CKAN_WEBHOOKS_DATABASE_URL", &db.url)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{stdout}");
        assert_eq!(stdout.lines().last(), Some(last), "{stdout}");
    }
}

/// A PgBouncer of this test's own on 127.0.0.1, in front of the test server; stopped
/// (by its process handle) when dropped.
struct Bouncer {
    child: std::process::Child,
    _dir: std::path::PathBuf,
    port: u16,
}

impl Bouncer {
    /// None when `pgbouncer` is not installed (Debian's package `pgbouncer`).
    fn start(server: &tokio_postgres::Config, pool_mode: &str) -> Option<Bouncer> {
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let host = match server.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => return None,
        };
        let server_port = server.get_ports().first().copied().unwrap_or(5432);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ckwh-bouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = {pool_mode}\n\
                 default_pool_size = 4\nadmin_users = postgres\n\
                 ignore_startup_parameters = extra_float_digits,options\n",
                users = dir.join("users.txt").display()
            ),
        )
        .unwrap();
        // PgBouncer refuses to run as root; it drops to the postgres user when asked.
        let mut command = std::process::Command::new(binary);
        let is_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        if is_root {
            let _ = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&dir)
                .status();
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let bouncer = Bouncer {
            child,
            _dir: dir,
            port,
        };
        for _ in 0..50 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(bouncer);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("pgbouncer did not start listening on 127.0.0.1:{port}");
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

/// Through PgBouncer in transaction mode LISTEN is accepted and nothing arrives: a
/// problem naming PgBouncer. In session mode the round trip works and only a warning
/// remains.
#[tokio::test]
async fn pgbouncer_transaction_mode_is_detected() {
    let db = TestDb::installed().await;
    let server: tokio_postgres::Config = db.url.parse().unwrap();
    let Some(bouncer) = Bouncer::start(&server, "transaction") else {
        eprintln!("skipped: pgbouncer is not installed (apt-get install pgbouncer)");
        return;
    };
    let report = check::check(&bouncer.url(&db.name)).await.unwrap();
    let trip = report.notify.clone().unwrap();
    assert_eq!(trip.received_after, None, "{report}");
    assert!(trip.shared_backend, "{report}");
    assert!(trip.port_mismatch.is_some());
    assert!(!report.healthy());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("PgBouncer") && p.contains("transaction mode")),
        "{report}"
    );
    drop(bouncer);

    let session = Bouncer::start(&server, "session").unwrap();
    let report = check::check(&session.url(&db.name)).await.unwrap();
    let trip = report.notify.clone().unwrap();
    assert!(trip.received_after.is_some(), "{report}");
    assert!(!trip.shared_backend);
    assert!(report.healthy(), "{report}");
    assert!(
        report.warnings.iter().any(|w| w.contains("PgBouncer")),
        "{report}"
    );
}
