//! The state every part of a running server shares: the store, the writer, the open streams, the wake-ups,
//! the metrics and the configuration. It sits below `dispatch` and `api`, which both work on it.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::{
    config::Config, metrics::Metrics, replicas::DeliveriesChanged, store::Store, streams::Streams,
    watch::Watchers, writer::Writer,
};

/// What every service and every stream shares.
pub struct AppState {
    pub store: Store,
    pub config: Config,
    /// Woken whenever deliveries may have become due (published, retried, resumed, released), here or on
    /// another replica sharing the database.
    pub deliveries_changed: Arc<DeliveriesChanged>,
    /// Woken whenever an attempt has been recorded.
    pub attempt_recorded: Notify,
    /// Commits publishes, attempt reports and lease claims, many to a transaction.
    pub writer: Writer,
    /// The daemon streams open on this server.
    pub streams: Streams,
    /// Whoever watches webhook changes (`WatchWebhooks`).
    pub watchers: Watchers,
    /// Seals and opens webhook signing secrets (`crate::secrets`).
    pub secrets: crate::core::sealing::Keyring,
    /// What the server counts (`crate::metrics`).
    pub metrics: Metrics,
    /// Cancelled when the server shuts down: streams end, keeping their leases for their daemons to report.
    pub shutdown: tokio_util::sync::CancellationToken,
}
