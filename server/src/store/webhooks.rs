//! Webhook rows: every query is scoped by account, so one account never reads another's webhooks.

use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, QueryTrait, TransactionTrait,
};

use super::{
    audit::webhook_changes,
    entity::{attempt, delivery, webhook},
    operational,
    sql::write_txn::WriteTxn,
    Store,
};
use crate::core::{
    audit::{Action, Actor, AuditEntry},
    event::DeliveryStatus,
    page::PageRequest,
    sealing::Keyring,
    webhook::Status as WebhookStatus,
};

/// A new `active` webhook row with a fresh signing secret (in clear: [`Store::insert_webhook`] seals it),
/// created now: the one place that says what a new webhook starts as (the API, the benchmark history and the
/// criterion fixtures all make them here).
pub fn new_webhook(
    account_id: &str,
    url: &str,
    description: &str,
    events: &[String],
    rate_limit_per_second: u32,
) -> webhook::Model {
    let now = crate::core::time::now_ms();
    webhook::Model {
        id: crate::core::id::new(crate::core::id::Kind::Webhook),
        account_id: account_id.to_owned(),
        url: url.to_owned(),
        description: description.to_owned(),
        events: crate::core::webhook::encode_events(events),
        status: WebhookStatus::Active,
        failure_count: 0,
        failing_since: None,
        disabled_reason: String::new(),
        rate_limit_per_second: rate_limit_per_second.min(i32::MAX as u32) as i32,
        secret: crate::core::secret::new_signing_secret(),
        previous_secret: None,
        previous_secret_expires_at: None,
        created_at: now,
        updated_at: now,
        headers: String::new(),
        ordering: crate::core::webhook::Ordering::Unordered,
    }
}

impl Store {
    /// Stores a new webhook (from [`new_webhook`]), its clear secret and headers sealed with `ring`'s current
    /// key, and `actor`'s audit entry for it.
    pub async fn insert_webhook(
        &self,
        mut model: webhook::Model,
        ring: &Keyring,
        actor: &Actor,
    ) -> Result<webhook::Model, DbErr> {
        model.secret = ring.seal(&model.id, &model.secret);
        if !model.headers.is_empty() {
            model.headers = ring.seal(&model.id, &model.headers);
        }
        let txn = self.writer().begin().await?;
        let stored = model.into_active_model().insert(&txn).await?;
        let mut entry = AuditEntry::new(actor, Action::WebhookCreate, &stored.id);
        entry.changes = webhook_changes(None, &stored);
        Self::record_audit(&txn, &entry).await?;
        txn.commit().await?;
        Ok(stored)
    }

    /// The webhook `id` of `account_id`, read from `db` (the writer inside a read-modify-write).
    pub async fn find_webhook_on(
        db: &impl ConnectionTrait,
        account_id: &str,
        id: &str,
    ) -> Result<Option<webhook::Model>, DbErr> {
        webhook::Entity::find_by_id(id.to_owned())
            .filter(webhook::Column::AccountId.eq(account_id))
            .one(db)
            .await
    }

    pub async fn find_webhook(
        &self,
        account_id: &str,
        id: &str,
    ) -> Result<Option<webhook::Model>, DbErr> {
        Self::find_webhook_on(self.reader(), account_id, id).await
    }

    /// One page of the account's webhooks, oldest first (`limit + 1` rows, for [`PageRequest::finish`]).
    pub async fn list_webhooks(
        &self,
        account_id: &str,
        page: &PageRequest,
    ) -> Result<Vec<webhook::Model>, DbErr> {
        let mut query = webhook::Entity::find().filter(webhook::Column::AccountId.eq(account_id));
        if let Some(after) = &page.after {
            query = query.filter(webhook::Column::Id.gt(after.as_str()));
        }
        query
            .order_by_asc(webhook::Column::Id)
            .limit(page.limit + 1)
            .all(self.reader())
            .await
    }

    /// Applies `change` to the account's webhook in one transaction, with `entry` recording the fields it
    /// changed (nothing is recorded when nothing changed); `None` when there is no such webhook. `change`
    /// may refuse with an error, in which case nothing is written. A disabled webhook made active tells its
    /// account (`webhook.enabled`, [`operational`]).
    pub async fn update_webhook<E>(
        &self,
        account_id: &str,
        id: &str,
        mut entry: AuditEntry,
        change: impl FnOnce(&mut webhook::Model) -> Result<(), E>,
    ) -> Result<Option<webhook::Model>, E>
    where
        E: From<DbErr>,
    {
        let txn = WriteTxn::begin(self.writer()).await?;
        let Some(mut model) = Self::find_webhook_on(&txn, account_id, id).await? else {
            return Ok(None);
        };
        let before = model.clone();
        change(&mut model)?;
        if model == before {
            return Ok(Some(model));
        }
        let updated = model
            .clone()
            .into_active_model()
            .reset_all()
            .update(&txn)
            .await?;
        if before.status != updated.status {
            Self::set_waiting(&txn, &updated.id, updated.status == WebhookStatus::Active).await?;
        }
        if before.status == WebhookStatus::Disabled && updated.status == WebhookStatus::Active {
            let reason = &before.disabled_reason;
            operational::webhook_enabled(&txn, &updated, reason, updated.updated_at).await?;
        }
        entry.changes = webhook_changes(Some(&before), &updated);
        Self::record_audit(&txn, &entry).await?;
        txn.commit().await?;
        Ok(Some(updated))
    }

    /// Deletes the webhook with its deliveries and their attempts, in one transaction with `actor`'s audit
    /// entry. Returns how many deliveries went with it, or `None` when there is no such webhook.
    pub async fn delete_webhook(
        &self,
        account_id: &str,
        id: &str,
        actor: &Actor,
    ) -> Result<Option<u64>, DbErr> {
        let txn = self.writer().begin().await?;
        if Self::find_webhook_on(&txn, account_id, id).await?.is_none() {
            return Ok(None);
        }
        let delivery_ids = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::Id)
            .filter(delivery::Column::WebhookId.eq(id))
            .into_query();
        attempt::Entity::delete_many()
            .filter(attempt::Column::DeliveryId.in_subquery(delivery_ids))
            .exec(&txn)
            .await?;
        let deliveries = delivery::Entity::delete_many()
            .filter(delivery::Column::WebhookId.eq(id))
            .exec(&txn)
            .await?;
        webhook::Entity::delete_by_id(id.to_owned())
            .exec(&txn)
            .await?;
        let entry = AuditEntry::new(actor, Action::WebhookDelete, id)
            .with("deliveries_deleted", deliveries.rows_affected);
        Self::record_audit(&txn, &entry).await?;
        // Its leases go with its deliveries.
        self.kept_counts().forget();
        txn.commit().await?;
        Ok(Some(deliveries.rows_affected))
    }

    /// Moves a webhook's waiting deliveries to `pending` (it became active) or `held` (it stopped being
    /// active), in the caller's transaction. Test deliveries stay pending: they go out whatever the status.
    pub async fn set_waiting(
        db: &impl ConnectionTrait,
        webhook_id: &str,
        active: bool,
    ) -> Result<u64, DbErr> {
        let (from, to) = if active {
            (DeliveryStatus::Held, DeliveryStatus::Pending)
        } else {
            (DeliveryStatus::Pending, DeliveryStatus::Held)
        };
        let result = delivery::Entity::update_many()
            .col_expr(delivery::Column::Status, Expr::value(to))
            .filter(delivery::Column::WebhookId.eq(webhook_id))
            .filter(delivery::Column::Status.eq(from))
            .filter(delivery::Column::Test.eq(false))
            .exec(db)
            .await?;
        Ok(result.rows_affected)
    }
}
