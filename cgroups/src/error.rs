//! The one error type of the crate: every variant renders as a single line naming the file or
//! spec field involved and the cause.

use std::io;
use std::path::PathBuf;

/// Errors from cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel refused a value written for a `linux.resources` field.
    #[error("{field}: writing {value:?} to {path}: {source}")]
    Write {
        field: String,
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    /// A cgroup file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory operation (mkdir, rmdir, readdir) failed.
    #[error("{op} {path}: {source}")]
    Dir {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A cgroup file held something we could not parse.
    #[error("parsing {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    /// A `linux.resources` field holds a value that is invalid before the kernel sees it.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A requested field cannot be honoured on this host's cgroup layout.
    #[error("{field}: not supported here: {reason}")]
    Unsupported { field: String, reason: String },
    /// The cgroupsPath is malformed or escapes the cgroup root.
    #[error("cgroupsPath {path:?}: {reason}")]
    Path { path: String, reason: String },
    /// The host's cgroup layout could not be worked out.
    #[error("cgroup layout: {0}")]
    Layout(String),
    /// A system call outside plain file I/O failed (bpf, kill, ...).
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::errno::Errno,
    },
    /// The cgroup was removed while being watched.
    #[error("{path}: cgroup removed")]
    Gone { path: PathBuf },
    /// The kernel did not reach a state in time.
    #[error("{path}: still not {state} after {waited_ms} ms")]
    Timeout {
        path: PathBuf,
        state: &'static str,
        waited_ms: u64,
    },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
