//! Signalling every process of a cgroup.

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::dirs::Dirs;
use crate::error::{Error, Result};
use crate::fsutil;

pub(crate) fn kill_all(m: &Dirs, signal: i32) -> Result<()> {
    let sig = Signal::try_from(signal)
        .map_err(|_| Error::invalid("signal", format!("{signal} is not a signal")))?;
    if sig == Signal::SIGKILL {
        if let Some(d) = m.v2() {
            let p = d.join("cgroup.kill");
            match fsutil::write_raw(&p, "1") {
                Ok(()) if m.layout == crate::Layout::V2 => return Ok(()),
                Ok(()) => {}
                // No cgroup.kill (kernel before 5.14) or no directory: signal one by one.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => {
                    return Err(Error::Write {
                        field: "cgroup.kill".into(),
                        path: p,
                        value: "1".into(),
                        source,
                    })
                }
            }
        }
        // An empty cgroup (the usual case when deleting a stopped container) has nothing
        // that could fork, so one read settles it without a freeze cycle.
        if m.pids()?.is_empty() {
            return Ok(());
        }
        // Freezing first means no process can fork a child between our reading the list
        // and the signal landing. A frozen task still dies of SIGKILL once thawed.
        let frozen = crate::freeze::set(m, true);
        let res = signal_each(m, sig);
        if frozen.is_ok() {
            crate::freeze::set(m, false)?;
        }
        return res;
    }
    signal_each(m, sig)
}

fn signal_each(m: &Dirs, sig: Signal) -> Result<()> {
    for pid in m.pids()? {
        match signal::kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(Error::Sys {
                    what: format!("kill({pid}, {sig})"),
                    source,
                })
            }
        }
    }
    Ok(())
}
