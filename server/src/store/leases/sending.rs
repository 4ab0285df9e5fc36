//! A leased delivery as a claim or the hand-off builds it: the delivery with what sending it needs of its
//! webhook and event, from which the dispatcher makes the daemon's task (`crate::dispatch::task`).

use std::sync::Arc;

use serde::Deserialize;

use crate::{
    core::webhook::Status as WebhookStatus,
    store::entity::{delivery, event, webhook},
};

/// A leased delivery with everything needed to send it: read in the same query that finds it due
/// (or built by the hand-off as its row is inserted). Its
/// webhook and event are shared with the other deliveries of the claim that go to that webhook or come from
/// that event (an event's data is read once and never copied per delivery).
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    pub delivery_id: String,
    pub attempt_count: i32,
    pub lease_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub webhook: Arc<SendingWebhook>,
    pub event: Arc<SendingEvent>,
}

impl LeasedDelivery {
    /// `delivery`, leased under `lease_id`, with what sending it needs of its webhook and event.
    pub(in crate::store) fn new(
        delivery: DueDelivery,
        lease_id: &str,
        hook: &Arc<SendingWebhook>,
        event: &Arc<SendingEvent>,
    ) -> Self {
        LeasedDelivery {
            delivery_id: delivery.id,
            attempt_count: delivery.attempt_count,
            lease_id: lease_id.to_owned(),
            webhook_id: delivery.webhook_id,
            event_id: delivery.event_id,
            event_type: delivery.event_type,
            webhook: hook.clone(),
            event: event.clone(),
        }
    }
}

/// A due delivery as a claim reads it ([`select_json`](crate::store::sql::json_rows::select_json)), with its webhook and event beside it, once each
/// however many of its deliveries fall due.
#[derive(Debug, Deserialize)]
pub(in crate::store) struct DueDelivery {
    pub id: String,
    pub webhook_id: String,
    pub account_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt_count: i32,
    #[serde(deserialize_with = "crate::store::sql::json_rows::flag")]
    pub test: bool,
}

impl From<&delivery::Model> for DueDelivery {
    fn from(delivery: &delivery::Model) -> Self {
        DueDelivery {
            id: delivery.id.clone(),
            webhook_id: delivery.webhook_id.clone(),
            account_id: delivery.account_id.clone(),
            event_id: delivery.event_id.clone(),
            event_type: delivery.event_type.clone(),
            attempt_count: delivery.attempt_count,
            test: delivery.test,
        }
    }
}

impl DueDelivery {
    pub(super) const COLUMNS: [&str; 7] = [
        "id",
        "webhook_id",
        "account_id",
        "event_id",
        "event_type",
        "attempt_count",
        "test",
    ];
}

/// What sending needs of a webhook, read once per claim for all its due deliveries.
#[derive(Debug, Deserialize)]
pub struct SendingWebhook {
    pub id: String,
    pub status: WebhookStatus,
    pub url: String,
    pub rate_limit_per_second: i32,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    /// Sealed, or empty for none (`crate::core::headers`).
    pub headers: String,
}

impl From<&webhook::Model> for SendingWebhook {
    fn from(hook: &webhook::Model) -> Self {
        SendingWebhook {
            id: hook.id.clone(),
            status: hook.status,
            url: hook.url.clone(),
            rate_limit_per_second: hook.rate_limit_per_second,
            secret: hook.secret.clone(),
            previous_secret: hook.previous_secret.clone(),
            previous_secret_expires_at: hook.previous_secret_expires_at,
            headers: hook.headers.clone(),
        }
    }
}

impl SendingWebhook {
    pub(super) const COLUMNS: [&str; 8] = [
        "id",
        "status",
        "url",
        "rate_limit_per_second",
        "secret",
        "previous_secret",
        "previous_secret_expires_at",
        "headers",
    ];
}

/// What sending needs of an event, read once per claim for all its due deliveries.
#[derive(Debug, Deserialize)]
pub struct SendingEvent {
    pub id: String,
    pub account_id: String,
    pub data_json: String,
    pub created_at: i64,
}

impl From<&event::Model> for SendingEvent {
    fn from(event: &event::Model) -> Self {
        SendingEvent {
            id: event.id.clone(),
            account_id: event.account_id.clone(),
            data_json: event.data_json.clone(),
            created_at: event.created_at,
        }
    }
}

impl SendingEvent {
    pub(super) const COLUMNS: [&str; 4] = ["id", "account_id", "data_json", "created_at"];
}
