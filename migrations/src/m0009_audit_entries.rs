//! The audit log: one row per admin change, written in the change's own transaction
//! (`server/src/store/audit.rs`). Read by account, newest first, so the key is `(account_id, id)` (ids are
//! time-ordered ULIDs); a filter by target reads that range and checks `target_id`.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0009_audit_entries"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let c = crate::key_collation(manager);
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE TABLE audit_entries (\
               id VARCHAR(64){c} NOT NULL PRIMARY KEY, \
               account_id VARCHAR(128){c} NOT NULL, \
               key_id VARCHAR(64){c} NOT NULL, \
               action VARCHAR(32){c} NOT NULL, \
               target_id VARCHAR(64){c} NOT NULL, \
               changes TEXT NOT NULL, \
               created_at BIGINT NOT NULL)"
        ))
        .await?;
        db.execute_unprepared(
            "CREATE INDEX audit_entries_account ON audit_entries (account_id, id)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE audit_entries")
            .await?;
        Ok(())
    }
}
