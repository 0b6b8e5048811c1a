//! `run`: create, start, and stay with the container until it exits,
//! forwarding signals and returning its exit status.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{create, CreateOpts};
use super::{delete, start};
use crate::error::{Error, Result};

/// Signals kosrun passes on to the container instead of acting on them.
fn forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in Signal::iterator() {
        if !matches!(
            s,
            Signal::SIGKILL
                | Signal::SIGSTOP
                | Signal::SIGSEGV
                | Signal::SIGBUS
                | Signal::SIGILL
                | Signal::SIGFPE
                | Signal::SIGTRAP
        ) {
            set.add(s);
        }
    }
    set
}

pub struct RunOutcome {
    pub exit_code: i32,
    pub warnings: Vec<String>,
}

pub fn run(opts: &CreateOpts, detach: bool, keep: bool) -> Result<RunOutcome> {
    let set = forwarded();
    // Blocked before the clone so no signal is lost between create and wait;
    // the init resets its mask before exec.
    if !detach {
        set.thread_block()
            .map_err(|e| Error::sys("block signals", e))?;
    }
    let created = create(opts)?;
    let mut warnings = match start::start(&opts.root, &opts.id) {
        Ok(w) => w,
        Err(e) => {
            let _ = delete::delete(&opts.root, &opts.id, true);
            return Err(e);
        }
    };
    if detach {
        return Ok(RunOutcome {
            exit_code: 0,
            warnings,
        });
    }
    let pid = Pid::from_raw(created.pid);
    let code = loop {
        let sig = set.wait().map_err(|e| Error::sys("wait for signals", e))?;
        if sig == Signal::SIGCHLD {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => break c,
                Ok(WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                Ok(_) => continue,
                Err(nix::errno::Errno::ECHILD) => break 255,
                Err(e) => return Err(Error::sys("wait for container", e)),
            }
        }
        let _ = nix::sys::signal::kill(pid, sig);
    };
    if !keep {
        warnings.extend(delete::delete(&opts.root, &opts.id, true)?);
    }
    Ok(RunOutcome {
        exit_code: code,
        warnings,
    })
}
