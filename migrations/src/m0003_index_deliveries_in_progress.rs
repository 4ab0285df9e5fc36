//! Narrows the status index of `deliveries` to the deliveries still in progress: `pending` (the due range
//! claims read) and `sending` (the leases claims count and streams renew and release).
//!
//! `(status, next_attempt_at)` over every delivery grew with the history while no query reads finished
//! deliveries through it (a webhook's deliveries are listed, replayed and moved between `pending` and `held`
//! through `deliveries_webhook_id`), and every reported result moved a delivery's entry from `sending` to
//! `succeeded` or `failed`: a delete and an insert. With the partial index a result only deletes the entry, and
//! the index holds the few thousand deliveries in progress instead of all of them. Queries that use it spell
//! the status out in their text (`store::in_progress`): a bound value would hide from the planner that the
//! query wants only rows the index holds.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0003_index_deliveries_in_progress"
    }
}

/// The same DDL on SQLite and PostgreSQL. The predicate is written with `OR`, the form SQLite's planner
/// matches a query's `status = 'pending'` against (it does not look into `IN` lists).
const CREATE_IN_PROGRESS: &str =
    "CREATE INDEX deliveries_in_progress ON deliveries (status, next_attempt_at) \
     WHERE status = 'pending' OR status = 'sending'";
const DROP_IN_PROGRESS: &str = "DROP INDEX deliveries_in_progress";
const CREATE_STATUS: &str =
    "CREATE INDEX deliveries_status_next_attempt_at ON deliveries (status, next_attempt_at)";
const DROP_STATUS: &str = "DROP INDEX deliveries_status_next_attempt_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_IN_PROGRESS).await?;
        db.execute_unprepared(DROP_STATUS).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_STATUS).await?;
        db.execute_unprepared(DROP_IN_PROGRESS).await?;
        Ok(())
    }
}
