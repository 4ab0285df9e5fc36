//! One recorded HTTP attempt of a delivery, keyed by its delivery and number (migration m0005; `id` is its
//! public name). Header maps are stored as JSON objects ([`stored_headers`], read back with [`headers`]).

use std::collections::BTreeMap;

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

/// A header map as the row stores it: a JSON object.
pub fn stored_headers(headers: &BTreeMap<String, String>) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "{}".into())
}

/// A header map the row stored ([`stored_headers`]); empty if the text is not one.
pub fn headers(stored: &str) -> BTreeMap<String, String> {
    serde_json::from_str(stored).unwrap_or_default()
}
