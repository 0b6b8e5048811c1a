//! `delete`: remove a container's resources once it has stopped (or force it to).

use std::path::Path;

use super::kill::{open_pidfd, wait_exit};
use super::state::status_of;
use super::StateDoc;
use crate::error::{Error, Result};
use crate::hooks;
use crate::state::{ContainerDir, Status};

/// Returns poststop hook warnings.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<Vec<String>> {
    let dir = match ContainerDir::open(root, id) {
        Ok(d) => d,
        // runc treats a forced delete of a missing container as done; a create of this id
        // killed before it took the id may have left its staging directory.
        Err(Error::NotFound(_)) if force => {
            crate::state::sweep_staged(root, id);
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let saved = dir.load()?;
    let status = status_of(&saved);
    let cg = kos_cgroups::Manager::new(Some(&saved.cgroup_path), id)?;
    match status {
        Status::Stopped => {}
        // A created container has run nothing of the user's: runc deletes it without
        // --force; nor has one whose create died half-way.
        Status::Created | Status::Creating => stop(&saved, &cg)?,
        _ if force => stop(&saved, &cg)?,
        _ => {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.to_string(),
                what: "cannot delete a container that is not stopped (use --force)",
            })
        }
    }
    // Stray processes (the init gone, children left) go too.
    let _ = cg.kill_all(libc::SIGKILL);
    cg.remove()?;
    if !has_mount_ns(&saved.config) {
        crate::linux::rootfs::unmount_host_mounts(&saved.rootfs)?;
    }
    // The state goes before the poststop hooks run (the spec calls them after the
    // container is deleted): a hook that hangs or kills us cannot strand the id.
    dir.destroy()?;
    let state = StateDoc::new(&saved, Status::Stopped).json();
    Ok(hooks::run_all_warn(
        &saved.config,
        hooks::Kind::Poststop,
        &state,
    ))
}

fn stop(saved: &crate::state::Saved, cg: &kos_cgroups::Manager) -> Result<()> {
    let pidfd = match open_pidfd(saved) {
        Ok(fd) => fd,
        Err(_) => return Ok(()),
    };
    let _ = cg.kill_all(libc::SIGKILL);
    let _ = cg.thaw();
    // SAFETY: signalling through a pidfd we own.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if !wait_exit(&pidfd, 10_000) {
        return Err(Error::Setup(format!(
            "container {} init (pid {}) did not exit after SIGKILL",
            saved.id, saved.pid
        )));
    }
    Ok(())
}

fn has_mount_ns(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| {
            n.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
        })
}
