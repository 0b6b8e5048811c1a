//! Small files several processes share: replaced so readers see the old or the new contents,
//! never a mix (a temp file beside it, fsync, rename over it, fsync of the directory), and
//! guarded by an exclusive or shared `flock` on a separate lock file. The DNS table, the
//! container /etc files and the network crate's state files all go through here.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

/// Makes temp names unique per call, so two threads replacing one file never share a temp file.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` with `mode`. On error: the step that failed and its cause; the temp
/// file is removed and `path` is untouched.
pub fn replace(path: &Path, data: &[u8], mode: u32) -> Result<(), (&'static str, std::io::Error)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or((
        "name temp file",
        std::io::Error::other("path has no file name"),
    ))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| ("create temp file", e))?;
        f.write_all(data).map_err(|e| ("write temp file", e))?;
        f.sync_all().map_err(|e| ("fsync temp file", e))?;
        std::fs::rename(&tmp, path).map_err(|e| ("rename into place", e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ("fsync directory", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A `flock` on `path` (created 0600 if missing), held until dropped. `shared`: many holders
/// at once, none while an exclusive one is held. A signal interrupting the wait retries it.
pub fn lock(path: &Path, shared: bool) -> std::io::Result<Flock<File>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)?;
    let how = if shared {
        FlockArg::LockShared
    } else {
        FlockArg::LockExclusive
    };
    loop {
        match Flock::lock(file, how) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(e.into()),
        }
    }
}
