//! Holdings: which leases a daemon is working on, across its streams.
//!
//! A task's request is *started* once it has its endpoint's turn and a request slot; from then on it is sent
//! and reported whatever happens to the stream it came on. A task not started when its stream ends is
//! dropped unsent: the server returns its lease to the queue (at once, or, if the server is shutting down,
//! when this daemon opens its next stream). The next stream names the previous one and the started leases
//! whose reports are not recorded yet (`StreamDeliveriesRequest.held`), so that the server passes those to
//! the new stream and returns the rest, instead of waiting for them to expire or sending them twice.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use kit_webhooks::proto::HeldLease;

#[derive(Default)]
pub(crate) struct Holdings(Mutex<State>);

#[derive(Default)]
struct State {
    /// The server's name for the current (or last) stream, if it gave one.
    stream: Option<String>,
    /// Counts streams; a task belongs to the stream of the generation it arrived in.
    generation: u64,
    open: bool,
    /// Started requests not yet seen recorded: delivery id to lease id.
    started: HashMap<String, String>,
}

impl Holdings {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the next stream request names: the previous stream and the leases still held from it.
    pub(crate) fn previous(&self) -> (String, Vec<HeldLease>) {
        let state = self.state();
        let held = match &state.stream {
            Some(_) => state
                .started
                .iter()
                .map(|(delivery_id, lease_id)| HeldLease {
                    delivery_id: delivery_id.clone(),
                    lease_id: lease_id.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        (state.stream.clone().unwrap_or_default(), held)
    }

    /// A stream opened (named `stream` by the server, if it names streams); returns its generation.
    pub(crate) fn opened(&self, stream: Option<String>) -> u64 {
        let mut state = self.state();
        state.generation += 1;
        state.stream = stream;
        state.open = true;
        state.generation
    }

    /// The server refused a stream but passed the held leases to a stream of this name.
    pub(crate) fn renamed(&self, stream: String) {
        self.state().stream = Some(stream);
    }

    /// The current stream ended: its tasks not started yet are not to be sent.
    pub(crate) fn closed(&self) {
        self.state().open = false;
    }

    /// Whether the task of `delivery_id`, which arrived on stream `generation`, may be sent now; if so it is
    /// held until [`Holdings::finished`].
    pub(crate) fn start(&self, generation: u64, delivery_id: &str, lease_id: &str) -> bool {
        let mut state = self.state();
        if !state.open || state.generation != generation {
            return false;
        }
        state
            .started
            .insert(delivery_id.to_owned(), lease_id.to_owned());
        true
    }

    /// The report of `delivery_id` was answered (or given up).
    pub(crate) fn finished(&self, delivery_id: &str) {
        self.state().started.remove(delivery_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_of_an_ended_stream_are_not_started_and_started_ones_are_named_next_time() {
        let holdings = Holdings::default();
        assert_eq!(holdings.previous(), (String::new(), Vec::new()));
        let first = holdings.opened(Some("dst_1".into()));
        assert!(holdings.start(first, "dlv_a", "lse_1"));
        assert!(holdings.start(first, "dlv_b", "lse_1"));
        holdings.finished("dlv_b");
        holdings.closed();
        assert!(!holdings.start(first, "dlv_c", "lse_1"), "its stream ended");
        let (previous, held) = holdings.previous();
        assert_eq!(previous, "dst_1");
        assert_eq!(
            held,
            vec![HeldLease {
                delivery_id: "dlv_a".into(),
                lease_id: "lse_1".into()
            }]
        );
        holdings.renamed("dst_2".into());
        assert_eq!(holdings.previous().0, "dst_2");
        let second = holdings.opened(Some("dst_3".into()));
        assert!(
            !holdings.start(first, "dlv_d", "lse_1"),
            "a task of an older stream"
        );
        assert!(holdings.start(second, "dlv_d", "lse_2"));
    }
}
