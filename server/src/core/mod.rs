//! The core domain: the rules of Kit Webhooks, independent of gRPC and of the database.
//!
//! Services in `api/` validate requests with these rules and turn [`Error`] into gRPC statuses; `store/` only
//! reads and writes rows.

pub mod error;
pub mod event;
pub mod id;
pub mod page;
pub mod policy;
pub mod role;
pub mod secret;
pub mod text;
pub mod time;
pub mod webhook;

pub use error::{Error, Result};
pub use role::Role;
