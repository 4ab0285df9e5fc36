//! The leases held: how many each webhook and each account holds, and the caps a new lease must stay under.
//!
//! A lease is a share of a daemon stream's room (its request slots and prefetch). The per-webhook cap keeps one
//! slow endpoint from taking all of it; the per-account cap keeps one account with many webhooks (each under
//! its own cap, all slow or dead) from taking all of it either, so that the other accounts' deliveries are
//! still leased, whatever the daemon then does with its own request slots. Claims and the hand-off both lease
//! through [`InFlight::admit`], going by the counts one statement read ([`in_flight_cte`]); a claim's due
//! read leaves out the webhooks and accounts already at their cap ([`not_at_cap`]), and the metrics count
//! them with the same subqueries ([`count_at_cap`]).
//!
//! On SQLite the one writer also keeps the counts between its cycles ([`KeptCounts`]): every lease begins
//! and ends in a cycle (a claim, a hand-off, a report), so the cycle that ends with the counts in hand leaves
//! them for the next, which binds them ([`counts_cte`]) instead of counting every lease held again. A lease
//! ended outside a cycle (a stream's end, an expiry, a deleted webhook) makes the next cycle count again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use kit_webhooks::sync::lock;
use sea_orm::DbErr;

use crate::{
    core::event::DeliveryStatus,
    store::sql::{in_progress, json_rows::decode_rows},
};

/// The most leases one webhook, and one account, may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseCaps {
    pub per_webhook: u64,
    pub per_account: u64,
}

/// Leases held, by webhook and by account: what a claim counted, plus what it and the hand-off leased since.
/// Only webhooks and accounts holding leases have an entry.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    /// Each webhook's leases, with its account.
    webhooks: HashMap<String, (String, u64)>,
    accounts: HashMap<String, u64>,
}

impl InFlight {
    /// Counts one more lease for `webhook_id` of `account_id` if neither is at its cap; returns whether it did.
    pub fn admit(&mut self, webhook_id: &str, account_id: &str, caps: LeaseCaps) -> bool {
        let webhook = self.webhooks.get(webhook_id).map_or(0, |(_, n)| *n);
        let account = self.accounts.get(account_id).copied().unwrap_or(0);
        if webhook >= caps.per_webhook || account >= caps.per_account {
            return false;
        }
        self.webhooks
            .insert(webhook_id.to_owned(), (account_id.to_owned(), webhook + 1));
        self.accounts.insert(account_id.to_owned(), account + 1);
        true
    }

    /// Counts one lease of `webhook_id` of `account_id` less: it ended.
    pub fn end(&mut self, webhook_id: &str, account_id: &str) {
        if let Some((_, n)) = self.webhooks.get_mut(webhook_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.webhooks.remove(webhook_id);
            }
        }
        if let Some(n) = self.accounts.get_mut(account_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.accounts.remove(account_id);
            }
        }
    }

    /// Whether `webhook_id` holds as many leases as its cap allows.
    pub fn webhook_at_cap(&self, webhook_id: &str, caps: LeaseCaps) -> bool {
        self.webhooks.get(webhook_id).map_or(0, |(_, n)| *n) >= caps.per_webhook
    }

    /// The rows of [`in_flight_cte`], as the JSON array [`KEPT_CTE`] binds.
    fn rows_json(&self) -> String {
        use serde_json::Value;
        let rows = self
            .webhooks
            .iter()
            .map(|(webhook, (account, n))| {
                Value::Array(vec![
                    webhook.as_str().into(),
                    account.as_str().into(),
                    (*n).into(),
                ])
            })
            .collect();
        Value::Array(rows).to_string()
    }

    /// The webhooks and accounts at their cap: their due deliveries wait for a lease of theirs to end.
    pub fn at_cap(&self, caps: LeaseCaps) -> AtCap {
        AtCap {
            webhooks: self
                .webhooks
                .iter()
                .filter(|(_, (_, n))| *n >= caps.per_webhook)
                .map(|(id, _)| id.clone())
                .collect(),
            accounts: self
                .accounts
                .iter()
                .filter(|(_, n)| **n >= caps.per_account)
                .map(|(id, _)| id.clone())
                .collect(),
        }
    }
}

/// The webhooks and accounts a cycle left at their cap. A claim passes their due deliveries over and a
/// hand-off leaves their new ones `pending`, and neither says more is due because of them: no read could
/// lease them until one of their leases ends. The report that ends it says so instead
/// ([`AtCap::frees_room`], `crate::writer`), so that streams with nothing else due park their claims (and
/// take the next publishes as they are stored) rather than read the due range at every claim for as long as
/// one dead endpoint somewhere holds its cap.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AtCap {
    pub webhooks: HashSet<String>,
    pub accounts: HashSet<String>,
}

impl AtCap {
    /// Whether a lease of `webhook_id` of `account_id` ending frees room that one of them was out of;
    /// forgets them, so that the next such report (before a cycle counts again) is not announced twice.
    pub fn frees_room(&mut self, webhook_id: &str, account_id: &str) -> bool {
        // Both, not `||`: each set forgets what this report freed.
        self.webhooks.remove(webhook_id) | self.accounts.remove(account_id)
    }
}

/// The CTE `in_flight` that claims and the hand-off read: the leases each webhook holds, with its account
/// (a webhook belongs to one account, so grouping by both gives one row per webhook).
pub(in crate::store) fn in_flight_cte() -> String {
    format!(
        "in_flight AS MATERIALIZED (SELECT webhook_id, account_id, COUNT(*) AS n FROM deliveries \
         WHERE {} GROUP BY webhook_id, account_id)",
        in_progress::sql("status", DeliveryStatus::Sending)
    )
}

/// [`in_flight_cte`] with the rows of counts kept in memory ([`InFlight::rows_json`]), bound as its one
/// value, instead of counted (SQLite only, [`KeptCounts`]).
const KEPT_CTE: &str = "in_flight AS MATERIALIZED (SELECT json_extract(value, '$[0]') AS webhook_id, \
     json_extract(value, '$[1]') AS account_id, json_extract(value, '$[2]') AS n FROM json_each(?))";

/// The CTE `in_flight`: bound from the `known` counts ([`KEPT_CTE`]), with the value to bind first in its
/// statement, or counted ([`in_flight_cte`]).
pub(in crate::store) fn counts_cte(known: Option<&InFlight>) -> (String, Option<sea_orm::Value>) {
    match known {
        Some(known) => (KEPT_CTE.to_owned(), Some(known.rows_json().into())),
        None => (in_flight_cte(), None),
    }
}

/// The columns of [`in_flight_cte`], and the set read from it.
pub(in crate::store) const IN_FLIGHT_COLUMNS: [&str; 3] = ["webhook_id", "account_id", "n"];
pub(in crate::store) const IN_FLIGHT_FROM: &str = "FROM in_flight";

/// The webhooks at their cap, and the accounts at theirs (with [`in_flight_cte`] in scope): each binds its
/// cap.
const WEBHOOKS_AT_CAP: &str = "SELECT webhook_id FROM in_flight WHERE n >= ?";
const ACCOUNTS_AT_CAP: &str =
    "SELECT account_id FROM in_flight GROUP BY account_id HAVING SUM(n) >= ?";

/// A due-range filter on `deliveries` (with [`in_flight_cte`] in scope) leaving out the webhooks and the
/// accounts at their cap; binds the per-webhook cap, then the per-account cap ([`LeaseCaps::values`]).
pub(in crate::store) fn not_at_cap() -> String {
    format!("webhook_id NOT IN ({WEBHOOKS_AT_CAP}) AND account_id NOT IN ({ACCOUNTS_AT_CAP})")
}

/// The webhooks and the accounts at their cap, counted as columns `webhooks` and `accounts` (with
/// [`in_flight_cte`] in scope, binding as [`not_at_cap`] does): what the metrics show
/// (`crate::store::gauges`).
pub(in crate::store) fn count_at_cap() -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM ({WEBHOOKS_AT_CAP}) AS w) AS webhooks, \
         (SELECT COUNT(*) FROM ({ACCOUNTS_AT_CAP}) AS a) AS accounts"
    )
}

impl LeaseCaps {
    /// The values [`not_at_cap`] and [`count_at_cap`] bind.
    pub(in crate::store) fn values(self) -> [sea_orm::Value; 2] {
        let bound = |cap: u64| (cap.min(i64::MAX as u64) as i64).into();
        [bound(self.per_webhook), bound(self.per_account)]
    }
}

/// The rows of [`in_flight_cte`] as read.
pub(in crate::store) fn decode_in_flight(json: &str) -> Result<InFlight, DbErr> {
    let mut in_flight = InFlight::default();
    for (webhook_id, account_id, n) in decode_rows::<(String, String, i64)>(json, IN_FLIGHT_FROM)? {
        let n = n.max(0) as u64;
        *in_flight.accounts.entry(account_id.clone()).or_insert(0) += n;
        in_flight.webhooks.insert(webhook_id, (account_id, n));
    }
    Ok(in_flight)
}

/// The lease counts SQLite's writer keeps from one cycle to the next (the module's doc). A cycle takes them,
/// counts its own leases in and its reports' out, and leaves them for the next; any other write that ends
/// leases calls [`KeptCounts::forget`] once committed, so that the next cycle counts again. A cycle that
/// took the counts before such a write and leaves them after it leaves nothing: the generation changed.
#[derive(Debug, Clone, Default)]
pub struct KeptCounts(Arc<Mutex<Kept>>);

#[derive(Debug, Default)]
struct Kept {
    counts: Option<InFlight>,
    generation: u64,
}

impl KeptCounts {
    /// The counts left by the last cycle, if any, and the generation to leave the next ones under.
    pub(in crate::store) fn take(&self) -> (Option<InFlight>, u64) {
        let mut kept = lock(&self.0);
        (kept.counts.take(), kept.generation)
    }

    /// Leaves `counts`, exact as of a commit, for the next cycle, unless leases ended outside the cycles since
    /// [`KeptCounts::take`] returned `generation`.
    pub(in crate::store) fn keep(&self, counts: InFlight, generation: u64) {
        let mut kept = lock(&self.0);
        if kept.generation == generation {
            kept.counts = Some(counts);
        }
    }

    /// Leases ended outside the writer's cycles (committed): the next cycle counts them again.
    pub(in crate::store) fn forget(&self) {
        let mut kept = lock(&self.0);
        kept.counts = None;
        kept.generation += 1;
    }
}
