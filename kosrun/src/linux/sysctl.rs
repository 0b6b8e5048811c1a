//! Sysctls a container may set: only those the kernel scopes to a namespace it owns.

use std::path::PathBuf;

use oci_spec::runtime::LinuxNamespaceType;

use crate::error::{Error, Result};

/// Refuse a key that would change the host.
pub fn check(key: &str, has_ns: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    if key.is_empty() || key.contains("..") || key.starts_with('/') || key.starts_with('.') {
        return Err(Error::invalid(
            format!("linux.sysctl[{key}]"),
            format!("linux.sysctl: invalid key {key:?}"),
        ));
    }
    const IPC_KEYS: [&str; 6] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
    ];
    let ipc = IPC_KEYS.contains(&key)
        || key == "kernel.shmmni"
        || key == "kernel.shm_rmid_forced"
        || key.starts_with("fs.mqueue.");
    if ipc {
        return require(key, has_ns(LinuxNamespaceType::Ipc), "an IPC");
    }
    if key.starts_with("net.") {
        return require(key, has_ns(LinuxNamespaceType::Network), "a network");
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return require(key, has_ns(LinuxNamespaceType::Uts), "a UTS");
    }
    Err(Error::invalid(
        format!("linux.sysctl[{key}]"),
        format!("linux.sysctl: {key} is not namespaced and would change the host"),
    ))
}

fn require(key: &str, ok: bool, ns: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("linux.sysctl[{key}]"),
            format!(
                "linux.sysctl: {key} needs {ns} namespace of the container's own, not the host's"
            ),
        ))
    }
}

/// Whether the namespace file at `path` is the one kosrun itself runs in (the host's, for
/// a container that joins it by path). Unreadable paths are not ours: create fails on
/// them later with a precise error.
pub fn is_runtime_ns(t: LinuxNamespaceType, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let own = match t {
        LinuxNamespaceType::Network => "/proc/self/ns/net",
        LinuxNamespaceType::Uts => "/proc/self/ns/uts",
        LinuxNamespaceType::Ipc => "/proc/self/ns/ipc",
        _ => return false,
    };
    match (std::fs::metadata(path), std::fs::metadata(own)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The /proc/sys file of a key: dots become slashes (a slash in the key is already one).
pub fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_keys_need_their_namespace() {
        let all = |_| true;
        let none = |_| false;
        assert!(check("net.ipv4.ip_forward", &all).is_ok());
        assert!(check("net.ipv4.ip_forward", &none).is_err());
        assert!(check("kernel.shm_rmid_forced", &all).is_ok());
        assert!(check("fs.mqueue.msg_max", &all).is_ok());
        assert!(check("kernel.domainname", &all).is_ok());
        assert!(check("vm.swappiness", &all).is_err());
        assert!(check("kernel.../x", &all).is_err());
        assert_eq!(
            path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }
}
