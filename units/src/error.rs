//! Errors of the unit manager, each saying which step failed.

use std::path::{Path, PathBuf};

/// What a [`crate::UnitRuntime`] back end returns when an operation fails.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

impl RuntimeError {
    pub fn new(msg: impl Into<String>) -> Self {
        RuntimeError(msg.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {}{msg}", file.display(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Parse {
        file: PathBuf,
        line: usize,
        key: Option<String>,
        msg: String,
    },
    #[error("unit {0} not found")]
    NotFound(String),
    #[error("unit name {0:?} is ambiguous: {1}")]
    Ambiguous(String, String),
    #[error(
        "invalid unit name {0:?}: names are NAME.container or NAME.target of [A-Za-z0-9:_.@-]"
    )]
    BadName(String),
    #[error("unit {unit} failed to load: {msg}")]
    BadUnit { unit: String, msg: String },
    #[error("transaction for {anchor} refused: ordering cycle {}", cycle.join(" -> "))]
    Cycle { anchor: String, cycle: Vec<String> },
    #[error("transaction for {anchor} refused: {unit} is {why}")]
    Dependency {
        anchor: String,
        unit: String,
        why: String,
    },
    #[error("unit {unit}: {step}: {source}")]
    Runtime {
        unit: String,
        step: &'static str,
        #[source]
        source: RuntimeError,
    },
    #[error("notify socket for {unit}: {step}: {source}")]
    Notify {
        unit: String,
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("unit {0} has no [Install] section: it is static and cannot be enabled")]
    Static(String),
}

impl Error {
    pub(crate) fn io(step: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            step,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
