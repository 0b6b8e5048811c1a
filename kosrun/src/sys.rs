//! Raw system calls the runtime makes that libc and nix do not wrap (or wrap in a way we
//! cannot use), and the one kill-and-reap helper. This is the bottom layer: it depends on
//! nothing else in the crate, and everything above calls it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// clone(2) without a new stack: like fork, the child returns 0 on a copy of our stack.
/// kosrun is single-threaded, so nothing is left locked in the child.
pub fn raw_clone(flags: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: fork-like clone in a single-threaded process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as i32)
}

/// renameat2(2) with `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`), through the system
/// call itself: nix wraps it only for glibc, and kosrun is also built against musl.
pub fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let from = path_cstring(from)?;
    let to = path_cstring(to)?;
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn path_cstring(p: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// Linux 5.7's clone3 flag (include/uapi/linux/sched.h), above the 32 bits of clone's flags.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// [`raw_clone`] through clone3 with `CLONE_INTO_CGROUP`: the child starts inside the
/// cgroup2 directory `cgroup_dir` names, with no migration afterwards.
pub fn raw_clone_into_cgroup(flags: libc::c_ulong, cgroup_dir: RawFd) -> io::Result<i32> {
    // SAFETY: clone_args is plain old data; zero is "unset" for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | CLONE_INTO_CGROUP;
    // clone3 refuses an exit signal with CLONE_PARENT (EINVAL): the child of a sibling
    // signals our parent with the signal our own exit would send, SIGCHLD for kosrun's
    // intermediate process.
    args.exit_signal = if flags & libc::CLONE_PARENT as libc::c_ulong != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    args.cgroup = cgroup_dir as u64;
    // SAFETY: fork-like clone3 (no stack, no CLONE_VM) in a single-threaded process; args
    // outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as i32)
}

/// Close a cloned child's copies of descriptors the parent keeps, so it sees EOF on a
/// channel when the parent goes away.
pub fn close_fds(fds: &[i32]) {
    for fd in fds {
        // SAFETY: closing this process's copy of a descriptor number.
        unsafe { libc::close(*fd) };
    }
}

/// mount(2) with optional source, type and data.
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let to_c = |s: &str| CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let src = source.map(|s| to_c(&s.to_string_lossy())).transpose()?;
    let tgt = to_c(&target.to_string_lossy())?;
    let typ = fstype.map(to_c).transpose()?;
    let dat = data.map(to_c).transpose()?;
    // SAFETY: every pointer is a valid NUL-terminated string or null.
    let rc = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            tgt.as_ptr(),
            typ.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            dat.as_ref().map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount at `fd` (AT_EMPTY_PATH), recursively or not.
pub fn mount_setattr(
    fd: &OwnedFd,
    recursive: bool,
    set: u64,
    clear: u64,
    userns_fd: Option<&OwnedFd>,
) -> io::Result<()> {
    let mut a = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns_fd.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let mut at = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        at |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, attr struct of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            at,
            &mut a as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// setns(2) through a pidfd: every namespace in `flags` at once, user first by the
/// kernel's own ordering, or none if any fails.
pub fn setns_pidfd(pidfd: &OwnedFd, flags: libc::c_int) -> io::Result<()> {
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: setns on a pidfd we hold, with namespace flags only.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

/// pidfd_send_signal(2): the signal reaches exactly the process the pidfd names.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: signalling through a pidfd we own, no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait up to `ms` for the process behind a pidfd to exit.
pub fn pidfd_wait_exit(pidfd: &OwnedFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Whether a child of ours has exited (or cannot be waited for), without reaping it.
pub fn child_exited(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain old data; zero means "nothing waitable".
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid siginfo_t to fill.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: si_pid is set by waitid when it returns a child.
    rc != 0 || unsafe { info.si_pid() } != 0
}

/// SIGKILL a child of ours and reap it.
pub fn kill_and_reap(pid: i32) {
    let p = Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(p, None);
}

/// A child that must not outlive a failed setup: killed and reaped on drop unless
/// [`KillOnDrop::disarm`]ed once the setup has succeeded.
pub struct KillOnDrop(Option<i32>);

impl KillOnDrop {
    pub fn new(pid: i32) -> KillOnDrop {
        KillOnDrop(Some(pid))
    }

    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            kill_and_reap(pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cgroup2 hierarchy of this host: the unified mount of a hybrid host, or the root.
    fn cgroup2_root() -> Option<&'static Path> {
        ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|p| {
                nix::sys::statfs::statfs(*p)
                    .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            })
    }

    struct RmDir(std::path::PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    /// With CLONE_PARENT (kosrun's intermediate process cloning the init) clone3 places
    /// the child in the cgroup too, and it is our sibling's child, ours to reap, which
    /// gets SIGCHLD: the exit signal comes from the cloning process, never EINVAL.
    #[test]
    fn clone_into_cgroup_with_clone_parent() {
        let Some(root) = cgroup2_root() else {
            panic!("no cgroup2 hierarchy on this host");
        };
        let dir = RmDir(root.join(format!("kosrun-clone-parent-{}", std::process::id())));
        std::fs::create_dir(&dir.0).expect("mkdir cgroup");
        let fd = std::fs::File::open(&dir.0).expect("open cgroup dir");
        let rel = format!(
            "0::/{}",
            dir.0.strip_prefix(root).expect("below root").display()
        );
        let (rd, wr) = nix::unistd::pipe().expect("pipe");
        // SAFETY: fork in a test: the child only makes system calls and exits.
        let mid = unsafe { libc::fork() };
        assert!(mid >= 0);
        if mid == 0 {
            let flags = libc::CLONE_PARENT as libc::c_ulong;
            let code = match raw_clone_into_cgroup(flags, fd.as_raw_fd()) {
                Ok(0) => {
                    let me = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
                    // SAFETY: leave the forked test harness without unwinding.
                    unsafe { libc::_exit(if me.lines().any(|l| l == rel) { 0 } else { 3 }) }
                }
                Ok(pid) => match nix::unistd::write(&wr, &pid.to_ne_bytes()) {
                    Ok(4) => 0,
                    _ => 4,
                },
                Err(_) => 2,
            };
            // SAFETY: as above.
            unsafe { libc::_exit(code) }
        }
        drop(wr);
        let mut status = 0;
        // SAFETY: reaping our own child.
        assert_eq!(unsafe { libc::waitpid(mid, &mut status, 0) }, mid);
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "clone3 with CLONE_PARENT failed"
        );
        let mut pid = [0u8; 4];
        assert_eq!(nix::unistd::read(&rd, &mut pid), Ok(4));
        let pid = i32::from_ne_bytes(pid);
        // The grandchild is ours (CLONE_PARENT): reap it and read its verdict.
        // SAFETY: waiting for a child of ours.
        assert_eq!(
            unsafe { libc::waitpid(pid, &mut status, 0) },
            pid,
            "the init-like child is not ours to reap"
        );
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "the child did not start in {rel}"
        );
    }
}
