//! The error every `Database` call returns; it crosses the wire as a gRPC status.

use std::fmt;

/// What went wrong, coarse enough to map onto gRPC status codes both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting is missing or malformed (gRPC `InvalidArgument`).
    InvalidConfig,
    /// A request argument is malformed (gRPC `InvalidArgument` too; the
    /// message tells the two apart for people, not for code).
    InvalidArgument,
    /// The store could not be reached or answered with a transport error
    /// (gRPC `Unavailable`).
    Unavailable,
    /// A deadline passed (gRPC `DeadlineExceeded`).
    Timeout,
    /// The call was cancelled (gRPC `Cancelled`).
    Cancelled,
    /// The operation is not offered, e.g. watching an env backend
    /// (gRPC `Unimplemented`).
    Unimplemented,
    /// A call arrived before `configure` (gRPC `FailedPrecondition`).
    NotConfigured,
    /// Access denied by the store (gRPC `PermissionDenied`/`Unauthenticated`).
    PermissionDenied,
    /// The store holds something confd cannot use as text: a key or value
    /// that is not UTF-8 (gRPC `DataLoss`). See [`crate::text`].
    InvalidData,
    /// The plugin process died or broke the protocol (host side only).
    PluginFailed,
    /// Anything else (gRPC `Internal`/`Unknown`).
    Internal,
}

impl ErrorKind {
    /// Short lowercase description used in `Display`.
    pub fn description(self) -> &'static str {
        match self {
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Unavailable => "store unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Unimplemented => "not implemented",
            ErrorKind::NotConfigured => "not configured",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::InvalidData => "invalid data",
            ErrorKind::PluginFailed => "plugin failed",
            ErrorKind::Internal => "internal error",
        }
    }

    /// The gRPC status code this kind travels as.
    pub fn code(self) -> tonic::Code {
        match self {
            ErrorKind::InvalidConfig | ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
            ErrorKind::Cancelled => tonic::Code::Cancelled,
            ErrorKind::Unimplemented => tonic::Code::Unimplemented,
            ErrorKind::NotConfigured => tonic::Code::FailedPrecondition,
            ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorKind::InvalidData => tonic::Code::DataLoss,
            ErrorKind::PluginFailed => tonic::Code::Aborted,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// The kind a gRPC status code maps back to.
    pub fn from_code(code: tonic::Code) -> ErrorKind {
        match code {
            tonic::Code::InvalidArgument => ErrorKind::InvalidArgument,
            tonic::Code::Unavailable => ErrorKind::Unavailable,
            tonic::Code::DeadlineExceeded => ErrorKind::Timeout,
            tonic::Code::Cancelled => ErrorKind::Cancelled,
            tonic::Code::Unimplemented => ErrorKind::Unimplemented,
            tonic::Code::FailedPrecondition => ErrorKind::NotConfigured,
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                ErrorKind::PermissionDenied
            }
            tonic::Code::DataLoss => ErrorKind::InvalidData,
            tonic::Code::Aborted => ErrorKind::PluginFailed,
            _ => ErrorKind::Internal,
        }
    }
}

/// A database error: a kind plus a message meant for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid_config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidConfig, message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, message)
    }
    pub fn unimplemented(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unimplemented, message)
    }
    pub fn not_configured(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotConfigured, message)
    }
    pub fn invalid_data(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidData, message)
    }
    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.kind.description())
        } else {
            write!(f, "{}: {}", self.kind.description(), self.message)
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> tonic::Status {
        tonic::Status::new(err.kind.code(), err.message)
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Error {
        Error::new(
            ErrorKind::from_code(status.code()),
            status.message().to_string(),
        )
    }
}

/// `err` followed by each of its sources, `: `-joined, skipping a source whose text the line
/// already holds: HTTP and gRPC client errors often say only "error sending request" on top
/// and keep the cause (refused, TLS, DNS) in their sources.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_joins_sources_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let refused = E("connection refused", None);
        let connect = E(
            "tcp connect error: connection refused",
            Some(Box::new(refused)),
        );
        let top = E("error sending request", Some(Box::new(connect)));
        assert_eq!(
            error_chain(&top),
            "error sending request: tcp connect error: connection refused"
        );
    }

    #[test]
    fn kinds_round_trip_through_grpc_codes() {
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Cancelled,
            ErrorKind::Unimplemented,
            ErrorKind::NotConfigured,
            ErrorKind::PermissionDenied,
            ErrorKind::InvalidData,
            ErrorKind::PluginFailed,
            ErrorKind::Internal,
        ] {
            let status: tonic::Status = Error::new(kind, "boom").into();
            let back: Error = status.into();
            assert_eq!(back.kind(), kind);
            assert_eq!(back.message(), "boom");
        }
    }

    #[test]
    fn config_errors_travel_as_invalid_argument() {
        let status: tonic::Status = Error::invalid_config("nodes: empty").into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn display_names_kind_and_message() {
        let err = Error::unavailable("dial 127.0.0.1:2379: connection refused");
        assert_eq!(
            err.to_string(),
            "store unavailable: dial 127.0.0.1:2379: connection refused"
        );
    }
}
