//! The container's terminal: a pty from the container's own devpts, whose master
//! goes to the caller over `--console-socket` (runc's protocol: SCM_RIGHTS).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use kos_security::path as safe;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Error, Result, Stage};
use crate::sys::mount as sys_mount;

/// Open a pty pair in the container (after pivot_root).
pub fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain open of a path literal.
    let m = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if m < 0 {
        return Err(Error::failed(
            Stage::Terminal,
            format!("open /dev/ptmx: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: fresh descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    // SAFETY: valid pty master.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
        return Err(Error::failed(
            Stage::Terminal,
            format!("unlockpt: {}", std::io::Error::last_os_error()),
        ));
    }
    // TIOCGPTPEER opens the peer through the master itself, immune to path games in /dev/pts.
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: ioctl on a pty master returning a new descriptor.
    let s = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER as _,
            libc::O_RDWR | libc::O_NOCTTY,
        )
    };
    if s < 0 {
        return Err(Error::failed(
            Stage::Terminal,
            format!("open pty peer: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: fresh descriptor.
    Ok((master, unsafe { OwnedFd::from_raw_fd(s) }))
}

pub fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid tty fd and winsize.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Hand the master to whoever listens on the console socket.
pub fn send_master(socket: &OwnedFd, master: &OwnedFd) -> Result<()> {
    let name = b"/dev/ptmx";
    let iov = [IoSlice::new(name)];
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::sys("send pty master over console socket", e))?;
    Ok(())
}

/// Make the slave our controlling terminal and stdio, and bind it at /dev/console.
pub fn become_tty(slave: &OwnedFd) -> Result<()> {
    attach_tty(slave)?;
    let target = console_target()?;
    sys_mount(
        Some(&safe::proc_fd_path(slave)),
        &safe::proc_fd_path(&target),
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(|e| Error::failed_by(Stage::Terminal, format!("bind /dev/console: {e}"), e))?;
    Ok(())
}

/// The mount point for the pty: /dev/console itself, never what a symlink planted there
/// names (CVE-2025-52565). Anything but a regular file or a character device is replaced
/// by an empty regular file.
fn console_target() -> Result<OwnedFd> {
    use nix::errno::Errno;
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstat, Mode};
    let dev = safe::open_in_root(
        Path::new("/"),
        Path::new("/dev"),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
    )?;
    for _ in 0..16 {
        match openat(
            &dev,
            "console",
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| Error::sys("fstat /dev/console", e))?;
                let kind = st.st_mode & libc::S_IFMT;
                if kind == libc::S_IFREG || kind == libc::S_IFCHR {
                    return Ok(fd);
                }
                match nix::unistd::unlinkat(
                    &dev,
                    "console",
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                ) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(Error::sys("replace /dev/console", e)),
                }
            }
            Err(Errno::ENOENT) => {
                match openat(
                    &dev,
                    "console",
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_RDONLY
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                ) {
                    Ok(_) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(Error::sys("create /dev/console", e)),
                }
            }
            Err(e) => return Err(Error::sys("open /dev/console", e)),
        }
    }
    Err(Error::failed(
        Stage::Terminal,
        "/dev/console keeps changing under us".into(),
    ))
}

/// Make the slave our controlling terminal and stdio (an exec'd process: the
/// container's /dev/console stays the init's).
pub fn attach_tty(slave: &OwnedFd) -> Result<()> {
    // SAFETY: ioctl and dup2 on descriptors we own.
    unsafe {
        if libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
            return Err(Error::failed(
                Stage::Terminal,
                format!("set controlling tty: {}", std::io::Error::last_os_error()),
            ));
        }
        for fd in 0..3 {
            if libc::dup2(slave.as_raw_fd(), fd) < 0 {
                return Err(Error::failed(
                    Stage::Terminal,
                    format!("dup2 tty: {}", std::io::Error::last_os_error()),
                ));
            }
        }
    }
    Ok(())
}

/// With process.terminal: a pty from the container's devpts, its master sent over
/// the console socket, the slave made our terminal (and, for the init, /dev/console).
pub fn setup_terminal(
    process: &oci_spec::runtime::Process,
    console_socket: Option<&OwnedFd>,
    bind_console: bool,
) -> Result<()> {
    if !process.terminal().unwrap_or(false) {
        return Ok(());
    }
    let sock = console_socket.ok_or_else(|| {
        Error::failed(
            Stage::Terminal,
            "process.terminal is true but no --console-socket was given".into(),
        )
    })?;
    let (master, slave) = open_pty()?;
    if let Some(sz) = process.console_size() {
        set_size(&slave, sz.height() as u16, sz.width() as u16);
    }
    send_master(sock, &master)?;
    drop(master);
    if bind_console {
        become_tty(&slave)
    } else {
        attach_tty(&slave)
    }
}
