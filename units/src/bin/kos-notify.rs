//! `kos-notify NAME=VALUE...`: sends the assignments (one per line) to `$NOTIFY_SOCKET`,
//! then a `BARRIER=1` carrying a pipe's write end and waits until the manager has closed it,
//! i.e. has read and checked everything sent before (the sender must still be alive for the
//! credentials check, the race `systemd-notify` is known for).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

const BARRIER_TIMEOUT: Duration = Duration::from_secs(5);

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        return Err("usage: kos-notify NAME=VALUE... (e.g. READY=1 STATUS=serving)".into());
    }
    if let Some(bad) = args.iter().find(|a| !a.contains('=') || a.contains('\n')) {
        return Err(format!("not a NAME=VALUE assignment: {bad:?}"));
    }
    let path = std::env::var_os("NOTIFY_SOCKET").ok_or("NOTIFY_SOCKET is not set")?;
    let path = std::path::PathBuf::from(path);
    let addr = if let Some(abs) = path.to_str().and_then(|p| p.strip_prefix('@')) {
        UnixAddr::new_abstract(abs.as_bytes())
    } else {
        UnixAddr::new(&path)
    }
    .map_err(|e| format!("NOTIFY_SOCKET {}: {e}", path.display()))?;
    let sock = UnixDatagram::unbound().map_err(|e| format!("socket: {e}"))?;
    let msg = args.join("\n");
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(msg.as_bytes())],
        &[],
        MsgFlags::empty(),
        Some(&addr),
    )
    .map_err(|e| format!("send to {}: {e}", path.display()))?;
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let fds = [w.as_raw_fd()];
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(b"BARRIER=1")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(&addr),
    )
    .map_err(|e| format!("send barrier to {}: {e}", path.display()))?;
    drop(w);
    let mut pfd = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(BARRIER_TIMEOUT.as_millis() as i32).unwrap_or(PollTimeout::NONE);
    match poll(&mut pfd, ms) {
        Ok(0) => Err("the manager did not take the message within 5s".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("poll: {e}")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kos-notify: {e}");
            ExitCode::FAILURE
        }
    }
}
