//! Event rows, and publishing: the event and its fan-out of deliveries committed in one transaction.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::{
    entity::{delivery, event, webhook},
    is_unique_violation, Store,
};
use crate::core::{event::DeliveryStatus, id, page::PageRequest, webhook::subscribes};

/// Rows per multi-row INSERT: well under SQLite's bound-parameter limit, large enough to amortise round trips.
const INSERT_CHUNK: usize = 500;

/// What publishing an event did.
#[derive(Debug)]
pub struct Published {
    pub event: event::Model,
    /// Deliveries queued; 0 when the idempotency key had been seen.
    pub deliveries_queued: u32,
}

/// A new `pending` delivery of `event` to `webhook`, due at once.
pub fn new_delivery(event: &event::Model, webhook: &webhook::Model) -> delivery::Model {
    delivery::Model {
        id: id::new(id::Kind::Delivery),
        webhook_id: webhook.id.clone(),
        account_id: event.account_id.clone(),
        event_id: event.id.clone(),
        event_type: event.r#type.clone(),
        status: DeliveryStatus::Pending.as_str().to_owned(),
        attempt_count: 0,
        next_attempt_at: Some(event.created_at),
        lease_id: None,
        lease_owner: None,
        lease_expires_at: None,
        created_at: event.created_at,
        completed_at: None,
    }
}

impl Store {
    /// Stores `event` and one pending delivery for every active webhook of its account that subscribes to its
    /// type, in one transaction. An idempotency key seen before returns the original event and writes nothing.
    pub async fn publish_event(&self, event: event::Model) -> Result<Published, DbErr> {
        match self.try_publish(event.clone()).await {
            // Another publish with the same key committed between our check and our insert.
            Err(err) if is_unique_violation(&err) && event.idempotency_key.is_some() => {
                let key = event.idempotency_key.as_deref().unwrap_or_default();
                match Self::find_event_by_key(self.writer(), &event.account_id, key).await? {
                    Some(original) => Ok(Published {
                        event: original,
                        deliveries_queued: 0,
                    }),
                    None => Err(err),
                }
            }
            other => other,
        }
    }

    async fn try_publish(&self, event: event::Model) -> Result<Published, DbErr> {
        let txn = self.writer().begin().await?;
        if let Some(key) = &event.idempotency_key {
            if let Some(original) = Self::find_event_by_key(&txn, &event.account_id, key).await? {
                return Ok(Published {
                    event: original,
                    deliveries_queued: 0,
                });
            }
        }
        let event = event.into_active_model().insert(&txn).await?;
        let deliveries: Vec<delivery::Model> = Self::active_webhooks_on(&txn, &event.account_id)
            .await?
            .iter()
            .filter(|webhook| subscribes(&webhook.events, &event.r#type))
            .map(|webhook| new_delivery(&event, webhook))
            .collect();
        insert_deliveries(&txn, &deliveries).await?;
        txn.commit().await?;
        Ok(Published {
            event,
            deliveries_queued: deliveries.len() as u32,
        })
    }

    /// Stores a `test.ping` event and its one delivery to `webhook`, whatever the webhook's status.
    pub async fn queue_test_ping(
        &self,
        event: event::Model,
        webhook: &webhook::Model,
    ) -> Result<delivery::Model, DbErr> {
        let txn = self.writer().begin().await?;
        let event = event.into_active_model().insert(&txn).await?;
        let delivery = new_delivery(&event, webhook);
        insert_deliveries(&txn, std::slice::from_ref(&delivery)).await?;
        txn.commit().await?;
        Ok(delivery)
    }

    async fn find_event_by_key(
        db: &impl ConnectionTrait,
        account_id: &str,
        key: &str,
    ) -> Result<Option<event::Model>, DbErr> {
        event::Entity::find()
            .filter(event::Column::AccountId.eq(account_id))
            .filter(event::Column::IdempotencyKey.eq(key))
            .one(db)
            .await
    }

    /// The event `id`, if it exists and (when `account_id` is given) belongs to that account.
    pub async fn find_event(
        &self,
        account_id: Option<&str>,
        id: &str,
    ) -> Result<Option<event::Model>, DbErr> {
        let mut query = event::Entity::find_by_id(id.to_owned());
        if let Some(account_id) = account_id {
            query = query.filter(event::Column::AccountId.eq(account_id));
        }
        query.one(self.reader()).await
    }

    /// One page of events, newest first, optionally of one account and one type.
    pub async fn list_events(
        &self,
        account_id: Option<&str>,
        event_type: Option<&str>,
        page: &PageRequest,
    ) -> Result<Vec<event::Model>, DbErr> {
        let mut query = event::Entity::find();
        if let Some(account_id) = account_id {
            query = query.filter(event::Column::AccountId.eq(account_id));
        }
        if let Some(event_type) = event_type {
            query = query.filter(event::Column::Type.eq(event_type));
        }
        if let Some(after) = &page.after {
            query = query.filter(event::Column::Id.lt(after.as_str()));
        }
        query
            .order_by_desc(event::Column::Id)
            .limit(page.limit + 1)
            .all(self.reader())
            .await
    }
}

/// Inserts deliveries in multi-row statements.
pub async fn insert_deliveries(
    db: &impl ConnectionTrait,
    deliveries: &[delivery::Model],
) -> Result<(), DbErr> {
    for chunk in deliveries.chunks(INSERT_CHUNK) {
        delivery::Entity::insert_many(
            chunk
                .iter()
                .cloned()
                .map(IntoActiveModel::into_active_model),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}
