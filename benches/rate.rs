//! Commit → receipt latency at a steady, open-loop rate of CKAN-shaped writes (issue 6:
//! 100 and 1 000 events per second), and the side schema's size under that load with
//! retention running.
//!
//! Each transaction is a dataset title change as CKAN 2.12's package_update writes it
//! (two UPDATEs in one transaction), scheduled at a fixed rate whatever the previous
//! ones took, over 16 connections and 1 000 datasets so that writers do not queue on
//! row locks. The title carries a token; a receiver on 127.0.0.1 reads it from the
//! payload's `entity` and records the arrival, so each delivery is matched to the
//! moment its COMMIT returned. The service runs in-process with NOTIFY on and the
//! per-destination rate limit raised (the default 50/s to one destination would pace
//! the deliveries by design). A retention pass with a 5 s horizon runs every 2 s: the
//! days of `--retention-days`, compressed into the length of a benchmark.
//!
//! Prints `BENCH` lines (`BENCH <scenario> | <figure> | <baseline> | <target> |`) and a
//! `## notes` paragraph for scripts/bench.sh. `RATE_SECONDS` (default 20) per rate.
//!
//! `cargo bench --bench rate` (uses `CKAN_WEBHOOKS_BENCH_DATABASE_URL`, a server's
//! `postgres` database, when set; else starts a throwaway cluster). Nothing is asserted.

mod support;
use bytes::Bytes;
use chrono::Utc;
use ckan_webhooks::{retention, service, store};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const DATASETS: u64 = 1000;
const CONNECTIONS: usize = 16;

type Times = Arc<Mutex<HashMap<u64, Instant>>>;

/// A receiver that answers 200 at once and records when each token arrived.
async fn receiver(arrivals: Times) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let arrivals = arrivals.clone();
                async move {
                    let body = req.into_body().collect().await?.to_bytes();
                    let now = Instant::now();
                    if let Some(token) = token_of(&body) {
                        arrivals.lock().unwrap().insert(token, now);
                    }
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
    url
}

/// The token in a payload's dataset title (`tok-<n>`).
fn token_of(body: &[u8]) -> Option<u64> {
    let payload: serde_json::Value = serde_json::from_slice(body).ok()?;
    payload["entity"]["title"]
        .as_str()?
        .strip_prefix("tok-")?
        .parse()
        .ok()
}

/// Commits `rate × seconds` title changes on schedule; returns when each COMMIT
/// returned, by token, and how many started over 5 ms behind their schedule.
async fn steady(url: &str, rate: f64, seconds: f64, first: u64) -> (HashMap<u64, Instant>, u64) {
    let total = (rate * seconds) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let commits: Times = Arc::default();
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = store::connect(url).await.unwrap();
        let (next, late, commits) = (next.clone(), late.clone(), commits.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(at).await;
                if tokio::time::Instant::now() > at + Duration::from_millis(5) {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let token = first + i;
                let p = i % DATASETS;
                client
                    .batch_execute(&format!(
                        "BEGIN; UPDATE package SET title = 'tok-{token}' WHERE id = 'p{p}';
                         UPDATE package SET metadata_modified = now() WHERE id = 'p{p}'; COMMIT;"
                    ))
                    .await
                    .unwrap();
                commits.lock().unwrap().insert(token, Instant::now());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let commits = std::mem::take(&mut *commits.lock().unwrap());
    (commits, late.load(Ordering::Relaxed))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Rows and bytes (with indexes and TOAST) of the side schema's growing tables.
async fn sizes(client: &tokio_postgres::Client) -> (Vec<(String, i64, i64)>, i64) {
    let mut out = Vec::new();
    let mut total = 0;
    for table in ["change", "event", "delivery", "attempt"] {
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*), pg_total_relation_size('ckan_webhooks.{table}')
                     FROM ckan_webhooks.{table}"
                ),
                &[],
            )
            .await
            .unwrap();
        let bytes: i64 = row.get(1);
        total += bytes;
        out.push((table.to_string(), row.get(0), bytes));
    }
    (out, total)
}

fn mib(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::var("RATE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20.0);
    support::init_logging();

    let (cluster, admin_url) = support::server().await;
    let (url, name) = support::database(&admin_url).await;
    let admin = store::connect(&admin_url).await.unwrap();
    let client = store::connect(&url).await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO package (id, name, title, type, private, state, notes)
             SELECT 'p' || i, 'dataset-' || i, 'start', 'dataset', false, 'active',
                    repeat('Notes of a CKAN dataset. ', 20)
             FROM generate_series(0, {}) i;
             INSERT INTO \"user\" (id, name, state) VALUES ('u', 'u', 'active');
             INSERT INTO ckan_webhooks.subscription (id, owner_id, topic, address, secret)
             VALUES ('bench', 'u', 'dataset/update', 'placeholder',
                     'whsec_YmVuY2htYXJrLXNlY3JldC1rZXktMzJieXRlcyE=');",
            DATASETS - 1
        ))
        .await
        .unwrap();
    let arrivals: Times = Arc::default();
    let address = receiver(arrivals.clone()).await;
    client
        .execute(
            "UPDATE ckan_webhooks.subscription SET address = $1",
            &[&address],
        )
        .await
        .unwrap();

    let shutdown = CancellationToken::new();
    let config = support::service_config(&url);
    let running = service::start(config, shutdown.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Retention every 2 s, keeping 5 s of finished deliveries.
    let retention_stop = CancellationToken::new();
    let retention_task = {
        let (url, stop) = (url.clone(), retention_stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let cutoff = Utc::now() - chrono::Duration::seconds(5);
                retention::pass_alone(&url, cutoff, retention::BATCH, Duration::ZERO, &stop)
                    .await
                    .unwrap();
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        })
    };

    let mut lines = Vec::new();
    let mut first = 0;
    for rate in [100.0, 1000.0] {
        // Start from an empty change log: the datasets' own creation is derived first.
        for _ in 0..600 {
            let left: i64 = client
                .query_one("SELECT count(*) FROM ckan_webhooks.change", &[])
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Side-schema size every 5 s while the load runs.
        let samples_probe = Arc::new(Mutex::new(Vec::<i64>::new()));
        let probe = {
            let (url, samples) = (url.clone(), samples_probe.clone());
            tokio::spawn(async move {
                let client = store::connect(&url).await.unwrap();
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let total = sizes(&client).await.1;
                    samples.lock().unwrap().push(total);
                }
            })
        };
        let (commits, late) = steady(&url, rate, seconds, first).await;
        first += commits.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let all_arrived = {
                let arrived = arrivals.lock().unwrap();
                commits.keys().all(|t| arrived.contains_key(t))
            };
            if all_arrived {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        probe.abort();
        let arrived = std::mem::take(&mut *arrivals.lock().unwrap());
        let mut samples: Vec<Duration> = commits
            .iter()
            .filter_map(|(t, c)| arrived.get(t).map(|a| a.saturating_duration_since(*c)))
            .collect();
        samples.sort();
        let missing = commits.len() - samples.len();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (p50, p99) = (
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.99)),
        );
        let met = if p50 <= 10.0 && p99 <= 50.0 && missing == 0 {
            "met"
        } else {
            "**missed**"
        };
        lines.push(format!(
            "BENCH commit → receipt at {rate:.0} events/s ({} commits in {seconds:.0} s, {late} started over 5 ms late, {missing} not received) | p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms | – | p50 ≤ 10 ms, p99 ≤ 50 ms: {met} |",
            commits.len(),
            ms(*samples.last().unwrap_or(&Duration::ZERO)),
        ));
        let (tables, total) = sizes(&client).await;
        let during: Vec<String> = samples_probe
            .lock()
            .unwrap()
            .iter()
            .map(|b| mib(*b))
            .collect();
        let detail: Vec<String> = tables
            .iter()
            .map(|(t, rows, bytes)| format!("{t} {rows} rows {}", mib(*bytes)))
            .collect();
        lines.push(format!(
            "BENCH side schema under {rate:.0} events/s with retention (5 s horizon, pass every 2 s) | {} at the end ({}); every 5 s: {} | – | bounded: reported |",
            mib(total),
            detail.join(", "),
            during.join(", "),
        ));
    }

    retention_stop.cancel();
    retention_task.await.unwrap();
    shutdown.cancel();
    running.wait().await.unwrap();
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
    drop(cluster);

    for line in lines {
        println!("{line}");
    }
    println!("## notes");
    println!(
        "Open-loop title changes (two UPDATEs per transaction, as CKAN 2.12's package_update \
         writes a dataset) over {CONNECTIONS} connections and {DATASETS} datasets, {seconds:.0} s \
         per rate; one `dataset/update` webhook each to a receiver on 127.0.0.1 that matches \
         it to its COMMIT by a token in the title. Service in-process, NOTIFY on, \
         per-destination rate limit raised to 100 000/s. A retention pass (5 s horizon) runs \
         every 2 s, standing in for `--retention-days`."
    );
}
