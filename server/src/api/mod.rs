//! The gRPC API layer: one service per file, each a thin shell that authorises the caller, validates the
//! request with `core` rules, calls `store`, and converts rows to messages (`convert`).

pub mod admission;
pub mod audit;
pub mod auth;
pub mod calls;
pub mod console;
pub mod convert;
pub mod deliveries;
pub mod events;
pub mod keys;
pub mod watch;
pub mod web;
pub mod webhook_edit;
pub mod webhooks;
