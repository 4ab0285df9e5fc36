//! The gRPC API layer: one service per file, each a thin shell that authorises the caller, validates the
//! request with `core` rules, calls `store`, and converts rows to messages (`convert`).

pub mod admission;
pub mod auth;
pub mod convert;
pub mod deliveries;
pub mod events;
pub mod webhooks;

use std::{sync::Arc, time::Duration};

use kit_webhooks::proto;
use tokio::sync::Notify;

use crate::{
    config::Config, core::Error, dispatch::Streams, replicas::DeliveriesChanged, store::Store,
    writer::Writer,
};

/// What every service shares.
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
    /// Cancelled when the server shuts down: streams end and release their leases.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppState {
    /// Waits until the delivery has an attempt recorded (or the request timeout and a margin have passed) and
    /// returns it as it then stands.
    pub async fn wait_for_attempt(
        &self,
        account: &str,
        delivery_id: &str,
    ) -> Result<proto::Delivery, Error> {
        let deadline =
            tokio::time::Instant::now() + self.config.request_timeout + Duration::from_secs(5);
        loop {
            // Register interest before reading, so a report between the read and the wait is not missed.
            let recorded = self.attempt_recorded.notified();
            tokio::pin!(recorded);
            recorded.as_mut().enable();
            let (row, attempts) = self
                .store
                .find_delivery(account, delivery_id)
                .await?
                .ok_or_else(|| Error::not_found("delivery", delivery_id))?;
            // The row's count, not the attempts list: the count changes in the same commit as the status,
            // and the attempts are read after the row, so they include every attempt it counts.
            if row.attempt_count > 0 || tokio::time::Instant::now() >= deadline {
                return Ok(convert::delivery(row, attempts));
            }
            let _ = tokio::time::timeout_at(deadline, recorded).await;
        }
    }
}
