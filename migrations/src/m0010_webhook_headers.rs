//! Gives webhooks headers of their own, sent with every request (an `Authorization` an endpoint's gateway
//! requires): one column holding them sealed like the signing secret (`server/src/core/sealing.rs`), or
//! empty for none.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0010_webhook_headers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE webhooks ADD COLUMN headers TEXT NOT NULL DEFAULT ''")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE webhooks DROP COLUMN headers")
            .await?;
        Ok(())
    }
}
