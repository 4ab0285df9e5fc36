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
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
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
        Error::NotFound(format!("{kind} `{id}` not found"))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Storage(db) => {
                tracing::error!(error = %db, "storage error");
                return Status::new(Code::Unavailable, "storage error; try again");
            }
        };
        Status::new(code, error.to_string())
    }
}
