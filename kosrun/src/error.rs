//! The runtime's error type: every failure names what was wrong in one line, and keeps
//! enough structure (stage, spec field, kind, source) for a daemon to map it to a status
//! code and for tests to assert which failure happened.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The step of the container's life that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading and parsing the bundle's config.json.
    LoadConfig,
    /// Checking the spec before anything is made.
    Validate,
    Namespaces,
    Cgroup,
    Mounts,
    Devices,
    Pivot,
    Sysctl,
    Hooks,
    Seccomp,
    Capabilities,
    /// Landlock, AppArmor and SELinux confinement.
    Confinement,
    User,
    Rlimits,
    Scheduler,
    Terminal,
    /// The parent <-> init channel.
    Sync,
    /// Starting the container's process (execve).
    Exec,
    Create,
    Start,
    Kill,
    Delete,
    Update,
    Ps,
    Events,
    /// Reading or writing the runtime's own state.
    State,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The serde name is the one stable spelling of the stage.
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// What kind of failure this is, for callers mapping errors to status codes
/// (HTTP 404/409/400/403/500, gRPC NotFound/AlreadyExists/InvalidArgument/...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    NotFound,
    AlreadyExists,
    /// The config (or a request) is wrong or asks for what this host cannot do.
    InvalidConfig,
    /// The container is in a state that does not allow the operation.
    WrongState,
    Permission,
    Internal,
}

/// The typed cause under a runtime error.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Errno(#[from] nix::Error),
    #[error(transparent)]
    Cgroup(#[from] kos_cgroups::Error),
    #[error(transparent)]
    Seccomp(#[from] kos_security::seccomp::SeccompError),
    #[error(transparent)]
    Caps(#[from] kos_security::caps::CapsError),
    #[error(transparent)]
    Landlock(#[from] kos_security::landlock::LandlockError),
    #[error(transparent)]
    Label(#[from] kos_security::label::LabelError),
    #[error(transparent)]
    Path(#[from] kos_security::path::PathError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl Cause {
    fn errno(&self) -> Option<i32> {
        match self {
            Cause::Io(e) => e.raw_os_error(),
            Cause::Errno(e) => Some(*e as i32),
            _ => None,
        }
    }
}

/// An error raised inside the container's init (or exec child) and carried to the parent
/// over the init channel: the typed parts survive the trip, the source is its errno.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub stage: Option<Stage>,
    pub kind: Kind,
    pub field: Option<String>,
    pub message: String,
    pub errno: Option<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {0:?}: ids may use letters, digits, '_', '+', '-' and '.', and must not be '.' or '..'")]
    InvalidId(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {id:?} is {status}: {what}")]
    WrongState {
        id: String,
        status: String,
        what: &'static str,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A config.json value is wrong or cannot be honoured; `field` is its spec path
    /// ("process.user.uid", "linux.sysctl[net.ipv4.ip_forward]").
    #[error("config.json: {message}")]
    Invalid {
        stage: Stage,
        field: String,
        message: String,
        #[source]
        source: Option<Box<Cause>>,
    },
    /// A step of making or running the container failed.
    #[error("{message}")]
    Failed {
        stage: Stage,
        message: String,
        #[source]
        source: Option<Box<Cause>>,
    },
    /// A failure inside the container's init, carried over the init channel.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("cgroup: {0}")]
    Cgroup(#[from] kos_cgroups::Error),
    #[error("{0}")]
    Path(#[from] kos_security::path::PathError),
    /// A hook failed; `kind` and `index` locate it in the spec ("hooks.prestart[0]").
    #[error("hook: {}[{index}] {}: {reason}", kind.name(), path.display())]
    Hook {
        kind: crate::hooks::Kind,
        index: usize,
        path: PathBuf,
        reason: String,
    },
    #[error("state of container {id:?} is unreadable: {reason}")]
    BadState { id: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn errno_kind(errno: Option<i32>) -> Option<Kind> {
    match errno {
        Some(libc::EPERM) | Some(libc::EACCES) => Some(Kind::Permission),
        _ => None,
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// A bad config value found before anything is made.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            stage: Stage::Validate,
            field: field.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A config value found wrong at a later stage (while building the container).
    pub fn invalid_in(stage: Stage, field: impl Into<String>, message: String) -> Self {
        Error::Invalid {
            stage,
            field: field.into(),
            message,
            source: None,
        }
    }

    /// A config.json that cannot be read or parsed.
    pub fn load(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            stage: Stage::LoadConfig,
            field: field.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A bad config value, with the library error that refused it.
    pub fn invalid_by(
        stage: Stage,
        field: impl Into<String>,
        message: impl Into<String>,
        source: impl Into<Cause>,
    ) -> Self {
        Error::Invalid {
            stage,
            field: field.into(),
            message: message.into(),
            source: Some(Box::new(source.into())),
        }
    }

    /// A step failed for a reason of its own (no lower error under it).
    pub fn failed(stage: Stage, message: String) -> Self {
        Error::Failed {
            stage,
            message,
            source: None,
        }
    }

    /// A step failed because a lower layer did; `message` already says why in one line.
    pub fn failed_by(stage: Stage, message: impl Into<String>, source: impl Into<Cause>) -> Self {
        Error::Failed {
            stage,
            message: message.into(),
            source: Some(Box::new(source.into())),
        }
    }

    /// The typed lower error under a staged failure.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Error::Invalid { source, .. } | Error::Failed { source, .. } => source.as_deref(),
            _ => None,
        }
    }

    /// Which step failed, when known.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Error::Invalid { stage, .. } | Error::Failed { stage, .. } => Some(*stage),
            Error::Remote(r) => r.stage,
            Error::Cgroup(_) => Some(Stage::Cgroup),
            Error::Hook { .. } => Some(Stage::Hooks),
            Error::BadState { .. } => Some(Stage::State),
            _ => None,
        }
    }

    /// The spec field that was wrong, for config errors that know it.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::Remote(r) => r.field.as_deref(),
            Error::Hook { kind, .. } => Some(kind.field()),
            Error::Cgroup(kos_cgroups::Error::Invalid { field, .. })
            | Error::Cgroup(kos_cgroups::Error::Unsupported { field, .. })
            | Error::Cgroup(kos_cgroups::Error::Write { field, .. }) => Some(field),
            _ => match self.cause() {
                Some(Cause::Cgroup(kos_cgroups::Error::Write { field, .. })) => Some(field),
                _ => None,
            },
        }
    }

    /// The errno under this error, when a system call refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Sys { source, .. } => Some(*source as i32),
            Error::Invalid { source, .. } | Error::Failed { source, .. } => {
                source.as_deref().and_then(|c| match c {
                    Cause::Cgroup(e) => cgroup_errno(e),
                    c => c.errno(),
                })
            }
            Error::Remote(r) => r.errno,
            Error::Cgroup(e) => cgroup_errno(e),
            _ => None,
        }
    }

    /// The classification a daemon maps to a status code.
    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidId(_) => Kind::InvalidConfig,
            Error::Exists(_) => Kind::AlreadyExists,
            Error::NotFound(_) => Kind::NotFound,
            Error::WrongState { .. } => Kind::WrongState,
            Error::Invalid { .. } => Kind::InvalidConfig,
            Error::Remote(r) => r.kind,
            Error::Cgroup(e) => cgroup_kind(e),
            Error::Failed { .. } => match self.cause() {
                Some(Cause::Cgroup(e)) => cgroup_kind(e),
                _ => errno_kind(self.errno()).unwrap_or(Kind::Internal),
            },
            Error::Path(_) => Kind::InvalidConfig,
            Error::BadState { .. } | Error::Hook { .. } => Kind::Internal,
            _ => errno_kind(self.errno()).unwrap_or(Kind::Internal),
        }
    }

    /// The form sent over the init channel.
    pub fn to_remote(&self) -> RemoteError {
        RemoteError {
            stage: self.stage(),
            kind: self.kind(),
            field: self.field().map(str::to_owned),
            message: self.to_string(),
            errno: self.errno(),
        }
    }
}

fn cgroup_errno(e: &kos_cgroups::Error) -> Option<i32> {
    use kos_cgroups::Error as C;
    match e {
        C::Write { source, .. } | C::Read { source, .. } | C::Dir { source, .. } => {
            source.raw_os_error()
        }
        C::Sys { source, .. } => Some(*source as i32),
        _ => None,
    }
}

fn cgroup_kind(e: &kos_cgroups::Error) -> Kind {
    use kos_cgroups::Error as C;
    match e {
        C::Invalid { .. } | C::Unsupported { .. } | C::Path { .. } => Kind::InvalidConfig,
        C::Gone { .. } => Kind::NotFound,
        // The kernel refusing a resource value is the value's fault (EINVAL, ERANGE...),
        // unless it is a permission the runtime lacks.
        C::Write { source, .. } => errno_kind(source.raw_os_error()).unwrap_or(Kind::InvalidConfig),
        e => errno_kind(cgroup_errno(e)).unwrap_or(Kind::Internal),
    }
}

/// Attach a description to a raw nix result.
pub trait SysContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::sys(what(), e))
    }
}

/// Put a step's name on a lower error: `.at(Stage::Mounts, || format!("mount {dst}"))`
/// gives "mount /x: <cause>" with the cause kept as the source.
pub trait StageContext<T> {
    fn at(self, stage: Stage, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E> StageContext<T> for std::result::Result<T, E>
where
    E: Into<Cause> + fmt::Display,
{
    fn at(self, stage: Stage, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            let message = format!("{}: {e}", what());
            Error::failed_by(stage, message, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_keep_their_parts_across_the_channel() {
        let e = Error::failed_by(
            Stage::Mounts,
            "mount /proc: Operation not permitted",
            nix::Error::EPERM,
        );
        let wire = serde_json::to_vec(&e.to_remote()).expect("serialise");
        let back: RemoteError = serde_json::from_slice(&wire).expect("parse");
        let back = Error::from(back);
        assert_eq!(back.stage(), Some(Stage::Mounts));
        assert_eq!(back.kind(), Kind::Permission);
        assert_eq!(back.errno(), Some(libc::EPERM));
        assert_eq!(back.to_string(), "mount /proc: Operation not permitted");
    }

    #[test]
    fn cgroup_errors_keep_their_source_and_field() {
        let e = Error::from(kos_cgroups::Error::Write {
            field: "linux.resources.memory.limit".into(),
            path: "/sys/fs/cgroup/memory/x/memory.limit_in_bytes".into(),
            value: "1".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        });
        assert_eq!(e.stage(), Some(Stage::Cgroup));
        assert_eq!(e.kind(), Kind::Permission);
        assert_eq!(e.field(), Some("linux.resources.memory.limit"));
        let src = std::error::Error::source(&e).expect("source kept");
        assert!(src.downcast_ref::<kos_cgroups::Error>().is_some());
    }

    #[test]
    fn stage_names_are_stable() {
        assert_eq!(Stage::LoadConfig.to_string(), "load_config");
        assert_eq!(Stage::Hooks.to_string(), "hooks");
    }

    #[test]
    fn state_errors_map_to_their_kinds() {
        assert_eq!(Error::NotFound("a".into()).kind(), Kind::NotFound);
        assert_eq!(Error::Exists("a".into()).kind(), Kind::AlreadyExists);
        let w = Error::WrongState {
            id: "a".into(),
            status: "running".into(),
            what: "cannot delete",
        };
        assert_eq!(w.kind(), Kind::WrongState);
    }
}
