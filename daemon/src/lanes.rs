//! The daemon's request slots, in two lanes, so that endpoints that answer late or never cannot take the
//! slots of those that answer promptly.
//!
//! A request takes a slot of the *prompt* lane (`--max-in-flight`) to start. One that has had no answer
//! after [`SLOW_AFTER`] moves to the *slow* lane (`--max-slow-in-flight`), giving its prompt slot back,
//! and its webhook is marked slow: that webhook's next requests start in the slow lane, until one of them
//! is answered within [`SLOW_AFTER`] again. A request waiting for an answer costs memory, not CPU, so the
//! slow lane may be larger; it is bounded all the same (each outstanding request holds a connection and
//! its buffers). When the slow lane is full, a request that turns slow keeps its prompt slot: the slots
//! in use never exceed the two lanes together.
//!
//! Accounts' and hosts' shares (`limiter`) hold across both lanes: they bound what one account or host has
//! outstanding, and the lanes keep what is outstanding for long from crowding out the rest.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use kit_webhooks::sync::lock;
use metrics::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::registry::Registry;

/// How long a request may go unanswered before it counts as slow. Well above an answering endpoint's usual
/// time, so that only an endpoint that is slow in itself, not one briefly queued behind others, is moved.
pub const SLOW_AFTER: Duration = Duration::from_millis(250);

/// The daemon's request slots.
pub struct Lanes {
    prompt: Arc<Semaphore>,
    slow: Arc<Semaphore>,
    /// Requests in the slow lane now, for the daemon's metrics.
    slow_in_use: Gauge,
    /// Webhooks whose latest request went unanswered past [`SLOW_AFTER`]; each request to one holds its mark,
    /// so that the mark is forgotten only when nothing of the webhook is outstanding.
    slow_webhooks: Mutex<Registry<Arc<()>>>,
}

/// A request's slot, in one lane or the other; given back when dropped.
pub struct Slot {
    permit: OwnedSemaphorePermit,
    /// The webhook's slow mark, held while the request is outstanding.
    mark: Option<Arc<()>>,
    /// The slow lane's gauge, while the slot is one of the slow lane's.
    slow: Option<Gauge>,
}

impl Slot {
    /// Whether the request holds a slot of the slow lane.
    pub fn is_slow(&self) -> bool {
        self.slow.is_some()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gauge) = &self.slow {
            gauge.decrement(1.0);
        }
    }
}

impl Lanes {
    pub fn new(prompt: u32, slow: u32, slow_in_use: Gauge) -> Self {
        Lanes {
            prompt: Arc::new(Semaphore::new(prompt.max(1) as usize)),
            slow: Arc::new(Semaphore::new(slow.max(1) as usize)),
            slow_in_use,
            // Nothing of it outstanding: forgotten, its next request finds out again, at the cost of a prompt
            // slot for SLOW_AFTER.
            slow_webhooks: Mutex::new(Registry::new(|mark| Arc::strong_count(mark) == 1)),
        }
    }

    /// Waits for a slot for a request to `webhook_id`: in the slow lane if the webhook is marked slow.
    pub async fn slot(&self, webhook_id: &str) -> Option<Slot> {
        let mark = lock(&self.slow_webhooks).get(webhook_id).cloned();
        let lane = if mark.is_some() {
            &self.slow
        } else {
            &self.prompt
        };
        // Never closed, so acquiring cannot fail.
        let permit = lane.clone().acquire_owned().await.ok()?;
        let slow = mark.is_some().then(|| self.slow_gauge());
        Some(Slot { permit, mark, slow })
    }

    /// The request holding `slot` has gone unanswered past [`SLOW_AFTER`]: marks its webhook slow, and moves
    /// the request to the slow lane if it has room.
    pub fn unanswered(&self, webhook_id: &str, slot: &mut Slot) {
        if slot.mark.is_none() {
            let mark = lock(&self.slow_webhooks)
                .entry(webhook_id, Arc::default)
                .clone();
            slot.mark = Some(mark);
        }
        if slot.is_slow() {
            return;
        }
        if let Ok(permit) = self.slow.clone().try_acquire_owned() {
            // The prompt slot is given back as its permit drops.
            slot.permit = permit;
            slot.slow = Some(self.slow_gauge());
        }
    }

    /// The request to `webhook_id` was answered within [`SLOW_AFTER`]: the webhook is prompt again.
    pub fn answered(&self, webhook_id: &str) {
        lock(&self.slow_webhooks).remove(webhook_id);
    }

    /// Drops the marks of webhooks with nothing outstanding (the daemon's periodic sweep).
    pub fn prune(&self) {
        lock(&self.slow_webhooks).prune();
    }

    /// The slow lane's gauge, counting one more request.
    fn slow_gauge(&self) -> Gauge {
        self.slow_in_use.increment(1.0);
        self.slow_in_use.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_request_gives_its_prompt_slot_back_and_its_webhook_starts_slow() {
        let lanes = Lanes::new(1, 2, Gauge::noop());
        let mut first = lanes.slot("wh_slow").await.expect("a slot");
        assert!(!first.is_slow());
        assert_eq!(lanes.prompt.available_permits(), 0);

        lanes.unanswered("wh_slow", &mut first);
        assert!(first.is_slow());
        assert_eq!(lanes.prompt.available_permits(), 1);
        // The marked webhook's next request starts in the slow lane; another webhook's in the prompt one.
        let second = lanes.slot("wh_slow").await.expect("a slot");
        assert!(second.is_slow());
        let other = lanes.slot("wh_other").await.expect("a slot");
        assert!(!other.is_slow());
        assert_eq!(lanes.slow.available_permits(), 0);

        // The slow lane is full: a request that turns slow keeps its prompt slot.
        let mut other = other;
        lanes.unanswered("wh_other", &mut other);
        assert!(!other.is_slow());
        assert_eq!(lanes.prompt.available_permits(), 0);

        // Answered in time: the webhook is prompt again.
        drop((first, second, other));
        lanes.answered("wh_slow");
        assert!(!lanes.slot("wh_slow").await.expect("a slot").is_slow());
    }

    #[tokio::test]
    async fn a_mark_is_forgotten_once_answered_or_when_nothing_of_it_is_outstanding() {
        let lanes = Lanes::new(4, 4, Gauge::noop());
        let mut slot = lanes.slot("wh_a").await.expect("a slot");
        lanes.unanswered("wh_a", &mut slot);
        let marked = |lanes: &Lanes| lock(&lanes.slow_webhooks).get("wh_a").is_some();
        lanes.prune();
        assert!(marked(&lanes), "kept while its request is outstanding");
        drop(slot);
        lanes.answered("wh_a");
        assert!(!marked(&lanes), "forgotten once answered in time");

        let mut slot = lanes.slot("wh_a").await.expect("a slot");
        lanes.unanswered("wh_a", &mut slot);
        drop(slot);
        lanes.prune();
        assert!(
            !marked(&lanes),
            "forgotten when nothing of it is outstanding"
        );
    }
}
