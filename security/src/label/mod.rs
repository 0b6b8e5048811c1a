//! Mandatory access control labels: SELinux (`process.selinuxLabel`, `linux.mountLabel`) and
//! AppArmor (`process.apparmorProfile`), plus MCS category allocation for unique labels.
//!
//! # On hosts where the LSM is not enabled
//!
//! runc 1.1 (checked on this project's hosts) fails such containers: a SELinux process label
//! is refused at validation, a mount label makes the `context=` mount fail, an AppArmor profile
//! (even `unconfined`) fails in the init when writing the exec attribute. KOS keeps the
//! failure but moves it before the container exists, with one clear message, via
//! [`selinux::check_available`] and [`apparmor::check_available`]. One deliberate difference:
//! AppArmor profile `unconfined` on a host without AppArmor is accepted (logged at info), since
//! an unconfined process is exactly what that host runs; Docker and podman behave the same.
//!
//! # Call order in kosrun
//!
//! Parent before fork: `check_available` of both modules, [`selinux::validate`] of the labels.
//! Init: mount with [`selinux::mount_context_option`] on the mounts [`selinux::takes_context`]
//! accepts; after the user switch and before exec: [`apparmor::apply`] and
//! [`selinux::set_exec_label`] (both take effect at `execve`).

pub mod apparmor;
pub mod mcs;
pub mod selinux;

/// Label errors.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// The label does not follow the LSM's syntax.
    #[error("invalid {what} {label:?}: {reason}")]
    Syntax {
        /// Which kind of label.
        what: &'static str,
        /// The label as given.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// A label was given but the LSM is not enabled on this host.
    #[error("{what} {label:?} is specified, but {lsm} is not enabled on this host")]
    NotEnabled {
        /// Which kind of label.
        what: &'static str,
        /// The label.
        label: String,
        /// The LSM.
        lsm: &'static str,
    },
    /// Writing a process attribute failed.
    #[error("writing {path}: {source}")]
    Attr {
        /// The attribute file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// No unique MCS pair is left.
    #[error("MCS categories exhausted: all {0} pairs are in use")]
    Exhausted(usize),
}

/// Write a process attribute file (`/proc/thread-self/attr/...`): one write, as the LSMs
/// expect the whole value in a single call.
pub(crate) fn write_attr(path: &str, value: &str) -> Result<(), LabelError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| LabelError::Attr {
            path: path.to_string(),
            source,
        })?;
    f.write_all(value.as_bytes())
        .map_err(|source| LabelError::Attr {
            path: path.to_string(),
            source,
        })
}
