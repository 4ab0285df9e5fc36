//! The dispatcher: keeps every open daemon stream supplied with leased deliveries.
//!
//! Each stream runs one loop: claim (through the writer, `crate::writer`) as many due deliveries as it has room
//! for (`max_in_flight` minus its unreported leases), send them, then sleep until something may have changed:
//! an event published or a delivery re-queued (`AppState::deliveries_changed`), one of its own leases reported
//! (its wake-up: more room, which is worth a claim only if the last claim left deliveries due), the next
//! scheduled retry falling due, or at most a second. When the stream ends, for whatever reason, its
//! unreported leases go back to `pending` at once.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use kit_webhooks::proto;
use tokio::{sync::Notify, time::Instant};
use tonic::Status;

use crate::{api::convert, api::AppState, core::time, store::leases::Claim};

/// The longest an idle stream sleeps before looking for due deliveries again.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How often expired leases (of servers that died) are swept back into the queue.
const EXPIRY_SWEEP: Duration = Duration::from_secs(5);

/// One open stream's shared state: its wake-up, and how many of its leases have been reported here.
#[derive(Default)]
struct StreamState {
    wake: Notify,
    reported: AtomicU64,
}

/// The streams open on this server, by lease owner id.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<String, Arc<StreamState>>>,
}

impl Streams {
    fn open(&self, owner: &str) -> Arc<StreamState> {
        let state = Arc::new(StreamState::default());
        if let Ok(mut open) = self.open.lock() {
            open.insert(owner.to_owned(), state.clone());
        }
        state
    }

    fn close(&self, owner: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(owner);
        }
    }

    /// Tells stream `owner` (if it is open here) that one of its leases was reported.
    pub fn reported(&self, owner: &str) {
        let state = self
            .open
            .lock()
            .ok()
            .and_then(|open| open.get(owner).cloned());
        if let Some(state) = state {
            state.reported.fetch_add(1, Ordering::Relaxed);
            // `notify_one` keeps a permit when the stream is busy, so the wake-up is never lost.
            state.wake.notify_one();
        }
    }
}

pub type TaskSender = tokio::sync::mpsc::Sender<Result<proto::DeliveryTask, Status>>;

/// Feeds stream `owner` until its daemon goes away or the server shuts down, then releases its leases.
///
/// The stream's unreported leases are counted in memory (tasks sent minus reports recorded here) rather than
/// queried on every turn; when the stream looks full and nothing has woken it for a while, the count is
/// taken from the database instead, which also covers reports that reached another server replica. It claims
/// in batches: once a quarter of its room is free, or whenever it holds nothing.
pub async fn run_stream(
    state: Arc<AppState>,
    owner: String,
    daemon_id: String,
    max_in_flight: u64,
    tx: TaskSender,
) {
    let stream = state.streams.open(&owner);
    tracing::info!(stream = %owner, daemon = %daemon_id, max_in_flight, "delivery stream opened");
    let ttl = state.config.lease_ttl();
    let batch = (max_in_flight / 4).max(1);
    let mut sent: u64 = 0;
    let mut renewed = Instant::now();
    // Whether a claim may find anything. False once a claim found the due range empty, until something new
    // may have arrived (a publish, a release, a retry falling due): the stream's own reports free room but
    // bring no new deliveries, and claiming on each of them would be a write cycle for nothing.
    let mut maybe_due = true;
    loop {
        // Register for wake-ups before looking, so a change during the claim is not missed.
        let changed = state.deliveries_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();

        let held = sent.saturating_sub(stream.reported.load(Ordering::Relaxed));
        let room = max_in_flight.saturating_sub(held);
        if maybe_due && (room >= batch || (held == 0 && room > 0)) {
            match feed(&state, &owner, room, &tx).await {
                Ok(Some((n, more_due))) => {
                    sent += n;
                    maybe_due = more_due;
                    if n > 0 && more_due {
                        continue;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(stream = %owner, error = %err, "claiming deliveries failed; retrying");
                }
            }
        }
        if renewed.elapsed() >= ttl / 3 {
            let expires = time::now_ms() + ttl.as_millis() as i64;
            if let Err(err) = state.store.renew_leases(&owner, expires).await {
                tracing::warn!(stream = %owner, error = %err, "renewing leases failed");
            }
            renewed = Instant::now();
        }
        let sleep = if maybe_due {
            IDLE_POLL
        } else {
            until_next_due(&state).await
        };
        tokio::select! {
            _ = &mut changed => maybe_due = true,
            _ = stream.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {
                maybe_due = true;
                let held = sent.saturating_sub(stream.reported.load(Ordering::Relaxed));
                if held > 0 {
                    // Quiet while holding leases: recount them where every replica records reports.
                    match state.store.count_leases(&owner).await {
                        Ok(held) => sent = stream.reported.load(Ordering::Relaxed) + held,
                        Err(err) => tracing::warn!(stream = %owner, error = %err, "counting leases failed"),
                    }
                }
            }
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

/// Claims up to `room` due deliveries (through the writer, in its next cycle) and sends them. Returns how many
/// were sent and whether more may be due ([`crate::store::leases::Claimed::more_due`]); `None` when the
/// daemon is gone.
async fn feed(
    state: &AppState,
    owner: &str,
    room: u64,
    tx: &TaskSender,
) -> Result<Option<(u64, bool)>, crate::core::Error> {
    let started = Instant::now();
    let claimed = state
        .writer
        .claim(Claim {
            owner: owner.to_owned(),
            room,
        })
        .await?;
    tracing::debug!(stream = %owner, room, claimed = claimed.leased.len(), more_due = claimed.more_due, took = ?started.elapsed(), "claimed");
    let timeout_ms = state.config.request_timeout.as_millis() as u32;
    let now = time::now_ms();
    // The deliveries of one event fell due together and sit side by side in a claim; they send the same
    // body, so it is built once per event, not once per webhook.
    let mut last: Option<(&str, Vec<u8>)> = None;
    for lease in &claimed.leased {
        let body = match &last {
            Some((event_id, body)) if *event_id == lease.event_id => body.clone(),
            _ => {
                let body = convert::body(lease);
                last = Some((&lease.event_id, body.clone()));
                body
            }
        };
        if tx
            .send(Ok(convert::task(lease, body, timeout_ms, now)))
            .await
            .is_err()
        {
            return Ok(None);
        }
    }
    Ok(Some((claimed.leased.len() as u64, claimed.more_due)))
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
