//! The Kit Webhooks schema, one migration per change, portable between SQLite and PostgreSQL.
//!
//! Times are stored as Unix milliseconds in `BIGINT` columns: they compare and index the same way on both
//! databases (SQLite keeps chrono timestamps as text, whose ordering depends on its formatting).

pub use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_drop_unused_delivery_indexes;
mod m0003_index_deliveries_in_progress;
mod m0004_byte_order_keys;
mod m0005_attempts_keyed_by_delivery;
mod m0006_index_deliveries_by_event;
mod m0007_sealing_keys;
mod m0008_api_key_lifecycle;
mod m0009_audit_entries;
mod m0010_webhook_headers;
mod m0011_ordering_and_test_deliveries;
mod m0012_index_only_keyed_events;
mod m0013_index_held_deliveries_by_webhook;

pub use m0011_ordering_and_test_deliveries::ORDERED_UNFINISHED;

/// The collation of a new `VARCHAR` column: bytewise (`COLLATE "C"`) on PostgreSQL, as m0004 made every
/// other one; SQLite compares bytes already.
fn key_collation(manager: &SchemaManager) -> &'static str {
    match manager.get_database_backend() {
        sea_orm_migration::sea_orm::DbBackend::Postgres => " COLLATE \"C\"",
        _ => "",
    }
}

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_drop_unused_delivery_indexes::Migration),
            Box::new(m0003_index_deliveries_in_progress::Migration),
            Box::new(m0004_byte_order_keys::Migration),
            Box::new(m0005_attempts_keyed_by_delivery::Migration),
            Box::new(m0006_index_deliveries_by_event::Migration),
            Box::new(m0007_sealing_keys::Migration),
            Box::new(m0008_api_key_lifecycle::Migration),
            Box::new(m0009_audit_entries::Migration),
            Box::new(m0010_webhook_headers::Migration),
            Box::new(m0011_ordering_and_test_deliveries::Migration),
            Box::new(m0012_index_only_keyed_events::Migration),
            Box::new(m0013_index_held_deliveries_by_webhook::Migration),
        ]
    }
}
