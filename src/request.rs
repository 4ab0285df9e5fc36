//! The HTTP request a delivery task makes (signed as `crate::signature` says): which of its headers follow
//! from the task, and which a report names.
//!
//! Most of a request's headers follow from its task alone (its event, delivery and attempt number). The
//! daemon builds its requests with [`task_headers`], and reports only the headers it chose itself
//! (`user-agent` and the signature's); the server records those ([`reported_headers`]) and shows an
//! attempt's headers completed with [`complete`]. So a report does not carry back what the server already
//! knows (docs/PERFORMANCE.md, step 51).
//!
//! A webhook may add headers of its own (an `Authorization` its endpoint's gateway requires): never one this
//! system sets ([`is_reserved`]), and shown with the values of credential-like ones [`masked`].

use std::collections::BTreeMap;

/// `content-type`, the same on every request.
pub const CONTENT_TYPE: (&str, &str) = ("content-type", "application/json");

/// The headers a request carries that follow from its task: its content type aside, the event id
/// (`webhook-id`, the signature scheme's message id), the event type, the delivery id and the attempt number.
pub fn task_headers(
    event_id: String,
    event_type: String,
    delivery_id: String,
    attempt: u32,
) -> [(&'static str, String); 4] {
    [
        (crate::signature::WEBHOOK_ID, event_id),
        ("kit-event-type", event_type),
        ("kit-delivery-id", delivery_id),
        ("kit-attempt", attempt.to_string()),
    ]
}

/// Whether a webhook may not set header `name` (lowercase) itself: this system sets it (`webhook-*`,
/// `kit-*`, `content-type`, `content-length`, `host`, `user-agent`), or HTTP does (`connection`,
/// `transfer-encoding`, and the like).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("webhook-")
        || name.starts_with("kit-")
        || name.starts_with("proxy-")
        || matches!(
            name,
            "content-type"
                | "content-length"
                | "content-encoding"
                | "host"
                | "user-agent"
                | "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "te"
                | "trailer"
                | "upgrade"
                | "expect"
        )
}

/// Whether header `name` (lowercase) looks like it carries a credential, so that its value is never shown.
fn is_sensitive(name: &str) -> bool {
    [
        "auth",
        "token",
        "secret",
        "key",
        "password",
        "cookie",
        "signature",
        "credential",
        "session",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `value` of a webhook's header `name` as it may be shown: a credential-like one as `****` and its last
/// four characters (all of it hidden when it is short), any other as it is.
pub fn masked(name: &str, value: &str) -> String {
    if !is_sensitive(name) {
        return value.to_owned();
    }
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0..=11 => "****".to_owned(),
        n => format!("****{}", chars[n - 4..].iter().collect::<String>()),
    }
}

/// The headers a report names on its own, those its task does not determine: `user-agent`, and the
/// signature's timestamp and value, each left out when the report leaves it empty (none at all when the daemon
/// made no request), and the webhook's own headers, masked as the daemon reported them. What the server
/// records for a report that does not list every header.
pub fn reported_headers(
    user_agent: String,
    signed_at: i64,
    signature: String,
    webhook_headers: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut headers = webhook_headers;
    if !user_agent.is_empty() {
        headers.insert("user-agent".to_owned(), user_agent);
    }
    if signed_at != 0 {
        headers.insert(
            crate::signature::WEBHOOK_TIMESTAMP.to_owned(),
            signed_at.to_string(),
        );
    }
    if !signature.is_empty() {
        headers.insert(crate::signature::WEBHOOK_SIGNATURE.to_owned(), signature);
    }
    headers
}

/// Completes `headers`, those recorded for an attempt, with the ones that follow from its task; a header
/// already recorded keeps its value (a daemon that reports every header it sent is shown as it reported).
/// An attempt recorded without headers made no request (it failed before one was built) and stays without.
pub fn complete(
    headers: &mut BTreeMap<String, String>,
    event_id: &str,
    event_type: &str,
    delivery_id: &str,
    attempt: u32,
) {
    if headers.is_empty() {
        return;
    }
    let (name, value) = CONTENT_TYPE;
    headers
        .entry(name.to_owned())
        .or_insert_with(|| value.to_owned());
    let derived = task_headers(
        event_id.to_owned(),
        event_type.to_owned(),
        delivery_id.to_owned(),
        attempt,
    );
    for (name, value) in derived {
        headers.entry(name.to_owned()).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_like_values_are_masked_and_system_headers_reserved() {
        assert_eq!(masked("authorization", "Bearer abcdefgh1234"), "****1234");
        assert_eq!(masked("x-api-key", "short"), "****");
        assert_eq!(masked("x-tenant", "acme"), "acme");
        for name in [
            "webhook-id",
            "kit-attempt",
            "content-type",
            "host",
            "user-agent",
            "connection",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        assert!(!is_reserved("authorization") && !is_reserved("x-tenant"));
    }

    #[test]
    fn recorded_headers_are_completed_from_the_task_and_keep_their_own_values() {
        let mut headers = BTreeMap::from([
            ("user-agent".to_owned(), "KitWebhooks/1".to_owned()),
            ("kit-attempt".to_owned(), "7".to_owned()),
        ]);
        complete(&mut headers, "evt_1", "offer.accepted", "dlv_1", 2);
        let expected = [
            ("content-type", "application/json"),
            ("kit-attempt", "7"),
            ("kit-delivery-id", "dlv_1"),
            ("kit-event-type", "offer.accepted"),
            ("user-agent", "KitWebhooks/1"),
            ("webhook-id", "evt_1"),
        ];
        let got: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);

        let mut none = reported_headers(String::new(), 0, String::new(), BTreeMap::new());
        complete(&mut none, "evt_1", "offer.accepted", "dlv_1", 2);
        assert!(none.is_empty(), "no request was made");
    }
}
