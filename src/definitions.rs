//! What each event type's `data` holds: when Kit publishes it, a JSON Schema (draft 2020-12) of its `data`,
//! and one realistic example, for the catalogue's 22 types, the 2 operational ones and `test.ping`.
//!
//! Each type's definition is one file, `catalogue/<type>.json`, embedded here at build time: the one source
//! of `ListEventTypes`' schemas and examples, the server's payload validation (`--validate-payloads`), the
//! CLI's `events trigger`, and docs/EVENTS.md ([`markdown`], held to the file by a test). Schemas allow
//! additional properties everywhere, so adding a field to an event never breaks a receiver.

use std::{collections::HashMap, sync::OnceLock};

use serde::Deserialize;
use serde_json::Value;

use crate::catalogue::{self, EventType};

/// One event type's definition, as `catalogue/<type>.json` holds it.
#[derive(Debug, Clone, Deserialize)]
pub struct Definition {
    #[serde(rename = "type")]
    pub name: String,
    /// When Kit publishes it, in a sentence or two.
    pub fires_when: String,
    /// The JSON Schema of its `data`.
    pub schema: Value,
    /// A `data` that validates against `schema`.
    pub example: Value,
}

/// `(type, file text)` of every definition, embedded.
macro_rules! sources {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../catalogue/", $name, ".json")))),*]
    };
}

const SOURCES: &[(&str, &str)] = sources![
    "application.submitted",
    "application.rejected",
    "application.advanced",
    "application.withdrawn",
    "application.offer_extended",
    "offer.accepted",
    "offer.declined",
    "offer.candidate_accepted",
    "offer.candidate_declined",
    "offer.revised",
    "interview.scheduled",
    "interview.confirmed",
    "interview.completed",
    "interview.cancelled",
    "interview.no_show",
    "code_assignment.submitted",
    "code_assignment.auto_submitted",
    "review.submitted",
    "job_posting.published",
    "job_posting.paused",
    "job_posting.closed",
    "job_posting.reopened",
    "webhook.disabled",
    "webhook.enabled",
    "test.ping",
];

fn all() -> &'static HashMap<&'static str, Definition> {
    static DEFINITIONS: OnceLock<HashMap<&'static str, Definition>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(name, text)| {
                // The files are part of the build, and a test parses every one: a broken file never ships.
                let definition: Definition = serde_json::from_str(text)
                    .unwrap_or_else(|err| panic!("catalogue/{name}.json: {err}"));
                (*name, definition)
            })
            .collect()
    })
}

/// The definition of event type `name` (`test.ping` included), if it is one.
pub fn of(name: &str) -> Option<&'static Definition> {
    all().get(name)
}

/// Every type of the catalogue, then the operational ones, then `test.ping`, in the catalogue's order.
pub fn types() -> impl Iterator<Item = &'static EventType> {
    catalogue::EVENT_TYPES
        .iter()
        .chain(catalogue::OPERATIONAL_TYPES)
        .chain(std::iter::once(&catalogue::TEST_PING_TYPE))
}

/// docs/EVENTS.md: every event by category, when it fires, its fields, its example and how a receiver reads
/// it.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Events\n\n\
         Generated from `catalogue/` by `cargo test --test event_catalogue` (with `KIT_WEBHOOKS_WRITE_DOCS=1` to\n\
         rewrite it); do not edit by hand.\n\n\
         Every delivery's body is the envelope `{\"id\", \"type\", \"timestamp\", \"account_id\", \"data\"}`, signed as the\n\
         README's \"Verifying signatures\" says; this page describes each type's `data`. Fields may be added to an\n\
         event at any time (every schema allows additional properties): ignore the ones you do not know. The JSON\n\
         Schemas themselves are served by `ListEventTypes` and `GetEventType` (`schema_json`), and\n\
         `kit-webhooks event-types -o json` prints them.\n",
    );
    let mut category = "";
    for event in types() {
        let Some(definition) = of(event.name) else {
            continue;
        };
        if event.category != category {
            category = event.category;
            out.push_str(&format!("\n## `{category}`\n"));
        }
        out.push_str(&format!(
            "\n### `{}`\n\n{} {}\n\n| field | type | required | description |\n|---|---|---|---|\n",
            event.name, event.description, definition.fires_when
        ));
        fields(&definition.schema, "", &mut out);
        let example = serde_json::to_string_pretty(&definition.example).unwrap_or_default();
        out.push_str(&format!("\nExample `data`:\n\n```json\n{example}\n```\n"));
        let required = required(&definition.schema);
        out.push_str(&format!(
            "\nIn a receiver (after verifying the signature):\n\n```js\nif (event.type === \"{}\") {{\n  const {{ {} }} = event.data;\n}}\n```\n",
            event.name,
            required.join(", ")
        ));
    }
    out
}

fn required(schema: &Value) -> Vec<&str> {
    schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// One table row per property of `schema` (an object schema), nested ones as `parent.child`
/// (`parent[].child` inside arrays of objects).
fn fields(schema: &Value, prefix: &str, out: &mut String) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    let required = required(schema);
    for (name, property) in properties {
        let path = format!("{prefix}{name}");
        let kind = kind_of(property);
        out.push_str(&format!(
            "| `{path}` | {kind} | {} | {} |\n",
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            },
            property["description"].as_str().unwrap_or_default()
        ));
        fields(property, &format!("{path}."), out);
        fields(&property["items"], &format!("{path}[]."), out);
    }
}

/// A property's type as the table shows it: `string (date-time)`, `one of a, b`, `array of object`.
fn kind_of(property: &Value) -> String {
    if let Some(values) = property["enum"].as_array() {
        let names: Vec<String> = values
            .iter()
            .map(|v| {
                format!(
                    "`{}`",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect();
        return format!("one of {}", names.join(", "));
    }
    let kind = match &property["type"] {
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        Value::String(kind) => kind.clone(),
        _ => "any".into(),
    };
    match (kind.as_str(), property["format"].as_str()) {
        ("array", _) => format!("array of {}", kind_of(&property["items"])),
        (_, Some(format)) => format!("{kind} ({format})"),
        _ => kind,
    }
}

/// Event type `name`'s example with fresh ids: every string under a key `id` or `…_id` that looks like
/// `prefix_…` gets a new random part, the same old id always the same new one (so that references inside the
/// example still agree). What `TriggerEvent` publishes when it is given no data.
pub fn fresh_example(name: &str) -> Option<Value> {
    let mut example = of(name)?.example.clone();
    let mut renamed = HashMap::new();
    refresh_ids(&mut example, false, &mut renamed);
    Some(example)
}

fn refresh_ids(value: &mut Value, is_id: bool, renamed: &mut HashMap<String, String>) {
    match value {
        Value::String(text) if is_id => {
            if let Some((prefix, _)) = text.split_once('_') {
                let fresh = renamed
                    .entry(text.clone())
                    .or_insert_with(|| format!("{prefix}_{}", random_part()))
                    .clone();
                *text = fresh;
            }
        }
        Value::Object(fields) => {
            for (key, field) in fields {
                let is_id = key == "id" || key.ends_with("_id");
                refresh_ids(field, is_id, renamed);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| refresh_ids(item, is_id, renamed)),
        _ => {}
    }
}

/// Ten random letters and digits.
fn random_part() -> String {
    use rand::{distr::Alphanumeric, Rng};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(char::from)
        .collect()
}
