//! The runtime's `delete` started as soon as a container's processes are all gone, in the
//! background, so that the caller's Delete (which comes after the TaskExit event has
//! travelled and been handled) finds it done or nearly done instead of running it then.
//!
//! Only once nothing may still need the runtime's state: the init and every exec reaped
//! (an exec of a container sharing the host's pid namespace can outlive the init), and no
//! OOM kill counted in the cgroup (kosd and the CRI server read that count after the exit,
//! before Delete; a removed cgroup reads as "no OOM kill", which is then the truth). Pids,
//! Stats, Update and Checkpoint after the exit are answered without the runtime's state:
//! no processes, NotFound (containerd's metrics skip a task so answering), refused.

use std::path::Path;

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
    /// `run_early_deletes`, once this round's answers (Wait) are written.
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

    /// Starts the queued early deletes (the loop calls this once the answers are written).
    pub fn run_early_deletes(&mut self) {
        for id in std::mem::take(&mut self.delete_soon) {
            let Some(c) = self.containers.get_mut(&id) else {
                continue;
            };
            if c.early_delete != EarlyDelete::NotYet || !everything_dead(c) {
                continue;
            }
            let t = std::time::Instant::now();
            c.early_delete = begin(c);
            crate::log::debug(&format!(
                "{id}: early delete: {:?} after {} us",
                c.early_delete,
                t.elapsed().as_micros()
            ));
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

/// The OOM check (one file read), then the runtime's delete, spawned: nothing more here,
/// the loop answers nothing meanwhile.
fn begin(c: &mut Container) -> EarlyDelete {
    match c.oom_count_file.as_deref().map(oom_kills) {
        Some(Ok(0)) | None => {}
        Some(Ok(_)) => return EarlyDelete::Declined,
        // What could not be read now is kept for whoever reads it before Delete.
        Some(Err(e)) => {
            crate::log::debug(&format!("{}: no early delete: {e}", c.id));
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

/// The `oom_kill` count of a memory.oom_control (v1) or memory.events (v2) file; 0 when the
/// file is not there (no memory controller: nobody can read a count either).
fn oom_kills(path: &Path) -> std::io::Result<u64> {
    let text = match crate::spec::read_bounded(path, 4096) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    Ok(parse_oom_kills(&String::from_utf8_lossy(&text)))
}

fn parse_oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Delete's part: waits for the early delete when it still runs. Some(succeeded) when one
/// was started, None when Delete has to run the runtime's delete itself.
pub(super) fn finish(c: &mut Container) -> Option<bool> {
    match c.early_delete {
        EarlyDelete::NotYet | EarlyDelete::Declined => None,
        EarlyDelete::Done(ok) => Some(ok),
        EarlyDelete::Running(pid) => {
            let t = std::time::Instant::now();
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
            crate::log::debug(&format!(
                "{}: waited {} us for the early delete",
                c.id,
                t.elapsed().as_micros()
            ));
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

#[cfg(test)]
mod tests {
    use super::parse_oom_kills;

    #[test]
    fn reads_the_oom_kill_count_of_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kills(v1), 2);
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), 0);
        assert_eq!(parse_oom_kills(""), 0);
    }
}
