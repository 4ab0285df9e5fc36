//! A delivery row: one event on its way to one webhook. The `lease_*` columns are set while a daemon stream
//! holds it (status `sending`).

use sea_orm::entity::prelude::*;

pub use crate::core::event::DeliveryStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub webhook_id: String,
    pub account_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    pub next_attempt_at: Option<i64>,
    pub lease_id: Option<String>,
    /// The stream (`dst_…`) that owns the lease; its leases are released when it ends.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    /// Waits until every older delivery of its webhook is finished: its webhook was ordered when it was
    /// created (`crate::core::webhook::Ordering`).
    pub ordered: bool,
    /// A test delivery (a ping, or an example sent to one webhook): sent whatever the webhook's status, tried
    /// once, never counted against auto-disable.
    pub test: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
