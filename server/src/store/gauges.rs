//! What the server's gauges read from the database at a scrape (`crate::metrics`): the due deliveries and
//! the oldest one's due time, the leases, the webhooks and accounts at their lease cap, and the webhooks by
//! status. They count across every server of the database, so any replica's scrape gives the whole picture.

use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect,
};

use super::{
    entity::{delivery, webhook},
    leases::{
        claim::not_blocked,
        in_flight::{at_cap_ctes, COUNT_AT_CAP},
        LeaseCaps,
    },
    sql::{in_progress, json_rows::statement},
    Store,
};
use crate::core::{event::DeliveryStatus, webhook::Status as WebhookStatus};

/// The deliveries in progress, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryGauges {
    /// Pending deliveries whose next attempt is due, as a claim would find them: not the ordered ones waiting
    /// for an older delivery of their webhook, nor those held back by their webhook's lease cap once a claim
    /// has passed them over, which are no lag of the platform's (the webhook's endpoint holds them).
    pub due: u64,
    /// When the longest-waiting of them fell due (Unix ms), if any is due.
    pub oldest_due_at: Option<i64>,
    /// Deliveries leased to a daemon (`sending`).
    pub sending: u64,
}

impl Store {
    /// Counts the due and the leased deliveries at `now` (ms), through the partial index of deliveries in
    /// progress: the cost follows the deliveries in progress, not the history.
    pub async fn delivery_gauges(&self, now: i64) -> Result<DeliveryGauges, DbErr> {
        let (due, oldest_due_at): (i64, Option<i64>) = delivery::Entity::find()
            .select_only()
            .column_as(Expr::cust("COUNT(*)"), "due")
            .column_as(delivery::Column::NextAttemptAt.min(), "oldest")
            .filter(in_progress::filter(DeliveryStatus::Pending))
            .filter(delivery::Column::NextAttemptAt.lte(now))
            .filter(Expr::cust(not_blocked()))
            .into_tuple()
            .one(self.reader())
            .await?
            .unwrap_or((0, None));
        let sending = delivery::Entity::find()
            .filter(in_progress::filter(DeliveryStatus::Sending))
            .count(self.reader())
            .await?;
        Ok(DeliveryGauges {
            due: due.max(0) as u64,
            oldest_due_at,
            sending,
        })
    }

    /// How many webhooks, and how many accounts, hold as many leases as `caps` lets them: their due
    /// deliveries wait, however much room the daemons have. Counted through the partial index of deliveries
    /// in progress, into the same CTEs a claim's due read filters by.
    pub async fn count_at_lease_cap(&self, caps: LeaseCaps) -> Result<(u64, u64), DbErr> {
        let db = self.reader();
        let (at_cap, values) = at_cap_ctes(db.get_database_backend(), None, caps);
        let sql = format!("WITH {at_cap} {COUNT_AT_CAP}");
        let row = db
            .query_one_raw(statement(db.get_database_backend(), &sql, values))
            .await?;
        let count = |column| -> Result<u64, DbErr> {
            let n: i64 = match &row {
                Some(row) => row.try_get("", column)?,
                None => 0,
            };
            Ok(n.max(0) as u64)
        };
        Ok((count("webhooks")?, count("accounts")?))
    }

    /// How many webhooks are in each status, across every account (statuses with none are left out).
    pub async fn count_webhooks_by_status(&self) -> Result<Vec<(WebhookStatus, u64)>, DbErr> {
        let counts: Vec<(WebhookStatus, i64)> = webhook::Entity::find()
            .select_only()
            .column(webhook::Column::Status)
            .column_as(Expr::cust("COUNT(*)"), "count")
            .group_by(webhook::Column::Status)
            .into_tuple()
            .all(self.reader())
            .await?;
        Ok(counts
            .into_iter()
            .map(|(status, count)| (status, count.max(0) as u64))
            .collect())
    }
}
