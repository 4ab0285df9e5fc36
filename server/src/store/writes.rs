//! One transaction for everything the delivery path writes in a cycle: published events and their fan-out,
//! attempt reports, and lease claims (see `crate::writer`, which gathers them).
//!
//! Sharing the transaction is what makes the pipeline fast: a cycle costs one commit (one fsync on
//! PostgreSQL) however many publishes, reports and claims it carries, and the order inside it, reports, then
//! claims, then publishes, lets a claim use the room that reports in the same cycle freed, lease the older
//! due deliveries first, and fill what room is left with the deliveries published in the same cycle, which
//! are inserted already leased ([`HandOff`]).

use sea_orm::{DbBackend, DbErr};

use super::{
    entity::event,
    events::{publish_in, Published},
    hand_off::HandOff,
    leases::{
        claim::claim_in, in_flight::AtCap, record::record_in, Claim, ClaimKind, Claimed, LeaseCaps,
        ReadyReport, Recorded,
    },
    sql::write_txn::WriteTxn,
    Store,
};
use crate::core::{policy::RetryPolicy, Error};

/// The writes of one cycle.
#[derive(Debug, Default)]
pub struct Writes {
    pub events: Vec<event::Model>,
    pub reports: Vec<ReadyReport>,
    pub claims: Vec<Claim>,
}

/// What each write of a cycle did, in the order of [`Writes`].
#[derive(Debug)]
pub struct Written {
    pub published: Vec<Result<Published, Error>>,
    pub recorded: Vec<Result<Recorded, Error>>,
    pub claimed: Vec<Result<Claimed, Error>>,
    /// The webhooks and accounts the cycle left at their cap, if it counted the leases.
    pub at_cap: Option<AtCap>,
}

/// The rules a cycle applies.
#[derive(Debug, Clone)]
pub struct WriteRules {
    pub retry: RetryPolicy,
    /// The most leases one webhook, and one account, may hold.
    pub caps: LeaseCaps,
    /// How long a new lease lasts, in milliseconds.
    pub lease_ttl_ms: i64,
}

impl Store {
    /// Commits `writes` in one transaction. If that fails (a lost race on an idempotency key with another
    /// replica, a deadlock, a write the database refuses, the database gone), each kind of write is tried
    /// again in a transaction of its own, and a kind that fails again write by write, so that one failing
    /// write fails no other; each write gets its own result.
    pub async fn commit_writes(&self, writes: Writes, rules: &WriteRules, now: i64) -> Written {
        match self.commit_together(&writes, rules, now).await {
            Ok(written) => written,
            Err(err) => {
                tracing::info!(error = %err, "combined commit failed; committing each kind on its own");
                self.commit_apart(writes, rules, now).await
            }
        }
    }

    async fn commit_together(
        &self,
        writes: &Writes,
        rules: &WriteRules,
        now: i64,
    ) -> Result<Written, DbErr> {
        let started = std::time::Instant::now();
        let txn = WriteTxn::begin(self.writer()).await?;
        // SQLite's one writer keeps the lease counts from cycle to cycle (`leases::in_flight::KeptCounts`).
        // Taken once the writer connection is this cycle's: a write that ends leases outside the cycles (a
        // stream's end, say) forgets them while it holds the connection, so counts taken before the wait for
        // it could still hold the leases that write ended, and pass their webhooks over.
        let sqlite = self.backend() == DbBackend::Sqlite;
        let (mut kept, generation) = match sqlite {
            true => self.kept_counts().take(),
            false => (None, 0),
        };
        let recorded = if writes.reports.is_empty() {
            Vec::new()
        } else {
            record_in(&txn, &writes.reports, &rules.retry, now, self.held_back()).await?
        };
        if let Some(counts) = kept.as_mut() {
            // Each report recorded ended its lease.
            for recorded in recorded.iter().flatten() {
                counts.end(&recorded.webhook_id, &recorded.account_id);
            }
        }
        let recorded_at = started.elapsed();
        let mut hand_off = HandOff::new(rules.caps, now + rules.lease_ttl_ms);
        if let Some(counts) = kept {
            hand_off.counted(counts);
        }
        let mut claimed = Vec::with_capacity(writes.claims.len());
        for claim in &writes.claims {
            if claim.kind == ClaimKind::HandOff {
                let nothing = Claimed::default();
                hand_off.open(claim, &nothing, None);
                claimed.push(nothing);
                continue;
            }
            let (leased, in_flight) = claim_in(
                &txn,
                claim,
                rules.caps,
                (now, now + rules.lease_ttl_ms),
                self.held_back(),
                hand_off.take_counts(),
            )
            .await?;
            hand_off.open(claim, &leased, Some(in_flight));
            claimed.push(leased);
        }
        let claimed_at = started.elapsed();
        let published = if writes.events.is_empty() {
            Vec::new()
        } else {
            publish_in(&txn, &writes.events, Some(&mut hand_off)).await?
        };
        let counts = hand_off.finish(&mut claimed);
        let at_cap = counts.as_ref().map(|counts| counts.at_cap(rules.caps));
        let published_at = started.elapsed();
        txn.commit().await?;
        if let (true, Some(counts)) = (sqlite, counts) {
            self.kept_counts().keep(counts, generation);
        }
        // Where a cycle's time goes (`KIT_BENCH_LOG=kit_webhooks_server=debug`).
        tracing::debug!(
            ?recorded_at,
            ?claimed_at,
            ?published_at,
            committed_at = ?started.elapsed(),
            "cycle phases"
        );
        Ok(Written {
            published: published.into_iter().map(Ok).collect(),
            recorded,
            claimed: claimed.into_iter().map(Ok).collect(),
            at_cap,
        })
    }

    /// Each kind of write in its own transaction(s); a kind that fails gets its error on each of its writes.
    async fn commit_apart(&self, writes: Writes, rules: &WriteRules, now: i64) -> Written {
        let n = writes.events.len();
        let published = if n == 0 {
            Vec::new()
        } else {
            self.publish_events(writes.events)
                .await
                .unwrap_or_else(|err| failed(err, n))
        };
        let n = writes.reports.len();
        let recorded = if n == 0 {
            Vec::new()
        } else {
            self.record_attempts(writes.reports, &rules.retry, now)
                .await
                .unwrap_or_else(|err| failed(err, n))
        };
        let mut claimed = Vec::with_capacity(writes.claims.len());
        for claim in writes.claims {
            let leased = self
                .claim_due(
                    &claim.owner,
                    claim.room,
                    rules.caps,
                    now,
                    now + rules.lease_ttl_ms,
                )
                .await
                .map_err(Error::from);
            claimed.push(leased);
        }
        Written {
            published,
            recorded,
            claimed,
            // Not gathered on this rare path: what its claims left at their cap is read again by the streams'
            // idle poll, if no later cycle counts it first.
            at_cap: None,
        }
    }
}

/// `n` copies of the error of a write that failed as a whole.
fn failed<T>(err: DbErr, n: usize) -> Vec<Result<T, Error>> {
    let err = Error::from(err);
    (0..n).map(|_| Err(err.copied())).collect()
}
