//! Named pipes between this server and a container's shim (stdin of attachable
//! containers, stdio of streamed execs).

use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

pub fn make(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("removing stale fifo", p, e)),
    }
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::sys(format!("mkfifo {}", p.display()), e))
}

/// A write end that keeps the pipe open, so the reader (the shim) sees no EOF when a
/// client's own write end closes. The shim must already hold the read end.
pub fn open_keeper(p: &Path) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)
        .map_err(|e| Error::io("opening the stdin fifo", p, e))?;
    Ok(f.into())
}
