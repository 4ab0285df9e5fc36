//! `deliveries_held_by_webhook`: a webhook's `held` deliveries, oldest due first.
//!
//! A due delivery whose webhook holds as many leases as its cap allows is held by the claim that passes it
//! over, so that later claims do not walk past it again, and a report that ends one of the webhook's leases
//! lets as many go back to `pending` (the server's `store::leases::held_back`), looking them up here on every
//! report group that has some. The index holds only held rows (a paused or disabled webhook's waiting
//! deliveries, and those behind a cap), so the delivery path, which leaves most deliveries pending, sending
//! and finished, rarely writes to it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0013_index_held_deliveries_by_webhook"
    }
}

const UP: &str = "CREATE INDEX IF NOT EXISTS deliveries_held_by_webhook \
                  ON deliveries (webhook_id, next_attempt_at) WHERE status = 'held'";
const DOWN: &str = "DROP INDEX IF EXISTS deliveries_held_by_webhook";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
