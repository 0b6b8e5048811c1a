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

use self::mount::{sys_mount, MountCtx};
use crate::error::{Error, Result};

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
        .map_err(|e| Error::Setup(format!("set / propagation: {e}")))?;
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
    .map_err(|e| Error::Setup(format!("bind rootfs {}: {e}", ctx.rootfs.display())))?;
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
        devices::create_all(ctx.rootfs, devices, in_userns, &mounted)?;
        let has_devpts = mounts
            .iter()
            .any(|m| m.destination() == Path::new("/dev/pts"));
        devices::symlinks(ctx.rootfs, has_devpts)?;
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
            Err(e) => return Err(Error::Setup(format!("make {} private: {e}", d.display()))),
        }
    }
    Ok(())
}

/// Masking and read-only paths, then the switch of root.
pub fn finish(rootfs: &Path, spec: &Spec, no_pivot: bool) -> Result<()> {
    if let Some(linux) = spec.linux() {
        if let Some(masked) = linux.masked_paths().as_deref().filter(|m| !m.is_empty()) {
            let null = paths::open_host_null()?;
            paths::mask(rootfs, masked, &null)?;
        }
        if let Some(ro) = linux.readonly_paths() {
            paths::readonly(rootfs, ro)?;
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
            .map_err(|e| Error::Setup(format!("set / propagation: {e}")))?;
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
