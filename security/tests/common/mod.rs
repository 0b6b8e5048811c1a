//! Run a closure in a forked child and collect what it reports through a pipe.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};

/// How the child ended, and everything it wrote to its report pipe.
#[derive(Debug)]
pub enum Outcome {
    Exited(i32, String),
    Signaled(Signal, String),
}

impl Outcome {
    /// The report of a child that exited 0; panics with the report otherwise.
    pub fn ok(self) -> String {
        match self {
            Outcome::Exited(0, r) => r,
            other => panic!("child failed: {other:?}"),
        }
    }
}

/// Kills and reaps the child if the test fails before reaping it.
struct Reaper(Option<Pid>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Fork; in the child run `f` with a writer to the parent, exit with its return value (101 on
/// panic). A 20 s alarm bounds a child that hangs.
pub fn in_child(f: impl FnOnce(&mut std::fs::File) -> i32) -> Outcome {
    let (r, w) = pipe().expect("pipe");
    // SAFETY: the child only runs `f` and exits; it never returns into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(r);
            let mut out = std::fs::File::from(w);
            unsafe {
                libc::alarm(20);
                // No core files from the SIGSYS deaths the tests provoke.
                let lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &lim);
            }
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut out)))
                .unwrap_or(101);
            let _ = out.flush();
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let mut reaper = Reaper(Some(child));
            drop(w);
            let mut report = String::new();
            let mut file = std::fs::File::from(r);
            let _ = file.read_to_string(&mut report);
            let status = waitpid(child, None).expect("waitpid");
            reaper.0 = None;
            match status {
                WaitStatus::Exited(_, code) => Outcome::Exited(code, report),
                WaitStatus::Signaled(_, sig, _) => Outcome::Signaled(sig, report),
                other => panic!("unexpected wait status {other:?}"),
            }
        }
    }
}

/// Value of a `Key:` line in /proc/self/status.
pub fn status_field(key: &str) -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

pub fn set_no_new_privs() {
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_NO_NEW_PRIVS");
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique kos-named path under the temp dir.
pub fn unique(tag: &str) -> std::path::PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("kos-sec-{tag}-{}-{n}", std::process::id()))
}

/// Removes a path (file or tree) on drop.
pub struct Cleanup(pub std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Raw fd helper for tests that need one.
pub fn raw(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}

/// Write a line to the report.
pub fn say(out: &mut std::fs::File, line: impl AsRef<str>) {
    let _ = writeln!(out, "{}", line.as_ref());
}

/// Wrap an fd number the child inherited.
pub unsafe fn owned(fd: i32) -> OwnedFd {
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Records that the calling test cannot run here because the machine lacks a kernel feature
/// (`reason` names it). A missing tool is never a skip: scripts/deps.sh installs it. `make
/// test` points KOS_TEST_SKIPS at a directory and counts the lines written there.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let line = format!("{} {test}: {reason}\n", env!("CARGO_PKG_NAME"));
    eprint!("KOS-SKIP {line}");
    if let Some(dir) = std::env::var_os("KOS_TEST_SKIPS") {
        let p = std::path::Path::new(&dir).join("skips.log");
        // One O_APPEND write per line: concurrent tests never interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = res {
            panic!("recording the skip in {}: {e}", p.display());
        }
    }
}

/// Fails the test unless busybox-static is installed (scripts/deps.sh installs it).
pub fn require_busybox() {
    assert!(
        std::path::Path::new("/bin/busybox").exists(),
        "/bin/busybox is not installed: run scripts/deps.sh (Debian package busybox-static)"
    );
}
