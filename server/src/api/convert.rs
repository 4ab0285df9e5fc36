//! Rows to protobuf messages: the one place that decides how stored values look on the wire.

use kit_webhooks::{proto, request};

use crate::{
    core::{event::DeliveryStatus, headers, sealing::Keyring, time::to_timestamp, webhook, Error},
    store::entity::{attempt, delivery, event, webhook as webhook_row},
};

/// The webhook of `row`, its headers opened with `ring` and shown masked.
pub fn webhook(row: webhook_row::Model, ring: &Keyring) -> proto::Webhook {
    // A row that does not open was altered behind the server's back: shown without its headers, logged.
    let headers = headers::open(ring, &row.id, &row.headers).unwrap_or_else(|err| {
        tracing::error!(webhook = %row.id, error = %err, "cannot read a webhook's headers");
        headers::Headers::new()
    });
    let status = match row.status {
        webhook::Status::Active => proto::WebhookStatus::Active,
        webhook::Status::Paused => proto::WebhookStatus::Paused,
        webhook::Status::Disabled => proto::WebhookStatus::Disabled,
    };
    proto::Webhook {
        events: webhook::decode_events(&row.events),
        id: row.id,
        url: row.url,
        description: row.description,
        status: status as i32,
        failure_count: row.failure_count.max(0) as u32,
        disabled_reason: row.disabled_reason,
        rate_limit_per_second: row.rate_limit_per_second.max(0) as u32,
        created_at: Some(to_timestamp(row.created_at)),
        updated_at: Some(to_timestamp(row.updated_at)),
        account_id: row.account_id,
        previous_secret_expires_at: row.previous_secret_expires_at.map(to_timestamp),
        headers: headers::shown(headers),
        ordering: match row.ordering {
            webhook::Ordering::Unordered => proto::Ordering::Unordered,
            webhook::Ordering::Ordered => proto::Ordering::Ordered,
        } as i32,
    }
}

/// The ordering a request asks for in `field` (UNSPECIFIED is UNORDERED).
pub fn ordering(field: &'static str, value: i32) -> Result<webhook::Ordering, Error> {
    match proto::Ordering::try_from(value) {
        Ok(proto::Ordering::Unspecified | proto::Ordering::Unordered) => {
            Ok(webhook::Ordering::Unordered)
        }
        Ok(proto::Ordering::Ordered) => Ok(webhook::Ordering::Ordered),
        Err(_) => Err(Error::invalid(
            field,
            format!("{value} is not an ordering: UNORDERED (1) or ORDERED (2)"),
        )),
    }
}

pub fn event(row: event::Model) -> proto::Event {
    proto::Event {
        id: row.id,
        account_id: row.account_id,
        r#type: row.r#type,
        data_json: row.data_json,
        idempotency_key: row.idempotency_key.unwrap_or_default(),
        created_at: Some(to_timestamp(row.created_at)),
    }
}

pub fn delivery_status(status: DeliveryStatus) -> proto::DeliveryStatus {
    match status {
        DeliveryStatus::Pending | DeliveryStatus::Held => proto::DeliveryStatus::Pending,
        DeliveryStatus::Sending => proto::DeliveryStatus::Sending,
        DeliveryStatus::Succeeded => proto::DeliveryStatus::Succeeded,
        DeliveryStatus::Failed => proto::DeliveryStatus::Failed,
    }
}

pub fn delivery(row: delivery::Model, attempts: Vec<attempt::Model>) -> proto::Delivery {
    let attempts = attempts
        .into_iter()
        .map(|attempt| self::attempt(attempt, &row))
        .collect();
    let status = delivery_status(row.status);
    proto::Delivery {
        id: row.id,
        webhook_id: row.webhook_id,
        event_id: row.event_id,
        event_type: row.event_type,
        status: status as i32,
        attempt_count: row.attempt_count.max(0) as u32,
        next_attempt_at: row.next_attempt_at.map(to_timestamp),
        created_at: Some(to_timestamp(row.created_at)),
        completed_at: row.completed_at.map(to_timestamp),
        attempts,
        test: row.test,
    }
}

/// An attempt of `delivery`, its recorded request headers completed with those its task determines.
pub fn attempt(row: attempt::Model, delivery: &delivery::Model) -> proto::Attempt {
    let number = row.number.max(0) as u32;
    let mut request_headers = attempt::headers(&row.request_headers);
    request::complete(
        &mut request_headers,
        &delivery.event_id,
        &delivery.event_type,
        &delivery.id,
        number,
    );
    proto::Attempt {
        number,
        started_at: Some(to_timestamp(row.started_at)),
        duration_ms: row.duration_ms.max(0) as u32,
        request_headers,
        response_status: row.response_status.max(0) as u32,
        response_headers: attempt::headers(&row.response_headers),
        response_body: row.response_body,
        error: row.error,
        error_kind: row.error_kind,
    }
}

/// A catalogue entry with its definition (`kit_webhooks::definitions`).
pub fn event_type(event_type: &kit_webhooks::catalogue::EventType) -> proto::EventType {
    let definition = kit_webhooks::definitions::of(event_type.name);
    proto::EventType {
        name: event_type.name.to_owned(),
        category: event_type.category.to_owned(),
        description: event_type.description.to_owned(),
        fires_when: definition.map(|d| d.fires_when.clone()).unwrap_or_default(),
        schema_json: definition.map(|d| d.schema.to_string()).unwrap_or_default(),
        example_json: definition
            .map(|d| d.example.to_string())
            .unwrap_or_default(),
    }
}

pub fn api_key(row: crate::store::entity::api_key::Model) -> proto::ApiKey {
    proto::ApiKey {
        id: row.id,
        role: sea_orm::ActiveEnum::to_value(&row.role),
        account_id: row.account_id.unwrap_or_default(),
        created_at: Some(to_timestamp(row.created_at)),
        last_used_at: row.last_used_at.map(to_timestamp),
        expires_at: row.expires_at.map(to_timestamp),
        revoked_at: row.revoked_at.map(to_timestamp),
    }
}

pub fn audit_entry(row: crate::store::entity::audit_entry::Model) -> proto::AuditEntry {
    proto::AuditEntry {
        id: row.id,
        key_id: row.key_id,
        action: row.action,
        target_id: row.target_id,
        time: Some(to_timestamp(row.created_at)),
        changes_json: row.changes,
    }
}
