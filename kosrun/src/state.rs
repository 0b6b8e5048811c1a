//! Per-container state under `--root`: one directory per container holding
//! `state.json` (written atomically) and the exec socket while created.
//! Commands serialise on an flock of the directory.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_SOCKET: &str = "exec.sock";

/// Where a container is in its lifecycle, as the runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What kosrun remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (field 22 of /proc/pid/stat):
    /// together with the pid it names one process, so a reused pid is never signalled.
    pub pid_start: u64,
    pub created: String,
    pub owner: String,
    /// True once `start` has released the init process.
    pub started: bool,
    /// The cgroup as resolved at create time (absolute), so later commands find the same one.
    pub cgroup_path: String,
    pub annotations: HashMap<String, String>,
    pub config: Spec,
}

/// An open, locked container directory.
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
    lock: OwnedFd,
}

impl ContainerDir {
    /// Make the directory for a new container; fails if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<ContainerDir> {
        id::validate(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io(root, e))?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
        let lock = lock_dir(&path)?;
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            lock,
        })
    }

    /// Open and lock an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<ContainerDir> {
        id::validate(id)?;
        let path = root.join(id);
        if !path.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        let lock = lock_dir(&path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(id.to_string())
            }
            e => e,
        })?;
        // The container may have been deleted while we waited for the lock.
        if !path.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            lock,
        })
    }

    pub fn load(&self) -> Result<Saved> {
        read_saved(&self.path, &self.id)
    }

    /// Replace state.json atomically: readers see the old or the new file, never a torn one.
    pub fn save(&self, saved: &Saved) -> Result<()> {
        let tmp = self.path.join(".state.json.tmp");
        let data = serde_json::to_vec(saved).map_err(|e| Error::BadState {
            id: self.id.clone(),
            reason: e.to_string(),
        })?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&data).map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        let dst = self.path.join(STATE_FILE);
        fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
    }

    pub fn exec_socket(&self) -> PathBuf {
        self.path.join(EXEC_SOCKET)
    }

    /// Remove the directory and everything in it; the lock goes with it.
    pub fn destroy(self) -> Result<()> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    pub fn lock_fd(&self) -> i32 {
        self.lock.as_raw_fd()
    }
}

fn lock_dir(path: &Path) -> Result<OwnedFd> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let fd = OwnedFd::from(f);
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(fd)
}

pub fn read_saved(dir: &Path, id: &str) -> Result<Saved> {
    let p = dir.join(STATE_FILE);
    let data = fs::read(&p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(id.to_string())
        } else {
            Error::io(&p, e)
        }
    })?;
    serde_json::from_slice(&data).map_err(|e| Error::BadState {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// Every container id under root, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(root, e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// The start time (clock ticks since boot) of a live, non-zombie process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // rest starts at field 3; starttime is field 22.
    fields.nth(18)?.parse().ok()
}

impl Saved {
    /// True while the process this state was made for is alive.
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && process_start_time(self.pid) == Some(self.pid_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let a = process_start_time(me);
        assert!(a.is_some());
        assert_eq!(a, process_start_time(me));
        assert_eq!(process_start_time(0), None);
        assert_eq!(process_start_time(-5), None);
    }

    #[test]
    fn create_twice_is_refused_and_destroy_cleans() {
        let root = std::env::temp_dir().join(format!("kosrun-state-test-{}", std::process::id()));
        let d = ContainerDir::create(&root, "c1").expect("create");
        assert!(matches!(
            ContainerDir::create(&root, "c1"),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            ContainerDir::create(&root, "../x"),
            Err(Error::InvalidId(_))
        ));
        d.destroy().expect("destroy");
        assert!(!root.join("c1").exists());
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
