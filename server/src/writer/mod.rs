//! The writer: every write on the delivery path (publishing an event, recording an attempt report, leasing
//! deliveries to a stream) is queued here, and one task commits whatever has queued up, of all three
//! kinds, in one transaction per cycle ([`Store::commit_writes`]).
//!
//! Under load a cycle carries many writes for the price of one commit; when idle, a write is committed at
//! once. A caller still returns only after its own write is committed (or refused), so nothing is
//! acknowledged before it is durable, and a lease is never handed out before it is on record.
//!
//! A stream with room and nothing due leaves a [`StandingClaim`]: it waits here, parked, until a cycle that
//! publishes takes it, and that cycle leases its new deliveries to the stream as it stores them
//! (`crate::store::hand_off`). An event then reaches its stream with the commit that stores it, not a claim
//! cycle later. A claim answered with leases, room to spare and nothing more due is parked again by the cycle
//! that answers it, before the next cycle gathers: were the stream to park it again itself, the publishes
//! gathered meanwhile would find no claim, leave their deliveries pending and cost a claim cycle each.
//! The standing claims and that protocol are in [`standing`](mod@standing).

mod standing;

use std::sync::Arc;

use kit_webhooks::sync::lock;
use sea_orm::DbBackend;
use tokio::sync::{mpsc, oneshot, Mutex};

use standing::{answer_claims, park, standing, Parked, QueuedClaim};
pub use standing::{ClaimAnswer, StandingClaim};

use crate::{
    core::{time, Error},
    metrics::WriterMetrics,
    store::{
        entity::event,
        events::Published,
        leases::{in_flight::AtCap, AttemptReport, Claim, ClaimKind, ReadyReport, Recorded},
        writes::{WriteRules, Writes, Written},
        Store,
    },
};

/// Writes of each kind taken into one cycle, at most: enough to amortise a commit, few enough that one
/// cycle does not keep the others waiting long.
const MAX_EVENTS: usize = 256;
/// Reports, counted one by one (a daemon's call queues its reports as one item).
const MAX_REPORTS: usize = 1024;
const MAX_CLAIMS: usize = 64;
const QUEUE: usize = 8192;
/// Committers on PostgreSQL: one per four connections of the pool (the rest serve the API and the streams),
/// at most three (docs/PERFORMANCE.md, step 11). Cycles in parallel do not deadlock: reports lock their
/// deliveries and webhooks in id order, and claims skip locked rows instead of waiting for them.
const POSTGRES_COMMITTERS: usize = 3;
const CONNECTIONS_PER_COMMITTER: usize = 4;

type Queued<I, O> = (I, oneshot::Sender<Result<O, Error>>);
/// Each report's own result, in the order given.
type ReportResults = Vec<Result<Recorded, Error>>;
/// The reports of one call, answered together: one queue item and one wake-up per call, not per report.
type QueuedReports = Queued<Vec<ReadyReport>, ReportResults>;

#[derive(Clone)]
pub struct Writer {
    events: mpsc::Sender<Queued<event::Model, Published>>,
    reports: mpsc::Sender<QueuedReports>,
    claims: mpsc::Sender<QueuedClaim>,
    parked: Parked,
}

/// What the committers share besides their queues.
#[derive(Clone, Default)]
struct Shared {
    /// The claims waiting for the next publish.
    parked: Parked,
    /// What the last cycle that counted the leases left at their cap: a report of one of them is marked as
    /// freeing room ([`Recorded::frees_room`]).
    at_cap: Arc<std::sync::Mutex<AtCap>>,
}

struct Queues {
    events: mpsc::Receiver<Queued<event::Model, Published>>,
    reports: mpsc::Receiver<QueuedReports>,
    claims: mpsc::Receiver<QueuedClaim>,
}

impl Writer {
    /// Starts the committing tasks: one on SQLite (it has one writer connection anyway), a few on
    /// PostgreSQL, where one cycle can be built and sent while another waits for its commit. They end when
    /// every `Writer` handle is dropped.
    pub fn spawn(store: Store, rules: WriteRules, metrics: WriterMetrics) -> Writer {
        let (events, events_rx) = mpsc::channel(QUEUE);
        let (reports, reports_rx) = mpsc::channel(QUEUE);
        let (claims, claims_rx) = mpsc::channel(QUEUE);
        let queues = Arc::new(Mutex::new(Queues {
            events: events_rx,
            reports: reports_rx,
            claims: claims_rx,
        }));
        let committers = match store.backend() {
            DbBackend::Postgres => (store.write_connections() as usize / CONNECTIONS_PER_COMMITTER)
                .clamp(1, POSTGRES_COMMITTERS),
            _ => 1,
        };
        let shared = Shared::default();
        for _ in 0..committers {
            tokio::spawn(run(
                store.clone(),
                rules.clone(),
                queues.clone(),
                shared.clone(),
                metrics.clone(),
            ));
        }
        Writer {
            events,
            reports,
            claims,
            parked: shared.parked,
        }
    }

    /// Stores `event` and its fan-out; returns once committed.
    pub async fn publish(&self, event: event::Model) -> Result<Published, Error> {
        submit(&self.events, event).await
    }

    /// Records attempts and applies the retry policy to each; returns once committed, with each report's own
    /// result (a report refused does not fail the others). The error is the writer's, for all of them. The
    /// reports are made ready to record here, in the caller's task, not in the cycle.
    pub async fn report(
        &self,
        reports: Vec<AttemptReport>,
    ) -> Result<Vec<Result<Recorded, Error>>, Error> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let ready = reports.into_iter().map(ReadyReport::from).collect();
        submit(&self.reports, ready).await
    }

    /// Leases up to `claim.room` due deliveries to the claiming stream, answered once committed. A claim that
    /// finds nothing due is not answered: it waits, parked, for the next cycle that publishes, which hands it
    /// the new deliveries.
    pub async fn standing_claim(&self, claim: Claim) -> StandingClaim {
        let (request, standing) = standing(&self.parked, claim);
        // If the writer has stopped, the claim's answer says so.
        let _ = self.claims.send(request).await;
        standing
    }

    /// Parks a standing claim for stream `claim.owner` without a cycle: for a stream whose last claim was just
    /// answered and found nothing else due, with nothing notified since (see `crate::dispatch`), so that a
    /// claim would find nothing either.
    pub fn park_claim(&self, claim: Claim) -> StandingClaim {
        let ((request, reply), standing) = standing(&self.parked, claim);
        park(&self.parked, request, reply, None);
        standing
    }
}

fn stopped() -> Error {
    Error::Storage(sea_orm::DbErr::Custom("the server is shutting down".into()))
}

async fn submit<I, O>(queue: &mpsc::Sender<Queued<I, O>>, item: I) -> Result<O, Error> {
    let (reply, done) = oneshot::channel();
    queue.send((item, reply)).await.map_err(|_| stopped())?;
    done.await.map_err(|_| stopped())?
}

async fn run(
    store: Store,
    rules: WriteRules,
    queues: Arc<Mutex<Queues>>,
    shared: Shared,
    metrics: WriterMetrics,
) {
    loop {
        // One committer at a time gathers a cycle.
        let mut gathering = queues.lock().await;
        let Some(mut cycle) = Cycle::gather(&mut gathering).await else {
            return;
        };
        if !cycle.events.is_empty() {
            cycle.take_parked(&shared.parked);
        }
        // A cycle that takes claims keeps the other committers from gathering until it has answered them and
        // parked again those with room left: a publish gathered beside it would find no claim parked, leave
        // its deliveries pending and notify, and the stream's next claim would be a cycle of its own, beside
        // the next publish, and so on. Not a cycle catching up on a backlog, though: its claims will not be
        // parked again, and its long read and write would keep every publish and report waiting with the
        // machine partly idle (docs/PERFORMANCE.md, step 47).
        let _gathering = cycle.keeps_gathering().then_some(gathering);
        cycle.commit(&store, &rules, &shared, &metrics).await;
    }
}

/// The writes one cycle took from the queues, each with where its answer goes.
#[derive(Default)]
struct Cycle {
    events: Vec<Queued<event::Model, Published>>,
    reports: Vec<QueuedReports>,
    claims: Vec<QueuedClaim>,
}

impl Cycle {
    /// Waits for the first write of any kind, then takes whatever else has queued up, up to each kind's
    /// maximum. `None` once every [`Writer`] is gone.
    async fn gather(queues: &mut Queues) -> Option<Cycle> {
        let mut cycle = Cycle::default();
        tokio::select! {
            Some(item) = queues.events.recv() => cycle.events.push(item),
            Some(item) = queues.reports.recv() => cycle.reports.push(item),
            Some(item) = queues.claims.recv() => cycle.claims.push(item),
            else => return None,
        }
        drain(&mut queues.events, &mut cycle.events, MAX_EVENTS, |_| 1);
        drain(
            &mut queues.reports,
            &mut cycle.reports,
            MAX_REPORTS,
            |(group, _)| group.len(),
        );
        drain(&mut queues.claims, &mut cycle.claims, MAX_CLAIMS, |_| 1);
        Some(cycle)
    }

    /// Takes the parked claims: the streams waiting for work get this cycle's new deliveries. The due range
    /// is not read for them again (it was empty when they parked; anything since was notified to their
    /// streams, which take their claims back and read it).
    fn take_parked(&mut self, parked: &Parked) {
        for (mut request, reply) in lock(parked).drain(..) {
            request.claim.kind = ClaimKind::HandOff;
            self.claims.push((request, reply));
        }
    }

    /// Whether the cycle keeps the other committers from gathering until it is answered (see `run`).
    fn keeps_gathering(&self) -> bool {
        !self.claims.is_empty()
            && !self
                .claims
                .iter()
                .any(|(request, _)| request.claim.kind == ClaimKind::CatchUp)
    }

    /// Commits the cycle's writes in one transaction and answers each.
    async fn commit(
        self,
        store: &Store,
        rules: &WriteRules,
        shared: &Shared,
        metrics: &WriterMetrics,
    ) {
        let (events, event_replies): (Vec<_>, Vec<_>) = self.events.into_iter().unzip();
        let (report_groups, report_replies): (Vec<_>, Vec<_>) = self.reports.into_iter().unzip();
        let group_sizes: Vec<usize> = report_groups.iter().map(Vec::len).collect();
        let reports: Vec<ReadyReport> = report_groups.into_iter().flatten().collect();
        let (requests, claim_replies): (Vec<_>, Vec<_>) = self.claims.into_iter().unzip();
        let claims = requests.iter().map(|r| r.claim.clone()).collect();
        let started = std::time::Instant::now();
        let writes = Writes {
            events,
            reports,
            claims,
        };
        let mut written = store.commit_writes(writes, rules, time::now_ms()).await;
        mark_freed_room(&shared.at_cap, &mut written);
        metrics.cycles.increment(1);
        metrics.duration.record(started.elapsed());
        let reports = group_sizes.iter().sum::<usize>();
        metrics
            .writes
            .record((event_replies.len() + reports + claim_replies.len()) as f64);
        tracing::debug!(
            events = event_replies.len(),
            reports,
            claims = claim_replies.len(),
            leased = written.claimed.iter().map(|c| c.as_ref().map_or(0, |c| c.leased.len())).sum::<usize>(),
            took = ?started.elapsed(),
            "committed"
        );
        answer(event_replies, written.published);
        answer(report_replies, split_groups(&group_sizes, written.recorded));
        answer_claims(&shared.parked, requests, claim_replies, written.claimed);
    }
}

/// Marks the cycle's reports that end a lease of a webhook or account known at its cap, then keeps what this
/// cycle left at its cap, if it counted. A report of this cycle was recorded before its claims counted: it
/// is marked by what an earlier cycle knew (at worst once more than needed, a read that finds nothing).
fn mark_freed_room(at_cap: &std::sync::Mutex<AtCap>, written: &mut Written) {
    let mut known = lock(at_cap);
    for recorded in written.recorded.iter_mut().flatten() {
        recorded.frees_room = known.frees_room(&recorded.webhook_id, &recorded.account_id);
    }
    if let Some(counted) = written.at_cap.take() {
        *known = counted;
    }
}

/// Takes queued items while `into` holds fewer than `max`, counting each item as `size` of it (a daemon's
/// report call counts its reports; it is never split).
fn drain<T>(
    queue: &mut mpsc::Receiver<T>,
    into: &mut Vec<T>,
    max: usize,
    size: impl Fn(&T) -> usize,
) {
    let mut count: usize = into.iter().map(&size).sum();
    while count < max {
        match queue.try_recv() {
            Ok(item) => {
                count += size(&item);
                into.push(item);
            }
            Err(_) => break,
        }
    }
}

/// The cycle's report results cut back into the groups they were queued in (they are in the groups' order).
fn split_groups(sizes: &[usize], results: ReportResults) -> Vec<Result<ReportResults, Error>> {
    let mut results = results.into_iter();
    sizes
        .iter()
        .map(|&size| Ok(results.by_ref().take(size).collect()))
        .collect()
}

fn answer<O>(replies: Vec<oneshot::Sender<Result<O, Error>>>, results: Vec<Result<O, Error>>) {
    // A caller that went away (its call was cancelled) simply misses its answer; its write stands.
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publishing_cycle_takes_the_parked_claims_as_hand_offs() {
        let parked = Parked::default();
        let ((request, reply), _standing) = standing(&parked, Claim::new("dst_1", 8));
        park(&parked, request, reply, None);
        let mut cycle = Cycle::default();
        cycle.take_parked(&parked);
        assert_eq!(cycle.claims.len(), 1);
        assert_eq!(cycle.claims[0].0.claim.kind, ClaimKind::HandOff);
        assert!(
            cycle.keeps_gathering(),
            "it answers and parks again before the next cycle gathers"
        );
        let (catch_up, _standing) =
            standing(&parked, Claim::new("dst_2", 8).of_kind(ClaimKind::CatchUp));
        cycle.claims.push(catch_up);
        assert!(
            !cycle.keeps_gathering(),
            "a catch-up's long read does not hold the others back"
        );
    }
}
