//! Gives every key column on PostgreSQL (ids, account ids, statuses, event types, idempotency keys: all the
//! `VARCHAR` columns, none of which holds human text) the `"C"` collation: compared byte by byte, as SQLite
//! compares them.
//!
//! Under the database's default collation (`en_US.UTF-8`, or even `C.UTF-8` on PostgreSQL 15) every B-tree
//! comparison of a key went through the C library's `strcoll`, after copying both strings to terminate them,
//! and each delivery writes about ten index entries (docs/PERFORMANCE.md, step 36). Byte order is also the
//! order the ids are made in (a prefix and a ULID), so a page cursor means the same on both databases; a
//! language's collation orders them by other rules (case and punctuation ignored at first).
//!
//! Changing a column's collation rebuilds its indexes but not the table. SQLite already compares with
//! `BINARY`: nothing to do there.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_byte_order_keys"
    }
}

/// Every `VARCHAR` column of the schema, with its length (sea-orm's own `seaql_migrations` is left as it made
/// it).
const KEY_COLUMNS: [(&str, &str, u32); 22] = [
    ("api_keys", "id", 64),
    ("api_keys", "key_hash", 64),
    ("api_keys", "role", 16),
    ("api_keys", "account_id", 128),
    ("webhooks", "id", 64),
    ("webhooks", "account_id", 128),
    ("webhooks", "status", 16),
    ("events", "id", 64),
    ("events", "account_id", 128),
    ("events", "type", 64),
    ("events", "idempotency_key", 255),
    ("deliveries", "id", 64),
    ("deliveries", "webhook_id", 64),
    ("deliveries", "account_id", 128),
    ("deliveries", "event_id", 64),
    ("deliveries", "event_type", 64),
    ("deliveries", "status", 16),
    ("deliveries", "lease_id", 64),
    ("deliveries", "lease_owner", 64),
    ("attempts", "id", 64),
    ("attempts", "delivery_id", 64),
    ("attempts", "error_kind", 32),
];

/// One `ALTER TABLE` per table (its indexes are rebuilt once), setting `collation` on its key columns.
fn alter_tables(collation: &str) -> Vec<String> {
    let mut tables: Vec<(&str, Vec<String>)> = Vec::new();
    for (table, column, length) in KEY_COLUMNS {
        let change =
            format!(r#"ALTER COLUMN "{column}" TYPE VARCHAR({length}) COLLATE "{collation}""#);
        match tables.iter_mut().find(|(name, _)| *name == table) {
            Some((_, changes)) => changes.push(change),
            None => tables.push((table, vec![change])),
        }
    }
    tables
        .into_iter()
        .map(|(table, changes)| format!(r#"ALTER TABLE "{table}" {}"#, changes.join(", ")))
        .collect()
}

async fn set_collation(manager: &SchemaManager<'_>, collation: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let db = manager.get_connection();
    for statement in alter_tables(collation) {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_collation(manager, "C").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_collation(manager, "default").await
    }
}
