//! `events_account_idempotency_key` holds only the events published with an idempotency key.
//!
//! It was a unique index over every event, so a publish without a key wrote an entry `(account_id, NULL)`
//! that no lookup ever reads (a key is looked up by its value, and NULLs never conflict), on a page chosen by
//! the account: with many accounts, a page of its own for nearly every event of a writer cycle, written whole
//! to the WAL at the cycle's commit. As a partial index it enforces the same uniqueness and serves the same
//! lookups (`account_id = … AND idempotency_key = …` or `IN (…)` implies `IS NOT NULL`, which both planners
//! prove), and a keyless publish writes nothing to it (docs/PERFORMANCE.md, step 67).
//!
//! The index is dropped and made again under its name; `IF EXISTS` lets a migration interrupted between the
//! two (SQLite runs them outside a transaction) run again.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0012_index_only_keyed_events"
    }
}

const DROP: &str = "DROP INDEX IF EXISTS events_account_idempotency_key";
const UP: &str = "CREATE UNIQUE INDEX events_account_idempotency_key \
                  ON events (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL";
const DOWN: &str =
    "CREATE UNIQUE INDEX events_account_idempotency_key ON events (account_id, idempotency_key)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(DROP).await?;
        db.execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(DROP).await?;
        db.execute_unprepared(DOWN).await?;
        Ok(())
    }
}
