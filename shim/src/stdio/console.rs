//! The console socket the runtime sends a terminal's master side through (`--console-socket`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A listening socket in a private directory under /tmp (bundle paths are too long for
/// sun_path), so nobody else can connect and hand over a terminal; removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    dir: PathBuf,
    path: PathBuf,
}

impl ConsoleSocket {
    pub fn new() -> io::Result<ConsoleSocket> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!(
            "kos-shim-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // A stale directory of a dead shim with the same pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("console.sock");
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        Ok(ConsoleSocket {
            listener,
            dir,
            path,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The master descriptor the runtime sent, within `timeout` (it has already exited by
    /// now, so the connection is waiting in the backlog).
    pub fn receive(&self, timeout: Duration) -> io::Result<OwnedFd> {
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(timeout.as_millis().min(60_000) as i32)
            .unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, ms)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the runtime sent no terminal on the console socket",
            ));
        }
        let (conn, _) = self.listener.accept()?;
        conn.set_read_timeout(Some(timeout))?;
        let mut data = [0u8; 4096];
        let mut iov = [io::IoSliceMut::new(&mut data)];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut got: Option<OwnedFd> = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel installed this descriptor for us in recvmsg.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if got.is_none() {
                        got = Some(owned);
                    }
                }
            }
        }
        got.ok_or_else(|| io::Error::other("console socket message carried no descriptor"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
