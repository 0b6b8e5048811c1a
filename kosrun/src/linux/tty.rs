//! The caller's terminal as the container's: when a process asks for a terminal
//! and no `--console-socket` is given, kosrun receives the pty master itself
//! (over a socket pair, the same protocol a console socket speaks), puts the
//! caller's tty in raw mode, keeps the window size in step and copies bytes both
//! ways until the process exits. The caller's terminal settings come back on drop.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags};
use nix::sys::socket::{SockFlag, SockType};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, Result, Stage, SysContext};

/// Refuse a terminal request nobody can serve: no console socket and stdin is no tty.
pub fn require_caller_tty() -> Result<()> {
    if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        Ok(())
    } else {
        Err(Error::failed(Stage::Terminal,
            "a terminal was requested but stdin is not a terminal: pass --console-socket, or do not ask for a tty".into(),
        ))
    }
}

/// A connected pair: kosrun keeps the first end, the container's process sends
/// the pty master over the second.
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socket pair for the terminal".into())
}

/// Receive the pty master sent with SCM_RIGHTS (what `console::send_master` sends).
pub fn recv_master(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("receive the pty master", e)),
            Ok(m) => m,
        };
        let mut master = None;
        for c in msg
            .cmsgs()
            .map_err(|e| Error::sys("receive the pty master", e))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor for us.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    master.get_or_insert(fd);
                }
            }
        }
        return master.ok_or_else(|| {
            Error::failed(
                Stage::Terminal,
                "the container's process sent no pty master (it exited early)".into(),
            )
        });
    }
}

/// The caller's terminal in raw mode; the previous settings return on drop.
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd) -> Result<RawMode> {
        let saved = termios::tcgetattr(fd).ctx(|| "read terminal settings".into())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ctx(|| "set raw terminal mode".into())?;
        Ok(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: stdin stays open for the life of the process.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSADRAIN, &self.saved);
    }
}

/// Copy the window size of `from` (the caller's tty) to `to` (the pty master);
/// the kernel then signals SIGWINCH to the pty's foreground process group.
pub fn copy_size(from: BorrowedFd, to: BorrowedFd) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ on terminal descriptors with a valid struct.
    unsafe {
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The caller's window size (rows, columns), if stdin is a terminal.
pub fn caller_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ with a valid struct.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl flag updates on a descriptor we hold.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// Read what is there; None means end of file or a dead pty (EIO), Some(0) nothing now.
fn read_some(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            return Some(n as usize);
        }
        if n == 0 {
            return None;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Some(0),
            _ => return None,
        }
    }
}

/// Write all of `data`, waiting on a full non-blocking descriptor.
fn write_all(fd: RawFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        // SAFETY: writing from our buffer.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n > 0 {
            data = &data[n as usize..];
            continue;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut p, 1, 1000) };
            }
            _ => return false,
        }
    }
    true
}

/// The exit code of a reaped child, shell style (128+signal when killed).
pub fn exit_code(st: WaitStatus) -> Option<i32> {
    match st {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Relay between the caller's terminal and `master` until `child` exits, passing
/// the signals of `set` (already blocked by the caller) on to `child`, as runc
/// does: SIGCHLD reaps, SIGWINCH resizes, SIGURG is not passed.
/// Returns the child's exit code.
pub fn relay(master: OwnedFd, child: Pid, set: &SigSet) -> Result<i32> {
    let stdin = std::io::stdin();
    let stdin_fd = stdin.as_fd();
    let _raw = RawMode::enter(stdin_fd)?;
    copy_size(stdin_fd, master.as_fd());
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .ctx(|| "signalfd".into())?;
    let m = master.as_raw_fd();
    set_nonblocking(m);
    let out = libc::STDOUT_FILENO;
    let mut buf = vec![0u8; 32 * 1024];
    let mut stdin_open = true;
    let mut master_open = true;
    let code = 'outer: loop {
        let mut fds = [
            libc::pollfd {
                fd: sfd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if master_open { m } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { stdin_fd.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: valid pollfd array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::failed(
                Stage::Terminal,
                format!("terminal relay: poll: {}", std::io::Error::last_os_error()),
            ));
        }
        if fds[1].revents != 0 {
            match read_some(m, &mut buf) {
                Some(k) if k > 0 => {
                    if !write_all(out, &buf[..k]) {
                        master_open = false;
                    }
                }
                Some(_) => {}
                None => master_open = false,
            }
        }
        if fds[2].revents != 0 {
            match read_some(stdin_fd.as_raw_fd(), &mut buf) {
                Some(k) if k > 0 => {
                    if !write_all(m, &buf[..k]) {
                        stdin_open = false;
                    }
                }
                Some(_) => {}
                None => stdin_open = false,
            }
        }
        if fds[0].revents != 0 {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => loop {
                        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                            Ok(WaitStatus::StillAlive) => break,
                            Ok(st) => {
                                if let Some(c) = exit_code(st) {
                                    break 'outer c;
                                }
                            }
                            Err(nix::errno::Errno::EINTR) => {}
                            Err(_) => break 'outer 255,
                        }
                    },
                    Signal::SIGWINCH => copy_size(stdin_fd, master.as_fd()),
                    Signal::SIGURG => {}
                    s => {
                        let _ = nix::sys::signal::kill(child, s);
                    }
                }
            }
        }
    };
    // What the process wrote just before exiting is still in the pty.
    if master_open {
        while let Some(k) = read_some(m, &mut buf) {
            if k == 0 || !write_all(out, &buf[..k]) {
                break;
            }
        }
    }
    Ok(code)
}
