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

    /// The next message, or None when the other side has gone.
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reading into a buffer we own.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::Setup(format!("init channel: {e}")));
            }
            if n == 0 {
                return Ok(None);
            }
            return serde_json::from_slice(&buf[..n as usize])
                .map(Some)
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
