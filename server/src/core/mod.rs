//! The core domain: the rules of Kit Webhooks, independent of gRPC and of the database.
//!
//! Services in `api/` validate requests with these rules and turn [`Error`] into gRPC statuses; `store/` only
//! reads and writes rows. The states and roles derive their stored form (sea-orm's `DeriveActiveEnum`, a
//! lowercase name), so that their spelling is written once, here, and rows carry them typed.

pub mod audit;
pub mod error;
pub mod event;
pub mod headers;
pub mod id;
pub mod page;
pub mod payload;
pub mod policy;
pub mod role;
pub mod sealing;
pub mod secret;
pub mod text;
pub mod time;
pub mod webhook;

pub use error::{Error, Result};
pub use role::Role;

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::{event::DeliveryStatus, webhook::Status, Role};

    /// Rows read as JSON (`store::sql::json_rows`) decode these with serde: its spelling must be the stored
    /// one.
    fn reads_back_as_stored<E>()
    where
        E: ActiveEnum<Value = String>
            + Iterable
            + serde::de::DeserializeOwned
            + PartialEq
            + std::fmt::Debug,
    {
        for variant in E::iter() {
            let stored = variant.to_value();
            assert_eq!(stored, stored.to_lowercase());
            let read: E =
                serde_json::from_value(serde_json::Value::String(stored)).expect("decodes");
            assert_eq!(read, variant);
        }
    }

    #[test]
    fn stored_names_read_back() {
        reads_back_as_stored::<DeliveryStatus>();
        reads_back_as_stored::<Status>();
        reads_back_as_stored::<Role>();
    }
}
