//! The whole service (API, watcher, deliverer) started in-process on a test database,
//! with a recording receiver subscribed through the API.

use super::api::call_at;
use super::ckan_users::{self, TestUser, TOKEN_SECRET};
use super::db::TestDb;
use ckan_webhooks::config::{DeliveryConfig, MinimumAuth, RunConfig};
use ckan_webhooks::service::{self, Service};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The site URL every test service sends as `ckan`.
pub const SITE_URL: &str = "http://ckan.test";

/// A running service; stopped when dropped.
pub struct TestService {
    /// Where its API listens.
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    service: Option<Service>,
}

/// The configuration tests run with: fast timers, loopback receivers allowed.
pub fn config(db: &TestDb) -> RunConfig {
    RunConfig {
        database_url: db.url.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        site_url: SITE_URL.into(),
        token_secret: TOKEN_SECRET.to_vec(),
        minimum_auth: MinimumAuth::None,
        accept_api_keys: false,
        allow_dataset_collaborators: false,
        poll_interval: Duration::from_millis(200),
        pool_size: 4,
        delivery: DeliveryConfig {
            allow_private_targets: true,
            retry_base: Duration::from_millis(100),
            ..DeliveryConfig::default()
        },
        retention: None,
        capture: ckan_webhooks::config::CaptureConfig {
            poll_cycle: Duration::from_millis(200),
            ..Default::default()
        },
    }
}

impl TestService {
    /// Starts the service with [`config`].
    pub async fn start(db: &TestDb) -> TestService {
        Self::start_with(config(db)).await
    }

    /// Starts the service with `config`.
    pub async fn start_with(config: RunConfig) -> TestService {
        let shutdown = CancellationToken::new();
        let service = service::start(config, shutdown.clone())
            .await
            .expect("service starts");
        TestService {
            addr: service.addr,
            shutdown,
            service: Some(service),
        }
    }

    /// Calls an action as `user`; answers (status, body).
    pub async fn call(&self, action: &str, user: &TestUser, body: Value) -> (u16, Value) {
        call_at(self.addr, action, Some(&user.token), body).await
    }

    /// Creates a hook for `topic` to `address` owned by `user`; answers its id and secret.
    pub async fn subscribe(&self, user: &TestUser, topic: &str, address: &str) -> (String, String) {
        let (status, body) = self
            .call(
                "webhook_create",
                user,
                json!({"topic": topic, "address": address}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let id = body["result"].as_str().unwrap().to_string();
        let (_, shown) = self.call("webhook_show", user, json!({"id": id})).await;
        (id, shown["result"]["secret"].as_str().unwrap().to_string())
    }

    /// Stops the service gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(service) = self.service.take() {
            tokio::time::timeout(Duration::from_secs(30), service.wait())
                .await
                .expect("the service stops within 30 s")
                .expect("the service stops cleanly");
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A user with a token, for subscribing.
pub async fn app_developer(db: &TestDb) -> TestUser {
    let client = db.client().await;
    ckan_users::user(&client, &format!("dev{:08x}", rand::random::<u32>()), false).await
}
