//! The Rust client of Kit Webhooks: typed calls over the gRPC contract, for Kit's backend services and for
//! the `kit-webhooks` CLI.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kit_webhooks_client::Error> {
//! use kit_webhooks_client::{Client, NewWebhook};
//!
//! let admin = Client::connect("http://127.0.0.1:7400", "kit_…admin key…").await?;
//! let (webhook, secret) = admin
//!     .create_webhook(NewWebhook::new("https://example.com/hooks", ["application.*", "offer.accepted"]))
//!     .await?;
//! println!("{} signs with {secret}", webhook.id);
//!
//! let publisher = Client::connect("http://127.0.0.1:7400", "kit_…publisher key…").await?;
//! let published = publisher
//!     .publish_event("default", "application.submitted", r#"{"application_id": 7}"#, None)
//!     .await?;
//! println!("queued {} deliveries", published.deliveries_queued);
//! # Ok(()) }
//! ```
//!
//! Receivers verify signatures with [`verify`], re-exported from the shared crate:
//!
//! ```
//! use kit_webhooks_client::signature::{signature_header, verify, unix_now, DEFAULT_TOLERANCE_SECONDS};
//!
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let body = br#"{"id":"evt_1","type":"test.ping"}"#;
//! let now = unix_now();
//! let header = signature_header(&[secret.to_string()], "evt_1", now, body).unwrap();
//! assert!(verify(secret, "evt_1", &now.to_string(), &header, body, now, DEFAULT_TOLERANCE_SECONDS).is_ok());
//! assert!(verify(secret, "evt_1", &now.to_string(), &header, b"tampered", now, DEFAULT_TOLERANCE_SECONDS).is_err());
//! ```

mod account;
mod client;
mod error;
mod webhook;

pub use account::AuditQuery;
pub use client::{Client, DeliveryQuery};
pub use error::Error;
pub use kit_webhooks::{
    catalogue,
    proto::{
        webhook_change::Change, ApiKey, Attempt, AuditEntry, Delivery, DeliveryStatus, Event,
        EventType, Ordering, PublishEventResponse, Webhook, WebhookChange, WebhookStatus,
    },
    signature::{self, verify},
};
pub use webhook::{NewWebhook, WebhookUpdate};
