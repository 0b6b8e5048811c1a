//! Small state files: a flock per resource and JSON written atomically (kos-statefile: temp
//! file, fsync, rename), so a crash leaves either the old or the new content, never half.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use kos_statefile as statefile;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// State files are small; anything bigger is not ours.
const MAX_STATE_FILE: u64 = 16 * 1024 * 1024;

/// An exclusive lock held until dropped.
pub struct FileLock {
    _lock: statefile::Lock,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        Self::lock(path, false)
    }

    /// A shared lock: many holders at once, none while an exclusive one is held.
    pub fn acquire_shared(path: &Path) -> Result<FileLock> {
        Self::lock(path, true)
    }

    fn lock(path: &Path, shared: bool) -> Result<FileLock> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::file("create state dir", parent, e))?;
        }
        let lock = statefile::lock(path, shared).map_err(|e| Error::file("lock", path, e))?;
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
    statefile::replace(path, &data, 0o600).map_err(|e| Error::file(e.step, path, e.source))
}

/// Removes a file; absent is fine.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::file("remove state", path, e)),
    }
}
