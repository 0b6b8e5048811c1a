//! Small state files: an exclusive flock per resource and JSON written atomically (temp file,
//! fsync, rename), so a crash leaves either the old or the new content, never half of it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// State files are small; anything bigger is not ours.
const MAX_STATE_FILE: u64 = 16 * 1024 * 1024;

/// An exclusive lock held until dropped.
pub struct FileLock {
    _lock: Flock<File>,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        Self::lock(path, FlockArg::LockExclusive)
    }

    /// A shared lock: many holders at once, none while an exclusive one is held.
    pub fn acquire_shared(path: &Path) -> Result<FileLock> {
        Self::lock(path, FlockArg::LockShared)
    }

    fn lock(path: &Path, how: FlockArg) -> Result<FileLock> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::file("create state dir", parent, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::file("open lock file", path, e))?;
        let lock = Flock::lock(file, how).map_err(|(_, e)| Error::file("lock", path, e.into()))?;
        Ok(FileLock { _lock: lock })
    }
}

/// Reads a JSON state file; None when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::file("read state", path, e)),
    };
    let mut buf = Vec::new();
    file.take(MAX_STATE_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::file("read state", path, e))?;
    if buf.len() as u64 > MAX_STATE_FILE {
        return Err(Error::file(
            "read state",
            path,
            io::Error::new(io::ErrorKind::InvalidData, "state file too large"),
        ));
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|source| Error::Corrupt {
            step: "parse state",
            path: path.to_path_buf(),
            source,
        })
}

/// Writes `value` to `path` atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::file("create state dir", parent, e))?;
    let data = serde_json::to_vec(value).map_err(|source| Error::Corrupt {
        step: "serialize state",
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per process and call: writers of different files share the directory.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = parent.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(&data)?;
        nix::unistd::fsync(f.as_fd())?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::file("write state", path, e)
    })
}

/// Removes a file; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::file("remove state", path, e)),
    }
}
