//! A new network namespace starts with loopback down; runc brings it up and
//! workloads rely on it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result, Stage};

pub fn loopback_up() -> Result<()> {
    // SAFETY: plain socket creation.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::failed(
            Stage::Namespaces,
            format!("socket for loopback: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed ifreq is valid; the name fits.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: ioctls on our socket with a valid ifreq.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) != 0 {
            return Err(Error::failed(
                Stage::Namespaces,
                format!("read loopback flags: {}", std::io::Error::last_os_error()),
            ));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) != 0 {
            return Err(Error::failed(
                Stage::Namespaces,
                format!("bring loopback up: {}", std::io::Error::last_os_error()),
            ));
        }
    }
    Ok(())
}
