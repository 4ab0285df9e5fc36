//! The writer: every write on the delivery path (publishing an event, recording an attempt report, leasing
//! deliveries to a stream) is queued here, and one task commits whatever has queued up, of all three
//! kinds, in one transaction per cycle ([`Store::commit_writes`]).
//!
//! Under load a cycle carries many writes for the price of one commit; when idle, a write is committed at
//! once. A caller still returns only after its own write is committed (or refused), so nothing is
//! acknowledged before it is durable, and a lease is never handed out before it is on record.

use std::sync::Arc;

use sea_orm::DbBackend;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{
    core::{time, Error},
    store::{
        entity::event,
        events::Published,
        leases::{AttemptReport, Claim, Claimed, Recorded},
        writes::{WriteRules, Writes},
        Store,
    },
};

/// Writes of each kind taken into one cycle, at most: enough to amortise a commit, few enough that one
/// cycle does not keep the others waiting long.
const MAX_EVENTS: usize = 256;
const MAX_REPORTS: usize = 1024;
const MAX_CLAIMS: usize = 64;
const QUEUE: usize = 8192;
/// Committers on PostgreSQL. Cycles in parallel do not deadlock: reports lock their deliveries and webhooks
/// in id order, and claims skip locked rows instead of waiting for them.
const POSTGRES_COMMITTERS: usize = 3;

type Queued<I, O> = (I, oneshot::Sender<Result<O, Error>>);

#[derive(Clone)]
pub struct Writer {
    events: mpsc::Sender<Queued<event::Model, Published>>,
    reports: mpsc::Sender<Queued<AttemptReport, Recorded>>,
    claims: mpsc::Sender<Queued<Claim, Claimed>>,
}

struct Queues {
    events: mpsc::Receiver<Queued<event::Model, Published>>,
    reports: mpsc::Receiver<Queued<AttemptReport, Recorded>>,
    claims: mpsc::Receiver<Queued<Claim, Claimed>>,
}

impl Writer {
    /// Starts the committing tasks: one on SQLite (it has one writer connection anyway), a few on
    /// PostgreSQL, where one cycle can be built and sent while another waits for its commit. They end when
    /// every `Writer` handle is dropped.
    pub fn spawn(store: Store, rules: WriteRules) -> Writer {
        let (events, events_rx) = mpsc::channel(QUEUE);
        let (reports, reports_rx) = mpsc::channel(QUEUE);
        let (claims, claims_rx) = mpsc::channel(QUEUE);
        let queues = Arc::new(Mutex::new(Queues {
            events: events_rx,
            reports: reports_rx,
            claims: claims_rx,
        }));
        let committers = match store.backend() {
            DbBackend::Postgres => POSTGRES_COMMITTERS,
            _ => 1,
        };
        for _ in 0..committers {
            tokio::spawn(run(store.clone(), rules.clone(), queues.clone()));
        }
        Writer {
            events,
            reports,
            claims,
        }
    }

    /// Stores `event` and its fan-out; returns once committed.
    pub async fn publish(&self, event: event::Model) -> Result<Published, Error> {
        submit(&self.events, event).await
    }

    /// Records one attempt and applies the retry policy; returns once committed.
    pub async fn report(&self, report: AttemptReport) -> Result<Recorded, Error> {
        submit(&self.reports, report).await
    }

    /// Leases up to `claim.room` due deliveries to the claiming stream; returns them once committed.
    pub async fn claim(&self, claim: Claim) -> Result<Claimed, Error> {
        submit(&self.claims, claim).await
    }
}

async fn submit<I, O>(queue: &mpsc::Sender<Queued<I, O>>, item: I) -> Result<O, Error> {
    let stopped = || Error::Storage(sea_orm::DbErr::Custom("the server is shutting down".into()));
    let (reply, done) = oneshot::channel();
    queue.send((item, reply)).await.map_err(|_| stopped())?;
    done.await.map_err(|_| stopped())?
}

async fn run(store: Store, rules: WriteRules, queues: Arc<Mutex<Queues>>) {
    loop {
        let mut events = Vec::new();
        let mut reports = Vec::new();
        let mut claims = Vec::new();
        {
            // One committer at a time gathers a cycle: wait for the first write of any kind, then take
            // whatever else has queued up.
            let mut queues = queues.lock().await;
            let queues = &mut *queues;
            tokio::select! {
                Some(item) = queues.events.recv() => events.push(item),
                Some(item) = queues.reports.recv() => reports.push(item),
                Some(item) = queues.claims.recv() => claims.push(item),
                else => return,
            }
            drain(&mut queues.events, &mut events, MAX_EVENTS);
            drain(&mut queues.reports, &mut reports, MAX_REPORTS);
            drain(&mut queues.claims, &mut claims, MAX_CLAIMS);
        }

        let (events, event_replies): (Vec<_>, Vec<_>) = events.into_iter().unzip();
        let (reports, report_replies): (Vec<_>, Vec<_>) = reports.into_iter().unzip();
        let (claims, claim_replies): (Vec<_>, Vec<_>) = claims.into_iter().unzip();
        let started = std::time::Instant::now();
        let writes = Writes {
            events,
            reports,
            claims,
        };
        let written = store.commit_writes(writes, &rules, time::now_ms()).await;
        tracing::debug!(
            events = event_replies.len(),
            reports = report_replies.len(),
            claims = claim_replies.len(),
            leased = written.claimed.iter().map(|c| c.as_ref().map_or(0, |c| c.leased.len())).sum::<usize>(),
            took = ?started.elapsed(),
            "committed"
        );
        answer(event_replies, written.published);
        answer(report_replies, written.recorded);
        answer(claim_replies, written.claimed);
    }
}

fn drain<T>(queue: &mut mpsc::Receiver<T>, into: &mut Vec<T>, max: usize) {
    while into.len() < max {
        match queue.try_recv() {
            Ok(item) => into.push(item),
            Err(_) => break,
        }
    }
}

fn answer<O>(replies: Vec<oneshot::Sender<Result<O, Error>>>, results: Vec<Result<O, Error>>) {
    // A caller that went away (its call was cancelled) simply misses its answer; its write stands.
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}
