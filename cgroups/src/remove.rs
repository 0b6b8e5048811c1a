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
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => remove_children(dir)?,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < BUSY_DEADLINE => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(Error::Dir {
                    op: "rmdir",
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

fn remove_children(dir: &Path) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
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
    if !any {
        // A cgroupfs directory always reports files; ENOTEMPTY with no subdirectory means
        // this is not a cgroup filesystem, and looping would never end.
        return Err(Error::Dir {
            op: "rmdir",
            path: dir.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::ENOTEMPTY),
        });
    }
    Ok(())
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
