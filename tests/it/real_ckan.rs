//! Smoke tests of the real-CKAN harness (`support::ckan`): CKAN 2.12 creates its own
//! tables in an empty test database and its actions land there; so does CKAN 2.8, which
//! the harness drives through its Pylons-era loader and legacy API keys.
//!
//! Needs `bash scripts/ckan-venv.sh` once; `CKAN_WEBHOOKS_SKIP_REAL_CKAN=1` skips.

use crate::support::ckan::{self, Ckan, DEFAULT_VERSION};
use crate::support::db::{Schema, TestDb};
use serde_json::{json, Value};
use std::time::Instant;

/// [`real_ckan_version_enabled`] for CKAN 2.12.0, the version most tests use.
pub fn real_ckan_enabled(test: &str) -> bool {
    real_ckan_version_enabled(test, DEFAULT_VERSION)
}

/// False (after saying so) when real-CKAN tests are switched off, or when `version`'s
/// venv is missing and that version is not required (`support::ckan::version_required`);
/// panics when a required version's venv is missing.
pub fn real_ckan_version_enabled(test: &str, version: &str) -> bool {
    if std::env::var_os("CKAN_WEBHOOKS_SKIP_REAL_CKAN").is_some_and(|v| v == "1") {
        eprintln!("{test}: skipped (CKAN_WEBHOOKS_SKIP_REAL_CKAN=1)");
        return false;
    }
    if Ckan::venv(version).is_some() {
        return true;
    }
    if ckan::version_required(version) {
        panic!(
            "{test} needs CKAN {version}: run `bash scripts/ckan-venv.sh {version}` first \
             (or set CKAN_WEBHOOKS_SKIP_REAL_CKAN=1 to skip the real-CKAN tests)"
        );
    }
    eprintln!(
        "{test}: skipped: no CKAN {version} venv at {} (build it with \
         `bash scripts/ckan-venv.sh {version}`, or run scripts/test.sh with \
         CKAN_WEBHOOKS_CKAN_VERSIONS listing it)",
        ckan::venv_dir(version).display()
    );
    false
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

async fn state(sql: &tokio_postgres::Client, id: &str) -> String {
    sql.query_one("SELECT state FROM package WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn real_ckan_smoke() {
    if !real_ckan_enabled("real_ckan_smoke") {
        return;
    }
    let started = Instant::now();
    let db = TestDb::create(Schema::Empty, false)
        .await
        .expect("an empty database");
    let mut ckan = Ckan::start(&db.url).await;
    assert_eq!(ckan.version(), "2.12.0");
    assert_eq!(ckan.site_url(), "http://127.0.0.1:5000");
    assert!(ckan.ini().exists());
    let sql = db.client().await;

    let t = Instant::now();
    let ids = ckan.setup().await;
    eprintln!("setup in {:.1?}: {ids}", t.elapsed());
    let org = ids["orgs"]["lab-org"]
        .as_str()
        .expect("lab-org id")
        .to_string();
    let editor = ids["users"]["lab_editor"]
        .as_str()
        .expect("lab_editor id")
        .to_string();
    let row = sql
        .query_one(
            "SELECT sysadmin FROM \"user\" WHERE name = 'lab_sysadmin'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "lab_sysadmin is a sysadmin");
    let row = sql
        .query_one(
            "SELECT capacity FROM member WHERE group_id = $1 AND table_id = $2 \
             AND table_name = 'user' AND state = 'active'",
            &[&org, &editor],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "editor");

    // A public dataset with two resources and a tag, as the editor.
    let t = Instant::now();
    let public = ckan
        .call(
            "package_create",
            "lab_editor",
            json!({
                "name": "smoke-public",
                "title": "Smoke public",
                "owner_org": "lab-org",
                "private": false,
                "tags": [{"name": "smoke"}],
                "resources": [
                    {"name": "r1", "url": "http://example.invalid/r1.csv", "format": "CSV"},
                    {"name": "r2", "url": "http://example.invalid/r2.csv", "format": "CSV"},
                ],
            }),
            Value::Null,
        )
        .await
        .expect("package_create");
    eprintln!("package_create round trip {:.1?}", t.elapsed());
    let public_id = id(&public);
    let row = sql
        .query_one(
            "SELECT state, private, owner_org, creator_user_id FROM package WHERE id = $1",
            &[&public_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "active");
    assert!(!row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), org);
    assert_eq!(row.get::<_, String>(3), editor);
    let resources: Vec<String> = sql
        .query(
            "SELECT name FROM resource WHERE package_id = $1 AND state = 'active' \
             ORDER BY position",
            &[&public_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(resources, ["r1", "r2"]);
    let tags: i64 = sql
        .query_one(
            "SELECT count(*) FROM package_tag pt JOIN tag t ON t.id = pt.tag_id \
             WHERE pt.package_id = $1 AND t.name = 'smoke' AND pt.state = 'active'",
            &[&public_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tags, 1);

    // Errors come back as values.
    let err = ckan
        .call(
            "package_create",
            "lab_editor",
            json!({"name": "smoke-public", "owner_org": "lab-org"}),
            Value::Null,
        )
        .await
        .expect_err("the name is taken");
    assert_eq!(err["type"], "ValidationError", "{err}");
    assert!(err["detail"]["name"].is_array(), "{err}");
    let err = ckan
        .call(
            "package_create",
            "lab_outsider",
            json!({"name": "smoke-outsider", "owner_org": "lab-org"}),
            Value::Null,
        )
        .await
        .expect_err("an outsider may not write to lab-org");
    assert_eq!(err["type"], "NotAuthorized", "{err}");

    // The web UI's flow: create as draft (the UI passes allow_state_change), add a
    // resource, then package_patch state=active (stage 3, plain context).
    let draft = ckan
        .call(
            "package_create",
            "lab_editor",
            json!({"name": "smoke-draft", "owner_org": "lab-org", "state": "draft"}),
            json!({"allow_state_change": true}),
        )
        .await
        .expect("package_create draft");
    let draft_id = id(&draft);
    assert_eq!(state(&sql, &draft_id).await, "draft");
    ckan.call(
        "resource_create",
        "lab_editor",
        json!({"package_id": draft_id, "name": "d1", "url": "http://example.invalid/d1.csv"}),
        Value::Null,
    )
    .await
    .expect("resource_create on the draft");
    assert_eq!(state(&sql, &draft_id).await, "draft");
    let patched = ckan
        .call(
            "package_patch",
            "lab_editor",
            json!({"id": draft_id, "state": "active"}),
            Value::Null,
        )
        .await
        .expect("package_patch state=active");
    assert_eq!(patched["state"], "active");
    assert_eq!(patched["num_resources"], 1);
    assert_eq!(state(&sql, &draft_id).await, "active");

    // Without allow_state_change a normal user's state=draft is silently dropped.
    let plain = ckan
        .call(
            "package_create",
            "lab_editor",
            json!({"name": "smoke-not-draft", "owner_org": "lab-org", "state": "draft"}),
            Value::Null,
        )
        .await
        .expect("package_create without allow_state_change");
    assert_eq!(state(&sql, &id(&plain)).await, "active");

    // A real API token: an HS256 JWT under the ini's secret whose jti is an api_token id.
    let token = ckan.token("lab_editor").await;
    let secret = ckan
        .token_secret()
        .strip_prefix("string:")
        .expect("a string: secret");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .expect("CKAN's token verifies with token_secret")
    .claims;
    let jti = claims["jti"].as_str().expect("a jti claim").to_string();
    let owner: String = sql
        .query_one("SELECT user_id FROM api_token WHERE id = $1", &[&jti])
        .await
        .expect("an api_token row for the jti")
        .get(0);
    assert_eq!(owner, editor);

    // A read, for the round-trip time.
    let t = Instant::now();
    let shown = ckan
        .call(
            "package_show",
            "lab_member",
            json!({"id": "smoke-public"}),
            Value::Null,
        )
        .await
        .expect("package_show");
    eprintln!("package_show round trip {:.1?}", t.elapsed());
    assert_eq!(shown["num_resources"], 2);

    // Every action ended its session: no transaction of CKAN's is left open.
    let open: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'ckan' AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "CKAN left a transaction open between requests");

    drop(ckan);
    eprintln!("real_ckan_smoke took {:.1?}", started.elapsed());
}

/// CKAN 2.8 (Python 2.7, Pylons-era loader, no API tokens) runs under the same driver:
/// its own `db init` makes its tables, its actions write rows and revisions, and the
/// driver's credential is the user's legacy API key.
#[tokio::test(flavor = "multi_thread")]
async fn real_ckan_2_8_driver_writes_rows() {
    let version = "2.8.12";
    if !real_ckan_version_enabled("real_ckan_2_8_driver_writes_rows", version) {
        return;
    }
    let db = TestDb::create(Schema::Empty, false)
        .await
        .expect("an empty database");
    let mut ckan = Ckan::start_version(&db.url, version).await;
    assert_eq!(ckan.version(), version);
    let sql = db.client().await;
    let migrate: i64 = sql
        .query_one("SELECT count(*) FROM migrate_version", &[])
        .await
        .expect("2.8's sqlalchemy-migrate ledger")
        .get(0);
    assert_eq!(migrate, 1);

    let ids = ckan.setup().await;
    let editor = ids["users"]["lab_editor"].as_str().unwrap().to_string();
    let row = sql
        .query_one(
            "SELECT sysadmin FROM \"user\" WHERE name = 'lab_sysadmin'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "lab_sysadmin is a sysadmin");

    let data = json!({"name": "smoke-28", "owner_org": "lab-org",
                      "resources": [{"name": "r1", "url": "http://example.invalid/r1.csv"}]});
    let created = ckan
        .call("package_create", "lab_editor", data, Value::Null)
        .await
        .expect("package_create on 2.8");
    let dataset = id(&created);
    let row = sql
        .query_one(
            "SELECT p.state, p.creator_user_id, count(r.id), count(pr.id)
             FROM package p
             JOIN resource r ON r.package_id = p.id
             JOIN package_revision pr ON pr.id = p.id
             WHERE p.id = $1 GROUP BY p.state, p.creator_user_id",
            &[&dataset],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "active");
    assert_eq!(row.get::<_, String>(1), editor);
    assert_eq!(row.get::<_, i64>(2), 1, "one resource row");
    assert!(row.get::<_, i64>(3) >= 1, "2.8 writes package_revision");

    // The UI's draft flow and a state change work as on 2.9+.
    let draft = ckan
        .call(
            "package_create",
            "lab_editor",
            json!({"name": "smoke-28-draft", "owner_org": "lab-org", "state": "draft"}),
            json!({"allow_state_change": true}),
        )
        .await
        .expect("a draft on 2.8");
    assert_eq!(state(&sql, &id(&draft)).await, "draft");
    ckan.call(
        "package_delete",
        "lab_editor",
        json!({"id": dataset}),
        Value::Null,
    )
    .await
    .expect("package_delete on 2.8");
    assert_eq!(state(&sql, &dataset).await, "deleted");

    // No api_token table: the credential is user.apikey.
    let key = ckan.token("lab_editor").await;
    let stored: Option<String> = sql
        .query_one("SELECT apikey FROM \"user\" WHERE id = $1", &[&editor])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.as_deref(), Some(key.as_str()));
}
