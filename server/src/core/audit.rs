//! The audit log's domain: what an admin change records. Each change's store function writes its
//! [`AuditEntry`] in the change's own transaction (`store::audit`), so the log holds an entry for a change
//! exactly when the change happened.
//!
//! An entry names who (the API key's id), what (an [`Action`] on a target id) and the changed fields with
//! their new values. A secret is never a value: a rotation records only that the secret changed.

use serde_json::{Map, Value};

/// Who made a change: the API key's id (`cli` for the server's own command line) and its account.
#[derive(Debug, Clone)]
pub struct Actor {
    pub key_id: String,
    pub account_id: String,
}

impl Actor {
    /// The server's command line, acting on `account_id`.
    pub fn cli(account_id: &str) -> Actor {
        Actor {
            key_id: "cli".into(),
            account_id: account_id.to_owned(),
        }
    }
}

/// What an admin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    WebhookCreate,
    WebhookUpdate,
    WebhookPause,
    WebhookResume,
    WebhookDelete,
    WebhookRotateSecret,
    WebhookRevealSecret,
    DeliveryRetry,
    DeliveryReplay,
    ApiKeyCreate,
    ApiKeyRevoke,
}

impl Action {
    /// The stored and shown name.
    pub const fn name(self) -> &'static str {
        match self {
            Action::WebhookCreate => "webhook.create",
            Action::WebhookUpdate => "webhook.update",
            Action::WebhookPause => "webhook.pause",
            Action::WebhookResume => "webhook.resume",
            Action::WebhookDelete => "webhook.delete",
            Action::WebhookRotateSecret => "webhook.rotate_secret",
            Action::WebhookRevealSecret => "webhook.reveal_secret",
            Action::DeliveryRetry => "delivery.retry",
            Action::DeliveryReplay => "delivery.replay",
            Action::ApiKeyCreate => "api_key.create",
            Action::ApiKeyRevoke => "api_key.revoke",
        }
    }
}

/// One admin change, as recorded.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: Action,
    pub target_id: String,
    /// The changed fields and their new values (a JSON object).
    pub changes: Map<String, Value>,
}

impl AuditEntry {
    pub fn new(actor: &Actor, action: Action, target_id: &str) -> AuditEntry {
        AuditEntry {
            actor: actor.clone(),
            action,
            target_id: target_id.to_owned(),
            changes: Map::new(),
        }
    }

    /// This entry with `field` set to `value`.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> AuditEntry {
        self.changes.insert(field.to_owned(), value.into());
        self
    }
}
