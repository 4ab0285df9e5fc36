//! The loop that feeds one daemon stream: the I/O around its [`StreamState`]. Each turn puts a claim out if
//! the state says so, renews the stream's leases when they are a third of their TTL old, then waits for the
//! first [`WakeUp`] and applies it.

use std::{pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::{sync::futures::OwnedNotified, time::Instant};

use super::{
    stream_state::{Answer, DueRange, Put, StreamState},
    task, TaskSender, MAX_LEASE_AGE,
};
use crate::{
    core::{time, Error},
    state::AppState,
    store::leases::{Claimed, SendingEvent},
    streams::OpenStream,
    writer::{ClaimAnswer, StandingClaim},
};

/// A lease held this long is not turning over: its request is at an endpoint that does not answer, or
/// behind one. Far longer than a lease waits in a busy daemon's prefetch, far shorter than a request timeout.
const HELD_LONG: Duration = Duration::from_secs(2);
/// How often a stream counts its leases held for long.
const HELD_COUNT_EVERY: Duration = Duration::from_secs(1);

/// What ends a stream's wait.
pub enum WakeUp {
    /// The daemon went away or the server shuts down.
    Ended,
    /// Its claim was answered.
    Answered(Result<ClaimAnswer, Error>),
    /// One of its leases was reported: it has more room.
    Reported,
    /// Deliveries may have become due, here or on another replica.
    Changed,
    /// It slept its full time: its idle poll, or until the next scheduled attempt fell due.
    Quiet,
}

/// One stream being fed (see the module's doc).
pub struct StreamLoop {
    app: Arc<AppState>,
    owner: String,
    daemon_id: String,
    open: Arc<OpenStream>,
    tx: TaskSender,
    state: StreamState<StandingClaim>,
    renewed: Instant,
    /// When it last counted the leases held for long.
    counted_held: Instant,
    /// The longest it sleeps: its idle poll, short enough to renew its leases in time.
    idle_poll: Duration,
    /// While the due range is empty: when the next scheduled attempt falls due (at most `idle_poll` ahead).
    next_due: Option<Instant>,
    /// The next change notified. Registered before the reads that find the due range empty, and renewed only
    /// once it fires, so that nothing notified since the last read goes unseen while a claim is parked.
    changed: Pin<Box<OwnedNotified>>,
}

impl StreamLoop {
    /// Registers stream `owner` as open, with `taken_over` leases of its daemon's previous stream.
    pub fn open(
        app: Arc<AppState>,
        owner: String,
        daemon_id: String,
        max_in_flight: u64,
        taken_over: u64,
        tx: TaskSender,
    ) -> Self {
        let open = app.streams.open(&owner);
        tracing::info!(stream = %owner, daemon = %daemon_id, max_in_flight, "delivery stream opened");
        let idle_poll = app.config.idle_poll.min(app.config.lease_ttl() / 3);
        let changed = watch(&app);
        StreamLoop {
            state: StreamState::new(owner.as_str(), max_in_flight, taken_over),
            app,
            owner,
            daemon_id,
            open,
            tx,
            renewed: Instant::now(),
            counted_held: Instant::now(),
            idle_poll,
            next_due: None,
            changed,
        }
    }

    /// Puts a claim out, if the stream's state calls for one.
    pub async fn put_claim_out(&mut self) {
        match self.state.next_claim(self.open.reported()) {
            Some(Put::Read(claim)) => {
                let standing = self.app.writer.standing_claim(claim).await;
                self.state.put_out(standing);
            }
            Some(Put::Park(claim)) => self.state.put_out(self.app.writer.park_claim(claim)),
            None => {}
        }
    }

    /// Renews the stream's leases once a third of their TTL has passed since the last renewal.
    pub async fn renew_leases_if_due(&mut self) {
        let ttl = self.app.config.lease_ttl();
        if self.renewed.elapsed() < ttl / 3 {
            return;
        }
        let now = time::now_ms();
        let expires = now + ttl.as_millis() as i64;
        let issued_since = now - MAX_LEASE_AGE.as_millis() as i64;
        let renewed = self
            .app
            .store
            .renew_leases(&self.owner, expires, issued_since);
        if let Err(err) = renewed.await {
            tracing::warn!(stream = %self.owner, error = %err, "renewing leases failed");
        }
        self.renewed = Instant::now();
    }

    /// Counts, once a second, the leases it has held for longer than [`HELD_LONG`] (see `StreamState`).
    pub async fn count_held_if_due(&mut self) {
        if self.counted_held.elapsed() < HELD_COUNT_EVERY {
            return;
        }
        self.counted_held = Instant::now();
        let issued_before = time::now_ms() - HELD_LONG.as_millis() as i64;
        let counted = self
            .app
            .store
            .count_leases_issued_before(&self.owner, issued_before);
        match counted.await {
            Ok(held) => self.state.held_long(held),
            Err(err) => {
                tracing::warn!(stream = %self.owner, error = %err, "counting held leases failed")
            }
        }
    }

    /// Waits for the first thing that ends the stream's wait.
    pub async fn wait(&mut self) -> WakeUp {
        let sleep = self.sleep_time().await;
        // `biased`: a notification is seen before an answer that arrived with it, so that a claim is never
        // parked without a read after something was notified.
        let wake_up = tokio::select! {
            biased;
            _ = self.tx.closed() => WakeUp::Ended,
            _ = self.app.shutdown.cancelled() => WakeUp::Ended,
            _ = &mut self.changed => WakeUp::Changed,
            answer = answer_of(self.state.claim_out()) => WakeUp::Answered(answer),
            _ = self.open.woken() => WakeUp::Reported,
            _ = tokio::time::sleep(sleep) => WakeUp::Quiet,
        };
        if let WakeUp::Changed = wake_up {
            self.next_due = None;
            self.changed = watch(&self.app);
        }
        wake_up
    }

    /// Applies `wake_up`; false once the stream is to end.
    pub async fn apply(&mut self, wake_up: WakeUp) -> bool {
        match wake_up {
            WakeUp::Ended => false,
            WakeUp::Answered(answer) => self.take(answer).await,
            WakeUp::Reported => {
                self.state.woken();
                true
            }
            WakeUp::Changed => self.recheck().await,
            WakeUp::Quiet => {
                let open = self.recheck().await;
                self.recount().await;
                open
            }
        }
    }

    /// Sends what a claim leased and moves the stream's state on; false if the daemon is gone.
    async fn take(&mut self, answer: Result<ClaimAnswer, Error>) -> bool {
        let answer = match answer {
            Ok(ClaimAnswer {
                claimed,
                parked_again,
            }) => {
                let more_due = claimed.more_due;
                let Some(sent) = self.send(claimed).await else {
                    return false;
                };
                Answer::Leased {
                    sent,
                    more_due,
                    parked_again,
                }
            }
            Err(err) => {
                tracing::warn!(stream = %self.owner, error = %err, "claiming deliveries failed; retrying");
                Answer::Failed
            }
        };
        self.state.answered(answer);
        true
    }

    /// Something may have fallen due that a parked claim would not see: takes the claim back (with its
    /// answer, if a cycle has given it one meanwhile), to claim again with a read. False if the daemon is
    /// gone.
    async fn recheck(&mut self) -> bool {
        if let Some(claim) = self.state.take_claim() {
            let answer = claim.withdraw().await.map(|claimed| {
                claimed.map(|claimed| ClaimAnswer {
                    claimed,
                    parked_again: false,
                })
            });
            if let Some(answer) = answer {
                if !self.take(answer).await {
                    return false;
                }
            }
        }
        self.state.recheck();
        true
    }

    /// After a quiet spell while holding leases, counts them where every replica records reports (now that
    /// no claim of the stream is out, so that none is counted twice).
    async fn recount(&mut self) {
        if self.state.outstanding(self.open.reported()) == 0 {
            return;
        }
        match self.app.store.count_leases(&self.owner).await {
            Ok(owned) => self.state.recount(self.open.reported(), owned),
            Err(err) => {
                tracing::warn!(stream = %self.owner, error = %err, "counting leases failed")
            }
        }
    }

    /// How long to sleep at most: the idle poll, or while the due range is empty, until the next scheduled
    /// attempt falls due (read once per quiet spell; a retry scheduled meanwhile is notified).
    async fn sleep_time(&mut self) -> Duration {
        if self.state.due_range() != DueRange::Empty {
            self.next_due = None;
        } else if self.next_due.is_none() {
            self.next_due = Some(Instant::now() + self.until_next_due().await);
        }
        self.next_due.map_or(self.idle_poll, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    async fn until_next_due(&self) -> Duration {
        let now = time::now_ms();
        match self.app.store.next_due_at(now).await {
            Ok(Some(at)) => {
                Duration::from_millis(at.saturating_sub(now).max(1) as u64).min(self.idle_poll)
            }
            _ => self.idle_poll,
        }
    }

    /// Sends what a claim leased. Returns how many; `None` when the daemon is gone.
    async fn send(&self, claimed: Claimed) -> Option<u64> {
        tracing::debug!(stream = %self.owner, leased = claimed.leased.len(), more_due = claimed.more_due, "claimed");
        let timeout_ms = self.app.config.request_timeout.as_millis() as u32;
        let now = time::now_ms();
        // The deliveries of one event fell due together and sit side by side in a claim; they send the same
        // body, so it is built once per event, not once per webhook, and shared (`Bytes`), not copied.
        let count = claimed.leased.len() as u64;
        let mut last: Option<(Arc<SendingEvent>, Bytes)> = None;
        for lease in claimed.leased {
            let body = match &last {
                Some((event, body)) if Arc::ptr_eq(event, &lease.event) => body.clone(),
                _ => {
                    let body = Bytes::from(task::body(&lease));
                    last = Some((lease.event.clone(), body.clone()));
                    body
                }
            };
            let delivery = lease.delivery_id.clone();
            let task = match task::task(lease, body, timeout_ms, now, &self.app.secrets) {
                Ok(task) => task,
                // Only a database altered behind the server's back gets here (its start checked the keys):
                // the lease expires and the delivery waits, logged, rather than go out unsigned.
                Err(err) => {
                    tracing::error!(%delivery, error = %err, "cannot build the delivery's task");
                    continue;
                }
            };
            if self.tx.send(Ok(task)).await.is_err() {
                return None;
            }
        }
        Some(count)
    }

    /// Ends the stream. A stream whose daemon went away releases its leases; one ended by the shutdown keeps
    /// them, for its daemon to finish and report (the server drains them before it stops).
    pub async fn close(mut self) {
        if let Some(claim) = self.state.take_claim() {
            // Whatever a cycle leased to it is released below with the rest.
            let _ = claim.withdraw().await;
        }
        let (owner, daemon) = (&self.owner, &self.daemon_id);
        if self.app.shutdown.is_cancelled() {
            // The server stops, not the daemon: it goes on sending what it has started, and its reports are
            // recorded while the server drains, or after, through whichever stream it opens next. Kept before
            // closed: the drain waits for the open streams, then for the kept ones' leases.
            self.app.streams.keep(owner);
            self.app.streams.close(owner);
            tracing::info!(stream = %owner, %daemon, "delivery stream ended by shutdown; its leases stay with its daemon");
            return;
        }
        self.app.streams.close(owner);
        match self.app.store.release_leases(owner).await {
            Ok(released) => {
                tracing::info!(stream = %owner, %daemon, released, "delivery stream closed");
                if released > 0 {
                    self.app.deliveries_changed.notify();
                }
            }
            // The leases expire on their own; the delivery is late, not lost.
            Err(err) => tracing::error!(stream = %owner, error = %err, "releasing leases failed"),
        }
    }
}

/// The next change notified, registered now.
fn watch(app: &AppState) -> Pin<Box<OwnedNotified>> {
    let mut changed = Box::pin(app.deliveries_changed.notified());
    changed.as_mut().enable();
    changed
}

/// The next answer to `claim`, once it has one; never, while there is none.
async fn answer_of(claim: Option<&mut StandingClaim>) -> Result<ClaimAnswer, Error> {
    match claim {
        Some(claim) => claim.answer().await,
        None => std::future::pending().await,
    }
}
