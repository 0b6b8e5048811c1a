//! Host-side fixtures some tests need (mounts, network namespaces), each undone on Drop,
//! and the safety check that keeps scratch removal from reaching into a mount.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A tmpfs mounted on the host for the duration of a test.
pub struct HostMount {
    target: PathBuf,
}

impl HostMount {
    /// Mounts a tmpfs named `kosconf` at `target` (created if missing).
    pub fn tmpfs(target: &Path) -> Result<Self> {
        fs::create_dir_all(target)?;
        let src = CString::new("kosconf-tmpfs")?;
        let fstype = CString::new("tmpfs")?;
        let tgt = CString::new(target.as_os_str().as_bytes())?;
        let data = CString::new("size=1m")?;
        // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                tgt.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            bail!(
                "mounting tmpfs on {}: {}",
                target.display(),
                io::Error::last_os_error()
            );
        }
        Ok(Self {
            target: target.to_path_buf(),
        })
    }

    /// Bind-mounts `dir` onto itself, making it a mount point whose propagation can be set.
    pub fn bind_self(dir: &Path) -> Result<Self> {
        let tgt = CString::new(dir.as_os_str().as_bytes())?;
        // SAFETY: valid strings; a self bind needs no fstype or data.
        let rc = unsafe {
            libc::mount(
                tgt.as_ptr(),
                tgt.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            bail!(
                "bind-mounting {} onto itself: {}",
                dir.display(),
                io::Error::last_os_error()
            );
        }
        Ok(Self {
            target: dir.to_path_buf(),
        })
    }

    /// Makes the mount a shared peer, so binds of it can be slaves.
    pub fn make_shared(&self) -> Result<()> {
        let tgt = CString::new(self.target.as_os_str().as_bytes())?;
        // SAFETY: valid string; null source/fstype/data are allowed for propagation changes.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                tgt.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            bail!(
                "making {} shared: {}",
                self.target.display(),
                io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        // A runtime may have stacked mounts on ours through propagation; they all go.
        detach_at(&self.target);
    }
}

/// Detaches every mount stacked at `path` (bounded, in case detaching keeps failing).
fn detach_at(path: &Path) {
    let Ok(tgt) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    for _ in 0..16 {
        if !mounts_under(path).iter().any(|m| m == path) {
            break;
        }
        // SAFETY: valid string; detach so a busy mount still goes away.
        if unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) } != 0 {
            break;
        }
    }
}

/// Detaches whatever is still mounted at or below `dir` (deepest first) and returns the
/// mount points found: after a test, those were leaked by the runtime onto the host.
pub fn detach_mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = mounts_under(dir);
    found.sort();
    found.dedup();
    for m in found.iter().rev() {
        detach_at(m);
    }
    found
}

/// A named network namespace made with `ip netns add`; deleted on Drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn add(name: &str) -> Result<Self> {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .context("running `ip netns add` (is iproute2 installed?)")?;
        if !out.status.success() {
            bail!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Self {
            name: name.to_string(),
        })
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs `ip -n NAME args...`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "ip -n {} {args:?}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Mount points at or below `dir` in this process's mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Removes a scratch tree unless something is still mounted inside it: deleting through a
/// leaked bind mount would delete host files.
pub fn remove_tree_safely(dir: &Path) -> Result<()> {
    let m = mounts_under(dir);
    if !m.is_empty() {
        bail!(
            "not removing {}: still mounted inside it: {m:?}",
            dir.display()
        );
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}
