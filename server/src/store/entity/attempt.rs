//! One recorded HTTP attempt of a delivery. Header maps are stored as JSON objects.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub delivery_id: String,
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
