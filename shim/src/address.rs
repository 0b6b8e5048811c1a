//! The shim's socket address: one per (containerd address, namespace, group), as containerd
//! names them, so a second container of the same pod finds the running shim.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where containerd's shims put their sockets.
const CONTAINERD_SOCKET_DIR: &str = "/run/containerd/s";

/// The socket path for `group`. When `address` is a directory (kosd passes its socket dir),
/// the socket goes there; otherwise into containerd's socket dir.
pub fn socket_path(address: &str, namespace: &str, group: &str) -> PathBuf {
    let digest = Sha256::digest(
        Path::new(address)
            .join(namespace)
            .join(group)
            .to_string_lossy()
            .as_bytes(),
    );
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let dir = if Path::new(address).is_dir() {
        PathBuf::from(address)
    } else {
        PathBuf::from(CONTAINERD_SOCKET_DIR)
    };
    dir.join(hex)
}

pub fn uri(path: &Path) -> String {
    format!("unix://{}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_group_same_socket() {
        let a = socket_path("/run/containerd/containerd.sock", "default", "pod1");
        let b = socket_path("/run/containerd/containerd.sock", "default", "pod1");
        let c = socket_path("/run/containerd/containerd.sock", "k8s.io", "pod1");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with(CONTAINERD_SOCKET_DIR));
        let dir = tempfile::tempdir().expect("tempdir");
        let d = socket_path(&dir.path().to_string_lossy(), "kos", "x");
        assert!(d.starts_with(dir.path()));
        assert!(uri(&d).starts_with("unix:///"));
    }
}
