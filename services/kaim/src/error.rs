use std::path::PathBuf;

/// What went wrong, naming the step and keeping the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading policy {path}: {source}")]
    PolicyRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("compiling policy {path}: {message}")]
    PolicyCompile { path: PathBuf, message: String },
    #[error("evaluating policy rule {rule}: {message}")]
    PolicyEval { rule: String, message: String },
    #[error("policy rule {rule} returned {value}, expected {expected}")]
    PolicyType {
        rule: String,
        value: String,
        expected: &'static str,
    },
    #[error("bad request target {target:?}: {reason}")]
    Target {
        target: String,
        reason: &'static str,
    },
    #[error("opening audit log {path}: {source}")]
    AuditOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing audit log: {0}")]
    AuditWrite(std::io::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("reading config {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{op} {path}: {source}")]
    Socket {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("identifying peer: {0}")]
    Peer(std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
