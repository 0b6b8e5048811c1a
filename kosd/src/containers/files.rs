//! Files of a container: `docker cp` both ways (paths resolved inside the
//! root, never through a symlink out of it), export, and changes.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kos_image::unpack::safe_path::Root;
use kos_image::unpack::{unpack_layer, Mode, UnpackOptions};
use serde_json::json;

use crate::error::{ApiError, Result};

/// A path inside the root, held open (O_PATH) so it cannot be swapped.
pub struct Resolved {
    pub fd: OwnedFd,
    pub name: String,
}

impl Resolved {
    /// A path to the open object that any process of ours can use.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }
}

fn clean(p: &str) -> Result<&str> {
    if !p.starts_with('/') {
        return Err(ApiError::bad(format!("path {p:?} must be absolute")));
    }
    Ok(p.trim_start_matches('/'))
}

/// Resolves `path` inside `rootfs`; the final component is not followed when a symlink.
pub fn resolve(rootfs: &Path, path: &str, follow: bool) -> Result<Resolved> {
    let rel = clean(path)?;
    let root = Root::open(rootfs).map_err(|e| ApiError::internal("opening rootfs", e))?;
    let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
    let target = if rel.is_empty() { "." } else { rel };
    let fd = root.open_in(Path::new(target), flags).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) || e.raw_os_error() == Some(libc::ENOTDIR) {
            ApiError::NotFound(format!("Could not find the file {path} in container"))
        } else {
            ApiError::internal(&format!("resolving {path}"), e)
        }
    })?;
    let name = Path::new(rel)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    Ok(Resolved { fd, name })
}

/// `X-Docker-Container-Path-Stat`: base64 JSON with Go's FileMode bits.
pub fn path_stat(r: &Resolved, path: &str) -> Result<String> {
    // SAFETY: stat is plain data filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and an empty C string with AT_EMPTY_PATH: stats the object itself.
    let rc = unsafe {
        libc::fstatat(
            r.fd.as_raw_fd(),
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        return Err(ApiError::internal(
            &format!("stat {path}"),
            std::io::Error::last_os_error(),
        ));
    }
    let fmt = st.st_mode & libc::S_IFMT;
    let mut mode = st.st_mode & 0o777;
    if fmt == libc::S_IFDIR {
        mode |= 1 << 31;
    }
    let link = if fmt == libc::S_IFLNK {
        mode |= 1 << 27;
        let mut buf = vec![0u8; 4096];
        // SAFETY: buffer of the given length; fd is an O_PATH symlink.
        let n = unsafe {
            libc::readlinkat(
                r.fd.as_raw_fd(),
                c"".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n > 0 {
            String::from_utf8_lossy(&buf[..n as usize]).into_owned()
        } else {
            String::new()
        }
    } else {
        String::new()
    };
    let md = (st.st_size as u64, st.st_mtime, st.st_mtime_nsec);
    let v = json!({
        "name": r.name,
        "size": md.0,
        "mode": mode,
        "mtime": chrono::DateTime::<chrono::Utc>::from_timestamp(md.1, md.2 as u32).map(|t| t.to_rfc3339()).unwrap_or_default(),
        "linkTarget": link,
    });
    Ok(base64::engine::general_purpose::STANDARD.encode(v.to_string()))
}

/// The command that writes a tar of `path` (named by its base name) to stdout.
pub fn tar_command(rootfs: &Path, path: &str) -> Result<(tokio::process::Command, Resolved)> {
    let rel = clean(path)?;
    let parent = Path::new(rel)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let r = resolve(rootfs, &format!("/{parent}"), true)?;
    let item = resolve(rootfs, path, false)?;
    let mut c = tokio::process::Command::new("tar");
    c.arg("--numeric-owner")
        .arg("-C")
        .arg(r.proc_path())
        .arg("-cf")
        .arg("-");
    if rel.is_empty() {
        c.arg(".");
    } else {
        c.arg("--").arg(&item.name);
    }
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    Ok((c, r))
}

/// Extracts a tar stream into directory `path` inside the root.
pub fn extract(rootfs: &Path, path: &str, input: impl std::io::Read + Send) -> Result<()> {
    let r = resolve(rootfs, path, true)?;
    let md = std::fs::metadata(r.proc_path()).map_err(|e| ApiError::internal("stat", e))?;
    if !md.is_dir() {
        return Err(ApiError::bad(format!(
            "extraction point is not a directory: {path}"
        )));
    }
    let opts = UnpackOptions {
        mode: Mode::Apply,
        ..Default::default()
    };
    unpack_layer(input, &r.proc_path(), &opts)
        .map_err(|e| ApiError::bad(format!("extracting archive into {path}: {e}")))?;
    Ok(())
}

/// What the runtime and kosd leave in a container's upper directory as mount points (the
/// pieces of dockerd's "init layer", which sits below the container's layer there): not
/// the container's changes, and not committed, while they are still empty.
pub const MOUNT_POINT_STUBS: [&str; 6] = [
    "proc",
    "sys",
    "dev",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

/// `rel` is one of the mount-point stubs, still empty.
fn is_mount_stub(upper: &Path, rel: &Path, md: &std::fs::Metadata) -> bool {
    MOUNT_POINT_STUBS.iter().any(|s| Path::new(s) == rel)
        && kos_image::build::layer::is_stub(&upper.join(rel), md)
}

/// A directory of the upper dir that holds nothing but mount-point stubs (the /etc made
/// for /etc/hosts): there only for them.
fn holds_only_stubs(upper: &Path, rel: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(upper.join(rel)) else {
        return false;
    };
    let mut any = false;
    for en in rd.flatten() {
        let r = rel.join(en.file_name());
        match en.metadata() {
            Ok(md) if is_mount_stub(upper, &r, &md) => any = true,
            _ => return false,
        }
    }
    any
}

/// `GET /containers/{id}/changes`: what the container's own layer holds.
pub fn changes(upper: &Path, lowers_root: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(upper.join(&rel)) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for en in entries {
            let r = rel.join(en.file_name());
            let Ok(md) = en.metadata() else { continue };
            if is_mount_stub(upper, &r, &md) || (md.is_dir() && holds_only_stubs(upper, &r)) {
                continue;
            }
            let shown = format!("/{}", r.display());
            use std::os::unix::fs::FileTypeExt;
            // overlayfs whiteout: a 0:0 character device.
            if md.file_type().is_char_device() && md.rdev() == 0 {
                out.push(json!({"Path": shown, "Kind": 2}));
                continue;
            }
            let existed = std::fs::symlink_metadata(lowers_root.join(&r)).is_ok();
            out.push(json!({"Path": shown, "Kind": if existed { 0 } else { 1 }}));
            if md.is_dir() {
                stack.push(r);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolution_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("escape")).unwrap();
        let r = resolve(d.path(), "/escape/f", true);
        // /escape -> /etc resolves to the root's own /etc, never the host's.
        let p = std::fs::read_link(r.unwrap().proc_path()).unwrap();
        assert!(p.starts_with(d.path()), "{p:?}");
        assert!(matches!(
            resolve(d.path(), "/nope", true),
            Err(ApiError::NotFound(_))
        ));
        assert!(resolve(d.path(), "rel", true).is_err());
        let st = path_stat(&resolve(d.path(), "/etc", true).unwrap(), "/etc").unwrap();
        let v: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(st)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["name"], "etc");
        assert!(v["mode"].as_u64().unwrap() & (1 << 31) != 0);
    }
}
