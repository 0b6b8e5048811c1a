//! Seccomp: the runtime spec's `linux.seccomp` compiled to BPF in-process (no libseccomp).
//!
//! The BPF is emitted by this crate's own small assembler ([`bpf`]) rather than `seccompiler`:
//! seccompiler has no `SCMP_ACT_NOTIFY`, covers one architecture per filter (the spec needs
//! several, with x86-64/x32 split on one audit arch), and its installer does not return the
//! listener fd that `SECCOMP_FILTER_FLAG_NEW_LISTENER` yields.
//!
//! The program dispatches on the audit arch, then finds the syscall number by a binary search
//! over ranges of numbers that share an outcome, then runs the argument checks of the few
//! syscalls that have them: the default profile is 338 instructions where a chain of one
//! comparison per syscall took 1141, and the kernel's work at load (checking, JIT, running the
//! filter for every syscall number to fill its action cache) shrinks with it (about 640 to
//! 95 us here). Names resolve through one generated table of every ABI's numbers.
//!
//! # Call order in kosrun
//!
//! 1. **Parent, before fork**: [`compile()`] the spec's profile (all profile errors surface here,
//!    before any container state exists).
//! 2. **Container init, after mounts, pivot_root, hostname, rlimits**:
//!    - If `process.noNewPrivileges` is true: set it (`prctl(PR_SET_NO_NEW_PRIVS)`) first, drop
//!      capabilities and switch user (see [`crate::caps`]), apply the Landlock ruleset, then
//!      [`SeccompProgram::install`] as the **last** step before `execve` so none of the setup
//!      syscalls is subject to the filter.
//!    - If it is false, the kernel only accepts a filter from a task holding `CAP_SYS_ADMIN`,
//!      so [`SeccompProgram::install`] must run **before** the capability drop and user switch
//!      (as runc does); the profile must then allow `capset`, `setresuid`, `setresgid`,
//!      `setgroups`, `prctl` and `execve`, which every sensible profile does.
//! 3. If `install` returned a listener fd: the init passes it to the runtime parent over its
//!    already-connected sync socket (SCM_RIGHTS), closes its copy, and execs. The parent calls
//!    [`send_listener`] with the container state, then closes the fd. NOTIFY is refused on the
//!    syscalls this hand-over uses ([`NOTIFY_FORBIDDEN`]) and as the default action.

pub mod arch;
pub mod bpf;
mod compile;
mod emit;
mod names;
mod names_table;
pub mod notify;
pub mod profile;
#[cfg(test)]
mod reference;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::LinuxSeccomp;

pub use arch::Abi;
pub use bpf::SockFilter;
pub use compile::{BAD_ARCH_ACTION, NOTIFY_FORBIDDEN};
pub use notify::{send_listener, ContainerProcessState};
pub use profile::{default_profile, default_profile_for};

/// Errors compiling or installing a seccomp profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile is malformed.
    #[error("seccomp profile: {0}")]
    Invalid(String),
    /// The profile is not valid JSON for the runtime spec's `linux.seccomp`.
    #[error("seccomp profile: {0}")]
    Parse(#[from] serde_json::Error),
    /// The compiled program exceeds the kernel's instruction limit.
    #[error("seccomp profile compiles to {insns} BPF instructions, more than the kernel's 4096")]
    TooLarge {
        /// Program length.
        insns: usize,
    },
    /// The kernel does not offer an action the profile uses.
    #[error("seccomp action {action} is not supported by this kernel")]
    ActionUnavailable {
        /// The action's spec name.
        action: String,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The kernel's error.
        source: Errno,
    },
    /// Sending the listener fd to the agent failed.
    #[error("seccomp listener {path}: {op}: {source}")]
    Listener {
        /// The agent's socket.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The kernel's error.
        source: Errno,
    },
    /// A bug in this crate's BPF generation.
    #[error("internal seccomp compiler error: {0}")]
    Internal(&'static str),
}

/// A compiled filter, ready to install in the container's init.
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    compiled: compile::Compiled,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

/// Parse a profile from JSON (the `linux.seccomp` object of config.json, or a profile file),
/// with errors naming the bad field, action, operator or architecture.
pub fn parse_profile(json: &str) -> Result<LinuxSeccomp, SeccompError> {
    Ok(serde_json::from_str(json)?)
}

/// Compile `spec` into a BPF program. Pure apart from asking the kernel which actions it
/// supports; run it in the runtime before forking.
pub fn compile(spec: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let compiled = compile::compile(spec)?;
    check_actions_available(&compiled.filter)?;
    if compiled.has_notify && spec.listener_path().is_none() {
        return Err(SeccompError::Invalid(
            "SCMP_ACT_NOTIFY is used but listenerPath is not set".into(),
        ));
    }
    Ok(SeccompProgram {
        compiled,
        listener_path: spec.listener_path().clone(),
        listener_metadata: spec.listener_metadata().clone(),
    })
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_GET_ACTION_AVAIL: libc::c_ulong = 2;

/// Ask the kernel whether every return action used by the program exists.
fn check_actions_available(filter: &[SockFilter]) -> Result<(), SeccompError> {
    let mut seen = std::collections::BTreeSet::new();
    for ins in filter.iter().filter(|i| i.code == bpf::BPF_RET_K) {
        let action = ins.k & 0xffff_0000;
        if !seen.insert(action) {
            continue;
        }
        // SAFETY: the kernel reads one u32 through the pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_GET_ACTION_AVAIL,
                0,
                &action as *const u32,
            )
        };
        if r != 0 {
            let e = Errno::last();
            // ENOSYS/EINVAL from a kernel before 4.14 that lacks GET_ACTION_AVAIL: install will
            // tell. EOPNOTSUPP is the real "no such action".
            if e == Errno::EOPNOTSUPP {
                return Err(SeccompError::ActionUnavailable {
                    action: action_label(action).to_string(),
                });
            }
        }
    }
    Ok(())
}

fn action_label(ret: u32) -> &'static str {
    match ret {
        compile::RET_KILL_PROCESS => "SCMP_ACT_KILL_PROCESS",
        compile::RET_KILL_THREAD => "SCMP_ACT_KILL_THREAD",
        compile::RET_TRAP => "SCMP_ACT_TRAP",
        compile::RET_ERRNO => "SCMP_ACT_ERRNO",
        compile::RET_USER_NOTIF => "SCMP_ACT_NOTIFY",
        compile::RET_TRACE => "SCMP_ACT_TRACE",
        compile::RET_LOG => "SCMP_ACT_LOG",
        _ => "SCMP_ACT_ALLOW",
    }
}

impl SeccompProgram {
    /// The BPF instructions.
    pub fn filter(&self) -> &[SockFilter] {
        &self.compiled.filter
    }

    /// `SECCOMP_FILTER_FLAG_*` bits passed to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.compiled.flags
    }

    /// Whether a rule uses `SCMP_ACT_NOTIFY` (so [`install`](Self::install) returns a fd).
    pub fn has_notify(&self) -> bool {
        self.compiled.has_notify
    }

    /// ABIs the filter covers (native first).
    pub fn abis(&self) -> &[Abi] {
        &self.compiled.abis
    }

    /// The agent socket from the profile.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// The opaque metadata from the profile.
    pub fn listener_metadata(&self) -> Option<&str> {
        self.listener_metadata.as_deref()
    }

    /// Hand `listener` to the agent at this profile's `listenerPath` with its
    /// `listenerMetadata` (see [`send_listener`]).
    pub fn send_listener(
        &self,
        listener: std::os::fd::BorrowedFd<'_>,
        state: &oci_spec::runtime::State,
    ) -> Result<(), SeccompError> {
        let path = self.listener_path.as_deref().ok_or_else(|| {
            SeccompError::Invalid("SCMP_ACT_NOTIFY is used but listenerPath is not set".into())
        })?;
        send_listener(listener, path, self.listener_metadata.as_deref(), state)
    }

    /// Install the filter on the calling thread (all threads with TSYNC). Returns the
    /// notification listener fd when a rule uses NOTIFY. See the module docs for where in the
    /// init this belongs. Needs no_new_privs set or `CAP_SYS_ADMIN`.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let filter = &self.compiled.filter;
        let prog = libc::sock_fprog {
            len: u16::try_from(filter.len()).map_err(|_| SeccompError::TooLarge {
                insns: filter.len(),
            })?,
            // SockFilter is repr(C) with the kernel's sock_filter layout.
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: prog points at a live, correctly sized instruction array for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                self.compiled.flags as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            let source = Errno::last();
            let op = match source {
                Errno::EACCES => "seccomp(SET_MODE_FILTER) needs no_new_privs or CAP_SYS_ADMIN",
                Errno::EINVAL => "seccomp(SET_MODE_FILTER): filter or flags rejected by kernel",
                _ => "seccomp(SET_MODE_FILTER)",
            };
            return Err(SeccompError::Sys { op, source });
        }
        if self.compiled.has_notify {
            // SAFETY: with NEW_LISTENER the return value is a new fd owned by us.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(r as i32) }))
        } else {
            Ok(None)
        }
    }
}
