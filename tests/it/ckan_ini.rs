//! `--ckan-ini` and the CKAN release: the binary reading its database from CKAN's ini,
//! one-line errors that name the file and key and leak no secret, legacy API keys
//! accepted only on CKAN 2.9 and older, and a real CKAN's ini and token.

use crate::real_ckan::real_ckan_enabled;
use crate::support::api::{call_at, ApiServer, Options};
use crate::support::ckan::Ckan;
use crate::support::ckan_users;
use crate::support::db::{Schema, TestDb};
use crate::support::service::{self, TestService};
use ckan_webhooks::ckan_ini::CkanIni;
use ckan_webhooks::install;
use ckan_webhooks::store::users;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "ini-token-secret-that-must-not-be-logged";
const PASSWORD: &str = "db-password-not-for-logs";

/// A scratch file holding `text`, removed on drop.
struct IniFile(PathBuf);

impl IniFile {
    fn new(text: &str) -> IniFile {
        let path =
            std::env::temp_dir().join(format!("ckwh-ini-{:016x}.ini", rand::random::<u64>()));
        std::fs::write(&path, text).unwrap();
        IniFile(path)
    }
}

impl Drop for IniFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The test database's URL as SQLAlchemy writes it, with a password (trust auth ignores
/// it) so that the test can tell whether it leaks; `%` doubled for configparser.
fn sqlalchemy_url(db: &TestDb) -> String {
    let url = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{PASSWORD}@"),
        1,
    );
    url.replacen("postgres://", "postgresql+psycopg2://", 1)
        .replace('%', "%%")
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ckan-webhooks"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CKAN_WEBHOOKS_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "trace");
    command
}

#[tokio::test]
async fn check_and_run_take_the_database_from_the_ini() {
    let db = TestDb::installed().await;
    let ini = IniFile::new(&format!(
        "[DEFAULT]\ndebug = false\n[app:main]\nSECRET_KEY = {SECRET}\n\
         sqlalchemy.url = {}\nckan.site_url = http://127.0.0.1:5000\n\
         api_token.jwt.decode.secret = string:%(SECRET_KEY)s\n",
        sqlalchemy_url(&db)
    ));

    let out = binary()
        .arg("check")
        .arg("--ckan-ini")
        .arg(&ini.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&db.name), "{stdout}");

    // run starts from the ini alone, and its log holds neither secret nor password.
    let mut child = binary()
        .args(["run", "--listen", "127.0.0.1:0", "--ckan-ini"])
        .arg(&ini.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            log.push_str(&line);
            log.push('\n');
            if line.contains("api listening") {
                break;
            }
        }
        log
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reader.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(log.contains("api listening"), "{log}");
    assert!(log.contains("ckan identity settings"), "{log}");
    assert!(log.contains("accept_api_keys=false"), "{log}");
    for needle in [SECRET, PASSWORD] {
        assert!(!log.contains(needle), "the log holds {needle:?}:\n{log}");
    }
}

#[tokio::test]
async fn bad_inis_fail_in_one_line_naming_file_and_key() {
    let db = TestDb::installed().await;
    let url = sqlalchemy_url(&db);
    let missing = std::env::temp_dir().join("ckwh-no-such-dir/ckan.ini");
    let cases = [
        ("[app:main]\nckan.site_url = http://a.example\n".to_string(), "sqlalchemy.url is not set"),
        (format!("[app:main]\nsqlalchemy.url = {url}\n"), "ckan.site_url is not set"),
        (
            format!("[app:main]\nsqlalchemy.url = {url}\nckan.site_url = http://a.example\n\
                     api_token.jwt.algorithm = RS256\napi_token.jwt.decode.secret = string:{SECRET}\n"),
            "api_token.jwt.algorithm is \"RS256\"",
        ),
        (
            format!("[app:main]\nsqlalchemy.url = {url}\nckan.site_url = http://a.example\n"),
            "api_token.jwt.decode.secret is not set",
        ),
        (
            format!("[app:main]\nsqlalchemy.url = {url}\nckan.site_url = http://a.example\n\
                     api_token.jwt.decode.secret = {SECRET}\n"),
            "api_token.jwt.decode.secret has no string: or file: prefix",
        ),
        (
            format!("[app:main]\nsqlalchemy.url = mysql://u:{PASSWORD}@h/db\n"),
            "sqlalchemy.url uses \"mysql\"",
        ),
        ("[app:main]\nsqlalchemy.url = %(nowhere)s\n".to_string(), "refers to nowhere"),
        ("no section\n".to_string(), "line 1"),
    ];
    for (text, words) in cases {
        let ini = IniFile::new(&text);
        let out = binary()
            .args(["run", "--listen", "127.0.0.1:0", "--ckan-ini"])
            .arg(&ini.0)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&ini.0.display().to_string()), "{stderr}");
        assert!(stderr.contains(words), "{words}: {stderr}");
        assert!(
            !stderr.contains(SECRET) && !stderr.contains(PASSWORD),
            "{stderr}"
        );
    }

    let out = binary()
        .arg("check")
        .arg("--ckan-ini")
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read") && stderr.contains("ckwh-no-such-dir"),
        "{stderr}"
    );
}

/// CKAN 2.8 has legacy keys and no `api_token` table: keys identify their users, and a
/// JWT-shaped credential is an ordinary 403, not a server error.
#[tokio::test]
async fn ckan_2_8_takes_legacy_keys_and_refuses_tokens_cleanly() {
    let Some(db) = TestDb::create(Schema::Real("2.8.12"), true).await else {
        eprintln!("skipped: ../shared/ckan/schema-2.8.12.sql is absent");
        return;
    };
    let client = db.client().await;
    let told = users::ckan_release_line(&client).await.unwrap();
    assert!(users::release_accepts_api_keys(told), "{told:?}");
    let key = "28-legacy-key-0123456789abcdef";
    client
        .execute(
            "INSERT INTO public.\"user\" (id, name, apikey, state, sysadmin, created)
             VALUES ('u28', 'u28', $1, 'active', false, now())",
            &[&key],
        )
        .await
        .unwrap();
    let options = Options {
        accept_api_keys: users::release_accepts_api_keys(told),
        ..Options::default()
    };
    let api = ApiServer::start_with(&db, options).await;
    let (status, body) = api.call("webhook_list", Some(key), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let token = ckan_users::jwt("no-such-token", ckan_users::TOKEN_SECRET, json!({}));
    let (status, body) = api.call("webhook_list", Some(&token), json!({})).await;
    assert_eq!(status, 403, "{body}");
    api.stop().await;
}

#[tokio::test]
async fn legacy_api_keys_follow_the_ckan_release() {
    let key = "3a9c2f1e-6d1b-4a55-9c0e-7f1d2b3c4d5e";
    let mut checked = 0;
    for (schema, line, accepted) in [
        (Schema::Core, Some("2.12"), false),
        (Schema::Real("2.9.11"), Some("2.9"), true),
        (Schema::Real("2.10.11"), Some("2.10"), false),
        (Schema::Real("2.12.0"), Some("2.12"), false),
    ] {
        let Some(db) = TestDb::create(schema, true).await else {
            eprintln!("{schema:?} is not beside the checkout: skipped");
            continue;
        };
        let client = db.client().await;
        let told = users::ckan_release_line(&client).await.unwrap();
        assert_eq!(told, line, "{schema:?}");
        assert_eq!(users::release_accepts_api_keys(told), accepted);

        // As `run` configures the API from the release told.
        let alice = ckan_users::user(&client, "alice", false).await;
        client
            .execute(
                "UPDATE public.\"user\" SET apikey = $2 WHERE id = $1",
                &[&alice.id, &key],
            )
            .await
            .unwrap();
        let options = Options {
            accept_api_keys: users::release_accepts_api_keys(told),
            ..Options::default()
        };
        let api = ApiServer::start_with(&db, options).await;
        let (status, body) = api.call("webhook_list", Some(key), json!({})).await;
        assert_eq!(
            status,
            if accepted { 200 } else { 403 },
            "{schema:?}: {body}"
        );
        // Tokens work on every release; a revoked one does not.
        let (status, _) = api
            .call("webhook_list", Some(&alice.token), json!({}))
            .await;
        assert_eq!(status, 200);
        ckan_users::revoke(&client, &alice).await;
        let (status, _) = api
            .call("webhook_list", Some(&alice.token), json!({}))
            .await;
        assert_eq!(status, 403);
        api.stop().await;
        checked += 1;
    }
    assert!(checked >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_ckan_ini_authenticates_its_tokens() {
    if !real_ckan_enabled("a_real_ckan_ini_authenticates_its_tokens") {
        return;
    }
    let db = TestDb::create(Schema::Empty, false)
        .await
        .expect("an empty database");
    let mut ckan = Ckan::start(&db.url).await;
    let mut client = db.client().await;
    install::install(&mut client)
        .await
        .expect("install on CKAN's schema");
    ckan.setup().await;

    // Everything the service needs, from the ini CKAN itself runs with.
    let ini = CkanIni::load(ckan.ini()).expect("CKAN's own ini parses");
    let database_url = ini.database_url().unwrap();
    let ckan_db = ckan_webhooks::store::connect(&database_url).await.unwrap();
    let line = users::ckan_release_line(&ckan_db).await.unwrap();
    assert_eq!(line, Some("2.12"));
    assert!(!users::release_accepts_api_keys(line));
    ini.check_algorithm().unwrap();
    assert!(ini.allow_dataset_collaborators().unwrap());
    let secret = ini.token_secret(line).unwrap();
    assert_eq!(
        Some(secret.as_slice()),
        ckan.token_secret()
            .strip_prefix("string:")
            .map(str::as_bytes)
    );

    let mut config = service::config(&db);
    config.database_url = database_url;
    config.site_url = ini.site_url().unwrap();
    config.token_secret = secret;
    config.allow_dataset_collaborators = true;
    let service = TestService::start_with(config).await;
    let token = ckan.token("lab_editor").await;
    let (status, body) = call_at(service.addr, "webhook_list", Some(&token), json!({})).await;
    assert_eq!(status, 200, "a real CKAN token is accepted: {body}");
    let (status, _) = call_at(
        service.addr,
        "webhook_list",
        Some(&format!("{token}x")),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    service.stop().await;
}
