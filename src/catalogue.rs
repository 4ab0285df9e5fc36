//! The event catalogue: the event types of Kit in 6 categories, plus `test.ping`.
//!
//! The catalogue is fixed by the product (Kit's webhooks help page). That page says "23 events", but its
//! tables name 22 (5 + 5 + 5 + 2 + 1 + 4); this list is the tables, entry for entry.
//!
//! Beside them, the `operational` category: events Kit Webhooks itself sends an account about its webhooks
//! (one was disabled, or enabled again). Subscribable like any other, never published.
//!
//! Subscriptions name event types or whole categories (`interview.*`, `operational.*`); [`Subscription`]
//! parses one and [`Subscription::matches`] is the single rule the server uses to fan an event out.

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    pub name: &'static str,
    pub category: &'static str,
    pub description: &'static str,
}

/// The event sent by "send test ping": never published, never subscribable.
pub const TEST_PING: &str = "test.ping";

const fn event(name: &'static str, category: &'static str, description: &'static str) -> EventType {
    EventType {
        name,
        category,
        description,
    }
}

/// Every publishable event type, grouped by category.
pub const EVENT_TYPES: &[EventType] = &[
    event(
        "application.submitted",
        "application",
        "A candidate submitted an application.",
    ),
    event(
        "application.rejected",
        "application",
        "An application was rejected.",
    ),
    event(
        "application.advanced",
        "application",
        "An application advanced to the next stage.",
    ),
    event(
        "application.withdrawn",
        "application",
        "The candidate withdrew an application.",
    ),
    event(
        "application.offer_extended",
        "application",
        "An offer was extended on an application.",
    ),
    event("offer.accepted", "offer", "An admin accepted an offer."),
    event("offer.declined", "offer", "An admin declined an offer."),
    event(
        "offer.candidate_accepted",
        "offer",
        "The candidate accepted an offer.",
    ),
    event(
        "offer.candidate_declined",
        "offer",
        "The candidate declined an offer.",
    ),
    event("offer.revised", "offer", "An offer was revised."),
    event(
        "interview.scheduled",
        "interview",
        "An interview was scheduled.",
    ),
    event(
        "interview.confirmed",
        "interview",
        "An interview was confirmed.",
    ),
    event(
        "interview.completed",
        "interview",
        "An interview took place.",
    ),
    event(
        "interview.cancelled",
        "interview",
        "An interview was cancelled.",
    ),
    event(
        "interview.no_show",
        "interview",
        "The candidate did not show up for an interview.",
    ),
    event(
        "code_assignment.submitted",
        "code_assignment",
        "A candidate submitted a code assignment.",
    ),
    event(
        "code_assignment.auto_submitted",
        "code_assignment",
        "A code assignment was submitted automatically at its deadline.",
    ),
    event(
        "review.submitted",
        "review",
        "A reviewer submitted a review.",
    ),
    event(
        "job_posting.published",
        "job_posting",
        "A job posting went live.",
    ),
    event(
        "job_posting.paused",
        "job_posting",
        "A job posting was paused.",
    ),
    event(
        "job_posting.closed",
        "job_posting",
        "A job posting was closed.",
    ),
    event(
        "job_posting.reopened",
        "job_posting",
        "A job posting was reopened.",
    ),
];

/// A webhook was disabled: automatically, after failing for too long or answering `410 Gone`.
pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
/// A disabled webhook was enabled again (resumed by an admin).
pub const WEBHOOK_ENABLED: &str = "webhook.enabled";

/// The events Kit Webhooks sends about an account's own webhooks, to the account's other webhooks that
/// subscribe to them.
pub const OPERATIONAL_TYPES: &[EventType] = &[
    event(
        WEBHOOK_DISABLED,
        "operational",
        "One of the account's webhooks was disabled.",
    ),
    event(
        WEBHOOK_ENABLED,
        "operational",
        "One of the account's disabled webhooks was enabled again.",
    ),
];

/// The catalogue entry of `test.ping`.
pub const TEST_PING_TYPE: EventType = event(
    TEST_PING,
    "test",
    "Sent only by \"send test ping\" to check an endpoint; not subscribable.",
);

/// The publishable event type called `name`, if there is one (`test.ping` is not).
pub fn event_type(name: &str) -> Option<&'static EventType> {
    EVENT_TYPES.iter().find(|t| t.name == name)
}

/// The subscribable event type called `name`: a publishable one or an operational one.
pub fn subscribable(name: &str) -> Option<&'static EventType> {
    EVENT_TYPES
        .iter()
        .chain(OPERATIONAL_TYPES)
        .find(|t| t.name == name)
}

/// The 6 categories of publishable events, in the catalogue's order, each once.
pub fn categories() -> impl Iterator<Item = &'static str> {
    EVENT_TYPES
        .iter()
        .enumerate()
        .filter(|(i, t)| *i == 0 || EVENT_TYPES[i - 1].category != t.category)
        .map(|(_, t)| t.category)
}

/// Whether `name` is one of the 6 categories, or `operational`.
pub fn is_category(name: &str) -> bool {
    EVENT_TYPES
        .iter()
        .chain(OPERATIONAL_TYPES)
        .any(|t| t.category == name)
}

/// One entry of a webhook's `events`: an event type, or every event of a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription<'a> {
    Event(&'a str),
    Category(&'a str),
}

impl<'a> Subscription<'a> {
    /// Parses one subscription, or says in words why it is not one.
    pub fn parse(text: &'a str) -> Result<Self, String> {
        if text == TEST_PING {
            return Err(
                "`test.ping` is sent by test pings only and cannot be subscribed to".into(),
            );
        }
        if text == "*" {
            return Err("`*` is not allowed: subscribe to event types or `category.*`".into());
        }
        if let Some(category) = text.strip_suffix(".*") {
            return if is_category(category) {
                Ok(Subscription::Category(category))
            } else {
                Err(format!(
                    "unknown category {}",
                    crate::text::quoted(category)
                ))
            };
        }
        if subscribable(text).is_some() {
            Ok(Subscription::Event(text))
        } else {
            Err(format!("unknown event type {}", crate::text::quoted(text)))
        }
    }

    /// Whether this subscription covers the event type `name`.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Subscription::Event(event) => *event == name,
            // By the type's category, not its name: `operational` holds `webhook.*`.
            Subscription::Category(category) => {
                subscribable(name).is_some_and(|t| t.category == *category)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_the_22_listed_events_in_6_categories() {
        assert_eq!(EVENT_TYPES.len(), 22);
        let mut categories: Vec<_> = EVENT_TYPES.iter().map(|t| t.category).collect();
        categories.dedup();
        assert_eq!(categories.len(), 6);
        assert_eq!(super::categories().collect::<Vec<_>>(), categories);
    }

    #[test]
    fn subscriptions_parse_and_match() {
        let category = Subscription::parse("interview.*").unwrap();
        assert!(category.matches("interview.no_show"));
        assert!(!category.matches("offer.accepted"));
        let event = Subscription::parse("offer.accepted").unwrap();
        assert!(event.matches("offer.accepted"));
        assert!(!event.matches("offer.candidate_accepted"));
        // `offer.*` must not cover a longer category that merely starts with the same letters.
        assert!(!Subscription::Category("offer").matches("offerx.accepted"));
        assert!(Subscription::parse("test.ping").is_err());
        assert!(Subscription::parse("*").is_err());
        assert!(Subscription::parse("nope.*").is_err());
        assert!(Subscription::parse("interview.eaten").is_err());
        let operational = Subscription::parse("operational.*").unwrap();
        assert!(operational.matches(WEBHOOK_DISABLED));
        assert!(operational.matches(WEBHOOK_ENABLED));
        assert!(!operational.matches("offer.accepted"));
        assert!(Subscription::parse("webhook.disabled").is_ok());
        assert!(Subscription::parse("webhook.*").is_err());
    }
}
