//! Audit log rows: written inside the transaction of the change they record, read by account newest first,
//! pruned after `--audit-retention`.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::{Map, Value};

use super::{
    entity::{audit_entry, webhook},
    Store,
};
use crate::core::{audit::AuditEntry, id, page::PageRequest, time};

/// Which entries a list wants.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub target_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Store {
    /// Records `entry` on `db`: the transaction of the change it describes.
    pub async fn record_audit(db: &impl ConnectionTrait, entry: &AuditEntry) -> Result<(), DbErr> {
        let id = id::new(id::Kind::AuditEntry);
        // The entry's time is its id's: listing "since" an entry's time reads an id range (below).
        let created_at = id::issued_ms(id::Kind::AuditEntry, &id).unwrap_or_else(time::now_ms);
        audit_entry::ActiveModel {
            id: Set(id),
            account_id: Set(entry.actor.account_id.clone()),
            key_id: Set(entry.actor.key_id.clone()),
            action: Set(entry.action.name().to_owned()),
            target_id: Set(entry.target_id.clone()),
            changes: Set(Value::Object(entry.changes.clone()).to_string()),
            created_at: Set(created_at),
        }
        .insert(db)
        .await?;
        Ok(())
    }

    /// One page of the account's entries, newest first (`limit + 1` rows, for [`PageRequest::finish`]).
    pub async fn list_audit_entries(
        &self,
        account_id: &str,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Vec<audit_entry::Model>, DbErr> {
        let mut query =
            audit_entry::Entity::find().filter(audit_entry::Column::AccountId.eq(account_id));
        if let Some(before) = &page.after {
            query = query.filter(audit_entry::Column::Id.lt(before.as_str()));
        }
        // Ids are time-ordered: a time window is an id range, read through the `(account_id, id)` index.
        if let Some(since) = filter.since_ms {
            query =
                query.filter(audit_entry::Column::Id.gte(id::floor(id::Kind::AuditEntry, since)));
        }
        if let Some(until) = filter.until_ms {
            query =
                query.filter(audit_entry::Column::Id.lt(id::floor(id::Kind::AuditEntry, until)));
        }
        if let Some(target) = &filter.target_id {
            query = query.filter(audit_entry::Column::TargetId.eq(target.as_str()));
        }
        query
            .order_by_desc(audit_entry::Column::Id)
            .limit(page.limit + 1)
            .all(self.reader())
            .await
    }

    /// Deletes the entries recorded before `before_ms`; returns how many.
    pub async fn prune_audit_entries(&self, before_ms: i64) -> Result<u64, DbErr> {
        let result = audit_entry::Entity::delete_many()
            .filter(audit_entry::Column::Id.lt(id::floor(id::Kind::AuditEntry, before_ms)))
            .exec(self.writer())
            .await?;
        Ok(result.rows_affected)
    }
}

/// The fields of a webhook that differ between `before` and `after` (all of them for a new webhook, whose
/// `before` is `None`), with their new values. A secret or the headers appear as `"(changed)"`, never as a value;
/// bookkeeping (`updated_at`) not at all.
pub fn webhook_changes(
    before: Option<&webhook::Model>,
    after: &webhook::Model,
) -> Map<String, Value> {
    type Field = fn(&webhook::Model) -> Value;
    let fields: [(&str, Field); 8] = [
        ("url", |w| w.url.clone().into()),
        ("description", |w| w.description.clone().into()),
        ("events", |w| {
            serde_json::from_str(&w.events).unwrap_or_else(|_| w.events.clone().into())
        }),
        ("status", |w| {
            sea_orm::ActiveEnum::to_value(&w.status).into()
        }),
        ("rate_limit_per_second", |w| w.rate_limit_per_second.into()),
        ("ordering", |w| {
            sea_orm::ActiveEnum::to_value(&w.ordering).into()
        }),
        ("failure_count", |w| w.failure_count.into()),
        ("previous_secret_expires_at", |w| {
            w.previous_secret_expires_at.map(time::rfc3339).into()
        }),
    ];
    let mut changes = Map::new();
    for (name, field) in fields {
        let new = field(after);
        if before.map(field).as_ref() != Some(&new) {
            changes.insert(name.to_owned(), new);
        }
    }
    if before.is_some_and(|before| before.secret != after.secret) {
        changes.insert("secret".to_owned(), "(changed)".into());
    }
    // Sealed: whether they changed, never what they hold (often credentials).
    if before.map_or(!after.headers.is_empty(), |before| {
        before.headers != after.headers
    }) {
        changes.insert("headers".to_owned(), "(changed)".into());
    }
    changes
}
