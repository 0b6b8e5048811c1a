//! The process that holds a pod's shared PID namespace: no pause image, but the server's
//! own executable re-run under the name `kos-cri-pod-holder` (the binary that serves the
//! CRI calls [`run_if_holder`] first thing in `main`).
//!
//! The server starts it with `unshare(CLONE_NEWPID)` before exec, so its first child is
//! pid 1 of the new namespace; the first process prints that child's pid and exits. The
//! holder reaps orphans, ignores everything else, and ends on SIGTERM or SIGKILL.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, Signal};

use crate::error::{Error, Result};

pub const HOLDER_NAME: &str = "kos-cri-pod-holder";

/// When this process was started as the holder, becomes it and never returns.
pub fn run_if_holder() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let is_holder = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == HOLDER_NAME);
    if !is_holder {
        return;
    }
    // SAFETY: fork in a fresh, single-threaded process; the child only calls
    // async-signal-safe functions and exits without returning to Rust's runtime.
    match unsafe { libc::fork() } {
        -1 => std::process::exit(1),
        0 => hold(),
        child => {
            println!("{child}");
            std::process::exit(0);
        }
    }
}

/// `__user_cap_header_struct` / `__user_cap_data_struct` of capset(2), version 3.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Holds no capabilities: reaping and waiting need none, and the pod's containers may
/// then inspect their pid 1 (ptrace-style access needs the inspector to hold every
/// capability its target holds).
fn drop_capabilities() {
    let h = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let d = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset on ourselves with a version-3 header and its two data words.
    unsafe {
        libc::syscall(libc::SYS_capset, &h as *const CapHeader, d.as_ptr());
    }
}

fn hold() -> ! {
    drop_capabilities();
    let mut all = SigSet::all();
    all.remove(Signal::SIGKILL);
    all.remove(Signal::SIGSTOP);
    let _ = all.thread_block();
    // SAFETY: plain libc calls on our own process.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
    }
    loop {
        match all.wait() {
            Ok(Signal::SIGCHLD) => {
                // SAFETY: reaping any exited child.
                while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            }
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => std::process::exit(0),
            _ => {}
        }
    }
}

/// Starts a holder in a new PID namespace (made inside the pod's user namespace `userns`
/// when it has one, so the pod's containers, which join that first, may join it and mount
/// its /proc); returns its pid (in our namespace).
pub fn start(userns: Option<&std::path::Path>) -> Result<i32> {
    let userns = userns
        .map(|p| std::fs::File::open(p).map_err(|e| Error::io("opening", p, e)))
        .transpose()?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("finding own executable", "/proc/self/exe", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg0(HOLDER_NAME)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear();
    // SAFETY: unshare is async-signal-safe; it runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(u) = &userns {
                // The pod's root, not the host's: a host id unmapped in the pod would make
                // the holder a stranger its own containers cannot even inspect.
                nix::sched::setns(u, nix::sched::CloneFlags::CLONE_NEWUSER)?;
                let root_g = nix::unistd::Gid::from_raw(0);
                let root_u = nix::unistd::Uid::from_raw(0);
                nix::unistd::setgroups(&[])?;
                nix::unistd::setresgid(root_g, root_g, root_g)?;
                nix::unistd::setresuid(root_u, root_u, root_u)?;
            }
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io("starting the pod's PID holder", "/proc/self/exe", e))?;
    let mut out = String::new();
    if let Some(s) = child.stdout.take() {
        let _ = s.take(64).read_to_string(&mut out);
    }
    let _ = child.wait();
    out.trim().parse::<i32>().map_err(|_| Error::Internal {
        step: "starting the pod's PID holder",
        message: format!(
            "the holder printed no pid ({out:?}); the serving binary must call kos_cri::run_if_holder() first in main"
        ),
    })
}

/// The holder's own cgroup: beside the pod's containers, below the pod's cgroup parent,
/// so the pod's accounting and limits include it.
pub fn cgroup_path(cgroup_parent: &str, sandbox_id: &str) -> String {
    format!("{}/{sandbox_id}", cgroup_parent.trim_end_matches('/'))
}

fn cgroup(path: &str) -> Result<kos_cgroups::Manager> {
    kos_cgroups::Manager::new(Some(path), "").map_err(|source| Error::Cgroup {
        step: "resolving the pod holder's cgroup",
        source,
    })
}

/// Moves the holder into `path` in every hierarchy (v1 controllers and the v2 mount),
/// making the directories. The holder has no children yet, so nothing stays behind.
pub fn place(pid: i32, path: &str) -> Result<()> {
    let m = cgroup(path)?;
    m.create().map_err(|source| Error::Cgroup {
        step: "creating the pod holder's cgroup",
        source,
    })?;
    m.add_process(pid).map_err(|source| Error::Cgroup {
        step: "moving the pod holder into its cgroup",
        source,
    })
}

/// Removes the holder's cgroup (after the holder is gone); absent is fine.
pub fn remove_cgroup(path: &str) -> Result<()> {
    cgroup(path)?.remove().map_err(|source| Error::Cgroup {
        step: "removing the pod holder's cgroup",
        source,
    })
}

/// Start time (clock ticks since boot) of `pid`, to tell it from a reused pid.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether the holder recorded as (pid, start time) still runs.
pub fn alive(holder: (i32, u64)) -> bool {
    start_time(holder.0) == Some(holder.1)
}

/// Kills the holder (and so every process of the pod's PID namespace).
pub fn stop(holder: (i32, u64)) {
    if alive(holder) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder.0), Signal::SIGKILL);
    }
}
