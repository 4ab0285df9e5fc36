//! Leases: a delivery handed to a daemon stream (`sending`, with a lease id, the owning stream and an
//! expiry), taken back, and recorded.
//!
//! A delivery is due when it is `pending`, its `next_attempt_at` has passed and its webhook is `active` (a
//! test delivery goes out whatever the status; an ordered one waits for the older ones of its webhook,
//! [`claim`]). Claiming ([`claim`]) leases due deliveries in the writer's
//! transaction (`crate::writer`): PostgreSQL replicas and committers skip each other's locked rows
//! (`FOR UPDATE SKIP LOCKED`), and SQLite's single writer connection serialises claims. Recording
//! ([`record`]) applies a daemon's report and releases the lease. The expiry is only the backstop for a
//! server that died: a live stream renews its leases, and a stream that ends releases them at once (this
//! module).
//!
//! Each writer operation has an `_in` form that runs inside a transaction the caller commits (the writer's
//! cycle) and a `Store` method that runs it in a transaction of its own.

pub mod claim;
mod held_back;
mod hook_health;
pub mod in_flight;
pub mod record;
pub mod sending;

pub use claim::{Claim, ClaimKind, Claimed};
pub use held_back::HeldBack;
pub use in_flight::{InFlight, KeptCounts, LeaseCaps};
pub use record::{AttemptReport, ReadyReport, Recorded};
pub use sending::{LeasedDelivery, SendingEvent, SendingWebhook};

use sea_orm::{
    sea_query::Expr, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, TransactionTrait,
};

use super::{
    entity::delivery,
    sql::{in_progress, json_rows::statement},
    Store, ROWS_PER_STATEMENT,
};
use crate::core::{event::DeliveryStatus, id, webhook::Status as WebhookStatus};

/// The deliveries stream `owner` holds leases on, as a filter served by `deliveries_in_progress`.
fn held_by(owner: &str) -> Condition {
    Condition::all()
        .add(delivery::Column::LeaseOwner.eq(owner))
        .add(in_progress::filter(DeliveryStatus::Sending))
}

impl Store {
    /// Leases owned by stream `owner`.
    pub async fn count_leases(&self, owner: &str) -> Result<u64, DbErr> {
        delivery::Entity::find()
            .filter(held_by(owner))
            .count(self.writer())
            .await
    }

    /// How many of stream `owner`'s leases issued before `issued_before` (ms) are still unreported: requests
    /// its daemon has held for long (endpoints that do not answer, until they time out): an estimate for the
    /// stream's claims (`crate::dispatch`). Counted on the writer's connection, whose page cache holds these
    /// rows already: on a reader, the once-a-second count kept a reader's cache filled with them (tens of
    /// MiB of the server's memory, docs/PERFORMANCE.md, step 59).
    pub async fn count_leases_issued_before(
        &self,
        owner: &str,
        issued_before: i64,
    ) -> Result<u64, DbErr> {
        delivery::Entity::find()
            .filter(held_by(owner))
            // Lease ids are ULIDs: they sort by the time they were issued.
            .filter(delivery::Column::LeaseId.lt(id::floor(id::Kind::Lease, issued_before)))
            .count(self.writer())
            .await
    }

    /// Extends the leases of a live stream that were issued at or after `issued_since` (ms). An older lease
    /// is one whose report never came (a daemon gave up on it): left to expire, its delivery goes back to
    /// the queue instead of staying `sending` for as long as the stream lives.
    pub async fn renew_leases(
        &self,
        owner: &str,
        lease_expires_at: i64,
        issued_since: i64,
    ) -> Result<u64, DbErr> {
        let result = delivery::Entity::update_many()
            .col_expr(
                delivery::Column::LeaseExpiresAt,
                Expr::value(lease_expires_at),
            )
            .filter(held_by(owner))
            // Lease ids are ULIDs: they sort by the time they were issued.
            .filter(delivery::Column::LeaseId.gte(id::floor(id::Kind::Lease, issued_since)))
            .exec(self.writer())
            .await?;
        Ok(result.rows_affected)
    }

    /// Returns a stream's unreported leases to `pending`, as they were: no attempt is counted.
    pub async fn release_leases(&self, owner: &str) -> Result<u64, DbErr> {
        self.return_leases(delivery::Column::LeaseOwner.eq(owner))
            .await
    }

    /// Passes to stream `owner` the leases of stream `previous` on the deliveries in `started` (those whose
    /// requests its daemon has started), with a new expiry, and returns the rest of `previous`'s leases to
    /// `pending`, in one transaction. Returns how many were taken over and how many returned.
    pub async fn take_over_leases(
        &self,
        previous: &str,
        started: &[String],
        owner: &str,
        lease_expires_at: i64,
    ) -> Result<(u64, u64), DbErr> {
        let txn = self.writer().begin().await?;
        let mut taken = 0;
        for ids in started.chunks(ROWS_PER_STATEMENT) {
            taken += delivery::Entity::update_many()
                .col_expr(delivery::Column::LeaseOwner, Expr::value(owner))
                .col_expr(
                    delivery::Column::LeaseExpiresAt,
                    Expr::value(lease_expires_at),
                )
                .filter(delivery::Column::LeaseOwner.eq(previous))
                .filter(in_progress::filter(DeliveryStatus::Sending))
                .filter(delivery::Column::Id.is_in(ids.iter().cloned()))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        let returned = return_leases_on(&txn, delivery::Column::LeaseOwner.eq(previous)).await?;
        self.kept_counts().forget();
        txn.commit().await?;
        Ok((taken, returned))
    }

    /// Returns every lease whose expiry has passed (its server died) to `pending`.
    pub async fn expire_leases(&self, now: i64) -> Result<u64, DbErr> {
        self.return_leases(delivery::Column::LeaseExpiresAt.lt(now))
            .await
    }

    async fn return_leases(&self, which: sea_orm::sea_query::SimpleExpr) -> Result<u64, DbErr> {
        // A transaction, though one statement: the counts are forgotten while it holds the writer connection.
        let txn = self.writer().begin().await?;
        let returned = return_leases_on(&txn, which).await?;
        self.kept_counts().forget();
        txn.commit().await?;
        Ok(returned)
    }

    /// When the next claimable delivery falls due after `now`, if any is scheduled.
    pub async fn next_due_at(&self, now: i64) -> Result<Option<i64>, DbErr> {
        let sql = format!(
            "SELECT MIN(d.next_attempt_at) AS at FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE {} AND d.next_attempt_at > ? AND (w.status = ? OR d.test)",
            in_progress::sql("d.status", DeliveryStatus::Pending)
        );
        let row = self
            .reader()
            .query_one_raw(statement(
                self.backend(),
                &sql,
                vec![now.into(), WebhookStatus::Active.into()],
            ))
            .await?;
        match row {
            Some(row) => row.try_get::<Option<i64>>("", "at"),
            None => Ok(None),
        }
    }
}

/// Returns the leases `which` selects to `pending`, on `db`.
async fn return_leases_on(
    db: &impl ConnectionTrait,
    which: sea_orm::sea_query::SimpleExpr,
) -> Result<u64, DbErr> {
    let result = clear_lease(delivery::Entity::update_many())
        .col_expr(
            delivery::Column::Status,
            Expr::value(DeliveryStatus::Pending),
        )
        .filter(in_progress::filter(DeliveryStatus::Sending))
        .filter(which)
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// An update that releases the lease: no lease id, owner or expiry.
fn clear_lease(
    update: sea_orm::UpdateMany<delivery::Entity>,
) -> sea_orm::UpdateMany<delivery::Entity> {
    update
        .col_expr(
            delivery::Column::LeaseId,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delivery::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delivery::Column::LeaseExpiresAt,
            Expr::value(Option::<i64>::None),
        )
}
