//! Pod user namespaces (`userns_options` mode POD): one user namespace with the kubelet's
//! mappings, and the pod's network, IPC and UTS namespaces made inside it, so a container
//! that joins the user namespace first (as the runtime does) may still join them. All are
//! pinned as bind-mounted files in the pod's directory.
//!
//! A user namespace can only be entered by a single-threaded process, so a forked child
//! makes them all with one unshare() and waits until the server has written its id maps
//! and pinned its namespaces; then it is killed.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::namespaces::unpin;
use crate::error::{Error, Result};

/// One contiguous id range: container ids `container..container+len` are host ids
/// `host..host+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub container: u32,
    pub host: u32,
    pub len: u32,
}

impl Range {
    fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container, self.host, self.len)
    }
}

/// The pod's uid and gid ranges, checked: one contiguous range each, not empty, inside the
/// 32-bit id space on both sides, never mapping the host's root.
pub fn ranges(u: &cri::UserNamespace) -> Result<(Range, Range)> {
    Ok((range("uid", &u.uids)?, range("gid", &u.gids)?))
}

/// The ranges of a pod made with its own user namespace, from its config.
pub fn pod_ranges(c: &cri::PodSandboxConfig) -> Result<(Range, Range)> {
    let u = c
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref())
        .ok_or_else(|| Error::Internal {
            step: "reading the pod's user namespace",
            message: "the pod has a user namespace but its config has no mappings".into(),
        })?;
    ranges(u)
}

fn range(kind: &str, maps: &[cri::IdMapping]) -> Result<Range> {
    let bad =
        |why: String| Error::InvalidArgument(format!("pod user namespace {kind} mappings: {why}"));
    let [m] = maps else {
        return Err(bad(format!(
            "exactly one contiguous range is supported, got {}",
            maps.len()
        )));
    };
    // The kernel's own limit: ids are 32 bits, and (u32)-1 is never a valid id.
    let end = |start: u32| u64::from(start) + u64::from(m.length);
    if m.length == 0 {
        return Err(bad("length 0".into()));
    }
    if end(m.container_id) > u64::from(u32::MAX) || end(m.host_id) > u64::from(u32::MAX) {
        return Err(bad(format!(
            "{} {} {} runs past the 32-bit id space",
            m.container_id, m.host_id, m.length
        )));
    }
    if m.host_id == 0 {
        return Err(bad("the range would map the host's root (host id 0)".into()));
    }
    Ok(Range {
        container: m.container_id,
        host: m.host_id,
        len: m.length,
    })
}

/// The pins made: the user namespace and those of net/ipc/uts that were asked for.
#[derive(Debug, Default)]
pub struct Pins {
    pub user: PathBuf,
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

impl Pins {
    pub fn all(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.user)
            .chain(self.net.iter())
            .chain(self.ipc.iter())
            .chain(self.uts.iter())
    }
}

fn read_byte(fd: &OwnedFd) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: reading one byte into a local buffer from a descriptor we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return (n == 1).then_some(b[0]);
    }
}

/// Makes the pod's user namespace with `uid`/`gid` and, inside it, new net/ipc/uts
/// namespaces as asked; pins them under `dir` (`user`, `net`, `ipc`, `uts`). On failure
/// nothing is left.
pub fn create(dir: &Path, uid: Range, gid: Range, net: bool, ipc: bool, uts: bool) -> Result<Pins> {
    let pins = Pins {
        user: dir.join("user"),
        net: net.then(|| dir.join("net")),
        ipc: ipc.then(|| dir.join("ipc")),
        uts: uts.then(|| dir.join("uts")),
    };
    let mut flags = libc::CLONE_NEWUSER;
    if net {
        flags |= libc::CLONE_NEWNET;
    }
    if ipc {
        flags |= libc::CLONE_NEWIPC;
    }
    if uts {
        flags |= libc::CLONE_NEWUTS;
    }
    let (ready_r, ready_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("making a pipe for the pod's user namespace", e))?;
    // SAFETY: the child only makes raw system calls (unshare, write, pause) and never
    // returns into Rust code that could take a lock another thread held at fork.
    let child = match unsafe { fork() } {
        Err(e) => return Err(Error::sys("forking for the pod's user namespace", e)),
        Ok(ForkResult::Child) => unsafe {
            let ok = libc::unshare(flags) == 0;
            let b: u8 = if ok { b'1' } else { b'0' };
            libc::write(ready_w.as_raw_fd(), (&b as *const u8).cast(), 1);
            loop {
                libc::pause();
            }
        },
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(ready_w);
    let made = pin_from(child, &ready_r, &pins, uid, gid);
    let _ = kill(child, Signal::SIGKILL);
    let _ = waitpid(child, None);
    if let Err(e) = made {
        for p in pins.all() {
            let _ = unpin(p);
        }
        return Err(e);
    }
    Ok(pins)
}

fn pin_from(child: Pid, ready: &OwnedFd, pins: &Pins, uid: Range, gid: Range) -> Result<()> {
    if read_byte(ready) != Some(b'1') {
        return Err(Error::Internal {
            step: "unsharing the pod's user namespace",
            message: "the helper process could not unshare its namespaces".into(),
        });
    }
    let proc = PathBuf::from(format!("/proc/{child}"));
    for (file, r) in [("uid_map", uid), ("gid_map", gid)] {
        let p = proc.join(file);
        std::fs::write(&p, r.map_line())
            .map_err(|e| Error::io("writing the pod's id mappings to", &p, e))?;
    }
    for (pin, ns) in [
        (Some(&pins.user), "user"),
        (pins.net.as_ref(), "net"),
        (pins.ipc.as_ref(), "ipc"),
        (pins.uts.as_ref(), "uts"),
    ] {
        let Some(pin) = pin else { continue };
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(pin)
            .map_err(|e| Error::io("creating pin file", pin, e))?;
        let src = proc.join("ns").join(ns);
        mount(
            Some(src.as_path()),
            pin.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys(format!("pinning the pod's {ns} namespace"), e))?;
    }
    Ok(())
}

/// `mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn cpath(p: &Path) -> Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidArgument(format!("path {} has a NUL byte", p.display())))
}

/// The root a container of a pod with its own user namespace runs on: at `target`, a
/// clone of the rootfs mount idmapped through the pod's user namespace (files the image
/// owns as root are the pod's root inside, host id N outside), or, where the filesystem
/// refuses idmapping (overlayfs does: it takes idmapped layers, not an idmapped mount of
/// itself), the rootfs itself with its owners shifted into the pod's ranges.
pub fn rootfs_for_pod(
    rootfs: &Path,
    target: &Path,
    userns: &Path,
    uid: Range,
    gid: Range,
) -> Result<PathBuf> {
    match idmapped_rootfs(rootfs, target, userns) {
        Ok(()) => Ok(target.to_path_buf()),
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => {
            remove_idmapped_rootfs(target);
            shift_owners(rootfs, uid, gid)?;
            Ok(rootfs.to_path_buf())
        }
        Err(e) => Err(e),
    }
}

fn shift(id: u32, r: Range) -> u32 {
    if id >= r.container && u64::from(id) < u64::from(r.container) + u64::from(r.len) {
        r.host + (id - r.container)
    } else {
        id
    }
}

/// Gives every file of the container's own rootfs (its writable overlay copies what it
/// changes) the owner its owner id has in the pod's ranges; set-id bits, which chown
/// clears, are put back. Stays on the rootfs's filesystem and never follows symlinks.
fn shift_owners(root: &Path, uid: Range, gid: Range) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let step = "shifting the rootfs's owners into the pod's user namespace";
    let dev = std::fs::symlink_metadata(root)
        .map_err(|e| Error::io(step, root, e))?
        .dev();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).map_err(|e| Error::io(step, &p, e))?;
        if md.dev() != dev {
            continue;
        }
        let (u, g) = (shift(md.uid(), uid), shift(md.gid(), gid));
        if (u, g) != (md.uid(), md.gid()) {
            std::os::unix::fs::lchown(&p, Some(u), Some(g)).map_err(|e| Error::io(step, &p, e))?;
            if md.is_file() && md.mode() & 0o6000 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                    .map_err(|e| Error::io(step, &p, e))?;
            }
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p).map_err(|e| Error::io(step, &p, e))? {
                stack.push(e.map_err(|e| Error::io(step, &p, e))?.path());
            }
        }
    }
    Ok(())
}

/// Mounts at `target` a clone of the rootfs mount idmapped through `userns`.
fn idmapped_rootfs(rootfs: &Path, target: &Path, userns: &Path) -> Result<()> {
    let step = "idmapping the container's rootfs for the pod's user namespace";
    let ns = std::fs::File::open(userns).map_err(|e| Error::io("opening", userns, e))?;
    let src = cpath(rootfs)?;
    // SAFETY: open_tree with a valid path; the result is a new descriptor we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(Error::io(
            "cloning the container's rootfs mount (open_tree)",
            rootfs,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just returned by open_tree and is owned by nobody else.
    let tree = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr on our detached tree with a correctly sized mount_attr.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(Error::io(step, rootfs, std::io::Error::last_os_error()));
    }
    std::fs::create_dir_all(target).map_err(|e| Error::io("creating", target, e))?;
    let dst = cpath(target)?;
    // SAFETY: move_mount of our detached tree onto a directory we made.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(Error::io(step, target, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Unmounts an idmapped rootfs made by [`idmapped_rootfs`]; absent is fine.
pub fn remove_idmapped_rootfs(target: &Path) {
    let _ = unpin_dir(target);
}

fn unpin_dir(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("unmounting {}", target.display()), e)),
    }
    match std::fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", target, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_inside_the_range_only() {
        let r = Range {
            container: 0,
            host: 65536,
            len: 65536,
        };
        assert_eq!(shift(0, r), 65536);
        assert_eq!(shift(1000, r), 66536);
        assert_eq!(shift(65536, r), 65536);
    }

    fn m(c: u32, h: u32, l: u32) -> cri::IdMapping {
        cri::IdMapping {
            container_id: c,
            host_id: h,
            length: l,
        }
    }

    #[test]
    fn one_range_each() {
        let u = cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![m(0, 65536, 65536)],
            gids: vec![m(0, 131072, 65536)],
        };
        let (uid, gid) = ranges(&u).expect("valid");
        assert_eq!(uid.map_line(), "0 65536 65536\n");
        assert_eq!(gid.host, 131072);
    }

    #[test]
    fn refused_ranges() {
        for (uids, why) in [
            (vec![], "exactly one"),
            (vec![m(0, 65536, 1), m(1, 70000, 1)], "exactly one"),
            (vec![m(0, 65536, 0)], "length 0"),
            (vec![m(0, u32::MAX - 10, 65536)], "32-bit"),
            (vec![m(u32::MAX - 1, 65536, 2)], "32-bit"),
            (vec![m(0, 0, 65536)], "host's root"),
        ] {
            let u = cri::UserNamespace {
                mode: cri::NamespaceMode::Pod as i32,
                uids,
                gids: vec![m(0, 65536, 65536)],
            };
            let e = ranges(&u).expect_err(why).to_string();
            assert!(e.contains(why) && e.contains("uid"), "{e}");
        }
    }
}
