//! Delivery throughput, memory and isolation, as markdown tables on stdout:
//!
//! 1. `throughput`: deliveries per second: `DELIVERY_N` (default 20 000) pending
//!    deliveries inserted up front, drained by the delivery worker (in-process) into a
//!    fast receiver on 127.0.0.1; and the same hyper client's raw POST rate to that
//!    receiver, with no database (the worker's own `Sender`, signing and rendering
//!    included), and the ratio of the two;
//! 2. `drain`: `CKAN_WEBHOOKS_BENCH_PENDING` (default 1 000 000) pending deliveries
//!    drained by the real `ckan-webhooks run` binary as a child process, its resident
//!    memory sampled from `/proc/<pid>/status` every 100 ms: the peak, and the memory at
//!    10, 50 and 90 % of the drain (flat when it grows less than 10 MB from 10 % on);
//! 3. `idle`: a `run` process with nothing to do: its memory after
//!    `CKAN_WEBHOOKS_BENCH_IDLE_SECS` (default 10) seconds, and the CPU time it used in
//!    them (from `/proc/<pid>/stat`);
//! 4. `latency`: the latency of a healthy receiver, one delivery at a time (insert,
//!    wake, arrival), alone and while a second destination hangs until the attempt
//!    timeout.
//!
//! `CKAN_WEBHOOKS_BENCH_SCENARIOS` picks some, comma-separated (default: all).
//! `CKAN_WEBHOOKS_BENCH_CHILD_LOG` is the child's `RUST_LOG` (default `info`, as the
//! service runs by default: one line per delivery, sent to /dev/null).
//!
//! Besides the tables, each figure is printed as one line for the report script:
//!
//! ```text
//! BENCH <scenario> | <figure> | <baseline> | <ratio/target> |
//! ```
//!
//! `cargo bench --bench delivery` (uses `CKAN_WEBHOOKS_BENCH_DATABASE_URL`, a server's
//! `postgres` database, when set; else starts a throwaway cluster). Nothing is asserted.

#[path = "support/run_process.rs"]
mod run_process;
mod support;
use bytes::Bytes;
use ckan_webhooks::config::DeliveryConfig;
use ckan_webhooks::deliver::{self, client::Sender};
use ckan_webhooks::payload::Event;
use ckan_webhooks::store::{self, deliveries::Claimed};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

const SITE: &str = "http://ckan.bench";
const SECRET: &str = "whsec_YmVuY2htYXJrLXNlY3JldC1rZXktMzJieXRlcyE=";

/// A receiver that answers 200 at once, counting requests and reporting each arrival.
async fn fast_receiver() -> (String, Arc<AtomicUsize>, mpsc::UnboundedReceiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, counted) = (tx.clone(), counted.clone());
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (tx, counted) = (tx.clone(), counted.clone());
                async move {
                    let _ = req.into_body().collect().await?;
                    counted.fetch_add(1, Ordering::Relaxed);
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
    (url, count, rx)
}

/// A receiver that reads requests and never answers; counts connections.
async fn hanging_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (url, count)
}

async fn subscription(client: &tokio_postgres::Client, id: &str, address: &str) {
    client
        .execute(
            "INSERT INTO ckan_webhooks.subscription (id, owner_id, topic, address, secret)
             VALUES ($1, 'u', '*', $2, $3)",
            &[&id, &address, &SECRET],
        )
        .await
        .unwrap();
}

/// Inserts `n` pending deliveries to `subscription_id`, one dataset each, ids prefixed.
async fn pending(client: &tokio_postgres::Client, subscription_id: &str, prefix: &str, n: i32) {
    client
        .execute(
            "WITH e AS (
                 INSERT INTO ckan_webhooks.event (id, txid, topic, dataset_id, entity,
                     occurred_at)
                 SELECT $2 || n, pg_current_xact_id(), 'dataset/update', $2 || n,
                        jsonb_build_object('id', $2 || n, 'name', 'bench', 'title', 'Bench'),
                        now()
                 FROM generate_series(1, $3) n
                 RETURNING id, dataset_id
             )
             INSERT INTO ckan_webhooks.delivery (id, event_id, subscription_id, dataset_id)
             SELECT 'dl-' || e.id, e.id, $1, e.dataset_id FROM e",
            &[&subscription_id, &prefix, &n],
        )
        .await
        .unwrap();
}

fn worker(
    url: &str,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<ckan_webhooks::error::Result<()>> {
    let pool = store::pool_with_options(url, 8, Some("-c synchronous_commit=off")).unwrap();
    tokio::spawn(deliver::run(pool, config, SITE.into(), wake, shutdown))
}

fn throughput_config() -> DeliveryConfig {
    DeliveryConfig {
        allow_private_targets: true,
        rate_per_destination: 1_000_000,
        concurrency: 64,
        per_destination_concurrency: 64,
        ..DeliveryConfig::default()
    }
}

/// Scenario 1: seconds to drain `n` deliveries (to the last arrival, and to the last
/// record).
async fn drain(admin_url: &str, n: i32) -> (Duration, Duration, String) {
    let (url, name) = support::database(admin_url).await;
    let client = store::connect(&url).await.unwrap();
    let (address, count, _arrivals) = fast_receiver().await;
    subscription(&client, "fast", &address).await;
    pending(&client, "fast", "t", n).await;
    client.batch_execute("VACUUM ANALYZE").await.unwrap();

    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = worker(
        &url,
        throughput_config(),
        Arc::new(Notify::new()),
        shutdown.clone(),
    );
    while count.load(Ordering::Relaxed) < n as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let arrived = started.elapsed();
    loop {
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'delivered'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done == n as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = started.elapsed();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    (arrived, recorded, name)
}

/// Scenario 2: seconds for the worker's own client to POST `n` signed deliveries with
/// 64 in flight, no database involved.
async fn raw_posts(n: usize) -> Duration {
    let (address, count, _arrivals) = fast_receiver().await;
    let sender = Sender::new(Arc::new(throughput_config()), SITE).unwrap();
    let claimed = Claimed {
        id: "dl-raw".into(),
        attempt: 1,
        created_at: chrono::Utc::now(),
        subscription_id: "raw".into(),
        address,
        secret: SECRET.into(),
        previous_secret: None,
        rate_per_second: None,
        failing_since: None,
        owner_id: "u".into(),
        event: Event {
            id: "ev-raw".into(),
            topic: "dataset/update".into(),
            dataset_id: "raw".into(),
            organization_id: None,
            dataset_type: Some("dataset".into()),
            entity: serde_json::json!({"id": "raw", "name": "bench", "title": "Bench"}),
            changes: None,
            occurred_at: chrono::Utc::now(),
        },
        position: store::deliveries::first_position(),
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (sender, claimed, next) = (sender.clone(), claimed.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let sent = sender.send(&claimed).await;
                assert!(sent.latency.is_some(), "{:?}", sent.result);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let took = started.elapsed();
    assert_eq!(count.load(Ordering::Relaxed), n);
    took
}

/// Scenario 3: healthy-receiver latencies, one delivery at a time, optionally with
/// `hanging` deliveries queued to a receiver that never answers.
async fn healthy_latency(
    admin_url: &str,
    samples: usize,
    hanging: i32,
) -> (Vec<Duration>, usize, String) {
    let (url, name) = support::database(admin_url).await;
    let client = store::connect(&url).await.unwrap();
    let (address, _count, mut arrivals) = fast_receiver().await;
    let (hang_address, hang_connections) = hanging_receiver().await;
    subscription(&client, "healthy", &address).await;
    subscription(&client, "hanging", &hang_address).await;

    let wake = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    // Default caps and timeout; a rate high enough that one delivery at a time never
    // waits for the limiter (the default 50/s would pace this loop to 20 ms apart).
    let config = DeliveryConfig {
        allow_private_targets: true,
        rate_per_destination: 100_000,
        ..DeliveryConfig::default()
    };
    let task = worker(&url, config, wake.clone(), shutdown.clone());
    if hanging > 0 {
        pending(&client, "hanging", "h", hanging).await;
        wake.notify_one();
        // Wait until the hanging destination holds its whole cap.
        let cap = DeliveryConfig::default().per_destination_concurrency;
        while hang_connections.load(Ordering::Relaxed) < cap {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples + 5 {
        pending(&client, "healthy", &format!("s{i}-"), 1).await;
        let inserted = Instant::now();
        wake.notify_one();
        let arrived = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .expect("a webhook within 10 s")
            .unwrap();
        if i >= 5 {
            latencies.push(arrived.saturating_duration_since(inserted));
        }
    }
    let held = hang_connections.load(Ordering::Relaxed);
    shutdown.cancel();
    // Attempts to the hanging receiver only end with the timeout: do not wait for them.
    task.abort();
    latencies.sort();
    (latencies, held, name)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the drain of a large backlog by the real binary showed.
struct Drained {
    n: i64,
    took: Duration,
    peak: u64,
    at: [u64; 3],
    name: String,
}

/// Scenario 2: `n` pending deliveries drained by a `run` child process, its memory
/// sampled as it goes.
async fn drain_service(admin_url: &str, n: i64, log_level: &str) -> Drained {
    let (url, name) = support::database(admin_url).await;
    let client = store::connect(&url).await.unwrap();
    let (address, count, _arrivals) = fast_receiver().await;
    subscription(&client, "fast", &address).await;
    let started = Instant::now();
    // In steps, so that no single transaction holds the whole backlog's locks.
    let step = 100_000;
    for from in (0..n).step_by(step as usize) {
        let k = step.min(n - from) as i32;
        pending(&client, "fast", &format!("m{from}-"), k).await;
    }
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    eprintln!("drain: {n} pending inserted in {:.0?}", started.elapsed());

    let flags = [
        "--rate-per-destination",
        "1000000",
        "--concurrency",
        "64",
        "--per-destination-concurrency",
        "64",
    ];
    let mut service = run_process::RunProcess::start(&url, log_level, &flags);
    let started = Instant::now();
    let marks = [n / 10, n / 2, n * 9 / 10];
    let mut at = [0u64; 3];
    let mut last_report = Instant::now();
    loop {
        let arrived = count.load(Ordering::Relaxed) as i64;
        let usage = service.usage();
        for (mark, rss) in marks.iter().zip(at.iter_mut()) {
            if *rss == 0 && arrived >= *mark {
                *rss = usage.rss;
            }
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "drain: {arrived} arrived after {:.0?}, rss {:.1} MB",
                started.elapsed(),
                run_process::mb(usage.rss)
            );
            last_report = Instant::now();
        }
        if arrived >= n {
            break;
        }
        assert!(service.is_running(), "the service exited during the drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let pending: i64 = client
            .query_one(
                "SELECT count(*) FROM ckan_webhooks.delivery WHERE status = 'pending'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let peak = service.usage().hwm;
    drop(service);
    Drained {
        n,
        took,
        peak,
        at,
        name,
    }
}

/// Scenario 3: memory and CPU time of a `run` process with nothing to do.
async fn idle_service(admin_url: &str, seconds: u64, log_level: &str) -> (u64, Duration, String) {
    let (url, name) = support::database(admin_url).await;
    let service = run_process::RunProcess::start(&url, log_level, &[]);
    // Let it connect and settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = service.usage();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = service.usage();
    drop(service);
    (after.rss, after.cpu.saturating_sub(before.cpu), name)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n: i32 = env_or("DELIVERY_N", 20_000);
    let backlog: i64 = env_or("CKAN_WEBHOOKS_BENCH_PENDING", 1_000_000);
    let idle_secs: u64 = env_or("CKAN_WEBHOOKS_BENCH_IDLE_SECS", 10);
    let child_log: String = env_or("CKAN_WEBHOOKS_BENCH_CHILD_LOG", "info".to_string());
    let scenarios: String = env_or(
        "CKAN_WEBHOOKS_BENCH_SCENARIOS",
        "throughput,drain,idle,latency".to_string(),
    );
    let wanted = |s: &str| scenarios.split(',').any(|w| w.trim() == s);
    let samples = 200;
    support::init_logging();

    let (cluster, admin_url) = support::server().await;
    let mut databases = Vec::new();
    let mut lines = Vec::new();

    if wanted("throughput") {
        let raw = raw_posts(n as usize).await;
        let (arrived, recorded, name) = drain(&admin_url, n).await;
        databases.push(name);
        let raw_rate = n as f64 / raw.as_secs_f64();
        let arrival_rate = n as f64 / arrived.as_secs_f64();
        let record_rate = n as f64 / recorded.as_secs_f64();
        println!("| scenario | n | figure | baseline | ratio |");
        println!("|---|---|---|---|---|");
        println!(
            "| deliveries/s to a fast receiver, all recorded | {n} | {record_rate:.0}/s | raw POSTs {raw_rate:.0}/s | {:.2} |",
            record_rate / raw_rate
        );
        println!(
            "| deliveries/s to a fast receiver, all arrived | {n} | {arrival_rate:.0}/s | raw POSTs {raw_rate:.0}/s | {:.2} |",
            arrival_rate / raw_rate
        );
        println!();
        lines.push(format!(
            "BENCH delivery throughput, {n} pending, all recorded | {record_rate:.0}/s | raw POSTs {raw_rate:.0}/s | {:.2}× (target ≥ 0.5× and ≥ 5000/s) |",
            record_rate / raw_rate
        ));
    }

    if wanted("drain") {
        let d = drain_service(&admin_url, backlog, &child_log).await;
        databases.push(d.name);
        let rate = d.n as f64 / d.took.as_secs_f64();
        let [p10, p50, p90] = d.at.map(run_process::mb);
        let growth = p90.max(p50) - p10;
        let flat = if growth < 10.0 { "flat" } else { "growing" };
        println!("| `run` draining a backlog | n | took | rate | RSS at 10 % | 50 % | 90 % | peak (VmHWM) |");
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| RUST_LOG={child_log} | {} | {:.0} s | {rate:.0}/s | {p10:.1} MB | {p50:.1} MB | {p90:.1} MB | {:.1} MB |",
            d.n,
            d.took.as_secs_f64(),
            run_process::mb(d.peak)
        );
        println!();
        lines.push(format!(
            "BENCH run draining {} pending, peak RSS | {:.1} MB | RSS at 10/50/90 %: {p10:.1}/{p50:.1}/{p90:.1} MB, {rate:.0}/s | target ≤ 100 MB and flat: {flat} ({growth:+.1} MB) |",
            d.n,
            run_process::mb(d.peak)
        ));
    }

    if wanted("idle") {
        let (rss, cpu, name) = idle_service(&admin_url, idle_secs, &child_log).await;
        databases.push(name);
        println!("| `run` idle | seconds | RSS | CPU time | CPU share |");
        println!("|---|---|---|---|---|");
        let share = cpu.as_secs_f64() / idle_secs as f64 * 100.0;
        println!(
            "| nothing to deliver | {idle_secs} | {:.1} MB | {} ms | {share:.2} % |",
            run_process::mb(rss),
            cpu.as_millis()
        );
        println!();
        lines.push(format!(
            "BENCH run idle, RSS | {:.1} MB | – | target ≤ 30 MB |",
            run_process::mb(rss)
        ));
        lines.push(format!(
            "BENCH run idle, CPU time over {idle_secs} s | {} ms | – | {share:.2} % of a core (no busy polling) |",
            cpu.as_millis()
        ));
    }

    if wanted("latency") {
        let (alone, _, name) = healthy_latency(&admin_url, samples, 0).await;
        databases.push(name);
        let (beside, held, name) = healthy_latency(&admin_url, samples, 500).await;
        databases.push(name);
        println!("| healthy receiver, insert → arrival | n | p50 | p90 | p99 | max |");
        println!("|---|---|---|---|---|---|");
        for (label, sorted) in [
            ("alone".to_string(), &alone),
            (
                format!("beside a hanging destination ({held} attempts held open)"),
                &beside,
            ),
        ] {
            println!(
                "| {label} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
                sorted.len(),
                ms(percentile(sorted, 0.5)),
                ms(percentile(sorted, 0.9)),
                ms(percentile(sorted, 0.99)),
                ms(*sorted.last().unwrap()),
            );
        }
        let added = ms(percentile(&beside, 0.5)) - ms(percentile(&alone, 0.5));
        println!(
            "\ndelay a hanging destination adds to a healthy one: p50 {added:+.2} ms, p99 {:+.2} ms\n",
            ms(percentile(&beside, 0.99)) - ms(percentile(&alone, 0.99)),
        );
        lines.push(format!(
            "BENCH healthy receiver latency, insert → arrival, p50 | {:.2} ms | beside a hanging destination {:.2} ms | {added:+.2} ms |",
            ms(percentile(&alone, 0.5)),
            ms(percentile(&beside, 0.5)),
        ));
    }

    for line in lines {
        println!("{line}");
    }

    let admin = store::connect(&admin_url).await.unwrap();
    for name in databases {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await;
    }
    drop(cluster);
}
