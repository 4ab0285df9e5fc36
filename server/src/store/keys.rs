//! API key rows: create, look up by hash, list, revoke, and note their last use.

use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};

use super::{entity::api_key, Store};
use crate::core::{
    audit::{Action, Actor, AuditEntry},
    page::PageRequest,
    time, Error, Role,
};

impl Store {
    /// Stores a key (its hash) with `by`'s audit entry, in one transaction.
    /// Stores `rows`, each with its audit entry, in one transaction: all of them or none.
    pub async fn insert_api_keys(
        &self,
        rows: Vec<api_key::Model>,
        by: &str,
    ) -> Result<Vec<api_key::Model>, sea_orm::DbErr> {
        let txn = self.writer().begin().await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let mut entry = AuditEntry::new(&key_actor(by, &row), Action::ApiKeyCreate, &row.id)
                .with("role", sea_orm::ActiveEnum::to_value(&row.role));
            if let Some(expires_at) = row.expires_at {
                entry = entry.with("expires_at", time::rfc3339(expires_at));
            }
            stored.push(api_key::ActiveModel::from(row).insert(&txn).await?);
            Self::record_audit(&txn, &entry).await?;
        }
        txn.commit().await?;
        Ok(stored)
    }

    pub async fn find_api_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<api_key::Model>, sea_orm::DbErr> {
        api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(key_hash))
            .one(self.reader())
            .await
    }

    pub async fn count_api_keys(&self) -> Result<u64, sea_orm::DbErr> {
        api_key::Entity::find().count(self.writer()).await
    }

    /// One page of keys, oldest first (`limit + 1` rows, for [`PageRequest::finish`]): those of `account`,
    /// or every key when it is `None`.
    pub async fn list_api_keys(
        &self,
        account: Option<&str>,
        page: &PageRequest,
    ) -> Result<Vec<api_key::Model>, sea_orm::DbErr> {
        let mut query = api_key::Entity::find();
        if let Some(account) = account {
            query = query.filter(api_key::Column::AccountId.eq(account));
        }
        if let Some(after) = &page.after {
            query = query.filter(api_key::Column::Id.gt(after.as_str()));
        }
        query
            .order_by_asc(api_key::Column::Id)
            .limit(page.limit + 1)
            .all(self.reader())
            .await
    }

    /// Revokes key `id` (of `account`, when given) now, with `by`'s audit entry; a revoked key stays as it
    /// was. `None` when there is no such key.
    pub async fn revoke_api_key(
        &self,
        account: Option<&str>,
        id: &str,
        by: &str,
    ) -> Result<Option<api_key::Model>, Error> {
        let txn = self.writer().begin().await?;
        let mut query = api_key::Entity::find_by_id(id.to_owned());
        if let Some(account) = account {
            query = query.filter(api_key::Column::AccountId.eq(account));
        }
        let Some(row) = query.one(&txn).await? else {
            return Ok(None);
        };
        if row.revoked_at.is_some() {
            return Ok(Some(row));
        }
        let mut active: api_key::ActiveModel = row.into();
        active.revoked_at = Set(Some(time::now_ms()));
        let row = active.update(&txn).await?;
        let entry = AuditEntry::new(&key_actor(by, &row), Action::ApiKeyRevoke, id);
        Self::record_audit(&txn, &entry).await?;
        txn.commit().await?;
        Ok(Some(row))
    }

    /// Notes that key `id` was used at `now`.
    pub async fn touch_api_key(&self, id: &str, now: i64) -> Result<(), sea_orm::DbErr> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id))
            .exec(self.writer())
            .await?;
        Ok(())
    }
}

/// Key `by` (or `cli`) acting on `key`: its entry goes to the key's account (the empty account for a
/// publisher or daemon key, which belongs to none).
fn key_actor(by: &str, key: &api_key::Model) -> Actor {
    Actor {
        key_id: by.to_owned(),
        account_id: key.account_id.clone().unwrap_or_default(),
    }
}

/// A new key row for `role` (and `account`), created now.
pub fn new_api_key_row(
    id: String,
    key_hash: String,
    role: Role,
    account_id: Option<String>,
    expires_at: Option<i64>,
) -> api_key::Model {
    api_key::Model {
        id,
        key_hash,
        role,
        account_id,
        created_at: time::now_ms(),
        expires_at,
        revoked_at: None,
        last_used_at: None,
    }
}
