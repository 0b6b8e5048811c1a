//! The init of `docker run --init` (HostConfig.Init): kos-init, built statically
//! by build.rs and carried inside kosd, written under the exec root when the first
//! `--init` container of this daemon starts and bind-mounted read-only into the
//! container, where it runs as pid 1 in front of the container's program (as dockerd
//! does with docker-init). Written then rather than at kosd's start: the embedded file
//! is 1.3 MB of kosd's image that a daemon which never runs `--init` never reads.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde_json::Value;

use crate::error::{ApiError, Result};

const KOS_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kos-init"));

/// Where the init appears inside containers.
pub const CONTAINER_PATH: &str = "/sbin/kos-init";

/// The host copy under the exec root.
pub fn host_path(exec_root: &Path) -> PathBuf {
    exec_root.join("kos-init")
}

/// Writes the embedded kos-init (mode 0755) under the exec root, replacing the
/// file atomically so containers that have it mounted keep their copy.
pub fn install(exec_root: &Path) -> anyhow::Result<PathBuf> {
    let dst = host_path(exec_root);
    let tmp = exec_root.join(".kos-init.tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(KOS_INIT)
        .and_then(|_| f.set_permissions(std::fs::Permissions::from_mode(0o755)))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &dst).with_context(|| format!("installing {}", dst.display()))?;
    Ok(dst)
}

/// Installs the init under `exec_root` once per daemon (a file left by an earlier
/// kosd, maybe another version, is replaced).
fn ensure_installed(exec_root: &Path) -> Result<PathBuf> {
    static INSTALLED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut done = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    let done = done.get_or_insert_with(HashSet::new);
    if !done.contains(exec_root) {
        install(exec_root)
            .map_err(|e| ApiError::internal("installing kos-init", format!("{e:#}")))?;
        done.insert(exec_root.to_path_buf());
    }
    Ok(host_path(exec_root))
}

/// The mount of the init and the process args with the init in front.
pub fn wrap(exec_root: &Path, process: &mut Value) -> Result<Value> {
    let src = ensure_installed(exec_root)?;
    let mount =
        crate::containers::spec::bind_mount(&src.to_string_lossy(), CONTAINER_PATH, &["ro"])?;
    let mut args = vec![Value::from(CONTAINER_PATH), Value::from("--")];
    if let Some(old) = process["args"].as_array() {
        args.extend(old.iter().cloned());
    }
    process["args"] = Value::Array(args);
    Ok(mount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_goes_in_front() {
        let dir = tempfile::tempdir().expect("tmp");
        // Nothing is written before the first --init container.
        assert!(!host_path(dir.path()).exists());
        let mut p = serde_json::json!({"args": ["sh", "-c", "exit 3"]});
        let m = wrap(dir.path(), &mut p).expect("wrap");
        let meta = std::fs::metadata(host_path(dir.path())).expect("installed");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(meta.len() as usize, KOS_INIT.len());
        assert_eq!(
            p["args"],
            serde_json::json!(["/sbin/kos-init", "--", "sh", "-c", "exit 3"])
        );
        assert_eq!(m["destination"], "/sbin/kos-init");
    }
}
