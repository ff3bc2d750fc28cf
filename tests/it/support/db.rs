//! A fresh database per test, created from a template that holds a CKAN schema (and,
//! when asked, our installed side schema). The server is `CKAN_WEBHOOKS_TEST_DATABASE_URL`,
//! else the local 127.0.0.1:5432, else a throwaway cluster started for this process.

use ckan_webhooks::cluster::Cluster;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use tokio_postgres::NoTls;

/// Which CKAN schema a test database starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// The project's own CKAN 2.12 core tables (`sql/ckan/ckan-2.12-core.sql`).
    Core,
    /// A real schema dump from `../shared/ckan/schema-<version>.sql`.
    Real(&'static str),
    /// No tables at all: for a real CKAN to create its own (`ckan db init`, see
    /// `support::ckan`). Cannot be combined with `install`, which needs `public.package`.
    Empty,
}

/// Where the test server is, decided once per process.
struct Server {
    /// A URL to the server's `postgres` database, for CREATE/DROP DATABASE.
    admin_url: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The throwaway cluster of this process, if one was started. Statics are never
/// dropped, so it is stopped and removed by [`stop_cluster`] at process exit.
static CLUSTER: std::sync::Mutex<Option<Cluster>> = std::sync::Mutex::new(None);

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn stop_cluster() {
    if let Ok(mut cluster) = CLUSTER.lock() {
        drop(cluster.take());
    }
}

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("CKAN_WEBHOOKS_TEST_DATABASE_URL") {
            return Server { admin_url: url };
        }
        let local = "postgres://postgres@127.0.0.1:5432/postgres".to_string();
        if std::net::TcpStream::connect("127.0.0.1:5432").is_ok() {
            return Server { admin_url: local };
        }
        eprintln!("no PostgreSQL on 127.0.0.1:5432: starting a throwaway cluster");
        let cluster = std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(Cluster::start())
        })
        .join()
        .unwrap()
        .expect("start a throwaway PostgreSQL cluster");
        let admin_url = cluster.url("postgres");
        *CLUSTER.lock().unwrap() = Some(cluster);
        // SAFETY: registers a plain function with no arguments to run at exit.
        unsafe { atexit(stop_cluster) };
        Server { admin_url }
    })
}

/// The directory of the real CKAN material, when it is beside the checkout.
pub fn shared_ckan_dir() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ckan");
    dir.join("trace.md").exists().then_some(dir)
}

/// The SQL text of a schema, or None when a real schema's file is absent.
pub fn schema_sql(schema: Schema) -> Option<String> {
    match schema {
        Schema::Core => Some(include_str!("../../../sql/ckan/ckan-2.12-core.sql").to_string()),
        Schema::Real(version) => {
            let path = shared_ckan_dir()?.join(format!("schema-{version}.sql"));
            std::fs::read_to_string(path).ok()
        }
        Schema::Empty => Some(String::new()),
    }
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    /// Connection URL of this test's database.
    pub url: String,
    /// The database's name.
    pub name: String,
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&server().admin_url, NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    tokio::spawn(conn);
    client
}

fn url_for(db: &str) -> String {
    let admin = &server().admin_url;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    let (base, query) = match admin.split_once('?') {
        Some((_, q)) => (base.split('?').next().unwrap_or(base), format!("?{q}")),
        None => (base, String::new()),
    };
    format!("{base}/{db}{query}")
}

impl TestDb {
    /// A database with the core CKAN schema and the side schema installed.
    pub async fn installed() -> TestDb {
        Self::create(Schema::Core, true)
            .await
            .expect("core schema is embedded")
    }

    /// A database with `schema`, installed or not; None when the schema file is absent.
    pub async fn create(schema: Schema, install: bool) -> Option<TestDb> {
        assert!(
            !(install && schema == Schema::Empty),
            "Schema::Empty has no CKAN tables to install on: run CKAN's db init first"
        );
        let sql = schema_sql(schema)?;
        let mut hasher = Sha256::new();
        hasher.update(sql.as_bytes());
        hasher.update([install as u8]);
        if install {
            hasher.update(ckan_webhooks::install::fingerprint().as_bytes());
        }
        let digest = hasher.finalize();
        let tpl: String = format!(
            "ckwh_tpl_{}",
            digest
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );

        let admin = admin().await;
        admin
            .execute("SELECT pg_advisory_lock(727272)", &[])
            .await
            .unwrap();
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&tpl])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{tpl}_building");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                .await
                .unwrap();
            admin
                .batch_execute(&format!("CREATE DATABASE {building}"))
                .await
                .unwrap();
            {
                let (mut client, conn) = tokio_postgres::connect(&url_for(&building), NoTls)
                    .await
                    .unwrap();
                let handle = tokio::spawn(conn);
                client
                    .batch_execute(&strip_psql_meta(&sql))
                    .await
                    .expect("load CKAN schema");
                if install {
                    ckan_webhooks::install::install(&mut client)
                        .await
                        .expect("install");
                }
                drop(client);
                let _ = handle.await;
            }
            admin
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {tpl}"))
                .await
                .unwrap();
        }
        admin
            .execute("SELECT pg_advisory_unlock(727272)", &[])
            .await
            .unwrap();

        let name = format!("ckwh_t_{:016x}", rand::random::<u64>());
        let mut tries = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {tpl}"))
                .await
            {
                Ok(()) => break,
                Err(err) if tries < 20 => {
                    tries += 1;
                    eprintln!("create database from template, retrying: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(err) => panic!("create test database: {err}"),
            }
        }
        Some(TestDb {
            url: url_for(&name),
            name,
        })
    }

    /// A client connected to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

/// pg_dump output carries psql meta-commands (`\restrict` in newer dumps) that the
/// server does not understand; drop them.
fn strip_psql_meta(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = server().admin_url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            })
        })
        .join();
    }
}
