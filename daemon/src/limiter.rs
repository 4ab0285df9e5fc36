//! Per-endpoint limits: one `governor` rate limiter per webhook, at the rate its task carries, and a cap on
//! the requests outstanding at once to one host. A task waits for its own webhook's and host's limits only,
//! so a limited or slow endpoint never holds up the others.
//!
//! The host cap exists because every outstanding HTTP/1.1 request holds a connection of its own (some 25 KB
//! of client state each): without it, a slow host would get as many sockets as the daemon has deliveries in
//! flight, and the daemon's memory would grow with them.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct EndpointLimits {
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl EndpointLimits {
    /// Limits allowing at most `per_host` requests outstanding to one host at a time.
    pub fn new(per_host: u32) -> Self {
        EndpointLimits {
            limiters: Mutex::default(),
            per_host: per_host.max(1) as usize,
            hosts: Mutex::default(),
        }
    }

    /// Waits for a free request slot on `url`'s host (scheme, host and port); the slot is held until the
    /// returned permit is dropped.
    pub async fn host_slot(&self, url: &str) -> Option<OwnedSemaphorePermit> {
        let host = match url.parse::<http::Uri>() {
            Ok(uri) => format!(
                "{}://{}",
                uri.scheme_str().unwrap_or_default(),
                uri.authority().map(|a| a.as_str()).unwrap_or_default()
            ),
            // The send fails on it anyway; no host to share a limit with.
            Err(_) => return None,
        };
        let slots = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone();
        // Never closed, so acquiring cannot fail.
        slots.acquire_owned().await.ok()
    }

    /// Waits until webhook `webhook_id` may receive one more request at `per_second`.
    pub async fn until_ready(&self, webhook_id: &str, per_second: u32) {
        let limiter = self.limiter(webhook_id, per_second);
        limiter.until_ready().await;
    }

    fn limiter(&self, webhook_id: &str, per_second: u32) -> Arc<DefaultDirectRateLimiter> {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match limiters.get(webhook_id) {
            // The admin may have changed the rate: a new limiter picks it up.
            Some((current, limiter)) if *current == rate.get() => limiter.clone(),
            _ => {
                let limiter = Arc::new(RateLimiter::direct(Quota::per_second(rate)));
                limiters.insert(webhook_id.to_owned(), (rate.get(), limiter.clone()));
                limiter
            }
        }
    }
}
