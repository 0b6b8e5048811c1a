//! One error type for every shim interaction; ttrpc status codes keep their meaning.

use containerd_shim_protos::ttrpc;

/// What kind of failure a shim call met, from the ttrpc status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Unimplemented,
    DeadlineExceeded,
    /// The shim is gone or unreachable (connection refused or closed).
    Unavailable,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shim answered with a ttrpc status.
    #[error("shim {step}: {message}")]
    Status {
        step: &'static str,
        kind: ErrorKind,
        message: String,
    },
    /// The call never got an answer (transport, encoding, connection).
    #[error("shim {step}: {source}")]
    Transport {
        step: &'static str,
        #[source]
        source: ttrpc::Error,
    },
    /// No connection to the shim's socket (it is gone, or was never there).
    #[error("shim connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// Running the shim binary's `start` or `delete` action failed.
    #[error("{step}: {message}")]
    Launch { step: &'static str, message: String },
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {message}")]
    Encode { step: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Status { kind, .. } => *kind,
            Error::Transport { source, .. } => match source {
                ttrpc::Error::Socket(_)
                | ttrpc::Error::LocalClosed
                | ttrpc::Error::RemoteClosed => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            },
            Error::Connect { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Other,
            },
            Error::Launch { .. } | Error::Io { .. } | Error::Encode { .. } => ErrorKind::Other,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    pub(crate) fn rpc(step: &'static str, e: ttrpc::Error) -> Error {
        use ttrpc::Code;
        match e {
            ttrpc::Error::RpcStatus(s) => {
                let kind = match s.code() {
                    Code::NOT_FOUND => ErrorKind::NotFound,
                    Code::ALREADY_EXISTS => ErrorKind::AlreadyExists,
                    Code::FAILED_PRECONDITION => ErrorKind::FailedPrecondition,
                    Code::INVALID_ARGUMENT => ErrorKind::InvalidArgument,
                    Code::UNIMPLEMENTED => ErrorKind::Unimplemented,
                    Code::DEADLINE_EXCEEDED => ErrorKind::DeadlineExceeded,
                    Code::UNAVAILABLE => ErrorKind::Unavailable,
                    _ => ErrorKind::Other,
                };
                Error::Status {
                    step,
                    kind,
                    message: s.message().to_string(),
                }
            }
            other => Error::Transport {
                step,
                source: other,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_kinds() {
        let mut s = ttrpc::proto::Status::new();
        s.set_code(ttrpc::Code::NOT_FOUND);
        s.set_message("container x not found".into());
        let e = Error::rpc("state", ttrpc::Error::RpcStatus(s));
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "shim state: container x not found");
        let e = Error::rpc("kill", ttrpc::Error::RemoteClosed);
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }
}
