//! overlayfs mounts of a layer stack.
//!
//! The new mount API (fsopen/fsconfig) takes each lower directory as its own
//! `lowerdir+` parameter, so the number of layers is not bounded by the size
//! of one mount option string. Older kernels get the classic mount(2) call
//! when the option string fits in a page.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tracing::debug;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn c(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount argument"))
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn fsconfig_string(fd: &OwnedFd, key: &str, value: &CString) -> io::Result<()> {
    let k = c(key)?;
    // SAFETY: valid fs context fd and C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts an overlay of `lowers` (top first) with `upper` and `work` on `target`.
pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> io::Result<()> {
    mount_with(lowers, upper, work, target, false)
}

/// [`mount`], optionally `volatile`: overlayfs then never syncs the upper layer, not even
/// at unmount, where a normal overlay syncs the whole upper filesystem (tens of ms on a
/// busy disk). Only for an upper layer that is thrown away with its container: after a
/// crash the kernel refuses to mount a volatile upper layer again.
pub fn mount_with(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    match mount_new_api(lowers, upper, work, target, volatile) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) => {
            debug!(error = %e, "new mount API failed; trying mount(2)");
            mount_legacy(lowers, upper, work, target, volatile)
        }
        Err(e) => Err(e),
    }
}

fn fsconfig_flag(fd: &OwnedFd, key: &str) -> io::Result<()> {
    let k = c(key)?;
    // SAFETY: valid fs context fd and C string; a flag takes no value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            k.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mount_new_api(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    let fstype = c("overlay")?;
    // SAFETY: valid C string.
    let fsfd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    if fsfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel.
    let fsfd = unsafe { OwnedFd::from_raw_fd(fsfd as i32) };
    for l in lowers {
        fsconfig_string(&fsfd, "lowerdir+", &cpath(l)?)?;
    }
    fsconfig_string(&fsfd, "upperdir", &cpath(upper)?)?;
    fsconfig_string(&fsfd, "workdir", &cpath(work)?)?;
    if volatile {
        fsconfig_flag(&fsfd, "volatile")?;
    }
    // SAFETY: valid fs context fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fsfd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid fs context fd.
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel.
    let mfd = unsafe { OwnedFd::from_raw_fd(mfd as i32) };
    let empty = c("")?;
    let t = cpath(target)?;
    // SAFETY: valid fds and C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mfd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mount_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> io::Result<()> {
    let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lower.join(":"),
        upper.display(),
        work.display(),
        if volatile { ",volatile" } else { "" }
    );
    if opts.len() >= 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} layers do not fit in one overlay mount option on this kernel",
                lowers.len()
            ),
        ));
    }
    let (src, fstype, data, t) = (c("overlay")?, c("overlay")?, c(&opts)?, cpath(target)?);
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            t.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Detaches the mount on `target`.
pub fn unmount(target: &Path) -> io::Result<()> {
    let t = cpath(target)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    Ok(())
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(a), Some(Ok(b))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    a.dev() != b.dev()
}
