//! The kernel's uevent netlink socket (NETLINK_KOBJECT_UEVENT, multicast group 1): device
//! add/remove/change/bind/unbind/move as the kernel reports them. Only messages sent by the
//! kernel itself (netlink port id 0) are accepted: anything a user process multicasts is
//! dropped.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};

/// A uevent message is at most one page of environment in the kernel (UEVENT_BUFFER_SIZE).
const MAX_MSG: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uevent {
    pub action: String,
    pub devpath: String,
    pub subsystem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seqnum: Option<u64>,
    pub properties: BTreeMap<String, String>,
}

/// Parses `ACTION@DEVPATH\0KEY=VALUE\0...`; None for anything else (libudev's re-broadcasts
/// start with "libudev").
pub fn parse(buf: &[u8]) -> Option<Uevent> {
    let mut parts = buf.split(|&b| b == 0).filter(|p| !p.is_empty());
    let head = std::str::from_utf8(parts.next()?).ok()?;
    let (action, devpath) = head.split_once('@')?;
    let mut properties = BTreeMap::new();
    for p in parts {
        let Ok(s) = std::str::from_utf8(p) else {
            continue;
        };
        if let Some((k, v)) = s.split_once('=') {
            properties.insert(k.to_string(), v.to_string());
        }
    }
    if properties.get("ACTION").is_some_and(|a| a != action) {
        return None;
    }
    Some(Uevent {
        action: action.to_string(),
        devpath: devpath.to_string(),
        subsystem: properties.get("SUBSYSTEM").cloned().unwrap_or_default(),
        devname: properties.get("DEVNAME").cloned(),
        seqnum: properties.get("SEQNUM").and_then(|s| s.parse().ok()),
        properties,
    })
}

pub struct UeventSocket {
    fd: OwnedFd,
}

fn nl_err(op: &'static str) -> Error {
    Error::Netlink {
        op,
        source: std::io::Error::last_os_error(),
    }
}

impl UeventSocket {
    pub fn open() -> Result<UeventSocket> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(nl_err("socket"));
        }
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A burst (a hub of devices plugged at once) must not overflow the queue: ask for
        // 4 MiB, past rmem_max when privileged.
        let size: libc::c_int = 4 << 20;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: setsockopt with a c_int option value of the right size.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }
        // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = 1;
        // SAFETY: addr is a valid sockaddr_nl of the given length.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(nl_err("bind"));
        }
        Ok(UeventSocket { fd })
    }

    /// Bounds each `recv` wait; None waits forever.
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        let tv = match t {
            Some(t) => libc::timeval {
                tv_sec: t.as_secs() as libc::time_t,
                tv_usec: t.subsec_micros() as libc::suseconds_t,
            },
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        // SAFETY: setsockopt with a timeval of the right size.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(nl_err("SO_RCVTIMEO"));
        }
        Ok(())
    }

    /// The next kernel uevent; Ok(None) on timeout. Messages not from the kernel, or that do
    /// not parse, are skipped.
    pub fn recv(&self) -> Result<Option<Uevent>> {
        let mut buf = vec![0u8; MAX_MSG];
        loop {
            // SAFETY: sockaddr_nl is plain data.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: buf and from are valid for the lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(None),
                    Some(libc::EINTR) => continue,
                    // The queue overflowed: events were lost, but the socket still works.
                    Some(libc::ENOBUFS) => {
                        tracing::warn!("uevent queue overflowed; events lost");
                        continue;
                    }
                    _ => {
                        return Err(Error::Netlink {
                            op: "recv",
                            source: e,
                        })
                    }
                }
            }
            if from.nl_pid != 0 {
                continue;
            }
            if let Some(ev) = parse(&buf[..n as usize]) {
                return Ok(Some(ev));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_messages() {
        let msg = b"add@/devices/virtual/net/kosdm1\0ACTION=add\0DEVPATH=/devices/virtual/net/kosdm1\0SUBSYSTEM=net\0INTERFACE=kosdm1\0IFINDEX=9\0SEQNUM=4242\0";
        let e = parse(msg).expect("parse");
        assert_eq!(e.action, "add");
        assert_eq!(e.subsystem, "net");
        assert_eq!(e.seqnum, Some(4242));
        assert_eq!(e.properties["INTERFACE"], "kosdm1");
        let blk = b"remove@/devices/virtual/block/loop3\0ACTION=remove\0SUBSYSTEM=block\0DEVNAME=loop3\0MAJOR=7\0MINOR=3\0";
        assert_eq!(parse(blk).expect("parse").devname.as_deref(), Some("loop3"));
    }

    #[test]
    fn rejects_other_messages() {
        assert!(parse(b"libudev\0\xfe\xed\xca\xfe").is_none());
        assert!(parse(b"").is_none());
        assert!(parse(b"add@/x\0ACTION=remove\0").is_none());
    }
}
