//! The webhook a client creates ([`NewWebhook`]) and the fields of one it changes ([`WebhookUpdate`]), as
//! plain values: `Client::create_webhook` and `Client::update_webhook` turn them into requests.

use kit_webhooks::proto;

/// A webhook to create.
#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    pub url: String,
    pub description: String,
    /// Event types and/or `category.*`.
    pub events: Vec<String>,
    /// Requests per second at most; `None` for the server's default.
    pub rate_limit_per_second: Option<u32>,
    /// Headers sent with every request (name, value).
    pub headers: Vec<(String, String)>,
    /// `Ordered`: one delivery at a time, in publish order. Unspecified is unordered.
    pub ordering: proto::Ordering,
}

impl NewWebhook {
    pub fn new<I, S>(url: impl Into<String>, events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NewWebhook {
            url: url.into(),
            events: events.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }
}

/// The fields of a webhook to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub rate_limit_per_second: Option<u32>,
    /// The whole new set of headers (an empty one removes them all).
    pub headers: Option<Vec<(String, String)>>,
    pub ordering: Option<proto::Ordering>,
}
