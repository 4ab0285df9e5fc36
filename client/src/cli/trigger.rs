//! `kit-webhooks events trigger TYPE`: publishes a type's example (fresh ids, `--set` applied) for the admin
//! key's account and prints what each of its deliveries did, as `stripe trigger` does: the quickest way to
//! see a real, signed event of any type reach a receiver. With `--webhook ID` it goes to that webhook only,
//! as a test delivery (`SendTestPing` with a type), which the server waits on.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use kit_webhooks::definitions;
use kit_webhooks_client::{Client, Delivery, DeliveryQuery};
use serde_json::{json, Value};

use super::{
    connection::{ConnectionArgs, KeyRole},
    output::{self, Format},
};

/// How long the command waits for the deliveries' first attempts.
const WAIT: Duration = Duration::from_secs(30);

pub async fn run(
    connection: &ConnectionArgs,
    format: Format,
    event_type: &str,
    sets: &[String],
    webhook: Option<&str>,
) -> anyhow::Result<()> {
    let client = connection.client(KeyRole::Admin).await?;
    let data = match sets.is_empty() {
        true => None,
        false => {
            let mut data = definitions::fresh_example(event_type).with_context(|| {
                format!(
                    "`{event_type}` is not an event type; `kit-webhooks event-types` lists them"
                )
            })?;
            for set in sets {
                apply(&mut data, set)?;
            }
            Some(data.to_string())
        }
    };
    if let Some(webhook) = webhook {
        let delivery = client
            .send_test_event(webhook, event_type, data.as_deref(), true)
            .await?;
        let label = format!("{event_type} test delivery");
        return super::commands::test_outcome(format, &delivery, &label);
    }
    let reply = client.trigger_event(event_type, data.as_deref()).await?;
    let event = reply.event.unwrap_or_default();
    let deliveries = outcomes(&client, &event, reply.deliveries_queued as usize).await?;
    match format {
        Format::Json => output::print_json(&json!({
            "event": output::event_json(&event),
            "deliveries": deliveries.iter().map(output::delivery_json).collect::<Vec<_>>(),
        })),
        Format::Table => {
            println!(
                "published {} ({}) to {} webhooks",
                event.id, event.r#type, reply.deliveries_queued
            );
            for delivery in &deliveries {
                let outcome = delivery
                    .attempts
                    .last()
                    .map_or_else(|| "not attempted yet".to_owned(), output::attempt_summary);
                println!("  {} {}: {outcome}", delivery.webhook_id, delivery.id);
            }
        }
    }
    Ok(())
}

/// `--set path.to.field=value`: the value as JSON when it reads as JSON, else as text.
fn apply(data: &mut Value, set: &str) -> anyhow::Result<()> {
    let Some((path, value)) = set.split_once('=') else {
        bail!("--set: `{set}` is not `path.to.field=value`");
    };
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    let mut target = data;
    for key in path.split('.') {
        if key.is_empty() {
            bail!("--set: `{path}` has an empty step");
        }
        // A field the example lacks is added, with the objects on the way to it.
        if target.is_null() {
            *target = Value::Object(serde_json::Map::new());
        }
        let Value::Object(fields) = target else {
            bail!("--set: `{path}` goes through a value that is not an object");
        };
        target = fields.entry(key.to_owned()).or_insert(Value::Null);
    }
    *target = value;
    Ok(())
}

/// The event's deliveries, each once attempted (or as they stand when [`WAIT`] is over).
async fn outcomes(
    client: &Client,
    event: &kit_webhooks_client::Event,
    expected: usize,
) -> anyhow::Result<Vec<Delivery>> {
    let started = Instant::now();
    loop {
        let mut found = Vec::new();
        let webhooks: Vec<_> = client.list_webhooks().try_collect().await?;
        for webhook in webhooks {
            let query = DeliveryQuery {
                webhook_id: webhook.id,
                status: None,
                event_type: Some(event.r#type.clone()),
            };
            // Newest first: the event's delivery is among the first few.
            let recent: Vec<Delivery> =
                client.list_deliveries(query).take(20).try_collect().await?;
            found.extend(recent.into_iter().filter(|d| d.event_id == event.id));
        }
        let done = found.len() >= expected && found.iter().all(|d| d.attempt_count > 0);
        if done || started.elapsed() > WAIT {
            let mut shown = Vec::new();
            for delivery in found {
                shown.push(client.get_delivery(&delivery.id).await?);
            }
            return Ok(shown);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_take_json_or_text_along_a_dotted_path() {
        let mut data = json!({"offer": {"salary": {"amount": 1}}, "note": "x"});
        apply(&mut data, "offer.salary.amount=185000").unwrap();
        apply(&mut data, "candidate.name=Ada Lovelace").unwrap();
        apply(&mut data, "flags=[1,2]").unwrap();
        assert_eq!(data["offer"]["salary"]["amount"], 185000);
        assert_eq!(data["candidate"]["name"], "Ada Lovelace");
        assert_eq!(data["flags"], json!([1, 2]));
        assert!(apply(&mut data, "note.deeper=1").is_err());
        assert!(apply(&mut data, "no-equals").is_err());
    }
}
