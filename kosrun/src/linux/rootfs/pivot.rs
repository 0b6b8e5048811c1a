//! Switching the process's root to the rootfs.

use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, fchdir, pivot_root};

use crate::error::{Error, Result, Stage, SysContext};
use crate::sys::mount as sys_mount;

/// pivot_root into `rootfs` and detach the old root. Stacking the old root on the
/// new one with pivot_root(".", ".") needs no directory inside the rootfs for it.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /".into())?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open rootfs {}", rootfs.display()))?;
    fchdir(&new).ctx(|| "chdir to rootfs".into())?;
    pivot_root(".", ".").ctx(|| format!("pivot_root to {}", rootfs.display()))?;
    fchdir(&old).ctx(|| "chdir to old root".into())?;
    // Keep the unmount from propagating back to the host's mounts.
    sys_mount(
        None,
        Path::new("."),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
    .map_err(|e| Error::failed_by(Stage::Pivot, format!("make old root slave: {e}"), e))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).ctx(|| "detach old root".into())?;
    chdir("/").ctx(|| "chdir /".into())
}

/// `--no-pivot`: move the rootfs over / and chroot into it.
pub fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    sys_mount(Some(rootfs), Path::new("/"), None, libc::MS_MOVE, None)
        .map_err(|e| Error::failed_by(Stage::Pivot, format!("move rootfs to /: {e}"), e))?;
    nix::unistd::chroot(".").ctx(|| "chroot".into())?;
    chdir("/").ctx(|| "chdir /".into())
}

/// Remount / read-only, keeping the per-mount flags it has. Done by path ("/" is the
/// rootfs by now), so it needs no /proc inside the container.
pub fn readonly_root() -> Result<()> {
    let st = nix::sys::statvfs::statvfs("/").ctx(|| "statvfs /".into())?;
    let keep = st.flags().bits() as libc::c_ulong
        & (libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | libc::MS_NOATIME
            | libc::MS_NODIRATIME
            | libc::MS_RELATIME);
    sys_mount(
        None,
        Path::new("/"),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
        None,
    )
    .map_err(|e| Error::failed_by(Stage::Pivot, format!("remount / read-only: {e}"), e))
}
