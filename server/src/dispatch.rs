//! The dispatcher: keeps every open daemon stream supplied with leased deliveries.
//!
//! Each stream runs one loop: claim as many due deliveries as it has room for (`max_in_flight` minus its
//! unreported leases), send them, then sleep until something may have changed: an event published or a
//! delivery re-queued (`AppState::deliveries_changed`), one of its own leases reported (its wake-up), the
//! next scheduled retry falling due, or at most a second. When the stream ends, for whatever reason, its
//! unreported leases go back to `pending` at once.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kit_webhooks::proto;
use tokio::{sync::Notify, time::Instant};
use tonic::Status;

use crate::{api::convert, api::AppState, core::time};

/// The longest an idle stream sleeps before looking for due deliveries again.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often expired leases (of servers that died) are swept back into the queue.
const EXPIRY_SWEEP: Duration = Duration::from_secs(5);

/// The streams open on this server, by lease owner id, each with its wake-up.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Streams {
    fn open(&self, owner: &str) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        if let Ok(mut open) = self.open.lock() {
            open.insert(owner.to_owned(), wake.clone());
        }
        wake
    }

    fn close(&self, owner: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(owner);
        }
    }

    /// Tells stream `owner` (if it is open here) that one of its leases was reported.
    pub fn wake(&self, owner: &str) {
        let wake = self
            .open
            .lock()
            .ok()
            .and_then(|open| open.get(owner).cloned());
        if let Some(wake) = wake {
            // `notify_one` keeps a permit when the stream is busy, so the wake-up is never lost.
            wake.notify_one();
        }
    }
}

pub type TaskSender = tokio::sync::mpsc::Sender<Result<proto::DeliveryTask, Status>>;

/// Feeds stream `owner` until its daemon goes away or the server shuts down, then releases its leases.
pub async fn run_stream(
    state: Arc<AppState>,
    owner: String,
    daemon_id: String,
    max_in_flight: u64,
    tx: TaskSender,
) {
    let wake = state.streams.open(&owner);
    tracing::info!(stream = %owner, daemon = %daemon_id, max_in_flight, "delivery stream opened");
    let ttl = state.config.lease_ttl();
    let mut renewed = Instant::now();
    loop {
        // Register for wake-ups before looking, so a change during the claim is not missed.
        let changed = state.deliveries_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();

        let mut full = false;
        match feed(&state, &owner, max_in_flight, &tx).await {
            Ok(Fed::Closed) => break,
            Ok(Fed::Full) => full = true,
            Ok(Fed::Sent) => continue,
            Ok(Fed::Nothing) => {}
            Err(err) => {
                tracing::warn!(stream = %owner, error = %err, "claiming deliveries failed; retrying");
            }
        }
        if renewed.elapsed() >= ttl / 3 {
            let expires = time::now_ms() + ttl.as_millis() as i64;
            if let Err(err) = state.store.renew_leases(&owner, expires).await {
                tracing::warn!(stream = %owner, error = %err, "renewing leases failed");
            }
            renewed = Instant::now();
        }
        let sleep = if full {
            IDLE_POLL
        } else {
            until_next_due(&state).await
        };
        tokio::select! {
            _ = &mut changed => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = tx.closed() => break,
            _ = state.shutdown.cancelled() => break,
        }
    }
    state.streams.close(&owner);
    match state.store.release_leases(&owner).await {
        Ok(released) => {
            tracing::info!(stream = %owner, daemon = %daemon_id, released, "delivery stream closed");
            if released > 0 {
                state.deliveries_changed.notify_waiters();
            }
        }
        // The leases expire on their own; the delivery is late, not lost.
        Err(err) => tracing::error!(stream = %owner, error = %err, "releasing leases failed"),
    }
}

enum Fed {
    /// Tasks went out and there may be more.
    Sent,
    /// The stream has no room left.
    Full,
    /// Nothing is due.
    Nothing,
    /// The daemon is gone.
    Closed,
}

async fn feed(
    state: &AppState,
    owner: &str,
    max_in_flight: u64,
    tx: &TaskSender,
) -> Result<Fed, sea_orm::DbErr> {
    let held = state.store.count_leases(owner).await?;
    let room = max_in_flight.saturating_sub(held);
    if room == 0 {
        return Ok(Fed::Full);
    }
    let now = time::now_ms();
    let expires = now + state.config.lease_ttl().as_millis() as i64;
    let leased = state
        .store
        .claim_due(
            owner,
            room,
            u64::from(state.config.max_in_flight_per_webhook),
            now,
            expires,
        )
        .await?;
    if leased.is_empty() {
        return Ok(Fed::Nothing);
    }
    let timeout_ms = state.config.request_timeout.as_millis() as u32;
    for lease in &leased {
        if tx
            .send(Ok(convert::task(lease, timeout_ms, now)))
            .await
            .is_err()
        {
            return Ok(Fed::Closed);
        }
    }
    Ok(Fed::Sent)
}

/// How long to sleep when nothing is due: until the next scheduled attempt, at most [`IDLE_POLL`].
async fn until_next_due(state: &AppState) -> Duration {
    let now = time::now_ms();
    match state.store.next_due_at(now).await {
        Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now).max(1) as u64).min(IDLE_POLL),
        _ => IDLE_POLL,
    }
}

/// Returns leases whose expiry passed to the queue: at start-up, then every few seconds. Expired leases
/// belong to a server that died holding them; live servers renew theirs.
pub async fn sweep_expired_leases(state: Arc<AppState>) {
    loop {
        match state.store.expire_leases(time::now_ms()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(leases = n, "expired leases returned to the queue");
                state.deliveries_changed.notify_waiters();
            }
            Err(err) => tracing::warn!(error = %err, "sweeping expired leases failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}
