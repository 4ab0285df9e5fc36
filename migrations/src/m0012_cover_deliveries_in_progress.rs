//! Widens `deliveries_in_progress` (m0003) with each delivery's `webhook_id` and `account_id`, the columns a
//! claim decides by before it reads a row.
//!
//! Every claim counts the leases each webhook and account holds (the `sending` entries, grouped by webhook and
//! account) and walks the head of the due range (the `pending` entries in `next_attempt_at` order) past the
//! deliveries of webhooks and accounts at their cap. With the two columns in the index, SQLite counts the
//! leases from the index alone and tests the cap before it fetches a row, so a claim's cost no longer grows
//! with the leases held and the deliveries the caps keep back: what a dead endpoint's account piles up (its
//! leases held until they time out, its backlog at the head of the due range) costs the other accounts'
//! claims index entries, not table rows. PostgreSQL reads the same entries (index-only where its visibility
//! map allows). The predicate is m0003's.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0012_cover_deliveries_in_progress"
    }
}

const DROP: &str = "DROP INDEX deliveries_in_progress";
const CREATE_COVERING: &str = "CREATE INDEX deliveries_in_progress ON deliveries \
     (status, next_attempt_at, webhook_id, account_id) \
     WHERE status = 'pending' OR status = 'sending'";
const CREATE_NARROW: &str =
    "CREATE INDEX deliveries_in_progress ON deliveries (status, next_attempt_at) \
     WHERE status = 'pending' OR status = 'sending'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(DROP).await?;
        db.execute_unprepared(CREATE_COVERING).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(DROP).await?;
        db.execute_unprepared(CREATE_NARROW).await?;
        Ok(())
    }
}
