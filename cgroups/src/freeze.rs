//! Freezing and thawing: v1 freezer.state or v2 cgroup.freeze, waiting for the kernel to
//! report the new state.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::dirs::Dirs;
use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};
use crate::layout::Layout;

const DEADLINE: Duration = Duration::from_secs(10);

enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

fn freezer(m: &Dirs) -> Result<Freezer<'_>> {
    if m.layout != Layout::V2 {
        if let Some(d) = m.v1("freezer") {
            return Ok(Freezer::V1(d));
        }
    }
    // On a hybrid host without a v1 freezer the processes are also in the unified
    // directory (add_process puts them there), so the v2 freezer covers them.
    match m.v2() {
        Some(d) => Ok(Freezer::V2(d)),
        None => Err(Error::unsupported(
            "freeze",
            "no freezer hierarchy is mounted",
        )),
    }
}

pub(crate) fn set(m: &Dirs, frozen: bool) -> Result<()> {
    match freezer(m)? {
        Freezer::V1(d) => set_v1(d, frozen),
        Freezer::V2(d) => set_v2(d, frozen),
    }
}

pub(crate) fn is_frozen(m: &Dirs) -> Result<bool> {
    match freezer(m)? {
        Freezer::V1(d) => Ok(fsutil::read_string(&d.join("freezer.state"))?.trim() == "FROZEN"),
        Freezer::V2(d) => v2_frozen(d),
    }
}

fn v2_frozen(d: &Path) -> Result<bool> {
    Ok(fsutil::read_keyed(&d.join("cgroup.events"), "frozen")? == Some(1))
}

/// Sleeps a little longer each round; freezing is not on a container's start path.
fn backoff(round: &mut u32) {
    let us = 100u64 << (*round).min(7);
    *round += 1;
    std::thread::sleep(Duration::from_micros(us));
}

fn timeout(path: PathBuf, state: &'static str, start: Instant) -> Error {
    Error::Timeout {
        path,
        state,
        waited_ms: start.elapsed().as_millis() as u64,
    }
}

fn set_v1(d: &Path, frozen: bool) -> Result<()> {
    let p = d.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let mut w = Writer::new(false);
    let start = Instant::now();
    let mut round = 0;
    loop {
        // Writing again each round matters: a v1 cgroup can stay FREEZING when a task was
        // busy in the kernel at the first attempt, and a new write retries it.
        w.write_only("freezer.state", &p, want)?;
        let state = fsutil::read_string(&p)?;
        if state.trim() == want {
            return Ok(());
        }
        if start.elapsed() > DEADLINE {
            return Err(timeout(p, want, start));
        }
        backoff(&mut round);
    }
}

fn set_v2(d: &Path, frozen: bool) -> Result<()> {
    let p = d.join("cgroup.freeze");
    Writer::new(false).write_only("cgroup.freeze", &p, if frozen { "1" } else { "0" })?;
    let start = Instant::now();
    let mut round = 0;
    loop {
        if v2_frozen(d)? == frozen {
            return Ok(());
        }
        if start.elapsed() > DEADLINE {
            return Err(timeout(
                d.join("cgroup.events"),
                if frozen { "frozen" } else { "thawed" },
                start,
            ));
        }
        backoff(&mut round);
    }
}
