//! Removing cgroup directories: children first, retrying while the kernel releases them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long an rmdir is retried while the kernel still reports the cgroup busy (a process
/// that was killed but not yet reaped, a css still being released).
const BUSY_DEADLINE: Duration = Duration::from_millis(2000);

/// Removes `dir` and every cgroup below it. A missing directory is success.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(200);
    loop {
        let err = match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        let code = err.raw_os_error();
        // The kernel answers EBUSY both for a cgroup with child cgroups and for one still
        // releasing exited processes; children are removed first, then the wait.
        if code == Some(libc::EBUSY) || code == Some(libc::ENOTEMPTY) {
            if remove_children(dir)? {
                continue;
            }
            if code == Some(libc::EBUSY) && start.elapsed() < BUSY_DEADLINE {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
                continue;
            }
        }
        return Err(Error::Dir {
            op: "rmdir",
            path: dir.to_path_buf(),
            source: err,
        });
    }
}

/// Removes the child cgroups of `dir`; returns whether there were any.
fn remove_children(dir: &Path) -> Result<bool> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(Error::Dir {
                op: "readdir",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut any = false;
    for ent in rd.flatten() {
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            any = true;
            remove_tree(&ent.path())?;
        }
    }
    Ok(any)
}

/// Best-effort removal of directories a failed create made, innermost first.
pub(crate) fn remove_created(made: &[PathBuf]) {
    for d in made.iter().rev() {
        if let Err(e) = fs::remove_dir(d) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %d.display(), error = %e, "removing a cgroup made by a failed create");
            }
        }
    }
}
