//! The CKAN-style action API for webhooks: `POST /api/3/action/webhook_*` (and
//! `/api/action/…`, which `ckanapi.RemoteCKAN` calls), authenticated with CKAN's own API
//! tokens and answering CKAN's envelopes and status codes, plus `GET /healthz`.
//!
//! - [`envelope`]: CKAN's success and error bodies and their status codes.
//! - [`request`]: reading parameters from JSON, form and query strings.
//! - [`auth`]: tokens, users and the operator's `minimum_auth`.
//! - [`validate`]: parameter checks, with errors keyed by field; [`fields`]: typed
//!   optional parameters (numbers, booleans, times); [`filters`]: dataset and
//!   organization filters resolved to ids.
//! - [`actions`]: what each action does: create, show, list and delete there,
//!   [`update`], [`deliveries`] and [`redeliver`] in their own files.

pub mod actions;
pub mod auth;
pub mod deliveries;
pub mod envelope;
pub mod fields;
pub mod filters;
pub mod metrics;
pub mod redeliver;
pub mod request;
pub mod update;
pub mod validate;

use crate::config::MinimumAuth;
use crate::error::Result;
use actions::Action;
use envelope::{failure, success, ApiError, ApiResponse};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a free database connection before it gets a 500.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// What every request handler shares.
pub struct ApiState {
    /// Connections to the CKAN database, which holds the side schema too.
    pub pool: deadpool_postgres::Pool,
    /// CKAN's site URL without a trailing slash, for the `help` links.
    pub site_url: String,
    /// The key CKAN signs its API tokens with (HS256).
    pub token_secret: Vec<u8>,
    /// Who may use the webhook actions at all.
    pub minimum_auth: MinimumAuth,
    /// Whether webhooks may point at loopback, private and link-local addresses.
    pub allow_private_targets: bool,
    /// Whether legacy API keys (`user.apikey`) identify callers. CKAN 2.10 and later
    /// no longer accept them, though the column may still hold old keys.
    pub accept_api_keys: bool,
    /// CKAN's `ckan.auth.allow_dataset_collaborators`: whether collaborators may read a
    /// private dataset, which decides whether a `dataset` filter naming it resolves.
    pub allow_dataset_collaborators: bool,
}

/// Serves the API on `listener` until `shutdown` is cancelled, then stops accepting
/// and lets requests in flight finish (for at most ten seconds).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "api listening");
    }

    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Running out of file descriptors is temporary; back off briefly.
                    tracing::warn!(error = %err, "api accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };

        let state = Arc::clone(&state);
        let service = service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, std::convert::Infallible>(handle(&state, request).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "api connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("api draining");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("api requests still in flight after the drain timeout");
    }
    tracing::info!("api stopped");
    Ok(())
}

/// Where a request path leads.
enum Route<'a> {
    Health,
    Metrics,
    Action(&'a str),
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    if path == "/healthz" {
        return Route::Health;
    }
    if path == "/metrics" {
        return Route::Metrics;
    }
    let name = path
        .strip_prefix("/api/action/")
        .or_else(|| path.strip_prefix("/api/3/action/"));
    match name {
        Some(name) if !name.is_empty() && !name.contains('/') => Route::Action(name),
        _ => Route::Unknown,
    }
}

/// Answers one request; never fails, since every error becomes a CKAN-style response.
async fn handle(state: &ApiState, request: Request<Incoming>) -> ApiResponse {
    let path = request.uri().path().to_string();
    match route(&path) {
        Route::Health => health(state, request.method()).await,
        Route::Metrics => metrics(state, request.method()).await,
        Route::Action(name) => {
            let started = Instant::now();
            let Some(action) = Action::from_name(name) else {
                let err = ApiError::BadRequest(format!("Action name not known: {name}"));
                tracing::info!(status = 400, "api unknown action");
                return failure(&state.site_url, None, &err);
            };

            let (response, user_id) = match call(state, action, request).await {
                Ok((result, user_id)) => (success(&state.site_url, action.name(), result), user_id),
                Err(err) => {
                    if let ApiError::Internal(cause) = &err {
                        tracing::error!(action = action.name(), error = %cause, "api action failed");
                    }
                    (failure(&state.site_url, Some(action.name()), &err), None)
                }
            };
            tracing::info!(
                action = action.name(),
                status = response.status().as_u16(),
                user_id = user_id.as_deref().unwrap_or(""),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "api request"
            );
            response
        }
        Route::Unknown => envelope::json(StatusCode::NOT_FOUND, &json!("Not found")),
    }
}

/// Reads, authenticates and runs one action call; answers the result and the caller.
async fn call(
    state: &ApiState,
    action: Action,
    request: Request<Incoming>,
) -> Result<(serde_json::Value, Option<String>), ApiError> {
    if request.method() != Method::GET && request.method() != Method::POST {
        return Err(ApiError::BadRequest(format!(
            "the action API takes GET and POST, not {}",
            request.method()
        )));
    }
    let mut credential = auth::credential(request.headers());
    let mut params = request::read_params(request, action.side_effect_free()).await?;

    // A JSONP callback makes CKAN treat the call as anonymous, so that a third-party
    // page cannot read a logged-in user's data; keep the same rule.
    if params.remove("callback").is_some() {
        credential = None;
    }

    let mut client = connection(state).await?;
    let caller = auth::authenticate(state, &**client, credential.as_deref()).await?;
    auth::authorize(state.minimum_auth, &**client, &caller).await?;
    let result = actions::run(state, &mut client, &caller, action, &params).await?;
    Ok((result, Some(caller.id)))
}

/// A pooled connection, or an error once [`POOL_WAIT`] has passed: the pool itself
/// would wait for ever.
async fn connection(state: &ApiState) -> Result<deadpool_postgres::Object, ApiError> {
    match tokio::time::timeout(POOL_WAIT, state.pool.get()).await {
        Ok(client) => Ok(client?),
        Err(_) => Err(ApiError::Internal(crate::error::Error::new(
            crate::error::ErrorKind::Database,
            "no free database connection within the pool wait",
        ))),
    }
}

/// `GET /metrics`: Prometheus text, or 503 when the database does not answer.
async fn metrics(state: &ApiState, method: &Method) -> ApiResponse {
    if method != Method::GET {
        return envelope::json(StatusCode::METHOD_NOT_ALLOWED, &json!("Method not allowed"));
    }
    let snapshot = match connection(state).await {
        Ok(client) => crate::store::metrics::snapshot(&**client).await.ok(),
        Err(_) => None,
    };
    match snapshot {
        Some(snapshot) => {
            let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
                metrics::render(&snapshot),
            )));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        None => {
            tracing::warn!("metrics could not read the database");
            envelope::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable"}),
            )
        }
    }
}

/// `GET /healthz`: 200 when the database answers, 503 when it does not.
async fn health(state: &ApiState, method: &Method) -> ApiResponse {
    if method != Method::GET && method != Method::HEAD {
        return envelope::json(StatusCode::METHOD_NOT_ALLOWED, &json!("Method not allowed"));
    }
    let reachable = match connection(state).await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    if reachable {
        envelope::json(StatusCode::OK, &json!({"status": "ok"}))
    } else {
        tracing::warn!("health check could not reach the database");
        envelope::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable"}),
        )
    }
}
