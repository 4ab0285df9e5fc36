//! Per-endpoint rate limits: one `governor` limiter per webhook, at the rate its task carries. A task waits
//! for its own webhook's limiter only, so a limited endpoint never holds up the others.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

#[derive(Default)]
pub struct EndpointLimits {
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl EndpointLimits {
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
