//! The per-unit `NOTIFY_SOCKET` (sd_notify protocol, `sd_notify(3)`).
//!
//! One unix datagram socket per unit, `<dir>/<unit>/notify.sock`, so kosd can bind the
//! directory into the container (at `/run/kos/notify`, say) and point `NOTIFY_SOCKET` at the
//! socket inside it. `SO_PASSCRED` makes the kernel attach each sender's credentials
//! (`SCM_CREDENTIALS`, with the pid translated to our pid namespace); the manager checks the
//! pid against the unit's processes. Datagrams are bounded to 4096 bytes as systemd's;
//! descriptors passed with a message are held by the [`Message`] and closed when it is
//! dropped, after it was handled: that is what a `BARRIER=1` sender waits for, and it keeps
//! the sender alive (and its pid checkable) until its earlier messages were handled.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};

use crate::error::{Error, Result};

/// systemd's NOTIFY_BUFFER_MAX.
pub const MAX_MESSAGE: usize = 4096;
/// The socket's file name inside the unit's notify directory.
pub const SOCKET_NAME: &str = "notify.sock";

/// A bound notify socket; dropping it removes the socket file and its directory.
#[derive(Debug)]
pub struct NotifySocket {
    fd: OwnedFd,
    dir: PathBuf,
}

/// One datagram: the sender's pid (0 when the kernel gave none) and its `KEY=VALUE` lines.
#[derive(Debug)]
pub struct Message {
    pub pid: u32,
    pub fields: Vec<(String, String)>,
    /// Descriptors that came with it; closed on drop.
    pub fds: Vec<OwnedFd>,
}

impl NotifySocket {
    /// Binds `<dir>/notify.sock` (the directory is made, a stale socket replaced).
    pub fn bind(unit: &str, dir: &Path) -> Result<NotifySocket> {
        let nerr = |step, source| Error::Notify {
            unit: unit.to_string(),
            step,
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create notify directory", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod notify directory", dir, e))?;
        let path = dir.join(SOCKET_NAME);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove stale notify socket", &path, e)),
        }
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(|e| nerr("socket", e))?;
        let addr = UnixAddr::new(&path).map_err(|e| nerr("socket address", e))?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| nerr("bind", e))?;
        setsockopt(&fd, sockopt::PassCred, &true).map_err(|e| nerr("SO_PASSCRED", e))?;
        // Services may run as any user in the container: anyone who can reach the directory
        // may send (the pid check decides).
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| Error::io("chmod notify socket", &path, e))?;
        Ok(NotifySocket {
            fd,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(SOCKET_NAME)
    }

    /// The next datagram, or None when none is queued. Oversized datagrams are dropped.
    pub fn recv(&self) -> Option<Message> {
        loop {
            let mut buf = [0u8; MAX_MESSAGE + 1];
            let mut cmsg = nix::cmsg_space!(libc::ucred, [RawFd; 16]);
            let (len, flags, pid, fds) = {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = match recvmsg::<()>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Ok(m) => m,
                    Err(nix::Error::EINTR) => continue,
                    Err(nix::Error::EAGAIN) => return None,
                    Err(e) => {
                        tracing::warn!("notify socket {}: recvmsg: {e}", self.dir.display());
                        return None;
                    }
                };
                let mut pid = 0u32;
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        match c {
                            ControlMessageOwned::ScmCredentials(cred) => {
                                pid = u32::try_from(cred.pid()).unwrap_or(0)
                            }
                            ControlMessageOwned::ScmRights(rs) => fds.extend(rs),
                            _ => {}
                        }
                    }
                }
                (msg.bytes, msg.flags, pid, fds)
            };
            // SAFETY: the kernel just installed these descriptors for us; we own them.
            let fds: Vec<OwnedFd> = fds
                .into_iter()
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            if len > MAX_MESSAGE || flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
                tracing::warn!(
                    "notify socket {}: oversized or truncated message dropped",
                    self.dir.display()
                );
                continue;
            }
            return Some(Message {
                pid,
                fields: parse(&buf[..len]),
                fds,
            });
        }
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `KEY=VALUE` lines; lines that are not UTF-8 or have no `=` are skipped (sd_notify's
/// receivers ignore what they do not understand).
pub fn parse(data: &[u8]) -> Vec<(String, String)> {
    data.split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn parse_lines() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=up and running\n\nbogus\n=x\nWATCHDOG=1"),
            vec![
                ("READY".to_string(), "1".to_string()),
                ("STATUS".to_string(), "up and running".to_string()),
                ("WATCHDOG".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn credentials_and_bounds() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("u.container");
        let s = NotifySocket::bind("u.container", &dir).unwrap();
        assert!(s.recv().is_none());
        let c = UnixDatagram::unbound().unwrap();
        c.send_to(b"READY=1\nSTATUS=hi", s.path()).unwrap();
        let m = s.recv().unwrap();
        assert_eq!(m.pid, std::process::id());
        assert_eq!(m.fields[1], ("STATUS".into(), "hi".into()));
        c.send_to(&vec![b'A'; MAX_MESSAGE + 10], s.path()).unwrap();
        c.send_to(b"WATCHDOG=1", s.path()).unwrap();
        assert_eq!(
            s.recv().unwrap().fields,
            [("WATCHDOG".to_string(), "1".to_string())]
        );
        let flags = nix::fcntl::fcntl(s.as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        drop(s);
        assert!(!dir.exists(), "socket and directory removed");
    }
}
