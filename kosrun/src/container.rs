//! One container of a `--root`, as every operation sees it: loaded by id under its
//! directory lock, its status derived from the kernel, its init reached through a pidfd
//! that is checked against the saved start time, signalled, saved and destroyed.

use std::os::fd::OwnedFd;
use std::path::Path;

use crate::error::{Error, Result, Stage};
use crate::store::{process_start_time, ContainerDir, Saved, Status};

/// A container opened and locked by id, with its saved state.
pub struct Container {
    dir: ContainerDir,
    pub saved: Saved,
}

impl Container {
    /// Open and lock the container `id` under `root` and read its state. Commands on
    /// one container are serialised by the lock, held until this is dropped.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        let dir = ContainerDir::open(root, id)?;
        let saved = dir.load()?;
        Ok(Container { dir, saved })
    }

    /// Open and lock the container `id` with the state its creator holds in memory (the
    /// `run` that made it), instead of reading it back.
    pub fn open_with(root: &Path, id: &str, saved: Saved) -> Result<Container> {
        let dir = ContainerDir::open(root, id)?;
        Ok(Container { dir, saved })
    }

    pub fn id(&self) -> &str {
        &self.saved.id
    }

    /// The live status (see [`status_of`]).
    pub fn status(&self) -> Status {
        status_of(&self.saved)
    }

    /// The live status, or runc's "container not running" error once it has stopped.
    pub fn require_not_stopped(&self) -> Result<Status> {
        require_not_stopped(&self.saved)
    }

    /// A pidfd for the init (see [`open_pidfd`]).
    pub fn pidfd(&self) -> Result<OwnedFd> {
        open_pidfd(&self.saved)
    }

    /// Signal the init (see [`signal_init`]).
    pub fn signal(&self, signal: i32) -> Result<()> {
        signal_init(&self.saved, signal)
    }

    /// Replace the saved state with `self.saved`.
    pub fn save(&self) -> Result<()> {
        self.dir.save(&self.saved)
    }

    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Remove the state directory; the lock goes with it.
    pub fn destroy(self) -> Result<()> {
        self.dir.destroy()
    }

    /// The state without the lock: for commands that outlive any other (exec).
    pub fn unlock(self) -> Saved {
        self.saved
    }
}

/// The live status, derived from the kernel (the init's start time and executable, the
/// freezer), never from a step that may not have been recorded: a `create` that died
/// half-way leaves a container that is creating (its init still alive) or stopped; a
/// `start` that died after releasing the init leaves it running. Takes no lock, so `list`
/// can ask it of every container.
pub fn status_of(saved: &Saved) -> Status {
    if !saved.init_alive() {
        return Status::Stopped;
    }
    // An init that has exec'd was started, whatever was recorded (`run` records its
    // create and start in one write, after the start).
    if !saved.init_execed() {
        return if saved.create_done {
            Status::Created
        } else {
            Status::Creating
        };
    }
    let frozen = kos_cgroups::Manager::new(Some(&saved.cgroup_path), &saved.id)
        .and_then(|m| m.is_frozen())
        .unwrap_or(false);
    if frozen {
        Status::Paused
    } else {
        Status::Running
    }
}

/// The live status, or runc's "container not running" error once it has stopped.
pub fn require_not_stopped(saved: &Saved) -> Result<Status> {
    let status = status_of(saved);
    if status == Status::Stopped {
        return Err(not_running(saved));
    }
    Ok(status)
}

fn not_running(saved: &Saved) -> Error {
    Error::WrongState {
        id: saved.id.clone(),
        status: Status::Stopped.to_string(),
        what: "container not running",
    }
}

/// A pidfd for the saved init, taken before checking its start time, so a pid reused by
/// another process in between is never the one it names.
pub fn open_pidfd(saved: &Saved) -> Result<OwnedFd> {
    if saved.pid <= 0 {
        return Err(not_running(saved));
    }
    let fd = crate::sys::pidfd_open(saved.pid).map_err(|_| not_running(saved))?;
    if process_start_time(saved.pid) != Some(saved.pid_start) {
        return Err(not_running(saved));
    }
    Ok(fd)
}

/// Signal the init through a checked pidfd.
pub fn signal_init(saved: &Saved, signal: i32) -> Result<()> {
    let pidfd = open_pidfd(saved)?;
    crate::sys::pidfd_send_signal(&pidfd, signal).map_err(|e| {
        if e.raw_os_error() == Some(libc::ESRCH) {
            not_running(saved)
        } else {
            Error::failed(
                Stage::State,
                format!("signal {signal} to pid {}: {e}", saved.pid),
            )
        }
    })
}

/// Wait up to `ms` for the process behind a pidfd to exit.
pub fn wait_exit(pidfd: &OwnedFd, ms: i32) -> bool {
    crate::sys::pidfd_wait_exit(pidfd, ms)
}
