//! One function per group of subcommands: call the server through the client library, print the result.

use std::{
    io::IsTerminal,
    time::{Duration, SystemTime},
};

use anyhow::bail;
use futures::{StreamExt, TryStreamExt};
use kit_webhooks_client::{
    Client, Delivery, DeliveryQuery, DeliveryStatus, NewWebhook, WebhookUpdate,
};
use serde_json::json;

use super::{
    connection::{ConnectionArgs, KeyRole},
    output::{self, Format},
};
use crate::{read_data, DeliveriesCommand, EventsCommand, WebhooksCommand};

pub async fn webhooks(
    connection: &ConnectionArgs,
    format: Format,
    command: WebhooksCommand,
) -> anyhow::Result<()> {
    let client = connection.client(KeyRole::Admin).await?;
    let show = |webhook: &kit_webhooks_client::Webhook| match format {
        Format::Json => output::print_json(&output::webhook_json(webhook)),
        Format::Table => output::webhook_fields(webhook),
    };
    match command {
        WebhooksCommand::Create {
            url,
            description,
            events,
            rate_limit,
            headers,
            ordering,
        } => {
            let new = NewWebhook {
                url,
                description,
                events,
                rate_limit_per_second: rate_limit,
                headers,
                ordering: ordering.into(),
            };
            let (webhook, secret) = client.create_webhook(new).await?;
            output::created_webhook(format, &webhook, secret);
        }
        WebhooksCommand::List { limit } => {
            let webhooks: Vec<_> = client
                .list_webhooks()
                .take(limit.unwrap_or(usize::MAX))
                .try_collect()
                .await?;
            output::webhook_list(format, &webhooks);
        }
        WebhooksCommand::Get { id } => show(&client.get_webhook(&id).await?),
        WebhooksCommand::Update {
            id,
            url,
            description,
            events,
            rate_limit,
            headers,
            no_headers,
            ordering,
        } => {
            let headers = (no_headers || !headers.is_empty()).then_some(headers);
            let update = WebhookUpdate {
                url,
                description,
                events,
                rate_limit_per_second: rate_limit,
                headers,
                ordering: ordering.map(Into::into),
            };
            show(&client.update_webhook(&id, checked(update)?).await?);
        }
        WebhooksCommand::Pause { id } => show(&client.pause_webhook(&id).await?),
        WebhooksCommand::Resume { id } => show(&client.resume_webhook(&id).await?),
        WebhooksCommand::Delete { id } => {
            let deleted = client.delete_webhook(&id).await?;
            output::deleted_webhook(format, &id, deleted);
        }
        WebhooksCommand::RotateSecret { id, grace } => {
            let (webhook, secret) = client.rotate_secret(&id, Some(grace.0)).await?;
            output::rotated_secret(format, &webhook, secret);
        }
        WebhooksCommand::Secret { id } => {
            let secret = client.webhook_secret(&id).await?;
            output::secret(format, &id, &secret);
        }
        WebhooksCommand::Ping { id } => ping(&client, format, &id).await?,
        WebhooksCommand::Watch { id } => watch(&client, format, id.as_deref()).await?,
    }
    Ok(())
}

/// `webhooks watch`: one line (or JSON object) per change, flushed as it comes.
async fn watch(client: &Client, format: Format, id: Option<&str>) -> anyhow::Result<()> {
    let mut changes = std::pin::pin!(client.watch_webhooks(id).await?);
    let watched = id.unwrap_or("the account's webhooks");
    while let Some(change) = changes.next().await {
        let change = change?;
        match change.change {
            // The watch is open (said on stderr, so that stdout holds only changes): nothing after it is
            // missed.
            None => eprintln!("watching {watched}; Ctrl-C to stop"),
            Some(_) => output::change(format, &change),
        }
    }
    bail!("the server ended the watch")
}

/// `webhooks ping`: a test ping, waited for; an error unless the endpoint answered 2xx.
async fn ping(client: &Client, format: Format, id: &str) -> anyhow::Result<()> {
    let delivery = client.send_test_ping(id, true).await?;
    test_outcome(format, &delivery, "ping")
}

/// Prints what became of a test delivery that was waited for (a ping, or `events trigger --webhook`, called
/// `label`): an error unless the endpoint answered 2xx.
pub fn test_outcome(format: Format, delivery: &Delivery, label: &str) -> anyhow::Result<()> {
    match format {
        Format::Json => output::print_json(&output::delivery_json(delivery)),
        Format::Table => match delivery.attempts.last() {
            Some(attempt) => println!(
                "{label} {}: {}",
                delivery.id,
                output::attempt_summary(attempt)
            ),
            None => println!(
                "{label} {}: no attempt yet (is a delivery daemon running?)",
                delivery.id
            ),
        },
    }
    if delivery.status() != DeliveryStatus::Succeeded {
        bail!("the endpoint did not acknowledge the {label} with a 2xx");
    }
    Ok(())
}

pub async fn deliveries(
    connection: &ConnectionArgs,
    format: Format,
    command: DeliveriesCommand,
) -> anyhow::Result<()> {
    let client = connection.client(KeyRole::Admin).await?;
    match command {
        DeliveriesCommand::List {
            webhook,
            status,
            event_type,
            limit,
        } => {
            let status = status.as_deref().map(delivery_status).transpose()?;
            let query = DeliveryQuery {
                webhook_id: webhook,
                status,
                event_type,
            };
            let deliveries: Vec<_> = client
                .list_deliveries(query)
                .take(limit.unwrap_or(usize::MAX))
                .try_collect()
                .await?;
            output::delivery_list(format, &deliveries);
        }
        DeliveriesCommand::Show { id } => {
            let delivery = client.get_delivery(&id).await?;
            match format {
                Format::Json => output::print_json(&output::delivery_json(&delivery)),
                Format::Table => output::delivery_details(&delivery),
            }
        }
        DeliveriesCommand::Retry { id } => {
            let delivery = client.retry_delivery(&id).await?;
            match format {
                Format::Json => output::print_json(&output::delivery_json(&delivery)),
                Format::Table => println!(
                    "{} is queued again as attempt {}",
                    delivery.id,
                    delivery.attempt_count + 1
                ),
            }
        }
        DeliveriesCommand::Replay {
            webhook,
            since,
            until,
        } => {
            let requeued = with_spinner(
                "replaying failed deliveries",
                client.replay_deliveries(&webhook, since, until),
            )
            .await?;
            match format {
                Format::Json => output::print_json(
                    &json!({ "webhook_id": webhook, "deliveries_requeued": requeued }),
                ),
                Format::Table => println!("re-queued {requeued} failed deliveries of {webhook}"),
            }
        }
    }
    Ok(())
}

pub async fn events(
    connection: &ConnectionArgs,
    format: Format,
    command: EventsCommand,
) -> anyhow::Result<()> {
    // A trigger acts for the admin key's account; the rest use the publisher key.
    let publisher = || connection.client(KeyRole::Publisher);
    match command {
        EventsCommand::Trigger {
            event_type,
            sets,
            webhook,
        } => {
            let target = webhook.as_deref();
            super::trigger::run(connection, format, &event_type, &sets, target).await?;
        }
        EventsCommand::Publish {
            account,
            event_type,
            data,
            idempotency_key,
        } => {
            let data = read_data(&data)?;
            let reply = publisher()
                .await?
                .publish_event(&account, &event_type, &data, idempotency_key.as_deref())
                .await?;
            let event = reply.event.unwrap_or_default();
            match format {
                Format::Json => output::print_json(
                    &json!({ "event": output::event_json(&event), "deliveries_queued": reply.deliveries_queued }),
                ),
                Format::Table => println!(
                    "published {} ({}), {} deliveries queued",
                    event.id, event.r#type, reply.deliveries_queued
                ),
            }
        }
        EventsCommand::List {
            event_type,
            account,
            limit,
        } => {
            let client = publisher().await?;
            let events: Vec<_> = client
                .list_events(event_type, account)
                .take(limit.unwrap_or(usize::MAX))
                .try_collect()
                .await?;
            output::event_list(format, &events);
        }
        EventsCommand::Get { id } => {
            let event = publisher().await?.get_event(&id).await?;
            match format {
                Format::Json => output::print_json(&output::event_json(&event)),
                Format::Table => {
                    output::fields(&[
                        ("id", event.id.clone()),
                        ("account", event.account_id.clone()),
                        ("type", event.r#type.clone()),
                        ("created", output::time(&event.created_at)),
                        ("idempotency key", event.idempotency_key.clone()),
                    ]);
                    let data: serde_json::Value =
                        serde_json::from_str(&event.data_json).unwrap_or_default();
                    println!(
                        "\n{}",
                        serde_json::to_string_pretty(&data).unwrap_or(event.data_json)
                    );
                }
            }
        }
    }
    Ok(())
}

pub async fn event_types(connection: &ConnectionArgs, format: Format) -> anyhow::Result<()> {
    let client: Client = connection.client(KeyRole::Admin).await?;
    let types = client.event_types().await?;
    match format {
        Format::Json => output::print_json(&json!(types
            .iter()
            .map(|t| {
                let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
                json!({
                    "name": t.name,
                    "category": t.category,
                    "description": t.description,
                    "fires_when": t.fires_when,
                    "schema": parse(&t.schema_json),
                    "example": parse(&t.example_json),
                })
            })
            .collect::<Vec<_>>())),
        Format::Table => {
            let mut category = String::new();
            for t in &types {
                if t.category != category {
                    category = t.category.clone();
                    println!("{category}.*");
                }
                println!("  {:<32} {}", t.name, t.description);
            }
        }
    }
    Ok(())
}

/// `--status` of `deliveries list`.
fn delivery_status(text: &str) -> anyhow::Result<DeliveryStatus> {
    Ok(match text {
        "pending" => DeliveryStatus::Pending,
        "sending" => DeliveryStatus::Sending,
        "succeeded" => DeliveryStatus::Succeeded,
        "failed" => DeliveryStatus::Failed,
        other => bail!("--status: `{other}` is not one of pending, sending, succeeded, failed"),
    })
}

/// `update` with something to change, or why not.
fn checked(update: WebhookUpdate) -> anyhow::Result<WebhookUpdate> {
    let WebhookUpdate {
        url,
        description,
        events,
        rate_limit_per_second,
        headers,
        ordering,
    } = &update;
    if url.is_none()
        && description.is_none()
        && events.is_none()
        && rate_limit_per_second.is_none()
        && headers.is_none()
        && ordering.is_none()
    {
        bail!("nothing to change: give --url, --description, --events, --rate-limit, --header, --no-headers or --ordering");
    }
    Ok(update)
}

/// `--ordering`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Ordering {
    Unordered,
    Ordered,
}

impl From<Ordering> for kit_webhooks::proto::Ordering {
    fn from(ordering: Ordering) -> Self {
        match ordering {
            Ordering::Unordered => kit_webhooks::proto::Ordering::Unordered,
            Ordering::Ordered => kit_webhooks::proto::Ordering::Ordered,
        }
    }
}

/// `--header 'Name: value'`: the name before the first colon, the value after it, spaces around both
/// dropped (the server checks them).
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not `Name: value`"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// `TIME` of `--since`/`--until`: RFC 3339, or a duration meaning that long ago (`72h`).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(ago) = kit_webhooks::duration::parse_duration(text) {
        return Ok(SystemTime::now() - ago);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(SystemTime::from)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time (2026-11-20T00:00:00Z) nor a duration ago (72h)"))
}

/// Runs `work`, showing a spinner on stderr meanwhile when stderr is a terminal.
async fn with_spinner<T>(label: &str, work: impl std::future::Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let label = label.to_owned();
    let spinner = tokio::spawn(async move {
        let frames = ['|', '/', '-', '\\'];
        for i in 0.. {
            eprint!("\r{} {label}…", frames[i % frames.len()]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let result = work.await;
    spinner.abort();
    eprint!("\r\x1b[2K");
    result
}
