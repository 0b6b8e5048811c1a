//! Idmapped bind mounts (runtime-spec 1.2: a mount's uidMappings/gidMappings, or the
//! "idmap"/"ridmap" options): the source tree is cloned detached, given the id
//! mapping of a throwaway user namespace with mount_setattr(MOUNT_ATTR_IDMAP), and
//! moved onto the target.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::LinuxIdMapping;

use crate::error::{Error, Result, Stage};

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn os_err(what: &str) -> Error {
    Error::failed(
        Stage::Mounts,
        format!("{what}: {}", std::io::Error::last_os_error()),
    )
}

/// A user namespace holding the mappings, alive as long as the returned fd. Made by
/// the runtime before the clone: only it sees the helper process in its own /proc.
pub fn userns_with(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let pid = crate::sys::raw_clone(libc::CLONE_NEWUSER as libc::c_ulong)
        .map_err(|e| Error::failed_by(Stage::Mounts, format!("clone: {e}"), e))?;
    if pid == 0 {
        // Only its namespace is wanted; it waits to be killed.
        loop {
            // SAFETY: pause has no arguments.
            unsafe { libc::pause() };
        }
    }
    let result = (|| {
        let fmt = |m: &[LinuxIdMapping]| {
            m.iter()
                .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
                .collect::<String>()
        };
        for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
            let p = format!("/proc/{pid}/{file}");
            std::fs::write(&p, fmt(maps)).map_err(|e| {
                Error::failed_by(
                    Stage::Mounts,
                    format!("idmapped mount: write {file}: {e}"),
                    e,
                )
            })?;
        }
        let f = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(|e| {
            Error::failed_by(
                Stage::Mounts,
                format!("idmapped mount: open user namespace: {e}"),
                e,
            )
        })?;
        Ok(OwnedFd::from(f))
    })();
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(p, None);
    result
}

/// For each spec mount that is idmapped (its own uidMappings/gidMappings, or the
/// container's for a bare "idmap" option), its source tree cloned and mapped, ready
/// to be attached. Made on the runtime's side: only the host's user namespace may
/// create idmapped mounts of host filesystems.
pub fn prepare_all(spec: &oci_spec::runtime::Spec, bundle: &Path) -> Result<Vec<Option<OwnedFd>>> {
    let linux = spec.linux().as_ref();
    let own_uid = linux
        .and_then(|l| l.uid_mappings().as_deref())
        .unwrap_or(&[]);
    let own_gid = linux
        .and_then(|l| l.gid_mappings().as_deref())
        .unwrap_or(&[]);
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let opts = super::options::parse(m.options().as_deref().unwrap_or(&[]));
        let uid = m.uid_mappings().as_deref().unwrap_or(&[]);
        let gid = m.gid_mappings().as_deref().unwrap_or(&[]);
        let (uid, gid) = if uid.is_empty() && gid.is_empty() {
            (own_uid, own_gid)
        } else {
            (uid, gid)
        };
        let wanted = opts.idmap || !m.uid_mappings().as_deref().unwrap_or(&[]).is_empty();
        if !wanted {
            out.push(None);
            continue;
        }
        if uid.is_empty() || gid.is_empty() {
            return Err(Error::invalid_in(
                Stage::Mounts,
                "mounts.uidMappings",
                format!(
                    "mount {}: an idmapped mount needs both uidMappings and gidMappings",
                    m.destination().display()
                ),
            ));
        }
        let userns = userns_with(uid, gid)?;
        let src = m.source().as_ref().ok_or_else(|| {
            Error::invalid_in(
                Stage::Mounts,
                "mounts.source",
                format!("bind mount {} has no source", m.destination().display()),
            )
        })?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            bundle.join(src)
        };
        out.push(Some(mapped_tree(&src, opts.rbind || opts.ridmap, &userns)?));
    }
    Ok(out)
}

/// A detached clone of `source` carrying the id mapping of `userns`.
fn mapped_tree(source: &Path, recursive: bool, userns: &OwnedFd) -> Result<OwnedFd> {
    let src = CString::new(source.as_os_str().as_encoded_bytes()).map_err(|_| {
        Error::invalid_in(
            Stage::Mounts,
            "mounts.source",
            format!("{} contains a NUL", source.display()),
        )
    })?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: open_tree with a valid path.
    let raw = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, src.as_ptr(), flags) };
    if raw < 0 {
        return Err(os_err(&format!(
            "idmapped mount: clone {}",
            source.display()
        )));
    }
    // SAFETY: fresh descriptor.
    let tree = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let mapped = crate::sys::mount_setattr(&tree, recursive, MOUNT_ATTR_IDMAP, 0, Some(userns));
    if let Err(e) = mapped {
        return Err(Error::failed(
            Stage::Mounts,
            format!(
                "idmapped mount: map {} (the filesystem must support idmapped mounts): {e}",
                source.display()
            ),
        ));
    }
    Ok(tree)
}

/// Attach a mapped tree onto the already-resolved `target` (in the init).
pub fn attach(tree: &OwnedFd, target: &OwnedFd) -> Result<()> {
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: moving our detached tree onto the resolved target, both by descriptor.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(os_err("idmapped mount: attach"));
    }
    Ok(())
}
