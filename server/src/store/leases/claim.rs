//! Claiming: leasing the head of the due range to a stream, in one read and one write.
//!
//! The read returns the leases each webhook and account holds (few rows, from the status index), the head of
//! the due range in `next_attempt_at` order (only the delivery columns, limited in the index, so the database
//! reads only what it leases whatever the range's size or its statistics), and each of those deliveries'
//! webhooks and events once. Webhooks and accounts at their cap are left out of the due range
//! (`super::in_flight`), so a slow endpoint's backlog, or a busy account's, cannot fill the window and starve
//! the others, nor keep the stream reading: what they hold back waits for the report that frees their room
//! (`super::in_flight::AtCap`). Then one statement leases what was picked, and holds (`held`) the due
//! deliveries the read passed over because their webhook was at its cap, so that later claims do not walk
//! past them again while its leases last; reports let them go as its leases end ([`super::held_back`]).
//!
//! An ordered delivery (its webhook is ordered, `crate::core::webhook::Ordering`) is due only when no older
//! delivery of its webhook is unfinished (pending, held or sending): so an ordered webhook has at most one
//! lease, always on its oldest unfinished delivery, whichever stream, replica or daemon claims. A retry
//! scheduled later keeps the ones behind it waiting; a delivery that fails for good lets the next one go.
//! PostgreSQL claims that race both see the older delivery unfinished (pending or sending) and leave the
//! younger one alone; on SQLite the single writer serialises them.

use std::{collections::HashMap, sync::Arc};

use kit_webhooks_migrations::ORDERED_UNFINISHED;
use sea_orm::{
    sea_query::Expr, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, Value,
};

use super::{
    held_back::HeldBack,
    in_flight::{
        at_cap_ctes, decode_in_flight, InFlight, LeaseCaps, IN_FLIGHT_COLUMNS, IN_FLIGHT_FROM,
        NOT_AT_CAP,
    },
    sending::{DueDelivery, LeasedDelivery, SendingEvent, SendingWebhook},
};
use crate::{
    core::{event::DeliveryStatus, id, webhook::Status as WebhookStatus},
    store::{
        entity::delivery,
        sql::{
            batch::Batch,
            id_list, in_progress,
            json_rows::{decode_rows, select_json},
            write_txn::WriteTxn,
        },
        Store,
    },
};

/// A filter on `deliveries` leaving out the ordered deliveries that wait for an older one of their webhook
/// (the module's doc): what makes a pending delivery due besides its time, for claims and for the gauges
/// that count the due ones (`crate::store::gauges`).
pub(in crate::store) fn not_blocked() -> String {
    format!(
        "(NOT ordered OR NOT EXISTS (SELECT 1 FROM deliveries AS older WHERE {ORDERED_UNFINISHED} \
         AND webhook_id = deliveries.webhook_id AND id < deliveries.id))"
    )
}

/// What a claim reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// The head of the due range.
    Due,
    /// The head of the due range, which the stream's last claim left non-empty: most likely a full window,
    /// a long read and write. Answered with more due, it is not parked again; a writer cycle leasing one
    /// does not keep the other committers waiting (`crate::writer`).
    CatchUp,
    /// Only the deliveries its cycle publishes (`super::super::hand_off`): a parked claim, taken by a
    /// publishing cycle. The due range is not read: the stream's last read found it empty, with nothing
    /// notified since.
    HandOff,
}

/// A stream's request for up to `room` more leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub owner: String,
    pub room: u64,
    pub kind: ClaimKind,
}

impl Claim {
    /// A claim for up to `room` due deliveries.
    pub fn new(owner: impl Into<String>, room: u64) -> Self {
        Claim {
            owner: owner.into(),
            room,
            kind: ClaimKind::Due,
        }
    }

    /// This claim, of `kind`.
    pub fn of_kind(mut self, kind: ClaimKind) -> Self {
        self.kind = kind;
        self
    }
}

/// What a claim leased.
#[derive(Debug, Default)]
pub struct Claimed {
    pub leased: Vec<LeasedDelivery>,
    /// Whether due deliveries may remain that this claim did not lease and a read could: it filled its room.
    /// When false the due range held nothing more but what the caps keep back, so only something new (a
    /// publish, a retry falling due, a release, a report freeing a capped webhook's or account's room) can
    /// give the stream work.
    pub more_due: bool,
}

impl Store {
    /// Leases up to `room` due deliveries to stream `owner`, never letting one webhook or one account hold
    /// more leases than `caps`. Returns them ready to send, with their webhook and event ([`claim_in`]).
    pub async fn claim_due(
        &self,
        owner: &str,
        room: u64,
        caps: LeaseCaps,
        now: i64,
        lease_expires_at: i64,
    ) -> Result<Claimed, DbErr> {
        let txn = WriteTxn::begin(self.writer()).await?;
        let claim = Claim::new(owner, room);
        let (claimed, _) = claim_in(
            &txn,
            &claim,
            caps,
            (now, lease_expires_at),
            self.held_back(),
            None,
        )
        .await?;
        self.kept_counts().forget();
        txn.commit().await?;
        Ok(claimed)
    }
}

/// What a claim's read found: the lease counts, the head of the due range, and its webhooks and events.
struct DueHead {
    in_flight: InFlight,
    due: Vec<DueDelivery>,
    webhooks: HashMap<String, Arc<SendingWebhook>>,
    events: HashMap<String, Arc<SendingEvent>>,
    /// Due deliveries the read passed over, before the last one it took, because their webhook was at its
    /// cap, each with its webhook.
    passed: Vec<(String, String)>,
}

/// The most due deliveries a claim passes over that it holds: a dead endpoint's backlog is held over a few
/// claims rather than all in one (each is a row written).
const HOLD_AT_MOST: u64 = 4096;

/// [`Store::claim_due`] inside a transaction the caller commits, at `now` for leases expiring at
/// `lease_expires_at`, going by the lease counts `known` if the cycle has them (`super::in_flight::KeptCounts`)
/// or else counting them; notes in `held_back` the webhooks it held deliveries of. Also returns the lease
/// counts with its own leases in (for the hand-off, `super::super::hand_off`, and the next claim).
pub async fn claim_in(
    txn: &WriteTxn,
    claim: &Claim,
    caps: LeaseCaps,
    (now, lease_expires_at): (i64, i64),
    held_back: &HeldBack,
    known: Option<InFlight>,
) -> Result<(Claimed, InFlight), DbErr> {
    let DueHead {
        mut in_flight,
        due,
        webhooks,
        events,
        passed,
    } = read_due_head(txn, claim.room, caps, now, known).await?;
    // A full window of candidates may have more behind it. What the caps keep back (passed over by the read,
    // or refused below) is not more due: no read can lease it until a lease of its webhook or account ends,
    // and the report that ends one says so (`InFlight::at_cap`).
    let more_due = due.len() as u64 >= claim.room;
    let lease_id = id::new(id::Kind::Lease);
    let mut leased = Vec::new();
    // Both wait `held`: a paused webhook's until it is resumed, a capped one's until its leases end.
    let (mut held, mut capped): (Vec<String>, Vec<String>) = passed.into_iter().unzip();
    for delivery in due {
        if leased.len() as u64 >= claim.room {
            break;
        }
        let (Some(hook), Some(event)) = (
            webhooks.get(&delivery.webhook_id),
            events.get(&delivery.event_id),
        ) else {
            // Deleted with its webhook in the meantime (PostgreSQL's snapshot of this read is newer).
            continue;
        };
        if hook.status != WebhookStatus::Active && !delivery.test {
            // Left pending by a race with a pause (a lease released, a fan-out read just before the pause
            // committed): `held` now, so it neither goes out nor sits at the head of the due range.
            held.push(delivery.id);
            continue;
        }
        if !in_flight.admit(&delivery.webhook_id, &delivery.account_id, caps) {
            // Its webhook reached its cap within this claim: held as those the read passed over.
            if !delivery.test && in_flight.webhook_at_cap(&delivery.webhook_id, caps) {
                held.push(delivery.id);
                capped.push(delivery.webhook_id);
            }
            continue;
        }
        leased.push(LeasedDelivery::new(delivery, &lease_id, hook, event));
    }
    held_back.note(capped);
    write_leases(
        txn,
        &leased,
        &held,
        &lease_id,
        &claim.owner,
        lease_expires_at,
    )
    .await?;
    Ok((Claimed { leased, more_due }, in_flight))
}

/// The one statement a claim reads with: the webhooks and accounts at their cap (`webhooks_at_cap`,
/// `accounts_at_cap`: from the leases each holds, counted as `in_flight` and read back, or bound from the
/// `known` counts); the head of the due range without them (`due`), materialised so that every set below
/// sees the same rows (and, on PostgreSQL, the rows this claim locked); each due delivery's webhook and
/// event, once each however many of its deliveries fell due; and the deliveries of webhooks at their cap in
/// the stretch of the due range that `due` was taken from (`passed`).
async fn read_due_head(
    txn: &WriteTxn,
    room: u64,
    caps: LeaseCaps,
    now: i64,
    known: Option<InFlight>,
) -> Result<DueHead, DbErr> {
    let lock = match txn.get_database_backend() {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let (at_cap, bound) = at_cap_ctes(txn.get_database_backend(), known.as_ref(), caps);
    // No slack beyond `room`: capped webhooks and accounts are left out, and one reaching its cap within this
    // claim only leaves a few slots for the next one. The limit is cast, not bound bare: SQLite (3.47 on)
    // plans with the value of a bare `LIMIT ?` and so prepares the statement again whenever it changes.
    let with = format!(
        "WITH {}, \
         due AS MATERIALIZED (SELECT {}, next_attempt_at FROM deliveries \
         WHERE {} AND next_attempt_at <= ? \
         AND {NOT_AT_CAP} \
         AND {not_blocked} \
         ORDER BY next_attempt_at LIMIT CAST(? AS BIGINT){lock}), \
         {passed} ",
        at_cap,
        DueDelivery::COLUMNS.join(", "),
        in_progress::sql("status", DeliveryStatus::Pending),
        not_blocked = not_blocked(),
        passed = passed_cte(lock),
    );
    let room = room.min(i64::MAX as u64 / 2) as i64;
    let mut values: Vec<Value> = bound;
    values.extend([now.into(), room.into()]);
    // `passed`: the stretch's end, how far to read.
    values.extend([room.into(), now.into(), (room + HOLD_AT_MOST as i64).into()]);
    let due_from = "FROM due ORDER BY next_attempt_at";
    let hooks_from = "FROM webhooks WHERE id IN (SELECT webhook_id FROM due)";
    let events_from = "FROM events WHERE id IN (SELECT event_id FROM due)";
    let head = [
        (&DueDelivery::COLUMNS[..], due_from),
        (&SendingWebhook::COLUMNS, hooks_from),
        (&SendingEvent::COLUMNS, events_from),
        (&["id", "webhook_id"], PASSED_FROM),
    ];
    let (in_flight, [due, hooks, events, passed]) =
        select_head(txn, &with, head, values, known).await?;
    let due: Vec<DueDelivery> = decode_rows(&due, due_from)?;
    let (webhooks, events) = if due.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        (
            by_id(decode_rows::<SendingWebhook>(&hooks, hooks_from)?, |w| {
                &w.id
            }),
            by_id(decode_rows::<SendingEvent>(&events, events_from)?, |e| {
                &e.id
            }),
        )
    };
    Ok(DueHead {
        in_flight,
        due,
        webhooks,
        events,
        passed: decode_rows(&passed, PASSED_FROM)?,
    })
}

/// Reads the sets of `head` after `with`, and the lease counts unless `known` (those are not read back).
async fn select_head(
    txn: &WriteTxn,
    with: &str,
    head: [(&[&str], &str); 4],
    values: Vec<Value>,
    known: Option<InFlight>,
) -> Result<(InFlight, [String; 4]), DbErr> {
    if let Some(known) = known {
        return Ok((known, select_json(txn, with, head, values).await?));
    }
    let [counts, due, hooks, events, passed] = select_json(
        txn,
        with,
        [
            (&IN_FLIGHT_COLUMNS, IN_FLIGHT_FROM),
            head[0],
            head[1],
            head[2],
            head[3],
        ],
        values,
    )
    .await?;
    Ok((decode_in_flight(&counts)?, [due, hooks, events, passed]))
}

const PASSED_FROM: &str = "FROM passed";

/// The CTE `passed` (after `webhooks_at_cap` and `due`): the due deliveries, not test ones, of webhooks at
/// their cap in the stretch of the due range that `due` was taken from, up to its last row if `due` filled
/// the claim's room, else to now. The stretch is read as `due` read it, by the due index in due order
/// (`webhook_id` is tested on the rows read, never used to look rows up: a webhook's deliveries are mostly
/// history), and only when some webhook is at its cap. Binds the claim's room, now, the rows to read at most.
/// On PostgreSQL the rows read are locked, skipping those another claim holds, so that holding them never
/// waits.
fn passed_cte(lock: &str) -> String {
    format!(
        "passed AS MATERIALIZED (SELECT id, webhook_id FROM (SELECT id, webhook_id, test FROM deliveries \
         WHERE {pending} AND next_attempt_at <= (CASE WHEN (SELECT COUNT(*) FROM due) >= CAST(? AS BIGINT) \
         THEN (SELECT MAX(next_attempt_at) FROM due) ELSE ? END) \
         AND EXISTS (SELECT 1 FROM webhooks_at_cap) \
         ORDER BY next_attempt_at LIMIT CAST(? AS BIGINT){lock}) AS stretch \
         WHERE NOT test AND webhook_id IN (SELECT webhook_id FROM webhooks_at_cap))",
        pending = in_progress::sql("status", DeliveryStatus::Pending),
    )
}

/// `rows` shared, by their id.
fn by_id<T>(rows: Vec<T>, id: impl Fn(&T) -> &String) -> HashMap<String, Arc<T>> {
    rows.into_iter()
        .map(|row| (id(&row).clone(), Arc::new(row)))
        .collect()
}

/// Marks `leased` `sending` under `lease_id`, and `held` `held` (those still pending), in one batch.
async fn write_leases(
    txn: &WriteTxn,
    leased: &[LeasedDelivery],
    held: &[String],
    lease_id: &str,
    owner: &str,
    lease_expires_at: i64,
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let mut batch = Batch::new(backend);
    if !held.is_empty() {
        // Still pending: on PostgreSQL another committer may have leased one since this claim read it.
        batch.push(
            &delivery::Entity::update_many()
                .col_expr(delivery::Column::Status, Expr::value(DeliveryStatus::Held))
                .filter(id_list::filter(
                    backend,
                    delivery::Column::Id,
                    held.iter().map(String::as_str),
                ))
                .filter(in_progress::filter(DeliveryStatus::Pending)),
        );
    }
    if !leased.is_empty() {
        batch.push(
            &delivery::Entity::update_many()
                .col_expr(
                    delivery::Column::Status,
                    Expr::value(DeliveryStatus::Sending),
                )
                .col_expr(delivery::Column::LeaseId, Expr::value(lease_id))
                .col_expr(delivery::Column::LeaseOwner, Expr::value(owner))
                .col_expr(
                    delivery::Column::LeaseExpiresAt,
                    Expr::value(lease_expires_at),
                )
                .filter(id_list::filter(
                    backend,
                    delivery::Column::Id,
                    leased.iter().map(|l| l.delivery_id.as_str()),
                )),
        );
    }
    txn.write(batch).await
}
