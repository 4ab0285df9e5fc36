//! The dispatcher: keeps every open daemon stream supplied with leased deliveries.
//!
//! Each stream runs one loop ([`run_stream`], the I/O in [`stream_loop`], the decisions in [`stream_state`]):
//! claim, through the writer (`crate::writer`), as many due deliveries as it has room for, send them, then wait
//! until something may have changed: its claim answered (a claim that found nothing due waits in the writer
//! for the next publish, which leases its new deliveries to it as it stores them), deliveries left pending or
//! re-queued (`AppState::deliveries_changed`, here or on another replica: `crate::replicas`), one of its own
//! leases reported (more room), the next scheduled retry falling due, or at most its idle poll. When the
//! stream ends because its daemon went away, its unreported leases go back to `pending` at once.

pub mod stream_loop;
pub mod stream_state;
pub mod task;

use std::{sync::Arc, time::Duration};

use kit_webhooks::proto;
use tonic::Status;

use crate::{core::time, state::AppState};
use stream_loop::StreamLoop;

/// How often expired leases (of servers that died) are swept back into the queue.
const EXPIRY_SWEEP: Duration = Duration::from_secs(5);
/// The longest a stream keeps renewing one lease: well past the longest a daemon takes to send a request and
/// have it recorded (waiting for its endpoint's turn, the request timeout, and retrying its report through
/// a server outage). A lease still unreported after that was given up by its daemon; it expires and its
/// delivery goes back to the queue.
pub const MAX_LEASE_AGE: Duration = Duration::from_secs(600);

pub type TaskSender = tokio::sync::mpsc::Sender<Result<proto::DeliveryTask, Status>>;

/// Feeds stream `owner` until its daemon goes away or the server shuts down. `taken_over` is how many
/// leases of the daemon's previous stream it holds from the start.
///
/// The stream's unreported leases are counted in memory (tasks sent minus reports recorded here) rather than
/// queried on every turn; after a quiet spell with leases outstanding, the count is taken from the database
/// instead, which also covers reports that reached another server replica.
pub async fn run_stream(
    app: Arc<AppState>,
    owner: String,
    daemon_id: String,
    max_in_flight: u64,
    taken_over: u64,
    tx: TaskSender,
) {
    let mut stream = StreamLoop::open(app, owner, daemon_id, max_in_flight, taken_over, tx);
    loop {
        stream.put_claim_out().await;
        stream.renew_leases_if_due().await;
        stream.count_held_if_due().await;
        let wake_up = stream.wait().await;
        if !stream.apply(wake_up).await {
            break;
        }
    }
    stream.close().await;
}

/// Returns leases whose expiry passed to the queue: at start-up, then every few seconds. Expired leases
/// belong to a server that died holding them; live servers renew theirs. The same sweep lets go of
/// deliveries held back by a lease cap whose webhook has room again without a report having said so (a
/// stream that ended, an expired lease, another replica's report: `crate::store::leases::held_back`).
pub async fn sweep_expired_leases(state: Arc<AppState>) {
    loop {
        match state.store.expire_leases(time::now_ms()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(leases = n, "expired leases returned to the queue");
                state.deliveries_changed.notify();
            }
            Err(err) => tracing::warn!(error = %err, "sweeping expired leases failed"),
        }
        match state
            .store
            .release_held_back(state.config.lease_caps())
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(deliveries = n, "deliveries held back by a lease cap let go");
                state.deliveries_changed.notify();
            }
            Err(err) => tracing::warn!(error = %err, "letting go of held-back deliveries failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}
