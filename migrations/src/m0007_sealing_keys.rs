//! Records which keys seal the webhooks' signing secrets (`server/src/secrets.rs`): only a key's id, never the
//! key. A server refuses to start unless it holds every key recorded here, so two replicas can never seal with
//! different keys, and a wrong or missing key is found at start, not at the first delivery.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_sealing_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let collate = crate::key_collation(manager);
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE TABLE sealing_keys (id VARCHAR(32){collate} NOT NULL PRIMARY KEY, created_at BIGINT NOT NULL)"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE sealing_keys")
            .await?;
        Ok(())
    }
}
