//! Errors of the CRI server and the gRPC status each one becomes (what kubelet expects).

use std::path::PathBuf;

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{step}: {source}")]
    Image {
        step: String,
        #[source]
        source: kos_image::Error,
    },
    #[error("{step}: {source}")]
    Cni {
        step: String,
        #[source]
        source: kos_cni::Error,
    },
    #[error("{step}: {source}")]
    Network {
        step: String,
        #[source]
        source: kos_network::Error,
    },
    #[error("{step}: {source}")]
    Shim {
        step: String,
        #[source]
        source: kos_shim_client::Error,
    },
    #[error("{step}: {source}")]
    Cdi {
        step: String,
        #[source]
        source: kadcm::Error,
    },
    #[error("{step}: {source}")]
    Cgroup {
        step: &'static str,
        #[source]
        source: kos_cgroups::Error,
    },
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Sys {
        step: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("{step}: {message}")]
    Internal { step: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(step: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            step,
            path: path.into(),
            source,
        }
    }

    pub fn image(step: impl Into<String>, source: kos_image::Error) -> Error {
        Error::Image {
            step: step.into(),
            source,
        }
    }

    pub fn shim(step: impl Into<String>, source: kos_shim_client::Error) -> Error {
        Error::Shim {
            step: step.into(),
            source,
        }
    }

    pub fn sys(step: impl Into<String>, source: nix::errno::Errno) -> Error {
        Error::Sys {
            step: step.into(),
            source,
        }
    }

    pub fn code(&self) -> Code {
        use kos_shim_client::ErrorKind as K;
        match self {
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Image { source, .. } => match source {
                kos_image::Error::ImageNotFound(_) => Code::NotFound,
                kos_image::Error::InvalidReference { .. } => Code::InvalidArgument,
                _ => Code::Unknown,
            },
            // An unknown device, a broken spec or a missing host node: the request's fault.
            Error::Cdi { .. } => Code::InvalidArgument,
            Error::Shim { source, .. } => match source.kind() {
                K::NotFound => Code::NotFound,
                K::AlreadyExists => Code::AlreadyExists,
                K::FailedPrecondition => Code::FailedPrecondition,
                K::InvalidArgument => Code::InvalidArgument,
                K::DeadlineExceeded => Code::DeadlineExceeded,
                K::Unavailable => Code::Unavailable,
                _ => Code::Unknown,
            },
            _ => Code::Unknown,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        // One line: nested sources joined, as kubelet logs the message verbatim.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let s_msg = s.to_string();
            if !msg.contains(&s_msg) {
                msg.push_str(": ");
                msg.push_str(&s_msg);
            }
            src = s.source();
        }
        Status::new(e.code(), msg.replace('\n', " "))
    }
}
