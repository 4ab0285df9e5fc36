//! Roles: what an API key may do. A key grants exactly one.

use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::Deserialize;

/// Stored as its lowercase name (`admin`, `publisher`, `daemon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages one account's webhooks and reads its deliveries and events.
    Admin,
    /// Publishes events for any account, and reads them.
    Publisher,
    /// Streams and reports deliveries.
    Daemon,
}
