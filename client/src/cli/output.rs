//! How results look: aligned tables and key/value blocks for people, JSON for scripts (`--output json`).

use kit_webhooks_client::{
    Attempt, Delivery, DeliveryStatus, Event, Webhook, WebhookChange, WebhookStatus,
};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// An RFC 3339 time, or "-" for none.
pub fn time(timestamp: &Option<prost_types::Timestamp>) -> String {
    timestamp
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn time_json(timestamp: &Option<prost_types::Timestamp>) -> Value {
    match timestamp {
        Some(_) => Value::String(time(timestamp)),
        None => Value::Null,
    }
}

pub fn webhook_status(webhook: &Webhook) -> &'static str {
    match webhook.status() {
        WebhookStatus::Active => "active",
        WebhookStatus::Paused => "paused",
        WebhookStatus::Disabled => "disabled",
        WebhookStatus::Unspecified => "unknown",
    }
}

pub fn delivery_status(delivery: &Delivery) -> &'static str {
    match delivery.status() {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Sending => "sending",
        DeliveryStatus::Succeeded => "succeeded",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Unspecified => "unknown",
    }
}

pub fn webhook_json(webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id,
        "account_id": webhook.account_id,
        "url": webhook.url,
        "description": webhook.description,
        "events": webhook.events,
        "status": webhook_status(webhook),
        "failure_count": webhook.failure_count,
        "disabled_reason": webhook.disabled_reason,
        "rate_limit_per_second": webhook.rate_limit_per_second,
        "created_at": time_json(&webhook.created_at),
        "updated_at": time_json(&webhook.updated_at),
        "previous_secret_expires_at": time_json(&webhook.previous_secret_expires_at),
        "headers": webhook
            .headers
            .iter()
            .map(|h| json!({ "name": h.name, "value": h.value }))
            .collect::<Vec<_>>(),
        "ordering": ordering(webhook),
    })
}

/// `ordered` or `unordered`.
pub fn ordering(webhook: &Webhook) -> &'static str {
    match webhook.ordering() {
        kit_webhooks::proto::Ordering::Ordered => "ordered",
        _ => "unordered",
    }
}

pub fn attempt_json(attempt: &Attempt) -> Value {
    json!({
        "number": attempt.number,
        "started_at": time_json(&attempt.started_at),
        "duration_ms": attempt.duration_ms,
        "request_headers": attempt.request_headers,
        "response_status": attempt.response_status,
        "response_headers": attempt.response_headers,
        "response_body": attempt.response_body,
        "error_kind": attempt.error_kind,
        "error": attempt.error,
    })
}

pub fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "test": delivery.test,
        "status": delivery_status(delivery),
        "attempt_count": delivery.attempt_count,
        "next_attempt_at": time_json(&delivery.next_attempt_at),
        "created_at": time_json(&delivery.created_at),
        "completed_at": time_json(&delivery.completed_at),
        "attempts": delivery.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

pub fn event_json(event: &Event) -> Value {
    // The data goes out as JSON when it parses (it always should), else as the text it is.
    let data = serde_json::from_str::<Value>(&event.data_json)
        .unwrap_or_else(|_| Value::String(event.data_json.clone()));
    json!({
        "id": event.id,
        "account_id": event.account_id,
        "type": event.r#type,
        "data": data,
        "idempotency_key": event.idempotency_key,
        "created_at": time_json(&event.created_at),
    })
}

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Prints `label: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in pairs {
        println!("{key:<width$}  {value}");
    }
}

pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub fn webhook_fields(webhook: &Webhook) {
    let mut pairs = vec![
        ("id", webhook.id.clone()),
        ("url", webhook.url.clone()),
        ("description", webhook.description.clone()),
        ("events", webhook.events.join(", ")),
        ("status", webhook_status(webhook).to_string()),
        ("failures", webhook.failure_count.to_string()),
        ("rate limit", format!("{}/s", webhook.rate_limit_per_second)),
        ("ordering", ordering(webhook).to_string()),
        ("created", time(&webhook.created_at)),
        ("updated", time(&webhook.updated_at)),
    ];
    if !webhook.disabled_reason.is_empty() {
        pairs.push(("disabled because", webhook.disabled_reason.clone()));
    }
    if webhook.previous_secret_expires_at.is_some() {
        pairs.push((
            "old secret until",
            time(&webhook.previous_secret_expires_at),
        ));
    }
    for header in &webhook.headers {
        pairs.push(("header", format!("{}: {}", header.name, header.value)));
    }
    fields(&pairs);
}

/// The outcome of one attempt in a few words: `HTTP 204 in 12 ms` or `timeout after 15000 ms: …`.
pub fn attempt_summary(attempt: &Attempt) -> String {
    if attempt.response_status != 0 && attempt.error.is_empty() {
        format!(
            "HTTP {} in {} ms",
            attempt.response_status, attempt.duration_ms
        )
    } else if attempt.response_status != 0 {
        format!(
            "HTTP {} in {} ms ({})",
            attempt.response_status, attempt.duration_ms, attempt.error
        )
    } else {
        format!(
            "{} after {} ms: {}",
            attempt.error_kind, attempt.duration_ms, attempt.error
        )
    }
}

pub fn delivery_details(delivery: &Delivery) {
    fields(&[
        ("id", delivery.id.clone()),
        ("webhook", delivery.webhook_id.clone()),
        (
            "event",
            format!(
                "{} ({}){}",
                delivery.event_id,
                delivery.event_type,
                test_mark(delivery)
            ),
        ),
        ("status", delivery_status(delivery).to_string()),
        ("attempts", delivery.attempt_count.to_string()),
        ("created", time(&delivery.created_at)),
        ("next attempt", time(&delivery.next_attempt_at)),
        ("completed", time(&delivery.completed_at)),
    ]);
    for attempt in &delivery.attempts {
        println!();
        println!(
            "attempt {} at {}: {}",
            attempt.number,
            time(&attempt.started_at),
            attempt_summary(attempt)
        );
        let mut headers: Vec<_> = attempt.request_headers.iter().collect();
        headers.sort();
        println!("  request headers:");
        for (name, value) in headers {
            println!("    {name}: {value}");
        }
        if attempt.response_status != 0 {
            let mut headers: Vec<_> = attempt.response_headers.iter().collect();
            headers.sort();
            println!("  response headers:");
            for (name, value) in headers {
                println!("    {name}: {value}");
            }
            let body = if attempt.response_body.is_empty() {
                "(empty)"
            } else {
                attempt.response_body.as_str()
            };
            println!("  response body (first 16 KiB): {body}");
        }
    }
}

/// A new webhook and its secret, shown once.
pub fn created_webhook(format: Format, webhook: &Webhook, secret: String) {
    match format {
        Format::Json => print_json(&json!({ "webhook": webhook_json(webhook), "secret": secret })),
        Format::Table => {
            fields(&[("id", webhook.id.clone()), ("secret", secret)]);
            println!(
                "\nGive the secret to the endpoint: it verifies every request's signature with it."
            );
        }
    }
}

/// A webhook's new secret, and until when the old one is still accepted.
pub fn rotated_secret(format: Format, webhook: &Webhook, secret: String) {
    match format {
        Format::Json => print_json(&json!({ "webhook": webhook_json(webhook), "secret": secret })),
        Format::Table => fields(&[
            ("id", webhook.id.clone()),
            ("new secret", secret),
            (
                "old secret",
                match &webhook.previous_secret_expires_at {
                    Some(_) => format!(
                        "still accepted until {}",
                        time(&webhook.previous_secret_expires_at)
                    ),
                    None => "no longer accepted".into(),
                },
            ),
        ]),
    }
}

/// A list: a JSON array of `json` for scripts, a table of `headers` and `row` for people.
fn list<T>(
    format: Format,
    items: &[T],
    json: impl Fn(&T) -> Value,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    match format {
        Format::Json => print_json(&Value::Array(items.iter().map(json).collect())),
        Format::Table => table(headers, &items.iter().map(row).collect::<Vec<_>>()),
    }
}

pub fn webhook_list(format: Format, webhooks: &[Webhook]) {
    let headers = ["ID", "STATUS", "URL", "EVENTS", "FAILURES", "DESCRIPTION"];
    list(format, webhooks, webhook_json, &headers, |w| {
        vec![
            w.id.clone(),
            webhook_status(w).into(),
            w.url.clone(),
            w.events.join(","),
            w.failure_count.to_string(),
            w.description.clone(),
        ]
    });
}

/// `webhooks delete`'s answer.
pub fn deleted_webhook(format: Format, id: &str, deliveries_deleted: u64) {
    match format {
        Format::Json => print_json(&json!({ "id": id, "deliveries_deleted": deliveries_deleted })),
        Format::Table => println!("deleted {id} and its {deliveries_deleted} deliveries"),
    }
}

/// `webhooks secret`'s answer.
pub fn secret(format: Format, id: &str, secret: &str) {
    match format {
        Format::Json => print_json(&json!({ "id": id, "secret": secret })),
        Format::Table => println!("{secret}"),
    }
}

/// One change of `webhooks watch`: a line for people, an object per line for scripts.
pub fn change(format: Format, change: &WebhookChange) {
    use kit_webhooks_client::Change;
    if format == Format::Json {
        let (kind, what) = match &change.change {
            Some(Change::Webhook(webhook)) => ("webhook", webhook_json(webhook)),
            Some(Change::Delivery(delivery)) => ("delivery", delivery_json(delivery)),
            Some(Change::DeletedWebhookId(id)) => ("deleted_webhook", json!({ "id": id })),
            None => ("unknown", Value::Null),
        };
        let line = json!({ "at": time_json(&change.at), "kind": kind, kind: what, "missed": change.missed });
        println!("{line}");
        return;
    }
    if change.missed > 0 {
        println!("({} changes missed: this watch fell behind)", change.missed);
    }
    let at = time(&change.at);
    match &change.change {
        Some(Change::Webhook(w)) => {
            let reason = match w.disabled_reason.is_empty() {
                true => String::new(),
                false => format!(" ({})", w.disabled_reason),
            };
            println!("{at}  {}  {}{reason}", w.id, webhook_status(w));
        }
        Some(Change::Delivery(d)) => {
            let outcome = d
                .attempts
                .last()
                .map_or_else(String::new, |a| format!(": {}", attempt_summary(a)));
            println!(
                "{at}  {}  {} {}{} {}{outcome}",
                d.webhook_id,
                d.id,
                d.event_type,
                test_mark(d),
                delivery_status(d)
            );
        }
        Some(Change::DeletedWebhookId(id)) => println!("{at}  {id}  deleted"),
        None => {}
    }
    // A pipe (`| grep`) sees each change as it comes.
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// ` (test)` after a test delivery's event type.
fn test_mark(delivery: &Delivery) -> &'static str {
    if delivery.test {
        " (test)"
    } else {
        ""
    }
}

pub fn delivery_list(format: Format, deliveries: &[Delivery]) {
    let headers = [
        "ID",
        "STATUS",
        "EVENT TYPE",
        "ATTEMPTS",
        "CREATED",
        "NEXT ATTEMPT",
    ];
    list(format, deliveries, delivery_json, &headers, |d| {
        vec![
            d.id.clone(),
            delivery_status(d).into(),
            format!("{}{}", d.event_type, test_mark(d)),
            d.attempt_count.to_string(),
            time(&d.created_at),
            time(&d.next_attempt_at),
        ]
    });
}

pub fn event_list(format: Format, events: &[Event]) {
    let headers = ["ID", "ACCOUNT", "TYPE", "CREATED"];
    list(format, events, event_json, &headers, |e| {
        vec![
            e.id.clone(),
            e.account_id.clone(),
            e.r#type.clone(),
            time(&e.created_at),
        ]
    });
}
