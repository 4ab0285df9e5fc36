//! The client's error: the gRPC status code and message the server gave, or why the connection failed.

/// An error from a call: `code` says what kind (`InvalidArgument`, `NotFound`, …) and `message` names the
/// field and the problem, as the server put it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code_name(*code))]
pub struct Error {
    pub code: tonic::Code,
    pub message: String,
}

impl Error {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::new(status.code(), status.message())
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(err: tonic::transport::Error) -> Self {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::new(
            tonic::Code::Unavailable,
            format!("cannot reach the server: {text}"),
        )
    }
}

/// The canonical gRPC name of a code (`INVALID_ARGUMENT`), as other tools print it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
