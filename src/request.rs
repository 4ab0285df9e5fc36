//! The HTTP request a delivery task makes (signed as `crate::signature` says): which of its headers follow
//! from the task, and which a report names.
//!
//! Most of a request's headers follow from its task alone (its event, delivery and attempt number). The
//! daemon builds its requests with [`task_headers`], and reports only the headers it chose itself
//! (`user-agent` and the signature's); the server records those ([`reported_headers`]) and shows an
//! attempt's headers completed with [`complete`]. So a report does not carry back what the server already
//! knows (docs/PERFORMANCE.md, step 51).

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

/// The headers a report names on its own, those its task does not determine: `user-agent`, and the
/// signature's timestamp and value, each left out when the report leaves it empty (none at all when the daemon
/// made no request). What the server records for a report that does not list every header.
pub fn reported_headers(
    user_agent: String,
    signed_at: i64,
    signature: String,
) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
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

        let mut none = reported_headers(String::new(), 0, String::new());
        complete(&mut none, "evt_1", "offer.accepted", "dlv_1", 2);
        assert!(none.is_empty(), "no request was made");
    }
}
