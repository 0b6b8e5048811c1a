//! `run`: create, start, and stay with the container until it exits,
//! forwarding signals and returning its exit status.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{create_for_run, CreateOpts, StartMode};
use super::{delete, start};
use crate::error::{Error, Result, Stage};
use crate::linux::tty;

/// Signals kosrun passes on to the container instead of acting on them.
pub fn forwarded() -> SigSet {
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

/// A console socket of kosrun's own, for `run` with a terminal and no
/// `--console-socket`: the init sends the pty master here and kosrun relays it
/// to the caller's terminal. The socket's directory goes when this drops.
struct OwnConsole {
    dir: PathBuf,
    listener: UnixListener,
}

impl OwnConsole {
    fn bind() -> Result<OwnConsole> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!(
            "kosrun-tty-{}-{}",
            std::process::id(),
            crate::time::now_rfc3339().replace([':', '.', '+'], "")
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let me = OwnConsole {
            listener: match UnixListener::bind(dir.join("console.sock")) {
                Ok(l) => l,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(Error::io(dir.join("console.sock"), e));
                }
            },
            dir,
        };
        Ok(me)
    }

    fn path(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// The master the init sent while `create` ran.
    fn master(&self) -> Result<OwnedFd> {
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| Error::failed_by(Stage::Create, format!("console socket: {e}"), e))?;
        tty::recv_master(&OwnedFd::from(conn))
    }
}

impl Drop for OwnConsole {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Wait for `pid` to exit, passing on every signal of `set` (blocked by the
/// caller before `pid` was made); returns its exit code, 128+n if killed by n.
pub fn wait_forwarding(pid: Pid, set: &SigSet) -> Result<i32> {
    loop {
        let sig = set.wait().map_err(|e| Error::sys("wait for signals", e))?;
        if sig == Signal::SIGCHLD {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => return Ok(c),
                Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::ECHILD) => return Ok(255),
                Err(e) => return Err(Error::sys("wait for container", e)),
            }
        }
        // runc leaves SIGURG alone (its own runtime uses it); so does kosrun.
        if sig != Signal::SIGURG {
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

pub fn run(opts: &CreateOpts, detach: bool, keep: bool) -> Result<RunOutcome> {
    let bundle = crate::config::load_bundle(&opts.bundle)?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // With a terminal and no console socket, the caller's own tty is the container's.
    let own_console = if opts.console_socket.is_none() && terminal {
        if detach {
            return Err(Error::failed(Stage::Create,
                "process.terminal is true: --detach needs a --console-socket to hand the terminal to"
                    .into(),
            ));
        }
        tty::require_caller_tty()?;
        Some(OwnConsole::bind()?)
    } else {
        None
    };
    let mut opts = opts.clone();
    if let Some(c) = &own_console {
        opts.console_socket = Some(c.path());
    }
    let opts = &opts;
    let set = forwarded();
    // Blocked before the clone so no signal is lost between create and wait;
    // the init resets its mask before exec.
    if !detach {
        set.thread_block()
            .map_err(|e| Error::sys("block signals", e))?;
    }
    // Between create and start, run has only a terminal of its own to size.
    let mode = if own_console.is_none() && opts.pid_file.is_none() {
        StartMode::AtOnce
    } else {
        StartMode::Channel
    };
    let mut created = create_for_run(opts, &bundle, mode)?;
    let master = match own_console.as_ref().map(|c| c.master()).transpose() {
        Ok(m) => {
            // Sized before the program starts: it may ask at once.
            if let Some(m) = &m {
                tty::copy_size(std::io::stdin().as_fd(), m.as_fd());
            }
            m
        }
        Err(e) => {
            created.starter = None;
            let _ = delete::delete_known(
                &opts.root,
                &opts.id,
                true,
                Some((&created.cgroup, &created.saved)),
            );
            return Err(e);
        }
    };
    let mut warnings = match start::start_created(&mut created) {
        Ok(w) => w,
        Err(e) => {
            let _ = delete::delete_known(
                &opts.root,
                &opts.id,
                true,
                Some((&created.cgroup, &created.saved)),
            );
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
    let waited = match master {
        Some(m) => tty::relay(m, pid, &set),
        None => wait_forwarding(pid, &set),
    };
    let code = match waited {
        Ok(c) => c,
        Err(e) => {
            let _ = delete::delete_known(
                &opts.root,
                &opts.id,
                true,
                Some((&created.cgroup, &created.saved)),
            );
            return Err(e);
        }
    };
    if !keep {
        warnings.extend(delete::delete_known(
            &opts.root,
            &opts.id,
            true,
            Some((&created.cgroup, &created.saved)),
        )?);
    }
    Ok(RunOutcome {
        exit_code: code,
        warnings,
    })
}
