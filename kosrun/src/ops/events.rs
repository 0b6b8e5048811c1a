//! `events`: usage statistics and OOM notifications of a container, once (`--stats`) or as a
//! stream until the container stops.
//!
//! OOM notifications come from the kernel, not from polling: on a v1 memory hierarchy an
//! eventfd registered for memory.oom_control in cgroup.event_control, on v2 an inotify watch
//! on memory.events whose oom / oom_kill counters are compared on each change.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kos_cgroups::{Layout, Manager, Stats, StatsEvent};
use serde::Serialize;

use super::kill::open_pidfd;
use crate::error::{Error, Result};
use crate::state::{ContainerDir, Saved};

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
        return Err(Error::Setup(
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
            pollfd(oom.as_ref().map_or(-1, |w| w.fd())),
        ];
        // SAFETY: two valid pollfd structs; a negative fd is ignored by the kernel.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::Setup(format!("events: poll: {e}")));
        }
        if fds[1].revents != 0 {
            if let Some(w) = oom.as_mut() {
                let (hit, gone) = w.take();
                if hit {
                    emit(Event::Oom).map_err(out)?;
                }
                if gone {
                    oom = None;
                }
            }
        }
        if fds[0].revents != 0 {
            // The OOM kill may be what ended the init: report it before leaving.
            if let Some(w) = oom.as_mut() {
                if w.take().0 {
                    emit(Event::Oom).map_err(out)?;
                }
            }
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

enum OomWatch {
    V1 {
        efd: OwnedFd,
        // Registered with the eventfd: must stay open as long as it.
        _ctl: File,
        event_control: PathBuf,
    },
    V2 {
        inotify: OwnedFd,
        events: PathBuf,
        last: (u64, u64),
    },
}

impl OomWatch {
    /// None when the container has no memory cgroup to watch.
    fn open(cg: &Manager) -> Result<Option<OomWatch>> {
        if cg.layout() != Layout::V2 {
            if let Some(dir) = cg.v1_dir("memory") {
                return Self::open_v1(dir).map(Some);
            }
        }
        match cg.v2_dir().map(|d| d.join("memory.events")) {
            Some(p) if p.exists() => Self::open_v2(p).map(Some),
            _ => Ok(None),
        }
    }

    fn open_v1(dir: &Path) -> Result<OomWatch> {
        let ctl_path = dir.join("memory.oom_control");
        let ctl = File::open(&ctl_path).map_err(|e| Error::io(&ctl_path, e))?;
        // SAFETY: eventfd with valid flags; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(Error::Setup(format!(
                "eventfd: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: a fresh descriptor owned by nothing else.
        let efd = unsafe { OwnedFd::from_raw_fd(raw) };
        let event_control = dir.join("cgroup.event_control");
        let line = format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd());
        std::fs::write(&event_control, line).map_err(|e| Error::io(&event_control, e))?;
        Ok(OomWatch::V1 {
            efd,
            _ctl: ctl,
            event_control,
        })
    }

    fn open_v2(events: PathBuf) -> Result<OomWatch> {
        // SAFETY: inotify_init1 with valid flags; checked before use.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if raw < 0 {
            return Err(Error::Setup(format!(
                "inotify: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: a fresh descriptor owned by nothing else.
        let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
        let c = std::ffi::CString::new(events.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::Setup(format!("{}: NUL in path", events.display())))?;
        // SAFETY: valid inotify descriptor and NUL-terminated path.
        let wd =
            unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(Error::io(&events, io::Error::last_os_error()));
        }
        let last = read_oom_counts(&events).unwrap_or((0, 0));
        Ok(OomWatch::V2 {
            inotify,
            events,
            last,
        })
    }

    fn fd(&self) -> RawFd {
        match self {
            OomWatch::V1 { efd, .. } => efd.as_raw_fd(),
            OomWatch::V2 { inotify, .. } => inotify.as_raw_fd(),
        }
    }

    /// Consumes pending notifications: (an OOM kill happened, the cgroup is gone).
    fn take(&mut self) -> (bool, bool) {
        match self {
            OomWatch::V1 {
                efd, event_control, ..
            } => {
                let mut buf = [0u8; 8];
                // SAFETY: reading 8 bytes into an 8-byte buffer from our eventfd.
                let n = unsafe { libc::read(efd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                if n != 8 {
                    return (false, false);
                }
                // The kernel also signals every registered eventfd when the cgroup is removed.
                if !event_control.exists() {
                    return (false, true);
                }
                (true, false)
            }
            OomWatch::V2 {
                inotify,
                events,
                last,
            } => {
                let mut buf = [0u8; 4096];
                loop {
                    // SAFETY: reading into a buffer of the given size from our inotify fd.
                    let n = unsafe {
                        libc::read(inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                    };
                    if n <= 0 {
                        break;
                    }
                }
                match read_oom_counts(events) {
                    Some(now) => {
                        let hit = now.0 > last.0 || now.1 > last.1;
                        *last = now;
                        (hit, false)
                    }
                    None => (false, true),
                }
            }
        }
    }
}

/// The "oom" and "oom_kill" counters of a v2 memory.events file.
fn read_oom_counts(p: &Path) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(p).ok()?;
    Some(parse_oom_counts(&s))
}

fn parse_oom_counts(s: &str) -> (u64, u64) {
    let mut out = (0, 0);
    for l in s.lines() {
        match l.split_once(' ') {
            Some(("oom", v)) => out.0 = v.trim().parse().unwrap_or(0),
            Some(("oom_kill", v)) => out.1 = v.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_events_counters() {
        let s = "low 0\nhigh 3\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_counts(s), (2, 1));
        assert_eq!(parse_oom_counts(""), (0, 0));
    }

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
