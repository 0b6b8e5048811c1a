//! The receiving end of `--console-socket`: accept one connection and take the pty master
//! sent with SCM_RIGHTS.

use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Waits up to `limit` for the runtime to connect, then receives one fd.
pub fn receive_pty(listener: &UnixListener, limit: Duration) -> Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if start.elapsed() > limit {
                    bail!("no connection on the console socket within {limit:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).context("accepting on the console socket"),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(limit))?;
    recv_fd(stream.as_raw_fd())
}

fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    let mut data = [0u8; 512];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for a handful of fds; runtimes send exactly one.
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is a plain C struct; zeroed is a valid initial value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: msg points to live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        bail!(
            "recvmsg on the console socket: {}",
            io::Error::last_os_error()
        );
    }
    // SAFETY: walking the control buffer the kernel just filled, with the libc macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd: RawFd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    bail!("the console socket message carried no file descriptor (SCM_RIGHTS)")
}

/// Reads from `fd` until EOF/EIO (pty closed) or until `limit`, whichever is first.
pub fn read_until_closed(fd: RawFd, limit: Duration) -> String {
    read_until(fd, limit, |_| false)
}

/// Reads from `fd` until `done` holds for what was read, EOF/EIO (pty closed), or `limit`.
pub fn read_until(fd: RawFd, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&String::from_utf8_lossy(&out)) {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(200) as i32) };
        if r < 0 {
            break;
        }
        if r == 0 {
            continue;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}
