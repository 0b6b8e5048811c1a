//! overlayfs mounts for build steps, unmounted when dropped.
//!
//! The mount options turn off overlay features (redirect_dir, metacopy) that
//! would leave data in the upper directory in forms a layer tar cannot carry.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tracing::debug;

/// A mount that is detached when dropped.
pub struct Mounted {
    target: PathBuf,
    active: bool,
}

impl Mounted {
    /// Unmounts now, reporting failure.
    pub fn unmount(mut self) -> io::Result<()> {
        self.active = false;
        crate::snapshot::overlay::unmount(&self.target)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = crate::snapshot::overlay::unmount(&self.target) {
                debug!(target = %self.target.display(), error = %e, "unmount failed");
            }
        }
    }
}

fn cstring(s: &[u8]) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount argument"))
}

fn mount_overlay(opts: &str, target: &Path) -> io::Result<()> {
    let src = cstring(b"overlay")?;
    let data = cstring(opts.as_bytes())?;
    let t = cstring(target.as_os_str().as_bytes())?;
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            t.as_ptr(),
            src.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn lower_opt(lowers: &[PathBuf]) -> String {
    lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// A writable overlay of `lowers` (top first) with `upper` and `work` on `target`.
pub fn overlay_rw(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<Mounted> {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
        lower_opt(lowers),
        upper.display(),
        work.display()
    );
    if opts.len() < 4000 {
        mount_overlay(&opts, target)?;
    } else {
        // Too many layers for one option string: the new mount API takes them
        // one by one (with the module's defaults for the features above).
        crate::snapshot::overlay::mount(lowers, upper, work, target)?;
    }
    Ok(Mounted {
        target: target.to_path_buf(),
        active: true,
    })
}

/// A read-only overlay of `lowers` (top first; at least two) on `target`.
pub fn overlay_ro(lowers: &[PathBuf], target: &Path) -> io::Result<Mounted> {
    let opts = format!("lowerdir={}", lower_opt(lowers));
    if opts.len() >= 4000 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} layers do not fit in one read-only overlay mount",
                lowers.len()
            ),
        ));
    }
    mount_overlay(&opts, target)?;
    Ok(Mounted {
        target: target.to_path_buf(),
        active: true,
    })
}

/// Unmounts everything below `dir`, deepest first (cleanup of a failed build).
pub fn unmount_below(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut targets: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|t| PathBuf::from(t.replace("\\040", " ")))
        .filter(|t| t.starts_with(dir))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.as_os_str().len()));
    for t in targets {
        if let Err(e) = crate::snapshot::overlay::unmount(&t) {
            debug!(target = %t.display(), error = %e, "unmount failed");
        }
    }
}
