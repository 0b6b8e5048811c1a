//! `pause` and `resume`: freeze and thaw every process of the container through its cgroup.

use std::path::Path;

use crate::container::Container;
use crate::error::{Error, Result};
use crate::store::Status;

/// Freezes a running container; anything else is "container not running", runc's wording.
/// runc also freezes a created container, but here `state` would still call it created and
/// `start` would wait on a frozen init, so that is refused too.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    let saved = &c.saved;
    let status = c.status();
    if status != Status::Running {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            what: "container not running",
        });
    }
    let cg = kos_cgroups::Manager::new(Some(&saved.cgroup_path), id)?;
    if let Err(e) = cg.freeze() {
        // A freeze that timed out may have stopped some tasks: never leave it half done.
        let _ = cg.thaw();
        return Err(e.into());
    }
    Ok(())
}

/// Thaws a paused container. The freezer, not the saved status, says whether it is paused,
/// so a container frozen by another tool before `start` can be thawed too.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    let saved = &c.saved;
    let not_paused = |status: Status| Error::WrongState {
        id: id.to_string(),
        status: status.to_string(),
        what: "container not paused",
    };
    if !saved.init_alive() {
        return Err(not_paused(Status::Stopped));
    }
    let cg = kos_cgroups::Manager::new(Some(&saved.cgroup_path), id)?;
    if !cg.is_frozen()? {
        return Err(not_paused(c.status()));
    }
    cg.thaw()?;
    Ok(())
}
