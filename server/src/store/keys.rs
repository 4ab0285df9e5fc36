//! API key rows: create, look up by hash, count.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

use super::{entity::api_key, Store};
use crate::core::{id, time, Role};

impl Store {
    pub async fn insert_api_key(
        &self,
        key_hash: String,
        role: Role,
        account_id: Option<String>,
    ) -> Result<api_key::Model, sea_orm::DbErr> {
        api_key::ActiveModel {
            id: Set(id::new(id::Kind::ApiKey)),
            key_hash: Set(key_hash),
            role: Set(role),
            account_id: Set(account_id),
            created_at: Set(time::now_ms()),
        }
        .insert(self.writer())
        .await
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
}
