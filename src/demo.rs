//! `ckan-webhooks demo`: the whole path on one machine. Starts a throwaway PostgreSQL
//! (unless a database is given), loads CKAN's core tables, installs the triggers, starts
//! the service and a local receiver, subscribes through the action API with a CKAN API
//! token, writes the SQL CKAN writes for a typical dataset's life, and prints each
//! webhook as it arrives.

use crate::cluster::Cluster;
use crate::config::{DeliveryConfig, MinimumAuth, RunConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::{install, service, sign, store};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The CKAN core schema the demo loads into an empty database.
const CKAN_SCHEMA: &str = include_str!("../sql/ckan/ckan-2.12-core.sql");

/// Each step: what CKAN action it stands for, the SQL CKAN 2.12 writes for it (one
/// transaction), and how many webhooks it produces.
const STEPS: &[(&str, &str, usize)] = &[
    (
        "package_create with two resources",
        "BEGIN;
         INSERT INTO package (id, name, title, type, owner_org, private, state,
                              metadata_created, metadata_modified, extras)
         VALUES ('demo-ds', 'demo-air-quality', 'Air quality', 'dataset', 'demo-org', false,
                 'active', now(), now(), '{\"source\": \"demo\"}');
         INSERT INTO resource (id, package_id, url, format, name, state, position, created,
                               metadata_modified)
         VALUES ('demo-r1', 'demo-ds', 'http://data.example/pm10.csv', 'CSV', 'pm10',
                 'active', 0, now(), now()),
                ('demo-r2', 'demo-ds', 'http://data.example/no2.csv', 'CSV', 'no2',
                 'active', 1, now(), now());
         UPDATE package SET metadata_modified = now() WHERE id = 'demo-ds';
         INSERT INTO member (id, table_name, table_id, capacity, group_id, state)
         VALUES ('demo-m1', 'package', 'demo-ds', 'organization', 'demo-org', 'active');
         COMMIT;",
        3,
    ),
    (
        "package_patch of the title",
        "BEGIN;
         UPDATE package SET title = 'Air quality, hourly' WHERE id = 'demo-ds';
         UPDATE package SET metadata_modified = now() WHERE id = 'demo-ds';
         COMMIT;",
        1,
    ),
    (
        "resource_delete",
        "BEGIN;
         UPDATE package SET metadata_modified = now() WHERE id = 'demo-ds';
         UPDATE resource SET state = 'deleted' WHERE id = 'demo-r2';
         COMMIT;",
        2,
    ),
    (
        "package_delete",
        "UPDATE package SET state = 'deleted' WHERE id = 'demo-ds';",
        2,
    ),
];

/// Runs the demo; `database_url` None means a throwaway cluster.
pub async fn run(database_url: Option<String>) -> Result<()> {
    // Ctrl-C or SIGTERM ends the demo, and the cluster is still stopped and removed:
    // the handler is installed before the cluster starts.
    let interrupted = crate::shutdown::on_signals();
    let (cluster, url) = match database_url {
        Some(url) => (None, url),
        None => {
            println!("starting a throwaway PostgreSQL on 127.0.0.1 ...");
            let cluster = Cluster::start().await?;
            let admin = store::connect(&cluster.url("postgres")).await?;
            admin.batch_execute("CREATE DATABASE ckan_demo").await?;
            let url = cluster.url("ckan_demo");
            (Some(cluster), url)
        }
    };
    let result = if interrupted.is_cancelled() {
        Err(Error::new(ErrorKind::Io, "interrupted"))
    } else {
        tokio::select! {
            result = run_on(&url) => result,
            _ = interrupted.cancelled() => Err(Error::new(ErrorKind::Io, "interrupted")),
        }
    };
    drop(cluster);
    result
}

async fn run_on(url: &str) -> Result<()> {
    let mut client = store::connect(url).await?;
    let has_ckan: Option<String> = client
        .query_one("SELECT to_regclass('public.package')::text", &[])
        .await?
        .get(0);
    if has_ckan.is_none() {
        client.batch_execute(CKAN_SCHEMA).await?;
        println!("loaded CKAN 2.12 core tables");
    }
    let dataset_exists = client
        .query_opt("SELECT 1 FROM package WHERE id = 'demo-ds'", &[])
        .await?
        .is_some();
    if dataset_exists {
        return Err(Error::new(
            ErrorKind::Schema,
            "this database already holds the demo dataset 'demo-ds'; use an empty database",
        ));
    }
    // A CKAN user with an API token, signed with this run's secret.
    let secret = format!("demo-{:032x}", rand::random::<u128>());
    let token = demo_user(&client, secret.as_bytes()).await?;

    let report = install::install(&mut client).await?;
    println!(
        "installed capture triggers on: {}",
        report.captured_tables.join(", ")
    );

    let (receiver_url, mut arrivals) = start_receiver().await?;
    let shutdown = CancellationToken::new();
    let config = RunConfig {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".parse().expect("literal address"),
        site_url: "http://ckan.demo.invalid".into(),
        token_secret: secret.into_bytes(),
        minimum_auth: MinimumAuth::None,
        accept_api_keys: false,
        allow_dataset_collaborators: false,
        poll_interval: Duration::from_millis(500),
        pool_size: 4,
        delivery: DeliveryConfig {
            allow_private_targets: true,
            ..DeliveryConfig::default()
        },
        retention: None,
        capture: Default::default(),
    };
    let service = service::start(config, shutdown.clone()).await?;
    println!("service listening on http://{}", service.addr);

    let hook = create_hook(service.addr, &token, &receiver_url).await?;
    println!("webhook_create topic=* address={receiver_url} -> id {hook}\n");

    let outcome = play(&client, &mut arrivals, &hook).await;
    shutdown.cancel();
    service.wait().await?;
    outcome?;
    println!("\ndemo finished: every webhook arrived and its signature verified");
    Ok(())
}

/// Writes each step's SQL and prints the webhooks it produces.
async fn play(
    client: &tokio_postgres::Client,
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    hook: &str,
) -> Result<()> {
    let secret: String = client
        .query_one(
            "SELECT secret FROM ckan_webhooks.subscription WHERE id = $1",
            &[&hook],
        )
        .await?
        .get(0);
    for (action, sql, expected) in STEPS {
        println!("CKAN: {action}");
        client.batch_execute(sql).await?;
        for _ in 0..*expected {
            let arrival = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                .await
                .ok()
                .flatten()
                .ok_or_else(|| Error::new(ErrorKind::Http, "a webhook did not arrive in 30 s"))?;
            let expected_sig =
                sign::signature(&secret, &arrival.id, arrival.timestamp, &arrival.body);
            let verified = arrival.signature.split(' ').any(|s| s == expected_sig);
            let body: Value = serde_json::from_slice(&arrival.body).unwrap_or(Value::Null);
            let name = body["entity"]["name"].as_str().unwrap_or_default();
            let changes = body
                .get("changes")
                .map(|c| format!(" changes={c}"))
                .unwrap_or_default();
            println!(
                "  webhook {:<16} {:<10} {:<18}{} [webhook-id {}, signature {}]",
                body["topic"].as_str().unwrap_or("?"),
                body["entity"]["id"].as_str().unwrap_or("?"),
                name,
                changes,
                &arrival.id[..12.min(arrival.id.len())],
                if verified { "ok" } else { "MISMATCH" }
            );
            if !verified {
                return Err(Error::new(
                    ErrorKind::Http,
                    "a webhook signature did not verify",
                ));
            }
        }
    }
    Ok(())
}

/// Inserts an ordinary user with an API token (returned), and the organization the
/// demo dataset belongs to; names are random so a real CKAN's rows never clash.
async fn demo_user(client: &tokio_postgres::Client, secret: &[u8]) -> Result<String> {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let user = format!("ckan-webhooks-demo-{suffix}");
    let token_id = format!("ckan-webhooks-demo-token-{suffix}");
    client
        .execute(
            "INSERT INTO \"user\" (id, name, state, sysadmin, created)
             VALUES ($1, $1, 'active', false, now())",
            &[&user],
        )
        .await?;
    client
        .execute(
            "INSERT INTO \"group\" (id, name, title, type, is_organization, state, created)
             SELECT 'demo-org', 'ckan-webhooks-demo-org', 'Demo organization', 'organization',
                    true, 'active', now()
             WHERE NOT EXISTS (SELECT 1 FROM \"group\" WHERE id = 'demo-org')",
            &[],
        )
        .await?;
    client
        .execute(
            "INSERT INTO api_token (id, name, user_id) VALUES ($1, 'demo', $2)",
            &[&token_id, &user],
        )
        .await?;
    let claims = json!({"jti": token_id, "iat": chrono::Utc::now().timestamp()});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .map_err(|err| Error::new(ErrorKind::Config, format!("cannot sign demo token: {err}")))
}

/// Calls `webhook_create` over HTTP, as `ckanapi` would.
async fn create_hook(api: std::net::SocketAddr, token: &str, address: &str) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(api).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| Error::new(ErrorKind::Http, "api handshake").with_source(err))?;
    tokio::spawn(conn);
    let body = json!({"topic": "*", "address": address}).to_string();
    let request = Request::post("/api/3/action/webhook_create")
        .header("host", api.to_string())
        .header("content-type", "application/json")
        .header("authorization", token)
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| Error::new(ErrorKind::Http, "webhook_create").with_source(err))?;
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|err| Error::new(ErrorKind::Http, "webhook_create body").with_source(err))?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    answer["result"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| Error::new(ErrorKind::Http, format!("webhook_create failed: {answer}")))
}

/// One webhook as the receiver saw it.
struct Arrival {
    id: String,
    timestamp: i64,
    signature: String,
    body: Bytes,
}

/// A receiver on 127.0.0.1 that answers 204 and hands each request to the demo.
async fn start_receiver() -> Result<(String, mpsc::UnboundedReceiver<Arrival>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let header = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let id = header("webhook-id");
                    let timestamp = header("webhook-timestamp").parse().unwrap_or_default();
                    let signature = header("webhook-signature");
                    let body = request.into_body().collect().await?.to_bytes();
                    let _ = tx.send(Arrival {
                        id,
                        timestamp,
                        signature,
                        body,
                    });
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((url, rx))
}
