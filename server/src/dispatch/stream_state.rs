//! One stream's state, apart from the I/O that drives it (`super::run_stream`): how many leases it holds,
//! what it knows of the due range, and where its claim stands, with one method per transition. Pure (the
//! claim it holds out is a type parameter), so every transition is unit-tested below.
//!
//! The rules, in short: a stream claims in batches, once a quarter of its room is free or whenever it holds
//! nothing, and while it has room it always has a claim out. The room that counts for a batch leaves out the
//! leases held for long (requests to endpoints that do not answer, until they time out): with most of its
//! window held by them, a stream that waited for a quarter of the whole window would claim in rare bursts,
//! or never. How the claim goes out depends on the due range:
//! read it when something may be due ([`Put::Read`]); park the claim in the writer for the next publish when
//! the last read found it empty and nothing was notified since ([`Put::Park`]). A claim that leased nothing
//! or failed backs the stream off until a report or a notification wakes it.

use crate::store::leases::{Claim, ClaimKind};

/// What the stream knows of the due range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueRange {
    /// It may hold due deliveries: the next claim reads it.
    Unknown,
    /// The last claim left due deliveries behind: the next one reads it too, and most likely leases a full
    /// window ([`ClaimKind::CatchUp`]).
    Behind,
    /// The last claim found it empty, and nothing was notified since: a read would find nothing.
    Empty,
}

/// Where the stream's claim stands; `C` is the claim as the writer holds it out.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimSlot<C> {
    /// No claim out: the stream claims once it has room.
    Free,
    /// Out: queued, in a writer cycle, or parked in the writer for the next publish.
    Out(C),
    /// No claim out, and none until a report or a notification wakes the stream: its last claim leased
    /// nothing (its webhooks at their cap) or failed.
    BackedOff,
}

/// How the stream's next claim goes out.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// Queued for a writer cycle, which reads the due range.
    Read(Claim),
    /// Parked in the writer without a cycle, for the next publish to fill.
    Park(Claim),
}

/// How a claim was answered, once its leases are on the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Leased {
        /// How many tasks were sent.
        sent: u64,
        /// Whether due deliveries may remain that it did not lease (`Claimed::more_due`).
        more_due: bool,
        /// Whether the writer parked the claim again with the room it has left: it stays out.
        parked_again: bool,
    },
    Failed,
}

/// One stream's state (see the module's doc).
#[derive(Debug)]
pub struct StreamState<C> {
    owner: String,
    max_in_flight: u64,
    /// A quarter of `max_in_flight`: the room it waits for before claiming while it holds leases, unless
    /// some are held for long ([`batch`](Self::batch)).
    full_batch: u64,
    /// Of the leases it holds, those held for long, as last counted.
    held_long: u64,
    /// Tasks sent since the stream opened (with the leases it took over); minus the reports recorded, the
    /// leases it holds.
    sent: u64,
    due: DueRange,
    claim: ClaimSlot<C>,
}

impl<C> StreamState<C> {
    /// A stream that may hold `max_in_flight` leases and starts with `taken_over` of them.
    pub fn new(owner: impl Into<String>, max_in_flight: u64, taken_over: u64) -> Self {
        StreamState {
            owner: owner.into(),
            max_in_flight,
            full_batch: (max_in_flight / 4).max(1),
            held_long: 0,
            sent: taken_over,
            due: DueRange::Unknown,
            claim: ClaimSlot::Free,
        }
    }

    /// The leases it holds, given how many of its leases have been `reported`.
    pub fn outstanding(&self, reported: u64) -> u64 {
        self.sent.saturating_sub(reported)
    }

    pub fn due_range(&self) -> DueRange {
        self.due
    }

    pub fn claim_slot(&self) -> &ClaimSlot<C> {
        &self.claim
    }

    /// The claim to put out now, if any: none while one is out or the stream is backed off, nor while its
    /// room is less than a batch and it holds leases.
    pub fn next_claim(&self, reported: u64) -> Option<Put> {
        let outstanding = self.outstanding(reported);
        let room = self.max_in_flight.saturating_sub(outstanding);
        let wants = room >= self.batch() || (outstanding == 0 && room > 0);
        if !matches!(self.claim, ClaimSlot::Free) || !wants {
            return None;
        }
        let kind = match self.due {
            DueRange::Unknown => ClaimKind::Due,
            DueRange::Behind => ClaimKind::CatchUp,
            DueRange::Empty => return Some(Put::Park(Claim::new(&self.owner, room))),
        };
        Some(Put::Read(Claim::new(&self.owner, room).of_kind(kind)))
    }

    /// The room a claim waits for: a quarter of the room the stream's leases turn over in, that is, of its
    /// window without the leases held for long.
    fn batch(&self) -> u64 {
        let turning = self.max_in_flight.saturating_sub(self.held_long);
        (turning / 4).clamp(1, self.full_batch)
    }

    /// `held_long` of its leases have been held for long, as just counted.
    pub fn held_long(&mut self, held_long: u64) {
        self.held_long = held_long;
    }

    /// The claim [`next_claim`](Self::next_claim) gave is out.
    pub fn put_out(&mut self, claim: C) {
        self.claim = ClaimSlot::Out(claim);
    }

    /// The claim out, to wait for its answer.
    pub fn claim_out(&mut self) -> Option<&mut C> {
        match &mut self.claim {
            ClaimSlot::Out(claim) => Some(claim),
            _ => None,
        }
    }

    /// Takes the claim back from the writer, to withdraw it.
    pub fn take_claim(&mut self) -> Option<C> {
        match std::mem::replace(&mut self.claim, ClaimSlot::Free) {
            ClaimSlot::Out(claim) => Some(claim),
            other => {
                self.claim = other;
                None
            }
        }
    }

    /// A report of one of its leases came: a backed-off stream may claim again.
    pub fn woken(&mut self) {
        if matches!(self.claim, ClaimSlot::BackedOff) {
            self.claim = ClaimSlot::Free;
        }
    }

    /// Its claim was answered (or withdrawn with an answer), and what it leased was sent.
    pub fn answered(&mut self, answer: Answer) {
        let out = match std::mem::replace(&mut self.claim, ClaimSlot::Free) {
            ClaimSlot::Out(claim) => Some(claim),
            _ => None,
        };
        match answer {
            Answer::Leased {
                sent,
                more_due,
                parked_again,
            } => {
                self.sent += sent;
                self.due = if more_due {
                    DueRange::Behind
                } else {
                    DueRange::Empty
                };
                self.claim = match out {
                    Some(claim) if parked_again => ClaimSlot::Out(claim),
                    _ if sent == 0 => ClaimSlot::BackedOff,
                    _ => ClaimSlot::Free,
                };
            }
            Answer::Failed => {
                self.due = self.due.unknown_if_empty();
                self.claim = ClaimSlot::BackedOff;
            }
        }
    }

    /// Something may have fallen due that a parked claim would not see (a change was notified, a retry fell
    /// due, or the stream slept its full time): the next claim reads the due range, and a backed-off stream
    /// claims again. The claim out, if any, was taken back first ([`take_claim`](Self::take_claim)).
    pub fn recheck(&mut self) {
        self.due = self.due.unknown_if_empty();
        self.woken();
    }

    /// The leases it holds, counted in the database (where every replica records reports), while no claim of
    /// it was out: `reported` is the count of reports recorded here at the time.
    pub fn recount(&mut self, reported: u64, outstanding: u64) {
        self.sent = reported + outstanding;
    }
}

impl DueRange {
    /// An empty range may have received something; a range known to have more stays so.
    fn unknown_if_empty(self) -> DueRange {
        match self {
            DueRange::Empty => DueRange::Unknown,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream with room for 8 (batches of 2), its claims stood in for by numbers.
    fn stream() -> StreamState<u32> {
        StreamState::new("dst_1", 8, 0)
    }

    fn leased(sent: u64, more_due: bool) -> Answer {
        Answer::Leased {
            sent,
            more_due,
            parked_again: false,
        }
    }

    fn kind(put: Option<Put>) -> Option<(&'static str, ClaimKind, u64)> {
        put.map(|put| match put {
            Put::Read(claim) => ("read", claim.kind, claim.room),
            Put::Park(claim) => ("park", claim.kind, claim.room),
        })
    }

    #[test]
    fn a_new_stream_reads_the_due_range_for_all_its_room() {
        let stream = stream();
        assert_eq!(
            kind(stream.next_claim(0)),
            Some(("read", ClaimKind::Due, 8))
        );
    }

    #[test]
    fn leases_taken_over_count_against_the_room() {
        let stream: StreamState<u32> = StreamState::new("dst_1", 8, 5);
        assert_eq!(stream.outstanding(0), 5);
        assert_eq!(
            kind(stream.next_claim(0)),
            Some(("read", ClaimKind::Due, 3))
        );
        assert_eq!(stream.outstanding(5), 0);
    }

    #[test]
    fn no_second_claim_while_one_is_out() {
        let mut stream = stream();
        stream.put_out(1);
        assert_eq!(stream.next_claim(0), None);
        assert_eq!(stream.claim_out(), Some(&mut 1));
    }

    #[test]
    fn a_full_stream_waits_for_a_batch_of_room() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(8, true));
        assert_eq!(stream.next_claim(0), None, "8 outstanding, no room");
        assert_eq!(
            stream.next_claim(1),
            None,
            "room 1 is less than a batch of 2"
        );
        assert_eq!(
            kind(stream.next_claim(2)),
            Some(("read", ClaimKind::CatchUp, 2))
        );
    }

    #[test]
    fn leases_held_for_long_shrink_the_batch_a_claim_waits_for() {
        let mut stream: StreamState<u32> = StreamState::new("dst_1", 16, 0);
        stream.put_out(1);
        stream.answered(leased(16, true));
        // 12 of the 16 held for long: 4 turn over, so a batch is 1, not 4.
        stream.held_long(12);
        assert_eq!(
            kind(stream.next_claim(1)),
            Some(("read", ClaimKind::CatchUp, 1))
        );
        // Once they are reported, batches are a quarter of the window again.
        stream.held_long(0);
        assert_eq!(
            stream.next_claim(3),
            None,
            "room 3 is less than a batch of 4"
        );
        assert_eq!(
            kind(stream.next_claim(4)),
            Some(("read", ClaimKind::CatchUp, 4))
        );
    }

    #[test]
    fn a_claim_that_left_deliveries_behind_makes_the_next_a_catch_up() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(3, true));
        assert_eq!(stream.due_range(), DueRange::Behind);
        assert_eq!(
            kind(stream.next_claim(3)),
            Some(("read", ClaimKind::CatchUp, 8))
        );
    }

    #[test]
    fn a_claim_that_emptied_the_range_parks_the_next() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(3, false));
        assert_eq!(stream.due_range(), DueRange::Empty);
        assert_eq!(
            kind(stream.next_claim(0)),
            Some(("park", ClaimKind::Due, 5))
        );
    }

    #[test]
    fn a_claim_parked_again_stays_out() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(Answer::Leased {
            sent: 3,
            more_due: false,
            parked_again: true,
        });
        assert_eq!(stream.claim_slot(), &ClaimSlot::Out(1));
        assert_eq!(stream.next_claim(0), None);
        assert_eq!(stream.outstanding(0), 3);
    }

    #[test]
    fn a_claim_that_leased_nothing_backs_the_stream_off_until_a_report() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(0, true));
        assert_eq!(stream.claim_slot(), &ClaimSlot::BackedOff);
        assert_eq!(stream.next_claim(0), None);
        stream.woken();
        assert_eq!(
            kind(stream.next_claim(0)),
            Some(("read", ClaimKind::CatchUp, 8))
        );
    }

    #[test]
    fn a_failed_claim_backs_off_and_reads_again_after() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(2, false));
        stream.put_out(2);
        stream.answered(Answer::Failed);
        assert_eq!(stream.claim_slot(), &ClaimSlot::BackedOff);
        assert_eq!(stream.due_range(), DueRange::Unknown);
        stream.woken();
        assert_eq!(
            kind(stream.next_claim(0)),
            Some(("read", ClaimKind::Due, 6))
        );
    }

    #[test]
    fn a_recheck_takes_the_parked_claim_back_and_reads() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(0, false));
        assert_eq!(stream.claim_slot(), &ClaimSlot::BackedOff);
        stream.recheck();
        assert_eq!(
            kind(stream.next_claim(0)),
            Some(("read", ClaimKind::Due, 8))
        );
        stream.put_out(2);
        assert_eq!(stream.take_claim(), Some(2));
        assert_eq!(stream.claim_slot(), &ClaimSlot::Free);
        assert_eq!(stream.take_claim(), None);
    }

    #[test]
    fn a_recheck_keeps_a_range_known_to_be_behind() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(8, true));
        stream.recheck();
        assert_eq!(stream.due_range(), DueRange::Behind);
    }

    #[test]
    fn a_report_does_not_free_a_claim_that_is_out() {
        let mut stream = stream();
        stream.put_out(1);
        stream.woken();
        assert_eq!(stream.claim_slot(), &ClaimSlot::Out(1));
    }

    #[test]
    fn a_recount_replaces_the_count_kept_in_memory() {
        let mut stream = stream();
        stream.put_out(1);
        stream.answered(leased(8, true));
        // Three were reported on another replica: the database holds 5, this server counted none reported.
        stream.recount(0, 5);
        assert_eq!(stream.outstanding(0), 5);
        assert_eq!(
            kind(stream.next_claim(0)),
            Some(("read", ClaimKind::CatchUp, 3))
        );
    }
}
