//! Drops `deliveries_lease_owner`. Every claim and every report changed the indexed column, so the index cost
//! two index writes per delivery; the queries by lease owner (count, renew, release a stream's leases) all
//! filter on `status = 'sending'` too, and the status index finds those few rows as fast.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_drop_lease_owner_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("deliveries_lease_owner")
                    .table(Alias::new("deliveries"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("deliveries_lease_owner")
                    .table(Alias::new("deliveries"))
                    .col(Alias::new("lease_owner"))
                    .to_owned(),
            )
            .await
    }
}
