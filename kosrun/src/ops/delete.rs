//! `delete`: remove a container's resources once it has stopped (or force it to).

use std::path::Path;

use super::StateDoc;
use crate::container::{open_pidfd, wait_exit, Container};
use crate::error::{Error, Result, Stage};
use crate::hooks;
use crate::store::{Saved, Status};

/// Returns poststop hook warnings.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<Vec<String>> {
    delete_known(root, id, force, None)
}

/// [`delete`] by the process that created the container (`run`), with the cgroup manager
/// and the state it already has: the hierarchies are not discovered again, nor the state
/// read back (the directory is still locked and checked to be there).
pub fn delete_known(
    root: &Path,
    id: &str,
    force: bool,
    known: Option<(&kos_cgroups::Manager, &Saved)>,
) -> Result<Vec<String>> {
    let cgroup = known.map(|(cg, _)| cg);
    let loaded = match known {
        Some((_, saved)) => Container::open_with(root, id, saved.clone()),
        None => Container::load(root, id),
    };
    let c = match loaded {
        Ok(c) => c,
        // runc treats a forced delete of a missing container as done; a create of this id
        // killed before it took the id may have left its staging directory.
        Err(Error::NotFound(_)) if force => {
            crate::store::sweep_staged(root, id);
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let status = c.status();
    let saved = &c.saved;
    let cg = match cgroup.filter(|c| c.resolved_path() == saved.cgroup_path) {
        Some(c) => c.clone(),
        None => kos_cgroups::Manager::new(Some(&saved.cgroup_path), id)?,
    };
    // Only what is ours: another container whose cgroup sits below ours keeps its
    // processes and its cgroup.
    let pids = cg.pids().unwrap_or_default();
    let foreign = foreign_below(root, saved, &pids);
    match status {
        Status::Stopped => {}
        // A created container has run nothing of the user's: runc deletes it without
        // --force; nor has one whose create died half-way.
        Status::Created | Status::Creating => stop(saved, &cg, &foreign)?,
        _ if force => stop(saved, &cg, &foreign)?,
        _ => {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: status.to_string(),
                what: "cannot delete a container that is not stopped (use --force)",
            })
        }
    }
    // Stray processes (the init gone, children left) go too. An empty subtree (the
    // usual delete of a stopped container) has nothing that could appear in it.
    if !pids.is_empty() {
        kill_own(&cg, &foreign);
    }
    if foreign.is_empty() {
        cg.remove()?;
    }
    let view = saved.view()?;
    if !view.has_mount_ns() {
        crate::linux::rootfs::unmount_host_mounts(&saved.rootfs)?;
    }
    // The state goes before the poststop hooks run (the spec calls them after the
    // container is deleted): a hook that hangs or kills us cannot strand the id.
    let poststop = hooks::of_kind(view.hooks.as_ref(), hooks::Kind::Poststop);
    let state = (!poststop.is_empty()).then(|| StateDoc::new(saved, Status::Stopped).json());
    c.destroy()?;
    Ok(match state {
        Some(state) => hooks::run_all_warn(view.hooks.as_ref(), hooks::Kind::Poststop, &state),
        None => Vec::new(),
    })
}

/// The cgroups of other containers under the same --root that lie below ours. Looked for
/// only when some process of our subtree is not in our own cgroup, so the usual delete
/// reads no other container's state.
fn foreign_below(root: &Path, saved: &Saved, pids: &[i32]) -> Vec<String> {
    let own = saved.cgroup_path.trim_end_matches('/');
    if pids
        .iter()
        .all(|p| cgroup_paths(*p).iter().all(|c| c == own))
    {
        return Vec::new();
    }
    let prefix = format!("{own}/");
    crate::store::list_ids(root)
        .unwrap_or_default()
        .into_iter()
        .filter(|other| *other != saved.id)
        .filter_map(|other| crate::store::read_saved(&root.join(&other), &other).ok())
        .map(|o| o.cgroup_path.trim_end_matches('/').to_string())
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

/// The cgroup paths of a process, one per hierarchy.
fn cgroup_paths(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|t| {
            t.lines()
                .filter_map(|l| l.splitn(3, ':').nth(2))
                .map(|p| p.trim_end_matches('/').to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL every process of our cgroup subtree except those in `foreign` cgroups.
fn kill_own(cg: &kos_cgroups::Manager, foreign: &[String]) {
    if foreign.is_empty() {
        let _ = cg.kill_all(libc::SIGKILL);
        return;
    }
    for pid in cg.pids().unwrap_or_default() {
        let theirs = cgroup_paths(pid).iter().any(|c| {
            foreign
                .iter()
                .any(|f| c == f || c.starts_with(&format!("{f}/")))
        });
        if !theirs {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn stop(saved: &Saved, cg: &kos_cgroups::Manager, foreign: &[String]) -> Result<()> {
    let pidfd = match open_pidfd(saved) {
        Ok(fd) => fd,
        Err(_) => return Ok(()),
    };
    kill_own(cg, foreign);
    let _ = cg.thaw();
    let _ = crate::sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
    if !wait_exit(&pidfd, 10_000) {
        return Err(Error::failed(
            Stage::Delete,
            format!(
                "container {} init (pid {}) did not exit after SIGKILL",
                saved.id, saved.pid
            ),
        ));
    }
    Ok(())
}
