//! Standing claims: a stream's claim while it is out, and how the cycles answer it, park it again, and give it
//! back when its stream withdraws it (see the writer's doc, `super`). The protocol's invariant: nothing a
//! cycle leased to a claim is lost on the way to its stream, and a claim nobody waits on is never handed
//! deliveries.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use kit_webhooks::sync::lock;
use tokio::sync::mpsc;

use super::stopped;
use crate::{
    core::Error,
    store::leases::{Claim, Claimed},
};

/// A stream's claim as queued, with the flag its stream sets to withdraw it.
pub(super) struct ClaimRequest {
    pub(super) claim: Claim,
    withdrawn: Arc<AtomicBool>,
}

/// A claim's answers go to its stream over a channel of their own: a claim parked again is answered again.
pub(super) type ClaimReply = mpsc::UnboundedSender<Result<ClaimAnswer, Error>>;
/// A queued or parked claim, with where its answers go.
pub(super) type QueuedClaim = (ClaimRequest, ClaimReply);

/// Standing claims waiting for a publish.
pub(super) type Parked = Arc<std::sync::Mutex<Vec<QueuedClaim>>>;

/// What a claim got: its leases, and whether it is parked again for the next publish (with the room it has
/// left), in which case its [`StandingClaim`] stays out and will be answered again.
#[derive(Debug, Default)]
pub struct ClaimAnswer {
    pub claimed: Claimed,
    pub parked_again: bool,
}

/// `claim` as queued, and the stream's handle on it.
pub(super) fn standing(parked: &Parked, claim: Claim) -> (QueuedClaim, StandingClaim) {
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

/// A stream's claim that may be waiting for a publish ([`Writer::standing_claim`](super::Writer::standing_claim)). Dropping it takes it back
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
pub(super) fn park(
    parked: &Parked,
    request: ClaimRequest,
    reply: ClaimReply,
    answered: Option<Claimed>,
) {
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

/// Answers each claim, except one that found nothing: it is parked until a publish. One that leased less than
/// its room and found nothing more due is answered and parked again.
pub(super) fn answer_claims(
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
            headers: String::new(),
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
}
