//! Per-endpoint limits: one `governor` rate limiter per webhook, at the rate its task carries, and caps on
//! the requests outstanding at once to one host and for one account. A task waits for its own webhook's,
//! account's and host's limits only, so a limited or slow endpoint never holds up the others.
//!
//! The caps are shares of the daemon's request slots (by default a quarter per host, half per account): a
//! host that never answers, or an account whose endpoints all hang, holds at most its share of them for a
//! request timeout, and the other hosts and accounts go on with the rest. The host cap also bounds memory:
//! every outstanding HTTP/1.1 request holds a connection of its own (some 25 KB of client state each).
//!
//! Limits are kept per key in a [`Registry`] that drops the idle ones whenever it has doubled in size since it
//! last did, so a daemon that sends to millions of endpoints over its life keeps only those in use.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A rate limiter left alone this long is as full as a new one (a quota of N per second refills within a
/// second), so dropping it forgets nothing.
const LIMITER_IDLE: Duration = Duration::from_secs(2);

pub struct EndpointLimits {
    limiters: Mutex<Registry<WebhookLimiter>>,
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
            by_key: Mutex::default(),
        }
    }

    /// Waits for a free slot of `key`, held until the returned permit is dropped.
    async fn slot(&self, key: &str) -> Option<OwnedSemaphorePermit> {
        let per_key = self.per_key;
        let slots = self
            .by_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(
                key,
                // Nobody waits on it or holds one of its slots: a new one would be the same.
                |slots| Arc::strong_count(slots) == 1 && slots.available_permits() == per_key,
                || Arc::new(Semaphore::new(per_key)),
            )
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

/// Values by key, pruned of those `idle` says can go whenever the map has doubled since the last prune.
struct Registry<T> {
    entries: HashMap<String, T>,
    prune_at: usize,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            entries: HashMap::new(),
            prune_at: 64,
        }
    }
}

impl<T> Registry<T> {
    /// The value for `key`, made by `new` if there is none (after pruning, if the map has grown enough).
    fn entry(&mut self, key: &str, idle: impl Fn(&T) -> bool, new: impl FnOnce() -> T) -> &mut T {
        if !self.entries.contains_key(key) {
            if self.entries.len() >= self.prune_at {
                self.entries.retain(|_, value| !idle(value));
                self.prune_at = (self.entries.len() * 2).max(64);
            }
            return self.entries.entry(key.to_owned()).or_insert_with(new);
        }
        // Looked up by `&str`: the key is copied only when it is new (this runs for every delivery).
        self.entries
            .get_mut(key)
            .expect("the key is present: contains_key said so just above")
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

impl EndpointLimits {
    /// Limits allowing at most `per_host` requests outstanding to one host, and `per_account` for one
    /// account, at a time.
    pub fn new(per_host: u32, per_account: u32) -> Self {
        EndpointLimits {
            limiters: Mutex::default(),
            hosts: Slots::new(per_host),
            accounts: Slots::new(per_account),
        }
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
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            last_used: Instant::now(),
        };
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = limiters.entry(
            webhook_id,
            |entry| {
                Arc::strong_count(&entry.limiter) == 1 && entry.last_used.elapsed() >= LIMITER_IDLE
            },
            new,
        );
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
            .entries
            .contains_key("http://busy.example:80"));
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
        assert!(!limiters.entries.contains_key("wh_first"));
    }

    #[tokio::test]
    async fn a_changed_rate_gets_a_new_limiter() {
        let limits = EndpointLimits::new(2, 2);
        let first = limits.limiter("wh_a", 5);
        assert!(Arc::ptr_eq(&first, &limits.limiter("wh_a", 5)));
        assert!(!Arc::ptr_eq(&first, &limits.limiter("wh_a", 6)));
    }
}
