//! Webhook rules: what a valid URL, description and subscription list are, the lifecycle states, and which
//! webhooks an event fans out to.

use kit_webhooks::{catalogue::Subscription, text::quoted};
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::Deserialize;

use super::{text, Error};

pub const MAX_DESCRIPTION_CHARS: usize = 500;
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 100;
pub const MAX_RATE_LIMIT_PER_SECOND: u32 = 100_000;
/// How long a rotated-out secret keeps signing when the rotation does not say: receivers have a day to take
/// the new one.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u32 = 24 * 3600;
/// Seven days: the longest a rotated-out secret keeps signing.
pub const MAX_GRACE_PERIOD_SECONDS: u32 = 7 * 24 * 3600;
const MAX_URL_CHARS: usize = 2048;

/// The lifecycle state of a webhook, stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Paused,
    Disabled,
}

/// The order a webhook's deliveries go in, stored as its lowercase name. An ordered webhook's deliveries are
/// created `ordered` and wait their turn (`crate::store::leases::claim`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, EnumIter, DeriveActiveEnum, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "Text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    #[default]
    Unordered,
    Ordered,
}

/// Checks a webhook URL: absolute, `https://` (or `http://` when the server allows it), with a host.
pub fn validate_url(url: &str, allow_http: bool) -> Result<String, Error> {
    let field = "url";
    if url.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if url.len() > MAX_URL_CHARS {
        return Err(Error::invalid(
            field,
            format!("is longer than {MAX_URL_CHARS} characters"),
        ));
    }
    // Before parsing: the parser drops tabs and line breaks silently, so the URL stored would not be the
    // one given.
    text::refuse_control_characters(field, url)?;
    let parsed = url::Url::parse(url).map_err(|e| {
        Error::invalid(
            field,
            format!("{} is not an absolute URL ({e})", quoted(url)),
        )
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(Error::invalid(
            field,
            "must use https:// (http:// is allowed only when the server runs with --allow-http)",
        )),
        other => {
            return Err(Error::invalid(
                field,
                format!("scheme {} is not allowed; use https://", quoted(other)),
            ))
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, "must have a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid(field, "must not contain credentials"));
    }
    if parsed.fragment().is_some() {
        return Err(Error::invalid(field, "must not contain a #fragment"));
    }
    Ok(parsed.to_string())
}

pub fn validate_description(description: &str) -> Result<String, Error> {
    text::refuse_control_characters("description", description)?;
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(Error::invalid(
            "description",
            format!("is {chars} characters long; at most {MAX_DESCRIPTION_CHARS} are allowed"),
        ));
    }
    Ok(description.to_owned())
}

/// Checks a subscription list: non-empty, each entry an event type or `category.*`, no duplicates.
pub fn validate_events(events: &[String]) -> Result<Vec<String>, Error> {
    let field = "events";
    if events.is_empty() {
        return Err(Error::invalid(
            field,
            "must name at least one event type or `category.*`",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (index, event) in events.iter().enumerate() {
        Subscription::parse(event)
            .map_err(|why| Error::invalid(field, format!("entry {index}: {why}")))?;
        if !seen.insert(event.as_str()) {
            return Err(Error::invalid(
                field,
                format!("entry {index}: {} is listed twice", quoted(event)),
            ));
        }
    }
    Ok(events.to_vec())
}

/// 0 means the default; anything else must be within bounds.
pub fn validate_rate_limit(rate: u32) -> Result<u32, Error> {
    match rate {
        0 => Ok(DEFAULT_RATE_LIMIT_PER_SECOND),
        n if n > MAX_RATE_LIMIT_PER_SECOND => Err(Error::invalid(
            "rate_limit_per_second",
            format!("{n} is above the maximum of {MAX_RATE_LIMIT_PER_SECOND}"),
        )),
        n => Ok(n),
    }
}

/// A rotation's grace period: as asked, [`DEFAULT_GRACE_PERIOD_SECONDS`] when not, at most seven days.
pub fn validate_grace_period(seconds: Option<u32>) -> Result<u32, Error> {
    let seconds = seconds.unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS);
    if seconds > MAX_GRACE_PERIOD_SECONDS {
        return Err(Error::invalid(
            "grace_period_seconds",
            format!("{seconds} is more than 7 days ({MAX_GRACE_PERIOD_SECONDS})"),
        ));
    }
    Ok(seconds)
}

/// Stored form of a subscription list.
pub fn encode_events(events: &[String]) -> String {
    serde_json::to_string(events).unwrap_or_else(|_| "[]".into())
}

/// Reads a stored subscription list; a corrupt row subscribes to nothing rather than failing the caller.
pub fn decode_events(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// Whether a webhook with the stored subscriptions `stored_events` receives events of type `event_type`.
pub fn subscribes(stored_events: &str, event_type: &str) -> bool {
    decode_events(stored_events)
        .iter()
        .filter_map(|s| Subscription::parse(s).ok())
        .any(|s| s.matches(event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(validate_url("https://example.com/hook", false).is_ok());
        assert!(validate_url("http://example.com/hook", false).is_err());
        assert!(validate_url("http://example.com/hook", true).is_ok());
        assert!(validate_url("ftp://example.com", true).is_err());
        assert!(validate_url("/relative", false).is_err());
        assert!(validate_url("https://user:pw@example.com", false).is_err());
        assert!(validate_url("", false).is_err());
    }

    #[test]
    fn events() {
        let ok = vec!["interview.*".to_string(), "offer.accepted".to_string()];
        assert!(validate_events(&ok).is_ok());
        assert!(validate_events(&[]).is_err());
        assert!(validate_events(&["offer.accepted".into(), "offer.accepted".into()]).is_err());
        assert!(subscribes(&encode_events(&ok), "interview.no_show"));
        assert!(!subscribes(&encode_events(&ok), "offer.declined"));
    }
}
