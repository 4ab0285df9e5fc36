//! Drops two indexes of `deliveries` that cost more than they served:
//!
//! - `deliveries_lease_owner`: every claim and every report changed the indexed column, two index writes per
//!   delivery; the queries by lease owner (count, renew, release a stream's leases) all filter on
//!   `status = 'sending'` too, and the status index finds those few rows as fast.
//! - `deliveries_event_id`: no query looks deliveries up by event alone (a replay narrows by webhook and
//!   status first), yet on PostgreSQL every delivery's insert and both of its updates wrote an entry in it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_drop_unused_delivery_indexes"
    }
}

const DROPPED: [(&str, &str); 2] = [
    ("deliveries_lease_owner", "lease_owner"),
    ("deliveries_event_id", "event_id"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in DROPPED {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(Alias::new("deliveries"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in DROPPED {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new("deliveries"))
                        .col(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
