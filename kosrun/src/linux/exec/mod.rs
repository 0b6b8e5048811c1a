//! A new process in a running container (`kosrun exec`), without re-executing
//! kosrun: kosrun enters the container's pid (and time) namespace for its
//! children only, forks once, puts the child in the container's cgroup while the
//! child joins the other namespaces through the init's pidfd, and the child then
//! confines itself exactly as the init did and executes the user's program.

mod child;

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::confine::Confinement;
use super::namespaces::flag;
use super::sync::{self, Channel, Msg};
use crate::error::{Error, Result, Stage};

/// Everything the child needs, prepared before the fork.
pub struct ExecCtx<'a> {
    /// The container's config with `process` replaced by the exec'd one.
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub rootfs: &'a Path,
    pub id: &'a str,
    /// pidfd of the container's init: the namespaces are joined through it.
    pub init: &'a OwnedFd,
    /// Where the pty master goes when the process has a terminal.
    pub console_socket: Option<&'a OwnedFd>,
    /// The caller's descriptors the process gets.
    pub preserved: &'a [i32],
    pub confinement: &'a Confinement,
}

/// The namespaces of a container's config, split by who joins them: the pid and
/// time namespaces apply to the children of whoever joins, so kosrun joins
/// those itself; the child joins the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespaces {
    pub for_children: CloneFlags,
    pub in_child: CloneFlags,
    pub mount: bool,
}

impl Namespaces {
    pub fn of(spec: &Spec) -> Namespaces {
        let mut ns = Namespaces {
            for_children: CloneFlags::empty(),
            in_child: CloneFlags::empty(),
            mount: false,
        };
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or(&[]);
        for n in list {
            match n.typ() {
                LinuxNamespaceType::Pid | LinuxNamespaceType::Time => {
                    ns.for_children |= flag(n.typ())
                }
                t => {
                    ns.mount |= t == LinuxNamespaceType::Mount;
                    ns.in_child |= flag(t);
                }
            }
        }
        ns
    }
}

/// setns(2) through a pidfd for the namespaces in `flags`.
pub(crate) fn setns_pidfd(pidfd: &OwnedFd, flags: CloneFlags) -> std::io::Result<()> {
    crate::sys::setns_pidfd(pidfd, flags.bits())
}

/// What the parent does while the child sets itself up.
pub trait Supervisor {
    /// Put the child in the container's cgroup (before it may exec).
    fn join_cgroup(&self, pid: i32) -> Result<()>;
    /// Hand a seccomp notify listener to the container's agent.
    fn seccomp_listener(&self, fd: OwnedFd) -> Result<()>;
}

/// Start the process; returns its pid (host view) once it has executed the
/// user's program. kosrun's own pid namespace for children is changed for good:
/// call this last, once.
pub fn spawn(ctx: &ExecCtx, ns: Namespaces, sup: &dyn Supervisor) -> Result<i32> {
    setns_pidfd(ctx.init, ns.for_children).map_err(|e| {
        Error::failed_by(
            Stage::Exec,
            format!("join the container's pid/time namespace: {e}"),
            e,
        )
    })?;
    let (parent_end, child_end) = sync::pair()?;
    let pid = crate::sys::raw_clone(0)
        .map_err(|e| Error::failed_by(Stage::Exec, format!("clone: {e}"), e))?;
    if pid == 0 {
        drop(parent_end);
        child::run(ctx, ns, &child_end);
    }
    drop(child_end);
    let reap = crate::sys::KillOnDrop::new(pid);
    sup.join_cgroup(pid)?;
    parent_end.send(&Msg::Go)?;
    wait_exec(&parent_end, sup)?;
    reap.disarm();
    Ok(pid)
}

/// The child closes its end by executing (close-on-exec) or says why it could not.
fn wait_exec(chan: &Channel, sup: &dyn Supervisor) -> Result<()> {
    loop {
        let (msg, fd) = chan.recv_with_fd()?;
        match msg {
            None => return Ok(()),
            Some(Msg::Error(e)) => return Err(Error::Remote(e)),
            Some(Msg::SeccompListener) => {
                let fd = fd.ok_or_else(|| {
                    Error::failed(
                        Stage::Exec,
                        "seccomp listener message without a descriptor".into(),
                    )
                })?;
                sup.seccomp_listener(fd)?;
            }
            Some(m) => {
                return Err(Error::failed(
                    Stage::Exec,
                    format!("exec channel: unexpected {m:?}"),
                ))
            }
        }
    }
}
