//! Building the container's root filesystem inside its mount namespace.

pub mod copyup;
pub mod devices;
pub mod idmap;
pub mod mount;
pub mod options;
pub mod paths;
pub mod pivot;

use std::path::Path;

use oci_spec::runtime::Spec;

use self::mount::MountCtx;
use crate::error::{Error, Result, Stage};
use crate::sys::mount as sys_mount;

/// Everything between entering the mount namespace and the createContainer hooks.
pub fn prepare(ctx: &MountCtx, spec: &Spec, in_userns: bool) -> Result<()> {
    let linux = spec.linux().as_ref();
    // An unbindable / would refuse the bind of the rootfs below: that mode is set on the
    // new root after the switch, and until then nothing propagates out (rslave).
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation)
        .filter(|p| p & libc::MS_UNBINDABLE == 0)
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    // Nothing we mount may propagate to the host (unless the spec asked for shared).
    sys_mount(None, Path::new("/"), None, prop, None)
        .map_err(|e| Error::failed_by(Stage::Mounts, format!("set / propagation: {e}"), e))?;
    // A non-recursive or shared mode can leave the rootfs's parent mount shared,
    // which pivot_root refuses.
    let rslave_or_rprivate = prop & libc::MS_REC != 0 && prop & libc::MS_SHARED == 0;
    if !rslave_or_rprivate {
        let mode = if prop & libc::MS_SLAVE != 0 {
            libc::MS_SLAVE
        } else {
            libc::MS_PRIVATE
        };
        unshare_rootfs_parent(ctx.rootfs, mode)?;
    }
    // pivot_root needs the rootfs to be a mount point of its own.
    sys_mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| {
        Error::failed_by(
            Stage::Mounts,
            format!("bind rootfs {}: {e}", ctx.rootfs.display()),
            e,
        )
    })?;
    // Lookups from here on start at the bind mount just made.
    ctx.root.reopen();
    mount_and_devices(ctx, spec, in_userns)
}

/// Without a mount namespace the config's mounts are still made, as runc does; they land
/// in the host's namespace, so [`unmount_host_mounts`] takes them away on delete. The
/// propagation of the host's / and the rootfs are left alone: they are the host's.
pub fn prepare_in_host_ns(ctx: &MountCtx, spec: &Spec, in_userns: bool) -> Result<()> {
    mount_and_devices(ctx, spec, in_userns)
}

fn mount_and_devices(ctx: &MountCtx, spec: &Spec, in_userns: bool) -> Result<()> {
    let linux = spec.linux().as_ref();
    let mounts = spec.mounts().as_deref().unwrap_or(&[]);
    mount::mount_all(ctx, mounts)?;
    let dev_bound = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    });
    if !dev_bound {
        let devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
        let mounted: Vec<&Path> = mounts.iter().map(|m| m.destination().as_path()).collect();
        devices::create_all(&ctx.root, devices, in_userns, &mounted)?;
        let has_devpts = mounts
            .iter()
            .any(|m| m.destination() == Path::new("/dev/pts"));
        devices::symlinks(&ctx.root, has_devpts)?;
    }
    Ok(())
}

/// pivot_root refuses a new root whose parent mount is shared: make the mount
/// holding the rootfs (which may be the rootfs itself) a slave or private.
fn unshare_rootfs_parent(rootfs: &Path, mode: libc::c_ulong) -> Result<()> {
    let mut dir = Some(rootfs);
    while let Some(d) = dir {
        match sys_mount(None, d, None, mode, None) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => dir = d.parent(),
            Err(e) => {
                return Err(Error::failed(
                    Stage::Mounts,
                    format!("make {} private: {e}", d.display()),
                ))
            }
        }
    }
    Ok(())
}

/// Masking and read-only paths, then the switch of root.
pub fn finish(rootfs: &Path, spec: &Spec, no_pivot: bool) -> Result<()> {
    if let Some(linux) = spec.linux() {
        // Opened afresh: a createContainer hook may have mounted over the rootfs.
        let root = mount::RootDir::new(rootfs);
        if let Some(masked) = linux.masked_paths().as_deref().filter(|m| !m.is_empty()) {
            let null = paths::open_host_null()?;
            paths::mask(&root, masked, &null)?;
        }
        if let Some(ro) = linux.readonly_paths() {
            paths::readonly(&root, ro)?;
        }
    }
    if no_pivot {
        pivot::move_root(rootfs)?;
    } else {
        pivot::pivot(rootfs)?;
    }
    let prop = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation);
    if let Some(p) = prop.filter(|p| p & (libc::MS_SHARED | libc::MS_UNBINDABLE) != 0) {
        sys_mount(None, Path::new("/"), None, p, None)
            .map_err(|e| Error::failed_by(Stage::Mounts, format!("set / propagation: {e}"), e))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        pivot::readonly_root()?;
    }
    Ok(())
}

/// Detach every mount strictly below `rootfs` in our mount namespace, deepest first:
/// what a container without a mount namespace of its own mounted in the host's. The
/// rootfs itself (perhaps an engine's overlay) is not ours and stays.
pub fn unmount_host_mounts(rootfs: &Path) -> Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("/proc/self/mountinfo", e))?;
    let mut points: Vec<std::path::PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(unescape_octal(p)))
        .filter(|p| p.starts_with(rootfs) && p != rootfs)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut first_err = None;
    for p in points {
        // Stacked mounts at one point come off one by one; EINVAL once none is left.
        while let Ok(()) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {}
        if is_mount_point_in(&p) {
            first_err.get_or_insert_with(|| {
                Error::failed(
                    Stage::Mounts,
                    format!("unmount {}: still mounted", p.display()),
                )
            });
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn is_mount_point_in(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| {
        t.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| Path::new(&unescape_octal(m)) == p)
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::unescape_octal;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_octal("/a\\040b"), "/a b");
        assert_eq!(unescape_octal("/plain"), "/plain");
        assert_eq!(unescape_octal("/x\\134y"), "/x\\y");
    }
}
