//! The dispatcher: keeps every open daemon stream supplied with leased deliveries.
//!
//! Each stream runs one loop: claim (through the writer, `crate::writer`) as many due deliveries as it has room
//! for (`max_in_flight` minus its unreported leases), send them, then wait until something may have changed:
//! its claim answered (a claim that found nothing due waits in the writer for the next publish, which leases
//! its new deliveries to it as it stores them; one answered with room left and nothing more due stays
//! parked there, answered again by the next publish), deliveries left pending or re-queued
//! (`AppState::deliveries_changed`, here or on another replica: `crate::replicas`), one of its own leases
//! reported (more room), the next scheduled retry falling due, or at most its idle poll (a second). When the
//! stream ends, for whatever reason, its unreported leases go back to `pending` at once.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use kit_webhooks::proto;
use tokio::{sync::Notify, time::Instant};
use tonic::Status;

use crate::{
    api::convert,
    api::AppState,
    core::time,
    store::leases::{Claim, Claimed, SendingEvent},
    writer::{ClaimAnswer, StandingClaim},
};

/// How often expired leases (of servers that died) are swept back into the queue.
const EXPIRY_SWEEP: Duration = Duration::from_secs(5);
/// The longest a stream keeps renewing one lease: well past the longest a daemon takes to send a request and
/// have it recorded (waiting for its endpoint's turn, the request timeout, and retrying its report through
/// a server outage). A lease still unreported after that was given up by its daemon; it expires and its
/// delivery goes back to the queue.
pub const MAX_LEASE_AGE: Duration = Duration::from_secs(600);

/// One open stream's shared state: its wake-up, and how many of its leases have been reported here.
#[derive(Default)]
struct StreamState {
    wake: Notify,
    reported: AtomicU64,
}

/// The streams open on this server, by lease owner id, and those that kept their leases at shutdown.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<String, Arc<StreamState>>>,
    kept: Mutex<Vec<String>>,
}

impl Streams {
    /// How many streams are open.
    pub fn open_count(&self) -> usize {
        self.open.lock().map_or(0, |open| open.len())
    }

    /// Notes that stream `owner` ended at shutdown with its leases kept for its daemon to report.
    pub fn keep(&self, owner: &str) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.push(owner.to_owned());
        }
    }

    /// The streams that ended at shutdown with their leases kept.
    pub fn kept(&self) -> Vec<String> {
        self.kept
            .lock()
            .map(|kept| kept.clone())
            .unwrap_or_default()
    }

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

    /// Tells stream `owner` (if it is open here) that `count` of its leases were reported.
    pub fn reported(&self, owner: &str, count: u64) {
        let state = self
            .open
            .lock()
            .ok()
            .and_then(|open| open.get(owner).cloned());
        if let Some(state) = state {
            state.reported.fetch_add(count, Ordering::Relaxed);
            // `notify_one` keeps a permit when the stream is busy, so the wake-up is never lost.
            state.wake.notify_one();
        }
    }
}

pub type TaskSender = tokio::sync::mpsc::Sender<Result<proto::DeliveryTask, Status>>;

/// Feeds stream `owner` until its daemon goes away or the server shuts down. A stream whose daemon went away
/// releases its leases; one ended by the shutdown keeps them, for its daemon to finish and report (the
/// server drains them before it stops: `crate::start_with_signal`). `taken_over` is how many leases of the
/// daemon's previous stream it holds from the start.
///
/// The stream's unreported leases are counted in memory (tasks sent minus reports recorded here) rather than
/// queried on every turn; when the stream looks full and nothing has woken it for a while, the count is
/// taken from the database instead, which also covers reports that reached another server replica. It claims
/// in batches: once a quarter of its room is free, or whenever it holds nothing. While it has room it always
/// has a claim out: one that reads the due range when something may be due, otherwise one parked in the
/// writer for the next publish to fill ([`StandingClaim`]).
pub async fn run_stream(
    state: Arc<AppState>,
    owner: String,
    daemon_id: String,
    max_in_flight: u64,
    taken_over: u64,
    tx: TaskSender,
) {
    let stream = state.streams.open(&owner);
    tracing::info!(stream = %owner, daemon = %daemon_id, max_in_flight, "delivery stream opened");
    let ttl = state.config.lease_ttl();
    let batch = (max_in_flight / 4).max(1);
    let mut sent: u64 = taken_over;
    let mut renewed = Instant::now();
    // Whether a claim may find anything due. False once a claim found the due range empty, until something
    // new may have arrived (a publish that left deliveries pending, a release, a retry falling due): then the
    // stream's claim is parked without a read, since a read would find nothing.
    let mut maybe_due = true;
    // Whether the last claim answered left due deliveries behind: the next one will most likely lease from
    // a backlog too, and not be parked again.
    let mut backlog = false;
    // Set after a claim that leased nothing (its webhooks at their cap) or failed: wait to be woken first.
    let mut hold_off = false;
    // The stream's claim while one is out: queued, in a cycle, or parked.
    let mut claim: Option<StandingClaim> = None;
    // Set when the stream slept its full time without being woken.
    let mut quiet = false;
    // The longest the stream sleeps: its idle poll, short enough to renew its leases in time.
    let idle_poll = state.config.idle_poll.min(ttl / 3);
    // While nothing may be due: when the next scheduled attempt falls due (at most `idle_poll` ahead).
    let mut next_due: Option<Instant> = None;
    // Registered before the reads that set `maybe_due` to false, and renewed only once it fires, so that
    // nothing notified since the last read goes unseen while a claim is parked.
    let mut changed = Box::pin(state.deliveries_changed.notified());
    changed.as_mut().enable();
    loop {
        let held = sent.saturating_sub(stream.reported.load(Ordering::Relaxed));
        let room = max_in_flight.saturating_sub(held);
        if claim.is_none() && !hold_off && (room >= batch || (held == 0 && room > 0)) {
            let mut request = Claim::new(owner.as_str(), room);
            request.backlog = backlog;
            claim = Some(if maybe_due {
                state.writer.standing_claim(request).await
            } else {
                state.writer.park_claim(request)
            });
        }
        if renewed.elapsed() >= ttl / 3 {
            let now = time::now_ms();
            let expires = now + ttl.as_millis() as i64;
            let issued_since = now - MAX_LEASE_AGE.as_millis() as i64;
            if let Err(err) = state
                .store
                .renew_leases(&owner, expires, issued_since)
                .await
            {
                tracing::warn!(stream = %owner, error = %err, "renewing leases failed");
            }
            renewed = Instant::now();
        }
        if maybe_due {
            next_due = None;
        } else if next_due.is_none() {
            // Read once per quiet spell, not on every wake-up: a retry scheduled meanwhile is notified.
            next_due = Some(Instant::now() + until_next_due(&state, idle_poll).await);
        }
        let sleep = next_due.map_or(idle_poll, |at| at.saturating_duration_since(Instant::now()));
        // `biased`: a notification is seen before an answer that arrived with it, so that a claim is never
        // parked without a read after something was notified.
        let answer = tokio::select! {
            biased;
            _ = tx.closed() => break,
            _ = state.shutdown.cancelled() => break,
            _ = &mut changed => {
                next_due = None;
                changed = Box::pin(state.deliveries_changed.notified());
                changed.as_mut().enable();
                None
            }
            answer = answer_of(&mut claim) => Some(answer),
            _ = stream.wake.notified() => {
                hold_off = false;
                continue;
            }
            _ = tokio::time::sleep(sleep) => {
                quiet = true;
                None
            }
        };
        // No answer: something may have fallen due that a parked claim would not see. Take the claim back
        // (or its answer, if a cycle has it already) and claim again with a read.
        let recheck = answer.is_none();
        let answer = match answer {
            // Parked again by the cycle that answered it: the claim stays out, with the room it has left.
            Some(Ok(ClaimAnswer {
                claimed,
                parked_again,
            })) => {
                if !parked_again {
                    claim = None;
                }
                Some(Ok(claimed))
            }
            Some(Err(err)) => {
                claim = None;
                Some(Err(err))
            }
            None => match claim.take() {
                Some(standing) => standing.withdraw().await,
                None => None,
            },
        };
        match answer {
            None => {}
            Some(Ok(claimed)) => {
                let more_due = claimed.more_due;
                let Some(n) = send(&state, &owner, claimed, &tx).await else {
                    break;
                };
                sent += n;
                maybe_due = more_due;
                backlog = more_due;
                hold_off = n == 0;
            }
            Some(Err(err)) => {
                tracing::warn!(stream = %owner, error = %err, "claiming deliveries failed; retrying");
                maybe_due = true;
                hold_off = true;
            }
        }
        if recheck {
            maybe_due = true;
            hold_off = false;
        }
        let held = sent.saturating_sub(stream.reported.load(Ordering::Relaxed));
        if std::mem::take(&mut quiet) && held > 0 {
            // Quiet while holding leases: recount them where every replica records reports (now that no
            // claim of this stream is out, so that none is counted twice).
            match state.store.count_leases(&owner).await {
                Ok(held) => sent = stream.reported.load(Ordering::Relaxed) + held,
                Err(err) => tracing::warn!(stream = %owner, error = %err, "counting leases failed"),
            }
        }
    }
    if let Some(standing) = claim.take() {
        // Whatever a cycle leased to it is released below with the rest.
        let _ = standing.withdraw().await;
    }
    if state.shutdown.is_cancelled() {
        // The server stops, not the daemon: it goes on sending what it has started, and its reports are
        // recorded while the server drains, or after, through whichever stream it opens next.
        state.streams.keep(&owner);
        state.streams.close(&owner);
        tracing::info!(stream = %owner, daemon = %daemon_id, "delivery stream ended by shutdown; its leases stay with its daemon");
        return;
    }
    state.streams.close(&owner);
    match state.store.release_leases(&owner).await {
        Ok(released) => {
            tracing::info!(stream = %owner, daemon = %daemon_id, released, "delivery stream closed");
            if released > 0 {
                state.deliveries_changed.notify();
            }
        }
        // The leases expire on their own; the delivery is late, not lost.
        Err(err) => tracing::error!(stream = %owner, error = %err, "releasing leases failed"),
    }
}

/// The next answer to `claim`, once it has one; never, while there is none.
async fn answer_of(claim: &mut Option<StandingClaim>) -> Result<ClaimAnswer, crate::core::Error> {
    match claim {
        Some(claim) => claim.answer().await,
        None => std::future::pending().await,
    }
}

/// Sends what a claim leased. Returns how many; `None` when the daemon is gone.
async fn send(state: &AppState, owner: &str, claimed: Claimed, tx: &TaskSender) -> Option<u64> {
    tracing::debug!(stream = %owner, leased = claimed.leased.len(), more_due = claimed.more_due, "claimed");
    let timeout_ms = state.config.request_timeout.as_millis() as u32;
    let now = time::now_ms();
    // The deliveries of one event fell due together and sit side by side in a claim; they send the same
    // body, so it is built once per event, not once per webhook, and shared (`Bytes`), not copied.
    let count = claimed.leased.len() as u64;
    let mut last: Option<(Arc<SendingEvent>, Bytes)> = None;
    for lease in claimed.leased {
        let body = match &last {
            Some((event, body)) if Arc::ptr_eq(event, &lease.event) => body.clone(),
            _ => {
                let body = Bytes::from(convert::body(&lease));
                last = Some((lease.event.clone(), body.clone()));
                body
            }
        };
        if tx
            .send(Ok(convert::task(lease, body, timeout_ms, now)))
            .await
            .is_err()
        {
            return None;
        }
    }
    Some(count)
}

/// How long to sleep when nothing is due: until the next scheduled attempt, at most `idle_poll`.
async fn until_next_due(state: &AppState, idle_poll: Duration) -> Duration {
    let now = time::now_ms();
    match state.store.next_due_at(now).await {
        Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now).max(1) as u64).min(idle_poll),
        _ => idle_poll,
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
                state.deliveries_changed.notify();
            }
            Err(err) => tracing::warn!(error = %err, "sweeping expired leases failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}
