//! Resource ids: a type prefix and a ULID (`wh_01J…`), so ids sort in creation order and a page cursor is just
//! the last id seen.

use std::sync::Mutex;

use kit_webhooks::text::quoted;

use super::Error;

/// The kinds of id, by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Event,
    Delivery,
    Attempt,
    ApiKey,
    Lease,
    /// A daemon's delivery stream: the owner of the leases handed to it.
    Stream,
    /// A server process, as other replicas know it (`crate::replicas`).
    Replica,
    /// An entry of the audit log.
    AuditEntry,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Webhook => "wh_",
            Kind::Event => "evt_",
            Kind::Delivery => "dlv_",
            Kind::Attempt => "att_",
            Kind::ApiKey => "key_",
            Kind::Lease => "lse_",
            Kind::Stream => "dst_",
            Kind::Replica => "srv_",
            Kind::AuditEntry => "aud_",
        }
    }

    pub const fn noun(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Event => "event",
            Kind::Delivery => "delivery",
            Kind::Attempt => "attempt",
            Kind::ApiKey => "API key",
            Kind::Lease => "lease",
            Kind::Stream => "delivery stream",
            Kind::Replica => "server",
            Kind::AuditEntry => "audit entry",
        }
    }
}

/// One generator for the process, so ids made in the same millisecond still increase.
static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A new id of `kind`.
pub fn new(kind: Kind) -> String {
    let ulid = {
        let mut guard = kit_webhooks::sync::lock(&GENERATOR);
        let generator = guard.get_or_insert_with(ulid::Generator::new);
        // Overflow needs 2^80 ids in one millisecond; fall back to a fresh random ULID rather than fail.
        generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
    };
    format!("{}{}", kind.prefix(), ulid)
}

/// When `id`, an id of `kind` that [`new`] made, was issued (Unix milliseconds): the time its ULID carries.
/// A row stamped with it and keyed by the id falls inside every time window read as an id range
/// ([`floor`]); a second reading of the clock could be a millisecond later.
pub fn issued_ms(kind: Kind, id: &str) -> Option<i64> {
    let ulid: ulid::Ulid = id.strip_prefix(kind.prefix())?.parse().ok()?;
    i64::try_from(ulid.timestamp_ms()).ok()
}

/// An id of `kind` as if issued at `ms` (Unix milliseconds), for history made up after the fact (the bench's
/// backlog).
pub fn issued_at(kind: Kind, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    format!(
        "{}{}",
        kind.prefix(),
        ulid::Ulid::from_parts(ms, rand::random())
    )
}

/// The smallest id of `kind` issued at `ms` (Unix milliseconds): ids issued before it sort below it.
pub fn floor(kind: Kind, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    format!("{}{}", kind.prefix(), ulid::Ulid::from_parts(ms, 0))
}

/// Checks that `value`, given in request field `field`, is a well-formed id of `kind`.
pub fn parse<'a>(field: &'static str, kind: Kind, value: &'a str) -> Result<&'a str, Error> {
    if value.is_empty() {
        return Err(Error::invalid(
            field,
            format!("is required (a {} id)", kind.noun()),
        ));
    }
    // The canonical spelling only: a ULID's text can encode more than its 128 bits (`ZZZ…`), and lower case
    // decodes too, but neither names anything this server made.
    let well_formed = value.strip_prefix(kind.prefix()).is_some_and(|rest| {
        ulid::Ulid::from_string(rest).is_ok_and(|ulid| ulid.to_string() == rest)
    });
    if well_formed {
        Ok(value)
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{} is not a {} id (expected `{}…`)",
                quoted(value),
                kind.noun(),
                kind.prefix()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_parse() {
        let a = new(Kind::Webhook);
        let b = new(Kind::Webhook);
        assert!(a < b);
        assert!(parse("id", Kind::Webhook, &a).is_ok());
        assert!(parse("id", Kind::Event, &a).is_err());
        assert!(parse("id", Kind::Webhook, "wh_nope").is_err());
        assert!(parse("id", Kind::Webhook, "").is_err());
        // Past 128 bits, or not in the canonical upper case: never an id of this server.
        assert!(parse("id", Kind::Webhook, "wh_ZZZZZZZZZZZZZZZZZZZZZZZZZZ").is_err());
        assert!(parse("id", Kind::Webhook, &a.to_lowercase()).is_err());
        let now = crate::core::time::now_ms();
        assert!(floor(Kind::Webhook, now - 1000) < new(Kind::Webhook));
        assert!(floor(Kind::Webhook, now + 1000) > new(Kind::Webhook));
    }

    #[test]
    fn an_id_falls_in_the_window_from_its_own_time() {
        let id = new(Kind::AuditEntry);
        let ms = issued_ms(Kind::AuditEntry, &id).expect("its time");
        assert!(floor(Kind::AuditEntry, ms) <= id && id < floor(Kind::AuditEntry, ms + 1));
        assert_eq!(issued_ms(Kind::Webhook, &id), None, "another kind's prefix");
        assert_eq!(issued_ms(Kind::AuditEntry, "aud_nope"), None);
    }
}
