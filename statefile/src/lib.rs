//! Small files several KOS processes share: replaced so readers see the old or the new
//! contents, never a mix (a temp file beside it, fsync, rename over it, fsync of the
//! directory), and guarded by an exclusive or shared `flock` on a separate lock file. The DNS
//! table, container /etc files, network state, the CNI result cache and kadcm's CDI specs all
//! go through here.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

/// A failed replacement: the step that failed and its cause.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct ReplaceError {
    pub step: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Makes temp names unique per call, so two threads replacing one file never share a temp file.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes `data` to `path` with `mode`. On error the temp file is removed and `path` is
/// untouched.
pub fn replace(path: &Path, data: &[u8], mode: u32) -> Result<(), ReplaceError> {
    replace_inner(path, data, mode, true)
}

/// [`replace`] without the fsyncs: readers still see the old or the new contents, but a
/// power loss may leave either. For files rendered again from other state at every use
/// (a container's /etc files, rewritten at each start), where each fsync would cost a
/// journal commit (tens of ms on a busy disk) for nothing.
pub fn replace_unsynced(path: &Path, data: &[u8], mode: u32) -> Result<(), ReplaceError> {
    replace_inner(path, data, mode, false)
}

fn replace_inner(path: &Path, data: &[u8], mode: u32, durable: bool) -> Result<(), ReplaceError> {
    let step = |step| move |source| ReplaceError { step, source };
    let (dir, tmp) = beside(path).map_err(step("name temp file"))?;
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(step("create temp file"))?;
        f.write_all(data).map_err(step("write temp file"))?;
        if !durable {
            return std::fs::rename(&tmp, path).map_err(step("rename into place"));
        }
        f.sync_all().map_err(step("fsync temp file"))?;
        std::fs::rename(&tmp, path).map_err(step("rename into place"))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(step("fsync directory"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The directory of `path` and a temp name in it, unique per process and call. Hidden and
/// not ending in the target's extension, so directory scanners (CDI's `*.json`) never pick
/// up a half-made file.
fn beside(path: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    Ok((dir, tmp))
}

/// Binds a listening unix socket at `path` with `mode`, placed as [`replace`] places a file:
/// bound under a temp name beside it, given its mode, renamed over whatever was there. A
/// client never finds the socket with the default mode, and the process-wide umask (racy in
/// a threaded daemon) is never touched. On error nothing is left.
pub fn bind_unix(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, ReplaceError> {
    use std::os::unix::fs::PermissionsExt;
    let step = |step| move |source| ReplaceError { step, source };
    let (_, tmp) = beside(path).map_err(step("name temp socket"))?;
    let result = (|| {
        let l = std::os::unix::net::UnixListener::bind(&tmp).map_err(step("bind temp socket"))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(step("set the socket's mode"))?;
        std::fs::rename(&tmp, path).map_err(step("rename into place"))?;
        Ok(l)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A `flock` held until dropped.
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<File>,
}

/// Takes a `flock` on `path` (created 0600 if missing). `shared`: many holders at once, none
/// while an exclusive one is held. A signal interrupting the wait retries it.
pub fn lock(path: &Path, shared: bool) -> std::io::Result<Lock> {
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
            Ok(flock) => return Ok(Lock { _flock: flock }),
            Err((f, nix::errno::Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replace_writes_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        replace(&p, b"old", 0o640).unwrap();
        replace(&p, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn bind_unix_places_a_socket_with_its_mode_over_a_stale_one() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("api.sock");
        drop(bind_unix(&p, 0o600).unwrap());
        // The stale socket of a dead listener is replaced.
        let l = bind_unix(&p, 0o660).unwrap();
        let md = std::fs::symlink_metadata(&p).unwrap();
        assert!(md.file_type().is_socket());
        assert_eq!(md.permissions().mode() & 0o777, 0o660);
        std::os::unix::net::UnixStream::connect(&p).unwrap();
        assert!(l.accept().is_ok());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["api.sock"]);
    }

    #[test]
    fn unsynced_replace_writes_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        replace_unsynced(&p, b"old", 0o644).unwrap();
        replace_unsynced(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let e = replace_unsynced(&d, b"x", 0o644).unwrap_err();
        assert_eq!(e.step, "rename into place", "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn failed_replace_names_the_step_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"keep").unwrap();
        let e = replace(&p, b"new", 0o600).unwrap_err();
        assert_eq!(e.step, "rename into place", "{e}");
        assert_eq!(std::fs::read(p.join("inside")).unwrap(), b"keep");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn exclusive_lock_excludes_shared_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.lock");
        let a = lock(&p, true).unwrap();
        let b = lock(&p, true).unwrap();
        // flock locks belong to the open file description: a second open of the same file
        // conflicts like another process would.
        let try_exclusive = || {
            let f = File::open(&p).unwrap();
            Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
        };
        assert!(!try_exclusive());
        drop((a, b));
        assert!(try_exclusive());
    }
}
