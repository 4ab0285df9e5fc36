//! Leases: which leases a daemon is working on, across its streams.
//!
//! A task's request is *started* once it has its endpoint's turn and a request slot; from then on it is sent
//! and reported whatever happens to the stream it came on. A task not started when its stream ends is
//! dropped unsent: the server returns its lease to the queue (at once, or, if the server is shutting down,
//! when this daemon opens its next stream). The next stream names the previous one and the started leases
//! whose reports are not recorded yet (`StreamDeliveriesRequest.started`), so that the server passes those to
//! the new stream and returns the rest, instead of waiting for them to expire or sending them twice.

use std::{collections::HashMap, sync::Mutex};

use kit_webhooks::proto::StartedLease;

#[derive(Default)]
pub(crate) struct Leases(Mutex<State>);

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

impl Leases {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        kit_webhooks::sync::lock(&self.0)
    }

    /// What the next stream request names: the previous stream and the leases started on it and not recorded.
    pub(crate) fn previous(&self) -> (String, Vec<StartedLease>) {
        let state = self.state();
        let started = match &state.stream {
            Some(_) => state
                .started
                .iter()
                .map(|(delivery_id, lease_id)| StartedLease {
                    delivery_id: delivery_id.clone(),
                    lease_id: lease_id.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        (state.stream.clone().unwrap_or_default(), started)
    }

    /// A stream opened (named `stream` by the server, if it names streams); returns its generation.
    pub(crate) fn opened(&self, stream: Option<String>) -> u64 {
        let mut state = self.state();
        state.generation += 1;
        state.stream = stream;
        state.open = true;
        state.generation
    }

    /// The server refused a stream but passed the started leases to a stream of this name.
    pub(crate) fn renamed(&self, stream: String) {
        self.state().stream = Some(stream);
    }

    /// The current stream ended: its tasks not started yet are not to be sent.
    pub(crate) fn closed(&self) {
        self.state().open = false;
    }

    /// Whether a stream is open now.
    pub(crate) fn is_open(&self) -> bool {
        self.state().open
    }

    /// Whether the task of `delivery_id`, which arrived on stream `generation`, may be sent now; if so it is
    /// counted as started until [`Leases::finished`].
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
        let leases = Leases::default();
        assert_eq!(leases.previous(), (String::new(), Vec::new()));
        let first = leases.opened(Some("dst_1".into()));
        assert!(leases.start(first, "dlv_a", "lse_1"));
        assert!(leases.start(first, "dlv_b", "lse_1"));
        leases.finished("dlv_b");
        assert!(leases.is_open());
        leases.closed();
        assert!(!leases.is_open());
        assert!(!leases.start(first, "dlv_c", "lse_1"), "its stream ended");
        let (previous, started) = leases.previous();
        assert_eq!(previous, "dst_1");
        assert_eq!(
            started,
            vec![StartedLease {
                delivery_id: "dlv_a".into(),
                lease_id: "lse_1".into()
            }]
        );
        leases.renamed("dst_2".into());
        assert_eq!(leases.previous().0, "dst_2");
        let second = leases.opened(Some("dst_3".into()));
        assert!(
            !leases.start(first, "dlv_d", "lse_1"),
            "a task of an older stream"
        );
        assert!(leases.start(second, "dlv_d", "lse_2"));
    }
}
