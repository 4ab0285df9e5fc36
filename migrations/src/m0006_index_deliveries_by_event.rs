//! Indexes `deliveries` by `event_id` again, for retention (`server/src/retention.rs`): an event is pruned
//! with its deliveries once every one of them is finished, which needs an event's deliveries found without
//! reading the table.
//!
//! m0002 dropped this index because nothing read it and, on PostgreSQL, each delivery wrote three entries in
//! it (an update that changes any indexed column writes a new entry in every index). Retention reads it now;
//! docs/PERFORMANCE.md, "The retention round", measures what it costs the delivery path.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_index_deliveries_by_event"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("deliveries_event_id")
                    .table(Alias::new("deliveries"))
                    .col(Alias::new("event_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("deliveries_event_id")
                    .table(Alias::new("deliveries"))
                    .to_owned(),
            )
            .await
    }
}
