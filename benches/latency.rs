//! Commit → webhook latency on loopback: one CKAN-like transaction at a time (a dataset
//! title change, two UPDATEs as CKAN 2.12 writes them), timed from the moment COMMIT
//! returns to the moment the receiver has the request. Prints the distribution over
//! `LATENCY_RUNS` (default 100) commits and, with `--write`, appends it to
//! docs/benchmarks.md.
//!
//! `cargo bench --bench latency` (uses `CKAN_WEBHOOKS_BENCH_DATABASE_URL`, a server's
//! `postgres` database, when set; else starts a throwaway cluster).

mod support;
use bytes::Bytes;
use ckan_webhooks::{service, store};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn receiver() -> (String, mpsc::UnboundedReceiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let _ = req.into_body().collect().await?;
                    let _ = tx.send(Instant::now());
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, rx)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("LATENCY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let write = std::env::args().any(|a| a == "--write");
    support::init_logging();

    let (cluster, admin_url) = support::server().await;
    let (url, name) = support::database(&admin_url).await;
    let admin = store::connect(&admin_url).await.unwrap();
    let client = store::connect(&url).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO package (id, name, type, private, state) VALUES ('b', 'b', 'dataset', false, 'active');
             INSERT INTO \"user\" (id, name, state) VALUES ('u', 'u', 'active');
             INSERT INTO ckan_webhooks.subscription (id, owner_id, topic, address, secret)
             VALUES ('bench', 'u', 'dataset/update', 'placeholder', 'whsec_YmVuY2htYXJrLXNlY3JldC1rZXktMzJieXRlcyE=');",
        )
        .await
        .unwrap();
    let (address, mut arrivals) = receiver().await;
    client
        .execute(
            "UPDATE ckan_webhooks.subscription SET address = $1",
            &[&address],
        )
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let mut config = support::service_config(&url);
    // Reconciliation (on by default) has derivation mark datasets for a shadow refresh;
    // CKAN_WEBHOOKS_BENCH_RECONCILE=0 measures without it.
    if std::env::var("CKAN_WEBHOOKS_BENCH_RECONCILE").as_deref() == Ok("0") {
        config.capture.reconcile_interval = None;
    }
    let running = service::start(config, shutdown.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let sql = format!(
            "BEGIN; UPDATE package SET title = 't{i}' WHERE id = 'b';
             UPDATE package SET metadata_modified = now() WHERE id = 'b'; COMMIT;"
        );
        client.batch_execute(&sql).await.unwrap();
        let committed = Instant::now();
        tracing::debug!(i, "committed");
        let arrived = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .expect("a webhook within 10 s")
            .unwrap();
        tracing::debug!(i, "arrived");
        // The first few warm up connections and prepared plans.
        if i >= 5 {
            samples.push(arrived.saturating_duration_since(committed));
        }
    }
    shutdown.cancel();
    running.wait().await.unwrap();
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    drop(cluster);

    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let line = format!(
        "| commit → webhook received, sequential, NOTIFY on | {runs} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
        ms(samples[0]),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
    println!(
        "| scenario | n | min | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|\n{line}"
    );
    if write {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md");
        let mut text = std::fs::read_to_string(path).unwrap_or_default();
        text.push_str(&format!("\n{line}\n"));
        std::fs::write(path, text).unwrap();
    }
}
