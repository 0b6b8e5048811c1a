//! `state` and `list`: what a container is doing now.

use std::path::Path;

use crate::error::Result;
use crate::state::{list_ids, read_saved, ContainerDir, Saved, Status};

/// The live status, derived from the kernel (the init's start time and executable, the
/// freezer), never from a step that may not have been recorded: a `create` that died
/// half-way leaves a container that is creating (its init still alive) or stopped; a
/// `start` that died after releasing the init leaves it running.
pub fn status_of(saved: &Saved) -> Status {
    if !saved.init_alive() {
        return Status::Stopped;
    }
    if !saved.create_done {
        return Status::Creating;
    }
    if !saved.init_execed() {
        return Status::Created;
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
        return Err(crate::error::Error::WrongState {
            id: saved.id.clone(),
            status: status.to_string(),
            what: "container not running",
        });
    }
    Ok(status)
}

pub fn state(root: &Path, id: &str) -> Result<(Saved, Status)> {
    let dir = ContainerDir::open(root, id)?;
    let saved = dir.load()?;
    let status = status_of(&saved);
    Ok((saved, status))
}

/// Every container under root. Unreadable entries are skipped: one broken
/// container must not hide the others.
pub fn list(root: &Path) -> Result<Vec<(Saved, Status)>> {
    let mut out = Vec::new();
    for id in list_ids(root)? {
        if let Ok(saved) = read_saved(&root.join(&id), &id) {
            let status = status_of(&saved);
            out.push((saved, status));
        }
    }
    Ok(out)
}
