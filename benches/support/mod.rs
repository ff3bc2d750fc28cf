//! What every benchmark needs: logs when asked, and a PostgreSQL server to use.

use ckan_webhooks::cluster::Cluster;
use ckan_webhooks::config::{DeliveryConfig, MinimumAuth, RunConfig};
use ckan_webhooks::{install, store};
use std::time::Duration;

/// CKAN's core tables, loaded into every benchmark database.
const CKAN_SCHEMA: &str = include_str!("../../sql/ckan/ckan-2.12-core.sql");

/// Logs to stderr when `RUST_LOG` is set; benchmarks are quiet otherwise.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
}

/// The server to benchmark on: `CKAN_WEBHOOKS_BENCH_DATABASE_URL` (a URL to its
/// `postgres` database), else a throwaway cluster kept alive by the returned value.
pub async fn server() -> (Option<Cluster>, String) {
    match std::env::var("CKAN_WEBHOOKS_BENCH_DATABASE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let cluster = Cluster::start().await.expect("throwaway cluster");
            let url = cluster.url("postgres");
            (Some(cluster), url)
        }
    }
}

/// A fresh database with CKAN's core tables and the side schema.
pub async fn database(admin_url: &str) -> (String, String) {
    let admin = store::connect(admin_url).await.unwrap();
    let name = format!("ckwh_bench_{:08x}", rand::random::<u32>());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let mut client = store::connect(&url).await.unwrap();
    client.batch_execute(CKAN_SCHEMA).await.unwrap();
    install::install(&mut client).await.unwrap();
    (url, name)
}

/// The service as the latency benchmarks run it on `url`: loopback receivers allowed and
/// the per-destination rate limit out of the way (one commit every few milliseconds is
/// faster than the default 50 requests per second: the limiter, not the pipeline, would
/// be timed).
#[allow(dead_code)] // Not every benchmark starts the service.
pub fn service_config(url: &str) -> RunConfig {
    RunConfig {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".parse().unwrap(),
        site_url: "http://ckan.bench".into(),
        token_secret: b"bench".to_vec(),
        minimum_auth: MinimumAuth::None,
        accept_api_keys: false,
        allow_dataset_collaborators: false,
        poll_interval: Duration::from_millis(1000),
        pool_size: 8,
        delivery: DeliveryConfig {
            allow_private_targets: true,
            rate_per_destination: 100_000,
            ..DeliveryConfig::default()
        },
        retention: None,
        capture: Default::default(),
    }
}
