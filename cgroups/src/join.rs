//! Putting a new process into the container's cgroup without the kernel's global
//! migration lock.
//!
//! Moving another process (writing its pid to `cgroup.procs`) takes the percpu rwsem that
//! guards every thread group's cgroup membership for writing, and the first writer after a
//! quiet spell waits for an RCU grace period: 10 to 20 ms on this kind of host, paid by every
//! container create. Two ways in skip that lock, and `SelfJoin` holds the descriptors for
//! both, opened by the runtime before it clones the init:
//! - v1: a single-threaded process that writes "0" to a hierarchy's `tasks` file moves only
//!   itself, under the cgroup mutex alone. The kernel checks the credentials the file was
//!   opened with, so an init already in a new user namespace may still write it.
//! - v2 (also the unified mount of a hybrid host): `clone3(CLONE_INTO_CGROUP)` creates the
//!   init inside the cgroup directory the descriptor names.
//!
//! Where clone3 cannot place the init (an older kernel, a caller without write access to the
//! directory), the runtime writes the pid to the v2 `cgroup.procs` as before.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::dirs::Dirs;
use crate::error::{Error, Result};

/// Descriptors through which the container's init joins its cgroup by itself.
#[derive(Debug)]
pub struct SelfJoin {
    /// Each v1 hierarchy's `tasks` file of the container's cgroup, open for writing.
    tasks: Vec<(PathBuf, File)>,
    /// The container's v2 directory, for `CLONE_INTO_CGROUP`.
    v2_dir: Option<OwnedFd>,
}

impl SelfJoin {
    /// `v1`/`v2`: which of the container's directories to open (see
    /// [`crate::Manager::open_self_join_v2`] for why they may come apart).
    pub(crate) fn open(dirs: &Dirs, v1: bool, v2: bool) -> Result<SelfJoin> {
        let mut tasks = Vec::with_capacity(dirs.v1.len());
        for h in dirs.v1.iter().filter(|_| v1) {
            let path = h.dir.join("tasks");
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .map_err(|source| Error::Write {
                    field: "tasks".into(),
                    path: path.clone(),
                    value: "(open)".into(),
                    source,
                })?;
            tasks.push((path, f));
        }
        let v2_dir = match dirs.v2().filter(|_| v2) {
            Some(d) => Some(
                File::open(d)
                    .map(OwnedFd::from)
                    .map_err(|source| Error::Dir {
                        op: "open",
                        path: d.to_path_buf(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(SelfJoin { tasks, v2_dir })
    }

    /// The v2 directory to pass as `clone_args.cgroup` with `CLONE_INTO_CGROUP`.
    pub fn v2_dir(&self) -> Option<BorrowedFd<'_>> {
        self.v2_dir.as_ref().map(|f| f.as_fd())
    }

    /// Called by the new process itself, while it has a single thread: moves it into the
    /// container's cgroup of every v1 hierarchy.
    pub fn join_v1(&self) -> Result<()> {
        for (path, f) in &self.tasks {
            let mut f: &File = f;
            f.write_all(b"0").map_err(|source| Error::Write {
                field: "tasks".into(),
                path: path.clone(),
                value: "0".into(),
                source,
            })?;
        }
        Ok(())
    }

    /// The v1 `tasks` files, to hand to a process cloned before they existed (over a
    /// unix socket): each with its path, for the error that names it.
    pub fn into_v1_tasks(self) -> Vec<(PathBuf, OwnedFd)> {
        self.tasks
            .into_iter()
            .map(|(p, f)| (p, OwnedFd::from(f)))
            .collect()
    }

    /// What [`SelfJoin::into_v1_tasks`] gave, received by the new process.
    pub fn from_v1_tasks(tasks: Vec<(PathBuf, OwnedFd)>) -> SelfJoin {
        SelfJoin {
            tasks: tasks.into_iter().map(|(p, f)| (p, File::from(f))).collect(),
            v2_dir: None,
        }
    }

    /// Every descriptor held, for a process that must close them (the init, once joined).
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.tasks
            .iter()
            .map(|(_, f)| f.as_raw_fd())
            .chain(self.v2_dir.as_ref().map(|f| f.as_raw_fd()))
            .collect()
    }
}
