//! Install, reinstall and uninstall on every real CKAN schema (2.8.12 to 2.12.0) and on
//! the project's own core schema; concurrent installs; CKAN writes never failing.

use crate::support::db::{Schema, TestDb};
use ckan_webhooks::install;

async fn triggers(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ckan_webhooks_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn captured_rows(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM ckan_webhooks.change", &[])
        .await
        .unwrap()
        .get(0)
}

/// A minimal CKAN write that works on every version's package table.
const WRITE: &str = "INSERT INTO package (id, name, state, private, type) VALUES ('x1', 'x1', 'active', false, 'dataset');
                     UPDATE package SET title = 'T' WHERE id = 'x1';";

async fn install_cycle(schema: Schema, expected_tables: &[&str]) {
    let Some(db) = TestDb::create(schema, false).await else {
        eprintln!("skipped: the schema file for {schema:?} is absent (../shared/ckan)");
        return;
    };
    let mut client = db.client().await;

    // First install applies every file and triggers every captured table present.
    let report = install::install(&mut client).await.unwrap();
    assert_eq!(report.applied, install::migration_names());
    assert_eq!(report.applied.len(), 10);
    assert_eq!(report.captured_tables, expected_tables, "{schema:?}");
    assert_eq!(triggers(&client).await, 3 * expected_tables.len() as i64);

    // A second install changes nothing and says so.
    let again = install::install(&mut client).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.captured_tables, expected_tables);

    // CKAN writes are captured.
    client.batch_execute(WRITE).await.unwrap();
    assert_eq!(captured_rows(&client).await, 2);

    // Uninstall removes triggers and functions but keeps data; writes still work.
    let removed = install::uninstall(&mut client, false).await.unwrap();
    assert!(removed.schema_existed);
    assert_eq!(removed.triggers, 3 * expected_tables.len());
    assert_eq!(triggers(&client).await, 0);
    client
        .batch_execute("UPDATE package SET title = 'U' WHERE id = 'x1'")
        .await
        .unwrap();
    assert_eq!(
        captured_rows(&client).await,
        2,
        "nothing captured without triggers"
    );
    let functions: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'ckan_webhooks'
               -- Poll mode's hashing stays with the side schema's data.
               AND p.proname <> 'row_hashes'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(functions, 0);

    // Installing again puts the capture back.
    let back = install::install(&mut client).await.unwrap();
    assert_eq!(back.applied, vec!["0002_capture", "0010_capture_lean"]);
    assert_eq!(triggers(&client).await, 3 * expected_tables.len() as i64);

    // --drop-data removes the schema; CKAN's tables are untouched.
    install::uninstall(&mut client, true).await.unwrap();
    let again = install::uninstall(&mut client, true).await.unwrap();
    assert!(!again.schema_existed, "a second uninstall finds nothing");
    assert_eq!(again.triggers, 0);
    let schema_left: Option<String> = client
        .query_one("SELECT to_regnamespace('ckan_webhooks')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert!(schema_left.is_none());
    let title: String = client
        .query_one("SELECT title FROM package WHERE id = 'x1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(title, "U");
}

#[tokio::test]
async fn install_cycle_on_ckan_2_8() {
    install_cycle(
        Schema::Real("2.8.12"),
        &[
            "member",
            "package",
            "package_extra",
            "package_tag",
            "resource",
        ],
    )
    .await;
}

#[tokio::test]
async fn install_cycle_on_ckan_2_9() {
    install_cycle(
        Schema::Real("2.9.11"),
        &[
            "member",
            "package",
            "package_extra",
            "package_tag",
            "resource",
        ],
    )
    .await;
}

#[tokio::test]
async fn install_cycle_on_ckan_2_10() {
    install_cycle(
        Schema::Real("2.10.11"),
        &[
            "member",
            "package",
            "package_extra",
            "package_tag",
            "resource",
        ],
    )
    .await;
}

#[tokio::test]
async fn install_cycle_on_ckan_2_11() {
    install_cycle(
        Schema::Real("2.11.6"),
        &[
            "member",
            "package",
            "package_extra",
            "package_tag",
            "resource",
        ],
    )
    .await;
}

#[tokio::test]
async fn install_cycle_on_ckan_2_12() {
    install_cycle(
        Schema::Real("2.12.0"),
        &["member", "package", "package_tag", "resource"],
    )
    .await;
}

#[tokio::test]
async fn install_cycle_on_core_schema() {
    install_cycle(
        Schema::Core,
        &["member", "package", "package_tag", "resource"],
    )
    .await;
}

/// Two installs at once: one applies, the other finds it done; neither fails.
#[tokio::test]
async fn concurrent_installs_are_safe() {
    let db = TestDb::create(Schema::Core, false).await.unwrap();
    let mut a = db.client().await;
    let mut b = db.client().await;
    let (ra, rb) = tokio::join!(install::install(&mut a), install::install(&mut b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let all = install::migration_names().len();
    assert_eq!(ra.applied.len() + rb.applied.len(), all, "{ra:?} {rb:?}");
    assert_eq!(triggers(&a).await, 12);
}

/// A changed, already applied file is refused.
#[tokio::test]
async fn changed_applied_file_is_an_error() {
    let db = TestDb::installed().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "UPDATE ckan_webhooks.migration SET checksum = 'x' WHERE name = '0001_side_schema'",
        )
        .await
        .unwrap();
    let err = install::install(&mut client).await.unwrap_err();
    assert!(err.to_string().contains("0001_side_schema"), "{err}");
}

/// A database without CKAN's tables is refused with a clear message.
#[tokio::test]
async fn install_refuses_a_non_ckan_database() {
    let db = TestDb::create(Schema::Core, false).await.unwrap();
    let mut client = db.client().await;
    client
        .batch_execute("DROP TABLE resource, package_tag, package_member, package CASCADE")
        .await
        .unwrap();
    let err = install::install(&mut client).await.unwrap_err();
    assert!(err.to_string().contains("public.package"), "{err}");
}

/// CKAN's writes succeed when the change log is gone, as another role, and with the
/// side schema dropped.
#[tokio::test]
async fn ckan_writes_never_fail_because_of_capture() {
    let db = TestDb::installed().await;
    let client = db.client().await;

    // A CKAN role that owns nothing of ours and has no rights on the side schema.
    let role = format!("ckan_writer_{}", &db.name[7..]);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};
             REVOKE ALL ON SCHEMA ckan_webhooks FROM PUBLIC;"
        ))
        .await
        .unwrap();
    let as_role = db.url.replacen("postgres@", &format!("{role}@"), 1);
    let (writer, conn) = tokio_postgres::connect(&as_role, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    writer.batch_execute(WRITE).await.unwrap();
    assert_eq!(
        captured_rows(&client).await,
        2,
        "captured through SECURITY DEFINER"
    );

    // The change log dropped: the write still commits, with a warning.
    client
        .batch_execute("DROP TABLE ckan_webhooks.change CASCADE")
        .await
        .unwrap();
    writer
        .batch_execute("UPDATE package SET title = 'after drop' WHERE id = 'x1'")
        .await
        .unwrap();

    // The whole side schema dropped: triggers go with their functions.
    client
        .batch_execute("DROP SCHEMA ckan_webhooks CASCADE")
        .await
        .unwrap();
    writer
        .batch_execute("UPDATE package SET title = 'no schema' WHERE id = 'x1'")
        .await
        .unwrap();
    assert_eq!(triggers(&client).await, 0);
    client
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .ok();
}
