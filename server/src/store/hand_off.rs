//! The hand-off: a cycle's new deliveries leased straight to the streams claiming in the same cycle.
//!
//! A writer cycle runs its claims before its publishes. Whatever room the claims have left once they have
//! leased the due range (older deliveries go first) is filled with the deliveries the cycle's publishes fan
//! out: those are inserted already `sending`, under the claiming stream's lease, instead of `pending` to be
//! read back and leased by a later claim. A delivery handed off is written once on its way out, not twice,
//! and it leaves with the commit that stores it, not a claim cycle later. The lease caps apply as in a claim
//! (`super::leases::in_flight`): a delivery they refuse stays `pending` until a report frees its webhook's or
//! account's room (`super::leases::in_flight::AtCap`); one that finds no room stays `pending` for the next
//! claim. So does an ordered delivery: only a claim, which reads what is ahead of it, may lease it
//! (`super::leases::claim`).
//!
//! A parked claim (`ClaimKind::HandOff`, see `crate::writer`) does not read the due range: its stream's last
//! read found it empty. If the cycle has no lease counts (kept from the last cycle, or read by a claim), the
//! fan-out reads them with the webhooks (`crate::store::events::publish_in`).

use std::{collections::HashMap, sync::Arc};

use super::{
    entity::{delivery, event, webhook},
    leases::{
        sending::DueDelivery, Claim, Claimed, InFlight, LeaseCaps, LeasedDelivery, SendingEvent,
        SendingWebhook,
    },
};
use crate::core::{event::DeliveryStatus, id};

/// The room a cycle's claims have left, and the deliveries handed to them.
pub struct HandOff {
    claims: Vec<OpenClaim>,
    /// The leases each webhook and account holds: kept from the last cycle, or from the cycle's last claim,
    /// or read with the fan-out; with the leases handed off here counted in.
    in_flight: Option<InFlight>,
    caps: LeaseCaps,
    lease_expires_at: i64,
    /// The claim the next delivery goes to first, so that streams share a publish.
    next: usize,
    webhooks: HashMap<String, Arc<SendingWebhook>>,
    event: Option<Arc<SendingEvent>>,
    /// Whether a new delivery was left `pending` that a claim could lease now (not one behind a cap).
    left_pending: bool,
}

/// What became of a new delivery offered to the hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Leased to a claim: inserted `sending`.
    Handed,
    /// Left `pending` for the next claim to read: no claim had room, or it is ordered.
    Pending,
    /// Left `pending` behind its webhook's or account's cap, until a report frees room.
    Capped,
}

struct OpenClaim {
    owner: String,
    room: u64,
    lease_id: String,
    leased: Vec<LeasedDelivery>,
}

impl HandOff {
    pub fn new(caps: LeaseCaps, lease_expires_at: i64) -> Self {
        HandOff {
            claims: Vec::new(),
            in_flight: None,
            caps,
            lease_expires_at,
            next: 0,
            webhooks: HashMap::new(),
            event: None,
            left_pending: false,
        }
    }

    /// Adds `claim`, which has just leased `claimed`, going by the lease counts `in_flight` if it read them.
    /// Claims of one cycle run one after another in its transaction, so the last one's counts include the
    /// others' leases.
    pub fn open(&mut self, claim: &Claim, claimed: &Claimed, in_flight: Option<InFlight>) {
        self.claims.push(OpenClaim {
            owner: claim.owner.clone(),
            room: claim.room.saturating_sub(claimed.leased.len() as u64),
            lease_id: id::new(id::Kind::Lease),
            leased: Vec::new(),
        });
        if in_flight.is_some() {
            self.in_flight = in_flight;
        }
    }

    /// Whether the cycle's fan-out should read the lease counts: a claim has room, and none read them.
    pub fn wants_counts(&self) -> bool {
        self.in_flight.is_none() && self.claims.iter().any(|c| c.room > 0)
    }

    /// The lease counts as of now in the cycle: kept from the last cycle, or read with the fan-out.
    pub fn counted(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// The lease counts as of now in the cycle, for a claim to go by (and give back to [`HandOff::open`]).
    pub fn take_counts(&mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    /// Leases the new `delivery` of `event` to `hook` to a claim with room, if its webhook and account are
    /// under their caps: the row is then inserted `sending`. Otherwise it stays `pending`.
    pub fn offer(
        &mut self,
        delivery: &mut delivery::Model,
        hook: &webhook::Model,
        event: &event::Model,
    ) -> Offered {
        let room = (0..self.claims.len())
            .map(|i| (self.next + i) % self.claims.len())
            .find(|&i| self.claims[i].room > 0);
        // Without the counts (not prepared) no delivery is leased, as if at the cap, but a claim may read it.
        let (Some(at), Some(in_flight), false) = (room, self.in_flight.as_mut(), delivery.ordered)
        else {
            self.left_pending = true;
            return Offered::Pending;
        };
        if !in_flight.admit(&hook.id, &hook.account_id, self.caps) {
            return Offered::Capped;
        }
        self.next = (at + 1) % self.claims.len();
        // The deliveries of one event are offered one after another: its sending form is made once.
        if self.event.as_ref().is_some_and(|e| e.id != event.id) {
            self.event = None;
        }
        let sending_event = self
            .event
            .get_or_insert_with(|| Arc::new(SendingEvent::from(event)));
        let sending_hook = self
            .webhooks
            .entry(hook.id.clone())
            .or_insert_with(|| Arc::new(SendingWebhook::from(hook)));
        let claim = &mut self.claims[at];
        claim.room -= 1;
        delivery.status = DeliveryStatus::Sending;
        delivery.lease_id = Some(claim.lease_id.clone());
        delivery.lease_owner = Some(claim.owner.clone());
        delivery.lease_expires_at = Some(self.lease_expires_at);
        claim.leased.push(LeasedDelivery::new(
            DueDelivery::from(&*delivery),
            &claim.lease_id,
            sending_hook,
            sending_event,
        ));
        Offered::Handed
    }

    /// Adds what was handed off to each claim's leases, in the order the claims were opened. When a new
    /// delivery was left `pending` for a claim to read, every claim may have more due. Returns the lease
    /// counts as the cycle leaves them, if it had them.
    pub fn finish(self, claimed: &mut [Claimed]) -> Option<InFlight> {
        for (claimed, handed) in claimed.iter_mut().zip(self.claims) {
            claimed.leased.extend(handed.leased);
            claimed.more_due |= self.left_pending;
        }
        self.in_flight
    }
}
