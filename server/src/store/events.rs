//! Event rows, and publishing: the event and its fan-out of deliveries committed in one transaction.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use std::collections::HashMap;

use super::{
    entity::{delivery, event, webhook},
    hand_off::{HandOff, Offered},
    insert_rows, is_unique_violation,
    leases::in_flight::{decode_in_flight, in_flight_cte, IN_FLIGHT_COLUMNS, IN_FLIGHT_FROM},
    sql::{
        batch::Batch,
        id_list,
        json_rows::{decode_rows, select_json},
        write_txn::WriteTxn,
    },
    Store,
};
use crate::core::{
    event::DeliveryStatus,
    id,
    page::PageRequest,
    webhook::{subscribes, Status as WebhookStatus},
    Error,
};

/// What publishing an event did.
#[derive(Debug)]
pub struct Published {
    pub event: event::Model,
    /// Deliveries queued; 0 when the idempotency key had been seen.
    pub deliveries_queued: u32,
    /// Of those, the ones left `pending` for a claim to find: the others were handed to streams claiming in
    /// the same cycle ([`HandOff`]), or wait behind their webhook's or account's lease cap for a report to
    /// free room ([`Offered::Capped`]).
    pub deliveries_pending: u32,
}

impl Published {
    /// The answer to a publish whose idempotency key had been seen: the original event, nothing queued.
    fn original(event: event::Model) -> Self {
        Published {
            event,
            deliveries_queued: 0,
            deliveries_pending: 0,
        }
    }
}

/// A new event row, created now, with a fresh id.
pub fn new_event(
    account_id: impl Into<String>,
    event_type: &str,
    data_json: impl Into<String>,
    idempotency_key: Option<String>,
) -> event::Model {
    event::Model {
        id: id::new(id::Kind::Event),
        account_id: account_id.into(),
        r#type: event_type.to_owned(),
        data_json: data_json.into(),
        idempotency_key,
        created_at: crate::core::time::now_ms(),
    }
}

/// A new `pending` delivery of `event` to `webhook`, due at once.
pub fn new_delivery(event: &event::Model, webhook: &webhook::Model) -> delivery::Model {
    use crate::core::webhook::Ordering;
    delivery::Model {
        id: id::new(id::Kind::Delivery),
        webhook_id: webhook.id.clone(),
        account_id: event.account_id.clone(),
        event_id: event.id.clone(),
        event_type: event.r#type.clone(),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        next_attempt_at: Some(event.created_at),
        lease_id: None,
        lease_owner: None,
        lease_expires_at: None,
        created_at: event.created_at,
        completed_at: None,
        ordered: webhook.ordering == Ordering::Ordered,
        test: false,
    }
}

impl Store {
    /// Stores `event` and one pending delivery for every active webhook of its account that subscribes to its
    /// type, in one transaction. An idempotency key seen before returns the original event and writes nothing.
    pub async fn publish_event(&self, event: event::Model) -> Result<Published, DbErr> {
        match self.publish_group(vec![event.clone()]).await {
            // Another publish with the same key committed between our check and our insert.
            Err(err) if is_unique_violation(&err) && event.idempotency_key.is_some() => {
                let key = event.idempotency_key.as_deref().unwrap_or_default();
                match Self::find_event_by_key(self.writer(), &event.account_id, key).await? {
                    Some(original) => Ok(Published::original(original)),
                    None => Err(err),
                }
            }
            Err(err) => Err(err),
            Ok(mut published) => published
                .pop()
                .ok_or_else(|| DbErr::Custom("nothing published".into())),
        }
    }

    /// [`Store::publish_event`] for a group of events in one transaction. When the group fails (another
    /// server replica won a race on one of its idempotency keys, or the database refused one of its events),
    /// it is published again one event at a time, so that each call gets its own answer and one event's
    /// failure fails no other.
    pub async fn publish_events(
        &self,
        events: Vec<event::Model>,
    ) -> Result<Vec<Result<Published, Error>>, DbErr> {
        match self.publish_group(events.clone()).await {
            Ok(published) => Ok(published.into_iter().map(Ok).collect()),
            Err(err) if events.len() == 1 && !is_unique_violation(&err) => Err(err),
            Err(err) => {
                tracing::info!(error = %err, events = events.len(), "publishing a group failed; publishing each event alone");
                let mut results = Vec::with_capacity(events.len());
                for event in events {
                    results.push(self.publish_event(event).await.map_err(Error::from));
                }
                Ok(results)
            }
        }
    }

    /// [`publish_in`] in a transaction of its own.
    async fn publish_group(&self, events: Vec<event::Model>) -> Result<Vec<Published>, DbErr> {
        let txn = WriteTxn::begin(self.writer()).await?;
        let published = publish_in(&txn, &events, None).await?;
        txn.commit().await?;
        Ok(published)
    }

    /// Stores a test event (a `test.ping`, or a type's example) and its one test delivery to `webhook`,
    /// whatever the webhook's status or subscriptions. It never waits its turn behind an ordered webhook's
    /// deliveries.
    pub async fn queue_test_delivery(
        &self,
        event: event::Model,
        webhook: &webhook::Model,
    ) -> Result<delivery::Model, DbErr> {
        let txn = self.writer().begin().await?;
        let event = event.into_active_model().insert(&txn).await?;
        let delivery = delivery::Model {
            ordered: false,
            test: true,
            ..new_delivery(&event, webhook)
        };
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
    insert_rows(
        db,
        deliveries
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model),
    )
    .await
}

/// The transaction behind publishing (idempotency check, events, fan-out) inside a transaction the caller
/// commits: a handful of statements whatever the group's size. With a `hand_off`, new deliveries are
/// offered to the streams claiming in the same cycle before they are inserted.
pub async fn publish_in(
    txn: &WriteTxn,
    events: &[event::Model],
    hand_off: Option<&mut HandOff>,
) -> Result<Vec<Published>, DbErr> {
    // Events whose key was seen before (in the database, or earlier in this group) come back as they were.
    let mut originals = find_originals(txn, events).await?;
    let mut outcomes = Vec::with_capacity(events.len());
    let mut fresh = Vec::with_capacity(events.len());
    for event in events {
        if let Some(key) = &event.idempotency_key {
            let slot = (event.account_id.clone(), key.clone());
            if let Some(original) = originals.get(&slot) {
                outcomes.push(Err(original.clone()));
                continue;
            }
            originals.insert(slot, event.clone());
        }
        outcomes.push(Ok(fresh.len()));
        fresh.push(event.clone());
    }
    let (deliveries, queued) = fan_out(txn, &fresh, hand_off).await?;
    // The events and their deliveries in one batch.
    let mut batch = Batch::new(txn.get_database_backend());
    batch.insert_rows(
        fresh
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model),
    );
    batch.insert_rows(
        deliveries
            .into_iter()
            .map(IntoActiveModel::into_active_model),
    );
    txn.write(batch).await?;

    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(index) => Published {
                event: fresh[index].clone(),
                deliveries_queued: queued[index].0,
                deliveries_pending: queued[index].1,
            },
            Err(original) => Published::original(original),
        })
        .collect())
}

/// The stored events of `events`' idempotency keys, by account and key.
async fn find_originals(
    txn: &WriteTxn,
    events: &[event::Model],
) -> Result<HashMap<(String, String), event::Model>, DbErr> {
    let keyed: Vec<&event::Model> = events
        .iter()
        .filter(|e| e.idempotency_key.is_some())
        .collect();
    if keyed.is_empty() {
        return Ok(HashMap::new());
    }
    let found = event::Entity::find()
        .filter(event::Column::AccountId.is_in(keyed.iter().map(|e| e.account_id.as_str())))
        .filter(
            event::Column::IdempotencyKey
                .is_in(keyed.iter().filter_map(|e| e.idempotency_key.as_deref())),
        )
        .all(txn)
        .await?;
    Ok(found
        .into_iter()
        .filter_map(|original| {
            let key = original.idempotency_key.clone()?;
            Some(((original.account_id.clone(), key), original))
        })
        .collect())
}

/// The deliveries of `fresh` events, one per subscribed active webhook of the event's account (offered to
/// the `hand_off` first), and per event how many were queued and how many of those left pending.
async fn fan_out(
    txn: &WriteTxn,
    fresh: &[event::Model],
    mut hand_off: Option<&mut HandOff>,
) -> Result<(Vec<delivery::Model>, Vec<(u32, u32)>), DbErr> {
    let mut accounts: Vec<&str> = fresh.iter().map(|e| e.account_id.as_str()).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut webhooks: HashMap<String, Vec<webhook::Model>> = HashMap::new();
    if !accounts.is_empty() {
        for hook in read_fan_out(txn, &accounts, hand_off.as_deref_mut()).await? {
            webhooks
                .entry(hook.account_id.clone())
                .or_default()
                .push(hook);
        }
    }
    let mut deliveries = Vec::new();
    let mut queued = Vec::with_capacity(fresh.len());
    for event in fresh {
        let (mut count, mut pending) = (0, 0);
        for hook in webhooks.get(&event.account_id).into_iter().flatten() {
            if subscribes(&hook.events, &event.r#type) {
                let mut delivery = new_delivery(event, hook);
                let offered = match hand_off.as_deref_mut() {
                    Some(hand_off) => hand_off.offer(&mut delivery, hook, event),
                    None => Offered::Pending,
                };
                count += 1;
                pending += u32::from(offered == Offered::Pending);
                deliveries.push(delivery);
            }
        }
        queued.push((count, pending));
    }
    Ok((deliveries, queued))
}

/// The active webhooks of `accounts`, and, when `hand_off` wants them, the leases each webhook and account
/// holds: one read.
async fn read_fan_out(
    txn: &WriteTxn,
    accounts: &[&str],
    hand_off: Option<&mut HandOff>,
) -> Result<Vec<webhook::Model>, DbErr> {
    let columns = webhook::columns();
    let (accounts, mut values) = id_list::sql(
        txn.get_database_backend(),
        "account_id",
        accounts.iter().copied(),
    );
    let from = format!("FROM webhooks WHERE {accounts} AND status = ?");
    values.push(WebhookStatus::Active.into());
    let hooks = match hand_off {
        Some(hand_off) if hand_off.wants_counts() => {
            let with = format!("WITH {} ", in_flight_cte());
            let [hooks, in_flight] = select_json(
                txn,
                &with,
                [(&columns, &from), (&IN_FLIGHT_COLUMNS, IN_FLIGHT_FROM)],
                values,
            )
            .await?;
            hand_off.counted(decode_in_flight(&in_flight)?);
            hooks
        }
        _ => {
            let [hooks] = select_json(txn, "", [(&columns, &from)], values).await?;
            hooks
        }
    };
    decode_rows(&hooks, &from)
}
