//! The runtime's `delete` started as soon as a container's processes are all gone, in the
//! background, so that the caller's Delete (which comes after the TaskExit event has
//! travelled and been handled) finds it done or nearly done instead of running it then.
//!
//! Only once nothing may still need the runtime's state: the init and every exec reaped
//! (an exec of a container sharing the host's pid namespace can outlive the init), and no
//! OOM kill counted in the cgroup (kosd and the CRI server read that count after the exit,
//! before Delete; a removed cgroup reads as "no OOM kill", which is then the truth). Stats,
//! Pids, Update and Checkpoint after the exit are answered without the runtime's state.

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::Service;
use crate::container::{Container, EarlyDelete, Status};

/// The init and every started exec have exited and been reaped, and the init's exit is not
/// held back for Start.
fn everything_dead(c: &Container) -> bool {
    c.init.exited()
        && c.held_exit.is_none()
        && c.execs
            .values()
            .all(|p| !matches!(p.status, Status::Running | Status::Paused))
}

impl Service {
    /// After an exit: queues container `id`'s early delete when it may run. It starts in
    /// `run_early_deletes`, after the events of this round went out.
    pub(super) fn consider_early_delete(&mut self, id: &str) {
        let Some(c) = self.containers.get(id) else {
            return;
        };
        if c.early_delete == EarlyDelete::NotYet
            && everything_dead(c)
            && !self.delete_soon.iter().any(|x| x == id)
        {
            self.delete_soon.push(id.to_string());
        }
    }

    /// Starts the queued early deletes (the loop calls this once the events are flushed).
    pub fn run_early_deletes(&mut self) {
        for id in std::mem::take(&mut self.delete_soon) {
            let Some(c) = self.containers.get_mut(&id) else {
                continue;
            };
            if c.early_delete != EarlyDelete::NotYet || !everything_dead(c) {
                continue;
            }
            c.early_delete = begin(c);
            crate::log::debug(&format!("{id}: early delete: {:?}", c.early_delete));
        }
    }

    /// A reaped child that is an early delete: its result recorded. Whether it was one.
    pub(super) fn early_delete_exited(&mut self, pid: i32, code: u32) -> bool {
        for c in self.containers.values_mut() {
            if c.early_delete == EarlyDelete::Running(pid as u32) {
                c.early_delete = EarlyDelete::Done(code == 0);
                return true;
            }
        }
        false
    }
}

/// Snapshot of the cgroup's figures (kept for Stats), then the runtime's delete, spawned.
fn begin(c: &mut Container) -> EarlyDelete {
    let m = match kos_cgroups::Manager::new(c.cgroups_path.as_deref(), &c.id) {
        Ok(m) => m,
        Err(e) => {
            crate::log::debug(&format!("{}: no early delete: cgroup: {e}", c.id));
            return EarlyDelete::Declined;
        }
    };
    match m.stats() {
        Ok(s) if s.memory.oom_kill > 0 => return EarlyDelete::Declined,
        Ok(s) => c.exit_stats = crate::metrics::to_any(m.layout(), &s).ok(),
        // What could not be read now is kept for whoever reads it before Delete.
        Err(e) => {
            crate::log::debug(&format!("{}: no early delete: stats: {e}", c.id));
            return EarlyDelete::Declined;
        }
    }
    match c.runtime.spawn_delete(&c.id) {
        Ok(pid) => EarlyDelete::Running(pid),
        Err(e) => {
            crate::log::warn(&format!("{}: early delete: {e}", c.id));
            EarlyDelete::Done(false)
        }
    }
}

/// Delete's part: waits for the early delete when it still runs. Some(succeeded) when one
/// was started, None when Delete has to run the runtime's delete itself.
pub(super) fn finish(c: &mut Container) -> Option<bool> {
    match c.early_delete {
        EarlyDelete::NotYet | EarlyDelete::Declined => None,
        EarlyDelete::Done(ok) => Some(ok),
        EarlyDelete::Running(pid) => {
            // The loop is single-threaded: nothing else collects this child meanwhile.
            let ok = loop {
                match waitpid(Pid::from_raw(pid as i32), None) {
                    Ok(WaitStatus::Exited(_, code)) => break code == 0,
                    Ok(WaitStatus::Signaled(..)) => break false,
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break false,
                }
            };
            c.early_delete = EarlyDelete::Done(ok);
            Some(ok)
        }
    }
}

/// Whether the runtime's state of the container is (being) removed already.
pub(super) fn started(c: &Container) -> bool {
    matches!(
        c.early_delete,
        EarlyDelete::Running(_) | EarlyDelete::Done(_)
    )
}
