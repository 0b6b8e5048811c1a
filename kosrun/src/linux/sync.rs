//! The message channel between kosrun and the container's init during create.
//! A SOCK_SEQPACKET pair keeps message boundaries, so each message is one datagram.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Parent -> init: id mappings written and the cgroup joined; go on.
    Go,
    /// Intermediate -> parent: please write the id mappings of my new user namespace.
    MapUsers,
    /// Parent -> intermediate: mappings written.
    Mapped,
    /// Intermediate -> parent: the init process's pid (host view).
    InitPid(i32),
    /// Init -> parent: the environment exists; run prestart and createRuntime hooks.
    RunHooks,
    /// Parent -> init: hooks ran; here is the state for createContainer hooks.
    HooksDone(String),
    /// Init -> parent: everything is built; the init now waits for `start`.
    Ready,
    /// Init -> parent: the seccomp notify listener travels with this message (SCM_RIGHTS).
    SeccompListener,
    /// Either way: setup failed.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair for the init channel".into())?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::Setup(e.to_string()))?;
        // SAFETY: writing a buffer we own to a descriptor we own.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            return Err(Error::Setup(format!(
                "init channel: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }

    /// Send a message with a descriptor attached.
    pub fn send_fd(&self, msg: &Msg, fd: &OwnedFd) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let data = serde_json::to_vec(msg).map_err(|e| Error::Setup(e.to_string()))?;
        let iov = [std::io::IoSlice::new(&data)];
        let fds = [fd.as_raw_fd()];
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .ctx(|| "init channel: send descriptor".into())?;
        Ok(())
    }

    /// The next message, or None when the other side has gone.
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.0)
    }

    /// The next message and the descriptor that came with it, if any.
    pub fn recv_with_fd(&self) -> Result<(Option<Msg>, Option<OwnedFd>)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
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
            let mut fd = None;
            for c in msg.cmsgs().map_err(|e| Error::sys("init channel", e))? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        // SAFETY: the kernel just gave us this descriptor.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        if fd.is_none() {
                            fd = Some(owned);
                        }
                    }
                }
            }
            let n = msg.bytes;
            if n == 0 {
                return Ok((None, fd));
            }
            return serde_json::from_slice(&buf[..n])
                .map(|m| (Some(m), fd))
                .map_err(|e| Error::Setup(format!("init channel: bad message: {e}")));
        }
    }

    /// Receive and insist on one kind of message.
    pub fn expect(&self, what: &str, pred: impl Fn(&Msg) -> bool) -> Result<Msg> {
        match self.recv()? {
            Some(Msg::Error(e)) => Err(Error::Setup(e)),
            Some(m) if pred(&m) => Ok(m),
            Some(m) => Err(Error::Setup(format!(
                "init channel: expected {what}, got {m:?}"
            ))),
            None => Err(Error::Setup(format!("container init exited before {what}"))),
        }
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
