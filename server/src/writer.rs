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

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use kit_webhooks::sync::lock;
use sea_orm::DbBackend;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::{
    core::{time, Error},
    store::{
        entity::event,
        events::Published,
        leases::{AttemptReport, Claim, ClaimKind, Claimed, ReadyReport, Recorded},
        writes::{WriteRules, Writes},
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

/// A stream's claim as queued, with the flag its stream sets to withdraw it.
struct ClaimRequest {
    claim: Claim,
    withdrawn: Arc<AtomicBool>,
}

/// A claim's answers go to its stream over a channel of their own: a claim parked again is answered again.
type ClaimReply = mpsc::UnboundedSender<Result<ClaimAnswer, Error>>;
/// A queued or parked claim, with where its answers go.
type QueuedClaim = (ClaimRequest, ClaimReply);

/// Standing claims waiting for a publish.
type Parked = Arc<std::sync::Mutex<Vec<QueuedClaim>>>;

/// What a claim got: its leases, and whether it is parked again for the next publish (with the room it has
/// left), in which case its [`StandingClaim`] stays out and will be answered again.
#[derive(Debug, Default)]
pub struct ClaimAnswer {
    pub claimed: Claimed,
    pub parked_again: bool,
}

#[derive(Clone)]
pub struct Writer {
    events: mpsc::Sender<Queued<event::Model, Published>>,
    reports: mpsc::Sender<QueuedReports>,
    claims: mpsc::Sender<QueuedClaim>,
    parked: Parked,
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
            DbBackend::Postgres => (store.write_connections() as usize / CONNECTIONS_PER_COMMITTER)
                .clamp(1, POSTGRES_COMMITTERS),
            _ => 1,
        };
        let parked = Parked::default();
        for _ in 0..committers {
            tokio::spawn(run(
                store.clone(),
                rules.clone(),
                queues.clone(),
                parked.clone(),
            ));
        }
        Writer {
            events,
            reports,
            claims,
            parked,
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

/// `claim` as queued, and the stream's handle on it.
fn standing(parked: &Parked, claim: Claim) -> (QueuedClaim, StandingClaim) {
    let (reply, answers) = mpsc::unbounded_channel();
    let withdrawn = Arc::new(AtomicBool::new(false));
    let request = ClaimRequest {
        claim,
        withdrawn: withdrawn.clone(),
    };
    let standing = StandingClaim {
        answers,
        withdrawn,
        parked: parked.clone(),
    };
    ((request, reply), standing)
}

/// A stream's claim that may be waiting for a publish ([`Writer::standing_claim`]). Dropping it takes it back
/// (an answer a cycle gave it meanwhile is then lost to the stream; its leases return with the stream's).
pub struct StandingClaim {
    answers: mpsc::UnboundedReceiver<Result<ClaimAnswer, Error>>,
    withdrawn: Arc<AtomicBool>,
    parked: Parked,
}

impl StandingClaim {
    /// The claim's next answer, once a cycle has given it one. Cancel-safe: it can be awaited again.
    pub async fn answer(&mut self) -> Result<ClaimAnswer, Error> {
        self.answers.recv().await.unwrap_or_else(|| Err(stopped()))
    }

    /// Takes the claim back: `None` if it was parked with no answer the stream has not taken; otherwise what
    /// it was answered (a cycle that has the claim now answers it without parking it again), so that what the
    /// cycles leased to it is not lost on the way.
    pub async fn withdraw(mut self) -> Option<Result<Claimed, Error>> {
        // The flag first: a cycle about to park the claim (again) reads it under the lock `unpark` takes.
        self.withdrawn.store(true, Ordering::SeqCst);
        let mut answers = Vec::new();
        loop {
            if self.unpark() {
                // A cycle sends its answer before it parks the claim again, both under that lock, so every
                // answer of the claim is in the channel by now.
                while let Ok(answer) = self.answers.try_recv() {
                    answers.push(answer);
                }
                break;
            }
            match self.answer().await {
                Ok(answer) if answer.parked_again => answers.push(Ok(answer)),
                answer => {
                    answers.push(answer);
                    break;
                }
            }
        }
        merged(answers)
    }

    /// Removes the claim from the parked ones; whether it was there.
    fn unpark(&self) -> bool {
        let mut parked = lock(&self.parked);
        let mine = parked
            .iter()
            .position(|(request, _)| Arc::ptr_eq(&request.withdrawn, &self.withdrawn));
        match mine {
            Some(at) => {
                parked.swap_remove(at);
                true
            }
            None => false,
        }
    }
}

impl Drop for StandingClaim {
    fn drop(&mut self) {
        // A claim nobody waits on must not be handed deliveries.
        self.withdrawn.store(true, Ordering::SeqCst);
        self.unpark();
    }
}

/// Several answers of one claim as one: all their leases. An error comes only last (a cycle that failed
/// answers without parking the claim again) and stands only when nothing was leased before it.
fn merged(answers: Vec<Result<ClaimAnswer, Error>>) -> Option<Result<Claimed, Error>> {
    let mut merged: Option<Result<Claimed, Error>> = None;
    for answer in answers {
        merged = Some(match (merged, answer) {
            (Some(Ok(mut all)), Ok(answer)) => {
                all.leased.extend(answer.claimed.leased);
                all.more_due |= answer.claimed.more_due;
                Ok(all)
            }
            (Some(Ok(all)), Err(_)) => Ok(all),
            (_, answer) => answer.map(|answer| answer.claimed),
        });
    }
    merged
}

/// Parks a standing claim for the next publish, unless its stream has withdrawn it meanwhile. `answered` is
/// what a cycle just leased to a claim parked again with the room it has left: it is sent first, under the
/// lock, so that a stream that finds its claim parked finds every answer sent before in its channel. A
/// withdrawn claim gets that answer (or an empty one) and is not parked.
fn park(parked: &Parked, request: ClaimRequest, reply: ClaimReply, answered: Option<Claimed>) {
    let mut parked = lock(parked);
    // Read under the lock: a stream sets the flag before it takes the lock to look for its claim, so
    // either it finds the claim here or the flag is already set.
    if request.withdrawn.load(Ordering::SeqCst) {
        let _ = reply.send(Ok(ClaimAnswer {
            claimed: answered.unwrap_or_default(),
            parked_again: false,
        }));
        return;
    }
    let sent = match answered {
        Some(claimed) => reply
            .send(Ok(ClaimAnswer {
                claimed,
                parked_again: true,
            }))
            .is_ok(),
        None => true,
    };
    if sent {
        parked.push((request, reply));
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

async fn run(store: Store, rules: WriteRules, queues: Arc<Mutex<Queues>>, parked: Parked) {
    loop {
        // One committer at a time gathers a cycle.
        let mut gathering = queues.lock().await;
        let Some(mut cycle) = Cycle::gather(&mut gathering).await else {
            return;
        };
        if !cycle.events.is_empty() {
            cycle.take_parked(&parked);
        }
        // A cycle that takes claims keeps the other committers from gathering until it has answered them and
        // parked again those with room left: a publish gathered beside it would find no claim parked, leave
        // its deliveries pending and notify, and the stream's next claim would be a cycle of its own, beside
        // the next publish, and so on. Not a cycle catching up on a backlog, though: its claims will not be
        // parked again, and its long read and write would keep every publish and report waiting with the
        // machine partly idle (docs/PERFORMANCE.md, step 47).
        let _gathering = cycle.keeps_gathering().then_some(gathering);
        cycle.commit(&store, &rules, &parked).await;
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
    async fn commit(self, store: &Store, rules: &WriteRules, parked: &Parked) {
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
        let written = store.commit_writes(writes, rules, time::now_ms()).await;
        tracing::debug!(
            events = event_replies.len(),
            reports = group_sizes.iter().sum::<usize>(),
            claims = claim_replies.len(),
            leased = written.claimed.iter().map(|c| c.as_ref().map_or(0, |c| c.leased.len())).sum::<usize>(),
            took = ?started.elapsed(),
            "committed"
        );
        answer(event_replies, written.published);
        answer(report_replies, split_groups(&group_sizes, written.recorded));
        answer_claims(parked, requests, claim_replies, written.claimed);
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

/// Answers each claim, except one that found nothing: it is parked until a publish. One that leased less than
/// its room and found nothing more due is answered and parked again.
fn answer_claims(
    parked: &Parked,
    requests: Vec<ClaimRequest>,
    replies: Vec<ClaimReply>,
    results: Vec<Result<Claimed, Error>>,
) {
    for ((mut request, reply), result) in requests.into_iter().zip(replies).zip(results) {
        match result {
            Ok(claimed) if !claimed.more_due && claimed.leased.is_empty() => {
                park(parked, request, reply, None)
            }
            Ok(claimed)
                if !claimed.more_due && (claimed.leased.len() as u64) < request.claim.room =>
            {
                // Parked again with the room it has left (a publish that takes it makes it a hand-off).
                request.claim.room -= claimed.leased.len() as u64;
                park(parked, request, reply, Some(claimed))
            }
            result => {
                let answer = result.map(|claimed| ClaimAnswer {
                    claimed,
                    parked_again: false,
                });
                let _ = reply.send(answer);
            }
        }
    }
}

fn answer<O>(replies: Vec<oneshot::Sender<Result<O, Error>>>, results: Vec<Result<O, Error>>) {
    // A caller that went away (its call was cancelled) simply misses its answer; its write stands.
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// The claim protocol between a stream and the cycles, without a database: how claims are answered, parked
/// again and withdrawn.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        core::webhook::Status as WebhookStatus,
        store::leases::{LeasedDelivery, SendingEvent, SendingWebhook},
    };

    /// What a cycle leased: a delivery per id.
    fn claimed(ids: &[&str], more_due: bool) -> Claimed {
        let webhook = Arc::new(SendingWebhook {
            id: "wh_1".into(),
            status: WebhookStatus::Active,
            url: "https://example.com/".into(),
            rate_limit_per_second: 100,
            secret: "whsec_x".into(),
            previous_secret: None,
            previous_secret_expires_at: None,
        });
        let event = Arc::new(SendingEvent {
            id: "evt_1".into(),
            account_id: "acme".into(),
            data_json: "{}".into(),
            created_at: 0,
        });
        let leased = ids
            .iter()
            .map(|id| LeasedDelivery {
                delivery_id: (*id).into(),
                attempt_count: 0,
                lease_id: "lse_1".into(),
                webhook_id: webhook.id.clone(),
                event_id: event.id.clone(),
                event_type: "interview.scheduled".into(),
                webhook: webhook.clone(),
                event: event.clone(),
            })
            .collect();
        Claimed { leased, more_due }
    }

    /// Answers one queued claim as a cycle would.
    fn answer_one(parked: &Parked, (request, reply): QueuedClaim, result: Claimed) {
        answer_claims(parked, vec![request], vec![reply], vec![Ok(result)]);
    }

    fn parked_rooms(parked: &Parked) -> Vec<u64> {
        lock(parked)
            .iter()
            .map(|(request, _)| request.claim.room)
            .collect()
    }

    #[tokio::test]
    async fn a_claim_that_found_nothing_waits_parked_and_is_withdrawn_empty() {
        let parked = Parked::default();
        let (queued, standing) = standing(&parked, Claim::new("dst_1", 8));
        answer_one(&parked, queued, claimed(&[], false));
        assert_eq!(parked_rooms(&parked), [8], "parked with all its room");
        assert!(standing.withdraw().await.is_none(), "no answer to take");
        assert!(
            parked_rooms(&parked).is_empty(),
            "withdrawn from the parked claims"
        );
    }

    #[tokio::test]
    async fn a_claim_with_room_left_is_answered_and_parked_again() {
        let parked = Parked::default();
        let (queued, mut standing) = standing(&parked, Claim::new("dst_1", 8));
        answer_one(&parked, queued, claimed(&["dlv_a", "dlv_b"], false));
        assert_eq!(
            parked_rooms(&parked),
            [6],
            "parked again with the room it has left"
        );
        let answer = standing.answer().await.expect("answered");
        assert!(answer.parked_again);
        assert_eq!(answer.claimed.leased.len(), 2);
        assert!(
            standing.withdraw().await.is_none(),
            "its one answer was taken"
        );
    }

    #[tokio::test]
    async fn withdrawing_takes_every_answer_not_yet_taken() {
        let parked = Parked::default();
        let (queued, standing) = standing(&parked, Claim::new("dst_1", 8));
        answer_one(&parked, queued, claimed(&["dlv_a", "dlv_b"], false));
        // The next publishing cycle takes it, leases it one more, and parks it again.
        let again = lock(&parked).pop().expect("parked again");
        answer_one(&parked, again, claimed(&["dlv_c"], false));
        assert_eq!(parked_rooms(&parked), [5]);
        let merged = standing.withdraw().await.expect("answers").expect("leases");
        let ids: Vec<_> = merged
            .leased
            .iter()
            .map(|l| l.delivery_id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["dlv_a", "dlv_b", "dlv_c"],
            "nothing leased to it is lost"
        );
    }

    #[tokio::test]
    async fn a_full_answer_is_not_parked_again() {
        let parked = Parked::default();
        let (queued, mut standing) = standing(&parked, Claim::new("dst_1", 2));
        answer_one(&parked, queued, claimed(&["dlv_a", "dlv_b"], true));
        assert!(parked_rooms(&parked).is_empty());
        let answer = standing.answer().await.expect("answered");
        assert!(!answer.parked_again);
        assert!(answer.claimed.more_due);
    }

    #[tokio::test]
    async fn a_withdrawn_claim_is_answered_but_never_parked() {
        let parked = Parked::default();
        let (queued, mut standing) = standing(&parked, Claim::new("dst_1", 8));
        standing.withdrawn.store(true, Ordering::SeqCst);
        answer_one(&parked, queued, claimed(&["dlv_a"], false));
        assert!(
            parked_rooms(&parked).is_empty(),
            "a claim nobody waits on gets no deliveries"
        );
        let answer = standing.answer().await.expect("answered");
        assert!(!answer.parked_again);
        assert_eq!(
            answer.claimed.leased.len(),
            1,
            "what it leased reaches its stream"
        );
    }

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
