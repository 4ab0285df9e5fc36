//! Delivery and attempt rows: listing, reading with history, and re-queueing (retry and replay).

use sea_orm::{
    sea_query::Expr, ActiveEnum, ActiveModelTrait, ColumnTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};

use super::{
    entity::{attempt, delivery, event, webhook},
    Store,
};
use crate::core::{
    audit::{Action, Actor, AuditEntry},
    event::DeliveryStatus,
    page::PageRequest,
    time,
    webhook::Status as WebhookStatus,
    Error,
};

/// Filters of a delivery list.
#[derive(Debug, Default)]
pub struct DeliveryFilter<'a> {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<&'a str>,
}

impl Store {
    /// One page of a webhook's deliveries, newest first.
    pub async fn list_deliveries(
        &self,
        account_id: &str,
        webhook_id: &str,
        filter: &DeliveryFilter<'_>,
        page: &PageRequest,
    ) -> Result<Vec<delivery::Model>, DbErr> {
        let mut query = delivery::Entity::find()
            .filter(delivery::Column::AccountId.eq(account_id))
            .filter(delivery::Column::WebhookId.eq(webhook_id));
        if let Some(status) = filter.status {
            query = match status {
                DeliveryStatus::Pending | DeliveryStatus::Held => query.filter(
                    delivery::Column::Status.is_in([DeliveryStatus::Pending, DeliveryStatus::Held]),
                ),
                other => query.filter(delivery::Column::Status.eq(other)),
            };
        }
        if let Some(event_type) = filter.event_type {
            query = query.filter(delivery::Column::EventType.eq(event_type));
        }
        if let Some(after) = &page.after {
            query = query.filter(delivery::Column::Id.lt(after.as_str()));
        }
        query
            .order_by_desc(delivery::Column::Id)
            .limit(page.limit + 1)
            .all(self.reader())
            .await
    }

    /// The delivery `id` of `account_id` with its attempts, oldest first.
    pub async fn find_delivery(
        &self,
        account_id: &str,
        id: &str,
    ) -> Result<Option<(delivery::Model, Vec<attempt::Model>)>, DbErr> {
        let Some(delivery) = delivery::Entity::find_by_id(id.to_owned())
            .filter(delivery::Column::AccountId.eq(account_id))
            .one(self.reader())
            .await?
        else {
            return Ok(None);
        };
        let attempts = attempt::Entity::find()
            .filter(attempt::Column::DeliveryId.eq(id))
            .order_by_asc(attempt::Column::Number)
            .all(self.reader())
            .await?;
        Ok(Some((delivery, attempts)))
    }

    /// Puts a finished (`succeeded` or `failed`) delivery back in the queue, due now, with `actor`'s audit
    /// entry.
    pub async fn retry_delivery(
        &self,
        account_id: &str,
        id: &str,
        actor: &Actor,
    ) -> Result<Option<delivery::Model>, Error> {
        let txn = self.writer().begin().await?;
        let Some(found) = delivery::Entity::find_by_id(id.to_owned())
            .filter(delivery::Column::AccountId.eq(account_id))
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        let finished = [DeliveryStatus::Succeeded, DeliveryStatus::Failed].contains(&found.status);
        if !finished {
            return Err(Error::FailedPrecondition(format!(
                "delivery `{id}` is {}; only succeeded or failed deliveries can be retried",
                found.status.to_value()
            )));
        }
        let webhook_active = Self::find_webhook_on(&txn, account_id, &found.webhook_id)
            .await?
            .is_some_and(|w| w.status == WebhookStatus::Active);
        let status = DeliveryStatus::waiting(webhook_active, found.test);
        let mut active = found.into_active_model();
        active.status = sea_orm::Set(status);
        active.next_attempt_at = sea_orm::Set(Some(time::now_ms()));
        active.completed_at = sea_orm::Set(None);
        let updated = active.update(&txn).await?;
        let entry = AuditEntry::new(actor, Action::DeliveryRetry, id)
            .with("status", updated.status.to_value());
        Self::record_audit(&txn, &entry).await?;
        txn.commit().await?;
        Ok(Some(updated))
    }

    /// Re-queues, in one statement, every `failed` delivery of the webhook whose event was created in
    /// `[since_ms, until_ms)`, with `actor`'s audit entry. One UPDATE is atomic: a crash leaves all or none
    /// re-queued, and a second run finds them no longer `failed`, so nothing is re-queued twice.
    pub async fn replay_deliveries(
        &self,
        webhook: &webhook::Model,
        since_ms: i64,
        until_ms: i64,
        actor: &Actor,
    ) -> Result<u64, DbErr> {
        let account_id = webhook.account_id.as_str();
        let webhook_id = webhook.id.as_str();
        // Test deliveries are never failed-and-replayed (they are tried once), so the webhook decides alone.
        let status = DeliveryStatus::waiting(webhook.status == WebhookStatus::Active, false);
        let txn = self.writer().begin().await?;
        let events_in_window = event::Entity::find()
            .select_only()
            .column(event::Column::Id)
            .filter(event::Column::AccountId.eq(account_id))
            .filter(event::Column::CreatedAt.gte(since_ms))
            .filter(event::Column::CreatedAt.lt(until_ms))
            .into_query();
        let result = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(status))
            .col_expr(delivery::Column::NextAttemptAt, Expr::value(time::now_ms()))
            .col_expr(
                delivery::Column::CompletedAt,
                Expr::value(Option::<i64>::None),
            )
            .filter(delivery::Column::AccountId.eq(account_id))
            .filter(delivery::Column::WebhookId.eq(webhook_id))
            .filter(delivery::Column::Status.eq(DeliveryStatus::Failed))
            .filter(delivery::Column::EventId.in_subquery(events_in_window))
            .exec(&txn)
            .await?;
        let entry = AuditEntry::new(actor, Action::DeliveryReplay, webhook_id)
            .with("since", time::rfc3339(since_ms))
            .with("until", time::rfc3339(until_ms))
            .with("deliveries_requeued", result.rows_affected);
        Self::record_audit(&txn, &entry).await?;
        txn.commit().await?;
        Ok(result.rows_affected)
    }
}
