//! The one error type of the server, and how each kind maps to a gRPC status code.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; `field` names the offending request field.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    /// The thing does not exist, or belongs to another account (the two are never told apart).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the resource is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// What the request would create exists already, differently (an idempotency key used for another event).
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A sealed secret did not open (`super::sealing`); details go to the log, not to the caller.
    #[error("{0}")]
    Sealing(String),
    /// The database failed; details go to the log, not to the caller.
    #[error("storage error: {0}")]
    Storage(#[from] sea_orm::DbErr),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        Error::NotFound(format!(
            "{kind} {} not found",
            kit_webhooks::text::quoted(id)
        ))
    }

    /// This error again, for each of several requests that one failure answers (the writes of a cycle, the
    /// reports of a call). `Error` is not `Clone` because a database error may hold its driver's error; the
    /// copy of one keeps its message.
    pub fn copied(&self) -> Self {
        match self {
            Error::InvalidArgument { field, message } => Error::InvalidArgument {
                field,
                message: message.clone(),
            },
            Error::NotFound(message) => Error::NotFound(message.clone()),
            Error::FailedPrecondition(message) => Error::FailedPrecondition(message.clone()),
            Error::AlreadyExists(message) => Error::AlreadyExists(message.clone()),
            Error::Unauthenticated(message) => Error::Unauthenticated(message.clone()),
            Error::PermissionDenied(message) => Error::PermissionDenied(message.clone()),
            Error::Sealing(message) => Error::Sealing(message.clone()),
            Error::Storage(db) => Error::Storage(sea_orm::DbErr::Custom(match db {
                // Its text as it is: `Custom`'s message is prefixed each time it is displayed.
                sea_orm::DbErr::Custom(text) => text.clone(),
                other => other.to_string(),
            })),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Sealing(message) => {
                tracing::error!(error = %message, "a sealed secret did not open");
                return Status::new(
                    Code::Internal,
                    "the webhook's signing secret cannot be read",
                );
            }
            Error::Storage(db) => {
                tracing::error!(error = %db, "storage error");
                return Status::new(Code::Unavailable, "storage error; try again");
            }
        };
        Status::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_keeps_the_kind_and_the_message() {
        let storage = Error::Storage(sea_orm::DbErr::Custom("disk full".into()));
        let copy = storage.copied();
        assert!(matches!(copy, Error::Storage(_)));
        assert_eq!(copy.to_string(), storage.to_string());
        let invalid = Error::invalid("url", "must be https");
        assert_eq!(
            Status::from(invalid.copied()).message(),
            "url: must be https"
        );
        assert_eq!(
            Status::from(Error::not_found("webhook", "wh_1").copied()).code(),
            Code::NotFound
        );
    }
}
