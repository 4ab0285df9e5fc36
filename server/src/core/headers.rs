//! A webhook's own request headers (an `Authorization` its endpoint's gateway requires): which are valid, and
//! their stored form, a JSON object sealed with the webhook's secret's keyring (they are often credentials).
//! Which names the system keeps for itself and which values are shown masked is `kit_webhooks::request`'s.

use std::collections::BTreeMap;

use kit_webhooks::{proto, request, text::quoted};

use super::{sealing::Keyring, Error};

/// The most headers one webhook sends.
pub const MAX_HEADERS: usize = 20;
const MAX_NAME_BYTES: usize = 64;
const MAX_VALUE_BYTES: usize = 1024;

/// A webhook's headers, by lowercase name.
pub type Headers = BTreeMap<String, String>;

/// Checks `headers` as a request gives them (`field` names them in a refusal): at most [`MAX_HEADERS`], each
/// a token name the system does not set, once, with a value of visible ASCII and spaces.
pub fn validate(field: &'static str, headers: &[proto::Header]) -> Result<Headers, Error> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::invalid(
            field,
            format!(
                "has {} headers; at most {MAX_HEADERS} are allowed",
                headers.len()
            ),
        ));
    }
    let mut valid = Headers::new();
    for header in headers {
        let name = header.name.to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.bytes().all(is_token) {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is not a header name: 1 to {MAX_NAME_BYTES} letters, digits or !#$%&'*+-.^_`|~",
                    quoted(&header.name)
                ),
            ));
        }
        if request::is_reserved(&name) {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is set by Kit Webhooks itself and cannot be set by a webhook",
                    quoted(&name)
                ),
            ));
        }
        let value = header.value.trim_matches([' ', '\t']);
        if value.len() > MAX_VALUE_BYTES
            || !value
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(Error::invalid(
                field,
                format!(
                    "the value of {} must be at most {MAX_VALUE_BYTES} bytes of visible ASCII and spaces (no CR or LF)",
                    quoted(&name)
                ),
            ));
        }
        if valid.insert(name.clone(), value.to_owned()).is_some() {
            return Err(Error::invalid(
                field,
                format!("names {} twice", quoted(&name)),
            ));
        }
    }
    Ok(valid)
}

/// RFC 9110's `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A daemon's report of the webhook headers a request carried, kept within what a webhook may have: at most
/// [`MAX_HEADERS`], each within the name and value limits [`validate`] applies.
pub fn as_reported(reported: Headers) -> Headers {
    reported
        .into_iter()
        .filter(|(name, value)| name.len() <= MAX_NAME_BYTES && value.len() <= MAX_VALUE_BYTES)
        .take(MAX_HEADERS)
        .collect()
}

/// `headers` as the column holds them before sealing: a JSON object, or empty for none.
pub fn encode(headers: &Headers) -> String {
    if headers.is_empty() {
        return String::new();
    }
    serde_json::to_string(headers).unwrap_or_default()
}

/// Webhook `webhook_id`'s headers, as its `headers` column holds them (sealed, or empty).
pub fn open(ring: &Keyring, webhook_id: &str, stored: &str) -> Result<Headers, Error> {
    if stored.is_empty() {
        return Ok(Headers::new());
    }
    let text = ring.open(webhook_id, stored)?;
    serde_json::from_str(&text)
        .map_err(|_| Error::Sealing(format!("webhook `{webhook_id}`'s headers do not read back")))
}

/// `headers` as a webhook shows them: credential-like values masked.
pub fn shown(headers: Headers) -> Vec<proto::Header> {
    headers
        .into_iter()
        .map(|(name, value)| proto::Header {
            value: request::masked(&name, &value),
            name,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> proto::Header {
        proto::Header {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn headers_are_checked_and_read_back_sealed() {
        let ok = validate(
            "headers",
            &[
                header("Authorization", "Bearer abc123456789"),
                header("X-Tenant", " acme "),
            ],
        )
        .unwrap();
        assert_eq!(ok["authorization"], "Bearer abc123456789");
        assert_eq!(ok["x-tenant"], "acme");
        for (bad, needle) in [
            (header("Kit-Attempt", "1"), "set by Kit Webhooks"),
            (header("webhook-id", "x"), "set by Kit Webhooks"),
            (header("Host", "x"), "set by Kit Webhooks"),
            (header("bad name", "x"), "not a header name"),
            (header("", "x"), "not a header name"),
            (header("x-a", "line\r\nInjected: 1"), "no CR or LF"),
        ] {
            let err = validate("headers", &[bad]).unwrap_err().to_string();
            assert!(
                err.starts_with("headers: ") && err.contains(needle),
                "{err}"
            );
        }
        let twice = validate("headers", &[header("X-A", "1"), header("x-a", "2")]).unwrap_err();
        assert!(twice.to_string().contains("twice"));
        let many: Vec<_> = (0..21).map(|i| header(&format!("x-{i}"), "v")).collect();
        assert!(validate("headers", &many)
            .unwrap_err()
            .to_string()
            .contains("at most 20"));

        let ring = Keyring::generate();
        let sealed = ring.seal("wh_1", &encode(&ok));
        assert!(!sealed.contains("abc123456789"));
        assert_eq!(open(&ring, "wh_1", &sealed).unwrap(), ok);
        assert!(open(&ring, "wh_1", "").unwrap().is_empty());
        let shown = shown(ok);
        assert_eq!(shown[0].value, "****6789");
        assert_eq!(shown[1].value, "acme");
    }
}
