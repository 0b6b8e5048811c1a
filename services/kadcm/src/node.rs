//! Device nodes inside a running container: made and removed from a thread that has entered
//! the container's mount namespace (through /proc/PID/ns/mnt), so the node lands in the
//! container's own /dev, whatever is mounted there, and every path resolves inside the
//! container's root.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::device::NodeType;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Absolute path inside the container, under /dev.
    pub path: PathBuf,
    pub node_type: NodeType,
    pub major: u32,
    pub minor: u32,
    /// Permission bits (0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl NodeSpec {
    fn check(&self) -> Result<()> {
        let ok = self.path.starts_with("/dev")
            && self.path != Path::new("/dev")
            && self
                .path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !ok {
            return Err(Error::HotplugInvalid(format!(
                "node path {} must be a plain path below /dev",
                self.path.display()
            )));
        }
        Ok(())
    }

    fn rdev(&self) -> u64 {
        libc::makedev(self.major, self.minor)
    }

    fn kind_bits(&self) -> libc::mode_t {
        match self.node_type {
            NodeType::Char => libc::S_IFCHR,
            NodeType::Block => libc::S_IFBLK,
        }
    }
}

fn open_mnt_ns(pid: i32) -> Result<OwnedFd> {
    let p = format!("/proc/{pid}/ns/mnt");
    std::fs::File::open(&p)
        .map(OwnedFd::from)
        .map_err(|source| Error::Hotplug {
            step: format!("open {p}"),
            pid,
            source,
        })
}

/// Runs `f` on a thread that has left kadcm's filesystem context and joined the mount
/// namespace of `pid` (its root and cwd become that namespace's root). The thread ends
/// afterwards, so nothing else ever runs in the container's namespace.
fn in_container<T: Send>(
    pid: i32,
    f: impl FnOnce() -> std::result::Result<T, (String, std::io::Error)> + Send,
) -> Result<T> {
    let ns = open_mnt_ns(pid)?;
    let herr = |step: &str, source| Error::Hotplug {
        step: step.to_string(),
        pid,
        source,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare/setns on this thread only; it touches no shared Rust state.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(herr("unshare(CLONE_FS)", std::io::Error::last_os_error()));
            }
            // SAFETY: as above; ns is a mount-namespace descriptor.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
                return Err(herr("setns(mnt)", std::io::Error::last_os_error()));
            }
            f().map_err(|(step, source)| herr(&step, source))
        })
        .join()
        .unwrap_or_else(|_| Err(herr("namespace thread", std::io::Error::other("panicked"))))
    })
}

fn cstr(p: &Path) -> std::result::Result<CString, (String, std::io::Error)> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        (
            format!("path {}", p.display()),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        )
    })
}

fn sys(step: String, r: libc::c_int) -> std::result::Result<(), (String, std::io::Error)> {
    if r == 0 {
        Ok(())
    } else {
        Err((step, std::io::Error::last_os_error()))
    }
}

/// Makes the node (and missing parent directories, 0755) inside the container. An existing
/// node for the same device is accepted (its mode and owner set again); anything else at the
/// path is an error and is left alone.
pub fn make(pid: i32, node: &NodeSpec) -> Result<()> {
    node.check()?;
    let node = node.clone();
    in_container(pid, move || {
        if let Some(parent) = node.path.parent() {
            let mut cur = PathBuf::from("/");
            for c in parent.components().skip(1) {
                cur.push(c);
                match std::fs::symlink_metadata(&cur) {
                    Ok(m) if m.is_dir() => continue,
                    Ok(_) => {
                        return Err((
                            format!("{} is not a directory", cur.display()),
                            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                        ))
                    }
                    Err(_) => {
                        let c = cstr(&cur)?;
                        // SAFETY: mkdir(2) on a NUL-terminated path.
                        sys(format!("mkdir {}", cur.display()), unsafe {
                            libc::mkdir(c.as_ptr(), 0o755)
                        })?;
                    }
                }
            }
        }
        let c = cstr(&node.path)?;
        match std::fs::symlink_metadata(&node.path) {
            Ok(m) => {
                let same = m.rdev() == node.rdev()
                    && match node.node_type {
                        NodeType::Char => m.file_type().is_char_device(),
                        NodeType::Block => m.file_type().is_block_device(),
                    };
                if !same {
                    return Err((
                        format!("{} exists and is not this device", node.path.display()),
                        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                    ));
                }
            }
            Err(_) => {
                // SAFETY: mknod(2) on a NUL-terminated path.
                sys(format!("mknod {}", node.path.display()), unsafe {
                    libc::mknod(c.as_ptr(), node.kind_bits() | 0o600, node.rdev())
                })?;
            }
        }
        // SAFETY: lchown/chmod on the node just checked or made (never a symlink).
        sys(format!("chown {}", node.path.display()), unsafe {
            libc::lchown(c.as_ptr(), node.uid, node.gid)
        })?;
        // SAFETY: as above.
        sys(format!("chmod {}", node.path.display()), unsafe {
            libc::chmod(c.as_ptr(), node.mode & 0o7777)
        })?;
        Ok(())
    })
}

/// Removes the node if it is this device; a missing node is fine, anything else at the path
/// is left alone and reported.
pub fn remove(pid: i32, node: &NodeSpec) -> Result<()> {
    node.check()?;
    let node = node.clone();
    in_container(pid, move || match std::fs::symlink_metadata(&node.path) {
        Err(_) => Ok(()),
        Ok(m)
            if m.rdev() == node.rdev()
                && (m.file_type().is_char_device() || m.file_type().is_block_device()) =>
        {
            std::fs::remove_file(&node.path)
                .map_err(|e| (format!("unlink {}", node.path.display()), e))
        }
        Ok(_) => Err((
            format!("{} is not this device; not removed", node.path.display()),
            std::io::Error::from(std::io::ErrorKind::InvalidData),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p: &str) -> NodeSpec {
        NodeSpec {
            path: PathBuf::from(p),
            node_type: NodeType::Char,
            major: 1,
            minor: 3,
            mode: 0o666,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn paths_must_stay_below_dev() {
        assert!(spec("/dev/fuse").check().is_ok());
        assert!(spec("/dev/net/tun").check().is_ok());
        for bad in ["/dev", "/etc/passwd", "/dev/../etc/x", "dev/x"] {
            assert!(spec(bad).check().is_err(), "{bad}");
        }
    }
}
