//! The first schema: API keys, webhooks, events, deliveries and attempts, with an index for every list query
//! and for finding due deliveries.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    KeyHash,
    Role,
    AccountId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    AccountId,
    Url,
    Description,
    Events,
    Status,
    FailureCount,
    FailingSince,
    DisabledReason,
    RateLimitPerSecond,
    Secret,
    PreviousSecret,
    PreviousSecretExpiresAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    AccountId,
    Type,
    DataJson,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    WebhookId,
    AccountId,
    EventId,
    EventType,
    Status,
    AttemptCount,
    NextAttemptAt,
    LeaseId,
    LeaseOwner,
    LeaseExpiresAt,
    CreatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    Id,
    DeliveryId,
    Number,
    StartedAt,
    DurationMs,
    RequestHeaders,
    ResponseStatus,
    ResponseHeaders,
    ResponseBody,
    ErrorKind,
    Error,
}

fn text_id<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn millis<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    // A declarative table of the schema: one long function reads better than many small ones.
    #[allow(clippy::too_many_lines)]
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(text_id(ApiKeys::Id))
                    .col(
                        ColumnDef::new(ApiKeys::KeyHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::Role).string_len(16).not_null())
                    .col(ColumnDef::new(ApiKeys::AccountId).string_len(128).null())
                    .col(millis(ApiKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .col(text_id(Webhooks::Id))
                    .col(
                        ColumnDef::new(Webhooks::AccountId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Webhooks::Url).text().not_null())
                    .col(ColumnDef::new(Webhooks::Description).text().not_null())
                    .col(ColumnDef::new(Webhooks::Events).text().not_null())
                    .col(ColumnDef::new(Webhooks::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Webhooks::FailureCount).integer().not_null())
                    .col(ColumnDef::new(Webhooks::FailingSince).big_integer().null())
                    .col(ColumnDef::new(Webhooks::DisabledReason).text().not_null())
                    .col(
                        ColumnDef::new(Webhooks::RateLimitPerSecond)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Webhooks::Secret).text().not_null())
                    .col(ColumnDef::new(Webhooks::PreviousSecret).text().null())
                    .col(
                        ColumnDef::new(Webhooks::PreviousSecretExpiresAt)
                            .big_integer()
                            .null(),
                    )
                    .col(millis(Webhooks::CreatedAt))
                    .col(millis(Webhooks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Listing an account's webhooks, and fan-out (active webhooks of an account).
        manager
            .create_index(
                Index::create()
                    .name("webhooks_account_id")
                    .table(Webhooks::Table)
                    .col(Webhooks::AccountId)
                    .col(Webhooks::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhooks_account_status")
                    .table(Webhooks::Table)
                    .col(Webhooks::AccountId)
                    .col(Webhooks::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(text_id(Events::Id))
                    .col(ColumnDef::new(Events::AccountId).string_len(128).not_null())
                    .col(ColumnDef::new(Events::Type).string_len(64).not_null())
                    .col(ColumnDef::new(Events::DataJson).text().not_null())
                    .col(
                        ColumnDef::new(Events::IdempotencyKey)
                            .string_len(255)
                            .null(),
                    )
                    .col(millis(Events::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // NULL keys are distinct on both databases, so events without a key never collide.
        manager
            .create_index(
                Index::create()
                    .name("events_account_idempotency_key")
                    .table(Events::Table)
                    .col(Events::AccountId)
                    .col(Events::IdempotencyKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_account_id")
                    .table(Events::Table)
                    .col(Events::AccountId)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_type_id")
                    .table(Events::Table)
                    .col(Events::Type)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(text_id(Deliveries::Id))
                    .col(
                        ColumnDef::new(Deliveries::WebhookId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::AccountId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::EventId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::EventType)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Deliveries::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Deliveries::AttemptCount)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Deliveries::NextAttemptAt)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(Deliveries::LeaseId).string_len(64).null())
                    .col(ColumnDef::new(Deliveries::LeaseOwner).string_len(64).null())
                    .col(
                        ColumnDef::new(Deliveries::LeaseExpiresAt)
                            .big_integer()
                            .null(),
                    )
                    .col(millis(Deliveries::CreatedAt))
                    .col(ColumnDef::new(Deliveries::CompletedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // Finding due deliveries: status first, then time.
        manager
            .create_index(
                Index::create()
                    .name("deliveries_status_next_attempt_at")
                    .table(Deliveries::Table)
                    .col(Deliveries::Status)
                    .col(Deliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // Listing a webhook's deliveries (and deleting them with it).
        manager
            .create_index(
                Index::create()
                    .name("deliveries_webhook_id")
                    .table(Deliveries::Table)
                    .col(Deliveries::WebhookId)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await?;
        // Releasing and renewing one stream's leases.
        manager
            .create_index(
                Index::create()
                    .name("deliveries_lease_owner")
                    .table(Deliveries::Table)
                    .col(Deliveries::LeaseOwner)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("deliveries_event_id")
                    .table(Deliveries::Table)
                    .col(Deliveries::EventId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Attempts::Table)
                    .col(text_id(Attempts::Id))
                    .col(
                        ColumnDef::new(Attempts::DeliveryId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Attempts::Number).integer().not_null())
                    .col(millis(Attempts::StartedAt))
                    .col(ColumnDef::new(Attempts::DurationMs).integer().not_null())
                    .col(ColumnDef::new(Attempts::RequestHeaders).text().not_null())
                    .col(
                        ColumnDef::new(Attempts::ResponseStatus)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Attempts::ResponseHeaders).text().not_null())
                    .col(ColumnDef::new(Attempts::ResponseBody).text().not_null())
                    .col(
                        ColumnDef::new(Attempts::ErrorKind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Attempts::Error).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("attempts_delivery_number")
                    .table(Attempts::Table)
                    .col(Attempts::DeliveryId)
                    .col(Attempts::Number)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Attempts::Table.into_iden(),
            Deliveries::Table.into_iden(),
            Events::Table.into_iden(),
            Webhooks::Table.into_iden(),
            ApiKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
