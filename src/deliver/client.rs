//! The HTTP side of an attempt: a hyper client whose resolver refuses private addresses,
//! the signed request, and a response read only as far as the delivery record keeps.

use super::outcome::{AttemptResult, FailureKind};
use crate::config::DeliveryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::payload::{self, Recipient};
use crate::store::deliveries::Claimed;
use crate::{retry, sign, target};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The `user-agent` of every attempt.
pub const USER_AGENT: &str = concat!("ckan-webhooks/", env!("CARGO_PKG_VERSION"));

/// A resolver that drops refused addresses, so a host name cannot lead the client to a
/// loopback, private or metadata address (checked on what is actually connected to).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    /// When true, nothing is dropped (tests, and portals with receivers on the LAN).
    allow_private: bool,
}

/// The error a host name gets when it resolves only to refused addresses.
#[derive(Debug)]
pub struct RefusedAddress {
    host: String,
}

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves only to loopback, private or link-local addresses, which this \
             service does not call",
            self.host
        )
    }
}

impl std::error::Error for RefusedAddress {}

impl GuardedResolver {
    /// A resolver that refuses private ranges unless `allow_private`.
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    /// Resolves `host` and keeps only acceptable addresses.
    pub async fn resolve(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        if self.allow_private || found.is_empty() {
            return Ok(found);
        }

        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|addr| !target::is_forbidden(addr.ip()))
            .collect();
        if allowed.is_empty() {
            let refused = RefusedAddress {
                host: host.to_string(),
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                refused,
            ));
        }
        Ok(allowed)
    }
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.clone();
        Box::pin(async move { Ok(resolver.resolve(name.as_str()).await?.into_iter()) })
    }
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// What one attempt produced.
#[derive(Debug)]
pub struct Sent {
    /// When the attempt started (its `webhook-timestamp`).
    pub started_at: DateTime<Utc>,
    /// The status or the failure.
    pub result: AttemptResult,
    /// The first bytes of the response body, when there was one.
    pub response: Option<String>,
    /// Time from sending to the end of the kept part of the response.
    pub latency: Option<Duration>,
}

/// Sends signed deliveries.
#[derive(Clone)]
pub struct Sender {
    client: HttpsClient,
    config: Arc<DeliveryConfig>,
    site_url: Arc<str>,
}

impl Sender {
    /// A client with the configured timeouts and address policy.
    pub fn new(config: Arc<DeliveryConfig>, site_url: &str) -> Result<Self> {
        let mut http =
            HttpConnector::new_with_resolver(GuardedResolver::new(config.allow_private_targets));
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);

        let provider = rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|err| Error::new(ErrorKind::Http, "tls configuration").with_source(err))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            client,
            config,
            site_url: site_url.into(),
        })
    }

    /// Makes one attempt of `claimed`. IP-literal addresses must have passed
    /// `target::check_address` already: the resolver never sees them.
    pub async fn send(&self, claimed: &Claimed) -> Sent {
        let started_at = Utc::now();
        let clock = Instant::now();

        let body = payload::render(
            &claimed.event,
            Recipient {
                webhook_id: &claimed.subscription_id,
                address: &claimed.address,
                user_ref: &claimed.owner_id,
            },
            &self.site_url,
        );
        let timestamp = started_at.timestamp();
        // During a rotation's overlap both secrets sign, the new one first.
        let secrets =
            std::iter::once(claimed.secret.as_str()).chain(claimed.previous_secret.as_deref());
        let signature = sign::signatures(secrets, &claimed.id, timestamp, &body);

        let request = hyper::Request::post(claimed.address.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .header("webhook-id", claimed.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(request) => request,
            Err(err) => {
                let message = format!("cannot build a request for this address: {err}");
                return Sent::failed(started_at, FailureKind::Invalid, message);
            }
        };

        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, Utc::now()));
            let kept = read_prefix(response.into_body(), self.config.response_keep_bytes).await;
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, kept))
        };

        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(Ok((status, retry_after, kept))) => Sent {
                started_at,
                result: AttemptResult::Response {
                    status,
                    retry_after,
                },
                response: Some(response_text(&kept)),
                latency: Some(clock.elapsed()),
            },
            Ok(Err(err)) => {
                let (kind, message) = classify(&err);
                Sent::failed(started_at, kind, message)
            }
            Err(_) => {
                let message = format!(
                    "no complete response within {} ms",
                    self.config.timeout.as_millis()
                );
                Sent::failed(started_at, FailureKind::Timeout, message)
            }
        }
    }
}

impl Sent {
    /// An attempt that got no response.
    pub fn failed(started_at: DateTime<Utc>, kind: FailureKind, message: String) -> Self {
        Self {
            started_at,
            result: AttemptResult::Failed { kind, message },
            response: None,
            latency: None,
        }
    }
}

/// Reads at most `cap` bytes of a body and drops the rest unread: the connection is then
/// closed rather than drained, which is what a 10 MB answer deserves. A body that breaks
/// off keeps what had arrived; the status is what matters.
async fn read_prefix(mut body: Incoming, cap: usize) -> Vec<u8> {
    let mut kept = Vec::with_capacity(cap.min(64 * 1024));
    while kept.len() < cap {
        let Some(Ok(frame)) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            let room = cap - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    kept
}

/// The kept bytes as text for the delivery record (PostgreSQL text holds no NUL).
fn response_text(kept: &[u8]) -> String {
    String::from_utf8_lossy(kept).replace('\0', "\u{fffd}")
}

/// Sorts a client error into a failure kind with a message naming its innermost cause.
fn classify(err: &hyper_util::client::legacy::Error) -> (FailureKind, String) {
    let mut innermost = err.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(refused) = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<RefusedAddress>())
            {
                return (FailureKind::Refused, refused.to_string());
            }
        }
        innermost = cause.to_string();
        source = cause.source();
    }

    if err.is_connect() {
        (
            FailureKind::Connect,
            format!("connection failed: {innermost}"),
        )
    } else {
        (FailureKind::Other, format!("request failed: {innermost}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolver_refuses_loopback_names_unless_allowed() {
        let strict = GuardedResolver::new(false);
        let err = strict.resolve("localhost").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("localhost"), "{err}");

        let open = GuardedResolver::new(true);
        let found = open.resolve("localhost").await.unwrap();
        assert!(found.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn response_text_is_lossy_and_nul_free() {
        assert_eq!(response_text(b"ok\0\xff"), "ok\u{fffd}\u{fffd}");
    }
}
