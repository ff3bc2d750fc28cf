//! What every benchmark needs: logs when asked, and a PostgreSQL server to use.

use ckan_webhooks::cluster::Cluster;

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
