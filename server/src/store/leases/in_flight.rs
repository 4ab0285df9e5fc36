//! The leases held: how many each webhook and each account holds, and the caps a new lease must stay under.
//!
//! A lease is a share of a daemon stream's room (its request slots and prefetch). The per-webhook cap keeps one
//! slow endpoint from taking all of it; the per-account cap keeps one account with many webhooks (each under
//! its own cap, all slow or dead) from taking all of it either, so that the other accounts' deliveries are
//! still leased, whatever the daemon then does with its own request slots. Claims and the hand-off both lease
//! through [`InFlight::admit`], going by the counts one statement read ([`in_flight_cte`]); a claim's due
//! read leaves out the webhooks and accounts already at their cap ([`at_cap_ctes`], [`NOT_AT_CAP`]), and
//! the metrics count them with the same CTEs ([`COUNT_AT_CAP`]).
//!
//! On SQLite the one writer also keeps the counts between its cycles ([`KeptCounts`]): every lease begins
//! and ends in a cycle (a claim, a hand-off, a report), so the cycle that ends with the counts in hand leaves
//! them for the next, whose claims bind what is at its cap ([`at_cap_ctes`]) instead of counting every lease
//! held again. A lease ended outside a cycle (a stream's end, an expiry, a deleted webhook) makes the next
//! cycle count again.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use kit_webhooks::sync::lock;
use sea_orm::{DbBackend, DbErr};

use crate::{
    core::event::DeliveryStatus,
    store::sql::{id_list, in_progress, json_rows::decode_rows},
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
    webhooks: HashMap<String, u64>,
    accounts: HashMap<String, u64>,
}

impl InFlight {
    /// Counts one more lease for `webhook_id` of `account_id` if neither is at its cap; returns whether it did.
    pub fn admit(&mut self, webhook_id: &str, account_id: &str, caps: LeaseCaps) -> bool {
        let webhook = self.webhooks.get(webhook_id).copied().unwrap_or(0);
        let account = self.accounts.get(account_id).copied().unwrap_or(0);
        if webhook >= caps.per_webhook || account >= caps.per_account {
            return false;
        }
        self.webhooks.insert(webhook_id.to_owned(), webhook + 1);
        self.accounts.insert(account_id.to_owned(), account + 1);
        true
    }

    /// Counts one lease of `webhook_id` of `account_id` less: it ended.
    pub fn end(&mut self, webhook_id: &str, account_id: &str) {
        // One count less, and no entry once none is left.
        let count_down = |counts: &mut HashMap<String, u64>, id: &str| {
            if let Some(n) = counts.get_mut(id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(id);
                }
            }
        };
        count_down(&mut self.webhooks, webhook_id);
        count_down(&mut self.accounts, account_id);
    }

    /// Whether `webhook_id` holds as many leases as its cap allows.
    pub fn webhook_at_cap(&self, webhook_id: &str, caps: LeaseCaps) -> bool {
        self.webhooks.get(webhook_id).copied().unwrap_or(0) >= caps.per_webhook
    }

    /// The webhooks and accounts at their cap: their due deliveries wait for a lease of theirs to end.
    pub fn at_cap(&self, caps: LeaseCaps) -> AtCap {
        let capped = |counts: &HashMap<String, u64>, cap: u64| {
            counts
                .iter()
                .filter(|(_, n)| **n >= cap)
                .map(|(id, _)| id.clone())
                .collect()
        };
        AtCap {
            webhooks: capped(&self.webhooks, caps.per_webhook),
            accounts: capped(&self.accounts, caps.per_account),
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

/// The columns of [`in_flight_cte`], and the set read from it.
pub(in crate::store) const IN_FLIGHT_COLUMNS: [&str; 3] = ["webhook_id", "account_id", "n"];
pub(in crate::store) const IN_FLIGHT_FROM: &str = "FROM in_flight";

/// The webhooks at their cap, and the accounts at theirs (with [`in_flight_cte`] in scope): each binds its
/// cap.
const WEBHOOKS_AT_CAP: &str = "SELECT webhook_id FROM in_flight WHERE n >= ?";
const ACCOUNTS_AT_CAP: &str =
    "SELECT account_id FROM in_flight GROUP BY account_id HAVING SUM(n) >= ?";

/// The CTEs `webhooks_at_cap` and `accounts_at_cap` (one column each, `webhook_id` and `account_id`) that a
/// claim's due read filters by ([`NOT_AT_CAP`]) and the metrics count ([`COUNT_AT_CAP`]), with the values
/// they bind. With the `known` counts (SQLite's writer keeps them between cycles, [`KeptCounts`]; a cycle's
/// later claims go by its earlier claim's on either database) they are the two lists of ids, each bound
/// whole: what is at its cap is a handful of ids, where binding every count held made the database parse a
/// row per webhook holding leases at every claim (docs/PERFORMANCE.md, step 73). Otherwise they are counted,
/// after [`in_flight_cte`], which is then in scope too.
pub(in crate::store) fn at_cap_ctes(
    backend: DbBackend,
    known: Option<&InFlight>,
    caps: LeaseCaps,
) -> (String, Vec<sea_orm::Value>) {
    match known {
        Some(known) => {
            let at_cap = known.at_cap(caps);
            let list = |column, ids: &HashSet<String>| {
                id_list::select(backend, column, ids.iter().map(String::as_str))
            };
            let (webhooks, webhook_ids) = list("webhook_id", &at_cap.webhooks);
            let (accounts, account_ids) = list("account_id", &at_cap.accounts);
            (
                format!(
                    "webhooks_at_cap AS MATERIALIZED ({webhooks}), \
                     accounts_at_cap AS MATERIALIZED ({accounts})"
                ),
                vec![webhook_ids, account_ids],
            )
        }
        None => (
            format!(
                "{}, webhooks_at_cap AS MATERIALIZED ({WEBHOOKS_AT_CAP}), \
                 accounts_at_cap AS MATERIALIZED ({ACCOUNTS_AT_CAP})",
                in_flight_cte()
            ),
            caps.values().into(),
        ),
    }
}

/// A due-range filter on `deliveries` (with [`at_cap_ctes`] in scope) leaving out the webhooks and the
/// accounts at their cap.
pub(in crate::store) const NOT_AT_CAP: &str =
    "webhook_id NOT IN (SELECT webhook_id FROM webhooks_at_cap) \
     AND account_id NOT IN (SELECT account_id FROM accounts_at_cap)";

/// The webhooks and the accounts at their cap, counted as columns `webhooks` and `accounts` (with
/// [`at_cap_ctes`] in scope): what the metrics show (`crate::store::gauges`).
pub(in crate::store) const COUNT_AT_CAP: &str =
    "SELECT (SELECT COUNT(*) FROM webhooks_at_cap) AS webhooks, \
     (SELECT COUNT(*) FROM accounts_at_cap) AS accounts";

impl LeaseCaps {
    /// The caps as values to bind, per webhook then per account.
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
        *in_flight.accounts.entry(account_id).or_insert(0) += n;
        in_flight.webhooks.insert(webhook_id, n);
    }
    Ok(in_flight)
}

/// The lease counts SQLite's writer keeps from one cycle to the next (the module's doc). A cycle takes them
/// once it holds the writer connection, counts its own leases in and its reports' out, and leaves them for
/// the next; any other write that begins or ends leases calls [`KeptCounts::forget`] while it holds that
/// connection, before its commit, so that no cycle takes counts its commit made wrong. A cycle that took
/// the counts before such a write and leaves them after it leaves nothing: the generation changed.
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

    /// Leases begun or ended outside the writer's cycles, by a write that holds the writer connection and has
    /// yet to commit: the next cycle counts them again.
    pub(in crate::store) fn forget(&self) {
        let mut kept = lock(&self.0);
        kept.counts = None;
        kept.generation += 1;
    }
}
