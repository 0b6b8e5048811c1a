//! The message channel between kosrun and the container's init during create.
//! A stream socket pair carrying length-prefixed JSON messages: no datagram size limit,
//! so a config with 1 MiB of annotations (runc takes that much) or a long error from the
//! init gets through whole. Received messages are bounded by [`MAX_MSG`].

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, RemoteError, Result, Stage, SysContext};

/// The largest message either side accepts: the state document with its annotations,
/// and config.json itself is bounded well below this.
pub const MAX_MSG: usize = 32 << 20;
/// Descriptors one message may carry: a cgroup `tasks` file per v1 hierarchy is the most
/// sent (a host has about a dozen hierarchies); more than this many are refused.
pub const MAX_FDS: usize = 32;

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Parent -> init: id mappings written and the cgroup joined (but for the v1
    /// hierarchies the init joins itself); go on.
    Go,
    /// Intermediate -> parent: please write the id mappings of my new user namespace.
    MapUsers,
    /// Parent -> intermediate: mappings written.
    Mapped,
    /// Intermediate -> parent: the init process's pid (host view), and whether clone3 put
    /// it in the container's v2 cgroup.
    InitPid { pid: i32, in_v2_cgroup: bool },
    /// Init -> parent: the environment exists; run prestart and createRuntime hooks.
    RunHooks,
    /// Parent -> init: hooks ran; here is the state for createContainer hooks.
    HooksDone(String),
    /// Init -> parent: everything is built; the init now waits for `start`.
    Ready,
    /// Init -> parent: the seccomp notify listener travels with this message (SCM_RIGHTS).
    SeccompListener,
    /// Either way: setup failed; the typed parts of the error travel with its message.
    Error(RemoteError),
    /// Parent -> init: the v1 cgroup, made while the init built its root: one `tasks`
    /// file per hierarchy travels with this message (SCM_RIGHTS), named here in order.
    JoinCgroups { tasks: Vec<std::path::PathBuf> },
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair for the init channel".into())?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_framed(msg, &[])
    }

    /// Send a message with a descriptor attached.
    pub fn send_fd(&self, msg: &Msg, fd: &OwnedFd) -> Result<()> {
        self.send_framed(msg, &[fd.as_raw_fd()])
    }

    /// Send a message with up to [`MAX_FDS`] descriptors attached, in order.
    pub fn send_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        if fds.len() > MAX_FDS {
            return Err(Error::failed(
                Stage::Sync,
                format!(
                    "init channel: {} descriptors in one message, over the {MAX_FDS} limit",
                    fds.len()
                ),
            ));
        }
        self.send_framed(msg, fds)
    }

    /// A 4-byte length, then the JSON. The descriptors ride with the first bytes.
    fn send_framed(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let body = serde_json::to_vec(msg)
            .map_err(|e| Error::failed_by(Stage::Sync, format!("init channel: {e}"), e))?;
        if body.len() > MAX_MSG {
            return Err(Error::failed(
                Stage::Sync,
                format!(
                    "init channel: message of {} bytes is over the {MAX_MSG} limit",
                    body.len()
                ),
            ));
        }
        let mut data = Vec::with_capacity(body.len() + 4);
        data.extend_from_slice(&(body.len() as u32).to_le_bytes());
        data.extend_from_slice(&body);
        let mut off = 0;
        while off < data.len() {
            let iov = [std::io::IoSlice::new(&data[off..])];
            let cmsg: Vec<ControlMessage> = if off == 0 && !fds.is_empty() {
                vec![ControlMessage::ScmRights(fds)]
            } else {
                Vec::new()
            };
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => off += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::sys("init channel: send", e)),
            }
        }
        Ok(())
    }

    /// The next message, or None when the other side has gone.
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.0)
    }

    /// The next message and the descriptor that came with it, if any.
    pub fn recv_with_fd(&self) -> Result<(Option<Msg>, Option<OwnedFd>)> {
        let (msg, fds) = self.recv_with_fds()?;
        Ok((msg, fds.into_iter().next()))
    }

    /// The next message and every descriptor that came with it, in the order sent.
    pub fn recv_with_fds(&self) -> Result<(Option<Msg>, Vec<OwnedFd>)> {
        let mut head = [0u8; 4];
        let mut fd = Vec::new();
        if !self.read_full(&mut head, &mut fd, true)? {
            return Ok((None, fd));
        }
        let len = u32::from_le_bytes(head) as usize;
        if len > MAX_MSG {
            return Err(Error::failed(
                Stage::Sync,
                format!("init channel: message of {len} bytes is over the {MAX_MSG} limit"),
            ));
        }
        let mut body = vec![0u8; len];
        self.read_full(&mut body, &mut fd, false)?;
        serde_json::from_slice(&body)
            .map(|m| (Some(m), fd))
            .map_err(|e| {
                Error::failed_by(Stage::Sync, format!("init channel: bad message: {e}"), e)
            })
    }

    /// Fill `buf`; false on a clean EOF before the first byte when `eof_ok`.
    fn read_full(&self, buf: &mut [u8], out: &mut Vec<OwnedFd>, eof_ok: bool) -> Result<bool> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        let mut off = 0;
        while off < buf.len() {
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; MAX_FDS]);
            let mut iov = [std::io::IoSliceMut::new(&mut buf[off..])];
            let r = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let msg = match r {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("init channel", e)),
                Ok(m) => m,
            };
            for c in msg.cmsgs().map_err(|e| Error::sys("init channel", e))? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        // SAFETY: the kernel just gave us this descriptor.
                        out.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
            let n = msg.bytes;
            if n == 0 {
                if off == 0 && eof_ok {
                    return Ok(false);
                }
                return Err(Error::failed(
                    Stage::Sync,
                    "init channel: the other side went away mid-message".into(),
                ));
            }
            off += n;
        }
        Ok(true)
    }

    /// Receive and insist on one kind of message.
    pub fn expect(&self, what: &str, pred: impl Fn(&Msg) -> bool) -> Result<Msg> {
        match self.recv()? {
            Some(Msg::Error(e)) => Err(Error::Remote(e)),
            Some(m) if pred(&m) => Ok(m),
            Some(m) => Err(Error::failed(
                Stage::Sync,
                format!("init channel: expected {what}, got {m:?}"),
            )),
            None => Err(Error::failed(
                Stage::Sync,
                format!("container init exited before {what}"),
            )),
        }
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_messages_and_descriptors_cross_whole() {
        let (a, b) = pair().expect("pair");
        let big = "a".repeat(2 << 20);
        let sent = big.clone();
        let t = std::thread::spawn(move || {
            a.send(&Msg::HooksDone(sent)).expect("send big");
            let f = std::fs::File::open("/dev/null").expect("open");
            a.send_fd(&Msg::SeccompListener, &OwnedFd::from(f))
                .expect("send fd");
            a.send(&Msg::Ready).expect("send small");
        });
        match b.recv().expect("recv") {
            Some(Msg::HooksDone(s)) => assert_eq!(s.len(), big.len()),
            m => panic!("got {m:?}"),
        }
        let (m, fd) = b.recv_with_fd().expect("recv fd");
        assert!(matches!(m, Some(Msg::SeccompListener)) && fd.is_some());
        assert!(matches!(b.recv().expect("recv"), Some(Msg::Ready)));
        t.join().expect("sender");
        assert!(
            b.recv().expect("eof").is_none(),
            "EOF once the sender is gone"
        );
    }

    /// Several descriptors in one message arrive in the order sent, each the file it was
    /// (told apart by inode), close-on-exec; more than MAX_FDS are refused before sending.
    #[test]
    fn several_descriptors_cross_in_order() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let (a, b) = pair().expect("pair");
        let paths = ["/dev/null", "/dev/zero", "/proc/self/stat", "/"];
        let files: Vec<std::fs::File> = paths
            .iter()
            .map(|p| std::fs::File::open(p).expect("open"))
            .collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        a.send_fds(
            &Msg::JoinCgroups {
                tasks: paths.iter().map(std::path::PathBuf::from).collect(),
            },
            &raw,
        )
        .expect("send");
        let (m, fds) = b.recv_with_fds().expect("recv");
        let Some(Msg::JoinCgroups { tasks }) = m else {
            panic!("got {m:?}")
        };
        assert_eq!(tasks.len(), 4);
        assert_eq!(fds.len(), 4);
        for (f, got) in files.iter().zip(&fds) {
            let want = f.metadata().expect("stat");
            let got = std::fs::File::from(got.try_clone().expect("dup"))
                .metadata()
                .expect("stat");
            assert_eq!((want.dev(), want.ino()), (got.dev(), got.ino()));
        }
        for fd in &fds {
            // SAFETY: fcntl on a descriptor we own.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
            assert!(flags & libc::FD_CLOEXEC != 0);
        }
        let many = vec![raw[0]; MAX_FDS + 1];
        let e = a.send_fds(&Msg::Ready, &many).expect_err("too many");
        assert!(e.to_string().contains("descriptors"), "{e}");
    }
}
