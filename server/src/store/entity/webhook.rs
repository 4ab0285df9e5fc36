//! A webhook row. `events` holds the subscriptions as a JSON array; `secret` is the current signing secret
//! (needed in clear to sign), `previous_secret` the one still valid during a rotation grace.

use sea_orm::entity::prelude::*;

pub use crate::core::webhook::{Ordering, Status as WebhookStatus};

/// `Deserialize` reads a row as the JSON array of its columns in field order, as the writer's reads return
/// them (`webhook_columns`, `crate::store::json_rows`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Deserialize)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub account_id: String,
    pub url: String,
    pub description: String,
    pub events: String,
    pub status: WebhookStatus,
    pub failure_count: i32,
    /// When the current run of failures began (for auto-disable); `None` after a success.
    pub failing_since: Option<i64>,
    pub disabled_reason: String,
    pub rate_limit_per_second: i32,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The webhook's own request headers, a JSON object sealed like the secret; empty for none
    /// (`crate::core::headers`).
    pub headers: String,
    pub ordering: Ordering,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The columns of a webhook row, in the order of [`Model`]'s fields.
pub fn columns() -> Vec<&'static str> {
    use sea_orm::{IdenStatic, Iterable};
    Column::iter().map(|column| column.as_str()).collect()
}
