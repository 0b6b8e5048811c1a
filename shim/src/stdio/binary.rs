//! `binary://` logging as containerd defines it: the program gets the container's stdout on
//! descriptor 3, stderr on 4, and closes 5 once it is ready to read; CONTAINER_ID and
//! CONTAINER_NAMESPACE name the container. The container writes straight into its pipes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::read;

use super::pipe;

/// How long the logging program may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the program; returns the write ends for the container's stdout and stderr.
pub fn spawn(
    path: &Path,
    args: &[String],
    container_id: &str,
    namespace: &str,
) -> io::Result<(OwnedFd, OwnedFd)> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (wait_r, wait_w) = pipe()?;
    // Above 5, so that placing them on 3, 4 and 5 in the child cannot overwrite one another.
    let hi = |fd: &OwnedFd| -> io::Result<OwnedFd> {
        let n = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10))?;
        // SAFETY: fcntl just returned this new descriptor, owned by nobody else.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) })
    };
    let (a, b, c) = (hi(&out_r)?, hi(&err_r)?, hi(&wait_w)?);
    drop((out_r, err_r, wait_w));
    let (ra, rb, rc) = (a.as_raw_fd(), b.as_raw_fd(), c.as_raw_fd());
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env("CONTAINER_ID", container_id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only dup2, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(ra, 3), (rb, 4), (rc, 5)] {
                if libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("logging binary {}: {e}", path.display())))?;
    // The shim's reaper collects its exit status; the handle is not waited on.
    drop(child);
    drop((a, b, c));
    wait_ready(&wait_r)?;
    Ok((out_w, err_w))
}

fn wait_ready(fd: &OwnedFd) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "logging binary did not close its ready descriptor (5) in time",
            ));
        }
        let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(left.as_millis().min(10_000) as i32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => match read(fd, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            },
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
