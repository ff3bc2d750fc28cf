//! Isolation between destinations (a URL's origin: scheme, host, port). Each origin has
//! its own rate limiter and its own cap on attempts in flight, and a global cap bounds
//! the whole worker. An attempt takes its origin's slot first, waits for its origin's
//! rate, and only then takes a global slot, so an origin that is slow or rate-limited
//! never sits on capacity other origins could use.
//!
//! A subscription with its own rate (`subscription.rate_per_second`) is paced by a
//! limiter of its own, keyed by (origin, subscription), instead of its origin's shared
//! one: the owner asked for that rate for that hook, and one hook's override must not
//! speed up or slow down the other hooks that share its origin. The origin's concurrency
//! cap still applies to it.

use crate::config::DeliveryConfig;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a subscription's own limiter is kept after its last use.
const OWN_LIMITER_IDLE: Duration = Duration::from_secs(300);

/// The limiter of a subscription with its own rate.
struct OwnLimiter {
    rate: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
    last_used: Instant,
}
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Rate limiters and concurrency caps, per origin and global.
pub struct Destinations {
    /// Requests per second per origin.
    limiter: DefaultKeyedRateLimiter<String>,
    /// Limiters of subscriptions with their own rate, by (origin, subscription).
    own: Mutex<HashMap<(String, String), OwnLimiter>>,
    /// Attempts in flight per origin, created on first use.
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// How many attempts one origin may have in flight.
    per_origin: usize,
    /// The origin each subscription seen so far sends to, so claims can skip
    /// subscriptions whose origin is full without knowing URLs in SQL.
    origin_of: Mutex<HashMap<String, String>>,
    /// Attempts sending at once across all origins.
    global: Arc<Semaphore>,
}

impl Destinations {
    /// Limits as configured; zero values are raised to one.
    pub fn new(config: &DeliveryConfig) -> Self {
        let rate = NonZeroU32::new(config.rate_per_destination).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate)),
            own: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            per_origin: config.per_destination_concurrency.max(1),
            origin_of: Mutex::new(HashMap::new()),
            global: Arc::new(Semaphore::new(config.concurrency.max(1))),
        }
    }

    /// Takes one of `origin`'s slots for an attempt of `subscription_id`, or None when
    /// the origin already has its maximum in flight.
    pub fn try_enter(&self, origin: &str, subscription_id: &str) -> Option<OwnedSemaphorePermit> {
        self.origin_of
            .lock()
            .expect("origin map lock")
            .insert(subscription_id.to_string(), origin.to_string());

        let slots = self
            .slots
            .lock()
            .expect("slot map lock")
            .entry(origin.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_origin)))
            .clone();
        slots.try_acquire_owned().ok()
    }

    /// Waits until the rate limit lets one more request of `subscription_id` through:
    /// its own `rate` when it has one, else its origin's shared default.
    pub async fn pace(&self, origin: &str, subscription_id: &str, rate: Option<u32>) {
        let Some(rate) = rate.and_then(NonZeroU32::new) else {
            self.limiter.until_key_ready(&origin.to_string()).await;
            return;
        };

        let limiter = {
            let mut own = self.own.lock().expect("own limiter lock");
            let key = (origin.to_string(), subscription_id.to_string());
            let entry = own.entry(key).or_insert_with(|| OwnLimiter {
                rate: rate.get(),
                limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
                last_used: Instant::now(),
            });
            // The owner may have changed the rate since the limiter was made.
            if entry.rate != rate.get() {
                entry.rate = rate.get();
                entry.limiter = Arc::new(RateLimiter::direct(Quota::per_second(rate)));
            }
            entry.last_used = Instant::now();
            entry.limiter.clone()
        };
        limiter.until_ready().await;
    }

    /// Waits for a global sending slot.
    pub async fn send_slot(&self) -> OwnedSemaphorePermit {
        self.global
            .clone()
            .acquire_owned()
            .await
            .expect("the global semaphore is never closed")
    }

    /// Subscriptions whose origin has no free slot and is `saturated` (the caller holds
    /// enough rows waiting for it): claiming for them now would only hand rows back.
    pub fn busy_subscriptions(&self, saturated: impl Fn(&str) -> bool) -> Vec<String> {
        let slots = self.slots.lock().expect("slot map lock");
        let full: Vec<&String> = slots
            .iter()
            .filter(|(origin, s)| s.available_permits() == 0 && saturated(origin))
            .map(|(origin, _)| origin)
            .collect();
        if full.is_empty() {
            return Vec::new();
        }

        self.origin_of
            .lock()
            .expect("origin map lock")
            .iter()
            .filter(|(_, origin)| full.contains(origin))
            .map(|(subscription, _)| subscription.clone())
            .collect()
    }

    /// Forgets rate-limiter state of origins not used lately, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.own
            .lock()
            .expect("own limiter lock")
            .retain(|_, own| own.last_used.elapsed() < OWN_LIMITER_IDLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_origin_makes_its_subscriptions_busy_and_no_other() {
        let config = DeliveryConfig {
            per_destination_concurrency: 2,
            ..DeliveryConfig::default()
        };
        let destinations = Destinations::new(&config);

        let a1 = destinations.try_enter("http://a:80", "s1").unwrap();
        let a2 = destinations.try_enter("http://a:80", "s2").unwrap();
        let _b = destinations.try_enter("http://b:80", "s3").unwrap();
        assert!(destinations.try_enter("http://a:80", "s1").is_none());

        let mut busy = destinations.busy_subscriptions(|_| true);
        busy.sort();
        assert_eq!(busy, ["s1", "s2"]);

        drop((a1, a2));
        assert!(destinations.busy_subscriptions(|_| true).is_empty());
        assert!(destinations.try_enter("http://a:80", "s2").is_some());
    }

    // Governor keeps its own clock, so this waits for real (half a second).
    #[tokio::test]
    async fn an_own_rate_paces_its_subscription_alone() {
        let config = DeliveryConfig {
            rate_per_destination: 1000,
            ..DeliveryConfig::default()
        };
        let destinations = Destinations::new(&config);

        // Two requests a second for s1: a third within the second must wait.
        let start = Instant::now();
        for _ in 0..3 {
            destinations.pace("http://a:80", "s1", Some(2)).await;
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(400), "{waited:?}");

        // Meanwhile s2 on the same origin uses the default and does not wait.
        let start = Instant::now();
        for _ in 0..50 {
            destinations.pace("http://a:80", "s2", None).await;
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
