//! Per-endpoint limits: one `governor` rate limiter per webhook, at the rate its task carries, and caps on
//! the requests outstanding at once to one host and for one account. A task waits for its own webhook's,
//! account's and host's limits only, so a limited or slow endpoint never holds up the others.
//!
//! The caps are shares of the daemon's request slots (by default a quarter per host, half per account): a
//! host that never answers, or an account whose endpoints all hang, holds at most its share of them for a
//! request timeout, and the other hosts and accounts go on with the rest. The host cap also bounds memory:
//! every outstanding HTTP/1.1 request holds a connection of its own (some 25 KB of client state each).
//!
//! Limits are kept per key in a [`Registry`], which drops the idle ones, so a daemon that sends to millions of
//! endpoints over its life keeps only those in use.

use std::{
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{clock::DefaultClock, DefaultDirectRateLimiter, Quota, RateLimiter};
use kit_webhooks::sync::lock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::registry::Registry;

/// A rate limiter left alone this long is as full as a new one (a quota of N per second refills within a
/// second), so dropping it forgets nothing.
const LIMITER_IDLE: Duration = Duration::from_secs(2);

pub struct EndpointLimits {
    limiters: Mutex<Registry<WebhookLimiter>>,
    /// The clock every limiter reads, made once: making one asks the CPU about its timestamp counter
    /// (`cpuid`, which a virtual machine traps), and a daemon makes a limiter for every webhook it sees.
    clock: DefaultClock,
    hosts: Slots,
    accounts: Slots,
}

/// At most `per_key` requests outstanding at once for each key.
struct Slots {
    per_key: usize,
    by_key: Mutex<Registry<Arc<Semaphore>>>,
}

impl Slots {
    fn new(per_key: u32) -> Self {
        Slots {
            per_key: per_key.max(1) as usize,
            // Nobody waits on it or holds one of its slots (each holds the semaphore): a new one would be the
            // same.
            by_key: Mutex::new(Registry::new(|slots| Arc::strong_count(slots) == 1)),
        }
    }

    /// Waits for a free slot of `key`, held until the returned permit is dropped.
    async fn slot(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        let per_key = self.per_key;
        let slots = lock(&self.by_key)
            .entry(key, || Arc::new(Semaphore::new(per_key)))
            .clone();
        // Never closed, so acquiring cannot fail.
        slots.acquire_owned().await.ok()
    }
}

/// A webhook's rate limiter, at the rate it was made for.
struct WebhookLimiter {
    per_second: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
    last_used: Instant,
}

impl EndpointLimits {
    /// Limits allowing at most `per_host` requests outstanding to one host, and `per_account` for one
    /// account, at a time.
    pub fn new(per_host: u32, per_account: u32) -> Self {
        EndpointLimits {
            limiters: Mutex::new(Registry::new(|entry| {
                Arc::strong_count(&entry.limiter) == 1 && entry.last_used.elapsed() >= LIMITER_IDLE
            })),
            clock: DefaultClock::default(),
            hosts: Slots::new(per_host),
            accounts: Slots::new(per_account),
        }
    }

    /// Drops the limits no endpoint is using (the daemon's periodic sweep).
    pub fn prune(&self) {
        lock(&self.limiters).prune();
        lock(&self.hosts.by_key).prune();
        lock(&self.accounts.by_key).prune();
    }

    /// Waits for a free request slot of account `account_id`; the slot is held until the returned permit is
    /// dropped. A task that names no account (from an older server) takes none.
    pub async fn account_slot(&self, account_id: &str) -> Option<OwnedSemaphorePermit> {
        if account_id.is_empty() {
            return None;
        }
        self.accounts.slot(account_id).await
    }

    /// Waits for a free request slot on `url`'s host (scheme, host and port); the slot is held until the
    /// returned permit is dropped.
    pub async fn host_slot(&self, url: &http::Uri) -> Option<OwnedSemaphorePermit> {
        let host = format!(
            "{}://{}",
            url.scheme_str().unwrap_or_default(),
            url.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        self.hosts.slot(&host).await
    }

    /// Waits until webhook `webhook_id` may receive one more request at `per_second`; says whether it had to
    /// wait (the rate limit was reached).
    pub async fn until_ready(&self, webhook_id: &str, per_second: u32) -> bool {
        let limiter = self.limiter(webhook_id, per_second);
        if limiter.check().is_ok() {
            return false;
        }
        limiter.until_ready().await;
        true
    }

    fn limiter(&self, webhook_id: &str, per_second: u32) -> Arc<DefaultDirectRateLimiter> {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let new = || WebhookLimiter {
            per_second: rate.get(),
            limiter: Arc::new(RateLimiter::direct_with_clock(
                Quota::per_second(rate),
                self.clock.clone(),
            )),
            last_used: Instant::now(),
        };
        let mut limiters = lock(&self.limiters);
        let entry = limiters.entry(webhook_id, new);
        if entry.per_second != rate.get() {
            // The admin changed the rate: a new limiter picks it up.
            *entry = new();
        }
        entry.last_used = Instant::now();
        entry.limiter.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_hosts_are_forgotten_busy_ones_kept() {
        let limits = EndpointLimits::new(2, 2);
        // A host with a request outstanding all along.
        let uri = |url: &str| url.parse::<http::Uri>().expect("a valid URL");
        let busy = limits.host_slot(&uri("http://busy.example:80/")).await;
        for n in 0..1_000 {
            let slot = limits
                .host_slot(&uri(&format!("https://h{n}.example/hook")))
                .await;
            assert!(slot.is_some());
        }
        let hosts = limits.hosts.by_key.lock().expect("hosts").len();
        assert!(hosts < 200, "{hosts} hosts kept after 1,000 came and went");
        assert!(limits
            .hosts
            .by_key
            .lock()
            .expect("hosts")
            .contains("http://busy.example:80"));
        drop(busy);
    }

    #[tokio::test]
    async fn a_limiter_is_forgotten_only_once_it_could_no_longer_limit() {
        let limits = EndpointLimits::new(2, 2);
        limits.until_ready("wh_first", 1).await;
        for n in 0..1_000 {
            limits.until_ready(&format!("wh_{n}"), 1_000).await;
        }
        // All used within the last two seconds: none may go yet, however many there are.
        assert_eq!(limits.limiters.lock().expect("limiters").len(), 1_001);

        tokio::time::sleep(LIMITER_IDLE + Duration::from_millis(100)).await;
        for n in 0..100 {
            limits.until_ready(&format!("wh_later_{n}"), 1_000).await;
        }
        let limiters = limits.limiters.lock().expect("limiters");
        assert!(limiters.len() <= 100, "{} limiters kept", limiters.len());
        assert!(!limiters.contains("wh_first"));
    }

    #[tokio::test]
    async fn a_changed_rate_gets_a_new_limiter() {
        let limits = EndpointLimits::new(2, 2);
        let first = limits.limiter("wh_a", 5);
        assert!(Arc::ptr_eq(&first, &limits.limiter("wh_a", 5)));
        assert!(!Arc::ptr_eq(&first, &limits.limiter("wh_a", 6)));
    }
}
