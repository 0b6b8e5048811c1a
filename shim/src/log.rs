//! The shim's own diagnostics. containerd reads them from the `log` fifo in the bundle; the
//! daemonized shim's stderr points there (or at /dev/null when there is no reader).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::timefmt::Time;

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

fn write(level: &str, msg: &str) {
    let line = format!(
        "time=\"{}\" level={level} msg={:?} runtime=io.containerd.kos.v2\n",
        Time::now().rfc3339_nano(),
        msg
    );
    // Best effort: a full or closed log must never stop the shim.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

pub fn warn(msg: &str) {
    write("warning", msg);
}

pub fn info(msg: &str) {
    write("info", msg);
}

pub fn debug(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        write("debug", msg);
    }
}
