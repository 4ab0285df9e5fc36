//! SeaORM entities, one per table of `migrations/`. Times are Unix milliseconds (see the migrations crate).

pub mod api_key;
pub mod attempt;
pub mod audit_entry;
pub mod delivery;
pub mod event;
pub mod webhook;
