//! Gives API keys a life: when one expires, when it was revoked, and when it was last used (to the minute,
//! `server/src/api/auth.rs`). A revoked key's row stays, so lists and the audit log can still name it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_api_key_lifecycle"
    }
}

// One column per statement: SQLite's ALTER TABLE adds one at a time.
const COLUMNS: [&str; 3] = ["expires_at", "revoked_at", "last_used_at"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for column in COLUMNS {
            db.execute_unprepared(&format!(
                "ALTER TABLE api_keys ADD COLUMN {column} BIGINT NULL"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for column in COLUMNS {
            db.execute_unprepared(&format!("ALTER TABLE api_keys DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }
}
