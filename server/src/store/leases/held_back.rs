//! Deliveries held back by their webhook's lease cap: due, but `held` until a lease of the webhook ends.
//!
//! A claim's due read passes over the deliveries of webhooks at their cap (`super::in_flight`). A webhook
//! whose endpoint hangs keeps its cap for as long as its requests take to time out, and its backlog, the
//! oldest deliveries in the due range, was walked past by every claim meanwhile: with a hundred such
//! webhooks, most of what claims cost (docs/PERFORMANCE.md, step 71). So the claim that passes them over holds
//! them (`super::claim`), as a paused webhook's waiting deliveries are held, and they leave the due range;
//! a report group lets go of as many of a webhook's held deliveries, oldest first, as it ended leases of that
//! webhook ([`release`]), in the transaction that ends them, so the next claim finds them due.
//!
//! The rule that makes this safe: a held delivery of an active webhook is one waiting for that webhook's
//! room. What ends a lease without a report (a stream's end, an expiry) or frees room otherwise (a larger
//! cap after a restart, another replica's report on PostgreSQL) lets go of it through the lease sweep
//! ([`Store::release_held_back`]), every few seconds. Resuming a webhook makes all its held deliveries
//! pending, as before; pausing it leaves these held. Test deliveries are never held.
//!
//! Which webhooks may have deliveries held back is kept in memory ([`HeldBack`]): noted by the claims that
//! hold them, and read again from the database by each sweep. A report group releases only for those, so the
//! common case, no endpoint at its cap, costs no statement at all.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use kit_webhooks::sync::lock;
use sea_orm::{ActiveEnum, ConnectionTrait, DbBackend, DbErr};

use super::in_flight::{in_flight_cte, LeaseCaps};
use crate::{
    core::{event::DeliveryStatus, webhook::Status as WebhookStatus},
    store::{
        sql::{batch::Batch, in_progress, json_rows::statement},
        Store,
    },
};

/// The webhooks that may have deliveries held back by their cap, shared by the committers and the sweep.
/// A webhook missing from it while it has some (another replica's claim held them, or a claim noted it just
/// as the sweep read the set again) has them let go by the sweep instead, seconds later.
#[derive(Debug, Clone, Default)]
pub struct HeldBack(Arc<Mutex<HashSet<String>>>);

impl HeldBack {
    /// Notes that deliveries of `webhooks` were held.
    pub(super) fn note(&self, webhooks: impl IntoIterator<Item = String>) {
        let mut webhooks = webhooks.into_iter().peekable();
        if webhooks.peek().is_some() {
            lock(&self.0).extend(webhooks);
        }
    }

    /// Those of `webhooks` that may have deliveries held back, each with a count of 0.
    pub(super) fn among<'a>(
        &self,
        webhooks: impl IntoIterator<Item = &'a str>,
    ) -> HashMap<String, u64> {
        let known = lock(&self.0);
        if known.is_empty() {
            return HashMap::new();
        }
        webhooks
            .into_iter()
            .filter(|id| known.contains(*id))
            .map(|id| (id.to_owned(), 0))
            .collect()
    }
}

/// `status = 'held'`, in the text, as the partial index `deliveries_held_by_webhook` (migration m0013)
/// says it, so that the planners match it.
fn held() -> String {
    in_progress::any_of(&[DeliveryStatus::Held])
}

fn pending() -> String {
    DeliveryStatus::Pending.to_value()
}

/// Adds to `batch` letting go of up to `n` of `webhook_id`'s held deliveries, oldest due first: as many as
/// the group ended leases of it. PostgreSQL skips rows another transaction holds (a concurrent group letting
/// go of the same webhook's): what it leaves, the sweep gets.
pub(super) fn release(batch: &mut Batch, webhook_id: &str, n: u64) {
    let backend = batch.backend();
    let lock = match backend {
        DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let sql = format!(
        "UPDATE deliveries SET status = '{pending}' WHERE id IN (SELECT id FROM deliveries \
         WHERE {held} AND webhook_id = ? ORDER BY next_attempt_at LIMIT CAST(? AS BIGINT){lock})",
        pending = pending(),
        held = held(),
    );
    let n = n.min(i64::MAX as u64) as i64;
    batch.push_statement(statement(backend, &sql, vec![webhook_id.into(), n.into()]));
}

impl Store {
    /// Makes pending every held delivery of an active webhook that is below its lease cap (the module's doc
    /// says when that is needed), then reads which webhooks still have some; returns how many it let go.
    /// Looked up webhook by webhook: a paused webhook's held backlog, however long, is not read.
    pub async fn release_held_back(&self, caps: LeaseCaps) -> Result<u64, DbErr> {
        let db = self.writer();
        let backend = db.get_database_backend();
        let active = "SELECT id FROM webhooks WHERE status = ?";
        let sql = format!(
            "WITH {} UPDATE deliveries SET status = '{pending}' WHERE {held} AND NOT test \
             AND webhook_id IN ({active} AND id NOT IN (SELECT webhook_id FROM in_flight WHERE n >= ?))",
            in_flight_cte(),
            pending = pending(),
            held = held(),
        );
        let [per_webhook, _] = caps.values();
        let released = db
            .execute_raw(statement(
                backend,
                &sql,
                vec![WebhookStatus::Active.into(), per_webhook],
            ))
            .await?
            .rows_affected();
        let sql = format!(
            "SELECT id FROM ({active}) AS w WHERE EXISTS \
             (SELECT 1 FROM deliveries WHERE {held} AND webhook_id = w.id)",
            held = held(),
        );
        let rows = db
            .query_all_raw(statement(backend, &sql, vec![WebhookStatus::Active.into()]))
            .await?;
        let still = rows
            .iter()
            .map(|row| row.try_get::<String>("", "id"))
            .collect::<Result<HashSet<_>, _>>()?;
        *lock(&self.held_back().0) = still;
        Ok(released)
    }
}
