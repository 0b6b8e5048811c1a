//! `kill`: signal the init, or every process of the container.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::state::{process_start_time, ContainerDir, Saved, Status};

pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<()> {
    let dir = ContainerDir::open(root, id)?;
    let saved = dir.load()?;
    let status = super::state::require_not_stopped(&saved)?;
    if all {
        let cg = kos_cgroups::Manager::new(Some(&saved.cgroup_path), id)?;
        cg.kill_all(signal)?;
        if signal == libc::SIGKILL && status == Status::Paused {
            cg.thaw()?;
        }
        return Ok(());
    }
    signal_init(&saved, signal)
}

/// Signal the init through a pidfd taken after checking its start time, so a pid
/// reused by another process in between can never receive it.
pub fn signal_init(saved: &Saved, signal: i32) -> Result<()> {
    let pidfd = open_pidfd(saved)?;
    // SAFETY: signalling through a pidfd we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(Error::WrongState {
                id: saved.id.clone(),
                status: "stopped".into(),
                what: "container not running",
            });
        }
        return Err(Error::Setup(format!(
            "signal {signal} to pid {}: {e}",
            saved.pid
        )));
    }
    Ok(())
}

/// A pidfd for the saved init, or an error if that process is gone.
pub fn open_pidfd(saved: &Saved) -> Result<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, saved.pid, 0) };
    let gone = || Error::WrongState {
        id: saved.id.clone(),
        status: "stopped".into(),
        what: "container not running",
    };
    if raw < 0 {
        return Err(gone());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    if process_start_time(saved.pid) != Some(saved.pid_start) {
        return Err(gone());
    }
    Ok(fd)
}

/// Wait up to `ms` for the process behind a pidfd to exit.
pub fn wait_exit(pidfd: &OwnedFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Parse a signal as runc takes it: "KILL", "SIGKILL", "9", case-insensitive names.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Setup(format!("invalid signal {s:?}")));
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+')
                .parse()
                .map_err(|_| Error::Setup(format!("invalid signal {s:?}")))?
        };
        let n = libc::SIGRTMIN() + off;
        if n <= libc::SIGRTMAX() {
            return Ok(n);
        }
    }
    if let Some(rt) = name.strip_prefix("RTMAX") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('-')
                .parse()
                .map_err(|_| Error::Setup(format!("invalid signal {s:?}")))?
        };
        let n = libc::SIGRTMAX() - off;
        if n >= libc::SIGRTMIN() {
            return Ok(n);
        }
    }
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(Error::Setup(format!("unknown signal {s:?}"))),
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("KILL").ok(), Some(9));
        assert_eq!(parse_signal("SIGTERM").ok(), Some(15));
        assert_eq!(parse_signal("term").ok(), Some(15));
        assert_eq!(parse_signal("9").ok(), Some(9));
        assert_eq!(parse_signal("RTMIN+1").ok(), Some(libc::SIGRTMIN() + 1));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("65").is_err());
    }
}
