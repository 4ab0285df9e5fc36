//! Indexes `deliveries` by `event_id` for retention (`server/src/store/retention.rs`), which prunes an event
//! with its deliveries once every one of them is finished, and so must find an event's deliveries without
//! reading the table.
//!
//! Two partial indexes rather than one over every row: `deliveries_event_finished` holds the finished
//! deliveries (the ones pruned), `deliveries_event_held` those held behind a paused webhook; the ones pending
//! or leased are found through `deliveries_in_progress` (m0003). A row version enters an index only when it
//! satisfies its predicate: a delivery writes one entry here when it finishes, none while it is pending or
//! leased, where an index over every row would take a new entry at each of its updates on PostgreSQL (m0002
//! dropped such an index for that). The predicates are written as m0003's are, in the `OR` form SQLite's
//! planner matches, and the queries spell them the same way.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_index_deliveries_by_event"
    }
}

const UP: [&str; 2] = [
    "CREATE INDEX deliveries_event_finished ON deliveries (event_id) \
     WHERE status = 'succeeded' OR status = 'failed'",
    "CREATE INDEX deliveries_event_held ON deliveries (event_id) WHERE status = 'held'",
];
const DOWN: [&str; 2] = [
    "DROP INDEX deliveries_event_finished",
    "DROP INDEX deliveries_event_held",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in UP {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in DOWN {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
