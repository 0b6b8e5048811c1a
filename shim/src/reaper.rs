//! Child exits: SIGCHLD through a signalfd (polled with everything else), every exited
//! child collected with waitpid(-1). The shim is a subreaper, so container processes the
//! runtime forked become its children.

use std::os::fd::{AsRawFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

pub struct Reaper {
    fd: SignalFd,
}

impl Reaper {
    /// Blocks SIGCHLD (the shim is single-threaded) and makes the shim a subreaper.
    pub fn new() -> nix::Result<Reaper> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        set.thread_block()?;
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
            return Err(nix::Error::last());
        }
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Reaper { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Drains the signalfd and returns every child that exited, with its status.
    pub fn reap(&mut self) -> Vec<(i32, u32)> {
        while let Ok(Some(_)) = self.fd.read_signal() {}
        let mut out = Vec::new();
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => {
                    if let (Some(pid), Some(code)) = (s.pid(), exit_code(s)) {
                        out.push((pid.as_raw(), code));
                    }
                }
            }
        }
        out
    }
}

/// The status containerd reports: the exit code, or 128 + the signal that killed it.
pub fn exit_code(s: WaitStatus) -> Option<u32> {
    match s {
        WaitStatus::Exited(_, code) => Some(code as u32),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as u32),
        _ => None,
    }
}
