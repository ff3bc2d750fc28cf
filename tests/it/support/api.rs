//! The action API started in-process on 127.0.0.1:0 against a test database, and a
//! small HTTP client that calls it the way CKAN clients do.

use super::ckan_users::TOKEN_SECRET;
use super::db::TestDb;
use bytes::Bytes;
use ckan_webhooks::api::{serve, ApiState};
use ckan_webhooks::config::MinimumAuth;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The site URL the test servers put in their `help` links.
pub const SITE_URL: &str = "http://ckan.test";

/// A running API server; cancelled when dropped.
pub struct ApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<ckan_webhooks::error::Result<()>>>,
}

/// Options for [`ApiServer::start_with`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The operator's minimum auth.
    pub minimum_auth: MinimumAuth,
    /// Whether private receiver addresses are allowed.
    pub allow_private_targets: bool,
    /// Whether legacy API keys identify callers.
    pub accept_api_keys: bool,
    /// Whether collaborators may read private datasets.
    pub allow_dataset_collaborators: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            minimum_auth: MinimumAuth::None,
            allow_private_targets: false,
            accept_api_keys: false,
            allow_dataset_collaborators: false,
        }
    }
}

impl ApiServer {
    /// Starts the API with default options.
    pub async fn start(db: &TestDb) -> ApiServer {
        Self::start_with(db, Options::default()).await
    }

    /// Starts the API with `options`.
    pub async fn start_with(db: &TestDb, options: Options) -> ApiServer {
        let pool = ckan_webhooks::store::pool(&db.url, 4).expect("pool");
        let state = Arc::new(ApiState {
            pool,
            site_url: SITE_URL.to_string(),
            token_secret: TOKEN_SECRET.to_vec(),
            minimum_auth: options.minimum_auth,
            allow_private_targets: options.allow_private_targets,
            accept_api_keys: options.accept_api_keys,
            allow_dataset_collaborators: options.allow_dataset_collaborators,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, state, shutdown.clone()));
        ApiServer {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    /// The base URL, as a CKAN client would be given it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the server and waits (bounded) until `serve` returns.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("serve returns after shutdown")
                .unwrap()
                .expect("serve ends cleanly");
        }
    }

    /// POSTs a JSON body to `/api/3/action/<action>` with `token` in `Authorization`.
    pub async fn call(&self, action: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        call_at(self.addr, action, token, body).await
    }

    /// Sends any request and answers the status and the JSON body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> (u16, Value) {
        send_to(self.addr, method, path, headers, body).await
    }
}

/// POSTs a JSON body to `/api/3/action/<action>` of the API at `addr`, with `token` in
/// `Authorization`.
pub async fn call_at(
    addr: SocketAddr,
    action: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(token) = token {
        headers.push(("authorization", token.to_string()));
    }
    let path = format!("/api/3/action/{action}");
    send_to(addr, "POST", &path, &headers, body.to_string()).await
}

/// Sends any request to the API at `addr` and answers the status and the JSON body.
pub async fn send_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: impl Into<Bytes>,
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);

    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("the API answers within 10 s")
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
