//! What an `UpdateWebhook` changes: the fields its mask names, each validated before the row is touched (so a
//! bad field changes nothing), then applied to the row in the update's transaction, headers sealed.

use kit_webhooks::proto;

use super::convert;
use crate::{
    core::{headers, sealing::Keyring, webhook, Error},
    store::entity,
};

/// The fields `UpdateWebhook`'s mask may name.
const UPDATABLE: &str = "url, description, events, rate_limit_per_second, headers, ordering";

/// What an `UpdateWebhook` changes, validated: the fields its mask names, as the row stores them.
#[derive(Default)]
pub struct WebhookEdit {
    url: Option<String>,
    description: Option<String>,
    events: Option<String>,
    rate: Option<u32>,
    /// In clear, sealed by [`WebhookEdit::apply`]; empty for none.
    headers: Option<String>,
    ordering: Option<webhook::Ordering>,
}

impl WebhookEdit {
    pub fn parse(req: &proto::UpdateWebhookRequest, allow_http: bool) -> Result<Self, Error> {
        let paths = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let paths = paths.unwrap_or_default();
        if paths.is_empty() {
            let message = format!("must name the fields to change: {UPDATABLE}");
            return Err(Error::invalid("update_mask", message));
        }
        let mut edit = WebhookEdit::default();
        for path in paths {
            match path.as_str() {
                "url" => edit.url = Some(webhook::validate_url(&req.url, allow_http)?),
                "description" => {
                    edit.description = Some(webhook::validate_description(&req.description)?)
                }
                "events" => {
                    let events = webhook::validate_events(&req.events)?;
                    edit.events = Some(webhook::encode_events(&events));
                }
                "rate_limit_per_second" => {
                    edit.rate = Some(webhook::validate_rate_limit(req.rate_limit_per_second)?)
                }
                "headers" => {
                    let headers = headers::validate("headers", &req.headers)?;
                    edit.headers = Some(headers::encode(&headers));
                }
                "ordering" => edit.ordering = Some(convert::ordering("ordering", req.ordering)?),
                other => {
                    let other = kit_webhooks::text::quoted(other);
                    let message = format!("unknown field {other}; updatable: {UPDATABLE}");
                    return Err(Error::invalid("update_mask", message));
                }
            }
        }
        Ok(edit)
    }

    pub fn apply(self, row: &mut entity::webhook::Model, ring: &Keyring) {
        if let Some(url) = self.url {
            row.url = url;
        }
        if let Some(description) = self.description {
            row.description = description;
        }
        if let Some(events) = self.events {
            row.events = events;
        }
        if let Some(rate) = self.rate {
            row.rate_limit_per_second = rate as i32;
        }
        if let Some(ordering) = self.ordering {
            row.ordering = ordering;
        }
        if let Some(text) = self.headers {
            row.headers = match text.is_empty() {
                true => text,
                false => ring.seal(&row.id, &text),
            };
        }
    }
}
