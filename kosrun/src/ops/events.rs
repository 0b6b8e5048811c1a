//! `events`: usage statistics and OOM notifications of a container, once (`--stats`) or as a
//! stream until the container stops.
//!
//! OOM notifications come from the kernel, not from polling, through kos-cgroups' `OomWatch`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use kos_cgroups::{Manager, OomWatch, Stats, StatsEvent};
use serde::Serialize;

use super::kill::open_pidfd;
use crate::error::{Error, Result, Stage};
use crate::store::{ContainerDir, Saved};

/// Something `watch` reports.
#[derive(Debug)]
pub enum Event {
    Stats(Box<Stats>),
    /// The kernel's OOM killer ran in the container's memory cgroup.
    Oom,
    /// A problem worth telling the user that does not end the stream (a failed stats read,
    /// OOM notifications unavailable).
    Warning(String),
}

#[derive(Serialize)]
struct Record<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
}

/// runc's `{"type":"stats","id":...,"data":{...}}` line.
pub fn stats_line(id: &str, stats: &Stats) -> String {
    serde_json::to_string(&StatsEvent::new(id, stats)).unwrap_or_default()
}

/// runc's `{"type":"oom","id":...}` line.
pub fn oom_line(id: &str) -> String {
    serde_json::to_string(&Record { kind: "oom", id }).unwrap_or_default()
}

/// Loads the container without keeping its lock: a stream must not block `delete`.
fn load_running(root: &Path, id: &str) -> Result<Saved> {
    let saved = ContainerDir::open(root, id)?.load()?;
    super::state::require_not_stopped(&saved)?;
    Ok(saved)
}

/// The container's current usage figures.
pub fn stats(root: &Path, id: &str) -> Result<Stats> {
    let saved = load_running(root, id)?;
    let cg = Manager::new(Some(&saved.cgroup_path), id)?;
    Ok(cg.stats()?)
}

/// Reports stats every `interval` (the first after one interval, as runc does) and every OOM
/// kill as it happens, until the container's init exits. An error from `emit` (say, stdout
/// closed) ends the stream with that error.
pub fn watch(
    root: &Path,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(Event) -> io::Result<()>,
) -> Result<()> {
    if interval.is_zero() {
        return Err(Error::failed(
            Stage::Events,
            "events: the interval must be greater than 0".into(),
        ));
    }
    let saved = load_running(root, id)?;
    let init = open_pidfd(&saved)?;
    let cg = Manager::new(Some(&saved.cgroup_path), id)?;
    let out = |e: io::Error| Error::io("stdout", e);
    let mut oom = match OomWatch::open(&cg) {
        Ok(w) => w,
        Err(e) => {
            emit(Event::Warning(format!(
                "OOM notifications unavailable: {e}"
            )))
            .map_err(out)?;
            None
        }
    };
    let mut next = Instant::now() + interval;
    loop {
        let now = Instant::now();
        if now >= next {
            match cg.stats() {
                Ok(s) => emit(Event::Stats(Box::new(s))).map_err(out)?,
                Err(e) => emit(Event::Warning(format!("stats: {e}"))).map_err(out)?,
            }
            next += interval;
            if next <= now {
                next = now + interval;
            }
            continue;
        }
        let wait = next - now;
        let ms = i32::try_from(wait.as_millis() + 1).unwrap_or(i32::MAX);
        let mut fds = [
            pollfd(init.as_raw_fd()),
            pollfd(oom.as_ref().map_or(-1, |w| w.as_fd().as_raw_fd())),
        ];
        // SAFETY: two valid pollfd structs; a negative fd is ignored by the kernel.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::failed(Stage::Events, format!("events: poll: {e}")));
        }
        if fds[1].revents != 0 {
            oom_events(&mut oom, &mut emit).map_err(out)?;
        }
        if fds[0].revents != 0 {
            // The OOM kill may be what ended the init: report it before leaving.
            oom_events(&mut oom, &mut emit).map_err(out)?;
            return Ok(());
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Emits one `Oom` per new kill; a watch whose cgroup is gone (or that fails) is dropped, as
/// the init's exit ends the stream anyway.
fn oom_events(
    oom: &mut Option<OomWatch>,
    emit: &mut impl FnMut(Event) -> io::Result<()>,
) -> io::Result<()> {
    let Some(w) = oom.as_mut() else {
        return Ok(());
    };
    match w.read_events() {
        Ok(n) => {
            for _ in 0..n {
                emit(Event::Oom)?;
            }
        }
        Err(kos_cgroups::Error::Gone { .. }) => *oom = None,
        Err(e) => {
            *oom = None;
            emit(Event::Warning(format!("OOM notifications stopped: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_runc_shape() {
        let v: serde_json::Value = serde_json::from_str(&oom_line("c1")).unwrap();
        assert_eq!(v, serde_json::json!({"type": "oom", "id": "c1"}));
        let v: serde_json::Value =
            serde_json::from_str(&stats_line("c1", &Stats::default())).unwrap();
        assert_eq!(v["type"], "stats");
        assert_eq!(v["id"], "c1");
        assert!(v["data"]["memory"].is_object());
    }
}
