use std::path::PathBuf;

/// What went wrong, naming the step and keeping the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Replace {
        path: PathBuf,
        source: kos_statefile::ReplaceError,
    },
    #[error("CDI spec {path}: {message}")]
    CdiSpec { path: PathBuf, message: String },
    #[error("CDI device {name:?}: {message}")]
    CdiResolve { name: String, message: String },
    #[error("applying CDI edits to the OCI spec: {0}")]
    OciEdit(String),
    #[error("uevent socket: {op}: {source}")]
    Netlink {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("hot-plug {step} in container pid {pid}: {source}")]
    Hotplug {
        step: String,
        pid: i32,
        source: std::io::Error,
    },
    #[error("hot-plug: {0}")]
    HotplugInvalid(String),
    #[error("device cgroup: {0}")]
    Cgroup(#[from] kos_cgroups::Error),
    #[error("device {device} to container {container} denied by policy: {reason}")]
    Denied {
        device: String,
        container: String,
        reason: String,
    },
    #[error("container {id}: {message}")]
    Container { id: String, message: String },
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;
