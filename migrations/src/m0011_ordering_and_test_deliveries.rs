//! Ordered webhooks and test deliveries.
//!
//! - `webhooks.ordering`: `unordered` (the default) or `ordered`, whose deliveries go one at a time in the order
//!   their events were published.
//! - `deliveries.ordered`: whether the delivery waits its turn, fixed when it is created from its webhook's
//!   ordering. A claim leases an ordered delivery only when no older one of its webhook is unfinished; the
//!   partial index `deliveries_ordered_unfinished` answers that question from the few unfinished deliveries of
//!   ordered webhooks, and holds nothing for the others.
//! - `deliveries.test`: a test delivery (a ping, or an example sent to one webhook), which goes out whatever
//!   the webhook's status, is tried once and never counts against auto-disable. Was `event_type = 'test.ping'`.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0011_ordering_and_test_deliveries"
    }
}

/// The predicate of `deliveries_ordered_unfinished`, which a query spells out the same way to be served by
/// it (`OR`, not `IN`, as SQLite's planner matches them; see m0003).
pub const ORDERED_UNFINISHED: &str =
    "ordered AND (status = 'pending' OR status = 'held' OR status = 'sending')";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let collate = crate::key_collation(manager);
        db.execute_unprepared(&format!(
            "ALTER TABLE webhooks ADD COLUMN ordering VARCHAR(16){collate} NOT NULL DEFAULT 'unordered'"
        ))
        .await?;
        db.execute_unprepared(
            "ALTER TABLE deliveries ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT FALSE",
        )
        .await?;
        db.execute_unprepared(
            "ALTER TABLE deliveries ADD COLUMN test BOOLEAN NOT NULL DEFAULT FALSE",
        )
        .await?;
        db.execute_unprepared("UPDATE deliveries SET test = TRUE WHERE event_type = 'test.ping'")
            .await?;
        db.execute_unprepared(&format!(
            "CREATE INDEX deliveries_ordered_unfinished ON deliveries (webhook_id, id) WHERE {ORDERED_UNFINISHED}"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX deliveries_ordered_unfinished")
            .await?;
        db.execute_unprepared("ALTER TABLE deliveries DROP COLUMN test")
            .await?;
        db.execute_unprepared("ALTER TABLE deliveries DROP COLUMN ordered")
            .await?;
        db.execute_unprepared("ALTER TABLE webhooks DROP COLUMN ordering")
            .await?;
        Ok(())
    }
}
