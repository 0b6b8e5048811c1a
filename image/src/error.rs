//! Errors of the image crate: one enum, each variant names what went wrong.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while storing, pulling, pushing or unpacking images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {0:?}: expected sha256:<64 hex chars>")]
    InvalidDigest(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("no manifest in the index matches platform {0}")]
    NoMatchingPlatform(String),
    #[error("image {0:?} not found in the store")]
    ImageNotFound(String),
    #[error("blob {0} not found in the store")]
    BlobNotFound(String),
    #[error("invalid {what}: {reason}")]
    InvalidJson { what: String, reason: String },
    #[error("malformed layer: {0}")]
    MalformedLayer(String),
    #[error("unsafe layer entry {path:?}: {reason}")]
    UnsafeEntry { path: String, reason: String },
    #[error("layer expands beyond the limit of {limit} {unit}")]
    LimitExceeded { limit: u64, unit: &'static str },
    #[error("registry error for {reference}: {message}")]
    Registry { reference: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context} {path}: {source}")]
    PathIo {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("mount of {target} failed: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    UnknownGroup(String),
    #[error("image is in use: {0}")]
    InUse(String),
    /// A mount target for [`crate::snapshot::mount_points`] that is not a clean path.
    #[error("invalid mount point {path:?}: {reason}")]
    InvalidMountPoint { path: PathBuf, reason: String },
    /// A registry mirror setting (hosts.toml, `registry-mirrors`) that cannot be used.
    #[error("{origin}: {reason}")]
    MirrorConfig { origin: String, reason: String },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn path(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::PathIo {
            context,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(what: impl Into<String>, err: serde_json::Error) -> Self {
        Error::InvalidJson {
            what: what.into(),
            reason: err.to_string(),
        }
    }

    pub(crate) fn unsafe_entry(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::UnsafeEntry {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
