//! Event rules: what a publishable event is, the envelope each delivery sends, and the delivery states.

use kit_webhooks::{catalogue, text::quoted};
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::Deserialize;

use super::{text, time, Error};

/// The default payload limit (docs/ARCHITECTURE.md, Defaults).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
const MAX_ACCOUNT_ID_CHARS: usize = 128;
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// How deep objects and arrays may nest in `data_json`: plenty for ATS data, and well within what receivers'
/// JSON parsers take (recursive ones overflow at a few thousand levels, and every attempt would fail).
pub const MAX_DATA_DEPTH: usize = 64;

/// The state of a delivery, stored as its lowercase name (`pending`, `held`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Waiting like `Pending`, but its webhook is paused or disabled, so it is not due whatever its time, or
    /// its webhook is active and holds all the leases its cap allows, until one of them ends
    /// (`crate::store::leases::held_back`). Kept apart from `Pending` so that finding due deliveries never
    /// wades through held ones; shown to users as PENDING.
    Held,
    Sending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    /// The status a waiting delivery takes: held while its webhook is not active, except a test delivery,
    /// which goes out whatever the webhook's status.
    pub fn waiting(webhook_active: bool, test: bool) -> Self {
        if webhook_active || test {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Held
        }
    }
}

pub fn validate_account_id(field: &'static str, account_id: &str) -> Result<String, Error> {
    if account_id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if account_id.chars().count() > MAX_ACCOUNT_ID_CHARS {
        return Err(Error::invalid(
            field,
            format!("is longer than {MAX_ACCOUNT_ID_CHARS} characters"),
        ));
    }
    if account_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(account_id.to_owned())
}

/// A publishable event type: one of the catalogue's (`test.ping` is sent by pings only).
pub fn validate_type(field: &'static str, event_type: &str) -> Result<&'static str, Error> {
    if event_type.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if event_type == catalogue::TEST_PING {
        return Err(Error::invalid(
            field,
            "`test.ping` is sent by SendTestPing only and cannot be published",
        ));
    }
    if catalogue::OPERATIONAL_TYPES
        .iter()
        .any(|t| t.name == event_type)
    {
        return Err(Error::invalid(
            field,
            format!(
                "{} is sent by Kit Webhooks itself and cannot be published",
                quoted(event_type)
            ),
        ));
    }
    catalogue::event_type(event_type)
        .map(|t| t.name)
        .ok_or_else(|| unknown_type(field, event_type))
}

fn unknown_type(field: &'static str, event_type: &str) -> Error {
    let message = format!(
        "unknown event type {}; see ListEventTypes",
        quoted(event_type)
    );
    Error::invalid(field, message)
}

/// The type of a test delivery to one webhook (`SendTestPing`): any subscribable type, operational ones
/// included, so that a receiver's handling of each can be tried.
pub fn validate_test_type(field: &'static str, event_type: &str) -> Result<&'static str, Error> {
    catalogue::subscribable(event_type)
        .map(|t| t.name)
        .ok_or_else(|| unknown_type(field, event_type))
}

/// An optional filter on event type (list calls): empty for none, else a catalogue type or `test.ping`.
pub fn validate_type_filter<'a>(
    field: &'static str,
    event_type: &'a str,
) -> Result<Option<&'a str>, Error> {
    match event_type {
        "" => Ok(None),
        name if name == catalogue::TEST_PING || catalogue::subscribable(name).is_some() => {
            Ok(Some(name))
        }
        name => Err(Error::invalid(
            field,
            format!("unknown event type {}", quoted(name)),
        )),
    }
}

/// `data_json` must be one JSON object within the size limit. The text is kept as given, so numbers keep
/// every digit.
pub fn validate_data(data_json: String, max_bytes: usize) -> Result<String, Error> {
    let field = "data_json";
    if data_json.len() > max_bytes {
        return Err(Error::invalid(
            field,
            format!(
                "is {} bytes; at most {max_bytes} are allowed",
                data_json.len()
            ),
        ));
    }
    let trimmed = data_json.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(
            field,
            "is required (a JSON object, e.g. `{}`)",
        ));
    }
    // Depth first: it bounds what the parser below recurses into.
    if let Some(depth) = nesting_beyond(trimmed, MAX_DATA_DEPTH) {
        return Err(Error::invalid(
            field,
            format!("nests objects and arrays {depth} levels deep; at most {MAX_DATA_DEPTH} are allowed"),
        ));
    }
    serde_json::from_str::<Readable>(trimmed)
        .map_err(|e| Error::invalid(field, format!("is not valid JSON: {e}")))?;
    if !trimmed.starts_with('{') {
        return Err(Error::invalid(field, "must be a JSON object (`{...}`)"));
    }
    // The payload as given, not a copy of it, unless there was whitespace around it to drop.
    if trimmed.len() == data_json.len() {
        return Ok(data_json);
    }
    Ok(trimmed.to_owned())
}

/// Any JSON value, read as a receiver's parser reads it and then dropped: numbers are parsed, so one out of
/// range (`1e999999`, which parsers refuse or turn into infinity) is refused, which skipping values unparsed
/// (`serde::de::IgnoredAny`) would not see.
struct Readable;

impl<'de> serde::Deserialize<'de> for Readable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Readable)
    }
}

impl<'de> serde::de::Visitor<'de> for Readable {
    type Value = Readable;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, Readable>()?
            .is_some()
        {}
        Ok(Readable)
    }
}

/// The first nesting depth past `max` that the JSON text `json` reaches, if any. Brackets inside strings do
/// not count; whether the text is valid JSON is for the parser to say.
fn nesting_beyond(json: &str, max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Some(depth);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// A publish that reuses an idempotency key answers with the event first published under it, but only when
/// it asks for the same thing: the same type and the same data (compared as JSON values, so spacing and key
/// order do not matter). Otherwise the key was reused by mistake and the new event would be lost silently:
/// `ALREADY_EXISTS`, naming the key and the event it belongs to, as Stripe answers.
pub fn check_same_request(
    key: &str,
    original: (&str, &str, &str),
    event_type: &str,
    data_json: &str,
) -> Result<(), Error> {
    let (original_id, original_type, original_data) = original;
    let same_data = original_data == data_json
        || matches!(
            (
                serde_json::from_str::<serde_json::Value>(original_data),
                serde_json::from_str::<serde_json::Value>(data_json),
            ),
            (Ok(a), Ok(b)) if a == b
        );
    if original_type == event_type && same_data {
        return Ok(());
    }
    let differs = if original_type != event_type {
        format!("type `{original_type}`")
    } else {
        "other data".to_owned()
    };
    Err(Error::AlreadyExists(format!(
        "idempotency_key {} was already used for event `{original_id}` with {differs}; use a new key for a new \
         event, or send the same type and data to get that event back",
        quoted(key)
    )))
}

pub fn validate_idempotency_key(key: &str) -> Result<Option<String>, Error> {
    if key.is_empty() {
        return Ok(None);
    }
    if key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(Error::invalid(
            "idempotency_key",
            format!("is longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        ));
    }
    text::refuse_control_characters("idempotency_key", key)?;
    Ok(Some(key.to_owned()))
}

/// The request body every delivery of an event sends, and signs: the same bytes on every attempt.
/// `data_json` is spliced in verbatim; it was checked to be a JSON object when the event was accepted.
pub fn envelope(
    id: &str,
    event_type: &str,
    created_at_ms: i64,
    account_id: &str,
    data_json: &str,
) -> Vec<u8> {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    format!(
        "{{\"id\":{},\"type\":{},\"timestamp\":\"{}\",\"account_id\":{},\"data\":{}}}",
        quote(id),
        quote(event_type),
        time::rfc3339(created_at_ms),
        quote(account_id),
        data_json
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_must_be_an_object_within_limit() {
        assert!(validate_data(String::from("{\"a\":1}"), 100).is_ok());
        assert!(validate_data(String::from("[1]"), 100).is_err());
        assert!(validate_data(String::from("{"), 100).is_err());
        assert!(validate_data(String::from(""), 100).is_err());
        assert!(validate_data(String::from("{\"a\":\"0123456789\"}"), 10).is_err());
        // Numbers a receiver's parser cannot read are refused, wherever they are.
        assert!(validate_data(String::from("{\"a\":[1, {\"b\":1e999999}]}"), 100).is_err());
        assert!(validate_data(
            String::from("{\"a\":[1.5e300, -0, 18446744073709551616]}"),
            100
        )
        .is_ok());
    }

    #[test]
    fn data_nests_at_most_max_depth() {
        let nested =
            |depth: usize| format!("{}{}", "{\"a\":".repeat(depth) + "1", "}".repeat(depth));
        assert!(validate_data(String::from(&nested(MAX_DATA_DEPTH)), 1 << 20).is_ok());
        let err = validate_data(String::from(&nested(MAX_DATA_DEPTH + 1)), 1 << 20).unwrap_err();
        assert!(err.to_string().starts_with("data_json: nests"), "{err}");
        // 40,000 levels (the audit's payload) are refused as quickly, without recursing.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40_000), "]".repeat(40_000));
        assert!(validate_data(String::from(&deep), 1 << 20).is_err());
        // Brackets inside strings, escaped quotes included, are text.
        let in_strings = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(100), "{".repeat(100));
        assert!(validate_data(String::from(&in_strings), 1 << 20).is_ok());
    }

    #[test]
    fn envelope_keeps_big_integers() {
        let body = envelope(
            "evt_1",
            "offer.accepted",
            0,
            "acme",
            "{\"n\":18446744073709551615}",
        );
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with("\"data\":{\"n\":18446744073709551615}}"));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["type"], "offer.accepted");
    }
}
