//! The leases held: how many each webhook and each account holds, and the caps a new lease must stay under.
//!
//! A lease is a share of a daemon stream's room (its request slots and prefetch). The per-webhook cap keeps one
//! slow endpoint from taking all of it; the per-account cap keeps one account with many webhooks (each under
//! its own cap, all slow or dead) from taking all of it either, so that the other accounts' deliveries are
//! still leased, whatever the daemon then does with its own request slots. Claims and the hand-off both lease
//! through [`InFlight::admit`], going by the counts one statement read ([`in_flight_cte`]); a claim's due
//! read leaves out the webhooks and accounts already at their cap ([`not_at_cap`]), and the metrics count
//! them with the same subqueries ([`count_at_cap`]).

use std::collections::{HashMap, HashSet};

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
        *in_flight.accounts.entry(account_id).or_insert(0) += n;
        in_flight.webhooks.insert(webhook_id, n);
    }
    Ok(in_flight)
}
