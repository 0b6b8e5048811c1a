//! maskedPaths and readonlyPaths, applied inside the rootfs before pivot_root so
//! the /dev/null we bind over masked files is the host's, not one the container could swap.

use std::os::fd::OwnedFd;
use std::path::Path;

use kos_security::path as safe;

use super::mount::{set_recursive_attrs, RootDir};
use super::options::attr;
use crate::error::{Error, Result, Stage};
use crate::sys::mount as sys_mount;

fn open_nofollow(root: &RootDir, p: &Path) -> Result<Option<OwnedFd>> {
    match root.open(p, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_dir(fd: &OwnedFd) -> Result<bool> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| Error::sys("fstat", e))?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Hide each path: directories under an empty read-only tmpfs, files under /dev/null.
pub fn mask(root: &RootDir, paths: &[String], host_null: &OwnedFd) -> Result<()> {
    for p in paths {
        let Some(fd) = open_nofollow(root, Path::new(p))? else {
            continue;
        };
        let target = safe::proc_fd_path(&fd);
        let r = if is_dir(&fd)? {
            sys_mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                libc::MS_RDONLY,
                Some("size=0k,nr_inodes=1"),
            )
        } else {
            sys_mount(
                Some(&safe::proc_fd_path(host_null)),
                &target,
                None,
                libc::MS_BIND,
                None,
            )
        };
        r.map_err(|e| Error::failed_by(Stage::Mounts, format!("masking {p}: {e}"), e))?;
    }
    Ok(())
}

/// Make each path (and every mount below it) read-only.
pub fn readonly(root: &RootDir, paths: &[String]) -> Result<()> {
    for p in paths {
        let Some(fd) = open_nofollow(root, Path::new(p))? else {
            continue;
        };
        let target = safe::proc_fd_path(&fd);
        sys_mount(
            Some(&target),
            &target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|e| Error::failed_by(Stage::Mounts, format!("readonly path {p}: {e}"), e))?;
        let Some(mounted) = open_nofollow(root, Path::new(p))? else {
            continue;
        };
        set_recursive_attrs(&mounted, attr::RDONLY, 0)
            .map_err(|e| Error::failed_by(Stage::Mounts, format!("readonly path {p}: {e}"), e))?;
    }
    Ok(())
}

/// Host /dev/null, checked to be the real character device before we trust it.
pub fn open_host_null() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open host /dev/null", e))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| Error::sys("fstat /dev/null", e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(Error::failed(
            Stage::Mounts,
            "host /dev/null is not the null device".into(),
        ));
    }
    Ok(fd)
}
