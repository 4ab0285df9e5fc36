//! One recorded HTTP attempt of a delivery, keyed by its delivery and number (migration m0005; `id` is its public
//! name). Header maps are stored as JSON objects.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attempts")]
pub struct Model {
    pub id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub delivery_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub number: i32,
    pub started_at: i64,
    pub duration_ms: i32,
    pub request_headers: String,
    pub response_status: i32,
    pub response_headers: String,
    pub response_body: String,
    pub error_kind: String,
    pub error: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
