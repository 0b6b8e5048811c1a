//! Handing the seccomp notification fd to the agent at `listenerPath`, as the runtime spec's
//! "container process state" protocol says: one AF_UNIX SOCK_STREAM connection, the state JSON
//! as payload, the fd in SCM_RIGHTS on the first sendmsg, then close.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    connect, send, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    UnixAddr,
};
use oci_spec::runtime::State;
use serde::Serialize;

use super::SeccompError;

/// The container process state the agent receives.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerProcessState {
    /// Runtime spec version.
    pub oci_version: String,
    /// Names of the fds in SCM_RIGHTS, in order.
    pub fds: Vec<String>,
    /// The container process as seen by the runtime.
    pub pid: i32,
    /// `listenerMetadata` from the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The container's state.
    pub state: State,
}

/// The spec version reported when the state carries none.
const OCI_VERSION: &str = "1.2.0";

/// Connect to `listener_path`, send the container process state with `fd` as `seccompFd`, and
/// close the connection. `state.pid` must be the container process.
pub fn send_listener(
    fd: BorrowedFd<'_>,
    listener_path: &Path,
    metadata: Option<&str>,
    state: &State,
) -> Result<(), SeccompError> {
    let err = |op: &'static str| {
        move |source: Errno| SeccompError::Listener {
            path: listener_path.to_path_buf(),
            op,
            source,
        }
    };
    let msg = ContainerProcessState {
        oci_version: if state.version().is_empty() {
            OCI_VERSION.to_string()
        } else {
            state.version().clone()
        },
        fds: vec!["seccompFd".to_string()],
        pid: state.pid().unwrap_or(0),
        metadata: metadata.map(str::to_string),
        state: state.clone(),
    };
    let payload = serde_json::to_vec(&msg)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(err("socket"))?;
    let addr = UnixAddr::new(listener_path).map_err(err("socket address"))?;
    connect(sock.as_raw_fd(), &addr).map_err(err("connect"))?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&payload)];
    let mut sent = loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            r => break r.map_err(err("sendmsg"))?,
        }
    };
    // A stream socket may take the payload in parts; the fd went with the first part.
    while sent < payload.len() {
        match send(sock.as_raw_fd(), &payload[sent..], MsgFlags::MSG_NOSIGNAL) {
            Err(Errno::EINTR) => continue,
            r => sent += r.map_err(err("send"))?,
        }
    }
    Ok(())
}
