//! The pod's IPC and UTS namespaces pinned as bind-mounted files (the network namespace
//! comes from kos-network's pins), its hostname, and its namespaced sysctls.
//!
//! unshare() and setns() act on the calling thread only, so each step runs on a short-lived
//! thread of its own that takes the namespaces away with it when it ends.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

fn on_thread<T: Send>(f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

fn pin_file(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map(|_| ())
}

/// Unmounts and deletes a pin; idempotent.
pub fn unpin(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("unmounting pin {}", path.display()), e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing pin", path, e)),
    }
}

/// New IPC and/or UTS namespaces pinned at `dir/ipc` and `dir/uts`; the UTS one gets
/// `hostname`. Returns the pins made; on failure nothing is left.
pub fn pin_ipc_uts(
    dir: &Path,
    ipc: bool,
    uts: bool,
    hostname: &str,
) -> Result<(Option<PathBuf>, Option<PathBuf>)> {
    if !ipc && !uts {
        return Ok((None, None));
    }
    let ipc_path = ipc.then(|| dir.join("ipc"));
    let uts_path = uts.then(|| dir.join("uts"));
    for p in ipc_path.iter().chain(uts_path.iter()) {
        pin_file(p).map_err(|e| Error::io("creating pin file", p, e))?;
    }
    let made = on_thread(|| {
        let mut flags = CloneFlags::empty();
        if ipc {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        if uts {
            flags |= CloneFlags::CLONE_NEWUTS;
        }
        unshare(flags)?;
        if uts && !hostname.is_empty() {
            nix::unistd::sethostname(hostname)?;
        }
        for (p, ns) in [(&ipc_path, "ipc"), (&uts_path, "uts")] {
            if let Some(p) = p {
                let src = format!("/proc/thread-self/ns/{ns}");
                mount(
                    Some(src.as_str()),
                    p.as_path(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
            }
        }
        Ok(())
    });
    if let Err(e) = made {
        for p in ipc_path.iter().chain(uts_path.iter()) {
            let _ = unpin(p);
        }
        return Err(Error::io(
            "unsharing and pinning ipc/uts namespaces in",
            dir,
            e,
        ));
    }
    Ok((ipc_path, uts_path))
}

/// Sets the hostname inside the pinned UTS namespace `uts`.
pub fn set_hostname(uts: &Path, hostname: &str) -> Result<()> {
    on_thread(|| {
        let f = std::fs::File::open(uts)?;
        setns(&f, CloneFlags::CLONE_NEWUTS)?;
        nix::unistd::sethostname(hostname)?;
        Ok(())
    })
    .map_err(|e| Error::io("setting the pod's hostname in", uts, e))
}

/// Whether a sysctl is namespaced by the net or IPC namespace (the only ones a pod may set).
fn sysctl_namespace(key: &str) -> Option<CloneFlags> {
    if key.starts_with("net.") {
        Some(CloneFlags::CLONE_NEWNET)
    } else if key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key == "kernel.sem"
        || key.starts_with("fs.mqueue.")
    {
        Some(CloneFlags::CLONE_NEWIPC)
    } else {
        None
    }
}

/// Checks pod sysctls before anything is made: only namespaced keys, and net.* only with a
/// pod network namespace, IPC ones only with a pod IPC namespace.
pub fn check_sysctls(
    sysctls: &std::collections::HashMap<String, String>,
    own_net: bool,
    own_ipc: bool,
) -> Result<()> {
    for (k, v) in sysctls {
        let ok_key = !k.is_empty()
            && k.len() < 256
            && !k.contains("..")
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !ok_key || v.contains('\n') || v.len() > 4096 {
            return Err(Error::InvalidArgument(format!("sysctl {k:?} is not valid")));
        }
        match sysctl_namespace(k) {
            Some(f) if f == CloneFlags::CLONE_NEWNET && !own_net => {
                return Err(Error::InvalidArgument(format!(
                    "sysctl {k} needs the pod's own network namespace (host network pod)"
                )))
            }
            Some(f) if f == CloneFlags::CLONE_NEWIPC && !own_ipc => {
                return Err(Error::InvalidArgument(format!(
                    "sysctl {k} needs the pod's own IPC namespace"
                )))
            }
            Some(_) => {}
            None => {
                return Err(Error::InvalidArgument(format!(
                    "sysctl {k} is not namespaced; a pod may not set it"
                )))
            }
        }
    }
    Ok(())
}

/// Writes checked sysctls inside the pod's pinned namespaces.
pub fn apply_sysctls(
    sysctls: &std::collections::HashMap<String, String>,
    netns: Option<&Path>,
    ipcns: Option<&Path>,
) -> Result<()> {
    if sysctls.is_empty() {
        return Ok(());
    }
    on_thread(|| {
        for (p, flag) in [
            (netns, CloneFlags::CLONE_NEWNET),
            (ipcns, CloneFlags::CLONE_NEWIPC),
        ] {
            if let Some(p) = p {
                let f = std::fs::File::open(p)?;
                setns(&f, flag)?;
            }
        }
        for (k, v) in sysctls {
            let path = Path::new("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&path, v.as_bytes())
                .map_err(|e| io::Error::new(e.kind(), format!("sysctl {k}={v}: {e}")))?;
        }
        Ok(())
    })
    .map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::InvalidArgument(format!("unknown sysctl: {e}"))
        } else {
            Error::io("setting sysctls of the pod", PathBuf::from("/proc/sys"), e)
        }
    })
}
